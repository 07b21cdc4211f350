"""What listeners, renderers and jobs share: the process configuration, the database, the clock, and the
way to send what the outbox holds. Bolt passes it to every listener in its context (`context["deps"]`)."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from datetime import datetime

from bot.process import ProcessConfig
from bot.time import utcnow
from storage.db import Database


class Deps:
    """`cfg` is the configuration as it stands now: the file's, each team's members completed with those
    its Slack user group or channel gave at the last refresh (`bot.members.Roster`), so every rule uses the
    current members in every process without a restart. `base_cfg` is the file as written."""

    def __init__(self, cfg: ProcessConfig, db: Database, now: Callable[[], datetime] = utcnow,
                 deliver: Callable[[Iterable[str]], object] = lambda keys: None, sealer: object | None = None):
        from bot.members import Roster

        self.base_cfg, self.db, self.now, self.deliver = cfg, db, now, deliver
        self.sealer = sealer  # bot.pulse.Sealer, from PULSE_SECRET, when the process has a [pulse]
        self.roster = Roster(cfg, db)

    @property
    def cfg(self) -> ProcessConfig:
        return self.roster.current()
