"""The organisation's process configuration: teams, boundaries and their handoff criteria.

Written by process owners in TOML and reviewed like code. `load_process()` validates the whole file and
reports every problem at once, each naming its key (`boundaries[0].to: no team 'nowhere'`). Later
features add their own tables ([fasttrack], [[rights]], [pulse], [schedule]) as further fields of
`ProcessConfig`; unknown keys are refused so a typo never passes silently.
"""

from __future__ import annotations

import re
import tomllib
from dataclasses import dataclass
from datetime import UTC, date, time
from pathlib import Path
from typing import Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from bot.domain.core.worktime import DAYS, WorkTime

Model = Literal["centralized", "decentralized", "hybrid"]

USER_ID = r"^[UW][A-Z0-9]{2,}$"
USERGROUP_ID = r"^S[A-Z0-9]{2,}$"
CHANNEL_ID = r"^[CG][A-Z0-9]{2,}$"
TEAM_ID = r"^[a-z0-9][a-z0-9_-]{0,39}$"
OPTIONAL_CHANNEL_ID = r"^$|" + CHANNEL_ID
SNOOZES = 2  # a round's snoozes at most (`sla.MAX_SNOOZES`), each putting its levels off by a working day


_PATTERN_NAMES = {
    USER_ID: "a Slack user id (U…)",
    CHANNEL_ID: "a Slack channel id (C…)",
    TEAM_ID: "a team id (lower case letters, digits, - and _)",
    OPTIONAL_CHANNEL_ID: "a Slack channel id (C…) or empty",
    USERGROUP_ID: "a Slack user group id (S…)",
}


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


def _user_ids(value: tuple[str, ...]) -> tuple[str, ...]:
    bad = [m for m in value if not re.match(USER_ID, m)]
    if bad:
        raise ValueError(f"not Slack user ids: {', '.join(map(repr, bad))}")
    return value


