"""The digest and the clock through Slack's protocol: handoffs driven by signed requests, the digest
posted by `run-job` and by `clock` processes against the fake Web API, exactly once."""

from __future__ import annotations

import json
from datetime import datetime

import pytest
from slack_sdk import WebClient
from sqlalchemy import text

from bot.domain.core import outbox, schedule
from bot.domain.core.timeutil import utcnow
from handlers.delivery import metadata
from tests.support.clock import Clock, env
from tests.support.data import PROCESS
from tests.support.digest import seed_october, to_sync
from tests.support.handoffs import fresh, send
from tests.support.harness import TOKEN, blocks_text, cli, view_of


def firsts(fake, channel: str = "C0SYNC") -> list:
    """Stored top-level messages of a channel (thread replies left out)."""
    return [m for m in fake.messages(channel) if m["thread_ts"] in (None, m["ts"])]


def test_run_job_posts_a_digest_of_what_happened_in_slack_once(steward, fake, db, cfg):
    period = schedule.period_of(utcnow(), cfg.organization.tz)
    # 1: accepted at once. 2: sent back for rework, resubmitted, accepted. 3: still open.
    first = send(steward, fake, title="Checkout spec")
    steward.click("U0BOB", "handoff_accept", str(first.id))
    fake.wait("chat.update")
    second = send(steward, fake, title="Search spec")
    fresh(fake)
    steward.click("U0BOB", "handoff_rework", str(second.id))
    steward.submit(
        "U0BOB", view_of(fake.wait("views.open")[0]), {"reason": "Wireframes lack <!channel> the error states"}
    )
    fake.wait("chat.update")
    fresh(fake)
    steward.click("U0ALICE", "handoff_resubmit", str(second.id), channel="D0ALICE")
    steward.submit(
        "U0ALICE",
        view_of(fake.wait("views.open")[0]),
        {"criteria": ["Specification with acceptance criteria", "Wireframes", "Glossary of terms"]},
    )
    fake.wait("chat.update")
    fresh(fake)
    steward.click("U0AMY", "handoff_accept", str(second.id))
    fake.wait("chat.update")
    send(steward, fake, title="Profile spec")
    fresh(fake)

    # the month has not ended: posting it is refused; the preview shows it, month to date
    refused = cli("run-job", "digest", "--month", period, env=env(db, fake))
    assert refused.returncode == 2 and "has not ended; nothing posted or recorded" in refused.stderr
    assert to_sync(fake) == [] and outbox.of_item(db, f"digest:{period}") == []
    r = cli("digest", "--month", period, "--blocks", env=env(db, fake))
    assert r.returncode == 0, r.stderr
    post = json.loads(r.stdout)[0]
    text = "\n".join(blocks_text(p) for p in json.loads(r.stdout))
    assert "(month to date)" in post["blocks"][0]["text"]["text"]
    # the hand count: 3 sent by Design to Engineering, 2 accepted, 1 of them after a send-back
    assert "3 handoffs sent" in post["text"] and "failure rate 50%" in post["text"]
    assert "*3* handoffs sent across boundaries (+3 vs" in text
    assert "*Handoff failure rate*: *50%* (1 of 2) · 2 handoffs: too few to compare" in text
    assert (
        "*2* accepted, of which *1* needed another round: handoff failure rate *50%* (2 handoffs: too few to compare)"
        in text
    )
    assert "*Design* · sent 3 (+3)\n" in text  # no row for what it did not do: it received nothing
    assert (
        "Failure rate as sender 50% (1 of 2, 2 handoffs: too few to compare)\n" in text
    )  # no "as receiver – (0 of 0, –)"
    assert (
        "*Engineering* · received 3 (+3)" in text
        and "Failure rate as receiver 50% (1 of 2, 2 handoffs: too few to compare)" in text
    )
    assert "Sent back for: rework: “Wireframes lack &lt;!channel&gt; the error states” ×1" in text
    assert (
        "*Design → Engineering* · steward <@U0STEW> · 3 sent · failure rate 50% (1 of 2, 2 handoffs: too few to compare)"
        in text
    )
    assert "No handoffs and no initiative: Quality" in text

    # a closed month (October, back-dated) is posted, its chart in its thread
    seed_october(db, cfg)
    fake.reset()
    period = "2026-10"
    r = cli("run-job", "digest", "--month", period, env=env(db, fake))
    assert r.returncode == 0, r.stderr
    assert f"digest {period}: posted 2 messages to C0SYNC" in r.stdout and "trend chart uploaded" in r.stdout
    # the chart: uploaded in the digest's thread, as a PNG
    (url,) = fake.of("files.getUploadURLExternal")
    (done,) = fake.of("files.completeUploadExternal")
    assert url.args["filename"] == f"steward-trend-{period}.png" and done.args["channel_id"] == "C0SYNC"
    assert list(fake.uploads.values())[0].startswith(b"\x89PNG")
    rows = outbox.of_item(db, f"digest:{period}")
    assert [(r.key, r.status) for r in rows] == [(f"digest:{period}:C0SYNC:{part}", "sent") for part in (1, 2, "chart")]
    (details,) = [
        c for c in fake.of("chat.postMessage") if c.args.get("thread_ts") == rows[0].result_ts
    ]  # the details, in its thread
    assert done.args["thread_ts"] == rows[0].result_ts and fake.posted(rows[0].key) == 1

    # a second run posts nothing
    fake.reset()
    again = cli("run-job", "digest", "--month", period, env=env(db, fake))
    assert again.returncode == 0 and "already posted" in again.stdout
    assert fake.calls == []


