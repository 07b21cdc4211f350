"""The monthly cross-team sync digest: figures with their direction, signals and big changes (the
highlights, each naming who acts), initiatives and the trend chart. No Slack in here:
`handlers.digest.messages()` turns a digest into Slack messages (Block Kit, its limits).

`compose()` is the one function of the stored data that both the preview (`python -m bot digest`) and
the post (`bot.entry.clock.run_digest`, which records the month's headcount first) call: for a closed month
they are the same digest, byte for byte.

Everything a reader sees is computed from `bot.domain.metrics.month()` for the digest's month and the five
before it (the trend chart; the previous month gives each figure's change, the two before it the
"rising for consecutive months" signal).
"""

from __future__ import annotations

import io
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime

from sqlmodel import select

from bot.domain import initiatives, metrics, pulse, review
from bot.domain.core import schedule
from bot.domain.core.process import ProcessConfig
from bot.domain.core.timeutil import utcnow
from bot.domain.fasttrack import Budget
from bot.domain.figures import (
    MIN_ACCEPTED,
    MIN_FOR_TREND,
    Figure,
    candidate,
    clip,
    cycle_unit,
    duration,
    meter,
    percent,
    unit_of,
)
from bot.domain.members import count_at
from bot.domain.metrics import Month
from storage.db import Database
from storage.models import Headcount, Initiative

TREND_MONTHS = 6
RISE = 1.25  # "rising": up in each of the last two months, and by a quarter or more over both
CHART_TEAMS = 8
TOP_REASONS = 3  # send-back reasons shown per team and per boundary
HIGHLIGHTS = 5  # at most this many highlights in the first message
BACKLOG = 3  # this many requests undecided at the month's end is a backlog
STEWARD_PERCENT = 20  # "frequent escalations": this share (%) of a boundary's month's handoffs reached its steward…
MIN_FOR_ESCALATIONS = 5  # …of this many created in the month at least
KIND_WORD = {"rework_requested": "rework", "clarification_requested": "clarification"}


@dataclass
class Signal:
    """A warning sign, or a big change: a highlight of the first message, naming who should act."""

    text: str  # plain text, escaped by the template
    people: list[str] = field(default_factory=list)  # who should act: user ids, mentioned (a steward, a team's lead)
    role: str = ""  # what they are: "steward of Design → Engineering", "Design's lead"
    channel: str | None = None  # nobody to mention (a team without a lead): its channel is named instead
    kind: str = "signal"  # "signal" or "change"
    good: bool | None = None  # a change: better (True) or worse (False)
    rank: int = 0  # signals: lower first; changes: by `score`
    score: float = 0.0
    links: list[tuple[int, str, str | None]] = field(default_factory=list)  # handoffs behind it: id, title, permalink
    team: str | None = None  # whose (for the handoffs behind it)
    metric: str | None = None
    boundary: tuple[str, str] | None = None


@dataclass
class TeamView:
    id: str
    name: str
    now: metrics.TeamMonth
    before: metrics.TeamMonth
    reasons: list[str]
    initiative: Initiative | None
    initiative_now: float | None
    budget: Budget | None = None  # the month's fast-track budget: items = handoffs sent, approved
    reasons_total: int = 0  # distinct reasons in the month (`reasons` shows the first TOP_REASONS)
    satisfaction: Figure | None = None  # the team's satisfaction, once pulses feed it (`satisfaction()`)

    @property
    def fasttracks(self) -> bool:
        return bool(self.now.fasttracks_approved or self.now.fasttracks_denied or self.now.fasttracks_waiting)


@dataclass
class Exception_:
    """A process element fast-tracked in the month: how often, why, and whether it should become standard."""

    element: str
    count: int
    reasons: str  # "Customer escalation ×3, Security fix ×1"
    recurring: bool
    owner_team: str | None  # who sets the standard: a team's name…
    owner_user: str | None  # …or a person


