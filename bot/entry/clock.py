"""The clock: scheduled jobs and the process that runs them (`python -m bot clock`).

Every side effect is a row of the outbox (`bot.domain.core.outbox`), keyed by what it is (`digest:2026-10:C0SYNC:1`,
`prompt:2026-11:eng`) and delivered by `handlers.delivery`, so a rerun, a restart or a second clock sends
nothing twice, and a missed run is caught up by the next tick.

- `digest`: the monthly cross-team sync digest for a month, to `organization.digest_channel`: the first
  message, what did not fit as thread replies, and the trend chart uploaded in the thread.
- `initiative-prompt`: each team's channel is asked for its improvement initiative for the month.
- `catch-up`: whatever of the two is due and not yet done; the clock runs it when it starts and on
  every tick.
- `escalations`: every handoff and fast-track request whose wait passed a level of its escalation path
  (in working time only); the catch-up tick runs it too.
- `pulse`: the weekly satisfaction survey: the DMs of everyone whose `send_at` has come in their own time
  zone, the one reminder to those who have not answered; the catch-up tick runs it too. Time zones come
  from Slack's users.list, refreshed once a day.
- `matrix-review`: on the first working day of each quarter, at the working day's start, one DM to each
  person who sets a standard in the decision-rights matrix, with their rows and last quarter's fast-track
  history (`bot.domain.review`); once per person per quarter; the catch-up tick runs it too (and so catches it
  up within the quarter's first 14 days).
- `members`: each team's members from its Slack user group and channel (half a minute after the clock
  starts, then hourly): joins and leaves recorded as events, a welcome DM to each newcomer, a team Slack could not
  read left as it was.
- `outbox`: deliver whatever the outbox holds that is due (a 429's Retry-After passed, a back-off, a
  deliverer that died); the clock sweeps every few seconds.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from functools import partial

from sqlalchemy import or_
from sqlmodel import select

from bot.domain import digest, escalations, metrics, pulse, review
from bot.domain.core import events, outbox, schedule
from bot.domain.core.outbox import POST, UPLOAD, Message
from bot.domain.core.process import ProcessConfig
from bot.domain.core.timeutil import utcnow
from bot.domain.initiatives import prompt_key
from handlers import digest as slack_digest, members as slack_members, pulse as slack_pulse
from handlers.delivery import WAIT_FOR_ANCHOR, Deliverer
from storage.db import Database
from storage.models import Outbox, OutboxStatus

log = logging.getLogger("steward")
DIGEST = "digest"
PROMPT = "initiative-prompt"
CATCH_UP = "catch-up"
OUTBOX = "outbox"
ESCALATIONS = "escalations"
PULSE = "pulse"
MATRIX_REVIEW = "matrix-review"
MEMBERS = "members"
JOBS = (DIGEST, PROMPT, CATCH_UP, OUTBOX, ESCALATIONS, PULSE, MATRIX_REVIEW, MEMBERS)
MEMBERS_EVERY = timedelta(hours=1)
MEMBERS_FIRST = timedelta(seconds=30)  # the first refresh after the clock starts
TZ_REFRESH = timedelta(hours=24)


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
            waiting = [
                r.key
                for r in rows.values()
                if r.status == OutboxStatus.PENDING
                and (r.error or "").startswith("waiting for")
                and getattr(rows.get(r.anchor) or outbox.get(self.db, r.anchor or ""), "status", None)
                == OutboxStatus.SENDING
            ]
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


def digest_key(period: str, channel: str, part: str | int, edition: int = 1) -> str:
    """`digest:2026-10:C0SYNC:1`; a deliberate re-post (`--again`) is a new edition: `digest:2026-10#2:C0SYNC:1`."""
    return f"{digest_item(period, edition)}:{channel}:{part}"


def digest_item(period: str, edition: int = 1) -> str:
    return f"digest:{period}" if edition == 1 else f"digest:{period}#{edition}"


def digest_editions(db: Database, period: str) -> list[int]:
    """The editions of a month's digest written to the outbox, oldest first (1 is the scheduled one)."""
    with db.read() as session:
        items = session.exec(
            select(Outbox.item)
            .where(or_(Outbox.item == digest_item(period), Outbox.item.like(f"digest:{period}#%")))
            .distinct()
        ).all()
    return sorted(1 if item == digest_item(period) else int(item.rpartition("#")[2]) for item in items)


def _posted_at(row) -> datetime:
    """When a posted row went out (naive UTC), from its Slack ts, else from the row."""
    try:
        return datetime.fromtimestamp(float(row.result_ts), UTC).replace(tzinfo=None, microsecond=0)
    except (TypeError, ValueError, OverflowError):
        return row.updated_at


