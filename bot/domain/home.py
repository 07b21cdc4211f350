"""Each person's App Home: what waits for them, their teams' month, their boundaries and decision rights,
and the pulse setting. No Slack in here: `handlers/home.py` publishes it, drawn from what this module reads.

Opening the Home (`opened`) records when, once per Events API delivery (`event_id`: a duplicate or a
retry of one already handled does nothing), and writes the Home's outbox row (`home:<user>`, kind
`publish`): it is drawn when delivered, so it always shows the latest state. When something in "Waiting
for you" changes (a handoff created, accepted, sent back, resubmitted or cancelled; a fast-track asked,
decided or re-routed), the decision's transaction writes that row again for each affected person who
opened their Home in the last `ACTIVE_DAYS` days (`republish`); rows of one person coalesce, so ten
changes are one publish of the latest state. Who is affected is decided here only (`of_handoff`,
`of_fasttrack`), called from each domain's decision.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from sqlalchemy import func, or_
from sqlmodel import Session, select

from bot.domain import digest, fasttrack, figures, initiatives, metrics, pulse
from bot.domain.core import events, inbound, outbox, schedule
from bot.domain.core.outbox import PUBLISH, Message
from bot.domain.core.process import ProcessConfig
from bot.domain.core.timeutil import utcnow
from bot.domain.fasttrack import may as fasttrack_may
from bot.domain.handoffs import authors, reviewers
from storage.db import Database
from storage.models import (
    FastTrack,
    FastTrackState,
    Handoff,
    HandoffState,
    HomeView,
    PulseOptout,
)

log = logging.getLogger("steward")
ACTIVE_DAYS = 30  # a Home opened longer ago than this is not re-published on a change (it is drawn afresh when opened)
SHOW_REVIEWS, SHOW_RESUBMITS, SHOW_FASTTRACKS = (
    10,
    5,
    5,
)  # items shown per list ("and N more"): the view stays under 100 blocks
SHOW_BOUNDARIES, SHOW_RIGHTS, SHOW_TEAMS = 12, 15, 5
PENDING_SCAN = (
    1000  # as /fasttrack list: the deciders are a JSON list, read the oldest pending requests, not all history
)


def key(user: str) -> str:
    return f"home:{user}"


def message(user: str) -> Message:
    """The person's Home, published (views.publish) as it stands when delivered. Its own queue (channel
    `home:<user>`), so it never waits behind the person's DMs."""
    return Message(key(user), key(user), PUBLISH, key(user)[:20], "home", {"user": user})


# -- who is affected, and re-publishing ------------------------------------------------------------------


def of_handoff(cfg: ProcessConfig, h: Handoff) -> set[str]:
    """Whose "Waiting for you" a change of this handoff can change: who may review it (the receiving team
    and the steward, as its Accept button) and who may resubmit it (the sender and the sending team)."""
    return reviewers(cfg, h) | authors(cfg, h)


def of_fasttrack(session: Session, r: FastTrack) -> set[str]:
    """Whose list a change of this request can change: who may decide it now, and whoever had a card for
    it (re-routed away from them, or decided: it leaves their list)."""
    return set(r.deciders) | {c.params.get("user") for c in fasttrack.cards_of(session, r.id) if c.params.get("user")}


def republish(session: Session, people: Iterable[str], now: datetime) -> list[Message]:
    """The Home messages a change causes: one per affected person who opened their Home in the last
    ACTIVE_DAYS days (written with the decision; coalesced per person by the outbox)."""
    people = sorted({p for p in people if p})
    if not people:
        return []
    since = now - timedelta(days=ACTIVE_DAYS)
    active = session.exec(select(HomeView.user).where(HomeView.user.in_(people), HomeView.opened_at >= since)).all()
    return [message(u) for u in sorted(active)]


def opened(db: Database, user: str, event_id: str | None, now: datetime) -> list[str] | None:
    """The person opened their Home: remember when, and write its publish, in one transaction with the
    event's id. None: this delivery was handled before (a duplicate, or Slack's retry of it)."""
    with db.write() as s:
        if event_id and not inbound.first_delivery(s, db, event_id, now):
            return None
        s.execute(
            db.insert(HomeView)
            .values(user=user, opened_at=now)
            .on_conflict_do_update(index_elements=["user"], set_=dict(opened_at=now))
        )
        return outbox.add(s, db, [message(user)], now)


def refresh(db: Database, user: str, now: datetime) -> list[str]:
    """Publish the person's Home again (after a click on it that changed nothing: it was stale)."""
    return outbox.put(db, [message(user)], now)


def last_opened(db: Database, user: str) -> datetime | None:
    with db.read() as s:
        row = s.get(HomeView, user)
    return row.opened_at if row else None


