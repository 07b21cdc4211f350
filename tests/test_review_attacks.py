"""The quarterly matrix review, attacked: proposals that grow when escaped, clicks from people who left or
joined the team that sets a standard, quarters that start on a weekend or a holiday, two clocks at once."""

from __future__ import annotations

import threading
from datetime import date, datetime, timedelta

import pytest

from bot import outbox, review
from bot.items import RuleError
from bot.process import parse_process
from templates import render
from tests.test_matrix_review import berlin, config


def posted_text(message: dict) -> str:
    return "".join(b["text"]["text"] for b in message["blocks"] if b["type"] == "section")[1:]


def test_a_proposal_that_grows_when_escaped_is_posted_whole():
    from slack_sdk.models.blocks import Block

    words = ("a && b <c> " * 200)[:2000]  # 2,000 characters, about 3,800 once escaped for mrkdwn
    message = render("matrix_review_proposal", user="U0CAROL", quarter_label="Q4 2026", elements=["QA sign-off"], text=words)
    for block in message["blocks"]:
        Block.parse(block).to_dict()  # valid Block Kit: no text over 3,000 characters
    body = "".join(b["text"]["text"] for b in message["blocks"][1:])
    assert body.replace("&amp;", "&").replace("&lt;", "<").replace("&gt;", ">") == words  # nothing clipped
    assert "<c>" not in body
