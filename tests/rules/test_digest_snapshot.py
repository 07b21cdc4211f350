"""The digest as a reader gets it, on fixed data: the first message is the month in at most 12 blocks
(the organisation's figures with their direction, at most five highlights each naming who acts, nobody
else mentioned), valid Block Kit, one unit per line, no rows for nothing; the thread links each signal to
the handoffs behind it through their cards' permalinks; the chart's legend stays off the data at 360 px."""

from __future__ import annotations

import json
import os
import re
import tomllib
from datetime import timedelta

import matplotlib.pyplot as plt
import pytest
from slack_sdk.models.blocks import Block
from sqlmodel import select

from bot.domain import digest, handoffs
from bot.domain.core import schedule
from bot.domain.core.process import parse_process
from handlers import digest as slack_digest
from storage.models import Handoff
from tests.support.data import PROCESS, SNAPSHOTS
from tests.support.digest import hand
from tests.support.handoffs import send, steward_db
from tests.support.harness import blocks_text

SNAPSHOT = SNAPSHOTS / "digest-2026-10-first.json"
H = timedelta(hours=1)


@pytest.fixture
def led():
    """The test organisation with leads: Design's is U0AMY, Engineering's U0BOB; Quality has none."""
    raw = tomllib.loads(PROCESS.read_text())
    raw["teams"][0]["lead"] = "U0AMY"
    raw["teams"][1]["lead"] = "U0BOB"
    return parse_process(raw)


def story(db, cfg) -> None:
    """September and October. Design → Eng: 6 a month; Design's median rises 2 h → 3 h → 6 h (Aug–Oct)
    and in October 4 of its 6 need another round. Eng → QA: 6 a month, 3 h in September, 1.5 h in October,
    none sent back."""
    for period, hours in (("2026-08", 2), ("2026-09", 3), ("2026-10", 6)):
        start = schedule.bounds(period, cfg.organization.tz)[0] + 48 * H
        for i in range(6):
            back = period == "2026-10" and i < 4
            steps = (
                [
                    ("rework_requested", 1, "Wireframes missing" if i % 2 else "wireframes  MISSING"),
                    ("resubmit", 1),
                    ("accept", hours - 2),
                ]
                if back
                else [("accept", hours)]
            )
            hand(db, cfg, start + i * H, steps=steps, title=f"Spec {period} {i}")
    for period, hours in (("2026-09", 3), ("2026-10", 1.5)):
        start = schedule.bounds(period, cfg.organization.tz)[0] + 72 * H
        for i in range(6):
            hand(
                db,
                cfg,
                start + i * H,
                src="eng",
                dst="qa",
                sender="U0BOB",
                reviewer="U0CAROL",
                steps=[("accept", hours)],
                title=f"Build {period} {i}",
            )


def first_message(db, cfg) -> tuple[dict, list[dict], digest.Digest]:
    d = digest.compose(db, cfg, "2026-10")
    parts = slack_digest.messages(d)
    return parts[0], parts, d


MENTION = re.compile(r"<(@|#|!)([^>|]+)(?:\|[^>]*)?>")
DURATION = re.compile(r"\d+\.\d (h|d)(?![a-z])")


def test_the_first_message_is_the_month_in_at_most_12_blocks_and_names_who_acts(db, led):
    story(db, led)
    first, parts, d = first_message(db, led)
    assert len(first["blocks"]) <= 12
    for part in parts:
        assert len(part["blocks"]) <= 50 and len(part["text"]) <= 4000
        for block in part["blocks"]:
            Block.parse(block).validate_json()  # raises where Slack would answer invalid_blocks
    text = blocks_text(first)
    # the organisation's figures, with the direction and whether it is good
    assert (
        "*Cycle time (median, first submission → acceptance)*: *" in text
        and "*Handoff failure rate*: *33%* (4 of 12) ↑ from 0% in Sep 2026: worse" in text
    )
    # highlights: the signals first, then the biggest changes; each names who acts
    highlights = [
        b["text"]["text"] for b in first["blocks"] if b["type"] == "section" and "Who acts:" in b["text"]["text"]
    ]
    assert 1 <= len(highlights) <= 5 and len(highlights) == len(d.highlights)
    assert [h.kind for h in d.highlights] == sorted((h.kind for h in d.highlights), key=lambda k: k != "signal")
    assert highlights[0].startswith(":warning: Design: 67% of its handoffs needed another round (4 of 6)")
    assert "Who acts: <@U0AMY> (Design's lead)" in highlights[0]
    assert any(
        h.startswith(":white_check_mark: Engineering: cycle time of handoffs sent ↓ 1.5 h from 3.0 h in Sep 2026")
        and "Who acts: <@U0BOB> (Engineering's lead)" in h
        for h in highlights
    )
    for h in highlights:
        assert re.search(r"Who acts: (<@U[A-Z0-9]+>|<#C[A-Z0-9]+>)", h), h
    # nobody but the highlights' owners is mentioned in the first message: no member, no group, no @channel
    owners = {p for h in d.highlights for p in h.people} | {h.channel for h in d.highlights if h.channel}
    mentioned = {m.group(2) for m in MENTION.finditer(json.dumps(first["blocks"]))}
    assert mentioned <= owners and not any(
        m.group(1) == "!" and not m.group(2).startswith("date") for m in MENTION.finditer(json.dumps(first))
    )
    assert "Definitions: README, section “The monthly digest”." in text


