"""The weekly satisfaction pulse: who is asked when, answers that stay anonymous, and the reminders and
opt-outs around them. No Slack in here (the time zones Slack knows are handed in by the job).

Anonymity is the product. Who was asked and whether they answered (`PulseRecipient`, for reminders and
the response rate) is stored apart from what they answered (`PulseAnswer`, `PulseComment`). An answer row
carries no user id, no time and no insertion order (no rowid); its key is an HMAC, with the deployment's
PULSE_SECRET, of the user, the week and the group it counts in (each of the person's teams, and "*" for
the organisation: a person in two teams has three rows nobody can link), and its value is sealed with a
pad derived from that key. So the person can change their answer (we can find their rows again), and
nobody holding only the database can tell whose answer a row is, or read it. Nothing here logs a user id
next to a score.

A week is an ISO week ("2026-W48"). Each person's survey goes out at `send_at` in their own time zone and
stays open `open_days`; the week counts in the month (the organisation's) in which it has closed in every
time zone (see `weeks_of`), so a month's figures are final when the month ends.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from sqlalchemy import func, update
from sqlmodel import Session, select

from bot.domain.core import outbox, schedule
from bot.domain.core.items import NotFound, Outcome, RuleError
from bot.domain.core.outbox import POST, UPDATE, Message
from bot.domain.core.process import ProcessConfig, Pulse
from storage.db import Database
from storage.models import (
    MemberTz,
    Outbox,
    OutboxStatus,
    PulseAnswer,
    PulseComment,
    PulseMonth,
    PulseOptout,
    PulseRecipient,
)

log = logging.getLogger("steward")

SCORES = {1: "Strongly disagree", 2: "Disagree", 3: "Neutral", 4: "Agree", 5: "Strongly agree"}
FEELINGS = ("rigid", "right", "ambiguous")  # "Our processes are: too rigid · about right · too ambiguous"
FEELING_LABELS = {"rigid": "too rigid", "right": "about right", "ambiguous": "too ambiguous"}
ORG = "*"  # the organisation's group
PAUSE_DAYS = 28
COMMENT_MAX = 500
BATCH = 200  # people written per transaction: a fan-out never holds the database for long
ASKED, SKIPPED = "asked", "skipped"


class Closed(RuleError):
    """The week's survey closed: `at` says when."""

    def __init__(self, at: datetime):
        super().__init__("This week's survey has closed; your answer was not recorded.")
        self.at = at


# -- keys and seals ----------------------------------------------------------------------------------------


class Sealer:
    """Keys and seals answers with the deployment's secret (PULSE_SECRET)."""

    def __init__(self, secret: str | bytes):
        secret = secret.encode() if isinstance(secret, str) else secret
        if len(secret) < 16:
            raise ValueError("PULSE_SECRET: at least 16 characters")
        self._secret = secret

    def _mac(self, text: str) -> bytes:
        return hmac.new(self._secret, text.encode(), hashlib.sha256).digest()

    def key(self, kind: str, week: str, scope: str, user: str) -> str:
        return self._mac(f"{kind}|{week}|{scope}|{user}").hex()[:32]

    def seal(self, key: str, score: int, feeling: int) -> int:
        return (score | feeling << 3) ^ self._mac(f"pad|{key}")[0]

    def open(self, key: str, sealed: int) -> tuple[int, int]:
        """(score 0-5, feeling 0-3), 0 for not given."""
        value = sealed ^ self._mac(f"pad|{key}")[0]
        score, feeling = value & 7, value >> 3
        if not 0 <= score <= 5 or not 0 <= feeling <= 3:
            raise ValueError("an answer sealed with another secret")  # PULSE_SECRET changed
        return score, feeling


# -- weeks -------------------------------------------------------------------------------------------------


def week_id(day: date) -> str:
    year, week, _ = day.isocalendar()
    return f"{year}-W{week:02d}"


def parse_week(week: str) -> date:
    """The Monday of an ISO week id; ValueError when it is not one."""
    text = str(week)
    if len(text) != 8 or text[4:6] != "-W" or not text[:4].isdigit() or not text[6:].isdigit():
        raise ValueError(f"not a week: {week!r}")
    return date.fromisocalendar(int(text[:4]), int(text[6:]), 1)


def zone(name: str | None, fallback: ZoneInfo) -> ZoneInfo:
    try:
        return ZoneInfo(name) if name else fallback
    except (ZoneInfoNotFoundError, ValueError):
        return fallback


def _utc(moment: datetime) -> datetime:
    return moment.astimezone(UTC).replace(tzinfo=None)


def window(p: Pulse, week: str, tz: ZoneInfo) -> tuple[datetime, datetime, datetime | None]:
    """(sent, closes, reminder) of a week for a person in `tz`, naive UTC: their own `send_at`."""
    day = parse_week(week) + timedelta(days=p.weekday)
    local = datetime.combine(day, p.at, tzinfo=tz)  # wall-clock arithmetic below: DST keeps 10:00 at 10:00
    remind = _utc(local + timedelta(days=p.remind_after_days)) if p.remind_after_days else None
    return _utc(local), _utc(local + timedelta(days=p.open_days)), remind


