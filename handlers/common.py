"""What every feature's listeners share: reading payloads, answering privately, opening views, and the
guard that turns a listener's failure into a private answer instead of Bolt's 404.

Listeners are module-level functions; what they need (configuration, database, clock, delivery) comes
from Bolt's context as `context["deps"]` (see `handlers.register_all`), so a test can call one alone.
"""

from __future__ import annotations

import functools
import hashlib
import json
import logging
import re
import secrets
import time
from dataclasses import dataclass

from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError

from bot.domain import home
from bot.domain.core import outbox
from bot.domain.core.items import RuleError
from handlers.delivery import retry_after
from templates import render

log = logging.getLogger("steward")
ID_MAX = 2**31 - 1  # ids in buttons and forms are database integers
SAVE_FAILED = "Steward could not save this just now; your text is still here. Try again in a moment (reference {ref})."


class Unread(Exception):
    """Slack did not say (refused, out of reach, or rate limited past our patience): the reason."""


@dataclass
class Patience:
    """How long, in all, a run may wait on Retry-After before it gives up on what is left."""

    seconds: float = 120.0
    waited: float = 0.0

    def call(self, method, **kwargs) -> dict:
        while True:
            try:
                return method(**kwargs).data
            except SlackApiError as exc:
                if exc.response.status_code == 429:
                    wait = retry_after(exc.response)
                    if self.waited + wait <= self.seconds:
                        self.waited += wait
                        time.sleep(wait)
                        continue
                    raise Unread(f"rate limited past {self.seconds:g} s of waiting") from None
                raise Unread(str(exc.response.get("error") or f"HTTP {exc.response.status_code}")) from None
            except OSError as exc:
                raise Unread(f"Slack out of reach ({type(exc).__name__})") from None


def state_value(values: dict, block_id: str):
    """The value of the single element in an input block, whatever its type (None when empty, or when
    the payload is not shaped as Slack shapes it)."""
    block = values.get(block_id) if isinstance(values, dict) else None
    element = next(iter(block.values()), None) if isinstance(block, dict) else None
    if not isinstance(element, dict):
        return None
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


def form_values(view: dict) -> dict:
    """A view's `state.values`, or {} when the payload is not shaped as Slack shapes it."""
    state = view.get("state") if isinstance(view, dict) else None
    values = state.get("values") if isinstance(state, dict) else None
    return values if isinstance(values, dict) else {}


def metadata(view: dict) -> dict:
    try:
        data = json.loads(view.get("private_metadata") or "{}")
    except ValueError:
        return {}
    return data if isinstance(data, dict) else {"value": data}


def view_key(view: dict) -> str | None:
    """What makes a submitted view unique, within the 40 characters it is stored in: Slack's view id,
    or its hash when an id is longer than Slack's ever are."""
    view_id = str(view.get("id") or "")
    if not view_id:
        return None
    return view_id if len(view_id) <= 40 else hashlib.sha1(view_id.encode()).hexdigest()


def as_id(value) -> int | None:
    """A database id from payload text, or None: digits only, at most ID_MAX."""
    text = str(value if value is not None else "").strip().lstrip("#")
    if not text.isascii() or not text.isdigit() or len(text) > 10:
        return None
    number = int(text)
    return number if 0 < number <= ID_MAX else None


def action_int(body: dict) -> int | None:
    """The id a button carries in its value, or None when it carries something else."""
    return as_id(((body.get("actions") or [{}])[0] or {}).get("value"))


def user_of(body: dict) -> str | None:
    user = body.get("user_id") or (body.get("user") or {}).get("id")
    return user if isinstance(user, str) else None


def slack_call(method, **kwargs) -> dict | None:
    """Call the Web API for an answer to the person in front of us (ephemeral, views); a refusal, or
    Slack out of reach, is logged and returns None rather than failing the listener."""
    try:
        return method(**kwargs).data
    except SlackApiError as exc:
        log.warning("slack %s refused: %s", getattr(method, "__name__", "call"), exc.response.get("error"))
        return None
    except OSError as exc:
        log.warning("slack %s unreachable: %s", getattr(method, "__name__", "call"), type(exc).__name__)
        return None


def tell(
    client: WebClient,
    body: dict,
    user: str,
    text: str | dict,
    people: tuple[str, ...] | list[str] = (),
    ephemeral_only: bool = False,
) -> None:
    """A private answer to the person who acted: ephemeral where they clicked, else a DM. `text` may be a
    rule's exception: the people it names show as mentions; or a message already rendered from its own
    template. (Not a decision's message: no outbox.) `ephemeral_only`: never a DM, which stays in Slack's
    history (a pulse answer must not)."""
    if isinstance(text, dict):
        message = text
    else:
        people = tuple(people) + tuple(getattr(text, "people", ()))
        message = render("notice", text=str(text), people=people)
    channel = (
        body.get("channel_id")
        or (body.get("channel") or {}).get("id")
        or (body.get("container") or {}).get("channel_id")
    )
    if channel and slack_call(
        client.chat_postEphemeral, channel=channel, user=user, text=message["text"], blocks=message["blocks"]
    ):
        return
    if not ephemeral_only:
        slack_call(client.chat_postMessage, channel=user, text=message["text"], blocks=message["blocks"])


def act(client: WebClient, body: dict, noun: str, call, deps=None):
    """A button on an item: `call(user, id)` for the id the button names. A button naming none, or a rule
    saying no, is told privately to the clicker and gives None; clicked on the App Home (`deps` given),
    that Home is published again as it stands for them now (it showed what they may not act on)."""
    user, item_id = body["user"]["id"], action_int(body)
    if item_id is None:
        tell(client, body, user, f"That button does not name a {noun}.")
    else:
        try:
            return call(user, item_id)
        except RuleError as exc:
            tell(client, body, user, exc)
    if deps is not None:
        stale(deps, body, user)
    return None


