"""The app factory: a Bolt app with every feature's listeners, wrapped in a small WSGI app.

`POST /slack/events` takes everything Slack sends; `GET /healthz` answers 200 when the database is
reachable. Before Bolt sees a request, the wrapper refuses what is not Slack's (401: bad, stale or missing
signature) and what Slack would never send (400: a body that is not a Slack payload, 413: too large), so
no bad input can reach a listener or produce a 500.
"""

from __future__ import annotations

import hashlib
import hmac
import io
import json
import logging
import secrets
import time
from urllib.parse import parse_qsl

from slack_bolt import App
from slack_bolt.adapter.wsgi import SlackRequestHandler
from slack_sdk.errors import SlackApiError

from bot.domain.core import events
from bot.domain.core.outbox import PUBLISH
from bot.entry.settings import Settings
from handlers import deliverer, register_all
from handlers.client import make_client
from handlers.common import user_of
from storage.db import Database
from templates import render

log = logging.getLogger("steward")
MAX_BODY = 256 * 1024


def _parse_body(body: str, content_type: str | None) -> dict:
    """Bolt's `parse_body`, mended: Bolt reads any form containing the text "payload" as interactivity,
    so `/handoff payload` (or a user or channel named so) became an empty request and a 404. Only a form
    with a `payload` field is interactivity."""
    if not body:
        return {}
    if content_type == "application/json" or body.startswith("{"):
        return json.loads(body)
    form = dict(parse_qsl(body, keep_blank_values=True))
    return json.loads(form["payload"]) if "payload" in form else form


import slack_bolt.request.request as _bolt_request  # noqa: E402

_bolt_request.parse_body = _parse_body


def report_error(error: Exception, body: dict, response, client) -> None:
    """The error handler for what fails outside a listener (listeners guard themselves: see
    `handlers.common.guarded`): log with a reference, tell the user privately, never show a trace."""
    ref = secrets.token_hex(4)
    log.error("unhandled error ref=%s type=%s", ref, body.get("type") or body.get("command"), exc_info=error)
    message = render("error", ref=ref)
    if response is not None:  # not acknowledged yet: answer Slack with 200 so it shows no generic failure
        response.status = 200
        response.headers = {"content-type": ["application/json;charset=utf-8"]}
        response.body = json.dumps(message) if body.get("command") else ""
        if body.get("command"):
            return
    user = user_of(body)
    if user:
        try:
            client.chat_postMessage(channel=user, text=message["text"], blocks=message["blocks"])
        except (SlackApiError, OSError) as exc:
            log.warning("could not tell %s about error ref=%s: %s", user, ref, type(exc).__name__)


def create_app(settings: Settings, deps) -> App:
    """The Bolt app. Messages after an ack go through the outbox: `deps.deliver` sends what a decision
    wrote, right after its commit, from the request's own thread. `deps`: `bot.entry.bootstrap.Deps`, whose
    making wired the domain events' subscribers (checked here: a process that forgot fails at start)."""
    events.bus.require_wired("create_app")
    client = make_client(settings)
    deps.deliver = deliverer(deps, client, defer={PUBLISH}).send_now  # Homes after the request
    app = App(
        client=client,
        signing_secret=settings.slack_signing_secret.get_secret_value() if settings.slack_signing_secret else None,
        token_verification_enabled=False,  # `serve` checks the token once with auth.test at start
        raise_error_for_unhandled_request=False,
    )
    app.error(report_error)
    register_all(app, deps)
    return app


def _answer(start_response, status: str, body: dict | str, content_type: str = "application/json"):
    data = (json.dumps(body) if isinstance(body, dict) else body).encode()
    start_response(status, [("Content-Type", f"{content_type};charset=utf-8"), ("Content-Length", str(len(data)))])
    return [data]


