"""A closed month's published satisfaction is frozen at close, with the groups it was protected against, and
never recomputed under another configuration (issue: dropping a team from `pulse.teams` and re-reading a
closed month isolated one person). Rules, called directly; the CLI's `digest --month` reads the same."""

from __future__ import annotations

from datetime import datetime, timedelta

from bot.domain import pulse
from storage.models import PulseMonth
from tests.support.anonymity import SECRET, config

MONDAY = datetime(2026, 6, 1)  # June 2026: weeks of 1, 8, 15 and 22 June close in June


def only(cfg, teams: list[str]):
    return cfg.model_copy(update={"pulse": cfg.pulse.model_copy(update={"teams": tuple(teams)})})


def month(db, cfg, sealer):
    for n in range(4):
        monday = MONDAY + timedelta(days=7 * n)
        week = pulse.week_id(monday.date())
        pulse.send_due(db, cfg, monday + timedelta(hours=11), {})
        for user in pulse.members(cfg):
            pulse.answer(db, sealer, user, week, monday + timedelta(hours=12), score=1 if user == "U0BOB" else 4)


def test_a_closed_month_reads_the_same_after_a_team_leaves_the_pulse(db):
    """Bob in Design and Engineering: June shows Design and holds Engineering back. After Design leaves
    `pulse.teams`, a recomputation would show Engineering, and Design + Engineering − organisation is Bob."""
    cfg = config({"design": 15, "eng": 11}, shared={"U0BOB": ["design", "eng"]})
    sealer = pulse.Sealer(SECRET)
    month(db, cfg, sealer)
    at = pulse.final_at(cfg.pulse, "2026-06")
    first = pulse.figures(db, cfg, sealer, "2026-06", at)
    assert first.teams["design"] is not None and first.teams["eng"] is None and first.org is not None
    with db.read() as session:
        frozen = session.get(PulseMonth, "2026-06")
    assert frozen.groups["eng"] == sorted([*(f"U0ENG{i}" for i in range(11)), "U0BOB"])
    assert len(frozen.groups[pulse.ORG]) == 27
    for later in (only(cfg, ["eng"]), only(cfg, ["design"]), cfg):
        again = pulse.figures(db, later, sealer, "2026-06", at + timedelta(days=40))
        assert again == first  # the same figures, the same groups held back, whatever the configuration
    # what a recomputation would have published (and so what the freeze prevents): Engineering shown too
    rows = pulse.recipients(db, pulse.weeks_of(cfg.pulse, "2026-06"))
    recomputed, _ = pulse._compute(db, only(cfg, ["eng"]), sealer, "2026-06", first.weeks, rows)
    assert recomputed.teams["eng"] is not None
    bob = first.teams["design"].average * 64 + recomputed.teams["eng"].average * 48 - first.org.average * 108
    assert round(bob / 4, 6) == 1.0  # Bob's four scores, isolated: what must never be shown


def test_a_month_is_not_frozen_before_it_is_final(db):
    cfg = config({"design": 6})
    sealer = pulse.Sealer(SECRET)
    month(db, cfg, sealer)
    assert pulse.figures(db, cfg, sealer, "2026-06", datetime(2026, 6, 29)) is None
    with db.read() as session:
        assert session.get(PulseMonth, "2026-06") is None
    assert pulse.figures(db, cfg, sealer, "2026-06", pulse.final_at(cfg.pulse, "2026-06")) is not None


def test_the_clock_freezes_a_month_as_it_ends_before_the_configuration_changes(db):
    """The pulse job freezes the month that ended as soon as it is final: a configuration edited the next
    morning, before any digest or Home read June, changes nothing of what June shows."""
    cfg = config({"design": 15, "eng": 11}, shared={"U0BOB": ["design", "eng"]})
    sealer = pulse.Sealer(SECRET)
    month(db, cfg, sealer)
    end = pulse.final_at(cfg.pulse, "2026-06")
    assert (
        pulse.freeze_closed(db, cfg, sealer, end - timedelta(minutes=1)) is None
    )  # May is "last month"; June not over
    assert pulse.freeze_closed(db, cfg, sealer, end + timedelta(minutes=5)) == "2026-06"
    later = only(cfg, ["eng"])  # Design left the pulse after June ended
    june = pulse.figures(db, later, sealer, "2026-06", end + timedelta(days=1))
    assert june.teams["design"] is not None and june.teams["eng"] is None
    assert pulse.freeze_closed(db, cfg, None, end + timedelta(minutes=5)) is None  # no secret: nothing to read