# -- what the Home shows ---------------------------------------------------------------------------------


@dataclass
class Waiting:
    reviews: list[Handoff] = field(default_factory=list)  # oldest first
    reviews_total: int = 0
    resubmits: list[Handoff] = field(default_factory=list)
    resubmits_total: int = 0
    fasttracks: list[FastTrack] = field(default_factory=list)
    fasttracks_total: int = 0

    @property
    def total(self) -> int:
        return self.reviews_total + self.resubmits_total + self.fasttracks_total


def waiting(db: Database, cfg: ProcessConfig, user: str) -> Waiting:
    """What waits for the person, by the rules of the cards' buttons: handoffs they may review
    (`handoffs.reviewers`: their teams receive it, or they steward its boundary; never their own),
    handoffs sent back that they may resubmit (`handoffs.authors`), fast-track requests they may decide."""
    teams = [t.id for t in cfg.teams_of(user)]
    stewarded = [(b.from_team, b.to_team) for b in cfg.boundaries if b.steward == user]
    out = Waiting()
    with db.read() as s:
        review = [Handoff.to_team.in_(teams)] if teams else []
        review += [(Handoff.from_team == f) & (Handoff.to_team == t) for f, t in stewarded]
        if review:
            where = (Handoff.state == HandoffState.OPEN, or_(*review), Handoff.sender != user)
            out.reviews = list(
                s.exec(select(Handoff).where(*where).order_by(Handoff.created_at, Handoff.id).limit(SHOW_REVIEWS))
            )
            out.reviews_total = (
                len(out.reviews)
                if len(out.reviews) < SHOW_REVIEWS
                else s.exec(select(func.count()).select_from(Handoff).where(*where)).one()
            )
        author = [Handoff.sender == user] + ([Handoff.from_team.in_(teams)] if teams else [])
        where = (Handoff.state.in_(HandoffState.WAITING_FOR_SENDER), or_(*author))
        out.resubmits = list(
            s.exec(select(Handoff).where(*where).order_by(Handoff.created_at, Handoff.id).limit(SHOW_RESUBMITS))
        )
        out.resubmits_total = (
            len(out.resubmits)
            if len(out.resubmits) < SHOW_RESUBMITS
            else s.exec(select(func.count()).select_from(Handoff).where(*where)).one()
        )
        pending = s.exec(
            select(FastTrack)
            .where(FastTrack.state == FastTrackState.PENDING)
            .order_by(FastTrack.id)
            .limit(PENDING_SCAN)
        )
        mine = [r for r in pending if fasttrack_may(cfg, r, user)]  # as the Approve button's rule says now
        out.fasttracks, out.fasttracks_total = mine[:SHOW_FASTTRACKS], len(mine)
    return out


@dataclass
class TeamMonth:
    """A team's month to date beside the whole month before, as the digest words it."""

    id: str
    name: str
    sent: int
    received: int
    sent_change: str
    received_change: str
    cycle: str
    cycle_change: str
    failure: str
    failure_change: str
    budget: object  # bot.domain.fasttrack.Budget
    satisfaction: object | None = (
        None  # bot.domain.figures.Figure of the last closed month, only as the digest shows it
    )
    satisfaction_label: str = ""
    initiative: object | None = None  # storage.models.Initiative


_figures: dict[tuple, tuple[float, object]] = {}  # (database, period) → (when computed, monotonic; the Month)
_refreshing: set[tuple] = set()
_lock = threading.Lock()


def fresh_seconds() -> float:
    """How long the month-to-date figures drawn on Homes are reused (`HOME_FIGURES_SECONDS`, default 60; 0:
    computed for every Home). They are the whole organisation's month so far, by SQL over its events: the
    costly part of drawing a Home, and the same for everyone."""
    try:
        return max(float(os.environ.get("HOME_FIGURES_SECONDS", "60")), 0.0)
    except ValueError:
        return 60.0


def month_so_far(db: Database, period: str, start: datetime, end: datetime, ids: list[str]):
    """`bot.domain.metrics.figures` of the month so far, reused for `fresh_seconds()`; past that, the figures
    kept are shown once more while a thread computes them again (so no Home waits for them), and after
    ten times that they are computed before the Home is drawn."""
    ttl = fresh_seconds()
    if ttl <= 0:
        return metrics.figures(db, period, start, end, ids, utcnow())
    key = (db.url, period, start, end, tuple(ids))
    hit = _figures.get(key)
    age = time.monotonic() - hit[0] if hit else None

    def compute():
        at = time.monotonic()
        month = metrics.figures(db, period, start, end, ids, utcnow())
        _figures[key] = (at, month)
        return month

    if hit is None or age > 10 * ttl:
        return compute()
    if age > ttl:
        with _lock:
            start_thread = key not in _refreshing
            _refreshing.add(key)
        if start_thread:

            def refresh():
                try:
                    compute()
                except Exception:  # noqa: BLE001 - the next Home computes them itself
                    log.exception("home: month-to-date figures could not be computed again")
                finally:
                    with _lock:
                        _refreshing.discard(key)

            threading.Thread(target=refresh, name="home-figures", daemon=True).start()
    return hit[1]


