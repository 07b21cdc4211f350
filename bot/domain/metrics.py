"""The month's figures, by SQL aggregation over the stored events. Nothing here loads history.

Definitions (the digest states them too):
- *sent* / *received*: handoffs created in the month, by sending / receiving team.
- *accepted*: handoffs whose `accepted` event falls in the month.
- *failed*: accepted handoffs that needed another round, i.e. were sent back for rework or clarification
  at least once. The `accepted` event records the round it closed; every send-back starts a new round
  on resubmission, so "needed another round" is exactly `round > 1` on that event.
- *handoff failure rate*: failed ÷ accepted, per sending team, per receiving team and per boundary.
- *cycle time*: from first submission (the handoff's `created` event) to its acceptance, over the month's
  accepted handoffs, per sending team and per boundary; median and 85th percentile, interpolated
  linearly between the two nearest ranks (like PostgreSQL's `percentile_cont`).
- *send-back reasons*: the month's send-back events, by kind and by reason text, grouped by `_wording`
  (white space collapsed and trimmed, case ignored, punctuation kept); the wording shown is the group's
  spelling that comes first in code point order.
- *first response*: a handoff's first `accepted`, `rework_requested` or `clarification_requested` event,
  i.e. the one that closed round 1 (`round = 1` on the event: a round only ends with one of them, and
  only a resubmission, after a send-back, starts round 2). A handoff counts in the month its first
  response happened. *Response time*: working hours (`bot.domain.core.worktime.WorkTime`, the organisation's days,
  hours and holidays) from its `created` event to that response. *Answered within SLA*: response time
  ≤ the boundary's `sla_hours` as configured when the figures are computed (snoozes put reminders off,
  not the SLA). Per boundary and for the organisation: answered, within SLA, median response time
  (interpolated like `percentile_cont`). Boundaries no longer configured are left out of these.
- *escalations*: the month's automatic `escalated` events by `data.level` (either party's path:
  reviewers or sender), and those made by hand (`data.manual`) counted apart; *snoozes*: the month's
  `snoozed` events; per boundary and for the organisation.
- *reached the steward level*: handoffs created in the month with an automatic `escalated` event whose
  `notify` includes `"steward"`, before the month's end; *reached the last level*: the month's automatic
  `escalated` events with `data.last` true. Both per boundary (the "frequent escalations" signal).
- *overdue at the month's end*, per receiving team: handoffs that were active at the month's end (open,
  or sent back and waiting for their sender) whose deadline (`bot.domain.sla.deadline`: the round's start plus
  the SLA and its snoozes, in working hours) had passed by then. The round's clock is rebuilt from the
  events before the month's end, not read from the current row.

Every query is bounded by the month: `handoff (created_at, from_team, to_team)` and
`handoff_event (kind, at)` are indexed, and the join to `handoff` is by primary key, so the cost follows
the month's activity, not the history. Counts and sums are aggregated in SQL; what needs working time
(response times, their median, within SLA, deadlines) is computed in Python over rows SQL bounded: the
month's first responses (`handoff_event (kind, at)`), and for *overdue at the month's end* the handoffs
active then: active now (`handoff (to_team, state)`), accepted since the month's end
(`handoff (accepted_at)`) or cancelled since (`handoff_event (kind, at)`), each created before the
month's end, with their events read by `handoff_event (handoff_id, seq)`. A closed month never changes (events are appended at the time
they happen), so its figures are kept in `month_rollup` once computed and read from there afterwards;
`figures()` is the entry point that does so.
"""

from __future__ import annotations

import statistics
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from sqlalchemy import bindparam, text, update
from sqlmodel import select

from bot.domain import sla
from bot.domain.core.worktime import WorkTime
from storage.db import Database
from storage.models import Handoff, MonthRollup

PERCENTILES = (0.5, 0.85)


@dataclass
class Side:
    """Accepted handoffs and their outcome, from one side (a team as sender or receiver, a boundary)."""

    accepted: int = 0
    failed: int = 0
    cycle: dict[float, float] = field(default_factory=dict)  # percentile → seconds

    @property
    def failure_rate(self) -> float | None:
        return self.failed / self.accepted if self.accepted else None


