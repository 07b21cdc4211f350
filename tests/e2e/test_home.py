"""The App Home through Slack's protocol: signed Events API `app_home_opened` (event_callback envelope), the
fake's views.publish, the cards' buttons clicked on the Home, on every database the tests run on."""

from __future__ import annotations

import time
from datetime import datetime, timedelta
from types import SimpleNamespace

from sqlmodel import select

from bot.domain import fasttrack, handoffs, home, pulse
from bot.domain.core import schedule
from bot.domain.core.timeutil import utcnow
from bot.domain.handoffs import Draft
from bot.domain.home import _figures, month_so_far
from bot.entry.bootstrap import Deps
from handlers.home import render_home
from storage.models import HomeView, Outbox, SlackEvent
from tests.support.fasttrack import ask
from tests.support.handoffs import ALL_MET, fresh, send
from tests.support.harness import blocks_text, view_of
from tests.support.home import buttons, home_click, open_home, published, publishes, text_of
from tests.support.pulse_months import SECRET, month_of_answers, organisation

QA_SIGNOFF = "QA sign-off"


def test_home_shows_each_section(steward, fake, db, cfg):
    now = utcnow()
    to_review = handoffs.create(
        db, cfg, "U0ALICE", Draft("design", "eng", "Checkout <!channel> spec", criteria_met=list(ALL_MET)), now
    )
    sent_back = handoffs.create(
        db, cfg, "U0BOB", Draft("eng", "qa", "Release 4.2", criteria_met=["Release notes"]), now
    )
    handoffs.send_back(db, cfg, sent_back.id, "U0CAROL", "rework_requested", "No test plan", now)
    asked = fasttrack.request(
        db, cfg, "U0BOB", fasttrack.Draft("eng", QA_SIGNOFF, "Customer escalation", "Hotfix", "Down"), now
    )[0]

    r = open_home(steward, "U0BOB")
    assert r.status == 200
    view = published(fake, "U0BOB")
    assert view["type"] == "home" and len(view["blocks"]) <= 100
    text = text_of(view)
    assert "*Waiting for you* (2)" in text
    assert f"*#{to_review.id} Checkout &lt;!channel&gt; spec*" in text and "<!channel>" not in text
    assert "Review due <!date^" in text
    assert f"*#{sent_back.id} Release 4.2*" in text and "Sent back for rework by *Quality*" in text
    assert ("handoff_accept", str(to_review.id)) in buttons(view) and (
        "handoff_resubmit",
        str(sent_back.id),
    ) in buttons(view)
    assert ("fasttrack_approve", str(asked.id)) not in buttons(view)  # nobody decides their own request
    assert (
        "*Engineering*\nSent 1 (+1) · received 1 (+1)" in text
        and "*Design*" not in text.split("*Your team this month*")[1].split("*Your boundaries*")[0]
    )
    assert "Fast-track budget: used 0 of 1 allowed this month (10% of 1 item, at least 1)" in text
    assert "Improvement initiative: none shared yet" in text
    assert "*Design → Engineering* · centralized · SLA 48 working hours · steward <@U0STEW>" in text
    assert "Criteria: Specification with acceptance criteria; Wireframes; Glossary of terms" in text
    assert "*Engineering → Quality* · hybrid · SLA 24 working hours" in text
    assert (
        "*Architecture review*: standard set by Engineering · exceptions granted by <@U0ALICE> · executed by Engineering"
        in text
    )
    assert "*Design review*" not in text and "*QA sign-off*:" not in text  # rows of other teams
    assert "pulse" not in text.lower()  # no [pulse] in this process

    # A decider sees the request with its budget and the card's buttons; the person in no team gets the short Home.
    open_home(steward, "U0STEW")
    stew = published(fake, "U0STEW")
    assert ("fasttrack_approve", str(asked.id)) in buttons(stew) and ("fasttrack_deny", str(asked.id)) in buttons(stew)
    assert "Within budget: this request is 1 of 1 allowed this month" in text_of(stew)
    assert ("handoff_accept", str(to_review.id)) in buttons(stew)  # the steward of design → eng may review it
    open_home(steward, "U0EVE")
    eve = text_of(published(fake, "U0EVE"))
    assert "You are not in any team" in eve and "`members`" in eve and "U0EVE" in eve


def test_tab_messages_is_not_the_home(steward, fake, db):
    assert open_home(steward, "U0BOB", tab="messages").status == 200
    fake.settle(quiet=0.3)
    assert publishes(fake, "U0BOB") == 0
    with db.read() as s:
        assert s.get(HomeView, "U0BOB") is None


