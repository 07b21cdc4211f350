"""The digest's response, escalation and overdue figures on fixed data, counted by hand. Every handoff is
driven through the domain (bot.domain.handoffs, bot.domain.escalations) with fixed moments in Berlin working time;
the levels that fire are fired with `escalations.escalate`, what the sweep does for each handoff it finds.

The organisation: tests/data/process.toml with Design → Engineering at an 8-hour SLA (Eng → QA keeps 24 h),
working days Mon–Fri 09:00–17:00 Berlin, the default escalation path (L1 the team at the SLA, L2 the
steward at twice the SLA, the last), and the sender's path when sent back (L1 the sender at the SLA, L2
the steward at twice it, the last). November 2026: Berlin is UTC+1; the month ends 1 Dec 00:00 Berlin.
"""

from __future__ import annotations

import copy
import tomllib
from datetime import UTC, datetime
from zoneinfo import ZoneInfo

import pytest

from bot.domain import digest, escalations, handoffs, metrics
from bot.domain.core import schedule
from bot.domain.core.process import parse_process
from bot.domain.handoffs import Draft
from handlers import digest as slack_digest
from storage.models import MonthRollup
from tests.support.data import PROCESS

BERLIN = ZoneInfo("Europe/Berlin")
DESIGN = ["Specification with acceptance criteria", "Wireframes", "Glossary of terms"]
QA = ["Release notes", "Test plan"]


def at(*args) -> datetime:
    """Berlin wall time as naive UTC."""
    return datetime(*args, tzinfo=BERLIN).astimezone(UTC).replace(tzinfo=None)


@pytest.fixture(scope="module")
def cfg8():
    raw = tomllib.loads(PROCESS.read_text())
    raw["boundaries"][0]["sla_hours"] = 8
    return parse_process(raw)


def design(db, cfg, when: datetime) -> int:
    return handoffs.create(db, cfg, "U0ALICE", Draft("design", "eng", "Spec", criteria_met=DESIGN), now=when).id


def eng(db, cfg, when: datetime) -> int:
    return handoffs.create(db, cfg, "U0BOB", Draft("eng", "qa", "Build", criteria_met=QA), now=when).id


def fire(db, cfg, handoff_id: int, when: datetime, level: int, last: bool) -> None:
    outcome = escalations.escalate(db, cfg, handoff_id, when)
    assert outcome is not None and (outcome.event.data["level"], outcome.event.data["last"]) == (level, last)


