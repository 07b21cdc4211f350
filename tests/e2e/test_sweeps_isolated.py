"""Working-time waits bounded by what the arithmetic can count, and sweeps where one bad row never stops the
others (issue #18 §2): the configuration check, the rule, the escalation sweep, and the clock's catch-up."""

from __future__ import annotations

import tomllib
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import update

from bot.domain import escalations, handoffs, sla
from bot.domain.core.process import SNOOZES, ProcessConfigError, parse_process
from bot.domain.core.worktime import WorkTime
from bot.domain.handoffs import Draft
from storage.models import Handoff
from tests.support.data import PROCESS
from tests.support.harness import TOKEN, cli

BERLIN = ZoneInfo("Europe/Berlin")


def at(*args) -> datetime:
    return datetime(*args, tzinfo=BERLIN).astimezone(UTC).replace(tzinfo=None)


def raw() -> dict:
    return tomllib.loads(PROCESS.read_text())


def test_check_config_refuses_a_wait_the_working_time_cannot_count(tmp_path):
    text = PROCESS.read_text().replace("[organization]\n", '[organization]\nescalation_contact = "U0STEW"\n', 1)
    path = tmp_path / "process.toml"
    # the contact at three times the SLA: 6,480 working hours
    path.write_text(text.replace("sla_hours = 48", "sla_hours = 2160", 1))
    r = cli("check-config", "--file", str(path))
    assert r.returncode == 2, r.stdout + r.stderr  # an invalid configuration
    assert "boundaries[0]: its longest wait, 6496 working hours" in r.stdout + r.stderr
    assert "Traceback" not in r.stdout + r.stderr
    path.write_text(text.replace("sla_hours = 48", "sla_hours = 1500", 1))  # 4,516 working hours: fits
    r = cli("check-config", "--file", str(path))
    assert r.returncode == 0, r.stdout + r.stderr


def test_holidays_that_leave_no_working_time_are_refused():
    data = raw()
    data["organization"]["working_days"] = ["mon"]
    data["organization"]["holidays"] = [date(2026, 1, 5) + timedelta(weeks=n) for n in range(160)]
    with pytest.raises(ProcessConfigError) as refused:
        parse_process(data)
    assert "organization.holidays: they leave no working time in the next three years" in refused.value.problems


@pytest.mark.parametrize(
    "tz,days,hours,holidays",
    [
        ("Europe/Berlin", ("mon", "tue", "wed", "thu", "fri"), ("09:00", "17:00"), ()),
        ("Europe/Berlin", ("sat",), ("00:00", "24:00"), ()),  # a whole day: the clock change falls inside it
        (
            "Australia/Sydney",
            ("sun", "mon"),
            ("01:30", "03:30"),
            tuple(date(2027, 1, 3) + timedelta(weeks=n) for n in range(30)),
        ),
    ],
)
def test_every_wait_the_check_accepts_can_be_counted(tz, days, hours, holidays):
    """The bound is certain: `add` finds the capacity's hours from any moment (the capacity is what the
    configuration check compares every wait with)."""
    start, end = (time(*map(int, h.split(":"))) if h != "24:00" else time.max for h in hours)
    work = WorkTime(ZoneInfo(tz), days, start, end, holidays)
    most = work.capacity()
    assert most > 0
    moment = datetime(2026, 12, 31, 23, 30)
    for _ in range(40):  # moments all over the week and the year
        assert work.add(moment, most) > moment
        moment += timedelta(days=9, hours=7, minutes=13)


def test_the_check_counts_the_snoozes_the_rules_allow():
    assert SNOOZES == sla.MAX_SNOOZES


# -- one bad row never stops the others -------------------------------------------------------------------


def new(db, cfg, when: datetime, title: str):
    return handoffs.submit(
        db,
        cfg,
        "U0ALICE",
        Draft("design", "eng", title, criteria_met=list(cfg.boundary("design", "eng").criteria)),
        now=when,
    ).item


def spoil(db, handoff_id: int) -> None:
    """A row no sweep can process: snoozed a million times (as no click can make it), its levels beyond what
    working time can count."""
    with db.write() as s:
        s.execute(update(Handoff).where(Handoff.id == handoff_id).values(snoozes=1_000_000))


def test_a_handoff_the_sweep_cannot_escalate_does_not_stop_the_others(db, cfg):
    bad = new(db, cfg, at(2026, 11, 2, 9), "Broken")
    good = new(db, cfg, at(2026, 11, 2, 10), "Fine")
    spoil(db, bad.id)
    keys = escalations.sweep(db, cfg, at(2026, 11, 20, 10))
    assert any(k.startswith(f"handoff:{good.id}:") for k in keys), keys
    assert not any(k.startswith(f"handoff:{bad.id}:") for k in keys)
    assert handoffs.get(db, good.id).level >= 1 and handoffs.get(db, bad.id).level in (None, 0)


def test_the_catch_up_goes_on_past_a_bad_handoff_to_the_matrix_review(db, fake, cfg):
    """The clock's catch-up on 9 October 2026: a handoff it cannot escalate is logged, the other is
    escalated, and the quarter's matrix review is still written."""
    bad = new(db, cfg, at(2026, 10, 1, 9), "Broken")
    good = new(db, cfg, at(2026, 10, 1, 10), "Fine")
    spoil(db, bad.id)
    env = {"SLACK_BOT_TOKEN": TOKEN, "SLACK_API_URL": fake.url, "DATABASE_URL": db.url, "PROCESS_CONFIG": str(PROCESS)}
    r = cli("run-job", "catch-up", "--now", "2026-10-09T10:00", env=env)
    assert "escalations:" in r.stdout and "matrix review Q4 2026: 4 DMs written" in r.stdout, r.stdout + r.stderr
    assert f"handoff #{bad.id} could not be escalated" in r.stderr
    assert handoffs.get(db, good.id).level >= 1
