"""Handoffs across team boundaries: the rules, with no Slack in them.

A handoff is created (round 1), then the receiving team accepts it or sends it back for rework or
clarification with a reason; the sender resubmits (next round) until it is accepted, or cancels it.
Every step is an event in `handoff_event`; the `handoff` row is kept consistent with the events in the
same transaction, and `replay()` recomputes it from them. Each step also writes, in that transaction, the
messages it causes (`messages()`: the receiving team's card, the sender's DMs) to the outbox.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import date, datetime

from sqlalchemy import or_, update
from sqlmodel import select

from bot.domain import sla
from bot.domain.core import events
from bot.domain.core.items import Kind, NotAllowed, NotFound, Outcome, RuleError
from bot.domain.core.outbox import POST, UPDATE, Message, update_of
from bot.domain.core.process import Boundary, ProcessConfig, Team
from bot.domain.core.timeutil import local_today, utcnow
from storage.db import Database
from storage.models import EventKind, Handoff, HandoffEvent, HandoffState

TITLE_MAX = 150
LINK_MAX = 500
NOTES_MAX = 2000
REASON_MAX = 1000
_LINK = re.compile(r"^https?://[^\s<>|]+$")


HANDOFF = Kind(Handoff, HandoffEvent, "handoff_id", "handoff")
__all__ = ["RuleError", "NotAllowed", "NotFound", "Outcome", "utcnow"]


@dataclass
class Draft:
    """What a sender fills in. `field_errors` maps a field name to a message for that field."""

    from_team: str | None
    to_team: str | None
    title: str
    link: str | None = None
    due_date: date | None = None
    notes: str | None = None
    criteria_met: list[str] = field(default_factory=list)


# -- authorization -------------------------------------------------------------------------------


def reviewers(cfg: ProcessConfig, handoff: Handoff) -> set[str]:
    """Who may accept or send back: the receiving team's members and the boundary's steward, never the
    sender (nobody reviews their own handoff, whatever teams they are in)."""
    team = cfg.team(handoff.to_team)
    people = set(team.members) if team else set()
    boundary = cfg.boundary(handoff.from_team, handoff.to_team)
    if boundary:
        people.add(boundary.steward)
    people.discard(handoff.sender)
    return people


def authors(cfg: ProcessConfig, handoff: Handoff) -> set[str]:
    """Who may resubmit or cancel: the sender and the sending team's members."""
    team = cfg.team(handoff.from_team)
    return {handoff.sender} | (set(team.members) if team else set())


def _require_reviewer(cfg: ProcessConfig, handoff: Handoff, user: str, verb: str) -> None:
    if user in reviewers(cfg, handoff):
        return
    team = cfg.team(handoff.to_team)
    boundary = cfg.boundary(handoff.from_team, handoff.to_team)
    if user == handoff.sender and (team and user in team.members or boundary and user == boundary.steward):
        raise NotAllowed(
            f"You sent this handoff, so someone else in {team.name if team else handoff.to_team} or its steward must review it."
        )
    who = f"members of {team.name if team else handoff.to_team}"
    if boundary:
        who += f" and the boundary's steward <@{boundary.steward}>"
    raise NotAllowed(f"Only {who} can {verb} this handoff.", people=[boundary.steward] if boundary else [])


def _require_author(cfg: ProcessConfig, handoff: Handoff, user: str, verb: str) -> None:
    if user not in authors(cfg, handoff):
        team = cfg.team(handoff.from_team)
        raise NotAllowed(
            f"Only <@{handoff.sender}> or members of {team.name if team else handoff.from_team} can {verb} this handoff.",
            people=[handoff.sender],
        )


# -- drafting --------------------------------------------------------------------------------------


def targets(cfg: ProcessConfig, from_teams: list[str]) -> list[Team]:
    """The teams a handoff can go to from any of these teams (those with a boundary)."""
    ids = {b.to_team for b in cfg.boundaries_from(from_teams)}
    return [t for t in cfg.teams if t.id in ids]


def _clean(text: str | None) -> str | None:
    text = (text or "").strip()
    return text or None


