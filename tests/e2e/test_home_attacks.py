"""Attacks on the App Home from outside: forged and malformed Events API payloads, clicks from a Home on items
the person may not act on, concurrent clicks, re-publishing and Slack refusing views.publish, user text, and
a person leaving a team. Through the served app and the fake Slack where the Slack path is the point."""

from __future__ import annotations

import json
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta

import pytest
from slack_sdk import WebClient
from sqlmodel import select

from bot.domain import fasttrack, handoffs, home, initiatives, members
from bot.domain.core import outbox, schedule
from bot.domain.core.process import load_process, parse_process
from bot.domain.core.timeutil import utcnow
from bot.domain.handoffs import Draft
from bot.entry.bootstrap import Deps
from handlers import deliverer, members as slack_members
from storage.models import HomeView, Outbox, SlackEvent
from tests.support.data import PROCESS
from tests.support.fasttrack import ask, cards_to
from tests.support.handoffs import ALL_MET, fresh, send
from tests.support.harness import TOKEN, blocks_text
from tests.support.home import buttons, home_click, open_home, published, publishes, text_of
from tests.support.members import org

QA = ["Release notes", "Test plan"]


def envelope(event, **extra) -> bytes:
    body = {
        "token": "legacy",
        "team_id": "T0ACME",
        "api_app_id": "A0STEWARD",
        "type": "event_callback",
        "event_id": f"Ev{time.monotonic_ns()}",
        "event_time": int(time.time()),
        "event": event,
        **extra,
    }
    return json.dumps(body).encode()


def homes_written(db) -> list[str]:
    with db.read() as s:
        return sorted(s.exec(select(HomeView.user)).all())


# -- forged and malformed app_home_opened ----------------------------------------------------------------


def test_malformed_app_home_opened_is_answered_without_a_trace_and_publishes_nothing(steward, fake, db):
    base = {"type": "app_home_opened", "channel": "D0BOB", "tab": "home", "event_ts": "1.0"}
    logged = len(steward.output())
    bodies = [
        envelope({k: v for k, v in base.items()}),  # no user
        envelope({**base, "user": 12345}),
        envelope({**base, "user": ["U0BOB"]}),
        envelope({**base, "user": "U0BOB<!channel>"}),
        envelope({**base, "user": "u0bob"}),
        envelope({**base, "user": "U0BOB", "tab": None}),
        envelope({**base, "user": "U0BOB", "tab": "about"}),
        envelope({**base, "user": "U0BOB", "tab": ["home"]}),
        envelope({**base, "user": "U0BOB"}, event_id=["x"]),  # a wrong type: not a delivery Slack makes (400)
        envelope({**base, "user": {"id": "U0BOB"}}),
        json.dumps({"type": "event_callback", "event": "app_home_opened"}).encode(),
        json.dumps({"type": "event_callback", "event": ["app_home_opened"]}).encode(),
        json.dumps(["not", "an", "object"]).encode(),
        b"{not json",
    ]
    for body in bodies:
        r = steward.post(body, content_type="application/json")
        assert r.status < 500, (r.status, body[:200])
    fake.settle(quiet=0.4)
    assert fake.of("views.publish") == [] and homes_written(db) == []
    assert "Traceback" not in steward.output()[logged:]


def test_an_unsigned_or_replayed_open_is_refused(steward, fake, db):
    body = envelope({"type": "app_home_opened", "user": "U0BOB", "channel": "D0BOB", "tab": "home", "event_ts": "1.0"})
    assert steward.post(body, content_type="application/json", signed=False).status == 401
    assert (
        steward.post(body, content_type="application/json", timestamp=int(time.time()) - 3600).status == 401
    )  # old: a replay
    fake.settle(quiet=0.3)
    assert publishes(fake, "U0BOB") == 0 and homes_written(db) == []


