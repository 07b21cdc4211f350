"""The App Home in Slack: `app_home_opened` (acknowledged at once; the Home is published after, through the
outbox), the pulse setting's buttons, and the renderer that draws the Home when the outbox publishes it.

The Home's other buttons are the cards' own (`handoff_accept`, `fasttrack_approve`, … with the same values),
handled by the cards' listeners: acting on the Home is acting on the card, through the same rules, events
and card updates. A decision re-publishes the Home of everyone it concerns (`bot.domain.home.republish`); a click
on a Home that was stale (the handoff decided meanwhile) is told so privately and re-publishes that Home.
"""

from __future__ import annotations

import logging
import re
from datetime import datetime

from slack_bolt import App

from bot.domain import fasttrack, home, pulse, sla
from bot.domain.core import schedule
from bot.domain.core.items import RuleError
from handlers.common import guarded, tell
from templates import render

log = logging.getLogger("steward")
MAX_BLOCKS = 100  # Slack's limit for a Home view
_USER = re.compile(r"^[UW][A-Z0-9]{2,19}$")
_EVENT_ID = re.compile(r"^[A-Za-z0-9_.-]{1,40}$")


@guarded
def opened(body, event, context, request=None):
    """`app_home_opened`: Bolt has acknowledged it already (the Events API wants an answer within 3 s);
    the Home is drawn and published from the outbox. A delivery seen before (its `event_id`: a duplicate,
    or Slack's retry, `X-Slack-Retry-Num`, of one handled) does nothing."""
    deps = context["deps"]
    if not isinstance(event, dict) or event.get("tab") != "home":
        return
    user = event.get("user")
    if not isinstance(user, str) or not _USER.match(user):
        return
    event_id = body.get("event_id")
    event_id = event_id if isinstance(event_id, str) and _EVENT_ID.match(event_id) else None
    retry = (getattr(request, "headers", None) or {}).get("x-slack-retry-num") if request is not None else None
    if event_id is None and retry:
        return  # a retry we cannot tell from its first delivery: the first one published it
    keys = home.opened(deps.db, user, event_id, deps.now())
    if keys is None:
        log.info(
            "app_home_opened %s: delivered before%s; ignored",
            event_id,
            f" (retry {retry[0] if isinstance(retry, list) else retry})" if retry else "",
        )
        return
    deps.deliver(keys)


def _pulse_click(ack, body, client, context, do):
    ack()
    deps = context["deps"]
    user = body["user"]["id"]
    try:
        if user not in pulse.members(deps.cfg):
            raise RuleError("The weekly survey does not ask you, so there is nothing to pause or resume.")
        outcome = do(deps.db, user, None, deps.now(), also=[home.message(user)])
    except RuleError as exc:
        return tell(client, body, user, exc)
    deps.deliver(outcome.keys)


@guarded
def pulse_pause(ack, body, client, context):
    _pulse_click(ack, body, client, context, pulse.pause)


@guarded
def pulse_resume(ack, body, client, context):
    _pulse_click(ack, body, client, context, pulse.resume)


def register(app: App) -> None:
    app.event("app_home_opened")(opened)
    app.action("home_pulse_pause")(pulse_pause)
    app.action("home_pulse_resume")(pulse_resume)


# -- what the outbox delivers ------------------------------------------------------------------------------


def context(deps, user: str, now: datetime) -> dict:
    """Everything the Home shows, read from the database and the configuration."""
    cfg = deps.cfg
    w = home.waiting(deps.db, cfg, user)
    clocks = {h.id: (sla.deadline(cfg, h), round(sla.overdue_hours(cfg, h, now), 1)) for h in w.reviews + w.resubmits}
    budgets = {}
    for r in w.fasttracks:
        events = fasttrack.history(deps.db, r.id)
        try:
            budgets[r.id] = fasttrack.Budget.latest(events)
        except (StopIteration, KeyError):
            pass
    bounds = home.boundaries(cfg, user)
    rights = home.rights(cfg, user)
    period = schedule.period_of(now, cfg.organization.tz)
    roles = (
        any(b.steward == user for b in cfg.boundaries)
        or user in cfg.fasttrack.approvers
        or user in cfg.fasttrack.backup_approvers
        or any(user in cfg.granters(r) for r in cfg.rights)
    )
    return dict(
        user=user,
        waiting=w,
        clocks=clocks,
        budgets=budgets,
        names={t.id: t.name for t in cfg.teams},
        teams=home.team_months(deps.db, cfg, user, now, deps.sealer),
        month_label=schedule.label(period),
        last_label=schedule.short_label(schedule.shift(period, -1)),
        boundaries=bounds[: home.SHOW_BOUNDARIES],
        boundaries_total=len(bounds),
        models=[cfg.model_of(b) for b in bounds[: home.SHOW_BOUNDARIES]],
        rights=rights[: home.SHOW_RIGHTS],
        rights_total=len(rights),
        granters={r.element: cfg.granters(r) for r in rights},
        pulse=home.pulse_setting(deps.db, cfg, user, now),
        pulse_on=cfg.pulse_on and deps.sealer is not None,
        roles=roles,
        now=now,
    )


def render_home(deps, row) -> dict:
    """The person's Home as it stands when it is published. Never over Slack's 100 blocks: the lists are
    capped (with "and N more"), and anything past the limit is cut with a last line saying so."""
    if getattr(deps, "roster", None) is not None:
        deps.roster.expire()  # the members as they are now (a look at their stamp): a leaver's Home never shows the team's items
    view = render("home", **context(deps, row.params["user"], deps.now()))
    if len(view["blocks"]) > MAX_BLOCKS:
        view["blocks"] = view["blocks"][: MAX_BLOCKS - 1] + [
            {
                "type": "context",
                "elements": [
                    {
                        "type": "mrkdwn",
                        "text": "More than fits here: `/handoff list` and `/fasttrack list` show the rest.",
                    }
                ],
            }
        ]
    return view


RENDERERS = {"home": render_home}