def run_digest(run: Run, period: str, again: bool = False) -> None:
    """The month's digest to the digest channel: the first message, the details as thread replies, the
    trend chart in the thread. Only a month that has ended (by the job's clock and by the real one) is
    posted: anything else raises `digest.Refused`. Written to the outbox once (the figures as they are when
    it is first written, the month's headcount recorded first), then delivered; a later run delivers what
    is still due and writes nothing again. `again` posts a closed month that was posted already as a new
    edition, saying which one it replaces."""
    cfg, db = run.cfg, run.db
    channel = cfg.organization.digest_channel
    if not digest.closed(cfg, period, min(run.now, utcnow())):
        tz = cfg.organization.tz
        end = (schedule.bounds(period, tz)[1] + metrics.CLOSED_AFTER).replace(tzinfo=UTC).astimezone(tz)
        raise digest.Refused(
            f"digest {period}: {schedule.label(period)} has not ended; nothing posted or recorded. It can be posted from "
            f"{end:%Y-%m-%d %H:%M} {cfg.organization.timezone}; `python -m bot digest --month {period}` previews it (month to date)"
        )
    editions = digest_editions(db, period)
    edition = editions[-1] if editions else 1
    replaces = None
    if again:
        last = outbox.get(db, digest_key(period, channel, "chart", edition)) if editions else None
        first_of_last = outbox.get(db, digest_key(period, channel, 1, edition)) if editions else None
        if last is None or last.status != OutboxStatus.SENT or first_of_last is None:
            raise digest.Refused(
                f"digest {period}: not posted yet, so there is nothing to replace; run it without --again"
            )
        replaces = {"edition": edition, "channel": first_of_last.result_channel, "at": _posted_at(first_of_last)}
        edition += 1
    item = digest_item(period, edition)
    first, chart = digest_key(period, channel, 1, edition), digest_key(period, channel, "chart", edition)
    row = outbox.get(db, chart)
    if row is not None and row.status == OutboxStatus.SENT:  # the chart goes last: every message before it is out
        run.say(f"digest {period}: already posted to {channel}, nothing sent (`--again` posts it again, replacing it)")
        return
    if row is None:  # not written yet (or only in part, before an upgrade): write what is missing
        digest.record_headcount(db, cfg, period)  # before composing: the signals read the month's headcount
        parts = slack_digest.messages(
            digest.compose(db, cfg, period, min(run.now, utcnow()), sealer=getattr(run.deliverer.ctx, "sealer", None)),
            replaces=replaces,
        )
        messages = [
            Message(
                digest_key(period, channel, i, edition),
                item,
                POST,
                channel,
                "static",
                {"message": m},
                anchor=first if i > 1 else None,
            )
            for i, m in enumerate(parts, 1)
        ]
        messages.append(Message(chart, item, UPLOAD, channel, "digest_chart", {"period": period}, anchor=first))
        outbox.put(db, messages, run.now)
        if replaces:
            old = outbox.get(db, digest_key(period, channel, 1, replaces["edition"]))
            run.say(
                f"digest {period}: posting it again (edition {edition}), replacing the one posted to {old.result_channel} "
                f"on {_posted_at(old):%Y-%m-%d %H:%M} UTC (ts {old.result_ts})"
            )
    if run.force:
        outbox.reopen(db, item, run.now)
    rows = outbox.of_item(db, item)
    before = {r.key for r in rows if r.status == OutboxStatus.SENT}
    run.deliver([r.key for r in rows], f"digest {period}")
    now_sent = {r.key for r in outbox.of_item(db, item) if r.status == OutboxStatus.SENT} - before
    posted = len(now_sent - {chart})
    if posted:
        run.say(f"digest {period}: posted {posted} message{'s' if posted != 1 else ''} to {channel}")
    if chart in now_sent:
        run.say(f"digest {period}: trend chart uploaded to {channel}")
    elif not now_sent and chart in before:
        run.say(f"digest {period}: already posted to {channel}, nothing sent")
    waiting = [r for r in outbox.of_item(db, item) if r.status in (OutboxStatus.PENDING, OutboxStatus.SENDING)]
    if waiting:
        run.say(
            f"digest {period}: {len(waiting)} part{'s' if len(waiting) != 1 else ''} not sent yet ({waiting[0].error or 'in progress'});"
            " the clock's outbox sweep retries, or run this again"
        )