def test_an_open_naming_another_person_publishes_only_that_persons_own_home(steward, fake, db, cfg):
    """`event.user` is whose tab was opened; `authorizations` name the installation. An event naming U0CAROL
    (whoever sent it) publishes U0CAROL's own Home to U0CAROL: nothing of anyone else's, to nobody else."""
    h = handoffs.create(db, cfg, "U0ALICE", Draft("design", "eng", "Secret design spec", criteria_met=list(ALL_MET)))
    body = envelope(
        {"type": "app_home_opened", "user": "U0CAROL", "channel": "D0BOB", "tab": "home", "event_ts": "1.0"},
        authorizations=[{"enterprise_id": None, "team_id": "T0ACME", "user_id": "U0BOB", "is_bot": False}],
    )
    assert steward.post(body, content_type="application/json").status == 200
    view = published(fake, "U0CAROL")
    fake.settle(quiet=0.3)
    assert [c.args["user_id"] for c in fake.of("views.publish")] == ["U0CAROL"]
    assert "Secret design spec" not in text_of(view) and ("handoff_accept", str(h.id)) not in buttons(view)


def test_replayed_event_ids_and_retries_with_a_new_id(steward, fake, db):
    for _ in range(3):
        assert open_home(steward, "U0BOB", event_id="Ev0SAME").status == 200
    assert open_home(steward, "U0BOB", event_id="Ev0SAME", retry=3).status == 200
    published(fake, "U0BOB")
    assert open_home(steward, "U0BOB", event_id="Ev0OTHER", retry=1).status == 200  # a retry of a delivery never seen
    published(fake, "U0BOB", 2)
    fake.settle(quiet=0.3)
    assert publishes(fake, "U0BOB") == 2
    with db.read() as s:
        assert sorted(s.exec(select(SlackEvent.event_id)).all()) == ["Ev0OTHER", "Ev0SAME"]


# -- clicks from the Home on what the person may not act on -------------------------------------------------


def test_a_refused_home_click_is_told_privately_and_republishes_the_home(steward, fake, db, cfg):
    """README: "a refusal or a stale click is answered privately by DM, and the Home is published again"."""
    h = handoffs.create(db, cfg, "U0ALICE", Draft("design", "eng", "Spec", criteria_met=list(ALL_MET)))
    open_home(steward, "U0CAROL")
    published(fake, "U0CAROL")
    fresh(fake)
    assert home_click(steward, "U0CAROL", "handoff_accept", str(h.id)).status == 200  # not hers to review
    dm = fake.wait("chat.postMessage")[0]
    assert dm.args["channel"] == "U0CAROL" and "Only members of Engineering" in blocks_text(dm.args)
    published(fake, "U0CAROL")  # the Home drawn again
    assert handoffs.get(db, h.id).state == "open" and fake.of("chat.update") == []
    fresh(fake)
    ask = fasttrack.request(
        db, cfg, "U0BOB", fasttrack.Draft("eng", "QA sign-off", "Customer escalation", "Hotfix", "Down")
    )[0]
    assert home_click(steward, "U0BOB", "fasttrack_approve", str(ask.id)).status == 200  # his own request
    assert "separation of duties" in blocks_text(fake.wait("chat.postMessage")[0].args)
    published(fake, "U0BOB")
    assert fasttrack.get(db, ask.id).state == "pending"


def test_clicks_on_decided_and_cancelled_items_from_a_stale_home(steward, fake, db, cfg):
    h = handoffs.create(db, cfg, "U0ALICE", Draft("design", "eng", "Spec", criteria_met=list(ALL_MET)))
    r = fasttrack.request(
        db, cfg, "U0BOB", fasttrack.Draft("eng", "QA sign-off", "Customer escalation", "Hotfix", "Down")
    )[0]
    open_home(steward, "U0STEW")
    stale_view = published(fake, "U0STEW")
    assert ("handoff_accept", str(h.id)) in buttons(stale_view) and ("fasttrack_deny", str(r.id)) in buttons(stale_view)
    handoffs.cancel(db, cfg, h.id, "U0ALICE")
    fasttrack.decide(db, cfg, r.id, "U0CAROL", approve=True)
    fresh(fake)
    for action, value in (
        ("handoff_accept", h.id),
        ("handoff_rework", h.id),
        ("fasttrack_approve", r.id),
        ("fasttrack_deny", r.id),
    ):
        assert home_click(steward, "U0STEW", action, str(value)).status == 200
    fake.wait("chat.postMessage", 4)
    fake.settle(quiet=0.3)
    told = [blocks_text(c.args) for c in fake.of("chat.postMessage")]
    assert sum("cancelled" in t for t in told) == 2 and sum("approved" in t.lower() for t in told) == 2, told
    assert fake.of("views.open") == [] and fake.of("chat.update") == []
    assert handoffs.get(db, h.id).state == "cancelled" and [e.kind for e in fasttrack.history(db, r.id)] == [
        "requested",
        "approved",
    ]
    after = published(fake, "U0STEW")
    assert not [b for b in buttons(after) if b[0].startswith(("handoff_", "fasttrack_"))]


