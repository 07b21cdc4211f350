"""The weekly pulse through Slack's protocol: `run-job pulse --now …` as an operator runs it, the survey DMs
read back from the fake Web API, clicks and the comment form sent as signed requests to the served app, on
every database the tests run on.

The served app answers with the real time, so the week here is always a coming one (its survey still open
when the test clicks), except where a test wants a closed week."""

from __future__ import annotations

import contextlib
import io
import json
import os
import re
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

from slack_sdk import WebClient
from sqlalchemy import MetaData
from sqlmodel import func, select

import bot.domain.core.timeutil
from bot.domain import pulse
from bot.entry.cli import main
from handlers.pulse import fetch_timezones
from storage.models import Outbox, PulseAnswer, PulseComment, PulseOptout, PulseRecipient
from tests.support.harness import ROOT, TOKEN, blocks_text, cli, view_of
from tests.support.home import home_click, open_home, published, text_of
from tests.support.pulse import CONFIG, SECRET, ZONES, at, click, confirmed, env, job, monday, wait_for, week_of

ASKED = {"U0ALICE", "U0AMY", "U0BOB", "U0TOKYO", "U0LA"}


def local_ten_utc(day: date, tz: str) -> datetime:

    return datetime(day.year, day.month, day.day, 10, tzinfo=ZoneInfo(tz)).astimezone(UTC).replace(tzinfo=None)


def dms(fake) -> dict[str, list[dict]]:
    """Survey DMs per user (their first post carrying the week's key)."""
    out = {}
    for user in ZONES:
        posts = [
            m
            for m in fake.messages(user)
            if ((m["metadata"] or {}).get("event_payload") or {}).get("key", "").startswith("pulse:")
        ]
        if posts:
            out[user] = posts
    return out


def dm_text(fake, user: str) -> str:
    return blocks_text(fake.messages(user)[0])


# -- the week's DMs ---------------------------------------------------------------------------------------


def test_each_member_gets_one_dm_at_ten_in_their_own_time_zone(app, fake, db):
    day = monday(1)
    week = week_of(day)
    tokyo, berlin, la = (local_ten_utc(day, z) for z in ("Asia/Tokyo", "Europe/Berlin", "America/Los_Angeles"))
    just_before = (tokyo - timedelta(minutes=1)).replace(tzinfo=UTC).isoformat()
    assert "pulse: nothing due" in job(db, fake, just_before)
    assert dms(fake) == {}
    assert fake.of("users.list"), "time zones come from users.list"

    out = job(db, fake, tokyo.replace(tzinfo=UTC).isoformat())
    assert set(dms(fake)) == {"U0TOKYO"}, out
    job(db, fake, (berlin - timedelta(minutes=1)).replace(tzinfo=UTC).isoformat())
    assert set(dms(fake)) == {"U0TOKYO"}
    job(db, fake, berlin.replace(tzinfo=UTC).isoformat())
    assert set(dms(fake)) == {"U0TOKYO", "U0ALICE", "U0BOB", "U0AMY"}  # U0AMY: no tz in Slack → the organisation's
    out = job(db, fake, la.replace(tzinfo=UTC).isoformat())
    assert "1 survey and 0 reminders written" in out and "1 of 1 delivered" in out
    assert set(dms(fake)) == ASKED  # not U0OPS: their team is not in [pulse].teams
    out = job(db, fake, (la + timedelta(hours=3)).replace(tzinfo=UTC).isoformat())
    assert "pulse: nothing due" in out
    for user in ASKED:  # one DM each, U0AMY too though in two teams
        assert fake.posted(pulse.dm_key(week, user)) == 1, user
    text = dm_text(fake, "U0BOB")
    assert "Our processes help us do our best work" in text
    assert "Answers are shown only for groups of 3 or more" in text
    buttons = [
        e["action_id"] for b in fake.messages("U0BOB")[0]["blocks"] if b["type"] == "actions" for e in b["elements"]
    ]
    assert buttons == [f"pulse_score_{n}" for n in range(1, 6)] + [
        "pulse_feeling_rigid",
        "pulse_feeling_right",
        "pulse_feeling_ambiguous",
        "pulse_comment",
        "pulse_pause",
        "pulse_stop",
    ]
    with db.read() as session:
        rows = {r.user: r for r in session.exec(select(PulseRecipient))}
    assert (
        rows["U0AMY"].teams == ["design", "eng"]
        and rows["U0TOKYO"].tz == "Asia/Tokyo"
        and rows["U0AMY"].tz == "Europe/Berlin"
    )
    assert rows["U0LA"].due_at == la