def run_prompts(run: Run, period: str) -> None:
    """Each team's channel is asked for its improvement initiative for the month."""
    cfg, db = run.cfg, run.db
    messages = [
        Message(
            prompt_key(period, t.id),
            f"prompt:{period}",
            POST,
            t.channel,
            "initiative_prompt",
            {"team": t.id, "period": period},
        )
        for t in cfg.teams
    ]
    keys = outbox.put(db, messages, run.now)
    if run.force:
        outbox.reopen(db, f"prompt:{period}", run.now)
    before = {r.key for r in outbox.of_item(db, f"prompt:{period}") if r.status == OutboxStatus.SENT}
    run.deliver([k for k in keys if k not in before], f"initiative prompt {period}")
    sent = sum(
        1 for r in outbox.of_item(db, f"prompt:{period}") if r.status == OutboxStatus.SENT and r.key not in before
    )
    run.say(f"initiative prompts {period}: {sent} sent" + (f" of {len(cfg.teams)}" if sent != len(cfg.teams) else ""))


def run_outbox(run: Run) -> None:
    """Deliver whatever the outbox holds that is due (the clock does this every few seconds)."""
    done = run.deliverer.sweep(max_seconds=50)
    if done:
        run.say("outbox: " + ", ".join(f"{n} {what}" for what, n in sorted(done.items())))
    else:
        run.say("outbox: nothing due (`python -m bot outbox` lists what waits, failed or is unknown)")


def run_escalations(run: Run) -> None:
    """Every handoff or fast-track whose wait passed a level of its escalation path, in working time."""
    keys = escalations.sweep(run.db, run.cfg, run.now)
    if keys:
        run.deliver(keys, "escalations")
    run.say(
        f"escalations: {len(keys)} message{'s' if len(keys) != 1 else ''} written"
        if keys
        else "escalations: nothing due"
    )


def run_pulse(run: Run) -> None:
    """The weekly survey: whatever is due at `run.now` (each person's DM once their local `send_at` has
    come, the one reminder). Written to the outbox; an operator's run delivers it at once (paced by
    Slack's limits), the clock's outbox sweep otherwise."""
    cfg, db = run.cfg, run.db
    if not cfg.pulse_on:
        run.say("pulse: not on (no [pulse] in the process configuration, or enabled = false)")
        return
    zones, refreshed = pulse.timezones(db)
    wanted = set(pulse.members(cfg))
    if refreshed is None or run.now - refreshed > TZ_REFRESH or not wanted <= set(zones):
        fetched = slack_pulse.fetch_timezones(run.deliverer.client, wanted)
        if fetched is not None:
            pulse.store_timezones(db, fetched, run.now)
            zones = {**zones, **fetched}
    sent = pulse.send_due(db, cfg, run.now, zones)
    reminders = pulse.remind_due(db, cfg, run.now)
    pulse.mix(db)  # the answers given since the last run lose their link to the click that wrote them
    pulse.freeze_closed(db, cfg, getattr(run.deliverer.ctx, "sealer", None), run.now)  # last month, once final
    if sent.asked or reminders:
        run.say(
            f"pulse: {sent.asked} survey{'s' if sent.asked != 1 else ''} and {len(reminders)} reminder{'s' if len(reminders) != 1 else ''} written"
        )
    else:
        run.say("pulse: nothing due")
    waiting = sorted(set(sent.keys + reminders) | set(pulse.undelivered(db)))
    if run.force and waiting:  # an operator waits for it: delivered now (a crashed run's too), paced as Slack allows
        run.deliverer.sweep(
            max_seconds=3600, until_idle=True, give_up_after=3
        )  # Slack out of reach: not an hour's wait
        rows = [outbox.get(db, key) for key in waiting]
        done = sum(1 for r in rows if r is not None and r.status == OutboxStatus.SENT)
        bad = sum(1 for r in rows if r is not None and r.status in (OutboxStatus.FAILED, OutboxStatus.UNKNOWN))
        run.failures += bad
        later = len(waiting) - done - bad
        run.say(
            f"pulse: {done} of {len(waiting)} delivered"
            + (f", {bad} not delivered (see `python -m bot outbox`)" if bad else "")
            + (
                f", {later} not yet: Slack did not take them just now (the clock's outbox sweep retries them)"
                if later
                else ""
            )
        )
    if sent.paused:
        run.say(f"pulse: {sent.paused} {'people' if sent.paused != 1 else 'person'} paused or stopped the survey")
    if sent.skipped:
        run.say(
            f"pulse: {sent.skipped} survey{'s' if sent.skipped != 1 else ''} skipped: the week closed while the clock was not running"
        )


