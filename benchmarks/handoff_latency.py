"""Time from a signed `/handoff eng` to the modal reaching the Web API, and the ack latency, for Steward
as served (`python -m bot serve`) and for a bare Bolt app doing the same Slack call under the same
gunicorn settings, requests alternating between the two. Prints p50/p99 and the ratios.

    python benchmarks/handoff_latency.py [--requests 300]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from urllib.parse import urlencode

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from storage.db import Database  # noqa: E402
from storage.migrate import upgrade  # noqa: E402
from tests.support.harness import SECRET, TOKEN, Steward, free_port, http, sign  # noqa: E402
from tests.support.slack_fake import FakeSlack  # noqa: E402


def pct(values, q):
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q / 100 * (len(ordered) - 1))))]


def start_bare(api_url: str):
    port = free_port()
    env = {
        **os.environ,
        "SLACK_BOT_TOKEN": TOKEN,
        "SLACK_SIGNING_SECRET": SECRET,
        "SLACK_API_URL": api_url,
        "PYTHONPATH": str(ROOT),
    }
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "gunicorn",
            "benchmarks.bare_app:app",
            "-k",
            "gthread",
            "--threads",
            "8",
            "-w",
            "2",
            "-b",
            f"127.0.0.1:{port}",
            "--log-level",
            "warning",
        ],
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}"
    for _ in range(300):
        try:
            http(url + "/slack/events", data=b"", method="POST", timeout=1)
            return proc, url
        except OSError:
            time.sleep(0.1)
    raise RuntimeError("bare app did not start")


def one(url: str, fake: FakeSlack, n: int) -> tuple[float, float]:
    trigger = f"bench-{n}"
    body = urlencode(
        {
            "command": "/handoff",
            "text": "eng",
            "user_id": "U0ALICE",
            "trigger_id": trigger,
            "team_id": "T0ACME",
            "channel_id": "C0WORK",
        }
    ).encode()
    headers = {"Content-Type": "application/x-www-form-urlencoded", **sign(body)}
    start = time.monotonic()
    r = http(url + "/slack/events", data=body, headers=headers, method="POST")
    acked = time.monotonic()
    assert r.status == 200, r.status
    deadline = start + 5
    while time.monotonic() < deadline:
        for call in reversed(fake.calls[-20:]):
            if call.method == "views.open" and call.args.get("trigger_id") == trigger:
                return (acked - start) * 1000, (call.at - start) * 1000
        time.sleep(0.0005)
    raise RuntimeError("no views.open")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--requests", type=int, default=300)
    args = parser.parse_args()
    fake = FakeSlack().start()
    tmp = tempfile.mkdtemp()
    db_url = f"sqlite:///{tmp}/bench.db"
    upgrade(Database(db_url).engine)
    steward = Steward(db_url, fake.url, ROOT / "tests" / "data" / "process.toml").start()
    bare, bare_url = start_bare(fake.url)
    results = {"steward": ([], []), "bare bolt": ([], [])}
    try:
        for i in range(20):  # warm up both
            one(steward.url, fake, -i - 1)
            one(bare_url, fake, -i - 100)
        for i in range(args.requests):
            for name, url in (
                (("steward", steward.url), ("bare bolt", bare_url))
                if i % 2 == 0
                else (("bare bolt", bare_url), ("steward", steward.url))
            ):
                ack, modal = one(url, fake, i * 2 + (name == "steward"))
                results[name][0].append(ack)
                results[name][1].append(modal)
            if len(fake.calls) > 1000:
                fake.reset()
    finally:
        steward.stop()
        bare.terminate()
        bare.wait()
        fake.stop()
    print(
        f"{args.requests} signed /handoff requests each, alternating, gunicorn gthread 2 workers x 8 threads, {os.cpu_count()} cores"
    )
    print(f"{'':<10} {'ack p50':>9} {'ack p99':>9} {'modal p50':>10} {'modal p99':>10}  (ms)")
    for name, (acks, modals) in results.items():
        print(f"{name:<10} {pct(acks, 50):9.2f} {pct(acks, 99):9.2f} {pct(modals, 50):10.2f} {pct(modals, 99):10.2f}")
    s, b = results["steward"], results["bare bolt"]
    print(
        f"ratio steward/bare: ack p50 {pct(s[0], 50) / pct(b[0], 50):.2f}, modal p50 {pct(s[1], 50) / pct(b[1], 50):.2f}, "
        f"modal p99 {pct(s[1], 99) / pct(b[1], 99):.2f}"
    )
    print(f"mean modal: steward {statistics.mean(s[1]):.2f} ms, bare {statistics.mean(b[1]):.2f} ms")


if __name__ == "__main__":
    main()