def test_answer_change_comment_and_one_reminder_only_to_non_responders(app, fake, db):
    day = monday(1)
    week = week_of(day)
    job(db, fake, at(day, 20))  # everyone's 10:00 has come
    click(app, fake, "U0ALICE", "pulse_score_4", f"{week} 4")
    wait_for(lambda: "4 · Agree" in confirmed(fake, "U0ALICE"))
    wait_for(lambda: "Thanks, your answer is recorded" in dm_text(fake, "U0ALICE"))
    assert "You can change it until" in dm_text(fake, "U0ALICE") and "4 · Agree" not in confirmed(fake, "U0BOB")
    assert '"style": "primary"' not in json.dumps(fake.messages("U0ALICE")[0]["blocks"])  # the choice is not styled
    click(app, fake, "U0ALICE", "pulse_score_2", f"{week} 2")
    wait_for(lambda: "2 · Disagree" in confirmed(fake, "U0ALICE"))
    click(app, fake, "U0BOB", "pulse_feeling_rigid", f"{week} rigid")
    wait_for(lambda: "processes are too rigid" in confirmed(fake, "U0BOB"))
    wait_for(lambda: "Thanks, your answer is recorded" in dm_text(fake, "U0BOB"))
    assert '"style": "primary"' not in json.dumps(fake.messages("U0BOB")[0]["blocks"])  # the choice is not styled
    click(app, fake, "U0AMY", "pulse_score_5", f"{week} 5")
    wait_for(lambda: "5 · Strongly agree" in confirmed(fake, "U0AMY"))
    # the comment form, through views.open and a signed view_submission
    click(app, fake, "U0AMY", "pulse_comment", week)
    view = view_of(fake.wait("views.open")[-1])
    assert view["callback_id"] == "pulse_comment_submit"
    r = app.submit("U0AMY", view, {"comment": "  Too many <forms> & sign-offs  "})
    assert r.status == 200 and not r.raw, r.raw
    wait_for(lambda: "Change your comment" in dm_text(fake, "U0AMY"))
    sealer = pulse.Sealer(SECRET)
    with db.read() as session:
        answers = {(a.scope, a.key): a for a in session.exec(select(PulseAnswer).where(PulseAnswer.week == week))}
        comments = list(session.exec(select(PulseComment).where(PulseComment.week == week)))
    # Alice changed her answer: still one row per group she counts in (design, the organisation), now 2
    alice = [answers.get((s, sealer.key("answer", week, s, "U0ALICE"))) for s in ("design", pulse.ORG)]
    assert all(a is not None and sealer.open(a.key, a.sealed) == (2, 0) for a in alice)
    assert len(answers) == 2 + 2 + 3  # Alice (design, *), Bob (eng, *), Amy (design, eng, *)
    # the comment is stored once, under the organisation (the default): never once per group of its author
    assert [(c.scope, c.text) for c in comments] == [(pulse.ORG, "Too many <forms> & sign-offs")]
    # Wednesday 10:00 in Los Angeles: everyone's reminder day has come; only those who did not answer get one
    out = job(db, fake, at(day, 19, plus_days=2))
    assert "0 surveys and 2 reminders written" in out and "2 of 2 delivered" in out
    reminded = {u for u in ZONES if any("A reminder" in (m["text"] or "") for m in fake.messages(u))}
    assert reminded == {"U0TOKYO", "U0LA"}
    assert "pulse: nothing due" in job(db, fake, at(day, 21, plus_days=2))
    assert all(fake.posted(f"{pulse.dm_key(week, u)}:reminder") == 1 for u in reminded)