def check_draft(cfg: ProcessConfig, sender: str, draft: Draft, today: date) -> tuple[Boundary | None, dict[str, str]]:
    """Validate a draft against the configuration. Returns the boundary and the errors by field.
    `today` is the organisation's date (`local_today`): a due date before it is in the past."""
    errors: dict[str, str] = {}
    mine = [t.id for t in cfg.teams_of(sender)]
    if problem := cfg.not_member(sender, draft.from_team):
        errors["from_team"] = problem
    to_team = cfg.team(draft.to_team or "")
    boundary = None
    if to_team is None:
        errors["to_team"] = "Choose the receiving team."
    elif draft.from_team in mine:
        boundary = cfg.boundary(draft.from_team, to_team.id)
        if boundary is None:
            names = ", ".join(t.name for t in targets(cfg, [draft.from_team])) or "none"
            errors["to_team"] = (
                f"There is no boundary from {cfg.team(draft.from_team).name} to {to_team.name}. Teams with one: {names}."
            )
    if not draft.title.strip():
        errors["title"] = "Say what is handed off."
    elif len(draft.title) > TITLE_MAX:
        errors["title"] = f"At most {TITLE_MAX} characters."
    if draft.link and (len(draft.link) > LINK_MAX or not _LINK.match(draft.link)):
        errors["link"] = "A link starts with http:// or https:// and has no spaces."
    if draft.notes and len(draft.notes) > NOTES_MAX:
        errors["notes"] = f"At most {NOTES_MAX} characters."
    if draft.due_date and draft.due_date < today:
        errors["due_date"] = "The due date is in the past."
    if boundary is not None:
        missing = [c for c in boundary.criteria if c not in draft.criteria_met]
        if any(c not in boundary.criteria for c in draft.criteria_met):
            errors["criteria"] = "Some of the chosen criteria are no longer criteria of this boundary; choose again."
        elif missing and cfg.model_of(boundary) == "centralized":
            errors["criteria"] = "This boundary is centralized: every criterion must be met. Missing: " + ", ".join(
                missing
            )
    return boundary, errors


# -- what a decision causes --------------------------------------------------------------------------


def card_key(handoff_id: int) -> str:
    return f"handoff:{handoff_id}:card"


def messages(cfg: ProcessConfig, h: Handoff, ev: HandoffEvent) -> list[Message]:
    """The messages an event causes: the receiving team's card (posted, then updated in place), the
    sender's receipt and the DMs that tell them of a decision, the thread reply of a resubmission."""
    item, card = f"handoff:{h.id}", card_key(h.id)
    team = cfg.team(h.to_team)
    channel = team.channel if team else ""
    if ev.kind == EventKind.CREATED:
        return [
            Message(card, item, POST, channel, "handoff_card", {"id": h.id}, actor=h.sender),
            Message(f"{item}:v{ev.seq}:dm:{h.sender}", item, POST, h.sender, "handoff_submitted_dm", {"id": h.id}),
        ]
    out = [Message(update_of(card), item, UPDATE, channel, "handoff_card", {"id": h.id}, anchor=card)]
    told = {"id": h.id, "seq": ev.seq}
    if ev.kind == EventKind.ACCEPTED:
        out.append(
            Message(
                f"{item}:v{ev.seq}:dm:{h.sender}", item, POST, h.sender, "handoff_accepted_dm", told, actor=ev.actor
            )
        )
    elif ev.kind in (EventKind.REWORK, EventKind.CLARIFICATION):
        out.append(
            Message(
                f"{item}:v{ev.seq}:dm:{h.sender}", item, POST, h.sender, "handoff_sent_back_dm", told, actor=ev.actor
            )
        )
    elif ev.kind == EventKind.RESUBMITTED:
        out.append(
            Message(
                f"{item}:v{ev.seq}:thread",
                item,
                POST,
                channel,
                "handoff_resubmitted",
                told,
                anchor=card,
                actor=ev.actor,
            )
        )
    return out


def caused(s, cfg: ProcessConfig, h: Handoff, ev: HandoffEvent, now: datetime) -> list[Message]:
    """A decision's messages (`messages`) and the App Homes it changes: created, accepted, sent back,
    resubmitted or cancelled, the handoff enters or leaves someone's "Waiting for you": the `HandoffChanged`
    event's subscribers (the Home's, wired in `bot.entry.bootstrap`) say which messages that causes."""
    return messages(cfg, h, ev) + events.publish(s, events.HandoffChanged(now, cfg, h))