def team_months(db: Database, cfg: ProcessConfig, user: str, now: datetime, sealer=None) -> list[TeamMonth]:
    """Per team of the person: sent/received, median cycle time, failure rate (as sender), each against
    last month; the fast-track budget; satisfaction of the last closed month (only what the digest would
    show: `bot.domain.digest.satisfaction`, held back below the anonymity threshold); the team's initiative.
    Figures come from `bot.domain.metrics` (the closed month from `month_rollup`)."""
    teams = cfg.teams_of(user)[:SHOW_TEAMS]
    if not teams:
        return []
    tz = cfg.organization.tz
    period = schedule.period_of(now, tz)
    last = schedule.shift(period, -1)
    ids = [t.id for t in cfg.teams]
    real = utcnow()
    this = month_so_far(db, period, *schedule.bounds(period, tz), ids)
    before = metrics.figures(db, last, *schedule.bounds(last, tz), ids, real)
    sat = None
    if cfg.pulse_on and sealer is not None:  # the last closed month, as its digest shows it (or nothing yet)
        earlier = metrics.figures(
            db, schedule.shift(last, -1), *schedule.bounds(schedule.shift(last, -1), tz), ids, real
        )
        sat = digest.satisfaction(db, cfg, last, [earlier, before], sealer, now)
    shared = initiatives.current(db, period)
    label = schedule.short_label(last)
    out = []
    for t in teams:
        n, b = this.teams[t.id], before.teams[t.id]
        unit = figures.unit_of(n.as_sender.cycle.get(0.5), b.as_sender.cycle.get(0.5))
        out.append(
            TeamMonth(
                id=t.id,
                name=t.name,
                sent=n.sent,
                received=n.received,
                sent_change=figures.change_count(n.sent, b.sent),
                received_change=figures.change_count(n.received, b.received),
                cycle=figures.duration(n.as_sender.cycle.get(0.5), unit),
                cycle_change=figures.compare_cycle(n.as_sender, b.as_sender, unit, label),
                failure=figures.percent(n.as_sender.failure_rate),
                failure_change=figures.compare_rate(n.as_sender, b.as_sender, label),
                budget=fasttrack.team_budget(db, cfg, t.id, now),
                satisfaction=sat.figures.get(t.id) if sat is not None else None,
                satisfaction_label=schedule.short_label(last),
                initiative=shared.get(t.id),
            )
        )
    return out


def boundaries(cfg: ProcessConfig, user: str) -> list:
    """The boundaries the person's teams are on (either side), and those they steward."""
    teams = {t.id for t in cfg.teams_of(user)}
    return [b for b in cfg.boundaries if b.from_team in teams or b.to_team in teams or b.steward == user]


def rights(cfg: ProcessConfig, user: str) -> list:
    """The decision-rights rows that concern the person's teams (or the person): as setting the standard,
    granting exceptions or owning the execution."""
    mine = {t.id for t in cfg.teams_of(user)} | {user}
    return [r for r in cfg.rights if {r.sets_standard, r.owns_execution, *cfg.granters(r)} & mine]


def pulse_setting(db: Database, cfg: ProcessConfig, user: str, now: datetime) -> dict | None:
    """The weekly pulse as it stands for the person (None: the pulse is off, or does not ask them)."""
    if not cfg.pulse_on or user not in pulse.members(cfg):
        return None
    with db.read() as s:
        row = s.get(PulseOptout, user)
    if row is None or (row.until is not None and row.until <= now):
        return {"state": "on", "until": None}
    return {"state": "paused" if row.until else "stopped", "until": row.until}


# -- subscribers (wired in bot.entry.bootstrap) ----------------------------------------------------------


def on_handoff(session: Session, e: events.HandoffChanged) -> list[Message]:
    return republish(session, of_handoff(e.cfg, e.handoff), e.at)


def on_fasttrack(session: Session, e: events.FastTrackChanged) -> list[Message]:
    return republish(session, of_fasttrack(session, e.request), e.at)


def on_members(session: Session, e: events.MembersChanged) -> list[Message]:
    """What waits for them changed: the Homes they opened lately show it (a leaver's no longer lists the
    team's items; a joiner's does)."""
    return republish(session, e.people, e.at)
