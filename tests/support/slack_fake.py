"""A fake Slack Web API on a loopback HTTP server.

It records every call, answers like Slack (ids, ts, `ok: false` errors, 429 with Retry-After), and
refuses Block Kit that Slack would refuse, checked with slack_sdk's own models, so a template that
Slack would reject fails the tests here too.

It keeps the messages it was sent (`chat.postMessage`, edited by `chat.update`) and serves them back
through `conversations.history` and `conversations.replies`, so a test can check what a channel shows.

And it can fail the ways Slack fails, for a method's next calls, queued in call order:

- `fail(method, error)`: `ok: false` with `error`, nothing done;
- `rate_limit(method, retry_after)`: HTTP 429 with Retry-After, nothing done;
- `server_error(method, status)`: HTTP 5xx, nothing done;
- `store_then_error(method, status)`: done (the message is posted), but answered HTTP 5xx;
- `store_then_hang(method, seconds)`: done, but the answer held back `seconds` (a client's timeout);
- `answer(method)`: answered as usual, to fault a later call (queued before the fault);

The workspace's people, user groups and channels are what a test registers in `users`, `usergroups` and
`channels` (users.info, usergroups.list / .users.list, conversations.info / .members, paged).

plus `down(seconds)`: every call answers 503 and does nothing for a while, and rate limits like
Slack's (`limit_per_channel`, `limit_workspace`: token buckets answering 429, off by default).

Order in which a call is judged: `down` → the rate limits → the method's queued fault → the token →
Block Kit and metadata → the method itself. A call refused by `down` or a rate limit does not use up
a queued fault: the fault is for the next call that reaches "Slack".
"""

from __future__ import annotations

import base64
import copy
import itertools
import json
import math
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qsl, urlsplit

from slack_sdk.models.blocks import Block
from slack_sdk.models.views import View

BOT_USER, BOT_ID = "U0BOT", "B0BOT"
SERVER_ERROR = {"ok": False, "error": "internal_error"}  # the body of every 5xx the fake answers
DEFAULT_LIMIT, MAX_LIMIT = 100, 999  # conversations.history / .replies page sizes


def _fixed_clock() -> float:  # ts are real times, as Slack's are (Steward looks for messages since a moment)
    return time.time()


@dataclass
class Call:
    method: str
    args: dict
    token: str | None
    at: float = field(default_factory=time.monotonic)
    status: int = 200  # the HTTP status answered (set once the answer is decided)


@dataclass
class Throttled:
    """A 429 answered by `limit_per_channel` / `limit_workspace` (not by `rate_limit`)."""

    method: str
    channel: str
    retry_after: int
    scope: str  # "channel" or "workspace"
    at: float = field(default_factory=time.monotonic)


class _Bucket:
    """A token bucket: `burst` tokens, refilled at `rate` per second."""

    def __init__(self, rate: float, burst: int):
        self.rate, self.burst = rate, float(burst)
        self.tokens, self.at = float(burst), time.monotonic()

    def wait(self, now: float) -> float:
        """Seconds until a token is free (0 when one is)."""
        self.tokens = min(self.burst, self.tokens + (now - self.at) * self.rate)
        self.at = now
        return 0.0 if self.tokens >= 1 else (1 - self.tokens) / self.rate

    def take(self) -> None:
        self.tokens -= 1


def _check_blocks(method: str, args: dict) -> str | None:
    """What Slack would answer for invalid Block Kit, or None."""
    try:
        if method.startswith("views."):
            view = args.get("view")
            view = json.loads(view) if isinstance(view, str) else view
            if len(view.get("blocks", [])) > 100:
                return "invalid_arguments"
            View(**view).validate_json()
            if len(view.get("private_metadata") or "") > 3000:
                return "invalid_arguments"
        elif "blocks" in args:
            blocks = args["blocks"]
            blocks = json.loads(blocks) if isinstance(blocks, str) else blocks
            if len(blocks) > 50:
                return "invalid_blocks"
            for block in blocks:
                Block.parse(block).validate_json()
        if len(args.get("text") or "") > 40000:
            return "msg_too_long"
    except Exception:  # noqa: BLE001 - any model error is what Slack calls invalid_blocks
        return "invalid_blocks"
    return None


