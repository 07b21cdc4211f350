"""/handoff: the modal, the receiving team's card, its buttons, the send-back and resubmit modals, and the
renderers that draw the card and the sender's messages when the outbox delivers them."""

from __future__ import annotations

import logging
import re
from datetime import date

from slack_bolt import App

from bot.domain import escalations, fasttrack, handoffs, sla
from bot.domain.core import outbox
from bot.domain.core.items import NotAllowed, RuleError
from bot.domain.core.timeutil import local_today
from bot.domain.handoffs import Draft
from handlers.common import (
    act,
    action_int,
    as_id,
    form_values,
    guarded,
    metadata,
    open_view,
    round_shown,
    slack_call,
    stale,
    state_value,
    tell,
    view_key,
)
from storage.models import EventKind, Handoff, HandoffState, OutboxStatus
from templates import render

log = logging.getLogger("steward")

COMMAND = "/handoff"
STATE_WORDS = {
    HandoffState.OPEN: "waiting for review",
    HandoffState.REWORK: "sent back for rework",
    HandoffState.CLARIFICATION: "sent back for clarification",
    HandoffState.ACCEPTED: "accepted",
    HandoffState.CANCELLED: "cancelled",
}


# -- views -------------------------------------------------------------------------------------------------


def modal(cfg, user: str, from_id: str | None, to_id: str | None) -> dict:
    mine = cfg.teams_of(user)
    to_team = cfg.team(to_id) if to_id else None
    from_team = next((t for t in mine if t.id == from_id), None)
    if from_team is None and to_team is not None:  # a sender in several teams: the one with a boundary
        from_team = next((t for t in mine if cfg.boundary(t.id, to_team.id)), None)
    from_team = from_team or mine[0]
    if to_team is not None and to_team.id == from_team.id:
        to_team = None
    boundary = cfg.boundary(from_team.id, to_team.id) if to_team else None
    return render(
        "handoff_modal",
        from_teams=mine,
        from_team=from_team,
        to_teams=[t for t in cfg.teams if t.id != from_team.id],
        to_team=to_team,
        boundary=boundary,
        model=cfg.model_of(boundary) if boundary else None,
        criteria_block=criteria_block(from_team.id, to_team.id if to_team else ""),
        alternatives=handoffs.targets(cfg, [from_team.id]),
    )


def criteria_block(from_id: str, to_id: str) -> str:
    # A block id per boundary, so Slack does not carry ticks over from another boundary's criteria.
    return f"criteria-{from_id}-{to_id}"[:255]


def team_name(cfg, team_id: str) -> str:
    team = cfg.team(team_id)
    return team.name if team else team_id


def unchanged(h: Handoff) -> str:
    return f"Handoff #{h.id} is already {STATE_WORDS.get(h.state, h.state)}; nothing changed."


# -- /handoff ----------------------------------------------------------------------------------------------


@guarded
def command(ack, body, client, context):
    deps = context["deps"]
    cfg = deps.cfg
    user = body.get("user_id")
    text = " ".join((body.get("text") or "").split())[:200]
    verb, _, rest = text.partition(" ")
    verb = verb.lower()
    if verb in ("help", "?"):
        return ack(**render("handoff_help", problem=None, command=COMMAND))
    if verb == "list":
        sent, received = handoffs.open_for(deps.db, cfg, user)
        clocks = {
            h.id: (sla.deadline(cfg, h), round(sla.overdue_hours(cfg, h, deps.now()), 1)) for h in sent + received
        }
        return ack(
            **render(
                "handoff_list",
                sent=sent,
                received=received,
                names={t.id: t.name for t in cfg.teams},
                now=deps.now(),
                clocks=clocks,
            )
        )
    if verb == "cancel":
        return cancel(ack, deps, user, rest)
    if verb == "escalate":
        return escalate(ack, deps, user, rest)
    to_team = None
    if text:
        to_team = cfg.find_team(text)
        if to_team is None:
            names = ", ".join(f"{t.name} ({t.id})" for t in cfg.teams)
            return ack(
                **render(
                    "handoff_help", problem=f"There is no team or command '{text}'. Teams: {names}.", command=COMMAND
                )
            )
    if not cfg.teams_of(user):
        return ack(
            **render(
                "notice",
                text="You are not a member of any team in Steward's process configuration, so you cannot hand off work yet. Ask your process owner to add you.",
            )
        )
    ack()
    open_view(client, body, modal(cfg, user, None, to_team.id if to_team else None))


