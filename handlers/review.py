"""The quarterly decision-rights matrix review in Slack: the DM's buttons ("Confirm these rows", "Propose a
change"), the proposal form, and the renderers that draw the DM (redrawn in place after each click) and the
posted proposal. The rules are in `bot/review.py`."""

from __future__ import annotations

from slack_bolt import App

from bot.domain import review
from bot.domain.core.items import RuleError
from bot.domain.figures import RECURRING
from handlers.common import form_values, guarded, metadata, open_view, state_value, tell
from storage.models import MatrixReviewEvent
from templates import render


def _quarter(body: dict) -> str:
    return str(((body.get("actions") or [{}])[0] or {}).get("value") or "")[:10]


@guarded
def confirm(ack, body, client, context):
    ack()
    deps = context["deps"]
    user = body["user"]["id"]
    try:
        keys = review.confirm(deps.db, deps.cfg, user, _quarter(body), deps.now())
    except RuleError as exc:
        return tell(client, body, user, exc)
    deps.deliver(keys)


@guarded
def open_proposal(ack, body, client, context):
    ack()
    deps = context["deps"]
    user = body["user"]["id"]
    quarter = _quarter(body)
    try:
        rows = review.check(deps.db, deps.cfg, user, quarter, deps.now())
        review.may_propose(deps.db, quarter, user)
    except RuleError as exc:
        return tell(client, body, user, exc)
    open_view(
        client,
        body,
        render(
            "matrix_review_modal",
            quarter=quarter,
            quarter_label=review.label(quarter),
            elements=[r.element for r in rows],
            channels=review.channels(deps.cfg),
        ),
    )


@guarded
def submit_proposal(ack, body, view, context):
    deps = context["deps"]
    user = body["user"]["id"]
    values = form_values(view)
    try:
        keys = review.propose(
            deps.db,
            deps.cfg,
            user,
            str(metadata(view).get("quarter") or "")[:10],
            state_value(values, "text"),
            state_value(values, "channel"),
            deps.now(),
        )
    except RuleError as exc:
        return ack(response_action="errors", errors={exc.field or "text": str(exc)})
    ack()
    deps.deliver(keys)


# -- renderers -------------------------------------------------------------------------------------------


def render_dm(deps, row) -> dict | None:
    """The review DM as it stands: the person's rows (as the matrix has them now), each with its fast-track
    history in the quarter before, and whether they confirmed or proposed a change."""
    quarter, user = row.params["quarter"], row.params["user"]
    rows = review.reviewers(deps.cfg).get(user)
    if not rows:
        return None  # no longer sets a standard: nothing to ask
    last = review.shift(quarter, -1)
    history = review.history(deps.db, deps.cfg, last)
    done = review.confirmation(deps.db, quarter, user)
    proposed = review.proposals(deps.db, quarter, user)
    return render(
        "matrix_review_dm",
        quarter=quarter,
        quarter_label=review.label(quarter),
        last_label=review.label(last),
        rows=[
            dict(
                element=r.element,
                sets=r.sets_standard,
                grants=deps.cfg.granters(r),
                owns=r.owns_execution,
                history=history.get(r.element),
            )
            for r in rows
        ],
        names={t.id: t.name for t in deps.cfg.teams},
        confirmed_at=done.at if done else None,
        proposed=len(proposed),
        proposed_at=proposed[-1].at if proposed else None,
        recurring=RECURRING,
    )


def render_proposal(deps, row) -> dict | None:
    with deps.db.read() as session:
        event = session.get(MatrixReviewEvent, row.params["event"])
    if event is None:
        return None
    return render(
        "matrix_review_proposal",
        user=event.user,
        quarter_label=review.label(event.quarter),
        elements=event.elements,
        text=event.text or "",
    )


def register(app: App) -> None:
    app.action("matrix_review_confirm")(confirm)
    app.action("matrix_review_propose")(open_proposal)
    app.view("matrix_review_submit")(submit_proposal)


RENDERERS = {"matrix_review_dm": render_dm, "matrix_review_proposal": render_proposal}