def test_pause_stop_and_resume(app, fake, db):
    day = monday(1)
    week = week_of(day)
    job(db, fake, at(day, 20))
    click(app, fake, "U0TOKYO", "pulse_pause", week)
    wait_for(lambda: "You paused the weekly survey until" in dm_text(fake, "U0TOKYO"))
    click(app, fake, "U0LA", "pulse_stop", week)
    wait_for(lambda: "You stopped the weekly survey" in dm_text(fake, "U0LA"))
    assert "Resume surveys" in json.dumps(fake.messages("U0LA")[0]["blocks"])
    with db.read() as session:
        recipients = {r.user: r for r in session.exec(select(PulseRecipient))}
    assert recipients["U0TOKYO"].opted_out and recipients["U0LA"].opted_out and not recipients["U0BOB"].opted_out
    # no reminder for those who paused or stopped
    out = job(db, fake, at(day, 19, plus_days=2))
    assert "and 3 reminders written" in out  # Alice, Bob, Amy have not answered
    # Tokyo resumes: the question is back; Los Angeles stays stopped and gets nothing next week
    click(app, fake, "U0TOKYO", "pulse_resume", week)
    wait_for(lambda: "How much do you agree?" in dm_text(fake, "U0TOKYO"))
    job(db, fake, at(day, 20, plus_days=7))
    next_week = week_of(day + timedelta(days=7))
    assert fake.posted(pulse.dm_key(next_week, "U0TOKYO")) == 1
    assert fake.posted(pulse.dm_key(next_week, "U0LA")) == 0
    with db.read() as session:
        assert session.get(PulseOptout, "U0LA").until is None


def test_a_click_after_the_week_closed_is_refused_and_records_nothing(app, fake, db):
    day = monday(-2)  # its survey closed last week
    week = week_of(day)
    job(db, fake, at(day, 9, 30))  # Berlin's 10:30 that Monday
    assert fake.posted(pulse.dm_key(week, "U0ALICE")) == 1
    click(app, fake, "U0ALICE", "pulse_score_5", f"{week} 5")
    said = fake.wait("chat.postEphemeral")[-1]
    assert "survey closed" in said.args["text"] and "<!date^" in said.args["text"]
    with db.read() as session:
        assert session.exec(select(func.count()).select_from(PulseAnswer)).one() == 0
        assert not session.get(PulseRecipient, (week, "U0ALICE")).answered


def test_a_week_that_closed_while_the_clock_was_down_is_skipped_and_said(app, fake, db):
    day = monday(-3)
    job(db, fake, at(day, 20))
    out = job(db, fake, at(day, 12, plus_days=13))  # down from the Tuesday after until the next Sunday
    assert "skipped: the week closed while the clock was not running" in out
    assert fake.posted(pulse.dm_key(week_of(day + timedelta(days=7)), "U0ALICE")) == 0


def test_two_jobs_at_once_under_429s_send_each_dm_once(app, fake, db):
    day = monday(1)
    week = week_of(day)
    fake.limit_workspace(per_minute=120, burst=1)
    with ThreadPoolExecutor(2) as pool:
        outs = list(pool.map(lambda _: job(db, fake, at(day, 20)), range(2)))
    assert fake.throttled, "the workspace limit answered 429s"
    for user in ASKED:
        assert fake.posted(pulse.dm_key(week, user)) == 1, (user, outs)


