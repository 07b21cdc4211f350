"""The outbox: every message Steward sends after an ack, as rows written in the decision's transaction.
No Slack in here: `handlers.delivery` sends the rows; this module adds, claims and settles them.

A row's life: `pending` → claimed (`sending`, with a lease and a random token that alone may settle it)
→ `sent` | back to `pending` (429, a passing failure: at `next_at`) | `failed` (Slack refused for good)
| `unknown` (it may be in Slack and nobody can look: never resent without an operator). A deliverer that
dies holding a row leaves it `sending`; once the lease has passed another takes it over, and because the
outcome of the dead attempt is unknown it looks for the message in Slack before sending (`check`).

Updates in place (`kind = update`), and a person's App Home (`kind = publish`, views.publish), have one row per message: asking again bumps its `generation` and
makes it pending, so several updates coalesce into one delivery of the latest state.
"""

from __future__ import annotations

import logging
import secrets
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from sqlalchemy import and_, case, func, or_, update
from sqlmodel import Session, select

from bot.domain.core.timeutil import utcnow
from storage.db import Database
from storage.models import Outbox, OutboxStatus

log = logging.getLogger("steward")
LEASE = timedelta(seconds=60)
BACKOFF_FIRST = timedelta(seconds=2)
BACKOFF_MAX = timedelta(minutes=10)
POST, UPDATE, UPLOAD, PUBLISH = "post", "update", "upload", "publish"
# kinds whose resending is harmless (they set a state rather than add a message): coalesced, never looked for
IDEMPOTENT = (UPDATE, PUBLISH)
RATELIMITED = "ratelimited"  # the error of a row waiting for Slack's Retry-After ("looking: ratelimited" too)
WAITING = "waiting for"  # the error of a row waiting for the message it belongs to


@dataclass(frozen=True)
class Message:
    """One message a decision causes. `key` is unique and derived from the event that causes it, so
    writing the same message twice writes one row. `render` names how it is drawn when delivered."""

    key: str
    item: str
    kind: str
    channel: str
    render: str
    params: dict = field(default_factory=dict)
    anchor: str | None = None  # update: the post it edits; post: the post it replies to in a thread
    actor: str | None = None  # who acted: told once if Slack refuses it for good


def update_of(key: str) -> str:
    """The key of the one `update` row of the message posted under `key`."""
    return f"{key}:update"


def add(session: Session, db: Database, messages: Iterable[Message], now: datetime) -> list[str]:
    """Write messages in the caller's transaction. A post already written stays as it is; an update
    already written is asked for again (pending, next generation), which coalesces pending updates."""
    keys = []
    now = min(now, utcnow())  # a rehearsal (`--now` ahead) still writes messages due now, not in its future
    posts = []
    for m in messages:
        values = dict(
            key=m.key,
            item=m.item,
            kind=m.kind,
            channel=m.channel,
            anchor=m.anchor,
            render=m.render,
            params=m.params,
            actor=m.actor,
            status=OutboxStatus.PENDING,
            generation=1,
            attempts=0,
            check=False,
            next_at=now,
            created_at=now,
            updated_at=now,
        )
        keys.append(m.key)
        if m.kind not in IDEMPOTENT:
            posts.append(values)
            continue
        session.execute(
            db.insert(Outbox)
            .values(**values)
            .on_conflict_do_update(
                index_elements=["key"],
                set_=dict(
                    generation=Outbox.generation + 1,
                    # a delivered row's next generation starts afresh: its back-off counts its own failures
                    attempts=case((Outbox.status == OutboxStatus.SENT, 0), else_=Outbox.attempts),
                    params=m.params,
                    # a pending Retry-After holds (asking again never shortens it); anything else is due now
                    next_at=case((_waits_for_retry_after(now), Outbox.next_at), else_=now),
                    updated_at=now,
                    error=case((_waits_for_retry_after(now), Outbox.error), else_=None),
                    # a delivery under way keeps its claim: it sees the new generation when it settles and goes again
                    status=case(
                        (Outbox.status == OutboxStatus.SENDING, OutboxStatus.SENDING), else_=OutboxStatus.PENDING
                    ),
                ),
            )
        )
    if posts:  # one statement, many parameter sets: a fan-out of thousands stays quick
        session.execute(db.insert(Outbox.__table__).on_conflict_do_nothing(index_elements=["key"]), posts)
    return keys


