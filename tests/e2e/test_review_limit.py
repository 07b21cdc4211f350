"""A matrix-review proposal is a message Steward posts to a channel: three per person and quarter, then a
polite refusal (issue #18 §2), in the domain and through the served app."""

from __future__ import annotations

import threading

import pytest
from sqlmodel import select

from bot.domain import review
from bot.domain.core.items import RuleError
from bot.domain.core.timeutil import utcnow
from storage.models import MatrixReviewEvent
from tests.support.harness import blocks_text, view_of

REFUSED = "you have proposed 3 changes for"


def proposed(db, user: str = "U0CAROL") -> list[MatrixReviewEvent]:
    with db.read() as session:
        return list(
            session.exec(
                select(MatrixReviewEvent).where(MatrixReviewEvent.user == user, MatrixReviewEvent.kind == "proposed")
            )
        )


def test_three_proposals_per_person_and_quarter_then_a_polite_refusal(db, cfg):
    due = review.due_at(cfg, "2026-Q4")
    review.send_due(db, cfg, due)
    for n in range(3):
        review.propose(db, cfg, "U0CAROL", "2026-Q4", f"Change {n}", None, due)
    with pytest.raises(RuleError) as refused:
        review.propose(db, cfg, "U0CAROL", "2026-Q4", "A fourth", None, due)
    assert refused.value.field == "text" and REFUSED in str(refused.value) and "Q4 2026" in str(refused.value)
    assert str(refused.value).startswith("Thank you")
    assert sorted(e.once for e in proposed(db)) == ["proposed:1", "proposed:2", "proposed:3"]
    review.propose(db, cfg, "U0STEW", "2026-Q4", "Someone else's", None, due)  # per person
    review.send_due(db, cfg, review.due_at(cfg, "2027-Q1"))
    review.propose(db, cfg, "U0CAROL", "2027-Q1", "Next quarter", None, review.due_at(cfg, "2027-Q1"))  # per quarter


def test_a_proposal_made_before_the_limit_counts(db, cfg):
    due = review.due_at(cfg, "2026-Q4")
    review.send_due(db, cfg, due)
    with db.write() as session:  # as an earlier version recorded it: no `once`
        session.add(
            MatrixReviewEvent(quarter="2026-Q4", user="U0CAROL", kind="proposed", at=due, elements=[], text="x")
        )
    review.propose(db, cfg, "U0CAROL", "2026-Q4", "Second", None, due)
    review.propose(db, cfg, "U0CAROL", "2026-Q4", "Third", None, due)
    with pytest.raises(RuleError):
        review.propose(db, cfg, "U0CAROL", "2026-Q4", "Fourth", None, due)
    assert len(proposed(db)) == 3


def test_submissions_at_once_never_make_a_fourth(db, cfg):
    due = review.due_at(cfg, "2026-Q4")
    review.send_due(db, cfg, due)
    review.propose(db, cfg, "U0CAROL", "2026-Q4", "First", None, due)
    review.propose(db, cfg, "U0CAROL", "2026-Q4", "Second", None, due)
    start, outcomes = threading.Barrier(4), []

    def submit(n):
        start.wait()
        try:
            review.propose(db, cfg, "U0CAROL", "2026-Q4", f"At once {n}", None, due)
            outcomes.append("recorded")
        except RuleError:
            outcomes.append("refused")
        except Exception as exc:  # a busy SQLite: the write lock not granted in time (the person is told)
            outcomes.append(type(exc).__name__)

    threads = [threading.Thread(target=submit, args=(n,)) for n in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert outcomes.count("recorded") <= 1 and len(proposed(db)) <= 3


def test_through_slack_the_fourth_is_refused_in_the_form_and_the_button_says_so(steward, fake, db, cfg):
    quarter = review.quarter_of(utcnow(), cfg.organization.tz)
    review.send_due(db, cfg, review.due_at(cfg, quarter))
    steward_now = utcnow()
    for n in range(2):
        review.propose(db, cfg, "U0CAROL", quarter, f"Change {n}", None, steward_now)
    steward.click("U0CAROL", "matrix_review_propose", quarter, channel="D0CAROL")
    view = view_of(fake.wait("views.open")[0])
    third = steward.submit("U0CAROL", view, {"text": "The third", "channel": "C0QA"})
    assert third.status == 200 and third.raw in (b"", b"{}"), third.raw
    fourth = steward.submit("U0CAROL", view, {"text": "A fourth", "channel": "C0QA"})
    assert fourth.status == 200 and REFUSED in fourth.json()["errors"]["text"]
    assert len(proposed(db)) == 3
    fake.reset(keep_messages=True)
    assert steward.click("U0CAROL", "matrix_review_propose", quarter, channel="D0CAROL").status == 200
    told = fake.wait("chat.postEphemeral")[0]
    assert told.args["user"] == "U0CAROL" and REFUSED in blocks_text(told.args)
    assert fake.of("views.open") == []