# -- transitions -----------------------------------------------------------------------------------


def _iso(day: date | None) -> str | None:
    return day.isoformat() if day else None


def create(db: Database, cfg: ProcessConfig, sender: str, draft: Draft, now: datetime | None = None) -> Handoff:
    """`submit`, for scripts and tests: the new handoff."""
    return submit(db, cfg, sender, draft, now).item


def submit(
    db: Database, cfg: ProcessConfig, sender: str, draft: Draft, now: datetime | None = None, view_id: str | None = None
) -> Outcome:
    """Create a handoff and write its card and receipt to the outbox. `view_id`: the modal it was
    submitted from; submitting the same view again (Slack retrying, a double delivery) creates nothing."""
    now = now or utcnow()
    boundary, errors = check_draft(cfg, sender, draft, local_today(cfg, now))
    if errors:
        field, message = next(iter(errors.items()))
        raise RuleError(message, field)
    met = [c for c in boundary.criteria if c in draft.criteria_met]

    def create(s) -> Outcome:
        handoff = Handoff(
            from_team=draft.from_team,
            to_team=draft.to_team,
            sender=sender,
            title=draft.title.strip(),
            link=_clean(draft.link),
            due_date=draft.due_date,
            notes=_clean(draft.notes),
            criteria=list(boundary.criteria),
            criteria_met=met,
            state=HandoffState.OPEN,
            round=1,
            version=1,
            created_at=now,
            updated_at=now,
            view_id=view_id,
        )
        for key, value in sla.restart(cfg, handoff, {}, now).items():
            setattr(handoff, key, value)
        s.add(handoff)
        s.flush()
        ev = HANDOFF.event(
            handoff,
            EventKind.CREATED,
            sender,
            now,
            from_team=handoff.from_team,
            to_team=handoff.to_team,
            title=handoff.title,
            notes=handoff.notes,
            link=handoff.link,
            due_date=_iso(handoff.due_date),
            criteria=list(handoff.criteria),
            criteria_met=met,
        )
        keys = HANDOFF.record(s, db, handoff, ev, caused(s, cfg, handoff, ev, now), now)
        return Outcome(handoff, changed=True, event=ev, keys=keys)

    return HANDOFF.create_once(db, view_id, create, lambda s, before: Outcome(before, changed=False))


def get(db: Database, handoff_id: int) -> Handoff:
    return HANDOFF.get(db, handoff_id)


def _transition(
    db,
    cfg,
    handoff_id,
    check,
    kind,
    actor,
    now,
    *,
    allowed_from,
    new_state,
    reason=None,
    new_round=False,
    changes=None,
    data=None,
    seen_round=None,
) -> Outcome:
    """Move a handoff from one of `allowed_from` to `new_state`, append the event and write the messages
    it causes, atomically. The UPDATE is conditional on the version read, so of two concurrent clicks
    exactly one wins; the other gets `changed=False` and the handoff as the winner left it. (A click that
    lost only to a reminder or a snooze, which change no state, is applied on a fresh read.) `seen_round`:
    the round the person was shown; a handoff in another round by now is not changed (`changed=False`)."""

    def step(s) -> Outcome:
        handoff = s.get(Handoff, handoff_id)
        if handoff is None:
            raise NotFound(f"There is no handoff #{handoff_id}.")
        check(handoff)
        if handoff.state not in allowed_from or (seen_round is not None and handoff.round != seen_round):
            return Outcome(handoff, changed=False)
        values = dict(changes or {}, state=new_state)
        if new_round:
            values["round"] = handoff.round + 1
        if new_state == HandoffState.ACCEPTED:
            values["accepted_at"] = now
        values.update(sla.restart(cfg, handoff, values, now))
        return HANDOFF.transition(
            s,
            db,
            handoff,
            values,
            lambda h: HANDOFF.event(h, kind, actor, now, reason, **(data or {})),
            lambda h, ev: caused(s, cfg, h, ev, now),
            now,
        )

    return HANDOFF.attempt(db, handoff_id, step)