def test_home_click_and_card_click_at_once_make_one_decision(steward, fake, db):
    for _ in range(3):
        h = send(steward, fake)  # U0ALICE → eng: U0BOB and U0AMY may review
        fresh(fake)
        h = handoffs.get(db, h.id)  # with its card's ts
        open_home(steward, "U0BOB")
        open_home(steward, "U0AMY")
        before_bob, before_amy = published(fake, "U0BOB"), published(fake, "U0AMY")
        assert ("handoff_accept", str(h.id)) in buttons(before_bob) and ("handoff_accept", str(h.id)) in buttons(
            before_amy
        )
        fresh(fake)
        clicks = [
            lambda: home_click(steward, "U0BOB", "handoff_accept", str(h.id)),
            lambda: steward.click("U0AMY", "handoff_accept", str(h.id), channel="C0ENG", message_ts=h.message_ts),
            lambda: home_click(steward, "U0BOB", "handoff_accept", str(h.id)),
        ]  # and a double click
        with ThreadPoolExecutor(3) as pool:
            assert [f.result().status for f in [pool.submit(c) for c in clicks]] == [200, 200, 200]
        fake.wait("chat.update")
        deadline = time.monotonic() + 10
        while (
            not [c for c in fake.of("chat.postMessage") if c.args["channel"] == "U0ALICE"]
            and time.monotonic() < deadline
        ):
            time.sleep(0.01)  # the sender's DM, delivered after the card
        fake.settle(quiet=0.4)
        assert [e.kind for e in handoffs.history(db, h.id)] == ["created", "accepted"]
        assert len([u for u in fake.of("chat.update") if u.args["ts"] == h.message_ts]) == 1
        assert (
            len(
                [
                    c
                    for c in fake.of("chat.postMessage")
                    if c.args["channel"] == "U0ALICE" and "ccepted" in blocks_text(c.args)
                ]
            )
            == 1
        )
        for user in ("U0BOB", "U0AMY"):  # both Homes updated: the item gone
            assert ("handoff_accept", str(h.id)) not in buttons(published(fake, user))


# -- re-publishing ---------------------------------------------------------------------------------------


def test_a_change_republishes_exactly_the_people_it_concerns_and_coalesces(db, cfg):
    now = utcnow()
    with db.write() as s:
        for user in ("U0ALICE", "U0AMY", "U0BOB", "U0CAROL", "U0STEW", "U0EVE", "U0HEAD"):
            s.add(HomeView(user=user, opened_at=now - timedelta(days=1)))
        s.add(HomeView(user="U0DAN", opened_at=now - timedelta(days=30, minutes=1)))
    h = handoffs.create(db, cfg, "U0BOB", Draft("eng", "qa", "Release", criteria_met=QA), now)  # eng → qa
    with db.read() as s:
        keys = sorted(s.exec(select(Outbox.key).where(Outbox.kind == outbox.PUBLISH)).all())
    assert keys == ["home:U0AMY", "home:U0BOB", "home:U0CAROL", "home:U0STEW"]  # reviewers, the sender's team
    r = fasttrack.request(
        db, cfg, "U0AMY", fasttrack.Draft("eng", "QA sign-off", "Customer escalation", "Hotfix", "Down"), now
    )[0]
    assert set(r.deciders) == {"U0CAROL", "U0STEW"}
    for i in range(8):  # many changes: one row per person, pending once
        handoffs.create(db, cfg, "U0BOB", Draft("eng", "qa", f"Release {i}", criteria_met=QA), now)
    handoffs.send_back(db, cfg, h.id, "U0CAROL", "rework_requested", "No plan", now)
    with db.read() as s:
        rows = {o.key: o for o in s.exec(select(Outbox).where(Outbox.kind == outbox.PUBLISH))}
    assert sorted(rows) == ["home:U0AMY", "home:U0BOB", "home:U0CAROL", "home:U0STEW"]
    assert rows["home:U0CAROL"].generation == 11 and rows["home:U0CAROL"].status == "pending"
    assert "home:U0DAN" not in rows and "home:U0HEAD" not in rows and "home:U0ALICE" not in rows


