"""Escalation paths through Slack's protocol: handoffs and fast-tracks driven by signed requests to the
served app, the clock run as an operator runs it (`run-job escalations --now …`, `clock --now …`), and
what Slack shows afterwards read back from the fake Web API, on every database the tests run on.

The served app stamps handoffs with the real time, so every `--now` here is computed from the handoff's
own clock (`bot.domain.sla.levels`): moments in the future, in the organisation's working time (Berlin,
09:00-17:00, Monday to Friday; Design → Engineering has an SLA of 48 working hours)."""

from __future__ import annotations

import json
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta

from slack_sdk import WebClient

from bot.domain import escalations, fasttrack, handoffs, sla
from bot.domain.core import outbox, schedule
from bot.domain.core.timeutil import utcnow
from bot.domain.core.worktime import WorkTime
from bot.domain.figures import plural
from bot.entry.bootstrap import Deps
from handlers import deliverer
from tests.support.clock import Clock, env
from tests.support.fasttrack import ask
from tests.support.handoffs import ALL_MET, fresh, send as submit
from tests.support.harness import TOKEN, blocks_text, cli, view_of

ENG = "C0ENG"
STEWARD = "U0STEW"


# -- moments ------------------------------------------------------------------------------------------------


def iso(moment: datetime) -> str:
    """A naive UTC moment as `--now` takes it (with its offset, so the organisation's zone does not apply)."""
    return moment.replace(tzinfo=UTC).isoformat()


def working(work: WorkTime, moment: datetime) -> datetime:
    return moment if work.is_working(moment) else work.next_working(moment)


def past(work: WorkTime, moment: datetime, hours: float) -> datetime:
    """`hours` working hours after `moment`, moved into working time if it falls on a day's end."""
    return working(work, work.add(moment, hours))


def local(work: WorkTime, moment: datetime) -> datetime:
    return moment.replace(tzinfo=UTC).astimezone(work.tz)


def at_local(work: WorkTime, day, hour: int) -> datetime:
    return datetime(day.year, day.month, day.day, hour, tzinfo=work.tz).astimezone(UTC).replace(tzinfo=None)


def overdue(work: WorkTime, due: datetime, moment: datetime) -> str:
    """The card's wording of how late it is at `moment` (the renderer rounds to a tenth; templates.plural words it)."""

    return f"overdue by {plural(round(work.between(due, moment), 1), 'working hour')}"


def date_of(moment: datetime) -> str:
    """How a moment starts in a message: Slack's date formatting with its epoch."""
    return f"<!date^{int(moment.replace(tzinfo=UTC).timestamp())}^"


# -- the clock, as an operator runs it --------------------------------------------------------------------


def job(db, fake, moment: datetime) -> str:
    r = cli("run-job", "escalations", "--now", iso(moment), env=env(db, fake))
    assert r.returncode == 0, r.stdout + r.stderr
    assert "Traceback" not in r.stderr, r.stderr
    return r.stdout


def jobs_at_once(db, fake, moments: list[datetime]) -> list[str]:
    """Several `run-job escalations` processes started together."""
    with ThreadPoolExecutor(len(moments)) as pool:
        return list(pool.map(lambda m: job(db, fake, m), moments))


def send(steward, fake, db, **extra):
    """A handoff sent through /handoff, read back once its card's place in Slack is recorded."""
    h = submit(steward, fake, **extra)
    return until(lambda: (row := handoffs.get(db, h.id)).message_ts and row, what="the card's ts")


# -- what Slack shows -------------------------------------------------------------------------------------


