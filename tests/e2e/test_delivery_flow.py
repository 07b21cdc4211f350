"""Every message Steward sends after an ack reaches Slack exactly once, end to end: signed requests to the
served app (gunicorn), `python -m bot run-job`/`outbox`/`clock` as an operator runs them, and the fake
Web API failing the ways Slack fails.

Four messages are followed through every fault:

- the handoff card (`handoff:<id>:card`, to the receiving team's channel),
- the sender's DM (`handoff:<id>:v2:dm:U0ALICE`, written when the handoff is accepted: the only post that
  click causes, so a fault queued for chat.postMessage hits it and nothing else),
- a fast-track card (`fasttrack:<id>:card:<approver>`, a DM),
- the digest (`digest:2026-10:C0SYNC:1`, with its chart uploaded in its thread).

Each test checks Slack's side (`fake.posted(key)`, the keys a channel holds) and the outbox row, and fails
if the mechanism it proves is taken away: the look for the key before a resend after an unknown outcome,
the take-over once a dead deliverer's lease has passed, the failed state that only an operator reopens and
the one notice to whoever acted, the retry of passing failures, the hook that re-routes a fast-track nobody
can see. (The two-servers-two-clocks test shows the whole holds under concurrency; a single layer of it
removed, such as the claim's rowcount check, is usually covered by the others, and by test_outbox.py.)

Operator commands run in this process through `bot.entry.cli.main` (what `python -m bot` runs); `clock` and
`serve` are real processes.
"""

from __future__ import annotations

import contextlib
import io
import os
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import pytest
from sqlmodel import select

import bot.domain.core.timeutil
import bot.entry.clock
from bot.domain import fasttrack, handoffs
from bot.domain.core import outbox
from bot.entry.cli import main
from storage.models import FastTrack, Handoff, Outbox
from tests.support.clock import Clock, env
from tests.support.data import PROCESS
from tests.support.handoffs import ALL_MET, CRITERIA
from tests.support.harness import Steward, blocks_text, view_of

MONTH = "2026-10"
DIGEST = f"digest:{MONTH}:C0SYNC:1"
CHART = f"digest:{MONTH}:C0SYNC:chart"
DETAILS = f"digest:{MONTH}:C0SYNC:2"  # the digest's details, a reply in its thread
ARCHITECTURE = "Architecture review"  # its only approver is U0ALICE
QA_SIGNOFF = "QA sign-off"  # approvers U0CAROL, U0STEW


# -- driving Steward ---------------------------------------------------------------------------------------


def until(check, timeout: float = 15.0, what: str = "condition"):
    """Poll `check` until it returns something truthy; return that."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.02)


def opened(server, fake, user: str, text: str, command: str) -> dict:
    """The modal a slash command opens (waiting for its own views.open, not an earlier one)."""
    before = len(fake.of("views.open"))
    assert server.command(user, text, command=command).status == 200
    return view_of(fake.wait("views.open", before + 1)[before])


def handoff_form(server, fake, user: str = "U0ALICE") -> dict:
    return opened(server, fake, user, "eng", "/handoff")


def fasttrack_form(server, fake, user: str = "U0BOB") -> dict:
    return opened(server, fake, user, "", "/fasttrack")


def submit_handoff(server, view: dict, title: str, user: str = "U0ALICE"):
    r = server.submit(user, view, {"to_team": "eng", "title": title, CRITERIA: list(ALL_MET)})
    assert r.status == 200 and r.raw in (b"", b"{}"), r.raw
    return r


def submit_fasttrack(server, view: dict, element: str, user: str = "U0BOB"):
    r = server.submit(
        user,
        view,
        {
            "what": "Hotfix 4.2.1",
            "element": element,
            "reason": "Customer escalation",
            "justification": "Checkout is down for our largest customer",
        },
    )
    assert r.status == 200 and r.raw in (b"", b"{}"), r.raw
    return r


def last_handoff(db) -> Handoff:
    with db.read() as s:
        return s.exec(select(Handoff).order_by(Handoff.id.desc())).first()


def last_fasttrack(db) -> FastTrack:
    with db.read() as s:
        return s.exec(select(FastTrack).order_by(FastTrack.id.desc())).first()


def handoffs_get(db, handoff_id: int) -> Handoff:

    return handoffs.get(db, handoff_id)


def card(h) -> str:
    return f"handoff:{h.id}:card"


def receipt(h) -> str:
    return f"handoff:{h.id}:v1:dm:{h.sender}"


def accepted_dm(h) -> str:
    return f"handoff:{h.id}:v2:dm:{h.sender}"


def ft_card(r, person: str) -> str:
    return f"fasttrack:{r.id}:card:{person}"


def ft_receipt(r) -> str:
    return f"fasttrack:{r.id}:v1:dm:{r.requester}"


def row(db, key: str):
    return outbox.get(db, key)


def settled(db, key: str, status: str = "sent", attempts: int | None = None) -> bool:
    r = outbox.get(db, key)
    return r is not None and r.status == status and (attempts is None or r.attempts == attempts)


def unsure(db, key: str) -> bool:
    """The row's one attempt ended with an unknown outcome: pending, and the next attempt must look first."""
    r = outbox.get(db, key)
    return r is not None and r.status == "pending" and r.attempts == 1 and r.check