def test_forged_and_stale_clicks_get_a_private_answer(app, fake, db):
    day = monday(1)
    week = week_of(day)
    job(db, fake, at(day, 20))
    dm = fake.messages("U0BOB")[0]
    for action, value in (
        ("pulse_score_3", "not-a-week 3"),
        ("pulse_score_3", f"{week} 9"),
        ("pulse_feeling_rigid", f"{week} sideways"),
    ):
        r = app.click("U0BOB", action, value, channel=dm["channel"], message_ts=dm["ts"])
        assert r.status == 200
    # someone the survey was not sent to
    r = app.click("U0OPS", "pulse_score_4", f"{week} 4", channel="D0OPS", message_ts=dm["ts"])
    assert r.status == 200
    said = [c.args["text"] for c in fake.wait("chat.postEphemeral", 4)]
    assert any("names no week" in t for t in said) and any("from 1 to 5" in t for t in said)
    assert any("too rigid, about right or too ambiguous" in t for t in said) and any(
        "was not sent to you" in t for t in said
    )
    with db.read() as session:
        assert session.exec(select(func.count()).select_from(PulseAnswer)).one() == 0


# -- anonymity in what is stored and logged ------------------------------------------------------------


def test_nothing_stored_or_logged_links_a_person_to_a_score_or_comment(app, fake, db):
    day = monday(1)
    week = week_of(day)
    job(db, fake, at(day, 20))
    for user, n in (("U0ALICE", 1), ("U0BOB", 5), ("U0AMY", 3)):
        click(app, fake, user, f"pulse_score_{n}", f"{week} {n}")
        wait_for(lambda: f"{n} · {pulse.SCORES[n]}" in confirmed(fake, user))
    click(app, fake, "U0TOKYO", "pulse_comment", week)
    r = app.submit("U0TOKYO", view_of(fake.wait("views.open")[-1]), {"comment": "handoffs wait too long"})
    assert r.status == 200
    wait_for(lambda: "3 · Neutral" in confirmed(fake, "U0AMY"))
    fake.settle(quiet=0.3)
    users = set(ZONES) | {"U0STEW"}
    dump = []
    with db.engine.connect() as conn:
        meta = MetaData()
        meta.reflect(conn)
        for table in meta.sorted_tables:
            for row in conn.execute(table.select()):
                dump.append((table.name, {k: v for k, v in row._mapping.items()}))

    def has_user(values) -> bool:
        return any(u in json.dumps(values, default=str) for u in users)

    for name, values in dump:
        if name in ("pulse_answer", "pulse_comment"):
            assert not has_user(values), (name, values)
            assert set(values) == (
                {"key", "week", "scope", "sealed", "mixed"}
                if name == "pulse_answer"
                else {"key", "week", "scope", "text", "mixed"}
            )
        elif has_user(values):  # rows that name a person say nothing of what they answered
            text = json.dumps(values, default=str)
            assert "handoffs wait too long" not in text and "score" not in text and "sealed" not in text, (name, values)
    # sealed values are not the scores: without the secret a row says nothing
    with db.read() as session:
        sealed = [a.sealed for a in session.exec(select(PulseAnswer))]
    assert sorted(sealed) != sorted([1, 1, 5, 5, 3, 3, 3]) and any(s > 5 for s in sealed)
    logged = app.output()
    for line in logged.splitlines():
        if any(u in line for u in users):
            assert not re.search(r"\b(score|pulse_score_\d|Agree|Disagree|Neutral)\b", line), line


def test_time_zones_come_from_every_page_of_users_list(fake):

    fake.users.update({f"U{n:05d}": {"tz": "Asia/Tokyo" if n % 2 else "Europe/Berlin"} for n in range(450)})
    fake.limit_workspace("users.list", per_minute=600, burst=1)  # a 429 between pages, honoured
    client = WebClient(base_url=fake.url, token=TOKEN, retry_handlers=[])
    zones = fetch_timezones(client, {"U00001", "U00448", "U00449", "U0NOBODY"})
    assert zones == {"U00001": "Asia/Tokyo", "U00448": "Europe/Berlin", "U00449": "Asia/Tokyo", "U0NOBODY": ""}
    assert len([c for c in fake.of("users.list") if c.status == 200]) == 3 and fake.throttled


