"""Listeners called in-process, as Bolt calls them, without Bolt's server: the payloads Bolt hands them,
Bolt's own `Ack` and `BoltContext` holding `deps`, and a real `slack_sdk.WebClient` pointed at the fake Slack."""

from __future__ import annotations

import json

from slack_bolt import Ack, BoltContext
from slack_sdk import WebClient

import handlers
from bot.entry.bootstrap import Deps
from tests.support.harness import TOKEN, command_body


def client(fake) -> WebClient:
    """A real client for the fake Web API, with no retries: every answer is seen as it was given."""
    return WebClient(base_url=fake.url, token=TOKEN, retry_handlers=[])


def context(cfg, db, web: WebClient) -> BoltContext:
    """What Steward's middleware puts in Bolt's context: `deps`, delivering the outbox in the listener's thread."""
    deps = Deps(cfg=cfg, db=db)
    deps.deliver = handlers.deliverer(deps, web).send_now
    return BoltContext({"deps": deps})


def command(user: str, text: str = "", command: str = "/handoff", channel: str = "C0WORK") -> dict:
    """A slash command's body as Bolt parses it from Slack's form."""
    return command_body(user, text, command, channel)


def answer(ack: Ack) -> dict | None:
    """What the ack answered Slack (None: never called; {} for an empty ack)."""
    if ack.response is None:
        return None
    body = ack.response.body
    return json.loads(body) if body else {}


def dms_to(fake, user: str) -> list:
    return [c for c in fake.of("chat.postMessage") if c.args["channel"] == user]
