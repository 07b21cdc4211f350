"""Exactly once without timing luck (issue #18 §2) and delivery after an outage (§4).

The deliverer runs in-process against the fake Web API, with a clock the test moves (leases, back-offs
and Retry-After without sleeping), as in test_outbox.py.
"""

from __future__ import annotations

import threading
import time
from datetime import timedelta

from slack_sdk import WebClient
from sqlalchemy import update

from bot.domain.core import outbox
from bot.domain.core.outbox import POST, PUBLISH, Message
from bot.domain.core.timeutil import utcnow
from bot.entry.bootstrap import Deps
from handlers import ON_FAILED, ON_SENT, RENDERERS
from handlers.delivery import LOST, PROBE_EVERY, Deliverer
from storage.models import Outbox
from tests.support.harness import TOKEN


class Clock:
    def __init__(self):
        self.at = utcnow()

    def __call__(self):
        return self.at

    def pass_(self, **delta):
        self.at += timedelta(**delta)


def make(db, cfg, fake, clock, timeout: float = 2, renderers: dict | None = None) -> Deliverer:
    client = WebClient(token=TOKEN, base_url=fake.url, timeout=timeout, retry_handlers=[])
    return Deliverer(
        Deps(cfg=cfg, db=db, now=clock), client, {**RENDERERS, **(renderers or {})}, ON_FAILED, on_sent=ON_SENT
    )


def note(key: str, channel: str = "C0ENG", render: str = "static") -> Message:
    return Message(key, "test:1", POST, channel, render, {"message": {"text": "hello", "blocks": []}})


def home(user: str = "U0ALICE") -> Message:
    return Message(f"home:{user}", f"home:{user}", PUBLISH, user, "test_view", {"user": user})


def draw_view(ctx, row):
    return {"type": "home", "blocks": [{"type": "section", "text": {"type": "mrkdwn", "text": "hi"}}]}


# -- a deliverer that stalls past its lease --------------------------------------------------------------


def test_a_deliverer_that_stalls_past_its_lease_sends_nothing_once_another_took_the_row_over(db, cfg, fake):
    """A claims the row and stalls (here: while drawing the message) past the 60 s lease; B takes the row
    over, looks in Slack, finds nothing and posts. A wakes: its renewal, on its claim's token, fails, so it
    abandons the send. One message in Slack."""
    clock = Clock()
    entered, release = threading.Event(), threading.Event()

    def stall(ctx, row):
        if threading.current_thread().name == "A":
            entered.set()
            release.wait(10)
        return {"text": "hello", "blocks": []}

    a = make(db, cfg, fake, clock, renderers={"stall": stall})
    b = make(db, cfg, fake, clock, renderers={"stall": stall})
    (key,) = outbox.put(db, [note("t:stall", render="stall")], clock())
    results = {}
    worker = threading.Thread(target=lambda: results.update(a=a.deliver(key)), name="A")
    worker.start()
    assert entered.wait(10)
    clock.pass_(seconds=61)  # A's lease has passed
    assert b.deliver(key) == "sent"
    assert len(fake.of("conversations.history")) == 1  # B looked first (the outcome of A's attempt was unknown)
    release.set()
    worker.join(10)
    assert results["a"] == LOST
    assert fake.posted("t:stall") == 1 and outbox.get(db, key).status == "sent"


def test_a_call_that_could_outlast_the_lease_is_not_made(db, cfg, fake):
    """The client's time-out is as long as the lease: a call could still be on its way when another
    deliverer may take the row over, so it is not made; the row stays pending, due now, nothing counted."""
    clock = Clock()
    d = make(db, cfg, fake, clock, timeout=outbox.LEASE.total_seconds())
    (key,) = outbox.put(db, [note("t:short")], clock())
    assert d.deliver(key) == LOST
    row = outbox.get(db, key)
    assert fake.posted("t:short") == 0 and fake.of("chat.postMessage") == []
    assert (row.status, row.attempts, row.next_at, row.error) == ("pending", 0, clock(), "the lease ran short")


# -- after an outage -------------------------------------------------------------------------------------


