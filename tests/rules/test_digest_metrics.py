"""The digest's figures on fixed data, counted by hand: each handoff below is written with the moment
of every step, through the same domain functions the Slack handlers call."""

from __future__ import annotations

import json
from datetime import datetime, timedelta

import pytest
from slack_sdk.models.blocks import Block
from sqlalchemy import text

from bot.domain import digest, handoffs, initiatives, metrics
from bot.domain.core import schedule
from bot.domain.core.items import RuleError
from bot.domain.core.process import parse_process
from bot.domain.handoffs import Draft
from handlers import digest as slack_digest
from storage.models import Headcount, MonthRollup
from tests.support.digest import H, hand, month
from tests.support.harness import blocks_text

OCT = datetime(2026, 10, 5, 8)


@pytest.fixture
def october(db, cfg):
    """Design → Eng: four accepted (cycles 1 h, 2 h, 3 h, 10 h; the 3 h and 10 h ones sent back first),
    one still open. Eng → QA: one accepted after a clarification (5 h), one cancelled."""
    hand(db, cfg, OCT, steps=[("accept", 1)])
    hand(db, cfg, OCT, steps=[("accept", 2)])
    hand(db, cfg, OCT, steps=[("rework_requested", 1, "Wireframes missing"), ("resubmit", 1), ("accept", 1)])
    hand(
        db,
        cfg,
        OCT,
        steps=[
            ("rework_requested", 2, "  wireframes   MISSING "),
            ("resubmit", 3),
            ("clarification_requested", 1, "Which glossary?"),
            ("resubmit", 1),
            ("accept", 3),
        ],
    )
    hand(db, cfg, OCT + 24 * H)
    hand(
        db,
        cfg,
        OCT,
        src="eng",
        dst="qa",
        sender="U0BOB",
        reviewer="U0CAROL",
        steps=[("clarification_requested", 1, "Which build?"), ("resubmit", 1), ("accept", 3)],
    )
    cancelled = hand(db, cfg, OCT, src="eng", dst="qa", sender="U0BOB")
    handoffs.cancel(db, cfg, cancelled, "U0BOB", now=OCT + H)


def test_month_figures_match_a_hand_count(db, cfg, october):
    m = month(db, cfg, "2026-10")
    design, eng, qa = m.teams["design"], m.teams["eng"], m.teams["qa"]
    assert (design.sent, design.received, eng.sent, eng.received, qa.received) == (5, 0, 2, 5, 2)
    assert (design.as_sender.accepted, design.as_sender.failed) == (4, 2)
    assert design.as_sender.failure_rate == 0.5
    assert (eng.as_receiver.accepted, eng.as_receiver.failed) == (4, 2)
    assert (eng.as_sender.accepted, eng.as_sender.failed, qa.as_receiver.failure_rate) == (1, 1, 1.0)
    # cycle times 1, 2, 3, 10 h: median 2.5 h; p85 at rank 0.85 × 3 = 2.55 → 3 + 0.55 × 7 = 6.85 h
    assert design.as_sender.cycle[0.5] == pytest.approx(2.5 * 3600, abs=1)
    assert design.as_sender.cycle[0.85] == pytest.approx(6.85 * 3600, abs=1)
    assert eng.as_sender.cycle == pytest.approx({0.5: 5 * 3600, 0.85: 5 * 3600}, abs=1)
    # the organisation: 5 accepted, 3 failed; cycles 1, 2, 3, 5, 10 h
    assert (m.total.created, m.total.side.accepted, m.total.side.failed) == (7, 5, 3)
    assert m.total.side.cycle[0.5] == pytest.approx(3 * 3600, abs=1)
    b = m.boundaries[("design", "eng")]
    assert (b.created, b.side.accepted, b.side.failed) == (5, 4, 2)
    # reasons: the same words in another case and spacing are one reason, first wording kept
    assert design.reasons[("rework_requested", "wireframes missing")] == 2
    assert design.reasons[("clarification_requested", "which glossary?")] == 1
    assert design.sent_back == {"rework_requested": 2, "clarification_requested": 1}
    assert m.wording["wireframes missing"] in ("Wireframes missing", "wireframes MISSING")


def test_a_month_with_nothing(db, cfg, october):
    m = month(db, cfg, "2026-08")
    assert not m.active and m.total.side.failure_rate is None and m.total.side.cycle == {}
    assert all(t.sent == t.received == t.as_sender.accepted == 0 for t in m.teams.values())
    text = slack_digest.preview(slack_digest.messages(digest.compose(db, cfg, "2026-08")))
    assert "No handoff activity in August 2026" in text and "Signals: no warning signs" in text
    # November: nothing new, but October is the month before: the change is stated
    november = slack_digest.preview(slack_digest.messages(digest.compose(db, cfg, "2026-11")))
    assert "No handoff activity in November 2026" in november and "(in Oct 2026: 7 sent, 5 accepted)" in november