@dataclass
class Responses:
    """First responses that happened in the month (see the module's definitions)."""

    answered: int = 0
    within_sla: int = 0
    median_hours: float | None = None  # working hours, created → first response

    @property
    def share(self) -> float | None:
        return self.within_sla / self.answered if self.answered else None


@dataclass
class TeamMonth:
    team: str
    sent: int = 0
    received: int = 0
    as_sender: Side = field(default_factory=Side)
    as_receiver: Side = field(default_factory=Side)
    reasons: Counter = field(default_factory=Counter)  # (kind, reason) → count, for handoffs it sent
    sent_back: Counter = field(default_factory=Counter)  # kind → count, for handoffs it sent
    fasttracks_approved: int = 0  # decided in the month
    fasttracks_denied: int = 0
    fasttracks_waiting: int = 0  # asked before the month's end and not decided by then
    open_overdue: int = 0  # received, active at the month's end and past its deadline then


@dataclass
class BoundaryMonth:
    from_team: str
    to_team: str
    created: int = 0
    side: Side = field(default_factory=Side)
    reasons: Counter = field(default_factory=Counter)
    sent_back: Counter = field(default_factory=Counter)
    responses: Responses = field(default_factory=Responses)
    escalations: Counter = field(default_factory=Counter)  # level → automatic escalations in the month
    manual_escalations: int = 0
    snoozes: int = 0
    reached_steward: int = 0  # handoffs created in the month that reached the steward level by its end
    reached_last: int = 0  # automatic escalations at the last level of their path, in the month


@dataclass
class Month:
    period: str
    teams: dict[str, TeamMonth]
    boundaries: dict[tuple[str, str], BoundaryMonth]
    total: BoundaryMonth  # the organisation as one "boundary": created, side, reasons
    wording: dict[str, str] = field(default_factory=dict)  # a reason's key → its first wording seen
    exceptions: Counter = field(default_factory=Counter)  # (team, element, reason) → fast-tracks approved in the month
    oldest_waiting: datetime | None = None  # the oldest fast-track request still undecided at the month's end
    clocked: bool = False  # computed with the configuration: first responses and overdue figures are in

    @property
    def active(self) -> bool:
        return bool(
            self.total.created
            or self.total.side.accepted
            or sum(self.total.sent_back.values())
            or sum(self.total.escalations.values())
            or self.total.manual_escalations
            or self.total.snoozes
            or self.exceptions
            or any(t.fasttracks_denied or t.fasttracks_waiting for t in self.teams.values())
        )


def _cycle_seconds(dialect: str) -> str:
    if dialect == "postgresql":
        return "EXTRACT(EPOCH FROM (e.at - h.created_at))"
    return "(julianday(e.at) - julianday(h.created_at)) * 86400.0"


def _rank_bounds(n: int, p: float) -> tuple[int, int, float]:
    """1-based ranks around the p-th percentile of n sorted values, and the weight of the upper one."""
    pos = p * (n - 1)
    lo = int(pos)
    return lo + 1, min(lo + 2, n), pos - lo