def close_day(p: Pulse, week: str) -> date:
    return parse_week(week) + timedelta(days=p.weekday + p.open_days)


LAST_ZONE = timedelta(hours=12)  # UTC-12 (Etc/GMT+12) is the last zone of all: its wall clock is 12 h behind


def last_close(p: Pulse, week: str) -> datetime:
    """When a week has closed in every time zone (naive UTC): its close at `send_at` in UTC-12, the last
    zone on Earth. Each person's own close (`window`) is never later."""
    return datetime.combine(close_day(p, week), p.at) + LAST_ZONE


def weeks_of(p: Pulse, period: str, tz: ZoneInfo | None = None) -> list[str]:
    """The weeks that count in a month (YYYY-MM): those that have closed everywhere (`last_close`) within
    the month in the organisation's time zone `tz` (UTC when not given). So when the month has ended, its
    weeks have all closed, in every zone, whatever the zone of the organisation and whatever `open_days`:
    the digest (due after the month's end) always has the month's final satisfaction."""
    tz = tz or ZoneInfo("UTC")
    start, end = schedule.bounds(period, tz)
    year, month = map(int, period.split("-"))
    day, weeks = date(year, month, 1) - timedelta(days=14), []
    while day <= date(year, month, 28) + timedelta(days=14):  # every Monday that could close in the month
        week = week_id(day)
        if start <= last_close(p, week) < end and week not in weeks:
            weeks.append(week)
        day += timedelta(days=7)
    return weeks


def final_at(p: Pulse, period: str, tz: ZoneInfo | None = None) -> datetime:
    """When every week that counts in a month has closed, in every time zone (naive UTC): the month's end
    in the organisation's time zone (see `weeks_of`)."""
    return schedule.bounds(period, tz or ZoneInfo("UTC"))[1]


def members(cfg: ProcessConfig) -> dict[str, list[str]]:
    """Everyone the pulse asks, with the teams they count in (one DM a week, however many teams)."""
    people: dict[str, list[str]] = {}
    for team in cfg.pulse_teams():
        for user in team.members:
            people.setdefault(user, []).append(team.id)
    return people


def dm_key(week: str, user: str) -> str:
    return f"pulse:{week}:{user}"


def item_of(week: str) -> str:
    return f"pulse:{week}"


def _dm_update(week: str, user: str) -> Message:
    key = dm_key(week, user)
    return Message(
        outbox.update_of(key), item_of(week), UPDATE, user, "pulse_dm", {"week": week, "user": user}, anchor=key
    )


# -- time zones ----------------------------------------------------------------------------------------------


def store_timezones(db: Database, zones: dict[str, str], now: datetime) -> int:
    """Remember people's time zones (from Slack's users.list); returns how many changed. One upsert in
    the order of the user ids, so two jobs storing at once wait for each other instead of deadlocking."""
    if not zones:
        return 0
    with db.write() as session:
        known = {row.user: row.tz for row in session.exec(select(MemberTz))}
        stmt = db.insert(MemberTz)
        stmt = stmt.on_conflict_do_update(
            index_elements=["user"], set_={"tz": stmt.excluded.tz, "updated_at": stmt.excluded.updated_at}
        )
        session.execute(stmt, [{"user": u, "tz": zones[u], "updated_at": now} for u in sorted(zones)])
    return sum(1 for user, tz in zones.items() if known.get(user) != tz)


def timezones(db: Database) -> tuple[dict[str, str], datetime | None]:
    """The time zones on record, and when they were last refreshed."""
    with db.read() as session:
        rows = list(session.exec(select(MemberTz)))
    return {r.user: r.tz for r in rows}, max((r.updated_at for r in rows), default=None)


# -- sending ------------------------------------------------------------------------------------------------


def _opted_out(session: Session, now: datetime) -> set[str]:
    rows = session.exec(select(PulseOptout))
    return {r.user for r in rows if r.until is None or r.until > now}


@dataclass
class Sent:
    keys: list[str]
    asked: int = 0
    skipped: int = 0
    paused: int = 0