TRIGGER_BUDGET = 2.0  # seconds of a trigger's 3 s life a views.open may still use from its first attempt


def open_view(client: WebClient, body: dict, view: dict) -> bool:
    """Open a modal on the payload's trigger. A trigger lives 3 s and is used once. A 429 means Slack did
    not act (the trigger is unused): the call is made again after Retry-After, while that still falls
    within the trigger's life. When Slack will not open it (expired, rate-limited for longer, out of
    reach), the person is told to try again."""
    give_up = time.monotonic() + TRIGGER_BUDGET
    while True:
        try:
            client.views_open(trigger_id=body.get("trigger_id"), view=view)
            return True
        except SlackApiError as exc:
            limited = getattr(exc.response, "status_code", 200) == 429 or exc.response.get("error") == "ratelimited"
            wait = retry_after(exc.response) if limited else None
            if wait is not None and time.monotonic() + wait < give_up:
                log.info("slack views_open: ratelimited, again in %.0f s (within the trigger's life)", wait)
                time.sleep(wait)
                continue
            log.warning("slack views_open refused: %s", exc.response.get("error"))
        except OSError as exc:
            log.warning("slack views_open unreachable: %s", type(exc).__name__)
        break
    tell(client, body, user_of(body) or "", "Slack did not open the form in time. Please try again.")
    return False


def first_input(body: dict) -> str | None:
    for block in (body.get("view") or {}).get("blocks") or []:
        if block.get("type") == "input" and block.get("block_id"):
            return block["block_id"]
    return None


def guarded(listener):
    """Run a listener; if it fails, log the failure with a reference and answer the person privately.
    Not yet acknowledged: a form keeps its input (a field error), anything else gets a 200 with the
    reference. Already acknowledged: told by an ephemeral message or a DM. Bolt never answers 404."""

    @functools.wraps(listener)
    def run(**kwargs):
        try:
            return listener(**kwargs)
        except Exception as exc:  # noqa: BLE001 - every failure gets a private answer and a log line
            ref = secrets.token_hex(4)
            body, ack, client = kwargs.get("body") or {}, kwargs.get("ack"), kwargs.get("client")
            log.error("listener %s failed ref=%s", listener.__name__, ref, exc_info=exc)
            if ack is not None and getattr(ack, "response", None) is None:
                block = first_input(body) if body.get("type") == "view_submission" else None
                if block:
                    return ack(response_action="errors", errors={block: SAVE_FAILED.format(ref=ref)})
                if body.get("command"):
                    return ack(**render("error", ref=ref))
                ack()
            user = user_of(body)
            if user and client is not None:
                message = render("error", ref=ref)
                tell(client, body, user, message["text"])

    return run


# -- renderers every feature uses ------------------------------------------------------------------------


def render_static(deps, row) -> dict:
    """A message drawn when it was written (the digest's parts: the figures as they were)."""
    return row.params["message"]


def render_delivery_failed(deps, row) -> dict | None:
    failed = outbox.get(deps.db, row.params.get("key", ""))
    if failed is None:
        return None
    about = {
        "handoff_card": "the handoff card",
        "fasttrack_card": "the fast-track request card",
        "handoff_submitted_dm": "a handoff receipt",
        "fasttrack_submitted_dm": "a fast-track receipt",
        "handoff_accepted_dm": "the acceptance message",
        "handoff_sent_back_dm": "the send-back message",
        "fasttrack_decided_dm": "the decision message",
        "handoff_resubmitted": "the resubmission notice",
        "fasttrack_owner_notice": "the decision's notice to the gate's owners",
        "matrix_review_proposal": "your proposed change to the decision-rights matrix",
    }.get(failed.render, "a message")
    kind, _, number = failed.item.partition(":")
    noun = {
        "handoff": "handoff #",
        "fasttrack": "fast-track request #",
        "digest": "the digest of ",
        "prompt": "the initiative prompt of ",
        "matrix-review": "the decision-rights matrix review of ",
    }
    what = f"{about} of {noun.get(kind, kind + ' ')}{number}"
    channel = failed.channel if failed.channel[:1] in ("C", "G") else None
    return render(
        "delivery_failed", what=what, channel=channel, error=row.params.get("error") or failed.error or "error"
    )


RENDERERS = {"static": render_static, "delivery_failed": render_delivery_failed}


# -- clicks on the App Home ------------------------------------------------------------------------


def from_home(body: dict) -> bool:
    """Was this click made on the App Home (rather than on a card in a channel or a DM)?"""
    view = body.get("view")
    return isinstance(view, dict) and view.get("type") == "home"


_REVIEW_BLOCK = re.compile(r"^home_review_(\d{1,12})_r(\d{1,6})$")


def round_shown(body: dict, handoff_id: int | None) -> int | None:
    """The round of the handoff a click on the Home was shown (its review's block id), or None: not clicked
    on a Home's review, or the block does not name this handoff."""
    if not from_home(body) or handoff_id is None:
        return None
    action = (body.get("actions") or [{}])[0] or {}
    m = _REVIEW_BLOCK.match(str(action.get("block_id") or ""))
    return int(m.group(2)) if m and int(m.group(1)) == handoff_id else None


def stale(deps, body: dict, user: str) -> None:
    """A click on the Home that changed nothing: the Home was stale, so it is published again."""
    if from_home(body):
        deps.deliver(home.refresh(deps.db, user, deps.now()))
