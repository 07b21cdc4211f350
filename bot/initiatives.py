"""Improvement initiatives: each team shares one for the monthly sync, with the metric it should move.
No Slack in here."""

from __future__ import annotations

import re
from datetime import datetime

from sqlalchemy import func
from sqlmodel import select

from bot import outbox, schedule
from bot.items import NotAllowed, Outcome, RuleError
from bot.outbox import POST, UPDATE, Message
from bot.process import USER_ID, ProcessConfig
from bot.time import utcnow
from storage import metrics
from storage.db import Database
from storage.metrics import Month
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


def share(db: Database, cfg: ProcessConfig, team_id: str, period: str, user: str, text: str | None, metric: str | None,
          owner: str | None, now: datetime | None = None) -> Outcome:
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
    baseline = value(metrics.figures(db, baseline_period, start, end, [t.id for t in cfg.teams], utcnow()), team_id, metric)
    row = Initiative(team=team_id, period=period, text=text, metric=metric, owner=owner, set_by=user, set_at=now,
                     baseline_period=baseline_period, baseline=baseline)
    key, params = prompt_key(period, team_id), {"team": team_id, "period": period}
    with db.write() as session:
        session.add(row)
        session.flush()
        if session.exec(select(Outbox.id).where(Outbox.key == key)).first() is not None:
            message = Message(outbox.update_of(key), f"prompt:{period}", UPDATE, cfg.team(team_id).channel, "initiative_prompt",
                              params, anchor=key)
        else:  # shared without a prompt on record: say so in the team's channel
            message = Message(f"initiative:{row.id}:shared", f"prompt:{period}", POST, cfg.team(team_id).channel,
                              "initiative_prompt", params, actor=user)
        keys = outbox.add(session, db, [message], now)
    return Outcome(row, changed=True, keys=keys)


def current(db: Database, period: str) -> dict[str, Initiative]:
    """Each team's newest initiative shared for `period` or before."""
    with db.read() as session:
        newest = select(func.max(Initiative.id)).where(Initiative.period <= period).group_by(Initiative.team)
        rows = session.exec(select(Initiative).where(Initiative.id.in_(newest)))
        return {row.team: row for row in rows}
