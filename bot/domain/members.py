"""Teams in step with Slack: who is in each team now, joins and leaves as events, the welcome DM.

A team's members are the union of its sources: the ids listed in the configuration (`config`), its
Slack user group (`usergroup = "S…"`) and its channel (`members_from_channel = true`). The clock's
`members` job reads the Slack sources (`handlers.members.refresh`) and hands what it read to `apply`,
which records, in one transaction per team: who each source gave (`team_member`), each person joining
or leaving the team (`member_event`, append-only), and a welcome DM (outbox) for each newcomer.

- A source read for the first time (Steward newly installed, the team newly configured, a new user
  group) is a **baseline**: its people are recorded as members (events with `baseline`), never welcomed,
  or installing Steward would DM everyone.
- A source Slack could not read keeps its last known members (`None` to `apply`): a Slack error never
  empties a team.
- Every process sees the current members through `Roster`: the configuration with each team's members
  completed from `team_member`, re-read only when `member_version`'s stamp changed (looked at once a
  second at most). No Slack in here.
"""

from __future__ import annotations

import logging
import secrets
import threading
import time
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import datetime

from sqlalchemy import and_, delete, func
from sqlmodel import Session, select

from bot.domain.core import events, inbound, outbox
from bot.domain.core.outbox import POST, Message
from bot.domain.core.process import ProcessConfig, Team
from storage.db import Database
from storage.models import MemberEvent, MemberSync, MemberVersion, TeamMember, Welcome

log = logging.getLogger("steward")
CONFIG, USERGROUP, CHANNEL = "config", "usergroup", "channel"
ORDER = (CONFIG, USERGROUP, CHANNEL)  # a join is credited to the first source that has the person
JOINED, LEFT = "joined", "left"
CHECK_EVERY = 1.0  # seconds between two looks at the stamp, per process
RETRY_AFTER_FAILURE = 9.0  # more seconds before looking again when the database could not be read


def welcome_key(team: str, user: str) -> str:
    return f"welcome:{team}:{user}"


def welcome_message(team: str, user: str) -> Message:
    return Message(welcome_key(team, user), f"welcome:{team}", POST, user, "welcome_dm", {"team": team, "user": user})


# -- the current members, in every process ---------------------------------------------------------------


def effective(cfg: ProcessConfig, rows) -> ProcessConfig:
    """`cfg` with each team's members completed by what its Slack sources gave (`rows`: team, source, user
    triples). Rows of a source the team no longer has are ignored."""
    extra: dict[str, list[str]] = defaultdict(list)
    for team, source, user in rows:
        extra[(team, source)].append(user)
    teams = []
    for t in cfg.teams:
        people = list(t.members)
        for source in t.sources():
            if source != CONFIG:
                people += sorted(u for u in extra.get((t.id, source), ()) if u not in people)
        teams.append(t if len(people) == len(t.members) else t.model_copy(update={"members": tuple(people)}))
    return cfg.model_copy(update={"teams": tuple(teams)})


class Roster:
    """The configuration as it stands now: the file's, with the members Slack gave. Cheap: one primary-key
    read a second at most, the members re-read only when their stamp changed. When the database cannot be
    read, the last known members stay (at first, the file's), and it is asked again ten seconds later. One
    thread looks at a time; the others go on with the members last read meanwhile."""

    def __init__(self, cfg: ProcessConfig, db: Database, every: float = CHECK_EVERY):
        self.base, self.db, self.every = cfg, db, every
        self._cfg, self._stamp, self._checked = cfg, object(), -1e18
        self._lock = threading.Lock()
        self._synced = any(t.synced for t in cfg.teams)

    def current(self) -> ProcessConfig:
        if not self._synced:
            return self.base  # every member is listed in the file
        if time.monotonic() - self._checked < self.every:
            return self._cfg
        if not self._lock.acquire(blocking=False):
            return self._cfg  # another thread is looking: this one goes on with the members last read
        try:
            self._checked = time.monotonic()
            with self.db.read() as session:
                stamp = session.exec(select(MemberVersion.stamp).where(MemberVersion.id == 1)).first()
                if stamp != self._stamp:
                    rows = session.exec(
                        select(TeamMember.team, TeamMember.source, TeamMember.user_id).where(
                            TeamMember.source != CONFIG
                        )
                    ).all()
                    self._cfg, self._stamp = effective(self.base, rows), stamp
        except Exception as exc:  # noqa: BLE001 - the database down: the members last read stay
            self._checked = time.monotonic() + RETRY_AFTER_FAILURE  # and a down database is not asked every second
            log.warning("members: cannot read the current members (%s); using those last read", type(exc).__name__)
        finally:
            self._lock.release()
        return self._cfg

    def expire(self) -> None:
        """Look at the stamp on the next read (this process just changed the members)."""
        self._checked = -1e18