def keys_in(fake, channel: str) -> Counter:
    """The outbox keys of the messages a channel (a user id: the DM) holds, with how often each is there."""
    return Counter(((m["metadata"] or {}).get("event_payload") or {}).get("key") for m in fake.messages(channel))


def the_message(fake, key: str) -> dict:
    (message,) = [
        m
        for ch in list(fake._messages)
        for m in fake.messages(ch)
        if ((m["metadata"] or {}).get("event_payload") or {}).get("key") == key
    ]
    return message


def iso() -> str:
    """Now, for `clock --now`, with its offset."""
    return datetime.now(UTC).isoformat()


@dataclass
class Ran:
    returncode: int
    stdout: str
    stderr: str


class Hurry:
    """`time` for bot.entry.clock, whose waits pass at once and are counted: a job's patience without the wait."""

    def __init__(self):
        self.waited = 0.0

    def monotonic(self) -> float:
        return time.monotonic() + self.waited

    def sleep(self, seconds: float) -> None:
        self.waited += seconds

    def __getattr__(self, name):
        return getattr(time, name)


def run(db, fake, *args: str, later: timedelta | None = None, hurry: Hurry | None = None) -> Ran:
    """`python -m bot ARGS` as an operator runs it, with the operator's environment, but in this process
    (`bot.entry.cli.main`, what `python -m bot` runs): a Python start-up per command would cost seconds.
    `later`: the command runs that much later than now. (`--now` cannot stand in for this: it moves what
    a job computes, never leases and back-offs, which are kept in real time, shared with other processes.)
    `hurry`: the job's own waits (bot.entry.clock's patience for a first message) pass at once, counted there."""

    real = bot.domain.core.timeutil.utcnow
    saved = dict(os.environ)
    os.environ.update(env(db, fake))
    for name in ("SLACK_SIGNING_SECRET", "SLACK_APP_TOKEN"):
        os.environ.pop(name, None)
    out, err = io.StringIO(), io.StringIO()
    try:
        if later is not None:
            bot.domain.core.timeutil.utcnow = lambda: real() + later
        if hurry is not None:
            bot.entry.clock.time = hurry
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            code = main(list(args))
    finally:
        bot.domain.core.timeutil.utcnow = real
        bot.entry.clock.time = time
        os.environ.clear()
        os.environ.update(saved)
    r = Ran(code, out.getvalue(), err.getvalue())
    assert "Traceback" not in r.stderr, r.stderr
    return r


def sweep(db, fake, later: timedelta | None = timedelta(minutes=1)) -> Ran:
    """`python -m bot run-job outbox`, run `later` than now: past the back-off (and, at 2 minutes, past
    any lease). None: now."""
    r = run(db, fake, "run-job", "outbox", later=later)
    assert r.returncode == 0, r.stdout + r.stderr
    return r


