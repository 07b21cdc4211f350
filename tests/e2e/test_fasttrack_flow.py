"""/fasttrack through signed requests: the form with the budget, the right approvers, refusals, deny
with a reason, one decision however many clicks, the over-budget path, the matrix, the digest."""

from __future__ import annotations

import json
import threading

from sqlmodel import select

from bot.domain import digest, fasttrack
from bot.domain.core import schedule
from bot.domain.core.timeutil import utcnow
from handlers import digest as slack_digest
from storage.models import Handoff
from tests.support.data import PROCESS
from tests.support.fasttrack import CUSTOMER, QA_SIGNOFF, ask, cards_to, open_form
from tests.support.handoffs import fresh, steward_db
from tests.support.harness import Steward, blocks_text, view_of


def test_a_request_reaches_exactly_its_approvers_with_the_budget(steward, fake, db, cfg):
    view = open_form(steward, fake)
    assert view["callback_id"] == "fasttrack_submit"
    assert "*Engineering* has used 0 of 1 allowed this month (10% of 0 items, at least 1)." in blocks_text(view)
    assert "(optional)" not in json.dumps(view)  # Slack adds it to an optional input's label
    options = [
        o["text"]["text"] for b in view["blocks"] if b.get("block_id") == "element" for o in b["element"]["options"]
    ]
    assert options == ["QA sign-off", "Design review", "Architecture review"]
    fresh(fake)
    ask(steward, fake)
    fake.wait("chat.postMessage", 3)
    fake.settle(quiet=0.3)
    posts = fake.of("chat.postMessage")
    assert sorted(c.args["channel"] for c in posts) == ["U0BOB", "U0CAROL", "U0STEW"]  # two approvers, the receipt
    card = cards_to(fake, {"U0CAROL"})["U0CAROL"]
    text = blocks_text(card.args)
    assert (
        "Within budget: this request is 1 of 1 allowed this month (10% of 0 items, at least 1)." in text
        and "over budget" not in text
    )
    assert "Matrix: *QA sign-off*, standard set by Quality, executed by Quality." in text  # names, not team ids
    assert "Hotfix 4.2.1 &lt;!channel&gt;" in text and "<!channel>" not in text
    assert "Checkout is down for our largest customer" in text
    buttons = [e for b in card.args["blocks"] if b["type"] == "actions" for e in b["elements"]]
    assert [(e["action_id"], e["value"]) for e in buttons] == [
        ("fasttrack_approve", str(fasttrack.listing(db, "U0BOB")[0][0].id)),
        ("fasttrack_deny", str(fasttrack.listing(db, "U0BOB")[0][0].id)),
    ]
    receipt = cards_to(fake, {"U0BOB"})["U0BOB"]
    assert "went to <@U0CAROL>, <@U0STEW>" in blocks_text(receipt.args)
    assert "Within budget: this request is 1 of 1 allowed this month (10% of 0 items, at least 1)." in blocks_text(
        receipt.args
    )
    (row,) = fasttrack.listing(db, "U0BOB")[0]
    assert (row.team, row.element, row.reason, row.state) == ("eng", "QA sign-off", "Customer escalation", "pending")


def test_the_requester_and_outsiders_cannot_decide(steward, fake, db):
    ask(steward, fake)
    fake.wait("chat.postMessage", 3)
    (row,) = fasttrack.listing(db, "U0BOB")[0]
    fresh(fake)
    steward.click("U0BOB", "fasttrack_approve", str(row.id), channel="D0BOB")
    steward.click("U0EVE", "fasttrack_approve", str(row.id), channel="D0EVE")
    steward.click("U0HEAD", "fasttrack_deny", str(row.id), channel="D0HEAD")
    told = [blocks_text(c.args) for c in fake.wait("chat.postEphemeral", 3)]
    assert any("separation of duties" in t for t in told)
    assert sum("Only the approvers the decision-rights matrix names for “QA sign-off”" in t for t in told) == 2
    assert fake.of("views.open") == [] and fake.of("chat.update") == []
    assert fasttrack.get(db, row.id).state == "pending"


