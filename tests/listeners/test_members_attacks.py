"""Teams in step with Slack, attacked: replayed and forged member_joined_channel events, Slack failing
while a refresh reads, check-config --slack with a token Slack refuses or Slack away, and every rule using
the current members (a fast-track granter who left the granting team)."""

from __future__ import annotations

import tomllib
from datetime import timedelta

import pytest

from bot.domain import fasttrack, home, members
from bot.domain.core.items import NotAllowed
from bot.domain.core.process import parse_process
from bot.domain.fasttrack import Draft
from bot.entry.bootstrap import Deps
from handlers import members as slack_members
from tests.support.data import PROCESS
from tests.support.harness import TOKEN, cli
from tests.support.members import NOW, client, events, org, people, refresh, welcomes


def current(cfg, db, team):
    return Deps(cfg, db).cfg.team(team).members


# -- member_joined_channel -------------------------------------------------------------------------------


def test_a_retried_join_event_after_a_leave_does_not_make_them_a_member_again(db, fake):
    cfg = parse_process(org(ops={"members_from_channel": True}, qa={}))
    people(fake, ["U0A", "U0NEW"])
    fake.channels["C0OPS"] = {"members": ["U0A"]}
    refresh(db, cfg, fake)  # the baseline
    assert members.joined_channel(db, cfg, "C0OPS", "U0NEW", NOW + timedelta(minutes=1), event_id="Ev1") == [
        "welcome:ops:U0NEW"
    ]
    assert "U0NEW" in current(cfg, db, "ops")
    refresh(db, cfg, fake, NOW + timedelta(minutes=5))  # they left the channel again: the refresh records it
    assert "U0NEW" not in current(cfg, db, "ops")
    # Slack retries the first delivery (X-Slack-Retry-Num): the same event id, nothing happens again
    assert members.joined_channel(db, cfg, "C0OPS", "U0NEW", NOW + timedelta(minutes=6), event_id="Ev1") == []
    assert "U0NEW" not in current(cfg, db, "ops")
    assert [e[2] for e in events(db) if e[1] == "U0NEW"] == ["joined", "left"]
    # a new join (a new event) counts
    members.joined_channel(db, cfg, "C0OPS", "U0NEW", NOW + timedelta(minutes=7), event_id="Ev2")
    assert "U0NEW" in current(cfg, db, "ops") and welcomes(db) == ["welcome:ops:U0NEW"]


# -- Slack failing while a refresh reads -------------------------------------------------------------------


def test_a_disabled_user_group_or_a_refused_page_never_empties_a_team(db, fake):
    cfg = parse_process(org(ops={"members_from_channel": True}, qa={"usergroup": "S0QA"}))
    crowd = [f"U{i:04d}" for i in range(450)]
    people(fake, crowd + ["U0C", "U0D"])
    fake.channels["C0OPS"] = {"members": crowd}
    fake.usergroups["S0QA"] = {"users": ["U0C", "U0D"]}
    refresh(db, cfg, fake)
    fake.usergroups["S0QA"]["date_delete"] = 1795000000  # an admin disabled the group: Slack lists nobody in it
    fake.answer("conversations.members")
    fake.server_error("conversations.members", 503)  # the first page fine, the second a 5xx: half a channel read
    keys, said = refresh(db, cfg, fake, NOW + timedelta(hours=1))
    assert keys == [] and [e for e in events(db) if e[2] == "left"] == []
    assert set(current(cfg, db, "qa")) == {"U0C", "U0D"} and len(current(cfg, db, "ops")) == 450
    assert any("usergroup S0QA not read (user group disabled)" in line for line in said), said
    assert any("channel C0OPS not read" in line for line in said), said
    # an invalid cursor mid-way: not read either
    fake.fail("conversations.members", "invalid_cursor")
    keys, said = refresh(db, cfg, fake, NOW + timedelta(hours=2))
    assert (
        any("channel C0OPS not read (invalid_cursor)" in line for line in said) and len(current(cfg, db, "ops")) == 450
    )
    # a group that really is empty now (enabled, nobody in it): everyone leaves, as they should
    fake.usergroups["S0QA"] = {"users": []}
    refresh(db, cfg, fake, NOW + timedelta(hours=3))
    assert current(cfg, db, "qa") == ()


# -- check-config --slack ---------------------------------------------------------------------------------


