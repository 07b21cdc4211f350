"""The pulse's mix (`bot.domain.pulse.mix`): how long the clock's rewrite of a week's answers takes, for a week in
which every one of N members (25 teams of 400) answered, on SQLite and (with --pg) PostgreSQL.

    python benchmarks/pulse_mix.py [--members 10000] [--sqlite /tmp/steward-mix.db] [--pg postgresql://…/scratch]

Each person's answer is three rows (team, organisation… one per group they count in); the mix rewrites all
of them in one transaction in key order, then VACUUMs (PostgreSQL). Printed: writing the answers, the first
mix (all new), a mix with nothing new (a look), a mix after 100 more clicks. It drops Steward's tables in
the databases it is given: use scratch databases.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from datetime import datetime, timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.pulse_fanout import organisation  # noqa: E402
from bot.domain import pulse  # noqa: E402
from storage.db import Database  # noqa: E402
from storage.migrate import upgrade  # noqa: E402
from storage.models import SQLModel  # noqa: E402

SECRET = "benchmark-pulse-secret-0123456789"


def run(label: str, url: str, members: int) -> None:
    db = Database(url)
    with db.engine.begin() as conn:
        SQLModel.metadata.drop_all(conn)
        conn.exec_driver_sql("DROP TABLE IF EXISTS alembic_version")
    upgrade(db.engine)
    cfg = organisation(members)
    monday = datetime(2026, 11, 2, 12)
    pulse.send_due(db, cfg, monday, {})
    week = pulse.week_id(monday.date())
    sealer = pulse.Sealer(SECRET)
    people = sorted(pulse.members(cfg))
    start = time.perf_counter()
    for i, user in enumerate(people):
        pulse.answer(db, sealer, user, week, monday + timedelta(seconds=i), score=1 + i % 5)
    wrote = time.perf_counter() - start
    timings = []
    for step in ("first mix", "nothing new", "after 100 clicks"):
        if step == "after 100 clicks":
            for user in people[:100]:
                pulse.answer(db, sealer, user, week, monday + timedelta(hours=3), score=3)
        start = time.perf_counter()
        pulse.mix(db)
        timings.append((step, time.perf_counter() - start))
    print(
        f"{label}: {len(people):,} answers written one click each in {wrote:.1f} s; "
        + "; ".join(f"mix {step} {seconds * 1000:.0f} ms" for step, seconds in timings)
    )
    db.dispose()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--members", type=int, default=10_000)
    parser.add_argument("--sqlite", default=str(Path(tempfile.gettempdir()) / "steward-mix-bench.db"))
    parser.add_argument("--pg", default=None, help="a scratch PostgreSQL database URL")
    args = parser.parse_args()
    Path(args.sqlite).unlink(missing_ok=True)
    run("SQLite", f"sqlite:///{args.sqlite}", args.members)
    if args.pg:
        run("PostgreSQL", args.pg, args.members)


if __name__ == "__main__":
    main()
