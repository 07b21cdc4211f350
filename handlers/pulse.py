"""The weekly satisfaction pulse in Slack: the survey DM's buttons, the comment form, and the DM drawn (and
redrawn in place after each click) from what the person themself answered.

Nothing here logs a user id next to an answer; the DM is drawn when delivered, from the person's own keyed
rows, so no outbox row carries a score either.
"""

from __future__ import annotations

import logging
import re

from slack_bolt import App

from bot.domain import home, pulse
from bot.domain.core.items import RuleError
from handlers.common import (
    Patience,
    Unread,
    form_values,
    guarded,
    metadata,
    open_view,
    state_value,
    tell,
)
from templates import render

log = logging.getLogger("steward")


def _week_and(body: dict) -> tuple[str | None, str]:
    """The week a button names and what it says ("2026-W48 4"), or None when it names no week."""
    value = str(((body.get("actions") or [{}])[0] or {}).get("value") or "")[:40]
    week, _, rest = value.partition(" ")
    try:
        pulse.parse_week(week)
    except ValueError:
        return None, rest
    return week, rest


def _sealer(deps):
    if deps.sealer is None:
        raise RuleError("The weekly survey is not set up on this Steward (no PULSE_SECRET).")
    return deps.sealer


def _refused(client, body, user, exc: RuleError) -> None:
    if isinstance(exc, pulse.Closed):  # drawn by its template: the date is a Slack date token
        return tell(client, body, user, render("pulse_closed", at=exc.at))
    return tell(client, body, user, exc)


def _week_or_tell(body, client, user) -> tuple[str | None, str]:
    week, rest = _week_and(body)
    if week is None:
        tell(client, body, user, "That button names no week of the survey.")
    return week, rest


def _act(ack, body, client, context, do):
    ack()
    deps = context["deps"]
    user = body["user"]["id"]
    week, rest = _week_or_tell(body, client, user)
    if week is None:
        return None
    try:
        outcome = do(deps, user, week, rest)
    except RuleError as exc:
        return _refused(client, body, user, exc)
    deps.deliver(outcome.keys)


@guarded
def score(ack, body, client, context):
    def do(deps, user, week, rest):
        value = int(rest) if rest in ("1", "2", "3", "4", "5") else None  # ASCII only: "٣".isdigit() too
        if value is None:
            raise RuleError("Choose a score from 1 to 5.")
        outcome = pulse.answer(deps.db, _sealer(deps), user, week, deps.now(), score=value)
        _confirm(client, body, user, f"{value} · {pulse.SCORES[value]}")
        return outcome

    _act(ack, body, client, context, do)


def _confirm(client, body, user: str, choice: str) -> None:
    """The choice confirmed privately (an ephemeral message: not in the conversation's history, nor in an
    export); the DM itself is redrawn without it."""
    tell(
        client,
        body,
        user,
        f"Recorded, visible only to you: {choice}. A new click changes it until the survey closes.",
        ephemeral_only=True,  # Slack refusing the ephemeral: no DM, which would keep the choice in its history
    )


@guarded
def feeling(ack, body, client, context):
    def do(deps, user, week, rest):
        outcome = pulse.answer(deps.db, _sealer(deps), user, week, deps.now(), feeling=rest or "?")
        _confirm(client, body, user, f"processes are {pulse.FEELING_LABELS[rest]}")
        return outcome

    _act(ack, body, client, context, do)


def _asked(deps, user: str) -> str:
    """Only someone the pulse asks may pause or stop it: a forged click from anyone else records nothing."""
    if user not in pulse.members(deps.cfg):
        raise RuleError("This survey was not sent to you.")
    return user


def _home(deps, user: str) -> list:
    """The person's App Home shows the setting: published again when they opened it lately."""
    from datetime import timedelta

    seen = home.last_opened(deps.db, user)
    return [home.message(user)] if seen is not None and seen >= deps.now() - timedelta(days=home.ACTIVE_DAYS) else []


@guarded
def pause(ack, body, client, context):
    _act(
        ack,
        body,
        client,
        context,
        lambda deps, user, week, rest: pulse.pause(
            deps.db, _asked(deps, user), week, deps.now(), also=_home(deps, user)
        ),
    )


@guarded
def stop(ack, body, client, context):
    _act(
        ack,
        body,
        client,
        context,
        lambda deps, user, week, rest: pulse.stop(
            deps.db, _asked(deps, user), week, deps.now(), also=_home(deps, user)
        ),
    )


