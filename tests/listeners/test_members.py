"""Teams in step with Slack: members from user groups and channels, joins and leaves as events, the
welcome DM once per person per team, the digest's headcount from the events, check-config --slack."""

from __future__ import annotations

import json
import threading
import time
from datetime import datetime

from bot.domain import digest, members
from bot.domain.core.process import load_process, parse_process
from bot.entry.bootstrap import Deps
from handlers import members as slack_members
from storage.db import Database
from storage.models import MemberSync
from tests.support.data import PROCESS
from tests.support.harness import TOKEN, cli
from tests.support.members import NOW, events, joined_event, org, people, refresh, welcomes


def test_refresh_baseline_then_joins_and_leaves_with_paging_and_a_429(db, fake):
    cfg = parse_process(org(ops={"members_from_channel": True, "members": ["U0LEAD"]}, qa={"usergroup": "S0QA"}))
    crowd = [f"U{i:04d}" for i in range(450)]  # three pages of 200
    people(fake, crowd + ["U0LEAD", "U0NEW"])
    fake.users["U0ROBOT"] = {"is_bot": True}
    fake.channels["C0OPS"] = {"members": crowd + ["U0BOT", "U0ROBOT"]}
    fake.usergroups["S0QA"] = {"users": ["U0CAROL", "U0DAN"]}
    fake.rate_limit("conversations.members", retry_after=1)

    keys, said = refresh(db, cfg, fake)  # the first read of every source: a baseline, nobody welcomed
    assert keys == [] and welcomes(db) == []
    assert len(fake.of("conversations.members")) == 4  # 429, then three pages
    assert [c.args.get("cursor") is None for c in fake.of("conversations.members")][:2] == [True, True]
    assert (
        fake.of("users.info") == [] and len(fake.of("users.list")) == 3
    )  # 452 newcomers: the workspace's list, not one call each
    current = Deps(cfg, db).cfg
    assert set(current.team("ops").members) == {"U0LEAD", *crowd}  # the bots are not members
    assert set(current.team("qa").members) == {"U0CAROL", "U0DAN"}
    assert all(baseline and kind == "joined" for _, _, kind, _, baseline in events(db)) and len(events(db)) == 453
    assert any("first read of config, channel: 451 members recorded, nobody welcomed" in line for line in said), said

    fake.channels["C0OPS"]["members"] = crowd[2:] + ["U0NEW", "U0BOT"]
    fake.usergroups["S0QA"]["users"] = ["U0DAN", "U0EVE"]
    people(fake, ["U0EVE"])
    before = len(fake.of("users.info"))
    keys, said = refresh(db, cfg, fake, NOW.replace(hour=10))
    assert sorted(c.args["user"] for c in fake.of("users.info")[before:]) == [
        "U0BOT",
        "U0NEW",
    ]  # only who is not a member yet
    assert sorted(keys) == ["welcome:ops:U0NEW", "welcome:qa:U0EVE"] == welcomes(db)
    assert [e for e in events(db) if not e[4]] == [
        ("ops", "U0NEW", "joined", "channel", False),
        ("ops", "U0000", "left", "channel", False),
        ("ops", "U0001", "left", "channel", False),
        ("qa", "U0EVE", "joined", "usergroup", False),
        ("qa", "U0CAROL", "left", "usergroup", False),
    ]
    current = Deps(cfg, db).cfg
    assert "U0NEW" in current.team("ops").members and "U0000" not in current.team("ops").members
    assert current.team("qa").members == ("U0DAN", "U0EVE")
    assert "members ops: 1 joined (U0NEW); 2 left (U0000, U0001); 450 members now" in said

    keys, said = refresh(db, cfg, fake, NOW.replace(hour=11))  # nothing changed: nothing recorded, nobody asked
    assert keys == [] and said == [] and len(fake.of("users.info")) - before == 3  # the bot, asked again