def _waits_for_retry_after(now: datetime):
    """SQL: the row is pending until a Retry-After Slack gave (which nothing may shorten)."""
    return and_(
        Outbox.status == OutboxStatus.PENDING,
        Outbox.error.is_not(None),
        Outbox.error.like(f"%{RATELIMITED}"),
        Outbox.next_at > now,
    )


def put(db: Database, messages: Iterable[Message], now: datetime) -> list[str]:
    """`add` in a transaction of its own (for jobs, whose decision is the schedule)."""
    with db.write() as session:
        return add(session, db, messages, now)


# -- claiming and settling ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Claim:
    row: Outbox  # as it was when claimed
    token: str
    must_check: bool  # the last attempt's outcome is unknown: look in Slack before sending


def _claimable(row: Outbox, now: datetime) -> bool:
    if row.status == OutboxStatus.PENDING:
        return row.next_at <= now
    return row.status == OutboxStatus.SENDING and row.lease_until is not None and row.lease_until <= now


def claim(db: Database, key: str, now: datetime) -> Claim | None:
    """Take a row for delivery, or None when it is not due, done, or held by a live deliverer."""
    token = secrets.token_hex(8)
    with db.write() as session:
        row = session.exec(select(Outbox).where(Outbox.key == key)).first()
        if row is None or not _claimable(row, now):
            return None
        row = row.model_copy()  # the row as it was: the UPDATE below would change the loaded object too
        took_over = row.status == OutboxStatus.SENDING
        must_check = row.check or (took_over and row.kind not in IDEMPOTENT)
        result = session.execute(
            update(Outbox)
            .where(
                Outbox.id == row.id,
                Outbox.status == row.status,
                Outbox.attempts == row.attempts,
                Outbox.generation == row.generation,
            )
            .values(
                status=OutboxStatus.SENDING,
                token=token,
                lease_until=now + LEASE,
                attempts=row.attempts + 1,
                check=row.kind not in IDEMPOTENT,
                updated_at=now,
            )
        )
        if result.rowcount != 1:
            return None
    if took_over:
        log.warning("outbox %s: taking over a delivery that did not finish (attempt %d)", key, row.attempts)
    return Claim(row, token, must_check)


def renew(db: Database, c: Claim, now: datetime) -> bool:
    with db.write() as session:
        return (
            session.execute(
                update(Outbox).where(Outbox.id == c.row.id, Outbox.token == c.token).values(lease_until=now + LEASE)
            ).rowcount
            == 1
        )


def _settle(db: Database, c: Claim, now: datetime, **values) -> bool:
    with db.write() as session:
        return (
            session.execute(
                update(Outbox)
                .where(Outbox.id == c.row.id, Outbox.token == c.token)
                .values(token=None, lease_until=None, updated_at=now, **values)
            ).rowcount
            == 1
        )


def sent(db: Database, c: Claim, now: datetime, channel: str | None, ts: str | None) -> bool:
    """Record Slack's answer. An update asked for again meanwhile goes back to pending (the latest state
    is sent next); a post keeps where it went, for the updates and thread replies that follow it.

    A success resets `attempts` for the next generation (ten Home publishes, then one time-out: a 2 s
    back-off, not 10 minutes): here when it was asked for again meanwhile, in `add` when it is asked for
    again later; a sent row keeps the number its delivery took. The claim's compare-and-set on (status,
    attempts, generation) still holds: the reset comes with a generation no claimer can have read before."""
    with db.write() as session:
        done = (
            session.execute(
                update(Outbox)
                .where(Outbox.id == c.row.id, Outbox.token == c.token, Outbox.generation == c.row.generation)
                .values(
                    status=OutboxStatus.SENT,
                    token=None,
                    lease_until=None,
                    check=False,
                    sent_at=now,
                    updated_at=now,
                    result_channel=channel,
                    result_ts=ts,
                    error=None,
                )
            ).rowcount
            == 1
        )
        if not done:
            session.execute(
                update(Outbox)
                .where(Outbox.id == c.row.id, Outbox.token == c.token)
                .values(
                    status=OutboxStatus.PENDING,
                    token=None,
                    lease_until=None,
                    check=False,
                    attempts=0,
                    next_at=now,
                    updated_at=now,
                    result_channel=channel,
                    result_ts=ts,
                )
            )
    return done


