"""A month's digest is never posted early, never lost, and what `digest --month` previews is byte for byte
what `run-job digest` posts: the month's headcount is decided before the digest is composed."""

from __future__ import annotations

import json
import tomllib
from datetime import datetime, timedelta

import pytest
from slack_sdk import WebClient
from sqlmodel import select

from bot.domain import digest
from bot.domain.core import outbox, schedule
from bot.domain.core.process import parse_process
from bot.domain.core.timeutil import utcnow
from bot.entry import clock
from bot.entry.bootstrap import Deps
from handlers import deliverer
from storage.models import Headcount
from tests.support.clock import env
from tests.support.data import PROCESS
from tests.support.digest import hand, seed_october, to_sync
from tests.support.harness import TOKEN, blocks_text, cli


def headcount_rows(db) -> list:
    with db.read() as s:
        return sorted((r.period, r.team, r.members) for r in s.exec(select(Headcount)))


def test_an_unfinished_month_is_refused_and_its_digest_is_posted_once_it_has_closed(fake, db, cfg):
    seed_october(db, cfg)
    # mid-October, by the job's clock: refused, nothing written, nothing recorded, nothing sent
    r = cli("run-job", "digest", "--month", "2026-10", "--now", "2026-10-20T10:00", env=env(db, fake))
    assert r.returncode == 2 and "Traceback" not in r.stderr, r.stdout + r.stderr
    assert "digest 2026-10: October 2026 has not ended; nothing posted or recorded" in r.stderr
    assert "`python -m bot digest --month 2026-10` previews it (month to date)" in r.stderr
    # the month's last minutes (Berlin): still refused; so are the current month and a future one, by the real clock
    assert (
        cli("run-job", "digest", "--month", "2026-10", "--now", "2026-10-31T23:59", env=env(db, fake)).returncode == 2
    )
    today = schedule.period_of(utcnow(), cfg.organization.tz)
    for period in (today, schedule.shift(today, 2)):
        refused = cli("run-job", "digest", "--month", period, env=env(db, fake))
        assert refused.returncode == 2 and "has not ended" in refused.stderr
        # a rehearsal clock set after the month's end does not make a month the real clock has not seen end
        ahead = (schedule.bounds(period, cfg.organization.tz)[1] + timedelta(days=2)).isoformat() + "+00:00"
        assert cli("run-job", "digest", "--month", period, "--now", ahead, env=env(db, fake)).returncode == 2
    assert fake.calls == [] and [
        clock.digest_editions(db, p) for p in ("2026-10", today, schedule.shift(today, 2))
    ] == [[], [], []]
    assert headcount_rows(db) == []

    # the clock's path: a catch-up tick inside the hour after the month's end says so and posts nothing
    early = clock.Run(
        cfg,
        db,
        deliverer(Deps(cfg=cfg, db=db), WebClient(token=TOKEN, base_url=fake.url)),
        datetime(2026, 10, 31, 23, 30),
    )
    with pytest.raises(digest.Refused):
        clock.run_digest(early, "2026-10")
    assert fake.calls == []

    # after the month's end: the real digest goes out, and is recorded
    ok = cli("run-job", "digest", "--month", "2026-10", "--now", "2026-11-02T09:00", env=env(db, fake))
    assert ok.returncode == 0 and "posted 2 messages to C0SYNC" in ok.stdout, ok.stdout + ok.stderr
    (post,) = to_sync(fake)
    assert "3 handoffs sent" in post.args["text"] and "month to date" not in json.dumps(post.args)
    assert ("2026-10", "design", 2) in headcount_rows(db)


