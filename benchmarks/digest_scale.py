"""How long one month's digest takes on a large history: 1,000,000 handoffs over 24 months and 100 teams
(300 boundaries), on SQLite and on PostgreSQL.

    python benchmarks/digest_scale.py [--handoffs 1000000] [--backend sqlite|postgresql|both]
                                      [--pg postgresql://root@127.0.0.1:5432/postgres] [--keep]

The history is written in bulk (not through the domain functions, which would take hours): each handoff
has its `created` event, a quarter of them a send-back and a resubmission (some two), 90% an acceptance
from 30 minutes to 6 days later, a few a cancellation. Then it times, for the last month:
- the digest: `bot.domain.digest.compose()` + `messages()`, every figure of that month and of the five before it
  (the changes, the signals, the trend chart's data), as `run-job digest` computes it. As posted each
  month, the five earlier months are read from `month_rollup` (kept when their own digest was made) and
  the month itself is computed from the events; it also prints the cold case (nothing kept: six months
  computed) and a rerun (everything kept);
- one month's figures alone (`bot.domain.metrics.month`, pure SQL over the events);
- the single cheapest query that touches the same month's rows: COUNT(*) of the handoffs created in it;
and prints the ratios. It also times one month's figures for months 6, 12 and 18 of the 24: if the cost
grew with the history, later months would cost more.
"""

from __future__ import annotations

import argparse
import random
import statistics
import sys
import time
from datetime import datetime, timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from sqlalchemy import bindparam, text  # noqa: E402

from bot.domain import (
    digest,
    metrics,  # noqa: E402
)
from bot.domain.core import schedule  # noqa: E402
from bot.domain.core.process import parse_process  # noqa: E402
from handlers import digest as slack_digest  # noqa: E402
from storage.db import Database  # noqa: E402
from storage.migrate import upgrade  # noqa: E402

TEAMS = 100
MONTHS = 24
LAST = "2026-10"
REASONS = [
    "Acceptance criteria incomplete",
    "Wireframes missing",
    "Test plan missing",
    "Release notes missing",
    "Rollback plan missing",
    "Which API version?",
    "Unclear scope",
    "Sample data missing",
]


def config():
    ids = [f"team{i:03d}" for i in range(TEAMS)]
    return parse_process(
        {
            "organization": {"name": "Bench", "timezone": "Europe/Berlin", "digest_channel": "C0SYNC"},
            "teams": [
                {
                    "id": t,
                    "name": f"Team {i}",
                    "channel": f"C0T{i:03d}",
                    "members": [f"U0M{i:03d}{k}" for k in range(6)],
                }
                for i, t in enumerate(ids)
            ],
            "boundaries": [
                {"from": ids[i], "to": ids[(i + k) % TEAMS], "steward": "U0STEW", "criteria": ["Spec"]}
                for i in range(TEAMS)
                for k in (1, 2, 7)
            ],
        }
    )


def rows(cfg, count: int, seed: int = 1):
    """(handoff row, [event rows]) in id order."""
    rng = random.Random(seed)
    tz = cfg.organization.tz
    first = schedule.shift(LAST, -(MONTHS - 1))
    start = schedule.bounds(first, tz)[0]
    end = schedule.bounds(LAST, tz)[1]
    span = (end - start).total_seconds()
    pairs = [(b.from_team, b.to_team) for b in cfg.boundaries]
    times = sorted(start + timedelta(seconds=rng.uniform(0, span)) for _ in range(count))
    for hid, created in enumerate(times, 1):
        src, dst = rng.choice(pairs)
        events = [("created", created, 1, None)]
        at, rnd = created, 1
        for _ in range(2):
            if rng.random() >= 0.25:
                break
            at += timedelta(hours=rng.uniform(1, 48))
            kind = rng.choice(("rework_requested", "rework_requested", "clarification_requested"))
            events.append((kind, at, rnd, rng.choice(REASONS)))
            at += timedelta(hours=rng.uniform(1, 24))
            rnd += 1
            events.append(("resubmitted", at, rnd, None))
        fate = rng.random()
        accepted_at = None
        if fate < 0.9:
            at += timedelta(minutes=rng.uniform(30, 6 * 24 * 60))
            events.append(("accepted", at, rnd, None))
            state, accepted_at = "accepted", at
        elif fate < 0.93:
            at += timedelta(hours=rng.uniform(1, 72))
            events.append(("cancelled", at, rnd, None))
            state = "cancelled"
        else:
            state = "open"
        handoff = (
            hid,
            src,
            dst,
            "U0M0000",
            f"Item {hid}",
            "[]",
            "[]",
            state,
            rnd,
            len(events),
            created,
            at,
            accepted_at,
        )
        yield (
            handoff,
            [
                (hid, seq, kind, "U0M0010", when, r, reason, "{}")
                for seq, (kind, when, r, reason) in enumerate(events, 1)
            ],
        )