def test_views_publish_refused_or_failing_loses_nothing_and_never_loops(db, cfg, fake):
    now = utcnow()
    deps = Deps(cfg=cfg, db=db)
    d = deliverer(deps, WebClient(token=TOKEN, base_url=fake.url, timeout=1), now=utcnow)
    keys = home.opened(db, "U0BOB", "Ev0FAIL", now)
    fake.rate_limit("views.publish", retry_after=30)
    assert d.send_now(keys)["ratelimited"] == 1
    assert outbox.get(db, "home:U0BOB").next_at >= utcnow() + timedelta(seconds=25)
    with db.write() as s:
        s.get(Outbox, outbox.get(db, "home:U0BOB").id).next_at = utcnow()
    fake.server_error("views.publish", 503)
    assert d.send_now(keys)["later"] == 1
    with db.write() as s:
        s.get(Outbox, outbox.get(db, "home:U0BOB").id).next_at = utcnow()
    fake.store_then_hang("views.publish", 2)
    assert d.send_now(keys)["later"] == 1  # time-out: resent without a look (views.publish sets the view)
    row = outbox.get(db, "home:U0BOB")
    assert row.status == "pending" and not row.check
    with db.write() as s:
        s.get(Outbox, row.id).next_at = utcnow()
    fake.fail("views.publish", "invalid_blocks")
    assert d.send_now(keys)["failed"] == 1
    calls = len(fake.of("views.publish"))
    d.sweep(max_seconds=1, until_idle=True)
    assert len(fake.of("views.publish")) == calls  # refused for good: not tried again by itself
    assert fake.of("chat.postMessage") == []  # nobody acted: nobody told
    assert outbox.get(db, "home:U0BOB").status == "failed"
    fake.rejections.clear()
    # the next change or opening writes it again, and it is published
    keys = home.opened(db, "U0BOB", "Ev0AGAIN", utcnow())
    assert d.send_now(keys)["sent"] == 1 and outbox.get(db, "home:U0BOB").status == "sent"


# -- user text -------------------------------------------------------------------------------------------


def test_hostile_and_long_user_text_and_many_items_stay_escaped_and_within_slacks_limits(steward, fake, db, cfg):

    nasty = "<!channel> & <@U0EVE> *bold* _it_ `code` <https://evil.example|click> " + "&<>" * 400
    now = utcnow()
    for i in range(60):
        handoffs.create(
            db, cfg, "U0ALICE", Draft("design", "eng", (str(i) + nasty)[:150], criteria_met=list(ALL_MET)), now
        )
    for i in range(40):
        sent = handoffs.create(db, cfg, "U0BOB", Draft("eng", "qa", (str(i) + nasty)[:150], criteria_met=QA), now)
        handoffs.send_back(db, cfg, sent.id, "U0CAROL", "rework_requested", nasty[:500], now)
    for i in range(12):
        fasttrack.request(
            db, cfg, "U0AMY", fasttrack.Draft("eng", "QA sign-off", "Other", nasty[:300], nasty[:2000]), now
        )

    initiatives.share(
        db,
        cfg,
        "eng",
        schedule.period_of(now, cfg.organization.tz),
        "U0BOB",
        nasty[:280],
        "failure_rate_sent",
        "U0BOB",
        now,
    )
    for user in ("U0BOB", "U0STEW", "U0AMY"):
        open_home(steward, user)
        view = published(fake, user)
        assert len(view["blocks"]) <= 100
        text = text_of(view)
        assert "<!channel>" not in text and "<@U0EVE>" not in text and "<https://evil" not in text
        for block in view["blocks"]:
            for t in [block.get("text", {}).get("text", "")] + [
                e.get("text", "") for e in block.get("elements", []) if isinstance(e.get("text"), str)
            ]:
                assert len(t) <= 3000, (user, len(t))
    bob = text_of(published(fake, "U0BOB"))
    assert "*To review* (60)" in bob and "…and 50 more to review" in bob and "…and 35 more sent back" in bob


# -- membership from Slack ---------------------------------------------------------------------------------