def accept(
    db: Database,
    cfg: ProcessConfig,
    handoff_id: int,
    actor: str,
    now: datetime | None = None,
    seen_round: int | None = None,
) -> Outcome:
    """Accept the handoff; with `seen_round` (the round an App Home showed), only if it is still in that round."""
    return _transition(
        db,
        cfg,
        handoff_id,
        lambda h: _require_reviewer(cfg, h, actor, "accept"),
        EventKind.ACCEPTED,
        actor,
        now or utcnow(),
        allowed_from=(HandoffState.OPEN,),
        new_state=HandoffState.ACCEPTED,
        seen_round=seen_round,
    )


def check_reason(reason: str | None) -> str:
    reason = (reason or "").strip()
    if not reason:
        raise RuleError("Give a reason, so the sender knows what to change.", "reason")
    if len(reason) > REASON_MAX:
        raise RuleError(f"The reason can be at most {REASON_MAX} characters.", "reason")
    return reason


def send_back(
    db: Database,
    cfg: ProcessConfig,
    handoff_id: int,
    actor: str,
    kind: str,
    reason: str | None,
    now: datetime | None = None,
) -> Outcome:
    if kind not in (EventKind.REWORK, EventKind.CLARIFICATION):
        raise RuleError(f"Unknown send-back kind {kind!r}.")
    reason = check_reason(reason)
    verb = "request rework on" if kind == EventKind.REWORK else "ask for clarification on"
    return _transition(
        db,
        cfg,
        handoff_id,
        lambda h: _require_reviewer(cfg, h, actor, verb),
        kind,
        actor,
        now or utcnow(),
        allowed_from=(HandoffState.OPEN,),
        new_state=kind,
        reason=reason,
    )


def may_review(cfg: ProcessConfig, handoff: Handoff, user: str) -> None:
    """Raise NotAllowed unless `user` may accept or send back (checked before a modal opens)."""
    _require_reviewer(cfg, handoff, user, "review")


def may_author(cfg: ProcessConfig, handoff: Handoff, user: str) -> None:
    """Raise NotAllowed unless `user` may resubmit or cancel."""
    _require_author(cfg, handoff, user, "resubmit")


def resubmit(
    db: Database,
    cfg: ProcessConfig,
    handoff_id: int,
    actor: str,
    criteria_met: list[str],
    notes: str | None,
    link: str | None,
    now: datetime | None = None,
) -> Outcome:
    now = now or utcnow()
    handoff = get(db, handoff_id)
    _require_author(cfg, handoff, actor, "resubmit")  # who asks comes before what they sent
    boundary = cfg.boundary(handoff.from_team, handoff.to_team)
    if any(c not in handoff.criteria for c in criteria_met):
        raise RuleError("Some of the chosen criteria are no longer criteria of this handoff; choose again.", "criteria")
    missing = [c for c in handoff.criteria if c not in criteria_met]
    if missing and boundary and cfg.model_of(boundary) == "centralized":
        raise RuleError(
            "This boundary is centralized: every criterion must be met. Missing: " + ", ".join(missing), "criteria"
        )
    if link and (len(link) > LINK_MAX or not _LINK.match(link)):
        raise RuleError("A link starts with http:// or https:// and has no spaces.", "link")
    if notes and len(notes) > NOTES_MAX:
        raise RuleError(f"Notes can be at most {NOTES_MAX} characters.", "notes")
    met = [c for c in handoff.criteria if c in criteria_met]
    changes = {"criteria_met": met, "notes": _clean(notes), "link": _clean(link)}
    return _transition(
        db,
        cfg,
        handoff_id,
        lambda h: _require_author(cfg, h, actor, "resubmit"),
        EventKind.RESUBMITTED,
        actor,
        now,
        allowed_from=HandoffState.WAITING_FOR_SENDER,
        new_state=HandoffState.OPEN,
        new_round=True,
        changes=changes,
        data={**changes, "due_date": _iso(handoff.due_date)},
    )


def cancel(db: Database, cfg: ProcessConfig, handoff_id: int, actor: str, now: datetime | None = None) -> Outcome:
    return _transition(
        db,
        cfg,
        handoff_id,
        lambda h: _require_author(cfg, h, actor, "cancel"),
        EventKind.CANCELLED,
        actor,
        now or utcnow(),
        allowed_from=HandoffState.ACTIVE,
        new_state=HandoffState.CANCELLED,
    )


