"""The load drill: 32 clients driving Steward as served (`python -m bot serve`: gunicorn, 2 workers x 8 threads,
as shipped) through signed requests, on SQLite or PostgreSQL, for one or more trees in the same run. Prints
requests/s, ack p50/p99 and the server's CPU per request.

    python benchmarks/load.py [--tree PATH ...] [--clients 32] [--seconds 60] [--pg URL]

Each client loops: `/handoff eng` (the modal opens), the modal submitted with every criterion met (a
handoff, its card and DM), `/handoff list`; every other round the receiving team sends it back for
rework (the button, then the reason's modal) and the sender resubmits it (the DM's button, then the
modal); then Accept, clicked twice at once (a double click). Every HTTP request counts; its time is the
ack's (the request's round trip). A clock runs beside the server, as the Procfile deploys it. The server's CPU is the user + system time of gunicorn's master and
workers between the first and the last request, from /proc.

`--tree` (default: this one; repeatable) serves another checkout with its own `tests/data/process.toml` and a
fresh database migrated by that tree's `python -m bot migrate`; the driver and the fake Slack are this
tree's. Trees run one after the other, each for `--seconds`, after a warm-up of `--warmup` seconds. To
compare with the tree before the outbox: `git worktree add /tmp/before 6e7f7ac` and `--tree /tmp/before
--tree .`.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from urllib.parse import urlencode

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from sqlalchemy import create_engine, text  # noqa: E402
from sqlalchemy.engine import make_url  # noqa: E402

from tests.support.handoffs import accept_button  # noqa: E402
from tests.support.harness import Steward, cli, http, process_config_of, sign, view_of  # noqa: E402
from tests.support.slack_fake import FakeSlack  # noqa: E402

SENDER, REVIEWER, CARD_CHANNEL = "U0ALICE", "U0BOB", "C0ENG"  # design -> eng in tests/process.toml
TICKS = os.sysconf("SC_CLK_TCK")


def pct(values, q):
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q / 100 * (len(ordered) - 1))))] if ordered else float("nan")


def cpu_seconds(root_pid: int) -> float:
    """User + system seconds of `root_pid` and its descendants now alive."""
    parents: dict[int, int] = {}
    times: dict[int, float] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        parents[int(entry.name)] = int(fields[1])
        times[int(entry.name)] = (int(fields[11]) + int(fields[12])) / TICKS
    total, todo = 0.0, [root_pid]
    while todo:
        pid = todo.pop()
        total += times.get(pid, 0.0)
        todo += [child for child, parent in parents.items() if parent == pid]
    return total


def served_from(tree: Path, database_url: str, api_url: str) -> Steward:
    """tests/support/harness.py's Steward, served from `tree` with that tree's process configuration."""
    return Steward(database_url, api_url, process_config_of(tree), tree=tree)


class Client(threading.Thread):
    def __init__(self, n: int, steward: Steward, fake: FakeSlack, stop_at: list[float], record: list):
        super().__init__(daemon=True)
        self.n, self.steward, self.fake, self.stop_at, self.record = n, steward, fake, stop_at, record
        self.errors: list[str] = []

    def timed(self, fn, *args, **kwargs):
        start = time.monotonic()
        r = fn(*args, **kwargs)
        self.record.append((start, time.monotonic() - start, r.status))
        return r

    def command(self, user: str, text_: str) -> str:
        trigger = f"load-{self.n}-{time.monotonic_ns()}"
        body = urlencode(
            {
                "command": "/handoff",
                "text": text_,
                "user_id": user,
                "user_name": user.lower(),
                "trigger_id": trigger,
                "team_id": "T0ACME",
                "channel_id": "C0WORK",
                "api_app_id": "A0STEWARD",
                "response_url": "https://hooks.slack.invalid/commands/1",
            }
        ).encode()
        url = self.steward.url + "/slack/events"
        headers = {"Content-Type": "application/x-www-form-urlencoded", **sign(body)}
        self.timed(http, url, data=body, method="POST", headers=headers)
        return trigger

    def modal(self, since: int, trigger: str | None = None, callback: str | None = None, handoff: str = "") -> dict:
        """The modal opened on our trigger, or the one of `callback` for our handoff (its private_metadata):
        32 clients open the same kinds of modal at once."""

        def ours(view: dict) -> bool:
            meta = view.get("private_metadata") or ""
            try:
                meta = json.loads(meta)
            except ValueError:
                return False
            return str(meta.get("id") if isinstance(meta, dict) else meta) == handoff

        def match(c):
            if c.method != "views.open":
                return False
            view = view_of(c)
            if trigger is not None:
                return c.args.get("trigger_id") == trigger
            return view.get("callback_id") == callback and ours(view)

        return view_of(self.fake.first(since, match, what=f"views.open {trigger or callback}"))

    def round(self, i: int) -> None:
        s = self.steward
        title = f"Load {self.n}-{i}"
        since = len(self.fake.calls)
        view = self.modal(since, trigger=self.command(SENDER, "eng"))
        values = {"to_team": "eng", "title": title}
        for block in view["blocks"]:
            if block.get("type") == "input" and block.get("block_id", "").startswith("criteria"):
                values[block["block_id"]] = [o["value"] for o in block["element"].get("options") or []]
        since = len(self.fake.calls)
        self.timed(s.submit, SENDER, view, values)
        card = self.fake.first(
            since,
            lambda c: c.method == "chat.postMessage" and c.status == 200 and title in json.dumps(c.args.get("blocks")),
            what="card",
        )
        handoff = accept_button(card.args.get("blocks"))
        self.command(SENDER, "list")
        if i % 2 == 0:
            since = len(self.fake.calls)
            self.timed(s.click, REVIEWER, "handoff_rework", handoff, channel=CARD_CHANNEL)
            modal = self.modal(since, callback="handoff_sendback_submit", handoff=handoff)
            since = len(self.fake.calls)
            self.timed(s.submit, REVIEWER, modal, {"reason": f"Missing error states ({title})"})
            self.fake.first(
                since,
                lambda c: c.method == "chat.postMessage" and f"Missing error states ({title})" in json.dumps(c.args),
                what="sent-back DM",
            )
            since = len(self.fake.calls)
            self.timed(s.click, SENDER, "handoff_resubmit", handoff, channel="D0ALICE")
            modal = self.modal(since, callback="handoff_resubmit_submit", handoff=handoff)
            criteria = next(b for b in modal["blocks"] if b.get("block_id", "").startswith("criteria"))
            values = {criteria["block_id"]: [o["value"] for o in criteria["element"].get("options") or []]}
            self.timed(s.submit, SENDER, modal, {**values, "notes": "Added them"})
        twice = [
            threading.Thread(target=self.timed, args=(s.click, REVIEWER, "handoff_accept", handoff), daemon=True)
            for _ in range(2)
        ]
        for t in twice:
            t.start()
        for t in twice:
            t.join()

    def run(self) -> None:
        i = 0
        while time.monotonic() < self.stop_at[0]:
            try:
                self.round(i)
            except Exception as exc:  # noqa: BLE001 - counted and shown, the drill goes on
                self.errors.append(f"{type(exc).__name__}: {exc}")
            i += 1


def database(kind: str, pg: str | None, tmp: Path, name: str) -> str:
    if kind == "sqlite":
        return f"sqlite:///{tmp}/{name}.db"
    url = make_url(pg.replace("postgresql://", "postgresql+psycopg://", 1))
    admin = create_engine(url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'DROP DATABASE IF EXISTS "{name}"'))
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    admin.dispose()
    return url.set(database=name).render_as_string(hide_password=False).replace("+psycopg", "")


def drill(tree: Path, url: str, clients: int, seconds: float, warmup: float) -> dict:
    migrated = cli("migrate", env={"DATABASE_URL": url}, cwd=tree)
    assert migrated.returncode == 0, migrated.stdout + migrated.stderr
    fake = FakeSlack().start()
    steward = served_from(tree, url, fake.url).start()
    clock = subprocess.Popen(  # as deployed (Procfile): the clock sweeps what the request threads left
        [sys.executable, "-m", "bot", "clock"],
        cwd=tree,
        env=steward.env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    record: list = []
    try:
        stop_at = [time.monotonic() + warmup + seconds]
        workers = [Client(n, steward, fake, stop_at, record) for n in range(clients)]
        begin = time.monotonic()
        for w in workers:
            w.start()
        time.sleep(warmup)
        cpu0, t0 = cpu_seconds(steward.proc.pid), time.monotonic()
        time.sleep(seconds)
        cpu1, t1 = cpu_seconds(steward.proc.pid), time.monotonic()
        for w in workers:
            w.join(timeout=60)
    finally:
        clock.terminate()
        clock.wait(timeout=30)
        steward.stop()
        fake.stop()
    log = steward.output()
    problems = [line for line in log.splitlines() if " ERROR " in line or "Traceback" in line or "failed" in line]
    measured = [(at, took, status) for at, took, status in record if t0 <= at < t1]
    acks = [took * 1000 for _, took, _ in measured]
    return {
        "requests": len(measured),
        "rate": len(measured) / (t1 - t0),
        "p50": pct(acks, 50),
        "p99": pct(acks, 99),
        "non200": sum(1 for *_, status in measured if status != 200),
        "cpu": cpu1 - cpu0,
        "cpu_per_request_ms": (cpu1 - cpu0) / max(len(measured), 1) * 1000,
        "elapsed": t1 - t0,
        "errors": [e for w in workers for e in w.errors][:5],
        "error_count": sum(len(w.errors) for w in workers),
        "began": begin,
        "log": str(steward.log_path),
        "problems": problems[:5],
        "problem_count": len(problems),
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--tree", action="append", type=Path, help="a checkout to serve (repeatable; default this one)")
    parser.add_argument("--clients", type=int, default=32)
    parser.add_argument("--seconds", type=float, default=60)
    parser.add_argument("--warmup", type=float, default=10)
    parser.add_argument("--pg", help="PostgreSQL admin URL: also run every tree on a fresh database there")
    parser.add_argument("--no-sqlite", action="store_true")
    args = parser.parse_args()
    trees = [t.resolve() for t in (args.tree or [ROOT])]
    kinds = ([] if args.no_sqlite else ["sqlite"]) + (["postgresql"] if args.pg else [])
    tmp = Path(tempfile.mkdtemp(prefix="steward-load-"))
    print(
        f"{args.clients} clients, {args.seconds:g} s measured after {args.warmup:g} s warm-up; gunicorn 2 workers x 8 "
        f"threads; {os.cpu_count()} cores, load {os.getloadavg()[0]:.2f} at start"
    )
    header = f"{'tree':<46} {'db':<10} {'req/s':>7} {'ack p50':>8} {'ack p99':>8} {'CPU s':>6} {'CPU/req':>8} {'non-200':>7} {'errors':>6}"
    print(header)
    results = {}
    for kind in kinds:
        for i, tree in enumerate(trees):
            commit = subprocess.run(["git", "log", "-1", "--format=%h"], cwd=tree, capture_output=True, text=True)
            url = database(kind, args.pg, tmp, f"steward_load_{i}")
            r = drill(tree, url, args.clients, args.seconds, args.warmup)
            results[(kind, i)] = r
            name = f"{tree.name} ({commit.stdout.strip()})"
            print(
                f"{name:<46} {kind:<10} {r['rate']:7.1f} {r['p50']:7.0f}ms {r['p99']:7.0f}ms {r['cpu']:6.1f} "
                f"{r['cpu_per_request_ms']:6.1f}ms {r['non200']:7d} {r['error_count']:6d}",
                flush=True,
            )
            for e in r["errors"]:
                print(f"    client: {e}")
            if r["problem_count"]:
                print(f"    server log {r['log']}: {r['problem_count']} lines of errors, e.g.")
                for line in r["problems"]:
                    print(f"      {line[:200]}")
        if len(trees) == 2:
            a, b = results[(kind, 0)], results[(kind, 1)]
            print(f"{kind}: second tree's throughput is {b['rate'] / a['rate']:.0%} of the first's")


if __name__ == "__main__":
    main()