def test_a_person_who_leaves_a_team_stops_seeing_and_acting_on_its_items(steward, fake, db):
    base = load_process(PROCESS)  # qa: U0CAROL, and its user group S0QA's members
    client = WebClient(token=TOKEN, base_url=fake.url)
    fake.users["U0DAN"] = {"name": "dan"}
    fake.usergroups["S0QA"] = {"users": ["U0DAN"]}
    slack_members.refresh(db, base, client, utcnow(), lambda line: None)
    h = handoffs.create(db, Deps(cfg=base, db=db).cfg, "U0BOB", Draft("eng", "qa", "Release 9", criteria_met=QA))

    open_home(steward, "U0DAN")  # the Home is drawn with the members as they are now
    view = published(fake, "U0DAN")
    assert ("handoff_accept", str(h.id)) in buttons(view)
    fake.settle(quiet=0.3)
    count = publishes(fake, "U0DAN")

    fake.usergroups["S0QA"] = {"users": []}  # U0DAN leaves qa
    keys = slack_members.refresh(db, base, client, utcnow(), lambda line: None)
    left_at = time.monotonic()
    deps = Deps(cfg=base, db=db)
    deliverer(deps, client, now=utcnow).send_now(keys)
    after = published(fake, "U0DAN", count + 1)  # the Home he opened is published again at once
    assert ("handoff_accept", str(h.id)) not in buttons(after) and "Release 9" not in text_of(after)

    fresh(fake)
    time.sleep(
        max(0.0, left_at + members.CHECK_EVERY + 0.1 - time.monotonic())
    )  # every worker has looked at the members since
    for _ in range(4):  # and a click from the old Home is refused, on whichever worker it reaches
        home_click(steward, "U0DAN", "handoff_accept", str(h.id))
    fake.wait("chat.postMessage", 4)
    assert all("Only members of Quality" in blocks_text(c.args) for c in fake.of("chat.postMessage"))
    assert handoffs.get(db, h.id).state == "open"


def home_click_on(steward, user: str, view: dict, action_id: str, value: str):
    """A click on a button of a Home view as published (Slack sends the button's block id with it)."""
    block = next(
        b
        for b in view["blocks"]
        if b["type"] == "actions"
        and any(e["action_id"] == action_id and e.get("value") == value for e in b["elements"])
    )
    payload = {
        "type": "block_actions",
        "user": {"id": user, "username": user.lower(), "name": user.lower(), "team_id": "T0ACME"},
        "api_app_id": "A0STEWARD",
        "token": "legacy",
        "trigger_id": f"trigger-{time.monotonic_ns()}",
        "team": {"id": "T0ACME", "domain": "acme"},
        "container": {"type": "view", "view_id": "VHOME"},
        "view": {"id": "VHOME", "type": "home", "callback_id": "home", "hash": "h0", "blocks": view["blocks"]},
        "actions": [
            {
                "action_id": action_id,
                "block_id": block["block_id"],
                "type": "button",
                "value": value,
                "action_ts": str(time.time()),
            }
        ],
    }
    return steward.interact(payload)


def test_accept_on_a_home_drawn_before_a_resubmission_does_not_accept_the_new_round(steward, fake, db, cfg):
    """U0BOB's Home shows round 1; meanwhile it was sent back and resubmitted (round 2, changed work). His click
    on the Home he saw must not accept work he has not seen: he is told, and his Home is drawn again."""
    h = send(steward, fake)
    open_home(steward, "U0BOB")
    seen = published(fake, "U0BOB")
    fake.settle(quiet=0.2)
    handoffs.send_back(db, cfg, h.id, "U0AMY", "rework_requested", "Missing states", utcnow())
    handoffs.resubmit(db, cfg, h.id, "U0ALICE", list(ALL_MET), "Now with error states", None, utcnow())
    assert handoffs.get(db, h.id).round == 2
    fresh(fake)
    assert home_click_on(steward, "U0BOB", seen, "handoff_accept", str(h.id)).status == 200
    dm = fake.wait("chat.postMessage")[0]
    assert dm.args["channel"] == "U0BOB" and "round 2" in blocks_text(dm.args)
    again = published(fake, "U0BOB")
    assert handoffs.get(db, h.id).state == "open" and [e.kind for e in handoffs.history(db, h.id)][-1] == "resubmitted"
    assert "round 2" in text_of(again)
    fresh(fake)
    assert (
        home_click_on(steward, "U0BOB", again, "handoff_accept", str(h.id)).status == 200
    )  # from the Home as it is now
    fake.wait("chat.update")
    assert handoffs.get(db, h.id).state == "accepted"