def cancel(ack, deps, user: str, rest: str):
    handoff_id = as_id(rest)
    if handoff_id is None:
        return ack(**render("notice", text=f"Say which handoff to cancel: `{COMMAND} cancel <number>`."))
    try:
        outcome = handoffs.cancel(deps.db, deps.cfg, handoff_id, user, deps.now())
    except RuleError as exc:
        return ack(**render("notice", text=str(exc), people=exc.people))
    if not outcome.changed:
        return ack(**render("notice", text=unchanged(outcome.item)))
    ack(**render("notice", text=f"Handoff #{handoff_id} is cancelled."))
    deps.deliver(outcome.keys)


def escalate(ack, deps, user: str, rest: str):
    number, _, reason = rest.partition(" ")
    handoff_id = as_id(number)
    if handoff_id is None:
        return ack(**render("notice", text=f"Say which handoff and why: `{COMMAND} escalate <number> <reason>`."))
    try:
        outcome = escalations.by_hand(deps.db, deps.cfg, handoff_id, user, reason, deps.now())
    except RuleError as exc:
        return ack(**render("notice", text=str(exc), people=exc.people))
    if not outcome.changed:
        return ack(**render("notice", text=unchanged(outcome.item)))
    boundary = deps.cfg.boundary(outcome.item.from_team, outcome.item.to_team)
    steward = boundary.steward if boundary else None
    ack(
        **render(
            "notice",
            text=f"Handoff #{handoff_id} is escalated" + (f" to its steward <@{steward}>." if steward else "."),
            people=[steward] if steward else [],
        )
    )
    deps.deliver(outcome.keys)


@guarded
def snooze(ack, body, client, context):
    ack()
    deps = context["deps"]
    decide(
        deps, client, body, lambda user, handoff_id: escalations.snooze(deps.db, deps.cfg, handoff_id, user, deps.now())
    )


def decide(deps, client, body, call) -> None:
    """A button that decides: the domain call for the handoff it names; a refusal or a click after the
    decision is told privately, a decision's messages are delivered."""
    outcome = act(client, body, "handoff", call, deps)
    if outcome is None:
        return
    if not outcome.changed:
        tell(client, body, body["user"]["id"], unchanged(outcome.item))
        return stale(deps, body, body["user"]["id"])
    deps.deliver(outcome.keys)


# -- the modal ---------------------------------------------------------------------------------------------


@guarded
def pick_team(ack, body, client, context):
    ack()
    cfg = context["deps"].cfg
    view = body.get("view") or {}
    values = form_values(view)
    user = body["user"]["id"]
    if not cfg.teams_of(user):
        return
    from_id = state_value(values, "from_team") or metadata(view).get("from")
    slack_call(
        client.views_update,
        view_id=view.get("id"),
        hash=view.get("hash"),
        view=modal(cfg, user, from_id, state_value(values, "to_team")),
    )


@guarded
def submit(ack, body, view, context):
    deps = context["deps"]
    cfg = deps.cfg
    user = body["user"]["id"]
    values = form_values(view)
    from_id = state_value(values, "from_team") or metadata(view).get("from")
    to_id = state_value(values, "to_team")
    try:
        due = date.fromisoformat(state_value(values, "due_date")) if state_value(values, "due_date") else None
    except ValueError:
        return ack(response_action="errors", errors={"due_date": "That is not a date."})
    draft = Draft(
        from_team=from_id,
        to_team=to_id,
        title=state_value(values, "title") or "",
        link=(state_value(values, "link") or "").strip() or None,
        due_date=due,
        notes=state_value(values, "notes"),
        criteria_met=[str(c) for c in state_value(values, criteria_block(from_id or "", to_id or "")) or []],
    )
    _, errors = handoffs.check_draft(cfg, user, draft, local_today(cfg, deps.now()))
    if errors:
        blocks = {
            "criteria": criteria_block(from_id or "", to_id or ""),
            "from_team": "from_team" if len(cfg.teams_of(user)) > 1 else "to_team",
        }
        return ack(response_action="errors", errors={blocks.get(k, k): v for k, v in errors.items()})
    # Saved before the ack: if the database fails, the guard keeps the modal open with its input.
    outcome = handoffs.submit(deps.db, cfg, user, draft, deps.now(), view_id=view_key(view))
    ack()
    deps.deliver(outcome.keys)


