"""Delivering the outbox to Slack: the one place that posts, updates and uploads after an ack.

Right after a decision commits, the request's own thread delivers the rows it wrote (`send_now`), so a
card appears at once. What no person waits for in that moment (App Home publishes, a card's permalink) is
handed to the process's one background thread instead (`defer`, `after`): the request thread never draws a
Home. The clock's sweep (`sweep`) delivers whatever is still due: after a 429 (at its
Retry-After), a passing failure (after a back-off), or a deliverer that died (after its lease).

Never twice: chat.postMessage has no idempotency key, so every post carries Slack message metadata with
its outbox key. When the outcome of an attempt is unknown (a time-out, a 5xx, a connection cut, a crash
between send and record), the next attempt first looks for that key in the conversation
(`conversations.history`/`conversations.replies` with `include_all_metadata`): found, it is recorded as
sent; absent, it is sent; impossible to look (no scope, no access), the row becomes `unknown` for an
operator. A 429 or an `ok: false` answer means Slack did not act, so those are retried as they are.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait as futures_wait
from datetime import UTC, datetime, timedelta

from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError
from sqlalchemy.exc import OperationalError

from bot.domain.core import outbox
from bot.domain.core.outbox import (
    IDEMPOTENT,
    POST,
    PUBLISH,
    UPDATE,
    UPLOAD,
    Claim,
    Message,
)
from storage.models import Outbox, OutboxStatus

log = logging.getLogger("steward")
METADATA_TYPE = "steward_outbox"
# `ok: false` answers after which Slack may have acted all the same
UNSURE = {"internal_error", "fatal_error", "request_timeout", "service_unavailable"}
# the token is wrong or revoked: nothing is refused for good, an operator mends the token
AUTH = {"invalid_auth", "not_authed", "token_revoked", "token_expired", "account_inactive", "no_permission"}
LOOK_PAGES = 10
ANCHOR_FAILED = "the message it belongs to was not delivered"
WAIT_FOR_ANCHOR = timedelta(seconds=1)
AGAIN = 20  # deliveries of an update asked for again while on its way, before leaving it to the sweep
RETRY_BUSY = (0.2, 0.5, None)  # pauses before delivering again after the database was busy; None: give up
LOOK_MARGIN = timedelta(minutes=10)  # clocks differ: ours and Slack's
RENEW_AFTER = 1.0  # seconds: a lease written longer ago is written again right before a Slack call (`_hold`)
PROBE_EVERY = 3.0  # seconds between two looks (auth.test) whether Slack answers again, while rows back off
LOST = "lost"  # what `deliver` says when another deliverer took the row over: nothing was sent

Renderer = Callable[[object, Outbox], dict | None]


def retry_after(response) -> float:
    """Slack's Retry-After in seconds, kept within 1 s … 1 h (a 0, a negative, or garbage must not make a
    sweep hammer Slack, nor a huge value park a message for ever)."""
    headers = {k.lower(): v for k, v in (getattr(response, "headers", None) or {}).items()}
    raw = headers.get("retry-after")
    raw = raw[0] if isinstance(raw, list) and raw else raw
    try:
        seconds = float(raw)
    except (TypeError, ValueError):
        return 1.0
    return min(max(seconds, 1.0), 3600.0) if seconds == seconds else 1.0  # NaN → 1 s


def metadata(key: str) -> dict:
    return {"event_type": METADATA_TYPE, "event_payload": {"key": key}}


def _epoch(moment: datetime) -> str:
    return f"{moment.replace(tzinfo=UTC).timestamp():.6f}"


class Deliverer:
    """Sends outbox rows. `renderers` draw a row's message when it is sent (by `row.render`); `on_failed`
    hooks run when Slack refuses a row for good and return the keys of the rows they wrote; `on_sent`
    hooks run when a post is first recorded as sent (a handoff remembers where its card is, and asks
    Slack for its permalink: hooks get the Web API client as `client=`)."""

    def __init__(
        self,
        ctx,
        client: WebClient,
        renderers: dict[str, Renderer],
        on_failed: dict[str, Callable[[object, Outbox], list[str]]] | None = None,
        now: Callable[[], datetime] | None = None,
        pace: float = 1.0,
        gap: float = 0.04,
        on_sent: dict[str, Callable[[object, Outbox, str | None, str | None], None]] | None = None,
        workers: int = 4,
        defer: Iterable[str] = (),
    ):
        self.ctx, self.db, self.client = ctx, ctx.db, client
        self.renderers, self.on_failed, self.on_sent = renderers, on_failed or {}, on_sent or {}
        self.now = now or ctx.now
        self.pace = pace  # seconds between posts to one channel in a sweep (Slack allows about one a second)
        self.gap = gap  # seconds between any two posts in a sweep (the workspace-wide limit)
        self.workers = workers  # conversations a sweep delivers at once
        self.last_retry_after = 0.0
        self._local = threading.local()
        self.defer = frozenset(defer)  # row kinds `send_now` leaves to the background thread (the web app: PUBLISH)
        self._background: ThreadPoolExecutor | None = None
        self._background_lock = threading.Lock()
        self._probed = float("-inf")  # when (monotonic) a sweep last looked whether Slack answers again
        self._out = False  # the last look found Slack out of reach

    # -- entry points ------------------------------------------------------------------------------------

    def send_now(self, keys: Iterable[str], defer: bool = True) -> Counter:
        """Deliver these rows now if they are due (the request thread, right after its commit). Rows of a
        `defer` kind go to the background thread (`after`), counted as "deferred"; `defer=False`: none."""
        done = Counter()
        keys = list(keys)
        deferred = set(outbox.of_kinds(self.db, keys, self.defer)) if defer and self.defer and keys else set()
        for key in keys:
            if key in deferred:
                self.after(self.send_now, [key], False)
                done["deferred"] += 1
                continue
            done[self._deliver_now(key)] += 1
        return done

    def _deliver_now(self, key: str) -> str:
        """`deliver`, again after a moment when the database was busy (SQLite's write lock held past the
        web app's wait by a burst of clicks): safe, since a claim that was not written changed nothing, and
        one that was holds the row ("busy") until its lease. A bug or the database gone: the row stays for
        the sweep."""
        for pause in RETRY_BUSY:
            try:
                return self.deliver(key)
            except OperationalError:
                if pause is not None:
                    time.sleep(pause)
                    continue
                log.exception("outbox %s: delivery failed; the clock's sweep retries it", key)
            except Exception:
                log.exception("outbox %s: delivery failed; the clock's sweep retries it", key)
            return "error"
        return "error"

    def after(self, fn: Callable, *args) -> Future:
        """Run `fn(*args)` after the request, in this process's one background thread, in the order asked.
        Lost only with the process: an outbox row stays due for the clock's sweep."""
        with self._background_lock:
            if self._background is None:
                self._background = ThreadPoolExecutor(max_workers=1, thread_name_prefix="outbox-after")
            return self._background.submit(self._logged, fn, *args)

    @staticmethod
    def _logged(fn: Callable, *args) -> None:
        try:
            fn(*args)
        except Exception:  # a bug or the database gone: the rows stay for the sweep
            log.exception("outbox: background work %s failed", getattr(fn, "__name__", fn))

    def drain_background(self, timeout: float = 10.0) -> None:
        """Wait for what `after` was given (a process that stops, a test)."""
        with self._background_lock:
            pool = self._background
        if pool is not None:
            pool.submit(lambda: None).result(timeout=timeout)

    def sweep(self, max_seconds: float = 50.0, until_idle: bool = False, give_up_after: int | None = None) -> Counter:
        """Deliver every due row, each conversation's in the order they were written (its oldest
        unfinished row first, one at a time), pacing posts per channel (`pace`) and across the workspace
        (`gap`), and honouring Retry-After. Up to `workers` conversations are delivered at once, so the
        time one delivery takes (the database, Slack's answer) never slows a fan-out below the pace the
        limits allow. With `until_idle` it also waits for rows that become due within `max_seconds`
        (a drain). `give_up_after`: stop once that many deliveries in a row could not go out for now
        (Slack out of reach, 5xx: "later"), rather than wait through their back-offs: an operator's drain
        says so and leaves them to the clock's sweep."""
        start = time.monotonic()
        ready: dict[str, float] = {}
        done = Counter()
        last_post = 0.0
        failing = 0  # deliveries in a row that could not go out for now
        inflight: dict[str, tuple[str, Future]] = {}  # channel → (row kind, its delivery)
        pool = ThreadPoolExecutor(max_workers=self.workers, thread_name_prefix="outbox")

        def settle(block: bool) -> bool:
            if block and inflight:
                futures_wait([f for _, f in inflight.values()], timeout=1.0, return_when=FIRST_COMPLETED)
            finished = [ch for ch, (_, f) in inflight.items() if f.done()]
            for channel in finished:
                kind, future = inflight.pop(channel)
                outcome, wait, finished_at = future.result()
                done[outcome] += 1
                nonlocal failing
                failing = failing + 1 if outcome == "later" else 0
                if outcome == "ratelimited":
                    ready[channel] = finished_at + wait
                elif kind in (POST, UPLOAD) and outcome == "sent":
                    ready[channel] = finished_at + self.pace
            return bool(finished)

        try:
            while time.monotonic() - start < max_seconds:
                settle(False)
                self._recover()
                if give_up_after is not None and failing >= give_up_after:
                    break
                rows = [r for r in outbox.heads(self.db, self.now()) if r.channel not in inflight]
                if not rows:
                    if inflight:
                        settle(True)
                        continue
                    wait = self._next_due_in() if until_idle else None
                    if wait is None or time.monotonic() - start + wait > max_seconds:
                        break
                    time.sleep(min(max(wait, 0.01), 1.0))
                    continue
                progressed, soonest = False, None
                for row in rows:
                    at = ready.get(row.channel, 0.0)
                    if at > time.monotonic():
                        soonest = at if soonest is None else min(soonest, at)
                        continue
                    while len(inflight) >= self.workers:
                        settle(True)
                    if row.kind in (POST, UPLOAD):  # Slack's workspace-wide limit: never a burst
                        slot = last_post + self.gap
                        time.sleep(max(0.0, slot - time.monotonic()))
                        # on schedule: a wake-up a little late does not push every later post back
                        last_post = slot if time.monotonic() - slot < self.gap else time.monotonic()
                    inflight[row.channel] = (row.kind, pool.submit(self._one, row.key))
                    progressed = True
                    if time.monotonic() - start >= max_seconds:
                        break
                if not progressed:
                    if inflight:
                        settle(True)
                    else:
                        time.sleep(min(max((soonest or time.monotonic() + 0.2) - time.monotonic(), 0.01), 1.0))
        finally:
            while inflight:
                settle(True)
            pool.shutdown(wait=True)
        return done

    def _one(self, key: str) -> tuple[str, float, float]:
        """A sweep's delivery of one row, on a worker thread: what happened, Slack's Retry-After, and when
        it finished (a channel's next post waits `pace` from then)."""
        self._local.retry_after = 1.0
        outcome = self.send_now([key]).most_common(1)[0][0]
        return outcome, self._local.retry_after, time.monotonic()

    def _recover(self) -> None:
        """While rows back off after passing failures, ask Slack every few seconds whether it answers
        (auth.test); when it answers again after a look found it out of reach, those rows are due now: a
        back-off that grew through an outage does not outlast it. Only a look that failed arms this, so
        one message Slack keeps refusing with a 5xx still backs off on its own."""
        if time.monotonic() - self._probed < PROBE_EVERY:
            return
        self._probed = time.monotonic()  # the look at the outbox too: once every few seconds, not every round
        now = self.now()
        if not outbox.backing_off(self.db, now):
            return
        try:
            self.client.auth_test()
        except SlackApiError as exc:
            if (getattr(exc.response, "status_code", 200) or 200) >= 500:
                self._out = True
            return
        except OSError:
            self._out = True
            return
        if self._out:
            self._out = False
            revived = outbox.revive(self.db, self.now(), failed_by=now)
            if revived:
                log.info("outbox: Slack answers again; %d message(s) backing off are due now", revived)

    def _hold(self, c: Claim) -> bool:
        """Right before a Slack call: renew the lease, on the claim's token. True when the call may go: the
        lease is still ours and, by a monotonic clock, the client's time-out ends before the renewed lease
        does (so nobody takes the row over while the call may still be on its way). A lease lost means
        another deliverer took the row over: this one sends nothing. A renewal that took too long (the
        database stalled) gives the row back, due now. A lease written less than RENEW_AFTER ago by both
        clocks (the claim's, for a message drawn and sent at once) is that renewal: no second write per
        message in a fan-out, nor on a busy SQLite."""
        timeout = float(getattr(self.client, "timeout", None) or 30)
        lease = outbox.LEASE.total_seconds()
        token, held, held_at = getattr(self._local, "held", (None, float("-inf"), None))
        if (
            token == c.token
            and time.monotonic() - held < RENEW_AFTER
            and self.now() - held_at < timedelta(seconds=RENEW_AFTER)
            and time.monotonic() + timeout < held + lease
        ):
            return True
        began, at = time.monotonic(), self.now()
        if not outbox.renew(self.db, c, at):
            log.warning("outbox %s: the lease passed and another deliverer took it over; not sent here", c.row.key)
            return False
        self._local.held = (c.token, began, at)
        if time.monotonic() + timeout < began + lease:
            return True
        outbox.later(self.db, c, self.now(), "the lease ran short", at=self.now(), unsure=c.must_check, count=False)
        return False

    def _next_due_in(self) -> float | None:
        rows = outbox.listing(self.db, [OutboxStatus.PENDING, OutboxStatus.SENDING], limit=1000)
        moments = [r.next_at if r.status == OutboxStatus.PENDING else r.lease_until for r in rows]
        moments = [m for m in moments if m is not None]
        if not moments:
            return None
        return max((min(moments) - self.now()).total_seconds(), 0.0)

    # -- one row -----------------------------------------------------------------------------------------

    def deliver(self, key: str, again: int = AGAIN) -> str:
        """Claim and deliver one row; returns what happened (sent, found, ratelimited, later, failed,
        unknown, waiting, busy: not claimable now, lost: taken over by another deliverer, nothing sent)."""
        claimed, claimed_at = time.monotonic(), self.now()
        c = outbox.claim(self.db, key, claimed_at)
        if c is None:
            return "busy"
        self._local.held = (c.token, claimed, claimed_at)  # the claim wrote the lease: as a renewal would
        row = c.row
        anchor = outbox.get(self.db, row.anchor) if row.anchor else None
        if row.anchor:
            if anchor is None or anchor.status in (OutboxStatus.FAILED, OutboxStatus.UNKNOWN):
                # not this row's own refusal: nobody is told again, and `outbox retry` of the anchor re-pends it
                outbox.failed(self.db, c, self.now(), f"{ANCHOR_FAILED} ({anchor.status if anchor else 'missing'})")
                return "failed"
            if anchor.status != OutboxStatus.SENT:
                outbox.later(
                    self.db,
                    c,
                    self.now(),
                    "waiting for the message it belongs to",
                    at=self.now() + WAIT_FOR_ANCHOR,
                    unsure=c.must_check,
                    count=False,
                )
                return "waiting"
        try:
            message = self.renderers[row.render](self.ctx, row)
        except Exception as exc:  # a bug: the operator sees it in `outbox`, nothing is sent half-drawn
            log.exception("outbox %s: could not draw %s", key, row.render)
            self._failed(c, f"could not draw the message: {type(exc).__name__}")
            return "failed"
        if message is None:  # nothing left to say (the item is gone)
            outbox.sent(self.db, c, self.now(), None, None)
            return "sent"
        if c.must_check and row.kind not in IDEMPOTENT:
            seen = self._look(c, anchor)
            if seen != "absent":
                return seen
        if not self._hold(c):
            return LOST
        try:
            answer = self._call(row, anchor, message)
        except SlackApiError as exc:
            return self._refused(c, exc)
        except OSError as exc:  # time-out, connection refused or cut: Slack may have acted
            outbox.later(
                self.db, c, self.now(), f"unreachable: {type(exc).__name__}", unsure=row.kind not in IDEMPOTENT
            )
            return "later"
        if outbox.sent(self.db, c, self.now(), *answer):
            if row.kind == POST and row.render in self.on_sent:
                self.on_sent[row.render](self.ctx, row, *answer, client=self.client, after=self.after)
        elif again:  # asked for again while this one was on its way: send the newest state now. Whoever asked found
            # the row busy and left it to us, so we go on while asks keep coming (AGAIN times at most: then the sweep)
            return self.deliver(key, again=again - 1)
        return "sent"

    def _call(self, row: Outbox, anchor: Outbox | None, message: dict) -> tuple[str | None, str | None]:
        if row.kind == POST:
            extra = {"thread_ts": anchor.result_ts} if anchor else {}
            answer = self.client.chat_postMessage(
                channel=anchor.result_channel if anchor else row.channel,
                text=message["text"],
                blocks=message.get("blocks"),
                metadata=metadata(row.key),
                unfurl_links=False,
                **extra,
            )
            return answer.get("channel"), answer.get("ts")
        if row.kind == UPDATE:
            answer = self.client.chat_update(
                channel=anchor.result_channel,
                ts=anchor.result_ts,
                text=message["text"],
                blocks=message.get("blocks"),
                metadata=metadata(anchor.key),
            )
            return answer.get("channel"), answer.get("ts")
        if row.kind == PUBLISH:  # a person's App Home: the whole view, set again (idempotent: resending is safe)
            answer = self.client.views_publish(user_id=row.params["user"], view=message)
            return None, ((answer.get("view") or {}).get("id") or "")[:40] or None
        if row.kind == UPLOAD:
            kwargs = dict(
                channel=anchor.result_channel if anchor else row.channel,
                file=message["file"],
                filename=message["filename"],
                title=message.get("title"),
                alt_txt=message.get("alt_txt"),
            )
            if anchor:
                kwargs["thread_ts"] = anchor.result_ts
            try:
                answer = self.client.files_upload_v2(**kwargs)
            except SlackApiError as exc:
                if exc.response.get("error") != "not_in_channel":
                    raise
                self.client.conversations_join(
                    channel=kwargs["channel"]
                )  # uploads need membership; public channels allow joining
                answer = self.client.files_upload_v2(**kwargs)
            file_id = (answer.get("file") or {}).get("id") or next(
                (f.get("id") for f in answer.get("files") or []), None
            )
            return kwargs["channel"], file_id
        raise ValueError(f"unknown outbox kind {row.kind!r}")

    def _refused(self, c: Claim, exc: SlackApiError) -> str:
        response = exc.response
        status = getattr(response, "status_code", 200) or 200
        error = str(response.get("error") or f"http_{status}")
        unsure_kind = c.row.kind not in IDEMPOTENT
        if status == 429 or error == "ratelimited":
            wait = retry_after(response)
            self.last_retry_after = self._local.retry_after = wait
            outbox.later(
                self.db, c, self.now(), outbox.RATELIMITED, at=self.now() + timedelta(seconds=wait), unsure=False
            )
            return "ratelimited"
        if status >= 500 or error in UNSURE:
            outbox.later(self.db, c, self.now(), error, unsure=unsure_kind)
            return "later"
        if error in AUTH:
            outbox.later(self.db, c, self.now(), error, unsure=False)
            return "later"
        self._failed(c, error)
        return "failed"

    def _failed(self, c: Claim, error: str) -> None:
        """Refused for good: the person who acted is told once, and the feature's hook may act (a
        fast-track request whose cards all failed goes to the backup approvers)."""
        row = c.row
        notice = []
        if row.actor and row.render != "delivery_failed":
            notice = [
                Message(
                    f"{row.key}:failed", row.item, POST, row.actor, "delivery_failed", {"key": row.key, "error": error}
                )
            ]
        if not outbox.failed(self.db, c, self.now(), error, tell=notice):
            return
        keys = [m.key for m in notice]
        hook = self.on_failed.get(row.render)
        if hook is not None:
            keys += hook(self.ctx, row)
        if keys:
            self.send_now(keys)

    def _look(self, c: Claim, anchor: Outbox | None) -> str:
        """Is the message of a row whose last attempt has an unknown outcome in Slack? Returns "absent"
        (send it), or what was done: "found" (recorded as sent), "later", "unknown"."""
        row = c.row
        if row.kind == UPLOAD:
            outbox.unknown(self.db, c, self.now(), "an upload may have gone out and files carry no key to look for")
            return "unknown"
        channel = anchor.result_channel if anchor else (row.result_channel or row.channel)
        try:
            if not self._hold(c):
                return LOST
            if channel[:1] in ("U", "W"):
                channel = self.client.conversations_open(users=channel)["channel"]["id"]
            # it went out after the attempt began: at most a lease before the attempt was settled (or taken over)
            oldest, cursor = _epoch(min(row.created_at, row.updated_at - outbox.LEASE) - LOOK_MARGIN), None
            for _ in range(LOOK_PAGES):
                if not self._hold(c):
                    return LOST
                if anchor is not None:
                    page = self.client.conversations_replies(
                        channel=channel,
                        ts=anchor.result_ts,
                        oldest=oldest,
                        limit=200,
                        cursor=cursor,
                        include_all_metadata=True,
                    )
                else:
                    page = self.client.conversations_history(
                        channel=channel, oldest=oldest, limit=200, cursor=cursor, include_all_metadata=True
                    )
                for m in page.get("messages") or []:
                    meta = m.get("metadata") or {}
                    if (
                        meta.get("event_type") == METADATA_TYPE
                        and (meta.get("event_payload") or {}).get("key") == row.key
                    ):
                        if outbox.found(self.db, c, self.now(), channel, m.get("ts")) and row.render in self.on_sent:
                            self.on_sent[row.render](self.ctx, row, channel, m.get("ts"), client=self.client)
                        return "found"
                cursor = (page.get("response_metadata") or {}).get("next_cursor")
                if not cursor:
                    return "absent"
            outbox.unknown(self.db, c, self.now(), f"more than {LOOK_PAGES * 200} messages since it was written")
            return "unknown"
        except SlackApiError as exc:
            status = getattr(exc.response, "status_code", 200) or 200
            if status == 429:
                outbox.later(
                    self.db,
                    c,
                    self.now(),
                    "looking: ratelimited",
                    unsure=True,
                    at=self.now() + timedelta(seconds=retry_after(exc.response)),
                )
                return "ratelimited"
            if status >= 500:
                outbox.later(self.db, c, self.now(), f"looking: {exc.response.get('error') or status}", unsure=True)
                return "later"
            outbox.unknown(self.db, c, self.now(), f"cannot look: {exc.response.get('error')}")
            return "unknown"
        except OSError as exc:
            outbox.later(self.db, c, self.now(), f"looking: unreachable: {type(exc).__name__}", unsure=True)
            return "later"
