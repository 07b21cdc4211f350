"""Handoffs sent through signed requests to the served app: the form, the submission, the settling."""

from __future__ import annotations

import json

from sqlmodel import select

from storage.db import Database
from storage.models import Handoff
from tests.support.harness import view_of

CRITERIA = "criteria-design-eng"


ALL_MET = (
    "Specification with acceptance criteria",
    "Wireframes",
    "Glossary of terms",
)  # the options' values: the criteria


def open_modal(steward, fake, user="U0ALICE", text="") -> dict:
    assert steward.command(user, text).status == 200
    return view_of(fake.wait("views.open")[-1])


def send(steward, fake, title="Checkout v2 spec", criteria=ALL_MET, user="U0ALICE", **extra) -> Handoff:
    view = open_modal(steward, fake, user, "eng")
    values = {"to_team": "eng", "title": title, CRITERIA: list(criteria), **extra}
    r = steward.submit(user, view, values)
    assert r.status == 200 and r.raw in (b"", b"{}"), r.raw
    fake.wait("chat.postMessage", 2)  # the card and the sender's DM
    with steward_db(steward).read() as s:
        return s.exec(select(Handoff).order_by(Handoff.id.desc())).first()


def fresh(fake):
    """Let the previous step's calls arrive, then forget them."""
    fake.settle(quiet=0.2)
    fake.reset(keep_messages=True)


def steward_db(steward):

    return Database(steward.env["DATABASE_URL"])


def accept_button(blocks) -> str | None:
    """The handoff id on a card's Accept button (None: not a card)."""
    blocks = json.loads(blocks) if isinstance(blocks, str) else blocks or []
    for block in blocks:
        for element in block.get("elements") or []:
            if element.get("action_id") == "handoff_accept":
                return element.get("value")
    return None
