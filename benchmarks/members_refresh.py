"""Teams in step with Slack at scale: 20 teams, half read from a user group and half from a channel, 10,000
people in all, refreshed as the clock's `members` job does it (`run-job members`) against the fake Web API:
the first read (a baseline: every person recorded, `users.info` asked about each channel member), an
unchanged read, and a read where 1% joined and 1% left (welcome DMs written). Then what every request pays
for the current members (`Deps.cfg`): cached, and re-read after a change.

    python benchmarks/members_refresh.py [--people 10000] [--pg postgresql://root@127.0.0.1:5432/test_h2 [--pg-schema bench_members]] [--no-sqlite]
"""

from __future__ import annotations

import argparse
import logging
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from outbox_drain import fresh, in_schema  # noqa: E402
from slack_sdk import WebClient  # noqa: E402

from bot.domain import members  # noqa: E402
from bot.domain.core.process import parse_process  # noqa: E402
from bot.entry.bootstrap import Deps  # noqa: E402
from handlers import members as slack_members  # noqa: E402
from tests.support.harness import TOKEN  # noqa: E402
from tests.support.slack_fake import FakeSlack  # noqa: E402

TEAMS = 20


def run(url: str, people: int, fake: FakeSlack) -> None:
    fake.reset()
    db = fresh(url)
    per = people // TEAMS
    teams = []
    for i in range(TEAMS):
        spec = {"usergroup": f"S0G{i:03d}"} if i % 2 else {"members_from_channel": True}
        teams.append({"id": f"t{i}", "name": f"Team {i}", "channel": f"C0T{i:03d}", **spec})
        ids = [f"U{i:02d}{n:05d}" for n in range(per)]
        for u in ids:
            fake.users[u] = {"name": u}
        if i % 2:
            fake.usergroups[f"S0G{i:03d}"] = {"users": ids}
        else:
            fake.channels[f"C0T{i:03d}"] = {"members": ids}
    cfg = parse_process({"organization": {"name": "Bench", "digest_channel": "C0SYNC"}, "teams": teams})
    client = WebClient(token=TOKEN, base_url=fake.url)

    def timed(label: str, now: datetime) -> None:
        calls = len(fake.calls)
        start = time.perf_counter()
        keys = slack_members.refresh(db, cfg, client, now, lambda line: None)
        took = time.perf_counter() - start
        print(
            f"  {label:<34} {took * 1000:9.0f} ms, {len(fake.calls) - calls:6d} Web API calls, {len(keys):4d} welcome DMs written"
        )

    print(f"{db.engine.dialect.name}: {TEAMS} teams, {per * TEAMS} people")
    timed("first read (baseline)", datetime(2026, 11, 2, 9))
    timed("unchanged", datetime(2026, 11, 2, 10))
    moved = max(1, per // 100)
    for i in range(TEAMS):
        source = fake.usergroups.get(f"S0G{i:03d}") or fake.channels[f"C0T{i:03d}"]
        key = "users" if i % 2 else "members"
        new = [f"U{i:02d}9{n:04d}" for n in range(moved)]
        for u in new:
            fake.users[u] = {"name": u}
        source[key] = source[key][moved:] + new
    timed(f"{moved * TEAMS} joined, {moved * TEAMS} left", datetime(2026, 11, 2, 11))

    deps = Deps(cfg, db)
    deps.cfg
    n = 100_000
    start = time.perf_counter()
    for _ in range(n):
        deps.cfg
    cached = (time.perf_counter() - start) / n
    reloads = []
    for _ in range(20):
        with db.write() as session:
            members._bump(session, db)
        deps.roster.expire()
        start = time.perf_counter()
        deps.cfg
        reloads.append(time.perf_counter() - start)
    reloads.sort()
    looks = []
    for _ in range(50):
        deps.roster.expire()
        start = time.perf_counter()
        deps.cfg
        looks.append(time.perf_counter() - start)
    looks.sort()
    print(
        f"  Deps.cfg cached: {cached * 1e6:.2f} µs; a look at the stamp, unchanged: {looks[25] * 1000:.2f} ms (median);"
        f" re-read of {per * TEAMS} members after a change: {reloads[10] * 1000:.0f} ms (median)"
    )
    db.dispose()


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--people", type=int, default=10_000)
    p.add_argument("--pg")
    p.add_argument("--pg-schema", default="bench_members")
    p.add_argument("--no-sqlite", action="store_true")
    args = p.parse_args()
    logging.basicConfig(level=logging.WARNING)
    fake = FakeSlack().start()
    try:
        if not args.no_sqlite:
            with tempfile.TemporaryDirectory() as tmp:
                run(f"sqlite:///{tmp}/bench.db", args.people, fake)
        if args.pg:
            run(in_schema(args.pg, args.pg_schema), args.people, fake)
    finally:
        fake.stop()


if __name__ == "__main__":
    main()
