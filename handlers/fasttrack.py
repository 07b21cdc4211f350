"""/fasttrack: the request form, the deciders' buttons, the deny form, list and rights, and the renderers
that draw the deciders' cards and the requester's messages when the outbox delivers them."""

from __future__ import annotations

from datetime import date

from slack_bolt import App

from bot.domain import fasttrack, handoffs
from bot.domain.core.items import RuleError
from bot.domain.core.timeutil import local_today
from bot.domain.fasttrack import Draft
from bot.domain.figures import meter
from handlers.common import (
    act,
    as_id,
    form_values,
    guarded,
    metadata,
    open_view,
    stale,
    state_value,
    tell,
    view_key,
)
from storage.models import FastTrack
from templates import readable_utc, render

COMMAND = "/fasttrack"
NOUN = "fast-track request"


def matrix(cfg) -> list[dict]:
    return [
        {"element": r.element, "sets": r.sets_standard, "grants": cfg.granters(r), "owns": r.owns_execution}
        for r in cfg.rights
    ]


def names(cfg) -> dict[str, str]:
    return {t.id: t.name for t in cfg.teams}


def already(r: FastTrack) -> str:
    """What a late deny form is told, in its field error (plain text: Slack shows no date token there)."""
    when = f" ({readable_utc(r.decided_at)})" if r.decided_at else ""
    return f"Fast-track #{r.id} was already {r.state}{when}; nothing changed."


def told_already(r: FastTrack) -> dict:
    """What a late click is told: the decision that stands, by whom and when."""
    return render("fasttrack_already", r=r)


# -- /fasttrack --------------------------------------------------------------------------------------------


@guarded
def command(ack, body, client, context):
    deps = context["deps"]
    cfg, db = deps.cfg, deps.db
    user = body.get("user_id")
    verb = " ".join((body.get("text") or "").split())[:100].lower()
    if verb in ("help", "?"):
        return ack(**render("fasttrack_help", problem=None, command=COMMAND))
    if verb == "rights":
        return ack(
            **render(
                "fasttrack_rights",
                rows=matrix(cfg),
                names=names(cfg),
                percent=f"{cfg.fasttrack.budget_percent:g}",
                backups=list(cfg.fasttrack.backup_approvers),
            )
        )
    if verb == "list":
        mine, waiting = fasttrack.listing(db, user, cfg=cfg)
        budgets = [fasttrack.team_budget(db, cfg, t.id, deps.now()) for t in cfg.teams_of(user)]
        return ack(**render("fasttrack_list", mine=mine, waiting=waiting, names=names(cfg), budgets=budgets))
    if verb:
        return ack(**render("fasttrack_help", problem=f"There is no {COMMAND} command '{verb}'.", command=COMMAND))
    teams = cfg.teams_of(user)
    if not teams:
        return ack(
            **render(
                "notice",
                text="You are not a member of any team in Steward's process configuration, so you cannot ask for a fast-track. Ask your process owner to add you.",
            )
        )
    if not cfg.rights:
        return ack(
            **render(
                "notice",
                text="No process elements are in the decision-rights matrix yet, so there is no gate to fast-track. Ask your process owner.",
            )
        )
    ack()
    budgets = {t.id: fasttrack.team_budget(db, cfg, t.id, deps.now()) for t in teams}
    open_view(
        client,
        body,
        render(
            "fasttrack_modal",
            teams=teams,
            budgets=budgets,
            rights=cfg.rights,
            reasons=cfg.fasttrack.reasons,
            handoffs=fasttrack.open_handoffs(db, user),
        ),
    )


@guarded
def submit(ack, body, view, context):
    deps = context["deps"]
    cfg = deps.cfg
    user = body["user"]["id"]
    values = form_values(view)
    try:
        needed_by = date.fromisoformat(state_value(values, "needed_by")) if state_value(values, "needed_by") else None
    except ValueError:
        return ack(response_action="errors", errors={"needed_by": "That is not a date."})
    draft = Draft(
        team=state_value(values, "team") or metadata(view).get("team"),
        element=state_value(values, "element"),
        reason=state_value(values, "reason"),
        what=state_value(values, "what"),
        justification=state_value(values, "justification"),
        handoff_id=as_id(state_value(values, "handoff")),
        needed_by=needed_by,
    )
    errors = fasttrack.check(deps.db, cfg, user, draft, local_today(cfg, deps.now()))
    if errors:
        blocks = {b.get("block_id") for b in view.get("blocks", [])}
        return ack(response_action="errors", errors={(k if k in blocks else "what"): v for k, v in errors.items()})
    try:  # saved before the ack: if the database fails, the guard keeps the modal open with its input
        outcome = fasttrack.submit(deps.db, cfg, user, draft, deps.now(), view_id=view_key(view))
    except RuleError as exc:
        return ack(response_action="errors", errors={"what": str(exc)})
    ack()
    deps.deliver(outcome.keys)


# -- deciding ----------------------------------------------------------------------------------------------


def _decided(deps, client, body, user: str, outcome: fasttrack.Decision) -> None:
    r = outcome.request
    if outcome.rerouted:
        b = outcome.budget
        tell(
            client,
            body,
            user,
            f"Fast-track #{r.id} is now {meter(b.position, b)}, so a backup approver decides it. Sent to them.",
        )
    elif not outcome.changed:
        tell(client, body, user, told_already(r))
        return stale(deps, body, user)
    deps.deliver(outcome.keys)


