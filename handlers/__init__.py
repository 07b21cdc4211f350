"""The Slack adapter: one module per feature, each with module-level listeners, `register(app)`, and the
renderers that draw its outbox messages when they are delivered.

A listener parses the payload, calls a domain function (which writes the decision and the messages it
causes in one transaction), and asks for those messages to be delivered now. Rules live in the domain
modules (`bot/handoffs.py`, …), never here. Listeners get their dependencies from Bolt's context
(`context["deps"]`, put there by the middleware below), so a test can call one alone.
"""

from __future__ import annotations

from handlers import (
    common,
    digest,
    fasttrack,
    handoffs,
    home,
    initiatives,
    members,
    pulse,
    review,
)
from handlers.delivery import Deliverer

FEATURES = (handoffs, initiatives, fasttrack, pulse, review, members, home)
RENDERERS = {
    **common.RENDERERS,
    **handoffs.RENDERERS,
    **initiatives.RENDERERS,
    **fasttrack.RENDERERS,
    **digest.RENDERERS,
    **pulse.RENDERERS,
    **review.RENDERERS,
    **members.RENDERERS,
    **home.RENDERERS,
}
ON_FAILED = {**fasttrack.ON_FAILED}
ON_SENT = {**handoffs.ON_SENT}


def register_all(app, deps) -> None:
    def inject(context, next):
        context["deps"] = deps
        next()

    app.use(inject)
    for feature in FEATURES:
        feature.register(app)


def deliverer(deps, client, **options) -> Deliverer:
    """The outbox's deliverer for this process, with every feature's renderers."""
    return Deliverer(deps, client, RENDERERS, ON_FAILED, on_sent=ON_SENT, **options)
