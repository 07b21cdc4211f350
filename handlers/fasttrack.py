"""/fasttrack: the request form, the deciders' cards and their buttons, the deny form, list and rights."""

from __future__ import annotations

import logging
from datetime import date

from slack_bolt import App

from bot import fasttrack, handoffs
from bot.fasttrack import Draft
from bot.handoffs import HandoffError
from handlers.common import action_int, dm, metadata, slack_call, state_value, tell
from storage.models import FastTrack
from templates import render

log = logging.getLogger("steward")
COMMAND = "/fasttrack"
FIELDS = ("team", "what", "handoff", "element", "reason", "justification", "needed_by")


def register(app: App, deps) -> None:
    cfg, db = deps.cfg, deps.db

    def team_name(team_id: str) -> str:
        team = cfg.team(team_id)
        return team.name if team else team_id

    def card(r: FastTrack, mode: str = "decide", meter: str | None = None, why: str | None = None) -> dict:
        if meter is None:
            meter = fasttrack.Budget.when_requested(fasttrack.history(db, r.id)).meter()
        handoff = None
        if r.handoff_id:
            try:
                handoff = handoffs.get(db, r.handoff_id)
            except HandoffError:
                handoff = None
        right = cfg.right(r.element)
        right = right or _Unknown(r.element)
        return render("fasttrack_card", r=r, team_name=team_name(r.team), meter=meter, right=right, handoff=handoff, mode=mode, why=why)

    def post_cards(client, r: FastTrack, people: list[str], mode: str, meter: str, why: str | None) -> None:
        """A card per person by DM, or one card in [fasttrack].channel."""
        message = card(r, mode, meter, why)
        if cfg.fasttrack.channel:
            if mode == "watch":
                return  # the channel card shows the state to everyone
            result = slack_call(client.chat_postMessage, channel=cfg.fasttrack.channel, text=message["text"], blocks=message["blocks"])
            if result:
                fasttrack.record_card(db, r.id, "", result["channel"], result["ts"])
            return
        for person in people:
            result = dm(client, person, message)
            if result:
                fasttrack.record_card(db, r.id, person, result["channel"], result["ts"])

    def refresh_cards(client, r: FastTrack, watch: set[str] = frozenset()) -> None:
        meter = fasttrack.Budget.when_requested(fasttrack.history(db, r.id)).meter()  # read once for every card
        for c in fasttrack.cards(db, r.id):
            mode = "watch" if c.user in watch and r.state == "pending" else "decide"
            message = card(r, mode, meter)
            slack_call(client.chat_update, channel=c.channel, ts=c.ts, text=message["text"], blocks=message["blocks"])

    # -- /fasttrack ----------------------------------------------------------------------------------

    @app.command(COMMAND)
    def command(ack, body, client):
        user = body.get("user_id")
        verb = " ".join((body.get("text") or "").split())[:100].lower()
        if verb in ("help", "?"):
            return ack(**render("fasttrack_help", problem=None, command=COMMAND))
        if verb == "rights":
            return ack(**render("fasttrack_rights", rows=matrix(), percent=f"{cfg.fasttrack.budget_percent:g}",
                                backups=list(cfg.fasttrack.backup_approvers)))
        if verb == "list":
            mine, waiting = fasttrack.listing(db, user)
            return ack(**render("fasttrack_list", mine=mine, waiting=waiting, names={t.id: t.name for t in cfg.teams}))
        if verb:
            return ack(**render("fasttrack_help", problem=f"There is no {COMMAND} command '{verb}'.", command=COMMAND))
        teams = cfg.teams_of(user)
        if not teams:
            return ack(**render("notice", text="You are not a member of any team in Steward's process configuration, so you cannot ask for a fast-track. Ask your process owner to add you."))
        if not cfg.rights:
            return ack(**render("notice", text="No process elements are in the decision-rights matrix yet, so there is no gate to fast-track. Ask your process owner."))
        ack()
        budgets = {t.id: fasttrack.team_budget(db, cfg, t.id, deps.now()) for t in teams}
        view = render("fasttrack_modal", teams=teams, budgets=budgets, rights=cfg.rights, reasons=cfg.fasttrack.reasons,
                      handoffs=fasttrack.open_handoffs(db, user))
        slack_call(client.views_open, trigger_id=body.get("trigger_id"), view=view)

    def matrix() -> list[dict]:
        def party(who: str) -> dict:
            team = cfg.team(who)
            return {"team": team.name, "user": None} if team else {"team": None, "user": who}

        return [{"element": r.element, "sets": party(r.sets_standard), "grants": cfg.granters(r), "owns": party(r.owns_execution)}
                for r in cfg.rights]

    # -- the request form ------------------------------------------------------------------------------

    @app.view("fasttrack_submit")
    def submit(ack, body, view, client):
        user = body["user"]["id"]
        values = (view.get("state") or {}).get("values") or {}
        try:
            needed_by = date.fromisoformat(state_value(values, "needed_by")) if state_value(values, "needed_by") else None
        except ValueError:
            return ack(response_action="errors", errors={"needed_by": "That is not a date."})
        handoff = state_value(values, "handoff")
        draft = Draft(  # the element and the reason by name: the domain refuses one no longer configured
            team=state_value(values, "team") or metadata(view).get("team"),
            element=state_value(values, "element"), reason=state_value(values, "reason"),
            what=state_value(values, "what"), justification=state_value(values, "justification"),
            handoff_id=int(handoff) if handoff and handoff.isdigit() and int(handoff) < 2**31 else None, needed_by=needed_by,
        )
        errors = fasttrack.check(db, cfg, user, draft, handoffs.local_today(cfg, deps.now()))
        if errors:
            blocks = {b.get("block_id") for b in view.get("blocks", [])}
            return ack(response_action="errors", errors={(k if k in blocks else "what"): v for k, v in errors.items()})
        try:
            r, budget, route = fasttrack.request(db, cfg, user, draft, deps.now())  # saved before the ack
        except HandoffError as exc:
            return ack(response_action="errors", errors={"what": str(exc)})
        ack()
        meter = budget.meter()
        post_cards(client, r, route.deciders, "decide", meter, route.why)
        if route.watchers:
            post_cards(client, r, route.watchers, "watch", meter, None)
        dm(client, user, render("fasttrack_submitted_dm", r=r, meter=meter, why=route.why, channel=cfg.fasttrack.channel or None))

    # -- deciding ----------------------------------------------------------------------------------------

    def already(r: FastTrack) -> str:
        """What a late click is told: the decision that stands, by whom and when."""
        when = r.decided_at.strftime("%Y-%m-%d %H:%M UTC") if r.decided_at else ""
        return f"Fast-track #{r.id} was already {r.state} by <@{r.decided_by}> ({when}); nothing changed."

    def decided(client, body, user: str, outcome: fasttrack.Decision) -> None:
        r = outcome.request
        if outcome.rerouted:
            tell(client, body, user, f"Fast-track #{r.id} is now over the team's budget ({outcome.budget.meter()}), so a backup approver decides it. Sent to them.")
            if cfg.fasttrack.channel:
                return refresh_cards(client, r)  # the one card now names the backup approvers
            carded = {c.user for c in fasttrack.cards(db, r.id)}
            refresh_cards(client, r, watch=carded - set(r.deciders))
            post_cards(client, r, [p for p in r.deciders if p not in carded], "decide", outcome.budget.meter(), None)
            return
        if not outcome.changed:
            return tell(client, body, user, already(r), [r.decided_by])
        refresh_cards(client, r)
        dm(client, r.requester, render("fasttrack_decided_dm", r=r))

    @app.action("fasttrack_approve")
    def approve(ack, body, client):
        ack()
        user, request_id = body["user"]["id"], action_int(body)
        if request_id is None:
            return tell(client, body, user, "That button does not name a fast-track request.")
        try:
            outcome = fasttrack.decide(db, cfg, request_id, user, approve=True, now=deps.now())
        except HandoffError as exc:
            return tell(client, body, user, exc)
        decided(client, body, user, outcome)

    @app.action("fasttrack_deny")
    def open_deny(ack, body, client):
        ack()
        user, request_id = body["user"]["id"], action_int(body)
        if request_id is None:
            return tell(client, body, user, "That button does not name a fast-track request.")
        try:
            r = fasttrack.get(db, request_id)
            fasttrack.may_decide(cfg, r, user)
        except HandoffError as exc:
            return tell(client, body, user, exc)
        if r.state != "pending":
            return tell(client, body, user, already(r), [r.decided_by])
        slack_call(client.views_open, trigger_id=body.get("trigger_id"), view=render("fasttrack_deny_modal", r=r))

    @app.view("fasttrack_deny_submit")
    def deny(ack, body, view, client):
        user = body["user"]["id"]
        reason = state_value((view.get("state") or {}).get("values") or {}, "reason")
        try:
            request_id = int(view.get("private_metadata") or "")
            outcome = fasttrack.decide(db, cfg, request_id, user, approve=False, reason=reason, now=deps.now())
        except ValueError:
            return ack(response_action="errors", errors={"reason": "This form does not name a fast-track request."})
        except HandoffError as exc:
            return ack(response_action="errors", errors={"reason": str(exc)})
        if not outcome.changed:
            r = outcome.request
            return ack(response_action="errors", errors={"reason": already(r)})
        ack()
        decided(client, {}, user, outcome)


class _Unknown:
    """A matrix element removed from the configuration since the request: shown as it was asked."""

    def __init__(self, element: str):
        self.element, self.sets_standard, self.owns_execution = element, "(no longer in the matrix)", "–"