@guarded
def resume(ack, body, client, context):
    _act(
        ack,
        body,
        client,
        context,
        lambda deps, user, week, rest: pulse.resume(deps.db, user, week, deps.now(), also=_home(deps, user)),
    )


@guarded
def open_comment(ack, body, client, context):
    ack()
    deps = context["deps"]
    user = body["user"]["id"]
    week, _ = _week_or_tell(body, client, user)
    if week is None:
        return None
    open_view(
        client,
        body,
        render(
            "pulse_comment_modal",
            week=week,
            min_group=deps.cfg.pulse.min_group if deps.cfg.pulse else 5,
            places=pulse.places(deps.db, deps.cfg, user, week),
        ),
    )


@guarded
def submit_comment(ack, body, view, context):
    deps = context["deps"]
    user = body["user"]["id"]
    week = str(metadata(view).get("week") or "")[:8]
    try:
        values = form_values(view)
        where = state_value(values, "where")
        outcome = pulse.comment(
            deps.db,
            _sealer(deps),
            user,
            week,
            state_value(values, "comment"),
            deps.now(),
            where=where if isinstance(where, str) else pulse.ORG,
            cfg=deps.cfg,
        )
    except ValueError:
        return ack(response_action="errors", errors={"comment": "This form does not name a week of the survey."})
    except pulse.Closed:
        return ack(
            response_action="errors",
            errors={"comment": "This week's survey has closed; your comment was not recorded."},
        )
    except RuleError as exc:
        field = "where" if exc.field == "where" and "where" in form_values(view) else "comment"
        return ack(response_action="errors", errors={field: str(exc)})
    ack()
    deps.deliver(outcome.keys)


# -- renderers -------------------------------------------------------------------------------------------


def render_dm(deps, row) -> dict | None:
    """The week's survey DM as the person now stands: unanswered, answered (changeable until the week
    closes), or paused/stopped with a way back."""
    week, user = row.params["week"], row.params["user"]
    p = deps.cfg.pulse
    if p is None or deps.sealer is None:
        return None
    state = pulse.mine(deps.db, deps.sealer, user, week)
    if state["recipient"] is None:
        return None
    off = state["optout"]
    paused = off is not None and (off.until is None or off.until > deps.now())
    return render(
        "pulse_dm",
        question=p.question,
        week=week,
        closes=state["recipient"].closes_at,
        answered=bool(state["score"] or state["feeling"]),
        feelings=pulse.FEELING_LABELS,
        commented=state["commented"],
        paused=paused,
        until=off.until if paused else None,
        min_group=p.min_group,
        scores=pulse.SCORES,
    )


def render_reminder(deps, row) -> dict | None:
    week, user = row.params["week"], row.params["user"]
    with deps.db.read() as session:
        recipient = session.get(pulse.PulseRecipient, (week, user))
    if recipient is None or recipient.answered or recipient.opted_out:
        return None  # answered or paused since: no reminder
    return render("pulse_reminder", closes=recipient.closes_at)


def register(app: App) -> None:
    app.action(re.compile(r"^pulse_score_[1-5]$"))(score)
    app.action(re.compile(r"^pulse_feeling_[a-z]+$"))(feeling)
    app.action("pulse_comment")(open_comment)
    app.action("pulse_pause")(pause)
    app.action("pulse_stop")(stop)
    app.action("pulse_resume")(resume)
    app.view("pulse_comment_submit")(submit_comment)


RENDERERS = {"pulse_dm": render_dm, "pulse_reminder": render_reminder}


# -- time zones from Slack ---------------------------------------------------------------------------------


def fetch_timezones(client, wanted: set[str], pages: int = 500, max_wait: float = 600) -> dict[str, str] | None:
    """Everyone's time zone from `users.list` (Tier 2, paged 200 at a time, Retry-After honoured), for the
    people in `wanted` ("" for those Slack does not list: they get the organisation's). None when Slack
    refused or could not be reached, or when its Retry-Afters add up to more than `max_wait` seconds: the
    zones on record stay as they are (a job is never held for hours by a rate limit)."""
    patience, zones, cursor = Patience(max_wait), {}, None
    for _ in range(pages):
        try:
            answer = patience.call(client.users_list, limit=200, **({"cursor": cursor} if cursor else {}))
        except Unread as exc:
            log.warning("pulse: users.list not read (%s); time zones on record kept", exc)
            return None
        for member in answer.get("members") or []:
            if member.get("id") in wanted:
                zones[member["id"]] = str(member.get("tz") or "")[:64]
        cursor = (answer.get("response_metadata") or {}).get("next_cursor")
        if not cursor:
            break
    return {user: zones.get(user, "") for user in wanted}
