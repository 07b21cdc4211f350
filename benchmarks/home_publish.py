"""Time from a signed `app_home_opened` POST to the fake Web API's `views.publish` for a person with 50
waiting items, in an organisation of 100,000 handoffs, on SQLite and (with --pg) PostgreSQL.

    python benchmarks/home_publish.py [--handoffs 100000] [--opens 200] [--warmup 10]
                                      [--sqlite /tmp/steward-home.db] [--pg postgresql://…/test_h1]

Steward is served as the tests serve it (`python -m bot serve`: gunicorn, 2 workers × 8 threads) against
tests/support/slack_fake.py. The organisation: 20 teams of 4, two boundaries out of each team; twelve months of
handoffs (bulk SQL, each with its events: created, for one in five a send-back and a resubmission, then
accepted for all but the last weeks' ones), so the month's figures have real work to do. The person,
U0ME (team00), has 40 handoffs to review, 5 sent back to their team and 5 fast-track requests to decide:
50 waiting items. Every open is a new event (its own `event_id`), so each is recorded, written to the
outbox and published: p50 and p99 over `--opens`, after `--warmup` opens (which also keep last month's
figures in `month_rollup`, as the digest does). It drops Steward's tables in the databases it is given:
use scratch databases.
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import sys
import tempfile
import time
from datetime import datetime, timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from sqlalchemy import text  # noqa: E402

from bot.domain.core.timeutil import utcnow  # noqa: E402
from storage.db import Database  # noqa: E402
from storage.migrate import upgrade  # noqa: E402
from storage.models import SQLModel  # noqa: E402
from tests.support.harness import Steward  # noqa: E402
from tests.support.slack_fake import FakeSlack  # noqa: E402

TEAMS = 20
ME = "U0ME"


def process_toml() -> str:
    """The organisation as process.toml: U0ME is the first member of team00 and decides 'Gate 0' exceptions."""
    out = ['[organization]\nname = "Bench"\ntimezone = "Europe/Berlin"\ndigest_channel = "C0SYNC"\n']
    for i in range(TEAMS):
        members = [ME] + [f"U0M{i:03d}{k}" for k in range(1, 4)] if i == 0 else [f"U0M{i:03d}{k}" for k in range(4)]
        out.append(
            f'[[teams]]\nid = "team{i:02d}"\nname = "Team {i}"\nchannel = "C0T{i:03d}"\nmembers = {json.dumps(members)}\n'
        )
    for i in range(TEAMS):
        for k in (1, 3):
            out.append(
                f'[[boundaries]]\nfrom = "team{i:02d}"\nto = "team{(i + k) % TEAMS:02d}"\nsteward = "U0STEW"\n'
                f'sla_hours = 48\ncriteria = ["Spec", "Tests"]\n'
            )
    out.append('[fasttrack]\napprovers = ["U0STEW"]\nbackup_approvers = ["U0HEAD"]\n')
    out.append(
        '[[rights]]\nelement = "Gate 0"\nsets_standard = "team00"\ngrants_exceptions = ["U0ME"]\nowns_execution = "team01"\n'
    )
    return "\n".join(out)


def rows(count: int, now: datetime, seed: int = 11):
    """(handoff row, its event rows) for `count` handoffs over the last 365 days; the 45 waiting on U0ME last."""
    rng = random.Random(seed)
    pairs = [(f"team{i:02d}", f"team{(i + k) % TEAMS:02d}") for i in range(TEAMS) for k in (1, 3)]
    start = now - timedelta(days=365)
    step = (now - timedelta(days=2) - start) / count
    for hid in range(1, count + 1):
        src, dst = rng.choice(pairs)
        sender = f"U0M{int(src[4:]):03d}{rng.randrange(1, 4)}"
        created = start + step * hid
        events = [(hid, 1, "created", sender, created, 1, None, "{}")]
        waiting_on_me = hid > count - 45
        if waiting_on_me:  # 40 to review by team00, 5 sent back to team00
            src, dst = ("team19", "team00") if hid <= count - 5 else ("team00", "team01")
            sender = "U0M0191" if src == "team19" else "U0M0001"
        if waiting_on_me and src == "team00":
            events.append(
                (hid, 2, "rework_requested", "U0M0011", created + timedelta(hours=3), 1, "Tests missing", "{}")
            )
            state, rnd, accepted = "rework_requested", 1, None
        elif waiting_on_me or (created > now - timedelta(days=3) and "team00" not in (src, dst)):
            state, rnd, accepted = "open", 1, None
        else:
            rnd = 1
            if rng.random() < 0.2:
                back = created + timedelta(hours=rng.uniform(1, 30))
                events.append(
                    (
                        hid,
                        2,
                        rng.choice(["rework_requested", "clarification_requested"]),
                        "U0X",
                        back,
                        1,
                        f"Reason {rng.randrange(30)}",
                        "{}",
                    )
                )
                events.append(
                    (hid, 3, "resubmitted", sender, back + timedelta(hours=rng.uniform(1, 20)), 2, None, "{}")
                )
                rnd = 2
            accepted = min(events[-1][4] + timedelta(hours=rng.uniform(1, 40)), now - timedelta(minutes=1))
            events.append((hid, len(events) + 1, "accepted", "U0X", accepted, rnd, None, "{}"))
            state = "accepted"
        last = events[-1][4]
        handoff = (
            hid,
            src,
            dst,
            sender,
            f"Item {hid}",
            '["Spec", "Tests"]',
            '["Spec", "Tests"]',
            state,
            rnd,
            len(events),
            created,
            last,
            accepted,
            last if state != "accepted" else None,
            0,
            0,
        )
        yield handoff, events


HANDOFF_COLS = (
    "id, from_team, to_team, sender, title, criteria, criteria_met, state, round, version, created_at, updated_at, "
    "accepted_at, waiting_since, snoozes, level"
)
EVENT_COLS = "handoff_id, seq, kind, actor, at, round, reason, data"


def load(db: Database, count: int, now: datetime) -> None:
    pg = db.engine.dialect.name == "postgresql"
    raw = db.engine.raw_connection()
    cur = raw.cursor()
    mark = "%s" if pg else "?"

    def iso(v):  # as SQLAlchemy stores a DateTime in SQLite
        return v.isoformat(sep=" ", timespec="microseconds") if isinstance(v, datetime) and not pg else v

    hs, es = [], []
    for h, events in rows(count, now):
        hs.append(tuple(iso(v) for v in h))
        es.extend(tuple(iso(v) for v in e) for e in events)
    if pg:
        with cur.copy(f"COPY handoff ({HANDOFF_COLS}) FROM STDIN") as copy:
            for h in hs:
                copy.write_row(h)
        with cur.copy(f"COPY handoff_event ({EVENT_COLS}) FROM STDIN") as copy:
            for e in es:
                copy.write_row(e)
        cur.execute("SELECT setval('handoff_id_seq', (SELECT max(id) FROM handoff))")
        cur.execute("SELECT setval('handoff_event_id_seq', (SELECT max(id) FROM handoff_event))")
    else:
        cur.execute("BEGIN")
        cur.executemany(f"INSERT INTO handoff ({HANDOFF_COLS}) VALUES ({','.join([mark] * 16)})", hs)
        cur.executemany(f"INSERT INTO handoff_event ({EVENT_COLS}) VALUES ({','.join([mark] * 8)})", es)
    # five fast-track requests U0ME decides, and a thousand decided ones across the organisation
    budget = json.dumps(
        {
            "team": "team05",
            "period": now.strftime("%Y-%m"),
            "items": 400,
            "approved": 1,
            "limit": 40,
            "position": 2,
            "percent": 10,
        }
    )
    for fid in range(1, 1006):
        pending = fid > 1000
        at = now - timedelta(days=(1006 - fid) * 0.3)
        values = (
            fid,
            f"team{fid % TEAMS:02d}" if not pending else "team05",
            "U0M0051",
            "Gate 0",
            "Other",
            f"Request {fid}",
            "Because",
            "pending" if pending else "approved",
            False,
            json.dumps([ME]),
            None if pending else ME,
            None if pending else iso(at),
            1,
            iso(at),
            iso(at),
            False,
        )
        cur.execute(
            f"INSERT INTO fasttrack (id, team, requester, element, reason, what, justification, state, over_budget, deciders, "
            f"decided_by, decided_at, version, created_at, updated_at, escalated) VALUES ({','.join([mark] * 16)})",
            values,
        )
        cur.execute(
            f"INSERT INTO fasttrack_event (request_id, seq, kind, actor, at, data) VALUES ({','.join([mark] * 6)})",
            (fid, 1, "requested", "U0M0051", iso(at), json.dumps({"deciders": [ME], "budget": json.loads(budget)})),
        )
    if pg:
        cur.execute("SELECT setval('fasttrack_id_seq', (SELECT max(id) FROM fasttrack))")
        cur.execute("SELECT setval('fasttrack_event_id_seq', (SELECT max(id) FROM fasttrack_event))")
    raw.commit()
    if not pg:
        cur.execute("ANALYZE")
    raw.close()
    if pg:
        with db.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
            conn.execute(text("VACUUM ANALYZE"))


def prepare(url: str, count: int) -> Database:
    db = Database(url)
    with db.engine.begin() as conn:
        SQLModel.metadata.drop_all(conn)
        conn.execute(text("DROP TABLE IF EXISTS alembic_version"))
    upgrade(db.engine)
    t0 = time.perf_counter()
    load(db, count, utcnow())
    print(
        f"{db.engine.dialect.name}: loaded {count:,} handoffs and their events in {time.perf_counter() - t0:.1f} s",
        flush=True,
    )
    return db


def pct(values, q):
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q / 100 * (len(ordered) - 1))))]


def settled(db: Database, timeout: float = 10.0) -> None:
    """Wait (untimed) until the Home's outbox row is recorded as sent, so each open starts from rest."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with db.read() as s:
            status = s.execute(text("SELECT status FROM outbox WHERE key = :k"), {"k": f"home:{ME}"}).scalar()
        if status == "sent":
            return
        time.sleep(0.002)
    raise AssertionError(f"home:{ME} not settled: {status}")


