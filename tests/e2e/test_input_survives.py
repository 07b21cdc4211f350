"""What a person typed survives Steward's failures, through signed requests against the served app.

- A form whose save fails (a table renamed away for the moment) is answered with a field error, so Slack
  keeps the modal open with its input; nothing is saved or posted; the same view submitted again saves once.
- A form delivered twice (in turn, or at once from two threads) saves once and posts one card.
- A database that holds a lock longer than Slack waits never makes the answer late.
- A button whose listener fails after its ack is answered 200 and the clicker gets a reference.
- Ids in buttons, forms and commands are bounded: out-of-range text is refused politely, never a 500.
"""

from __future__ import annotations

import itertools
import json
import re
import sqlite3
import threading
import time
from contextlib import contextmanager

import psycopg
from sqlalchemy import text
from sqlmodel import func, select

from bot.domain import fasttrack, handoffs, initiatives
from handlers.common import SAVE_FAILED
from storage.models import FastTrack, Handoff, Initiative
from tests.support.fasttrack import CUSTOMER, QA_SIGNOFF, ask, open_form
from tests.support.handoffs import ALL_MET, CRITERIA, fresh, open_modal, send
from tests.support.harness import blocks_text, view_of
from tests.support.listeners import dms_to

HANDOFF_VALUES = {"to_team": "eng", "title": "Checkout v2 spec", CRITERIA: list(ALL_MET)}
FASTTRACK_VALUES = {
    "what": "Hotfix 4.2.1",
    "element": QA_SIGNOFF,
    "reason": CUSTOMER,
    "justification": "Checkout is down for our largest customer",
}
# too long, negative, full-width digits, too big, one past the integer column, past what int() will read (4300 digits)
BAD_IDS = ("1" * 30, "-1", "１２", "9" * 11, str(2**31), "7" * 5000)
SLACK_PATIENCE = 3.0  # seconds Slack waits for an answer


# -- helpers -----------------------------------------------------------------------------------------------


@contextmanager
def renamed(db, table: str):
    """The table is gone for the duration: every statement that touches it fails."""
    with db.engine.begin() as conn:
        conn.execute(text(f"ALTER TABLE {table} RENAME TO {table}_away"))
    try:
        yield
    finally:
        with db.engine.begin() as conn:
            conn.execute(text(f"ALTER TABLE {table}_away RENAME TO {table}"))


def count(db, model) -> int:
    with db.read() as s:
        return s.exec(select(func.count()).select_from(model)).one()


def methods(fake) -> list[str]:
    """The Web API calls made, but Bolt's `auth.test` (each worker asks once, on its first request)."""
    with fake._lock:
        return [c.method for c in fake.calls if c.method != "auth.test"]


def assert_kept(r, view: dict, steward) -> str:
    """The answer keeps the modal open with its input: one field error, on an input block of this view,
    saying the text is still here, with a reference that is in the log. Returns the reference."""
    assert r.status == 200, (r.status, r.raw)
    answer = r.json()
    assert isinstance(answer, dict) and answer.get("response_action") == "errors", r.raw
    assert set(answer) == {"response_action", "errors"} and len(answer["errors"]) == 1, answer
    ((block, message),) = answer["errors"].items()
    assert block in [b["block_id"] for b in view["blocks"] if b.get("type") == "input"], (block, answer)
    assert message.startswith("Steward could not save this just now; your text is still here"), message
    before, after = SAVE_FAILED.split("{ref}")
    assert message.startswith(before) and message.endswith(after), message
    ref = message[len(before) : -len(after)]
    assert re.fullmatch(r"[0-9a-f]{8}", ref), message
    assert f"ref={ref}" in steward.output()
    return ref


def submit_while_gone(steward, fake, db, table: str, user: str, view: dict, values: dict) -> None:
    """Submit `view` while `table` is gone: the field error, and not one call to Slack."""
    fresh(fake)
    with renamed(db, table):
        r = steward.submit(user, view, values)
        fake.settle(quiet=0.3)  # anything the listener did after its answer has arrived
        calls = methods(fake)
    assert_kept(r, view, steward)
    assert calls == [], calls


def submit_ok(steward, user: str, view: dict, values: dict) -> None:
    r = steward.submit(user, view, values)
    assert r.status == 200 and r.raw in (b"", b"{}"), r.raw


# -- 1. a form whose save fails keeps its input, and saves once when submitted again -----------------------


