"""The request thread leaves what nobody waits for to the process's background thread: App Home publishes
(drawing a Home reads the person's teams' month) and a card's permalink. The web app's deliverer defers
`publish` rows; the clock's and the CLI's defer nothing (a job's run delivers all it wrote)."""

from __future__ import annotations

import threading
import time

import pytest
from slack_sdk import WebClient
from sqlalchemy import text

from bot.domain import home
from bot.domain.core import outbox
from bot.domain.core.outbox import POST, PUBLISH, Message
from bot.domain.core.timeutil import utcnow
from bot.entry.bootstrap import Deps
from handlers import deliverer
from storage.db import Database
from storage.models import OutboxStatus
from tests.support.harness import TOKEN

HANG = 4.0  # seconds Slack holds its answer to views.publish


def note(key: str) -> Message:
    return Message(key, "test:1", POST, "C0ENG", "static", {"message": {"text": "hello", "blocks": []}})


def test_a_home_publish_waits_in_the_background_not_in_the_request(db, cfg, fake):
    deps = Deps(cfg=cfg, db=db)
    d = deliverer(deps, WebClient(token=TOKEN, base_url=fake.url, timeout=10, retry_handlers=[]), defer={PUBLISH})
    fake.store_then_hang("views.publish", HANG)
    keys = outbox.put(db, [home.message("U0BOB"), note("t:after-home")], utcnow())

    start = time.monotonic()
    done = d.send_now(keys)
    took = time.monotonic() - start

    assert done["deferred"] == 1 and done["sent"] == 1, done
    assert took < HANG / 2, f"the request thread waited {took:.1f} s for Slack's views.publish"
    assert outbox.get(db, "t:after-home").status == OutboxStatus.SENT
    d.drain_background(timeout=HANG + 10)
    assert outbox.get(db, home.key("U0BOB")).status == OutboxStatus.SENT
    assert len(fake.of("views.publish")) == 1 and "U0BOB" in fake.homes


def test_without_defer_the_deliverer_sends_a_home_itself(db, cfg, fake):
    """The clock's and the CLI's deliverer (no `defer`): `run-job` reports what it delivered, Homes included."""
    deps = Deps(cfg=cfg, db=db)
    d = deliverer(deps, WebClient(token=TOKEN, base_url=fake.url, timeout=10, retry_handlers=[]))
    keys = outbox.put(db, [home.message("U0BOB")], utcnow())
    assert d.send_now(keys)["sent"] == 1
    assert outbox.get(db, home.key("U0BOB")).status == OutboxStatus.SENT


def test_a_deferred_home_left_by_a_dead_process_stays_due_for_the_sweep(db, cfg, fake):
    """The background thread is lost with its process: the row was never claimed, so the clock's sweep
    delivers it, once."""
    deps = Deps(cfg=cfg, db=db)
    client = WebClient(token=TOKEN, base_url=fake.url, timeout=10, retry_handlers=[])
    dying = deliverer(deps, client, defer={PUBLISH})
    dying.after = lambda fn, *args: None  # the process dies before its background thread runs
    keys = outbox.put(db, [home.message("U0BOB")], utcnow())
    assert dying.send_now(keys)["deferred"] == 1
    assert outbox.get(db, home.key("U0BOB")).status == OutboxStatus.PENDING

    deliverer(deps, client).sweep(max_seconds=5)
    assert outbox.get(db, home.key("U0BOB")).status == OutboxStatus.SENT
    assert len(fake.of("views.publish")) == 1


def test_a_delivery_the_busy_database_refused_is_tried_again_in_the_request(db, cfg, fake):
    """A burst of clicks holds SQLite's write lock past the web app's wait: the request thread's claim
    fails. It tries again a moment later instead of leaving the DM for the clock's next sweep."""
    if not db.is_sqlite:
        pytest.skip("SQLite's one write lock; PostgreSQL locks rows")
    keys = outbox.put(db, [note("t:busy")], utcnow())
    impatient = Database(db.url, wait=0.1)  # the web app waits 1.2 s; this, less than the lock is held
    deps = Deps(cfg=cfg, db=impatient)
    d = deliverer(deps, WebClient(token=TOKEN, base_url=fake.url, timeout=10, retry_handlers=[]))
    held = threading.Event()

    def hold_the_lock():
        with db.write() as s:  # BEGIN IMMEDIATE: the write lock, for 0.4 s
            s.execute(text("UPDATE outbox SET updated_at = updated_at WHERE key = 'none'"))
            held.set()
            time.sleep(0.4)

    holder = threading.Thread(target=hold_the_lock)
    holder.start()
    held.wait(5)
    try:
        assert d.send_now(keys)["sent"] == 1
    finally:
        holder.join()
        impatient.dispose()
    assert outbox.get(db, "t:busy").status == OutboxStatus.SENT and len(fake.of("chat.postMessage")) == 1
