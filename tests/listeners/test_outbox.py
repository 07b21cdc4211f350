"""The outbox against Slack as it fails: every message in Slack exactly once, or visibly failed/unknown.

The deliverer runs in-process here against the fake Web API (a real slack_sdk WebClient with no retry
handlers, as Steward builds it); the served app and the clock are driven the same way in
test_delivery_flow.py.
"""

from __future__ import annotations

import threading
from datetime import timedelta

import pytest
from slack_sdk import WebClient

from bot.domain.core import outbox
from bot.domain.core.outbox import POST, UPDATE, Message
from bot.domain.core.timeutil import utcnow
from bot.entry.bootstrap import Deps
from handlers import deliverer
from handlers.delivery import metadata, retry_after
from tests.support.harness import TOKEN


class Clock:
    """A clock the test moves: leases and back-offs without sleeping."""

    def __init__(self):
        self.at = utcnow()

    def __call__(self):
        return self.at

    def pass_(self, **delta):
        self.at += timedelta(**delta)


@pytest.fixture
def clock():
    return Clock()


def make(db, cfg, fake, clock, timeout: float = 2) -> tuple:
    deps = Deps(cfg=cfg, db=db, now=clock)
    d = deliverer(deps, WebClient(token=TOKEN, base_url=fake.url, timeout=timeout, retry_handlers=[]))
    return deps, d


def note(key: str, channel: str = "C0ENG", actor: str | None = None, text: str = "hello") -> Message:
    return Message(key, "test:1", POST, channel, "static", {"message": {"text": text, "blocks": []}}, actor=actor)


def status(db, key: str) -> str:
    return outbox.get(db, key).status


def test_a_post_goes_once_and_carries_its_key(db, cfg, fake, clock):
    _, d = make(db, cfg, fake, clock)
    keys = outbox.put(db, [note("t:1")], clock())
    d.send_now(keys)
    d.send_now(keys)
    outbox.put(db, [note("t:1", text="written again")], clock())  # the same key writes nothing
    d.sweep(max_seconds=1)
    assert fake.posted("t:1") == 1 and status(db, "t:1") == "sent"
    (message,) = fake.messages("C0ENG")
    assert message["metadata"] == {"event_type": "steward_outbox", "event_payload": {"key": "t:1"}}
    assert outbox.get(db, "t:1").result_ts == message["ts"]


@pytest.mark.parametrize("fault", ["store_then_503", "store_then_timeout", "crash_after_send"])
def test_slack_acted_but_we_do_not_know_it_is_found_not_sent_again(db, cfg, fake, clock, fault):
    _, d = make(db, cfg, fake, clock, timeout=0.5)
    keys = outbox.put(db, [note("t:2")], clock())
    if fault == "store_then_503":
        fake.store_then_error("chat.postMessage", 503)
        assert d.send_now(keys)["later"] == 1
    elif fault == "store_then_timeout":
        fake.store_then_hang("chat.postMessage", 1.5)
        assert d.send_now(keys)["later"] == 1
    else:  # a deliverer claimed the row, Slack stored the message, the process died before recording it
        c = outbox.claim(db, "t:2", clock())
        WebClient(token=TOKEN, base_url=fake.url).chat_postMessage(
            channel="C0ENG", text="hello", metadata=outbox_meta("t:2")
        )
        assert c is not None and status(db, "t:2") == "sending"
        assert d.send_now(keys)["busy"] == 1  # the lease still runs: nobody else may touch it
        clock.pass_(seconds=61)
    row = outbox.get(db, "t:2")
    assert row.check or row.status == "sending"
    clock.pass_(minutes=1)
    done = d.sweep(max_seconds=2)
    assert done["found"] == 1, done
    assert fake.posted("t:2") == 1 and status(db, "t:2") == "sent"
    assert len(fake.of("conversations.history")) >= 1


def outbox_meta(key: str) -> dict:

    return metadata(key)


def test_a_5xx_before_slack_acted_is_looked_for_then_sent(db, cfg, fake, clock):
    _, d = make(db, cfg, fake, clock)
    keys = outbox.put(db, [note("t:3")], clock())
    fake.server_error("chat.postMessage", 502)
    d.send_now(keys)
    assert fake.posted("t:3") == 0 and outbox.get(db, "t:3").check
    clock.pass_(minutes=1)
    d.sweep(max_seconds=2)
    assert fake.posted("t:3") == 1 and status(db, "t:3") == "sent"


def test_a_429_is_retried_after_retry_after_without_looking(db, cfg, fake, clock):
    _, d = make(db, cfg, fake, clock)
    keys = outbox.put(db, [note("t:4")], clock())
    fake.rate_limit("chat.postMessage", retry_after=7)
    assert d.send_now(keys)["ratelimited"] == 1
    row = outbox.get(db, "t:4")
    assert (row.status, row.check) == ("pending", False) and row.next_at == clock() + timedelta(seconds=7)
    clock.pass_(seconds=6)
    assert d.sweep(max_seconds=1).total() == 0  # not yet
    clock.pass_(seconds=1)
    d.sweep(max_seconds=1)
    assert fake.posted("t:4") == 1 and fake.of("conversations.history") == []


