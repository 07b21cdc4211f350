"""/handoff's listeners called in-process, as Bolt calls them (Bolt's `Ack`, a `BoltContext` holding `deps`,
a real WebClient pointed at the fake Slack): what the person is answered, what is opened, what is stored
and what is delivered."""

from __future__ import annotations

import json

from slack_bolt import Ack
from slack_sdk import WebClient
from sqlmodel import func, select

import handlers
from bot.domain import handoffs
from bot.entry.bootstrap import Deps
from handlers import handoffs as handoff_listeners
from storage.models import Handoff
from tests.support.handoffs import ALL_MET, CRITERIA, fresh
from tests.support.harness import TOKEN, blocks_text, submission, view_of
from tests.support.listeners import answer, client, command, context, dms_to


def handoff_count(db) -> int:
    with db.read() as s:
        return s.exec(select(func.count()).select_from(Handoff)).one()


def opened_modal(fake, cfg, db, user="U0ALICE", text="eng") -> dict:
    web = client(fake)
    ack = Ack()
    handoff_listeners.command(ack=ack, body=command(user, text), client=web, context=context(cfg, db, web))
    assert answer(ack) == {}  # an empty ack: the modal says the rest
    return view_of(fake.wait("views.open")[-1])


def submit(fake, cfg, db, view: dict, values: dict, user="U0ALICE") -> Ack:
    web = client(fake)
    ack = Ack()
    body = submission(user, view, values)
    handoff_listeners.submit(ack=ack, body=body, view=body["view"], context=context(cfg, db, web))
    return ack


def test_the_command_opens_the_modal_for_the_team_named(fake, db, cfg):
    view = opened_modal(fake, cfg, db, text="eng")
    assert view["callback_id"] == "handoff_submit" and view["type"] == "modal"
    (call,) = fake.of("views.open")
    assert call.args["trigger_id"].startswith("trigger-")
    blocks = {b.get("block_id"): b for b in view["blocks"]}
    assert CRITERIA in blocks  # the design → eng boundary's criteria, ticked by the sender
    assert {o["value"] for o in blocks[CRITERIA]["element"]["options"]} == set(ALL_MET)
    assert handoff_count(db) == 0  # opening the form stores nothing


def test_the_command_answers_privately_and_opens_nothing_when_it_cannot_help(fake, db, cfg):
    web = client(fake)
    ctx = context(cfg, db, web)

    unknown = Ack()
    handoff_listeners.command(ack=unknown, body=command("U0ALICE", "marketing"), client=web, context=ctx)
    said = answer(unknown)
    assert said["response_type"] == "ephemeral"
    shown = blocks_text(said)
    assert "There is no team or command 'marketing'" in shown and "Engineering (eng)" in shown

    outsider = Ack()
    handoff_listeners.command(ack=outsider, body=command("U0EVE", ""), client=web, context=ctx)
    assert "not a member of any team" in blocks_text(answer(outsider))

    no_number = Ack()
    handoff_listeners.command(ack=no_number, body=command("U0ALICE", "cancel soon"), client=web, context=ctx)
    assert "Say which handoff to cancel" in blocks_text(answer(no_number))

    helped = Ack()
    handoff_listeners.command(ack=helped, body=command("U0ALICE", "help"), client=web, context=ctx)
    assert answer(helped)["text"] == "How to use /handoff" and "/handoff list" in blocks_text(answer(helped))

    assert fake.of("views.open") == [] and handoff_count(db) == 0


def test_a_submission_stores_the_handoff_and_delivers_its_card_and_receipt(fake, db, cfg):
    view = opened_modal(fake, cfg, db)
    ack = submit(fake, cfg, db, view, {"to_team": "eng", "title": "Checkout v2 spec", CRITERIA: list(ALL_MET)})
    assert answer(ack) == {}  # the modal closes

    (h,) = handoffs.open_for(db, cfg, "U0ALICE")[0]
    assert (h.from_team, h.to_team, h.sender, h.title, h.state, h.round) == (
        "design",
        "eng",
        "U0ALICE",
        "Checkout v2 spec",
        "open",
        1,
    )
    assert h.criteria_met == list(ALL_MET)
    # Delivered in the listener's own thread, after the ack: the card in the team's channel, the receipt to the sender.
    (card,) = [c for c in fake.of("chat.postMessage") if c.args["channel"] == "C0ENG"]
    assert "Checkout v2 spec" in blocks_text(card.args) and "handoff_accept" in json.dumps(card.args["blocks"])
    (receipt,) = dms_to(fake, "U0ALICE")
    assert f"#{h.id}" in receipt.args["text"]
    assert handoffs.get(db, h.id).message_ts  # the card's ts is on record, for its updates


