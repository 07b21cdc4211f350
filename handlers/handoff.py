"""/handoff: the modal, the receiving team's card, its buttons, the send-back and resubmit modals."""

from __future__ import annotations

import logging
from datetime import date

from slack_bolt import App
from slack_sdk.errors import SlackApiError

from bot import handoffs
from bot.handoffs import Draft, HandoffError, NotAllowed
from handlers.common import action_int, dm, metadata, slack_call, state_value, tell
from storage.models import EventKind, Handoff, HandoffState
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


def register(app: App, deps) -> None:
    cfg, db = deps.cfg, deps.db

    # -- views and messages --------------------------------------------------------------------

    def modal(user: str, from_id: str | None, to_id: str | None) -> dict:
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
            "handoff_modal", from_teams=mine, from_team=from_team,
            to_teams=[t for t in cfg.teams if t.id != from_team.id], to_team=to_team, boundary=boundary,
            model=cfg.model_of(boundary) if boundary else None,
            criteria_block=criteria_block(from_team.id, to_team.id if to_team else ""),
            alternatives=handoffs.targets(cfg, [from_team.id]),
        )

    def criteria_block(from_id: str, to_id: str) -> str:
        # A block id per boundary, so Slack does not carry ticks over from another boundary's criteria.
        return f"criteria-{from_id}-{to_id}"

    def team_name(team_id: str) -> str:
        team = cfg.team(team_id)
        return team.name if team else team_id

    def refresh_card(client, h: Handoff) -> None:
        if not (h.channel and h.message_ts):
            return
        boundary = cfg.boundary(h.from_team, h.to_team)
        message = render(
            "handoff_card", h=h, from_name=team_name(h.from_team), to_name=team_name(h.to_team),
            events=handoffs.history(db, h.id)[-8:], steward=boundary.steward if boundary else None,
        )
        slack_call(client.chat_update, channel=h.channel, ts=h.message_ts, text=message["text"], blocks=message["blocks"])

    def post_card(client, h: Handoff) -> str | None:
        """Post the card to the receiving team's channel; returns Slack's error when it refused."""
        team = cfg.team(h.to_team)
        boundary = cfg.boundary(h.from_team, h.to_team)
        message = render(
            "handoff_card", h=h, from_name=team_name(h.from_team), to_name=team.name,
            events=handoffs.history(db, h.id), steward=boundary.steward if boundary else None,
        )
        try:
            result = client.chat_postMessage(channel=team.channel, text=message["text"], blocks=message["blocks"])
        except (SlackApiError, OSError) as exc:  # the handoff is saved; the sender is told what failed
            error = exc.response.get("error") if isinstance(exc, SlackApiError) else "unreachable"
            log.warning("handoff #%s: card not posted to %s: %s", h.id, team.channel, error)
            return error
        handoffs.record_card(db, h.id, result["channel"], result["ts"])
        h.channel, h.message_ts = result["channel"], result["ts"]
        return None

    def unchanged(h: Handoff) -> str:
        return f"Handoff #{h.id} is already {STATE_WORDS.get(h.state, h.state)}; nothing changed."

    # -- /handoff --------------------------------------------------------------------------------

    @app.command(COMMAND)
    def command(ack, body, client):
        user = body.get("user_id")
        text = " ".join((body.get("text") or "").split())[:200]
        verb, _, rest = text.partition(" ")
        verb = verb.lower()
        if verb in ("help", "?"):
            return ack(**render("handoff_help", problem=None, command=COMMAND))
        if verb == "list":
            sent, received = handoffs.open_for(db, cfg, user)
            return ack(**render(
                "handoff_list", sent=sent, received=received, names={t.id: t.name for t in cfg.teams}, now=deps.now()
            ))
        if verb == "cancel":
            said = cancel(client, user, rest)
            return ack(**render("notice", text=str(said), people=getattr(said, "people", ())))
        to_team = None
        if text:
            to_team = cfg.find_team(text)
            if to_team is None:
                names = ", ".join(f"{t.name} ({t.id})" for t in cfg.teams)
                return ack(**render("handoff_help", problem=f"There is no team or command '{text}'. Teams: {names}.", command=COMMAND))
        if not cfg.teams_of(user):
            return ack(**render("notice", text="You are not a member of any team in Steward's process configuration, so you cannot hand off work yet. Ask your process owner to add you."))
        ack()
        slack_call(client.views_open, trigger_id=body.get("trigger_id"), view=modal(user, None, to_team.id if to_team else None))

    def cancel(client, user: str, rest: str) -> str | HandoffError:
        try:
            handoff_id = int(rest.strip().lstrip("#"))
        except ValueError:
            return f"Say which handoff to cancel: `{COMMAND} cancel <number>`."
        try:
            outcome = handoffs.cancel(db, cfg, handoff_id, user, deps.now())
        except HandoffError as exc:
            return exc
        if not outcome.changed:
            return unchanged(outcome.handoff)
        refresh_card(client, outcome.handoff)
        return f"Handoff #{handoff_id} is cancelled."

    # -- the modal ------------------------------------------------------------------------------

    @app.action("handoff_pick_from")
    @app.action("handoff_pick_to")
    def pick_team(ack, body, client):
        ack()
        view = body.get("view") or {}
        values = (view.get("state") or {}).get("values") or {}
        user = body["user"]["id"]
        if not cfg.teams_of(user):
            return
        from_id = state_value(values, "from_team") or metadata(view).get("from")
        slack_call(client.views_update, view_id=view.get("id"), hash=view.get("hash"),
                   view=modal(user, from_id, state_value(values, "to_team")))

    @app.view("handoff_submit")
    def submit(ack, body, view, client):
        user = body["user"]["id"]
        values = (view.get("state") or {}).get("values") or {}
        from_id = state_value(values, "from_team") or metadata(view).get("from")
        to_id = state_value(values, "to_team")
        ticked = state_value(values, criteria_block(from_id or "", to_id or "")) or []
        try:
            due = date.fromisoformat(state_value(values, "due_date")) if state_value(values, "due_date") else None
        except ValueError:
            return ack(response_action="errors", errors={"due_date": "That is not a date."})
        draft = Draft(
            from_team=from_id, to_team=to_id, title=state_value(values, "title") or "",
            link=(state_value(values, "link") or "").strip() or None, due_date=due, notes=state_value(values, "notes"),
            criteria_met=[str(c) for c in ticked],  # the criteria themselves: the domain refuses any no longer there
        )
        _, errors = handoffs.check_draft(cfg, user, draft, handoffs.local_today(cfg, deps.now()))
        if errors:
            blocks = {"criteria": criteria_block(from_id or "", to_id or ""), "from_team": "from_team" if len(cfg.teams_of(user)) > 1 else "to_team"}
            return ack(response_action="errors", errors={blocks.get(k, k): v for k, v in errors.items()})
        h = handoffs.create(db, cfg, user, draft, deps.now())  # before ack: if it fails, the modal keeps the input
        ack()
        error = post_card(client, h)
        message = render("handoff_submitted_dm", h=h, to_name=team_name(h.to_team), channel=h.channel if not error else None)
        dm(client, user, message)
        if error:
            tell(client, {}, user, f"Handoff #{h.id} is saved, but Steward could not post it in {team_name(h.to_team)}'s channel (Slack said {error}). Ask an admin to check the channel in the process configuration or to invite Steward.")

    # -- the receiving team's buttons -------------------------------------------------------------

    @app.action("handoff_accept")
    def accept(ack, body, client):
        ack()
        user, handoff_id = body["user"]["id"], action_int(body)
        if handoff_id is None:
            return tell(client, body, user, "That button does not name a handoff.")
        try:
            outcome = handoffs.accept(db, cfg, handoff_id, user, deps.now())
        except HandoffError as exc:
            return tell(client, body, user, exc)
        if not outcome.changed:
            return tell(client, body, user, unchanged(outcome.handoff))
        h = outcome.handoff
        refresh_card(client, h)
        dm(client, h.sender, render("handoff_accepted_dm", h=h, to_name=team_name(h.to_team), actor=user))

    def clicked(body, client, may, states) -> Handoff | None:
        """The handoff a button names, if the clicker may act on it and it is in one of `states`;
        otherwise the clicker is told why, privately, and None is returned."""
        user, handoff_id = body["user"]["id"], action_int(body)
        if handoff_id is None:
            return tell(client, body, user, "That button does not name a handoff.")
        try:
            h = handoffs.get(db, handoff_id)
            may(cfg, h, user)
        except HandoffError as exc:
            return tell(client, body, user, exc)
        if h.state not in states:
            return tell(client, body, user, unchanged(h))
        return h

    def open_send_back(ack, body, client, kind: str):
        ack()
        h = clicked(body, client, handoffs.may_review, (HandoffState.OPEN,))
        if h is None:
            return
        slack_call(client.views_open, trigger_id=body.get("trigger_id"), view=render("handoff_sendback_modal", h=h, kind=kind))

    @app.action("handoff_rework")
    def rework(ack, body, client):
        open_send_back(ack, body, client, EventKind.REWORK)

    @app.action("handoff_clarify")
    def clarify(ack, body, client):
        open_send_back(ack, body, client, EventKind.CLARIFICATION)

    @app.view("handoff_sendback_submit")
    def send_back(ack, body, view, client):
        user = body["user"]["id"]
        meta = metadata(view)
        reason = state_value((view.get("state") or {}).get("values") or {}, "reason")
        try:
            outcome = handoffs.send_back(db, cfg, int(meta.get("id")), user, str(meta.get("kind")), reason, deps.now())
        except (TypeError, ValueError):
            return ack(response_action="errors", errors={"reason": "This form does not name a handoff."})
        except HandoffError as exc:
            return ack(response_action="errors", errors={"reason": str(exc)})
        if not outcome.changed:
            return ack(response_action="errors", errors={"reason": unchanged(outcome.handoff)})
        ack()
        h = outcome.handoff
        refresh_card(client, h)
        dm(client, h.sender, render("handoff_sent_back_dm", h=h, to_name=team_name(h.to_team), actor=user, reason=outcome.event.reason, kind=outcome.event.kind))

    # -- the sender's resubmission ------------------------------------------------------------------

    @app.action("handoff_resubmit")
    def open_resubmit(ack, body, client):
        ack()
        h = clicked(body, client, handoffs.may_author, HandoffState.WAITING_FOR_SENDER)
        if h is None:
            return
        last = handoffs.history(db, h.id)[-1]
        boundary = cfg.boundary(h.from_team, h.to_team)
        view = render(
            "handoff_resubmit_modal", h=h, to_team_name=team_name(h.to_team), last_reason=last.reason,
            last_kind=last.kind, model=cfg.model_of(boundary) if boundary else None,
        )
        slack_call(client.views_open, trigger_id=body.get("trigger_id"), view=view)

    @app.view("handoff_resubmit_submit")
    def resubmit(ack, body, view, client):
        user = body["user"]["id"]
        values = (view.get("state") or {}).get("values") or {}
        try:
            h = handoffs.get(db, int(view.get("private_metadata") or 0))
            ticked = [str(c) for c in state_value(values, "criteria") or []]  # the criteria themselves
            outcome = handoffs.resubmit(db, cfg, h.id, user, ticked, state_value(values, "notes"), (state_value(values, "link") or "").strip() or None, deps.now())
        except ValueError:
            return ack(response_action="errors", errors={"notes": "This form does not name a handoff."})
        except NotAllowed as exc:
            return ack(response_action="errors", errors={"notes": str(exc)})
        except HandoffError as exc:
            field = exc.field if exc.field in ("criteria", "link", "notes") and (exc.field != "criteria" or h.criteria) else "notes"
            return ack(response_action="errors", errors={field: str(exc)})
        if not outcome.changed:
            return ack(response_action="errors", errors={"notes": unchanged(outcome.handoff)})
        ack()
        h = outcome.handoff
        refresh_card(client, h)
        if h.channel and h.message_ts:
            slack_call(client.chat_postMessage, channel=h.channel, thread_ts=h.message_ts,
                       text=render("notice", text=f"Resubmitted for round {h.round}.")["text"])