def test_months_follow_the_organisations_time_zone(db, cfg):
    # 23:30 UTC on 31 October is 00:30 on 1 November in Berlin
    hand(db, cfg, datetime(2026, 10, 31, 23, 30), steps=[("accept", 1)])
    hand(db, cfg, datetime(2026, 10, 31, 22, 30), steps=[("accept", 0.25)])
    assert month(db, cfg, "2026-10").total.created == 1
    assert month(db, cfg, "2026-11").total.created == 1 and month(db, cfg, "2026-11").total.side.accepted == 1


def test_the_digest_states_figures_changes_and_reasons(db, cfg, october):
    hand(db, cfg, datetime(2026, 9, 10, 8), steps=[("accept", 4)])  # September: one, accepted first time
    d = digest.compose(db, cfg, "2026-10")
    text = slack_digest.preview(slack_digest.messages(d))
    assert "7 handoffs sent across boundaries (+6 vs Sep 2026)" in text
    # September had one accepted handoff, October four or five per side: too few to compare, said plainly
    assert (
        "5 accepted, of which 3 needed another round: handoff failure rate 60% (1 in Sep 2026: too few to compare)"
        in text
    )
    assert (
        "median 3.0 h (1 in Sep 2026: too few to compare), 85th percentile 7.0 h" in text
    )  # p85 of 1,2,3,5,10: rank 3.4 → 5 + 0.4 × 5 = 7
    assert "Design · sent 5 (+4)\n" in text  # received nothing in either month: no row for it
    assert "Failure rate as sender 50% (2 of 4, 4 handoffs: too few to compare)" in text
    assert (
        "Sent back for: rework: “Wireframes missing” ×2; clarification: “Which glossary?” ×1" in text
        or "Sent back for: rework: “wireframes MISSING” ×2; clarification: “Which glossary?” ×1" in text
    )
    assert (
        "Design → Engineering · steward @U0STEW · 5 sent · failure rate 50% (2 of 4, 4 handoffs: too few to compare)"
        in text
    )
    # the first message: the organisation's figures with their direction, samples too small said plainly
    first = slack_digest.preview(slack_digest.messages(d)[:1])
    assert (
        "Cycle time (median, first submission → acceptance): 3.0 h · 1 handoff in Sep 2026: too few to compare" in first
    )
    assert "Handoff failure rate: 60% (3 of 5) · 1 handoff in Sep 2026: too few to compare" in first


def test_signals(db, cfg):

    # Design's median cycle time: 2 h in August, 3 h in September, 6 h in October (five accepted each)
    for period, hours in (("2026-08", 2), ("2026-09", 3), ("2026-10", 6)):
        start = schedule.bounds(period, cfg.organization.tz)[0] + 48 * H
        for _ in range(5):
            hand(db, cfg, start, steps=[("accept", hours)])
    # Engineering → QA in October: 5 accepted, 4 of them sent back once
    for i in range(5):
        steps = [("rework_requested", 1, "No test plan"), ("resubmit", 1), ("accept", 1)] if i < 4 else [("accept", 1)]
        hand(db, cfg, OCT, src="eng", dst="qa", sender="U0BOB", reviewer="U0CAROL", steps=steps)
    d = digest.compose(db, cfg, "2026-10")
    texts = [s.text for s in d.signals]
    assert (
        "Design: cycle time rising for 2 consecutive months (2.0 h → 3.0 h → 6.0 h, median) with headcount not recorded for Aug 2026 and Sep 2026 (2 in Oct 2026)."
        in texts
    )
    assert (
        "Engineering: 80% of its handoffs needed another round (4 of 5), against 0% for the rest of the organisation (0 of 5)."
        in texts
    )
    assert len(texts) == 2

    # recorded and steady: said so; recorded and grown: no signal, the growth explains it
    with db.write() as s:
        for period in ("2026-08", "2026-09", "2026-10"):
            s.add(Headcount(period=period, team="design", members=2))
    assert [s.text for s in digest.compose(db, cfg, "2026-10").signals if s.text.startswith("Design")][0].endswith(
        "with headcount steady at 2."
    )
    with db.write() as s:
        s.get(Headcount, ("2026-10", "design")).members = 4
    assert [s.text for s in digest.compose(db, cfg, "2026-10").signals if s.text.startswith("Design")] == []


def test_initiatives_carry_a_baseline_and_show_how_the_metric_moved(db, cfg, october):
    hand(db, cfg, datetime(2026, 9, 10, 8), steps=[("rework_requested", 1, "x"), ("resubmit", 1), ("accept", 4)])
    hand(db, cfg, datetime(2026, 9, 11, 8), steps=[("accept", 4)])
    row = initiatives.share(
        db,
        cfg,
        "design",
        "2026-10",
        "U0ALICE",
        "  Review  specs <!here> together ",
        "failure_rate_sent",
        "U0AMY",
        now=datetime(2026, 10, 28, 9),
    ).item
    assert (row.text, row.baseline_period, row.baseline) == ("Review specs <!here> together", "2026-09", 0.5)
    d = digest.compose(db, cfg, "2026-10")
    message = json.dumps(slack_digest.messages(d))
    assert "Review specs &lt;!here&gt; together" in message and "<!here>" not in message
    text = slack_digest.preview(slack_digest.messages(d))
    assert "owner @U0AMY · Handoff failure rate (as sender): 50% in Sep 2026 → 50% in Oct 2026" in text
    # shown in later months too, until replaced
    assert "Review specs <!here> together" in slack_digest.preview(
        slack_digest.messages(digest.compose(db, cfg, "2026-12"))
    )
    assert "Initiative: none shared" in text  # Engineering has none