def test_slack_refusals_are_recorded_and_retried(fake, db, cfg):
    seed_october(db, cfg)
    fake.fail("chat.postMessage", "channel_not_found")
    r = cli("run-job", "digest", "--month", "2026-10", env=env(db, fake))
    assert (
        r.returncode == 1
        and "failed (channel_not_found); see `python -m bot outbox`" in r.stdout
        and "Traceback" not in r.stderr
    )
    first, details, chart = outbox.of_item(db, "digest:2026-10")
    assert (first.status, first.error) == ("failed", "channel_not_found") and details.status == chart.status == "failed"
    assert fake.of("files.getUploadURLExternal") == []  # nothing after the first message failed
    listed = cli("outbox", env=env(db, fake))
    assert (
        listed.returncode == 0
        and "failed   digest:2026-10:C0SYNC:1" in listed.stdout
        and "channel_not_found" in listed.stdout
    )

    # an operator's run sends it again; the upload, refused for want of membership, joins the channel and succeeds
    fake.reset()
    fake.fail("files.completeUploadExternal", "not_in_channel")
    r = cli("run-job", "digest", "--month", "2026-10", env=env(db, fake))
    assert r.returncode == 0, r.stdout + r.stderr
    assert len(to_sync(fake)) == 1 and [c.args["channel"] for c in fake.of("conversations.join")] == ["C0SYNC"]
    assert len(fake.of("files.completeUploadExternal")) == 2
    assert [r.status for r in outbox.of_item(db, "digest:2026-10")] == ["sent"] * 3
    assert [(r.key, r.attempts) for r in outbox.of_item(db, "digest:2026-10")][::2] == [
        ("digest:2026-10:C0SYNC:1", 2),
        ("digest:2026-10:C0SYNC:chart", 2),
    ]


def test_a_digest_slack_stored_but_never_confirmed_is_found_not_posted_again(fake, db, cfg):
    seed_october(db, cfg)
    fake.store_then_error("chat.postMessage", 503)
    r = cli("run-job", "digest", "--month", "2026-10", env=env(db, fake))
    assert "posted 1" not in r.stdout and len(firsts(fake)) == 1  # Slack has it; Steward does not know
    assert outbox.get(db, "digest:2026-10:C0SYNC:1").check and "not sent yet (internal_error)" in r.stdout
    again = cli("run-job", "digest", "--month", "2026-10", env=env(db, fake))
    assert again.returncode == 0 and "trend chart uploaded" in again.stdout, again.stdout + again.stderr
    assert len(firsts(fake)) == 1 and fake.posted("digest:2026-10:C0SYNC:1") == 1
    assert fake.of("conversations.history")  # it looked before sending


