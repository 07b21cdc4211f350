"""The clock: scheduled jobs and the process that runs them (`python -m bot clock`).

Every side effect is a row of the outbox (`bot.outbox`), keyed by what it is (`digest:2026-10:C0SYNC:1`,
`prompt:2026-11:eng`) and delivered by `bot.delivery`, so a rerun, a restart or a second clock sends
nothing twice, and a missed run is caught up by the next tick.

- `digest`: the monthly cross-team sync digest for a month, to `organization.digest_channel`: the first
  message, what did not fit as thread replies, and the trend chart uploaded in the thread.
- `initiative-prompt`: each team's channel is asked for its improvement initiative for the month.
- `catch-up`: whatever of the two is due and not yet done; the clock runs it when it starts and on
  every tick.
- `escalations`: every handoff and fast-track request whose wait passed a level of its escalation path
  (in working time only); the catch-up tick runs it too.
- `outbox`: deliver whatever the outbox holds that is due (a 429's Retry-After passed, a back-off, a
  deliverer that died); the clock sweeps every few seconds.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from datetime import datetime, timedelta, timezone

from bot import digest, escalations, outbox, schedule
from bot.initiatives import prompt_key
from bot.delivery import WAIT_FOR_ANCHOR, Deliverer
from bot.outbox import POST, UPLOAD, Message
from bot.process import ProcessConfig
from handlers import digest as slack_digest
from storage.db import Database
from storage.models import OutboxStatus

log = logging.getLogger("steward")
DIGEST = "digest"
PROMPT = "initiative-prompt"
CATCH_UP = "catch-up"
OUTBOX = "outbox"
ESCALATIONS = "escalations"
JOBS = (DIGEST, PROMPT, CATCH_UP, OUTBOX, ESCALATIONS)


@dataclass
class Run:
    """One run of a job: what it needs, and what it did (for the CLI and the log)."""

    cfg: ProcessConfig
    db: Database
    deliverer: Deliverer
    now: datetime
    force: bool = False  # an operator's run retries refused messages now
    done: list[str] = field(default_factory=list)
    failures: int = 0
    report: Callable[[str], None] = log.info  # where each line goes as it is said (`run-job`: the terminal)

    def say(self, line: str) -> None:
        self.report(line)
        self.done.append(line)

    def deliver(self, keys: list[str], what: str, patience: float = 15.0) -> int:
        """Send these rows in order (a thread's replies after its first message); count what went out
        and say what did not. A reply whose first message another process is sending right now is
        tried again for a few seconds, rather than left for the next sweep."""
        self.deliverer.send_now(keys)
        give_up = time.monotonic() + patience
        while time.monotonic() < give_up:
            rows = {r.key: r for r in map(partial(outbox.get, self.db), keys) if r is not None}
            waiting = [r.key for r in rows.values() if r.status == OutboxStatus.PENDING and (r.error or "").startswith("waiting for")
                       and getattr(rows.get(r.anchor) or outbox.get(self.db, r.anchor or ""), "status", None) == OutboxStatus.SENDING]
            if not waiting:
                break
            time.sleep(WAIT_FOR_ANCHOR.total_seconds() + 0.1)
            self.deliverer.send_now(waiting)
        rows = [outbox.get(self.db, key) for key in keys]
        for row in rows:
            if row is not None and row.status in (OutboxStatus.FAILED, OutboxStatus.UNKNOWN):
                self.failures += 1
                self.say(f"{what} → {row.channel}: {row.status} ({row.error}); see `python -m bot outbox`")
        return sum(1 for row in rows if row is not None and row.status == OutboxStatus.SENT)


def digest_key(period: str, channel: str, part: str | int) -> str:
    return f"digest:{period}:{channel}:{part}"


def run_digest(run: Run, period: str) -> None:
    """The month's digest to the digest channel: the first message, what did not fit as thread
    replies, the trend chart in the thread. Written to the outbox once (the figures as they are when it
    is first written), then delivered; a later run delivers what is still due and writes nothing again."""
    cfg, db = run.cfg, run.db
    channel = cfg.organization.digest_channel
    first, chart = digest_key(period, channel, 1), digest_key(period, channel, "chart")
    row = outbox.get(db, chart)
    if row is not None and row.status == OutboxStatus.SENT:  # the chart goes last: every message before it is out
        run.say(f"digest {period}: already posted to {channel}, nothing sent")
        return
    if row is None:  # not written yet (or only in part, before an upgrade): write what is missing
        parts = slack_digest.messages(digest.compose(db, cfg, period))
        messages = [Message(digest_key(period, channel, i), f"digest:{period}", POST, channel, "static",
                            {"message": m}, anchor=first if i > 1 else None) for i, m in enumerate(parts, 1)]
        messages.append(Message(chart, f"digest:{period}", UPLOAD, channel, "digest_chart", {"period": period}, anchor=first))
        outbox.put(db, messages, run.now)
        digest.record_headcount(db, cfg, period)
    if run.force:
        outbox.reopen(db, f"digest:{period}", run.now)
    rows = outbox.of_item(db, f"digest:{period}")
    before = {r.key for r in rows if r.status == OutboxStatus.SENT}
    run.deliver([r.key for r in rows], f"digest {period}")
    now_sent = {r.key for r in outbox.of_item(db, f"digest:{period}") if r.status == OutboxStatus.SENT} - before
    posted = len(now_sent - {chart})
    if posted:
        run.say(f"digest {period}: posted {posted} message{'s' if posted != 1 else ''} to {channel}")
    if chart in now_sent:
        run.say(f"digest {period}: trend chart uploaded to {channel}")
    elif not now_sent and chart in before:
        run.say(f"digest {period}: already posted to {channel}, nothing sent")
    waiting = [r for r in outbox.of_item(db, f"digest:{period}") if r.status in (OutboxStatus.PENDING, OutboxStatus.SENDING)]
    if waiting:
        run.say(f"digest {period}: {len(waiting)} part{'s' if len(waiting) != 1 else ''} not sent yet ({waiting[0].error or 'in progress'});"
                " the clock's outbox sweep retries, or run this again")


def run_prompts(run: Run, period: str) -> None:
    """Each team's channel is asked for its improvement initiative for the month."""
    cfg, db = run.cfg, run.db
    messages = [Message(prompt_key(period, t.id), f"prompt:{period}", POST, t.channel, "initiative_prompt",
                        {"team": t.id, "period": period}) for t in cfg.teams]
    keys = outbox.put(db, messages, run.now)
    if run.force:
        outbox.reopen(db, f"prompt:{period}", run.now)
    before = {r.key for r in outbox.of_item(db, f"prompt:{period}") if r.status == OutboxStatus.SENT}
    run.deliver([k for k in keys if k not in before], f"initiative prompt {period}")
    sent = sum(1 for r in outbox.of_item(db, f"prompt:{period}") if r.status == OutboxStatus.SENT and r.key not in before)
    run.say(f"initiative prompts {period}: {sent} sent" + (f" of {len(cfg.teams)}" if sent != len(cfg.teams) else ""))


def run_outbox(run: Run) -> None:
    """Deliver whatever the outbox holds that is due (the clock does this every few seconds)."""
    done = run.deliverer.sweep(max_seconds=50)
    if done:
        run.say("outbox: " + ", ".join(f"{n} {what}" for what, n in sorted(done.items())))


def run_escalations(run: Run) -> None:
    """Every handoff or fast-track whose wait passed a level of its escalation path, in working time."""
    keys = escalations.sweep(run.db, run.cfg, run.now)
    if keys:
        run.deliver(keys, "escalations")
    run.say(f"escalations: {len(keys)} message{'s' if len(keys) != 1 else ''} written" if keys else "escalations: nothing due")


def run_catch_up(run: Run) -> None:
    prompts, digests = schedule.due_prompts(run.cfg, run.now), schedule.due_digests(run.cfg, run.now)
    for period in prompts:
        run_prompts(run, period)
    for period in digests:
        run_digest(run, period)
    if not prompts and not digests:
        tz = run.cfg.organization.tz
        period = schedule.period_of(run.now, tz)
        due = schedule.digest_due(run.cfg, period).replace(tzinfo=timezone.utc).astimezone(tz)
        run.say(f"catch-up: no digest or initiative prompt due; the next digest, for {schedule.label(period)},"
                f" is due {due:%a %d %b %Y %H:%M} {run.cfg.organization.timezone}")
    run_escalations(run)


def run_job(run: Run, name: str, period: str | None) -> None:
    tz = run.cfg.organization.tz
    if name == DIGEST:
        run_digest(run, period or schedule.shift(schedule.period_of(run.now, tz), -1))
    elif name == PROMPT:
        run_prompts(run, period or schedule.period_of(run.now, tz))
    elif name == CATCH_UP:
        run_catch_up(run)
    elif name == OUTBOX:
        run_outbox(run)
    elif name == ESCALATIONS:
        run_escalations(run)
    else:
        raise ValueError(f"no job {name!r}; jobs: {', '.join(JOBS)}")


# -- the clock process -------------------------------------------------------------------------------


def serve(cfg: ProcessConfig, db: Database, deliverer: Deliverer, now: Callable[[], datetime], sweep_seconds: float = 5) -> None:
    """Run the scheduler until stopped: the digest at its cron time, a catch-up tick at start and every
    `tick_minutes`, and the outbox sweep every few seconds. Jobs of one kind never overlap (max one
    instance), and every side effect goes through the outbox, so a late, doubled or repeated firing, or
    a second clock, is harmless."""
    from apscheduler.schedulers.blocking import BlockingScheduler
    from apscheduler.triggers.cron import CronTrigger
    from apscheduler.triggers.interval import IntervalTrigger

    def tick() -> None:
        try:
            run_catch_up(Run(cfg, db, deliverer, now()))
        except Exception:  # a bad run must not stop the clock: logged, tried again next tick
            log.exception("clock: catch-up failed")

    def sweep() -> None:
        try:
            deliverer.sweep(max_seconds=max(sweep_seconds * 10, 30))
        except Exception:  # the database gone, say: tried again at the next sweep
            log.exception("clock: outbox sweep failed")

    tz = cfg.organization.tz
    scheduler = BlockingScheduler(timezone=tz, executors={"default": {"type": "threadpool", "max_workers": 2}},
                                  job_defaults={"coalesce": True, "max_instances": 1, "misfire_grace_time": 3600})
    scheduler.add_job(tick, CronTrigger.from_crontab(cfg.schedule.digest, timezone=tz), id="digest")
    scheduler.add_job(tick, IntervalTrigger(minutes=cfg.schedule.tick_minutes, timezone=tz), id="tick",
                      next_run_time=datetime.now(tz) + timedelta(seconds=0.1))
    scheduler.add_job(sweep, IntervalTrigger(seconds=sweep_seconds, timezone=tz), id="outbox",
                      next_run_time=datetime.now(tz) + timedelta(seconds=0.2))
    log.info("clock: digest on '%s' (%s), ticks every %d min", cfg.schedule.digest, cfg.organization.timezone, cfg.schedule.tick_minutes)
    try:
        scheduler.start()
    except (KeyboardInterrupt, SystemExit):
        pass