def _accepted(db: Database, start: datetime, end: datetime) -> list[tuple]:
    """The month's accepted handoffs, aggregated three ways in one statement: per boundary (f, t), per
    sending team (f) and for the organisation: (level, f, t, n, fails, {percentile: seconds}), where n
    counts them and fails those that needed another round."""
    # `handoff.accepted_at` is the accepted event's time, written in the same transaction: repeating the
    # month on it changes no result but bounds the handoff side of the join by an index, so no planner
    # ever scans the whole history to join the month's events.
    source = """
        FROM handoff_event e
        JOIN handoff h ON h.id = e.handoff_id AND h.accepted_at >= :start AND h.accepted_at < :end
        WHERE e.kind = 'accepted' AND e.at >= :start AND e.at < :end"""
    params = {"start": start, "end": end}
    if db.engine.dialect.name == "postgresql":
        sql = f"""
            SELECT GROUPING(h.from_team, h.to_team), h.from_team, h.to_team, COUNT(*),
                   SUM(CASE WHEN e.round > 1 THEN 1 ELSE 0 END),
                   percentile_cont(ARRAY[{", ".join(str(p) for p in PERCENTILES)}])
                       WITHIN GROUP (ORDER BY {_cycle_seconds("postgresql")})
            {source}
            GROUP BY GROUPING SETS ((h.from_team, h.to_team), (h.from_team), ())"""
        level = {0: "b", 1: "t", 3: "o"}
        with db.read() as session:
            return [
                (level[g], f, t, int(n), int(fails or 0), dict(zip(PERCENTILES, map(float, cuts), strict=True)))
                for g, f, t, n, fails, cuts in session.execute(text(sql), params)
                if n
            ]  # () gives a row even for none

    # SQLite has no percentile aggregate: rank the rows with window functions and keep only those at the
    # ranks the percentiles need (at most four per group): lo = floor(p*(n-1)) + 1 and hi = lo + 1.
    ranks = " OR ".join(f"rn = ({round(p * 100)} * (n - 1)) / 100 + {k}" for p in PERCENTILES for k in (1, 2))

    def ranked(columns: str) -> str:
        over = f"PARTITION BY {columns}" if columns else ""
        keys = f"{columns}, " if columns else ""
        return (
            f"SELECT {keys}rn, n, fails, s FROM (SELECT {keys}s, ROW_NUMBER() OVER ({over} ORDER BY s) AS rn, "
            f"COUNT(*) OVER ({over}) AS n, SUM(r) OVER ({over}) AS fails FROM c) w WHERE {ranks}"
        )

    sql = f"""
        WITH c AS MATERIALIZED (
            SELECT h.from_team AS f, h.to_team AS t, CASE WHEN e.round > 1 THEN 1 ELSE 0 END AS r,
                   {_cycle_seconds(db.engine.dialect.name)} AS s
            {source}
        )
        SELECT 'b' AS level, f, t, rn, n, fails, s FROM ({ranked("f, t")}) b
        UNION ALL SELECT 't', f, NULL, rn, n, fails, s FROM ({ranked("f")}) tf
        UNION ALL SELECT 'o', NULL, NULL, rn, n, fails, s FROM ({ranked("")}) o
    """
    groups: dict[tuple, tuple[dict[int, float], int, int]] = {}
    with db.read() as session:
        for lvl, f, t, rn, n, fails, seconds in session.execute(text(sql), params):
            values, _, _ = groups.setdefault((lvl, f, t), ({}, int(n), int(fails or 0)))
            values[int(rn)] = float(seconds)
    out = []
    for (lvl, f, t), (values, n, fails) in groups.items():
        cuts = {}
        for p in PERCENTILES:
            lo, hi, weight = _rank_bounds(n, p)
            cuts[p] = values[lo] + (values[hi] - values[lo]) * weight
        out.append((lvl, f, t, n, fails, cuts))
    return out


def _fill(side: Side, n: int, fails: int, cuts: dict[float, float]) -> None:
    side.accepted, side.failed, side.cycle = n, fails, cuts


def _wording(reason: str | None) -> str:
    """A send-back reason as grouped: runs of white space made one space, trimmed; nothing else changes
    (punctuation counts: "Wireframes missing." and "Wireframes missing" are two reasons). Two reasons are
    one when these are equal ignoring case (`str.casefold`)."""
    return " ".join((reason or "").split()) or "(no reason given)"


def _dt(value) -> datetime:
    """A datetime from a raw `text()` row (SQLite gives strings)."""
    return value if isinstance(value, datetime) else datetime.fromisoformat(str(value))


def _json_field(dialect: str, key: str) -> str:
    """`handoff_event.data`'s `key` as SQL text (a list comes back as its JSON text)."""
    if dialect == "postgresql":
        return f"(e.data->>'{key}')"
    return f"CAST(json_extract(e.data, '$.{key}') AS TEXT)"


def _flag(dialect: str, key: str) -> str:
    """1 when `data.key` is JSON true, else 0 (missing included)."""
    if dialect == "postgresql":
        return f"(CASE WHEN e.data->>'{key}' = 'true' THEN 1 ELSE 0 END)"
    return f"(CASE WHEN json_extract(e.data, '$.{key}') = 1 THEN 1 ELSE 0 END)"


RESPONSES = ("accepted", "rework_requested", "clarification_requested")
ROUND_STARTS = {
    "created": "open",
    "resubmitted": "open",
    "rework_requested": "rework_requested",
    "clarification_requested": "clarification_requested",
}  # the state each leaves, when it started a wait


