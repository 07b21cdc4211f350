"""What one escalation sweep costs when 100,000 handoffs are open and almost none is due, on SQLite and on
PostgreSQL.

    python benchmarks/escalation_sweep.py [--handoffs 100000] [--due-percent 1] [--runs 3]
                                          [--sqlite /tmp/steward-escalations.db] [--pg postgresql://…/test_h5]

The handoffs are written by bulk SQL (not through the domain, which would take minutes), each with its
`created` event, all open and waiting on the receiving team, over boundaries whose SLAs run from 32 to
240 working hours. Most began to wait in the last three days, so their `next_escalation_at` (the first
level of their path, computed with `bot.domain.core.worktime`) is spread over the coming six weeks; `--due-percent` of
them began to wait weeks ago, so a level of theirs has fallen due. At `NOW`, a Wednesday morning in
working time, it times (the median of `--runs`, the fired handoffs put back between runs):

- `bot.domain.escalations.due(db, now)` alone: the query through the index `ix_handoff_escalation`;
- one `bot.domain.escalations.sweep(db, cfg, now)` that fires every due handoff (an `escalated` event, the
  level, the next look, the card's update and the reminder in the outbox, each in its own transaction);
- one sweep when nothing is due: what the not-due majority costs every tick (target: under 1 s);

and reports the time per fired handoff, and the query plan of `due()` (EXPLAIN QUERY PLAN / EXPLAIN
ANALYZE), which must use `ix_handoff_escalation`. It creates the schema with `storage.migrate.upgrade`
after dropping Steward's tables in the database it is given: use a scratch database.
"""

from __future__ import annotations

import argparse
import os
import random
import statistics
import sys
import time
from datetime import UTC, datetime, timedelta
from functools import cache
from pathlib import Path
from zoneinfo import ZoneInfo

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from sqlalchemy import bindparam, event, text  # noqa: E402

from bot.domain import escalations, handoffs, sla  # noqa: E402
from bot.domain.core.process import parse_process  # noqa: E402
from bot.domain.core.worktime import WorkTime  # noqa: E402
from storage.db import Database  # noqa: E402
from storage.migrate import upgrade  # noqa: E402
from storage.models import Handoff, SQLModel  # noqa: E402

BERLIN = ZoneInfo("Europe/Berlin")
NOW = datetime(2026, 12, 9, 10, 30, tzinfo=BERLIN).astimezone(UTC).replace(tzinfo=None)  # Wednesday 10:30
TEAMS = 20
SLAS = (32, 40, 48, 64, 80, 120, 160, 240)  # working hours: the first level falls due up to six weeks ahead


def config():
    ids = [f"team{i:02d}" for i in range(TEAMS)]
    return parse_process(
        {
            "organization": {"name": "Bench", "timezone": "Europe/Berlin", "digest_channel": "C0SYNC"},
            "teams": [
                {
                    "id": t,
                    "name": f"Team {i}",
                    "channel": f"C0T{i:03d}",
                    "members": [f"U0M{i:03d}{k}" for k in range(4)],
                }
                for i, t in enumerate(ids)
            ],
            "boundaries": [
                {
                    "from": ids[i],
                    "to": ids[(i + k) % TEAMS],
                    "steward": "U0STEW",
                    "criteria": ["Spec"],
                    "sla_hours": SLAS[(i + k) % len(SLAS)],
                }
                for i in range(TEAMS)
                for k in (1, 3)
            ],
        }
    )


def rows(cfg, count: int, due_percent: float, seed: int = 7):
    """(handoff row, created event row, due?) in id order. Moments are rounded to 5 minutes so the
    working-time arithmetic can be cached."""
    rng = random.Random(seed)
    work = WorkTime.of(cfg)
    pairs = [(b.from_team, b.to_team, b.sla_hours) for b in cfg.boundaries]
    now5 = NOW.replace(minute=NOW.minute - NOW.minute % 5, second=0, microsecond=0)

    @cache
    def first_level(since: datetime, hours: int) -> datetime:
        return work.add(since, hours)

    for hid in range(1, count + 1):
        src, dst, hours = rng.choice(pairs)
        due = rng.random() < due_percent / 100
        if due:  # began to wait 6-10 weeks ago: at least its first level has fallen due
            since = now5 - timedelta(minutes=5 * rng.randrange(6 * 7 * 288, 10 * 7 * 288))
        else:  # began to wait in the last three days: its first level is still ahead
            since = now5 - timedelta(minutes=5 * rng.randrange(0, 3 * 288))
        at = first_level(since, hours)
        assert (at <= NOW) == due, (since, hours, at)
        handoff = (
            hid,
            src,
            dst,
            "U0M0000",
            f"Item {hid}",
            '["Spec"]',
            '["Spec"]',
            "open",
            1,
            1,
            since,
            since,
            since,
            0,
            0,
            at,
        )
        yield handoff, (hid, 1, "created", "U0M0000", since, 1, None, "{}"), due