def looked(fake, channel_id: str) -> bool:
    return any(
        c.args.get("channel") == channel_id and c.args.get("include_all_metadata") in (True, "true", "1", 1)
        for c in fake.of("conversations.history")
    )


# -- (a) Slack stores the message, then answers 503 ------------------------------------------------------


def test_stored_then_503_each_message_is_found_not_posted_again(steward, fake, db):
    # the handoff card: the first post of a submission
    view_a = handoff_form(steward, fake)
    fake.store_then_error("chat.postMessage", 503)
    submit_handoff(steward, view_a, "Checkout spec")
    a = last_handoff(db)
    until(lambda: unsure(db, card(a)) and settled(db, receipt(a)), what="the card's 503 and the receipt")

    # the sender's DM: the only post an accept causes
    submit_handoff(steward, handoff_form(steward, fake), "Search spec")
    b = last_handoff(db)
    until(lambda: settled(db, card(b)) and settled(db, receipt(b)), what="handoff B delivered")
    fake.store_then_error("chat.postMessage", 503)
    steward.click("U0BOB", "handoff_accept", str(b.id))
    until(lambda: unsure(db, accepted_dm(b)), what="the accepted DM's 503")

    # a fast-track card: the first post of a request (its only approver's card)
    view_f = fasttrack_form(steward, fake)
    fake.store_then_error("chat.postMessage", 503)
    submit_fasttrack(steward, view_f, ARCHITECTURE)
    f = last_fasttrack(db)
    until(lambda: unsure(db, ft_card(f, "U0ALICE")) and settled(db, ft_receipt(f)), what="the fast-track card's 503")

    # the digest: its first message
    fake.store_then_error("chat.postMessage", 503)
    r = run(
        db, fake, "run-job", "digest", "--month", MONTH, hurry=Hurry()
    )  # its wait for the chart: see the last tests below
    assert "not sent yet (internal_error)" in r.stdout, r.stdout + r.stderr
    assert unsure(db, DIGEST)

    faulted = [card(a), accepted_dm(b), ft_card(f, "U0ALICE"), DIGEST]
    # Slack has each of them once; Steward does not know it
    assert [fake.posted(k) for k in faulted] == [1, 1, 1, 1]
    assert handoffs_get(db, a.id).message_ts is None

    sweep(db, fake)
    assert [fake.posted(k) for k in faulted] == [1, 1, 1, 1]
    for key in faulted:
        r = row(db, key)
        assert (r.status, r.attempts, r.result_ts) == ("sent", 2, the_message(fake, key)["ts"]), key
    assert looked(fake, "C0ENG") and looked(fake, "D0ALICE") and looked(fake, "C0SYNC")
    assert keys_in(fake, "C0ENG") == {card(a): 1, card(b): 1}
    assert keys_in(fake, "U0ALICE") == {receipt(a): 1, receipt(b): 1, accepted_dm(b): 1, ft_card(f, "U0ALICE"): 1}
    assert keys_in(fake, "U0BOB") == {ft_receipt(f): 1}
    # the chart is never uploaded twice; this run may leave it for the next sweep (see the last tests below)
    assert keys_in(fake, "C0SYNC") == {DIGEST: 1, DETAILS: 1} and len(fake.of("files.completeUploadExternal")) <= 1
    # the card found is the card Steward edits from now on
    found = the_message(fake, card(a))
    assert (handoffs_get(db, a.id).channel, handoffs_get(db, a.id).message_ts) == ("C0ENG", found["ts"])
    before = len(fake.of("chat.update"))
    steward.click("U0BOB", "handoff_accept", str(a.id))
    update = fake.wait("chat.update", before + 1)[before]
    assert update.args["ts"] == found["ts"] and "Accepted" in blocks_text(update.args)
    assert "Accepted" in blocks_text(the_message(fake, card(a))) and fake.posted(card(a)) == 1


# -- (b) Slack stores the message, then holds the answer past the client's 5 s timeout ----------------------