def test_a_long_rate_limit_on_users_list_keeps_the_zones_on_record_instead_of_waiting(fake):

    fake.rate_limit("users.list", retry_after=30, times=5)
    client = WebClient(base_url=fake.url, token=TOKEN, retry_handlers=[])
    started = time.monotonic()
    assert fetch_timezones(client, {"U00001"}, max_wait=10) is None  # 30 s asked, 10 s allowed: gives up at once
    assert time.monotonic() - started < 5 and len(fake.of("users.list")) == 1


def test_a_survey_sent_late_gets_its_reminder_days_later_not_with_it(db, fake):
    """Found by a newcomer: the clock down on Monday, the first run on Thursday wrote each survey and its
    reminder at once (the reminder's time counted from Monday)."""
    day = monday(1)
    out = job(db, fake, at(day, 20, plus_days=3))  # Thursday evening: the week is open, its reminder (Wednesday) passed
    assert "reminders" in out and " 0 reminders written" in out, out
    with db.read() as session:
        rows = list(session.exec(select(PulseRecipient)))
    assert rows and all(r.remind_at is None for r in rows)  # Thursday + 2 days is past the close (Saturday 10:00)
    with db.read() as session:
        assert not list(session.exec(select(Outbox.key).where(Outbox.key.like("%:reminder"))))


def test_run_job_pulse_does_not_wait_an_hour_when_slack_is_out_of_reach(db, fake):
    """Found by a newcomer: with Slack out of reach, `run-job pulse` sat in its drain for up to an hour."""

    day = monday(1)
    started = time.monotonic()
    out = job(db, fake, at(day, 20), SLACK_API_URL="http://127.0.0.1:9/api/")
    assert time.monotonic() - started < 60, out
    assert "not yet: Slack did not take them just now" in out, out
    assert pulse.undelivered(db)  # still in the outbox, for the clock's sweep


def test_serve_and_the_pulse_job_refuse_to_start_without_pulse_secret(db, fake):
    r = cli("run-job", "pulse", env={k: v for k, v in env(db, fake).items() if k != "PULSE_SECRET"})
    assert r.returncode == 2 and "PULSE_SECRET: required" in r.stderr and "Traceback" not in r.stderr
    r = cli("serve", env={k: v for k, v in env(db, fake, SLACK_SIGNING_SECRET="s").items() if k != "PULSE_SECRET"})
    assert r.returncode == 2 and "PULSE_SECRET: required" in r.stderr and "Traceback" not in r.stderr


def in_process(db, fake, *args: str, later: timedelta) -> str:
    """`python -m bot ARGS` in this process (`bot.entry.cli.main`), its real-time clock `later` than now: past
    the 60 s lease a killed deliverer leaves on the message it was sending."""

    real, saved = bot.domain.core.timeutil.utcnow, dict(os.environ)
    os.environ.update(env(db, fake))
    os.environ.pop("SLACK_SIGNING_SECRET", None)
    out, err = io.StringIO(), io.StringIO()
    try:
        bot.domain.core.timeutil.utcnow = lambda: real() + later
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            code = main(list(args))
    finally:
        bot.domain.core.timeutil.utcnow = real
        os.environ.clear()
        os.environ.update(saved)
    assert code == 0 and "Traceback" not in err.getvalue(), out.getvalue() + err.getvalue()
    return out.getvalue()