def until(check, timeout: float = 15.0, what: str = "condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


def key_of(message: dict) -> str | None:
    return ((message.get("metadata") or {}).get("event_payload") or {}).get("key")


def card_of(fake, h) -> dict:
    (card,) = [m for m in fake.messages(ENG) if key_of(m) == handoffs.card_key(h.id)]
    return card


def thread_of(fake, h) -> list[dict]:
    card = card_of(fake, h)
    return [m for m in fake.messages(ENG) if m["thread_ts"] == card["ts"] and m["ts"] != card["ts"]]


def one(fake, key: str, channel: str) -> dict:
    """The one message Slack holds under `key`, which must be in `channel` (a user id: the DM)."""
    assert fake.posted(key) == 1, (key, fake.posted(key))
    (message,) = [m for m in fake.messages(channel) if key_of(m) == key]
    return message


def buttons(message: dict) -> list[tuple[str, str, str]]:
    blocks = message["blocks"]
    blocks = json.loads(blocks) if isinstance(blocks, str) else blocks
    return [
        (e["action_id"], e["text"]["text"], e.get("value"))
        for b in blocks
        if b["type"] == "actions"
        for e in b["elements"]
    ]


def kinds(db, h) -> list[str]:
    return [e.kind for e in handoffs.history(db, h.id)]


def escalation_rows(db, h) -> list[str]:
    """What the handoff's clock wrote to the outbox (not the card, nor the sender's receipt)."""
    return [
        r.key
        for r in outbox.of_item(db, f"handoff:{h.id}")
        if (":thread" in r.key or ":dm:" in r.key) and ":v1:" not in r.key
    ]


# -- (1) the reminder at the SLA, the steward at twice the SLA, each once ----------------------------------


def test_the_reminder_at_the_sla_and_the_steward_at_twice_the_sla_each_once(steward, fake, db, cfg):
    h = send(steward, fake, db, title="Checkout spec")
    work = WorkTime.of(cfg)
    first, second = sla.levels(cfg, h, work)
    assert (first.notify, first.at) == (("team",), work.add(h.waiting_since, 48))
    assert (second.notify, second.at) == (("steward",), work.add(h.waiting_since, 96))
    assert h.next_escalation_at == first.at
    card = blocks_text(card_of(fake, h))
    assert f"Review due {date_of(first.at)}" in card and "overdue" not in card

    # An hour and a half past the SLA: a reminder in the card's thread, with a snooze button; the card updated in place.
    fresh(fake)
    moment = past(work, first.at, 1.5)
    out = job(db, fake, moment)
    assert "escalations: 2 messages written" in out, out
    reminder = one(fake, f"handoff:{h.id}:v2:thread:team", ENG)
    assert reminder["thread_ts"] == card_of(fake, h)["ts"] == h.message_ts
    text = blocks_text(reminder)
    assert f"*#{h.id} Checkout spec* from *Design* is waiting for review, {overdue(work, first.at, moment)}" in text
    assert f"It was due {date_of(first.at)}" in text
    assert buttons(reminder) == [("handoff_snooze", "Snooze one working day", str(h.id))]
    (update,) = fake.of("chat.update")
    assert (update.args["channel"], update.args["ts"]) == (ENG, h.message_ts)
    assert f"*{overdue(work, first.at, moment)}*" in blocks_text(update.args)
    assert f"*{overdue(work, first.at, moment)}*" in blocks_text(card_of(fake, h))  # what the channel shows
    assert fake.messages(STEWARD) == []
    assert [m["ts"] for m in fake.messages(ENG) if m["thread_ts"] in (None, m["ts"])] == [h.message_ts]  # no new card

    # Again at the same moment: nothing.
    fake.reset(keep_messages=True)
    assert "escalations: nothing due" in job(db, fake, moment)
    assert fake.calls == []

    # An hour past twice the SLA: the steward's DM (no snooze there), the card updated again.
    later = past(work, second.at, 1)
    out = job(db, fake, later)
    assert "escalations: 2 messages written" in out, out
    dm = one(fake, f"handoff:{h.id}:v3:dm:{STEWARD}", STEWARD)
    text = blocks_text(dm)
    assert f"*#{h.id} Checkout spec* from *Design* is waiting for review, {overdue(work, first.at, later)}" in text
    assert f"The card is in <#{ENG}>" in text and buttons(dm) == []
    (update,) = fake.of("chat.update")
    assert update.args["ts"] == h.message_ts and f"*{overdue(work, first.at, later)}*" in blocks_text(update.args)

    # And again: nothing. Each level once, in all.
    fake.reset(keep_messages=True)
    assert "escalations: nothing due" in job(db, fake, later)
    assert fake.calls == []
    assert len(fake.messages(STEWARD)) == 1 and len(thread_of(fake, h)) == 1
    assert fake.posted(f"handoff:{h.id}:v2:thread:team") == 1 and fake.posted(f"handoff:{h.id}:v3:dm:{STEWARD}") == 1
    assert kinds(db, h) == ["created", "escalated", "escalated"]
    row = handoffs.get(db, h.id)
    assert (row.level, row.next_escalation_at) == (2, None)  # no third level without an escalation contact


# -- (2) nothing outside working time ---------------------------------------------------------------------


def test_nothing_is_sent_at_night_or_on_a_saturday(steward, fake, db, cfg):
    h = send(steward, fake, db)
    work = WorkTime.of(cfg)
    first, second = sla.levels(cfg, h, work)
    day = local(work, first.at).date() + timedelta(days=1)
    while day.weekday() >= 5:
        day += timedelta(days=1)
    night = at_local(work, day, 3)  # 03:00 on a working day, past the SLA
    day = local(work, first.at).date() + timedelta(days=1)
    while day.weekday() != 5:
        day += timedelta(days=1)
    saturday = at_local(work, day, 11)
    assert first.at < night < second.at and first.at < saturday < second.at
    assert local(work, night).hour == 3 and local(work, saturday).strftime("%a") == "Sat"

    fresh(fake)
    for out in jobs_at_once(db, fake, [night, saturday]):
        assert "escalations: nothing due" in out, out
    assert fake.calls == [] and kinds(db, h) == ["created"] and escalation_rows(db, h) == []
    assert (
        handoffs.get(db, h.id).next_escalation_at == first.at
    )  # due all the while: the sweep held back (it fires in test 1)


# -- (3) after downtime, only the current level ----------------------------------------------------------


def test_a_clock_that_was_down_sends_only_the_current_level(steward, fake, db, cfg):
    h = send(steward, fake, db)
    work = WorkTime.of(cfg)
    first, second = sla.levels(cfg, h, work)
    # No clock ran from before the SLA until three days after twice the SLA.
    back = working(work, second.at + timedelta(days=3))
    fresh(fake)
    out = job(db, fake, back)
    assert "escalations: 2 messages written" in out, out  # the card and the steward: not the stale reminder
    dm = one(fake, f"handoff:{h.id}:v2:dm:{STEWARD}", STEWARD)
    assert overdue(work, first.at, back) in blocks_text(dm)
    assert thread_of(fake, h) == [] and fake.posted(f"handoff:{h.id}:v2:thread:team") == 0
    (update,) = fake.of("chat.update")
    assert update.args["ts"] == h.message_ts and overdue(work, first.at, back) in blocks_text(update.args)
    (ev,) = [e for e in handoffs.history(db, h.id) if e.kind == "escalated"]
    assert (ev.data["level"], ev.data["notify"], ev.data["last"]) == (2, ["steward"], True)
    assert ev.data["overdue_hours"] == round(work.between(first.at, back), 1)
    assert (handoffs.get(db, h.id).level, handoffs.get(db, h.id).next_escalation_at) == (2, None)


# -- (4) snoozes -----------------------------------------------------------------------------------------


def test_the_receiving_team_snoozes_a_working_day_twice_and_the_sender_cannot(steward, fake, db, cfg):
    h = send(steward, fake, db)
    work = WorkTime.of(cfg)
    first, second = sla.levels(cfg, h, work)
    fresh(fake)
    job(db, fake, past(work, first.at, 1))
    reminder = one(fake, f"handoff:{h.id}:v2:thread:team", ENG)

    def snooze(user: str):
        fresh(fake)
        assert steward.click(user, "handoff_snooze", str(h.id), channel=ENG, message_ts=reminder["ts"]).status == 200

    # The sender may not put off their own handoff's review: told privately, nothing changes.
    snooze("U0ALICE")
    (told,) = fake.wait("chat.postEphemeral")
    assert told.args["user"] == "U0ALICE" and told.args["channel"] == ENG
    assert "Only members of Engineering and the boundary's steward <@U0STEW>" in blocks_text(told.args)
    fake.settle(quiet=0.3)
    assert fake.of("chat.update") == [] and fake.of("chat.postMessage") == [] and handoffs.get(db, h.id).snoozes == 0

    # U0BOB (Engineering) snoozes: every level of the round moves one working day (8 hours) later.
    for n in (1, 2):
        snooze("U0BOB")
        update = fake.wait("chat.update")[0]
        note_key = f"handoff:{h.id}:v{2 + n}:thread"
        note = until(lambda key=note_key: fake.posted(key) == 1 and one(fake, key, ENG), what=f"snooze note {n}")
        due = work.add(h.waiting_since, 48 + 8 * n)
        assert f"Review due {date_of(due)}" in blocks_text(update.args) and f"snoozed {n}×" in blocks_text(update.args)
        assert update.args["ts"] == h.message_ts and note["thread_ts"] == h.message_ts
        assert (
            f"<@U0BOB> snoozed handoff #{h.id} by one working day ({n} of 2 this round). Now due {date_of(due)}"
            in blocks_text(note)
        )
        row = handoffs.get(db, h.id)
        assert (row.snoozes, row.level, row.next_escalation_at) == (n, 1, work.add(h.waiting_since, 96 + 8 * n))
        assert sla.deadline(cfg, row, work) == due
        fake.settle(quiet=0.2)
        assert fake.of("chat.postEphemeral") == []

    # A third snooze is refused, privately.
    snooze("U0BOB")
    (told,) = fake.wait("chat.postEphemeral")
    assert told.args["user"] == "U0BOB" and f"Handoff #{h.id} was already snoozed 2 times this round" in blocks_text(
        told.args
    )
    fake.settle(quiet=0.3)
    assert fake.of("chat.update") == [] and fake.of("chat.postMessage") == []
    assert kinds(db, h) == ["created", "escalated", "snoozed", "snoozed"]
    # the sweep looks only at handoffs whose next_escalation_at has passed: the steward's level is two working days later
    assert handoffs.get(db, h.id).next_escalation_at == work.add(second.at, 16) > second.at
    assert fake.messages(STEWARD) == []


# -- (5) escalating by hand ------------------------------------------------------------------------------


def test_the_sender_escalates_by_hand_to_the_steward_once_and_a_stranger_cannot(steward, fake, db, cfg):
    h = send(steward, fake, db, title="Search spec")
    fresh(fake)
    r = steward.command("U0ALICE", f"escalate {h.id}   Blocked on the <!channel> API decision")
    assert r.status == 200
    answer = r.json()
    assert answer.get("response_type") != "in_channel"  # private: only the sender sees it
    assert f"Handoff #{h.id} is escalated to its steward <@{STEWARD}>." in blocks_text(answer)
    dm = until(
        lambda: (
            fake.posted(f"handoff:{h.id}:v2:dm:{STEWARD}") == 1
            and one(fake, f"handoff:{h.id}:v2:dm:{STEWARD}", STEWARD)
        ),
        what="the steward's DM",
    )
    text = blocks_text(dm)
    assert (
        f"<@U0ALICE> escalated handoff *#{h.id} Search spec* (Design → Engineering): Blocked on the &lt;!channel&gt; API decision"
        in text
    )
    assert f"The card is in <#{ENG}>" in text and "<!channel>" not in text and buttons(dm) == []
    fake.settle(quiet=0.3)
    assert len(fake.messages(STEWARD)) == 1 and thread_of(fake, h) == []
    row = handoffs.get(db, h.id)
    assert (row.state, row.level, row.next_escalation_at) == ("open", 0, h.next_escalation_at)  # the clock goes on

    fresh(fake)
    r = steward.command("U0EVE", f"escalate {h.id} Hurry up")
    assert r.status == 200 and r.json().get("response_type") != "in_channel"
    assert (
        f"Only the sending team, the receiving team or the steward of handoff #{h.id} can escalate it."
        in blocks_text(r.json())
    )
    fake.settle(quiet=0.3)
    assert fake.of("chat.postMessage") == [] and len(fake.messages(STEWARD)) == 1
    assert kinds(db, h) == ["created", "escalated"]


# -- (6) a send-back not resubmitted ---------------------------------------------------------------------


def test_a_send_back_not_resubmitted_reminds_the_sender_then_the_steward_and_a_resubmission_restarts_the_clock(
    steward, fake, db, cfg
):
    h = send(steward, fake, db, title="Profile spec")
    work = WorkTime.of(cfg)
    fresh(fake)
    steward.click("U0BOB", "handoff_rework", str(h.id))
    assert (
        steward.submit(
            "U0BOB", view_of(fake.wait("views.open")[0]), {"reason": "Wireframes lack the error states"}
        ).status
        == 200
    )
    fake.wait("chat.update")
    until(lambda: fake.messages("U0ALICE"), what="the sent-back DM")
    fresh(fake)
    back = handoffs.get(db, h.id)
    assert back.state == "rework_requested"
    first, second = sla.levels(cfg, back, work)
    assert (first.notify, first.at) == (("sender",), work.add(back.waiting_since, 48))
    assert (second.notify, second.at) == (("steward",), work.add(back.waiting_since, 96))
    assert f"Resubmission due {date_of(first.at)}" in blocks_text(card_of(fake, h))

    # Not resubmitted within the SLA: the sender, with a Resubmit button.
    moment = past(work, first.at, 1)
    assert "escalations: 2 messages written" in job(db, fake, moment)
    dm = one(fake, f"handoff:{h.id}:v3:dm:U0ALICE", "U0ALICE")
    text = blocks_text(dm)
    assert f"*#{h.id} Profile spec* came back from *Engineering* and is waiting for you to resubmit it" in text
    assert overdue(work, first.at, moment) in text
    assert buttons(dm) == [("handoff_resubmit", "Resubmit", str(h.id))]
    assert fake.messages(STEWARD) == [] and thread_of(fake, h) == []

    # Twice the SLA: the steward.
    later = past(work, second.at, 1)
    assert "escalations: 2 messages written" in job(db, fake, later)
    text = blocks_text(one(fake, f"handoff:{h.id}:v4:dm:{STEWARD}", STEWARD))
    assert (
        f"*#{h.id} Profile spec* was sent back to <@U0ALICE> and is not resubmitted yet, {overdue(work, first.at, later)}"
        in text
    )
    assert [key_of(m) for m in fake.messages("U0ALICE")] == [
        f"handoff:{h.id}:v1:dm:U0ALICE",
        f"handoff:{h.id}:v2:dm:U0ALICE",
        f"handoff:{h.id}:v3:dm:U0ALICE",
    ]

    # The sender resubmits from the reminder: a new round, its clock started again, the reviewer mentioned in the thread.
    fresh(fake)
    steward.click("U0ALICE", "handoff_resubmit", str(h.id), channel="D0ALICE", message_ts=dm["ts"])
    assert (
        steward.submit(
            "U0ALICE", view_of(fake.wait("views.open")[0]), {"criteria": list(ALL_MET), "notes": "Error states added"}
        ).status
        == 200
    )
    reply = until(
        lambda: [m for m in thread_of(fake, h) if "Resubmitted" in (m["text"] or "")], what="the resubmission reply"
    )[0]
    assert blocks_text(reply).count("Resubmitted for round 2 by <@U0ALICE>. <@U0BOB>, it is back for your review.") == 1
    again = handoffs.get(db, h.id)
    resubmitted = handoffs.history(db, h.id)[-1]
    assert resubmitted.kind == "resubmitted"
    assert (again.state, again.round, again.level, again.snoozes) == ("open", 2, 0, 0)
    assert again.waiting_since == resubmitted.at and again.next_escalation_at == work.add(resubmitted.at, 48)
    update = fake.wait("chat.update")[-1]
    until(
        lambda: f"Review due {date_of(again.next_escalation_at)}" in blocks_text(card_of(fake, h)),
        what="the card's new deadline",
    )
    assert "round 2" in blocks_text(update.args) or "round 2" in blocks_text(card_of(fake, h))
    # round 2 waits on the reviewers again, its path from the start: the team at the SLA, then the steward
    assert [(d.notify, d.at) for d in sla.levels(cfg, again, work)] == [
        (("team",), work.add(resubmitted.at, 48)),
        (("steward",), work.add(resubmitted.at, 96)),
    ]
    assert kinds(db, h) == ["created", "rework_requested", "escalated", "escalated", "resubmitted"]


# -- (7) a fast-track undecided too long -----------------------------------------------------------------


def test_a_fast_track_undecided_after_24_working_hours_goes_to_the_backup_approver_once(steward, fake, db, cfg):
    ask(steward, fake)
    fake.wait("chat.postMessage", 3)
    fake.settle(quiet=0.3)
    (r,) = fasttrack.listing(db, "U0BOB")[0]
    assert r.deciders == ["U0CAROL", STEWARD]
    work = WorkTime.of(cfg)
    moment = past(work, r.created_at, cfg.fasttrack.escalate_after_hours)
    fresh(fake)
    out = job(db, fake, moment)
    assert "escalations:" in out and "nothing due" not in out, out

    card = one(fake, fasttrack.card_key(r.id, "U0HEAD"), "U0HEAD")
    assert [b[0] for b in buttons(card)] == ["fasttrack_approve", "fasttrack_deny"]
    updates = {u.args["channel"]: u for u in fake.of("chat.update")}
    assert set(updates) == {"D0CAROL", "D0STEW"}
    for u in updates.values():
        text = blocks_text(u.args)
        assert "<@U0HEAD>" in text and "fasttrack_approve" not in json.dumps(u.args["blocks"])
    told = blocks_text(one(fake, f"fasttrack:{r.id}:v2:dm:U0BOB", "U0BOB"))
    assert (
        f"Nobody decided your fast-track *#{r.id}*" in told
        and "within 24 working hours" in told
        and "<@U0HEAD>" in told
    )
    row = fasttrack.get(db, r.id)
    assert (row.state, row.deciders, row.escalated) == ("pending", ["U0HEAD"], True)

    fake.reset(keep_messages=True)
    assert "escalations: nothing due" in job(db, fake, moment)
    assert fake.calls == [] and fake.posted(fasttrack.card_key(r.id, "U0HEAD")) == 1
    assert len(fake.messages("U0HEAD")) == 1 and len(fake.messages("U0BOB")) == 2  # the receipt, the one notice
    assert [e.kind for e in fasttrack.history(db, r.id)] == ["requested", "rerouted"]


def test_the_first_approvers_of_a_fast_track_escalated_for_time_are_not_told_it_is_over_budget(steward, fake, db, cfg):
    ask(steward, fake)
    fake.wait("chat.postMessage", 3)
    fake.settle(quiet=0.3)
    (r,) = fasttrack.listing(db, "U0BOB")[0]
    assert not r.over_budget
    # The clock's job in this process (`run-job escalations` does just this: sweep, then deliver).
    moment = past(WorkTime.of(cfg), r.created_at, cfg.fasttrack.escalate_after_hours)
    fresh(fake)
    keys = escalations.sweep(db, cfg, moment)
    deliverer(Deps(cfg=cfg, db=db, now=lambda: moment), WebClient(token=TOKEN, base_url=fake.url), now=utcnow).send_now(
        keys
    )
    updates = fake.of("chat.update")
    assert {u.args["channel"] for u in updates} == {"D0CAROL", "D0STEW"} and not fasttrack.get(db, r.id).over_budget
    for u in updates:
        assert "Over the team's budget" not in blocks_text(u.args), blocks_text(u.args)


def test_a_reminder_delivered_after_the_handoff_was_accepted_does_not_say_it_is_waiting(steward, fake, db, cfg):
    h = send(steward, fake, db)
    moment = past(WorkTime.of(cfg), h.next_escalation_at, 1)
    key = f"handoff:{h.id}:v2:thread:team"
    fresh(fake)
    fake.rate_limit("chat.postMessage", retry_after=1)  # the reminder waits for Slack's Retry-After
    # The clock's job in this process (`run-job escalations` does just this: sweep, then deliver).
    clock = deliverer(Deps(cfg=cfg, db=db, now=lambda: moment), WebClient(token=TOKEN, base_url=fake.url), now=utcnow)
    clock.send_now(escalations.sweep(db, cfg, moment))
    assert outbox.get(db, key).status == "pending" and fake.posted(key) == 0
    steward.click("U0BOB", "handoff_accept", str(h.id))
    until(lambda: handoffs.get(db, h.id).state == "accepted", what="the acceptance")
    until(
        lambda: clock.sweep(max_seconds=1) is not None and fake.posted(key) + (outbox.get(db, key).status != "pending"),
        what="the outbox sweep to settle the reminder",
    )
    if fake.posted(key):
        reminder = one(fake, key, ENG)
        assert "waiting for review" not in blocks_text(reminder) and buttons(reminder) == [], blocks_text(reminder)


# -- (8) two jobs at once ----------------------------------------------------------------------------------


def test_two_jobs_at_once_send_each_level_once(steward, fake, db, cfg):
    hs = []
    for title in ("Spec A", "Spec B"):
        fresh(fake)
        hs.append(send(steward, fake, db, title=title))
    work = WorkTime.of(cfg)
    levels = [sla.levels(cfg, h, work) for h in hs]
    moment = past(work, max(first.at for first, _ in levels), 1)
    assert moment < min(second.at for _, second in levels)
    fresh(fake)
    jobs_at_once(db, fake, [moment, moment])
    for h in hs:
        assert fake.posted(f"handoff:{h.id}:v2:thread:team") == 1 and len(thread_of(fake, h)) == 1
    later = past(work, max(second.at for _, second in levels), 1)
    jobs_at_once(db, fake, [later, later])
    for h in hs:
        assert fake.posted(f"handoff:{h.id}:v3:dm:{STEWARD}") == 1
        assert kinds(db, h) == ["created", "escalated", "escalated"]
    assert len(fake.messages(STEWARD)) == 2
    assert (
        len([c for c in fake.of("chat.postMessage") if c.args["channel"] in (ENG, STEWARD)]) == 4
    )  # 2 reminders, 2 DMs


# -- (9) the clock process -------------------------------------------------------------------------------


def quiet_moment(cfg, work: WorkTime, start: datetime, end: datetime) -> datetime | None:
    """A working moment in [start, end) when the clock has no digest or initiative prompt to catch up."""
    moment = working(work, start)
    while moment < end:
        if work.is_working(moment) and not schedule.due_digests(cfg, moment) and not schedule.due_prompts(cfg, moment):
            return moment
        moment = working(work, moment + timedelta(hours=1))
    return None


def test_a_clock_process_sends_the_reminder_and_a_restarted_clock_sends_nothing_more(steward, fake, db, cfg, tmp_path):
    h = send(steward, fake, db)
    work = WorkTime.of(cfg)
    first, second = sla.levels(cfg, h, work)
    moment = quiet_moment(cfg, work, work.add(first.at, 0.5), second.at) or past(work, first.at, 0.5)
    key = f"handoff:{h.id}:v2:thread:team"
    fresh(fake)
    clock = Clock(db, fake, iso(moment), tmp_path, "first")
    try:
        until(lambda: fake.posted(key) == 1, timeout=60, what="the clock's reminder")
        clock.wait_for("escalations: 2 messages written")
        # stopped only once all it wrote is delivered (its outbox sweep may hold the card's update meanwhile)
        until(
            lambda: all(r.status == "sent" for r in outbox.of_item(db, f"handoff:{h.id}")), timeout=30, what="delivery"
        )
    finally:
        clock.stop()
    assert overdue(work, first.at, moment) in blocks_text(one(fake, key, ENG))
    assert any(u.args["ts"] == h.message_ts for u in fake.of("chat.update"))

    fake.reset(keep_messages=True)
    again = Clock(db, fake, iso(moment + timedelta(minutes=10)), tmp_path, "second")
    try:
        again.wait_for("escalations: nothing due")
    finally:
        again.stop()
    assert fake.posted(key) == 1 and len(thread_of(fake, h)) == 1
    assert [
        c
        for c in fake.calls
        if c.method in ("chat.postMessage", "chat.update") and c.args.get("channel") in (ENG, STEWARD)
    ] == []
    assert kinds(db, h) == ["created", "escalated"]