def _clock(db: Database, start: datetime, end: datetime, cfg, boundary, team, total: BoundaryMonth) -> None:
    """The figures that need the configuration and working time: first responses (answered, within SLA,
    median) per boundary and overall, and each receiving team's handoffs overdue at the month's end."""
    work = WorkTime.of(cfg)
    params = {"start": start, "end": end}
    kinds = ", ".join(f"'{k}'" for k in RESPONSES)
    with db.read() as session:
        firsts = list(
            session.execute(
                text(f"""
            SELECT h.from_team, h.to_team, h.created_at, e.at
            FROM handoff_event e JOIN handoff h ON h.id = e.handoff_id
            WHERE e.kind IN ({kinds}) AND e.at >= :start AND e.at < :end AND e.round = 1"""),
                params,
            )
        )
    hours: dict[tuple[str, str], list[float]] = {}
    for f, t, created, at in firsts:
        b = cfg.boundary(f, t)
        if b is None:
            continue
        taken = work.between(_dt(created), _dt(at))
        hours.setdefault((f, t), []).append(taken)
        for row in (boundary(f, t), total):
            row.responses.answered += 1
            row.responses.within_sla += taken <= b.sla_hours + 1e-9
    for key, values in hours.items():
        boundary(*key).responses.median_hours = statistics.median(values)
    if hours:
        total.responses.median_hours = statistics.median([v for values in hours.values() for v in values])

    # active at the month's end: active now, accepted since, or cancelled since; each created before it
    active = ", ".join(f"'{k}'" for k in ("open", "rework_requested", "clarification_requested"))
    starts = ", ".join(f"'{k}'" for k in (*ROUND_STARTS, "accepted", "cancelled"))
    teams = [t.id for t in cfg.teams]
    if not teams:
        return
    sql = text(f"""
        WITH c AS (
            SELECT id FROM handoff WHERE to_team IN :teams AND state IN ({active}) AND created_at < :end
            UNION SELECT id FROM handoff WHERE accepted_at >= :end AND created_at < :end
            UNION SELECT x.handoff_id FROM handoff_event x JOIN handoff hx ON hx.id = x.handoff_id
                  WHERE x.kind = 'cancelled' AND x.at >= :end AND hx.created_at < :end
        )
        SELECT h.from_team, h.to_team, s.kind, s.at,
               (SELECT COUNT(*) FROM handoff_event z
                WHERE z.handoff_id = h.id AND z.seq > s.seq AND z.kind = 'snoozed' AND z.at < :end)
        FROM c JOIN handoff h ON h.id = c.id
        JOIN handoff_event s ON s.handoff_id = h.id AND s.seq = (
            SELECT MAX(y.seq) FROM handoff_event y WHERE y.handoff_id = h.id AND y.at < :end AND y.kind IN ({starts}))
        """).bindparams(bindparam("teams", expanding=True))
    with db.read() as session:
        rows = list(session.execute(sql, {"end": end, "teams": teams}))
    for f, t, kind, since, snoozes in rows:
        state = ROUND_STARTS.get(kind)
        if state is None:  # accepted or cancelled before the month's end
            continue
        then = Handoff(
            from_team=f,
            to_team=t,
            sender="",
            title="",
            state=state,
            created_at=_dt(since),
            updated_at=_dt(since),
            waiting_since=_dt(since),
            snoozes=int(snoozes or 0),
        )
        due = sla.deadline(cfg, then, work)
        if due is not None and due < end:
            team(t).open_overdue += 1