def test_deny_needs_and_passes_on_a_reason(steward, fake, db):
    ask(steward, fake)
    fake.wait("chat.postMessage", 3)
    (row,) = fasttrack.listing(db, "U0BOB")[0]
    fresh(fake)
    steward.click("U0CAROL", "fasttrack_deny", str(row.id), channel="D0CAROL")
    modal = view_of(fake.wait("views.open")[0])
    assert modal["callback_id"] == "fasttrack_deny_submit"
    empty = steward.submit("U0CAROL", modal, {"reason": ""})
    assert empty.json() == {
        "response_action": "errors",
        "errors": {"reason": "Give a reason, so the requester knows why."},
    }
    assert steward.submit("U0CAROL", modal, {"reason": "Use the <@U0EVE> standard path"}).status == 200
    updates = fake.wait("chat.update", 2)
    assert all(
        "Denied* by <@U0CAROL>" in blocks_text(u.args) and "fasttrack_approve" not in json.dumps(u.args["blocks"])
        for u in updates
    )
    dm = next(c for c in fake.wait("chat.postMessage") if c.args["channel"] == "U0BOB")
    assert "is *denied* by <@U0CAROL>" in blocks_text(
        dm.args
    ) and "Use the &lt;@U0EVE&gt; standard path" in blocks_text(dm.args)
    assert fasttrack.get(db, row.id).decision_reason == "Use the <@U0EVE> standard path"


def test_one_decision_however_many_clicks(steward, fake, db):
    ask(steward, fake)
    fake.wait("chat.postMessage", 3)
    (row,) = fasttrack.listing(db, "U0BOB")[0]
    fresh(fake)
    clickers = ["U0CAROL", "U0STEW"] * 6
    barrier = threading.Barrier(len(clickers))

    def click(user):
        barrier.wait()
        assert steward.click(user, "fasttrack_approve", str(row.id), channel="D0" + user[2:]).status == 200

    threads = [threading.Thread(target=click, args=(u,)) for u in clickers]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    fake.wait("chat.postEphemeral", len(clickers) - 1)
    fake.settle(quiet=0.5)
    assert len([c for c in fake.of("chat.postMessage") if c.args["channel"] == "U0BOB"]) == 1  # one DM
    assert len(fake.of("chat.update")) == 2  # both approvers' cards, once
    decided = fasttrack.get(db, row.id)
    assert decided.state == "approved" and decided.decided_by in ("U0CAROL", "U0STEW")
    assert all(f"Approved* by <@{decided.decided_by}>" in blocks_text(u.args) for u in fake.of("chat.update"))
    assert [e.kind for e in fasttrack.history(db, row.id)] == ["requested", "approved"]


def test_over_budget_goes_to_the_backup_approvers(steward, fake, db):
    ask(steward, fake)
    fake.wait("chat.postMessage", 3)
    (first,) = fasttrack.listing(db, "U0BOB")[0]
    steward.click("U0STEW", "fasttrack_approve", str(first.id), channel="D0STEW")
    fake.wait("chat.update", 2)
    fresh(fake)
    ask(steward, fake)  # the budget (1, no items) is used: over budget
    fake.wait("chat.postMessage", 2)
    fake.settle(quiet=0.3)
    second = fasttrack.listing(db, "U0BOB")[0][0]
    assert second.over_budget and second.deciders == ["U0HEAD"]
    posts = {c.args["channel"]: blocks_text(c.args) for c in fake.of("chat.postMessage")}
    assert set(posts) == {"U0HEAD", "U0BOB"}  # no card for the regular approvers, who could not act on it
    card = posts["U0HEAD"]
    assert (
        ":warning: This request is over budget: 2 fast-tracks, 1 allowed this month (10% of 0 items, at least 1), so a backup approver decides."
        in card
    )
    assert "Within budget" not in card and "Budget:" not in card
    assert "This request is over budget: 2 fast-tracks, 1 allowed" in posts["U0BOB"]
    fresh(fake)
    steward.click("U0STEW", "fasttrack_approve", str(second.id), channel="D0STEW")
    assert "a backup approver decides it: <@U0HEAD>" in blocks_text(fake.wait("chat.postEphemeral")[0].args)
    steward.click("U0HEAD", "fasttrack_approve", str(second.id), channel="D0HEAD")
    (update,) = fake.wait("chat.update")  # the backup's card
    assert update.args["channel"] == "D0HEAD" and "Approved* by <@U0HEAD>" in blocks_text(update.args)
    assert fasttrack.get(db, second.id).decided_by == "U0HEAD"