def _serialise(session: Session, db: Database) -> None:
    """Changes of membership one at a time (two clocks refreshing at once record each join once): the
    stamp's row locked on PostgreSQL; SQLite's write transactions are serial already."""
    session.execute(db.insert(MemberVersion).values(id=1, stamp="").on_conflict_do_nothing(index_elements=["id"]))
    session.execute(select(MemberVersion.id).where(MemberVersion.id == 1).with_for_update())


def _bump(session: Session, db: Database) -> None:
    stamp = secrets.token_hex(8)
    session.execute(
        db.insert(MemberVersion)
        .values(id=1, stamp=stamp)
        .on_conflict_do_update(index_elements=["id"], set_={"stamp": stamp})
    )


# -- recording what Slack gave -----------------------------------------------------------------------


@dataclass
class Applied:
    """What one team's refresh changed."""

    team: str
    joined: list[str] = field(default_factory=list)
    left: list[str] = field(default_factory=list)
    baseline: list[str] = field(default_factory=list)  # sources read for the first time
    kept: list[str] = field(default_factory=list)  # sources Slack could not read: their members kept
    keys: list[str] = field(default_factory=list)  # welcome DMs written
    homes: list[str] = field(default_factory=list)  # App Homes of those who joined or left, published again
    members: int = 0


def known(db: Database, team: str, source: str) -> set[str]:
    """Who `source` gave `team` at its last read."""
    with db.read() as session:
        return set(
            session.exec(select(TeamMember.user_id).where(TeamMember.team == team, TeamMember.source == source)).all()
        )


def apply(
    db: Database, team: Team, fetched: dict[str, set[str] | None], now: datetime, errors: dict[str, str] | None = None
) -> Applied:
    """Record what each source of `team` gave (`None`: Slack could not say; its members are kept), in one
    transaction: the source's rows, a `joined` / `left` event for each person whose membership of the team
    (any source) changed, a welcome DM for each newcomer not in a baseline, and a new stamp. The team's
    listed ids are always read (`config`); a source the team no longer has is emptied. `now` is when the
    read began: someone a `member_joined_channel` added after it is not taken for someone who left."""
    errors = errors or {}
    sources = team.sources()
    fetched = {CONFIG: set(team.members), **fetched}
    out = Applied(team.id)
    with db.write() as session:
        _serialise(session, db)
        have: dict[str, set[str]] = defaultdict(set)
        syncs = {s.source: s for s in session.exec(select(MemberSync).where(MemberSync.team == team.id)).all()}
        since_read: dict[str, set[str]] = defaultdict(set)  # added (member_joined_channel) after this read began
        for source, user, since in session.exec(
            select(TeamMember.source, TeamMember.user_id, TeamMember.since).where(TeamMember.team == team.id)
        ).all():
            have[source].add(user)
            last = syncs[source].synced_at if source in syncs else None
            if source != CONFIG and since is not None and since > now and (last is None or since > last):
                since_read[source].add(user)
        for source in set(have) - set(sources):
            fetched.setdefault(source, set())  # no longer a source: everyone it gave goes
        new = {source: set(users) for source, users in have.items()}
        first = set()
        for source, users in fetched.items():
            if users is None:
                out.kept.append(source)
                continue
            sync = syncs.get(source)
            if source in sources and (sync is None or sync.ref != sources[source]):
                first.add(source)
            new[source] = set(users) | (
                since_read[source] if source in sources else set()
            )  # a read cannot know who joined after it began
        out.baseline = [s for s in ORDER if s in first]
        for source in new:
            added, gone = new[source] - have.get(source, set()), have.get(source, set()) - new[source]
            if added:
                session.execute(
                    db.insert(TeamMember).on_conflict_do_nothing(),
                    [{"team": team.id, "source": source, "user_id": u, "since": now} for u in sorted(added)],
                )
            if gone:
                session.execute(
                    delete(TeamMember).where(
                        TeamMember.team == team.id, TeamMember.source == source, TeamMember.user_id.in_(sorted(gone))
                    )
                )
        before = set().union(*have.values()) if have else set()
        after = set().union(*new.values()) if new else set()
        rows, unwelcomed = [], []
        for user in sorted(after - before):
            source = next(s for s in ORDER if user in new.get(s, ()))
            rows.append(
                {
                    "team": team.id,
                    "user_id": user,
                    "kind": JOINED,
                    "source": source,
                    "baseline": source in first,
                    "at": now,
                }
            )
            if source in first:  # a member already when Steward first looked: never welcomed, now or later
                unwelcomed.append({"team": team.id, "user_id": user, "at": now, "sent": False})
            else:
                out.joined.append(user)
        if unwelcomed:
            session.execute(db.insert(Welcome).on_conflict_do_nothing(index_elements=["team", "user_id"]), unwelcomed)
        for user in sorted(before - after):
            source = next(s for s in ORDER if user in have.get(s, ()))
            rows.append(
                {"team": team.id, "user_id": user, "kind": LEFT, "source": source, "baseline": False, "at": now}
            )
            out.left.append(user)
        if rows:
            session.execute(db.insert(MemberEvent), rows)
        out.keys = _welcome(session, db, team.id, out.joined, now)
        # what waits for them changed: the Homes they opened lately show it (a leaver's no longer lists the team's items)
        out.homes = outbox.add(
            session, db, events.publish(session, events.MembersChanged(now, frozenset(after ^ before))), now
        )
        for source, users in fetched.items():
            if source not in sources:
                session.execute(delete(MemberSync).where(MemberSync.team == team.id, MemberSync.source == source))
                continue
            values = (
                {"ref": sources[source], "error": None, "synced_at": now}
                if users is not None
                else {"error": (errors.get(source) or "unknown error")[:200]}
            )
            if users is None and source not in syncs:
                continue  # never read: nothing to remember but the error, which the report says
            session.execute(
                db.insert(MemberSync)
                .values(
                    team=team.id, source=source, **{"ref": sources[source], "synced_at": now, "error": None, **values}
                )
                .on_conflict_do_update(index_elements=["team", "source"], set_=values)
            )
        if any(new.get(s, set()) != have.get(s, set()) for s in set(new) | set(have)):
            _bump(session, db)
        out.members = len(after)
    return out