def test_a_slack_error_keeps_the_teams_last_known_members(db, fake):
    cfg = parse_process(org(ops={"members_from_channel": True}, qa={"usergroup": "S0QA"}))
    people(fake, ["U0A", "U0B"])
    fake.channels["C0OPS"] = {"members": ["U0A", "U0B"]}
    fake.usergroups["S0QA"] = {"users": ["U0C"]}
    refresh(db, cfg, fake)
    fake.fail("usergroups.users.list", "missing_scope")
    fake.rate_limit("conversations.members", retry_after=5)  # past this run's patience: given up, not waited
    started = time.monotonic()
    keys, said = refresh(db, cfg, fake, NOW.replace(hour=10), slack_members.Patience(seconds=2))
    assert time.monotonic() - started < 2
    assert keys == [] and [e for e in events(db) if e[2] == "left"] == []
    current = Deps(cfg, db).cfg
    assert current.team("ops").members == ("U0A", "U0B") and current.team("qa").members == ("U0C",)
    assert (
        "members ops: channel C0OPS not read (rate limited past 2 s of waiting): its last known members kept; 2 members now"
        in said
    )
    assert "members qa: usergroup S0QA not read (missing_scope): its last known members kept; 1 member now" in said
    with db.read() as s:
        assert s.get(MemberSync, ("qa", "usergroup")).error == "missing_scope"


def test_config_changes_are_joins_and_leaves_and_a_member_is_welcomed_once_ever(db, fake):
    first = parse_process(org(ops={"members": ["U0A"]}, qa={"members": ["U0C"]}))
    refresh(db, first, fake)
    assert welcomes(db) == []
    added = parse_process(org(ops={"members": ["U0A", "U0B"]}, qa={"members": ["U0C"]}))
    keys, _ = refresh(db, added, fake, NOW.replace(hour=10))
    assert keys == ["welcome:ops:U0B"]
    removed = parse_process(org(ops={"members": ["U0A"]}, qa={"members": ["U0C"]}))
    assert refresh(db, removed, fake, NOW.replace(hour=11))[0] == []
    assert refresh(db, added, fake, NOW.replace(hour=12))[0] == []  # re-added: a join, no second welcome
    assert [e[1:3] for e in events(db) if e[1] == "U0B"] == [("U0B", "joined"), ("U0B", "left"), ("U0B", "joined")]
    assert welcomes(db) == ["welcome:ops:U0B"]
    # a new user group on a team already read is a baseline of its own: its people are not welcomed
    fake.usergroups["S0OPS"] = {"users": ["U0A", "U0Z"]}
    grouped = parse_process(org(ops={"members": ["U0A", "U0B"], "usergroup": "S0OPS"}, qa={"members": ["U0C"]}))
    assert refresh(db, grouped, fake, NOW.replace(hour=13))[0] == []
    assert ("ops", "U0Z", "joined", "usergroup", True) in events(db)


def test_headcount_comes_from_the_membership_events(db, fake):
    cfg = parse_process(org(ops={"members": ["U0A", "U0B", "U0C"]}, qa={"members": ["U0C"]}))
    refresh(db, cfg, fake, datetime(2026, 9, 20))
    fake.usergroups["S0OPS"] = {"users": ["U0D"]}
    cfg2 = parse_process(org(ops={"members": ["U0A"], "usergroup": "S0OPS"}, qa={"members": ["U0C"]}))
    refresh(db, cfg2, fake, datetime(2026, 10, 5))  # U0D: a baseline; U0B and U0C leave
    fake.usergroups["S0OPS"]["users"] = ["U0D", "U0E"]
    refresh(db, cfg2, fake, datetime(2026, 11, 3))  # U0E joins in November
    assert members.count_at(db, ["ops", "qa", "new"], datetime(2026, 9, 1)) == {}
    assert members.count_at(db, ["ops", "qa"], datetime(2026, 10, 1)) == {"ops": 3, "qa": 1}
    assert members.count_at(db, ["ops", "qa"], datetime(2026, 11, 1)) == {"ops": 2, "qa": 1}
    current = Deps(cfg2, db).cfg
    assert digest.headcounts(db, current, "2026-11")[("2026-11", "ops")] == 3  # at November's end, not the file's 1
    digest.record_headcount(db, current, "2026-10")
    assert digest.headcounts(db, current, "2026-11")[("2026-10", "ops")] == 2
    never = parse_process(org(ops={"members": ["U0A"]}, qa={"members": []}, new={"members": ["U0X", "U0Y"]}))
    assert digest.headcounts(db, never, "2026-11")[("2026-11", "new")] == 2  # never read: the file's members


