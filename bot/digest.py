"""The monthly cross-team sync digest: figures, changes, signals, initiatives and the trend chart.
No Slack in here: `handlers.digest.messages()` turns a digest into Slack messages (Block Kit, its limits).

Everything a reader sees is computed from `storage.metrics.month()` for the digest's month and the five
before it (the trend chart; the previous month gives each figure's change, the two before it the
"rising for consecutive months" signal).
"""

from __future__ import annotations

from collections import Counter
import io
from dataclasses import dataclass, field
from datetime import datetime

from sqlmodel import select

from bot import initiatives, schedule
from bot.fasttrack import Budget
from bot.handoffs import utcnow
from bot.process import ProcessConfig
from storage import metrics
from storage.db import Database
from storage.metrics import Month
from storage.models import Headcount, Initiative
from templates import clip

TREND_MONTHS = 6
MIN_ACCEPTED = 5  # a failure rate from fewer accepted handoffs is not compared
MIN_FOR_TREND = 5  # a median from fewer accepted handoffs does not count as rising
RISE = 1.25  # "rising": up in each of the last two months, and by a quarter or more over both
CHART_TEAMS = 8
TOP_REASONS = 3
RECURRING = 3  # an element fast-tracked this often in a month is a candidate to become standard
BACKLOG = 3  # this many requests undecided at the month's end is a backlog
STEWARD_PERCENT = 20  # "frequent escalations": this share (%) of a boundary's month's handoffs reached its steward…
MIN_FOR_ESCALATIONS = 5  # …of this many created in the month at least
KIND_WORD = {"rework_requested": "rework", "clarification_requested": "clarification"}


# -- formatting ------------------------------------------------------------------------------------


def duration(seconds: float | None) -> str:
    if seconds is None:
        return "–"
    hours = seconds / 3600
    return f"{hours:.1f} h" if hours < 48 else f"{hours / 24:.1f} d"


def percent(rate: float | None) -> str:
    return "–" if rate is None else f"{round(rate * 100)}%"


def _signed(number: float, unit: str = "", digits: int = 0) -> str:
    text = f"{abs(number):.{digits}f}"
    if float(text) == 0:
        return f"±0{unit}"
    return ("+" if number > 0 else "−") + text + unit


def change_count(now: int, before: int) -> str:
    return _signed(now - before)


def change_rate(now: float | None, before: float | None) -> str:
    if now is None or before is None:
        return "new" if before is None and now is not None else "–"
    return _signed((now - before) * 100, " pts")


def change_duration(now: float | None, before: float | None) -> str:
    if now is None or before is None:
        return "new" if before is None and now is not None else "–"
    delta = now - before
    if max(abs(now), abs(before)) >= 48 * 3600:
        return _signed(delta / 86400, " d", 1)
    return _signed(delta / 3600, " h", 1)


def metric_text(metric: str, value: float | None) -> str:
    return duration(value) if metric == "cycle_time" else percent(value)


def working_hours(hours: float | None) -> str:
    return "–" if hours is None else f"{hours:.1f} working h"


def escalation_counts(row: metrics.BoundaryMonth) -> str:
    """"L1 ×3, L2 ×1, by hand ×1", or "none"."""
    parts = [f"L{level} ×{n}" for level, n in sorted(row.escalations.items()) if n]
    if row.manual_escalations:
        parts.append(f"by hand ×{row.manual_escalations}")
    return ", ".join(parts) or "none"


# -- the digest ------------------------------------------------------------------------------------


@dataclass
class Signal:
    text: str  # plain text, escaped by the template
    people: list[str] = field(default_factory=list)  # user ids to name (the boundary's steward, say)


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

    @property
    def month(self) -> Month:
        return self.months[-1]

    @property
    def previous(self) -> Month:
        return self.months[-2]


def _reasons(counter, wording: dict[str, str], limit: int = TOP_REASONS) -> list[str]:
    ranked = sorted(counter.items(), key=lambda item: (-item[1], item[0]))
    return [f"{KIND_WORD.get(kind, kind)}: “{clip(wording.get(key, key), 120)}” ×{n}" for (kind, key), n in ranked[:limit]]


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
    change (`storage.metrics.CLOSED_AFTER`): only such a month's digest is posted and recorded."""
    return schedule.bounds(period, cfg.organization.tz)[1] + metrics.CLOSED_AFTER <= now


