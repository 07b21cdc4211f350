"""Teams in step with Slack, the Slack side: reading user groups and channels (`refresh`, the clock's
`members` job), `member_joined_channel` (a welcome DM, and a member at once where the team's members come
from its channel), the welcome DM's renderer, and `check-config --slack` (`check_ids`).

Every read honours 429 and Retry-After, within a total wait (`Patience`): past it, the source counts as
not read, and its last known members stay."""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass, field

from slack_bolt import App

from bot.domain import members
from handlers.common import Patience, Unread, guarded
from handlers.fasttrack import names
from templates import render

log = logging.getLogger("steward")
PAGE = 200  # conversations.members / users.list: a page
_EVENT_ID = re.compile(r"^[A-Za-z0-9_.-]{1,40}$")  # as Slack's event ids (Ev0…); anything else is not used as one
USERS_INFO_AT_MOST = 50  # more newcomers than this in a run: one users.list instead of a users.info each


CHECK_PATIENCE = 300.0  # check-config --slack: a users.list of a big workspace at Tier 2 (20 pages a minute)
REFRESH_PATIENCE = (
    600.0  # seconds a refresh may wait on Retry-After in all (a first users.list of a big workspace at Tier 2)
)


def usergroup_members(client, group: str, patience: Patience) -> set[str]:
    """The user group's members (usergroups.users.list: one call, the whole list). A disabled group, which
    Slack shows with nobody in it, is not read (Unread): its last known members stay. An empty answer is
    checked once with usergroups.list, so a group that is merely empty still empties the team."""
    users = set(patience.call(client.usergroups_users_list, usergroup=group).get("users") or [])
    if not users:
        listed = patience.call(client.usergroups_list, include_disabled=True).get("usergroups") or []
        found = next((g for g in listed if g.get("id") == group), None)
        if found is None or found.get("date_delete"):
            raise Unread("user group disabled" if found is not None else "no_such_subteam")
    return users


def channel_members(client, channel: str, patience: Patience) -> set[str]:
    """The channel's members (conversations.members, paged by cursor)."""
    out, cursor = set(), None
    while True:
        answer = patience.call(
            client.conversations_members, channel=channel, limit=PAGE, **({"cursor": cursor} if cursor else {})
        )
        out |= set(answer.get("members") or [])
        cursor = (answer.get("response_metadata") or {}).get("next_cursor")
        if not cursor:
            return out


@dataclass
class People:
    """Which ids are people who may be members (not bots, not deactivated; not guests nor people of another
    workspace unless `organization.include_guests` / `include_external`), each asked once a run: by
    users.info (Tier 4) for a few, by one paged users.list (Tier 2, 200 a page) for many (a first read of a
    big channel). Only those not already known as members are asked: a refresh of a stable channel asks
    nothing."""

    client: object
    patience: Patience
    seen: dict[str, bool] = field(default_factory=dict)
    listed: bool = False
    guests: bool = False  # restricted (multi-channel) and ultra-restricted (single-channel) guests may be members
    external: bool = False  # Slack Connect users (another workspace's) may be members
    home: str | None = None  # our workspace's id (auth.test), asked once when a user names a team

    def allowed(self, user: dict) -> bool:
        if user.get("is_bot") or user.get("deleted") or user.get("id") == "USLACKBOT":
            return False
        if not self.guests and (user.get("is_restricted") or user.get("is_ultra_restricted")):
            return False
        if not self.external and (user.get("is_stranger") or self._elsewhere(user.get("team_id"))):
            return False
        return True

    def _elsewhere(self, team: object) -> bool:
        if not isinstance(team, str) or not team:
            return False
        if self.home is None:
            self.home = str(self.patience.call(self.client.auth_test).get("team_id") or "")
        return bool(self.home) and team != self.home

    def prefetch(self, ids: set[str]) -> None:
        unknown = {u for u in ids if u not in self.seen}
        if len(unknown) <= USERS_INFO_AT_MOST or self.listed:
            return
        cursor = None
        while True:
            answer = self.patience.call(self.client.users_list, limit=PAGE, **({"cursor": cursor} if cursor else {}))
            for user in answer.get("members") or []:
                if isinstance(user.get("id"), str):
                    self.seen[user["id"]] = self.allowed(user)
            cursor = (answer.get("response_metadata") or {}).get("next_cursor")
            if not cursor:
                break
        self.listed = True
        for user in unknown - set(self.seen):
            self.seen[user] = False  # not in the workspace's list: no one to count

    def human(self, user: str) -> bool:
        if user not in self.seen:
            try:
                info = self.patience.call(self.client.users_info, user=user).get("user") or {}
                self.seen[user] = self.allowed({**info, "id": user})
            except Unread as exc:
                if str(exc) == "user_not_found":
                    self.seen[user] = False
                else:
                    raise
        return self.seen[user]


