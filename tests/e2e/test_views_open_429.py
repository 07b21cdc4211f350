"""`views.open` answered 429 (issue #18 §4): Slack did not act and the trigger is unused, so the form is
opened again after Retry-After while the trigger lives (3 s); a longer Retry-After tells the person to try
again. Through the served app against the fake Slack."""

from __future__ import annotations

from tests.support.harness import blocks_text


def test_a_429_with_retry_after_1_s_opens_the_form_on_the_second_attempt(steward, fake):
    fake.rate_limit("views.open", retry_after=1)
    assert steward.command("U0ALICE", "eng", command="/handoff").status == 200
    calls = fake.wait("views.open", 2)
    assert [c.status for c in calls] == [429, 200]
    assert calls[1].args["trigger_id"] == calls[0].args["trigger_id"]
    assert fake.of("chat.postEphemeral") == []


def test_a_retry_after_beyond_the_triggers_life_tells_the_person_to_try_again(steward, fake):
    fake.rate_limit("views.open", retry_after=5)
    assert steward.command("U0ALICE", "eng", command="/handoff").status == 200
    told = fake.wait("chat.postEphemeral")[0]
    assert told.args["user"] == "U0ALICE" and "Please try again" in blocks_text(told.args)
    assert len(fake.of("views.open")) == 1