def test_joining_a_teams_channel_republishes_the_joiners_home(db):

    cfg = parse_process(org(ops={"members_from_channel": True, "members": ["U0LEAD"]}, qa={"members": ["U0QA"]}))
    now = utcnow()
    with db.write() as s:
        s.add(HomeView(user="U0NEW", opened_at=now - timedelta(days=2)))
    keys = members.joined_channel(db, cfg, "C0OPS", "U0NEW", now)
    assert "home:U0NEW" in keys and "welcome:ops:U0NEW" in keys  # now a member: his Home lists the team's items
    assert "home:U0OLD" not in members.joined_channel(db, cfg, "C0OPS", "U0OLD", now)  # never opened it


def test_a_granter_who_leaves_the_granting_team_stops_seeing_and_deciding_its_requests(db):
    """Exceptions to "QA sign-off" granted by the team qa: U0DAN, in qa when the request was made, leaves it."""
    base = load_process(PROCESS)

    def org_with(qa_members):
        rights = tuple(
            r.model_copy(update={"grants_exceptions": ("qa",)}) if r.element == "QA sign-off" else r
            for r in base.rights
        )
        teams = tuple(t.model_copy(update={"members": tuple(qa_members)}) if t.id == "qa" else t for t in base.teams)
        return base.model_copy(update={"rights": rights, "teams": teams})

    before, after = org_with(["U0CAROL", "U0DAN"]), org_with(["U0CAROL"])
    r = fasttrack.request(
        db, before, "U0BOB", fasttrack.Draft("eng", "QA sign-off", "Customer escalation", "Hotfix", "Down")
    )[0]
    assert set(r.deciders) == {"U0CAROL", "U0DAN"}
    assert [x.id for x in home.waiting(db, before, "U0DAN").fasttracks] == [r.id]
    assert home.waiting(db, after, "U0DAN").fasttracks == [] and home.waiting(db, after, "U0DAN").fasttracks_total == 0
    assert [x.id for x in home.waiting(db, after, "U0CAROL").fasttracks] == [r.id]

    with pytest.raises(handoffs.NotAllowed):
        fasttrack.decide(db, after, r.id, "U0DAN", approve=True)
    assert fasttrack.get(db, r.id).state == "pending"
    assert fasttrack.decide(db, after, r.id, "U0CAROL", approve=True).changed


def test_approve_on_a_home_and_on_a_card_at_once_make_one_decision(steward, fake, db):

    open_home(steward, "U0CAROL")
    open_home(steward, "U0STEW")
    published(fake, "U0CAROL")
    published(fake, "U0STEW")
    ask(steward, fake)  # U0BOB asks; U0CAROL and U0STEW decide, each with a card by DM
    fake.wait("chat.postMessage", 3)
    fake.settle(quiet=0.3)
    (r,) = fasttrack.listing(db, "U0BOB")[0]
    stew_card = cards_to(fake, ["U0STEW"])["U0STEW"]
    fresh(fake)
    clicks = [
        lambda: home_click(steward, "U0CAROL", "fasttrack_approve", str(r.id)),
        lambda: steward.click(
            "U0STEW", "fasttrack_approve", str(r.id), channel="D0STEW", message_ts=stew_card.args.get("ts") or "1.0"
        ),
        lambda: home_click(steward, "U0CAROL", "fasttrack_approve", str(r.id)),
    ]
    with ThreadPoolExecutor(3) as pool:
        assert [f.result().status for f in [pool.submit(c) for c in clicks]] == [200, 200, 200]
    fake.wait("chat.update", 2)
    fake.settle(quiet=0.4)
    assert [e.kind for e in fasttrack.history(db, r.id)] == ["requested", "approved"]
    assert len(fake.of("chat.update")) == 2  # each decider's card once
    for user in ("U0CAROL", "U0STEW"):
        assert ("fasttrack_approve", str(r.id)) not in buttons(published(fake, user))
