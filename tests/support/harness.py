"""Driving Steward the way Slack does: the app served for real, requests signed like Slack signs them."""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from urllib.parse import urlencode

ROOT = Path(__file__).resolve().parents[2]
SECRET = "test-signing-secret"
TOKEN = "xoxb-test-token"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def sign(body: bytes, timestamp: int | None = None, secret: str = SECRET) -> dict:
    timestamp = int(time.time()) if timestamp is None else timestamp
    base = f"v0:{timestamp}:".encode() + body
    signature = "v0=" + hmac.new(secret.encode(), base, hashlib.sha256).hexdigest()
    return {"X-Slack-Request-Timestamp": str(timestamp), "X-Slack-Signature": signature}


def cli(*args, env: dict | None = None, cwd=ROOT, timeout: float = 120) -> subprocess.CompletedProcess:
    """`python -m bot ARGS` as an operator runs it: no Slack settings but those given."""
    full = {k: v for k, v in os.environ.items() if not k.startswith("SLACK_")}
    full.update(env or {})
    return subprocess.run(
        [sys.executable, "-m", "bot", *args], cwd=cwd, env=full, capture_output=True, text=True, timeout=timeout
    )


class Response:
    def __init__(self, status: int, body: bytes):
        self.status, self.raw = status, body

    def json(self):
        return json.loads(self.raw or b"null")


def http(
    url: str, data: bytes | None = None, headers: dict | None = None, method: str | None = None, timeout: float = 10
) -> Response:
    request = urllib.request.Request(url, data=data, headers=headers or {}, method=method)
    try:
        with urllib.request.urlopen(request, timeout=timeout) as r:
            return Response(r.status, r.read())
    except urllib.error.HTTPError as e:
        return Response(e.code, e.read())


def command_body(user: str, text: str = "", command: str = "/handoff", channel: str = "C0WORK") -> dict:
    """A slash command's fields as Slack sends them (a form; Bolt parses it into this dict)."""
    return {
        "token": "legacy",
        "team_id": "T0ACME",
        "team_domain": "acme",
        "channel_id": channel,
        "channel_name": "work",
        "user_id": user,
        "user_name": user.lower(),
        "command": command,
        "text": text,
        "api_app_id": "A0STEWARD",
        "is_enterprise_install": "false",
        "response_url": "https://hooks.slack.invalid/commands/1",
        "trigger_id": f"trigger-{time.monotonic_ns()}",
    }


def process_config_of(tree: Path) -> Path:
    """The organisation the tests drive, in another checkout (older trees kept it in tests/)."""
    for candidate in ("tests/data/process.toml", "tests/process.toml"):
        if (tree / candidate).exists():
            return tree / candidate
    raise FileNotFoundError(f"{tree}: no tests/data/process.toml")


