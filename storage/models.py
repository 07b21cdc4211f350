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
    ESCALATED = (
        "escalated"  # a level of the escalation path fired (data.level), or someone escalated by hand (data.manual)
    )
    SNOOZED = "snoozed"  # the receiving team put the round's deadline off by one working day


class Handoff(SQLModel, table=True):
    __tablename__ = "handoff"
    __table_args__ = (
        Index("ix_handoff_to_state", "to_team", "state"),
        Index("ix_handoff_from_state", "from_team", "state"),
        Index("ix_handoff_sender_state", "sender", "state"),
        Index("ix_handoff_accepted_at", "accepted_at"),
        Index("ix_handoff_created_teams", "created_at", "from_team", "to_team"),
        Index("uq_handoff_view", "view_id", unique=True),
        Index("ix_handoff_escalation", "next_escalation_at"),
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
    permalink: str | None = Field(
        default=None, max_length=500
    )  # the card's permalink (chat.getPermalink), for the digest's links
    created_at: datetime = Field(sa_type=DateTime())
    updated_at: datetime = Field(sa_type=DateTime())
    accepted_at: datetime | None = Field(default=None, sa_type=DateTime())
    view_id: str | None = Field(
        default=None, max_length=40
    )  # the modal it was submitted from: a resubmitted form makes nothing twice
    # the escalation clock of the current round, derived from the events and the configuration (bot.domain.escalations)
    waiting_since: datetime | None = Field(
        default=None, sa_type=DateTime()
    )  # when it began to wait on reviewers (open) or on its sender
    snoozes: int = 0  # this round's snoozes
    level: int = 0  # the escalation level that last fired this round (0: none)
    next_escalation_at: datetime | None = Field(default=None, sa_type=DateTime())  # when the sweep must look at it next


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


class OutboxStatus:
    PENDING = "pending"  # to be delivered at or after `next_at`
    SENDING = "sending"  # a deliverer holds it until `lease_until` (or died holding it: taken over after)
    SENT = "sent"
    FAILED = "failed"  # Slack refused it for good (`error` says why); an operator may retry it
    UNKNOWN = "unknown"  # it may be in Slack and we could not look: never resent without an operator
    DONE = (SENT, FAILED, UNKNOWN)


class Outbox(SQLModel, table=True):
    """Every message Steward sends after an ack, written in the transaction of the decision that causes it.

    `key` says what it is and makes it unique (`handoff:42:card`, `handoff:42:v3:dm:U0ALICE`); a message is
    rendered when it is delivered (`render` names the renderer, `params` what it reads), so an update
    always shows the latest state. `kind`: `post` (chat.postMessage; a reply in the thread of `anchor`'s
    message when `anchor` is set), `update` (chat.update of `anchor`'s message; one row per message, whose
    `generation` grows each time it is asked for again: several pending updates coalesce into one),
    `upload` (a file into `anchor`'s thread). `check` is true while the outcome of the last attempt is
    unknown (a time-out, a 5xx, a deliverer that died): the message is looked for in Slack before any resend.
    """

    __tablename__ = "outbox"
    __table_args__ = (
        UniqueConstraint("key", name="uq_outbox_key"),
        Index("ix_outbox_due", "status", "next_at"),
        Index("ix_outbox_item", "item"),
    )

    id: int | None = Field(default=None, primary_key=True)
    key: str = Field(max_length=200)
    item: str = Field(max_length=60)  # what it is about: "handoff:42", "fasttrack:7", "digest:2026-10"
    kind: str = Field(max_length=10)
    channel: str = Field(max_length=20)  # a channel id, or a user id for a DM
    anchor: str | None = Field(default=None, max_length=200)
    render: str = Field(max_length=40)
    params: dict = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))
    actor: str | None = Field(default=None, max_length=20)  # who acted: told once if it fails for good
    status: str = Field(max_length=10)
    generation: int = 1
    attempts: int = 0
    check: bool = False
    token: str | None = Field(default=None, max_length=32)
    next_at: datetime = Field(sa_type=DateTime())
    lease_until: datetime | None = Field(default=None, sa_type=DateTime())
    created_at: datetime = Field(sa_type=DateTime())
    updated_at: datetime = Field(sa_type=DateTime())
    sent_at: datetime | None = Field(default=None, sa_type=DateTime())
    result_channel: str | None = Field(default=None, max_length=20)
    result_ts: str | None = Field(default=None, max_length=40)
    error: str | None = Field(default=None, max_length=200)


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
    """A closed month's figures (bot.domain.metrics.to_json), computed once from the events. Deleting rows
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
        Index("uq_fasttrack_view", "view_id", unique=True),
        Index("ix_fasttrack_state", "state", "id"),  # the pending ones, oldest first (the App Home)
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
    view_id: str | None = Field(default=None, max_length=40)
    escalated: bool = False  # undecided after escalate_after_hours: sent on to the backup approvers (once)


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


# -- the weekly satisfaction pulse ------------------------------------------------------------------------
# Who was asked and whether they answered (`pulse_recipient`) is kept apart from what they answered
# (`pulse_answer`, `pulse_comment`), which carries no user id, no time and no insertion order: its key is a
# keyed hash (HMAC with PULSE_SECRET) of the user, the week and the group it counts in, and the answer is
# sealed with a pad derived from the same secret. Without the secret the database cannot tell whose
# answer a row is, nor what it says (bot/pulse.py).


class PulseRecipient(SQLModel, table=True):
    """One person asked one week (or, `state = skipped`, a week whose window passed while the clock was
    down). `teams`: the teams they counted in that week."""

    __tablename__ = "pulse_recipient"
    __table_args__ = (Index("ix_pulse_recipient_remind", "state", "reminded", "remind_at"),)

    week: str = Field(primary_key=True, max_length=8)  # ISO week, "2026-W48"
    user: str = Field(primary_key=True, max_length=20)
    teams: list[str] = Field(default_factory=list, sa_column=Column(JSON, nullable=False))
    tz: str = Field(max_length=64)
    due_at: datetime = Field(sa_type=DateTime())  # the week's send time in their time zone, in UTC
    closes_at: datetime = Field(sa_type=DateTime())
    remind_at: datetime | None = Field(default=None, sa_type=DateTime())
    state: str = Field(max_length=10)  # asked | skipped
    reminded: bool = False
    answered: bool = False
    opted_out: bool = False  # paused or stopped this week before answering: counted apart


class PulseAnswer(SQLModel, table=True):
    """What one person answered one week, counted in one group (a team id, or "*" for the organisation):
    a person in two teams has three unlinkable rows. No rowid: nothing records the order of answers."""

    __tablename__ = "pulse_answer"
    __table_args__ = (Index("ix_pulse_answer_week", "week", "scope"), {"sqlite_with_rowid": False})

    key: str = Field(primary_key=True, max_length=32)
    week: str = Field(max_length=8)
    scope: str = Field(max_length=40)
    sealed: int
    mixed: bool = False  # rewritten with the whole week since written (bot/pulse.py mix)


class PulseComment(SQLModel, table=True):
    """An anonymous comment, per group like answers; shown in the order of its key (not of submission)."""

    __tablename__ = "pulse_comment"
    __table_args__ = (Index("ix_pulse_comment_week", "week", "scope"), {"sqlite_with_rowid": False})

    key: str = Field(primary_key=True, max_length=32)
    week: str = Field(max_length=8)
    scope: str = Field(max_length=40)
    text: str = Field(sa_column=Column(Text, nullable=False))
    mixed: bool = False  # rewritten with the whole week since written (bot/pulse.py mix)


class PulseMonth(SQLModel, table=True):
    """A closed month's satisfaction as published, frozen the first time it is read once final: the figures
    shown (`figures`, with what was held back and why) and the groups they were protected against (`groups`:
    each group's people asked that month). Never recomputed, whatever the configuration becomes."""

    __tablename__ = "pulse_month"

    period: str = Field(primary_key=True, max_length=7)  # YYYY-MM
    frozen_at: datetime = Field(sa_type=DateTime())
    figures: dict = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))
    groups: dict = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))


