"""Improvement initiatives: each team shares one for the monthly sync, with the metric it should move.
No Slack in here."""

from __future__ import annotations

import re
from datetime import datetime

from sqlalchemy import func
from sqlmodel import select

from bot.domain import metrics
from bot.domain.core import outbox, schedule
from bot.domain.core.items import NotAllowed, Outcome, RuleError
from bot.domain.core.outbox import POST, UPDATE, Message
from bot.domain.core.process import USER_ID, ProcessConfig
from bot.domain.core.timeutil import utcnow
from bot.domain.figures import MIN_FOR_TREND, Figure
from bot.domain.metrics import Month
from storage.db import Database
from storage.models import Initiative, Outbox

TEXT_MAX = 300

# metric id → (label, how to read it from a month, unit, "lower is better")
METRICS = {
    "cycle_time": "Cycle time (median, handoffs sent)",
    "failure_rate_sent": "Handoff failure rate (as sender)",
    "failure_rate_received": "Handoff failure rate (as receiver)",
}


def value(month: Month, team: str, metric: str) -> float | None:
    """The metric's value for a team in a month: seconds for cycle time, a fraction for rates."""
    row = month.teams.get(team)
    if row is None:
        return None
    if metric == "cycle_time":
        return row.as_sender.cycle.get(0.5)
    if metric == "failure_rate_sent":
        return row.as_sender.failure_rate
    if metric == "failure_rate_received":
        return row.as_receiver.failure_rate
    return None


def may_share(cfg: ProcessConfig, team_id: str, user: str) -> None:
    team = cfg.team(team_id)
    if team is None:
        raise RuleError("That team is no longer in the process configuration.")
    if user not in team.members:
        raise NotAllowed(f"Only members of {team.name} can share its improvement initiative.")


def prompt_key(period: str, team: str) -> str:
    """The outbox key of a team's prompt for a month."""
    return f"prompt:{period}:{team}"


def share(
    db: Database,
    cfg: ProcessConfig,
    team_id: str,
    period: str,
    user: str,
    text: str | None,
    metric: str | None,
    owner: str | None,
    now: datetime | None = None,
) -> Outcome:
    """Record a team's initiative for `period`, and update the team's prompt in place (or, with no prompt
    on record, post it in the team's channel), in one transaction. Raises RuleError with the form
    field at fault."""
    now = now or utcnow()
    may_share(cfg, team_id, user)
    schedule.parse_period(period)
    text = " ".join((text or "").split())
    if not text:
        raise RuleError("Say what the team will change.", "text")
    if len(text) > TEXT_MAX:
        raise RuleError(f"At most {TEXT_MAX} characters.", "text")
    if metric not in METRICS:
        raise RuleError("Choose the metric it should move.", "metric")
    if not owner or not re.match(USER_ID, owner):
        raise RuleError("Choose who owns it.", "owner")
    tz = cfg.organization.tz
    baseline_period = schedule.shift(schedule.period_of(now, tz), -1)
    start, end = schedule.bounds(baseline_period, tz)
    baseline = value(
        metrics.figures(db, baseline_period, start, end, [t.id for t in cfg.teams], utcnow()), team_id, metric
    )
    row = Initiative(
        team=team_id,
        period=period,
        text=text,
        metric=metric,
        owner=owner,
        set_by=user,
        set_at=now,
        baseline_period=baseline_period,
        baseline=baseline,
    )
    return _save(db, cfg, row, user, now)


def carry_on(
    db: Database, cfg: ProcessConfig, team_id: str, period: str, user: str, now: datetime | None = None
) -> Outcome:
    """The team's earlier initiative continues for `period`: the same text, metric, owner and baseline (its
    movement keeps being measured from where it started), recorded for `period` by `user`, and the prompt
    updated in place. Once the team has one for `period`, nothing changes."""
    now = now or utcnow()
    may_share(cfg, team_id, user)
    schedule.parse_period(period)
    earlier = current(db, period).get(team_id)
    if earlier is None:
        raise RuleError("There is no earlier initiative to continue: share one.")
    if earlier.period == period:
        return Outcome(earlier, changed=False, keys=[])
    row = Initiative(
        team=team_id,
        period=period,
        text=earlier.text,
        metric=earlier.metric,
        owner=earlier.owner,
        set_by=user,
        set_at=now,
        baseline_period=earlier.baseline_period,
        baseline=earlier.baseline,
    )
    return _save(db, cfg, row, user, now)


def _save(db: Database, cfg: ProcessConfig, row: Initiative, user: str, now: datetime) -> Outcome:
    """Record the initiative and update the team's prompt in place (or, with no prompt on record, post it
    in the team's channel), in one transaction."""
    team_id, period = row.team, row.period
    key, params = prompt_key(period, team_id), {"team": team_id, "period": period}
    with db.write() as session:
        session.add(row)
        session.flush()
        if session.exec(select(Outbox.id).where(Outbox.key == key)).first() is not None:
            message = Message(
                outbox.update_of(key),
                f"prompt:{period}",
                UPDATE,
                cfg.team(team_id).channel,
                "initiative_prompt",
                params,
                anchor=key,
            )
        else:  # shared without a prompt on record: say so in the team's channel
            message = Message(
                f"initiative:{row.id}:shared",
                f"prompt:{period}",
                POST,
                cfg.team(team_id).channel,
                "initiative_prompt",
                params,
                actor=user,
            )
        keys = outbox.add(session, db, [message], now)
    return Outcome(row, changed=True, keys=keys)


def prompt_figures(db: Database, cfg: ProcessConfig, team_id: str, period: str) -> dict:
    """What a team's prompt for `period` shows besides the form: the team's own figures in the last full
    month (cycle time and failure rate of handoffs sent, with their direction against the month before),
    and its earlier initiative, if it has one from a month before `period`, with its metric's movement."""
    tz, teams = cfg.organization.tz, [t.id for t in cfg.teams]
    last, before = schedule.shift(period, -1), schedule.shift(period, -2)
    months = {p: metrics.figures(db, p, *schedule.bounds(p, tz), teams, utcnow(), cfg) for p in (before, last)}
    mine, prev = months[last].teams[team_id].as_sender, months[before].teams[team_id].as_sender
    label = schedule.short_label(before)
    figures = [
        Figure(
            "Cycle time (median, handoffs sent)",
            "duration",
            mine.cycle.get(0.5),
            prev.cycle.get(0.5),
            True,
            mine.accepted,
            prev.accepted,
            minimum=MIN_FOR_TREND,
            before_label=label,
        ),
        Figure(
            "Failure rate (as sender)",
            "rate",
            mine.failure_rate,
            prev.failure_rate,
            True,
            mine.accepted,
            prev.accepted,
            before_label=label,
            detail=f"{mine.failed} of {mine.accepted}" if mine.accepted else "",
        ),
    ]
    earlier = current(db, period).get(team_id)
    if earlier is not None and earlier.period == period:
        earlier = None
    moved = value(months[last], team_id, earlier.metric) if earlier else None
    return {"figures": figures, "figures_period": last, "earlier": earlier, "earlier_now": moved}


def current(db: Database, period: str) -> dict[str, Initiative]:
    """Each team's newest initiative shared for `period` or before."""
    with db.read() as session:
        newest = select(func.max(Initiative.id)).where(Initiative.period <= period).group_by(Initiative.team)
        rows = session.exec(select(Initiative).where(Initiative.id.in_(newest)))
        return {row.team: row for row in rows}
