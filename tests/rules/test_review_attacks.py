"""The quarterly matrix review, attacked: proposals that grow when escaped, clicks from people who left or
joined the team that sets a standard, quarters that start on a weekend or a holiday, two clocks at once."""

from __future__ import annotations

import threading
from datetime import date, timedelta

import pytest
from slack_sdk.models.blocks import Block

from bot.domain import review
from bot.domain.core import outbox
from bot.domain.core.items import RuleError
from bot.entry.bootstrap import Deps
from templates import render
from tests.support.members import refresh
from tests.support.review import berlin, config


def posted_text(message: dict) -> str:
    return "".join(b["text"]["text"] for b in message["blocks"] if b["type"] == "section")[1:]


def test_a_proposal_that_grows_when_escaped_is_posted_whole():

    words = ("a && b <c> " * 200)[:2000]  # 2,000 characters, about 3,800 once escaped for mrkdwn
    message = render(
        "matrix_review_proposal", user="U0CAROL", quarter_label="Q4 2026", elements=["QA sign-off"], text=words
    )
    for block in message["blocks"]:
        Block.parse(block).to_dict()  # valid Block Kit: no text over 3,000 characters
    body = "".join(b["text"]["text"] for b in message["blocks"][1:])
    assert body.replace("&amp;", "&").replace("&lt;", "<").replace("&gt;", ">") == words  # nothing clipped
    assert "<c>" not in body


def test_who_reviews_a_teams_rows_follows_its_current_members_and_two_clocks_write_each_dm_once(db, fake):

    cfg, _ = config(holidays=[date(2027, 1, 1)])  # Q1 2027 starts on a Friday that is a holiday: due Monday 4 January
    assert (
        review.due_quarter(cfg, berlin(2027, 1, 1, 9)) is None
        and review.due_quarter(cfg, berlin(2027, 1, 2, 9)) is None
    )
    due = berlin(2027, 1, 4, 9)
    fake.usergroups["S0QA"] = {"users": ["U0DAN"]}
    refresh(db, cfg, fake, due - timedelta(days=3))
    now = Deps(cfg, db).cfg
    sent, barrier = [], threading.Barrier(2)

    def clock():
        barrier.wait()
        sent.append(review.send_due(db, now, due))

    threads = [threading.Thread(target=clock) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    rows = [r.key for r in outbox.of_item(db, review.item_of("2027-Q1"))]
    assert sorted(rows) == sorted(review.dm_key("2027-Q1", u) for u in ("U0CAROL", "U0DAN", "U0STEW", "U0BOB", "U0AMY"))
    # Dan leaves qa: he no longer confirms its rows; Erin joins within the quarter's first days: asked at the next tick
    fake.usergroups["S0QA"] = {"users": ["U0ERIN"]}
    refresh(db, cfg, fake, due + timedelta(hours=1))
    now = Deps(cfg, db).cfg
    with pytest.raises(RuleError, match="no longer set a standard"):
        review.confirm(db, now, "U0DAN", "2027-Q1", due + timedelta(hours=2))
    assert review.send_due(db, now, due + timedelta(hours=2)).keys == [review.dm_key("2027-Q1", "U0ERIN")]
    review.confirm(db, now, "U0ERIN", "2027-Q1", due + timedelta(hours=3))
    assert review.confirmation(db, "2027-Q1", "U0ERIN") is not None