def send_due(db: Database, cfg: ProcessConfig, now: datetime, zones: dict[str, str] | None = None) -> Sent:
    """Write the survey DM of everyone whose week is open at `now` (their `send_at` in their own time zone
    has come and the week has not closed) and who has not been asked this week: once per person per week,
    whatever runs it how often (a recipient row and the DM's outbox row, written together; a second clock
    writing the same person does nothing). A week that passed entirely while nothing ran is recorded as
    skipped and logged, once."""
    p = cfg.pulse
    out = Sent(keys=[])
    if not cfg.pulse_on:
        return out
    zones = zones if zones is not None else timezones(db)[0]
    org_tz = cfg.organization.tz
    due: list[tuple[str, str, list[str], str, tuple]] = []  # week, user, teams, tz, window
    passed: list[tuple[str, str, list[str], str, tuple]] = []
    for user, teams in members(cfg).items():
        tz = zone(zones.get(user), org_tz)
        today = now.replace(tzinfo=UTC).astimezone(tz).date()
        for week in dict.fromkeys((week_id(today), week_id(today - timedelta(days=7)))):
            times = window(p, week, tz)
            if times[0] <= now < times[1]:
                due.append((week, user, teams, tz.key, times))
            elif times[1] <= now:
                passed.append((week, user, teams, tz.key, times))
    with db.read() as session:
        off = _opted_out(session, now)
        first = session.exec(select(func.min(PulseRecipient.week))).first()
        weeks = {w for w, *_ in due + passed}
        have = (
            set(
                session.execute(
                    select(PulseRecipient.week, PulseRecipient.user).where(PulseRecipient.week.in_(weeks))
                ).all()
            )
            if weeks
            else set()
        )
    # Everyone asked is in the base, paused or stopped: their row is written (opted out, no DM), so no count
    # shown ("12 of 20 surveys answered") can be subtracted from the team's size to tell that someone paused.
    todo = [d for d in due if (d[0], d[1]) not in have]
    # a week that began and closed while nothing ran (once the pulse has run before): skipped, and said
    missed = [d for d in passed if first is not None and d[0] > first and (d[0], d[1]) not in have and d[1] not in off]
    # in the order of the unique key, so two runs writing at once wait for each other, never deadlock
    for rows, state in ((sorted(todo, key=lambda d: d[:2]), ASKED), (sorted(missed, key=lambda d: d[:2]), SKIPPED)):
        for start in range(0, len(rows), BATCH):
            batch = rows[start : start + BATCH]
            with db.write() as session:
                table = PulseRecipient.__table__
                insert = (
                    db.insert(table).on_conflict_do_nothing(index_elements=["week", "user"]).returning(table.c.user)
                )
                written = {
                    u
                    for (u,) in session.execute(
                        insert,
                        [  # the rows this run wrote come back
                            dict(
                                week=week,
                                user=user,
                                teams=teams,
                                tz=tz,
                                due_at=sent,
                                closes_at=closes,
                                remind_at=_remind_at(p, remind, closes, now),
                                state=state,
                                reminded=False,
                                answered=False,
                                opted_out=state == ASKED and user in off,
                            )
                            for week, user, teams, tz, (sent, closes, remind) in batch
                        ],
                    )
                }
                messages = [
                    Message(dm_key(week, user), item_of(week), POST, user, "pulse_dm", {"week": week, "user": user})
                    for week, user, *_ in batch
                    if user in written and state == ASKED and user not in off
                ]
                if state == ASKED:
                    out.asked += len(written - off)
                    out.paused += len(written & off)
                else:
                    out.skipped += len(written)
                out.keys += outbox.add(session, db, messages, now)
    if out.skipped:
        weeks_missed = sorted({d[0] for d in missed})
        log.warning(
            "pulse: %d survey%s of %s not sent: the week closed while the clock was not running",
            out.skipped,
            "s" if out.skipped != 1 else "",
            ", ".join(weeks_missed),
        )
    return out


def _remind_at(p: Pulse, scheduled: datetime | None, closes: datetime, now: datetime) -> datetime | None:
    """The reminder comes `remind_after_days` after the survey was actually sent: a survey sent late (the
    clock was down on Monday) is not followed by its reminder at once; none when that is past the close."""
    if scheduled is None:
        return None
    now = now.replace(tzinfo=None)
    if now < scheduled:
        return scheduled  # sent in time for its reminder: the reminder keeps its day
    at = now + timedelta(days=p.remind_after_days)
    return at if at < closes else None


def remind_due(db: Database, cfg: ProcessConfig, now: datetime) -> list[str]:
    """One reminder, to people asked this week who have not answered (nor paused), once its day has come."""
    if not cfg.pulse_on:
        return []
    keys: list[str] = []
    while True:
        with db.write() as session:
            rows = list(
                session.exec(
                    select(PulseRecipient)
                    .where(
                        PulseRecipient.state == ASKED,
                        PulseRecipient.reminded.is_(False),
                        PulseRecipient.answered.is_(False),
                        PulseRecipient.opted_out.is_(False),
                        PulseRecipient.remind_at <= now,
                        PulseRecipient.closes_at > now,
                    )
                    .limit(BATCH)
                )
            )
            messages = []
            for r in rows:
                won = session.execute(
                    update(PulseRecipient)
                    .where(
                        PulseRecipient.week == r.week, PulseRecipient.user == r.user, PulseRecipient.reminded.is_(False)
                    )
                    .values(reminded=True)
                ).rowcount
                if won == 1:
                    messages.append(
                        Message(
                            f"{dm_key(r.week, r.user)}:reminder",
                            item_of(r.week),
                            POST,
                            r.user,
                            "pulse_reminder",
                            {"week": r.week, "user": r.user},
                        )
                    )
            keys += outbox.add(session, db, messages, now)
        if len(rows) < BATCH:
            return keys


# -- answering ----------------------------------------------------------------------------------------------


