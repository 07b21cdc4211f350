"""The quarterly decision-rights matrix review: when it is due, to whom, once per quarter, the fast-track
history it shows, confirming and proposing (domain), and the DM, its buttons and the form through the served
app against the fake Slack, on every database the tests run on."""

from __future__ import annotations

import json
import time
from datetime import UTC, date, datetime, timedelta

import pytest
from sqlmodel import select

from bot.domain import review
from bot.domain.core import outbox
from bot.domain.core.items import RuleError
from bot.domain.core.process import parse_process
from bot.domain.core.timeutil import utcnow
from bot.domain.digest import compose
from bot.domain.figures import RECURRING
from handlers.digest import messages
from storage.models import FastTrack, FastTrackEvent, MatrixReviewEvent, Outbox
from tests.support.data import PROCESS
from tests.support.harness import TOKEN, blocks_text, cli, view_of
from tests.support.review import berlin, config

# -- when, to whom ---------------------------------------------------------------------------------------


def test_due_on_the_quarters_first_working_day_at_its_start_skipping_weekends_and_holidays():

    cfg, _ = config(holidays=[date(2027, 1, 1)])  # 1 Jan 2027 is a Friday, and a holiday: Monday 4 January
    assert review.first_working_day(cfg, "2027-Q1") == date(2027, 1, 4)
    assert review.due_at(cfg, "2027-Q1") == berlin(2027, 1, 4, 9)
    assert review.due_quarter(cfg, berlin(2027, 1, 1, 9)) is None
    assert review.due_quarter(cfg, berlin(2027, 1, 2, 12)) is None  # Saturday
    assert review.due_quarter(cfg, berlin(2027, 1, 4, 8, 59)) is None
    assert review.due_quarter(cfg, berlin(2027, 1, 4, 9)) == "2027-Q1"
    # caught up by a clock that was down: until the end of the quarter's first 14 days, not after
    assert review.due_quarter(cfg, berlin(2027, 1, 14, 23, 59)) == "2027-Q1"
    assert review.due_quarter(cfg, berlin(2027, 1, 15, 0, 0)) is None
    # 1 Oct 2026 is a Thursday: due that morning; a month later nothing is due
    plain, _ = config()
    assert review.due_at(plain, "2026-Q4") == berlin(2026, 10, 1, 9)
    assert review.due_quarter(plain, berlin(2026, 11, 2, 9)) is None
    assert review.quarter_of(berlin(2026, 12, 31, 23, 30), plain.organization.tz) == "2026-Q4"
    assert review.quarter_of(berlin(2027, 1, 1, 0, 30), plain.organization.tz) == "2027-Q1"  # still 2026 in UTC


def test_a_team_that_sets_a_standard_is_asked_through_its_lead_else_its_members():
    cfg, data = config()
    # QA sign-off: team qa (no lead) → its member; Design review: a person; Architecture review: team eng (no lead) → both members
    assert {u: [r.element for r in rows] for u, rows in review.reviewers(cfg).items()} == {
        "U0CAROL": ["QA sign-off"],
        "U0STEW": ["Design review"],
        "U0BOB": ["Architecture review"],
        "U0AMY": ["Architecture review"],
    }
    data["teams"][1]["lead"] = "U0BOB"
    with_lead = parse_process(data)
    assert sorted(review.reviewers(with_lead)) == ["U0BOB", "U0CAROL", "U0STEW"]


def test_one_dm_per_person_per_quarter_however_often_it_runs(db, cfg):
    due = review.due_at(cfg, "2026-Q4")
    first = review.send_due(db, cfg, due)
    assert first.quarter == "2026-Q4" and sorted(first.keys) == sorted(
        review.dm_key("2026-Q4", u) for u in ("U0CAROL", "U0STEW", "U0BOB", "U0AMY")
    )
    again = review.send_due(db, cfg, due + timedelta(hours=2))
    assert again.keys == [] and again.before == 4
    assert len(outbox.of_item(db, "matrix-review:2026-Q4")) == 4
    assert (
        review.send_due(db, cfg, due - timedelta(minutes=1)).quarter is None
    )  # before the working day starts: nothing