def test_slack_down_then_back(db, cfg, fake, clock):
    _, d = make(db, cfg, fake, clock)
    keys = outbox.put(db, [note(f"t:5:{i}", channel=f"C0T{i}") for i in range(3)], clock())
    fake.down(60)
    d.send_now(keys)
    assert all(status(db, k) == "pending" for k in keys)
    fake.down(0)
    clock.pass_(minutes=1)
    d.sweep(max_seconds=3)
    assert [fake.posted(k) for k in keys] == [1, 1, 1] and all(status(db, k) == "sent" for k in keys)


def test_a_refusal_for_good_is_failed_and_the_actor_told_once(db, cfg, fake, clock):
    _, d = make(db, cfg, fake, clock)
    keys = outbox.put(db, [note("t:6", actor="U0ALICE")], clock())
    fake.fail("chat.postMessage", "channel_not_found")
    d.send_now(keys)
    row = outbox.get(db, "t:6")
    assert (row.status, row.error) == ("failed", "channel_not_found")
    (told,) = fake.messages("U0ALICE")
    assert "channel_not_found" in told["text"] and "could not deliver" in told["text"]
    clock.pass_(hours=1)
    d.sweep(max_seconds=1)
    assert len(fake.messages("U0ALICE")) == 1 and fake.posted("t:6") == 0
    # the operator decides: sent again
    assert outbox.retry(db, "t:6", clock()).status == "pending"
    d.sweep(max_seconds=1)
    assert fake.posted("t:6") == 1


def test_unknown_when_slack_cannot_be_asked_and_never_resent_blindly(db, cfg, fake, clock):
    _, d = make(db, cfg, fake, clock)
    keys = outbox.put(db, [note("t:7")], clock())
    fake.store_then_error("chat.postMessage", 500)
    d.send_now(keys)
    fake.fail("conversations.history", "missing_scope")
    clock.pass_(minutes=1)
    d.sweep(max_seconds=1)
    row = outbox.get(db, "t:7")
    assert row.status == "unknown" and "missing_scope" in row.error
    clock.pass_(days=1)
    d.sweep(max_seconds=1)
    assert fake.posted("t:7") == 1 and len(fake.of("chat.postMessage")) == 1


def test_pending_updates_coalesce_into_the_latest(db, cfg, fake, clock):
    deps, d = make(db, cfg, fake, clock)
    post = note("t:8")
    outbox.put(db, [post], clock())
    versions = [
        Message(
            outbox.update_of("t:8"),
            "test:1",
            UPDATE,
            "C0ENG",
            "static",
            {"message": {"text": f"version {i}", "blocks": []}},
            anchor="t:8",
        )
        for i in range(1, 4)
    ]
    for v in versions:  # asked for three times before anything was delivered
        outbox.put(db, [v], clock())
    d.send_now([outbox.update_of("t:8")])  # waits: its message is not in Slack yet
    assert status(db, outbox.update_of("t:8")) == "pending" and fake.of("chat.update") == []
    d.send_now(["t:8"])
    clock.pass_(seconds=3)
    d.sweep(max_seconds=1)
    (update,) = fake.of("chat.update")
    assert update.args["text"] == "version 3"
    (message,) = fake.messages("C0ENG")
    assert message["text"] == "version 3" and outbox.get(db, outbox.update_of("t:8")).generation == 3


def test_an_update_asked_for_while_one_is_being_sent_goes_again(db, cfg, fake, clock):
    _, d = make(db, cfg, fake, clock)
    outbox.put(db, [note("t:9")], clock())
    d.send_now(["t:9"])
    key = outbox.update_of("t:9")
    outbox.put(
        db,
        [Message(key, "test:1", UPDATE, "C0ENG", "static", {"message": {"text": "a", "blocks": []}}, anchor="t:9")],
        clock(),
    )
    c = outbox.claim(db, key, clock())  # a delivery is under way with "a"…
    outbox.put(
        db,
        [Message(key, "test:1", UPDATE, "C0ENG", "static", {"message": {"text": "b", "blocks": []}}, anchor="t:9")],
        clock(),
    )
    assert not outbox.sent(db, c, clock(), "C0ENG", "1")  # …and settles after "b" was asked for
    assert status(db, key) == "pending"
    d.sweep(max_seconds=1)
    assert fake.of("chat.update")[-1].args["text"] == "b" and status(db, key) == "sent"


