"""The process configuration, the settings and the operator commands, run as an operator runs them."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from bot.process import ProcessConfigError, load_process, parse_process
from tests.harness import ROOT, cli

GOOD = {
    "organization": {"name": "Acme", "timezone": "Europe/Berlin", "digest_channel": "C0SYNC"},
    "teams": [{"id": "design", "name": "Design", "channel": "C0DESIGN", "members": ["U0ALICE"]},
              {"id": "eng", "name": "Engineering", "channel": "C0ENG"}],
    "boundaries": [{"from": "design", "to": "eng", "steward": "U0STEW", "criteria": ["Spec"]}],
}


def problems(data) -> list[str]:
    with pytest.raises(ProcessConfigError) as exc:
        parse_process(data)
    return exc.value.problems


def test_the_shipped_example_is_valid():
    cfg = load_process(ROOT / "process.example.toml")
    assert cfg.boundary("design", "eng").criteria[0] == "Specification with acceptance criteria"
    assert cfg.model_of(cfg.boundary("eng", "qa")) == "hybrid" and cfg.model_of(cfg.boundary("design", "eng")) == "centralized"


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
    bad.write_text('[organization]\nname = "A"\ndigest_channel = "C0S"\n[[teams]]\nid = "a"\nname = "A"\nchannel = "C0A"\n[[boundaries]]\nfrom = "a"\nto = "nowhere"\nsteward = "U0S"\n')
    r = run("check-config", "--file", str(bad))
    assert r.returncode == 2 and r.stderr.strip().splitlines() == ["boundaries[0].to: no team 'nowhere'"]
    bad.write_text("[organization\n")
    r = run("check-config", "--file", str(bad))
    assert r.returncode == 2 and "not valid TOML" in r.stderr and "Traceback" not in r.stderr
    r = run("check-config", env={"PROCESS_CONFIG": str(tmp_path / "missing.toml")})
    assert r.returncode == 2 and "PROCESS_CONFIG: no file at" in r.stderr


def test_missing_and_invalid_settings_are_one_line_each(tmp_path):
    r = run("serve", env={"PROCESS_CONFIG": str(ROOT / "process.example.toml"), "DATABASE_URL": f"sqlite:///{tmp_path}/x.db"}, cwd=tmp_path)
    assert r.returncode == 2 and r.stderr.strip().splitlines() == ["SLACK_BOT_TOKEN: required but not set", "SLACK_SIGNING_SECRET: required but not set"]
    r = run("serve", env={"SLACK_BOT_TOKEN": "xoxp-user-token", "SLACK_SIGNING_SECRET": "s", "SLACK_API_URL": "ftp://x", "PORT": "99999"}, cwd=tmp_path)
    lines = r.stderr.strip().splitlines()
    assert r.returncode == 2 and "Traceback" not in r.stderr and len(lines) == 3
    assert {line.split(":")[0] for line in lines} == {"SLACK_BOT_TOKEN", "SLACK_API_URL", "PORT"}
    # A secret never appears in what a command prints.
    r = run("serve", env={"SLACK_BOT_TOKEN": "xoxb-very-secret", "SLACK_SIGNING_SECRET": "shh-secret", "DATABASE_URL": "sqlite:///" + str(tmp_path / "x.db"),
                          "PROCESS_CONFIG": str(ROOT / "process.example.toml")}, cwd=tmp_path)
    assert r.returncode == 2 and "migrate" in r.stderr and "very-secret" not in r.stderr + r.stdout and "shh-secret" not in r.stderr


def test_settings_read_dotenv(tmp_path):
    (tmp_path / ".env").write_text("SLACK_API_URL=http://127.0.0.1:9/api\nPORT=4000\n")
    code = "from bot.settings import load_settings; s = load_settings(); print(s.slack_api_url, s.port, s.database_url)"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SLACK_", "PORT", "DATABASE_URL"))}
    env["PYTHONPATH"] = str(ROOT)
    out = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env=env, capture_output=True, text=True, check=True).stdout
    assert out.split() == ["http://127.0.0.1:9/api/", "4000", "sqlite:///steward.db"]


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
    assert set(m["oauth_config"]["scopes"]["bot"]) == {"commands", "chat:write", "chat:write.public", "files:write", "channels:join",
                                                    "channels:history", "groups:history", "im:history", "im:write", "users:read"}
    assert m["features"]["app_home"]["messages_tab_enabled"] is True
    socket = json.loads(run("manifest").stdout)
    assert socket["settings"]["socket_mode_enabled"] is True and "url" not in socket["features"]["slash_commands"][0]
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


def test_demo_works_with_no_slack_and_no_configuration(tmp_path):
    r = cli("demo", "--dir", str(tmp_path / "demo"), env={"PROCESS_CONFIG": "/nowhere.toml", "DATABASE_URL": "postgresql://nobody@127.0.0.1:1/x"}, cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert "sync digest ·" in r.stdout and "Signals" in r.stdout and "Teams" in r.stdout and "Initiative: “" in r.stdout
    written = {p.name for p in (tmp_path / "demo").iterdir()}
    assert {"process.toml", "steward.db"} <= written
    (chart,) = [p for p in (tmp_path / "demo").iterdir() if p.suffix == ".png"]
    (blocks,) = [p for p in (tmp_path / "demo").iterdir() if p.suffix == ".json"]
    assert chart.read_bytes().startswith(b"\x89PNG") and json.loads(blocks.read_text())[0]["blocks"][0]["type"] == "header"
    assert str(tmp_path / "demo") in r.stdout
    # the database it leaves is a real Steward database: the preview command reads it
    month = blocks.stem.removeprefix("digest-")
    again = cli("digest", "--month", month, env={"DATABASE_URL": f"sqlite:///{tmp_path / 'demo' / 'steward.db'}",
                                                 "PROCESS_CONFIG": str(tmp_path / "demo" / "process.toml")})
    assert again.returncode == 0 and again.stdout in r.stdout
