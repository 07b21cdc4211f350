"""The initiative prompt through Slack: it shows the team's own figures and, when the team already has an
initiative, asks whether it continues, with how its metric moved; *It continues* keeps it (and its baseline)."""

from __future__ import annotations

import json
from datetime import datetime, timedelta

from sqlmodel import select

from bot.domain import initiatives
from bot.domain.core import schedule
from storage.models import Initiative
from tests.support.clock import env
from tests.support.digest import hand
from tests.support.handoffs import fresh
from tests.support.harness import blocks_text, cli


def test_the_prompt_shows_the_teams_figures_and_asks_whether_its_initiative_continues(steward, fake, db, cfg):
    # Design: September 5 accepted at 4 h, one of them sent back; October 5 accepted at 2 h, none sent back
    for period, hours in (("2026-09", 4), ("2026-10", 2)):
        start = schedule.bounds(period, cfg.organization.tz)[0] + timedelta(days=4)
        for i in range(5):
            steps = (
                [("rework_requested", 1, "x"), ("resubmit", 1), ("accept", hours - 2)]
                if period == "2026-09" and i == 0
                else [("accept", hours)]
            )
            hand(db, cfg, start, steps=steps)
    shared = initiatives.share(
        db,
        cfg,
        "design",
        "2026-10",
        "U0ALICE",
        "Review specs together",
        "cycle_time",
        "U0AMY",
        now=datetime(2026, 10, 2, 9),
    ).item
    assert shared.baseline_period == "2026-09" and round(shared.baseline) == 4 * 3600

    r = cli("run-job", "initiative-prompt", "--month", "2026-11", env=env(db, fake))
    assert r.returncode == 0, r.stdout + r.stderr
    (prompt,) = [c for c in fake.of("chat.postMessage") if c.args["channel"] == "C0DESIGN"]
    text = blocks_text(prompt.args)
    assert "*Your figures in Oct 2026*, handoffs you sent:" in text
    assert "Cycle time (median, handoffs sent): *2.0 h* ↓ from 4.0 h in Sep 2026: better" in text
    assert "Failure rate (as sender): *0%* (0 of 5) ↓ from 20% in Sep 2026: better" in text
    assert ":arrows_counterclockwise: *Your initiative since Oct 2026*: “Review specs together”, owner <@U0AMY>" in text
    assert "Cycle time (median, handoffs sent): 4.0 h in Sep 2026 → 2.0 h in Oct 2026." in text
    assert "Does it continue for November 2026, or does the team take on a new one?" in text
    buttons = json.loads(json.dumps(prompt.args["blocks"]))[-1]["elements"]
    assert [(b["action_id"], b["text"]["text"]) for b in buttons] == [
        ("initiative_continue", "It continues"),
        ("initiative_share", "Share a new one"),
    ]
    # Quality has no initiative: asked as before, with its (empty) figures said plainly
    (qa,) = [c for c in fake.of("chat.postMessage") if c.args["channel"] == "C0QA"]
    assert "Share our improvement initiative" in json.dumps(
        qa.args["blocks"]
    ) and "no handoffs this month" in blocks_text(qa.args)

    fresh(fake)
    steward.click("U0BOB", "initiative_continue", "design 2026-11", channel="C0DESIGN")
    assert "Only members of Design" in blocks_text(fake.wait("chat.postEphemeral")[0].args)
    steward.click("U0ALICE", "initiative_continue", "design 2026-11", channel="C0DESIGN")
    update = fake.wait("chat.update")[0]
    assert "Shared by <@U0ALICE>: “Review specs together”" in blocks_text(
        update.args
    ) and "It continues" not in json.dumps(update.args["blocks"])
    with db.read() as s:
        rows = s.exec(select(Initiative).where(Initiative.team == "design").order_by(Initiative.id)).all()
    assert [(r.period, r.text, r.baseline_period, round(r.baseline)) for r in rows] == [
        ("2026-10", "Review specs together", "2026-09", 4 * 3600),
        ("2026-11", "Review specs together", "2026-09", 4 * 3600),
    ]