# -- the receiving team's buttons --------------------------------------------------------------------------


@guarded
def accept(ack, body, client, context):
    ack()
    deps = context["deps"]
    seen = round_shown(body, action_int(body))  # clicked on a Home: the round it showed, and only that one
    outcome = act(
        client,
        body,
        "handoff",
        lambda user, handoff_id: handoffs.accept(deps.db, deps.cfg, handoff_id, user, deps.now(), seen_round=seen),
        deps,
    )
    if outcome is None:
        return
    h = outcome.item
    if not outcome.changed and h.state == HandoffState.OPEN and seen is not None and h.round != seen:
        tell(
            client,
            body,
            body["user"]["id"],
            f"Handoff #{h.id} was sent back and resubmitted since your Home showed it: it is in "
            f"round {h.round} now, so nothing was accepted. Your Home shows it again; look at it before you accept.",
        )
        return stale(deps, body, body["user"]["id"])
    if not outcome.changed:
        tell(client, body, body["user"]["id"], unchanged(h))
        return stale(deps, body, body["user"]["id"])
    deps.deliver(outcome.keys)


def clicked(deps, body, client, may, states) -> Handoff | None:
    """The handoff a button names, if the clicker may act on it and it is in one of `states`;
    otherwise the clicker is told why, privately, and None is returned."""

    def allowed(user: str, handoff_id: int) -> Handoff:
        h = handoffs.get(deps.db, handoff_id)
        may(deps.cfg, h, user)
        return h

    h = act(client, body, "handoff", allowed, deps)
    if h is not None and h.state not in states:
        tell(client, body, body["user"]["id"], unchanged(h))
        return stale(deps, body, body["user"]["id"])
    return h


def _open_send_back(ack, body, client, context, kind: str):
    ack()
    h = clicked(context["deps"], body, client, handoffs.may_review, (HandoffState.OPEN,))
    if h is not None:
        open_view(client, body, render("handoff_sendback_modal", h=h, kind=kind))


@guarded
def rework(ack, body, client, context):
    _open_send_back(ack, body, client, context, EventKind.REWORK)


@guarded
def clarify(ack, body, client, context):
    _open_send_back(ack, body, client, context, EventKind.CLARIFICATION)


@guarded
def send_back(ack, body, view, context):
    deps = context["deps"]
    user = body["user"]["id"]
    meta = metadata(view)
    reason = state_value(form_values(view), "reason")
    handoff_id = as_id(meta.get("id"))
    if handoff_id is None:
        return ack(response_action="errors", errors={"reason": "This form does not name a handoff."})
    try:
        outcome = handoffs.send_back(
            deps.db, deps.cfg, handoff_id, user, str(meta.get("kind"))[:40], reason, deps.now()
        )
    except RuleError as exc:
        return ack(response_action="errors", errors={"reason": str(exc)})
    if not outcome.changed:
        return ack(response_action="errors", errors={"reason": unchanged(outcome.item)})
    ack()
    deps.deliver(outcome.keys)


# -- the sender's resubmission -----------------------------------------------------------------------------


@guarded
def open_resubmit(ack, body, client, context):
    ack()
    deps = context["deps"]
    h = clicked(deps, body, client, handoffs.may_author, HandoffState.WAITING_FOR_SENDER)
    if h is None:
        return
    last = handoffs.history(deps.db, h.id)[-1]
    boundary = deps.cfg.boundary(h.from_team, h.to_team)
    open_view(
        client,
        body,
        render(
            "handoff_resubmit_modal",
            h=h,
            to_team_name=team_name(deps.cfg, h.to_team),
            last_reason=last.reason,
            last_kind=last.kind,
            model=deps.cfg.model_of(boundary) if boundary else None,
        ),
    )


