"""Fast-track exceptions: a team asks to skip a gate; only the people the decision-rights matrix names
may grant it, never the requester, within a monthly budget. No Slack in here.

Budget: a team may have `max(1, floor(items × budget_percent / 100))` approved fast-tracks in a calendar
month (the organisation's time zone), where items are the handoffs it sent (created) that month and
that are not cancelled (as they stand now: a handoff cancelled later stops counting). A request that
would exceed it is still routed, marked over budget, and is decided by `[fasttrack].backup_approvers`.
Denied requests use no budget. The budget is checked again when a regular approver approves, inside the
deciding transaction (serialised per team), so two approvals at once can never overrun it: a request the
budget no longer covers is re-routed to the backup approvers instead.

Each request and decision writes, in its transaction, the messages it causes (`messages()`): a card per
decider (or one in `[fasttrack].channel`), updated in place when it is decided or re-routed, the
requester's DMs, a decision's notice to whoever owns the gate's execution (`owns_execution`: the team's
channel, or the person), and the linked handoff's card drawn again. The regular approvers of an
over-budget request get no card (they could not act on it). A request none of whose cards Slack would
take goes to the backup approvers.
"""

from __future__ import annotations

import math
import zlib
from dataclasses import dataclass
from datetime import date, datetime

from sqlalchemy import func, text
from sqlmodel import Session, select

from bot.domain.core import events, schedule
from bot.domain.core.items import (
    Kind,
    LostRace,
    NotAllowed,
    NotFound,
    Outcome,
    RuleError,
)
from bot.domain.core.outbox import POST, UPDATE, Message, update_of
from bot.domain.core.process import ProcessConfig, Right
from bot.domain.core.timeutil import local_today, utcnow
from bot.domain.handoffs import card_key as card_key_of_handoff
from storage.db import Database
from storage.models import (
    FastTrack,
    FastTrackEvent,
    FastTrackEventKind,
    FastTrackState,
    Handoff,
    HandoffState,
    Outbox,
    OutboxStatus,
)

FASTTRACK = Kind(FastTrack, FastTrackEvent, "request_id", "fast-track request")

WHAT_MAX = 300
PENDING_SCAN = 1000
JUSTIFICATION_MAX = 2000
REASON_MAX = 1000


@dataclass(frozen=True)
class Budget:
    """A team's fast-track budget in a month, and where one more approval would put it."""

    team: str
    period: str
    items: int  # handoffs the team sent this month, not cancelled
    approved: int  # fast-tracks approved this month
    percent: float

    @property
    def limit(self) -> int:
        return max(1, math.floor(self.items * self.percent / 100))

    @property
    def position(self) -> int:
        return self.approved + 1

    @property
    def over(self) -> bool:
        """Would one more approval exceed the budget?"""
        return self.position > self.limit

    def as_dict(self) -> dict:
        return {
            "team": self.team,
            "period": self.period,
            "items": self.items,
            "approved": self.approved,
            "limit": self.limit,
            "position": self.position,
            "percent": self.percent,
        }

    @classmethod
    def when_requested(cls, events: list[FastTrackEvent]) -> Budget:
        """The budget as it stood when the request was made (its `requested` event)."""
        return cls._of(events[0].data["budget"])

    @classmethod
    def latest(cls, events: list[FastTrackEvent]) -> Budget:
        """The budget as it stood at the request's latest event that measured it: asked, re-routed because
        the budget ran out, or decided. (A card shows this one snapshot, so it never says both "over" and
        "within" budget.)"""
        return cls._of(next(e.data["budget"] for e in reversed(events) if (e.data or {}).get("budget")))

    @classmethod
    def _of(cls, b: dict) -> Budget:
        return cls(b.get("team", ""), b["period"], b["items"], b["approved"], b["percent"])


def budget(session: Session, cfg: ProcessConfig, team: str, now: datetime) -> Budget:
    period = schedule.period_of(now, cfg.organization.tz)
    start, end = schedule.bounds(period, cfg.organization.tz)
    items = session.exec(
        select(func.count())
        .select_from(Handoff)
        .where(
            Handoff.from_team == team,
            Handoff.created_at >= start,
            Handoff.created_at < end,
            Handoff.state != HandoffState.CANCELLED,
        )
    ).one()
    approved = session.exec(
        select(func.count())
        .select_from(FastTrack)
        .where(
            FastTrack.team == team,
            FastTrack.state == FastTrackState.APPROVED,
            FastTrack.decided_at >= start,
            FastTrack.decided_at < end,
        )
    ).one()
    return Budget(team, period, int(items), int(approved), cfg.fasttrack.budget_percent)