def backoff(attempts: int) -> timedelta:
    """The wait after the `attempts`-th passing failure: 2 s, 4 s, 8 s, … at most 10 minutes."""
    return min(BACKOFF_FIRST * 2 ** min(max(attempts - 1, 0), 16), BACKOFF_MAX)


def later(
    db: Database,
    c: Claim,
    now: datetime,
    error: str,
    *,
    at: datetime | None = None,
    unsure: bool = False,
    count: bool = True,
) -> bool:
    """Back to pending: at `at` (a Retry-After) or after the back-off. `unsure`: Slack may have acted, so
    the next attempt looks first. `count=False` gives the attempt back (nothing was tried)."""
    values = dict(
        status=OutboxStatus.PENDING, check=unsure, error=error[:200], next_at=at or now + backoff(c.row.attempts + 1)
    )
    if not count:
        values["attempts"] = c.row.attempts
    return _settle(db, c, now, **values)


def failed(db: Database, c: Claim, now: datetime, error: str, tell: Iterable[Message] = ()) -> bool:
    """Refused for good; `tell` (the notice to the person who acted) is written in the same transaction."""
    log.warning("outbox %s → %s: refused for good: %s", c.row.key, c.row.channel, error)
    with db.write() as session:
        done = (
            session.execute(
                update(Outbox)
                .where(Outbox.id == c.row.id, Outbox.token == c.token)
                .values(
                    status=OutboxStatus.FAILED,
                    check=False,
                    error=error[:200],
                    token=None,
                    lease_until=None,
                    updated_at=now,
                )
            ).rowcount
            == 1
        )
        if done:
            add(session, db, tell, now)
        return done


def unknown(db: Database, c: Claim, now: datetime, error: str) -> bool:
    log.error(
        "outbox %s → %s: may or may not be in Slack, and it cannot be looked up (%s): `python -m bot outbox` to decide",
        c.row.key,
        c.row.channel,
        error,
    )
    return _settle(db, c, now, status=OutboxStatus.UNKNOWN, error=error[:200])


def found(db: Database, c: Claim, now: datetime, channel: str, ts: str) -> bool:
    log.info("outbox %s: found in Slack after an unknown outcome; not sent again", c.row.key)
    return sent(db, c, now, channel, ts)


# -- reading ------------------------------------------------------------------------------------------------


def _due(now: datetime):
    """SQL: the row may be claimed at `now` (as `_claimable` says of a loaded row)."""
    return or_(
        and_(Outbox.status == OutboxStatus.PENDING, Outbox.next_at <= now),
        and_(Outbox.status == OutboxStatus.SENDING, Outbox.lease_until <= now),
    )


def due(db: Database, now: datetime, limit: int = 200) -> list[Outbox]:
    """Rows a sweep should deliver now: pending and due, or held past their lease."""
    with db.read() as session:
        return list(session.exec(select(Outbox).where(_due(now)).order_by(Outbox.next_at, Outbox.id).limit(limit)))


def of_kinds(db: Database, keys: Iterable[str], kinds: Iterable[str]) -> list[str]:
    """Which of these rows are of these kinds."""
    keys, kinds = list(keys), list(kinds)
    if not keys or not kinds:
        return []
    with db.read() as s:
        return list(s.exec(select(Outbox.key).where(Outbox.key.in_(keys), Outbox.kind.in_(kinds))))


def heads(db: Database, now: datetime, limit: int = 500) -> list[Outbox]:
    """Each conversation's oldest unfinished row, when it is due: a sweep sends a channel's messages in
    the order they were written (a card before its update, "received" before "accepted"), and a row
    waiting for its Retry-After holds back the ones behind it."""
    unfinished = [OutboxStatus.PENDING, OutboxStatus.SENDING]
    firsts = select(func.min(Outbox.id)).where(Outbox.status.in_(unfinished)).group_by(Outbox.channel)
    with db.read() as session:
        # due first, then the limit: conversations waiting on a Retry-After never hide one that is due
        return list(
            session.exec(select(Outbox).where(Outbox.id.in_(firsts), _due(now)).order_by(Outbox.id).limit(limit))
        )