@guarded
def resubmit(ack, body, view, context):
    deps = context["deps"]
    user = body["user"]["id"]
    values = form_values(view)
    handoff_id = as_id(view.get("private_metadata"))
    if handoff_id is None:
        return ack(response_action="errors", errors={"notes": "This form does not name a handoff."})
    try:
        h = handoffs.get(deps.db, handoff_id)
        ticked = [str(c) for c in state_value(values, "criteria") or []]
        outcome = handoffs.resubmit(
            deps.db,
            deps.cfg,
            h.id,
            user,
            ticked,
            state_value(values, "notes"),
            (state_value(values, "link") or "").strip() or None,
            deps.now(),
        )
    except NotAllowed as exc:
        return ack(response_action="errors", errors={"notes": str(exc)})
    except RuleError as exc:
        field = (
            exc.field
            if exc.field in ("criteria", "link", "notes") and (exc.field != "criteria" or h.criteria)
            else "notes"
        )
        return ack(response_action="errors", errors={field: str(exc)})
    if not outcome.changed:
        return ack(response_action="errors", errors={"notes": unchanged(outcome.item)})
    ack()
    deps.deliver(outcome.keys)


def register(app: App) -> None:
    app.command(COMMAND)(command)
    app.action("handoff_pick_from")(pick_team)
    app.action("handoff_pick_to")(pick_team)
    app.view("handoff_submit")(submit)
    app.action("handoff_accept")(accept)
    app.action("handoff_rework")(rework)
    app.action("handoff_clarify")(clarify)
    app.view("handoff_sendback_submit")(send_back)
    app.action("handoff_resubmit")(open_resubmit)
    app.view("handoff_resubmit_submit")(resubmit)
    app.action("handoff_snooze")(snooze)


# -- what the outbox delivers ------------------------------------------------------------------------------


def _handoff(deps, row) -> Handoff | None:
    try:
        return handoffs.get(deps.db, int(row.params["id"]))
    except RuleError:
        return None


def _event(deps, h: Handoff, row):
    return next((e for e in handoffs.history(deps.db, h.id) if e.seq == row.params.get("seq")), None)


def render_card(deps, row) -> dict | None:
    """The receiving team's card, as the handoff stands when it is delivered."""
    h = _handoff(deps, row)
    if h is None:
        return None
    boundary = deps.cfg.boundary(h.from_team, h.to_team)
    team = deps.cfg.team(h.to_team)
    return render(
        "handoff_card",
        h=h,
        from_name=team_name(deps.cfg, h.from_team),
        to_name=team_name(deps.cfg, h.to_team),
        events=handoffs.history(deps.db, h.id)[-8:],
        steward=boundary.steward if boundary else None,
        deadline=sla.deadline(deps.cfg, h),
        overdue=round(sla.overdue_hours(deps.cfg, h, deps.now()), 1),
        reviewers=team.reviewers if team else None,
        fasttracks=fasttrack.for_handoff(deps.db, h.id),
    )


def render_submitted(deps, row) -> dict | None:
    h = _handoff(deps, row)
    if h is None:
        return None
    card = outbox.get(deps.db, handoffs.card_key(h.id))
    channel = card.result_channel if card is not None and card.status == OutboxStatus.SENT else None
    return render("handoff_submitted_dm", h=h, to_name=team_name(deps.cfg, h.to_team), channel=channel)


def render_accepted(deps, row) -> dict | None:
    h = _handoff(deps, row)
    ev = _event(deps, h, row) if h else None
    return render("handoff_accepted_dm", h=h, to_name=team_name(deps.cfg, h.to_team), actor=ev.actor) if ev else None