def team_budget(db: Database, cfg: ProcessConfig, team: str, now: datetime | None = None) -> Budget:
    with db.read() as session:
        return budget(session, cfg, team, now or utcnow())


# -- routing -----------------------------------------------------------------------------------------


@dataclass
class Route:
    """Who decides. The regular approvers of an over-budget request get no card they could not act on;
    when a request they already have a card for goes on to the backups, that card says so in one line."""

    deciders: list[str]  # may decide
    over_budget: bool
    why: str | None = None  # when the backups decide although the budget allows it


def route(cfg: ProcessConfig, right: Right, requester: str, over_budget: bool) -> Route:
    regular = [p for p in cfg.granters(right) if p != requester]
    backups = [p for p in cfg.fasttrack.backup_approvers if p != requester]
    if over_budget:
        return Route(backups, True)
    if not regular:
        return Route(backups, False, "the only approver named for this element is the requester")
    return Route(regular, False)


# -- requests ----------------------------------------------------------------------------------------


@dataclass
class Draft:
    team: str | None
    element: str | None
    reason: str | None
    what: str | None
    justification: str | None
    handoff_id: int | None = None
    needed_by: date | None = None


def check(db: Database, cfg: ProcessConfig, requester: str, draft: Draft, today: date) -> dict[str, str]:
    """The draft's problems by form field (empty when it can be submitted). `today` is the organisation's
    date (`bot.domain.local_today`)."""
    errors: dict[str, str] = {}
    if problem := cfg.not_member(requester, draft.team):
        errors["team"] = problem
    if not draft.element:
        errors["element"] = "Choose the gate to skip."
    elif cfg.right(draft.element) is None:
        errors["element"] = "That gate is no longer in the decision-rights matrix; choose again."
    if not draft.reason:
        errors["reason"] = "Choose a reason."
    elif draft.reason not in cfg.fasttrack.reasons:
        errors["reason"] = "That reason is no longer one of the fast-track reasons; choose again."
    what = (draft.what or "").strip()
    if not what:
        errors["what"] = "Say what needs to go faster."
    elif len(what) > WHAT_MAX:
        errors["what"] = f"At most {WHAT_MAX} characters."
    justification = (draft.justification or "").strip()
    if not justification:
        errors["justification"] = "Say why the standard path will not do."
    elif len(justification) > JUSTIFICATION_MAX:
        errors["justification"] = f"At most {JUSTIFICATION_MAX} characters."
    if draft.needed_by and draft.needed_by < today:
        errors["needed_by"] = "That date is in the past."
    if draft.handoff_id is not None:
        with db.read() as s:
            h = s.get(Handoff, draft.handoff_id)
        if h is None or h.sender != requester:
            errors["handoff"] = "Choose one of your own handoffs."
    if not errors:
        right = cfg.right(draft.element)
        if not route(cfg, right, requester, False).deciders:
            errors["element"] = (
                "Nobody but you could decide this request. Ask your process owner to name another approver."
            )
    return errors


def _lock_team(session: Session, db: Database, team: str) -> None:
    """Serialise budget decisions per team (SQLite's write transactions are serial already)."""
    if db.engine.dialect.name == "postgresql":
        session.execute(
            text("SELECT pg_advisory_xact_lock(:k)"), {"k": 727275_0000 + zlib.crc32(team.encode()) % 10000}
        )


# -- what a request or decision causes -----------------------------------------------------------------


def card_key(request_id: int, person: str | None) -> str:
    """A decider's card (a DM), or the one card in [fasttrack].channel (`person` None)."""
    return f"fasttrack:{request_id}:card:{person or 'channel'}"


def cards_of(session: Session, request_id: int) -> list[Outbox]:
    return list(
        session.exec(
            select(Outbox).where(
                Outbox.item == f"fasttrack:{request_id}", Outbox.kind == POST, Outbox.render == "fasttrack_card"
            )
        )
    )