def test_a_posted_month_is_posted_again_only_with_again_which_says_what_it_replaces(fake, db, cfg):
    seed_october(db, cfg)
    never = cli("run-job", "digest", "--month", "2026-10", "--again", env=env(db, fake))
    assert (
        never.returncode == 2
        and "not posted yet, so there is nothing to replace; run it without --again" in never.stderr
    )
    assert fake.calls == []
    assert cli("run-job", "digest", "--month", "2026-10", env=env(db, fake)).returncode == 0
    (first,) = to_sync(fake)
    fake.reset()
    twice = cli("run-job", "digest", "--month", "2026-10", env=env(db, fake))
    assert (
        twice.returncode == 0
        and "already posted to C0SYNC, nothing sent (`--again` posts it again, replacing it)" in twice.stdout
    )
    assert fake.calls == []

    again = cli("run-job", "digest", "--month", "2026-10", "--again", env=env(db, fake))
    assert again.returncode == 0, again.stdout + again.stderr
    assert "digest 2026-10: posting it again (edition 2), replacing the one posted to C0SYNC on" in again.stdout
    assert f"(ts {outbox.get(db, 'digest:2026-10:C0SYNC:1').result_ts})" in again.stdout
    (second,) = to_sync(fake)
    note = blocks_text(second.args)
    assert (
        ":repeat: Posted again on request: this replaces the October 2026 digest posted <!date^" in note
        and "in <#C0SYNC>" in note
    )
    assert [r.status for r in outbox.of_item(db, "digest:2026-10#2")] == ["sent", "sent", "sent"]
    assert fake.posted("digest:2026-10#2:C0SYNC:1") == 1 and len(fake.of("files.completeUploadExternal")) == 1
    bad = cli("run-job", "initiative-prompt", "--again", env=env(db, fake))
    assert bad.returncode == 2 and bad.stderr.startswith("--again: only for `run-job digest`")


def rising_design(db, cfg) -> None:
    """Design's median cycle time: 2 h in August, 3 h in September, 6 h in October (five accepted each)."""
    for period, hours in (("2026-08", 2), ("2026-09", 3), ("2026-10", 6)):
        start = schedule.bounds(period, cfg.organization.tz)[0] + timedelta(hours=48)
        for _ in range(5):
            hand(db, cfg, start, steps=[("accept", hours)])


def process_with(tmp_path, design_members: list[str]):
    text = PROCESS.read_text().replace('members = ["U0ALICE", "U0AMY"]', f"members = {json.dumps(design_members)}", 1)
    path = tmp_path / "process.toml"
    path.write_text(text)
    return path, parse_process(tomllib.loads(text))


def preview_blocks(db, path, period) -> list:
    r = cli("digest", "--month", period, "--blocks", env={"DATABASE_URL": db.url, "PROCESS_CONFIG": str(path)})
    assert r.returncode == 0, r.stderr
    return json.loads(r.stdout)


def posted(db, period) -> list:
    return [r.params["message"] for r in outbox.of_item(db, f"digest:{period}") if r.render == "static"]


@pytest.mark.parametrize(
    "members,signal", [(["U0ALICE", "U0AMY", "U0NEW1"], True), (["U0ALICE", "U0AMY", "U0NEW1", "U0NEW2"], False)]
)
def test_the_preview_and_the_post_are_the_same_digest_headcount_decided_first(fake, db, tmp_path, members, signal):
    """August and September were posted with Design at 3 people. In October Design has 3 again (steady:
    the rising cycle time is a signal) or 4 (grown by a third: the growth explains it, no signal). The
    preview before the post, the post, and the preview after it are byte for byte the same."""
    path, cfg = process_with(tmp_path, members)
    rising_design(db, cfg)
    with db.write() as s:
        for period in ("2026-08", "2026-09"):
            for t in cfg.teams:
                s.add(Headcount(period=period, team=t.id, members=3 if t.id == "design" else len(t.members)))
    before = preview_blocks(db, path, "2026-10")
    r = cli("run-job", "digest", "--month", "2026-10", env=env(db, fake, PROCESS_CONFIG=str(path)))
    assert r.returncode == 0, r.stdout + r.stderr
    after = preview_blocks(db, path, "2026-10")
    dump = lambda parts: json.dumps(parts, ensure_ascii=False, sort_keys=True)  # noqa: E731
    assert dump(before) == dump(posted(db, "2026-10")) == dump(after)
    assert ("2026-10", "design", len(members)) in headcount_rows(db)
    text = "\n".join(blocks_text(p) for p in posted(db, "2026-10"))
    assert ("cycle time rising for 2 consecutive months" in text) is signal
    assert "not recorded" not in text
    if signal:
        assert "with headcount steady at 3" in text


def test_the_preview_of_the_current_month_is_labelled_month_to_date(db, fake):
    today = schedule.period_of(utcnow(), parse_process(tomllib.loads(PROCESS.read_text())).organization.tz)
    e = {"DATABASE_URL": db.url, "PROCESS_CONFIG": str(PROCESS)}
    r = cli("digest", "--month", today, env=e)
    assert r.returncode == 0 and f"{schedule.label(today)} (month to date)" in r.stdout, r.stderr
    future = cli("digest", "--month", schedule.shift(today, 1), env=e)
    assert future.returncode == 2 and "has not started" in future.stderr