# -- through the served app ---------------------------------------------------------------------------------


def test_a_person_the_refresh_adds_can_act_at_once_without_a_restart(steward, fake, db):
    cfg = load_process(PROCESS)
    fake.usergroups["S0QA"] = {"users": ["U0DAN"]}
    assert "not a member of any team" in steward.command("U0DAN", "").json()["text"]
    refresh(db, cfg, fake)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:  # each worker looks at the members' stamp once a second at most
        r = steward.command("U0DAN", "")
        if r.status == 200 and not r.raw:
            break
        assert "not a member of any team" in r.json()["text"]
        time.sleep(0.1)
    assert fake.wait("views.open")  # the form, for a member of qa


def test_joining_a_teams_channel_brings_one_welcome_dm(steward, fake, db):
    refresh(db, load_process(PROCESS), fake)  # the baseline: nobody welcomed
    fake.settle(quiet=0.2)
    assert fake.messages("U0CAROL") == []
    people(fake, ["U0ERIN"])
    for event_id in ("Ev1", "Ev1", "Ev2"):  # a retry of the same event, then a second join (left and came back)
        assert steward.post(joined_event("U0ERIN", "C0QA", event_id), content_type="application/json").status == 200
    fake.wait("chat.postMessage")
    fake.settle(quiet=0.3)
    dms = fake.messages("U0ERIN")
    assert len(dms) == 1 and dms[0]["text"] == "Welcome to Quality in Steward"
    text = json.dumps(dms[0]["blocks"])
    assert "From Engineering" in text and "Release notes" in text and "<@U0STEW>" in text and "QA sign-off" in text
    assert "/handoff" in text and "/fasttrack" in text
    assert (
        steward.post(joined_event("U0BOT", "C0QA", "Ev3"), content_type="application/json").status == 200
    )  # Steward itself
    assert steward.post(joined_event("U0ERIN", "C0ELSEWHERE", "Ev4"), content_type="application/json").status == 200
    fake.usergroups["S0QA"] = {"users": ["U0ERIN"]}
    assert (
        refresh(db, load_process(PROCESS), fake, NOW.replace(hour=10))[0] == []
    )  # added to the team later: welcomed already
    fake.settle(quiet=0.3)
    assert len(fake.messages("U0ERIN")) == 1 and fake.messages("U0BOT") == [] and len(fake.of("chat.postMessage")) == 1


# -- check-config --slack -----------------------------------------------------------------------------------


def test_check_config_slack_names_every_bad_id(fake, tmp_path):
    toml = (
        PROCESS.read_text()
        .replace('members = ["U0ALICE", "U0AMY"]', 'members = ["U0ALICE", "U0GHOST"]')
        .replace('channel = "C0ENG"', 'channel = "C0OLD"')
        .replace('channel = "C0DESIGN"', 'channel = "G0PRIV"')
    )
    path = tmp_path / "process.toml"
    path.write_text(toml)
    people(fake, ["U0ALICE", "U0AMY", "U0BOB", "U0CAROL", "U0STEW", "U0HEAD"])
    fake.users["U0BOB"]["deleted"] = True
    fake.channels.update(
        {
            "C0SYNC": {},
            "C0QA": {"is_member": False},
            "C0OLD": {"is_archived": True},
            "G0PRIV": {"is_private": True, "is_member": False},
        }
    )
    fake.usergroups["S0OTHER"] = {"users": []}
    fake.rate_limit("users.info", retry_after=1)
    env = {"SLACK_BOT_TOKEN": TOKEN, "SLACK_API_URL": fake.url}
    r = cli("check-config", "--file", str(path), "--slack", env=env)
    assert r.returncode == 1, r.stderr
    wrong = [line.strip() for line in r.stdout.splitlines() if line.strip().startswith("wrong:")]
    assert wrong == [
        "wrong: teams[0].members[1]: user U0GHOST is unknown in this workspace",
        "wrong: teams[1].members[0]: user U0BOB is deactivated",
        "wrong: teams[0].channel: Steward is not in the private channel G0PRIV: invite it (/invite @Steward)",
        "wrong: teams[1].channel: channel C0OLD is archived",
        "wrong: teams[2].usergroup: user group S0QA is unknown in this workspace",
    ], r.stdout
    assert "note: teams[2].channel: Steward is not in channel C0QA" in r.stdout
    assert "(1 member listed + user group S0QA, channel C0QA)" in r.stdout
    assert len(fake.of("users.info")) == 8  # seven people, one of them asked again after the 429
    assert cli("check-config", "--file", str(path), "--slack").returncode == 2  # no token


