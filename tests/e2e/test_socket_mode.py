"""Socket Mode through Slack's protocol: `python -m bot serve` with SLACK_APP_TOKEN, against the fake Web
API (`apps.connections.open` answers the URL of a fake Socket Mode server on loopback, tests/support/socket_fake.py).

The connection Slack keeps open can end without a WebSocket close frame (a proxy, a NAT, a network that
gives up): Steward must notice, ask for a new URL and reconnect at once, without spinning a core while it
does. A token Slack refuses ends `serve` with one line naming the variable, as for the bot token.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from storage.db import Database
from storage.migrate import upgrade
from tests.support.data import PROCESS
from tests.support.harness import ROOT, TOKEN
from tests.support.socket_fake import Connection, FakeSocketMode

APP_TOKEN = "xapp-1-A0STEWARD-1-fake"
TICK = os.sysconf("SC_CLK_TCK")


@pytest.fixture
def database(tmp_path) -> str:
    url = f"sqlite:///{tmp_path / 'steward.db'}"
    db = Database(url)
    upgrade(db.engine)
    db.dispose()
    return url


def environment(fake, database: str, log_level: str = "INFO") -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SLACK_")}
    env.update(
        SLACK_BOT_TOKEN=TOKEN,
        SLACK_APP_TOKEN=APP_TOKEN,
        SLACK_API_URL=fake.url,
        DATABASE_URL=database,
        PROCESS_CONFIG=str(PROCESS),
        LOG_LEVEL=log_level,
    )
    return env


def cpu_seconds(pid: int) -> float:
    """User and system CPU time of the process so far, every thread included."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICK  # utime and stime, the 14th and 15th fields


def slash_command(conn: Connection, envelope: str, text: str) -> dict:
    """Send `/handoff TEXT` as Socket Mode carries it; the app's ack for that envelope."""
    conn.send(
        {
            "envelope_id": envelope,
            "type": "slash_commands",
            "accepts_response_payload": True,
            "payload": {
                "token": "legacy",
                "team_id": "T0ACME",
                "team_domain": "acme",
                "channel_id": "C0WORK",
                "channel_name": "work",
                "user_id": "U0ALICE",
                "user_name": "alice",
                "command": "/handoff",
                "text": text,
                "api_app_id": "A0STEWARD",
                "is_enterprise_install": "false",
                "response_url": "https://hooks.slack.invalid/commands/1",
                "trigger_id": f"trigger-{envelope}",
            },
        }
    )
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        message = conn.next_message(timeout=deadline - time.monotonic())
        if message.get("envelope_id") == envelope:
            return message
    raise AssertionError(f"no ack for {envelope}")


def test_reconnects_at_once_after_the_connection_drops_without_a_close_frame(fake, database, tmp_path):
    server = FakeSocketMode()
    fake.socket_url = server.url
    log = tmp_path / "serve.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "bot", "serve"],
            cwd=ROOT,
            env=environment(fake, database),
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    try:
        first = server.wait_for_connection(1, timeout=60)
        assert first is not None, log.read_text()
        ack = slash_command(first, "e1", "help")
        assert "/handoff" in json.dumps(ack["payload"]), ack  # served end to end through the socket

        cpu, start = cpu_seconds(proc.pid), time.monotonic()
        first.drop()
        second = server.wait_for_connection(2, timeout=10)
        reconnected = time.monotonic() - start
        assert second is not None, f"no reconnection within 10 s:\n{log.read_text()}"
        ack = slash_command(second, "e2", "help")  # and the new connection serves
        assert "/handoff" in json.dumps(ack["payload"]), ack
        # events come over the socket too: opening the App Home publishes it
        second.send(
            {
                "envelope_id": "e3",
                "type": "events_api",
                "accepts_response_payload": False,
                "retry_attempt": 0,
                "retry_reason": "",
                "payload": {
                    "token": "legacy",
                    "team_id": "T0ACME",
                    "api_app_id": "A0STEWARD",
                    "type": "event_callback",
                    "event_id": "Ev0SOCKETHOME",
                    "event_time": int(time.time()),
                    "event": {
                        "type": "app_home_opened",
                        "user": "U0ALICE",
                        "channel": "D0ALICE",
                        "tab": "home",
                        "event_ts": f"{time.time():.6f}",
                    },
                },
            }
        )
        published = fake.wait("views.publish", 1, timeout=15)
        assert published[0].args["user_id"] == "U0ALICE" and "Waiting for you" in json.dumps(published[0].args), (
            published[0].args
        )
        wall, used = time.monotonic() - start, cpu_seconds(proc.pid) - cpu
        assert proc.poll() is None, log.read_text()
        assert reconnected < 10
        assert used < wall / 2, f"{used:.2f} s of CPU in {wall:.2f} s: a busy loop"
        print(
            f"reconnected in {reconnected:.2f} s; CPU {used:.3f} s over {wall:.2f} s;"
            f" {len(fake.of('apps.connections.open'))} URLs, {len(server.connections)} connections"
        )
        assert len(fake.of("apps.connections.open")) >= 2  # a new URL for the new connection, as Slack wants

        proc.terminate()  # SIGTERM: a clean stop, as a platform stops a dyno
        assert proc.wait(timeout=15) == 0, log.read_text()
        output = log.read_text()
        assert "Traceback" not in output and "will be unused" not in output, output
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        server.close()


def test_a_refused_app_token_ends_serve_with_one_line(fake, database):
    fake.fail("apps.connections.open", "invalid_auth")
    r = subprocess.run(
        [sys.executable, "-m", "bot", "serve"],
        cwd=ROOT,
        env=environment(fake, database, "WARNING"),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert r.returncode == 2, r.stderr
    assert r.stderr.strip().splitlines() == ["SLACK_APP_TOKEN: Slack refused it (invalid_auth)"]
    assert r.stdout == ""
    # and the bot token, as before
    fake.fail("auth.test", "invalid_auth")
    r = subprocess.run(
        [sys.executable, "-m", "bot", "serve"],
        cwd=ROOT,
        env=environment(fake, database, "WARNING"),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert r.returncode == 2 and r.stderr.strip().splitlines() == ["SLACK_BOT_TOKEN: Slack refused it (invalid_auth)"]
