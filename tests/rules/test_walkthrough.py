"""What a newcomer's walkthrough found: the digest's units and promises, the CLI's words, the configuration's
error wording, the demo's and the example's help. Each small; each checked here."""

from __future__ import annotations

import re
import sys
import tomllib
from datetime import datetime

import pytest

from bot.domain import digest, metrics
from bot.domain.core import schedule
from bot.domain.core.process import ProcessConfigError, parse_process
from bot.domain.core.timeutil import utcnow
from bot.entry.cli import parser
from bot.entry.clock import JOBS
from bot.entry.demo import _python
from handlers.digest import messages
from tests.support.data import PROCESS
from tests.support.digest import a_digest
from tests.support.harness import ROOT, TOKEN, blocks_text, cli


def test_the_first_message_and_the_thread_give_cycle_time_in_one_unit():

    d = a_digest("Design")
    now, before = d.months[-1], d.months[-2]
    # a median under 48 h, its 85th percentile over: the thread's line is in days, so is the first message's
    now.total.side = metrics.Side(6, 1, {0.5: 30 * 3600.0, 0.85: 60 * 3600.0})
    before.total.side = metrics.Side(6, 1, {0.5: 20 * 3600.0, 0.85: 30 * 3600.0})
    d.figures = digest._figures(before, now, "Sep 2026")
    first, thread = (blocks_text(m) for m in messages(d)[:2])
    assert "*Cycle time (median, first submission → acceptance)*: *1.2 d* ↑ from 0.8 d in Sep 2026: worse" in first
    assert "median *1.2 d* (+0.4 d), 85th percentile 2.5 d" in thread
    assert not re.search(r"\d h\b", first.split("Handoff failure rate")[0])


def test_an_empty_months_first_message_promises_only_what_the_thread_has(db, cfg):
    d = digest.compose(db, cfg, "2026-10", datetime(2026, 11, 5))
    first = blocks_text(messages(d)[0])
    assert "*No handoff activity in October 2026.*" in first
    assert "In the thread: the trend chart." in first
    assert "fast-track review" not in first and "each team and boundary" not in first and "initiatives" not in first


def test_help_lists_every_job_the_clock_has(capsys):

    main = parser().format_help()
    with pytest.raises(SystemExit):
        parser().parse_args(["run-job", "--help"])
    run_job = capsys.readouterr().out
    flat = lambda text: " ".join(text.split())  # noqa: E731 - argparse wraps lines
    assert f"run one job once, now: {', '.join(JOBS)}" in flat(main)
    assert f"NAME is one of: {', '.join(JOBS)}." in flat(run_job)
    assert "matrix-review" in JOBS and "pulse" in JOBS and "escalations" in JOBS


def test_the_examples_commented_pulse_is_valid_and_the_demo_teams_have_leads():
    text = (ROOT / "process.example.toml").read_text()
    assert "[pulse]" not in tomllib.loads(text)  # commented: off unless the operator turns it on
    on = re.sub(r"(?m)^# (\[pulse\]|[a-z_]+ = .*)$", r"\1", text.split("# [pulse]", 1)[1])
    cfg = parse_process({**tomllib.loads(text), **tomllib.loads("[pulse]" + on)})
    assert cfg.pulse is not None and cfg.pulse.teams == ("design", "eng", "qa") and cfg.pulse.min_group == 5
    demo = tomllib.loads((ROOT / "bot" / "entry" / "demo_process.toml").read_text())
    assert all(t.get("lead") in t["members"] for t in demo["teams"])


def test_the_demo_names_the_interpreter_to_explore_with(tmp_path, monkeypatch):

    monkeypatch.chdir(ROOT)
    assert _python() == (".venv/bin/python" if sys.executable.startswith(str(ROOT / ".venv")) else sys.executable)
    monkeypatch.chdir(tmp_path)  # elsewhere: the full path, never "../../…"
    assert _python() == sys.executable


def test_numeric_bounds_are_said_plainly_for_every_field():
    data = tomllib.loads(PROCESS.read_text())
    data["pulse"] = {"min_group": 2, "open_days": 9}
    data["schedule"] = {"tick_minutes": 0, "catch_up_days": 28}
    data["boundaries"][0]["sla_hours"] = 0
    data["fasttrack"]["budget_percent"] = 101.5
    with pytest.raises(ProcessConfigError) as exc:
        parse_process(data)
    found = exc.value.problems
    assert "pulse.min_group: at least 3 (it is 2)" in found
    assert "pulse.open_days: at most 6 (it is 9)" in found
    assert "schedule.tick_minutes: at least 1 (it is 0)" in found
    assert "schedule.catch_up_days: at most 27 (it is 28)" in found
    assert "boundaries[0].sla_hours: more than 0 (it is 0)" in found
    assert "fasttrack.budget_percent: at most 100 (it is 101.5)" in found
    assert not [p for p in found if "Input should" in p], found


def test_run_job_outbox_says_when_nothing_is_due_and_a_refused_month_is_in_the_organisations_time(db, fake, cfg):

    env = {
        "SLACK_BOT_TOKEN": TOKEN,
        "SLACK_API_URL": fake.url,
        "DATABASE_URL": db.url,
        "PROCESS_CONFIG": str(PROCESS),
        "LOG_LEVEL": "WARNING",
    }
    r = cli("run-job", "outbox", env=env)
    assert r.returncode == 0 and r.stdout.startswith("outbox: nothing due"), r.stdout + r.stderr
    period = schedule.period_of(utcnow(), cfg.organization.tz)
    r = cli("run-job", "digest", "--month", period, env=env)
    year, month = schedule.parse_period(schedule.shift(period, 1))
    assert r.returncode == 2 and f"It can be posted from {year:04d}-{month:02d}-01 01:00 Europe/Berlin;" in r.stderr, (
        r.stderr
    )
    assert " UTC" not in r.stderr
