"""Tables. Every decision is an append-only event; `handoff` is the current-state projection of them.

Conventions: datetimes are naive UTC; `handoff.version` equals the `seq` of its newest event, so a
transition is a conditional UPDATE on (id, version) and two clicks can never both win.
"""

from __future__ import annotations

from datetime import date, datetime

from sqlalchemy import JSON, Column, DateTime, Index, Text, UniqueConstraint
from sqlmodel import Field, SQLModel


class HandoffState:
    OPEN = "open"  # submitted or resubmitted, waiting for the receiving team
    REWORK = "rework_requested"
    CLARIFICATION = "clarification_requested"
    ACCEPTED = "accepted"
    CANCELLED = "cancelled"

    WAITING_FOR_SENDER = (REWORK, CLARIFICATION)
    ACTIVE = (OPEN, REWORK, CLARIFICATION)
    FINAL = (ACCEPTED, CANCELLED)


class EventKind:
    CREATED = "created"
    REWORK = "rework_requested"
    CLARIFICATION = "clarification_requested"
    RESUBMITTED = "resubmitted"
    ACCEPTED = "accepted"
    CANCELLED = "cancelled"


class Handoff(SQLModel, table=True):
    __tablename__ = "handoff"
    __table_args__ = (
        Index("ix_handoff_to_state", "to_team", "state"),
        Index("ix_handoff_from_state", "from_team", "state"),
        Index("ix_handoff_sender_state", "sender", "state"),
        Index("ix_handoff_accepted_at", "accepted_at"),
        Index("ix_handoff_created_teams", "created_at", "from_team", "to_team"),
    )

    id: int | None = Field(default=None, primary_key=True)
    from_team: str = Field(max_length=40)
    to_team: str = Field(max_length=40)
    sender: str = Field(max_length=20)
    title: str = Field(max_length=150)
    link: str | None = Field(default=None, max_length=500)
    due_date: date | None = None
    notes: str | None = Field(default=None, sa_column=Column(Text))
    criteria: list[str] = Field(default_factory=list, sa_column=Column(JSON, nullable=False))
    criteria_met: list[str] = Field(default_factory=list, sa_column=Column(JSON, nullable=False))
    state: str = Field(max_length=30)
    round: int = 1
    version: int = 1
    channel: str | None = Field(default=None, max_length=20)
    message_ts: str | None = Field(default=None, max_length=40)
    created_at: datetime = Field(sa_type=DateTime())
    updated_at: datetime = Field(sa_type=DateTime())
    accepted_at: datetime | None = Field(default=None, sa_type=DateTime())


class HandoffEvent(SQLModel, table=True):
    __tablename__ = "handoff_event"
    __table_args__ = (
        UniqueConstraint("handoff_id", "seq", name="uq_handoff_event_seq"),
        Index("ix_handoff_event_kind_at", "kind", "at"),
    )

    id: int | None = Field(default=None, primary_key=True)
    handoff_id: int = Field(foreign_key="handoff.id")
    seq: int
    kind: str = Field(max_length=30)
    actor: str = Field(max_length=20)
    at: datetime = Field(sa_type=DateTime())
    round: int
    reason: str | None = Field(default=None, sa_column=Column(Text))
    data: dict = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))


class LedgerStatus:
    CLAIMED = "claimed"  # a run is sending it now (or died doing so: retried once the lease has passed)
    SENT = "sent"
    FAILED = "failed"  # Slack refused it; `error` says why; retried by a later run


class JobLedger(SQLModel, table=True):
    """One row per side effect of a scheduled job, claimed before it is sent: the unique key
    (job, period, target) is what makes a rerun, a restart or a second clock post nothing twice."""

    __tablename__ = "job_ledger"
    __table_args__ = (
        UniqueConstraint("job", "period", "target", name="uq_job_ledger_key"),
        Index("ix_job_ledger_status", "status", "updated_at"),
    )

    id: int | None = Field(default=None, primary_key=True)
    job: str = Field(max_length=40)
    period: str = Field(max_length=20)
    target: str = Field(max_length=80)
    status: str = Field(max_length=10)
    token: str = Field(max_length=32)  # the claiming run's random token: only it may mark the row
    attempts: int = 1
    channel: str | None = Field(default=None, max_length=20)
    ref: str | None = Field(default=None, max_length=40)  # Slack's message ts, or a file id
    error: str | None = Field(default=None, max_length=200)
    claimed_at: datetime = Field(sa_type=DateTime())
    updated_at: datetime = Field(sa_type=DateTime())


