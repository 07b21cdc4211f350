"""`digest --month` for a closed month after `pulse.teams` changed: the satisfaction published at close, not a
recomputation (the issue's case through the CLI: with Bob in Design and Engineering, June showed Design and
held Engineering back; with Design out of `pulse.teams` a recomputation showed Engineering, and Design +
Engineering − the organisation was Bob)."""

from __future__ import annotations

import json
from datetime import datetime, timedelta

from bot.domain import pulse
from bot.domain.core.process import load_process
from tests.support.harness import cli

SECRET = "frozen-cli-secret-0123456789abcd"


def write(path, pulse_teams: list[str]) -> None:
    design = [f"U0DESIGN{i}" for i in range(15)] + ["U0BOB"]
    eng = [f"U0ENG{i}" for i in range(11)] + ["U0BOB"]
    path.write_text(
        f"""
[organization]
name = "Acme"
timezone = "UTC"
digest_channel = "C0SYNC"

[[teams]]
id = "design"
name = "Design"
channel = "C0DESIGN"
members = {json.dumps(design)}

[[teams]]
id = "eng"
name = "Engineering"
channel = "C0ENG"
members = {json.dumps(eng)}

[[boundaries]]
from = "design"
to = "eng"
steward = "U0STEW"

[pulse]
min_group = 5
teams = {json.dumps(pulse_teams)}
"""
    )


def satisfaction(db, path) -> str:
    env = {"DATABASE_URL": db.url, "PROCESS_CONFIG": str(path), "PULSE_SECRET": SECRET}
    r = cli("digest", "--month", "2026-06", "--blocks", env=env)
    assert r.returncode == 0 and "Traceback" not in r.stderr, r.stdout + r.stderr
    parts = json.loads(r.stdout)
    return json.dumps(next(p for p in parts if p["text"].startswith("Satisfaction in")), ensure_ascii=False)


def test_digest_month_shows_what_was_published_after_a_team_leaves_the_pulse(db, tmp_path):
    path = tmp_path / "process.toml"
    write(path, ["design", "eng"])
    cfg = load_process(path)
    sealer = pulse.Sealer(SECRET)
    for n in range(4):
        monday = datetime(2026, 6, 1) + timedelta(days=7 * n)
        pulse.send_due(db, cfg, monday + timedelta(hours=11), {})
        for user in pulse.members(cfg):
            pulse.answer(db, sealer, user, pulse.week_id(monday.date()), monday + timedelta(hours=12), score=3)
    published = satisfaction(db, path)
    assert "*Design*: 3.0 / 5" in published and "Engineering (held back" in published
    write(path, ["eng"])  # Design leaves the pulse
    assert satisfaction(db, path) == published