@dataclass
class BoundaryView:
    from_name: str
    to_name: str
    steward: str | None
    now: metrics.BoundaryMonth
    before: metrics.BoundaryMonth
    reasons: list[str]
    sla_hours: float | None = None
    reasons_total: int = 0

    @property
    def clock(self) -> bool:
        """Anything to say about its first responses, escalations or snoozes this month."""
        n = self.now
        return bool(n.responses.answered or sum(n.escalations.values()) or n.manual_escalations or n.snoozes)


@dataclass
class Digest:
    period: str
    label: str
    organization: str
    channel: str
    months: list[Month]  # oldest first, the digest's month last
    teams: list[TeamView]
    boundaries: list[BoundaryView]
    signals: list[Signal]
    headcount: dict[tuple[str, str], int]
    review: list[Exception_] = field(default_factory=list)
    budget_percent: float = 10
    to_date: bool = False  # the month has not ended: a preview of the month so far, never posted
    figures: list[Figure] = field(default_factory=list)  # the organisation's, with their direction (first message)
    highlights: list[Signal] = field(
        default_factory=list
    )  # at most HIGHLIGHTS: signals first, then the biggest changes
    changes: list[Signal] = field(default_factory=list)  # every big change (the thread lists those not highlighted)
    definitions: str = ""  # where the definitions are: a link, or the README section's name
    pulse: object | None = None  # bot.domain.pulse.Satisfaction: the month's satisfaction detail (a thread reply)
    pulse_trend: dict[str, dict[str | None, float]] = field(default_factory=dict)  # the chart's satisfaction panel
    pulse_question: str = ""
    matrix: object | None = None  # bot.domain.review.Status: the quarter's matrix review, in its first month's digest

    @property
    def month(self) -> Month:
        return self.months[-1]

    @property
    def previous(self) -> Month:
        return self.months[-2]


def _reasons(counter, wording: dict[str, str], limit: int = TOP_REASONS) -> tuple[list[str], int]:
    """The `limit` most frequent send-back reasons, and how many distinct ones there were. Ties: by kind
    (clarification before rework), then by the grouped wording in code point order."""
    ranked = sorted(counter.items(), key=lambda item: (-item[1], item[0]))
    shown = [
        f"{KIND_WORD.get(kind, kind)}: “{clip(wording.get(key, key), 120)}” ×{n}" for (kind, key), n in ranked[:limit]
    ]
    return shown, len(ranked)


def _months(db: Database, cfg: ProcessConfig, period: str) -> list[Month]:
    tz = cfg.organization.tz
    team_ids = [t.id for t in cfg.teams]
    out = []
    for back in range(TREND_MONTHS - 1, -1, -1):
        p = schedule.shift(period, -back)
        start, end = schedule.bounds(p, tz)
        out.append(metrics.figures(db, p, start, end, team_ids, utcnow(), cfg))
    return out


class Refused(Exception):
    """A digest that must not be posted (a month not ended, a re-post without `--again`): the message says why."""


def closed(cfg: ProcessConfig, period: str, now: datetime) -> bool:
    """Whether `period` has ended by `now` (naive UTC), with the margin after which its figures never
    change (`bot.domain.metrics.CLOSED_AFTER`): only such a month's digest is posted and recorded."""
    return schedule.bounds(period, cfg.organization.tz)[1] + metrics.CLOSED_AFTER <= now


def headcounts(db: Database, cfg: ProcessConfig, period: str) -> dict[tuple[str, str], int]:
    """Team sizes for `period` and the two months before, as the signals read them: what was recorded
    when each month's digest was posted; for `period` itself, when nothing is recorded yet, the sizes
    that posting it will record (members at the month's end, from the join and leave events). Posting records them *before* the digest is
    composed (`record_headcount`), so the preview and the post read the same numbers."""
    periods = [schedule.shift(period, -2), schedule.shift(period, -1), period]
    with db.read() as session:
        rows = session.exec(select(Headcount).where(Headcount.period.in_(periods)))
        out = {(r.period, r.team): r.members for r in rows}
    if any((period, t.id) not in out for t in cfg.teams):
        counted = _counted(db, cfg, period)
        for t in cfg.teams:
            out.setdefault((period, t.id), counted[t.id])
    return out


