"""Small helpers every feature's listeners share: reading view state, answering privately, DMs."""

from __future__ import annotations

import json
import logging

from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError

from templates import render

log = logging.getLogger("steward")


def state_value(values: dict, block_id: str):
    """The value of the single element in an input block, whatever its type (None when empty)."""
    element = next(iter((values.get(block_id) or {}).values()), None) or {}
    kind = element.get("type")
    if kind == "static_select":
        return (element.get("selected_option") or {}).get("value")
    if kind == "checkboxes":
        return [o.get("value") for o in element.get("selected_options") or []]
    if kind == "datepicker":
        return element.get("selected_date")
    if kind == "users_select":
        return element.get("selected_user")
    value = element.get("value")
    return value if isinstance(value, str) else None


def metadata(view: dict) -> dict:
    try:
        data = json.loads(view.get("private_metadata") or "{}")
    except ValueError:
        return {}
    return data if isinstance(data, dict) else {"value": data}


def slack_call(method, **kwargs) -> dict | None:
    """Call the Web API; a refusal from Slack, or Slack out of reach, is logged and returns None rather
    than failing the listener."""
    try:
        return method(**kwargs).data
    except SlackApiError as exc:
        log.warning("slack %s refused: %s", getattr(method, "__name__", "call"), exc.response.get("error"))
        return None
    except OSError as exc:  # unreachable after the client's own retries
        log.warning("slack %s unreachable: %s", getattr(method, "__name__", "call"), type(exc).__name__)
        return None


def tell(client: WebClient, body: dict, user: str, text, people: tuple[str, ...] | list[str] = ()) -> None:
    """A private answer where the user clicked: ephemeral in that channel, else a DM. `text` may be a
    rule's exception: the people it names show as mentions."""
    people = tuple(people) + tuple(getattr(text, "people", ()))
    message = render("notice", text=str(text), people=people)
    channel = (body.get("channel") or {}).get("id") or (body.get("container") or {}).get("channel_id")
    if channel and slack_call(client.chat_postEphemeral, channel=channel, user=user, text=message["text"], blocks=message["blocks"]):
        return
    slack_call(client.chat_postMessage, channel=user, text=message["text"], blocks=message["blocks"])


def dm(client: WebClient, user: str, message: dict) -> dict | None:
    return slack_call(client.chat_postMessage, channel=user, text=message["text"], blocks=message["blocks"])


def action_int(body: dict) -> int | None:
    """The integer id a button carries in its value, or None when it carries something else."""
    try:
        value = int((body.get("actions") or [{}])[0].get("value"))
    except (TypeError, ValueError):
        return None
    return value if 0 < value < 2**31 else None