def record_card(db: Database, handoff_id: int, channel: str | None, ts: str | None) -> None:
    """Remember where the receiving team's card is (Slack bookkeeping, not an event: the outbox row
    `card_key(id)` holds the same)."""
    with db.write() as s:
        s.execute(update(Handoff).where(Handoff.id == handoff_id).values(channel=channel, message_ts=ts))


def record_permalink(db: Database, handoff_id: int, permalink: str) -> None:
    """Remember the card's permalink (Slack bookkeeping): the digest links its signals to the handoffs behind them."""
    with db.write() as s:
        s.execute(update(Handoff).where(Handoff.id == handoff_id).values(permalink=permalink[:500]))


# -- reading ---------------------------------------------------------------------------------------


def history(db: Database, handoff_id: int) -> list[HandoffEvent]:
    return HANDOFF.history(db, handoff_id)


def open_for(db: Database, cfg: ProcessConfig, user: str, limit: int = 20) -> tuple[list[Handoff], list[Handoff]]:
    """The user's active handoffs: those they sent, and those waiting on a team they review for."""
    teams = [t.id for t in cfg.teams_of(user)]
    stewarded = [(b.from_team, b.to_team) for b in cfg.boundaries if b.steward == user]
    with db.read() as s:
        sent = list(
            s.exec(
                select(Handoff)
                .where(Handoff.sender == user, Handoff.state.in_(HandoffState.ACTIVE))
                .order_by(Handoff.created_at.desc())
                .limit(limit)
            )
        )
        conditions = [Handoff.to_team.in_(teams)] if teams else []
        conditions += [(Handoff.from_team == f) & (Handoff.to_team == t) for f, t in stewarded]
        received = []
        if conditions:
            received = list(
                s.exec(
                    select(Handoff)
                    .where(or_(*conditions), Handoff.state.in_(HandoffState.ACTIVE), Handoff.sender != user)
                    .order_by(Handoff.created_at.desc())
                    .limit(limit)
                )
            )
    return sent, received


_EVENT_STATE = {
    EventKind.CREATED: HandoffState.OPEN,
    EventKind.RESUBMITTED: HandoffState.OPEN,
    EventKind.REWORK: HandoffState.REWORK,
    EventKind.CLARIFICATION: HandoffState.CLARIFICATION,
    EventKind.ACCEPTED: HandoffState.ACCEPTED,
    EventKind.CANCELLED: HandoffState.CANCELLED,
}


COLUMNS = (
    "from_team",
    "to_team",
    "sender",
    "title",
    "link",
    "due_date",
    "notes",
    "criteria",
    "criteria_met",
    "state",
    "round",
    "version",
    "created_at",
    "updated_at",
    "accepted_at",
)
"""The `handoff` columns `replay` rebuilds: all but the id and Slack's bookkeeping (channel, message_ts)."""


def replay(events: list[HandoffEvent]) -> dict:
    """Recompute a handoff's row (every column in `COLUMNS`) from its events alone.

    `created` carries the first round's content and `resubmitted` each later round's; events written
    before they carried it replay too: what an event does not say stays as it was (None or [] at first).
    """
    row: dict = dict.fromkeys(COLUMNS)
    row.update(criteria=[], criteria_met=[], round=0, version=0)
    for ev in events:
        data = ev.data or {}
        row["state"] = _EVENT_STATE.get(ev.kind, row["state"])  # a reminder or a snooze changes no state
        row["version"] = ev.seq if ev.seq is not None else row["version"] + 1
        row["updated_at"] = ev.at
        if ev.kind == EventKind.CREATED:
            row.update(sender=ev.actor, created_at=ev.at)
            row["criteria"] = list(data.get("criteria", data.get("criteria_met", [])))
            for key in ("from_team", "to_team", "title"):
                if key in data:
                    row[key] = data[key]
        if ev.kind in (EventKind.CREATED, EventKind.RESUBMITTED):
            row["round"] += 1
            for key in ("notes", "link", "criteria_met"):
                if key in data:
                    row[key] = list(data[key]) if key == "criteria_met" else data[key]
            if "due_date" in data:
                row["due_date"] = date.fromisoformat(data["due_date"]) if data["due_date"] else None
        if ev.kind == EventKind.ACCEPTED:
            row["accepted_at"] = ev.at
    return row
