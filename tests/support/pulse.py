"""The pulse served for real: its configuration, its secret, its weeks and the `run-job pulse` CLI."""

from __future__ import annotations

import time
from datetime import UTC, date, datetime, timedelta

from bot.domain import pulse
from bot.domain.core.timeutil import utcnow
from tests.support.data import PULSE
from tests.support.harness import TOKEN, cli

CONFIG = PULSE


SECRET = "pulse-test-secret-0123456789abcdef"


ZONES = {
    "U0TOKYO": "Asia/Tokyo",
    "U0LA": "America/Los_Angeles",
    "U0ALICE": "Europe/Berlin",
    "U0BOB": "Europe/Berlin",
    "U0AMY": "",
    "U0OPS": "Europe/Berlin",
}


def env(db, fake, **extra) -> dict:
    return {
        "SLACK_BOT_TOKEN": TOKEN,
        "SLACK_API_URL": fake.url,
        "DATABASE_URL": db.url,
        "PROCESS_CONFIG": str(CONFIG),
        "PULSE_SECRET": SECRET,
        "LOG_LEVEL": "INFO",
        **extra,
    }


def monday(weeks_ahead: int = 1) -> date:
    """A Monday `weeks_ahead` weeks from now (negative: in the past)."""
    today = utcnow().date()
    return today - timedelta(days=today.weekday()) + timedelta(days=7 * weeks_ahead)


def at(day: date, hour: int, minute: int = 0, plus_days: int = 0) -> str:
    """A UTC moment as `--now` takes it."""
    moment = datetime(day.year, day.month, day.day, hour, minute, tzinfo=UTC) + timedelta(days=plus_days)
    return moment.isoformat()


def job(db, fake, now: str, **extra) -> str:
    r = cli("run-job", "pulse", "--now", now, env=env(db, fake, **extra))
    assert r.returncode == 0, r.stdout + r.stderr
    assert "Traceback" not in r.stderr, r.stderr
    return r.stdout


def week_of(day: date) -> str:
    return pulse.week_id(day)


def click(app, fake, user: str, action: str, value: str):
    dm = fake.messages(user)[0]
    r = app.click(user, action, value, channel=dm["channel"], message_ts=dm["ts"])
    assert r.status == 200, r.raw
    return r


def confirmed(fake, user: str) -> str:
    """The private confirmations (ephemeral messages) the person got, in order: where their choice is said,
    since the DM, kept in Slack's history, never shows it."""
    return "\n".join(str(c.args.get("text") or "") for c in fake.of("chat.postEphemeral") if c.args.get("user") == user)


def wait_for(predicate, timeout: float = 10.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.05)
    raise AssertionError("condition not met in time")