def _asked(session: Session, week: str, user: str, now: datetime) -> PulseRecipient:
    # Locked: the person's answer rows are read, merged and written back, so two clicks at once (a score
    # and a view) take turns instead of one overwriting the other in some of their groups (PostgreSQL).
    row = session.get(PulseRecipient, (week, user), with_for_update=True)
    if row is None or row.state != ASKED:
        raise NotFound("This survey was not sent to you.")
    if now >= row.closes_at:
        raise Closed(row.closes_at)
    return row


def answer(
    db: Database,
    sealer: Sealer,
    user: str,
    week: str,
    now: datetime,
    *,
    score: int | None = None,
    feeling: str | None = None,
) -> Outcome:
    """Record (or change) a person's answer for a week: a score 1-5 and/or how processes feel. Each of
    their groups gets its own keyed, sealed row; the recipient row only learns that they answered."""
    if score is not None and score not in SCORES:
        raise RuleError("Choose a score from 1 to 5.")
    if feeling is not None and feeling not in FEELINGS:
        raise RuleError("Choose too rigid, about right or too ambiguous.")
    if score is None and feeling is None:
        raise RuleError("Choose a score from 1 to 5.")
    parse_week(week)

    def write(session: Session, scopes: list[str]) -> None:
        for scope in scopes:
            key = sealer.key("answer", week, scope, user)
            old = session.get(PulseAnswer, key)
            was = sealer.open(key, old.sealed) if old is not None else (0, 0)
            sealed = sealer.seal(key, score or was[0], FEELINGS.index(feeling) + 1 if feeling else was[1])
            session.execute(
                db.insert(PulseAnswer)
                .values(key=key, week=week, scope=scope, sealed=sealed, mixed=False)
                .on_conflict_do_update(index_elements=["key"], set_={"sealed": sealed, "mixed": False})
            )

    return _give(db, user, week, now, write)


def _give(db: Database, user: str, week: str, now: datetime, write) -> Outcome:
    """One transaction: the person was asked this week and it is open; `write(session, scopes)` with the
    groups they count in; the recipient row learns only that they answered; their DM is redrawn."""
    with db.write() as session:
        row = _asked(session, week, user, now)
        write(session, [*row.teams, ORG])
        if not row.answered or row.opted_out:
            row.answered, row.opted_out = True, False
            session.add(row)
        keys = outbox.add(session, db, [_dm_update(week, user)], now)
    return Outcome(row, changed=True, keys=keys)


@dataclass(frozen=True)
class Place:
    """Where a comment may be shown: the organisation, or one of its author's teams."""

    id: str
    name: str


def places(db: Database, cfg: ProcessConfig, user: str, week: str) -> list[Place]:
    """Where the person may have their comment shown: the organisation first, then each of their teams (as
    asked that week) that at least `min_group` people were asked in, paused or not. A comment is stored
    once, under that one place: what the database holds about it never narrows its author to fewer than
    `min_group` people (stored under each of the author's groups, the set of groups named their teams)."""
    p = cfg.pulse
    k = p.min_group if p is not None else 5
    with db.read() as session:
        row = session.get(PulseRecipient, (week, user))
        if row is None:
            return [Place(ORG, cfg.organization.name)]
        asked = list(
            session.exec(select(PulseRecipient.teams).where(PulseRecipient.week == week, PulseRecipient.state == ASKED))
        )
    size = {t: sum(1 for teams in asked if t in teams) for t in row.teams}
    names = {t.id: t.name for t in cfg.teams}
    return [Place(ORG, cfg.organization.name)] + [
        Place(t, names.get(t, t)) for t in row.teams if size[t] >= k and t in names
    ]


def comment(
    db: Database,
    sealer: Sealer,
    user: str,
    week: str,
    text: str | None,
    now: datetime,
    *,
    where: str = ORG,
    cfg: ProcessConfig | None = None,
) -> Outcome:
    """An anonymous comment for the week (a second one replaces the first), stored once: under the
    organisation, or under the one team of the author's the author chose (`where`) among `places`."""
    text = " ".join((text or "").split())
    if not text:
        raise RuleError("Write a comment, or close the form.", "comment")
    if len(text) > COMMENT_MAX:
        raise RuleError(f"At most {COMMENT_MAX} characters.", "comment")
    parse_week(week)
    where = where or ORG
    if where != ORG and (cfg is None or where not in {pl.id for pl in places(db, cfg, user, week)}):
        raise RuleError("Choose the organisation, or one of your teams of enough people.", "where")

    def write(session: Session, scopes: list[str]) -> None:
        # one row, keyed as the organisation's row always was (rows written before this rule are read alike)
        session.execute(
            db.insert(PulseComment)
            .values(key=sealer.key("comment", week, ORG, user), week=week, scope=where, text=text, mixed=False)
            .on_conflict_do_update(index_elements=["key"], set_={"text": text, "scope": where, "mixed": False})
        )

    return _give(db, user, week, now, write)