def of(cfg, client, patience: Patience) -> People:
    """Who may be a member under the organisation's settings (guests, Slack Connect users: out by default)."""
    org = cfg.organization
    return People(client, patience, guests=org.include_guests, external=org.include_external)


def _people(n: int) -> str:
    return f"{n} member{'' if n == 1 else 's'}"


def refresh(db, cfg, client, now, say, patience: Patience | None = None) -> list[str]:
    """Read every team's sources and record what changed (`bot.domain.members.apply`); say a line per team that
    changed or could not be read. Returns the welcome DMs written, and the App Homes of those who joined
    or left, to publish again. `cfg` is the file as written."""
    patience = patience or Patience(REFRESH_PATIENCE)
    people = of(cfg, client, patience)
    keys = []
    for team in cfg.teams:
        fetched, errors = {}, {}
        for source, ref in team.sources().items():
            if source == members.CONFIG:
                continue
            try:
                if source == members.USERGROUP:
                    fetched[source] = usergroup_members(client, ref, patience)
                else:
                    found = channel_members(client, ref, patience)
                    before = members.known(db, team.id, source)
                    people.prefetch(found - before)
                    fetched[source] = {u for u in found if u in before or people.human(u)}
            except Unread as exc:
                fetched[source], errors[source] = None, str(exc)
        done = members.apply(db, team, fetched, now, errors)
        keys += done.keys + done.homes
        parts = []
        if done.baseline:
            parts.append(f"first read of {', '.join(done.baseline)}: {_people(done.members)} recorded, nobody welcomed")
        if done.joined:
            parts.append(f"{len(done.joined)} joined ({', '.join(done.joined[:10])})")
        if done.left:
            parts.append(f"{len(done.left)} left ({', '.join(done.left[:10])})")
        for source in done.kept:
            parts.append(
                f"{source} {team.sources()[source]} not read ({errors.get(source)}): its last known members kept"
            )
        if parts:
            say(f"members {team.id}: " + "; ".join(parts) + f"; {_people(done.members)} now")
    return keys


# -- member_joined_channel ---------------------------------------------------------------------------------


@guarded
def joined(body, event, context, client):
    deps = context["deps"]
    user, channel = event.get("user"), event.get("channel")
    if not isinstance(user, str) or not isinstance(channel, str) or user == context.get("bot_user_id"):
        return
    cfg = deps.cfg
    if not any(t.channel == channel for t in cfg.teams):
        return
    person = True
    try:
        if not of(cfg, client, Patience(10)).human(user):
            return
    except Unread:  # Slack could not say: welcomed (a bot's welcome DM fails harmlessly), but not made a member on a
        person = False  # guess: a bot would stay one (the refresh asks only about newcomers); the next refresh decides
    event_id = body.get("event_id")
    event_id = event_id if isinstance(event_id, str) and _EVENT_ID.match(event_id) else None
    keys = members.joined_channel(deps.db, deps.base_cfg, channel, user, deps.now(), event_id, member=person)
    deps.roster.expire()
    deps.deliver(keys)


def render_welcome(deps, row) -> dict | None:
    cfg = deps.cfg
    team = cfg.team(row.params["team"])
    if team is None:
        return None  # the team is gone from the configuration
    sends = [
        {
            "to": b.to_team,
            "model": cfg.model_of(b),
            "criteria": list(b.criteria),
            "steward": b.steward,
            "sla": b.sla_hours,
        }
        for b in cfg.boundaries
        if b.from_team == team.id
    ]
    receives = [
        {
            "from": b.from_team,
            "model": cfg.model_of(b),
            "criteria": list(b.criteria),
            "steward": b.steward,
            "sla": b.sla_hours,
        }
        for b in cfg.boundaries
        if b.to_team == team.id
    ]
    rows = [
        {"element": r.element, "sets": r.sets_standard, "grants": cfg.granters(r), "owns": r.owns_execution}
        for r in cfg.rights
        if team.id in (r.sets_standard, r.owns_execution, *r.grants_exceptions)
    ]
    return render(
        "welcome_dm",
        team=team.name,
        channel=team.channel,
        sends=sends,
        receives=receives,
        rights=rows,
        names=names(cfg),
        percent=f"{cfg.fasttrack.budget_percent:g}",
    )


def register(app: App) -> None:
    app.event("member_joined_channel")(joined)


RENDERERS = {"welcome_dm": render_welcome}


# -- check-config --slack ---------------------------------------------------------------------------------