def _counted(db: Database, cfg: ProcessConfig, period: str) -> dict[str, int]:
    """Each team's members at the end of `period`, from the join and leave events (`bot.domain.members`); a team
    with no event by then (its members never read before) counts the configuration's members now."""
    end = schedule.bounds(period, cfg.organization.tz)[1]
    counted = count_at(db, [t.id for t in cfg.teams], end)
    return {t.id: counted.get(t.id, len(t.members)) for t in cfg.teams}


def record_headcount(db: Database, cfg: ProcessConfig, period: str) -> None:
    """Remember team sizes for `period` (the first record stands): posting a digest calls this before it
    composes the digest. Two clocks writing the same digest at once both get here: the second one's rows
    are ignored, not an error."""
    if not cfg.teams:
        return
    counted = _counted(db, cfg, period)
    with db.write() as session:
        session.execute(
            db.insert(Headcount)
            .values([{"period": period, "team": t.id, "members": counted[t.id]} for t in cfg.teams])
            .on_conflict_do_nothing(index_elements=["period", "team"])
        )


def _lead(team) -> dict:
    """Who acts for a team: its lead (`[[teams]].lead`), mentioned; without one, its channel is named."""
    if team.lead:
        return {"people": [team.lead], "role": f"{team.name}'s lead"}
    return {"channel": team.channel, "role": f"{team.name}: no lead configured"}


def _signals(cfg: ProcessConfig, months: list[Month], headcount: dict, budgets: dict[str, Budget]) -> list[Signal]:
    """The warning signs, most important first (rank): a failure rate far above the rest, cycle time
    rising, frequent escalations, then fast-tracks over budget and a backlog of fast-track requests."""
    out: list[Signal] = []
    now = months[-1]
    for team in cfg.teams:  # 3. fast-tracks over budget
        b = budgets[team.id]
        if b.approved > b.limit:
            out.append(
                Signal(
                    f"{team.name} is {meter(b.approved, b, schedule.short_label(now.period))}.",
                    rank=4,
                    team=team.id,
                    **_lead(team),
                )
            )
    waiting = [(t.name, now.teams[t.id].fasttracks_waiting) for t in cfg.teams if now.teams[t.id].fasttracks_waiting]
    total = sum(n for _, n in waiting)
    if total >= BACKLOG:  # 4. a backlog of exception requests
        _, end = schedule.bounds(now.period, cfg.organization.tz)
        age = (end - now.oldest_waiting).days if now.oldest_waiting else 0
        parts = ", ".join(f"{name} {n}" for name, n in sorted(waiting, key=lambda w: -w[1]))
        deciders = list(cfg.fasttrack.approvers or cfg.fasttrack.backup_approvers)[:3]
        out.append(
            Signal(
                f"{total} fast-track requests were still waiting for a decision at the end of {schedule.label(now.period)} "
                f"({parts}), the oldest for {age} day{'s' if age != 1 else ''}.",
                rank=5,
                people=deciders,
                role="fast-track approvers",
                channel=None if deciders else cfg.organization.digest_channel,
            )
        )
    last3 = months[-3:]
    for team in cfg.teams:
        # 1. cycle time rising for consecutive months while headcount is steady
        sides = [m.teams[team.id].as_sender for m in last3]
        medians = [s.cycle.get(0.5) for s in sides]
        if (
            all(s.accepted >= MIN_FOR_TREND for s in sides)
            and medians[0] < medians[1] < medians[2]
            and medians[2] >= RISE * medians[0]
        ):
            sizes = [headcount.get((m.period, team.id)) for m in last3]
            if None in sizes:
                missing = " and ".join(
                    schedule.short_label(m.period) for m, n in zip(last3, sizes, strict=True) if n is None
                )
                staff = f"headcount not recorded for {missing} ({sizes[-1]} in {schedule.short_label(now.period)})"
            elif max(sizes) <= min(sizes) * 1.1:
                staff = f"headcount steady at {sizes[-1]}"
            else:
                staff = None  # the team grew or shrank: that explains it
            if staff:
                unit = cycle_unit(sides[-1], sides[-2])  # the thread's line's, and the first message's
                trail = " → ".join(duration(v, unit) for v in medians)
                out.append(
                    Signal(
                        f"{team.name}: cycle time rising for 2 consecutive months ({trail}, median) with {staff}.",
                        rank=2,
                        team=team.id,
                        metric="cycle_time",
                        **_lead(team),
                    )
                )
        # 2. a failure rate far above the others
        mine = now.teams[team.id].as_sender
        rest_accepted = now.total.side.accepted - mine.accepted
        rest_failed = now.total.side.failed - mine.failed
        if mine.accepted >= MIN_ACCEPTED and rest_accepted >= MIN_ACCEPTED:
            rate, rest = mine.failure_rate, rest_failed / rest_accepted
            if rate >= 2 * rest and rate - rest >= 0.15:
                out.append(
                    Signal(
                        f"{team.name}: {percent(rate)} of its handoffs needed another round ({mine.failed} of {mine.accepted}), "
                        f"against {percent(rest)} for the rest of the organisation ({rest_failed} of {rest_accepted}).",
                        rank=1,
                        team=team.id,
                        metric="failure_rate",
                        **_lead(team),
                    )
                )
    out += _escalation_signals(cfg, months[-2], now)
    return sorted(out, key=lambda s: s.rank)  # stable: within a rank, in the configuration's order


