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
- *send-back reasons*: the month's send-back events, by kind and by reason text (case and surrounding
  space ignored), most frequent first.

Every query is bounded by the month: `handoff.created_at`, and `handoff_event (kind, at)` are indexed,
and the join to `handoff` is by primary key, so the cost follows the month's activity, not the history.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from dataclasses import dataclass, field
from datetime import datetime

from sqlalchemy import text

from storage.db import Database

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
class TeamMonth:
    team: str
    sent: int = 0
    received: int = 0
    as_sender: Side = field(default_factory=Side)
    as_receiver: Side = field(default_factory=Side)
    reasons: Counter = field(default_factory=Counter)  # (kind, reason) → count, for handoffs it sent
    sent_back: Counter = field(default_factory=Counter)  # kind → count, for handoffs it sent


@dataclass
class BoundaryMonth:
    from_team: str
    to_team: str
    created: int = 0
    side: Side = field(default_factory=Side)
    reasons: Counter = field(default_factory=Counter)
    sent_back: Counter = field(default_factory=Counter)


@dataclass
class Month:
    period: str
    teams: dict[str, TeamMonth]
    boundaries: dict[tuple[str, str], BoundaryMonth]
    total: BoundaryMonth  # the organisation as one "boundary": created, side, reasons
    wording: dict[str, str] = field(default_factory=dict)  # a reason's key → its first wording seen

    @property
    def active(self) -> bool:
        return bool(self.total.created or self.total.side.accepted or sum(self.total.sent_back.values()))


def _cycle_seconds(dialect: str) -> str:
    if dialect == "postgresql":
        return "EXTRACT(EPOCH FROM (e.at - h.created_at))"
    return "(julianday(e.at) - julianday(h.created_at)) * 86400.0"


def _rank_bounds(n: int, p: float) -> tuple[int, int, float]:
    """1-based ranks around the p-th percentile of n sorted values, and the weight of the upper one."""
    pos = p * (n - 1)
    lo = int(pos)
    return lo + 1, min(lo + 2, n), pos - lo


def _percentiles(db: Database, start: datetime, end: datetime, columns: tuple[str, ...]) -> dict[tuple, dict[float, float]]:
    """Median and p85 of cycle time per group of `columns` (none: the whole organisation), selecting
    only the rows at the ranks needed, so at most four rows per group leave the database."""
    # lo = floor(p*(n-1)) + 1 and hi = lo + 1, in integer SQL arithmetic
    ranks = " OR ".join(f"rn = ({round(p * 100)} * (n - 1)) / 100 + {k}" for p in PERCENTILES for k in (1, 2))
    select = "".join(f"h.{c}, " for c in columns)
    keys = "".join(f"{c}, " for c in columns)
    over = f"PARTITION BY {', '.join(columns)}" if columns else ""
    sql = f"""
        WITH c AS (
            SELECT {select}{_cycle_seconds(db.engine.dialect.name)} AS s
            FROM handoff_event e JOIN handoff h ON h.id = e.handoff_id
            WHERE e.kind = 'accepted' AND e.at >= :start AND e.at < :end
        ), r AS (
            SELECT {keys}s, ROW_NUMBER() OVER ({over} ORDER BY s) AS rn, COUNT(*) OVER ({over}) AS n FROM c
        )
        SELECT {keys}rn, n, s FROM r WHERE {ranks}
    """
    ranked: dict[tuple, dict[int, float]] = defaultdict(dict)
    sizes: dict[tuple, int] = {}
    width = len(columns)
    with db.read() as session:
        for row in session.execute(text(sql), {"start": start, "end": end}):
            key = tuple(row[:width])
            ranked[key][int(row[width])] = float(row[width + 2])
            sizes[key] = int(row[width + 1])
    out: dict[tuple, dict[float, float]] = {}
    for key, values in ranked.items():
        out[key] = {}
        for p in PERCENTILES:
            lo, hi, weight = _rank_bounds(sizes[key], p)
            out[key][p] = values[lo] + (values[hi] - values[lo]) * weight
    return out


def _wording(reason: str | None) -> str:
    return " ".join((reason or "").split()).rstrip(".!") or "(no reason given)"


def month(db: Database, period: str, start: datetime, end: datetime, teams: list[str]) -> Month:
    """All figures for the month [start, end) (naive UTC), for every team listed (zeros included)."""
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
        created = session.execute(text("""
            SELECT from_team, to_team, COUNT(*) FROM handoff
            WHERE created_at >= :start AND created_at < :end GROUP BY from_team, to_team"""), params)
        for f, t, n in created:
            boundary(f, t).created += n
            team(f).sent += n
            team(t).received += n
            total.created += n

        accepted = session.execute(text("""
            SELECT h.from_team, h.to_team, COUNT(*), SUM(CASE WHEN e.round > 1 THEN 1 ELSE 0 END)
            FROM handoff_event e JOIN handoff h ON h.id = e.handoff_id
            WHERE e.kind = 'accepted' AND e.at >= :start AND e.at < :end
            GROUP BY h.from_team, h.to_team"""), params)
        for f, t, n, failed in accepted:
            for side in (boundary(f, t).side, team(f).as_sender, team(t).as_receiver, total.side):
                side.accepted += n
                side.failed += int(failed or 0)

        reasons = session.execute(text("""
            SELECT h.from_team, h.to_team, e.kind, e.reason, COUNT(*)
            FROM handoff_event e JOIN handoff h ON h.id = e.handoff_id
            WHERE e.kind IN ('rework_requested', 'clarification_requested') AND e.at >= :start AND e.at < :end
            GROUP BY h.from_team, h.to_team, e.kind, e.reason"""), params)
        for f, t, kind, reason, n in sorted(reasons, key=lambda r: (r[3] or "")):
            said = _wording(reason)
            wording.setdefault(said.casefold(), said)
            key = (kind, said.casefold())
            for row in (boundary(f, t), team(f), total):
                row.reasons[key] += n
                row.sent_back[kind] += n

    for (f,), cycle in _percentiles(db, start, end, ("from_team",)).items():
        team(f).as_sender.cycle = cycle
    for (f, t), cycle in _percentiles(db, start, end, ("from_team", "to_team")).items():
        boundary(f, t).side.cycle = cycle
    total.side.cycle = _percentiles(db, start, end, ()).get((), {})
    return Month(period, team_rows, boundaries, total, wording)