def test_the_same_view_submitted_twice_stores_one_handoff(fake, db, cfg):
    view = opened_modal(fake, cfg, db)
    values = {"to_team": "eng", "title": "Checkout v2 spec", CRITERIA: list(ALL_MET)}
    assert answer(submit(fake, cfg, db, view, values)) == {}
    assert answer(submit(fake, cfg, db, view, values)) == {}  # Slack delivering it again
    assert handoff_count(db) == 1
    assert len([c for c in fake.of("chat.postMessage") if c.args["channel"] == "C0ENG"]) == 1


def test_a_submission_missing_criteria_or_with_a_bad_date_keeps_the_modal_open_and_stores_nothing(fake, db, cfg):
    view = opened_modal(fake, cfg, db)
    missing = submit(fake, cfg, db, view, {"to_team": "eng", "title": "Checkout v2 spec", CRITERIA: [ALL_MET[0]]})
    said = answer(missing)
    assert said["response_action"] == "errors" and set(said["errors"]) == {CRITERIA}, said

    untitled = submit(fake, cfg, db, view, {"to_team": "eng", "title": "   ", CRITERIA: list(ALL_MET)})
    said = answer(untitled)
    assert said["response_action"] == "errors" and "title" in said["errors"], said

    bad = Ack()
    body = submission("U0ALICE", view, {"to_team": "eng", "title": "Spec", CRITERIA: list(ALL_MET)})
    body["view"]["state"]["values"]["due_date"] = {"due": {"type": "datepicker", "selected_date": "2026-13-45"}}
    web = client(fake)
    handoff_listeners.submit(ack=bad, body=body, view=body["view"], context=context(cfg, db, web))
    assert answer(bad) == {"response_action": "errors", "errors": {"due_date": "That is not a date."}}

    assert handoff_count(db) == 0 and fake.of("chat.postMessage") == []


# -- a button that decides, its messages delivered from the listener's own thread ---------------------------


class RecordingAck:
    """What Bolt gives a listener as `ack`: `response` is None until it is called."""

    def __init__(self):
        self.response = None
        self.calls: list[dict] = []

    def __call__(self, **kwargs):
        self.calls.append(kwargs)
        self.response = {"status": 200, **kwargs}
        return self.response


def test_a_listener_called_in_process_decides_and_delivers(fake, db, cfg):
    client = WebClient(base_url=fake.url, token=TOKEN, retry_handlers=[])
    deps = Deps(cfg=cfg, db=db)
    deps.deliver = handlers.deliverer(deps, client).send_now
    created = handoffs.submit(
        db, cfg, "U0ALICE", handoffs.Draft("design", "eng", "Checkout v2 spec", criteria_met=list(ALL_MET))
    )
    assert handoffs.card_key(created.item.id) in created.keys
    deps.deliver(created.keys)
    (card,) = [c for c in fake.wait("chat.postMessage", 2) if c.args["channel"] == "C0ENG"]
    h = handoffs.get(db, created.item.id)
    assert (h.channel, h.message_ts) == ("C0ENG", card_ts(fake, "C0ENG"))
    fresh(fake)

    body = {
        "type": "block_actions",
        "user": {"id": "U0BOB"},
        "channel": {"id": "C0ENG"},
        "container": {"type": "message", "channel_id": "C0ENG", "message_ts": h.message_ts},
        "actions": [{"action_id": "handoff_accept", "value": str(h.id), "type": "button"}],
    }
    ack = RecordingAck()
    handoff_listeners.accept(ack=ack, body=body, client=client, context={"deps": deps})
    assert ack.calls == [{}]
    assert handoffs.get(db, h.id).state == "accepted"
    assert [e.kind for e in handoffs.history(db, h.id)] == ["created", "accepted"]
    (update,) = fake.of("chat.update")  # delivered in the listener's own thread: already there
    assert (update.args["channel"], update.args["ts"]) == ("C0ENG", h.message_ts) and "Accepted" in blocks_text(
        update.args
    )
    (dm,) = dms_to(fake, "U0ALICE")
    assert "accepted" in dm.args["text"] and fake.posted(f"handoff:{h.id}:v2:dm:U0ALICE") == 1
    assert fake.of("chat.postEphemeral") == []  # the guard told nobody of a failure

    again = RecordingAck()  # a second click: told privately, nothing changes
    handoff_listeners.accept(ack=again, body=body, client=client, context={"deps": deps})
    assert again.calls == [{}]
    (told,) = fake.of("chat.postEphemeral")
    assert told.args["user"] == "U0BOB" and "already accepted" in told.args["text"]
    assert len(fake.of("chat.update")) == 1 and len(dms_to(fake, "U0ALICE")) == 1


def card_ts(fake, channel: str) -> str:
    (message,) = fake.messages(channel)
    return message["ts"]
