"""Steward's processes in a subprocess (`python -m bot clock`), and the environment they run with."""

from __future__ import annotations

import subprocess
import sys
import time

from tests.support.data import PROCESS
from tests.support.harness import ROOT, TOKEN


def env(db, fake, **extra) -> dict:
    return {
        "SLACK_BOT_TOKEN": TOKEN,
        "SLACK_API_URL": fake.url,
        "DATABASE_URL": db.url,
        "PROCESS_CONFIG": str(PROCESS),
        "LOG_LEVEL": "WARNING",
        **extra,
    }


class Clock:
    """`python -m bot clock` in a subprocess, believing it started at `now`."""

    def __init__(self, db, fake, now: str, tmp_path, name: str):
        self.log_path = tmp_path / f"clock-{name}.log"
        self.log = open(self.log_path, "wb")
        full = {k: v for k, v in __import__("os").environ.items() if not k.startswith("SLACK_")}
        full.update(env(db, fake, LOG_LEVEL="INFO"))
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "bot", "clock", "--now", now],
            cwd=ROOT,
            env=full,
            stdout=self.log,
            stderr=subprocess.STDOUT,
        )

    def output(self) -> str:
        return self.log_path.read_text(errors="replace")

    def wait_for(self, text: str, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if text in self.output():
                return
            if self.proc.poll() is not None:
                raise AssertionError(f"clock exited {self.proc.returncode}: {self.output()}")
            time.sleep(0.1)
        raise AssertionError(f"clock never logged {text!r}: {self.output()}")

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(15)
        except subprocess.TimeoutExpired:
            self.proc.kill()
        self.log.close()
