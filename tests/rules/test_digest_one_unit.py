"""The digest as its readers see it, by its rendered messages: a team's cycle time in one unit wherever
it appears (the first message's highlights, the thread's line, its initiative), and an empty month's first
message promising only what its thread holds. The history is written through the domain functions the
Slack handlers call."""

from __future__ import annotations

import re
from datetime import datetime, timedelta

from bot.domain import digest, handoffs, initiatives
from bot.domain.handoffs import Draft
from handlers.digest import messages, preview
from tests.support.harness import blocks_text

H = timedelta(hours=1)
SPEC = ["Specification with acceptance criteria", "Wireframes", "Glossary of terms"]


def accepted(db, cfg, start: datetime, *hours: float) -> None:
    """Design → Engineering handoffs sent at `start`, each accepted after its number of hours."""
    for n, h in enumerate(hours):
        row = handoffs.create(db, cfg, "U0ALICE", Draft("design", "eng", f"Work {n}", criteria_met=SPEC), now=start)
        handoffs.accept(db, cfg, row.id, "U0BOB", now=start + h * H)


def first_and_thread(db, cfg, period: str) -> tuple[str, str]:
    parts = messages(digest.compose(db, cfg, period, datetime(2026, 11, 20)))
    return blocks_text(parts[0]), "\n\n".join(
        b["text"]["text"] for p in parts[1:] for b in p["blocks"] if b["type"] == "section"
    )


def design_line(thread: str) -> str:
    """Design's section in the thread."""
    return next(section for section in thread.split("\n\n") if section.startswith("*Design*"))


def test_a_big_change_in_the_first_message_is_in_the_unit_of_the_teams_line_in_the_thread(db, cfg):
    """Design's median falls from 40 h to 14 h (a big change, highlighted in the first message), but its
    85th percentile is over 48 h: the thread's line is in days, and so must the highlight be."""
    accepted(db, cfg, datetime(2026, 9, 7, 8), 40, 40, 40, 40, 40)
    accepted(db, cfg, datetime(2026, 10, 5, 8), 10, 12, 14, 20, 100)
    first, thread = first_and_thread(db, cfg, "2026-10")
    line = design_line(thread)
    assert "Cycle time of handoffs sent: median 0.6 d (−1.1 d), p85" in line and line.split("p85 ")[1].startswith(
        ("2.", "3.")
    )
    assert "Design: cycle time of handoffs sent ↓ 0.6 d from 1.7 d in Sep 2026 (median of 5): better." in first
    # the organisation's figure and the boundary's line (the same handoffs) agree: no cycle time in hours
    assert "*Cycle time (median, first submission → acceptance)*: *0.6 d* ↓ from 1.7 d in Sep 2026" in first
    assert "· cycle time median 0.6 d" in thread
    assert not re.search(r"\d h\b", first + thread), first + thread


def test_a_rising_cycle_time_signal_and_the_thread_give_the_same_median_in_one_unit(db, cfg):
    """Medians of 10 h, 14 h and 20 h: a rising trail; this month's 85th percentile is 100 h, so the
    team's line is in days: the signal's trail (in the first message and the thread) too."""
    accepted(db, cfg, datetime(2026, 8, 3, 8), 10, 10, 10, 10, 10)
    accepted(db, cfg, datetime(2026, 9, 7, 8), 14, 14, 14, 14, 14)
    accepted(db, cfg, datetime(2026, 10, 5, 8), 20, 20, 20, 100, 100)
    first, thread = first_and_thread(db, cfg, "2026-10")
    trail = "Design: cycle time rising for 2 consecutive months (0.4 d → 0.6 d → 0.8 d, median)"
    assert trail in first and trail in thread
    assert "median 0.8 d (+0.2 d), p85" in design_line(thread)


def test_an_initiatives_figures_are_in_the_unit_of_its_teams_line(db, cfg):
    """The initiative's figure now is the team's median: the same number, the same unit (it was 40.0 h
    → 14.0 h, one line above "median 0.6 d")."""
    accepted(db, cfg, datetime(2026, 9, 7, 8), 40, 40, 40, 40, 40)
    accepted(db, cfg, datetime(2026, 10, 5, 8), 10, 12, 14, 20, 100)
    initiatives.share(
        db,
        cfg,
        "design",
        "2026-10",
        "U0ALICE",
        "Walk through the spec",
        "cycle_time",
        "U0ALICE",
        now=datetime(2026, 10, 2),
    )
    _, thread = first_and_thread(db, cfg, "2026-10")
    line = design_line(thread)
    assert "median 0.6 d" in line and "1.7 d in Sep 2026 → 0.6 d in Oct 2026" in line, line


def test_an_empty_month_with_overdue_handoffs_promises_the_teams_it_shows(db, cfg):
    """Nothing happened in October, but two handoffs of September are overdue: the thread has a team's row
    (under its heading), and the first message says so, and promises nothing else but the chart."""
    for n in range(2):
        handoffs.create(
            db, cfg, "U0ALICE", Draft("design", "eng", f"Old {n}", criteria_met=SPEC), now=datetime(2026, 9, 10, 9)
        )
    d = digest.compose(db, cfg, "2026-10", datetime(2026, 11, 20))
    parts = messages(d)
    first, thread = blocks_text(parts[0]), preview(parts[1:2])
    assert "*No handoff activity in October 2026.*" in first
    assert "In the thread: the teams with handoffs overdue and the trend chart." in first
    assert "\nTeams\n\nEngineering · received 0 (−2) · 2 received overdue at the month's end" in thread


def test_signals_without_handoffs_behind_them_promise_no_handoffs(db, cfg):
    """A signal with no handoffs behind it (a fast-track budget overrun, a satisfaction signal) does not
    make the first message promise "the handoffs behind each signal"."""
    d = digest.compose(db, cfg, "2026-10", datetime(2026, 11, 20))
    d.signals = [digest.Signal("Engineering is over budget.", rank=4, team="eng")]
    d.highlights = list(d.signals)
    first = blocks_text(messages(d)[0])
    assert "handoffs behind" not in first and "In the thread: the trend chart." in first
    d.signals.append(digest.Signal("Design: slow.", rank=2, team="design", links=[(7, "Work", None)]))
    first = blocks_text(messages(d)[0])
    assert "the handoffs behind 1 of the 2 signals" in first
    d.signals = d.signals[1:]
    assert "the handoffs behind each signal" in blocks_text(messages(d)[0])