def test_stored_then_timeout_the_card_is_found_not_posted_again(steward, fake, db):
    view = handoff_form(steward, fake)
    fake.store_then_hang("chat.postMessage", 6)
    submit_handoff(steward, view, "Checkout spec")
    h = last_handoff(db)
    until(lambda: unsure(db, card(h)) and settled(db, receipt(h)), timeout=15, what="the card's time-out")
    assert row(db, card(h)).error.startswith("unreachable") and fake.posted(card(h)) == 1

    sweep(db, fake)
    assert fake.posted(card(h)) == 1 and keys_in(fake, "C0ENG") == {card(h): 1}
    assert settled(db, card(h), attempts=2) and row(db, card(h)).result_ts == the_message(fake, card(h))["ts"]
    assert looked(fake, "C0ENG") and handoffs_get(db, h.id).message_ts == the_message(fake, card(h))["ts"]


# -- (c) Slack refuses for good: failed, the actor told once, an operator retries ------------------------


def test_refused_for_good_is_failed_told_once_listed_and_retried_by_the_operator(steward, fake, db):
    view_a = handoff_form(steward, fake)
    fake.fail("chat.postMessage", "channel_not_found")
    submit_handoff(steward, view_a, "Checkout spec")
    a = last_handoff(db)
    until(lambda: settled(db, card(a), "failed") and settled(db, f"{card(a)}:failed"), what="the card refused")

    submit_handoff(steward, handoff_form(steward, fake), "Search spec")
    b = last_handoff(db)
    until(lambda: settled(db, card(b)) and settled(db, receipt(b)), what="handoff B delivered")
    fake.fail("chat.postMessage", "channel_not_found")
    steward.click("U0BOB", "handoff_accept", str(b.id))
    until(
        lambda: settled(db, accepted_dm(b), "failed") and settled(db, f"{accepted_dm(b)}:failed"), what="the DM refused"
    )

    # two approvers: the first one's card is refused; the other can still decide, so nothing is re-routed
    view_f = fasttrack_form(steward, fake)
    fake.fail("chat.postMessage", "channel_not_found")
    submit_fasttrack(steward, view_f, QA_SIGNOFF)
    f = last_fasttrack(db)
    refused_ft = ft_card(f, "U0CAROL")
    until(
        lambda: (
            settled(db, refused_ft, "failed")
            and settled(db, f"{refused_ft}:failed")
            and settled(db, ft_card(f, "U0STEW"))
            and settled(db, ft_receipt(f))
        ),
        what="the fast-track card refused",
    )
    assert fasttrack.get(db, f.id).deciders == ["U0CAROL", "U0STEW"]

    fake.fail("chat.postMessage", "channel_not_found")
    r = run(db, fake, "run-job", "digest", "--month", MONTH)
    assert r.returncode == 1 and "failed (channel_not_found)" in r.stdout, r.stdout + r.stderr

    refused = [card(a), accepted_dm(b), refused_ft, DIGEST]
    assert [fake.posted(k) for k in refused] == [0, 0, 0, 0]
    assert all(row(db, k).status == "failed" and row(db, k).error == "channel_not_found" for k in refused)
    assert row(db, CHART).status == "failed"  # its message was not delivered
    # whoever acted is told once, by DM; the digest was nobody's act
    told = {card(a): "U0ALICE", accepted_dm(b): "U0BOB", refused_ft: "U0BOB"}
    for key, person in told.items():
        assert keys_in(fake, person)[f"{key}:failed"] == 1, key
        text = blocks_text(the_message(fake, f"{key}:failed"))
        assert "could not deliver" in text and "channel_not_found" in text
    assert fake.posted(f"{DIGEST}:failed") == 0

    listed = run(db, fake, "outbox")
    assert listed.returncode == 0, listed.stderr
    for key in refused + [CHART]:
        line = next((ln for ln in listed.stdout.splitlines() if f" {key} " in ln), "")
        assert line.startswith("failed") and ("channel_not_found" in line or key == CHART), listed.stdout

    # a refusal is for good: sweeps leave it alone, and nobody is told twice
    sweep(db, fake, timedelta(hours=1))
    assert [fake.posted(k) for k in refused] == [0, 0, 0, 0] and all(row(db, k).status == "failed" for k in refused)
    assert [fake.posted(f"{k}:failed") for k in told] == [1, 1, 1]

    retried = [run(db, fake, "outbox", "retry", k) for k in refused]
    assert all(r.returncode == 0 and "pending again" in r.stdout for r in retried), [
        r.stdout + r.stderr for r in retried
    ]
    assert row(db, CHART).status == "pending"  # refused only because its message was: it follows it
    sweep(db, fake, None)

    assert [fake.posted(k) for k in refused] == [1, 1, 1, 1]
    assert all(row(db, k).status == "sent" for k in refused + [CHART])
    assert keys_in(fake, "C0ENG") == {card(a): 1, card(b): 1}
    assert keys_in(fake, "U0ALICE") == {receipt(a): 1, f"{card(a)}:failed": 1, receipt(b): 1, accepted_dm(b): 1}
    assert keys_in(fake, "U0BOB") == {f"{accepted_dm(b)}:failed": 1, f"{refused_ft}:failed": 1, ft_receipt(f): 1}
    assert keys_in(fake, "U0CAROL") == {refused_ft: 1} and keys_in(fake, "U0STEW") == {ft_card(f, "U0STEW"): 1}
    assert keys_in(fake, "C0SYNC") == {DIGEST: 1, DETAILS: 1} and len(fake.of("files.completeUploadExternal")) == 1
    # a retried row was refused, not unknown: sent without looking
    assert not looked(fake, "C0ENG") and not looked(fake, "C0SYNC")