class PulseOptout(SQLModel, table=True):
    """Someone who paused (until a date) or stopped (`until` empty) the weekly survey."""

    __tablename__ = "pulse_optout"

    user: str = Field(primary_key=True, max_length=20)
    until: datetime | None = Field(default=None, sa_type=DateTime())
    since: datetime = Field(sa_type=DateTime())


class MemberTz(SQLModel, table=True):
    """Each person's time zone as their Slack profile gives it (users.list), for sending at their 10:00."""

    __tablename__ = "member_tz"

    user: str = Field(primary_key=True, max_length=20)
    tz: str = Field(max_length=64)
    updated_at: datetime = Field(sa_type=DateTime())


class MatrixReviewEvent(SQLModel, table=True):
    """The quarterly decision-rights matrix review, append-only: a person who sets a standard confirmed their
    rows for a quarter (`confirmed`, at most once: `once` is "confirmed" and unique per quarter and person),
    or proposed a change (`proposed`, three at most: `once` is "proposed:1" … "proposed:3"; empty before that
    limit). `elements`: the rows they reviewed."""

    __tablename__ = "matrix_review_event"
    __table_args__ = (
        UniqueConstraint("quarter", "user", "once", name="uq_matrix_review_once"),
        Index("ix_matrix_review_quarter", "quarter", "kind"),
    )

    id: int | None = Field(default=None, primary_key=True)
    quarter: str = Field(max_length=7)  # "2026-Q4"
    user: str = Field(max_length=20)
    kind: str = Field(max_length=10)  # confirmed | proposed
    once: str | None = Field(default=None, max_length=10)
    at: datetime = Field(sa_type=DateTime())
    elements: list[str] = Field(default_factory=list, sa_column=Column(JSON, nullable=False))
    text: str | None = Field(default=None, sa_column=Column(Text))  # a proposal's words
    channel: str | None = Field(default=None, max_length=20)  # where a proposal was posted