def test_two_deliverers_at_once_send_each_message_once(db, cfg, fake, clock):
    keys = outbox.put(db, [note(f"t:10:{i}", channel=f"C0R{i % 4}") for i in range(40)], clock())
    deliverers = [make(db, cfg, fake, clock)[1] for _ in range(3)]
    threads = [threading.Thread(target=lambda d=d: d.sweep(max_seconds=20)) for d in deliverers]
    threads += [threading.Thread(target=lambda d=d: d.send_now(keys)) for d in deliverers]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert [fake.posted(k) for k in keys] == [1] * 40
    assert len(fake.of("chat.postMessage")) == 40


def test_the_sweep_paces_each_channel_and_honours_retry_after(db, cfg, fake, clock):
    deps, d = make(db, cfg, fake, clock)
    d.pace = 0.05
    fake.limit_per_channel("chat.postMessage", per_second=20, burst=1)
    keys = outbox.put(db, [note(f"t:11:{i}", channel=f"C0P{i % 2}") for i in range(10)], clock())
    d.now = utcnow  # real time: Retry-After is real seconds here
    done = d.sweep(max_seconds=10, until_idle=True)
    assert [fake.posted(k) for k in keys] == [1] * 10, done
    assert len(fake.throttled) <= 2


@pytest.mark.parametrize("header", ["0", "-5", "abc", "nan", "1e12"])
def test_a_strange_retry_after_neither_hammers_slack_nor_parks_a_message(db, cfg, fake, clock, header):

    class Answer:
        headers = {"Retry-After": header}

    assert 1 <= retry_after(Answer()) <= 3600
    _, d = make(db, cfg, fake, clock)
    keys = outbox.put(db, [note("t:12")], clock())
    fake.rate_limit("chat.postMessage", retry_after=header)
    d.send_now(keys)
    assert outbox.get(db, "t:12").next_at >= clock() + timedelta(seconds=1)
    assert len(fake.of("chat.postMessage")) == 1


def test_an_update_asked_for_again_in_flight_is_sent_again_at_once(db, cfg, fake, clock):
    deps, d = make(db, cfg, fake, clock)
    outbox.put(db, [note("t:13")], clock())
    d.send_now(["t:13"])
    key = outbox.update_of("t:13")
    version = {"n": 1}

    def drawn(deps, row):  # the state changes while the first update is on its way
        text = f"version {version['n']}"
        if version["n"] == 1:
            version["n"] = 2
            outbox.put(db, [Message(key, "test:1", UPDATE, "C0ENG", "drawn", {}, anchor="t:13")], clock())
        return {"text": text, "blocks": []}

    d.renderers = dict(d.renderers, drawn=drawn)
    outbox.put(db, [Message(key, "test:1", UPDATE, "C0ENG", "drawn", {}, anchor="t:13")], clock())
    d.send_now([key])
    assert [c.args["text"] for c in fake.of("chat.update")] == ["version 1", "version 2"]
    assert status(db, key) == "sent"


def test_a_refused_message_tells_once_and_its_replies_follow_it_when_retried(db, cfg, fake, clock):
    _, d = make(db, cfg, fake, clock)
    reply = Message(
        "t:14:reply",
        "test:1",
        POST,
        "C0ENG",
        "static",
        {"message": {"text": "reply", "blocks": []}},
        anchor="t:14",
        actor="U0ALICE",
    )
    outbox.put(db, [note("t:14", actor="U0ALICE"), reply], clock())
    fake.fail("chat.postMessage", "not_in_channel")
    d.send_now(["t:14", "t:14:reply"])
    assert status(db, "t:14") == status(db, "t:14:reply") == "failed"
    assert len(fake.messages("U0ALICE")) == 1  # the root's refusal, once
    outbox.retry(db, "t:14", clock())
    d.sweep(max_seconds=3)
    assert status(db, "t:14") == status(db, "t:14:reply") == "sent"
    (top,) = [m for m in fake.messages("C0ENG") if not m.get("thread_ts")]
    assert [m["text"] for m in fake.messages("C0ENG") if m.get("thread_ts") == top["ts"]] == ["reply"]


def test_a_sweep_keeps_each_channels_order_and_waits_behind_a_retry_after(db, cfg, fake, clock):
    _, d = make(db, cfg, fake, clock)
    d.pace, d.gap = 0.01, 0.0
    keys = outbox.put(db, [note(f"t:15:{i}", text=f"message {i}") for i in range(3)], clock())
    fake.rate_limit("chat.postMessage", retry_after=5)
    d.sweep(max_seconds=1)
    assert fake.messages("C0ENG") == []  # the first waits for its Retry-After, and the others wait behind it
    clock.pass_(seconds=5)
    d.sweep(max_seconds=2)
    assert [m["text"] for m in fake.messages("C0ENG")] == ["message 0", "message 1", "message 2"]
    assert all(status(db, k) == "sent" for k in keys)
