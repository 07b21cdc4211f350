"""How fast one deliverer drains a backlog: 1,000 pending outbox posts (20 channels × 50, plus optional
DMs) written with `bot.domain.core.outbox.put` into a fresh database, then `Deliverer.sweep(until_idle=True)` against
the fake Web API enforcing Slack's chat.postMessage limits (1 message/s per channel, and a workspace
limit). Prints the drain time against the minimum the limits impose, the 429s, duplicates, leftovers, and
how many conversations got their messages in another order than they were written. The fake answers a
429 with a whole-second Retry-After (at least 1 s), as Slack does. Fake, client and deliverer share one
process; on PostgreSQL the benchmark works in a schema of its own, never in `public`.

    python benchmarks/outbox_drain.py [--pg postgresql://root@127.0.0.1:5432/test_h5 [--pg-schema bench_outbox_drain]]
        [--channels 20] [--per-channel 50] [--dms 0] [--order interleaved|grouped]
        [--workspace-per-minute 1500] [--workspace-burst 10] [--pace 1.0] [--max-seconds 300]

The minimum: a channel's bucket starts full (`burst` tokens) and refills at `rate`, so n posts to one
channel take at least (n - burst) / rate seconds from the first to the last; the workspace bucket the same
over all posts. minimum = max(per channel: (n_c - 1) / 1, workspace: (N - burst_w) / (per_minute / 60)).
`--order`: the order the rows are written (so their ids and `next_at` order): `interleaved` (round-robin
over the channels) or `grouped` (all of a channel's rows, then the next channel's).
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import tempfile
import time
from collections import Counter
from datetime import timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from slack_sdk import WebClient
from sqlalchemy import func, text
from sqlmodel import select

from bot.domain.core import outbox
from bot.domain.core.outbox import POST, Message
from bot.domain.core.process import load_process
from bot.domain.core.timeutil import utcnow
from bot.entry.bootstrap import Deps
from handlers import deliverer
from storage.db import Database
from storage.migrate import upgrade
from storage.models import Outbox, OutboxStatus, SQLModel
from tests.support.slack_fake import FakeSlack

PROCESS = ROOT / "tests" / "data" / "process.toml"


def in_schema(url: str, schema: str) -> str:
    """The PostgreSQL URL with `schema` (created if missing) as its only search path, so the benchmark's
    tables never meet those of anyone else using the same database (their `public` schema)."""
    base = Database(url)
    with base.engine.begin() as conn:
        conn.execute(text(f'CREATE SCHEMA IF NOT EXISTS "{schema}"'))
    base.dispose()
    return url + ("&" if "?" in url else "?") + f"options=-csearch_path%3D{schema}"


def fresh(url: str) -> Database:
    db = Database(url)
    if not db.is_sqlite:  # our own schema: drop everything in it, migrate from nothing
        with db.engine.begin() as conn:
            assert conn.execute(text("SELECT current_schema()")).scalar() not in (None, "public")
            SQLModel.metadata.drop_all(conn)
            conn.execute(text("DROP TABLE IF EXISTS alembic_version"))
    upgrade(db.engine)
    return db


def backlog(channels: int, per_channel: int, dms: int, order: str) -> list[Message]:
    chans = [f"C0BENCH{c:03d}" for c in range(channels)]

    def post(channel: str, i: int) -> Message:
        key = f"bench:{channel}:{i}"
        return Message(
            key,
            f"bench:{channel}",
            POST,
            channel,
            "static",
            {"message": {"text": f"Backlog message {i + 1} to {channel}", "blocks": []}},
        )

    if order == "grouped":
        out = [post(ch, i) for ch in chans for i in range(per_channel)]
    else:
        out = [post(ch, i) for i in range(per_channel) for ch in chans]
    out += [post(f"U0DM{u:04d}", 0) for u in range(dms)]  # one DM each to `dms` people
    return out


def run(label: str, url: str, args) -> dict:
    cfg = load_process(PROCESS)
    db = fresh(url)
    messages = backlog(args.channels, args.per_channel, args.dms, args.order)
    keys = outbox.put(db, messages, utcnow() - timedelta(seconds=1))
    assert len(keys) == len(set(keys)) == len(messages)

    fake = FakeSlack().start()
    fake.limit_per_channel("chat.postMessage", per_second=1, burst=1)
    fake.limit_workspace("chat.postMessage", per_minute=args.workspace_per_minute, burst=args.workspace_burst)
    client = WebClient(base_url=fake.url, token="xoxb-bench", retry_handlers=[])
    d = deliverer(Deps(cfg, db), client, pace=args.pace)
    try:
        start = time.monotonic()
        done = d.sweep(max_seconds=args.max_seconds, until_idle=True)
        total = time.monotonic() - start
    finally:
        fake.stop()

    posts = [c for c in fake.of("chat.postMessage")]
    ok = [c for c in posts if c.status == 200]
    per_channel = Counter(c.args.get("channel") for c in ok)
    by_channel = Counter(m.channel for m in messages)
    # delivered in the order written? (the i in "Backlog message i" must grow along each channel)
    out_of_order = 0
    for channel in by_channel:
        seq = [int(m["text"].split()[2]) for m in fake.messages(channel)]
        out_of_order += seq != sorted(seq)
    throttled_channels = Counter(t.channel for t in fake.throttled)
    times: dict[str, list[float]] = {}
    for c in ok:
        times.setdefault(c.args.get("channel"), []).append(c.at)
    gaps = sorted(b - a for ts in times.values() for a, b in zip(ts, ts[1:]))
    finish = sorted(ts[-1] - start for ts in times.values())
    with db.read() as s:
        left = s.exec(select(func.count()).select_from(Outbox).where(Outbox.status != OutboxStatus.SENT)).one()
    duplicates = sum(fake.posted(k) for k in keys) - len(keys)
    rate_w = args.workspace_per_minute / 60
    minimum = max(max((n - 1) / 1.0 for n in by_channel.values()), (len(messages) - args.workspace_burst) / rate_w, 0.0)
    span = (ok[-1].at - ok[0].at) if len(ok) > 1 else 0.0
    first = (ok[0].at - start) if ok else 0.0
    db.dispose()
    return dict(
        label=label,
        rows=len(messages),
        channels=sum(1 for c in by_channel if c[0] in "CG"),
        dms=sum(1 for c in by_channel if c[0] in "UW"),
        out_of_order=out_of_order,
        max_429_one_channel=max(throttled_channels.values(), default=0),
        gap_p50=gaps[len(gaps) // 2] if gaps else 0.0,
        gap_p99=gaps[int(0.99 * (len(gaps) - 1))] if gaps else 0.0,
        gap_mean=sum(gaps) / len(gaps) if gaps else 0.0,
        finish_first=finish[0] if finish else 0.0,
        finish_last=finish[-1] if finish else 0.0,
        total=total,
        span=span,
        first=first,
        minimum=minimum,
        throttled=len(fake.throttled),
        throttled_scope=Counter(t.scope for t in fake.throttled),
        status429=sum(1 for c in posts if c.status == 429),
        calls=len(posts),
        duplicates=duplicates,
        left=left,
        outcomes=dict(done),
        max_per_channel=max(per_channel.values()) if per_channel else 0,
    )


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--pg", help="also run on this PostgreSQL database, in a schema of its own (--pg-schema)")
    parser.add_argument("--pg-schema", default="bench_outbox_drain", help="dropped and migrated afresh on every run")
    parser.add_argument("--no-sqlite", action="store_true")
    parser.add_argument("--channels", type=int, default=20)
    parser.add_argument("--per-channel", type=int, default=50)
    parser.add_argument("--dms", type=int, default=0)
    parser.add_argument("--order", choices=("interleaved", "grouped"), default="interleaved")
    parser.add_argument("--workspace-per-minute", type=float, default=1500.0)
    parser.add_argument("--workspace-burst", type=int, default=10)
    parser.add_argument("--pace", type=float, default=1.0, help="Deliverer pace (its default is 1.0)")
    parser.add_argument("--max-seconds", type=float, default=300.0)
    args = parser.parse_args()
    logging.basicConfig(level=logging.ERROR)
    print(f"load average {' '.join(f'{x:.2f}' for x in os.getloadavg())} on {os.cpu_count()} cores")

    targets = [] if args.no_sqlite else [("SQLite", f"sqlite:///{tempfile.mkdtemp()}/drain.db")]
    if args.pg:
        targets.append(("PostgreSQL", in_schema(args.pg, args.pg_schema)))
    print(
        f"fake Slack chat.postMessage limits: 1/s per channel (burst 1), workspace {args.workspace_per_minute:g}/min "
        f"(burst {args.workspace_burst}); rows written {args.order}; one Deliverer, pace {args.pace:g} s, "
        f"sweep(max_seconds={args.max_seconds:g}, until_idle=True)"
    )
    print("minimum = max(max over channels (n_c - 1) s, (N - workspace burst) / workspace rate)")
    results = []
    for label, url in targets:
        r = run(label, url, args)
        results.append(r)
        print(f"\n{label}: {r['rows']} rows: {r['channels']} channels, {r['dms']} DMs; sweep outcomes {r['outcomes']}")
        print(f"  total (sweep start → return)  {r['total']:7.2f} s")
        print(
            f"  first → last accepted post    {r['span']:7.2f} s   (first post {r['first'] * 1000:.0f} ms after start)"
        )
        print(f"  minimum the limits impose     {r['minimum']:7.2f} s")
        print(f"  ratio total / minimum         {r['total'] / r['minimum']:7.3f}   (target ≤ 1.10)")
        print(
            f"  gap between a channel's posts mean {r['gap_mean']:.3f} s, p50 {r['gap_p50']:.3f} s, p99 {r['gap_p99']:.3f} s; "
            f"channels finished between {r['finish_first']:.1f} and {r['finish_last']:.1f} s"
        )
        print(
            f"  429s received                 {r['status429']:7d}   (by scope: {dict(r['throttled_scope'])}); "
            f"chat.postMessage calls {r['calls']}"
        )
        print(f"  429s to the worst channel     {r['max_429_one_channel']:7d}")
        print(
            f"  conversations out of order    {r['out_of_order']:7d}   (a later message posted before an earlier one)"
        )
        print(f"  duplicates                    {r['duplicates']:7d}")
        print(f"  rows not sent                 {r['left']:7d}")
        assert r["duplicates"] == 0, "a message was posted twice"


if __name__ == "__main__":
    main()