def test_a_rerouted_card_says_over_budget_once(steward, fake, db):
    ask(steward, fake)
    fake.wait("chat.postMessage", 3)
    ask(steward, fake)  # both asked while nothing was approved: both within the budget of 1
    fake.wait("chat.postMessage", 6)
    first, second = sorted(fasttrack.listing(db, "U0BOB")[0], key=lambda r: r.id)
    steward.click("U0CAROL", "fasttrack_approve", str(first.id), channel="D0CAROL")
    fake.wait("chat.update", 2)
    fresh(fake)
    steward.click("U0CAROL", "fasttrack_approve", str(second.id), channel="D0CAROL")
    told = blocks_text(fake.wait("chat.postEphemeral")[0].args)
    assert (
        "is now over budget: 2 fast-tracks, 1 allowed this month (10% of 0 items, at least 1), so a backup approver decides it"
        in told
    )
    updates = fake.wait("chat.update", 2)
    new_card = next(c for c in fake.wait("chat.postMessage") if c.args["channel"] == "U0HEAD")
    for card in [u.args for u in updates] + [new_card.args]:
        text = blocks_text(card)
        assert (
            json.dumps(card["blocks"]).count("over budget") == 1
            and "Within budget" not in text
            and "within budget" not in text
        ), text
    for u in updates:  # the regular approvers' existing cards: one line, no buttons
        text = blocks_text(u.args)
        assert ":hourglass: Now over the team's budget, so a backup approver decides: <@U0HEAD>." in text
        assert "fasttrack_approve" not in json.dumps(u.args["blocks"])


def test_a_decision_reaches_the_gates_owner_and_the_linked_handoff(steward, fake, db):

    view = view_of_command(steward, fake, "U0BOB", "qa")
    assert (
        steward.submit(
            "U0BOB", view, {"to_team": "qa", "title": "Release 4.2.1", "criteria-eng-qa": ["Release notes"]}
        ).status
        == 200
    )
    fake.wait("chat.postMessage", 2)
    with steward_db(steward).read() as s:
        h = s.exec(select(Handoff).order_by(Handoff.id.desc())).first()
    fresh(fake)
    ask(steward, fake, handoff=str(h.id))
    (marked,) = fake.wait("chat.update")
    assert marked.args["channel"] == "C0QA" and marked.args["ts"] == h.message_ts
    (r,) = fasttrack.listing(db, "U0BOB")[0]
    assert f":zap: Fast-track #{r.id}: skip *QA sign-off*, asked by <@U0BOB>, waiting for a decision" in blocks_text(
        marked.args
    )
    fake.wait("chat.postMessage", 3)
    fresh(fake)
    steward.click("U0STEW", "fasttrack_approve", str(r.id), channel="D0STEW")
    updates = fake.wait("chat.update", 3)  # two approvers' cards and the handoff's
    card = next(u for u in updates if u.args["channel"] == "C0QA")
    assert f":zap: Fast-track #{r.id}: skip *QA sign-off*, *approved* by <@U0STEW> <!date^" in blocks_text(card.args)
    posts = {c.args["channel"]: c for c in fake.wait("chat.postMessage", 2)}
    assert set(posts) == {"U0BOB", "C0QA"}  # the requester, and Quality, which owns QA sign-off's execution
    notice = blocks_text(posts["C0QA"].args)
    assert f"<@U0STEW> *approved* fast-track *#{r.id}*: *Engineering* (<@U0BOB>) may skip *QA sign-off*" in notice
    assert (
        f"(handoff *#{h.id} Release 4.2.1*)" in notice and "because Quality owns the execution of QA sign-off" in notice
    )

    # a late click is told the decision that stands, with the time as Slack's date token
    fresh(fake)
    steward.click("U0CAROL", "fasttrack_approve", str(r.id), channel="D0CAROL")
    late = fake.wait("chat.postEphemeral")[0].args
    assert f"Fast-track #{r.id} was already approved by <@U0STEW> <!date^" in blocks_text(late)
    assert "{date_short_pretty} {time}|" in blocks_text(late) and " UTC>; nothing changed." in blocks_text(late)


