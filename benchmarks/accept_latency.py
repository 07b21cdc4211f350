"""Time from a signed Accept click on a handoff card to (a) the card's `chat.update` and (b) the sender's
DM (`chat.postMessage`) arriving at the fake Web API, and the click's HTTP ack, for one or more Steward
trees served as tests/support/harness.py serves them (`python -m bot serve`: gunicorn, 2 workers × 8 threads).

    python benchmarks/accept_latency.py [--tree PATH ...] [--clicks 200] [--warmup 10] [--db-dir DIR]

Each `--tree` (default: this one) is served from its own directory with its own process config
(tests/data/process.toml) and its own fresh SQLite database, created by that tree's `python -m bot migrate`;
the driver (signing, the fake Slack) is this tree's, so an older tree is measured the same way. With
several trees the clicks alternate between them (each against its own fake Web API), so a busy machine
weighs on all of them alike.

Every click is on a fresh handoff, sent beforehand through signed requests (`/handoff eng`, the modal
submitted with every criterion met); its card is posted (so the update has a ts) and the sender's
receipt is in before the click. The handoff's id and the card's ts come from the card as posted.
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

from tests.support.handoffs import accept_button
from tests.support.harness import Steward, blocks_text, cli, http, process_config_of, sign, view_of
from tests.support.slack_fake import FakeSlack

SENDER, REVIEWER = "U0ALICE", "U0BOB"  # design → eng (tests/data/process.toml); U0BOB reviews for eng
CARD_CHANNEL = "C0ENG"


def pct(values, q):
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q / 100 * (len(ordered) - 1))))]


def served_from(tree: Path, database_url: str, api_url: str) -> Steward:
    """tests/support/harness.py's Steward, served from `tree` with that tree's process configuration."""
    return Steward(database_url, api_url, process_config_of(tree), tree=tree)


def new_handoff(steward: Steward, fake: FakeSlack, n: int) -> tuple[str, str]:
    """Send a handoff through signed requests; its id and the card's ts once the card and receipt are in."""
    trigger = f"accept-bench-{n}-{time.monotonic_ns()}"
    body = urlencode(
        {
            "command": "/handoff",
            "text": "eng",
            "user_id": SENDER,
            "user_name": "alice",
            "trigger_id": trigger,
            "team_id": "T0ACME",
            "channel_id": "C0WORK",
            "api_app_id": "A0STEWARD",
        }
    ).encode()
    since = len(fake.calls)
    r = http(
        steward.url + "/slack/events",
        data=body,
        method="POST",
        headers={"Content-Type": "application/x-www-form-urlencoded", **sign(body)},
    )
    assert r.status == 200, (r.status, r.raw)
    view = view_of(fake.first(since, lambda c: c.method == "views.open" and c.args.get("trigger_id") == trigger))
    values = {"to_team": "eng", "title": f"Bench handoff {n}"}
    for block in view["blocks"]:  # every criterion met, whatever the option values are in this tree
        if block.get("type") == "input" and block["block_id"].startswith("criteria"):
            values[block["block_id"]] = [o["value"] for o in block["element"].get("options") or []]
    since = len(fake.calls)
    r = steward.submit(SENDER, view, values)
    assert r.status == 200 and r.raw in (b"", b"{}"), (r.status, r.raw)
    card = fake.first(
        since,
        lambda c: c.method == "chat.postMessage" and c.status == 200 and accept_button(c.args.get("blocks")),
    )
    fake.first(since, lambda c: c.method == "chat.postMessage" and c.args.get("channel") in (SENDER, "D" + SENDER[1:]))
    fake.settle(quiet=0.05)
    handoff_id = accept_button(card.args.get("blocks"))
    ts = next(m["ts"] for m in reversed(fake.messages(CARD_CHANNEL)) if accept_button(m["blocks"]) == handoff_id)
    return handoff_id, ts


