"""Fast-track requests sent through signed requests to the served app."""

from __future__ import annotations

from bot.domain import fasttrack
from tests.support.harness import view_of

QA_SIGNOFF = "QA sign-off"  # the options' values: the element and the reason themselves


CUSTOMER = "Customer escalation"


def open_form(steward, fake, user="U0BOB") -> dict:
    assert steward.command(user, "", command="/fasttrack").status == 200
    return view_of(fake.wait("views.open")[-1])


def ask(steward, fake, user="U0BOB", element=QA_SIGNOFF, **extra) -> fasttrack.FastTrack:
    view = open_form(steward, fake, user)
    values = {
        "what": "Hotfix 4.2.1 <!channel>",
        "element": element,
        "reason": CUSTOMER,
        "justification": "Checkout is down for our largest customer",
        **extra,
    }
    r = steward.submit(user, view, values)
    assert r.status == 200 and r.raw in (b"", b"{}"), r.raw
    return view


def cards_to(fake, users) -> dict:
    return {c.args["channel"]: c for c in fake.of("chat.postMessage") if c.args["channel"] in users}