def test_history_counts_the_quarter_before_and_calls_candidates_by_the_digests_rule(db, cfg):

    def request(n, element, reason, created, decided=None, kind=None):
        with db.write() as session:
            f = FastTrack(
                id=n,
                team="eng",
                requester="U0BOB",
                element=element,
                reason=reason,
                what="w",
                justification="j",
                state=kind or "pending",
                created_at=created,
                updated_at=created,
                decided_at=decided,
            )
            session.add(f)
            session.flush()
            session.add(FastTrackEvent(request_id=n, seq=1, kind="requested", actor="U0BOB", at=created))
            if kind:
                session.add(FastTrackEvent(request_id=n, seq=2, kind=kind, actor="U0STEW", at=decided))

    # Q3 2026: QA sign-off asked 5 times (RECURRING approved in August), Design review once, denied
    august = datetime(2026, 8, 10, 10)
    for n in range(RECURRING):
        request(n + 1, "QA sign-off", "Customer escalation", august, august + timedelta(hours=1), "approved")
    request(10, "QA sign-off", "Security fix", datetime(2026, 9, 1, 10), datetime(2026, 9, 2, 10), "denied")
    request(11, "QA sign-off", "Security fix", datetime(2026, 9, 30, 10))
    request(12, "Design review", "Other", datetime(2026, 7, 2, 10), datetime(2026, 7, 2, 11), "denied")
    request(
        13, "Design review", "Other", datetime(2026, 6, 2, 10), datetime(2026, 6, 2, 11), "approved"
    )  # Q2: not counted
    h = review.history(db, cfg, "2026-Q3")
    qa, design = h["QA sign-off"], h["Design review"]
    assert (qa.asked, qa.granted, qa.denied, qa.candidate) == (RECURRING + 2, RECURRING, 1, True)
    assert qa.reasons == [f"Customer escalation ×{RECURRING}", "Security fix ×2"]
    assert (design.asked, design.granted, design.denied, design.candidate) == (1, 0, 1, False)
    # approvals spread over months under the monthly threshold are no candidate, as the digest would not call them one
    with db.write() as session:
        for e in session.exec(
            select(FastTrackEvent).where(FastTrackEvent.kind == "approved", FastTrackEvent.request_id == 1)
        ):
            e.at = datetime(2026, 7, 20, 10)
    assert review.history(db, cfg, "2026-Q3")["QA sign-off"].candidate is False


def test_confirm_once_refuses_forged_and_stale_and_the_digest_says_which_rows(db, cfg):
    due = review.due_at(cfg, "2026-Q4")
    review.send_due(db, cfg, due)
    later = due + timedelta(days=3)
    keys = review.confirm(db, cfg, "U0STEW", "2026-Q4", later)
    assert keys == [outbox.update_of(review.dm_key("2026-Q4", "U0STEW"))]
    with pytest.raises(RuleError, match="already confirmed"):
        review.confirm(db, cfg, "U0STEW", "2026-Q4", later)
    with pytest.raises(RuleError, match="not sent to you"):
        review.confirm(db, cfg, "U0EVE", "2026-Q4", later)  # forged: never asked
    with pytest.raises(RuleError, match="no quarter"):
        review.confirm(db, cfg, "U0STEW", "2026-Q9", later)
    with pytest.raises(RuleError, match="has ended"):
        review.confirm(db, cfg, "U0CAROL", "2026-Q4", datetime(2027, 1, 5, 10))  # stale: next quarter
    review.confirm(db, cfg, "U0AMY", "2026-Q4", later)  # one member of eng confirms the team's row
    with db.read() as session:
        events = session.exec(select(MatrixReviewEvent).order_by(MatrixReviewEvent.id)).all()
    assert [(e.user, e.kind, e.quarter, e.elements, e.at) for e in events] == [
        ("U0STEW", "confirmed", "2026-Q4", ["Design review"], later),
        ("U0AMY", "confirmed", "2026-Q4", ["Architecture review"], later),
    ]
    # the October digest's line: rows confirmed by the month's end, and those not
    status = review.status(db, cfg, "2026-10")
    assert (status.confirmed, status.pending) == (["Design review", "Architecture review"], ["QA sign-off"])
    assert review.status(db, cfg, "2026-11") is None and review.status(db, cfg, "2026-07") is None

    text = "\n".join(blocks_text(m) for m in messages(compose(db, cfg, "2026-10", datetime(2026, 11, 5))))
    assert (
        "Decision-rights matrix review, Q4 2026, by Oct 2026's end: confirmed: Design review, Architecture review;"
        " not confirmed: QA sign-off."
    ) in text