def test_acting_from_home_updates_the_card_and_the_home(steward, fake, db):
    h = send(steward, fake)
    open_home(steward, "U0BOB")
    assert ("handoff_accept", str(h.id)) in buttons(published(fake, "U0BOB"))
    fresh(fake)
    assert home_click(steward, "U0BOB", "handoff_accept", str(h.id)).status == 200
    update = fake.wait("chat.update")[0]
    assert update.args["ts"] == h.message_ts and "Accepted" in blocks_text(update.args)
    after = published(fake, "U0BOB")
    assert ("handoff_accept", str(h.id)) not in buttons(after) and "Nothing waits for you" in text_of(after)
    assert handoffs.get(db, h.id).state == "accepted" and [e.kind for e in handoffs.history(db, h.id)] == [
        "created",
        "accepted",
    ]


def test_acting_on_the_card_republishes_active_homes_only(steward, fake, db):
    with db.write() as s:  # U0AMY (design and eng) last opened her Home 31 days ago
        s.add(HomeView(user="U0AMY", opened_at=utcnow() - timedelta(days=31)))
    open_home(steward, "U0BOB")
    published(fake, "U0BOB")
    h = send(steward, fake)  # created: it waits for U0BOB
    first = published(fake, "U0BOB", 2)
    assert ("handoff_accept", str(h.id)) in buttons(first)
    fresh(fake)
    steward.click("U0BOB", "handoff_rework", str(h.id))  # on the card: the modal, then the reason

    modal = view_of(fake.wait("views.open")[0])
    assert steward.submit("U0BOB", modal, {"reason": "Error states missing"}).status == 200
    fake.wait("chat.update")
    sent_back = published(fake, "U0BOB")
    assert ("handoff_accept", str(h.id)) not in buttons(sent_back)
    fake.settle(quiet=0.3)
    assert publishes(fake, "U0AMY") == 0  # inactive for more than 30 days: not re-published
    with db.read() as s:
        assert s.exec(select(Outbox).where(Outbox.key == "home:U0AMY")).first() is None
        assert s.exec(select(Outbox).where(Outbox.key == "home:U0ALICE")).first() is None  # never opened it


def test_duplicate_events_and_retries_do_nothing_twice(steward, fake, db):
    assert open_home(steward, "U0BOB", event_id="Ev0DUP1").status == 200
    published(fake, "U0BOB")
    assert open_home(steward, "U0BOB", event_id="Ev0DUP1").status == 200  # the same delivery again
    assert open_home(steward, "U0BOB", event_id="Ev0DUP1", retry=1).status == 200  # Slack's retry of it
    fake.settle(quiet=0.4)
    assert publishes(fake, "U0BOB") == 1
    with db.read() as s:
        assert [e.event_id for e in s.exec(select(SlackEvent))] == ["Ev0DUP1"]
        row = s.exec(select(Outbox).where(Outbox.key == "home:U0BOB")).one()
        assert row.generation == 1 and row.status == "sent"
    # a retry of a delivery never handled (the first one lost) is handled
    assert open_home(steward, "U0BOB", event_id="Ev0NEW2", retry=2).status == 200
    published(fake, "U0BOB", 2)


def test_opening_home_is_answered_at_once(steward, fake, db, cfg):
    for i in range(30):
        handoffs.create(db, cfg, "U0ALICE", Draft("design", "eng", f"Item {i}", criteria_met=list(ALL_MET)))
    started = time.monotonic()
    r = open_home(steward, "U0BOB")
    acked = time.monotonic() - started
    assert r.status == 200 and acked < 1.0, acked  # Slack wants it within 3 s; the Home is published after
    view = published(fake, "U0BOB")
    assert "*To review* (30), oldest first" in text_of(view) and "…and 20 more to review" in text_of(view)
    assert len([b for b in buttons(view) if b[0] == "handoff_accept"]) == home.SHOW_REVIEWS


def test_forged_and_stale_home_clicks_get_a_private_answer(steward, fake, db, cfg):
    h = send(steward, fake)
    handoffs.accept(db, cfg, h.id, "U0BOB")
    open_home(steward, "U0BOB")
    published(fake, "U0BOB")
    fresh(fake)
    assert home_click(steward, "U0BOB", "handoff_accept", "nope").status == 200
    dm = fake.wait("chat.postMessage")[0]
    assert dm.args["channel"] == "U0BOB" and "does not name a handoff" in blocks_text(dm.args)
    fresh(fake)
    assert home_click(steward, "U0BOB", "handoff_accept", str(h.id)).status == 200  # stale: accepted meanwhile
    dm = fake.wait("chat.postMessage")[0]
    assert "already accepted" in blocks_text(dm.args)
    published(fake, "U0BOB")  # the stale Home is published again
    assert fake.of("chat.update") == []
    fresh(fake)
    assert home_click(steward, "U0EVE", "fasttrack_approve", "999999").status == 200  # no such request
    assert "There is no fast-track request #999999" in blocks_text(fake.wait("chat.postMessage")[0].args)
    fresh(fake)
    assert home_click(steward, "U0EVE", "home_pulse_pause", "pause").status == 200  # no [pulse] here
    assert "does not ask you" in blocks_text(fake.wait("chat.postMessage")[0].args)