def test_cards_name_people_and_teams(steward, fake, db):
    ask(steward, fake, element="Design review")  # the standard is set by a person, executed by Design
    card = blocks_text(fake.wait("chat.postMessage", 2)[0].args)
    assert "Matrix: *Design review*, standard set by <@U0STEW>, executed by Design." in card


def view_of_command(steward, fake, user, text) -> dict:
    assert steward.command(user, text).status == 200
    return view_of(fake.wait("views.open")[-1])


def test_bad_requests_are_answered_in_the_form(steward, fake, db):
    view = open_form(steward, fake)
    r = steward.submit("U0BOB", view, {"what": "", "element": None, "reason": None, "justification": "x" * 10})
    errors = r.json()["errors"]
    assert r.json()["response_action"] == "errors"
    assert errors == {
        "element": "Choose the gate to skip.",
        "reason": "Choose a reason.",
        "what": "Say what needs to go faster.",
    }
    assert fasttrack.listing(db, "U0BOB")[0] == []
    # in no team: told privately, no form
    r = steward.command("U0EVE", "", command="/fasttrack")
    assert "not a member of any team" in blocks_text(r.json())


def test_rights_list_and_help(steward, fake, db):
    rights = steward.command("U0EVE", "rights", command="/fasttrack").json()
    assert rights["response_type"] == "ephemeral"
    text = blocks_text(rights)
    assert (
        "*QA sign-off*\nSets the standard: Quality · grants exceptions: <@U0CAROL>, <@U0STEW> · owns execution: Quality"
        in text
    )
    assert (
        "*Design review*\nSets the standard: <@U0STEW> · grants exceptions: <@U0STEW> · owns execution: Design" in text
    )
    assert "backup approvers decide: <@U0HEAD>" in text
    ask(steward, fake)
    fake.wait("chat.postMessage", 3)
    mine = blocks_text(steward.command("U0BOB", "list", command="/fasttrack").json())
    assert "skip QA sign-off · Hotfix 4.2.1 &lt;!channel&gt; · Engineering · pending" in mine
    assert "*Engineering* has used 0 of 1 allowed this month (10% of 0 items, at least 1)." in mine  # the form's words
    waiting = blocks_text(steward.command("U0CAROL", "list", command="/fasttrack").json())
    assert "*Awaiting your decision*\n*#" in waiting and "from <@U0BOB>" in waiting
    assert "/fasttrack rights" in blocks_text(steward.command("U0BOB", "help", command="/fasttrack").json())
    assert "There is no /fasttrack command 'bogus'" in blocks_text(
        steward.command("U0BOB", "bogus", command="/fasttrack").json()
    )