def test_a_run_that_died_after_sending_is_taken_over_once_the_lease_passes(fake, db, cfg):

    seed_october(db, cfg)
    fake.down(60)
    cli("run-job", "digest", "--month", "2026-10", "--now", "2026-11-02T08:00+00:00", env=env(db, fake))
    fake.down(0)
    # A deliverer claimed the first message, Slack posted it, and the process died before recording it.
    assert outbox.claim(db, "digest:2026-10:C0SYNC:1", utcnow() + outbox.BACKOFF_MAX) is not None
    WebClient(token=TOKEN, base_url=fake.url).chat_postMessage(
        channel="C0SYNC", text="digest", metadata=metadata("digest:2026-10:C0SYNC:1")
    )
    soon = cli("run-job", "digest", "--month", "2026-10", env=env(db, fake))
    assert "posted 1" not in soon.stdout and len(firsts(fake)) == 1  # its lease runs: nobody touches it
    with db.engine.begin() as conn:  # the lease passes (leases are real time, shared by every process)
        conn.execute(text("UPDATE outbox SET lease_until = :t WHERE key = 'digest:2026-10:C0SYNC:1'"), {"t": utcnow()})
    later = cli("run-job", "digest", "--month", "2026-10", env=env(db, fake))
    assert later.returncode == 0 and "trend chart uploaded" in later.stdout, later.stdout + later.stderr
    assert len(firsts(fake)) == 1 and fake.posted("digest:2026-10:C0SYNC:1") == 1


def test_the_clock_catches_up_a_missed_digest_and_a_restart_posts_nothing(fake, db, cfg, tmp_path):
    seed_october(db, cfg)
    # The digest for October was due on Monday 2 November, 09:00 in Berlin; the clock was down until the 3rd.
    first = Clock(db, fake, "2026-11-03T10:00", tmp_path, "first")
    try:
        first.wait_for("digest 2026-10: trend chart uploaded")
    finally:
        first.stop()
    assert len(to_sync(fake)) == 1 and "3 handoffs sent" in to_sync(fake)[0].args["text"]
    fake.reset()
    second = Clock(db, fake, "2026-11-03T10:30", tmp_path, "second")
    try:
        second.wait_for("digest 2026-10: already posted")
    finally:
        second.stop()
    assert to_sync(fake) == [] and fake.of("files.getUploadURLExternal") == []


def test_two_clocks_at_once_post_one_digest(fake, db, cfg, tmp_path):
    seed_october(db, cfg)
    clocks = [Clock(db, fake, "2026-11-02T09:01", tmp_path, f"c{i}") for i in range(2)]
    try:
        for clock in clocks:
            clock.wait_for("digest 2026-10")
        fake.settle(quiet=1.0)
    finally:
        for clock in clocks:
            clock.stop()
    assert len(to_sync(fake)) == 1 and len(fake.of("files.completeUploadExternal")) == 1
    assert [r.status for r in outbox.of_item(db, "digest:2026-10")] == ["sent", "sent", "sent"]


def test_due_times_and_the_catch_up_window(cfg):
    assert schedule.digest_due(cfg, "2026-10") == datetime(2026, 11, 2, 8)  # Mon 2 Nov, 09:00 Berlin
    assert schedule.digest_due(cfg, "2026-07") == datetime(2026, 8, 3, 7)  # 1 Aug is a Saturday; 09:00 CEST
    assert schedule.due_digests(cfg, datetime(2026, 11, 2, 7, 59)) == []
    assert schedule.due_digests(cfg, datetime(2026, 11, 2, 8)) == ["2026-10"]
    assert schedule.due_digests(cfg, datetime(2026, 11, 9, 8)) == ["2026-10"]  # 7 days late: still caught up
    assert schedule.due_digests(cfg, datetime(2026, 11, 9, 8, 1)) == []  # beyond catch_up_days
    assert schedule.prompt_due(cfg, "2026-11") == datetime(2026, 11, 28, 8)
    assert schedule.due_prompts(cfg, datetime(2026, 11, 28, 8)) == ["2026-11"]
    assert schedule.due_prompts(cfg, datetime(2026, 12, 1, 8)) == []  # the digest has gone out: too late