def _escalation_signals(cfg: ProcessConfig, before: Month, now: Month) -> list[Signal]:
    """5. frequent escalations, per boundary, naming its steward: at least STEWARD_PERCENT % of the handoffs
    created in the month (MIN_FOR_ESCALATIONS or more) reached the steward level, or handoffs reached the
    last level of the escalation path in each of the last two months."""
    out = []
    for b in cfg.boundaries:
        key = (b.from_team, b.to_team)
        row, prev = now.boundaries.get(key), before.boundaries.get(key)
        if row is None:
            continue
        why = []
        if (
            row.created >= MIN_FOR_ESCALATIONS and row.reached_steward * 100 >= STEWARD_PERCENT * row.created
        ):  # exact: 3 of 15 is 20%
            why.append(
                f"{row.reached_steward} of the {row.created} handoffs sent in {schedule.short_label(now.period)} "
                f"({percent(row.reached_steward / row.created)}) reached the steward level"
            )
        if row.reached_last and prev is not None and prev.reached_last:
            why.append(
                f"handoffs reached the last escalation level in both {schedule.short_label(before.period)} "
                f"({prev.reached_last}) and {schedule.short_label(now.period)} ({row.reached_last})"
            )
        if why:
            names = f"{cfg.team(b.from_team).name} → {cfg.team(b.to_team).name}"
            out.append(
                Signal(
                    f"{names}: frequent escalations: {'; '.join(why)}.",
                    [b.steward],
                    role=f"steward of {names}",
                    rank=3,
                    boundary=key,
                )
            )
    return out


CHANGE_CYCLE = 0.25  # a change: a team's median cycle time moved by a quarter or more…
CHANGE_RATE = 0.15  # …or its failure rate by 15 points or more (each on MIN_ACCEPTED handoffs at least, both months)


def _changes(cfg: ProcessConfig, before: Month, now: Month, signals: list[Signal]) -> list[Signal]:
    """The month's biggest changes per team (as sender), good and bad, biggest first: a cycle time's
    relative change, a failure rate's change in points ÷ 50 (a 15-point change weighs like a 30% one).
    A metric a signal already names for the team is not repeated."""
    named = {(s.team, s.metric) for s in signals if s.team}
    out = []
    for team in cfg.teams:
        mine, prev = now.teams[team.id].as_sender, before.teams[team.id].as_sender
        if min(mine.accepted, prev.accepted) < MIN_ACCEPTED:
            continue
        m, p = mine.cycle.get(0.5), prev.cycle.get(0.5)
        if (team.id, "cycle_time") not in named and m is not None and p and abs(m / p - 1) >= CHANGE_CYCLE:
            unit = cycle_unit(mine, prev)  # as the team's line in the thread (its 85th percentile too)
            good = m < p
            out.append(
                Signal(
                    f"{team.name}: cycle time of handoffs sent {'↓' if good else '↑'} {duration(m, unit)} from "
                    f"{duration(p, unit)} in {schedule.short_label(before.period)} (median of {mine.accepted}): "
                    f"{'better' if good else 'worse'}.",
                    kind="change",
                    good=good,
                    score=abs(m / p - 1),
                    team=team.id,
                    metric="cycle_time",
                    **_lead(team),
                )
            )
        r, q = mine.failure_rate, prev.failure_rate
        if (team.id, "failure_rate") not in named and abs(r - q) >= CHANGE_RATE - 1e-9:
            good = r < q
            out.append(
                Signal(
                    f"{team.name}: failure rate as sender {'↓' if good else '↑'} {percent(r)} ({mine.failed} of "
                    f"{mine.accepted}) from {percent(q)} in {schedule.short_label(before.period)}: "
                    f"{'better' if good else 'worse'}.",
                    kind="change",
                    good=good,
                    score=abs(r - q) * 2,
                    team=team.id,
                    metric="failure_rate",
                    **_lead(team),
                )
            )
    return sorted(out, key=lambda s: -s.score)