def test_units_are_consistent_and_there_are_no_rows_for_nothing(db, led):
    story(db, led)
    _, parts, _ = first_message(db, led)
    everything = "\n".join(blocks_text(p) for p in parts)
    for line in everything.splitlines():
        units = {m.group(1) for m in DURATION.finditer(line)}
        assert len(units) <= 1, line  # a line (a series) never switches from hours to days
    for nothing in ("(0 of 0", "– (", "received 0 (±0)", "sent 0 (±0)", "of 0 items", "approved of 0"):
        assert nothing not in everything, nothing


def test_the_first_message_matches_its_snapshot(db, led):
    """The first message for fixed data, byte for byte. Set UPDATE_SNAPSHOTS=1 to write it again after a
    deliberate change, and read the diff."""
    story(db, led)
    first, _, _ = first_message(db, led)
    got = json.dumps(first, indent=1, ensure_ascii=False, sort_keys=True) + "\n"
    if os.environ.get("UPDATE_SNAPSHOTS"):
        SNAPSHOT.write_text(got, encoding="utf-8")
    assert got == SNAPSHOT.read_text(encoding="utf-8")


def test_each_signal_links_the_handoffs_behind_it(db, led):
    story(db, led)
    with db.read() as s:
        failed = [h for h in s.exec(select(Handoff).order_by(Handoff.id)) if h.from_team == "design" and h.round > 1]
    for h in failed[:2]:
        handoffs.record_permalink(db, h.id, f"https://acme.slack.com/archives/C0ENG/p{1700000000000000 + h.id}")
    _, parts, d = first_message(db, led)
    (signal,) = [s for s in d.signals if s.metric == "failure_rate"]
    assert sorted(i for i, _, _ in signal.links) == sorted(h.id for h in failed)
    thread = "\n".join(blocks_text(p) for p in parts[1:])
    h = failed[0]
    assert (
        f"Handoffs behind it: <https://acme.slack.com/archives/C0ENG/p{1700000000000000 + h.id}|#{h.id} {h.title}>"
        in thread
    )
    assert f"#{failed[3].id} {failed[3].title}" in thread  # no permalink stored: named, not linked


def test_a_cards_permalink_is_stored_when_it_is_posted(steward, fake, db):
    h = send(steward, fake, title="Checkout spec")
    (asked,) = fake.wait("chat.getPermalink")
    fake.settle(quiet=0.2)
    with steward_db(steward).read() as s:
        row = s.get(Handoff, h.id)
    assert asked.args["channel"] == row.channel == "C0ENG" and asked.args["message_ts"] == row.message_ts
    assert row.permalink == f"https://acme.slack.com/archives/C0ENG/p{row.message_ts.replace('.', '')}"


def test_the_chart_keeps_its_legend_off_the_data_at_360_px(db, led):
    story(db, led)
    d = digest.compose(db, led, "2026-10")
    fig = digest.chart_figure(d, dpi=360 / digest.CHART_WIDTH_IN)
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    width, height = fig.canvas.get_width_height()
    assert width == 360
    (legend,) = fig.legends
    box = legend.get_window_extent(renderer)
    assert 0 <= box.x0 and box.x1 <= width and 0 <= box.y0 and box.y1 <= height  # not cut off
    labels = [t.get_text() for t in legend.get_texts()]
    assert "Organisation" in labels and "Design" in labels and "Engineering" in labels
    assert all(t.get_fontsize() * fig.dpi / 72 >= 9 for t in legend.get_texts())  # at least 9 px tall at 360 px wide
    assert "Handoffs sent per team" in fig._suptitle.get_text()
    for ax in fig.axes:
        assert not box.overlaps(ax.get_window_extent(renderer))  # outside both panels
        for line in ax.get_lines():
            points = ax.transData.transform(line.get_xydata())
            assert not any(box.contains(x, y) for x, y in points if x == x and y == y)
        sizes = [s for c in ax.collections for s in c.get_sizes()]
        assert len(set(sizes)) > 1  # markers show the sample size

    plt.close(fig)