class Steward:
    """`python -m bot serve` in a subprocess, against the fake Web API. `tree`: the checkout it is served
    from (another one: a benchmark comparing trees)."""

    def __init__(
        self,
        database_url: str,
        api_url: str,
        process_config: Path,
        workers: int = 2,
        extra_env: dict | None = None,
        tree: Path = ROOT,
    ):
        self.tree = tree
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.env = {
            **{k: v for k, v in os.environ.items() if not k.startswith("SLACK_")},
            "SLACK_BOT_TOKEN": TOKEN,
            "SLACK_SIGNING_SECRET": SECRET,
            "SLACK_API_URL": api_url,
            "DATABASE_URL": database_url,
            "PROCESS_CONFIG": str(process_config),
            "PORT": str(self.port),
            "HOST": "127.0.0.1",
            "WEB_CONCURRENCY": str(workers),
            "LOG_LEVEL": "WARNING",
            **(extra_env or {}),
        }
        self.proc: subprocess.Popen | None = None
        self.log_path = Path(os.environ.get("TMPDIR", "/tmp")) / f"steward-{self.port}.log"

    def start(self, timeout: float = 30) -> Steward:
        self.log = open(self.log_path, "wb")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "bot", "serve"],
            cwd=self.tree,
            env=self.env,
            stdout=self.log,
            stderr=subprocess.STDOUT,
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"serve exited {self.proc.returncode}: {self.output()}")
            try:
                if http(self.url + "/healthz", timeout=1).status == 200:
                    return self
            except OSError:
                pass
            time.sleep(0.1)
        raise RuntimeError(f"serve did not answer in {timeout}s: {self.output()}")

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if getattr(self, "log", None):
            self.log.close()

    def kill(self) -> None:
        """SIGKILL `serve` and every process it started (gunicorn's master and its workers), as a crash or
        `kill -9` would: nothing gets to finish what it was doing. `serve` shares the test's process group,
        so the tree is found through /proc; the master is stopped first, so it cannot fork a replacement."""

        if not self.proc or self.proc.poll() is not None:
            return
        os.kill(self.proc.pid, signal.SIGSTOP)
        tree, grew = {self.proc.pid}, True
        while grew:
            grew = False
            for entry in Path("/proc").iterdir():
                if not entry.name.isdigit() or int(entry.name) in tree:
                    continue
                try:
                    stat = (entry / "stat").read_text()
                except OSError:
                    continue
                if int(stat.rsplit(")", 1)[1].split()[1]) in tree:  # the field after the state is the parent's pid
                    tree.add(int(entry.name))
                    grew = True
                    try:
                        os.kill(int(entry.name), signal.SIGSTOP)
                    except ProcessLookupError:
                        pass
        for pid in tree:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        self.proc.wait()
        if getattr(self, "log", None):
            self.log.close()

    def output(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    # -- sending what Slack sends -----------------------------------------------------------------
    def post(
        self,
        body: bytes,
        content_type: str = "application/x-www-form-urlencoded",
        headers: dict | None = None,
        signed: bool = True,
        timestamp: int | None = None,
    ) -> Response:
        all_headers = {"Content-Type": content_type, **(sign(body, timestamp) if signed else {}), **(headers or {})}
        return http(self.url + "/slack/events", data=body, headers=all_headers, method="POST")

    def command(self, user: str, text: str = "", command: str = "/handoff", channel: str = "C0WORK") -> Response:
        return self.post(urlencode(command_body(user, text, command, channel)).encode())

    def interact(self, payload: dict) -> Response:
        return self.post(urlencode({"payload": json.dumps(payload)}).encode())

    def click(
        self,
        user: str,
        action_id: str,
        value: str | None = None,
        *,
        channel: str = "C0ENG",
        message_ts: str = "1700000000.000001",
        view: dict | None = None,
        selected: str | None = None,
    ) -> Response:
        action = {"action_id": action_id, "block_id": "b", "type": "button", "action_ts": str(time.time())}
        if value is not None:
            action["value"] = value
        if selected is not None:
            action.update(
                type="static_select",
                selected_option={"value": selected, "text": {"type": "plain_text", "text": selected}},
            )
        payload = {
            "type": "block_actions",
            "user": {"id": user, "username": user.lower(), "name": user.lower(), "team_id": "T0ACME"},
            "api_app_id": "A0STEWARD",
            "token": "legacy",
            "trigger_id": f"trigger-{time.monotonic_ns()}",
            "team": {"id": "T0ACME", "domain": "acme"},
            "actions": [action],
            "response_url": "https://hooks.slack.invalid/actions/1",
        }
        if view is not None:
            payload["container"] = {"type": "view", "view_id": view["id"]}
            payload["view"] = view
        else:
            payload["container"] = {
                "type": "message",
                "message_ts": message_ts,
                "channel_id": channel,
                "is_ephemeral": False,
            }
            payload["channel"] = {"id": channel, "name": "channel"}
            payload["message"] = {"ts": message_ts, "text": "card", "blocks": []}
        return self.interact(payload)

    def submit(self, user: str, view: dict, values: dict) -> Response:
        """Submit a view as Slack would, with `values` by block id (text, option value, list of values, date)."""
        return self.interact(submission(user, view, values))


def submission(user: str, view: dict, values: dict) -> dict:
    """A view_submission's body, the view's state filled with `values` by block id, as Slack sends it."""
    return {
        "type": "view_submission",
        "team": {"id": "T0ACME", "domain": "acme"},
        "user": {"id": user, "username": user.lower(), "name": user.lower(), "team_id": "T0ACME"},
        "api_app_id": "A0STEWARD",
        "token": "legacy",
        "trigger_id": f"trigger-{time.monotonic_ns()}",
        "view": dict(view, state={"values": fill(view, values)}),
        "response_urls": [],
    }


def fill(view: dict, values: dict) -> dict:
    """The view's `state.values` for these inputs, shaped as Slack shapes them per element type."""
    state = {}
    for block in view.get("blocks", []):
        if block.get("type") != "input":
            continue
        element, block_id = block["element"], block["block_id"]
        value = values.get(block_id)
        kind = element["type"]
        if kind == "plain_text_input":
            entry = {"type": kind, "value": value}
        elif kind == "static_select":
            entry = {
                "type": kind,
                "selected_option": {"value": value, "text": {"type": "plain_text", "text": str(value)}}
                if value
                else None,
            }
        elif kind == "checkboxes":
            entry = {
                "type": kind,
                "selected_options": [{"value": v, "text": {"type": "plain_text", "text": v}} for v in (value or [])],
            }
        elif kind == "datepicker":
            entry = {"type": kind, "selected_date": value}
        elif kind == "users_select":
            entry = {"type": kind, "selected_user": value}
        else:
            raise ValueError(kind)
        state[block_id] = {element["action_id"]: entry}
    return state


def view_of(call) -> dict:
    """The view a views.open/views.update call carried, with the id Slack would give it."""
    view = call.args["view"]
    view = json.loads(view) if isinstance(view, str) else dict(view)
    view.setdefault(
        "id", call.args.get("view_id") or f"V0{time.monotonic_ns() % 10**12:012d}"
    )  # each view its own id, as in Slack
    view.setdefault("hash", "h0")
    return view


def blocks_text(args: dict) -> str:
    """All the text a message carries (top-level text and every text in its blocks), for assertions."""
    out = [args.get("text") or ""]

    def walk(node):
        if isinstance(node, dict):
            for key, value in node.items():
                if key == "text" and isinstance(value, str):
                    out.append(value)
                else:
                    walk(value)
        elif isinstance(node, list):
            for item in node:
                walk(item)

    blocks = args.get("blocks")
    walk(json.loads(blocks) if isinstance(blocks, str) else blocks)
    return "\n".join(out)