def test_home_satisfaction_is_only_what_the_digest_shows(db):
    """A team's satisfaction on its Home is the digest's figure of the last closed month, held back where the
    digest holds it back (under min_group, or to keep a small group from being worked out)."""

    cfg = organisation()
    for monday, score in ((datetime(2026, 10, 5), 4), (datetime(2026, 11, 2), 2)):
        month_of_answers(db, cfg, monday, score, "right")
    at = datetime(2026, 12, 3, 9)
    deps = Deps(cfg=cfg, db=db, now=lambda: at, sealer=pulse.Sealer(SECRET))

    def team_line(user: str) -> str:
        text = text_of(render_home(deps, SimpleNamespace(params={"user": user})))
        return next(line for line in text.split("\n") if line.startswith("Satisfaction"))

    assert team_line("U0DESIGN0") == "Satisfaction (Nov 2026): 2.0 of 5 ↓ worse"  # shown in the digest, with its change
    assert team_line("U0ENG0").startswith("Satisfaction (Nov 2026): not shown")  # held back by the digest (subtraction)
    assert team_line("U0QA0").startswith("Satisfaction (Nov 2026): not shown")  # 4 answered, under 5
    without = Deps(cfg=cfg, db=db, now=lambda: at)  # no PULSE_SECRET: no satisfaction line at all
    assert "Satisfaction" not in text_of(render_home(without, SimpleNamespace(params={"user": "U0DESIGN0"})))


def test_approving_from_home_decides_as_the_card_does(steward, fake, db):

    open_home(steward, "U0CAROL")
    published(fake, "U0CAROL")
    ask(steward, fake)  # U0BOB asks; U0CAROL and U0STEW decide
    fake.wait("chat.postMessage", 3)
    (row,) = fasttrack.listing(db, "U0BOB")[0]
    assert ("fasttrack_approve", str(row.id)) in buttons(
        published(fake, "U0CAROL", 2)
    )  # the request re-published her Home
    fresh(fake)
    assert home_click(steward, "U0CAROL", "fasttrack_approve", str(row.id)).status == 200
    fake.wait("chat.update", 2)  # both deciders' cards, in place
    assert all("Approved* by <@U0CAROL>" in blocks_text(u.args) for u in fake.of("chat.update"))
    assert ("fasttrack_approve", str(row.id)) not in buttons(published(fake, "U0CAROL"))
    assert [e.kind for e in fasttrack.history(db, row.id)] == ["requested", "approved"]


def test_month_to_date_figures_are_reused_then_computed_again_in_the_background(db, cfg, monkeypatch):

    monkeypatch.setenv("HOME_FIGURES_SECONDS", "60")
    period = schedule.period_of(utcnow(), cfg.organization.tz)
    bounds = schedule.bounds(period, cfg.organization.tz)
    ids = [t.id for t in cfg.teams]
    _figures.clear()
    first = month_so_far(db, period, *bounds, ids)
    handoffs.create(db, cfg, "U0ALICE", Draft("design", "eng", "New", criteria_met=list(ALL_MET)))
    assert month_so_far(db, period, *bounds, ids) is first  # reused within the minute
    key = next(iter(_figures))
    _figures[key] = (time.monotonic() - 61, first)  # a minute old: shown once more, computed again meanwhile
    assert month_so_far(db, period, *bounds, ids) is first
    deadline = time.monotonic() + 10
    while _figures[key][1] is first and time.monotonic() < deadline:
        time.sleep(0.01)
    assert _figures[key][1].teams["design"].sent == first.teams["design"].sent + 1
    _figures[key] = (time.monotonic() - 601, first)  # ten times too old: computed before it is shown
    assert month_so_far(db, period, *bounds, ids).teams["design"].sent == first.teams["design"].sent + 1
    monkeypatch.setenv("HOME_FIGURES_SECONDS", "0")  # 0: computed every time
    assert month_so_far(db, period, *bounds, ids) is not month_so_far(db, period, *bounds, ids)
    _figures.clear()