@pytest.fixture
def story(db, cfg8):
    cfg = cfg8
    ids = {}
    # -- October: Eng → QA reaches its last level once; Design → Engineering G waits over the month's end
    ids["Q1"] = q1 = eng(db, cfg, at(2026, 10, 1, 9))  # Thu; L2 due at 48 wh = Thu 8 Oct 17:00
    fire(db, cfg, q1, at(2026, 10, 9, 9), 2, True)  # after a delay only the current level fires: L2, not L1
    handoffs.accept(db, cfg, q1, "U0CAROL", now=at(2026, 10, 9, 10))  # first response 49 wh
    ids["G"] = g = design(db, cfg, at(2026, 10, 28, 9))  # Wed; deadline 28 Oct 17:00: overdue at October's end
    handoffs.accept(db, cfg, g, "U0BOB", now=at(2026, 11, 2, 10))  # first response in November: 8+8+8+1 = 25 wh

    # -- November, Design → Engineering (SLA 8 working hours)
    ids["A"] = a = design(db, cfg, at(2026, 11, 2, 9))
    handoffs.accept(db, cfg, a, "U0BOB", now=at(2026, 11, 2, 12))  # 3 wh, in time
    ids["B"] = b = design(db, cfg, at(2026, 11, 2, 16))
    handoffs.send_back(
        db, cfg, b, "U0BOB", "rework_requested", "More", now=at(2026, 11, 3, 11)
    )  # Mon 16-17 + Tue 9-11 = 3 wh
    handoffs.resubmit(db, cfg, b, "U0ALICE", DESIGN, None, None, now=at(2026, 11, 3, 12))
    handoffs.accept(db, cfg, b, "U0BOB", now=at(2026, 11, 3, 13))  # round 2's response: not a first response
    ids["C"] = c = design(db, cfg, at(2026, 11, 3, 9))
    fire(db, cfg, c, at(2026, 11, 4, 9), 1, False)  # the team, due Tue 17:00
    fire(db, cfg, c, at(2026, 11, 5, 9), 2, True)  # the steward, due Wed 17:00
    handoffs.accept(db, cfg, c, "U0BOB", now=at(2026, 11, 5, 10))  # 8+8+1 = 17 wh, late
    ids["D"] = d = design(db, cfg, at(2026, 11, 4, 9))
    escalations.snooze(db, cfg, d, "U0BOB", now=at(2026, 11, 4, 10))  # puts reminders off, not the SLA
    handoffs.send_back(
        db, cfg, d, "U0BOB", "clarification_requested", "Which?", now=at(2026, 11, 5, 15)
    )  # 8+6 = 14 wh, late
    fire(db, cfg, d, at(2026, 11, 6, 15), 1, False)  # waits on its sender: reminded at 8 wh
    fire(db, cfg, d, at(2026, 11, 9, 15), 2, True)  # its steward at 16 wh; never resubmitted
    ids["E"] = e = design(db, cfg, at(2026, 11, 5, 9))
    escalations.by_hand(
        db, cfg, e, "U0ALICE", "Blocked on a decision", now=at(2026, 11, 5, 10)
    )  # by hand: apart, no level
    ids["L"] = l_ = design(db, cfg, at(2026, 11, 16, 9))
    handoffs.send_back(db, cfg, l_, "U0BOB", "rework_requested", "Redo", now=at(2026, 11, 16, 10))  # 1 wh, in time
    handoffs.resubmit(db, cfg, l_, "U0ALICE", DESIGN, None, None, now=at(2026, 12, 1, 9))  # after the month's end
    ids["I"] = i = design(db, cfg, at(2026, 11, 26, 9))
    handoffs.cancel(db, cfg, i, "U0ALICE", now=at(2026, 12, 2, 9))  # cancelled after the month's end
    ids["H"] = h = design(db, cfg, at(2026, 11, 27, 9))
    handoffs.accept(
        db, cfg, h, "U0BOB", now=at(2026, 12, 1, 10)
    )  # accepted after: Fri 8 + Mon 8 + Tue 1 = 17 wh (December)
    ids["J"] = j = design(db, cfg, at(2026, 11, 27, 10))
    escalations.snooze(db, cfg, j, "U0BOB", now=at(2026, 11, 27, 11))
    escalations.snooze(db, cfg, j, "U0STEW", now=at(2026, 11, 27, 12))  # deadline 8 + 2×8 wh: Wed 2 Dec 10:00
    ids["F"] = design(db, cfg, at(2026, 11, 30, 16))  # deadline Tue 1 Dec 16:00

    # -- November, Engineering → QA (SLA 24 working hours)
    ids["Q2"] = q2 = eng(db, cfg, at(2026, 11, 2, 9))
    fire(db, cfg, q2, at(2026, 11, 5, 9), 1, False)  # due Wed 4 Nov 17:00
    fire(db, cfg, q2, at(2026, 11, 10, 9), 2, True)  # due Mon 9 Nov 17:00
    handoffs.accept(db, cfg, q2, "U0CAROL", now=at(2026, 11, 10, 10))  # 48+1 = 49 wh
    ids["Q3"] = q3 = eng(db, cfg, at(2026, 11, 2, 9))
    fire(db, cfg, q3, at(2026, 11, 10, 9), 2, True)
    handoffs.send_back(db, cfg, q3, "U0CAROL", "rework_requested", "No plan", now=at(2026, 11, 10, 11))  # 50 wh
    handoffs.cancel(db, cfg, q3, "U0BOB", now=at(2026, 11, 12, 9))
    ids["Q4"] = q4 = eng(db, cfg, at(2026, 11, 16, 9))
    handoffs.accept(db, cfg, q4, "U0CAROL", now=at(2026, 11, 16, 13))  # 4 wh, in time
    ids["Q5"] = eng(db, cfg, at(2026, 11, 30, 9))  # deadline Wed 2 Dec 17:00
    return ids


def month(db, cfg, period: str) -> metrics.Month:
    start, end = schedule.bounds(period, cfg.organization.tz)
    return metrics.month(db, period, start, end, [t.id for t in cfg.teams], cfg)


