"""A handoff's clock: who it waits on, its deadline, and when each level of its escalation path falls
due, all in working hours from the moment it began to wait. No Slack and no database in here.

While a handoff is open it waits on the receiving team: the boundary's escalation path applies
(`ProcessConfig.escalation_path`), and its deadline is the SLA. Sent back, it waits on its sender: a
reminder to the sender at the SLA, the steward at twice the SLA. Each snooze puts every level of the
round off by one working day. A resubmission or a send-back starts a new round: the clock starts again.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from bot.domain.core.process import ProcessConfig
from bot.domain.core.worktime import WorkTime
from storage.models import Handoff, HandoffState

MAX_SNOOZES = 2  # per round


@dataclass(frozen=True)
class Due:
    level: int  # 1, 2, …
    notify: tuple[str, ...]  # "team", "steward", "contact", "sender", user ids, user group ids
    at: datetime


def waits_on(h: Handoff) -> str | None:
    if h.state == HandoffState.OPEN:
        return "reviewers"
    if h.state in HandoffState.WAITING_FOR_SENDER:
        return "sender"
    return None


def levels(cfg: ProcessConfig, h: Handoff, work: WorkTime | None = None) -> list[Due]:
    """The round's escalation levels with the moment each falls due (empty when nobody is waited on)."""
    boundary = cfg.boundary(h.from_team, h.to_team)
    party = waits_on(h)
    if boundary is None or party is None or h.waiting_since is None:
        return []
    work = work or WorkTime.of(cfg)
    sla, put_off = boundary.sla_hours, (h.snoozes or 0) * work.day_hours
    if party == "reviewers":
        path = [(lv.notify, lv.hours(sla)) for lv in cfg.escalation_path(boundary)]
    else:
        path = [(("sender",), sla), (("steward",), 2 * sla)]
    return [Due(i, notify, work.add(h.waiting_since, hours + put_off)) for i, (notify, hours) in enumerate(path, 1)]


def deadline(cfg: ProcessConfig, h: Handoff, work: WorkTime | None = None) -> datetime | None:
    """When the party it waits on should have answered: the SLA, in working hours, plus any snoozes."""
    boundary = cfg.boundary(h.from_team, h.to_team)
    if boundary is None or waits_on(h) is None or h.waiting_since is None:
        return None
    work = work or WorkTime.of(cfg)
    return work.add(h.waiting_since, boundary.sla_hours + (h.snoozes or 0) * work.day_hours)


def overdue_hours(cfg: ProcessConfig, h: Handoff, now: datetime, work: WorkTime | None = None) -> float:
    """Working hours past the deadline (0 when not overdue)."""
    work = work or WorkTime.of(cfg)
    due = deadline(cfg, h, work)
    return work.between(due, now) if due is not None and now > due else 0.0


def current(cfg: ProcessConfig, h: Handoff, now: datetime, work: WorkTime | None = None) -> Due | None:
    """The highest level that has fallen due by `now` (after downtime, only this one is sent)."""
    return next((d for d in reversed(levels(cfg, h, work)) if d.at <= now), None)


def next_look(cfg: ProcessConfig, h: Handoff, work: WorkTime | None = None) -> datetime | None:
    """When the sweep must look at the handoff next: the first level above the one that fired."""
    return next((d.at for d in levels(cfg, h, work) if d.level > (h.level or 0)), None)


def restart(cfg: ProcessConfig, h: Handoff, values: dict, now: datetime) -> dict:
    """The clock columns for a transition to `values["state"]`: a new wait starts now (or none)."""
    projected = Handoff(**{**h.model_dump(), **values, "waiting_since": now, "snoozes": 0, "level": 0})
    if waits_on(projected) is None:
        return {"next_escalation_at": None}  # decided: the round's level and snoozes stay as they were
    return {"waiting_since": now, "snoozes": 0, "level": 0, "next_escalation_at": next_look(cfg, projected)}