def test_the_digest_shows_the_share_and_the_review(steward, fake, db, cfg):
    for _ in range(3):
        ask(steward, fake, user="U0CAROL")  # Quality asks to skip its own QA sign-off: Stew decides
        fake.wait("chat.postMessage", 2)
        row = fasttrack.listing(db, "U0CAROL")[0][0]
        fresh(fake)
        steward.click("U0STEW" if not row.over_budget else "U0HEAD", "fasttrack_approve", str(row.id), channel="D0X")
        fake.wait("chat.update")
        fresh(fake)
    period = schedule.period_of(utcnow(), cfg.organization.tz)
    text = slack_digest.preview(slack_digest.messages(digest.compose(db, cfg, period)))
    assert "Fast-tracks: over budget: 3 fast-tracks, 1 allowed this month (10% of 0 items, at least 1)" in text
    assert (
        f"Quality is over budget: 3 fast-tracks, 1 allowed in {schedule.short_label(period)} (10% of 0 items, at least 1)."
        in text
    )
    assert "Fast-track review" in text
    assert (
        "QA sign-off was skipped 3 times (Customer escalation ×3): a candidate to become standard, for Quality, which sets that standard."
        in text
    )


def test_with_a_channel_one_card_goes_there(db, fake, tmp_path):

    config = tmp_path / "process.toml"
    config.write_text(
        PROCESS.read_text().replace(
            'reasons = ["Regulatory deadline"', 'channel = "C0FT"\nreasons = ["Regulatory deadline"'
        )
    )
    server = Steward(db.url, fake.url, config, workers=1).start()
    try:
        ask(server, fake)
        fake.wait("chat.postMessage", 2)
        fake.settle(quiet=0.3)
        assert sorted(c.args["channel"] for c in fake.of("chat.postMessage")) == ["C0FT", "U0BOB"]
        card = cards_to(fake, {"C0FT"})["C0FT"]
        assert "Decides: <@U0CAROL>, <@U0STEW>" in blocks_text(card.args)
        (row,) = fasttrack.listing(db, "U0BOB")[0]
        fresh(fake)
        server.click("U0EVE", "fasttrack_approve", str(row.id), channel="C0FT")
        assert "Only the approvers" in blocks_text(fake.wait("chat.postEphemeral")[0].args)
        server.click("U0CAROL", "fasttrack_approve", str(row.id), channel="C0FT")
        (update,) = fake.wait("chat.update")
        assert update.args["channel"] == "C0FT" and "Approved* by <@U0CAROL>" in blocks_text(update.args)
    finally:
        server.stop()


def test_forged_buttons_and_forms_get_private_answers(steward, fake, db):
    for action in ("fasttrack_approve", "fasttrack_deny"):
        for value in ("abc", "99999", "-1"):
            assert steward.click("U0CAROL", action, value, channel="D0CAROL").status == 200
    told = [blocks_text(c.args) for c in fake.wait("chat.postEphemeral", 6)]
    assert all("does not name a fast-track request" in t or "There is no fast-track request #99999" in t for t in told)
    deny = {
        "type": "modal",
        "id": "V0X",
        "callback_id": "fasttrack_deny_submit",
        "private_metadata": "not a number",
        "blocks": [
            {"type": "input", "block_id": "reason", "element": {"type": "plain_text_input", "action_id": "value"}}
        ],
    }
    r = steward.submit("U0CAROL", deny, {"reason": "no"})
    assert r.status == 200 and r.json()["errors"] == {"reason": "This form does not name a fast-track request."}
    share = {
        "type": "modal",
        "id": "V0Y",
        "callback_id": "initiative_submit",
        "private_metadata": json.dumps({"team": "design", "period": "soon"}),
        "blocks": [
            {"type": "input", "block_id": "text", "element": {"type": "plain_text_input", "action_id": "value"}}
        ],
    }
    r = steward.submit("U0ALICE", share, {"text": "x"})
    assert r.status == 200 and r.json()["errors"] == {"text": "This form does not name a month."}
    form = open_form(steward, fake)
    form["private_metadata"] = json.dumps({"team": "qa"})  # not Bob's team
    r = steward.submit("U0BOB", form, {"what": "x", "element": QA_SIGNOFF, "reason": CUSTOMER, "justification": "y"})
    assert r.json()["errors"] == {"what": "Choose one of your teams."}
    assert fasttrack.listing(db, "U0BOB")[0] == [] and fake.of("views.update") == []
