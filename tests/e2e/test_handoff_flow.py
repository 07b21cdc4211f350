"""A handoff goes round through signed requests: sent, sent back with a reason, resubmitted, accepted."""

from __future__ import annotations

import json

from bot.domain import handoffs
from tests.support.handoffs import ALL_MET, fresh, send
from tests.support.harness import blocks_text, view_of


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