def test_a_handoff_form_whose_save_fails_keeps_its_input(steward, fake, db, cfg):
    view = open_modal(steward, fake, "U0ALICE", "eng")
    submit_while_gone(steward, fake, db, "handoff_event", "U0ALICE", view, HANDOFF_VALUES)
    assert count(db, Handoff) == 0

    submit_ok(steward, "U0ALICE", view, HANDOFF_VALUES)
    fake.wait("chat.postMessage", 2)  # the card and the receipt
    fake.settle(quiet=0.3)
    (h,) = handoffs.open_for(db, cfg, "U0ALICE")[0]
    assert count(db, Handoff) == 1 and h.view_id == view["id"]
    assert fake.posted(handoffs.card_key(h.id)) == 1
    assert [e.kind for e in handoffs.history(db, h.id)] == ["created"]


def test_a_send_back_form_whose_save_fails_keeps_its_reason(steward, fake, db):
    h = send(steward, fake)
    fresh(fake)
    steward.click("U0BOB", "handoff_rework", str(h.id))
    modal = view_of(fake.wait("views.open")[0])
    assert modal["callback_id"] == "handoff_sendback_submit"
    reason = {"reason": "Wireframes lack the error states"}
    submit_while_gone(steward, fake, db, "handoff_event", "U0BOB", modal, reason)
    assert handoffs.get(db, h.id).state == "open" and [e.kind for e in handoffs.history(db, h.id)] == ["created"]

    submit_ok(steward, "U0BOB", modal, reason)
    fake.wait("chat.update")
    fake.wait("chat.postMessage")
    fake.settle(quiet=0.3)
    assert handoffs.get(db, h.id).state == "rework_requested"
    assert [e.kind for e in handoffs.history(db, h.id)] == ["created", "rework_requested"]
    assert fake.posted(f"handoff:{h.id}:v2:dm:U0ALICE") == 1 and len(dms_to(fake, "U0ALICE")) == 1
    assert len(fake.of("chat.update")) == 1


def test_a_resubmit_form_whose_save_fails_keeps_its_notes(steward, fake, db, cfg):
    h = send(steward, fake)
    handoffs.send_back(db, cfg, h.id, "U0BOB", "rework_requested", "More")
    fresh(fake)
    steward.click("U0ALICE", "handoff_resubmit", str(h.id), channel="D0ALICE")
    modal = view_of(fake.wait("views.open")[0])
    assert modal["callback_id"] == "handoff_resubmit_submit"
    values = {"criteria": list(ALL_MET), "notes": "Added the error states"}
    submit_while_gone(steward, fake, db, "handoff_event", "U0ALICE", modal, values)
    after = handoffs.get(db, h.id)
    assert (after.state, after.round, after.notes) == ("rework_requested", 1, None)

    submit_ok(steward, "U0ALICE", modal, values)
    fake.wait("chat.update")
    fake.settle(quiet=0.3)
    after = handoffs.get(db, h.id)
    assert (after.state, after.round, after.notes) == ("open", 2, "Added the error states")
    assert [e.kind for e in handoffs.history(db, h.id)] == ["created", "rework_requested", "resubmitted"]
    assert fake.posted(f"handoff:{h.id}:v3:thread") == 1


def test_a_fasttrack_form_whose_save_fails_keeps_its_input(steward, fake, db):
    view = open_form(steward, fake, "U0BOB")
    submit_while_gone(steward, fake, db, "fasttrack_event", "U0BOB", view, FASTTRACK_VALUES)
    assert count(db, FastTrack) == 0

    submit_ok(steward, "U0BOB", view, FASTTRACK_VALUES)
    fake.wait("chat.postMessage", 3)  # two approvers' cards, the receipt
    fake.settle(quiet=0.3)
    (row,) = fasttrack.listing(db, "U0BOB")[0]
    assert count(db, FastTrack) == 1 and row.view_id == view["id"]
    assert [fake.posted(fasttrack.card_key(row.id, p)) for p in ("U0CAROL", "U0STEW")] == [1, 1]
    assert len(fake.of("chat.postMessage")) == 3