def test_a_proposal_is_recorded_posted_where_chosen_and_checked(db, cfg):
    due = review.due_at(cfg, "2026-Q4")
    review.send_due(db, cfg, due)
    with pytest.raises(RuleError) as empty:
        review.propose(db, cfg, "U0CAROL", "2026-Q4", "   ", None, due)
    assert empty.value.field == "text"
    with pytest.raises(RuleError) as elsewhere:
        review.propose(db, cfg, "U0CAROL", "2026-Q4", "Let QA grant its own", "C0ELSEWHERE", due)
    assert elsewhere.value.field == "channel"
    keys = review.propose(db, cfg, "U0CAROL", "2026-Q4", "  Let <!channel> & QA grant  ", None, due)
    post = outbox.get(db, keys[0])
    assert post.channel == "C0SYNC" and post.render == "matrix_review_proposal" and post.actor == "U0CAROL"
    assert keys[1] == outbox.update_of(review.dm_key("2026-Q4", "U0CAROL"))
    with db.read() as session:
        event = session.exec(select(MatrixReviewEvent)).one()
    assert (event.kind, event.text, event.channel, event.once) == (
        "proposed",
        "Let <!channel> & QA grant",
        "C0SYNC",
        "proposed:1",  # the first of the three a person may make in a quarter
    )


# -- through Slack ---------------------------------------------------------------------------------------


def env(db, fake) -> dict:
    return {
        "SLACK_BOT_TOKEN": TOKEN,
        "SLACK_API_URL": fake.url,
        "DATABASE_URL": db.url,
        "PROCESS_CONFIG": str(PROCESS),
        "LOG_LEVEL": "WARNING",
    }


def wait_for(predicate, timeout: float = 10.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.05)
    raise AssertionError("condition not met in time")