def open_home(steward: Steward, fake: FakeSlack, n: int) -> tuple[float, float, dict]:
    body = json.dumps(
        {
            "token": "legacy",
            "team_id": "T0ACME",
            "api_app_id": "A0STEWARD",
            "type": "event_callback",
            "event_id": f"EvBENCH{n:06d}{time.monotonic_ns() % 10**6}",
            "event_time": int(time.time()),
            "event": {
                "type": "app_home_opened",
                "user": ME,
                "channel": "D0ME",
                "tab": "home",
                "event_ts": f"{time.time():.6f}",
            },
        }
    ).encode()
    since = len(fake.calls)
    start = time.monotonic()
    r = steward.post(body, content_type="application/json")
    acked = time.monotonic()
    assert r.status == 200, (r.status, r.raw)
    deadline = start + 10
    while time.monotonic() < deadline:
        found = next(
            (c for c in fake.calls[since:] if c.method == "views.publish" and c.args.get("user_id") == ME), None
        )
        if found is not None:
            assert found.status == 200, found.status
            view = found.args["view"]
            return (
                (acked - start) * 1000,
                (found.at - start) * 1000,
                json.loads(view) if isinstance(view, str) else view,
            )
        time.sleep(0.0005)
    raise AssertionError("no views.publish within 10 s")


