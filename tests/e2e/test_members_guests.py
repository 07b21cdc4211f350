"""Guests and Slack Connect users are left out of a team that takes its members from a channel, unless the
organisation asks for them (`organization.include_guests`, `organization.include_external`): they would answer
the pulse, accept handoffs and decide fast-tracks. Through the refresh (users.info and users.list, as Slack
answers them) and through the served app (a guest joining a team's channel)."""

from __future__ import annotations

import json
import time

from bot.domain.core.process import parse_process
from bot.entry.bootstrap import Deps
from tests.support.members import joined_event, org, people, refresh

ACCOUNTS = {
    "U0AMY": {"team_id": "T0ACME"},  # a full member of our workspace
    "U0GUEST": {"is_restricted": True, "team_id": "T0ACME"},  # a multi-channel guest
    "U0SINGLE": {"is_ultra_restricted": True, "is_restricted": True, "team_id": "T0ACME"},  # single-channel
    "U0EXT": {"is_stranger": True},  # Slack Connect: another workspace's, as users.info shows them
    "U0OTHER": {"team_id": "T0OTHER"},  # Slack Connect: a shared channel's member from another workspace
}


def setup(fake, many: bool):
    people(fake, ACCOUNTS)
    for user, fields in ACCOUNTS.items():
        fake.users[user].update(fields)
    crowd = [f"U{i:04d}" for i in range(60)] if many else []  # over 50 newcomers: one users.list, not users.info
    people(fake, crowd)
    fake.channels["C0OPS"] = {"members": [*ACCOUNTS, *crowd]}
    return crowd


def members_of(db, cfg) -> set[str]:
    return set(Deps(cfg, db).cfg.team("ops").members)


def test_guests_and_external_people_are_left_out_by_default(db, fake):
    for many in (False, True):
        crowd = setup(fake, many)
        cfg = parse_process(org(ops={"members_from_channel": True}, qa={"members": ["U0QA"]}))
        refresh(db, cfg, fake)
        assert members_of(db, cfg) == {"U0AMY", *crowd}
        fake.channels.clear()


def test_the_organisation_may_ask_for_guests_and_external_people(db, fake):
    setup(fake, False)
    spec = org(ops={"members_from_channel": True}, qa={"members": ["U0QA"]})
    guests = parse_process({**spec, "organization": {**spec["organization"], "include_guests": True}})
    refresh(db, guests, fake)
    assert members_of(db, guests) == {"U0AMY", "U0GUEST", "U0SINGLE"}


def test_external_people_when_asked_for(db, fake):
    setup(fake, False)
    spec = org(ops={"members_from_channel": True}, qa={"members": ["U0QA"]})
    both = parse_process(
        {**spec, "organization": {**spec["organization"], "include_guests": True, "include_external": True}}
    )
    refresh(db, both, fake)
    assert members_of(db, both) == set(ACCOUNTS)


def test_a_guest_joining_a_team_channel_is_not_made_a_member_nor_welcomed(steward, fake, db):
    people(fake, ["U0GUEST", "U0ERIN"])
    fake.users["U0GUEST"].update(is_restricted=True)
    for user, event_id in (("U0GUEST", "Ev1"), ("U0ERIN", "Ev2")):
        assert steward.post(joined_event(user, "C0QA", event_id), content_type="application/json").status == 200
    fake.wait("chat.postMessage")
    fake.settle(quiet=0.3)
    assert len(fake.messages("U0ERIN")) == 1 and fake.messages("U0GUEST") == []
    # the guest cannot act as a member either: /handoff says so privately
    time.sleep(1.1)  # each worker looks at the members' stamp once a second at most
    r = steward.command("U0GUEST", "")
    assert r.status == 200 and "not a member of any team" in json.loads(r.raw)["text"]
