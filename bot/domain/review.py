"""The quarterly decision-rights matrix review. No Slack in here.

The guide asks to share the decision-rights matrix and revisit it quarterly. On the first working day of
each quarter (the organisation's working days and holidays, in its time zone), at the working day's start,
the clock asks everyone who sets a standard (`[[rights]].sets_standard`) to review their rows, with each
element's fast-track history of the quarter before (exceptions asked, granted, denied, the top reasons,
and whether the digest's rule calls it a candidate to become standard). Who sets a standard:
- a user id: that person;
- a team id: the team's `lead` when it has one (the person who answers for the team), else every member.

One DM per person per quarter, ever: its outbox key is `matrix-review:<quarter>:<user>`, written once. A
clock that was down on that day sends it when it comes back, within the quarter's first CATCH_UP_DAYS days.
"Confirm these rows" records who confirmed which rows, when, for which quarter (append-only
`matrix_review_event`, once per person and quarter); "Propose a change" records the proposal and posts it
to the digest channel or a team's channel, three times per person and quarter at most. The DM is redrawn
after each.
"""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta

from sqlalchemy import text as sql
from sqlmodel import select

from bot.domain.core import outbox, schedule
from bot.domain.core.items import RuleError
from bot.domain.core.outbox import POST, UPDATE, Message
from bot.domain.core.process import ProcessConfig, Right
from bot.domain.core.worktime import WorkTime
from bot.domain.figures import candidate
from storage.db import Database
from storage.models import MatrixReviewEvent

QUARTER = re.compile(r"^(\d{4})-Q([1-4])$")
CATCH_UP_DAYS = 14  # a review missed while the clock was down is still sent within the quarter's first 14 days
TOP_REASONS = 3
PROPOSAL_MAX = 2000
PROPOSALS = 3  # per person and quarter: each is a message to a channel, posted by Steward
CONFIRMED, PROPOSED = "confirmed", "proposed"


# -- quarters ---------------------------------------------------------------------------------------


def parse_quarter(text: str) -> tuple[int, int]:
    match = QUARTER.match(text or "")
    if not match:
        raise ValueError(f"{text!r} is not a quarter (YYYY-Qn)")
    return int(match.group(1)), int(match.group(2))


def quarter_of(moment: datetime, tz) -> str:
    """The quarter (`2026-Q4`) of a naive UTC moment, in the organisation's calendar."""
    year, month = schedule.parse_period(schedule.period_of(moment, tz))
    return f"{year:04d}-Q{(month - 1) // 3 + 1}"


def quarter_of_period(period: str) -> str:
    year, month = schedule.parse_period(period)
    return f"{year:04d}-Q{(month - 1) // 3 + 1}"


def months(quarter: str) -> list[str]:
    year, n = parse_quarter(quarter)
    return [f"{year:04d}-{3 * (n - 1) + i:02d}" for i in (1, 2, 3)]


def shift(quarter: str, quarters: int) -> str:
    year, n = parse_quarter(quarter)
    index = year * 4 + (n - 1) + quarters
    return f"{index // 4:04d}-Q{index % 4 + 1}"


def bounds(quarter: str, tz) -> tuple[datetime, datetime]:
    """The quarter as [start, end) in naive UTC."""
    first, _, last = months(quarter)
    return schedule.bounds(first, tz)[0], schedule.bounds(last, tz)[1]


def label(quarter: str) -> str:
    year, n = parse_quarter(quarter)
    return f"Q{n} {year}"


def first_working_day(cfg: ProcessConfig, quarter: str) -> date:
    """The quarter's first working day: its first day that is a working day and not a holiday."""
    work = WorkTime.of(cfg)
    year, n = parse_quarter(quarter)
    day = date(year, 3 * (n - 1) + 1, 1)
    for _ in range(92):
        if day.weekday() in work.days and day not in work.holidays:
            return day
        day += timedelta(days=1)
    return day  # a quarter without a working day: the configuration allows none; its last day + 1


def due_at(cfg: ProcessConfig, quarter: str) -> datetime:
    """When the quarter's review is due (naive UTC): its first working day, at the working day's start."""
    day = first_working_day(cfg, quarter)
    org = cfg.organization
    return WorkTime.of(cfg)._utc(day, org.work_start)


