"""Domain events (bot/domain/core/events.py): a bus nobody wired refuses to publish, and `wire()` makes the
Home listen, so a handoff decision writes the Home rows (`home:<user>`) of the affected people who opened
their Home lately, in the decision's own transaction."""

from __future__ import annotations

from datetime import datetime, timedelta

import pytest
from sqlmodel import delete, select

from bot.domain import handoffs, home
from bot.domain.core import events
from bot.domain.core.events import Bus, NotWired
from bot.domain.core.timeutil import utcnow
from bot.domain.handoffs import Draft
from bot.entry import app as app_factory, clock, settings
from bot.entry.bootstrap import wire
from storage.models import Handoff, Outbox
from tests.support.handoffs import ALL_MET

WHEN = datetime(2026, 11, 10, 9)


def home_rows(db) -> list[str]:
    with db.read() as s:
        return sorted(s.exec(select(Outbox.key).where(Outbox.key.like("home:%"))))


def forget_outbox(db) -> None:
    """The outbox emptied (what opening a Home wrote), the Homes opened kept."""
    with db.write() as s:
        s.exec(delete(Outbox))


def a_handoff(db, cfg, now: datetime) -> Handoff:
    return handoffs.submit(
        db, cfg, "U0ALICE", Draft("design", "eng", "Checkout v2 spec", criteria_met=list(ALL_MET)), now
    ).item


def test_publishing_on_a_bus_nobody_wired_raises_not_wired():
    bus = Bus()
    with pytest.raises(NotWired, match=r"HandoffChanged.*wire\(\)"):
        bus.publish(None, events.HandoffChanged(WHEN, None, None))
    with pytest.raises(NotWired):
        bus.require_wired("serve")


def test_a_subscriber_on_a_bus_not_yet_sealed_is_never_run():
    bus, ran = Bus(), []
    bus.subscribe(events.MembersChanged, lambda session, event: ran.append(event) or [])
    with pytest.raises(NotWired):
        bus.publish(None, events.MembersChanged(WHEN, frozenset({"U0BOB"})))
    assert ran == [] and not bus.wired


def test_wire_registers_the_homes_subscribers_once():
    bus = wire(Bus())
    assert bus.wired
    assert bus.subscribers(events.HandoffChanged) == [home.on_handoff]
    assert bus.subscribers(events.FastTrackChanged) == [home.on_fasttrack]
    assert bus.subscribers(events.MembersChanged) == [home.on_members]
    assert wire(bus) is bus and bus.subscribers(events.HandoffChanged) == [home.on_handoff]  # again: nothing changes


def test_a_handoff_decision_writes_the_home_rows_of_the_affected_who_opened_their_home(db, cfg):
    now = utcnow()
    for user in ("U0ALICE", "U0BOB", "U0CAROL"):  # the sender, a reviewer, someone in qa (not concerned)
        assert home.opened(db, user, None, now - timedelta(hours=1)) == [home.key(user)]
    home.opened(db, "U0AMY", None, now - timedelta(days=home.ACTIVE_DAYS + 1))  # concerned, but long ago
    forget_outbox(db)

    created = handoffs.submit(
        db, cfg, "U0ALICE", Draft("design", "eng", "Checkout v2 spec", criteria_met=list(ALL_MET)), now
    )
    assert {"home:U0ALICE", "home:U0BOB"} <= set(created.keys)
    assert home_rows(db) == ["home:U0ALICE", "home:U0BOB"]  # not U0CAROL's, not U0AMY's, not U0STEW's (never opened)

    forget_outbox(db)
    accepted = handoffs.accept(db, cfg, created.item.id, "U0BOB", now + timedelta(minutes=5))
    assert accepted.changed and {"home:U0ALICE", "home:U0BOB"} <= set(accepted.keys)
    assert home_rows(db) == ["home:U0ALICE", "home:U0BOB"]


def test_the_home_rows_are_written_in_the_decisions_transaction(db, cfg, monkeypatch):
    """A subscriber that fails after the Home's has written its rows takes the whole decision with it:
    no handoff, no Home rows; the Home's rows never outlive a decision that was not made."""
    now = utcnow()
    home.opened(db, "U0BOB", None, now)
    h = a_handoff(db, cfg, now)
    forget_outbox(db)

    def breaks(session, event):
        raise RuntimeError("a subscriber failed")

    failing = wire(Bus())
    failing.subscribe(events.HandoffChanged, breaks)
    monkeypatch.setattr(events, "bus", failing)

    with pytest.raises(RuntimeError, match="a subscriber failed"):
        handoffs.accept(db, cfg, h.id, "U0BOB", now + timedelta(minutes=5))
    assert handoffs.get(db, h.id).state == "open" and [e.kind for e in handoffs.history(db, h.id)] == ["created"]
    with pytest.raises(RuntimeError):
        a_handoff(db, cfg, now)
    with db.read() as s:
        assert len(s.exec(select(Handoff)).all()) == 1
    assert home_rows(db) == []

    monkeypatch.setattr(events, "bus", wire(Bus()))  # wired as every process is: the same decision goes through
    assert handoffs.accept(db, cfg, h.id, "U0BOB", now + timedelta(minutes=6)).changed
    assert home_rows(db) == ["home:U0BOB"]


def test_a_process_that_forgot_to_wire_fails_at_start_not_later(monkeypatch, db, cfg):
    """The web app's factory and the clock refuse to start on a bus nobody wired: a decision there would
    silently drop what its subscribers write (the Homes it changes)."""
    monkeypatch.setattr(events, "bus", Bus())
    with pytest.raises(NotWired, match="create_app"):
        app_factory.create_app(settings.Settings(slack_bot_token="xoxb-test", slack_signing_secret="s"), object())
    with pytest.raises(NotWired, match="clock"):
        clock.serve(cfg, db, deliverer=None, now=utcnow)