def test_a_deny_form_whose_save_fails_keeps_its_reason(steward, fake, db):
    ask(steward, fake)
    fake.wait("chat.postMessage", 3)
    (row,) = fasttrack.listing(db, "U0BOB")[0]
    fresh(fake)
    steward.click("U0CAROL", "fasttrack_deny", str(row.id), channel="D0CAROL")
    modal = view_of(fake.wait("views.open")[0])
    assert modal["callback_id"] == "fasttrack_deny_submit"
    reason = {"reason": "Use the standard path"}
    submit_while_gone(steward, fake, db, "fasttrack_event", "U0CAROL", modal, reason)
    assert fasttrack.get(db, row.id).state == "pending" and [e.kind for e in fasttrack.history(db, row.id)] == [
        "requested"
    ]

    submit_ok(steward, "U0CAROL", modal, reason)
    fake.wait("chat.update", 2)
    fake.wait("chat.postMessage")
    fake.settle(quiet=0.3)
    assert fasttrack.get(db, row.id).state == "denied"
    assert [e.kind for e in fasttrack.history(db, row.id)] == ["requested", "denied"]
    assert fake.posted(f"fasttrack:{row.id}:v2:dm:U0BOB") == 1 and len(dms_to(fake, "U0BOB")) == 1
    assert len(fake.of("chat.update")) == 2  # both approvers' cards, once each


def test_an_initiative_form_whose_save_fails_keeps_its_input(steward, fake, db):
    steward.click("U0ALICE", "initiative_share", "design 2026-11", channel="C0DESIGN")
    modal = view_of(fake.wait("views.open")[0])
    assert modal["callback_id"] == "initiative_submit"
    values = {"text": "Review specs together", "metric": "cycle_time", "owner": "U0AMY"}
    submit_while_gone(steward, fake, db, "initiative", "U0ALICE", modal, values)
    assert count(db, Initiative) == 0

    submit_ok(steward, "U0ALICE", modal, values)
    fake.wait("chat.postMessage")  # no prompt on record: the initiative is posted in the team's channel
    fake.settle(quiet=0.3)
    shared = initiatives.current(db, "2026-11")
    assert count(db, Initiative) == 1 and shared["design"].text == "Review specs together"
    assert fake.posted(f"initiative:{shared['design'].id}:shared") == 1 and len(fake.of("chat.postMessage")) == 1


# -- 2. a form delivered twice saves once ------------------------------------------------------------------