HANDOFF_COLS = "id, from_team, to_team, sender, title, criteria, criteria_met, state, round, version, created_at, updated_at, accepted_at"
EVENT_COLS = "handoff_id, seq, kind, actor, at, round, reason, data"


def load_sqlite(db: Database, cfg, count: int) -> None:
    raw = db.engine.raw_connection()
    cur = raw.cursor()
    cur.execute("BEGIN")
    hs, es = [], []

    def flush():
        cur.executemany(f"INSERT INTO handoff ({HANDOFF_COLS}) VALUES ({','.join('?' * 13)})", hs)
        cur.executemany(f"INSERT INTO handoff_event ({EVENT_COLS}) VALUES ({','.join('?' * 8)})", es)
        hs.clear()
        es.clear()

    def iso(v):
        return v.isoformat(sep=" ") if isinstance(v, datetime) else v

    for h, evs in rows(cfg, count):
        hs.append(tuple(iso(v) for v in h))
        es.extend(tuple(iso(v) for v in e) for e in evs)
        if len(hs) >= 50_000:
            flush()
    flush()
    cur.execute("COMMIT")
    cur.execute("ANALYZE")
    raw.close()


def load_postgresql(db: Database, cfg, count: int) -> None:
    raw = db.engine.raw_connection()
    with raw.cursor() as cur:
        with cur.copy(f"COPY handoff ({HANDOFF_COLS}) FROM STDIN") as hcopy:
            events = []
            for h, evs in rows(cfg, count):
                hcopy.write_row(h)
                events.extend(evs)
        with cur.copy(f"COPY handoff_event ({EVENT_COLS}) FROM STDIN") as ecopy:
            for e in events:
                ecopy.write_row(e)
        cur.execute("SELECT setval('handoff_id_seq', (SELECT max(id) FROM handoff))")
    raw.commit()
    with db.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        conn.execute(text("VACUUM ANALYZE"))
    raw.close()


def timed(fn, repeat: int = 3) -> tuple[float, float]:
    """(first run, median of the following runs) in seconds."""
    t0 = time.perf_counter()
    fn()
    first = time.perf_counter() - t0
    rest = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        rest.append(time.perf_counter() - t0)
    return first, statistics.median(rest)