# -- (d) Slack down, then back ----------------------------------------------------------------------------


def test_slack_down_then_back_each_message_is_delivered_once_by_run_job(steward, fake, db):
    submit_handoff(steward, handoff_form(steward, fake), "Search spec")
    b = last_handoff(db)
    until(lambda: settled(db, card(b)) and settled(db, receipt(b)), what="handoff B delivered")
    view_a, view_f = handoff_form(steward, fake), fasttrack_form(steward, fake)  # forms need Slack: opened before

    fake.down(120)
    submit_handoff(steward, view_a, "Checkout spec")
    a = last_handoff(db)
    steward.click("U0BOB", "handoff_accept", str(b.id))
    submit_fasttrack(steward, view_f, QA_SIGNOFF)
    f = last_fasttrack(db)
    r = run(db, fake, "run-job", "digest", "--month", MONTH, hurry=Hurry())
    assert "not sent yet" in r.stdout, r.stdout + r.stderr
    waiting = [card(a), receipt(a), accepted_dm(b), ft_card(f, "U0CAROL"), ft_card(f, "U0STEW"), ft_receipt(f), DIGEST]
    until(lambda: all(unsure(db, k) for k in waiting), what="every post tried once while Slack was down")
    assert [fake.posted(k) for k in waiting] == [0] * len(waiting)
    assert row(db, f"{card(b)}:update").status == "pending"

    fake.down(0)  # back
    sweep(db, fake)
    assert [fake.posted(k) for k in waiting] == [1] * len(waiting)
    assert looked(fake, "C0ENG") and looked(fake, "C0SYNC")  # a 503 may hide a post: looked for before sending
    assert all(row(db, k).status == "sent" for k in waiting + [f"{card(b)}:update"])
    assert keys_in(fake, "C0ENG") == {card(a): 1, card(b): 1}
    assert "Accepted" in blocks_text(the_message(fake, card(b)))  # the update waited for Slack too
    assert keys_in(fake, "U0ALICE") == {receipt(b): 1, receipt(a): 1, accepted_dm(b): 1}
    assert keys_in(fake, "U0CAROL") == {ft_card(f, "U0CAROL"): 1} and keys_in(fake, "U0STEW") == {
        ft_card(f, "U0STEW"): 1
    }
    assert keys_in(fake, "U0BOB") == {ft_receipt(f): 1}
    # the chart is never uploaded twice; this run may leave it for the next sweep (see the last tests below)
    assert keys_in(fake, "C0SYNC") == {DIGEST: 1, DETAILS: 1} and len(fake.of("files.completeUploadExternal")) <= 1
    assert fasttrack.get(db, f.id).deciders == ["U0CAROL", "U0STEW"]  # an outage is not a refusal: no re-route