def test_the_job_killed_mid_fan_out_leaves_no_dm_twice_and_none_missing(app, fake, db):

    day = monday(1)
    week = week_of(day)
    fake.store_then_hang("chat.postMessage", 30)  # the first DM: Slack stores it and never answers
    full = {k: v for k, v in os.environ.items() if not k.startswith("SLACK_")} | env(db, fake)
    proc = subprocess.Popen(
        [sys.executable, "-m", "bot", "run-job", "pulse", "--now", at(day, 20)],
        cwd=ROOT,
        env=full,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_for(lambda: sum(fake.posted(pulse.dm_key(week, u)) for u in ASKED) >= 1, timeout=30)
    finally:
        proc.kill()
        proc.wait()
    with db.read() as session:
        held = session.exec(select(Outbox).where(Outbox.status == "sending")).all()
    # the hung DM, and any other the sweep's workers had in flight: posted or not, never recorded
    assert 1 <= len(held) <= 4 and all(h.key.startswith(f"pulse:{week}:") for h in held)
    out = in_process(db, fake, "run-job", "pulse", "--now", at(day, 20, 5), later=timedelta(minutes=2))
    assert "pulse: nothing due" in out and re.search(r"pulse: (\d) of \1 delivered", out), out  # nobody written twice
    for user in ASKED:
        assert fake.posted(pulse.dm_key(week, user)) == 1, user


def test_check_config_summarises_the_pulse_and_names_a_bad_key():
    r = cli("check-config", "--file", str(CONFIG))
    assert (
        r.returncode == 0
        and "pulse: on; mon 10:00 in each member's time zone to 5 people of 2 teams; shown for groups of 3" in r.stdout
    )
    bad = (
        CONFIG.read_text()
        .replace('send_at = "mon 10:00"', 'send_at = "someday"')
        .replace("min_group = 3", "min_group = 2")
        .replace('teams = ["design", "eng"]', 'teams = ["design", "nobody"]')
    )
    path = Path(__file__).parent / ".pulse-bad.toml"
    path.write_text(bad)
    try:
        r = cli("check-config", "--file", str(path))
    finally:
        path.unlink()
    assert r.returncode == 2, r.stdout + r.stderr
    for line in (
        "pulse.send_at: write it as a weekday and a time",
        "pulse.min_group: at least 3 (it is 2)",
        "pulse.teams[1]: no team 'nobody'",
    ):
        assert line in r.stderr, r.stderr


def test_pause_and_resume_from_the_app_home(app, fake, db):
    """The Home shows the pulse setting with the pause or resume button; a click there changes it (the same
    domain functions as the DM's buttons) and publishes the Home again; the DM's pause re-publishes it too."""

    open_home(app, "U0BOB")
    view = published(fake, "U0BOB")
    assert "*Weekly satisfaction pulse*: you get it each week." in text_of(view)
    assert "Satisfaction (" in text_of(view)  # the team's line, held back until a month's surveys have closed
    home_click(app, "U0BOB", "home_pulse_pause", "pause")
    paused = published(fake, "U0BOB", 2)
    assert "*Weekly satisfaction pulse*: paused until <!date^" in text_of(paused) and "Resume surveys" in json.dumps(
        paused
    )
    with db.read() as session:
        assert session.get(PulseOptout, "U0BOB").until is not None
    home_click(app, "U0BOB", "home_pulse_resume", "resume")
    assert "you get it each week" in text_of(published(fake, "U0BOB", 3))
    with db.read() as session:
        assert session.get(PulseOptout, "U0BOB") is None
    # the survey DM's own pause button re-publishes the Home of someone who opened it lately
    day = monday(1)
    job(db, fake, at(day, 20))
    click(app, fake, "U0BOB", "pulse_pause", week_of(day))
    assert "paused until" in text_of(published(fake, "U0BOB", 4))
    # someone the pulse does not ask has no pulse setting, and a forged click is told so
    open_home(app, "U0OPS")
    assert "Weekly satisfaction pulse" not in text_of(published(fake, "U0OPS"))
    home_click(app, "U0OPS", "home_pulse_pause", "pause")
    wait_for(lambda: "does not ask you" in json.dumps([m["blocks"] for m in fake.messages("U0OPS")]))
    with db.read() as session:
        assert session.get(PulseOptout, "U0OPS") is None