def test_check_config_slack_with_a_refused_token_or_slack_away_says_so_in_one_line(fake):
    fake.revoked.add("xoxb-revoked")
    r = cli(
        "check-config",
        "--file",
        str(PROCESS),
        "--slack",
        env={"SLACK_BOT_TOKEN": "xoxb-revoked", "SLACK_API_URL": fake.url},
    )
    assert r.returncode == 2, r.stdout
    assert "SLACK_BOT_TOKEN: Slack refused it (invalid_auth); no id was checked" in r.stderr + r.stdout
    assert "wrong:" not in r.stdout and fake.of("users.info") == []
    fake.down(30)  # every call a 503
    r = cli(
        "check-config", "--file", str(PROCESS), "--slack", env={"SLACK_BOT_TOKEN": TOKEN, "SLACK_API_URL": fake.url}
    )
    assert r.returncode == 1 and "wrong:" not in r.stdout, r.stdout
    assert "SLACK_API_URL: Slack did not answer (internal_error); no id was checked" in r.stderr + r.stdout
    fake.down(0)
    fake.rate_limit("auth.test", retry_after=1)  # a 429 is waited out, then every id is checked
    people(fake, ["U0ALICE", "U0AMY", "U0BOB", "U0CAROL", "U0STEW", "U0HEAD"])
    fake.channels.update({c: {} for c in ("C0SYNC", "C0DESIGN", "C0ENG", "C0QA")})
    fake.usergroups["S0QA"] = {"users": []}
    r = cli(
        "check-config", "--file", str(PROCESS), "--slack", env={"SLACK_BOT_TOKEN": TOKEN, "SLACK_API_URL": fake.url}
    )
    assert r.returncode == 0 and "slack: 0 problems, every id found" in r.stdout, r.stdout + r.stderr


# -- every rule uses the current members ---------------------------------------------------------------------


def test_a_fasttrack_granted_by_a_team_is_decided_by_its_members_now_not_those_when_it_was_asked(db, fake):

    data = tomllib.loads(PROCESS.read_text())
    data["rights"][0]["grants_exceptions"] = ["qa"]  # QA sign-off: any member of qa grants it
    cfg = parse_process(data)
    fake.usergroups["S0QA"] = {"users": ["U0DAN"]}
    refresh(db, cfg, fake)
    draft = Draft(
        team="eng", element="QA sign-off", reason="Customer escalation", what="Hotfix", justification="Checkout is down"
    )
    row, _, routed = fasttrack.request(db, Deps(cfg, db).cfg, "U0BOB", draft, now=NOW)
    other, _, _ = fasttrack.request(db, Deps(cfg, db).cfg, "U0BOB", draft, now=NOW)
    assert sorted(routed.deciders) == ["U0CAROL", "U0DAN"]
    fake.usergroups["S0QA"] = {"users": ["U0ERIN"]}  # Dan left qa, Erin joined
    refresh(db, cfg, fake, NOW + timedelta(hours=1))
    now = Deps(cfg, db).cfg
    with pytest.raises(NotAllowed, match="no longer"):
        fasttrack.decide(db, now, row.id, "U0DAN", approve=True, now=NOW + timedelta(hours=2))
    assert fasttrack.get(db, row.id).state == "pending"
    done = fasttrack.decide(db, now, row.id, "U0ERIN", approve=False, reason="Not urgent", now=NOW + timedelta(hours=2))
    assert done.changed and fasttrack.get(db, row.id).decided_by == "U0ERIN"
    # the lists say the same: /fasttrack list and the Home's "Waiting for you" show the other request to Erin, not to Dan
    assert [r.id for r in fasttrack.listing(db, "U0ERIN", cfg=now)[1]] == [other.id] and fasttrack.listing(
        db, "U0DAN", cfg=now
    )[1] == []
    assert [r.id for r in home.waiting(db, now, "U0ERIN").fasttracks] == [other.id] and home.waiting(
        db, now, "U0DAN"
    ).fasttracks == []


