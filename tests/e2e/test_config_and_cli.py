"""The process configuration, the settings and the operator commands, run as an operator runs them."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys

import pytest
from slack_sdk.models.blocks import Block

from bot.domain import pulse
from bot.domain.core import schedule
from bot.domain.core.process import ProcessConfigError, load_process, parse_process
from bot.domain.core.timeutil import utcnow
from bot.entry.demo import PULSE_SECRET
from tests.support.harness import ROOT, cli

GOOD = {
    "organization": {"name": "Acme", "timezone": "Europe/Berlin", "digest_channel": "C0SYNC"},
    "teams": [
        {"id": "design", "name": "Design", "channel": "C0DESIGN", "members": ["U0ALICE"]},
        {"id": "eng", "name": "Engineering", "channel": "C0ENG"},
    ],
    "boundaries": [{"from": "design", "to": "eng", "steward": "U0STEW", "criteria": ["Spec"]}],
}


def problems(data) -> list[str]:
    with pytest.raises(ProcessConfigError) as exc:
        parse_process(data)
    return exc.value.problems


def test_the_shipped_example_is_valid():
    cfg = load_process(ROOT / "process.example.toml")
    assert cfg.boundary("design", "eng").criteria[0] == "Specification with acceptance criteria"
    assert (
        cfg.model_of(cfg.boundary("eng", "qa")) == "hybrid"
        and cfg.model_of(cfg.boundary("design", "eng")) == "centralized"
    )


def test_errors_name_the_key_several_at_once():
    bad = json.loads(json.dumps(GOOD))
    bad["boundaries"].append({"from": "design", "to": "nowhere", "steward": "U0STEW"})
    bad["boundaries"].append({"from": "design", "to": "eng", "steward": "U0STEW"})
    bad["teams"].append({"id": "eng", "name": "Eng2", "channel": "C0E2"})
    assert problems(bad) == [
        "teams[2].id: 'eng' is already teams[1]",
        "boundaries[1].to: no team 'nowhere'",
        "boundaries[2]: design → eng is already boundaries[0]",
    ]
    bad = json.loads(json.dumps(GOOD))
    bad["organization"].update(timezone="Mars/Olympus", model="anarchic", colour="red")
    bad["teams"][0]["members"] = ["alice"]
    bad["boundaries"][0]["sla_hours"] = 0
    found = problems(bad)
    assert "organization.timezone: unknown time zone 'Mars/Olympus'" in found
    assert any(p.startswith("organization.model:") for p in found)
    assert "organization.colour: unknown key" in found
    assert "teams[0].members: not Slack user ids: 'alice'" in found
    assert any(p.startswith("boundaries[0].sla_hours:") for p in found)


run = cli


def test_check_config_summarises_and_refuses_bad_files(tmp_path):
    r = run("check-config", env={"PROCESS_CONFIG": str(ROOT / "process.example.toml")})
    assert r.returncode == 0 and "3 teams" in r.stdout and "design → eng: centralized, 3 criteria" in r.stdout
    bad = tmp_path / "p.toml"
    bad.write_text(
        '[organization]\nname = "A"\ndigest_channel = "C0S"\n[[teams]]\nid = "a"\nname = "A"\nchannel = "C0A"\n[[boundaries]]\nfrom = "a"\nto = "nowhere"\nsteward = "U0S"\n'
    )
    r = run("check-config", "--file", str(bad))
    assert r.returncode == 2 and r.stderr.strip().splitlines() == ["boundaries[0].to: no team 'nowhere'"]
    bad.write_text("[organization\n")
    r = run("check-config", "--file", str(bad))
    assert r.returncode == 2 and "not valid TOML" in r.stderr and "Traceback" not in r.stderr
    r = run("check-config", env={"PROCESS_CONFIG": str(tmp_path / "missing.toml")})
    assert r.returncode == 2 and r.stderr == f"PROCESS_CONFIG: no file at {tmp_path / 'missing.toml'}\n"
    r = run(
        "check-config", "--file", str(tmp_path / "missing.toml"), env={"PORT": "not a port"}
    )  # --file needs no settings
    assert r.returncode == 2 and r.stderr == f"--file: no file at {tmp_path / 'missing.toml'}\n"


def test_check_config_counts_in_words(tmp_path):
    good = tmp_path / "p.toml"
    good.write_text(
        '[organization]\nname = "A"\ndigest_channel = "C0S"\nholidays = [2026-12-25]\n'
        '[[teams]]\nid = "a"\nname = "A"\nchannel = "C0A"\nmembers = ["U0A"]\n'
        '[[teams]]\nid = "b"\nname = "B"\nchannel = "C0B"\n'
        '[[boundaries]]\nfrom = "a"\nto = "b"\nsteward = "U0S"\ncriteria = ["Spec"]\n'
        '[schedule]\ninitiative_prompt_days = 1\ncatch_up_days = 1\n'
    )
    r = run("check-config", "--file", str(good))
    assert r.returncode == 0, r.stderr
    assert (
        "1 holiday;" not in r.stdout
        and "1 holiday" in r.stdout
        and "(1 member," in r.stdout
        and "(0 members," in r.stdout
    )
    assert "2 teams:" in r.stdout and "1 boundary:" in r.stdout and "1 criterion," in r.stdout
    assert "prompts 1 day before; catch-up 1 day" in r.stdout
    assert not re.search(r"\b1 (members|teams|boundaries|criteria|holidays|days)\b", r.stdout), r.stdout


def test_every_problem_in_one_run_whatever_else_is_wrong(tmp_path):
    """A bad field (here the schedule) used to stop the checks across sections: a boundary naming no team,
    a duplicate, a matrix naming nobody were reported only after the field was mended, one run at a time."""
    bad = json.loads(json.dumps(GOOD))
    bad["schedule"] = {"digest": "0 9 31 2 *"}
    bad["teams"].append(
        {"id": "ops", "name": "Ops", "channel": "not-a-channel"}
    )  # invalid itself: referring to it adds nothing
    bad["teams"].append({"id": "design", "name": "Design again", "channel": "C0D2"})
    bad["boundaries"] += [
        {"from": "design", "to": "nowhere", "steward": "U0STEW"},
        {"from": "eng", "to": "eng", "steward": "U0STEW"},
        {"from": "design", "to": "eng", "steward": "U0STEW"},
        {"from": "eng", "to": "ops", "steward": "U0STEW"},
        {"from": "eng", "to": "design", "steward": "nobody"},
    ]
    bad["rights"] = [{"element": "QA sign-off", "sets_standard": "nobody", "owns_execution": "eng"}]
    assert problems(bad) == [
        "teams[2].channel: 'not-a-channel' is not a Slack channel id (C…)",
        "boundaries[5].steward: 'nobody' is not a Slack user id (U…)",
        "schedule.digest: '0 9 31 2 *' does not fire in the first 28 days of every month",
        "teams[3].id: 'design' is already teams[0]",
        "boundaries[1].to: no team 'nowhere'",
        "boundaries[2]: 'from' and 'to' are the same team",
        "boundaries[3]: design → eng is already boundaries[0]",
        "rights[0].sets_standard: 'nobody' is neither a team id nor a Slack user id",
        "rights[0].grants_exceptions: empty, and fasttrack.approvers is empty too: nobody could grant it",
        "fasttrack.backup_approvers: required with [[rights]]: over-budget requests need someone to decide them",
    ]
    path = tmp_path / "p.toml"
    path.write_text(
        '[organization]\nname = "A"\ndigest_channel = "C0S"\n[[teams]]\nid = "a"\nname = "A"\nchannel = "C0A"\n'
        '[[boundaries]]\nfrom = "a"\nto = "nowhere"\nsteward = "U0S"\n[schedule]\ndigest = "at nine"\n'
    )
    r = run("check-config", "--file", str(path))
    assert r.returncode == 2 and len(r.stderr.splitlines()) == 2, r.stderr
    assert (
        r.stderr.startswith("schedule.digest: not a crontab expression")
        and "boundaries[0].to: no team 'nowhere'" in r.stderr
    )


def test_missing_and_invalid_settings_are_one_line_each(tmp_path):
    r = run(
        "serve",
        env={"PROCESS_CONFIG": str(ROOT / "process.example.toml"), "DATABASE_URL": f"sqlite:///{tmp_path}/x.db"},
        cwd=tmp_path,
    )
    assert r.returncode == 2 and r.stderr.strip().splitlines() == [
        "SLACK_BOT_TOKEN: required but not set",
        "SLACK_SIGNING_SECRET: required but not set",
    ]
    r = run(
        "serve",
        env={
            "SLACK_BOT_TOKEN": "xoxp-user-token",
            "SLACK_SIGNING_SECRET": "s",
            "SLACK_API_URL": "ftp://x",
            "PORT": "99999",
        },
        cwd=tmp_path,
    )
    lines = r.stderr.strip().splitlines()
    assert r.returncode == 2 and "Traceback" not in r.stderr and len(lines) == 3
    assert {line.split(":")[0] for line in lines} == {"SLACK_BOT_TOKEN", "SLACK_API_URL", "PORT"}
    # A secret never appears in what a command prints.
    r = run(
        "serve",
        env={
            "SLACK_BOT_TOKEN": "xoxb-very-secret",
            "SLACK_SIGNING_SECRET": "shh-secret",
            "DATABASE_URL": "sqlite:///" + str(tmp_path / "x.db"),
            "PROCESS_CONFIG": str(ROOT / "process.example.toml"),
        },
        cwd=tmp_path,
    )
    assert (
        r.returncode == 2
        and "migrate" in r.stderr
        and "very-secret" not in r.stderr + r.stdout
        and "shh-secret" not in r.stderr
    )


def test_settings_read_dotenv(tmp_path):
    (tmp_path / ".env").write_text("SLACK_API_URL=http://127.0.0.1:9/api\nPORT=4000\n")
    code = "from bot.entry.settings import load_settings; s = load_settings(); print(s.slack_api_url, s.port, s.database_url)"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SLACK_", "PORT", "DATABASE_URL"))}
    env["PYTHONPATH"] = str(ROOT)
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=tmp_path, env=env, capture_output=True, text=True, check=True
    ).stdout
    assert out.split() == ["http://127.0.0.1:9/api/", "4000", "sqlite:///steward.db"]


def test_reading_before_migrate_says_migrate_first_and_leaves_no_file(tmp_path):
    config = {
        "PROCESS_CONFIG": str(ROOT / "process.example.toml"),
        "SLACK_BOT_TOKEN": "xoxb-x",
        "SLACK_API_URL": "http://127.0.0.1:9/api/",
    }
    path = tmp_path / "steward.db"
    for command in (["digest"], ["outbox"], ["run-job", "catch-up"]):
        r = run(*command, env={**config, "DATABASE_URL": f"sqlite:///{path}"}, cwd=tmp_path)
        assert (
            r.returncode == 2
            and r.stderr == f"DATABASE_URL: no database at {path} yet: run `python -m bot migrate` first\n"
        ), r.stderr
        assert not path.exists() and list(tmp_path.iterdir()) == []
    path.touch()  # a file that is not a Steward database (an older attempt, say)
    r = run("digest", env={**config, "DATABASE_URL": f"sqlite:///{path}"}, cwd=tmp_path)
    assert r.returncode == 2 and r.stderr.endswith("has no Steward schema yet: run `python -m bot migrate` first\n"), (
        r.stderr
    )


def test_run_job_says_each_line_once_and_that_nothing_is_due(tmp_path):
    env = {
        "PROCESS_CONFIG": str(ROOT / "process.example.toml"),
        "DATABASE_URL": f"sqlite:///{tmp_path / 's.db'}",
        "SLACK_BOT_TOKEN": "xoxb-x",
        "SLACK_API_URL": "http://127.0.0.1:9/api/",
        "LOG_LEVEL": "INFO",
    }
    assert run("migrate", env=env).returncode == 0
    r = run("run-job", "catch-up", "--now", "2026-11-17T11:00", env=env)  # mid-month: no digest, no prompt
    assert r.returncode == 0, r.stderr
    assert r.stdout.splitlines() == [
        "catch-up: no digest or initiative prompt due; the next digest, for November 2026, is due Tue 01 Dec 2026 09:00 Europe/Berlin",
        "escalations: nothing due",
    ]
    assert r.stderr == ""  # not a second time in the log


def test_http_serve_starts_without_bolt_warnings(steward):
    """Bolt read SLACK_BOT_TOKEN from the environment beside the client it was given, and warned at every
    start that the token would be unused: `serve` now hands its settings on and keeps the secrets out of
    the environment."""
    output = steward.output()
    assert "will be unused" not in output and "WARNING" not in output, output


def test_migrate_is_idempotent(tmp_path):
    env = {"DATABASE_URL": f"sqlite:///{tmp_path}/m.db"}
    first, second = run("migrate", env=env), run("migrate", env=env)
    assert first.returncode == 0 and "(was empty)" in first.stdout
    assert second.returncode == 0 and "already up to date" in second.stdout
    r = run("migrate", env={"DATABASE_URL": "postgresql://nobody@127.0.0.1:1/none"})
    assert r.returncode == 2 and r.stderr.startswith("DATABASE_URL: cannot connect")


def test_manifest():
    r = run("manifest", "--url", "https://steward.example.com/")
    m = json.loads(r.stdout)
    assert [c["command"] for c in m["features"]["slash_commands"]] == ["/handoff", "/fasttrack"]
    assert m["features"]["slash_commands"][0]["url"] == "https://steward.example.com/slack/events"
    assert m["settings"]["interactivity"]["request_url"] == "https://steward.example.com/slack/events"
    assert m["settings"]["socket_mode_enabled"] is False
    assert set(m["oauth_config"]["scopes"]["bot"]) == {
        "commands",
        "chat:write",
        "chat:write.public",
        "files:write",
        "channels:join",
        "channels:history",
        "groups:history",
        "im:history",
        "im:write",
        "users:read",
        "usergroups:read",
        "channels:read",
        "groups:read",
    }
    assert (
        m["features"]["app_home"]["messages_tab_enabled"] is True
        and m["features"]["app_home"]["home_tab_enabled"] is True
    )
    assert m["settings"]["event_subscriptions"] == {
        "request_url": "https://steward.example.com/slack/events",
        "bot_events": ["app_home_opened", "member_joined_channel"],
    }
    socket = json.loads(run("manifest").stdout)
    assert socket["settings"]["socket_mode_enabled"] is True and "url" not in socket["features"]["slash_commands"][0]
    assert socket["settings"]["event_subscriptions"] == {"bot_events": ["app_home_opened", "member_joined_channel"]}
    assert run("manifest", "--url", "http://insecure").returncode == 2


def test_schedule_is_validated_with_its_key():
    bad = json.loads(json.dumps(GOOD))
    bad["schedule"] = {"digest": "0 9 31 2 *", "catch_up_days": 40, "every": 1}
    found = problems(bad)
    assert "schedule.digest: '0 9 31 2 *' does not fire in the first 28 days of every month" in found
    assert any(p.startswith("schedule.catch_up_days:") for p in found) and "schedule.every: unknown key" in found
    bad["schedule"] = {"digest": "at nine"}
    assert problems(bad)[0].startswith("schedule.digest: not a crontab expression")
    cfg = parse_process(dict(GOOD, schedule={"digest": "30 8 * * *"}))
    assert cfg.schedule.digest == "30 8 * * *" and cfg.schedule.catch_up_days == 7


def schedule_label(period: str) -> str:

    return schedule.label(period)


def test_demo_works_with_no_slack_and_no_configuration(tmp_path):

    r = cli(
        "demo",
        "--dir",
        str(tmp_path / "demo"),
        env={
            "PROCESS_CONFIG": "/nowhere.toml",
            "DATABASE_URL": "postgresql://nobody@127.0.0.1:1/x",
            "MPLCONFIGDIR": str(tmp_path / "mpl"),
        },
        cwd=tmp_path,
    )  # no font cache yet
    assert r.returncode == 0, r.stderr
    assert "Matplotlib" not in r.stderr and "font cache" not in r.stderr, r.stderr
    assert "sync digest ·" in r.stdout and "Signals" in r.stdout and "Teams" in r.stdout and "Initiative: “" in r.stdout
    written = {p.name for p in (tmp_path / "demo").iterdir()}
    assert {"process.toml", "steward.db"} <= written
    (chart,) = [p for p in (tmp_path / "demo").iterdir() if p.suffix == ".png"]
    assert chart.read_bytes().startswith(b"\x89PNG")
    # Block Kit as Block Kit Builder takes it: one message a file, {"blocks": [...]}, blocks Slack accepts
    files = sorted(
        (p for p in (tmp_path / "demo").iterdir() if p.suffix == ".json"), key=lambda p: int(p.stem.rsplit("-", 1)[1])
    )
    month = chart.stem.removeprefix("trend-")
    assert [p.name for p in files] == [f"digest-{month}-{i}.json" for i in range(1, len(files) + 1)]
    for path in files:
        message = json.loads(path.read_text())
        assert list(message) == ["blocks"] and 0 < len(message["blocks"]) <= 50
        for block in message["blocks"]:
            Block.parse(block).validate_json()
        assert path.name in r.stdout
    assert json.loads(files[0].read_text())["blocks"][0]["type"] == "header"
    assert str(tmp_path / "demo") in r.stdout

    assert (
        f"{sys.executable} -m bot digest --month" in r.stdout
    )  # no activated venv assumed: the interpreter that ran it
    # the database it leaves is a real Steward database: the preview command reads it

    env = {
        "DATABASE_URL": f"sqlite:///{tmp_path / 'demo' / 'steward.db'}",
        "PROCESS_CONFIG": str(tmp_path / "demo" / "process.toml"),
    }
    again = cli("digest", "--month", month, env=dict(env, PULSE_SECRET=PULSE_SECRET))
    assert again.returncode == 0 and again.stdout in r.stdout
    # the demo answers the weekly pulse: its digest shows satisfaction once the month's surveys have all closed

    if pulse.final_at(load_process(tmp_path / "demo" / "process.toml").pulse, month) <= utcnow():
        assert "Satisfaction (1–5)" in r.stdout and f"Satisfaction in {schedule_label(month)}" in r.stdout
    assert (
        "PULSE_SECRET: required" in cli("digest", "--month", month, env=env).stderr
    )  # without the secret: said, not skipped