def month(db: Database, period: str, start: datetime, end: datetime, teams: list[str], cfg=None) -> Month:
    """All figures for the month [start, end) (naive UTC), for every team listed (zeros included).
    `cfg` (bot.domain.core.process.ProcessConfig) gives the SLAs and working time: without it the first-response
    and overdue figures stay empty."""
    team_rows = {t: TeamMonth(t) for t in teams}
    boundaries: dict[tuple[str, str], BoundaryMonth] = {}
    total = BoundaryMonth("*", "*")
    wording: dict[str, str] = {}

    def team(t: str) -> TeamMonth:
        return team_rows.setdefault(t, TeamMonth(t))

    def boundary(f: str, t: str) -> BoundaryMonth:
        return boundaries.setdefault((f, t), BoundaryMonth(f, t))

    params = {"start": start, "end": end}
    with db.read() as session:
        created = session.execute(
            text("""
            SELECT from_team, to_team, COUNT(*) FROM handoff
            WHERE created_at >= :start AND created_at < :end GROUP BY from_team, to_team"""),
            params,
        )
        for f, t, n in created:
            boundary(f, t).created += n
            team(f).sent += n
            team(t).received += n
            total.created += n

        reasons = session.execute(
            text("""
            SELECT h.from_team, h.to_team, e.kind, e.reason, COUNT(*)
            FROM handoff_event e JOIN handoff h ON h.id = e.handoff_id
            WHERE e.kind IN ('rework_requested', 'clarification_requested') AND e.at >= :start AND e.at < :end
            GROUP BY h.from_team, h.to_team, e.kind, e.reason"""),
            params,
        )
        for f, t, kind, reason, n in sorted(reasons, key=lambda r: _wording(r[3])):  # the first spelling shown
            said = _wording(reason)
            wording.setdefault(said.casefold(), said)
            key = (kind, said.casefold())
            for row in (boundary(f, t), team(f), total):
                row.reasons[key] += n
                row.sent_back[kind] += n

        dialect = db.engine.dialect.name
        escalated = session.execute(
            text(f"""
            SELECT h.from_team, h.to_team, e.kind, {_json_field(dialect, "level")}, {_flag(dialect, "manual")},
                   {_flag(dialect, "last")}, COUNT(*)
            FROM handoff_event e JOIN handoff h ON h.id = e.handoff_id
            WHERE e.kind IN ('escalated', 'snoozed') AND e.at >= :start AND e.at < :end
            GROUP BY h.from_team, h.to_team, e.kind, {_json_field(dialect, "level")}, {_flag(dialect, "manual")},
                     {_flag(dialect, "last")}"""),
            params,
        )
        for f, t, kind, level, manual, last, n in escalated:
            for row in (boundary(f, t), total):
                if kind == "snoozed":
                    row.snoozes += n
                elif manual:
                    row.manual_escalations += n
                elif level is not None:
                    row.escalations[int(level)] += n
                    row.reached_last += n if last else 0

        # notify is a JSON list of plain words and ids: its text holds "steward" in quotes only for that word
        steward = session.execute(
            text(f"""
            SELECT h.from_team, h.to_team, COUNT(*) FROM handoff h
            WHERE h.created_at >= :start AND h.created_at < :end AND EXISTS (
                SELECT 1 FROM handoff_event e WHERE e.handoff_id = h.id AND e.kind = 'escalated' AND e.at < :end
                AND {_flag(dialect, "manual")} = 0 AND {_json_field(dialect, "notify")} LIKE '%"steward"%')
            GROUP BY h.from_team, h.to_team"""),
            params,
        )
        for f, t, n in steward:
            boundary(f, t).reached_steward += n
            total.reached_steward += n

    for level, f, t, n, fails, cuts in _accepted(db, start, end):
        if level == "b":
            _fill(boundary(f, t).side, n, fails, cuts)
            receiver = team(t).as_receiver  # a team's figures as receiver add up from its boundaries
            receiver.accepted += n
            receiver.failed += fails
        elif level == "t":
            _fill(team(f).as_sender, n, fails, cuts)
        else:
            _fill(total.side, n, fails, cuts)
    if cfg is not None:
        _clock(db, start, end, cfg, boundary, team, total)
    exceptions: Counter = Counter()
    oldest = None
    with db.read() as session:
        decided = session.execute(
            text("""
            SELECT f.team, f.element, f.reason, e.kind, COUNT(*)
            FROM fasttrack_event e JOIN fasttrack f ON f.id = e.request_id
            WHERE e.kind IN ('approved', 'denied') AND e.at >= :start AND e.at < :end
            GROUP BY f.team, f.element, f.reason, e.kind"""),
            params,
        )
        for t, element, reason, kind, n in decided:
            if kind == "approved":
                team(t).fasttracks_approved += n
                exceptions[(t, element, reason)] += n
            else:
                team(t).fasttracks_denied += n
        # undecided at the month's end: pending now, or decided after it; each part bounded by an index
        # (state; decided_at), never a scan of every request ever made
        waiting = session.execute(
            text("""
            SELECT team, COUNT(*), MIN(created_at) FROM (
              SELECT team, created_at FROM fasttrack WHERE state = 'pending' AND created_at < :end
              UNION ALL
              SELECT team, created_at FROM fasttrack WHERE decided_at >= :end AND created_at < :end
            ) w GROUP BY team"""),
            params,
        )
        for t, n, first in waiting:
            team(t).fasttracks_waiting += n
            first = first if isinstance(first, datetime) else datetime.fromisoformat(str(first))
            oldest = first if oldest is None else min(oldest, first)
    return Month(period, team_rows, boundaries, total, wording, exceptions, oldest, clocked=cfg is not None)