def due_quarter(cfg: ProcessConfig, now: datetime) -> str | None:
    """The quarter whose review is due at `now` (naive UTC): from its due moment until the end of the
    quarter's first CATCH_UP_DAYS days; None outside that window or without a decision-rights matrix."""
    if not cfg.rights:
        return None
    quarter = quarter_of(now, cfg.organization.tz)
    start = bounds(quarter, cfg.organization.tz)[0]
    due = due_at(cfg, quarter)
    return quarter if due <= now < max(start + timedelta(days=CATCH_UP_DAYS), due + timedelta(days=1)) else None


# -- who reviews what -----------------------------------------------------------------------------------


def reviewers(cfg: ProcessConfig) -> dict[str, list[Right]]:
    """Each person who sets a standard, with their rows (matrix order): a user id is that person; a team
    id is its lead, or, for a team without one, each of its members."""
    out: dict[str, list[Right]] = {}
    for right in cfg.rights:
        team = cfg.team(right.sets_standard)
        people = ([team.lead] if team.lead else list(team.members)) if team else [right.sets_standard]
        for person in people:
            out.setdefault(person, []).append(right)
    return out


def dm_key(quarter: str, user: str) -> str:
    return f"matrix-review:{quarter}:{user}"


def item_of(quarter: str) -> str:
    return f"matrix-review:{quarter}"


def _dm(quarter: str, user: str) -> Message:
    return Message(
        dm_key(quarter, user), item_of(quarter), POST, user, "matrix_review_dm", {"quarter": quarter, "user": user}
    )


def _redraw(quarter: str, user: str) -> Message:
    key = dm_key(quarter, user)
    return Message(
        outbox.update_of(key),
        item_of(quarter),
        UPDATE,
        user,
        "matrix_review_dm",
        {"quarter": quarter, "user": user},
        anchor=key,
    )


@dataclass
class Sent:
    quarter: str | None
    keys: list[str] = field(default_factory=list)  # written now
    before: int = 0  # written by an earlier run


def send_due(db: Database, cfg: ProcessConfig, now: datetime) -> Sent:
    """The quarter's review DMs, if due at `now`: one per person who sets a standard, written to the
    outbox once ever (a second run, a second clock, a restart write nothing again)."""
    quarter = due_quarter(cfg, now)
    if quarter is None:
        return Sent(None)
    people = sorted(reviewers(cfg))
    written = {r.key for r in outbox.of_item(db, item_of(quarter)) if r.kind == POST and r.render == "matrix_review_dm"}
    new = [_dm(quarter, p) for p in people if dm_key(quarter, p) not in written]
    if new:
        outbox.put(db, new, now)
    return Sent(quarter, [m.key for m in new], len(written))


# -- each element's fast-track history ------------------------------------------------------------------


@dataclass
class History:
    asked: int = 0
    granted: int = 0
    denied: int = 0
    reasons: list[str] = field(default_factory=list)  # "Customer escalation ×3", the most asked first
    candidate: bool = False  # a month of the quarter had as many approved as the digest calls a candidate


