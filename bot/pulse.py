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
stays open `open_days`; the week counts in the month in which it closes (see `weeks_of`).
"""

from __future__ import annotations

import hashlib
import hmac
import logging
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date, datetime, timedelta, timezone
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from sqlalchemy import and_, func, update
from sqlmodel import Session, delete, select

from bot import outbox
from bot.items import NotFound, Outcome, RuleError
from bot.outbox import POST, UPDATE, Message
from bot.process import ProcessConfig, Pulse
from storage.db import Database
from storage.models import MemberTz, PulseAnswer, PulseComment, PulseOptout, PulseRecipient

log = logging.getLogger("steward")

SCORES = {1: "Strongly disagree", 2: "Disagree", 3: "Neutral", 4: "Agree", 5: "Strongly agree"}
FEELINGS = ("rigid", "right", "ambiguous")  # "Our processes are: too rigid · about right · too ambiguous"
FEELING_LABELS = {"rigid": "too rigid", "right": "about right", "ambiguous": "too ambiguous"}
ORG = "*"  # the organisation's group
PAUSE_DAYS = 28
COMMENT_MAX = 500
BATCH = 500  # people written per transaction: a fan-out never holds the database for long
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
    return moment.astimezone(timezone.utc).replace(tzinfo=None)


def window(p: Pulse, week: str, tz: ZoneInfo) -> tuple[datetime, datetime, datetime | None]:
    """(sent, closes, reminder) of a week for a person in `tz`, naive UTC: their own `send_at`."""
    day = parse_week(week) + timedelta(days=p.weekday)
    local = datetime.combine(day, p.at, tzinfo=tz)  # wall-clock arithmetic below: DST keeps 10:00 at 10:00
    remind = _utc(local + timedelta(days=p.remind_after_days)) if p.remind_after_days else None
    return _utc(local), _utc(local + timedelta(days=p.open_days)), remind


def close_day(p: Pulse, week: str) -> date:
    return parse_week(week) + timedelta(days=p.weekday + p.open_days)


def weeks_of(p: Pulse, period: str) -> list[str]:
    """The weeks that count in a month (YYYY-MM): those that close in it (by their calendar date), so a
    month's figures are final when its digest is written."""
    year, month = map(int, period.split("-"))
    day, weeks = date(year, month, 1) - timedelta(days=14), []
    while day <= date(year, month, 28) + timedelta(days=7):
        week = week_id(day)
        if close_day(p, week).strftime("%Y-%m") == period and week not in weeks:
            weeks.append(week)
        day += timedelta(days=7)
    return weeks


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
    return Message(outbox.update_of(key), item_of(week), UPDATE, user, "pulse_dm", {"week": week, "user": user}, anchor=key)


# -- time zones ----------------------------------------------------------------------------------------------


def store_timezones(db: Database, zones: dict[str, str], now: datetime) -> int:
    """Remember people's time zones (from Slack's users.list); returns how many changed."""
    changed = 0
    with db.write() as session:
        known = {row.user: row for row in session.exec(select(MemberTz))}
        for user, tz in zones.items():
            row = known.get(user)
            if row is None:
                session.add(MemberTz(user=user, tz=tz, updated_at=now))
                changed += 1
            elif row.tz != tz:
                row.tz, row.updated_at = tz, now
                session.add(row)
                changed += 1
            else:
                row.updated_at = now
                session.add(row)
    return changed


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
        today = now.replace(tzinfo=timezone.utc).astimezone(tz).date()
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
        have = set(session.execute(select(PulseRecipient.week, PulseRecipient.user).where(PulseRecipient.week.in_(weeks))).all()) if weeks else set()
    todo = [d for d in due if (d[0], d[1]) not in have]
    out.paused = sum(1 for d in todo if d[1] in off)
    todo = [d for d in todo if d[1] not in off]
    # a week that began and closed while nothing ran (once the pulse has run before): skipped, and said
    missed = [d for d in passed if first is not None and d[0] > first and (d[0], d[1]) not in have and d[1] not in off]
    for rows, state in ((todo, ASKED), (missed, SKIPPED)):
        for start in range(0, len(rows), BATCH):
            with db.write() as session:
                messages = []
                for week, user, teams, tz, (sent, closes, remind) in rows[start:start + BATCH]:
                    inserted = session.execute(db.insert(PulseRecipient.__table__).values(
                        week=week, user=user, teams=teams, tz=tz, due_at=sent, closes_at=closes, remind_at=remind, state=state,
                        reminded=False, answered=False, opted_out=False).on_conflict_do_nothing(index_elements=["week", "user"])
                        .returning(PulseRecipient.__table__.c.user)).first()  # a row back: this run wrote it
                    if inserted is None:
                        continue
                    if state == ASKED:
                        out.asked += 1
                        messages.append(Message(dm_key(week, user), item_of(week), POST, user, "pulse_dm", {"week": week, "user": user}))
                    else:
                        out.skipped += 1
                out.keys += outbox.add(session, db, messages, now)
    if out.skipped:
        weeks_missed = sorted({d[0] for d in missed})
        log.warning("pulse: %d survey%s of %s not sent: the week closed while the clock was not running",
                    out.skipped, "s" if out.skipped != 1 else "", ", ".join(weeks_missed))
    return out