def test_after_an_outage_the_rows_go_within_seconds_whatever_their_back_off(db, cfg, fake):
    """Slack is out long enough for the back-offs to grow to a minute; once it answers again, the next
    sweep's look (auth.test, every few seconds while rows back off) makes them due, and they go."""
    clock = Clock()
    d = make(db, cfg, fake, clock)
    keys = outbox.put(db, [note("t:o1", "C0ENG"), note("t:o2", "C0QA"), note("t:o3", "U0BOB")], clock())
    fake.down(600)
    for _ in range(6):  # six failed attempts each: the next back-off is 64 s
        d.sweep(max_seconds=1)
        clock.pass_(minutes=10)
    clock.pass_(seconds=-590)
    rows = [outbox.get(db, k) for k in keys]
    assert all(r.status == "pending" and r.attempts >= 5 for r in rows), [(r.status, r.attempts) for r in rows]
    assert min(r.next_at for r in rows) - clock() > timedelta(seconds=20)
    time.sleep(PROBE_EVERY)
    d.sweep(max_seconds=1)  # nothing due; the look finds Slack still out of reach
    assert fake.of("auth.test")[-1].status == 503
    fake.down(0)
    began = time.monotonic()
    time.sleep(PROBE_EVERY)
    d.sweep(max_seconds=5)
    assert [fake.posted(k) for k in keys] == [1, 1, 1]
    assert time.monotonic() - began < PROBE_EVERY + 5
    assert [outbox.get(db, k).status for k in keys] == ["sent"] * 3


def test_one_message_slack_refuses_with_a_5xx_still_backs_off_on_its_own(db, cfg, fake):
    """Slack answers (auth.test works) but refuses one message with a 503: no outage was seen, so that
    row keeps its back-off rather than being retried at every look."""
    clock = Clock()
    d = make(db, cfg, fake, clock)
    (key,) = outbox.put(db, [note("t:5xx")], clock())
    fake.server_error("chat.postMessage", 503, times=3)
    for _ in range(3):
        d.sweep(max_seconds=1)
        clock.pass_(minutes=10)
    clock.pass_(seconds=-598)  # 2 s after the third failure: 6 s of its 8 s back-off left
    time.sleep(PROBE_EVERY)
    d.sweep(max_seconds=1)
    row = outbox.get(db, key)
    assert (row.status, row.attempts) == ("pending", 3) and row.next_at > clock()
    assert fake.posted("t:5xx") == 0 and len(fake.of("auth.test")) >= 1


# -- heads: due first, then the limit --------------------------------------------------------------------


def test_conversations_waiting_on_retry_after_never_hide_one_that_is_due(db, cfg, fake):
    clock = Clock()
    waiting = [note(f"t:w{i}", f"D{i:07d}") for i in range(520)]
    outbox.put(db, waiting, clock())
    with db.write() as s:  # 520 DMs whose Retry-After has not passed
        s.execute(
            update(Outbox)
            .where(Outbox.key.like("t:w%"))
            .values(next_at=clock() + timedelta(seconds=30), error=outbox.RATELIMITED)
        )
    outbox.put(db, [note("t:welcome", "U0ZED")], clock())
    assert [r.key for r in outbox.heads(db, clock())] == ["t:welcome"]
    assert outbox.heads(db, clock() + timedelta(seconds=31), limit=600)[0].key == "t:w0"


# -- attempts and Retry-After of a coalesced row ----------------------------------------------------------


def test_a_success_resets_attempts_so_one_failure_after_many_publishes_backs_off_2_s(db, cfg, fake):
    clock = Clock()
    d = make(db, cfg, fake, clock, renderers={"test_view": draw_view})
    for _ in range(10):
        (key,) = outbox.put(db, [home()], clock())
        assert d.deliver(key) == "sent"
        assert outbox.get(db, key).attempts == 1  # each generation's delivery took one attempt
    outbox.put(db, [home()], clock())
    fake.server_error("views.publish", 503)
    assert d.deliver(key) == "later"
    row = outbox.get(db, key)
    assert (row.status, row.attempts, row.next_at - clock()) == ("pending", 1, timedelta(seconds=2))


def test_asking_again_never_shortens_a_retry_after(db, cfg, fake):
    clock = Clock()
    d = make(db, cfg, fake, clock, renderers={"test_view": draw_view})
    (key,) = outbox.put(db, [home()], clock())
    fake.rate_limit("views.publish", retry_after=30)
    assert d.deliver(key) == "ratelimited"
    until = outbox.get(db, key).next_at
    assert until == clock() + timedelta(seconds=30)
    outbox.put(db, [home()], clock())  # the Home asked for again meanwhile
    row = outbox.get(db, key)
    assert (row.status, row.generation, row.next_at) == ("pending", 2, until)
    assert d.deliver(key) == "busy"  # not due before its Retry-After
    clock.pass_(seconds=30)
    assert d.deliver(key) == "sent" and outbox.get(db, key).generation == 2
