"""What every governed item has in common (handoffs and fast-track requests now; escalations and pulses
next): a row that is the projection of an append-only event log, transitions that are conditional on the
row's version so concurrent clicks change it once, and the outbox messages each decision causes, written
in the decision's transaction. No Slack in here.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime

from sqlalchemy import update
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, SQLModel, select

from bot.domain.core import outbox
from bot.domain.core.outbox import Message
from storage.db import Database


class RuleError(Exception):
    """A rule said no. The message is written for the person who asked; `field` names the form field;
    `people` are the user ids the message mentions as `<@ID>` (shown as mentions, nothing else is)."""

    def __init__(self, message: str, field: str | None = None, people: tuple[str, ...] | list[str] = ()):
        super().__init__(message)
        self.field = field
        self.people = tuple(people)


class NotAllowed(RuleError):
    pass


class NotFound(RuleError):
    pass


class LostRace(Exception):
    """Another transaction changed the item between our read and our update."""


@dataclass
class Outcome:
    item: SQLModel
    changed: bool  # False: nothing to do (a click after the decision, or one that lost a race)
    event: SQLModel | None = None
    keys: list[str] = field(default_factory=list)  # the outbox rows written with the decision


@dataclass(frozen=True)
class Kind:
    """An item type: its table, its event table and the event's column naming the item."""

    model: type[SQLModel]
    event_model: type[SQLModel]
    fk: str
    noun: str  # "handoff", "fast-track request": for "There is no handoff #12."

    def get(self, db: Database, item_id: int) -> SQLModel:
        with db.read() as session:
            row = session.get(self.model, item_id)
        if row is None:
            raise NotFound(f"There is no {self.noun} #{item_id}.")
        return row

    def history(self, db: Database, item_id: int) -> list[SQLModel]:
        with db.read() as session:
            return self.events(session, item_id)

    def events(self, session: Session, item_id: int) -> list[SQLModel]:
        column = getattr(self.event_model, self.fk)
        return list(session.exec(select(self.event_model).where(column == item_id).order_by(self.event_model.seq)))

    def event(self, item: SQLModel, kind: str, actor: str, at: datetime, reason: str | None = None, **data) -> SQLModel:
        """The event that takes `item` to its current version (its `seq` is the new version)."""
        extra = {"round": item.round} if "round" in self.event_model.model_fields else {}
        return self.event_model(
            **{self.fk: item.id}, seq=item.version, kind=kind, actor=actor, at=at, reason=reason, data=data, **extra
        )

    def record(
        self,
        session: Session,
        db: Database,
        item: SQLModel,
        event: SQLModel,
        messages: Iterable[Message],
        now: datetime,
    ) -> list[str]:
        """Append the event and write the messages it causes, in the caller's transaction."""
        session.add(event)
        session.flush()
        return outbox.add(session, db, messages, now)

    def attempt(self, db: Database, item_id: int, step: Callable[[Session], Outcome], tries: int = 3) -> Outcome:
        """Run `step` in a write transaction, again on a fresh read when it lost a race to a change that
        did not decide the item (a reminder, a snooze): `step` checks the state each time, so a decision
        is never applied twice. Still losing after `tries`: nothing changed."""
        for _ in range(tries):
            try:
                with db.write() as session:
                    return step(session)
            except LostRace:
                continue
        return Outcome(self.get(db, item_id), changed=False)

    def create_once(
        self,
        db: Database,
        view_id: str | None,
        create: Callable[[Session], Outcome],
        found: Callable[[Session, SQLModel], Outcome],
    ) -> Outcome:
        """`create` in a write transaction, once per submitted view: a view already saved gives
        `found(session, row)`. Two deliveries of one view at the same moment: the one the unique index
        refuses finds the other's on its second try."""
        for attempt in range(2):
            try:
                with db.write() as session:
                    if view_id:
                        before = session.exec(select(self.model).where(self.model.view_id == view_id)).first()
                        if before is not None:
                            return found(session, before)
                    return create(session)
            except IntegrityError:
                if not view_id or attempt:
                    raise
        raise AssertionError("unreachable")

    def transition(
        self,
        session: Session,
        db: Database,
        item: SQLModel,
        values: dict,
        event: Callable[[SQLModel], SQLModel],
        messages: Callable[[SQLModel, SQLModel], Iterable[Message]],
        now: datetime,
        where: Iterable = (),
    ) -> Outcome:
        """Apply `values` (and the next version) to `item` if nobody changed it since it was read, append
        the event, write the messages. Raises LostRace when another transaction got there first."""
        values = dict(values, version=item.version + 1, updated_at=now)
        model = self.model
        result = session.execute(
            update(model).where(model.id == item.id, model.version == item.version, *where).values(**values)
        )
        if result.rowcount != 1:
            raise LostRace
        for key, value in values.items():
            setattr(item, key, value)
        ev = event(item)
        keys = self.record(session, db, item, ev, messages(item, ev), now)
        return Outcome(item, changed=True, event=ev, keys=keys)
