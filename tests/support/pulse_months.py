"""A month of pulse answers in a fixed organisation, for the digest and the Home."""

from __future__ import annotations

from datetime import datetime, timedelta

from bot.domain import pulse
from bot.domain.core.process import parse_process

SECRET = "digest-pulse-secret-0123456789ab"


SIZES = {"design": 6, "eng": 5, "qa": 4}


NAMES = {"design": "Design", "eng": "Engineering", "qa": "Quality", pulse.ORG: "Acme"}


def organisation():
    teams = [
        {"id": t, "name": NAMES[t], "channel": f"C0{t.upper()}", "members": [f"U0{t.upper()}{i}" for i in range(n)]}
        for t, n in SIZES.items()
    ]
    return parse_process(
        {
            "organization": {"name": "Acme", "timezone": "UTC", "digest_channel": "C0SYNC"},
            "teams": teams,
            "boundaries": [
                {"from": "design", "to": "eng", "steward": "U0STEW"},
                {"from": "eng", "to": "qa", "steward": "U0STEVE"},
            ],
            "pulse": {"min_group": 5},
        }
    )


def month_of_answers(db, cfg, monday: datetime, score: int, feeling: str) -> None:
    sealer = pulse.Sealer(SECRET)
    assert pulse.send_due(db, cfg, monday + timedelta(hours=11), {}).asked == sum(SIZES.values())
    for user in pulse.members(cfg):
        pulse.answer(
            db, sealer, user, pulse.week_id(monday.date()), monday + timedelta(hours=12), score=score, feeling=feeling
        )