# -- a second `serve` on the same database -----------------------------------------------------------------


@pytest.fixture(scope="module", autouse=True)
def _second(_migrated, _fake):
    """A second `python -m bot serve` (its own port, the same database) for the two tests that need one:
    the two-servers test uses it, the kill test ends it. It boots in the background while the first tests
    run (a start costs seconds); a user that finds it dead gets a new one."""
    server = Steward(_migrated.url, _fake.url, PROCESS)
    with ThreadPoolExecutor(1) as pool:
        booting = pool.submit(server.start)
        holder = {"server": server}

        def get() -> Steward:
            booting.result()
            if holder["server"].proc.poll() is not None:
                holder["server"] = Steward(_migrated.url, _fake.url, PROCESS).start()
            return holder["server"]

        yield get
        booting.exception()
        holder["server"].stop()
        server.stop()


# -- (f) two servers receiving the same clicks, two clocks sweeping ---------------------------------------


def both(*calls):
    """Run calls at once (threads): requests two servers receive at the same moment."""
    with ThreadPoolExecutor(len(calls)) as pool:
        return [f.result() for f in [pool.submit(c) for c in calls]]


def until_saved(clicks, saved, what: str) -> None:
    """The same clicks to both servers at once; again, as Slack or the person would, if none was saved
    (on a busy SQLite a web request gives up on the write lock after 1.2 s and says so)."""
    for _ in range(5):
        assert all(answer.status == 200 for answer in both(*clicks))
        if saved():
            return
    raise AssertionError(f"{what}: never saved")


def count(db, model) -> int:
    with db.read() as s:
        return len(s.exec(select(model)).all())


def statuses(db) -> Counter:
    """The outbox rows' statuses, but for what the clocks write by the date they run on (the previous
    month's digest on the first working days of a month, an initiative prompt before the next digest)."""
    with db.read() as s:
        return Counter(
            r.status
            for r in s.exec(select(Outbox))
            if not r.item.startswith("prompt:") and not (r.item.startswith("digest:") and r.item != f"digest:{MONTH}")
        )