def click(steward: Steward, fake: FakeSlack, handoff_id: str, ts: str) -> tuple[float, float, float]:
    since = len(fake.calls)
    start = time.monotonic()
    r = steward.click(REVIEWER, "handoff_accept", handoff_id, channel=CARD_CHANNEL, message_ts=ts)
    acked = time.monotonic()
    assert r.status == 200, (r.status, r.raw)
    update = fake.first(since, lambda c: c.method == "chat.update" and c.args.get("ts") == ts)
    assert update.status == 200 and "Accepted" in blocks_text(update.args), blocks_text(update.args)[:200]
    dm = fake.first(
        since,
        lambda c: (
            c.method == "chat.postMessage"
            and c.args.get("channel") in (SENDER, "D" + SENDER[1:])
            and f"#{handoff_id}" in blocks_text(c.args)
        ),
    )
    assert dm.status == 200
    return (acked - start) * 1000, (update.at - start) * 1000, (dm.at - start) * 1000


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument(
        "--tree", action="append", type=Path, help="a Steward checkout to serve (repeatable; default: this one)"
    )
    parser.add_argument("--clicks", type=int, default=200)
    parser.add_argument("--warmup", type=int, default=10)
    parser.add_argument("--db-dir", type=Path, help="where the SQLite files go (default: a new temp dir)")
    args = parser.parse_args()
    trees = [t.resolve() for t in (args.tree or [ROOT])]
    tmp = args.db_dir or Path(tempfile.mkdtemp())

    runs = []
    try:
        for i, tree in enumerate(trees):
            commit = subprocess.run(
                ["git", "log", "-1", "--format=%h %s"], cwd=tree, capture_output=True, text=True
            ).stdout.strip()
            url = f"sqlite:///{tmp}/accept-{i}.db"
            migrated = cli("migrate", env={"DATABASE_URL": url}, cwd=tree)
            assert migrated.returncode == 0, migrated.stdout + migrated.stderr
            fake = FakeSlack().start()
            runs.append(
                {
                    "tree": tree,
                    "commit": commit,
                    "fake": fake,
                    "steward": served_from(tree, url, fake.url).start(),
                    "ack": [],
                    "update": [],
                    "dm": [],
                }
            )
        for n in range(-args.warmup, args.clicks):
            for run in runs if n % 2 == 0 else runs[::-1]:
                handoff_id, ts = new_handoff(run["steward"], run["fake"], n)
                ack, update, dm = click(run["steward"], run["fake"], handoff_id, ts)
                if n >= 0:
                    run["ack"].append(ack)
                    run["update"].append(update)
                    run["dm"].append(dm)
                run["fake"].settle(quiet=0.05)
                if len(run["fake"].calls) > 2000:
                    run["fake"].reset(keep_messages=True)
    finally:
        for run in runs:
            run["steward"].stop()
            run["fake"].stop()

    print(
        f"{args.clicks} signed Accept clicks per tree (after {args.warmup} warm-up), each on a fresh handoff whose card was posted; "
        f"gunicorn gthread 2 workers x 8 threads, SQLite, {os.cpu_count()} cores, load {os.getloadavg()[0]:.2f}"
    )
    print(
        f"{'tree':<44} {'ack p50':>8} {'ack p99':>8} {'update p50':>10} {'update p99':>10} {'DM p50':>8} {'DM p99':>8}  (ms)"
    )
    for run in runs:
        name = f"{run['tree']} ({run['commit'][:7]})"
        print(
            f"{name:<44} {pct(run['ack'], 50):8.2f} {pct(run['ack'], 99):8.2f} {pct(run['update'], 50):10.2f} "
            f"{pct(run['update'], 99):10.2f} {pct(run['dm'], 50):8.2f} {pct(run['dm'], 99):8.2f}"
        )
        print(
            f"{'':<44} mean update {statistics.mean(run['update']):.2f}, mean DM {statistics.mean(run['dm']):.2f}, "
            f"max update {max(run['update']):.2f}, max DM {max(run['dm']):.2f}"
        )
    if len(runs) == 2:
        a, b = runs
        print(
            f"ratio {a['commit'][:7]}/{b['commit'][:7]}: update p50 {pct(a['update'], 50) / pct(b['update'], 50):.2f}, "
            f"DM p50 {pct(a['dm'], 50) / pct(b['dm'], 50):.2f}, update p99 {pct(a['update'], 99) / pct(b['update'], 99):.2f}, "
            f"DM p99 {pct(a['dm'], 99) / pct(b['dm'], 99):.2f}"
        )


if __name__ == "__main__":
    main()