def history(db: Database, cfg: ProcessConfig, quarter: str) -> dict[str, History]:
    """Each element's fast-track requests in `quarter`: asked (created in it), granted and denied (decided
    in it), the top reasons asked, and "candidate to become standard" by the digest's own rule
    (`bot.domain.figures.candidate`) applied to each month of the quarter, as that month's digest applied it."""
    tz = cfg.organization.tz
    start, end = bounds(quarter, tz)
    params = {"start": start, "end": end}
    out: dict[str, History] = {}
    reasons: dict[str, Counter] = {}
    per_month: Counter = Counter()
    with db.read() as session:
        for element, reason, n in session.execute(
            sql(
                "SELECT element, reason, COUNT(*) FROM fasttrack WHERE created_at >= :start AND created_at < :end"
                " GROUP BY element, reason"
            ),
            params,
        ):
            out.setdefault(element, History()).asked += n
            reasons.setdefault(element, Counter())[reason] += n
        for element, kind, at in session.execute(
            sql(
                "SELECT f.element, e.kind, e.at FROM fasttrack_event e JOIN fasttrack f ON f.id = e.request_id"
                " WHERE e.kind IN ('approved', 'denied') AND e.at >= :start AND e.at < :end"
            ),
            params,
        ):
            h = out.setdefault(element, History())
            if kind == "approved":
                h.granted += 1
                at = at if isinstance(at, datetime) else datetime.fromisoformat(str(at))
                per_month[(element, schedule.period_of(at, tz))] += 1
            else:
                h.denied += 1
    for element, h in out.items():
        ranked = sorted((reasons.get(element) or Counter()).items(), key=lambda item: (-item[1], item[0]))
        h.reasons = [f"{r} ×{n}" for r, n in ranked[:TOP_REASONS]]
        h.candidate = any(candidate(n) for (e, _), n in per_month.items() if e == element)
    return out


# -- confirming, proposing ------------------------------------------------------------------------------


def confirmation(db: Database, quarter: str, user: str) -> MatrixReviewEvent | None:
    with db.read() as session:
        return session.exec(
            select(MatrixReviewEvent).where(
                MatrixReviewEvent.quarter == quarter,
                MatrixReviewEvent.user == user,
                MatrixReviewEvent.kind == CONFIRMED,
            )
        ).first()


def proposals(db: Database, quarter: str, user: str) -> list[MatrixReviewEvent]:
    with db.read() as session:
        return list(
            session.exec(
                select(MatrixReviewEvent)
                .where(
                    MatrixReviewEvent.quarter == quarter,
                    MatrixReviewEvent.user == user,
                    MatrixReviewEvent.kind == PROPOSED,
                )
                .order_by(MatrixReviewEvent.id)
            )
        )


def check(db: Database, cfg: ProcessConfig, user: str, quarter: str, now: datetime) -> list[Right]:
    """The rows `user` may act on for `quarter`, or RuleError: a click that names no quarter, from someone
    the review was not sent to (forged), or for a quarter that is over (stale)."""
    try:
        parse_quarter(quarter)
    except ValueError:
        raise RuleError("That button names no quarter of the matrix review.") from None
    if outbox.get(db, dm_key(quarter, user)) is None:
        raise RuleError("This matrix review was not sent to you.")
    current = quarter_of(now, cfg.organization.tz)
    if quarter != current:
        raise RuleError(
            f"This review was for {label(quarter)}, which has ended; nothing was recorded. The {label(current)} review"
            " comes on the quarter's first working day."
        )
    rows = reviewers(cfg).get(user)
    if not rows:
        raise RuleError("You no longer set a standard in the decision-rights matrix; nothing was recorded.")
    return rows


def confirm(db: Database, cfg: ProcessConfig, user: str, quarter: str, now: datetime) -> list[str]:
    """Record that `user` confirmed their rows for `quarter` (once: a second click is told so) and redraw
    their DM. Returns the outbox keys written."""
    rows = check(db, cfg, user, quarter, now)
    with db.write() as session:
        result = session.execute(
            db.insert(MatrixReviewEvent)
            .values(
                quarter=quarter,
                user=user,
                kind=CONFIRMED,
                once=CONFIRMED,
                at=now,
                elements=[r.element for r in rows],
            )
            .on_conflict_do_nothing(index_elements=["quarter", "user", "once"])
            .returning(MatrixReviewEvent.id)
        )
        if result.first() is None:  # (rowcount is -1 on PostgreSQL with RETURNING)
            raise RuleError(f"You already confirmed your rows for {label(quarter)}.")
        return outbox.add(session, db, [_redraw(quarter, user)], now)


def channels(cfg: ProcessConfig) -> list[tuple[str, str]]:
    """Where a proposal may be posted: the digest channel first, then each team's channel (id, label)."""
    out = [(cfg.organization.digest_channel, "The digest channel")]
    for t in cfg.teams:
        if t.channel not in [c for c, _ in out]:
            out.append((t.channel, f"{t.name}'s channel"))
    return out


