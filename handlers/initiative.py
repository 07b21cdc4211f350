"""Improvement initiatives: the prompt's button, the form, and the prompt updated in place."""

from __future__ import annotations

from slack_bolt import App

from bot import initiatives, ledger, schedule
from bot.clock import PROMPT
from bot.handoffs import HandoffError
from handlers.common import metadata, slack_call, state_value, tell
from templates import render

FIELDS = ("text", "metric", "owner")


def register(app: App, deps) -> None:
    cfg, db = deps.cfg, deps.db

    def parse(value: str | None) -> tuple[str, str] | None:
        team_id, _, period = (value or "").partition(" ")
        try:
            schedule.parse_period(period)
        except ValueError:
            return None
        return (team_id, period) if cfg.team(team_id) else None

    @app.action("initiative_share")
    def open_form(ack, body, client):
        ack()
        user = body["user"]["id"]
        picked = parse((body.get("actions") or [{}])[0].get("value"))
        if picked is None:
            return tell(client, body, user, "That button names no team of the process configuration.")
        team_id, period = picked
        try:
            initiatives.may_share(cfg, team_id, user)
        except HandoffError as exc:
            return tell(client, body, user, exc)
        current = initiatives.current(db, period).get(team_id)
        if current is not None and current.period != period:
            current = None  # an earlier month's: start afresh, the digest still shows it until replaced
        view = render("initiative_modal", team=cfg.team(team_id), period=period, label=schedule.label(period),
                      metrics=initiatives.METRICS, current=current, user=user)
        slack_call(client.views_open, trigger_id=body.get("trigger_id"), view=view)

    @app.view("initiative_submit")
    def submit(ack, body, view, client):
        user = body["user"]["id"]
        meta = metadata(view)
        values = (view.get("state") or {}).get("values") or {}
        team_id, period = str(meta.get("team")), str(meta.get("period"))
        try:
            schedule.parse_period(period)
            row = initiatives.share(db, cfg, team_id, period, user, state_value(values, "text"),
                                    state_value(values, "metric"), state_value(values, "owner"), deps.now())
        except ValueError:
            return ack(response_action="errors", errors={"text": "This form does not name a month."})
        except HandoffError as exc:
            return ack(response_action="errors", errors={exc.field if exc.field in FIELDS else "text": str(exc)})
        ack()
        prompt = ledger.entry(db, PROMPT, period, team_id)
        team = cfg.team(team_id)
        message = render("initiative_prompt", team=team, period=period, label=schedule.label(period),
                         due=schedule.digest_due(cfg, period), initiative=row, metric_label=initiatives.METRICS[row.metric])
        if prompt is not None and prompt.channel and prompt.ref:
            slack_call(client.chat_update, channel=prompt.channel, ts=prompt.ref, text=message["text"], blocks=message["blocks"])
        else:  # shared without a prompt on record: say so in the team's channel
            slack_call(client.chat_postMessage, channel=team.channel, text=message["text"], blocks=message["blocks"])