def twice_at_once(steward, user: str, view: dict, values: dict) -> list:
    barrier = threading.Barrier(2)
    answers = []

    def go():
        barrier.wait()
        answers.append(steward.submit(user, view, values))

    threads = [threading.Thread(target=go) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return answers


def assert_answered_once(answers, view, steward) -> None:
    """Both 200 and both close the modal: the one that lost the race to the database's unique view id
    finds the one saved instead of saying it could not save."""
    assert [(a.status, a.raw in (b"", b"{}")) for a in answers] == [(200, True), (200, True)], [
        (a.status, a.raw) for a in answers
    ]


def test_a_handoff_form_delivered_twice_creates_one_handoff_and_one_card(steward, fake, db, cfg):
    view = open_modal(steward, fake, "U0ALICE", "eng")
    fresh(fake)
    submit_ok(steward, "U0ALICE", view, HANDOFF_VALUES)
    submit_ok(steward, "U0ALICE", view, HANDOFF_VALUES)  # the same view id and hash again
    fake.wait("chat.postMessage", 2)
    fake.settle(quiet=0.3)
    (h,) = handoffs.open_for(db, cfg, "U0ALICE")[0]
    assert fake.posted(handoffs.card_key(h.id)) == 1 and len(fake.of("chat.postMessage")) == 2

    for _ in range(2):  # at once, from two threads: two fresh views
        view = open_modal(steward, fake, "U0ALICE", "eng")
        fresh(fake)
        assert_answered_once(twice_at_once(steward, "U0ALICE", view, HANDOFF_VALUES), view, steward)
        fake.wait("chat.postMessage", 2)
        fake.settle(quiet=0.3)
        with db.read() as s:
            made = list(s.exec(select(Handoff).where(Handoff.view_id == view["id"])))
        assert len(made) == 1, made
        assert fake.posted(handoffs.card_key(made[0].id)) == 1 and len(fake.of("chat.postMessage")) == 2
    assert count(db, Handoff) == 3


def test_a_fasttrack_form_delivered_twice_files_one_request_and_one_card_each(steward, fake, db):
    view = open_form(steward, fake, "U0BOB")
    fresh(fake)
    submit_ok(steward, "U0BOB", view, FASTTRACK_VALUES)
    submit_ok(steward, "U0BOB", view, FASTTRACK_VALUES)
    fake.wait("chat.postMessage", 3)
    fake.settle(quiet=0.3)
    (row,) = fasttrack.listing(db, "U0BOB")[0]
    assert [fake.posted(fasttrack.card_key(row.id, p)) for p in ("U0CAROL", "U0STEW")] == [1, 1]
    assert len(fake.of("chat.postMessage")) == 3

    for _ in range(2):
        view = open_form(steward, fake, "U0BOB")
        fresh(fake)
        assert_answered_once(twice_at_once(steward, "U0BOB", view, FASTTRACK_VALUES), view, steward)
        fake.wait("chat.postMessage", 3)
        fake.settle(quiet=0.3)
        with db.read() as s:
            made = list(s.exec(select(FastTrack).where(FastTrack.view_id == view["id"])))
        assert len(made) == 1, made
        assert [fake.posted(fasttrack.card_key(made[0].id, p)) for p in ("U0CAROL", "U0STEW")] == [1, 1]
        assert len(fake.of("chat.postMessage")) == 3
    assert count(db, FastTrack) == 3


# -- 3. a slow database never makes the answer late --------------------------------------------------------


@contextmanager
def locked(db, seconds: float = 4.0):
    """Hold the database's write lock (SQLite) or an exclusive lock on `handoff` (PostgreSQL) from
    another connection, for `seconds` from when it is taken; the block runs while it is held."""
    held, failed = threading.Event(), []

    def hold():
        try:
            if db.is_sqlite:
                conn = sqlite3.connect(db.engine.url.database, isolation_level=None, timeout=5)
                conn.execute("BEGIN IMMEDIATE")
            else:
                conn = psycopg.connect(db.engine.url.set(drivername="postgresql").render_as_string(hide_password=False))
                conn.execute("LOCK TABLE handoff IN ACCESS EXCLUSIVE MODE")
        except Exception as exc:  # noqa: BLE001 - reported in the test's thread
            failed.append(exc)
            held.set()
            return
        taken = time.monotonic()
        held.set()
        time.sleep(max(0.0, seconds - (time.monotonic() - taken)))
        conn.rollback()
        conn.close()

    holder = threading.Thread(target=hold)
    holder.start()
    held.wait(10)
    try:
        assert not failed, failed
        yield
    finally:
        holder.join()


def test_a_locked_database_gives_a_timely_field_error_and_the_same_view_saves_after(steward, fake, db, cfg):
    view = open_modal(steward, fake, "U0ALICE", "eng")
    fresh(fake)
    with locked(db, 4.0):
        started = time.monotonic()
        r = steward.submit("U0ALICE", view, HANDOFF_VALUES)
        took = time.monotonic() - started
        fake.settle(quiet=0.3)
        calls = methods(fake)
    assert took < SLACK_PATIENCE, f"answered after {took:.2f} s: {r.status} {r.raw!r}"
    assert_kept(r, view, steward)
    assert calls == [] and count(db, Handoff) == 0

    submit_ok(steward, "U0ALICE", view, HANDOFF_VALUES)
    submit_ok(steward, "U0ALICE", view, HANDOFF_VALUES)
    fake.wait("chat.postMessage", 2)
    fake.settle(quiet=0.3)
    (h,) = handoffs.open_for(db, cfg, "U0ALICE")[0]
    assert count(db, Handoff) == 1 and fake.posted(handoffs.card_key(h.id)) == 1


# -- 4. a button whose listener fails after its ack --------------------------------------------------------


def assert_referenced(r, fake, steward, user: str, channel: str) -> None:
    assert r.status == 200, (r.status, r.raw)  # acknowledged: not Bolt's 404
    (told,) = fake.wait("chat.postEphemeral")
    assert (told.args["user"], told.args["channel"]) == (user, channel)
    ref = re.search(r"reference ([0-9a-f]{8})", told.args["text"])
    assert ref, told.args["text"]
    assert f"ref={ref.group(1)}" in steward.output() and "Traceback" not in blocks_text(told.args)


def test_buttons_whose_listener_fails_after_the_ack_answer_200_and_give_a_reference(steward, fake, db):
    h = send(steward, fake)
    fresh(fake)  # the handoff's modal must not pass for the fast-track form
    ask(steward, fake)
    fake.wait("chat.postMessage", 3)
    (request,) = fasttrack.listing(db, "U0BOB")[0]
    cases = [
        ("handoff_event", "U0BOB", "handoff_accept", str(h.id), "C0ENG"),
        ("fasttrack_event", "U0CAROL", "fasttrack_approve", str(request.id), "D0CAROL"),
        ("initiative", "U0ALICE", "initiative_share", "design 2026-11", "C0DESIGN"),
    ]
    for table, user, action, value, channel in cases:
        fresh(fake)
        with renamed(db, table):
            r = steward.click(user, action, value, channel=channel)
            fake.wait("chat.postEphemeral")
            fake.settle(quiet=0.3)
        assert_referenced(r, fake, steward, user, channel)
        assert methods(fake) == ["chat.postEphemeral"], (action, methods(fake))
    assert handoffs.get(db, h.id).state == "open" and [e.kind for e in handoffs.history(db, h.id)] == ["created"]
    assert fasttrack.get(db, request.id).state == "pending"
    assert [e.kind for e in fasttrack.history(db, request.id)] == ["requested"]


# -- 5. ids in payloads are bounded ------------------------------------------------------------------------


def told_texts(fake, n: int) -> list[str]:
    fake.wait("chat.postEphemeral", n)
    fake.settle(quiet=0.2)
    return [c.args["text"] for c in fake.of("chat.postEphemeral")]


def test_button_values_that_are_no_id_are_refused_politely(steward, fake, db):
    h = send(steward, fake)
    fresh(fake)
    handoff_actions = ("handoff_accept", "handoff_rework", "handoff_clarify", "handoff_resubmit")
    for action in handoff_actions:
        for value in BAD_IDS:
            r = steward.click("U0BOB", action, value)
            assert r.status == 200, (action, value, r.status, r.raw)
    told = told_texts(fake, len(handoff_actions) * len(BAD_IDS))
    assert told == ["That button does not name a handoff."] * len(handoff_actions) * len(BAD_IDS), told

    fresh(fake)
    for action in ("fasttrack_approve", "fasttrack_deny"):
        for value in BAD_IDS:
            r = steward.click("U0CAROL", action, value, channel="D0CAROL")
            assert r.status == 200, (action, value, r.status, r.raw)
    told = told_texts(fake, 2 * len(BAD_IDS))
    assert told == ["That button does not name a fast-track request."] * 2 * len(BAD_IDS), told
    assert methods(fake) == ["chat.postEphemeral"] * 2 * len(BAD_IDS)
    assert [e.kind for e in handoffs.history(db, h.id)] == ["created"]


FORGED = itertools.count(1)


def forged(callback_id: str, metadata: str, block: str) -> dict:
    return {
        "type": "modal",
        "id": f"V0FORGED{next(FORGED):06d}",
        "hash": "h0",
        "callback_id": callback_id,
        "private_metadata": metadata,
        "blocks": [
            {
                "type": "input",
                "block_id": block,
                "label": {"type": "plain_text", "text": block},
                "element": {"type": "plain_text_input", "action_id": "value"},
            }
        ],
    }


def test_forms_whose_metadata_is_no_id_get_a_field_error(steward, fake, db):
    h = send(steward, fake)
    fresh(fake)
    big = "1" * 30
    not_a_handoff = "This form does not name a handoff."
    cases = [
        ("handoff_sendback_submit", big, "reason", not_a_handoff),
        ("handoff_sendback_submit", json.dumps({"id": big, "kind": "rework_requested"}), "reason", not_a_handoff),
        ("handoff_sendback_submit", json.dumps({"id": int(big), "kind": "rework_requested"}), "reason", not_a_handoff),
        ("handoff_resubmit_submit", big, "notes", not_a_handoff),
        ("fasttrack_deny_submit", big, "reason", "This form does not name a fast-track request."),
    ]
    for value in BAD_IDS[1:]:
        cases += [
            ("handoff_sendback_submit", json.dumps({"id": value, "kind": "rework_requested"}), "reason", not_a_handoff),
            ("handoff_resubmit_submit", value, "notes", not_a_handoff),
            ("fasttrack_deny_submit", value, "reason", "This form does not name a fast-track request."),
        ]
    for callback_id, metadata, block, said in cases:
        r = steward.submit("U0BOB", forged(callback_id, metadata, block), {block: "Because"})
        assert r.status == 200, (callback_id, metadata, r.status, r.raw)
        assert r.json() == {"response_action": "errors", "errors": {block: said}}, (callback_id, metadata, r.raw)
    fake.settle(quiet=0.2)
    assert methods(fake) == []
    assert [e.kind for e in handoffs.history(db, h.id)] == ["created"]


def test_cancel_with_a_number_that_is_no_id_says_how(steward, fake, db):
    for value in BAD_IDS:
        r = steward.command("U0ALICE", f"cancel {value}")
        assert r.status == 200, (value, r.status, r.raw)
        assert "Say which handoff to cancel" in blocks_text(r.json()), (value, r.raw)
