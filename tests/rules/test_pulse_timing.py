"""The digest's pulse timing: a week counts in the month (the organisation's) in which it has closed in every
time zone, so when the digest is composed, after the month's end, the month's satisfaction is final and
complete, in every organisation time zone and with any `open_days`. Rules, called directly."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from bot.domain import pulse
from bot.domain.core import schedule
from bot.domain.core.process import parse_process

SECRET = "timing-test-secret-0123456789abc"
ZONES = ("Pacific/Kiritimati", "Asia/Tokyo", "Australia/Sydney", "Europe/Berlin", "America/Los_Angeles",
         "Pacific/Honolulu", "Pacific/Pago_Pago", "Etc/GMT+12")  # fmt: skip


def config(tz: str, open_days: int = 5, digest: str = "0 9 1-3 * mon-fri"):
    return parse_process(
        {
            "organization": {"name": "Acme", "timezone": tz, "digest_channel": "C0SYNC"},
            "teams": [{"id": "t", "name": "T", "channel": "C0T", "members": [f"U0P{i}" for i in range(len(ZONES))]}],
            "pulse": {"min_group": 3, "open_days": open_days, "remind_after_days": 0},
            "schedule": {"digest": digest},
        }
    )


@pytest.mark.parametrize(
    "tz, open_days, period",
    [
        ("Australia/Sydney", 5, "2026-10"),  # the case: the last week closes on Saturday 31 October
        ("Europe/Berlin", 6, "2027-02"),  # the case: open_days = 6, February ends on a Sunday
        ("Pacific/Kiritimati", 6, "2027-02"),
        ("Pacific/Pago_Pago", 5, "2026-10"),
        ("UTC", 1, "2026-10"),
    ],
)
def test_the_digest_has_the_month_final_and_complete_in_every_zone(db, tz, open_days, period):
    cfg = config(tz, open_days, digest="0 0 1 * *")  # the earliest a digest can come: the month's first minute
    p, org_tz = cfg.pulse, cfg.organization.tz
    zones = {f"U0P{i}": z for i, z in enumerate(ZONES)}
    sealer = pulse.Sealer(SECRET)
    weeks = pulse.weeks_of(p, period, org_tz)
    # run the pulse every hour through the month and past it, everyone answering as soon as asked
    start, end = schedule.bounds(period, org_tz)
    moment = start - timedelta(days=14)
    while moment < end + timedelta(days=14):
        pulse.send_due(db, cfg, moment, zones)
        for r in pulse.recipients(db, weeks):
            if not r.answered and r.due_at <= moment < r.closes_at:
                pulse.answer(db, sealer, r.user, r.week, moment, score=4)
        moment += timedelta(hours=1)
    due = schedule.digest_due(cfg, period)
    assert due == pulse.final_at(p, period, org_tz)
    s = pulse.figures(db, cfg, sealer, period, due)
    assert s is not None and s.weeks == weeks
    # every week counted has closed everywhere before the digest, and nobody's survey is left out
    rows = pulse.recipients(db, weeks)
    assert rows and all(r.closes_at <= due for r in rows)
    assert s.org.asked == len(rows) == len(weeks) * len(ZONES) and s.org.answered == len(rows)


def test_each_week_counts_in_exactly_one_month():
    for tz in ("Australia/Sydney", "Europe/Berlin", "America/Los_Angeles", "UTC"):
        for open_days in (1, 5, 6):
            p = config(tz, open_days).pulse
            counted = [w for m in range(1, 13) for w in pulse.weeks_of(p, f"2027-{m:02d}", ZoneInfo(tz))]
            assert len(counted) == len(set(counted))
            assert {pulse.week_id(d) for d in _mondays(2027)} - set(counted) <= {"2027-W01", "2027-W52"}
            for w in counted:  # closed everywhere before its month ends
                m = next(f"2027-{m:02d}" for m in range(1, 13) if w in pulse.weeks_of(p, f"2027-{m:02d}", ZoneInfo(tz)))
                assert pulse.last_close(p, w) < pulse.final_at(p, m, ZoneInfo(tz))


def _mondays(year: int):
    day = datetime(year, 1, 4, tzinfo=UTC).date()
    day -= timedelta(days=day.weekday())
    while day.year <= year:
        if day.isocalendar()[0] == year:
            yield day
        day += timedelta(days=7)