def _handoff_card(session: Session, cfg: ProcessConfig, r: FastTrack) -> list[Message]:
    """The linked handoff's card is drawn again: it shows the request and its decision."""
    h = session.get(Handoff, r.handoff_id) if r.handoff_id else None
    if h is None:
        return []
    team = cfg.team(h.to_team)
    card = card_key_of_handoff(h.id)
    return [
        Message(
            update_of(card),
            f"handoff:{h.id}",
            UPDATE,
            team.channel if team else "",
            "handoff_card",
            {"id": h.id},
            anchor=card,
        )
    ]


def _owner(cfg: ProcessConfig, r: FastTrack, ev: FastTrackEvent) -> list[Message]:
    """The decision reaches whoever owns the gate's execution (the matrix's `owns_execution`): the team's
    channel, or the person. Not the decider about their own decision, nor the requester (who has the
    decision's DM)."""
    right = cfg.right(r.element)
    if right is None:
        return []
    team = cfg.team(right.owns_execution)
    where = team.channel if team else right.owns_execution
    if where in (ev.actor, r.requester):
        return []
    item = f"fasttrack:{r.id}"
    return [
        Message(
            f"{item}:v{ev.seq}:owner",
            item,
            POST,
            where,
            "fasttrack_owner_notice",
            {"id": r.id, "owner": right.owns_execution},
            actor=ev.actor,
        )
    ]


def messages(session: Session, cfg: ProcessConfig, r: FastTrack, ev: FastTrackEvent) -> list[Message]:
    """A request's messages: a card per decider (or one in [fasttrack].channel), updated in place; the
    requester's receipt and the DMs that tell them what happened; a decision's notice to the owner of the
    gate's execution; and the linked handoff's card, drawn again when the request is made and decided."""
    item = f"fasttrack:{r.id}"
    channel = cfg.fasttrack.channel

    def post(person: str | None) -> Message:
        return Message(
            card_key(r.id, person),
            item,
            POST,
            person or channel,
            "fasttrack_card",
            {"id": r.id, "user": person},
            actor=r.requester,
        )

    homes = events.publish(session, events.FastTrackChanged(ev.at, r))  # e.g. it enters or leaves the deciders' Homes
    if ev.kind == FastTrackEventKind.REQUESTED:
        cards = [post(None)] if channel else [post(p) for p in ev.data.get("deciders") or []]
        return (
            cards
            + [
                Message(
                    f"{item}:v{ev.seq}:dm:{r.requester}",
                    item,
                    POST,
                    r.requester,
                    "fasttrack_submitted_dm",
                    {"id": r.id},
                )
            ]
            + _handoff_card(session, cfg, r)
            + homes
        )
    cards = cards_of(session, r.id)
    out = [
        Message(update_of(c.key), item, UPDATE, c.channel, "fasttrack_card", dict(c.params), anchor=c.key)
        for c in cards
    ]
    if ev.kind == FastTrackEventKind.REROUTED:
        reachable = [c for c in cards if c.status not in (OutboxStatus.FAILED, OutboxStatus.UNKNOWN)]
        if not (
            channel and any(c.params.get("user") is None for c in reachable)
        ):  # the channel card shows the new deciders
            carded = {c.params.get("user") for c in cards}
            out += [post(p) for p in r.deciders if p not in carded]
    if ev.kind == FastTrackEventKind.REROUTED and ev.data.get("escalated"):
        out.append(
            Message(
                f"{item}:v{ev.seq}:dm:{r.requester}",
                item,
                POST,
                r.requester,
                "fasttrack_escalated_dm",
                {"id": r.id, "seq": ev.seq},
            )
        )
    if ev.kind in (FastTrackEventKind.APPROVED, FastTrackEventKind.DENIED):
        out.append(
            Message(
                f"{item}:v{ev.seq}:dm:{r.requester}",
                item,
                POST,
                r.requester,
                "fasttrack_decided_dm",
                {"id": r.id},
                actor=ev.actor,
            )
        )
        out += _owner(cfg, r, ev) + _handoff_card(session, cfg, r)
    return out + homes


# -- requests ----------------------------------------------------------------------------------------


@dataclass
class Requested(Outcome):
    budget: Budget | None = None
    route: Route | None = None