def render_sent_back(deps, row) -> dict | None:
    h = _handoff(deps, row)
    ev = _event(deps, h, row) if h else None
    if ev is None:
        return None
    return render(
        "handoff_sent_back_dm",
        h=h,
        to_name=team_name(deps.cfg, h.to_team),
        actor=ev.actor,
        reason=ev.reason,
        kind=ev.kind,
    )


def render_resubmitted(deps, row) -> dict | None:
    h = _handoff(deps, row)
    ev = _event(deps, h, row) if h else None
    if ev is None:
        return None
    shown = Handoff(**{**h.model_dump(), "round": ev.round})
    back = next(
        (
            e
            for e in reversed(handoffs.history(deps.db, h.id))
            if e.seq < ev.seq and e.kind in (EventKind.REWORK, EventKind.CLARIFICATION)
        ),
        None,
    )
    return render("handoff_resubmitted", h=shown, actor=ev.actor, reviewer=back.actor if back else None)


def render_escalation(deps, row) -> dict | None:
    """A reminder, an escalation or a snooze, as the handoff stands when it is delivered."""
    h = _handoff(deps, row)
    ev = _event(deps, h, row) if h else None
    if ev is None:
        return None
    automatic = ev.kind == EventKind.ESCALATED and not ev.data.get("manual")
    if automatic and (h.round != ev.round or sla.waits_on(h) != ev.data.get("party")):
        return None  # answered since (accepted, sent back, resubmitted): a late reminder would mislead
    card = outbox.get(deps.db, handoffs.card_key(h.id))
    return render(
        "handoff_escalation",
        h=h,
        ev=ev,
        to=row.params.get("to"),
        from_name=team_name(deps.cfg, h.from_team),
        to_name=team_name(deps.cfg, h.to_team),
        deadline=sla.deadline(deps.cfg, h),
        overdue=round(sla.overdue_hours(deps.cfg, h, deps.now()), 1),
        snoozes_left=sla.MAX_SNOOZES - (h.snoozes or 0),
        channel=card.result_channel if card is not None else None,
    )


def render_resubmit_reminder(deps, row) -> dict | None:
    h = _handoff(deps, row)
    if h is None or h.state not in HandoffState.WAITING_FOR_SENDER:
        return None  # resubmitted or closed meanwhile: nothing to remind
    return render(
        "handoff_resubmit_reminder",
        h=h,
        to_name=team_name(deps.cfg, h.to_team),
        deadline=sla.deadline(deps.cfg, h),
        overdue=round(sla.overdue_hours(deps.cfg, h, deps.now()), 1),
    )


RENDERERS = {
    "handoff_card": render_card,
    "handoff_submitted_dm": render_submitted,
    "handoff_accepted_dm": render_accepted,
    "handoff_sent_back_dm": render_sent_back,
    "handoff_resubmitted": render_resubmitted,
    "handoff_escalation": render_escalation,
    "handoff_resubmit_reminder": render_resubmit_reminder,
}


def card_posted(deps, row, channel: str | None, ts: str | None, client=None, after=None) -> None:
    """Remember where the card is and, asked from Slack once (`chat.getPermalink`), its permalink: the
    digest links its signals to the handoffs behind them. Without a permalink the digest names the handoff.
    The permalink is asked for after the request (`after`: the deliverer's background thread)."""
    handoffs.record_card(deps.db, int(row.params["id"]), channel, ts)
    if client is None or not channel or not ts:
        return
    if after is not None:
        after(_permalink, deps, row, channel, ts, client)
    else:
        _permalink(deps, row, channel, ts, client)


def _permalink(deps, row, channel: str, ts: str, client) -> None:
    try:
        link = client.chat_getPermalink(channel=channel, message_ts=ts).get("permalink")
    except Exception as exc:  # a missing permalink costs a link in the digest, never the card
        log.warning(
            "handoff %s: no permalink for its card (%s)",
            row.params["id"],
            getattr(exc, "response", {}) and exc.response.get("error") or type(exc).__name__,
        )
        return
    if isinstance(link, str) and re.match(r"^https://[^\s<>|]+$", link):
        handoffs.record_permalink(deps.db, int(row.params["id"]), link)


ON_SENT = {"handoff_card": card_posted}
