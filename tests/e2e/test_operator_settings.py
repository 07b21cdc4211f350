"""The operator's settings and commands as an operator runs them (`python -m bot …`): the tuning of `serve`
validated like every other setting, `check-config` telling what a deployment lacks, `demo --dir` where
nothing can be written, and every problem in plain words, one line each, never a traceback."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from bot.entry.settings import Settings
from bot.entry.web import options
from tests.support.data import PROCESS, PULSE
from tests.support.harness import ROOT, Steward, cli, http

PYDANTIC = ("Input should", "Field required", "Extra inputs", "errors.pydantic.dev", "Value error", "validation error")


def settled(r, code: int = 2) -> list[str]:
    """stderr's lines of a command that ended as an operator should see it: `code`, no traceback, none of
    pydantic's own phrases."""
    assert r.returncode == code, (r.returncode, r.stdout, r.stderr)
    assert "Traceback" not in r.stderr + r.stdout, r.stderr
    assert not [p for p in PYDANTIC if p in r.stderr + r.stdout], r.stderr
    return r.stderr.strip().splitlines()


def env(tmp_path: Path, **extra: str) -> dict:
    return {
        "PROCESS_CONFIG": str(ROOT / "process.example.toml"),
        "DATABASE_URL": f"sqlite:///{tmp_path}/x.db",
        **extra,
    }


@pytest.mark.parametrize(
    "name, value, line",
    [
        ("LOG_LEVEL", "loud", "LOG_LEVEL: 'loud' is not a log level: one of DEBUG, INFO, WARNING, ERROR, CRITICAL"),
        ("WEB_CONCURRENCY", "two", "WEB_CONCURRENCY: must be a whole number (it is 'two')"),
        ("WEB_CONCURRENCY", "0", "WEB_CONCURRENCY: at least 1 (it is 0)"),
        ("WEB_CONCURRENCY", "500", "WEB_CONCURRENCY: at most 64 (it is 500)"),
        ("WEB_THREADS", "2.5", "WEB_THREADS: must be a whole number (it is '2.5')"),
        ("WEB_THREADS", "0", "WEB_THREADS: at least 1 (it is 0)"),
        ("HOST", "my host", "HOST: 'my host' is not an IP address or a host name (e.g. 0.0.0.0, 127.0.0.1, ::)"),
        ("HOME_FIGURES_SECONDS", "soon", "HOME_FIGURES_SECONDS: must be a number (it is 'soon')"),
        ("HOME_FIGURES_SECONDS", "-5", "HOME_FIGURES_SECONDS: at least 0 (it is -5)"),
        ("PORT", "http", "PORT: must be a whole number (it is 'http')"),
        ("PORT", "0", "PORT: at least 1 (it is 0)"),
    ],
)
def test_a_bad_tuning_setting_is_one_line_from_check_config_and_serve(tmp_path, name, value, line):
    r = cli("check-config", env=env(tmp_path, **{name: value}), cwd=tmp_path)
    assert settled(r) == [line] and r.stdout == ""
    # serve refuses it before it looks at anything else (no Slack, no database is reached)
    r = cli(
        "serve",
        env=env(
            tmp_path,
            **{name: value},
            SLACK_BOT_TOKEN="xoxb-1",
            SLACK_SIGNING_SECRET="s",
            SLACK_API_URL="http://127.0.0.1:9/api/",
        ),
        cwd=tmp_path,
    )
    assert settled(r) == [line]


def test_every_bad_setting_at_once_and_no_secret_is_echoed(tmp_path):
    r = cli(
        "check-config",
        env=env(
            tmp_path,
            LOG_LEVEL="verbose",
            WEB_THREADS="many",
            PULSE_SECRET="short-secret",
            SLACK_BOT_TOKEN="xoxp-a-user-token",
        ),
        cwd=tmp_path,
    )
    lines = settled(r)
    assert sorted(line.split(":")[0] for line in lines) == [
        "LOG_LEVEL",
        "PULSE_SECRET",
        "SLACK_BOT_TOKEN",
        "WEB_THREADS",
    ]
    assert "short-secret" not in r.stderr and "xoxp-a-user-token" not in r.stderr


def test_good_tuning_values_are_taken_in_the_forms_an_operator_writes(tmp_path):
    r = cli(
        "check-config",
        env=env(tmp_path, LOG_LEVEL=" debug ", WEB_CONCURRENCY="3", WEB_THREADS="4", HOST="::1"),
        cwd=tmp_path,
    )
    assert settled(r, 0) == [] and r.stdout.startswith("Acme:")


def test_commands_that_read_no_settings_are_not_stopped_by_bad_tuning(tmp_path):
    """gunicorn reads WEB_CONCURRENCY with int() when it is imported: only `serve` imports it, once the
    setting is checked, so `manifest` (and `check-config --file`, `demo`) run whatever the environment says."""
    bad = {"WEB_CONCURRENCY": "two", "LOG_LEVEL": "loud", "WEB_THREADS": "x"}
    r = cli("manifest", env=bad, cwd=tmp_path)
    assert settled(r, 0) == [] and '"display_information"' in r.stdout
    r = cli("check-config", "--file", str(ROOT / "process.example.toml"), env=bad, cwd=tmp_path)
    assert settled(r, 0) == [] and r.stdout.startswith("Acme:")