def _welcome(session: Session, db: Database, team: str, users: list[str], now: datetime) -> list[str]:
    """A welcome DM to each of `users` not yet welcomed to `team` (nor in its baseline): once per person per team, ever."""
    keys = []
    for user in users:
        done = session.execute(
            db.insert(Welcome)
            .values(team=team, user_id=user, at=now, sent=True)
            .on_conflict_do_nothing(index_elements=["team", "user_id"])
            .returning(Welcome.__table__.c.user_id)
        ).first()
        if done is not None:
            keys += outbox.add(session, db, [welcome_message(team, user)], now)
    return keys


def joined_channel(
    db: Database,
    cfg: ProcessConfig,
    channel: str,
    user: str,
    now: datetime,
    event_id: str | None = None,
    member: bool = True,
) -> list[str]:
    """Someone joined `channel` (Slack's member_joined_channel): for each team whose channel it is, a welcome
    DM (once per person per team, ever), and, where the team's members come from its channel, they are a
    member from now on (a `joined` event), without waiting for the hourly refresh. A delivery whose
    `event_id` was handled before (Slack's retry) does nothing: they may have left since, and a refresh
    recorded it. `member=False`: Slack could not say whether `user` is a person; welcomed only."""
    keys = []
    with db.write() as session:
        _serialise(session, db)
        if event_id and not inbound.first_delivery(session, db, event_id, now):
            return []
        for team in (t for t in cfg.teams if t.channel == channel):
            if team.members_from_channel and member:
                present = set(
                    session.exec(
                        select(TeamMember.source).where(TeamMember.team == team.id, TeamMember.user_id == user)
                    ).all()
                )
                if CHANNEL not in present:
                    session.execute(
                        db.insert(TeamMember)
                        .values(team=team.id, source=CHANNEL, user_id=user, since=now)
                        .on_conflict_do_nothing()
                    )
                    if not present and user not in team.members:
                        session.add(MemberEvent(team=team.id, user_id=user, kind=JOINED, source=CHANNEL, at=now))
                        keys += outbox.add(
                            session, db, events.publish(session, events.MembersChanged(now, frozenset([user]))), now
                        )
                    _bump(session, db)
            keys += _welcome(session, db, team.id, [user], now)
    return keys


# -- the digest's headcount ------------------------------------------------------------------------------


def count_at(db: Database, team_ids: list[str], end: datetime) -> dict[str, int]:
    """Each team's members at `end` (naive UTC), from the join and leave events; teams with no event before
    `end` (never refreshed by then) are left out: their size is not known from events."""
    if not team_ids:
        return {}
    with db.read() as session:
        last = (
            select(MemberEvent.team, MemberEvent.user_id, func.max(MemberEvent.id).label("id"))
            .where(MemberEvent.team.in_(team_ids), MemberEvent.at < end)
            .group_by(MemberEvent.team, MemberEvent.user_id)
            .subquery()
        )
        rows = session.exec(
            select(last.c.team, func.count())
            .select_from(last)
            .join(MemberEvent, and_(MemberEvent.id == last.c.id))
            .where(MemberEvent.kind == JOINED)
            .group_by(last.c.team)
        ).all()
        teams = set(session.exec(select(last.c.team).distinct()).all())
    out = {team: 0 for team in teams}
    out.update({team: n for team, n in rows})
    return out


def syncs(db: Database) -> dict[tuple[str, str], MemberSync]:
    with db.read() as session:
        return {(s.team, s.source): s for s in session.exec(select(MemberSync)).all()}