def _figures(d_before: Month, now: Month, before_label: str) -> list[Figure]:
    """The organisation's figures of the first message, with their direction."""
    t, b = now.total.side, d_before.total.side
    return [
        Figure(
            "Cycle time (median, first submission → acceptance)",
            "duration",
            t.cycle.get(0.5),
            b.cycle.get(0.5),
            True,
            t.accepted,
            b.accepted,
            before_label=before_label,
            unit_with=(t.cycle.get(0.85),),
        ),  # the thread's line: the same unit
        Figure(
            "Handoff failure rate",
            "rate",
            t.failure_rate,
            b.failure_rate,
            True,
            t.accepted,
            b.accepted,
            before_label=before_label,
            detail=f"{t.failed} of {t.accepted}" if t.accepted else "",
        ),
    ]


@dataclass
class Pulses:
    """The month's satisfaction, from the weekly pulse (bot/pulse.py): the figures with their direction
    (the organisation's under None, each team shown under its id), the thread's detail, the warning
    signs, and the averages of the digest's months for the chart."""

    figures: dict[str | None, Figure] = field(default_factory=dict)
    month: object | None = None  # bot.domain.pulse.Satisfaction of the digest's month (None: none, or not final yet)
    signals: list[Signal] = field(default_factory=list)
    trend: dict[str, dict[str | None, float]] = field(default_factory=dict)  # period → group → average


def satisfaction(
    db: Database, cfg: ProcessConfig, period: str, months: list[Month], sealer=None, at: datetime | None = None
) -> Pulses:
    """The month's satisfaction from the weekly pulse, only as the anonymity rules let it be shown
    (`bot.domain.pulse.figures`): nothing without a [pulse], without PULSE_SECRET, or before every survey of the
    month has closed. Signals name the stewards of the team's boundaries."""
    if not cfg.pulse_on or sealer is None:
        return Pulses()
    at = at or utcnow()
    by_period = {m.period: pulse.figures(db, cfg, sealer, m.period, at) for m in months}
    now, before = by_period.get(period), by_period.get(schedule.shift(period, -1))
    earlier = by_period.get(schedule.shift(period, -2))
    trend: dict[str, dict[str | None, float]] = {}
    for p, sat in by_period.items():
        if sat is not None:
            shown = {g: f for g, f in sat.teams.items() if f is not None and f.average is not None}
            if sat.org is not None and sat.org.average is not None:
                shown[None] = sat.org
            trend[p] = {g: f.average for g, f in shown.items()}
    if now is None:
        return Pulses(trend=trend)
    pulse.with_changes(now, before)
    label = schedule.short_label(schedule.shift(period, -1))

    def figure(f, last) -> Figure:
        rate = f"{f.rate:.0%} answered" if f.rate is not None else ""
        return Figure(
            "Satisfaction (1–5)",
            "score",
            f.average,
            last.average if last else None,
            False,
            f.scores,
            last.scores if last else 0,
            noun="answer",
            minimum=cfg.pulse.min_group,
            before_label=label,
            detail=", ".join(
                x for x in (f"{f.favourable:.0%} favourable" if f.favourable is not None else "", rate) if x
            ),
        )

    figures: dict[str | None, Figure] = {}
    if now.org is not None:
        figures[None] = figure(now.org, before.org if before else None)
    for g, f in now.teams.items():
        if f is not None:
            figures[g] = figure(f, before.teams.get(g) if before else None)
    failure = {
        t.id: (months[-1].teams[t.id].as_sender.failure_rate, months[-2].teams[t.id].as_sender.failure_rate)
        for t in cfg.teams
        if t.id in months[-1].teams and t.id in months[-2].teams
    }
    rank = {"falling_while_failing": 1, "falling": 2, "rigid": 3, "ambiguous": 3}
    signals = [
        Signal(
            f"{s.text}.",
            list(s.owners),
            role="steward" if len(s.owners) == 1 else "stewards",
            rank=rank.get(s.kind, 3),
            team=s.group if s.group != pulse.ORG else None,
            metric="satisfaction",
        )
        for s in pulse.signals(cfg, now, before, earlier, failure)
    ]
    return Pulses(figures=figures, month=now, signals=signals, trend=trend)