def _parse_metadata(args: dict) -> tuple[dict | None, str | None]:
    """The `metadata` argument (a dict in a JSON body, a JSON string in a form body) and Slack's error for it."""
    raw = args.get("metadata")
    if raw is None or raw == "":
        return None, None
    if isinstance(raw, str):
        try:
            raw = json.loads(raw)
        except ValueError:
            return None, "invalid_metadata_format"
    if (
        not isinstance(raw, dict)
        or not isinstance(raw.get("event_type"), str)
        or not raw["event_type"]
        or not isinstance(raw.get("event_payload"), dict)
    ):
        return None, "invalid_metadata_schema"
    return raw, None


def _dm(channel: str) -> str:
    """A user id used as a channel is that user's DM with the bot."""
    return "D" + channel[1:] if channel.startswith(("U", "W")) else channel


def _truthy(value) -> bool:
    return value is True or str(value).lower() in ("1", "true")


def _ts_key(ts: str) -> float:
    return float(ts)


class FakeSlack:
    def __init__(self):
        self.calls: list[Call] = []
        self.uploads: dict[str, bytes] = {}  # file id → the bytes POSTed to its upload URL
        self.rejections: list[tuple[str, str, dict]] = []
        self.throttled: list[Throttled] = []  # every 429 the rate limits answered
        self.clock: Callable[[], float] = _fixed_clock  # "now" for new ts; time.time gives real ones (reset() restores)
        self._faults: dict[str, list[tuple[str, object]]] = {}
        self._messages: dict[str, list[dict]] = {}  # channel → its messages, oldest first
        self._dms: set[str] = set()  # DM channels opened or posted to
        self.homes: dict[str, dict] = {}  # user id → the Home view last published for them (views.publish)
        self.revoked: set[str] = set()  # bot tokens Slack refuses (invalid_auth): revoked, or of another app
        self.users: dict[str, dict] = {}  # user id → profile fields users.list gives (tz, deleted, is_bot, …)
        self.usergroups: dict[str, dict] = {}  # user group id → {"users": [...], "handle": …, "date_delete": 0}
        self.channels: dict[str, dict] = {}  # channel id → {"members": [...], "is_archived", "is_private", "is_member"}
        self._channel_limits: dict[str, tuple[float, int, dict[str, _Bucket]]] = {}
        self._workspace_limits: dict[str, _Bucket] = {}
        self._down_until = 0.0
        self.socket_url: str | None = None  # what apps.connections.open answers (a fake Socket Mode server's ws:// URL)
        self._stopping = threading.Event()
        self._lock = threading.Lock()
        self._last_ts = 1700000000 * 10**6  # microseconds; never reset, so a ts is never issued twice
        self._ids = itertools.count(1)
        fake = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            disable_nagle_algorithm = (
                True  # headers and body are two writes: no 40 ms delayed-ACK stall on kept-alive connections
            )

            def log_message(self, *args):
                pass

            def _reply(self, status: int, headers: dict, data: bytes) -> None:
                try:
                    self.send_response(status)
                    for key, value in headers.items():
                        self.send_header(key, value)
                    self.send_header("Content-Length", str(len(data)))
                    self.end_headers()
                    self.wfile.write(data)
                except OSError:  # the client gave up (its timeout, during store_then_hang)
                    self.close_connection = True

            def _api(self, args: dict) -> None:
                url = urlsplit(self.path)
                args = {**dict(parse_qsl(url.query, keep_blank_values=True)), **args}
                auth = self.headers.get("Authorization", "")
                status, headers, body = fake._handle(
                    url.path.rsplit("/", 1)[-1], args, auth.removeprefix("Bearer ") or args.get("token")
                )
                self._reply(
                    status, {**headers, "Content-Type": "application/json; charset=utf-8"}, json.dumps(body).encode()
                )

            def do_GET(self):
                self._api({})

            def do_POST(self):
                length = int(self.headers.get("Content-Length") or 0)
                if self.path.startswith("/upload/"):  # step 2 of files_upload_v2: the bytes, not an API call
                    data = self.rfile.read(length)
                    if fake._is_down():
                        self._reply(
                            503, {"Content-Type": "application/json; charset=utf-8"}, json.dumps(SERVER_ERROR).encode()
                        )
                        return
                    with fake._lock:
                        fake.uploads[self.path.rsplit("/", 1)[-1]] = data
                    self._reply(200, {}, b"OK")
                    return
                raw = self.rfile.read(length).decode()
                if self.headers.get("Content-Type", "").startswith("application/json"):
                    args = json.loads(raw or "{}")
                else:
                    args = dict(parse_qsl(raw, keep_blank_values=True))
                self._api(args)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/api/"
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    # -- lifecycle --------------------------------------------------------------------------------
    def start(self) -> FakeSlack:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stopping.set()  # answers held by store_then_hang go out now
        self.server.shutdown()
        self.server.server_close()

    def reset(self, keep_messages: bool = False) -> None:
        """Forget the record, the messages, the faults, the rate limits and any outage; the clock back to fixed.
        Issued ts are never reused: a message posted before a reset is `message_not_found` after it, unless
        `keep_messages` (for a test that forgets the calls so far but goes on editing the cards it posted)."""
        with self._lock:
            self.calls.clear()
            self.uploads.clear()
            self.rejections.clear()
            self.throttled.clear()
            self._faults.clear()
            if not keep_messages:
                self._messages.clear()
                self._dms.clear()
            self._channel_limits.clear()
            self._workspace_limits.clear()
            self._down_until = 0.0
            self.clock = _fixed_clock
            self.users.clear()
            self.usergroups.clear()
            self.channels.clear()
            self.homes.clear()
            self.revoked.clear()
            self.socket_url = None

    # -- programming faults -----------------------------------------------------------------------
    def _queue(self, method: str, fault: tuple[str, object], times: int) -> None:
        with self._lock:
            self._faults.setdefault(method, []).extend([fault] * times)

    def answer(self, method: str, times: int = 1) -> None:
        """The next `times` calls of `method` are answered as usual: queued before a fault, it faults a later
        call (the second page of a paged read, say)."""
        self._queue(method, ("answer", None), times)

    def fail(self, method: str, error: str, times: int = 1) -> None:
        """The next `times` calls of `method` answer `ok: false` with `error`."""
        self._queue(method, ("error", error), times)

    def rate_limit(self, method: str, retry_after: int = 1, times: int = 1) -> None:
        """The next `times` calls of `method` answer HTTP 429 with Retry-After."""
        self._queue(method, ("429", retry_after), times)

    def server_error(self, method: str, status: int = 503, times: int = 1) -> None:
        """The next `times` calls of `method` answer HTTP `status` without doing anything."""
        self._queue(method, ("server_error", status), times)

    def store_then_error(self, method: str, status: int = 503, times: int = 1) -> None:
        """The next `times` calls of `method` are carried out (the message is posted) but answer HTTP
        `status`: Slack acted, the client thinks it failed. A call Slack refuses anyway answers its refusal."""
        self._queue(method, ("store_then_error", status), times)

    def store_then_hang(self, method: str, seconds: float, times: int = 1) -> None:
        """The next `times` calls of `method` are carried out, then their answer is held `seconds`:
        a client with a shorter timeout gives up after Slack acted. Other calls are answered meanwhile."""
        self._queue(method, ("store_then_hang", seconds), times)

    def down(self, seconds: float) -> None:
        """For the next `seconds`, every API call (and upload) answers HTTP 503 and does nothing; 0 ends it."""
        with self._lock:
            self._down_until = time.monotonic() + seconds

    def limit_per_channel(self, method: str = "chat.postMessage", per_second: float = 1.0, burst: int = 1) -> None:
        """Rate-limit `method` per channel like Slack: a token bucket per channel (`burst` tokens, refilled
        at `per_second`); a call without a token answers 429 with Retry-After and is not carried out."""
        if per_second <= 0 or burst < 1:
            raise ValueError("per_second must be > 0 and burst >= 1")
        with self._lock:
            self._channel_limits[method] = (per_second, burst, {})

    def limit_workspace(self, method: str = "chat.postMessage", per_minute: float = 60.0, burst: int = 1) -> None:
        """Rate-limit `method` across all channels: one token bucket refilled at `per_minute` / 60 a second."""
        if per_minute <= 0 or burst < 1:
            raise ValueError("per_minute must be > 0 and burst >= 1")
        with self._lock:
            self._workspace_limits[method] = _Bucket(per_minute / 60, burst)

    # -- reading what happened --------------------------------------------------------------------
    def first(self, since: int, match, timeout: float = 10.0, what: str = "such a call") -> Call:
        """The first call from index `since` on that `match`es (many clients at once: each its own `since`)."""
        deadline, seen = time.monotonic() + timeout, since
        while time.monotonic() < deadline:
            calls = self.calls[seen:]
            for call in calls:
                if match(call):
                    return call
            seen += len(calls)
            time.sleep(0.0005)
        raise TimeoutError(f"the fake Slack saw no {what} in {timeout:g} s")

    def of(self, method: str) -> list[Call]:
        with self._lock:
            return [c for c in self.calls if c.method == method]

    def wait(self, method: str, count: int = 1, timeout: float = 10.0) -> list[Call]:
        """Wait until `method` was called at least `count` times (listeners work after the ack)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            calls = self.of(method)
            if len(calls) >= count:
                return calls
            time.sleep(0.01)
        raise AssertionError(
            f"{method} called {len(self.of(method))} times, expected {count}: {[c.method for c in self.calls]}"
        )

    def settle(self, quiet: float = 0.3, timeout: float = 10.0) -> None:
        """Wait until no call has arrived for `quiet` seconds."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self._lock:
                last = self.calls[-1].at if self.calls else 0
            if time.monotonic() - last >= quiet:
                return
            time.sleep(0.05)

    def messages(self, channel: str) -> list[dict]:
        """The messages stored in `channel` (a user id means the DM), oldest first, thread replies included:
        dicts with channel, ts, text, blocks, thread_ts, metadata (None when absent)."""
        with self._lock:
            return copy.deepcopy(self._messages.get(_dm(channel), []))

    def posted(self, key) -> int:
        """How many stored messages, in any channel, carry `metadata.event_payload.key == key`."""
        with self._lock:
            return sum(
                1
                for msgs in self._messages.values()
                for m in msgs
                if ((m["metadata"] or {}).get("event_payload") or {}).get("key") == key
            )

    # -- answering --------------------------------------------------------------------------------
    def _is_down(self) -> bool:
        return time.monotonic() < self._down_until

    def _throttle(self, method: str, args: dict) -> Throttled | None:
        """Under the lock: the rate limits' 429 for this call, or None (and the call takes its tokens)."""
        channel = _dm(str(args.get("channel") or args.get("channel_id") or ""))
        buckets: list[tuple[str, _Bucket]] = []
        if method in self._channel_limits:
            rate, burst, per_channel = self._channel_limits[method]
            buckets.append(("channel", per_channel.setdefault(channel, _Bucket(rate, burst))))
        if method in self._workspace_limits:
            buckets.append(("workspace", self._workspace_limits[method]))
        now = time.monotonic()
        waits = [(bucket.wait(now), scope) for scope, bucket in buckets]
        if any(w > 0 for w, _ in waits):
            wait, scope = max(waits)
            throttled = Throttled(method, channel, max(1, math.ceil(wait - 1e-9)), scope)
            self.throttled.append(throttled)
            return throttled
        for _, bucket in buckets:
            bucket.take()
        return None

    def _handle(self, method: str, args: dict, token: str | None):
        call = Call(method, args, token)
        status, headers, body, hang = self._decide(call)
        call.status = status
        if hang:
            self._stopping.wait(hang)
        return status, headers, body

    def _decide(self, call: Call) -> tuple[int, dict, dict, float]:
        method, args, token = call.method, call.args, call.token
        with self._lock:
            self.calls.append(call)
            if self._is_down():
                return 503, {}, dict(SERVER_ERROR), 0
            throttled = self._throttle(method, args)
            if throttled:
                return 429, {"Retry-After": str(throttled.retry_after)}, {"ok": False, "error": "ratelimited"}, 0
            faults = self._faults.get(method)
            kind, value = faults.pop(0) if faults else (None, None)
        if kind == "429":
            return 429, {"Retry-After": str(value)}, {"ok": False, "error": "ratelimited"}, 0
        if kind == "error":
            return 200, {}, {"ok": False, "error": value}, 0
        if kind == "server_error":
            return int(value), {}, dict(SERVER_ERROR), 0
        if method == "apps.connections.open":  # Socket Mode: the one method that takes the app-level token
            if not token or not token.startswith("xapp-"):
                return 200, {}, {"ok": False, "error": "not_authed"}, 0
            if not self.socket_url:
                return 200, {}, {"ok": False, "error": "internal_error"}, 0
            return 200, {}, {"ok": True, "url": self.socket_url}, 0
        if not token or not token.startswith("xoxb-"):
            return 200, {}, {"ok": False, "error": "not_authed"}, 0
        if token in self.revoked:
            return 200, {}, {"ok": False, "error": "invalid_auth"}, 0
        invalid = _check_blocks(method, args)
        if not invalid and method in ("chat.postMessage", "chat.update"):
            invalid = _parse_metadata(args)[1]
        if invalid:
            with self._lock:
                self.rejections.append((method, invalid, args))
            return 200, {}, {"ok": False, "error": invalid}, 0
        with self._lock:
            answer = self._answer(method, args)
        if kind == "store_then_error" and answer.get("ok"):
            return int(value), {}, dict(SERVER_ERROR), 0
        return 200, {}, answer, float(value) if kind == "store_then_hang" else 0

    def _next_ts(self) -> str:
        self._last_ts = max(self._last_ts + 1, int(self.clock() * 10**6))
        return f"{self._last_ts // 10**6}.{self._last_ts % 10**6:06d}"

    def _find(self, channel: str, ts) -> dict | None:
        return next((m for m in self._messages.get(channel, []) if m["ts"] == ts), None)

    def _threads(self, channel: str) -> dict[str, list[dict]]:
        """A channel's thread replies by their parent's ts, oldest first."""
        threads: dict[str, list[dict]] = {}
        for m in self._messages.get(channel, []):
            if m["thread_ts"] not in (None, m["ts"]):
                threads.setdefault(m["thread_ts"], []).append(m)
        return threads

    def _public(self, message: dict, metadata: bool, threads: dict[str, list[dict]]) -> dict:
        """A stored message as the Web API shows it: absent fields left out, metadata only when asked, a
        thread's parent with its reply count."""
        out = {
            k: copy.deepcopy(v)
            for k, v in message.items()
            if v is not None and k not in ("channel", "metadata", "reply_broadcast")
        }
        if metadata and message["metadata"] is not None:
            out["metadata"] = copy.deepcopy(message["metadata"])
        replies = threads.get(message["ts"])
        if replies:
            out.update(thread_ts=message["ts"], reply_count=len(replies), latest_reply=replies[-1]["ts"])
        return out

    def _page(self, args: dict, channel: str, messages: list[dict], newest_first: bool) -> dict:
        """Filter by oldest/latest, page by limit/cursor; the messages come in the order given."""
        try:
            oldest = float(args.get("oldest") or 0)
        except ValueError:
            return {"ok": False, "error": "invalid_ts_oldest"}
        try:
            latest = float(args.get("latest") or math.inf)
        except ValueError:
            return {"ok": False, "error": "invalid_ts_latest"}
        try:
            limit = int(args.get("limit") or DEFAULT_LIMIT)
        except ValueError:
            return {"ok": False, "error": "invalid_limit"}
        limit = min(limit if limit > 0 else DEFAULT_LIMIT, MAX_LIMIT)
        if _truthy(args.get("inclusive")):
            messages = [m for m in messages if oldest <= _ts_key(m["ts"]) <= latest]
        else:
            messages = [m for m in messages if oldest < _ts_key(m["ts"]) < latest]
        if args.get("cursor"):
            try:
                cursor = base64.b64decode(args["cursor"], validate=True).decode()
                if not cursor.startswith("next_ts:"):
                    raise ValueError(cursor)
                at = _ts_key(cursor.removeprefix("next_ts:"))
            except ValueError:
                return {"ok": False, "error": "invalid_cursor"}
            messages = [m for m in messages if (_ts_key(m["ts"]) <= at if newest_first else _ts_key(m["ts"]) >= at)]
        more = len(messages) > limit
        cursor = base64.b64encode(f"next_ts:{messages[limit]['ts']}".encode()).decode() if more else ""
        metadata, threads = _truthy(args.get("include_all_metadata")), self._threads(channel)
        return {
            "ok": True,
            "messages": [self._public(m, metadata, threads) for m in messages[:limit]],
            "has_more": more,
            "response_metadata": {"next_cursor": cursor},
        }

    def _known_channel(self, channel: str) -> bool:
        return channel in self._messages or channel in self._dms or channel.startswith(("C", "G"))

    def _answer(self, method: str, args: dict) -> dict:
        """Under the lock: carry out an accepted call."""
        n = next(self._ids)
        if method == "auth.test":
            return {
                "ok": True,
                "url": "https://acme.slack.com/",
                "team": "Acme",
                "user": "steward",
                "team_id": "T0ACME",
                "user_id": BOT_USER,
                "bot_id": BOT_ID,
            }
        if method == "chat.postMessage":
            channel = _dm(args.get("channel", ""))
            blocks = args.get("blocks")
            message = {
                "type": "message",
                "channel": channel,
                "ts": self._next_ts(),
                "user": BOT_USER,
                "bot_id": BOT_ID,
                "text": args.get("text"),
                "blocks": json.loads(blocks) if isinstance(blocks, str) else blocks,
                "thread_ts": args.get("thread_ts") or None,
                "reply_broadcast": _truthy(args.get("reply_broadcast")),
                "metadata": _parse_metadata(args)[0],
            }
            self._messages.setdefault(channel, []).append(message)
            if channel.startswith("D"):
                self._dms.add(channel)
            return {"ok": True, "channel": channel, "ts": message["ts"], "message": self._public(message, True, {})}
        if method == "chat.update":
            channel = _dm(args.get("channel", ""))
            message = self._find(channel, args.get("ts"))
            if message is None:
                return {"ok": False, "error": "message_not_found"}
            if args.get("text") is not None:
                message["text"] = args["text"]
            if args.get("blocks") is not None:
                blocks = args["blocks"]
                message["blocks"] = json.loads(blocks) if isinstance(blocks, str) else blocks
            if args.get("metadata") not in (None, ""):
                message["metadata"] = _parse_metadata(args)[0]
            return {
                "ok": True,
                "channel": channel,
                "ts": message["ts"],
                "text": message["text"],
                "message": self._public(message, True, {}),
            }
        if method == "conversations.history":
            channel = args.get("channel") or ""
            if not self._known_channel(channel):
                return {"ok": False, "error": "channel_not_found"}
            messages = [
                m for m in self._messages.get(channel, []) if m["thread_ts"] in (None, m["ts"]) or m["reply_broadcast"]
            ]
            return self._page(
                args, channel, sorted(messages, key=lambda m: _ts_key(m["ts"]), reverse=True), newest_first=True
            )
        if method == "conversations.replies":
            channel = args.get("channel") or ""
            if not self._known_channel(channel):
                return {"ok": False, "error": "channel_not_found"}
            message = self._find(channel, args.get("ts"))
            if message is not None and message["thread_ts"] not in (None, message["ts"]):
                message = self._find(channel, message["thread_ts"])  # a reply's ts names its whole thread
            if message is None:
                return {"ok": False, "error": "thread_not_found"}
            replies = sorted(
                (m for m in self._messages[channel] if m["thread_ts"] == message["ts"] and m is not message),
                key=lambda m: _ts_key(m["ts"]),
            )
            answer = self._page(args, channel, replies, newest_first=False)
            if answer["ok"] and not args.get("cursor"):  # the parent always comes first, on the first page
                answer["messages"].insert(
                    0, self._public(message, _truthy(args.get("include_all_metadata")), self._threads(channel))
                )
            return answer
        if method == "chat.postEphemeral":
            return {"ok": True, "message_ts": f"1700000001.{n:06d}"}
        if method == "views.publish":  # a person's App Home: a `home` view, for a user
            view = args.get("view")
            view = json.loads(view) if isinstance(view, str) else view
            if not args.get("user_id") or view.get("type") != "home":
                return {"ok": False, "error": "invalid_arguments"}
            self.homes[args["user_id"]] = view
            return {"ok": True, "view": dict(view, id=f"VH{n:08d}", hash=f"h{n}")}
        if method in ("views.open", "views.update", "views.push"):
            if method == "views.open" and not args.get("trigger_id"):
                return {"ok": False, "error": "invalid_trigger_id"}
            view = args.get("view")
            view = json.loads(view) if isinstance(view, str) else view
            return {"ok": True, "view": dict(view, id=args.get("view_id") or f"V{n:08d}", hash=f"h{n}")}
        if method == "files.getUploadURLExternal":
            if not args.get("filename") or not str(args.get("length", "")).isdigit():
                return {"ok": False, "error": "invalid_arguments"}
            file_id = f"F{n:08d}"
            return {"ok": True, "file_id": file_id, "upload_url": self.url.removesuffix("api/") + f"upload/{file_id}"}
        if method == "files.completeUploadExternal":
            files = args.get("files")
            files = json.loads(files) if isinstance(files, str) else files
            missing = [f["id"] for f in files if f["id"] not in self.uploads]
            if missing:
                return {"ok": False, "error": "file_not_found"}
            return {
                "ok": True,
                "files": [
                    {"id": f["id"], "title": f.get("title"), "channels": [args.get("channel_id")]} for f in files
                ],
            }
        if method == "users.list":  # paged by an opaque cursor, as Slack's
            ids = sorted(self.users)
            limit = max(1, min(int(args.get("limit") or 100), 1000))
            cursor = str(args.get("cursor") or "")
            try:
                start = int(base64.b64decode(cursor).decode().removeprefix("user:")) if cursor else 0
            except ValueError:
                return {"ok": False, "error": "invalid_cursor"}
            page = ids[start : start + limit]
            more = start + limit < len(ids)
            return {
                "ok": True,
                "members": [{"id": u, **self.users[u]} for u in page],
                "response_metadata": {
                    "next_cursor": base64.b64encode(f"user:{start + limit}".encode()).decode() if more else ""
                },
            }
        if method == "chat.getPermalink":  # a link to a message Slack has: https://<workspace>.slack.com/archives/C…/p…
            channel = _dm(args.get("channel", ""))
            message = self._find(channel, args.get("message_ts"))
            if message is None:
                return {"ok": False, "error": "message_not_found"}
            link = f"https://acme.slack.com/archives/{channel}/p{message['ts'].replace('.', '')}"
            if message["thread_ts"] not in (None, message["ts"]):
                link += f"?thread_ts={message['thread_ts']}&cid={channel}"
            return {"ok": True, "channel": channel, "permalink": link}
        if method == "users.info":  # the users registered in `users`, and the bot itself
            user = args.get("user") or ""
            if user == BOT_USER:
                return {"ok": True, "user": {"id": user, "name": "steward", "is_bot": True, "deleted": False}}
            if user not in self.users:
                return {"ok": False, "error": "user_not_found"}
            return {"ok": True, "user": {"id": user, "is_bot": False, "deleted": False, **self.users[user]}}
        if method == "usergroups.list":
            disabled = _truthy(args.get("include_disabled"))
            return {
                "ok": True,
                "usergroups": [
                    {
                        "id": g,
                        "handle": v.get("handle", g.lower()),
                        "date_delete": v.get("date_delete", 0),
                        "users": list(v.get("users", [])),
                    }
                    for g, v in sorted(self.usergroups.items())
                    if disabled or not v.get("date_delete")
                ],
            }
        if method == "usergroups.users.list":
            group = self.usergroups.get(args.get("usergroup") or "")
            if group is None:
                return {"ok": False, "error": "no_such_subteam"}
            if group.get("date_delete") and not _truthy(args.get("include_disabled")):
                return {"ok": True, "users": []}  # disabled: Slack shows it with no one in it (user_count 0)
            return {"ok": True, "users": list(group.get("users", []))}
        if method in ("conversations.info", "conversations.members"):  # the channels registered in `channels`
            channel = self.channels.get(args.get("channel") or "")
            if channel is None:
                return {"ok": False, "error": "channel_not_found"}
            if method == "conversations.info":
                return {
                    "ok": True,
                    "channel": {
                        "id": args.get("channel"),
                        "is_archived": channel.get("is_archived", False),
                        "is_private": channel.get("is_private", False),
                        "is_member": channel.get("is_member", True),
                    },
                }
            people = list(channel.get("members", []))
            limit = max(1, min(int(args.get("limit") or 100), 1000))
            cursor = str(args.get("cursor") or "")
            try:
                start = int(base64.b64decode(cursor).decode().removeprefix("member:")) if cursor else 0
            except ValueError:
                return {"ok": False, "error": "invalid_cursor"}
            more = start + limit < len(people)
            return {
                "ok": True,
                "members": people[start : start + limit],
                "response_metadata": {
                    "next_cursor": base64.b64encode(f"member:{start + limit}".encode()).decode() if more else ""
                },
            }
        if method == "conversations.join":
            return {"ok": True, "channel": {"id": args.get("channel")}}
        if method == "conversations.open":
            if args.get("channel"):
                return {"ok": True, "channel": {"id": args["channel"]}}
            channel = "D" + str(args.get("users", "X")).split(",")[0].strip()[1:]  # the DM chat.postMessage uses
            self._dms.add(channel)
            return {"ok": True, "channel": {"id": channel}}
        return {"ok": True}