def test_two_servers_and_two_clocks_deliver_each_message_once(steward, _second, fake, db, tmp_path):
    other = _second()
    clocks = [Clock(db, fake, iso(), tmp_path, f"c{i}") for i in range(2)]  # started together; sweep every 5 s
    try:
        view_a, view_f = handoff_form(steward, fake), fasttrack_form(steward, fake)
        # Slack is out while everything happens, so every message waits in the outbox (a few seconds'
        # back-off after the 503 its request's own thread got)
        fake.down(600)
        r = run(db, fake, "run-job", "digest", "--month", MONTH, hurry=Hurry())
        assert "not sent yet" in r.stdout, r.stdout + r.stderr
        until_saved(
            [
                lambda s=s: s.submit(
                    "U0ALICE", view_a, {"to_team": "eng", "title": "Checkout spec", CRITERIA: list(ALL_MET)}
                )
                for s in (steward, other, steward, other)
            ],
            lambda: count(db, Handoff) >= 1,
            "the handoff",
        )
        assert count(db, Handoff) == 1  # the same view, submitted four times: one handoff
        a = last_handoff(db)
        until_saved(
            [lambda s=s: s.click("U0BOB", "handoff_accept", str(a.id)) for s in (steward, other, steward, other)],
            lambda: handoffs_get(db, a.id).state == "accepted",
            "the acceptance",
        )
        until_saved(
            [
                lambda s=s: s.submit(
                    "U0BOB",
                    view_f,
                    {
                        "what": "Hotfix",
                        "element": QA_SIGNOFF,
                        "reason": "Customer escalation",
                        "justification": "Checkout is down",
                    },
                )
                for s in (steward, other, steward, other)
            ],
            lambda: count(db, FastTrack) >= 1,
            "the request",
        )
        assert count(db, FastTrack) == 1
        f = last_fasttrack(db)
        until_saved(
            [
                lambda s=s, u=u: s.click(u, "fasttrack_approve", str(f.id), channel=f"D{u[1:]}")
                for s in (steward, other)
                for u in ("U0CAROL", "U0STEW")
            ],
            lambda: fasttrack.get(db, f.id).state == "approved",
            "the decision",
        )
        # the digest (its message, its details, its chart), the handoff's card, receipt, card update and DM, the
        # request's two cards and receipt, the cards' updates, the decision's DM and its notice to Quality (which
        # owns QA sign-off's execution): all waiting, none in Slack
        until(lambda: statuses(db) == {"pending": 14}, what="every message waiting")
        assert all(
            fake.messages(ch) == [] for ch in ("C0ENG", "C0SYNC", "C0QA", "U0ALICE", "U0BOB", "U0CAROL", "U0STEW")
        )

        fake.down(0)  # back: the two clocks sweep the same rows, in the same order, at once
        until(lambda: statuses(db) == {"sent": 14}, timeout=40, what="the clocks to deliver everything")
    finally:
        for c in clocks:
            c.stop()

    decided = fasttrack.get(db, f.id)
    assert decided.state == "approved" and handoffs_get(db, a.id).state == "accepted"
    dm_decided = f"fasttrack:{f.id}:v2:dm:U0BOB"
    once = [
        card(a),
        receipt(a),
        accepted_dm(a),
        ft_card(f, "U0CAROL"),
        ft_card(f, "U0STEW"),
        ft_receipt(f),
        dm_decided,
        f"fasttrack:{f.id}:v2:owner",
        DIGEST,
    ]
    assert [fake.posted(k) for k in once] == [1] * len(once)

    def mine(channel):
        """The outbox's messages in a channel: not a clock's initiative prompt (it depends on the date), nor
        a private notice to a click that lost (an ephemeral, or a DM with no key when that failed)."""
        return Counter(
            {
                k: n
                for k, n in keys_in(fake, channel).items()
                if k
                and not k.startswith("prompt:")
                and not (k.startswith("digest:") and not k.startswith(f"digest:{MONTH}:"))
            }
        )

    assert mine("C0ENG") == {card(a): 1}
    assert mine("U0ALICE") == {receipt(a): 1, accepted_dm(a): 1}
    assert mine("U0CAROL") == {ft_card(f, "U0CAROL"): 1} and mine("U0STEW") == {ft_card(f, "U0STEW"): 1}
    assert mine("U0BOB") == {ft_receipt(f): 1, dm_decided: 1}
    thread = the_message(fake, DIGEST)["ts"]  # the chart of this digest (a clock may post last month's too)
    charts = [c for c in fake.of("files.completeUploadExternal") if c.args.get("thread_ts") == thread]
    assert mine("C0SYNC") == {DIGEST: 1, DETAILS: 1} and len(charts) == 1
    for person in ("U0CAROL", "U0STEW"):  # one decision, shown on both cards
        assert f"by <@{decided.decided_by}>" in blocks_text(the_message(fake, ft_card(f, person)))


# -- (e) serve killed (-9) while its request thread waits on a post Slack already stored ------------------


def test_serve_killed_mid_post_the_next_deliverer_finds_the_card_after_the_lease(steward, _second, fake, db):
    doomed = _second()
    view = handoff_form(doomed, fake)
    fake.store_then_hang("chat.postMessage", 60)
    submit_handoff(doomed, view, "Checkout spec")
    h = last_handoff(db)
    until(lambda: fake.posted(card(h)) == 1, what="the card stored by Slack")
    doomed.kill()
    assert doomed.proc.returncode == -9
    held = row(db, card(h))
    assert (held.status, held.attempts, held.check) == ("sending", 1, True)  # claimed, posted, never recorded
    assert row(db, receipt(h)).attempts == 0  # the thread died before it

    sweep(db, fake, timedelta(minutes=2))  # past the 60 s lease
    assert fake.posted(card(h)) == 1 and keys_in(fake, "C0ENG") == {card(h): 1}
    assert fake.posted(receipt(h)) == 1 and keys_in(fake, "U0ALICE") == {receipt(h): 1}
    found = the_message(fake, card(h))
    assert settled(db, card(h), attempts=2) and row(db, card(h)).result_ts == found["ts"] and looked(fake, "C0ENG")
    assert handoffs_get(db, h.id).message_ts == found["ts"]
    # the surviving server edits the card that was found
    before = len(fake.of("chat.update"))
    steward.click("U0BOB", "handoff_accept", str(h.id))
    update = fake.wait("chat.update", before + 1)[before]
    assert update.args["ts"] == found["ts"] and fake.posted(card(h)) == 1


