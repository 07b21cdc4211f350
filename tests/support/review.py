"""The matrix review's organisation and moments."""

from __future__ import annotations

import tomllib
from datetime import UTC, datetime
from zoneinfo import ZoneInfo

from bot.domain.core.process import parse_process
from tests.support.data import PROCESS


def config(**org):
    data = tomllib.loads(PROCESS.read_text())
    data["organization"].update(org)
    return parse_process(data), data


def berlin(*args) -> datetime:
    """A moment in Berlin as naive UTC."""

    return datetime(*args, tzinfo=ZoneInfo("Europe/Berlin")).astimezone(UTC).replace(tzinfo=None)