def behind(
    db: Database,
    start: datetime,
    end: datetime,
    *,
    from_team: str,
    to_team: str | None = None,
    failed: bool = False,
    slowest: bool = False,
    escalated: bool = False,
    limit: int = 5,
) -> list[tuple[int, str, str | None]]:
    """The handoffs behind a signal, as (id, title, permalink of its card or None), at most `limit`:
    `failed`: the team's handoffs accepted in the month after a send-back (oldest acceptance first);
    `slowest`: the team's handoffs accepted in the month, longest cycle time first; `escalated`: the
    boundary's handoffs created in the month that reached the steward level by its end. Bounded by the
    month through the same indexes as the figures."""
    params = {"start": start, "end": end, "f": from_team, "t": to_team}
    if escalated:
        dialect = db.engine.dialect.name
        sql = f"""
            SELECT h.id FROM handoff h
            WHERE h.created_at >= :start AND h.created_at < :end AND h.from_team = :f AND h.to_team = :t AND EXISTS (
                SELECT 1 FROM handoff_event e WHERE e.handoff_id = h.id AND e.kind = 'escalated' AND e.at < :end
                AND {_flag(dialect, "manual")} = 0 AND {_json_field(dialect, "notify")} LIKE '%"steward"%')
            ORDER BY h.created_at, h.id"""
    else:
        sql = """
            SELECT h.id FROM handoff h
            JOIN handoff_event e ON e.handoff_id = h.id AND e.kind = 'accepted' AND e.at >= :start AND e.at < :end
            WHERE h.accepted_at >= :start AND h.accepted_at < :end AND h.from_team = :f""" + (
            " AND e.round > 1 ORDER BY h.accepted_at, h.id" if failed else " ORDER BY h.accepted_at, h.id"
        )
    with db.read() as session:
        ids = [row[0] for row in session.execute(text(sql), params)]
        rows = {h.id: h for h in session.exec(select(Handoff).where(Handoff.id.in_(ids)))} if ids else {}
    found = [rows[i] for i in ids if i in rows]
    if slowest:
        found.sort(key=lambda h: (-(h.accepted_at - h.created_at).total_seconds(), h.id))
    return [(h.id, h.title, h.permalink) for h in found[:limit]]


# -- closed months, kept -------------------------------------------------------------------------------

CLOSED_AFTER = timedelta(hours=1)  # a transaction that began before the month ended has committed by then
ROLLUP_VERSION = (
    2  # 2: reasons grouped without dropping a trailing "." or "!"; a month kept by an older rule is computed again
)


def _side_json(side: Side) -> dict:
    return {"accepted": side.accepted, "failed": side.failed, "cycle": {str(p): v for p, v in side.cycle.items()}}


def _side(data: dict) -> Side:
    return Side(data["accepted"], data["failed"], {float(p): v for p, v in data["cycle"].items()})


def _counted(row) -> dict:
    return {"reasons": [[k, r, n] for (k, r), n in row.reasons.items()], "sent_back": dict(row.sent_back)}


def _recount(row, data: dict) -> None:
    row.reasons = Counter({(k, r): n for k, r, n in data["reasons"]})
    row.sent_back = Counter(data["sent_back"])


def _clock_json(b: BoundaryMonth) -> dict:
    r = b.responses
    return {
        "responses": [r.answered, r.within_sla, r.median_hours],
        "escalations": {str(level): n for level, n in b.escalations.items()},
        "manual_escalations": b.manual_escalations,
        "snoozes": b.snoozes,
        "reached_steward": b.reached_steward,
        "reached_last": b.reached_last,
    }


