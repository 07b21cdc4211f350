"""The clock: scheduled jobs and the process that runs them (`python -m bot clock`).

Jobs are the only code besides the listeners that talks to Slack. Each side effect goes through the
ledger (`bot.ledger`): claimed before it is sent, recorded after, so a rerun, a restart or a second clock
sends nothing twice, and a missed run is caught up by the next tick.

- `digest`: the monthly cross-team sync digest for a month, to `organization.digest_channel`: the first
  message, what did not fit as thread replies, and the trend chart uploaded in the thread.
- `initiative-prompt`: each team's channel is asked for its improvement initiative for the month.
- `catch-up`: whatever of the two is due and not yet done; the clock runs it when it starts and on
  every tick.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from datetime import datetime, timedelta

from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError

from bot import digest, ledger, schedule
from bot.ledger import Claim
from bot.process import ProcessConfig
from storage.db import Database
from templates import render

log = logging.getLogger("steward")
DIGEST = "digest"
PROMPT = "initiative-prompt"
CATCH_UP = "catch-up"
JOBS = (DIGEST, PROMPT, CATCH_UP)


@dataclass
class Run:
    """One run of a job: what it needs, and what it did (for the CLI and the log)."""

    cfg: ProcessConfig
    db: Database
    client: WebClient
    now: datetime
    force: bool = False  # an operator's run retries failures now instead of after the back-off
    pace: float = 1.0  # seconds between messages to one channel (Slack allows about one a second)
    done: list[str] = field(default_factory=list)
    failures: int = 0
    _last_post: dict[str, float] = field(default_factory=dict)

    def say(self, line: str) -> None:
        log.info(line)
        self.done.append(line)

    def _wait_for(self, channel: str) -> None:
        last = self._last_post.get(channel)
        if last is not None:
            time.sleep(max(0.0, self.pace - (time.monotonic() - last)))
        self._last_post[channel] = time.monotonic()

    def send(self, claim: Claim, channel: str, call: Callable[[], object]) -> dict | None:
        """Make the claimed call; record a failure in the ledger. Returns Slack's answer, or None."""
        self._wait_for(channel)
        try:
            answer = call()
            answer = answer.data if hasattr(answer, "data") else answer
        except SlackApiError as exc:
            error = str(exc.response.get("error") or "error")
            ledger.failed(self.db, claim, self.now, error)
            self.failures += 1
            self.say(f"{claim.job} {claim.period} → {claim.target}: Slack refused ({error}); retried by a later run")
            return None
        except OSError as exc:
            ledger.failed(self.db, claim, self.now, f"unreachable: {type(exc).__name__}")
            self.failures += 1
            self.say(f"{claim.job} {claim.period} → {claim.target}: Slack out of reach; retried by a later run")
            return None
        return answer


def _message_ts(answer: dict) -> str | None:
    return answer.get("ts")


def run_digest(run: Run, period: str) -> None:
    cfg, db = run.cfg, run.db
    channel = cfg.organization.digest_channel
    chart = ledger.entry(db, DIGEST, period, f"{channel}:chart")
    if chart is not None and chart.status == "sent":  # the chart goes last: every message before it is out
        run.say(f"digest {period}: already posted to {channel}, nothing sent")
        return
    d = digest.compose(db, cfg, period)
    parts = digest.messages(d)
    thread_ts = None
    posted = 0
    for i, message in enumerate(parts, 1):
        target = f"{channel}:{i}"
        claim = ledger.claim(db, DIGEST, period, target, run.now, force=run.force)
        if claim is None:
            row = ledger.entry(db, DIGEST, period, target)
            if row is None or row.status != "sent":
                run.say(f"digest {period} part {i}: {row.status if row else 'unclaimed'}, not sent by this run")
                return  # without the first message there is no thread to reply in
            thread_ts = thread_ts or row.ref
            continue
        kwargs = {"thread_ts": thread_ts} if thread_ts else {}
        answer = run.send(claim, channel, partial(run.client.chat_postMessage, channel=channel, text=message["text"],
                                                  blocks=message["blocks"], unfurl_links=False, **kwargs))
        if answer is None:
            return
        ledger.sent(db, claim, run.now, answer.get("channel"), _message_ts(answer))
        thread_ts = thread_ts or answer.get("ts")
        posted += 1
    if posted and thread_ts:
        digest.record_headcount(db, cfg, period)
    _upload_chart(run, period, d, channel, thread_ts)
    if posted:
        run.say(f"digest {period}: posted {posted} message{'s' if posted != 1 else ''} to {channel}")
    else:
        run.say(f"digest {period}: already posted to {channel}, nothing sent")


