"""Escalation paths in the domain: levels in working hours, once per round, only the current level after
downtime, nothing outside working time, snoozes, by hand, and fast-tracks that wait too long."""

from __future__ import annotations

import threading
import tomllib
from datetime import UTC, datetime
from zoneinfo import ZoneInfo

import pytest

from bot.domain import escalations, fasttrack, handoffs
from bot.domain.core import outbox
from bot.domain.core.items import RuleError
from bot.domain.core.process import parse_process
from bot.domain.handoffs import Draft
from tests.support.data import PROCESS

BERLIN = ZoneInfo("Europe/Berlin")


def at(*args) -> datetime:
    """Berlin wall time as naive UTC."""
    return datetime(*args, tzinfo=BERLIN).astimezone(UTC).replace(tzinfo=None)


@pytest.fixture(scope="module")
def eight():
    """The test organisation with an 8-hour SLA from Design to Engineering and a holiday."""
    raw = tomllib.loads(PROCESS.read_text())
    raw["boundaries"][0]["sla_hours"] = 8
    raw["organization"]["holidays"] = [datetime(2026, 12, 24).date()]
    return parse_process(raw)


def new(db, cfg, when: datetime):
    return handoffs.submit(
        db,
        cfg,
        "U0ALICE",
        Draft("design", "eng", "Spec", criteria_met=list(cfg.boundary("design", "eng").criteria)),
        now=when,
    ).item


def written(db, h, kind: str = "") -> list[str]:
    return [r.key for r in outbox.of_item(db, f"handoff:{h.id}") if kind in r.key]


def test_each_level_fires_once_at_its_working_hour(db, eight):
    h = new(db, eight, at(2026, 11, 27, 16))  # Friday 16:00, SLA 8 working hours
    assert h.next_escalation_at == at(2026, 11, 30, 16)  # Monday 16:00
    assert escalations.sweep(db, eight, at(2026, 11, 30, 15, 59)) == []
    keys = escalations.sweep(db, eight, at(2026, 11, 30, 16))
    assert keys == [f"handoff:{h.id}:card:update", f"handoff:{h.id}:v2:thread:team"]
    assert escalations.sweep(db, eight, at(2026, 11, 30, 16, 5)) == []  # once
    row = handoffs.get(db, h.id)
    assert (row.level, row.next_escalation_at) == (1, at(2026, 12, 1, 16))  # the steward at twice the SLA
    keys = escalations.sweep(db, eight, at(2026, 12, 1, 16))
    assert f"handoff:{h.id}:v3:dm:U0STEW" in keys
    assert handoffs.get(db, h.id).next_escalation_at is None  # no third level configured
    assert [e.kind for e in handoffs.history(db, h.id)] == ["created", "escalated", "escalated"]


def test_nothing_is_sent_outside_working_time_and_downtime_sends_only_the_current_level(db, eight):
    h = new(db, eight, at(2026, 11, 27, 16))
    assert escalations.sweep(db, eight, at(2026, 12, 5, 12)) == []  # Saturday
    assert escalations.sweep(db, eight, at(2026, 12, 7, 3)) == []  # Monday 03:00
    keys = escalations.sweep(db, eight, at(2026, 12, 7, 9))  # the clock was down for a week: level 2 only
    assert keys == [f"handoff:{h.id}:card:update", f"handoff:{h.id}:v2:dm:U0STEW"]
    (ev,) = [e for e in handoffs.history(db, h.id) if e.kind == "escalated"]
    assert (
        ev.data["level"] == 2 and ev.data["overdue_hours"] == 33
    )  # Mon 16-17, then Tue-Fri and ev.data["last"] is True


def test_a_resubmission_starts_the_clock_again_and_the_sender_is_reminded(db, eight):
    h = new(db, eight, at(2026, 11, 30, 9))
    assert escalations.sweep(db, eight, at(2026, 11, 30, 16, 59)) == []  # due at 17:00, the end of the working day
    handoffs.send_back(db, eight, h.id, "U0BOB", "rework_requested", "More detail", now=at(2026, 12, 1, 10))
    back = handoffs.get(db, h.id)
    assert (back.level, back.waiting_since, back.next_escalation_at) == (0, at(2026, 12, 1, 10), at(2026, 12, 2, 10))
    keys = escalations.sweep(db, eight, at(2026, 12, 2, 10))  # not resubmitted within the SLA: the sender
    assert f"handoff:{h.id}:v3:dm:U0ALICE" in keys
    assert outbox.get(db, f"handoff:{h.id}:v3:dm:U0ALICE").render == "handoff_resubmit_reminder"
    assert f"handoff:{h.id}:v4:dm:U0STEW" in escalations.sweep(db, eight, at(2026, 12, 3, 10))  # then its steward
    handoffs.resubmit(
        db, eight, h.id, "U0ALICE", list(eight.boundary("design", "eng").criteria), None, None, now=at(2026, 12, 3, 11)
    )
    again = handoffs.get(db, h.id)
    assert (again.level, again.snoozes, again.next_escalation_at) == (0, 0, at(2026, 12, 4, 11))
    handoffs.accept(db, eight, h.id, "U0BOB", now=at(2026, 12, 3, 12))
    assert handoffs.get(db, h.id).next_escalation_at is None