def request(
    db: Database, cfg: ProcessConfig, requester: str, draft: Draft, now: datetime | None = None
) -> tuple[FastTrack, Budget, Route]:
    """`submit`, for scripts and tests: the request, the budget it met and where it went."""
    done = submit(db, cfg, requester, draft, now)
    return done.item, done.budget, done.route


def submit(
    db: Database,
    cfg: ProcessConfig,
    requester: str,
    draft: Draft,
    now: datetime | None = None,
    view_id: str | None = None,
) -> Requested:
    """File a request, route it, and write its cards and the requester's receipt to the outbox.
    Submitting the same view again (`view_id`) files nothing twice."""
    now = now or utcnow()
    errors = check(db, cfg, requester, draft, local_today(cfg, now))
    if errors:
        name, message = next(iter(errors.items()))
        raise RuleError(message, name)
    right = cfg.right(draft.element)

    def create(s: Session) -> Requested:
        _lock_team(s, db, draft.team)
        position = budget(s, cfg, draft.team, now)
        routed = route(cfg, right, requester, position.over)
        row = FastTrack(
            team=draft.team,
            requester=requester,
            element=right.element,
            reason=draft.reason,
            what=draft.what.strip(),
            justification=draft.justification.strip(),
            handoff_id=draft.handoff_id,
            needed_by=draft.needed_by,
            state=FastTrackState.PENDING,
            over_budget=routed.over_budget,
            deciders=routed.deciders,
            version=1,
            created_at=now,
            updated_at=now,
            view_id=view_id,
        )
        s.add(row)
        s.flush()
        ev = FASTTRACK.event(
            row,
            FastTrackEventKind.REQUESTED,
            requester,
            now,
            draft.justification.strip(),
            deciders=routed.deciders,
            over_budget=routed.over_budget,
            budget=position.as_dict(),
            right=right.model_dump(),
            why=routed.why,
        )
        keys = FASTTRACK.record(s, db, row, ev, messages(s, cfg, row, ev), now)
        return Requested(row, changed=True, event=ev, keys=keys, budget=position, route=routed)

    return FASTTRACK.create_once(
        db,
        view_id,
        create,
        lambda s, before: Requested(
            before, changed=False, budget=Budget.when_requested(FASTTRACK.events(s, before.id))
        ),
    )


def get(db: Database, request_id: int) -> FastTrack:
    return FASTTRACK.get(db, request_id)


# -- decisions ---------------------------------------------------------------------------------------


@dataclass
class Decision(Outcome):
    """`changed` False: decided before (by someone else, or by an earlier click)."""

    rerouted: bool = False  # the budget ran out (or no card reached the deciders): now for the backup approvers
    budget: Budget | None = None

    @property
    def request(self) -> FastTrack:
        return self.item


def still_decides(cfg: ProcessConfig, row: FastTrack, user: str) -> bool:
    """Is `user`, named a decider when the request was routed, one still by the configuration as it stands
    (the members now)? A granter named through a team they have since left is not; nor is one the
    configuration no longer names as a granter of the element or a backup approver."""
    if user not in row.deciders or user == row.requester:
        return False
    right = cfg.right(row.element)
    return right is None or user in cfg.granters(right) or user in cfg.fasttrack.backup_approvers