def measure(name: str, db: Database, cfg) -> None:
    tz = cfg.organization.tz
    start, end = schedule.bounds(LAST, tz)
    with db.read() as s:
        total = s.execute(text("SELECT COUNT(*) FROM handoff")).scalar()
        events = s.execute(text("SELECT COUNT(*) FROM handoff_event")).scalar()
        in_month = s.execute(
            text("SELECT COUNT(*) FROM handoff WHERE created_at >= :s AND created_at < :e"), {"s": start, "e": end}
        ).scalar()

    def cheapest():
        with db.read() as s:
            s.execute(
                text("SELECT COUNT(*) FROM handoff WHERE created_at >= :s AND created_at < :e"), {"s": start, "e": end}
            ).scalar()

    team_ids = [t.id for t in cfg.teams]

    def forget(*periods):
        with db.write() as s:
            s.execute(
                text("DELETE FROM month_rollup" + (" WHERE period IN :p" if periods else "")).bindparams(
                    *([bindparam("p", expanding=True)] if periods else [])
                ),
                {"p": list(periods)} if periods else {},
            )

    def run_digest(period=LAST):
        slack_digest.messages(digest.compose(db, cfg, period))

    _, q = timed(cheapest, 5)
    _, m = timed(lambda: metrics.month(db, LAST, start, end, team_ids))
    cold = []
    for _ in range(3):
        forget()
        t0 = time.perf_counter()
        run_digest()
        cold.append(time.perf_counter() - t0)
    monthly = []
    for _ in range(3):
        forget(LAST)  # the earlier months were kept by earlier digests: the first run after the month ends
        t0 = time.perf_counter()
        run_digest()
        monthly.append(time.perf_counter() - t0)
    _, warm = timed(run_digest)
    d = statistics.median(monthly)
    print(f"\n{name}: {total:,} handoffs, {events:,} events; {LAST} has {in_month:,} new handoffs")
    print(f"  one month's figures (SQL):              {m * 1000:8.1f} ms")
    print(f"  digest of {LAST}, as posted each month: {d * 1000:8.1f} ms   (its month computed, 5 earlier months kept)")
    print(f"  digest of {LAST}, nothing kept (cold):  {statistics.median(cold) * 1000:8.1f} ms   (6 months computed)")
    print(f"  digest of {LAST} again (all kept):      {warm * 1000:8.1f} ms")
    print(f"  cheapest query on the month's rows:     {q * 1000:8.2f} ms   (COUNT of handoffs created in {LAST})")
    print(f"  ratio digest / cheapest query:          {d / q:8.0f}×")
    print(f"  ratio one month / cheapest query:       {m / q:8.0f}×")
    for back in (18, 12, 6):
        period = schedule.shift(LAST, -back)
        p_start, p_end = schedule.bounds(period, tz)
        t0 = time.perf_counter()
        metrics.month(db, period, p_start, p_end, team_ids)
        t = time.perf_counter() - t0
        print(f"  one month's figures, {period} (month {MONTHS - back:2d} of {MONTHS}): {t * 1000:8.1f} ms")
    verdict = "meets" if d <= 1.0 else "MISSES"
    print(f"  target ≤ 1 s for the monthly digest: {verdict}")


def prepare(url: str, cfg, count: int, load) -> Database:
    db = Database(url)
    with db.engine.begin() as conn:
        conn.execute(text("DROP TABLE IF EXISTS handoff_event"))
        conn.execute(text("DROP TABLE IF EXISTS handoff"))
        for t in ("job_ledger", "initiative", "headcount", "month_rollup", "alembic_version"):
            conn.execute(text(f"DROP TABLE IF EXISTS {t}"))
    upgrade(db.engine)
    t0 = time.perf_counter()
    load(db, cfg, count)
    print(f"loaded {count:,} handoffs into {db.engine.dialect.name} in {time.perf_counter() - t0:.0f} s", flush=True)
    return db


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--handoffs", type=int, default=1_000_000)
    p.add_argument("--backend", choices=("sqlite", "postgresql", "both"), default="both")
    p.add_argument("--sqlite", default="/tmp/steward-bench.db")
    p.add_argument("--pg", default="postgresql://root@127.0.0.1:5432/postgres")
    p.add_argument("--reuse", action="store_true", help="measure the databases a previous run loaded")
    args = p.parse_args()
    cfg = config()
    if args.backend in ("sqlite", "both"):
        path = Path(args.sqlite)
        if not args.reuse:
            for suffix in ("", "-wal", "-shm"):
                Path(str(path) + suffix).unlink(missing_ok=True)
        db = (
            Database(f"sqlite:///{path}")
            if args.reuse
            else prepare(f"sqlite:///{path}", cfg, args.handoffs, load_sqlite)
        )
        measure("SQLite", db, cfg)
    if args.backend in ("postgresql", "both"):
        db = Database(args.pg) if args.reuse else prepare(args.pg, cfg, args.handoffs, load_postgresql)
        measure("PostgreSQL", db, cfg)


if __name__ == "__main__":
    main()
