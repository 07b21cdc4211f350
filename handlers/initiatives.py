"""Improvement initiatives: the prompt's button, the form, and the prompt drawn (and redrawn in place once
shared) from what is stored."""

from __future__ import annotations

from slack_bolt import App

from bot.domain import figures, initiatives
from bot.domain.core import schedule
from bot.domain.core.items import RuleError
from handlers.common import form_values, guarded, metadata, open_view, state_value, tell
from templates import render

FIELDS = ("text", "metric", "owner")


def _parse(cfg, value: str | None) -> tuple[str, str] | None:
    team_id, _, period = str(value or "")[:60].partition(" ")
    try:
        schedule.parse_period(period)
    except ValueError:
        return None
    return (team_id, period) if cfg.team(team_id) else None


def _clicked(body, client, context):
    """The deps, the clicker and the (team, month) their button names; a button naming none is told so."""
    deps = context["deps"]
    user = body["user"]["id"]
    picked = _parse(deps.cfg, (body.get("actions") or [{}])[0].get("value"))
    if picked is None:
        tell(client, body, user, "That button names no team of the process configuration.")
    return deps, user, picked


@guarded
def open_form(ack, body, client, context):
    ack()
    deps, user, picked = _clicked(body, client, context)
    if picked is None:
        return None
    team_id, period = picked
    try:
        initiatives.may_share(deps.cfg, team_id, user)
    except RuleError as exc:
        return tell(client, body, user, exc)
    current = initiatives.current(deps.db, period).get(team_id)
    if current is not None and current.period != period:
        current = None  # an earlier month's: start afresh, the digest still shows it until replaced
    open_view(
        client,
        body,
        render(
            "initiative_modal",
            team=deps.cfg.team(team_id),
            period=period,
            label=schedule.label(period),
            metrics=initiatives.METRICS,
            current=current,
            user=user,
        ),
    )


@guarded
def carry_on(ack, body, client, context):
    """*It continues*: the team's earlier initiative is kept for this month, its baseline with it."""
    ack()
    deps, user, picked = _clicked(body, client, context)
    if picked is None:
        return None
    try:
        outcome = initiatives.carry_on(deps.db, deps.cfg, *picked, user, deps.now())
    except RuleError as exc:
        return tell(client, body, user, exc)
    deps.deliver(outcome.keys)


@guarded
def submit(ack, body, view, context):
    deps = context["deps"]
    user = body["user"]["id"]
    meta = metadata(view)
    values = form_values(view)
    team_id, period = str(meta.get("team"))[:40], str(meta.get("period"))[:7]
    try:
        schedule.parse_period(period)
        outcome = initiatives.share(
            deps.db,
            deps.cfg,
            team_id,
            period,
            user,
            state_value(values, "text"),
            state_value(values, "metric"),
            state_value(values, "owner"),
            deps.now(),
        )
    except ValueError:
        return ack(response_action="errors", errors={"text": "This form does not name a month."})
    except RuleError as exc:
        return ack(response_action="errors", errors={exc.field if exc.field in FIELDS else "text": str(exc)})
    ack()
    deps.deliver(outcome.keys)


def render_prompt(deps, row) -> dict | None:
    """A team's prompt for a month, with the initiative it shared for that month, if any."""
    team, period = deps.cfg.team(row.params["team"]), row.params["period"]
    if team is None:
        return None
    shared = initiatives.current(deps.db, period).get(team.id)
    shared = shared if shared is not None and shared.period == period else None
    own = initiatives.prompt_figures(deps.db, deps.cfg, team.id, period)
    earlier = own["earlier"]
    return render(
        "initiative_prompt",
        team=team,
        period=period,
        label=schedule.label(period),
        due=schedule.digest_due(deps.cfg, period),
        initiative=shared,
        metric_label=initiatives.METRICS.get(shared.metric) if shared else None,
        figures=own["figures"],
        figures_label=schedule.short_label(own["figures_period"]),
        earlier=earlier,
        earlier_label=initiatives.METRICS.get(earlier.metric) if earlier else None,
        earlier_since=schedule.short_label(earlier.period) if earlier else None,
        earlier_moved=(
            figures.metric_text(earlier.metric, earlier.baseline),
            schedule.short_label(earlier.baseline_period),
            figures.metric_text(earlier.metric, own["earlier_now"]),
        )
        if earlier
        else None,
    )


def register(app: App) -> None:
    app.action("initiative_share")(open_form)
    app.action("initiative_continue")(carry_on)
    app.view("initiative_submit")(submit)


RENDERERS = {"initiative_prompt": render_prompt}