def check_ids(cfg, client, patience: Patience | None = None) -> tuple[list[str], list[str]]:
    """Every user, channel and user group id of the configuration, looked up in the workspace: (problems,
    notes). A problem: an id Slack does not know, an archived channel, a deactivated person, a private
    channel Steward is not in (it cannot post there). A note: a public channel Steward is not in (it posts
    there with chat:write.public, but hears nobody join it)."""
    patience = patience or Patience(CHECK_PATIENCE)
    problems, notes = [], []
    users: dict[str, list[str]] = {}
    channels: dict[str, list[str]] = {}
    groups: dict[str, list[str]] = {}
    o = cfg.organization
    channels.setdefault(o.digest_channel, []).append("organization.digest_channel")
    if o.escalation_contact:
        users.setdefault(o.escalation_contact, []).append("organization.escalation_contact")
    for i, t in enumerate(cfg.teams):
        channels.setdefault(t.channel, []).append(f"teams[{i}].channel")
        for k, u in enumerate(t.members):
            users.setdefault(u, []).append(f"teams[{i}].members[{k}]")
        for key in ("lead",):
            if getattr(t, key):
                users.setdefault(getattr(t, key), []).append(f"teams[{i}].{key}")
        for key in ("usergroup", "reviewers"):
            if getattr(t, key):
                groups.setdefault(getattr(t, key), []).append(f"teams[{i}].{key}")
    for i, b in enumerate(cfg.boundaries):
        users.setdefault(b.steward, []).append(f"boundaries[{i}].steward")
        for k, level in enumerate(b.escalation or ()):
            for who in level.notify:
                if who.startswith(("U", "W")):
                    users.setdefault(who, []).append(f"boundaries[{i}].escalation[{k}].notify")
                elif who.startswith("S"):
                    groups.setdefault(who, []).append(f"boundaries[{i}].escalation[{k}].notify")
    ft = cfg.fasttrack
    for key in ("approvers", "backup_approvers"):
        for k, u in enumerate(getattr(ft, key)):
            users.setdefault(u, []).append(f"fasttrack.{key}[{k}]")
    if ft.channel:
        channels.setdefault(ft.channel, []).append("fasttrack.channel")
    for i, r in enumerate(cfg.rights):
        for key, who in (
            ("sets_standard", r.sets_standard),
            ("owns_execution", r.owns_execution),
            *((f"grants_exceptions[{k}]", g) for k, g in enumerate(r.grants_exceptions)),
        ):
            if cfg.team(who) is None:
                users.setdefault(who, []).append(f"rights[{i}].{key}")

    def where(keys: list[str]) -> str:
        return ", ".join(keys[:3]) + (f" and {len(keys) - 3} more" if len(keys) > 3 else "")

    listed: dict[str, dict] = {}
    if len(users) > USERS_INFO_AT_MOST:  # many people: the workspace's list (200 a page), not a users.info each
        try:
            cursor = None
            while True:
                answer = patience.call(client.users_list, limit=PAGE, **({"cursor": cursor} if cursor else {}))
                listed.update({u["id"]: u for u in answer.get("members") or [] if isinstance(u.get("id"), str)})
                cursor = (answer.get("response_metadata") or {}).get("next_cursor")
                if not cursor:
                    break
        except Unread:
            listed = {}  # each is asked on its own instead
    for user, keys in users.items():  # in the order the configuration names them
        try:
            info = listed.get(user) or patience.call(client.users_info, user=user).get("user") or {}
        except Unread as exc:
            problems.append(
                f"{where(keys)}: user {user} "
                + ("is unknown in this workspace" if str(exc) == "user_not_found" else f"could not be checked ({exc})")
            )
            continue
        if info.get("deleted"):
            problems.append(f"{where(keys)}: user {user} is deactivated")
        elif info.get("is_bot"):
            problems.append(f"{where(keys)}: {user} is a bot, not a person")
    for channel, keys in channels.items():
        try:
            info = patience.call(client.conversations_info, channel=channel).get("channel") or {}
        except Unread as exc:
            problems.append(
                f"{where(keys)}: channel {channel} "
                + (
                    "is unknown (or private without Steward in it)"
                    if str(exc) == "channel_not_found"
                    else f"could not be checked ({exc})"
                )
            )
            continue
        if info.get("is_archived"):
            problems.append(f"{where(keys)}: channel {channel} is archived")
        elif not info.get("is_member"):
            if info.get("is_private"):
                problems.append(
                    f"{where(keys)}: Steward is not in the private channel {channel}: invite it (/invite @Steward)"
                )
            else:
                notes.append(
                    f"{where(keys)}: Steward is not in channel {channel}: it posts there anyway (chat:write.public); invite it to welcome people who join"
                )
    if groups:
        try:
            listed = {
                g.get("id"): g
                for g in patience.call(client.usergroups_list, include_disabled=True).get("usergroups") or []
            }
        except Unread as exc:
            problems.append(f"user groups could not be checked ({exc})")
            listed = None
        for group, keys in groups.items() if listed is not None else ():
            found = listed.get(group)
            if found is None:
                problems.append(f"{where(keys)}: user group {group} is unknown in this workspace")
            elif found.get("date_delete"):
                problems.append(f"{where(keys)}: user group {group} is disabled")
    return problems, notes
