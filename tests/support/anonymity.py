"""The pulse's anonymity: organisations of given sizes, and what figures could isolate."""

from __future__ import annotations

import itertools
from datetime import datetime, timedelta

from bot.domain import pulse
from bot.domain.core.process import parse_process

SECRET = "anonymity-test-secret-0123456789"


def config(sizes: dict[str, int], min_group: int = 5, shared: dict[str, list[str]] | None = None):
    """Teams of `sizes` people (U0T<team><n>), plus people in several teams (`shared`: user → teams)."""
    members = {t: [f"U0{t.upper()}{i}" for i in range(n)] for t, n in sizes.items()}
    for user, teams in (shared or {}).items():
        for t in teams:
            members[t].append(user)
    return parse_process(
        {
            "organization": {"name": "Acme", "timezone": "UTC", "digest_channel": "C0SYNC"},
            "teams": [
                {"id": t, "name": t.title(), "channel": f"C0{t.upper()}", "members": m} for t, m in members.items()
            ],
            "boundaries": [{"from": a, "to": b, "steward": "U0STEW"} for a, b in zip(sizes, list(sizes)[1:])],
            "pulse": {"min_group": min_group},
        }
    )


def isolations(coords: dict[str, set], shown: set[str], k: int) -> list[set]:
    """Every set of answers that some combination of the shown groups' figures (each added, subtracted or
    left out) isolates exactly, with fewer than k people in it. Empty: nothing small is derivable."""
    groups = sorted(shown)
    universe = sorted(set().union(*(coords[g] for g in groups))) if groups else []
    found = []
    for signs in itertools.product((-1, 0, 1), repeat=len(groups)):
        if not any(signs):
            continue
        vector = {c: sum(s for s, g in zip(signs, groups) if c in coords[g]) for c in universe}
        if all(v in (0, 1) for v in vector.values()):
            chosen = {c for c, v in vector.items() if v == 1}
            if chosen and len({u for u, _ in chosen}) < k:
                found.append(chosen)
    return found


def run_month(db, cfg, answers: dict[str, tuple[int | None, str | None]], monday: datetime):
    """Send the week of `monday` to everyone, record `answers` (user → (score, feeling)), and return the
    month's figures once the week has closed."""
    sealer = pulse.Sealer(SECRET)
    sent = pulse.send_due(db, cfg, monday + timedelta(hours=11), {})
    assert sent.asked == len(pulse.members(cfg))
    for user, (score, feeling) in answers.items():
        pulse.answer(
            db, sealer, user, pulse.week_id(monday.date()), monday + timedelta(hours=12), score=score, feeling=feeling
        )
    period = pulse.close_day(cfg.pulse, pulse.week_id(monday.date())).strftime("%Y-%m")
    return pulse.figures(db, cfg, sealer, period, pulse.final_at(cfg.pulse, period))