@guarded
def approve(ack, body, client, context):
    ack()
    deps = context["deps"]
    outcome = act(
        client,
        body,
        NOUN,
        lambda user, request_id: fasttrack.decide(deps.db, deps.cfg, request_id, user, approve=True, now=deps.now()),
        deps,
    )
    if outcome is not None:
        _decided(deps, client, body, body["user"]["id"], outcome)


@guarded
def open_deny(ack, body, client, context):
    ack()
    deps = context["deps"]

    def deciding(user: str, request_id: int) -> FastTrack:
        r = fasttrack.get(deps.db, request_id)
        fasttrack.may_decide(deps.cfg, r, user)
        return r

    r = act(client, body, NOUN, deciding, deps)
    if r is None:
        return
    if r.state != "pending":
        tell(client, body, body["user"]["id"], told_already(r))
        return stale(deps, body, body["user"]["id"])
    open_view(client, body, render("fasttrack_deny_modal", r=r))


@guarded
def deny(ack, body, view, client, context):
    deps = context["deps"]
    user = body["user"]["id"]
    reason = state_value(form_values(view), "reason")
    request_id = as_id(view.get("private_metadata"))
    if request_id is None:
        return ack(response_action="errors", errors={"reason": "This form does not name a fast-track request."})
    try:
        outcome = fasttrack.decide(deps.db, deps.cfg, request_id, user, approve=False, reason=reason, now=deps.now())
    except RuleError as exc:
        return ack(response_action="errors", errors={"reason": str(exc)})
    if not outcome.changed and not outcome.rerouted:
        return ack(response_action="errors", errors={"reason": already(outcome.request)})
    ack()
    _decided(deps, client, {}, user, outcome)


def register(app: App) -> None:
    app.command(COMMAND)(command)
    app.view("fasttrack_submit")(submit)
    app.action("fasttrack_approve")(approve)
    app.action("fasttrack_deny")(open_deny)
    app.view("fasttrack_deny_submit")(deny)


# -- what the outbox delivers ------------------------------------------------------------------------------


class _Unknown:
    """A matrix element removed from the configuration since the request: shown as it was asked."""

    def __init__(self, element: str):
        self.element, self.sets_standard, self.owns_execution = element, "(no longer in the matrix)", "–"


def _request(deps, row) -> FastTrack | None:
    try:
        return fasttrack.get(deps.db, int(row.params["id"]))
    except RuleError:
        return None


def _linked(deps, r: FastTrack):
    if not r.handoff_id:
        return None
    try:
        return handoffs.get(deps.db, r.handoff_id)
    except RuleError:
        return None


def _team_name(cfg, team_id: str) -> str:
    team = cfg.team(team_id)
    return team.name if team else team_id


def render_card(deps, row) -> dict | None:
    """A decider's card (or the one card in [fasttrack].channel), as the request stands when delivered:
    buttons for those who may decide it, one line saying a backup approver decides for a regular approver
    whose request went on to the backups."""
    r = _request(deps, row)
    if r is None:
        return None
    events = fasttrack.history(deps.db, r.id)
    person = row.params.get("user")
    mode = "watch" if person and r.state == "pending" and person not in r.deciders else "decide"
    why = (
        (events[0].data or {}).get("why")
        if events and set(r.deciders) == set(events[0].data.get("deciders") or [])
        else None
    )
    return render(
        "fasttrack_card",
        r=r,
        team_name=_team_name(deps.cfg, r.team),
        budget=fasttrack.Budget.latest(events),
        right=deps.cfg.right(r.element) or _Unknown(r.element),
        names=names(deps.cfg),
        handoff=_linked(deps, r),
        mode=mode,
        why=why,
    )


def render_submitted(deps, row) -> dict | None:
    r = _request(deps, row)
    if r is None:
        return None
    events = fasttrack.history(deps.db, r.id)
    return render(
        "fasttrack_submitted_dm",
        r=r,
        budget=fasttrack.Budget.when_requested(events),
        why=(events[0].data or {}).get("why"),
        channel=deps.cfg.fasttrack.channel or None,
    )


def render_owner(deps, row) -> dict | None:
    """The decision, to whoever owns the gate's execution."""
    r = _request(deps, row)
    if r is None or r.state == "pending":
        return None
    return render(
        "fasttrack_owner_notice",
        r=r,
        team_name=_team_name(deps.cfg, r.team),
        owner=row.params["owner"],
        names=names(deps.cfg),
        handoff=_linked(deps, r),
    )


def render_decided(deps, row) -> dict | None:
    r = _request(deps, row)
    return render("fasttrack_decided_dm", r=r) if r is not None else None


def render_escalated(deps, row) -> dict | None:
    r = _request(deps, row)
    ev = next((e for e in fasttrack.history(deps.db, r.id) if e.seq == row.params.get("seq")), None) if r else None
    if ev is None:
        return None
    return render(
        "fasttrack_escalated_dm", r=r, hours=float(ev.data.get("hours", deps.cfg.fasttrack.escalate_after_hours))
    )


def card_failed(deps, row) -> list[str]:
    """A decider's card Slack refused for good: if no decider of a pending request can see it any more,
    it goes to the backup approvers."""
    outcome = fasttrack.unreachable(deps.db, deps.cfg, int(row.params["id"]), deps.now())
    return outcome.keys if outcome is not None else []


RENDERERS = {
    "fasttrack_card": render_card,
    "fasttrack_submitted_dm": render_submitted,
    "fasttrack_decided_dm": render_decided,
    "fasttrack_escalated_dm": render_escalated,
    "fasttrack_owner_notice": render_owner,
}
ON_FAILED = {"fasttrack_card": card_failed}
