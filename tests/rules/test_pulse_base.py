"""The pulse's base: everyone asked counts, paused or stopped before the survey went out, in every count
shown ("surveys sent", the response rate), so an opt-out is never readable by subtraction. Rules, called
directly."""

from __future__ import annotations

from datetime import datetime, timedelta

from sqlmodel import select

from bot.domain import pulse
from storage.models import Outbox, PulseRecipient
from tests.support.anonymity import SECRET, config

MONDAY = datetime(2026, 11, 2)  # the week closes Saturday 7 November: it counts in November
WEEK = pulse.week_id(MONDAY.date())


def test_someone_who_stopped_before_the_survey_is_still_in_surveys_sent(db):
    """An organisation of 10 in which one person stopped and everyone else answered reads 90%, not 100%."""
    cfg = config({"design": 5, "eng": 5})
    sealer = pulse.Sealer(SECRET)
    pulse.stop(db, "U0ENG0", None, MONDAY - timedelta(days=3))
    sent = pulse.send_due(db, cfg, MONDAY + timedelta(hours=11), {})
    assert (sent.asked, sent.paused) == (9, 1)
    with db.read() as session:
        rows = {r.user: r for r in session.exec(select(PulseRecipient))}
        dms = {o.channel for o in session.exec(select(Outbox)) if o.render == "pulse_dm"}
    assert len(rows) == 10 and rows["U0ENG0"].opted_out and "U0ENG0" not in dms  # in the base, no DM
    for user in pulse.members(cfg):
        if user != "U0ENG0":
            pulse.answer(db, sealer, user, WEEK, MONDAY + timedelta(hours=12), score=4)
    s = pulse.figures(db, cfg, sealer, "2026-11", pulse.final_at(cfg.pulse, "2026-11"))
    assert s.org is not None and (s.org.answered, s.org.asked) == (9, 10) and s.org.rate == 0.9
    # eng (4 of 5 answered) is held back, and so is design (the organisation minus design would be eng's 4)
    assert s.teams == {"design": None, "eng": None}


def test_paused_people_count_in_every_team_they_belong_to(db):
    """A team of 6 over four weeks, one person paused throughout: 24 surveys counted, not 20."""
    cfg = config({"design": 6, "eng": 6})
    sealer = pulse.Sealer(SECRET)
    pulse.pause(db, "U0DESIGN0", None, MONDAY - timedelta(days=1), days=60)
    weeks = []
    for n in range(4):
        monday = MONDAY + timedelta(days=7 * n)
        weeks.append(pulse.week_id(monday.date()))
        pulse.send_due(db, cfg, monday + timedelta(hours=11), {})
        for user in pulse.members(cfg):
            if user != "U0DESIGN0":
                pulse.answer(db, sealer, user, weeks[-1], monday + timedelta(hours=12), score=3)
    s = pulse.figures(db, cfg, sealer, "2026-11", pulse.final_at(cfg.pulse, "2026-11"))
    assert s.weeks == weeks
    assert s.org.asked == 48 and s.org.answered == 44
    design = s.teams["design"]
    assert design is None or (design.asked, design.answered) == (24, 20)


def test_resuming_mid_week_sends_the_week_survey_then(db):
    cfg = config({"design": 6})
    pulse.pause(db, "U0DESIGN1", None, MONDAY - timedelta(days=1))
    pulse.send_due(db, cfg, MONDAY + timedelta(hours=11), {})
    with db.read() as session:
        assert session.exec(select(Outbox).where(Outbox.key == pulse.dm_key(WEEK, "U0DESIGN1"))).first() is None
    outcome = pulse.resume(db, "U0DESIGN1", None, MONDAY + timedelta(days=1))
    assert pulse.dm_key(WEEK, "U0DESIGN1") in outcome.keys
    with db.read() as session:
        row = session.get(PulseRecipient, (WEEK, "U0DESIGN1"))
    assert not row.opted_out
    # and they can answer it
    pulse.answer(db, pulse.Sealer(SECRET), "U0DESIGN1", WEEK, MONDAY + timedelta(days=1, hours=1), score=5)


def test_a_paused_person_gets_no_reminder(db):
    cfg = config({"design": 6})
    pulse.pause(db, "U0DESIGN1", None, MONDAY - timedelta(days=1))
    pulse.send_due(db, cfg, MONDAY + timedelta(hours=11), {})
    keys = pulse.remind_due(db, cfg, MONDAY + timedelta(days=3))
    assert len(keys) == 5 and not any("U0DESIGN1" in k for k in keys)