def _upload_chart(run: Run, period: str, d: digest.Digest, channel: str, thread_ts: str | None) -> None:
    claim = ledger.claim(run.db, DIGEST, period, f"{channel}:chart", run.now, force=run.force)
    if claim is None:
        return
    png = digest.chart(d)

    def upload() -> dict:
        kwargs = dict(channel=channel, file=png, filename=f"steward-trend-{period}.png",
                      title=f"Handoff trends to {d.label}", thread_ts=thread_ts,
                      alt_txt=f"Median cycle time and handoff failure rate per team, {len(d.months)} months to {d.label}")
        try:
            return run.client.files_upload_v2(**kwargs).data
        except SlackApiError as exc:
            if exc.response.get("error") != "not_in_channel":
                raise
            run.client.conversations_join(channel=channel)  # uploads need membership; public channels allow joining
            return run.client.files_upload_v2(**kwargs).data

    answer = run.send(claim, channel, upload)
    if answer is not None:
        file_id = (answer.get("file") or {}).get("id") or next((f.get("id") for f in answer.get("files") or []), None)
        ledger.sent(run.db, claim, run.now, channel, file_id)
        run.say(f"digest {period}: trend chart uploaded to {channel}")


def run_prompts(run: Run, period: str) -> None:
    cfg, db = run.cfg, run.db
    due = schedule.digest_due(cfg, period)
    sent = 0
    for team in cfg.teams:
        claim = ledger.claim(db, PROMPT, period, team.id, run.now, force=run.force)
        if claim is None:
            continue
        message = render("initiative_prompt", team=team, period=period, label=schedule.label(period), due=due, initiative=None)
        answer = run.send(claim, team.channel, partial(run.client.chat_postMessage, channel=team.channel,
                                                       text=message["text"], blocks=message["blocks"]))
        if answer is not None:
            ledger.sent(db, claim, run.now, answer.get("channel"), answer.get("ts"))
            sent += 1
    run.say(f"initiative prompts {period}: {sent} sent" + (f" of {len(cfg.teams)}" if sent != len(cfg.teams) else ""))


def run_catch_up(run: Run) -> None:
    for period in schedule.due_prompts(run.cfg, run.now):
        run_prompts(run, period)
    for period in schedule.due_digests(run.cfg, run.now):
        run_digest(run, period)


def run_job(run: Run, name: str, period: str | None) -> None:
    tz = run.cfg.organization.tz
    if name == DIGEST:
        run_digest(run, period or schedule.shift(schedule.period_of(run.now, tz), -1))
    elif name == PROMPT:
        run_prompts(run, period or schedule.period_of(run.now, tz))
    elif name == CATCH_UP:
        run_catch_up(run)
    else:
        raise ValueError(f"no job {name!r}; jobs: {', '.join(JOBS)}")


# -- the clock process -------------------------------------------------------------------------------


def serve(cfg: ProcessConfig, db: Database, client: WebClient, now: Callable[[], datetime]) -> None:
    """Run the scheduler until stopped: the digest at its cron time, and a catch-up tick at start and
    every `tick_minutes`. Jobs never overlap (one thread, max one instance), and each run's side effects
    go through the ledger, so a late, doubled or repeated firing is harmless."""
    from apscheduler.schedulers.blocking import BlockingScheduler
    from apscheduler.triggers.cron import CronTrigger
    from apscheduler.triggers.interval import IntervalTrigger

    def tick() -> None:
        try:
            run_catch_up(Run(cfg, db, client, now()))
        except Exception:  # a bad run must not stop the clock: logged, tried again next tick
            log.exception("clock: catch-up failed")

    tz = cfg.organization.tz
    scheduler = BlockingScheduler(timezone=tz, executors={"default": {"type": "threadpool", "max_workers": 1}},
                                  job_defaults={"coalesce": True, "max_instances": 1, "misfire_grace_time": 3600})
    scheduler.add_job(tick, CronTrigger.from_crontab(cfg.schedule.digest, timezone=tz), id="digest")
    scheduler.add_job(tick, IntervalTrigger(minutes=cfg.schedule.tick_minutes, timezone=tz), id="tick",
                      next_run_time=datetime.now(tz) + timedelta(seconds=0.1))
    log.info("clock: digest on '%s' (%s), ticks every %d min", cfg.schedule.digest, cfg.organization.timezone, cfg.schedule.tick_minutes)
    try:
        scheduler.start()
    except (KeyboardInterrupt, SystemExit):
        pass