def _workers(pid: int) -> int:
    """How many processes `pid` (gunicorn's master: `serve` itself) has forked and still runs."""
    count = 0
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            count += int(stat.rsplit(")", 1)[1].split()[1]) == pid
    return count


def test_serve_runs_gunicorn_with_the_validated_tuning(_migrated, _fake):
    """WEB_CONCURRENCY=1.0 is a whole number to the settings but not to int(): gunicorn, which reads it when
    imported, must get the validated 1, and run one worker, not its own default or a traceback."""
    server = Steward(_migrated.url, _fake.url, PROCESS, extra_env={"WEB_CONCURRENCY": "1.0"}).start()
    try:
        assert http(server.url + "/healthz").status == 200
        deadline = time.monotonic() + 10
        while _workers(server.proc.pid) != 1 and time.monotonic() < deadline:
            time.sleep(0.1)
        assert _workers(server.proc.pid) == 1
        assert "Traceback" not in server.output()
    finally:
        server.stop()


# -- check-config and PULSE_SECRET ---------------------------------------------------------------------


def test_check_config_says_a_pulse_needs_pulse_secret_when_it_is_unset(tmp_path):
    r = cli("check-config", env=env(tmp_path, PROCESS_CONFIG=str(PULSE), PULSE_SECRET=""), cwd=tmp_path)
    lines = settled(r)
    assert len(lines) == 1 and lines[0].startswith("PULSE_SECRET: required when the process configuration has [pulse]")
    assert r.stdout.splitlines()[-1].startswith("pulse: on;") and r.stdout.rstrip().endswith("PULSE_SECRET not set")

    r = cli("check-config", env=env(tmp_path, PROCESS_CONFIG=str(PULSE), PULSE_SECRET="x" * 32), cwd=tmp_path)
    assert settled(r, 0) == [] and r.stdout.rstrip().endswith("PULSE_SECRET set")

    # with --file no setting is read: it says the secret is needed, and that it did not look
    r = cli("check-config", "--file", str(PULSE), env={"PULSE_SECRET": ""}, cwd=tmp_path)
    assert settled(r, 0) == [] and r.stdout.rstrip().endswith(
        "needs PULSE_SECRET (not checked: with --file no setting is read)"
    )


def test_check_config_needs_no_pulse_secret_without_a_pulse_or_with_it_off(tmp_path):
    r = cli("check-config", env=env(tmp_path), cwd=tmp_path)
    assert settled(r, 0) == [] and r.stdout.rstrip().endswith("pulse: off (no [pulse])")
    off = tmp_path / "off.toml"
    off.write_text(PULSE.read_text().replace("[pulse]", "[pulse]\nenabled = false", 1))
    r = cli("check-config", env=env(tmp_path, PROCESS_CONFIG=str(off)), cwd=tmp_path)
    assert settled(r, 0) == [] and "pulse: off (enabled = false)" in r.stdout
    assert r.stdout.rstrip().endswith("PULSE_SECRET not needed while off")
    r = cli("check-config", "--file", str(off), cwd=tmp_path)
    assert settled(r, 0) == [] and r.stdout.rstrip().endswith("PULSE_SECRET not needed while off")


# -- demo --dir ------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "where, why",
    [
        ("file/inside", "Not a directory"),
        ("file", "a file is there, not a directory"),
    ],
)
def test_demo_into_a_directory_that_cannot_be_made_is_one_line(tmp_path, where, why):
    (tmp_path / "file").write_text("in the way")
    target = tmp_path / where
    r = cli("demo", "--dir", str(target), cwd=tmp_path)
    assert settled(r) == [f"--dir: cannot write the demo to {target}: {why}"]
    assert r.stdout == ""


def test_demo_into_an_unwritable_directory_is_one_line(tmp_path):
    target = "/proc/steward-demo"  # /proc takes no new directory, not even from root
    r = cli("demo", "--dir", target, cwd=tmp_path)
    lines = settled(r)
    assert len(lines) == 1 and lines[0].startswith(f"--dir: cannot write the demo to {target}: ")


def test_gunicorn_is_configured_from_the_validated_settings():
    """What `serve` hands gunicorn: HOST and PORT as its bind (an IPv6 address in brackets), the workers,
    threads and log level as validated (the environment is not read again)."""
    s = Settings(_env_file=None, host="::1", port=8080, web_concurrency="3", web_threads=4, log_level="warning")
    o = options(s)
    assert (o["bind"], o["workers"], o["threads"], o["loglevel"]) == ("[::1]:8080", 3, 4, "warning")
    assert options(Settings(_env_file=None, host="127.0.0.1", port=3000))["bind"] == "127.0.0.1:3000"