# -- teams in step with Slack (bot/members.py) -----------------------------------------------------------
# A team's members come from its listed ids (`config`), its user group (`usergroup`) and its channel
# (`channel`). `team_member` holds who each source gave at its last refresh; `member_event` is the
# append-only log of people joining and leaving a team (the union of its sources); `member_sync` what each
# source was read from and when (its first read is a baseline: no welcomes); `member_version` a stamp
# every change renews, so each process re-reads the members only when they changed; `welcome` the one
# welcome DM per person per team, ever.


class TeamMember(SQLModel, table=True):
    __tablename__ = "team_member"

    team: str = Field(primary_key=True, max_length=40)
    source: str = Field(primary_key=True, max_length=10)  # config | usergroup | channel
    user_id: str = Field(primary_key=True, max_length=20)
    since: datetime = Field(sa_type=DateTime())


class MemberEvent(SQLModel, table=True):
    __tablename__ = "member_event"
    __table_args__ = (Index("ix_member_event_team_at", "team", "at"),)

    id: int | None = Field(default=None, primary_key=True)
    team: str = Field(max_length=40)
    user_id: str = Field(max_length=20)
    kind: str = Field(max_length=8)  # joined | left
    source: str = Field(max_length=10)  # what made it happen: config | usergroup | channel
    baseline: bool = False  # recorded at a source's first read (already a member then): no welcome
    at: datetime = Field(sa_type=DateTime())


class MemberSync(SQLModel, table=True):
    __tablename__ = "member_sync"

    team: str = Field(primary_key=True, max_length=40)
    source: str = Field(primary_key=True, max_length=10)
    ref: str = Field(default="", max_length=20)  # the user group or channel id read
    synced_at: datetime = Field(sa_type=DateTime())  # the last read Slack answered
    error: str | None = Field(default=None, max_length=200)  # the last read's failure, if it failed


class MemberVersion(SQLModel, table=True):
    __tablename__ = "member_version"

    id: int = Field(default=1, primary_key=True)
    stamp: str = Field(max_length=32)  # random, new at each change (never repeats, even after the rows are deleted)


class Welcome(SQLModel, table=True):
    __tablename__ = "welcome"

    team: str = Field(primary_key=True, max_length=40)
    user_id: str = Field(primary_key=True, max_length=20)
    at: datetime = Field(sa_type=DateTime())
    sent: bool = True  # False: a member of the baseline, never welcomed


class HomeView(SQLModel, table=True):
    """When each person last opened Steward's App Home: a change in what waits for them re-publishes the
    Home of those who opened it in the last 30 days (`bot.domain.home`)."""

    __tablename__ = "home_view"

    user: str = Field(primary_key=True, max_length=20)
    opened_at: datetime = Field(sa_type=DateTime())


class SlackEvent(SQLModel, table=True):
    """Events API deliveries already handled (`event_id`), so a duplicate or a retry does nothing twice.
    Pruned after a day (Slack retries within minutes)."""

    __tablename__ = "slack_event"
    __table_args__ = (Index("ix_slack_event_seen", "seen_at"),)

    event_id: str = Field(primary_key=True, max_length=40)
    seen_at: datetime = Field(sa_type=DateTime())