def test_the_review_dm_through_slack_confirm_propose_forged_and_stale(steward, fake, db, cfg):
    tz = cfg.organization.tz
    quarter = review.quarter_of(utcnow(), tz)  # the served app answers with the real time: this quarter's review
    due = review.due_at(cfg, quarter)
    local = due.replace(tzinfo=UTC).astimezone(tz).strftime("%Y-%m-%dT%H:%M")
    r = cli("run-job", "matrix-review", "--now", local, env=env(db, fake))
    assert r.returncode == 0, r.stdout + r.stderr
    assert f"matrix review {review.label(quarter)}: 4 DMs written" in r.stdout and "4 of 4 delivered" in r.stdout
    r = cli("run-job", "matrix-review", "--now", local, env=env(db, fake))
    assert "already written (4 DMs), nothing new" in r.stdout
    assert fake.posted(review.dm_key(quarter, "U0STEW")) == 1
    dm = fake.messages("U0STEW")[0]
    text = blocks_text(dm)
    assert "*Design review*" in text and "Sets the standard: <@U0STEW>" in text and "owns execution: Design" in text
    assert f"{review.label(review.shift(quarter, -1))}: no fast-track requests." in text
    buttons = [e["action_id"] for b in dm["blocks"] if b["type"] == "actions" for e in b["elements"]]
    assert buttons == ["matrix_review_confirm", "matrix_review_propose"]

    # confirm: recorded, and the DM redrawn in place without the button
    assert (
        steward.click("U0STEW", "matrix_review_confirm", quarter, channel=dm["channel"], message_ts=dm["ts"]).status
        == 200
    )
    wait_for(lambda: "Confirmed by you on <!date^" in blocks_text(fake.messages("U0STEW")[0]))
    assert "matrix_review_confirm" not in json.dumps(fake.messages("U0STEW")[0]["blocks"])
    with db.read() as session:
        assert [(e.user, e.kind) for e in session.exec(select(MatrixReviewEvent))] == [("U0STEW", "confirmed")]

    # a second click, a forged click, a stale one: told privately, nothing recorded
    def refused(user, value, words):
        fake.reset(keep_messages=True)
        assert (
            steward.click(user, "matrix_review_confirm", value, channel=dm["channel"], message_ts=dm["ts"]).status
            == 200
        )
        told = fake.wait("chat.postEphemeral")[0]
        assert told.args["user"] == user and words in blocks_text(told.args), blocks_text(told.args)

    refused("U0STEW", quarter, "already confirmed")
    refused("U0EVE", quarter, "not sent to you")
    last = review.shift(quarter, -1)
    review.send_due(db, cfg, review.due_at(cfg, last))  # last quarter's DMs were written then
    refused("U0CAROL", last, "has ended")
    refused("U0CAROL", "<!channel>", "names no quarter")
    with db.read() as session:
        assert session.exec(select(MatrixReviewEvent)).all()[1:] == []

    # propose a change: a form, recorded, posted (escaped) where chosen, the DM redrawn
    fake.reset(keep_messages=True)
    carol = fake.messages("U0CAROL")[0]
    steward.click("U0CAROL", "matrix_review_propose", quarter, channel=carol["channel"], message_ts=carol["ts"])
    view = view_of(fake.wait("views.open")[0])
    assert view["callback_id"] == "matrix_review_submit"
    empty = steward.submit("U0CAROL", view, {"text": "  ", "channel": "C0QA"})
    assert empty.json()["errors"] == {"text": "Say what should change."}
    ok = steward.submit("U0CAROL", view, {"text": "Let <!channel> & QA grant its own", "channel": "C0QA"})
    assert ok.status == 200 and ok.raw in (b"", b"{}"), ok.raw
    wait_for(lambda: fake.messages("C0QA"))
    posted = blocks_text(fake.messages("C0QA")[0])
    assert "<@U0CAROL> proposes a change" in posted and "Let &lt;!channel&gt; &amp; QA grant its own" in posted
    wait_for(lambda: "You proposed a change, the last on" in blocks_text(fake.messages("U0CAROL")[0]))
    with db.read() as session:
        proposal = session.exec(select(MatrixReviewEvent).where(MatrixReviewEvent.kind == "proposed")).one()
    assert (proposal.user, proposal.channel, proposal.elements) == ("U0CAROL", "C0QA", ["QA sign-off"])


def test_the_catch_up_tick_sends_a_missed_review_and_run_job_says_when_the_next_is_due(db, fake, cfg):
    # the clock was down on 1 October 2026: its catch-up on the 9th sends the review (on the 15th it would
    # not: see the first test)
    r = cli("run-job", "catch-up", "--now", "2026-10-09T10:00", env=env(db, fake))
    assert r.returncode == 0, r.stderr
    assert "matrix review Q4 2026: 4 DMs written" in r.stdout
    with db.read() as session:
        assert len(session.exec(select(Outbox).where(Outbox.item == "matrix-review:2026-Q4")).all()) == 4
    r = cli("run-job", "matrix-review", "--now", "2026-10-20T10:00", env=env(db, fake))
    assert (
        r.returncode == 0
        and r.stdout.strip() == "matrix review: not due; the next, for Q1 2027, on Fri 01 Jan 2027 09:00 Europe/Berlin"
    )
