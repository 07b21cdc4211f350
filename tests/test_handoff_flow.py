"""A handoff goes round through signed requests: sent, sent back with a reason, resubmitted, accepted."""

from __future__ import annotations

import json

from sqlmodel import select

from bot.domain import handoffs
from storage.models import Handoff
from tests.harness import blocks_text, view_of

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
    from storage.db import Database

    return Database(steward.env["DATABASE_URL"])


def test_full_round_trip(steward, fake, db):
    h = send(steward, fake)
    card, dm = fake.of("chat.postMessage")
    assert card.args["channel"] == "C0ENG"
    assert "Checkout v2 spec" in blocks_text(card.args) and "Accept" in json.dumps(card.args["blocks"])
    assert dm.args["channel"] == "U0ALICE" and f"#{h.id}" in dm.args["text"]
    assert (h.state, h.round, h.channel) == ("open", 1, "C0ENG") and h.message_ts

    # The receiving team asks for rework, with a reason.
    fresh(fake)
    assert steward.click("U0BOB", "handoff_rework", str(h.id)).status == 200
    modal = view_of(fake.wait("views.open")[0])
    assert modal["callback_id"] == "handoff_sendback_submit"
    assert steward.submit("U0BOB", modal, {"reason": "Wireframes lack the error states"}).status == 200
    update = fake.wait("chat.update")[0]
    assert update.args["ts"] == h.message_ts and "Sent back for rework" in blocks_text(update.args)
    dm = fake.wait("chat.postMessage")[0]
    assert dm.args["channel"] == "U0ALICE" and "Wireframes lack the error states" in blocks_text(dm.args)
    assert "handoff_resubmit" in json.dumps(dm.args["blocks"])

    # The sender resubmits from the DM's button; the card updates in place to round 2.
    fresh(fake)
    steward.click("U0ALICE", "handoff_resubmit", str(h.id), channel="D0ALICE")
    modal = view_of(fake.wait("views.open")[0])
    assert "Wireframes lack the error states" in json.dumps(modal)
    assert steward.submit("U0ALICE", modal, {"criteria": list(ALL_MET), "notes": "Added error states"}).status == 200
    update = fake.wait("chat.update")[0]
    assert "round 2" in blocks_text(update.args) and "Waiting for review" in blocks_text(update.args)

    # Accepted: card shows it, the sender gets one DM.
    fresh(fake)
    steward.click("U0BOB", "handoff_accept", str(h.id))
    update = fake.wait("chat.update")[0]
    assert "Accepted" in blocks_text(update.args) and "handoff_accept" not in json.dumps(update.args["blocks"])
    dm = fake.wait("chat.postMessage")[0]
    assert dm.args["channel"] == "U0ALICE" and "accepted" in dm.args["text"]

    events = handoffs.history(db, h.id)
    assert [e.kind for e in events] == ["created", "rework_requested", "resubmitted", "accepted"]
    assert [e.round for e in events] == [1, 1, 2, 2]
    assert events[1].reason == "Wireframes lack the error states" and events[1].actor == "U0BOB"
    final = handoffs.get(db, h.id)
    assert (
        handoffs.replay(events).items()
        >= {
            "state": final.state,
            "round": final.round,
            "version": final.version,
            "accepted_at": final.accepted_at,
        }.items()
    )