def test_november_counted_by_hand(db, cfg8, story):
    m = month(db, cfg8, "2026-11")
    de, eq = m.boundaries[("design", "eng")], m.boundaries[("eng", "qa")]

    # first responses in November, Design → Engineering: A 3, B 3, C 17, D 14, G 25 (created in October), L 1 wh;
    # in time (≤ 8 wh): A, B, L → 3 of 6. Median of 1, 3, 3, 14, 17, 25 = (3 + 14) / 2 = 8.5 wh.
    # (H's first response is in December; B's acceptance closed round 2 and is not a first response.)
    assert (de.responses.answered, de.responses.within_sla) == (6, 3) and de.responses.share == 0.5
    assert de.responses.median_hours == pytest.approx(8.5)
    # Eng → QA: Q2 49, Q3 50, Q4 4 wh; in time (≤ 24 wh): Q4 → 1 of 3, median 49
    assert (eq.responses.answered, eq.responses.within_sla) == (3, 1)
    assert eq.responses.median_hours == pytest.approx(49)
    # the organisation: 1, 3, 3, 4, 14, 17, 25, 49, 50 → 4 of 9 in time, median 14
    assert (m.total.responses.answered, m.total.responses.within_sla) == (9, 4)
    assert m.total.responses.median_hours == pytest.approx(14)

    # escalations by level: C L1, C L2, D L1 (sender), D L2 (sender's steward); E by hand, counted apart
    assert (de.escalations, de.manual_escalations) == ({1: 2, 2: 2}, 1)
    assert (eq.escalations, eq.manual_escalations) == ({1: 1, 2: 2}, 0)  # Q2 L1, Q2 L2, Q3 L2
    assert (de.snoozes, eq.snoozes, m.total.snoozes) == (3, 0, 3)  # D once, J twice
    assert (de.reached_last, eq.reached_last) == (2, 2)  # C, D; Q2, Q3
    # created in November: Design → Eng A B C D E F H I J L = 10, of which C and D reached the steward
    # (E's steward was told by hand: not a level); Eng → QA Q2..Q5 = 4, of which Q2 and Q3
    assert (de.created, de.reached_steward, eq.created, eq.reached_steward) == (10, 2, 4, 2)
    assert sum(m.total.escalations.values()) == 7 and m.total.manual_escalations == 1

    # overdue at the month's end, by receiving team: D (waiting on its sender since 5 Nov 15:00, due 6 Nov
    # 15:00), E (open, due 5 Nov 17:00), H (accepted since, due 27 Nov 17:00), I (cancelled since, due
    # 26 Nov 17:00), L (waiting on its sender since 16 Nov 10:00: resubmitted only in December) → 5.
    # Not: F (due 1 Dec 16:00), J (snoozed twice: due 2 Dec 10:00), A, B, C, G (accepted in November).
    # QA: Q5 due 2 Dec 17:00, Q3 cancelled in November → 0.
    assert {t: r.open_overdue for t, r in m.teams.items()} == {"design": 0, "eng": 5, "qa": 0}


def test_october_and_december(db, cfg8, story):
    oct_ = month(db, cfg8, "2026-10")
    eq = oct_.boundaries[("eng", "qa")]
    # Q1: its first response at 49 wh (late), one automatic escalation straight to L2, the last
    assert (eq.responses.answered, eq.responses.within_sla, eq.escalations, eq.reached_last) == (1, 0, {2: 1}, 1)
    assert oct_.teams["eng"].open_overdue == 1  # G, due 28 Oct 17:00, accepted 2 Nov
    assert ("design", "eng") not in oct_.boundaries or oct_.boundaries[("design", "eng")].responses.answered == 0

    dec = month(db, cfg8, "2026-12")
    de = dec.boundaries[("design", "eng")]
    assert (de.responses.answered, de.responses.within_sla, de.responses.median_hours) == (1, 0, pytest.approx(17))  # H
    assert sum(de.escalations.values()) == de.reached_last == de.snoozes == 0
    # at December's end: D, E, F, J and L (open since its resubmission on 1 Dec 09:00, due 17:00); QA: Q5
    assert (dec.teams["eng"].open_overdue, dec.teams["qa"].open_overdue) == (5, 1)


def test_frequent_escalations_signal(db, cfg8, story):
    nov = digest.compose(db, cfg8, "2026-11")
    found = [(s.text, s.people) for s in nov.signals if "frequent escalations" in s.text]
    # Design → Eng: 2 of 10 created (20%, at least 5 created) reached the steward; its last level was
    # reached in November only. Eng → QA: 2 of 4 (50%) but fewer than 5 created; the last level in
    # both October (Q1) and November (Q2, Q3).
    assert found == [
        (
            "Design → Engineering: frequent escalations: 2 of the 10 handoffs sent in Nov 2026 (20%) reached the steward level.",
            ["U0STEW"],
        ),
        (
            (
                "Engineering → Quality: frequent escalations: handoffs reached the last escalation level in both Oct 2026 (1) "
                "and Nov 2026 (2)."
            ),
            ["U0STEW"],
        ),
    ]
    # negative: October (no last level in September), December (nothing escalated)
    for period in ("2026-10", "2026-12"):
        assert not [s for s in digest.compose(db, cfg8, period).signals if "frequent escalations" in s.text]
    # below the share, or too few created: none
    before, now = nov.months[-2], copy.deepcopy(nov.months[-1])
    now.boundaries[("design", "eng")].reached_steward = 1  # 10%
    now.boundaries[("eng", "qa")].reached_last = 0
    assert digest._escalation_signals(cfg8, before, now) == []
    now.boundaries[("design", "eng")].created = 4
    now.boundaries[("design", "eng")].reached_steward = 4  # 100%, but of 4
    assert digest._escalation_signals(cfg8, before, now) == []
    now.boundaries[("design", "eng")].created, now.boundaries[("design", "eng")].reached_steward = 15, 3  # exactly 20%
    assert [s.text[:41] for s in digest._escalation_signals(cfg8, before, now)] == [
        "Design → Engineering: frequent escalation"
    ]


