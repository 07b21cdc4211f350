"""Escalation paths: nothing waits silently. No Slack in here.

The clock's sweep (`sweep`) looks only at handoffs whose `next_escalation_at` has passed (an index finds
them without reading the others), in working time only: at 03:00 or on a Saturday nothing is sent, and it
waits for the next working morning. For each, the highest level of the round's path that has fallen due
fires, once (an `escalated` event and the messages it causes, in one transaction): after downtime only
the current level is sent, never a burst of stale ones. The receiving team may snooze a round's clock
by one working day, twice at most; the sender or a reviewer may escalate by hand. A fast-track request
undecided after `[fasttrack].escalate_after_hours` working hours goes to the backup approvers, once.
"""

from __future__ import annotations

import logging
import re
from datetime import datetime

from sqlmodel import select

from bot.domain import fasttrack, handoffs, sla
from bot.domain.core.items import LostRace, NotAllowed, Outcome, RuleError
from bot.domain.core.outbox import POST, UPDATE, Message, update_of
from bot.domain.core.process import USERGROUP_ID, ProcessConfig
from bot.domain.core.timeutil import utcnow
from bot.domain.core.worktime import WorkTime
from bot.domain.handoffs import HANDOFF, card_key
from storage.db import Database
from storage.models import (
    EventKind,
    FastTrack,
    FastTrackState,
    Handoff,
    HandoffEvent,
    HandoffState,
)

log = logging.getLogger("steward")
BATCH = 500
REASON_MAX = 1000


def messages(cfg: ProcessConfig, h: Handoff, ev: HandoffEvent) -> list[Message]:
    """What an escalation or a snooze causes: the card updated (deadline, overdue, snoozes), and each
    person or place the level names told; by hand, the steward and the last level of the path."""
    item, card = f"handoff:{h.id}", card_key(h.id)
    team = cfg.team(h.to_team)
    boundary = cfg.boundary(h.from_team, h.to_team)
    channel = team.channel if team else ""
    out = [Message(update_of(card), item, UPDATE, channel, "handoff_card", {"id": h.id}, anchor=card)]
    said = {"id": h.id, "seq": ev.seq}
    if ev.kind == EventKind.SNOOZED:
        return out + [
            Message(
                f"{item}:v{ev.seq}:thread", item, POST, channel, "handoff_escalation", said, anchor=card, actor=ev.actor
            )
        ]
    people: list[str] = []
    for who in ev.data.get("notify") or ():
        if who == "team" or re.match(USERGROUP_ID, who):
            out.append(
                Message(
                    f"{item}:v{ev.seq}:thread:{who}",
                    item,
                    POST,
                    channel,
                    "handoff_escalation",
                    dict(said, to=who),
                    anchor=card,
                )
            )
        elif who == "steward" and boundary:
            people.append(boundary.steward)
        elif who == "contact" and cfg.organization.escalation_contact:
            people.append(cfg.organization.escalation_contact)
        elif who == "sender":
            people.append(h.sender)
        elif who.startswith(("U", "W")):
            people.append(who)
    for person in dict.fromkeys(people):
        render = (
            "handoff_resubmit_reminder"
            if person == h.sender and ev.data.get("party") == "sender"
            else "handoff_escalation"
        )
        out.append(
            Message(
                f"{item}:v{ev.seq}:dm:{person}",
                item,
                POST,
                person,
                render,
                dict(said, to=person),
                actor=ev.actor if ev.data.get("manual") else None,
            )
        )
    return out


# -- the sweep --------------------------------------------------------------------------------------------


def due(db: Database, now: datetime, limit: int = BATCH, skip: set[int] | frozenset[int] = frozenset()) -> list[int]:
    """Handoffs the sweep must look at (through the index on `next_escalation_at`), but those in `skip`."""
    query = select(Handoff.id).where(Handoff.next_escalation_at <= now)
    if skip:
        query = query.where(Handoff.id.not_in(list(skip)))
    with db.read() as session:
        return list(session.exec(query.order_by(Handoff.next_escalation_at, Handoff.id).limit(limit)))


def escalate(
    db: Database, cfg: ProcessConfig, handoff_id: int, now: datetime, work: WorkTime | None = None
) -> Outcome | None:
    """Fire the level that has fallen due, if it has not fired this round; else only set when to look next."""
    work = work or WorkTime.of(cfg)
    try:
        with db.write() as s:
            h = s.get(Handoff, handoff_id)
            if h is None or h.next_escalation_at is None or h.next_escalation_at > now:
                return None
            level = sla.current(cfg, h, now, work)
            if level is None or level.level <= (h.level or 0):
                s.execute(
                    HANDOFF.model.__table__.update()
                    .where(Handoff.id == h.id, Handoff.version == h.version)
                    .values(next_escalation_at=sla.next_look(cfg, h, work))
                )
                return None
            projected = Handoff(**{**h.model_dump(), "level": level.level})
            values = {"level": level.level, "next_escalation_at": sla.next_look(cfg, projected, work)}
            data = {
                "level": level.level,
                "notify": list(level.notify),
                "party": sla.waits_on(h),
                "overdue_hours": round(sla.overdue_hours(cfg, h, now, work), 1),
                "last": level == sla.levels(cfg, h, work)[-1],
            }
            return HANDOFF.transition(
                s,
                db,
                h,
                values,
                lambda x: HANDOFF.event(x, EventKind.ESCALATED, "steward", now, None, **data),
                lambda x, ev: messages(cfg, x, ev),
                now,
            )
    except LostRace:  # a click changed it meanwhile: the next sweep looks again
        return None