def mix(db: Database) -> int:
    """Rewrite every answer and comment of each week that has new ones, all in one transaction and in
    the order of their keys. A click writes its rows in the same transaction as the person's recipient
    row and their DM's outbox row, so on PostgreSQL the rows' transaction id (`xmin`) and their place in
    the table (`ctid`, the order of writing) would tell which sealed rows are whose; after the mix every
    row of the week carries the mix's transaction id and sits in key order (pseudo-random). Dead row
    versions are then vacuumed away. The clock mixes on every tick, so a click stays linkable for one
    tick at most (to someone reading the live database). Returns how many weeks were mixed."""
    from sqlalchemy import delete, text

    with db.read() as session:
        weeks = set()
        for model in (PulseAnswer, PulseComment):
            weeks |= set(session.exec(select(model.week).where(model.mixed.is_(False)).distinct()))
    if not weeks:
        return 0
    weeks = sorted(weeks)
    with db.write() as session:
        # the week's clicks wait: they lock their recipient row first, as this does, so none deadlocks
        session.execute(
            select(PulseRecipient.week)
            .where(PulseRecipient.week.in_(weeks))
            .order_by(PulseRecipient.week, PulseRecipient.user)
            .with_for_update()
        )
        for model in (PulseAnswer, PulseComment):
            table = model.__table__
            rows = [
                dict(r, mixed=True) for r in session.execute(select(table).where(table.c.week.in_(weeks))).mappings()
            ]
            session.execute(delete(table).where(table.c.week.in_(weeks)))
            if rows:
                session.execute(table.insert(), sorted(rows, key=lambda r: r["key"]))
    if db.engine.dialect.name == "postgresql":  # the old row versions (with the clicks' xmin) go too
        try:
            with db.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
                conn.execute(text("VACUUM pulse_answer, pulse_comment"))
        except Exception as exc:  # noqa: BLE001 - a VACUUM refused (permissions) leaves them to autovacuum
            log.warning(
                "pulse: VACUUM after mixing refused (%s); autovacuum will remove old row versions", type(exc).__name__
            )
    return len(weeks)


def mine(db: Database, sealer: Sealer, user: str, week: str) -> dict:
    """What a person sees in their own DM: their answer for the week, whether they commented, whether
    they paused or stopped (only ever for that person, from their own keys)."""
    with db.read() as session:
        row = session.get(PulseRecipient, (week, user))
        scope = ORG
        key = sealer.key("answer", week, scope, user)
        found = session.get(PulseAnswer, key)
        score, feeling = sealer.open(key, found.sealed) if found is not None else (0, 0)
        commented = session.get(PulseComment, sealer.key("comment", week, scope, user)) is not None
        off = session.get(PulseOptout, user)
    return {
        "recipient": row,
        "score": score or None,
        "feeling": FEELINGS[feeling - 1] if feeling else None,
        "commented": commented,
        "optout": off,
    }


# -- pause, stop, resume ---------------------------------------------------------------------------------


def _optout(
    db: Database,
    user: str,
    week: str | None,
    now: datetime,
    until: datetime | None,
    stop: bool,
    also: Iterable[Message] = (),
) -> Outcome:
    resent: list[Message] = []
    with db.write() as session:
        row = session.get(PulseOptout, user)
        if stop or until is not None:
            if row is None:
                row = PulseOptout(user=user, until=until, since=now)
            else:
                row.until, row.since = until, now
            session.add(row)
            # this week's survey, if still open and unanswered, is counted apart from non-responders
            session.execute(
                update(PulseRecipient)
                .where(
                    PulseRecipient.user == user,
                    PulseRecipient.state == ASKED,
                    PulseRecipient.answered.is_(False),
                    PulseRecipient.closes_at > now,
                )
                .values(opted_out=True)
            )
        else:
            if row is not None:
                session.delete(row)
            open_weeks = list(
                session.exec(
                    select(PulseRecipient.week).where(
                        PulseRecipient.user == user, PulseRecipient.state == ASKED, PulseRecipient.closes_at > now
                    )
                )
            )
            session.execute(
                update(PulseRecipient)
                .where(PulseRecipient.user == user, PulseRecipient.state == ASKED, PulseRecipient.closes_at > now)
                .values(opted_out=False)
            )
            # a week asked while they were paused had no DM: it goes now (one already posted stays as it is)
            resent = [
                Message(dm_key(w, user), item_of(w), POST, user, "pulse_dm", {"week": w, "user": user})
                for w in open_weeks
            ]
        messages = [*resent, *also]  # also: e.g. the person's App Home, which shows the setting
        if week is not None and session.get(PulseRecipient, (week, user)) is not None:
            messages.append(_dm_update(week, user))
        keys = outbox.add(session, db, messages, now)
    return Outcome(row, changed=True, keys=keys)


def pause(
    db: Database, user: str, week: str | None, now: datetime, days: int = PAUSE_DAYS, also: Iterable[Message] = ()
) -> Outcome:
    return _optout(db, user, week, now, now + timedelta(days=days), stop=False, also=also)


def stop(db: Database, user: str, week: str | None, now: datetime, also: Iterable[Message] = ()) -> Outcome:
    return _optout(db, user, week, now, None, stop=True, also=also)