def may_decide(cfg: ProcessConfig, row: FastTrack, user: str) -> None:
    """May `user` decide it now? While it is with the matrix's granters (not over budget, not gone to the
    backup approvers), they are read now: a granting team's members as they are now, so someone who left
    the team no longer decides, and someone who joined does. Otherwise: the deciders it was routed to, as
    long as the configuration still names them (`still_decides`)."""
    if user == row.requester:
        raise NotAllowed("You asked for this fast-track, so someone else must decide it (separation of duties).")
    right = cfg.right(row.element)
    regular = (
        right is not None
        and not row.over_budget
        and not row.escalated
        and not set(row.deciders) <= set(cfg.fasttrack.backup_approvers)
    )
    if regular:
        now = [p for p in cfg.granters(right) if p != row.requester]
        if user in now:
            return
        if user in row.deciders:
            who = ", ".join(f"<@{p}>" for p in now) or "nobody"
            raise NotAllowed(
                f"You no longer grant exceptions to “{row.element}” (you left the team the decision-rights matrix names):"
                f" {who} may decide it now; nothing was recorded.",
                people=now,
            )
    elif still_decides(cfg, row, user):
        return
    elif user in row.deciders:
        others = (
            ", ".join(f"<@{p}>" for p in row.deciders if p != user and still_decides(cfg, row, p))
            or "the backup approvers"
        )
        raise NotAllowed(
            f"You no longer grant exceptions to “{row.element}” (the configuration changed since it was asked), so you "
            f"cannot decide this request: {others} can.",
            people=[p for p in row.deciders if p != user],
        )
    who = ", ".join(f"<@{p}>" for p in row.deciders) or "nobody"
    if row.over_budget and right is not None and user in cfg.granters(right):
        raise NotAllowed(
            f"This request is over the team's fast-track budget, so a backup approver decides it: {who}.",
            people=row.deciders,
        )
    raise NotAllowed(
        f"Only the approvers the decision-rights matrix names for “{row.element}” can decide this request: {who}.",
        people=row.deciders,
    )


def may(cfg: ProcessConfig, row: FastTrack, user: str) -> bool:
    """Whether `user` may decide it now (`may_decide` without the reason): what lists and the Home show."""
    try:
        may_decide(cfg, row, user)
        return True
    except NotAllowed:
        return False


def decide(
    db: Database,
    cfg: ProcessConfig,
    request_id: int,
    actor: str,
    approve: bool,
    reason: str | None = None,
    now: datetime | None = None,
) -> Decision:
    """Approve or deny. The first decision wins: a conditional UPDATE on the version read, so however
    many clicks arrive at once, exactly one changes the request."""
    now = now or utcnow()
    reason = (reason or "").strip() or None
    if not approve and not reason:
        raise RuleError("Give a reason, so the requester knows why.", "reason")
    if reason and len(reason) > REASON_MAX:
        raise RuleError(f"The reason can be at most {REASON_MAX} characters.", "reason")
    try:
        return _decide(db, cfg, request_id, actor, approve, reason, now)
    except LostRace:
        return Decision(get(db, request_id), changed=False)


def _decide(
    db: Database, cfg: ProcessConfig, request_id: int, actor: str, approve: bool, reason: str | None, now: datetime
) -> Decision:
    with db.write() as s:
        row = s.get(FastTrack, request_id)
        if row is None:
            raise NotFound(f"There is no fast-track request #{request_id}.")
        may_decide(cfg, row, actor)
        if row.state != FastTrackState.PENDING:
            return Decision(row, changed=False)
        _lock_team(s, db, row.team)
        s.refresh(row)  # what the holder of the lock before us may have changed: decided it, or re-routed it
        if row.state != FastTrackState.PENDING:
            return Decision(row, changed=False)
        may_decide(cfg, row, actor)
        position = budget(s, cfg, row.team, now)
        if approve and not row.over_budget and position.over:
            right = cfg.right(row.element)
            routed = (
                route(cfg, right, row.requester, True) if right else Route(list(cfg.fasttrack.backup_approvers), True)
            )
            done = _reroute(s, db, cfg, row, routed.deciders, actor, now, budget=position.as_dict())
            return Decision(row, changed=False, keys=done.keys, event=done.event, rerouted=True, budget=position)
        kind = FastTrackEventKind.APPROVED if approve else FastTrackEventKind.DENIED
        done = FASTTRACK.transition(
            s,
            db,
            row,
            dict(
                state=FastTrackState.APPROVED if approve else FastTrackState.DENIED,
                decided_by=actor,
                decided_at=now,
                decision_reason=reason,
            ),
            lambda r: FASTTRACK.event(
                r, kind, actor, now, reason, budget=position.as_dict(), over_budget=r.over_budget
            ),
            lambda r, ev: messages(s, cfg, r, ev),
            now,
            where=[FastTrack.state == FastTrackState.PENDING],
        )
    return Decision(row, changed=True, event=done.event, keys=done.keys, budget=position)