def run_matrix_review(run: Run, quiet: bool = False) -> None:
    """The quarter's decision-rights matrix review, when due at `run.now`: one DM per person who sets a
    standard, written once ever; an operator's run delivers them at once, the clock's outbox sweep otherwise.
    `quiet` (the catch-up tick): a line only when DMs are written."""
    cfg = run.cfg
    sent = review.send_due(run.db, cfg, run.now)
    if quiet and not sent.keys:
        return
    if sent.quarter is None:
        if not cfg.rights:
            run.say("matrix review: no decision-rights matrix ([[rights]]), nothing to review")
            return
        tz = cfg.organization.tz
        quarter = review.quarter_of(run.now, tz)
        if run.now >= review.due_at(cfg, quarter):
            quarter = review.shift(quarter, 1)
        due = review.due_at(cfg, quarter).replace(tzinfo=UTC).astimezone(tz)
        run.say(
            f"matrix review: not due; the next, for {review.label(quarter)}, on {due:%a %d %b %Y %H:%M} {cfg.organization.timezone}"
        )
        return
    label = review.label(sent.quarter)
    if sent.keys:
        run.say(f"matrix review {label}: {len(sent.keys)} DM{'s' if len(sent.keys) != 1 else ''} written")
    else:
        run.say(
            f"matrix review {label}: already written ({sent.before} DM{'s' if sent.before != 1 else ''}), nothing new"
        )
    if run.force:
        keys = [
            r.key
            for r in outbox.of_item(run.db, review.item_of(sent.quarter))
            if r.render == "matrix_review_dm" and r.kind == POST
        ]
        delivered = run.deliver(keys, f"matrix review {label}")
        run.say(f"matrix review {label}: {delivered} of {len(keys)} delivered")


def run_members(run: Run) -> None:
    """Each team's members from its Slack sources (and its listed ids, whose changes are recorded too):
    joins and leaves as events, welcome DMs to newcomers (delivered at once), a source Slack could not read
    left with its last known members."""
    ctx = run.deliverer.ctx
    base = getattr(ctx, "base_cfg", run.cfg)  # the file as written: its listed ids are one source among others
    keys = slack_members.refresh(run.db, base, run.deliverer.client, run.now, run.say)
    if hasattr(ctx, "roster"):
        ctx.roster.expire()
        run.cfg = ctx.cfg
    homes = [k for k in keys if k.startswith("home:")]  # the Homes of those who joined or left: published again
    if homes:
        run.deliver(homes, "App Homes")
    keys = [k for k in keys if k not in homes]
    if keys:
        sent = run.deliver(keys, "welcome DMs")
        run.say(f"members: {len(keys)} welcome DM{'s' if len(keys) != 1 else ''} written, {sent} delivered")
    elif not any(line.startswith("members ") for line in run.done):
        run.say(f"members: {len(base.teams)} team{'s' if len(base.teams) != 1 else ''} read, no change")


def isolated(run: Run, what: str, job: Callable[..., None], *args) -> None:
    """One part of a run: whatever it raises is logged and said, and the run goes on with the others."""
    try:
        job(run, *args)
    except Exception as exc:
        log.exception("%s failed; the rest of the run goes on", what)
        run.failures += 1
        run.say(f"{what}: failed ({type(exc).__name__}: {str(exc)[:200]}); tried again at the next tick")


def _digest_or_refused(run: Run, period: str) -> None:
    try:
        run_digest(run, period)
    except digest.Refused as exc:  # due within the hour after the month's end: the next tick posts it
        run.say(str(exc))


def run_catch_up(run: Run) -> None:
    """Whatever is due: prompts, digests, escalations, the pulse, the matrix review. Each on its own: one
    that fails (a bad row, Slack out of reach) never stops the others."""
    prompts, digests = schedule.due_prompts(run.cfg, run.now), schedule.due_digests(run.cfg, run.now)
    for period in prompts:
        isolated(run, f"initiative prompts {period}", run_prompts, period)
    for period in digests:
        isolated(run, f"digest {period}", _digest_or_refused, period)
    if not prompts and not digests:
        tz = run.cfg.organization.tz
        period = schedule.period_of(run.now, tz)
        due = schedule.digest_due(run.cfg, period).replace(tzinfo=UTC).astimezone(tz)
        run.say(
            f"catch-up: no digest or initiative prompt due; the next digest, for {schedule.label(period)},"
            f" is due {due:%a %d %b %Y %H:%M} {run.cfg.organization.timezone}"
        )
    isolated(run, "escalations", run_escalations)
    if run.cfg.pulse_on:
        isolated(run, "pulse", run_pulse)
    isolated(run, "matrix review", _matrix_review_if_due)