def test_roster_reads_the_members_only_when_their_stamp_changed_and_survives_a_database_it_cannot_read(
    db, fake, tmp_path
):

    cfg = parse_process(org(ops={"usergroup": "S0OPS"}, qa={}))
    fake.usergroups["S0OPS"] = {"users": ["U0A"]}
    refresh(db, cfg, fake)
    roster = members.Roster(cfg, db, every=3600)
    assert roster.current().team("ops").members == ("U0A",)
    fake.usergroups["S0OPS"] = {"users": ["U0A", "U0B"]}
    refresh(db, cfg, fake, NOW.replace(hour=10))
    assert roster.current().team("ops").members == ("U0A",)  # not looked at again within `every`
    roster.expire()
    assert roster.current().team("ops").members == ("U0A", "U0B")
    gone = members.Roster(cfg, Database(f"sqlite:///{tmp_path}/missing/steward.db"))
    assert gone.current() is cfg  # nothing readable: the file's members, no error
    assert (
        members.Roster(load_process(PROCESS).model_copy(update={"teams": cfg.teams[1:]}), db)
        .current()
        .team("qa")
        .members
        == ()
    )


def test_run_job_members_reads_slack_and_says_what_changed(db, fake, database_url):
    fake.usergroups["S0QA"] = {"users": ["U0DAN"]}
    env = {
        "DATABASE_URL": database_url,
        "PROCESS_CONFIG": str(PROCESS),
        "SLACK_BOT_TOKEN": TOKEN,
        "SLACK_API_URL": fake.url,
    }
    r = cli("run-job", "members", env=env)
    assert r.returncode == 0, r.stderr
    assert "members qa: first read of config, usergroup: 2 members recorded, nobody welcomed; 2 members now" in r.stdout
    fake.usergroups["S0QA"] = {"users": ["U0DAN", "U0ERIN"]}
    r = cli("run-job", "members", env=env)
    assert (
        "members qa: 1 joined (U0ERIN); 3 members now" in r.stdout
        and "members: 1 welcome DM written, 1 delivered" in r.stdout
    ), r.stdout
    assert len(fake.messages("U0ERIN")) == 1
    fake.fail("usergroups.users.list", "missing_scope")
    r = cli("run-job", "members", env=env)
    assert (
        r.returncode == 0
        and "usergroup S0QA not read (missing_scope): its last known members kept; 3 members now" in r.stdout
    )


def test_two_refreshes_at_once_record_each_join_once(db):

    team = parse_process(org(ops={"members": ["U0A"]}, qa={})).team("ops")
    members.apply(db, team, {}, NOW)
    grown = team.model_copy(update={"members": ("U0A", "U0B", "U0C")})
    results, barrier = [], threading.Barrier(4)

    def go():
        barrier.wait()
        results.append(members.apply(db, grown, {}, NOW.replace(hour=10)))

    threads = [threading.Thread(target=go) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(u for r in results for u in r.joined) == ["U0B", "U0C"]
    assert sorted(k for r in results for k in r.keys) == ["welcome:ops:U0B", "welcome:ops:U0C"]
    assert [e[1] for e in events(db) if not e[4]] == ["U0B", "U0C"]
