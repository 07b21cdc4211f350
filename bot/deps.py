"""What listeners, renderers and jobs share: the process configuration, the database, the clock, and the
way to send what the outbox holds. Bolt passes it to every listener in its context (`context["deps"]`)."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime

from bot.process import ProcessConfig
from bot.time import utcnow
from storage.db import Database


@dataclass
class Deps:
    cfg: ProcessConfig
    db: Database
    now: Callable[[], datetime] = field(default=utcnow)
    deliver: Callable[[Iterable[str]], object] = field(default=lambda keys: None)  # outbox keys to send now
    sealer: object | None = None  # bot.pulse.Sealer, from PULSE_SECRET, when the process has a [pulse]