def run(url: str, count: int, opens: int, warmup: int, config: Path) -> dict:
    db = prepare(url, count)
    fake = FakeSlack().start()
    steward = Steward(db.url, fake.url, config).start()
    try:
        for i in range(warmup):
            _, _, view = open_home(steward, fake, i)
            settled(db)
        text = json.dumps(view)
        assert "*Waiting for you* (50)" in text and "(40), oldest first" in text and "(5), oldest first" in text, text[
            :600
        ]
        acks, times = [], []
        for i in range(opens):
            ack, publish, _ = open_home(steward, fake, warmup + i)
            settled(db)
            acks.append(ack)
            times.append(publish)
        blocks = len(view["blocks"])
    finally:
        steward.stop()
        fake.stop()
        db.dispose()
    return {
        "ack_p50": statistics.median(acks),
        "ack_p99": pct(acks, 99),
        "p50": statistics.median(times),
        "p99": pct(times, 99),
        "max": max(times),
        "blocks": blocks,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--handoffs", type=int, default=100_000)
    parser.add_argument("--opens", type=int, default=200)
    parser.add_argument("--warmup", type=int, default=10)
    parser.add_argument("--sqlite", default=str(Path(tempfile.gettempdir()) / "steward-home-bench.db"))
    parser.add_argument("--pg", default=None, help="a scratch PostgreSQL database URL")
    args = parser.parse_args()
    config = Path(tempfile.mkdtemp()) / "process.toml"
    config.write_text(process_toml())
    targets = [("SQLite", f"sqlite:///{args.sqlite}")] + ([("PostgreSQL", args.pg)] if args.pg else [])
    results = {}
    for name, url in targets:
        if url.startswith("sqlite:///"):
            Path(url.removeprefix("sqlite:///")).unlink(missing_ok=True)
        results[name] = run(url, args.handoffs, args.opens, args.warmup, config)
        r = results[name]
        print(
            f"{name}: {args.opens} opens, Home of {r['blocks']} blocks: POST → views.publish p50 {r['p50']:.1f} ms, "
            f"p99 {r['p99']:.1f} ms, max {r['max']:.1f} ms (ack p50 {r['ack_p50']:.1f} ms, p99 {r['ack_p99']:.1f} ms)",
            flush=True,
        )
    print("\n| | " + " | ".join(results) + " |\n| --- |" + " --- |" * len(results))
    for key, label in (
        ("p50", "POST → views.publish p50"),
        ("p99", "POST → views.publish p99"),
        ("ack_p50", "ack p50"),
        ("ack_p99", "ack p99"),
    ):
        print(f"| {label} | " + " | ".join(f"{r[key]:.1f} ms" for r in results.values()) + " |")


if __name__ == "__main__":
    main()