def test_initiatives_through_slack(steward, fake, db, cfg):
    r = cli("run-job", "initiative-prompt", "--month", "2026-11", env=env(db, fake))
    assert r.returncode == 0 and "initiative prompts 2026-11: 3 sent" in r.stdout
    prompts = {c.args["channel"]: c for c in fake.of("chat.postMessage")}
    assert set(prompts) == {"C0DESIGN", "C0ENG", "C0QA"}
    button = json.loads(json.dumps(prompts["C0DESIGN"].args["blocks"]))[-1]["elements"][0]
    assert button["text"]["text"] == "Share our improvement initiative" and button["value"] == "design 2026-11"
    assert cli("run-job", "initiative-prompt", "--month", "2026-11", env=env(db, fake)).stdout.startswith(
        "initiative prompts 2026-11: 0 sent"
    )

    fresh(fake)
    steward.click("U0BOB", "initiative_share", "design 2026-11", channel="C0DESIGN")
    assert "Only members of Design" in blocks_text(fake.wait("chat.postEphemeral")[0].args)
    steward.click("U0ALICE", "initiative_share", "nowhere 2026-11", channel="C0DESIGN")
    assert "names no team" in blocks_text(fake.wait("chat.postEphemeral", 2)[1].args)
    assert fake.of("views.open") == []

    steward.click("U0ALICE", "initiative_share", "design 2026-11", channel="C0DESIGN")
    modal = view_of(fake.wait("views.open")[0])
    assert modal["callback_id"] == "initiative_submit"
    empty = steward.submit("U0ALICE", modal, {"text": "", "metric": None, "owner": "U0ALICE"})
    assert empty.json() == {"response_action": "errors", "errors": {"text": "Say what the team will change."}}
    no_metric = steward.submit("U0ALICE", modal, {"text": "Review specs together", "metric": None, "owner": "U0ALICE"})
    assert no_metric.json()["errors"] == {"metric": "Choose the metric it should move."}
    ok = steward.submit(
        "U0ALICE", modal, {"text": "Review specs <@U0EVE> together", "metric": "cycle_time", "owner": "U0AMY"}
    )
    assert ok.status == 200 and ok.raw in (b"", b"{}")
    update = fake.wait("chat.update")[0]
    prompt = outbox.get(db, "prompt:2026-11:design")
    assert (update.args["channel"], update.args["ts"]) == (prompt.result_channel, prompt.result_ts)
    text = blocks_text(update.args)
    assert "Shared by <@U0ALICE>: “Review specs &lt;@U0EVE&gt; together”" in text and "owner <@U0AMY>" in text
    assert "Change our initiative" in json.dumps(update.args["blocks"])

    preview = cli("digest", "--month", "2026-11", env={"DATABASE_URL": db.url, "PROCESS_CONFIG": str(PROCESS)})
    assert preview.returncode == 0, preview.stderr
    assert (
        "Initiative: “Review specs <@U0EVE> together”, owner @U0AMY · Cycle time (median, handoffs sent)"
        in preview.stdout
    )


@pytest.mark.parametrize(
    "args,message",
    [
        (
            ["run-job", "nope"],
            "python -m bot run-job: argument NAME: invalid choice: 'nope' (choose from 'digest', 'initiative-prompt', 'catch-up',"
            " 'outbox', 'escalations', 'pulse', 'matrix-review', 'members')",
        ),
        (["run-job", "digest", "--month", "2026-13"], "--month: '2026-13' is not a month (YYYY-MM)"),
        (["run-job", "digest", "--now", "yesterday"], "--now: 'yesterday' is not an ISO-8601 date and time"),
        (["digest", "--month", "October"], "--month: 'October' is not a month (YYYY-MM)"),
    ],
)
def test_cli_refuses_bad_arguments_in_one_line(db, fake, args, message):
    r = cli(*args, env=env(db, fake))
    assert r.returncode == 2 and r.stderr.strip().startswith(message) and "Traceback" not in r.stderr


def test_run_job_needs_the_bot_token(db):
    r = cli("run-job", "digest", env={"DATABASE_URL": db.url, "PROCESS_CONFIG": str(PROCESS)})
    assert r.returncode == 2 and r.stderr.strip() == "SLACK_BOT_TOKEN: required but not set"
