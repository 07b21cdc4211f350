"""The one wiring module: where Steward's parts are assembled for a process (the web app, the clock, the CLI).

- `wire()` registers the domain events' subscribers (`bot.domain.core.events`): who reacts to a decision.
  Every process calls it through `Deps`; publishing before it fails loudly (`events.NotWired`).
- `Deps`: what listeners, renderers and jobs share: the process configuration, the database, the clock,
  and the way to send what the outbox holds. Bolt passes it to every listener in its context
  (`context["deps"]`).
- `settings`, `process`, `database`, `sealer`, `slack`, `deliverer`, `build`: each piece from the
  environment, checked, a problem raised as `Fail` (one line each, never a traceback).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable
from datetime import datetime

import handlers
from bot.domain import home
from bot.domain.core import events, timeutil
from bot.domain.core.process import ProcessConfig, ProcessConfigError, load_process
from bot.domain.core.timeutil import utcnow
from bot.domain.members import Roster
from bot.domain.pulse import Sealer
from bot.entry.app import create_app
from bot.entry.settings import SettingsError, load_settings
from handlers.client import make_client
from storage.db import Database
from storage.migrate import current, head

WEB_DB_WAIT = 1.2  # seconds a request may wait for a database lock: an answer within Slack's 3 s either way


def wire(bus: events.Bus | None = None) -> events.Bus:
    """Register every domain event's subscribers, once per process (again: nothing changes). Default: the
    process's bus as it is when called."""
    bus = bus or events.bus
    bus.subscribe(events.HandoffChanged, home.on_handoff)
    bus.subscribe(events.FastTrackChanged, home.on_fasttrack)
    bus.subscribe(events.MembersChanged, home.on_members)
    bus.seal()
    return bus


class Deps:
    """`cfg` is the configuration as it stands now: the file's, each team's members completed with those
    its Slack user group or channel gave at the last refresh (`bot.domain.members.Roster`), so every rule uses the
    current members in every process without a restart. `base_cfg` is the file as written."""

    def __init__(
        self,
        cfg: ProcessConfig,
        db: Database,
        now: Callable[[], datetime] = utcnow,
        deliver: Callable[[Iterable[str]], object] = lambda keys: None,
        sealer: object | None = None,
    ):
        self.base_cfg, self.db, self.now, self.deliver = cfg, db, now, deliver
        self.sealer = sealer  # bot.domain.pulse.Sealer, from PULSE_SECRET, when the process has a [pulse]
        self.roster = Roster(cfg, db)
        wire()

    @property
    def cfg(self) -> ProcessConfig:
        return self.roster.current()


class Fail(Exception):
    """Exit non-zero with these lines on stderr."""

    def __init__(self, *lines: str, code: int = 2):
        super().__init__("\n".join(lines))
        self.lines, self.code = lines, code


def settings(*required: str):
    try:
        return load_settings(*required)
    except SettingsError as exc:
        raise Fail(*exc.problems) from None


def process(path: str, source: str = "PROCESS_CONFIG"):
    try:
        return load_process(path, source)
    except ProcessConfigError as exc:
        raise Fail(*exc.problems) from None


def database(url: str, need_schema: bool = True, connect: bool = True, wait: float | None = None):
    """The database at `url`, checked: reachable, and (with `need_schema`) at the latest migration.
    With `connect=False` nothing touches the server: the engine connects lazily, on first use."""
    try:
        db = Database(url, wait=wait)
    except Exception as exc:  # a malformed URL or a missing driver
        raise Fail(f"DATABASE_URL: cannot use it: {exc}") from None
    if not connect:
        return db
    where = db.engine.url.render_as_string(hide_password=True)
    path = db.engine.url.database if db.is_sqlite else None
    if need_schema and path not in (None, "", ":memory:") and not path.startswith("file:") and not os.path.exists(path):
        db.dispose()  # SQLite would create an empty file on the first connection: nothing to read, and it misleads
        raise Fail(f"DATABASE_URL: no database at {path} yet: run `python -m bot migrate` first")
    if not db.ping():
        raise Fail(f"DATABASE_URL: cannot connect to {where}")
    if need_schema and current(db.engine) != head():
        at = current(db.engine)
        db.dispose()
        raise Fail(
            f"DATABASE_URL: {where} has no Steward schema yet: run `python -m bot migrate` first"
            if at is None
            else f"DATABASE_URL: the schema is at {at}, not {head()}: run `python -m bot migrate` first"
        )
    return db


def slack(settings):
    """The Slack Web API client, once SLACK_BOT_TOKEN is set."""
    problems = settings.missing("slack_bot_token")
    if problems:
        raise Fail(*problems)
    return make_client(settings)


def deliverer(settings, cfg, db, now):
    """The outbox's deliverer: messages drawn as of `now` (a rehearsal's clock), but leases, back-offs
    and Retry-After kept in real time, which other processes share."""
    return handlers.deliverer(
        Deps(cfg=cfg, db=db, now=now, sealer=sealer(settings, cfg)), slack(settings), now=timeutil.utcnow
    )  # looked up when called: a rehearsal may move it


def sealer(settings, cfg):
    """The pulse's keyed hashes, from PULSE_SECRET: required when the process configuration has [pulse]."""
    secret = settings.pulse_secret.get_secret_value() if settings.pulse_secret else ""
    if not secret:
        if cfg.pulse_on:
            raise Fail(
                "PULSE_SECRET: required when the process configuration has [pulse] (it keys the survey's"
                " answers so the database alone cannot tell whose they are); e.g. `python -c 'import secrets; print(secrets.token_hex(32))'`"
            )
        return None
    return Sealer(secret)


def build(settings):
    """The process configuration, the database and the Bolt app, as `serve` runs them. It does not
    connect to the database: `serve` checks it (and the schema) once before it starts, and a web worker
    that (re)starts while the database is down must still boot, answering 503 on /healthz until it is back."""
    cfg = process(settings.process_config)
    db = database(settings.database_url, connect=False, wait=WEB_DB_WAIT)
    return create_app(settings, Deps(cfg=cfg, db=db, sealer=sealer(settings, cfg))), db
