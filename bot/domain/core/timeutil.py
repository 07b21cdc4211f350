"""Time as the whole code base keeps it: naive UTC datetimes; and the organisation's calendar date."""

from __future__ import annotations

from datetime import UTC, date, datetime


def utcnow() -> datetime:
    return datetime.now(UTC).replace(tzinfo=None)


def local_today(cfg, now: datetime | None = None) -> date:
    """Today's date in the organisation's time zone (`cfg.organization.tz`; `now` is naive UTC, or aware)."""
    now = now or utcnow()
    aware = now.replace(tzinfo=UTC) if now.tzinfo is None else now
    return aware.astimezone(cfg.organization.tz).date()