# -- a fast-track whose only approver cannot be reached goes to the backup approvers ----------------------


def test_a_fasttrack_whose_only_approvers_card_is_refused_goes_to_the_backups(steward, fake, db):
    view = fasttrack_form(steward, fake)
    fake.fail("chat.postMessage", "channel_not_found")  # U0ALICE's card: the request's first post
    submit_fasttrack(steward, view, ARCHITECTURE)
    f = last_fasttrack(db)
    backup = ft_card(f, "U0HEAD")
    until(lambda: settled(db, backup) and settled(db, ft_receipt(f)), what="the backup's card")
    assert row(db, ft_card(f, "U0ALICE")).status == "failed" and fake.posted(ft_card(f, "U0ALICE")) == 0
    r = fasttrack.get(db, f.id)
    assert (r.state, r.deciders) == ("pending", ["U0HEAD"])
    assert keys_in(fake, "U0HEAD") == {backup: 1}
    head_card = the_message(fake, backup)
    assert [e["action_id"] for b in head_card["blocks"] if b["type"] == "actions" for e in b["elements"]] == [
        "fasttrack_approve",
        "fasttrack_deny",
    ]
    assert keys_in(fake, "U0BOB") == {
        f"{ft_card(f, 'U0ALICE')}:failed": 1,
        ft_receipt(f): 1,
    }  # the requester is told once
    # the backup decides from that card
    before = len(fake.of("chat.update"))
    steward.click("U0HEAD", "fasttrack_approve", str(f.id), channel="D0HEAD")
    fake.wait("chat.update", before + 1)
    assert fasttrack.get(db, f.id).state == "approved" and fasttrack.get(db, f.id).decided_by == "U0HEAD"
    assert "by <@U0HEAD>" in blocks_text(the_message(fake, backup))


# -- defects found, fixed -----------------------------------------------------------------------------------------------


def test_the_first_back_off_is_2_s_and_waiting_for_the_card_uses_no_attempt(steward, fake, db):
    view = handoff_form(steward, fake)
    fake.server_error("chat.postMessage", 503)  # nothing done: the card is simply retried later
    submit_handoff(steward, view, "Checkout spec")
    h = last_handoff(db)
    until(
        lambda: row(db, card(h)).attempts == 1 and row(db, card(h)).status == "pending" and settled(db, receipt(h)),
        what="the card's 503",
    )
    steward.click("U0BOB", "handoff_accept", str(h.id))  # its update must wait for the card
    until(
        lambda: (
            settled(db, accepted_dm(h))
            and row(db, f"{card(h)}:update").error == "waiting for the message it belongs to"
        ),
        what="the update waiting",
    )
    r, update = row(db, card(h)), row(db, f"{card(h)}:update")
    assert (r.next_at - r.updated_at, update.attempts) == (timedelta(seconds=2), 0)


def test_run_job_digest_does_not_wait_for_a_first_message_nobody_is_sending(fake, db):
    fake.store_then_error("chat.postMessage", 503)
    hurry = Hurry()
    r = run(db, fake, "run-job", "digest", "--month", MONTH, hurry=hurry)
    assert "not sent yet (internal_error)" in r.stdout and row(db, DIGEST).status == "pending"
    assert hurry.waited < 2, f"waited {hurry.waited:.1f} s for a message nobody was sending"
