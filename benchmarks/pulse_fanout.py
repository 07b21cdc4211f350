"""The weekly pulse's fan-out: 10,000 members (25 teams of 400, in six time zones), one survey DM each,
written and delivered by the clock's `pulse` job as an operator runs it (`run-job pulse`: time zones from
users.list, the DMs written to the outbox, delivered paced by Slack's limits) against the fake Web API
enforcing chat.postMessage's limits (1 message/s per channel, a workspace-wide limit; 429 + whole-second
Retry-After over them) and users.list's Tier 2 (20/min, a burst of 5). Then the job runs again: nothing
may be sent twice. Prints the time of each step against the minimum the limits impose, the 429s,
duplicates, and DMs missing.

    python benchmarks/pulse_fanout.py [--members 10000] [--workspace-per-minute 1500] [--workspace-burst 10]
        [--pg postgresql://root@127.0.0.1:5432/test_h5 [--pg-schema bench_pulse_fanout]] [--no-sqlite]

minimum (delivery) = (N - workspace burst) / workspace rate: every DM is its own conversation, so the
per-channel limit never binds; the workspace one does.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import tempfile
import time
from collections import Counter
from datetime import datetime, timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from outbox_drain import fresh, in_schema  # noqa: E402
from slack_sdk import WebClient  # noqa: E402
from sqlmodel import func, select  # noqa: E402

from bot.domain import pulse  # noqa: E402
from bot.domain.core.process import parse_process  # noqa: E402
from bot.domain.core.timeutil import utcnow  # noqa: E402
from bot.entry.bootstrap import Deps  # noqa: E402
from bot.entry.clock import Run, run_pulse  # noqa: E402
from handlers import deliverer  # noqa: E402
from storage.models import Outbox, OutboxStatus  # noqa: E402
from tests.support.slack_fake import FakeSlack  # noqa: E402

ZONES = ["Asia/Tokyo", "Europe/Berlin", "America/New_York", "America/Los_Angeles", "UTC", "Australia/Sydney"]
SECRET = "benchmark-pulse-secret-0123456789"


def organisation(members: int):
    per_team = 400
    teams = []
    for t in range((members + per_team - 1) // per_team):
        ids = [f"U{n:07d}" for n in range(t * per_team, min((t + 1) * per_team, members))]
        teams.append({"id": f"team{t:02d}", "name": f"Team {t:02d}", "channel": f"C0TEAM{t:02d}", "members": ids})
    return parse_process(
        {"organization": {"name": "Bench", "timezone": "UTC", "digest_channel": "C0SYNC"}, "teams": teams, "pulse": {}}
    )


def run(label: str, url: str, args) -> dict:
    cfg = organisation(args.members)
    db = fresh(url)
    people = sorted(pulse.members(cfg))
    fake = FakeSlack().start()
    fake.users.update({u: {"tz": ZONES[i % len(ZONES)]} for i, u in enumerate(people)})
    fake.limit_per_channel("chat.postMessage", per_second=1, burst=1)
    fake.limit_workspace("chat.postMessage", per_minute=args.workspace_per_minute, burst=args.workspace_burst)
    fake.limit_workspace("users.list", per_minute=20, burst=5)
    client = WebClient(base_url=fake.url, token="xoxb-bench", retry_handlers=[])
    # a Tuesday 02:00 UTC: everyone's Monday 10:00 has passed (Los Angeles' too), nobody's week has closed
    today = utcnow().date()
    tuesday = today - timedelta(days=today.weekday()) + timedelta(days=8)
    now = datetime(tuesday.year, tuesday.month, tuesday.day, 2)
    deps = Deps(cfg, db, now=lambda: now, sealer=pulse.Sealer(SECRET))
    d = deliverer(deps, client, now=utcnow)
    try:
        start = time.monotonic()
        run_ = Run(cfg, db, d, now, force=True)
        run_pulse(run_)
        total = time.monotonic() - start
        lists = fake.of("users.list")
        ok_lists = [c for c in lists if c.status == 200]
        posts = [c for c in fake.of("chat.postMessage") if c.status == 200]
        tz_done = ok_lists[-1].at - start if ok_lists else 0.0
        first_post = (posts[0].at - start) if posts else 0.0
        delivery = (posts[-1].at - posts[0].at) if len(posts) > 1 else 0.0
        again = Run(cfg, db, d, now + timedelta(minutes=5), force=True)
        run_pulse(again)
    finally:
        fake.stop()
    week = pulse.week_id(tuesday)
    keys = [pulse.dm_key(week, u) for u in people]
    stored = Counter(
        ((m["metadata"] or {}).get("event_payload") or {}).get("key") for u in people for m in fake.messages(u)
    )
    counts = Counter(stored[k] for k in keys)
    with db.read() as s:
        left = s.exec(select(func.count()).select_from(Outbox).where(Outbox.status != OutboxStatus.SENT)).one()
    rate = args.workspace_per_minute / 60
    minimum = (len(people) - args.workspace_burst) / rate
    db.dispose()
    return dict(
        label=label,
        people=len(people),
        total=total,
        tz=tz_done,
        lists=len(lists),
        lists429=len(lists) - len(ok_lists),
        write=first_post - tz_done,
        delivery=delivery,
        minimum=minimum,
        once=counts.get(1, 0),
        twice=sum(n for c, n in counts.items() if c > 1),
        missing=counts.get(0, 0),
        posts429=sum(1 for c in fake.of("chat.postMessage") if c.status == 429),
        left=left,
        said=run_.done,
        again=again.done,
    )


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--members", type=int, default=10000)
    parser.add_argument("--workspace-per-minute", type=float, default=1500.0)
    parser.add_argument("--workspace-burst", type=int, default=10)
    parser.add_argument("--pg", help="also run on this PostgreSQL database, in a schema of its own (--pg-schema)")
    parser.add_argument("--pg-schema", default="bench_pulse_fanout")
    parser.add_argument("--no-sqlite", action="store_true")
    args = parser.parse_args()
    logging.basicConfig(level=logging.ERROR)
    print(f"load average {' '.join(f'{x:.2f}' for x in os.getloadavg())} on {os.cpu_count()} cores")
    print(
        f"fake Slack: chat.postMessage 1/s per channel, workspace {args.workspace_per_minute:g}/min (burst {args.workspace_burst});"
        f" users.list 20/min (burst 5), 200 a page"
    )
    targets = [] if args.no_sqlite else [("SQLite", f"sqlite:///{tempfile.mkdtemp()}/pulse.db")]
    if args.pg:
        targets.append(("PostgreSQL", in_schema(args.pg, args.pg_schema)))
    for label, url in targets:
        r = run(label, url, args)
        print(f"\n{label}: {r['people']} members; the job said: {' | '.join(r['said'])}")
        print(f"  time zones (users.list)       {r['tz']:8.2f} s   ({r['lists']} calls, {r['lists429']} answered 429)")
        print(
            f"  writing the week's DMs        {r['write']:8.2f} s   (outbox rows and recipients, {pulse.BATCH} people a transaction)"
        )
        print(f"  first → last DM delivered     {r['delivery']:8.2f} s")
        print(f"  minimum the limits impose     {r['minimum']:8.2f} s")
        print(f"  ratio delivery / minimum      {r['delivery'] / r['minimum']:8.3f}   (target ≤ 1.10)")
        print(f"  whole job                     {r['total']:8.2f} s")
        print(f"  429s to chat.postMessage      {r['posts429']:8d}")
        print(
            f"  DMs delivered once / twice / missing: {r['once']} / {r['twice']} / {r['missing']}; outbox rows not sent: {r['left']}"
        )
        print(f"  the job again, 5 minutes later: {' | '.join(r['again'])}")
        assert r["twice"] == 0 and r["missing"] == 0, "every DM exactly once"


if __name__ == "__main__":
    main()
