"""Domain events: what a decision records that other parts of Steward react to, without the rule that
decided calling them (rules never call upward).

A rule builds an event and hands it to `publish(session, event)` inside its own write transaction. Each
subscriber registered for the event's type runs there, in that transaction, and returns the outbox
messages it causes (a Home to publish again, a notice to a gate's owner); the rule writes them with its
own, so they are atomic with the decision. Subscribers only read and return messages: rendering and
sending happen when the outbox delivers, never in the request's thread.

Subscribers are registered once, at start, by `bot.entry.bootstrap.wire()`: the one place that says who
listens to what. A process that publishes before it was wired fails loudly (`NotWired`) instead of
silently dropping what its subscribers would have written; the entry points check `bus.wired` as they start.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime

from sqlmodel import Session

from bot.domain.core.outbox import Message


@dataclass(frozen=True)
class Event:
    at: datetime  # when it happened (the decision's `now`)


@dataclass(frozen=True)
class HandoffChanged(Event):
    """A handoff was created, accepted, sent back, resubmitted, cancelled or escalated."""

    cfg: object  # bot.domain.core.process.ProcessConfig: the configuration the decision used
    handoff: object  # storage.models.Handoff, as the decision left it


@dataclass(frozen=True)
class FastTrackChanged(Event):
    """A fast-track request was asked, decided or re-routed to other deciders."""

    request: object  # storage.models.FastTrack, as the decision left it


@dataclass(frozen=True)
class MembersChanged(Event):
    """These people joined or left a team (from Slack, or the configuration)."""

    people: frozenset[str]


Subscriber = Callable[[Session, Event], Iterable[Message]]


class NotWired(RuntimeError):
    """An event was published (or a process started) before `bot.entry.bootstrap.wire()` ran."""


class Bus:
    def __init__(self) -> None:
        self._subscribers: dict[type[Event], list[Subscriber]] = {}
        self.wired = False

    def subscribe(self, kind: type[Event], subscriber: Subscriber) -> None:
        if subscriber not in self._subscribers.setdefault(kind, []):
            self._subscribers[kind].append(subscriber)

    def subscribers(self, kind: type[Event]) -> list[Subscriber]:
        return list(self._subscribers.get(kind, ()))

    def seal(self) -> None:
        """Wiring is done: events may be published."""
        self.wired = True

    def require_wired(self, who: str) -> None:
        if not self.wired:
            raise NotWired(f"{who}: the domain events have no subscribers: call bot.entry.bootstrap.wire() first")

    def publish(self, session: Session, event: Event) -> list[Message]:
        """Run every subscriber of `event` in the caller's transaction; the messages they cause."""
        self.require_wired(type(event).__name__)
        out: list[Message] = []
        for subscriber in self._subscribers.get(type(event), ()):
            out.extend(subscriber(session, event))
        return out


bus = Bus()  # the process's one bus; wired by bot.entry.bootstrap.wire()


def publish(session: Session, event: Event) -> list[Message]:
    return bus.publish(session, event)