def _reroute(
    s: Session,
    db: Database,
    cfg: ProcessConfig,
    row: FastTrack,
    deciders: list[str],
    actor: str,
    now: datetime,
    over_budget: bool = True,
    escalated: bool = False,
    **data,
) -> Outcome:
    return FASTTRACK.transition(
        s,
        db,
        row,
        dict(over_budget=over_budget, deciders=deciders, escalated=escalated or row.escalated),
        lambda r: FASTTRACK.event(
            r,
            FastTrackEventKind.REROUTED,
            actor,
            now,
            None,
            deciders=deciders,
            **({"escalated": True} if escalated else {}),
            **data,
        ),
        lambda r, ev: messages(s, cfg, r, ev),
        now,
    )


def escalate(db: Database, cfg: ProcessConfig, request_id: int, now: datetime, hours: float) -> Outcome | None:
    """Undecided after `hours` working hours: the backup approvers decide it now (once). The first
    approvers' cards say so, and the requester is told. Already with the backups: they are reminded."""
    try:
        with db.write() as s:
            row = s.get(FastTrack, request_id)
            if row is None or row.state != FastTrackState.PENDING or row.escalated:
                return None
            backups = [p for p in cfg.fasttrack.backup_approvers if p != row.requester] or list(row.deciders)
            return _reroute(
                s,
                db,
                cfg,
                row,
                backups,
                "steward",
                now,
                over_budget=row.over_budget,
                escalated=True,
                why=f"undecided after {hours:g} working hours",
                hours=hours,
            )
    except LostRace:
        return None


def unreachable(db: Database, cfg: ProcessConfig, request_id: int, now: datetime | None = None) -> Outcome | None:
    """Slack refused a card for good. When no decider of a pending request has a card left, it goes to
    the backup approvers (once: if they cannot be reached either, the operator sees it in `outbox`)."""
    now = now or utcnow()
    try:
        with db.write() as s:
            row = s.get(FastTrack, request_id)
            if row is None or row.state != FastTrackState.PENDING:
                return None
            cards = [
                c
                for c in cards_of(s, request_id)
                if c.params.get("user") in row.deciders or c.params.get("user") is None
            ]
            if any(c.status not in (OutboxStatus.FAILED, OutboxStatus.UNKNOWN) for c in cards):
                return None  # someone who may decide can still see it
            backups = [p for p in cfg.fasttrack.backup_approvers if p != row.requester]
            if not backups or set(backups) == set(row.deciders):
                return None
            return _reroute(
                s,
                db,
                cfg,
                row,
                backups,
                "steward",
                now,
                over_budget=row.over_budget,
                why="no card could reach the approvers",
            )
    except LostRace:
        return None


# -- cards and reading -------------------------------------------------------------------------------


def history(db: Database, request_id: int) -> list[FastTrackEvent]:
    return FASTTRACK.history(db, request_id)


def listing(
    db: Database, user: str, limit: int = 15, cfg: ProcessConfig | None = None
) -> tuple[list[FastTrack], list[FastTrack]]:
    """The user's own requests (newest first), and the pending ones that await their decision (with `cfg`:
    as `may_decide` says now, a granting team's current members; without: the deciders it was routed to)."""
    with db.read() as s:
        mine = list(
            s.exec(select(FastTrack).where(FastTrack.requester == user).order_by(FastTrack.id.desc()).limit(limit))
        )
        # the deciders are a JSON list: read the newest PENDING_SCAN pending requests, not all of history
        pending = s.exec(
            select(FastTrack)
            .where(FastTrack.state == FastTrackState.PENDING)
            .order_by(FastTrack.id.desc())
            .limit(PENDING_SCAN)
        )
        waiting = [r for r in pending if (may(cfg, r, user) if cfg is not None else user in r.deciders)][:limit]
    return mine, waiting


def for_handoff(db: Database, handoff_id: int) -> list[FastTrack]:
    """The requests linked to a handoff, oldest first (its card shows them)."""
    with db.read() as s:
        return list(
            s.exec(select(FastTrack).where(FastTrack.handoff_id == handoff_id).order_by(FastTrack.id).limit(20))
        )


def open_handoffs(db: Database, user: str, limit: int = 50) -> list[Handoff]:
    """The requester's own active handoffs, to attach one to a request."""
    with db.read() as s:
        return list(
            s.exec(
                select(Handoff)
                .where(Handoff.sender == user, Handoff.state.in_(HandoffState.ACTIVE))
                .order_by(Handoff.id.desc())
                .limit(limit)
            )
        )