def test_someone_who_joins_while_a_refresh_reads_is_not_recorded_as_leaving_by_it(db, fake):
    cfg = parse_process(org(ops={"members_from_channel": True}, qa={}))
    people(fake, ["U0A", "U0NEW"])
    fake.channels["C0OPS"] = {"members": ["U0A"]}
    refresh(db, cfg, fake)
    # a refresh starts reading at 10:00 (a big channel: minutes of pages and Retry-After) ...
    read = {"channel": {"U0A"}}
    # ... meanwhile, at 10:05, U0NEW joins the channel (member_joined_channel) ...
    members.joined_channel(db, cfg, "C0OPS", "U0NEW", NOW + timedelta(hours=1, minutes=5), event_id="Ev9")
    # ... and the refresh records what it read, as of 10:00: it knows nothing of the join
    done = members.apply(db, cfg.team("ops"), read, NOW + timedelta(hours=1))
    assert done.left == [] and "U0NEW" in current(cfg, db, "ops")
    assert [e[2] for e in events(db) if e[1] == "U0NEW"] == ["joined"]
    # a read that started after the join, without them: they left
    members.apply(db, cfg.team("ops"), read, NOW + timedelta(hours=2))
    assert "U0NEW" not in current(cfg, db, "ops") and [e[2] for e in events(db) if e[1] == "U0NEW"] == [
        "joined",
        "left",
    ]


def joined_event(user, channel, event_id):
    return {
        "type": "event_callback",
        "event_id": event_id,
        "event": {"type": "member_joined_channel", "user": user, "channel": channel},
    }


def hear(db, cfg, fake, user, channel, event_id, now=NOW):
    """`member_joined_channel` handed to the listener as Bolt hands it (dependencies in its context)."""

    body = joined_event(user, channel, event_id)
    slack_members.joined(
        body=body,
        event=body["event"],
        context={"deps": Deps(cfg, db, now=lambda: now), "bot_user_id": "U0BOT"},
        client=client(fake),
    )


def test_forged_and_odd_join_events_make_nobody_a_member(db, fake):
    cfg = parse_process(org(ops={"members_from_channel": True}, qa={}))
    people(fake, ["U0A", "U0HUMAN"])
    fake.users["U0ROBOT"] = {"is_bot": True}
    fake.channels["C0OPS"] = {"members": ["U0A"]}
    refresh(db, cfg, fake)
    hear(db, cfg, fake, "U0BOT", "C0OPS", "Ev1")  # Steward itself
    hear(db, cfg, fake, "U0ROBOT", "C0OPS", "Ev2")  # another app's bot
    hear(db, cfg, fake, "U0GHOST", "C0OPS", "Ev3")  # an id Slack does not know
    hear(db, cfg, fake, "U0HUMAN", "C0NOTEAM", "Ev4")  # a channel of no team
    for event in (
        {"type": "member_joined_channel"},
        {"type": "member_joined_channel", "user": ["U0HUMAN"], "channel": "C0OPS"},
    ):
        slack_members.joined(
            body={"event": event}, event=event, context={"deps": Deps(cfg, db), "bot_user_id": "U0BOT"}, client=None
        )
    # Slack cannot say who joined (users.info 5xx): not made a member on a guess (a bot would stay one, as
    # the refresh asks only about newcomers); the hourly refresh decides
    fake.users["U0ROBOT2"] = {"is_bot": True}
    fake.server_error("users.info", 503)
    hear(db, cfg, fake, "U0ROBOT2", "C0OPS", "Ev5")
    assert current(cfg, db, "ops") == ("U0A",) and [e for e in events(db) if not e[4]] == []
    fake.channels["C0OPS"]["members"] = ["U0A", "U0ROBOT2"]
    refresh(db, cfg, fake, NOW + timedelta(hours=1))
    assert current(cfg, db, "ops") == ("U0A",)


def test_check_config_slack_checks_a_big_configuration_within_slacks_rate_limits(fake):

    crowd = [f"U{i:04d}" for i in range(120)]
    data = org(ops={"members": crowd[:60]}, qa={"members": crowd[60:] + ["U0GONE"]})
    cfg = parse_process(data)
    people(fake, crowd + ["U0STEW"])
    fake.users["U0050"]["deleted"] = True
    fake.channels.update({"C0SYNC": {}, "C0OPS": {}, "C0QA": {}})
    fake.limit_workspace(
        "users.info", per_minute=60, burst=10
    )  # Tier 4 is ~100 a minute: 122 people do not fit in a burst
    problems, notes = slack_members.check_ids(cfg, client(fake), slack_members.Patience(3))
    assert problems == [
        "teams[0].members[50]: user U0050 is deactivated",
        "teams[1].members[60]: user U0GONE is unknown in this workspace",
    ], problems[:5]
    assert (
        len(fake.of("users.list")) == 1 and len(fake.of("users.info")) <= 2
    )  # the workspace's list once, then who is not in it