def remind_due(db: Database, cfg: ProcessConfig, now: datetime) -> list[str]:
    """One reminder, to people asked this week who have not answered (nor paused), once its day has come."""
    if not cfg.pulse_on:
        return []
    keys: list[str] = []
    while True:
        with db.write() as session:
            rows = list(session.exec(select(PulseRecipient).where(
                PulseRecipient.state == ASKED, PulseRecipient.reminded.is_(False), PulseRecipient.answered.is_(False),
                PulseRecipient.opted_out.is_(False), PulseRecipient.remind_at <= now, PulseRecipient.closes_at > now).limit(BATCH)))
            messages = []
            for r in rows:
                won = session.execute(update(PulseRecipient).where(
                    PulseRecipient.week == r.week, PulseRecipient.user == r.user, PulseRecipient.reminded.is_(False))
                    .values(reminded=True)).rowcount
                if won == 1:
                    messages.append(Message(f"{dm_key(r.week, r.user)}:reminder", item_of(r.week), POST, r.user, "pulse_reminder",
                                            {"week": r.week, "user": r.user}))
            keys += outbox.add(session, db, messages, now)
        if len(rows) < BATCH:
            return keys


# -- answering ----------------------------------------------------------------------------------------------


def _asked(session: Session, week: str, user: str, now: datetime) -> PulseRecipient:
    row = session.get(PulseRecipient, (week, user))
    if row is None or row.state != ASKED:
        raise NotFound("This survey was not sent to you.")
    if now >= row.closes_at:
        raise Closed(row.closes_at)
    return row


def answer(db: Database, sealer: Sealer, user: str, week: str, now: datetime, *, score: int | None = None,
           feeling: str | None = None) -> Outcome:
    """Record (or change) a person's answer for a week: a score 1-5 and/or how processes feel. Each of
    their groups gets its own keyed, sealed row; the recipient row only learns that they answered."""
    if score is not None and score not in SCORES:
        raise RuleError("Choose a score from 1 to 5.")
    if feeling is not None and feeling not in FEELINGS:
        raise RuleError("Choose too rigid, about right or too ambiguous.")
    if score is None and feeling is None:
        raise RuleError("Choose a score from 1 to 5.")
    parse_week(week)
    with db.write() as session:
        row = _asked(session, week, user, now)
        for scope in [*row.teams, ORG]:
            key = sealer.key("answer", week, scope, user)
            old = session.get(PulseAnswer, key)
            was = sealer.open(key, old.sealed) if old is not None else (0, 0)
            new = (score or was[0], FEELINGS.index(feeling) + 1 if feeling else was[1])
            sealed = sealer.seal(key, *new)
            session.execute(db.insert(PulseAnswer).values(key=key, week=week, scope=scope, sealed=sealed)
                            .on_conflict_do_update(index_elements=["key"], set_={"sealed": sealed}))
        if not row.answered or row.opted_out:
            row.answered, row.opted_out = True, False
            session.add(row)
        keys = outbox.add(session, db, [_dm_update(week, user)], now)
    return Outcome(row, changed=True, keys=keys)


def comment(db: Database, sealer: Sealer, user: str, week: str, text: str | None, now: datetime) -> Outcome:
    """An anonymous comment for the week (a second one replaces the first)."""
    text = " ".join((text or "").split())
    if not text:
        raise RuleError("Write a comment, or close the form.", "comment")
    if len(text) > COMMENT_MAX:
        raise RuleError(f"At most {COMMENT_MAX} characters.", "comment")
    parse_week(week)
    with db.write() as session:
        row = _asked(session, week, user, now)
        for scope in [*row.teams, ORG]:
            key = sealer.key("comment", week, scope, user)
            session.execute(db.insert(PulseComment).values(key=key, week=week, scope=scope, text=text)
                            .on_conflict_do_update(index_elements=["key"], set_={"text": text}))
        if not row.answered or row.opted_out:
            row.answered, row.opted_out = True, False
            session.add(row)
        keys = outbox.add(session, db, [_dm_update(week, user)], now)
    return Outcome(row, changed=True, keys=keys)


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
    return {"recipient": row, "score": score or None, "feeling": FEELINGS[feeling - 1] if feeling else None,
            "commented": commented, "optout": off}


# -- pause, stop, resume ---------------------------------------------------------------------------------


def _optout(db: Database, user: str, week: str | None, now: datetime, until: datetime | None, stop: bool) -> Outcome:
    with db.write() as session:
        row = session.get(PulseOptout, user)
        if stop or until is not None:
            if row is None:
                row = PulseOptout(user=user, until=until, since=now)
            else:
                row.until, row.since = until, now
            session.add(row)
            # this week's survey, if still open and unanswered, is counted apart from non-responders
            session.execute(update(PulseRecipient).where(PulseRecipient.user == user, PulseRecipient.state == ASKED,
                                                         PulseRecipient.answered.is_(False), PulseRecipient.closes_at > now)
                            .values(opted_out=True))
        else:
            if row is not None:
                session.delete(row)
            session.execute(update(PulseRecipient).where(PulseRecipient.user == user, PulseRecipient.state == ASKED,
                                                         PulseRecipient.closes_at > now).values(opted_out=False))
        messages = []
        if week is not None and session.get(PulseRecipient, (week, user)) is not None:
            messages.append(_dm_update(week, user))
        keys = outbox.add(session, db, messages, now)
    return Outcome(row, changed=True, keys=keys)


def pause(db: Database, user: str, week: str | None, now: datetime, days: int = PAUSE_DAYS) -> Outcome:
    return _optout(db, user, week, now, now + timedelta(days=days), stop=False)


def stop(db: Database, user: str, week: str | None, now: datetime) -> Outcome:
    return _optout(db, user, week, now, None, stop=True)


def resume(db: Database, user: str, week: str | None, now: datetime) -> Outcome:
    return _optout(db, user, week, now, None, stop=False)


def recipients(db: Database, weeks: Iterable[str]) -> list[PulseRecipient]:
    weeks = list(weeks)
    if not weeks:
        return []
    with db.read() as session:
        return list(session.exec(select(PulseRecipient).where(PulseRecipient.week.in_(weeks), PulseRecipient.state == ASKED)))