def headcounts(db: Database, cfg: ProcessConfig, period: str) -> dict[tuple[str, str], int]:
    """Team sizes for `period` and the two months before, as the signals read them: what was recorded
    when each month's digest was posted; for `period` itself, when nothing is recorded yet, the sizes
    that posting it will record (the configuration's today). Posting records them *before* the digest is
    composed (`record_headcount`), so the preview and the post read the same numbers."""
    periods = [schedule.shift(period, -2), schedule.shift(period, -1), period]
    with db.read() as session:
        rows = session.exec(select(Headcount).where(Headcount.period.in_(periods)))
        out = {(r.period, r.team): r.members for r in rows}
    for t in cfg.teams:
        out.setdefault((period, t.id), len(t.members))
    return out


def record_headcount(db: Database, cfg: ProcessConfig, period: str) -> None:
    """Remember team sizes for `period` (the first record stands): posting a digest calls this before it
    composes the digest. Two clocks writing the same digest at once both get here: the second one's rows
    are ignored, not an error."""
    if not cfg.teams:
        return
    with db.write() as session:
        session.execute(db.insert(Headcount).values([{"period": period, "team": t.id, "members": len(t.members)} for t in cfg.teams])
                        .on_conflict_do_nothing(index_elements=["period", "team"]))


def _signals(cfg: ProcessConfig, months: list[Month], headcount: dict, budgets: dict[str, Budget]) -> list[Signal]:
    out: list[Signal] = []
    now = months[-1]
    for team in cfg.teams:  # 3. fast-tracks over budget
        b = budgets[team.id]
        if b.approved > b.limit:
            out.append(Signal(f"{team.name}: {b.approved} fast-tracks approved, over its budget of {b.limit} "
                              f"({b.items} item{'s' if b.items != 1 else ''}, budget {b.percent:g}%)."))
    waiting = [(t.name, now.teams[t.id].fasttracks_waiting) for t in cfg.teams if now.teams[t.id].fasttracks_waiting]
    total = sum(n for _, n in waiting)
    if total >= BACKLOG:  # 4. a backlog of exception requests
        _, end = schedule.bounds(now.period, cfg.organization.tz)
        age = (end - now.oldest_waiting).days if now.oldest_waiting else 0
        parts = ", ".join(f"{name} {n}" for name, n in sorted(waiting, key=lambda w: -w[1]))
        out.append(Signal(f"{total} fast-track requests were still waiting for a decision at the end of {schedule.label(now.period)} "
                          f"({parts}), the oldest for {age} day{'s' if age != 1 else ''}."))
    last3 = months[-3:]
    for team in cfg.teams:
        # 1. cycle time rising for consecutive months while headcount is steady
        sides = [m.teams[team.id].as_sender for m in last3]
        medians = [s.cycle.get(0.5) for s in sides]
        if all(s.accepted >= MIN_FOR_TREND for s in sides) and medians[0] < medians[1] < medians[2] and medians[2] >= RISE * medians[0]:
            sizes = [headcount.get((m.period, team.id)) for m in last3]
            if None in sizes:
                missing = " and ".join(schedule.short_label(m.period) for m, n in zip(last3, sizes, strict=True) if n is None)
                staff = f"headcount not recorded for {missing} ({sizes[-1]} in {schedule.short_label(now.period)})"
            elif max(sizes) <= min(sizes) * 1.1:
                staff = f"headcount steady at {sizes[-1]}"
            else:
                staff = None  # the team grew or shrank: that explains it
            if staff:
                trail = " → ".join(duration(v) for v in medians)
                out.append(Signal(f"{team.name}: cycle time rising for 2 consecutive months ({trail}, median) with {staff}."))
        # 2. a failure rate far above the others
        mine = now.teams[team.id].as_sender
        rest_accepted = now.total.side.accepted - mine.accepted
        rest_failed = now.total.side.failed - mine.failed
        if mine.accepted >= MIN_ACCEPTED and rest_accepted >= MIN_ACCEPTED:
            rate, rest = mine.failure_rate, rest_failed / rest_accepted
            if rate >= 2 * rest and rate - rest >= 0.15:
                out.append(Signal(
                    f"{team.name}: {percent(rate)} of its handoffs needed another round ({mine.failed} of {mine.accepted}), "
                    f"against {percent(rest)} for the rest of the organisation ({rest_failed} of {rest_accepted})."
                ))
    out += _escalation_signals(cfg, months[-2], now)
    return out


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
        if row.created >= MIN_FOR_ESCALATIONS and row.reached_steward * 100 >= STEWARD_PERCENT * row.created:  # exact: 3 of 15 is 20%
            why.append(f"{row.reached_steward} of the {row.created} handoffs sent in {schedule.short_label(now.period)} "
                       f"({percent(row.reached_steward / row.created)}) reached the steward level")
        if row.reached_last and prev is not None and prev.reached_last:
            why.append(f"handoffs reached the last escalation level in both {schedule.short_label(before.period)} "
                       f"({prev.reached_last}) and {schedule.short_label(now.period)} ({row.reached_last})")
        if why:
            names = f"{cfg.team(b.from_team).name} → {cfg.team(b.to_team).name}"
            out.append(Signal(f"{names}: frequent escalations: {'; '.join(why)}. Steward:", [b.steward]))
    return out