class Organization(_Strict):
    name: str = Field(min_length=1, max_length=80)
    timezone: str = "UTC"
    digest_channel: str = Field(pattern=CHANNEL_ID)
    model: Model = "hybrid"
    # working time, in the organisation's time zone: SLAs and escalation waits count working hours only
    working_days: tuple[str, ...] = ("mon", "tue", "wed", "thu", "fri")
    working_hours: str = "09:00-17:00"
    holidays: tuple[date, ...] = Field(default=(), max_length=1000)
    escalation_contact: str | None = Field(default=None, pattern=USER_ID)  # the last level of every default path
    # who a channel's members may be: guests (Slack's restricted and ultra-restricted accounts) and people of
    # another workspace (Slack Connect) are left out unless asked for (they would answer the pulse, accept
    # handoffs, decide fast-tracks)
    include_guests: bool = False
    include_external: bool = False

    @field_validator("working_days")
    @classmethod
    def _days(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        value = tuple(d.strip().lower()[:3] for d in value)
        if not value or any(d not in DAYS for d in value):
            raise ValueError(f"name one or more of {', '.join(DAYS)}")
        return value

    @field_validator("working_hours")
    @classmethod
    def _hours(cls, value: str) -> str:
        match = re.fullmatch(r"\s*(\d{1,2}):(\d{2})\s*-\s*(\d{1,2}):(\d{2})\s*", value)
        if not match:
            raise ValueError("write it as HH:MM-HH:MM, e.g. 09:00-17:00")
        h1, m1, h2, m2 = map(int, match.groups())
        if not (h1 < 24 and h2 <= 24 and m1 < 60 and m2 < 60) or (h2, m2) > (24, 0) or (h1, m1) >= (h2, m2):
            raise ValueError("the day must start before it ends, within 00:00-24:00")
        return f"{h1:02d}:{m1:02d}-{h2:02d}:{m2:02d}"

    @property
    def work_start(self) -> time:
        return time(*map(int, self.working_hours.split("-")[0].split(":")))

    @property
    def work_end(self) -> time:
        h, m = map(int, self.working_hours.split("-")[1].split(":"))
        return time.max if h == 24 else time(h, m)

    @field_validator("timezone")
    @classmethod
    def _tz(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"unknown time zone '{value}'") from None
        return value

    @property
    def tz(self) -> ZoneInfo:
        return ZoneInfo(self.timezone)


class Team(_Strict):
    id: str = Field(pattern=TEAM_ID)
    name: str = Field(min_length=1, max_length=60)
    channel: str = Field(pattern=CHANNEL_ID)
    members: tuple[str, ...] = Field(default=(), max_length=500)  # listed by hand; complemented by the two below
    usergroup: str | None = Field(
        default=None, pattern=USERGROUP_ID
    )  # members from this Slack user group (refreshed hourly)
    members_from_channel: bool = False  # members from the team's channel (refreshed hourly, and as people join it)
    reviewers: str | None = Field(default=None, pattern=USERGROUP_ID)  # mentioned on the team's cards and reminders
    lead: str | None = Field(default=None, pattern=USER_ID)  # named in the digest as who acts on the team's highlights

    @field_validator("members")
    @classmethod
    def _members(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        return _user_ids(value)

    @property
    def synced(self) -> bool:
        """Whether some of its members come from Slack (a user group, its channel)."""
        return bool(self.usergroup or self.members_from_channel)

    def sources(self) -> dict[str, str]:
        """Where its members come from: `config` (the listed ids), `usergroup`, `channel`, each with what it names."""
        out = {"config": ""}
        if self.usergroup:
            out["usergroup"] = self.usergroup
        if self.members_from_channel:
            out["channel"] = self.channel
        return out

    def source_text(self) -> str:
        """`1 member`, `2 members + user group S0QA + channel C0QA's members`: where its members come from."""
        n = len(self.members)
        text = f"{n} member{'' if n == 1 else 's'}" + (" listed" if self.synced else "")
        if self.usergroup:
            text += f" + user group {self.usergroup}"
        if self.members_from_channel:
            text += f" + channel {self.channel}'s members"
        return text


class Level(_Strict):
    """One level of a boundary's escalation path: after a multiple of the SLA (`after_sla`) or a number of
    working hours (`after_hours`) without an answer, tell `notify`: "team" (a reminder in the card's
    thread), "steward", "contact" (`organization.escalation_contact`), or user / user group ids."""

    after_sla: float | None = Field(default=None, gt=0, le=20)
    after_hours: float | None = Field(default=None, gt=0, le=24 * 90)
    notify: tuple[str, ...]

    @field_validator("notify", mode="before")
    @classmethod
    def _notify(cls, value):
        if not isinstance(value, str | list | tuple):
            raise ValueError('a list of whom to notify, e.g. ["team", "steward"]')
        value = (value,) if isinstance(value, str) else tuple(value)
        for who in value:
            if not isinstance(who, str) or (
                who not in ("team", "steward", "contact")
                and not re.match(USER_ID, who)
                and not re.match(USERGROUP_ID, who)
            ):
                raise ValueError(f"{who!r} is not team, steward, contact, a user id (U…) or a user group id (S…)")
        if not value:
            raise ValueError("name whom to notify")
        return value

    def hours(self, sla_hours: float) -> float:
        return self.after_hours if self.after_hours is not None else (self.after_sla or 1) * sla_hours


class Boundary(_Strict):
    from_team: str = Field(alias="from")
    to_team: str = Field(alias="to")
    steward: str = Field(pattern=USER_ID)
    sla_hours: int = Field(default=48, gt=0, le=24 * 90)
    model: Model | None = None
    criteria: tuple[str, ...] = Field(default=(), max_length=10)
    escalation: tuple[Level, ...] | None = Field(default=None, min_length=1, max_length=5)

    @field_validator("escalation")
    @classmethod
    def _levels(cls, value):
        if value is None:
            return value
        for level in value:
            if (level.after_sla is None) == (level.after_hours is None):
                raise ValueError("each level says either after_sla or after_hours")
        return value

    @field_validator("criteria")
    @classmethod
    def _criteria(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        for item in value:
            if not item.strip():
                raise ValueError("a criterion is empty")
            if len(item) > 70:
                raise ValueError(f"criterion longer than 70 characters: {item[:30]!r}…")
        if len(set(value)) != len(value):
            raise ValueError("criteria repeat")
        return value


class Schedule(_Strict):
    """When the clock acts, in the organisation's time zone."""

    # crontab fields (minute hour day month day-of-week), all of which must match (APScheduler): this
    # default fires on days 1-3 that are weekdays, so the first firing is the month's first weekday.
    digest: str = "0 9 1-3 * mon-fri"
    initiative_prompt_days: int = Field(default=3, ge=1, le=14)  # prompt teams this many days before
    catch_up_days: int = Field(default=7, ge=0, le=27)  # post a missed digest up to this late
    tick_minutes: int = Field(default=5, ge=1, le=60)  # how often the clock looks for due work

    @field_validator("digest")
    @classmethod
    def _cron(cls, value: str) -> str:
        from datetime import datetime, timedelta

        from apscheduler.triggers.cron import CronTrigger

        try:
            trigger = CronTrigger.from_crontab(value, timezone=UTC)
        except ValueError as exc:
            raise ValueError(f"not a crontab expression (minute hour day month day-of-week): {exc}") from None
        for month in range(1, 13):  # it must fire in the first four weeks of every month
            start = datetime(2027, month, 1, tzinfo=UTC)
            fire = trigger.get_next_fire_time(None, start)
            if fire is None or fire - start >= timedelta(days=28):
                raise ValueError(f"'{value}' does not fire in the first 28 days of every month")
        return value


class Fasttrack(_Strict):
    """Fast-track exceptions: the budget, the default and backup approvers, the reasons offered."""

    budget_percent: float = Field(default=10, ge=0, le=100)  # of a team's items (handoffs sent) in the month
    approvers: tuple[str, ...] = ()  # default granters where a matrix element names none
    backup_approvers: tuple[str, ...] = ()  # decide over-budget requests and escalated ones
    escalate_after_hours: int = Field(default=24, gt=0, le=24 * 30)
    reasons: tuple[str, ...] = Field(
        default=("Regulatory deadline", "Customer escalation", "Security fix", "Other"), min_length=1, max_length=20
    )
    channel: str = Field(default="", pattern=OPTIONAL_CHANNEL_ID)  # post approval cards here instead of DMs

    _approvers = field_validator("approvers", "backup_approvers")(classmethod(lambda cls, v: _user_ids(v)))

    @field_validator("reasons")
    @classmethod
    def _reasons(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        if any(not r.strip() or len(r) > 75 for r in value):
            raise ValueError("each reason is 1 to 75 characters")
        if len(set(value)) != len(value):
            raise ValueError("reasons repeat")
        return value


class Right(_Strict):
    """One row of the decision-rights matrix: for a process element (a gate), who sets the standard,
    who may grant an exception to it, who owns its execution. Each is a team id or a user id."""

    element: str = Field(min_length=1, max_length=75)
    sets_standard: str
    grants_exceptions: tuple[str, ...] = ()
    owns_execution: str


PULSE_QUESTION = "Our processes help us do our best work"


class Pulse(_Strict):
    """The weekly satisfaction pulse: one survey DM a week to every member of the pulse's teams, at
    `send_at` in each member's own time zone (their Slack profile's, else the organisation's)."""

    enabled: bool = True
    question: str = Field(default=PULSE_QUESTION, min_length=1, max_length=150)
    send_at: str = "mon 10:00"  # weekday and local time
    min_group: int = Field(default=5, ge=3, le=10)  # figures only for groups with at least this many answering
    remind_after_days: int = Field(default=2, ge=0, le=6)  # one reminder to non-responders (0: none)
    open_days: int = Field(default=5, ge=1, le=6)  # then the week closes
    teams: tuple[str, ...] = ()  # team ids; empty: every team

    @field_validator("send_at")
    @classmethod
    def _send_at(cls, value: str) -> str:
        match = re.fullmatch(r"\s*([A-Za-z]{3})[a-z]*\s+(\d{1,2}):(\d{2})\s*", value)
        day = match.group(1).lower() if match else ""
        if not match or day not in DAYS or int(match.group(2)) > 23 or int(match.group(3)) > 59:
            raise ValueError("write it as a weekday and a time, e.g. 'mon 10:00'")
        return f"{day} {int(match.group(2)):02d}:{match.group(3)}"

    @property
    def weekday(self) -> int:
        return DAYS.index(self.send_at[:3])

    @property
    def at(self) -> time:
        return time(*map(int, self.send_at[4:].split(":")))


class ProcessConfig(_Strict):
    organization: Organization
    teams: tuple[Team, ...] = Field(min_length=1)
    boundaries: tuple[Boundary, ...] = ()
    schedule: Schedule = Schedule()
    fasttrack: Fasttrack = Fasttrack()
    rights: tuple[Right, ...] = Field(default=(), max_length=100)
    pulse: Pulse | None = None

    @property
    def pulse_on(self) -> bool:
        return self.pulse is not None and self.pulse.enabled

    def pulse_teams(self) -> list[Team]:
        if self.pulse is None:
            return []
        return [t for t in self.teams if not self.pulse.teams or t.id in self.pulse.teams]

    # -- lookups used by the domain ------------------------------------------------------------
    def team(self, team_id: str) -> Team | None:
        return next((t for t in self.teams if t.id == team_id), None)

    def find_team(self, text: str) -> Team | None:
        """A team by id or name, any case."""
        wanted = text.strip().casefold()
        return next((t for t in self.teams if wanted in (t.id.casefold(), t.name.casefold())), None)

    def teams_of(self, user_id: str) -> list[Team]:
        return [t for t in self.teams if user_id in t.members]

    def not_member(self, user_id: str, team_id: str | None) -> str | None:
        """Why `user_id` cannot act for `team_id` (a form's "your team"), or None when they can."""
        mine = self.teams_of(user_id)
        if not mine:
            return "You are not a member of any team in Steward's process configuration."
        if team_id not in [t.id for t in mine]:
            return "Choose one of your teams."
        return None

    def boundary(self, from_team: str, to_team: str) -> Boundary | None:
        return next((b for b in self.boundaries if b.from_team == from_team and b.to_team == to_team), None)

    def boundaries_from(self, team_ids: list[str]) -> list[Boundary]:
        return [b for b in self.boundaries if b.from_team in team_ids]

    def model_of(self, boundary: Boundary) -> Model:
        return boundary.model or self.organization.model

    def escalation_path(self, boundary: Boundary) -> list[Level]:
        """The boundary's levels, in order of their wait; by default a reminder to the team at the SLA,
        the steward at twice the SLA, and `escalation_contact` (when set) at three times."""
        if boundary.escalation:
            return sorted(boundary.escalation, key=lambda lv: lv.hours(boundary.sla_hours))
        levels = [Level(after_sla=1, notify=("team",)), Level(after_sla=2, notify=("steward",))]
        if self.organization.escalation_contact:
            levels.append(Level(after_sla=3, notify=("contact",)))
        return levels

    def stewards(self) -> list[str]:
        return sorted({b.steward for b in self.boundaries})

    def right(self, element: str) -> Right | None:
        return next((r for r in self.rights if r.element == element), None)

    def people(self, who: str) -> list[str]:
        """A matrix party as people: a team id gives its members, a user id that user."""
        team = self.team(who)
        return list(team.members) if team else [who]

    def granters(self, right: Right) -> list[str]:
        """Who may grant an exception to this element: its `grants_exceptions`, else [fasttrack].approvers."""
        out: list[str] = []
        for who in right.grants_exceptions or self.fasttrack.approvers:
            out += [p for p in self.people(who) if p not in out]
        return out


class ProcessConfigError(Exception):
    def __init__(self, problems: list[str]):
        super().__init__("\n".join(problems))
        self.problems = problems


def _loc(loc: tuple) -> str:
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out or "(file)"


@dataclass
class _Valid:
    """What of a configuration is valid, for the checks across sections. When some part is invalid,
    every other part is still checked: each section, and each item of a list, is validated on its own
    (keeping its index), and the ids of teams that did not validate still count as teams, so a
    reference to one adds no second problem to the one already reported."""

    organization: Organization | None
    teams: list[tuple[int, Team]]
    invalid_team_ids: set[str]
    boundaries: list[tuple[int, Boundary]]
    rights: list[tuple[int, Right]]
    any_rights: bool
    fasttrack: Fasttrack | None
    pulse: Pulse | None = None
    pulse_teams: tuple = ()  # [pulse].teams as written, checked against the teams even when [pulse] is invalid

    @classmethod
    def of(cls, cfg: ProcessConfig) -> _Valid:
        return cls(
            cfg.organization,
            list(enumerate(cfg.teams)),
            set(),
            list(enumerate(cfg.boundaries)),
            list(enumerate(cfg.rights)),
            bool(cfg.rights),
            cfg.fasttrack,
            cfg.pulse,
            cfg.pulse.teams if cfg.pulse else (),
        )

    @classmethod
    def parts(cls, data: dict) -> _Valid:
        def one(model, value):
            try:
                return model.model_validate(value)
            except ValidationError:
                return None

        def items(key: str, model) -> tuple[list[tuple[int, BaseModel]], list]:
            raw = data.get(key) if isinstance(data.get(key), list) else []
            checked = [(i, one(model, item), item) for i, item in enumerate(raw)]
            return [(i, m) for i, m, _ in checked if m is not None], [item for _, m, item in checked if m is None]

        teams, bad_teams = items("teams", Team)
        boundaries, _ = items("boundaries", Boundary)
        rights, _ = items("rights", Right)
        return cls(
            one(Organization, data.get("organization")),
            teams,
            {t["id"] for t in bad_teams if isinstance(t, dict) and isinstance(t.get("id"), str)},
            boundaries,
            rights,
            bool(data.get("rights")),
            one(Fasttrack, data.get("fasttrack", {})),
            one(Pulse, data["pulse"]) if "pulse" in data else None,
            tuple(data["pulse"].get("teams") or ())
            if isinstance(data.get("pulse"), dict) and isinstance(data["pulse"].get("teams"), list)
            else (),
        )


def _cross_check(v: _Valid) -> list[str]:
    problems = []
    seen: dict[str, int] = {}
    for i, team in v.teams:
        if team.id in seen:
            problems.append(f"teams[{i}].id: '{team.id}' is already teams[{seen[team.id]}]")
        seen.setdefault(team.id, i)
    known = set(seen) | v.invalid_team_ids
    names: dict[str, int] = {}
    for i, team in v.teams:
        key = team.name.casefold()
        if key in names:
            problems.append(f"teams[{i}].name: '{team.name}' is already teams[{names[key]}]")
        names.setdefault(key, i)
    pairs: dict[tuple[str, str], int] = {}
    for i, b in v.boundaries:
        for key, team_id in (("from", b.from_team), ("to", b.to_team)):
            if team_id not in known:
                problems.append(f"boundaries[{i}].{key}: no team '{team_id}'")
        if b.from_team == b.to_team:
            problems.append(f"boundaries[{i}]: 'from' and 'to' are the same team")
        pair = (b.from_team, b.to_team)
        if pair in pairs:
            problems.append(f"boundaries[{i}]: {b.from_team} → {b.to_team} is already boundaries[{pairs[pair]}]")
        pairs.setdefault(pair, i)
    for i, b in v.boundaries:
        if (
            v.organization is not None
            and not v.organization.escalation_contact
            and any("contact" in level.notify for level in b.escalation or ())
        ):
            problems.append(
                f"boundaries[{i}].escalation: a level notifies 'contact' but organization.escalation_contact is not set"
            )
    elements: dict[str, int] = {}
    for i, r in v.rights:
        if r.element.casefold() in elements:
            problems.append(f"rights[{i}].element: '{r.element}' is already rights[{elements[r.element.casefold()]}]")
        elements.setdefault(r.element.casefold(), i)
        for key, who in (
            ("sets_standard", r.sets_standard),
            ("owns_execution", r.owns_execution),
            *((f"grants_exceptions[{k}]", g) for k, g in enumerate(r.grants_exceptions)),
        ):
            if who not in known and not re.match(USER_ID, who):
                problems.append(f"rights[{i}].{key}: '{who}' is neither a team id nor a Slack user id")
        if v.fasttrack is not None and not r.grants_exceptions and not v.fasttrack.approvers:
            problems.append(
                f"rights[{i}].grants_exceptions: empty, and fasttrack.approvers is empty too: nobody could grant it"
            )
    for i, team_id in enumerate(v.pulse_teams if isinstance(v.pulse_teams, tuple) else ()):
        if isinstance(team_id, str) and team_id not in known:
            problems.append(f"pulse.teams[{i}]: no team '{team_id}'")
    if v.pulse is not None:
        if v.pulse.remind_after_days and v.pulse.remind_after_days >= v.pulse.open_days:
            problems.append(
                f"pulse.remind_after_days: {v.pulse.remind_after_days} is not before the week closes (open_days = {v.pulse.open_days})"
            )
    problems += _waits_fit(v)
    if v.any_rights and v.fasttrack is not None and not v.fasttrack.backup_approvers:
        problems.append(
            "fasttrack.backup_approvers: required with [[rights]]: over-budget requests need someone to decide them"
        )
    return problems


def _waits_fit(v: _Valid) -> list[str]:
    """Every wait counted in working hours must fit in what the working-time arithmetic can count
    (`WorkTime.capacity`: about three years of these working days and hours, less the holidays), or
    creating a handoff and every escalation sweep would fail on it."""
    if v.organization is None:
        return []
    org = v.organization
    work = WorkTime(org.tz, org.working_days, org.work_start, org.work_end, org.holidays)
    most = work.capacity()
    if most <= 0:
        return ["organization.holidays: they leave no working time in the next three years"]
    limit = (
        f"{_number(round(most))} working hours (about three years of these working days and hours, less the holidays)"
    )
    problems = []
    for i, b in v.boundaries:
        path = b.escalation or [
            Level(after_sla=n, notify=("team",)) for n in (1, 2, 3 if org.escalation_contact else 2)
        ]
        longest = max([lv.hours(b.sla_hours) for lv in path] + [2 * b.sla_hours]) + SNOOZES * work.day_hours
        if longest > most:
            problems.append(
                f"boundaries[{i}]: its longest wait, {_number(round(longest, 1))} working hours (its last escalation"
                f" level, or twice sla_hours for a send-back, plus {SNOOZES} snoozes), is more than {limit}"
            )
    if v.fasttrack is not None and v.fasttrack.escalate_after_hours > most:
        problems.append(f"fasttrack.escalate_after_hours: {v.fasttrack.escalate_after_hours} is more than {limit}")
    return problems


_BOUNDS = {
    "greater_than_equal": ("at least", "ge"),
    "less_than_equal": ("at most", "le"),
    "greater_than": ("more than", "gt"),
    "less_than": ("less than", "lt"),
}
_KINDS = {  # pydantic's error types → what the value must be, in plain words
    "string_type": "text in quotes",
    "int_type": "a whole number",
    "int_parsing": "a whole number",
    "int_from_float": "a whole number",
    "int_parsing_size": "a whole number of a sensible size",
    "float_type": "a number",
    "float_parsing": "a number",
    "finite_number": "a finite number",
    "bool_type": "true or false",
    "bool_parsing": "true or false",
    "list_type": "a list, e.g. [\"a\", \"b\"]",
    "tuple_type": "a list, e.g. [\"a\", \"b\"]",
    "set_type": "a list, e.g. [\"a\", \"b\"]",
    "dict_type": "a table (a [section] or { key = value })",
    "model_type": "a table (a [section] or { key = value })",
    "model_attributes_type": "a table (a [section] or { key = value })",
    "date_type": "a date, e.g. 2026-12-24",
    "date_parsing": "a date, e.g. 2026-12-24",
    "date_from_datetime_parsing": "a date, e.g. 2026-12-24",
    "date_from_datetime_inexact": "a date without a time, e.g. 2026-12-24",
    "time_type": "a time, e.g. 09:00",
    "time_parsing": "a time, e.g. 09:00",
}


def _number(value) -> str:
    """3, 2.5, 100 (not 100.0), as a person writes it."""
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    return str(value)


def _shown(value) -> str:
    """A wrong value as the message quotes it: short, and never a whole table."""
    if isinstance(value, dict):
        return "a table"
    text = value.isoformat() if isinstance(value, date | time) else repr(value)  # date covers datetime
    return text if len(text) <= 40 else text[:39] + "…"


def _items(n: int) -> str:
    return f"{n} item{'' if n == 1 else 's'}"


def plain_error(err: dict, show_input: bool = True) -> str:
    """One of pydantic's errors (`ValidationError.errors()`) in plain words, without pydantic's own phrases
    ("Input should be…", "Field required", "Extra inputs are not permitted") or its links: what the value
    must be, and (with `show_input`; never for a secret) what it is. The caller names the key."""
    kind, ctx, value = err["type"], err.get("ctx") or {}, err.get("input")
    it = f" (it is {_shown(value)})" if show_input else ""
    if kind == "missing":
        return "required but not set"
    if kind == "extra_forbidden":
        return "unknown key"
    if kind in ("value_error", "assertion_error"):
        return str(ctx.get("error") or err["msg"]).removeprefix("Value error, ").removeprefix("Assertion failed, ")
    if kind == "string_pattern_mismatch" and ctx.get("pattern") in _PATTERN_NAMES:
        return f"{_shown(value) if show_input else 'it'} is not {_PATTERN_NAMES[ctx['pattern']]}"
    if kind in _BOUNDS:  # a numeric bound, said plainly: "at least 3 (it is 2)"
        word, key = _BOUNDS[kind]
        return f"{word} {_number(ctx[key])}" + (f" (it is {_number(value)})" if show_input else "")
    if kind in _KINDS:
        return f"must be {_KINDS[kind]}{it}"
    if kind in ("literal_error", "enum"):
        return f"must be {ctx.get('expected', 'one of the values the README lists')}{it}"
    if kind == "too_short":
        least = ctx.get("min_length", 1)
        if least == 1:
            return "must not be empty"
        return f"needs at least {_items(least)} (it has {ctx.get('actual_length', 0)})"
    if kind == "too_long":
        return f"at most {_items(ctx.get('max_length', 0))} (it has {ctx.get('actual_length', '?')})"
    if kind == "string_too_short":
        least = ctx.get("min_length", 1)
        return "must not be empty" if least == 1 else f"at least {least} characters"
    if kind == "string_too_long":
        return f"at most {ctx.get('max_length')} characters" + (
            f" (it has {len(value)})" if isinstance(value, str) else ""
        )
    # anything else: pydantic's sentence without its own turns of phrase
    msg = re.sub(r"^Input should be", "must be", err["msg"])
    return re.sub(r"^(List|Tuple|String|Value|Set|Dictionary) should", "must", msg) + it


def parse_process(data: dict) -> ProcessConfig:
    """The configuration, or ProcessConfigError with every problem at once: those of each field, then
    those across sections (checked over whatever parts are valid, even when others are not)."""
    try:
        cfg = ProcessConfig.model_validate(data)
    except ValidationError as exc:
        errors = exc.errors()
        problems = []
        for n, err in enumerate(errors):
            if err["type"] == "too_short" and any(
                other["loc"][: len(err["loc"])] == err["loc"] and len(other["loc"]) > len(err["loc"])
                for k, other in enumerate(errors)
                if k != n
            ):
                continue  # a follow-on of an error inside the list, already reported
            problems.append(f"{_loc(err['loc'])}: {plain_error(err)}")
        problems += [p for p in _cross_check(_Valid.parts(data)) if p not in problems]
        raise ProcessConfigError(problems) from None
    problems = _cross_check(_Valid.of(cfg))
    if problems:
        raise ProcessConfigError(problems)
    return cfg


def load_process(path: str | Path, source: str = "PROCESS_CONFIG") -> ProcessConfig:
    """The file at `path`; `source` is where the path came from (a setting, `--file`), named when it
    cannot be read."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ProcessConfigError([f"{source}: no file at {path}"]) from None
    except IsADirectoryError:
        raise ProcessConfigError([f"{source}: {path} is a directory, not a file"]) from None
    except OSError as exc:
        raise ProcessConfigError([f"{source}: cannot read {path}: {exc.strerror}"]) from None
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ProcessConfigError([f"{path}: not valid TOML: {exc}"]) from None
    return parse_process(data)