def _links(db: Database, cfg: ProcessConfig, period: str, signals: list[Signal]) -> None:
    """The handoffs behind each signal, with their cards' permalinks (stored when each card was posted)."""
    start, end = schedule.bounds(period, cfg.organization.tz)
    for s in signals:
        if s.metric == "failure_rate" and s.team:
            s.links = metrics.behind(db, start, end, from_team=s.team, failed=True)
        elif s.metric == "cycle_time" and s.team:
            s.links = metrics.behind(db, start, end, from_team=s.team, slowest=True)
        elif s.boundary:
            s.links = metrics.behind(db, start, end, from_team=s.boundary[0], to_team=s.boundary[1], escalated=True)


def definitions_link() -> str:
    """Where the digest's definitions are: the README's section on the project's repository when
    pyproject.toml names one (`[project.urls]` Repository or Homepage), else the section's name."""
    import tomllib
    from pathlib import Path

    try:
        urls = tomllib.loads((Path(__file__).parent.parent / "pyproject.toml").read_text())["project"].get("urls", {})
    except (OSError, KeyError, ValueError):
        urls = {}
    base = urls.get("Repository") or urls.get("Homepage") or ""
    if base.startswith("https://") and not any(c in base for c in "<>| "):
        return base.rstrip("/") + "#the-monthly-digest"
    return ""


def compose(db: Database, cfg: ProcessConfig, period: str, at: datetime | None = None, sealer=None) -> Digest:
    """The digest of `period` from the stored events and the recorded headcounts: the preview and the
    post call this one function with the same data, so they are the same digest. `at` (naive UTC,
    default now) only decides whether the month has ended: a month not ended is labelled "month to date".
    `sealer` (bot.domain.pulse.Sealer, from PULSE_SECRET) reads the weekly pulse's answers for satisfaction."""
    schedule.parse_period(period)
    months = _months(db, cfg, period)
    now, before = months[-1], months[-2]
    headcount = headcounts(db, cfg, period)
    shared = initiatives.current(db, period)
    pulses = satisfaction(db, cfg, period, months, sealer, at)
    teams = []
    for t in cfg.teams:
        shown, total = _reasons(now.teams[t.id].reasons, now.wording)
        teams.append(
            TeamView(
                id=t.id,
                name=t.name,
                now=now.teams[t.id],
                before=before.teams[t.id],
                reasons=shown,
                reasons_total=total,
                initiative=shared.get(t.id),
                satisfaction=pulses.figures.get(t.id),
                initiative_now=initiatives.value(now, t.id, shared[t.id].metric) if t.id in shared else None,
            )
        )
    boundaries = []
    for b in cfg.boundaries:
        key = (b.from_team, b.to_team)
        row_now = now.boundaries.get(key) or metrics.BoundaryMonth(*key)
        row_before = before.boundaries.get(key) or metrics.BoundaryMonth(*key)
        shown, total = _reasons(row_now.reasons, now.wording)
        boundaries.append(
            BoundaryView(
                cfg.team(b.from_team).name,
                cfg.team(b.to_team).name,
                b.steward,
                row_now,
                row_before,
                shown,
                b.sla_hours,
                total,
            )
        )
    budgets = {
        t.id: Budget(
            t.id, period, now.teams[t.id].sent, now.teams[t.id].fasttracks_approved, cfg.fasttrack.budget_percent
        )
        for t in cfg.teams
    }
    for tv in teams:
        tv.budget = budgets[tv.id]
    to_date = not closed(cfg, period, at or utcnow())
    signals = sorted(_signals(cfg, months, headcount, budgets) + pulses.signals, key=lambda s: s.rank)
    _links(db, cfg, period, signals)
    changes = _changes(cfg, before, now, signals)
    figures = _figures(before, now, schedule.short_label(before.period))
    if pulses.figures.get(None) is not None:
        figures.append(pulses.figures[None])
    return Digest(
        period=period,
        label=schedule.label(period) + (" (month to date)" if to_date else ""),
        to_date=to_date,
        organization=cfg.organization.name,
        channel=cfg.organization.digest_channel,
        months=months,
        teams=teams,
        boundaries=boundaries,
        signals=signals,
        headcount=headcount,
        review=_review(cfg, now),
        budget_percent=cfg.fasttrack.budget_percent,
        figures=figures,
        highlights=(signals + changes)[:HIGHLIGHTS],
        changes=changes,
        definitions=definitions_link(),
        pulse=pulses.month,
        pulse_trend=pulses.trend,
        pulse_question=cfg.pulse.question if cfg.pulse else "",
        matrix=review.status(db, cfg, period),
    )