def compose(db: Database, cfg: ProcessConfig, period: str, at: datetime | None = None) -> Digest:
    """The digest of `period` from the stored events and the recorded headcounts: the preview and the
    post call this one function with the same data, so they are the same digest. `at` (naive UTC,
    default now) only decides whether the month has ended: a month not ended is labelled "month to date"."""
    schedule.parse_period(period)
    months = _months(db, cfg, period)
    now, before = months[-1], months[-2]
    headcount = headcounts(db, cfg, period)
    shared = initiatives.current(db, period)
    teams = [
        TeamView(
            id=t.id, name=t.name, now=now.teams[t.id], before=before.teams[t.id],
            reasons=_reasons(now.teams[t.id].reasons, now.wording), initiative=shared.get(t.id),
            initiative_now=initiatives.value(now, t.id, shared[t.id].metric) if t.id in shared else None,
        )
        for t in cfg.teams
    ]
    boundaries = []
    for b in cfg.boundaries:
        key = (b.from_team, b.to_team)
        row_now = now.boundaries.get(key) or metrics.BoundaryMonth(*key)
        row_before = before.boundaries.get(key) or metrics.BoundaryMonth(*key)
        boundaries.append(BoundaryView(cfg.team(b.from_team).name, cfg.team(b.to_team).name, b.steward, row_now, row_before,
                                       _reasons(row_now.reasons, now.wording), b.sla_hours))
    budgets = {t.id: Budget(t.id, period, now.teams[t.id].sent, now.teams[t.id].fasttracks_approved, cfg.fasttrack.budget_percent)
               for t in cfg.teams}
    for tv in teams:
        tv.budget = budgets[tv.id]
    to_date = not closed(cfg, period, at or utcnow())
    return Digest(
        period=period, label=schedule.label(period) + (" (month to date)" if to_date else ""), to_date=to_date,
        organization=cfg.organization.name,
        channel=cfg.organization.digest_channel, months=months, teams=teams, boundaries=boundaries,
        signals=_signals(cfg, months, headcount, budgets), headcount=headcount, review=_review(cfg, now),
        budget_percent=cfg.fasttrack.budget_percent,
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
        out.append(Exception_(
            element=element, count=count, recurring=count >= RECURRING,
            reasons=", ".join(f"{r} ×{n}" for r, n in sorted(reasons.items(), key=lambda item: (-item[1], item[0]))),
            owner_team=team.name if team else None, owner_user=setter if setter and not team else None,
        ))
    return out


# -- the trend chart -------------------------------------------------------------------------------


def chart(d: Digest) -> bytes:
    """A PNG: median cycle time and handoff failure rate (as sender) per team over the last months,
    for the busiest teams."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    volume = {t.id: sum(m.teams[t.id].as_sender.accepted for m in d.months) for t in d.teams}
    shown = sorted((t for t in d.teams if volume[t.id]), key=lambda t: (-volume[t.id], t.name))[:CHART_TEAMS]
    labels = [schedule.short_label(m.period) for m in d.months]
    x = list(range(len(labels)))
    fig, (top, bottom) = plt.subplots(2, 1, figsize=(9, 6.5), sharex=True, dpi=100)
    for team in shown:
        cycle = [m.teams[team.id].as_sender.cycle.get(0.5) for m in d.months]
        rate = [m.teams[team.id].as_sender.failure_rate for m in d.months]
        top.plot(x, [c / 86400 if c is not None else float("nan") for c in cycle], marker="o", label=team.name)
        bottom.plot(x, [r * 100 if r is not None else float("nan") for r in rate], marker="o", label=team.name)
    top.set_ylabel("cycle time, median (days)")
    bottom.set_ylabel("handoff failure rate (%)")
    top.set_title(f"{d.organization}: handoffs sent, {labels[0]} – {labels[-1]}")
    for ax in (top, bottom):
        ax.grid(True, alpha=0.3)
        ax.set_xlim(-0.3, len(x) - 0.7)
        ax.set_ylim(bottom=0)
    bottom.set_xticks(x, labels)
    if shown:
        top.legend(fontsize=8, loc="upper left", ncols=2)
    if len(d.teams) > len(shown):
        fig.text(0.01, 0.01, f"{len(shown)} of {len(d.teams)} teams: those whose handoffs were accepted most", fontsize=8)
    fig.tight_layout()
    out = io.BytesIO()
    fig.savefig(out, format="png")
    plt.close(fig)
    return out.getvalue()