def get(db: Database, key: str) -> Outbox | None:
    with db.read() as session:
        return session.exec(select(Outbox).where(Outbox.key == key)).first()


def of_item(db: Database, item: str) -> list[Outbox]:
    with db.read() as session:
        return list(session.exec(select(Outbox).where(Outbox.item == item).order_by(Outbox.id)))


def listing(db: Database, statuses: Iterable[str], limit: int = 100) -> list[Outbox]:
    with db.read() as session:
        return list(
            session.exec(
                select(Outbox).where(Outbox.status.in_(list(statuses))).order_by(Outbox.updated_at.desc()).limit(limit)
            )
        )


def retry(db: Database, key: str, now: datetime) -> Outbox | None:
    """An operator's decision: send a failed or unknown row again (an unknown one without looking), and
    the rows that failed only because they belong to it (its updates, its thread replies)."""
    with db.write() as session:
        row = session.exec(select(Outbox).where(Outbox.key == key)).first()
        if row is None or row.status not in (OutboxStatus.FAILED, OutboxStatus.UNKNOWN):
            return row
        session.execute(
            update(Outbox)
            .where(Outbox.id == row.id, Outbox.status == row.status)
            .values(status=OutboxStatus.PENDING, check=False, next_at=now, updated_at=now)
        )
        session.execute(
            update(Outbox)
            .where(
                Outbox.anchor == key,
                Outbox.status == OutboxStatus.FAILED,
                Outbox.error.like("the message it belongs to%"),
            )
            .values(status=OutboxStatus.PENDING, check=False, next_at=now, updated_at=now)
        )
        row.status = OutboxStatus.PENDING
        return row


def reopen(db: Database, item: str, now: datetime) -> int:
    """An operator's `run-job`: an item's failed rows are pending again (a refusal may have been mended),
    and its pending rows due now rather than after their back-off (a Retry-After still holds)."""
    now = min(now, utcnow())
    with db.write() as session:
        failed = session.execute(
            update(Outbox)
            .where(Outbox.item == item, Outbox.status == OutboxStatus.FAILED)
            .values(status=OutboxStatus.PENDING, next_at=now, updated_at=now)
        ).rowcount
        session.execute(
            update(Outbox)
            .where(
                Outbox.item == item,
                Outbox.status == OutboxStatus.PENDING,
                Outbox.next_at > now,
                or_(Outbox.error.is_(None), Outbox.error.not_like(f"%{RATELIMITED}")),
            )
            .values(next_at=now)
        )
        return failed


def revive(db: Database, now: datetime, failed_by: datetime) -> int:
    """Slack answers again after an outage: the rows backing off from a passing failure recorded by
    `failed_by` (when Slack was last seen out of reach) are due now rather than at the end of a back-off
    that outgrew the outage. A Retry-After still holds, and a row waiting for its thread's first message
    keeps its short wait."""
    now = min(now, utcnow())
    with db.write() as session:
        return session.execute(
            update(Outbox)
            .where(
                Outbox.status == OutboxStatus.PENDING,
                Outbox.next_at > now,
                Outbox.updated_at <= failed_by,
                Outbox.error.is_not(None),
                Outbox.error.not_like(f"%{RATELIMITED}"),
                Outbox.error.not_like(f"{WAITING}%"),
            )
            .values(next_at=now)
        ).rowcount


def backing_off(db: Database, now: datetime) -> bool:
    """Does a row wait out a back-off after a passing failure (not a Retry-After)?"""
    with db.read() as session:
        return (
            session.exec(
                select(Outbox.id)
                .where(
                    Outbox.status == OutboxStatus.PENDING,
                    Outbox.next_at > now,
                    Outbox.error.is_not(None),
                    Outbox.error.not_like(f"%{RATELIMITED}"),
                    Outbox.error.not_like(f"{WAITING}%"),
                )
                .limit(1)
            ).first()
            is not None
        )