HANDOFF_COLS = (
    "id, from_team, to_team, sender, title, criteria, criteria_met, state, round, version, created_at, updated_at, "
    "waiting_since, snoozes, level, next_escalation_at"
)
EVENT_COLS = "handoff_id, seq, kind, actor, at, round, reason, data"


def load_sqlite(db: Database, cfg, count: int, due_percent: float) -> dict[int, datetime]:
    raw = db.engine.raw_connection()
    cur = raw.cursor()
    cur.execute("BEGIN")
    hs, es, due = [], [], {}

    def flush():
        cur.executemany(f"INSERT INTO handoff ({HANDOFF_COLS}) VALUES ({','.join('?' * 16)})", hs)
        cur.executemany(f"INSERT INTO handoff_event ({EVENT_COLS}) VALUES ({','.join('?' * 8)})", es)
        hs.clear()
        es.clear()

    def iso(v):  # as SQLAlchemy stores a DateTime in SQLite
        return v.isoformat(sep=" ", timespec="microseconds") if isinstance(v, datetime) else v

    for h, e, is_due in rows(cfg, count, due_percent):
        hs.append(tuple(iso(v) for v in h))
        es.append(tuple(iso(v) for v in e))
        if is_due:
            due[h[0]] = h[-1]
        if len(hs) >= 20_000:
            flush()
    flush()
    cur.execute("COMMIT")
    cur.execute("ANALYZE")
    raw.close()
    return due


def load_postgresql(db: Database, cfg, count: int, due_percent: float) -> dict[int, datetime]:
    raw = db.engine.raw_connection()
    due = {}
    with raw.cursor() as cur:
        events = []
        with cur.copy(f"COPY handoff ({HANDOFF_COLS}) FROM STDIN") as copy:
            for h, e, is_due in rows(cfg, count, due_percent):
                copy.write_row(h)
                events.append(e)
                if is_due:
                    due[h[0]] = h[-1]
        with cur.copy(f"COPY handoff_event ({EVENT_COLS}) FROM STDIN") as copy:
            for e in events:
                copy.write_row(e)
        cur.execute("SELECT setval('handoff_id_seq', (SELECT max(id) FROM handoff))")
        cur.execute("SELECT setval('handoff_event_id_seq', (SELECT max(id) FROM handoff_event))")
    raw.commit()
    raw.close()
    with db.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        conn.execute(text("VACUUM ANALYZE"))
    return due


def prepare(url: str, cfg, count: int, due_percent: float, load) -> tuple[Database, dict[int, datetime]]:
    db = Database(url)
    with db.engine.begin() as conn:  # Steward's tables only, then the schema from nothing
        SQLModel.metadata.drop_all(conn)
        conn.execute(text("DROP TABLE IF EXISTS alembic_version"))
    upgrade(db.engine)
    t0 = time.perf_counter()
    due = load(db, cfg, count, due_percent)
    print(
        f"loaded {count:,} open handoffs ({len(due):,} due) and their created events into {db.engine.dialect.name}"
        f" in {time.perf_counter() - t0:.1f} s",
        flush=True,
    )
    return db, due


def put_back(db: Database, due: dict[int, datetime]) -> None:
    """The fired handoffs as they were before the sweep: level 0, their first level next, no escalation."""
    ids = list(due)
    with db.write() as s:
        for start in range(0, len(ids), 500):
            chunk = ids[start : start + 500]
            marks = ", ".join(str(i) for i in chunk)
            s.execute(text(f"DELETE FROM handoff_event WHERE seq > 1 AND handoff_id IN ({marks})"))
        s.execute(text("DELETE FROM outbox"))
        table = Handoff.__table__
        s.execute(
            table.update()
            .where(table.c.id == bindparam("hid"))
            .values(level=0, version=1, next_escalation_at=bindparam("at")),
            [{"hid": i, "at": at} for i, at in due.items()],
        )


def due_statement(db: Database) -> tuple[str, object]:
    """The SQL and parameters `escalations.due()` sends, captured from the driver."""
    seen = []

    def grab(conn, cursor, statement, parameters, context, executemany):
        if "next_escalation_at" in statement:
            seen.append((statement, parameters))

    event.listen(db.engine, "before_cursor_execute", grab)
    try:
        escalations.due(db, NOW)
    finally:
        event.remove(db.engine, "before_cursor_execute", grab)
    return seen[-1]


def plan(db: Database) -> list[str]:
    statement, parameters = due_statement(db)
    raw = db.engine.raw_connection()
    try:
        cur = raw.cursor()
        if db.engine.dialect.name == "sqlite":
            cur.execute("EXPLAIN QUERY PLAN " + statement, parameters)
            lines = [row[-1] for row in cur.fetchall()]
        else:
            cur.execute("EXPLAIN (ANALYZE, BUFFERS) " + statement, parameters)
            lines = [row[0] for row in cur.fetchall()]
        cur.close()
    finally:
        raw.close()
    return [statement.replace("\n", " ")] + lines


