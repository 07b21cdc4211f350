"""Send-back reasons are grouped by exactly the README's rule (white space collapsed and trimmed, case
ignored, nothing else), the digest says how many it shows of how many, and ties go in a stated order."""

from __future__ import annotations

from datetime import datetime, timedelta

from bot.domain import digest, metrics
from bot.domain.core import schedule
from handlers import digest as slack_digest
from storage.models import MonthRollup
from tests.support.digest import hand, month
from tests.support.harness import blocks_text

OCT = datetime(2026, 10, 5, 8)


def back(db, cfg, reason: str, kind: str = "rework_requested") -> None:
    hand(db, cfg, OCT, steps=[(kind, 1, reason)])


def test_reasons_are_grouped_by_the_readmes_rule_and_no_further(db, cfg):
    for reason in ("Wireframes missing", "  wireframes   MISSING ", "Wireframes missing.", "Wireframes missing!"):
        back(db, cfg, reason)
    m = month(db, cfg, "2026-10")
    design = m.teams["design"]
    # case and spacing merge; a trailing "." or "!" is part of the wording: three reasons, not one
    assert design.reasons == {
        ("rework_requested", "wireframes missing"): 2,
        ("rework_requested", "wireframes missing."): 1,
        ("rework_requested", "wireframes missing!"): 1,
    }
    assert m.wording["wireframes missing"] == "Wireframes missing"  # the spelling first in code point order ("W" < "w")


def test_the_digest_shows_the_three_most_frequent_of_how_many_with_ties_in_a_stated_order(db, cfg):
    back(db, cfg, "b reason")
    back(db, cfg, "a reason")
    back(db, cfg, "c reason", kind="clarification_requested")
    back(db, cfg, "d reason")
    back(db, cfg, "e reason")
    back(db, cfg, "e reason")
    d = digest.compose(db, cfg, "2026-10")
    design = next(t for t in d.teams if t.id == "design")
    # "e" twice first; then the ties at one: clarification before rework, then the wording in code point order
    assert design.reasons == ["rework: “e reason” ×2", "clarification: “c reason” ×1", "rework: “a reason” ×1"]
    assert design.reasons_total == 5
    text = "\n".join(blocks_text(p) for p in slack_digest.messages(d))
    assert (
        "Sent back for (the 3 most frequent of 5 reasons): rework: “e reason” ×2; clarification: “c reason” ×1; rework: “a reason” ×1"
        in text
    )


def test_a_month_kept_under_the_older_rule_is_computed_again(db, cfg):
    back(db, cfg, "Wireframes missing.")
    back(db, cfg, "Wireframes missing")
    start, end = schedule.bounds("2026-10", cfg.organization.tz)
    teams = [t.id for t in cfg.teams]
    kept = metrics.figures(db, "2026-10", start, end, teams, now=end + timedelta(days=2))
    old = metrics.to_json(kept)
    del old["version"]
    for row in old["teams"]:  # as the old rule grouped them: the "." dropped, one reason
        if row["team"] == "design":
            row["reasons"] = [["rework_requested", "wireframes missing", 2]]
    with db.write() as s:
        s.get(MonthRollup, "2026-10").data = old
    again = metrics.figures(db, "2026-10", start, end, teams, now=end + timedelta(days=3))
    assert again.teams["design"].reasons == {
        ("rework_requested", "wireframes missing"): 1,
        ("rework_requested", "wireframes missing."): 1,
    }
    with db.read() as s:
        assert s.get(MonthRollup, "2026-10").data["version"] == metrics.ROLLUP_VERSION