def _matrix_review_if_due(run: Run) -> None:
    if review.due_quarter(run.cfg, run.now) is not None:
        run_matrix_review(run, quiet=True)


def run_job(run: Run, name: str, period: str | None, again: bool = False) -> None:
    """One job once. A digest that must not be posted raises `digest.Refused`; `again` is for the digest only."""
    tz = run.cfg.organization.tz
    if again and name != DIGEST:
        raise ValueError(f"--again is for the digest, not {name}")
    if name == DIGEST:
        run_digest(run, period or schedule.shift(schedule.period_of(run.now, tz), -1), again)
    elif name == PROMPT:
        run_prompts(run, period or schedule.period_of(run.now, tz))
    elif name == CATCH_UP:
        run_catch_up(run)
    elif name == OUTBOX:
        run_outbox(run)
    elif name == ESCALATIONS:
        run_escalations(run)
    elif name == PULSE:
        run_pulse(run)
    elif name == MATRIX_REVIEW:
        run_matrix_review(run)
    elif name == MEMBERS:
        run_members(run)
    else:
        raise ValueError(f"no job {name!r}; jobs: {', '.join(JOBS)}")


# -- the clock process -------------------------------------------------------------------------------


def serve(
    cfg: ProcessConfig, db: Database, deliverer: Deliverer, now: Callable[[], datetime], sweep_seconds: float = 5
) -> None:
    """Run the scheduler until stopped: the digest at its cron time, a catch-up tick at start and every
    `tick_minutes`, and the outbox sweep every few seconds. Jobs of one kind never overlap (max one
    instance), and every side effect goes through the outbox, so a late, doubled or repeated firing, or
    a second clock, is harmless."""
    from apscheduler.schedulers.blocking import BlockingScheduler  # only the clock process runs a scheduler
    from apscheduler.triggers.cron import CronTrigger
    from apscheduler.triggers.interval import IntervalTrigger

    events.bus.require_wired("clock")  # a clock whose decisions would drop their subscribers' messages: not started

    def current() -> ProcessConfig:  # the members as they stand now (Slack's user groups and channels)
        return getattr(deliverer.ctx, "cfg", cfg)

    def tick() -> None:
        try:
            run_catch_up(Run(current(), db, deliverer, now()))
        except Exception:  # a bad run must not stop the clock: logged, tried again next tick
            log.exception("clock: catch-up failed")

    def refresh_members() -> None:
        try:
            run_members(Run(current(), db, deliverer, now()))
        except Exception:  # Slack or the database gone: tried again next hour
            log.exception("clock: members refresh failed")

    def sweep() -> None:
        try:
            deliverer.sweep(max_seconds=max(sweep_seconds * 10, 30))
        except Exception:  # the database gone, say: tried again at the next sweep
            log.exception("clock: outbox sweep failed")

    tz = cfg.organization.tz
    scheduler = BlockingScheduler(
        timezone=tz,
        # the sweep has a thread of its own: a job waiting on a Retry-After (time zones, members) for minutes
        # never holds back retries, pulse DMs or anything else the outbox holds
        executors={
            "default": {"type": "threadpool", "max_workers": 2},
            OUTBOX: {"type": "threadpool", "max_workers": 1},
        },
        job_defaults={"coalesce": True, "max_instances": 1, "misfire_grace_time": 3600},
    )
    scheduler.add_job(tick, CronTrigger.from_crontab(cfg.schedule.digest, timezone=tz), id="digest")
    scheduler.add_job(
        tick,
        IntervalTrigger(minutes=cfg.schedule.tick_minutes, timezone=tz),
        id="tick",
        next_run_time=datetime.now(tz) + timedelta(seconds=0.1),
    )
    scheduler.add_job(
        refresh_members,
        IntervalTrigger(seconds=MEMBERS_EVERY.total_seconds(), timezone=tz),
        id="members",
        next_run_time=datetime.now(tz) + MEMBERS_FIRST,
    )  # after the start's catch-up, not competing with it
    scheduler.add_job(
        sweep,
        IntervalTrigger(seconds=sweep_seconds, timezone=tz),
        id="outbox",
        executor=OUTBOX,
        next_run_time=datetime.now(tz) + timedelta(seconds=0.2),
    )
    log.info(
        "clock: digest on '%s' (%s), ticks every %d min",
        cfg.schedule.digest,
        cfg.organization.timezone,
        cfg.schedule.tick_minutes,
    )
    try:
        scheduler.start()
    except (KeyboardInterrupt, SystemExit):
        pass