def resume(db: Database, user: str, week: str | None, now: datetime, also: Iterable[Message] = ()) -> Outcome:
    return _optout(db, user, week, now, None, stop=False, also=also)


def undelivered(db: Database) -> list[str]:
    """The pulse's outbox rows not delivered yet (a run that died mid fan-out leaves some)."""
    with db.read() as session:
        return list(
            session.exec(
                select(Outbox.key).where(
                    Outbox.item.like("pulse:%"), Outbox.status.in_([OutboxStatus.PENDING, OutboxStatus.SENDING])
                )
            )
        )


def recipients(db: Database, weeks: Iterable[str]) -> list[PulseRecipient]:
    weeks = list(weeks)
    if not weeks:
        return []
    with db.read() as session:
        return list(
            session.exec(select(PulseRecipient).where(PulseRecipient.week.in_(weeks), PulseRecipient.state == ASKED))
        )


# -- results: a month's figures, and only those nobody can work a small group out of ------------------------

HIDDEN_SMALL = "fewer than {k} answered"
HIDDEN_DERIVABLE = "held back so that no group under {k} can be worked out from the figures shown"

Coord = tuple[str, str]  # (user, week): one person's answer in one week


def protect(coords: dict[str, set[Coord]], k: int) -> tuple[set[str], dict[str, str]]:
    """Which groups' figures may be shown. `coords`: each group's answers (who, which week); `k` the
    threshold. A group is shown only with at least `k` people answering, and only if no combination of the
    figures shown (sums and differences: the organisation minus the teams shown, a team minus a team
    inside it) isolates fewer than `k` people.

    Every combination of the groups' figures is constant on the *atoms*: the sets of answers that belong
    to exactly the same shown groups. So if every atom has at least `k` people, every set a combination
    can isolate (a union of atoms) has too. While some atom is smaller, one more group is held back: the
    smallest team whose hiding merges that atom into another, else the smallest team shown, else the
    organisation. Returns the groups shown and, for each group held back, why."""

    def people(cs: Iterable[Coord]) -> int:
        return len({user for user, _ in cs})

    shown = {g for g, cs in coords.items() if people(cs) >= k}
    why = {g: HIDDEN_SMALL.format(k=k) for g in coords if g not in shown}
    while True:
        signature: dict[Coord, set[str]] = {}
        for g in shown:
            for c in coords[g]:
                signature.setdefault(c, set()).add(g)
        atoms: dict[frozenset, set[Coord]] = {}
        for c, groups in signature.items():
            atoms.setdefault(frozenset(groups), set()).add(c)
        small = [s for s, cs in atoms.items() if people(cs) < k]
        if not small:
            return shown, why
        sig = min(small, key=lambda s: (people(atoms[s]), sorted(s)))
        teams = sorted(g for g in shown if g != ORG)
        merging = [t for t in teams if (sig ^ {t}) in atoms or not (sig ^ {t})]
        candidates = merging or [t for t in teams if t in sig] or teams
        victim = min(candidates, key=lambda t: (people(coords[t]), t)) if candidates else ORG
        shown.discard(victim)
        why[victim] = HIDDEN_DERIVABLE.format(k=k)


@dataclass
class Figure:
    """One group's satisfaction in a month. Rates over answers (a person answering four weeks counts four
    times in the average); `people` distinct."""

    group: str
    asked: int  # person-weeks asked: everyone the week was for, paused or stopped included (`base`)
    opted_out: int | None  # person-weeks paused or stopped before answering; None: held back (fewer than min_group)
    answered: int  # person-weeks answered (a score, a view, or a comment)
    people: int  # distinct people who answered
    scores: int  # person-weeks with a score
    average: float | None
    favourable: float | None  # share of scores 4-5
    feelings: dict[str, int]  # rigid / right / ambiguous: person-weeks
    comments: list[str]
    change: float | None = None  # the average's change since last month, when last month's was shown

    @property
    def rate(self) -> float | None:
        return self.answered / self.asked if self.asked else None

    def share(self, feeling: str) -> float | None:
        return self.feelings.get(feeling, 0) / self.answered if self.answered else None


@dataclass
class Satisfaction:
    period: str
    min_group: int
    weeks: list[str]
    org: Figure | None  # None: held back (`why`)
    teams: dict[str, Figure | None]  # every pulse team, None when held back
    why: dict[str, str]  # group held back → why
    comments: list[str]  # the organisation's comments not already under a team shown

    @property
    def held_back(self) -> list[str]:
        return sorted(self.why)