def may_propose(db: Database, quarter: str, user: str) -> None:
    """RuleError once `user` made PROPOSALS proposals for `quarter` (each is posted to a channel by Steward)."""
    if len(proposals(db, quarter, user)) >= PROPOSALS:
        raise RuleError(_enough(quarter), field="text")


def _enough(quarter: str) -> str:
    return (
        f"Thank you: you have proposed {PROPOSALS} changes for {label(quarter)}, as many as one person can post in a"
        " quarter. To add to one, reply in its thread."
    )


def propose(
    db: Database, cfg: ProcessConfig, user: str, quarter: str, words: str | None, channel: str | None, now: datetime
) -> list[str]:
    """Record a proposed change to `user`'s rows, post it to `channel` (the digest channel when none is
    chosen) and redraw the DM; PROPOSALS per person and quarter at most (the n-th takes `once`
    "proposed:n", unique per quarter and person, so two submissions at once cannot both be the fourth).
    RuleError with `field` for the form."""
    rows = check(db, cfg, user, quarter, now)
    may_propose(db, quarter, user)
    words = (words or "").strip()
    if not words:
        raise RuleError("Say what should change.", field="text")
    if len(words) > PROPOSAL_MAX:
        raise RuleError(f"At most {PROPOSAL_MAX} characters, please.", field="text")
    channel = channel or cfg.organization.digest_channel
    if channel not in [c for c, _ in channels(cfg)]:
        raise RuleError("Choose one of the channels offered.", field="channel")
    with db.write() as session:
        made = len(
            session.exec(
                select(MatrixReviewEvent.id).where(
                    MatrixReviewEvent.quarter == quarter,
                    MatrixReviewEvent.user == user,
                    MatrixReviewEvent.kind == PROPOSED,
                )
            ).all()
        )
        event_id = None
        for n in range(made + 1, PROPOSALS + 1):  # a place another submission took meanwhile: the next one
            event_id = session.execute(
                db.insert(MatrixReviewEvent)
                .values(
                    quarter=quarter,
                    user=user,
                    kind=PROPOSED,
                    once=f"{PROPOSED}:{n}",
                    at=now,
                    elements=[r.element for r in rows],
                    text=words,
                    channel=channel,
                )
                .on_conflict_do_nothing(index_elements=["quarter", "user", "once"])
                .returning(MatrixReviewEvent.id)
            ).scalar()
            if event_id is not None:
                break
        if event_id is None:
            raise RuleError(_enough(quarter), field="text")
        post = Message(
            f"{dm_key(quarter, user)}:proposal:{event_id}",
            item_of(quarter),
            POST,
            channel,
            "matrix_review_proposal",
            {"event": event_id},
            actor=user,
        )
        return outbox.add(session, db, [post, _redraw(quarter, user)], now)


# -- in the digest ----------------------------------------------------------------------------------------


@dataclass
class Status:
    """A quarter's review as the digest says it: which rows someone confirmed before `until`, which not."""

    quarter: str
    confirmed: list[str]
    pending: list[str]

    @property
    def label(self) -> str:
        return label(self.quarter)


def status(db: Database, cfg: ProcessConfig, period: str) -> Status | None:
    """For the digest of the first month of a quarter whose review was sent: the rows confirmed by the
    month's end and those not (a row set by a team counts as confirmed when one of its reviewers did).
    None for any other month, or when no review was sent."""
    quarter = quarter_of_period(period)
    if months(quarter)[0] != period or not cfg.rights:
        return None
    if not any(r.render == "matrix_review_dm" for r in outbox.of_item(db, item_of(quarter))):
        return None
    end = schedule.bounds(period, cfg.organization.tz)[1]
    with db.read() as session:
        done = session.exec(
            select(MatrixReviewEvent).where(
                MatrixReviewEvent.quarter == quarter, MatrixReviewEvent.kind == CONFIRMED, MatrixReviewEvent.at < end
            )
        ).all()
    confirmed = {e for event in done for e in event.elements}
    elements = [r.element for r in cfg.rights]
    return Status(quarter, [e for e in elements if e in confirmed], [e for e in elements if e not in confirmed])
