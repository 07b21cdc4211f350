"""Working time: SLAs count working hours in the organisation's time zone, days and holidays."""

from __future__ import annotations

from datetime import UTC, date, datetime, time
from zoneinfo import ZoneInfo

import pytest

from bot.domain.core.process import ProcessConfigError, parse_process
from bot.domain.core.worktime import WorkTime

BERLIN = ZoneInfo("Europe/Berlin")
WEEK = ("mon", "tue", "wed", "thu", "fri")


def utc(*args, tz=BERLIN) -> datetime:
    """A local moment in `tz` as naive UTC."""
    return datetime(*args, tzinfo=tz).astimezone(UTC).replace(tzinfo=None)


def test_friday_afternoon_plus_a_working_day_is_monday_afternoon():
    w = WorkTime(BERLIN, WEEK, time(9), time(17))
    assert w.add(utc(2026, 11, 27, 16), 8) == utc(2026, 11, 30, 16)  # Fri 16:00 + 8 h → Mon 16:00
    assert w.between(utc(2026, 11, 27, 16), utc(2026, 11, 30, 16)) == 8
    assert w.add(utc(2026, 11, 28, 3), 1) == utc(2026, 11, 30, 10)  # a Saturday night starts on Monday morning
    assert not w.is_working(utc(2026, 11, 28, 12)) and not w.is_working(utc(2026, 11, 30, 3))
    assert w.is_working(utc(2026, 11, 30, 9)) and not w.is_working(utc(2026, 11, 30, 17))
    assert w.next_working(utc(2026, 11, 27, 17, 30)) == utc(2026, 11, 30, 9)
    assert w.next_working(utc(2026, 11, 30, 11)) == utc(2026, 11, 30, 11)


def test_holidays_and_clock_changes():
    w = WorkTime(BERLIN, WEEK, time(9), time(17), holidays=(date(2026, 12, 24), date(2026, 12, 25)))
    assert w.add(utc(2026, 12, 23, 16), 2) == utc(2026, 12, 28, 10)  # Thu 24 and Fri 25 are holidays
    # 29 March 2026: Berlin moves from UTC+1 to UTC+2; the working day stays 09:00-17:00 local
    assert w.add(utc(2026, 3, 27, 16), 2) == utc(2026, 3, 30, 10)
    assert utc(2026, 3, 30, 10) == datetime(2026, 3, 30, 8)
    assert w.day_hours == 8


def test_a_far_time_zone_and_odd_days():
    tokyo = ZoneInfo("Asia/Tokyo")
    w = WorkTime(tokyo, ("sun", "mon", "tue", "wed", "thu"), time(8, 30), time(12))
    start = utc(2026, 11, 26, 11, tz=tokyo)  # Thursday 11:00 in Tokyo
    assert w.add(start, 2) == utc(2026, 11, 29, 9, 30, tz=tokyo)  # 1 h Thursday, Fri/Sat off, 1 h Sunday
    assert w.between(start, utc(2026, 11, 29, 9, 30, tz=tokyo)) == 2


def test_the_configuration_of_working_time_and_escalation(cfg):
    raw = {
        "organization": {
            "name": "A",
            "digest_channel": "C0SYNC",
            "working_days": ["Mon", "tue"],
            "working_hours": "8:30-16:00",
            "holidays": [date(2026, 12, 24)],
            "escalation_contact": "U0HEAD",
        },
        "teams": [
            {"id": "a", "name": "A", "channel": "C0A", "reviewers": "S0REVIEW"},
            {"id": "b", "name": "B", "channel": "C0B"},
        ],
        "boundaries": [
            {"from": "a", "to": "b", "steward": "U0STEW", "sla_hours": 8},
            {
                "from": "b",
                "to": "a",
                "steward": "U0STEW",
                "escalation": [{"after_hours": 4, "notify": ["S0LEADS", "U0X"]}, {"after_sla": 1, "notify": "team"}],
            },
        ],
    }
    c = parse_process(raw)
    assert (c.organization.working_days, c.organization.working_hours) == (("mon", "tue"), "08:30-16:00")
    assert [(lv.hours(8), lv.notify) for lv in c.escalation_path(c.boundaries[0])] == [
        (8, ("team",)),
        (16, ("steward",)),
        (24, ("contact",)),
    ]
    assert [(lv.hours(48), lv.notify) for lv in c.escalation_path(c.boundaries[1])] == [
        (4, ("S0LEADS", "U0X")),
        (48, ("team",)),
    ]
    assert [(lv.hours(48), lv.notify) for lv in cfg.escalation_path(cfg.boundaries[0])] == [
        (48, ("team",)),
        (96, ("steward",)),
    ]
    bad = {
        **raw,
        "organization": {**raw["organization"], "working_days": ["someday"], "working_hours": "17:00-09:00"},
        "boundaries": [
            {"from": "a", "to": "b", "steward": "U0STEW", "escalation": [{"after_sla": 2, "notify": "everyone"}]},
            {
                "from": "b",
                "to": "a",
                "steward": "U0STEW",
                "escalation": [{"after_sla": 1, "after_hours": 2, "notify": "team"}],
            },
        ],
    }
    assert problems(bad) == [
        "organization.working_days: name one or more of mon, tue, wed, thu, fri, sat, sun",
        "organization.working_hours: the day must start before it ends, within 00:00-24:00",
        "boundaries[0].escalation[0].notify: 'everyone' is not team, steward, contact, a user id (U…) or a user group id (S…)",
        "boundaries[1].escalation: each level says either after_sla or after_hours",
    ]
    no_contact = {
        **raw,
        "organization": {**raw["organization"], "escalation_contact": None},
        "boundaries": [
            {"from": "a", "to": "b", "steward": "U0STEW", "escalation": [{"after_sla": 1, "notify": "contact"}]}
        ],
    }
    assert problems(no_contact) == [
        "boundaries[0].escalation: a level notifies 'contact' but organization.escalation_contact is not set"
    ]


def problems(raw: dict) -> list[str]:
    with pytest.raises(ProcessConfigError) as caught:
        parse_process(raw)
    return caught.value.problems