def median_ms(samples: list[float]) -> str:
    return f"{statistics.median(samples) * 1000:9.1f} ms  (runs: {', '.join(f'{s * 1000:.1f}' for s in samples)})"


def measure(name: str, db: Database, cfg, due: dict[int, datetime], runs: int) -> dict:
    assert WorkTime.of(cfg).is_working(NOW)
    with db.read() as s:
        total = s.execute(text("SELECT COUNT(*) FROM handoff")).scalar()
        events = s.execute(text("SELECT COUNT(*) FROM handoff_event")).scalar()
        spread = s.execute(
            text("SELECT MIN(next_escalation_at), MAX(next_escalation_at) FROM handoff WHERE next_escalation_at > :n"),
            {"n": NOW},
        ).one()
    # the bulk rows agree with the domain's clock
    sample = handoffs.get(db, next(iter(due)))
    assert sla.next_look(cfg, sample) == sample.next_escalation_at and sla.current(cfg, sample, NOW) is not None

    query = []
    for _ in range(runs):
        t0 = time.perf_counter()
        found = escalations.due(db, NOW)
        query.append(time.perf_counter() - t0)
    lines = plan(db)  # while the due handoffs are still due
    uses_index = any("ix_handoff_escalation" in line for line in lines)
    full, fired = [], []
    for _ in range(runs):
        put_back(db, due)
        t0 = time.perf_counter()
        keys = escalations.sweep(db, cfg, NOW)
        full.append(time.perf_counter() - t0)
        fired.append(sum(1 for k in keys if ":thread:" in k or ":dm:" in k))
    empty = []
    for _ in range(runs):  # everything due has fired: the sweep finds nothing, as on most ticks
        t0 = time.perf_counter()
        assert escalations.sweep(db, cfg, NOW) == []
        empty.append(time.perf_counter() - t0)
    with db.read() as s:
        escalated = s.execute(text("SELECT COUNT(*) FROM handoff_event WHERE kind = 'escalated'")).scalar()
        rows_out = s.execute(text("SELECT COUNT(*) FROM outbox")).scalar()

    n = statistics.median(fired)
    per_fired = (statistics.median(full) - statistics.median(empty)) / n if n else float("nan")
    print(
        f"\n{name}: {total:,} open handoffs, {events:,} events; {len(due):,} due at {NOW:%Y-%m-%d %H:%M} UTC;"
        f" the others next looked at from {str(spread[0])[:16]} to {str(spread[1])[:16]} UTC"
    )
    print(f"  due() alone ({len(found)} ids, batch {escalations.BATCH}): {median_ms(query)}")
    print(f"  sweep firing {int(n):,} handoffs:         {median_ms(full)}")
    print(
        f"  sweep with nothing due:            {median_ms(empty)}   target < 1 s: {'meets' if statistics.median(empty) < 1 else 'MISSES'}"
    )
    print(f"  per fired handoff:                 {per_fired * 1000:9.2f} ms  ((sweep − empty sweep) / fired)")
    print(
        f"  after the last run: {escalated:,} escalated events, {rows_out:,} outbox rows (card update + reminder each)"
    )
    print("  plan of due():")
    for line in lines:
        print(f"    {line}")
    print(f"  uses ix_handoff_escalation: {'yes' if uses_index else 'NO'}")
    assert uses_index, "due() does not use ix_handoff_escalation"
    return {
        "due": statistics.median(query),
        "sweep": statistics.median(full),
        "empty": statistics.median(empty),
        "per_fired": per_fired,
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--handoffs", type=int, default=100_000)
    p.add_argument("--due-percent", type=float, default=1.0)
    p.add_argument("--runs", type=int, default=3)
    p.add_argument("--sqlite", default="", help="a SQLite file (default: a temporary one, removed afterwards)")
    p.add_argument("--pg", help="a scratch PostgreSQL database (its Steward tables are dropped)")
    p.add_argument("--no-sqlite", action="store_true")
    args = p.parse_args()
    cfg = config()
    print(f"load average {' '.join(f'{x:.2f}' for x in os.getloadavg())}; {os.cpu_count()} CPUs", flush=True)
    if not args.no_sqlite:
        import tempfile

        folder = None if args.sqlite else tempfile.TemporaryDirectory()
        path = Path(args.sqlite or Path(folder.name) / "escalations.db")
        for suffix in ("", "-wal", "-shm"):
            Path(str(path) + suffix).unlink(missing_ok=True)
        db, due = prepare(f"sqlite:///{path}", cfg, args.handoffs, args.due_percent, load_sqlite)
        measure("SQLite", db, cfg, due, args.runs)
        db.dispose()
        if folder:
            folder.cleanup()
    if args.pg:
        db, due = prepare(args.pg, cfg, args.handoffs, args.due_percent, load_postgresql)
        measure("PostgreSQL", db, cfg, due, args.runs)
        db.dispose()
    print(f"\nload average {' '.join(f'{x:.2f}' for x in os.getloadavg())}")


if __name__ == "__main__":
    main()
