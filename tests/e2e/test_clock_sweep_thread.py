"""The clock's outbox sweep runs on its own schedule whatever else the clock does (issue #18 §2): with the
catch-up tick waiting on users.list's Retry-After (the pulse's time zones) and the members refresh waiting on
usergroups.users.list's, a message written meanwhile is still delivered within seconds. `python -m bot clock`
in a subprocess against the fake Slack."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from datetime import UTC, datetime

from bot.domain.core import outbox
from bot.domain.core.outbox import POST, Message
from bot.domain.core.timeutil import utcnow
from tests.support.data import PROCESS
from tests.support.harness import ROOT, TOKEN

PULSE = (
    '\n[pulse]\nsend_at = "mon 10:00"\nmin_group = 3\nremind_after_days = 2\nopen_days = 5\nteams = ["design", "eng"]\n'
)


def until(check, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.1)


def test_the_sweep_delivers_while_both_other_threads_wait_on_retry_after(db, fake, tmp_path):
    config = tmp_path / "process.toml"
    config.write_text(PROCESS.read_text() + PULSE)
    fake.rate_limit("users.list", retry_after=60, times=50)  # the tick: the pulse's time zones
    fake.rate_limit("usergroups.users.list", retry_after=60, times=50)  # the members refresh: Quality's group
    env = {k: v for k, v in os.environ.items() if not k.startswith("SLACK_")}
    env.update(
        SLACK_BOT_TOKEN=TOKEN,
        SLACK_API_URL=fake.url,
        DATABASE_URL=db.url,
        PROCESS_CONFIG=str(config),
        PULSE_SECRET="test-only-pulse-secret-of-some-length",
        LOG_LEVEL="WARNING",
    )
    log = open(tmp_path / "clock.log", "wb")
    clock = subprocess.Popen(
        [sys.executable, "-m", "bot", "clock", "--now", datetime.now(UTC).isoformat()],
        cwd=ROOT,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        until(lambda: fake.of("users.list"), 60, "the tick to ask for the time zones")
        until(lambda: fake.of("usergroups.users.list"), 90, "the members refresh to ask for Quality's group")
        time.sleep(1)  # both waiting out their Retry-After (60 s)
        message = {"text": "while the others wait", "blocks": []}
        outbox.put(db, [Message("t:meanwhile", "test:1", POST, "C0ENG", "static", {"message": message})], utcnow())
        until(lambda: fake.posted("t:meanwhile") == 1, 12, "the sweep to deliver it")
        assert clock.poll() is None, (tmp_path / "clock.log").read_text()
    finally:
        clock.kill()
        clock.wait(10)
        log.close()