class Initiative(SQLModel, table=True):
    """A team's one improvement initiative, shared for a month's sync. Append-only: sharing again adds a
    row and the newest one counts. The baseline is the target metric in the last full month before it
    was shared, so later digests can say how the metric moved since."""

    __tablename__ = "initiative"
    __table_args__ = (Index("ix_initiative_team_period", "team", "period"),)

    id: int | None = Field(default=None, primary_key=True)
    team: str = Field(max_length=40)
    period: str = Field(max_length=7)  # YYYY-MM: the digest it is presented in
    text: str = Field(max_length=300)
    metric: str = Field(max_length=30)
    owner: str = Field(max_length=20)
    set_by: str = Field(max_length=20)
    set_at: datetime = Field(sa_type=DateTime())
    baseline_period: str = Field(max_length=7)
    baseline: float | None = None


class Headcount(SQLModel, table=True):
    """Team sizes as they were when a month's digest was posted: the 'steady headcount' of the signals."""

    __tablename__ = "headcount"

    period: str = Field(primary_key=True, max_length=7)
    team: str = Field(primary_key=True, max_length=40)
    members: int


class MonthRollup(SQLModel, table=True):
    """A closed month's figures (storage.metrics.to_json), computed once from the events. Deleting rows
    is always safe: they are computed again from the events when next needed."""

    __tablename__ = "month_rollup"

    period: str = Field(primary_key=True, max_length=7)
    start: datetime = Field(sa_type=DateTime())  # the month in UTC, as the organisation's time zone made it
    end: datetime = Field(sa_type=DateTime())
    computed_at: datetime = Field(sa_type=DateTime())
    data: dict = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))


class FastTrackState:
    PENDING = "pending"
    APPROVED = "approved"
    DENIED = "denied"


class FastTrackEventKind:
    REQUESTED = "requested"
    REROUTED = "rerouted"  # the budget ran out before a regular approver decided: now for the backups
    APPROVED = "approved"
    DENIED = "denied"


class FastTrack(SQLModel, table=True):
    """A request to skip a gate, and its decision: the projection of `fasttrack_event`.
    `deciders` are the people who may decide it (the matrix's granters, or the backup approvers when it
    is over budget), fixed when it was routed; the requester is never among them."""

    __tablename__ = "fasttrack"
    __table_args__ = (
        Index("ix_fasttrack_team_state", "team", "state"),
        Index("ix_fasttrack_requester", "requester", "state"),
        Index("ix_fasttrack_decided_at", "decided_at"),
        Index("ix_fasttrack_created_at", "created_at"),
    )

    id: int | None = Field(default=None, primary_key=True)
    team: str = Field(max_length=40)
    requester: str = Field(max_length=20)
    element: str = Field(max_length=75)
    reason: str = Field(max_length=75)
    what: str = Field(max_length=300)
    justification: str = Field(sa_column=Column(Text, nullable=False))
    handoff_id: int | None = None
    needed_by: date | None = None
    state: str = Field(max_length=10)
    over_budget: bool = False
    deciders: list[str] = Field(default_factory=list, sa_column=Column(JSON, nullable=False))
    decided_by: str | None = Field(default=None, max_length=20)
    decided_at: datetime | None = Field(default=None, sa_type=DateTime())
    decision_reason: str | None = Field(default=None, sa_column=Column(Text))
    version: int = 1
    created_at: datetime = Field(sa_type=DateTime())
    updated_at: datetime = Field(sa_type=DateTime())


class FastTrackEvent(SQLModel, table=True):
    """The audit trail: who asked, who decided, under which matrix entry, the budget position then."""

    __tablename__ = "fasttrack_event"
    __table_args__ = (
        UniqueConstraint("request_id", "seq", name="uq_fasttrack_event_seq"),
        Index("ix_fasttrack_event_kind_at", "kind", "at"),
    )

    id: int | None = Field(default=None, primary_key=True)
    request_id: int = Field(foreign_key="fasttrack.id")
    seq: int
    kind: str = Field(max_length=20)
    actor: str = Field(max_length=20)
    at: datetime = Field(sa_type=DateTime())
    reason: str | None = Field(default=None, sa_column=Column(Text))
    data: dict = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))


class FastTrackCard(SQLModel, table=True):
    """A message showing a request to a decider (a DM, or the one card in [fasttrack].channel, whose
    `user` is empty), so every card can be updated in place when the request is decided."""

    __tablename__ = "fasttrack_card"
    __table_args__ = (UniqueConstraint("request_id", "user", name="uq_fasttrack_card"),)

    id: int | None = Field(default=None, primary_key=True)
    request_id: int = Field(foreign_key="fasttrack.id")
    user: str = Field(max_length=20)
    channel: str = Field(max_length=20)
    ts: str = Field(max_length=40)
