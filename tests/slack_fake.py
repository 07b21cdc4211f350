"""A fake Slack Web API on a loopback HTTP server.

It records every call, answers like Slack (ids, ts, `ok: false` errors, 429 with Retry-After), and
refuses Block Kit that Slack would refuse, checked with slack_sdk's own models, so a template that
Slack would reject fails the tests here too.
"""

from __future__ import annotations

import itertools
import json
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qsl

from slack_sdk.models.blocks import Block
from slack_sdk.models.views import View


@dataclass
class Call:
    method: str
    args: dict
    token: str | None
    at: float = field(default_factory=time.monotonic)


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


class FakeSlack:
    def __init__(self):
        self.calls: list[Call] = []
        self.uploads: dict[str, bytes] = {}  # file id → the bytes POSTed to its upload URL
        self.rejections: list[tuple[str, str, dict]] = []
        self._faults: dict[str, list[tuple[str, object]]] = {}
        self._lock = threading.Lock()
        self._ts = itertools.count(1)
        self._ids = itertools.count(1)
        fake = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):
                pass

            def do_POST(self):
                length = int(self.headers.get("Content-Length") or 0)
                if self.path.startswith("/upload/"):  # step 2 of files_upload_v2: the bytes, not an API call
                    with fake._lock:
                        fake.uploads[self.path.rsplit("/", 1)[-1]] = self.rfile.read(length)
                    self.send_response(200)
                    self.send_header("Content-Length", "2")
                    self.end_headers()
                    self.wfile.write(b"OK")
                    return
                raw = self.rfile.read(length).decode()
                if self.headers.get("Content-Type", "").startswith("application/json"):
                    args = json.loads(raw or "{}")
                else:
                    args = dict(parse_qsl(raw, keep_blank_values=True))
                auth = self.headers.get("Authorization", "")
                status, headers, body = fake._handle(self.path.rsplit("/", 1)[-1], args, auth.removeprefix("Bearer ") or args.get("token"))
                data = json.dumps(body).encode()
                self.send_response(status)
                for key, value in headers.items():
                    self.send_header(key, value)
                self.send_header("Content-Type", "application/json; charset=utf-8")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/api/"
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    # -- lifecycle --------------------------------------------------------------------------------
    def start(self) -> FakeSlack:
        self._thread.start()
        return self

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    def reset(self) -> None:
        with self._lock:
            self.calls.clear()
            self.uploads.clear()
            self.rejections.clear()
            self._faults.clear()

    # -- programming faults -----------------------------------------------------------------------
    def fail(self, method: str, error: str, times: int = 1) -> None:
        """The next `times` calls of `method` answer `ok: false` with `error`."""
        with self._lock:
            self._faults.setdefault(method, []).extend([("error", error)] * times)

    def rate_limit(self, method: str, retry_after: int = 1, times: int = 1) -> None:
        """The next `times` calls of `method` answer HTTP 429 with Retry-After."""
        with self._lock:
            self._faults.setdefault(method, []).extend([("429", retry_after)] * times)

    # -- reading what happened --------------------------------------------------------------------
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
        raise AssertionError(f"{method} called {len(self.of(method))} times, expected {count}: {[c.method for c in self.calls]}")

    def settle(self, quiet: float = 0.3, timeout: float = 10.0) -> None:
        """Wait until no call has arrived for `quiet` seconds."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self._lock:
                last = self.calls[-1].at if self.calls else 0
            if time.monotonic() - last >= quiet:
                return
            time.sleep(0.05)

    # -- answering --------------------------------------------------------------------------------
    def _handle(self, method: str, args: dict, token: str | None):
        with self._lock:
            self.calls.append(Call(method, args, token))
            faults = self._faults.get(method)
            fault = faults.pop(0) if faults else None
        if fault and fault[0] == "429":
            return 429, {"Retry-After": str(fault[1])}, {"ok": False, "error": "ratelimited"}
        if fault:
            return 200, {}, {"ok": False, "error": fault[1]}
        if not token or not token.startswith("xoxb-"):
            return 200, {}, {"ok": False, "error": "not_authed"}
        invalid = _check_blocks(method, args)
        if invalid:
            with self._lock:
                self.rejections.append((method, invalid, args))
            return 200, {}, {"ok": False, "error": invalid}
        return 200, {}, self._answer(method, args)

    def _answer(self, method: str, args: dict) -> dict:
        n = next(self._ids)
        if method == "auth.test":
            return {"ok": True, "url": "https://acme.slack.com/", "team": "Acme", "user": "steward", "team_id": "T0ACME", "user_id": "U0BOT", "bot_id": "B0BOT"}
        if method == "chat.postMessage":
            channel = args.get("channel", "")
            channel = "D" + channel[1:] if channel.startswith(("U", "W")) else channel
            ts = f"1700000000.{next(self._ts):06d}"
            return {"ok": True, "channel": channel, "ts": ts, "message": {"text": args.get("text"), "ts": ts}}
        if method == "chat.update":
            return {"ok": True, "channel": args.get("channel"), "ts": args.get("ts"), "text": args.get("text")}
        if method == "chat.postEphemeral":
            return {"ok": True, "message_ts": f"1700000001.{n:06d}"}
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
            return {"ok": True, "files": [{"id": f["id"], "title": f.get("title"), "channels": [args.get("channel_id")]} for f in files]}
        if method == "conversations.join":
            return {"ok": True, "channel": {"id": args.get("channel")}}
        if method == "conversations.open":
            return {"ok": True, "channel": {"id": "D" + str(args.get("users", "X"))[1:]}}
        return {"ok": True}