def _is_slack_payload(body: bytes, content_type: str) -> bool:
    """Is this a shape Slack sends: a JSON object (events), or a form with either `payload` holding a
    JSON object (interactivity) or a `command` (slash commands)?"""
    try:
        text = body.decode("utf-8")
        if content_type.startswith("application/json") or text.startswith("{"):
            body = json.loads(text)
            if not isinstance(body, dict):
                return False
            if (
                body.get("type") == "event_callback"
            ):  # an Events API delivery: an event object, its type and user as Slack sends them
                event = body.get("event")
                return (
                    isinstance(event, dict)
                    and isinstance(event.get("type"), str)
                    and isinstance(event.get("user", ""), (str, dict))
                    and isinstance(body.get("event_id", ""), str)
                )
            return True
        form = dict(parse_qsl(text, keep_blank_values=True))
        if "payload" in form:
            payload = json.loads(form["payload"])
            return isinstance(payload, dict) and isinstance(payload.get("type"), str)
        return isinstance(form.get("command"), str)
    except (UnicodeDecodeError, ValueError):
        return False


class WebApp:
    """The WSGI application `serve` runs under gunicorn."""

    def __init__(self, app: App, db: Database, signing_secret: str):
        self.bolt = SlackRequestHandler(app)
        self.db = db
        self.secret = signing_secret.encode()

    @staticmethod
    def _timestamp(value: str) -> int | None:
        """A plain ASCII decimal integer of at most 12 digits, else None. (`str.isdigit()` and `int()`
        alone accept more: '²' passes one and not the other, int() refuses thousands of digits.)"""
        if 0 < len(value) <= 12 and value.isascii() and value.isdigit():
            return int(value)
        return None

    def _signed(self, body: bytes, headers: dict) -> bool:
        """Slack's v0 signature over the raw bytes, within 5 minutes (Bolt checks it again)."""
        timestamp, signature = headers["x-slack-request-timestamp"], headers["x-slack-signature"]
        moment = self._timestamp(timestamp)
        if moment is None or abs(time.time() - moment) > 300 or not signature.isascii():
            return False
        expected = "v0=" + hmac.new(self.secret, b"v0:" + timestamp.encode() + b":" + body, hashlib.sha256).hexdigest()
        return hmac.compare_digest(expected, signature)

    @staticmethod
    def _is_ssl_check(body: bytes, content_type: str) -> bool:
        """Slack's `ssl_check=1` form post, recognised as Bolt parses bodies (Bolt answers it with an
        empty 200 before it looks at the signature, and runs no listener)."""
        try:
            text = body.decode("utf-8")
        except UnicodeDecodeError:
            return False
        if content_type.split(";")[0] == "application/json" or text.startswith("{") or "payload" in text:
            return False
        return dict(parse_qsl(text, keep_blank_values=True)).get("ssl_check") == "1"

    def __call__(self, environ, start_response):
        path = environ.get("PATH_INFO", "")
        method = environ.get("REQUEST_METHOD", "GET")
        if path == "/healthz":
            ok = self.db.ping()
            return _answer(
                start_response,
                "200 OK" if ok else "503 Service Unavailable",
                {"ok": ok, "database": "up" if ok else "down"},
            )
        if path != "/slack/events":
            return _answer(start_response, "404 Not Found", {"error": "not_found"})
        if method != "POST":
            return _answer(start_response, "405 Method Not Allowed", {"error": "method_not_allowed"})
        try:
            length = int(environ.get("CONTENT_LENGTH") or 0)
        except ValueError:
            length = -1
        if length < 0 or length > MAX_BODY:
            return _answer(start_response, "413 Payload Too Large", {"error": "too_large"})
        body = environ["wsgi.input"].read(length) if length else b""
        if self._is_ssl_check(body, environ.get("CONTENT_TYPE", "")):
            return _answer(start_response, "200 OK", "", "text/plain")
        headers = {
            "x-slack-request-timestamp": environ.get("HTTP_X_SLACK_REQUEST_TIMESTAMP", ""),
            "x-slack-signature": environ.get("HTTP_X_SLACK_SIGNATURE", ""),
        }
        if not self._signed(body, headers):
            return _answer(start_response, "401 Unauthorized", {"error": "invalid_request"})
        if not _is_slack_payload(body, environ.get("CONTENT_TYPE", "")):
            return _answer(start_response, "400 Bad Request", {"error": "not_a_slack_payload"})
        environ["wsgi.input"] = io.BytesIO(body)
        try:
            return self.bolt(environ, start_response)
        except Exception as exc:  # Bolt itself failed on a signed request: log it, answer without a trace
            ref = secrets.token_hex(4)
            log.error("request failed ref=%s", ref, exc_info=exc)
            return _answer(start_response, "400 Bad Request", {"error": "unprocessable", "ref": ref})
