"""Months and due times, in the organisation's calendar. No Slack, no database.

A period is a calendar month written `YYYY-MM`. Its digest is due at the first firing of
`[schedule].digest` in the following month; the initiative prompt `initiative_prompt_days` before that.
Datetimes are naive UTC, like everything stored.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

from apscheduler.triggers.cron import CronTrigger

from bot.domain.core.process import ProcessConfig

PERIOD = re.compile(r"^(\d{4})-(0[1-9]|1[0-2])$")


def parse_period(text: str) -> tuple[int, int]:
    match = PERIOD.match(text or "")
    if not match:
        raise ValueError(f"{text!r} is not a month (YYYY-MM)")
    return int(match.group(1)), int(match.group(2))


def shift(period: str, months: int) -> str:
    year, month = parse_period(period)
    index = year * 12 + (month - 1) + months
    return f"{index // 12:04d}-{index % 12 + 1:02d}"


def _local_start(period: str, tz: ZoneInfo) -> datetime:
    year, month = parse_period(period)
    return datetime(year, month, 1, tzinfo=tz)


def _naive_utc(moment: datetime) -> datetime:
    return moment.astimezone(UTC).replace(tzinfo=None)


def bounds(period: str, tz: ZoneInfo) -> tuple[datetime, datetime]:
    """The month as [start, end) in naive UTC."""
    return _naive_utc(_local_start(period, tz)), _naive_utc(_local_start(shift(period, 1), tz))


def period_of(moment: datetime, tz: ZoneInfo) -> str:
    local = moment.replace(tzinfo=UTC).astimezone(tz)
    return f"{local.year:04d}-{local.month:02d}"


def label(period: str) -> str:
    year, month = parse_period(period)
    return datetime(year, month, 1).strftime("%B %Y")


def short_label(period: str) -> str:
    year, month = parse_period(period)
    return datetime(year, month, 1).strftime("%b %Y")


def digest_due(cfg: ProcessConfig, period: str) -> datetime:
    """When the digest for `period` is due: the schedule's first firing in the next month."""
    tz = cfg.organization.tz
    trigger = CronTrigger.from_crontab(cfg.schedule.digest, timezone=tz)
    start = _local_start(shift(period, 1), tz)
    return _naive_utc(trigger.get_next_fire_time(None, start))


def prompt_due(cfg: ProcessConfig, period: str) -> datetime:
    return digest_due(cfg, period) - timedelta(days=cfg.schedule.initiative_prompt_days)


def due_digests(cfg: ProcessConfig, now: datetime) -> list[str]:
    """Digests due by `now` and not more than `catch_up_days` late, oldest first."""
    late = timedelta(days=cfg.schedule.catch_up_days)
    current = period_of(now, cfg.organization.tz)
    periods = [shift(current, -2), shift(current, -1)]
    return [p for p in periods if digest_due(cfg, p) <= now <= digest_due(cfg, p) + late]


def due_prompts(cfg: ProcessConfig, now: datetime) -> list[str]:
    """Initiative prompts due by `now` whose digest has not come yet (a prompt after it is pointless)."""
    current = period_of(now, cfg.organization.tz)
    return [p for p in (shift(current, -1), current) if prompt_due(cfg, p) <= now < digest_due(cfg, p)]