def sweep(db: Database, cfg: ProcessConfig, now: datetime | None = None) -> list[str]:
    """One pass: every handoff whose clock has passed, and every fast-track request waiting too long.
    Returns the outbox keys written (the caller delivers them)."""
    now = now or utcnow()
    work = WorkTime.of(cfg)
    if not work.is_working(now):
        return []
    keys: list[str] = []
    broken: set[int] = set()  # one bad row never stops the others: logged, left for the next sweep
    while True:
        ids = due(db, now, skip=broken)
        for handoff_id in ids:
            try:
                outcome = escalate(db, cfg, handoff_id, now, work)
            except Exception:
                log.exception("escalations: handoff #%s could not be escalated; the others go on", handoff_id)
                broken.add(handoff_id)
                continue
            if outcome is not None:
                keys += outcome.keys
        if len(ids) < BATCH:
            break
    return keys + escalate_fasttracks(db, cfg, now, work)


# -- by hand ----------------------------------------------------------------------------------------------


def snooze(db: Database, cfg: ProcessConfig, handoff_id: int, actor: str, now: datetime | None = None) -> Outcome:
    """The receiving team (or the steward) puts the round's clock off by one working day, twice at most."""
    now = now or utcnow()
    work = WorkTime.of(cfg)

    def step(s) -> Outcome:
        h = s.get(Handoff, handoff_id)
        if h is None:
            raise RuleError(f"There is no handoff #{handoff_id}.")
        handoffs.may_review(cfg, h, actor)
        if h.state != HandoffState.OPEN:
            return Outcome(h, changed=False)
        if (h.snoozes or 0) >= sla.MAX_SNOOZES:
            raise RuleError(
                f"Handoff #{h.id} was already snoozed {sla.MAX_SNOOZES} times this round; it cannot be put off again."
            )
        projected = Handoff(**{**h.model_dump(), "snoozes": (h.snoozes or 0) + 1})
        values = {"snoozes": projected.snoozes, "next_escalation_at": sla.next_look(cfg, projected, work)}
        return HANDOFF.transition(
            s,
            db,
            h,
            values,
            lambda x: HANDOFF.event(
                x,
                EventKind.SNOOZED,
                actor,
                now,
                None,
                snoozes=x.snoozes,
                deadline=sla.deadline(cfg, x, work).isoformat(),
            ),
            lambda x, ev: messages(cfg, x, ev),
            now,
            where=[Handoff.state == HandoffState.OPEN],
        )

    return HANDOFF.attempt(db, handoff_id, step)


def by_hand(
    db: Database, cfg: ProcessConfig, handoff_id: int, actor: str, reason: str | None, now: datetime | None = None
) -> Outcome:
    """`/handoff escalate <n> <reason>`: the sender's side or a reviewer takes it to the steward (and the
    escalation contact, when there is one). It changes no state and no level."""
    now = now or utcnow()
    reason = " ".join((reason or "").split())
    if not reason:
        raise RuleError("Say why: `/handoff escalate <number> <reason>`.", "reason")
    if len(reason) > REASON_MAX:
        raise RuleError(f"The reason can be at most {REASON_MAX} characters.", "reason")

    def step(s) -> Outcome:
        h = s.get(Handoff, handoff_id)
        if h is None:
            raise RuleError(f"There is no handoff #{handoff_id}.")
        if actor not in handoffs.authors(cfg, h) | handoffs.reviewers(cfg, h):
            raise NotAllowed(
                f"Only the sending team, the receiving team or the steward of handoff #{h.id} can escalate it."
            )
        if h.state not in HandoffState.ACTIVE:
            return Outcome(h, changed=False)
        notify = ["steward"] + (["contact"] if cfg.organization.escalation_contact else [])
        return HANDOFF.transition(
            s,
            db,
            h,
            {},
            lambda x: HANDOFF.event(
                x, EventKind.ESCALATED, actor, now, reason, manual=True, notify=notify, party=sla.waits_on(h)
            ),
            lambda x, ev: messages(cfg, x, ev),
            now,
        )

    return HANDOFF.attempt(db, handoff_id, step)


# -- fast-tracks ------------------------------------------------------------------------------------------


def escalate_fasttracks(db: Database, cfg: ProcessConfig, now: datetime, work: WorkTime | None = None) -> list[str]:
    """Requests undecided after `escalate_after_hours` working hours go to the backup approvers, once."""
    work = work or WorkTime.of(cfg)
    wait = cfg.fasttrack.escalate_after_hours
    with db.read() as session:
        pending = list(
            session.exec(
                select(FastTrack.id, FastTrack.created_at)
                .where(FastTrack.state == FastTrackState.PENDING, FastTrack.escalated == False)  # noqa: E712
                .order_by(FastTrack.id)
                .limit(fasttrack.PENDING_SCAN)
            )
        )
    keys: list[str] = []
    for request_id, created_at in pending:
        try:
            if work.add(created_at, wait) <= now:
                outcome = fasttrack.escalate(db, cfg, request_id, now, wait)
                if outcome is not None:
                    keys += outcome.keys
        except Exception:  # one bad row never stops the others: logged, left for the next sweep
            log.exception("escalations: fast-track request #%s could not be escalated; the others go on", request_id)
    return keys