def figures(db: Database, cfg: ProcessConfig, sealer: Sealer, period: str, now: datetime) -> Satisfaction | None:
    """A month's satisfaction: per pulse team and for the organisation, with every group that could
    reveal fewer than `min_group` people held back (`protect`). None until every week that counts in the
    month has closed (figures that move with each answer could be subtracted from each other), or when
    the pulse is off or asked nobody.

    A closed month is **frozen** the first time it is read (`pulse_month`: the figures shown and the groups
    they were protected against) and read from there ever after: the Home, the next digest's comparison,
    `digest --month` and `--again` show what was published, never a recomputation under another
    configuration (a team dropped from `pulse.teams` would otherwise turn a + b − org into one person)."""
    with db.read() as session:
        frozen = session.get(PulseMonth, period)
    if frozen is not None:
        return _thaw(frozen.figures)
    p = cfg.pulse
    if p is None:
        return None
    tz = cfg.organization.tz
    weeks = weeks_of(p, period, tz)
    if now < final_at(p, period, tz):
        return None
    rows = recipients(db, weeks)
    if not rows or any(r.closes_at > now for r in rows):
        return None
    result, groups = _compute(db, cfg, sealer, period, weeks, rows)
    with db.write() as session:  # two readers at once: the first one's stays, and both return it
        session.execute(
            db.insert(PulseMonth)
            .values(period=period, frozen_at=now.replace(tzinfo=None), figures=_freeze(result), groups=groups)
            .on_conflict_do_nothing(index_elements=["period"])
        )
    with db.read() as session:
        return _thaw(session.get(PulseMonth, period).figures)


def freeze_closed(db: Database, cfg: ProcessConfig, sealer: Sealer | None, now: datetime) -> str | None:
    """Freeze the month that ended last as soon as it is final (the clock's pulse job, every tick), so a
    configuration edited after the month's end but before anything read it cannot change what is frozen.
    The month frozen, or None (not final yet, the pulse off or no secret, nobody asked)."""
    if cfg.pulse is None or sealer is None:
        return None
    period = schedule.shift(schedule.period_of(now, cfg.organization.tz), -1)
    return period if figures(db, cfg, sealer, period, now) is not None else None


def _freeze(s: Satisfaction) -> dict:
    return {
        "period": s.period,
        "min_group": s.min_group,
        "weeks": s.weeks,
        "org": asdict(s.org) if s.org is not None else None,
        "teams": {g: asdict(f) if f is not None else None for g, f in s.teams.items()},
        "why": s.why,
        "comments": s.comments,
    }


def _thaw(data: dict) -> Satisfaction:
    def figure(f: dict | None) -> Figure | None:
        return Figure(**{**f, "change": None}) if f is not None else None

    return Satisfaction(
        period=data["period"],
        min_group=data["min_group"],
        weeks=list(data["weeks"]),
        org=figure(data["org"]),
        teams={g: figure(f) for g, f in data["teams"].items()},
        why=dict(data["why"]),
        comments=list(data["comments"]),
    )


def _compute(
    db: Database, cfg: ProcessConfig, sealer: Sealer, period: str, weeks: list[str], rows: list[PulseRecipient]
) -> tuple[Satisfaction, dict[str, list[str]]]:
    """The month's figures from its rows, under the configuration of now (called once: at close), and the
    groups they were protected against (each group's people asked)."""
    p = cfg.pulse
    team_ids = [t.id for t in cfg.pulse_teams()]
    groups = {g: set() for g in [*team_ids, ORG]}

    def of(r: PulseRecipient) -> list[str]:
        return [g for g in [*r.teams, ORG] if g in groups]

    asked = {g: 0 for g in groups}
    opted: dict[str, set[Coord]] = {g: set() for g in groups}
    for r in rows:
        for g in of(r):
            asked[g] += 1  # everyone the week went to, paused or not: a count that says nothing of a choice
            if r.answered:
                groups[g].add((r.user, r.week))
            elif r.opted_out:
                opted[g].add((r.user, r.week))
    shown, why = protect(groups, p.min_group)
    # Averages count only scores: the people who gave one (some answer with a view or a comment alone)
    # must pass the same test, or a lone score among views is a team's average, or a difference of sums.
    with db.read() as session:
        org_rows = {
            a.key: a.sealed
            for a in session.exec(select(PulseAnswer).where(PulseAnswer.week.in_(weeks), PulseAnswer.scope == ORG))
        }

    def scored(user: str, week: str) -> bool:
        key = sealer.key("answer", week, ORG, user)
        return key in org_rows and sealer.open(key, org_rows[key])[0] > 0

    by_score = {g: {c for c in cs if scored(*c)} for g, cs in groups.items()}
    shown_scores, why_scores = protect(by_score, p.min_group)
    for g in shown - shown_scores:  # hiding groups only merges atoms: what stays shown passes both tests
        shown.discard(g)
        why[g] = (
            why_scores[g].replace("answered", "gave a score")
            if why_scores[g] == HIDDEN_SMALL.format(k=p.min_group)
            else why_scores[g]
        )
    with db.read() as session:
        answers = list(
            session.exec(select(PulseAnswer).where(PulseAnswer.week.in_(weeks), PulseAnswer.scope.in_(list(shown))))
        )
        notes = list(session.exec(select(PulseComment).where(PulseComment.week.in_(weeks)).order_by(PulseComment.key)))
    # each comment once, where its author chose: under a team shown, else under the organisation when it is
    # shown (a team held back says nothing), else nowhere
    placed = {c.key: c.scope if c.scope in shown else ORG for c in notes if c.scope in shown or ORG in shown}
    # Pausing is a choice too: a group's pause count is shown only when the counts shown cannot be
    # subtracted down to fewer than min_group people (the organisation's minus a team's is the rest's).
    opted_shown, _ = protect({g: opted[g] for g in shown}, p.min_group)
    values: dict[str, list[tuple[int, int]]] = {g: [] for g in shown}
    for a in answers:
        values[a.scope].append(sealer.open(a.key, a.sealed))
    out: dict[str, Figure | None] = {}
    for g in groups:
        if g not in shown:
            out[g] = None
            continue
        scores = [s for s, _ in values[g] if s]
        out[g] = Figure(
            group=g,
            asked=asked[g],
            opted_out=len(opted[g]) if g in opted_shown else None,
            answered=len(groups[g]),
            people=len({u for u, _ in groups[g]}),
            scores=len(scores),
            average=sum(scores) / len(scores) if scores else None,
            favourable=sum(1 for s in scores if s >= 4) / len(scores) if scores else None,
            feelings={f: sum(1 for _, v in values[g] if v == i) for i, f in enumerate(FEELINGS, 1)},
            comments=[c.text for c in notes if placed.get(c.key) == g or (g == ORG and c.key in placed)],
        )
    rest = [c.text for c in notes if placed.get(c.key) == ORG] if out.get(ORG) else []
    members_of = {g: sorted({r.user for r in rows if g in of(r)}) for g in groups}
    return Satisfaction(
        period=period, min_group=p.min_group, weeks=weeks, org=out.pop(ORG), teams=out, why=why, comments=rest
    ), members_of