def test_the_digest_shows_them_escaped_and_they_survive_a_rollup(db, cfg8, story):
    d = digest.compose(db, cfg8, "2026-11")
    text = slack_digest.preview(slack_digest.messages(d))
    assert (
        "First response (SLA 8 working h): 50% in time (3 of 6), median 8.5 working h · escalations L1 ×2, L2 ×2, "
        "by hand ×1 · snoozes 3"
    ) in text
    assert (
        "First response (SLA 24 working h): 33% in time (1 of 3), median 49.0 working h · escalations L1 ×1, L2 ×2 "
        "· snoozes 0"
    ) in text  # no escalation by hand: not listed
    assert "Engineering · sent 4 (+3) · received 10 (+9) · 5 received overdue at the month's end" in text
    assert "Quality · received 4 (+3)\n" in text  # nothing sent in either month, nothing overdue: not mentioned
    first_message = [b["text"]["text"] for b in slack_digest.messages(d)[0]["blocks"] if b["type"] == "section"]
    assert (
        ":warning: Design → Engineering: frequent escalations: 2 of the 10 handoffs sent in Nov 2026 (20%) reached the "
        "steward level.\nWho acts: <@U0STEW> (steward of Design → Engineering)"
    ) in first_message

    # kept and read back; a month kept before these figures existed reads them as none
    start, end = schedule.bounds("2026-11", cfg8.organization.tz)
    teams = [t.id for t in cfg8.teams]
    first = metrics.figures(db, "2026-11", start, end, teams, now=end + metrics.CLOSED_AFTER, cfg=cfg8)
    kept = metrics.figures(db, "2026-11", start, end, teams, now=end + metrics.CLOSED_AFTER, cfg=cfg8)
    assert metrics.to_json(kept) == metrics.to_json(first)
    assert kept.boundaries[("design", "eng")].escalations == {1: 2, 2: 2} and kept.teams["eng"].open_overdue == 5
    old = metrics.to_json(first)
    for b in old["boundaries"]:
        for key in ("responses", "escalations", "manual_escalations", "snoozes", "reached_steward", "reached_last"):
            del b[key]
    for t in old["teams"]:
        del t["open_overdue"]
    del old["clocked"]
    legacy = metrics.from_json(old, teams)
    de = legacy.boundaries[("design", "eng")]
    assert (
        de.responses.answered,
        de.responses.median_hours,
        de.escalations,
        de.snoozes,
        legacy.teams["eng"].open_overdue,
    ) == (0, None, {}, 0, 0)
    assert de.side == first.boundaries[("design", "eng")].side


def test_a_month_kept_without_the_configuration_is_completed_with_it(db, cfg8, story):

    start, end = schedule.bounds("2026-11", cfg8.organization.tz)
    teams = [t.id for t in cfg8.teams]
    bare = metrics.figures(
        db, "2026-11", start, end, teams, now=end + metrics.CLOSED_AFTER
    )  # as an initiative's baseline is
    assert bare.teams["eng"].open_overdue == 0 and not bare.clocked
    full = metrics.figures(db, "2026-11", start, end, teams, now=end + metrics.CLOSED_AFTER, cfg=cfg8)
    assert full.teams["eng"].open_overdue == 5 and full.boundaries[("design", "eng")].responses.answered == 6
    with db.read() as s:
        assert s.get(MonthRollup, "2026-11").data["clocked"] is True


def test_hostile_team_names_are_escaped_in_an_inactive_month(db, cfg8, story):
    raw = tomllib.loads(PROCESS.read_text())
    raw["boundaries"][0]["sla_hours"] = 8
    raw["teams"][1]["name"] = "<!channel> Eng & <@U0BOSS>"
    hostile = parse_process(raw)
    # January 2027: nothing happens, yet D, E, F, J, L are still overdue for Engineering, and Q5 for QA
    parts = slack_digest.messages(digest.compose(db, hostile, "2027-01"))
    text = "\n".join(b["text"]["text"] for p in parts for b in p["blocks"] if b["type"] == "section")
    assert "No handoff activity in January 2027" in text
    assert (
        "Still waiting past their deadline at the month's end, by receiving team: &lt;!channel&gt; Eng &amp; &lt;@U0BOSS&gt; 5, Quality 1."
        in text
    )
    assert "<!channel>" not in text and "<@U0BOSS>" not in text
