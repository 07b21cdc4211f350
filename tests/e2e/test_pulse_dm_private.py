"""The survey DM stays in Slack's history (`im:history`, an admin's compliance export): it must never say what
its reader chose. Through the served app and Slack's protocol: whatever two people click, every version of
their DMs Steward sends (posts and updates) is the same, and the choice is told only in an ephemeral message."""

from __future__ import annotations

import json

from tests.support import pulse as flow


def versions(fake, channel: str) -> list[dict]:
    """Every version of the DM Steward sent to the person (the post, then each chat.update of it)."""
    dm = fake.messages(channel)[0]
    calls = [c for c in fake.calls if c.method in ("chat.postMessage", "chat.update")]
    out = []
    for c in calls:
        blocks = c.args.get("blocks")
        blocks = json.loads(blocks) if isinstance(blocks, str) else blocks
        if c.args.get("channel") in (channel, dm["channel"]) and blocks and "pulse_score" in json.dumps(blocks):
            out.append({"text": c.args.get("text"), "blocks": blocks})
    return out


def test_what_two_people_chose_is_nowhere_in_their_dms(app, fake, db):
    day = flow.monday(1)
    week = flow.week_of(day)
    flow.job(db, fake, flow.at(day, 20))
    flow.click(app, fake, "U0ALICE", "pulse_score_4", f"{week} 4")
    flow.click(app, fake, "U0BOB", "pulse_score_2", f"{week} 2")
    flow.click(app, fake, "U0BOB", "pulse_feeling_rigid", f"{week} rigid")
    flow.wait_for(lambda: "2 · Disagree" in flow.confirmed(fake, "U0BOB"))
    flow.wait_for(lambda: "processes are too rigid" in flow.confirmed(fake, "U0BOB"))
    flow.wait_for(lambda: "4 · Agree" in flow.confirmed(fake, "U0ALICE"))
    flow.wait_for(lambda: len(versions(fake, "U0ALICE")) >= 2 and len(versions(fake, "U0BOB")) >= 2)
    fake.settle(quiet=0.3)
    alice, bob = versions(fake, "U0ALICE")[-1], versions(fake, "U0BOB")[-1]
    assert "Thanks, your answer is recorded" in json.dumps(alice)
    assert alice == bob  # Alice chose 4, Bob 2 and "too rigid": their DMs are the same
    for v in versions(fake, "U0ALICE") + versions(fake, "U0BOB"):
        assert '"style": "primary"' not in json.dumps(v["blocks"]) and "recorded (" not in json.dumps(v)
    # the confirmations were ephemeral, each to its own person only
    ephemeral = fake.of("chat.postEphemeral")
    assert {c.args["user"] for c in ephemeral if "Disagree" in str(c.args.get("text"))} == {"U0BOB"}
    assert {c.args["user"] for c in ephemeral if "4 · Agree" in str(c.args.get("text"))} == {"U0ALICE"}


def test_when_slack_refuses_the_ephemeral_the_choice_is_not_posted_as_a_dm(app, fake, db):
    """A private answer falls back to a DM when Slack refuses the ephemeral; the pulse's confirmation must
    not: a DM stays in Slack's history. The answer is recorded all the same."""
    day = flow.monday(1)
    week = flow.week_of(day)
    flow.job(db, fake, flow.at(day, 20))
    fake.fail("chat.postEphemeral", "channel_not_found")
    posts_before = len(fake.of("chat.postMessage"))
    flow.click(app, fake, "U0ALICE", "pulse_score_5", f"{week} 5")
    flow.wait_for(lambda: len(fake.of("chat.postEphemeral")) >= 1)
    fake.settle(quiet=0.5)
    later = fake.of("chat.postMessage")[posts_before:]
    assert not [
        c for c in later if "Strongly agree" in json.dumps(c.args) or "visible only to you" in json.dumps(c.args)
    ]
    assert "Thanks, your answer is recorded" in json.dumps(versions(fake, "U0ALICE")[-1])