def _reclock(row: BoundaryMonth, data: dict) -> None:
    """The escalation figures of a kept month; a month kept before they existed reads as none."""
    row.responses = Responses(*data.get("responses", (0, 0, None)))
    row.escalations = Counter({int(level): n for level, n in data.get("escalations", {}).items()})
    row.manual_escalations = data.get("manual_escalations", 0)
    row.snoozes = data.get("snoozes", 0)
    row.reached_steward = data.get("reached_steward", 0)
    row.reached_last = data.get("reached_last", 0)


def to_json(m: Month) -> dict:
    return {
        "period": m.period,
        "teams": [
            {
                "team": t.team,
                "sent": t.sent,
                "received": t.received,
                "as_sender": _side_json(t.as_sender),
                "as_receiver": _side_json(t.as_receiver),
                **_counted(t),
                "fasttracks": [t.fasttracks_approved, t.fasttracks_denied, t.fasttracks_waiting],
                "open_overdue": t.open_overdue,
            }
            for t in m.teams.values()
        ],
        "boundaries": [
            {
                "from": b.from_team,
                "to": b.to_team,
                "created": b.created,
                "side": _side_json(b.side),
                **_counted(b),
                **_clock_json(b),
            }
            for b in [*m.boundaries.values(), m.total]
        ],
        "wording": m.wording,
        "exceptions": [[t, e, r, n] for (t, e, r), n in m.exceptions.items()],
        "oldest_waiting": m.oldest_waiting.isoformat() if m.oldest_waiting else None,
        "clocked": m.clocked,
        "version": ROLLUP_VERSION,
    }


def from_json(data: dict, teams: list[str]) -> Month:
    rows = {}
    for t in data["teams"]:
        rows[t["team"]] = row = TeamMonth(
            t["team"], t["sent"], t["received"], _side(t["as_sender"]), _side(t["as_receiver"])
        )
        _recount(row, t)
        row.fasttracks_approved, row.fasttracks_denied, row.fasttracks_waiting = t.get("fasttracks", (0, 0, 0))
        row.open_overdue = t.get("open_overdue", 0)
    for team in teams:
        rows.setdefault(team, TeamMonth(team))
    boundaries = {}
    for b in data["boundaries"]:
        row = BoundaryMonth(b["from"], b["to"], b["created"], _side(b["side"]))
        _recount(row, b)
        _reclock(row, b)
        boundaries[(row.from_team, row.to_team)] = row
    total = boundaries.pop(("*", "*"))
    oldest = data.get("oldest_waiting")
    return Month(
        data["period"],
        rows,
        boundaries,
        total,
        data["wording"],
        Counter({(t, e, r): n for t, e, r, n in data.get("exceptions", [])}),
        datetime.fromisoformat(oldest) if oldest else None,
        data.get("clocked", True),
    )


def figures(
    db: Database, period: str, start: datetime, end: datetime, teams: list[str], now: datetime, cfg=None
) -> Month:
    """`month()`, read from `month_rollup` when the month is closed and was computed before; a closed
    month computed now is kept there. `now` is the real time (naive UTC). A month kept without `cfg`
    (no first-response or overdue figures: `clocked` false) is computed again, and replaced, when asked
    for with it; one kept before those figures existed reads them as empty."""
    closed = end + CLOSED_AFTER <= now
    kept = None
    if closed:
        with db.read() as session:
            kept = session.get(MonthRollup, period)
        if (
            kept is not None
            and kept.start == start
            and kept.end == end
            and (cfg is None or kept.data.get("clocked", True))
            and kept.data.get("version", 1) >= ROLLUP_VERSION
        ):
            return from_json(kept.data, teams)
    m = month(db, period, start, end, teams, cfg)
    if closed:
        with db.write() as session:
            if kept is not None and kept.start == start and kept.end == end:
                session.execute(
                    update(MonthRollup).where(MonthRollup.period == period).values(computed_at=now, data=to_json(m))
                )
            else:
                session.execute(
                    db.insert(MonthRollup)
                    .values(period=period, start=start, end=end, computed_at=now, data=to_json(m))
                    .on_conflict_do_nothing(index_elements=["period"])
                )
    return m