def test_snoozes_put_the_round_off_a_working_day_twice_at_most(db, eight):
    h = new(db, eight, at(2026, 12, 22, 10))  # Tuesday; Thursday the 24th is a holiday
    with pytest.raises(RuleError, match="You sent this handoff|Only"):
        escalations.snooze(db, eight, h.id, "U0ALICE", now=at(2026, 12, 22, 11))
    assert escalations.snooze(db, eight, h.id, "U0BOB", now=at(2026, 12, 22, 11)).changed
    assert handoffs.get(db, h.id).next_escalation_at == at(2026, 12, 25, 10)  # 8 h + one day of 8 h, the 24th skipped
    assert escalations.snooze(db, eight, h.id, "U0STEW", now=at(2026, 12, 22, 12)).changed
    with pytest.raises(RuleError, match="already snoozed 2 times"):
        escalations.snooze(db, eight, h.id, "U0BOB", now=at(2026, 12, 22, 13))
    assert [e.kind for e in handoffs.history(db, h.id)] == ["created", "snoozed", "snoozed"]
    assert handoffs.get(db, h.id).next_escalation_at == at(2026, 12, 28, 10)  # 8 h + 2 days of 8 h, the 24th skipped


def test_two_sweeps_at_once_fire_a_level_once(db, eight):
    hs = [new(db, eight, at(2026, 11, 30, 9)) for _ in range(6)]
    results: list[list[str]] = []
    threads = [
        threading.Thread(target=lambda: results.append(escalations.sweep(db, eight, at(2026, 12, 1, 9, 30))))
        for _ in range(4)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    fired = sorted(k for keys in results for k in keys if ":thread:team" in k)
    assert fired == sorted(f"handoff:{h.id}:v2:thread:team" for h in hs)
    assert all([e.kind for e in handoffs.history(db, h.id)].count("escalated") == 1 for h in hs)


def test_escalating_by_hand(db, eight):
    h = new(db, eight, at(2026, 11, 30, 9))
    with pytest.raises(RuleError, match="Say why"):
        escalations.by_hand(db, eight, h.id, "U0ALICE", "  ", now=at(2026, 11, 30, 10))
    with pytest.raises(RuleError, match="Only the sending team"):
        escalations.by_hand(db, eight, h.id, "U0EVE", "why", now=at(2026, 11, 30, 10))
    outcome = escalations.by_hand(db, eight, h.id, "U0ALICE", "Blocked on a decision", now=at(2026, 11, 30, 10))
    assert f"handoff:{h.id}:v2:dm:U0STEW" in outcome.keys
    row = handoffs.get(db, h.id)
    assert row.level == 0 and row.state == "open"  # by hand changes no level: the clock goes on


def test_a_fast_track_waiting_too_long_goes_to_the_backups_once(db, eight):
    handoffs.create(
        db,
        eight,
        "U0BOB",
        Draft("eng", "qa", "Build", criteria_met=["Release notes", "Test plan"]),
        now=at(2026, 11, 30, 9),
    )
    r, _, _ = fasttrack.request(
        db,
        eight,
        "U0BOB",
        fasttrack.Draft("eng", "QA sign-off", "Other", "Release 1", "Customer waits"),
        now=at(2026, 11, 30, 9),
    )
    assert r.deciders == ["U0CAROL", "U0STEW"]
    assert escalations.sweep(db, eight, at(2026, 12, 2, 16)) == []  # 23 working hours
    keys = escalations.sweep(db, eight, at(2026, 12, 3, 9))  # 24 working hours (Mon, Tue, Wed)
    assert f"fasttrack:{r.id}:card:U0HEAD" in keys and f"fasttrack:{r.id}:v2:dm:U0BOB" in keys
    assert {f"fasttrack:{r.id}:card:U0CAROL:update", f"fasttrack:{r.id}:card:U0STEW:update"} <= set(keys)
    row = fasttrack.get(db, r.id)
    assert (row.deciders, row.escalated, row.over_budget) == (["U0HEAD"], True, False)
    assert escalations.sweep(db, eight, at(2026, 12, 4, 10)) == []  # once