@pytest.mark.parametrize(
    "field,kwargs",
    [
        ("text", {"text": "  "}),
        ("text", {"text": "x" * 301}),
        ("metric", {"metric": "happiness"}),
        ("owner", {"owner": "bob"}),
    ],
)
def test_initiative_input_is_checked(db, cfg, field, kwargs):
    args = {"text": "Do better", "metric": "cycle_time", "owner": "U0ALICE", **kwargs}
    with pytest.raises(RuleError) as exc:
        initiatives.share(db, cfg, "design", "2026-10", "U0ALICE", **args)
    assert exc.value.field == field


def test_only_members_share_an_initiative(db, cfg):
    with pytest.raises(handoffs.NotAllowed, match="Only members of Design"):
        initiatives.share(db, cfg, "design", "2026-10", "U0BOB", "x", "cycle_time", "U0BOB")


def big_org(teams: int) -> dict:
    ids = [f"t{i:03d}" for i in range(teams)]
    return {
        "organization": {"name": "Mega <!channel> & Co", "digest_channel": "C0SYNC"},
        "teams": [
            {"id": t, "name": f"Team {t} <@U0EVIL>", "channel": f"C0{t.upper()}", "members": ["U0ALICE"]} for t in ids
        ],
        "boundaries": [
            {"from": ids[i], "to": ids[(i + k) % teams], "steward": "U0STEW", "criteria": ["Spec"]}
            for i in range(teams)
            for k in (1, 2)
        ],
    }


def test_block_limits_with_many_teams(db):
    cfg = parse_process(big_org(120))
    long_reason = "<!channel> " + "very long reason " * 55
    for i, team in enumerate(cfg.teams):
        nxt = cfg.teams[(i + 1) % len(cfg.teams)]
        h = handoffs.create(db, cfg, "U0ALICE", Draft(team.id, nxt.id, "t", criteria_met=["Spec"]), now=OCT)
        handoffs.send_back(db, cfg, h.id, "U0STEW", "rework_requested", f"{long_reason} {i % 4}", now=OCT + H)
        handoffs.resubmit(db, cfg, h.id, "U0ALICE", ["Spec"], None, None, now=OCT + 2 * H)
        handoffs.accept(db, cfg, h.id, "U0STEW", now=OCT + 3 * H)  # the steward: nobody reviews their own
    parts = slack_digest.messages(digest.compose(db, cfg, "2026-10"))
    assert len(parts) >= 6 and len(parts[0]["blocks"]) <= 12  # 120 teams and 120 busy boundaries fill five replies
    assert "*Boundaries* (120 of 240: the others had no handoffs)" in "".join(blocks_text(p) for p in parts)
    for part in parts:
        assert len(part["blocks"]) <= 50 and len(part["text"]) <= 4000
        for block in part["blocks"]:
            Block.parse(block).validate_json()  # raises where Slack would answer invalid_blocks
            if block["type"] == "section":
                assert len(block["text"]["text"]) <= 3000
    everything = "\n".join(blocks_text(p) for p in parts)
    assert "<!channel>" not in everything and "<@U0EVIL>" not in everything and "&lt;@U0EVIL&gt;" in everything
    assert "Team t119" in everything and "Part 1 of" in everything


def test_a_closed_months_figures_are_kept_and_an_open_months_are_not(db, cfg, october):

    start, end = schedule.bounds("2026-10", cfg.organization.tz)
    teams = [t.id for t in cfg.teams]
    first = metrics.figures(db, "2026-10", start, end, teams, now=end + timedelta(hours=2))
    with db.read() as s:
        assert s.get(MonthRollup, "2026-10") is not None
    with db.write() as s:  # were the events to change (they never do), the kept figures would still be read
        s.execute(text("DELETE FROM handoff_event WHERE kind = 'accepted'"))
    kept = metrics.figures(db, "2026-10", start, end, teams + ["newteam"], now=end + timedelta(days=30))
    assert metrics.to_json(kept)["boundaries"] == metrics.to_json(first)["boundaries"]
    assert kept.teams["design"].as_sender == first.teams["design"].as_sender and kept.teams["newteam"].sent == 0
    assert kept.wording == first.wording and kept.teams["design"].reasons == first.teams["design"].reasons
    # a month not yet closed (less than an hour after its end) is computed every time, never kept
    assert (
        metrics.figures(
            db,
            "2026-11",
            *schedule.bounds("2026-11", cfg.organization.tz),
            teams,
            now=schedule.bounds("2026-11", cfg.organization.tz)[1] + timedelta(minutes=59),
        )
        is not None
    )
    with db.read() as s:
        assert s.get(MonthRollup, "2026-11") is None