def _review(cfg: ProcessConfig, month: Month) -> list[Exception_]:
    """The month's approved fast-tracks by element, most frequent first; an element skipped RECURRING
    times or more is a candidate to become standard, addressed to whoever sets its standard."""
    by_element: dict[str, Counter] = {}
    for (_team, element, reason), n in month.exceptions.items():
        by_element.setdefault(element, Counter())[reason] += n
    out = []
    for element, reasons in sorted(by_element.items(), key=lambda item: (-sum(item[1].values()), item[0])):
        count = sum(reasons.values())
        right = cfg.right(element)
        setter = right.sets_standard if right else None
        team = cfg.team(setter) if setter else None
        out.append(
            Exception_(
                element=element,
                count=count,
                recurring=candidate(count),
                reasons=", ".join(
                    f"{r} ×{n}" for r, n in sorted(reasons.items(), key=lambda item: (-item[1], item[0]))
                ),
                owner_team=team.name if team else None,
                owner_user=setter if setter and not team else None,
            )
        )
    return out


# -- the trend chart -------------------------------------------------------------------------------


CHART_WIDTH_IN = 4.0  # inches: laid out for a phone-width preview; fonts stay readable at 360 px wide
CHART_DPI = 180  # 720 px wide as uploaded


def chart_figure(d: Digest, dpi: float = CHART_DPI):
    """The trend chart as a matplotlib figure (the tests measure it): two panels, median cycle time and
    handoff failure rate of handoffs sent, per team, for the busiest CHART_TEAMS teams, over the digest's
    months; the organisation as a dashed black reference line; each marker's area follows the number of
    handoffs accepted behind it; the legend below both panels, outside the plots. Cycle time keeps one
    unit (hours, or days when any value reaches 48 h) for the whole panel."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    volume = {t.id: sum(m.teams[t.id].as_sender.accepted for m in d.months) for t in d.teams}
    shown = sorted((t for t in d.teams if volume[t.id]), key=lambda t: (-volume[t.id], t.name))[:CHART_TEAMS]
    labels = [schedule.short_label(m.period)[:3] for m in d.months]
    x = list(range(len(labels)))
    every = [m.teams[t.id].as_sender.cycle.get(0.5) for m in d.months for t in shown] + [
        m.total.side.cycle.get(0.5) for m in d.months
    ]
    unit = unit_of(*every)
    scale = 86400 if unit == "d" else 3600
    pulse = any(d.pulse_trend.get(m.period) for m in d.months)  # the weekly pulse's averages: a third panel
    fig, axes = plt.subplots(
        3 if pulse else 2,
        1,
        figsize=(CHART_WIDTH_IN, 8.6 if pulse else 6.4),
        sharex=True,
        dpi=dpi,
        layout="constrained",
    )
    top, bottom = axes[0], axes[1]
    first, last = schedule.short_label(d.months[0].period), schedule.short_label(d.months[-1].period)
    fig.suptitle(
        f"Handoffs sent per team, {first} – {last}\nmedian cycle time and failure rate"
        + (", and satisfaction (1–5)" if pulse else ""),
        fontsize=9,
    )

    def size(n: int) -> float:
        return 6 + 4 * n**0.5  # marker area (pt²) grows with the handoffs accepted behind the point

    def series(ax, values, sizes, **style):
        ax.plot(x, values, **style)
        ax.scatter(x, values, s=[size(n) for n in sizes], color=style.get("color"), zorder=3, linewidths=0)

    cmap = plt.get_cmap("tab10")
    for i, team in enumerate(shown):
        sides = [m.teams[team.id].as_sender for m in d.months]
        cycle = [s.cycle.get(0.5) / scale if s.cycle.get(0.5) is not None else float("nan") for s in sides]
        rate = [s.failure_rate * 100 if s.failure_rate is not None else float("nan") for s in sides]
        n = [s.accepted for s in sides]
        color = cmap(i % 10)
        series(top, cycle, n, color=color, linewidth=1.2, label=team.name[:24])
        series(bottom, rate, n, color=color, linewidth=1.2)
    org = [m.total.side for m in d.months]
    series(
        top,
        [s.cycle.get(0.5) / scale if s.cycle.get(0.5) is not None else float("nan") for s in org],
        [s.accepted for s in org],
        color="black",
        linestyle="--",
        linewidth=1.5,
        label="Organisation",
    )
    series(
        bottom,
        [s.failure_rate * 100 if s.failure_rate is not None else float("nan") for s in org],
        [s.accepted for s in org],
        color="black",
        linestyle="--",
        linewidth=1.5,
    )
    top.set_ylabel(f"cycle time ({'days' if unit == 'd' else 'hours'})", fontsize=8)
    bottom.set_ylabel("failure rate (%)", fontsize=8)
    if pulse:  # groups shown by the anonymity rules only; a month held back is a gap
        happy = axes[2]
        for i, team in enumerate(shown):
            happy.plot(
                x,
                [d.pulse_trend.get(m.period, {}).get(team.id, float("nan")) for m in d.months],
                color=cmap(i % 10),
                linewidth=1.2,
                marker="o",
                markersize=3,
            )
        happy.plot(
            x,
            [d.pulse_trend.get(m.period, {}).get(None, float("nan")) for m in d.months],
            color="black",
            linestyle="--",
            linewidth=1.5,
            marker="o",
            markersize=3,
        )
        happy.set_ylabel("satisfaction (1–5)", fontsize=8)
        happy.set_ylim(1, 5)
        bottom.tick_params(labelbottom=False)
        bottom = happy
    for ax in axes:
        ax.grid(True, alpha=0.3)
        ax.set_xlim(-0.3, len(x) - 0.7)
        if ax is not axes[-1] or not pulse:
            ax.set_ylim(bottom=0)
        ax.tick_params(labelsize=8)
    bottom.set_xticks(x, labels)
    note = "marker area: handoffs accepted"
    if len(d.teams) > len(shown):
        note += f"; the {len(shown)} busiest of {len(d.teams)} teams"
    handles, names = top.get_legend_handles_labels()
    fig.legend(
        handles, names, loc="outside lower center", ncols=2, fontsize=8, frameon=False, title=note, title_fontsize=7
    )
    return fig


def chart(d: Digest, dpi: float = CHART_DPI) -> bytes:
    """The trend chart as a PNG (see `chart_figure`)."""
    import matplotlib.pyplot as plt

    fig = chart_figure(d, dpi)
    out = io.BytesIO()
    fig.savefig(out, format="png")
    plt.close(fig)
    return out.getvalue()