def with_changes(now: Satisfaction, before: Satisfaction | None) -> Satisfaction:
    """Each shown average's change since last month, where last month's was shown too (a change against a
    figure held back would reveal it)."""
    if before is None:
        return now
    pairs = [(now.org, before.org)] + [(f, before.teams.get(g)) for g, f in now.teams.items()]
    for this, last in pairs:
        if this is not None and last is not None and this.average is not None and last.average is not None:
            this.change = this.average - last.average
    return now


@dataclass(frozen=True)
class Signal:
    group: str  # team id or ORG
    kind: str  # falling | falling_while_failing | rigid | ambiguous
    text: str
    owners: tuple[str, ...]  # the stewards of the team's boundaries (all stewards for the organisation)


def owners_of(cfg: ProcessConfig, group: str) -> tuple[str, ...]:
    if group == ORG:
        return tuple(cfg.stewards())
    return tuple(sorted({b.steward for b in cfg.boundaries if group in (b.from_team, b.to_team)}))


def signals(
    cfg: ProcessConfig,
    now: Satisfaction,
    before: Satisfaction | None,
    earlier: Satisfaction | None,
    failure: dict[str, tuple[float | None, float | None]] | None = None,
) -> list[Signal]:
    """The guide's warning signs in satisfaction: falling two months running; falling while the team's
    handoff failure rate rises (`failure`: team → (this month, last month)); more than a third of a
    group's answers finding processes too rigid, or too ambiguous. Only from figures that are shown."""
    out: list[Signal] = []
    name = {t.id: t.name for t in cfg.teams} | {ORG: cfg.organization.name}

    def avg(s: Satisfaction | None, g: str) -> float | None:
        if s is None:
            return None
        f = s.org if g == ORG else s.teams.get(g)
        return f.average if f is not None else None

    for g in [ORG, *now.teams]:
        f = now.org if g == ORG else now.teams.get(g)
        if f is None or f.average is None:
            continue
        # compared as shown (one decimal): "4.3 → 4.3 → 3.9" is not "falling two months running"
        a0, a1, a2 = (round(a, 1) if a is not None else None for a in (f.average, avg(before, g), avg(earlier, g)))
        if a1 is not None and a2 is not None and a0 < a1 < a2:
            out.append(
                Signal(
                    g,
                    "falling",
                    f"{name.get(g, g)}: satisfaction falling two months running ({a2:.1f} → {a1:.1f} → {a0:.1f})",
                    owners_of(cfg, g),
                )
            )
        rates = (failure or {}).get(g)
        if g != ORG and a1 is not None and a0 < a1 and rates and None not in rates and rates[0] > rates[1]:
            out.append(
                Signal(
                    g,
                    "falling_while_failing",
                    f"{name.get(g, g)}: satisfaction falls ({a1:.1f} → {a0:.1f}) while its handoff failure rate rises"
                    f" ({rates[1]:.0%} → {rates[0]:.0%})",
                    owners_of(cfg, g),
                )
            )
        for feeling in ("rigid", "ambiguous"):
            share = f.share(feeling)
            if share is not None and share > 1 / 3:
                out.append(
                    Signal(
                        g,
                        feeling,
                        f"{name.get(g, g)}: {share:.0%} of answers find processes {FEELING_LABELS[feeling]}",
                        owners_of(cfg, g),
                    )
                )
    return out
