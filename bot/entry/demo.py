"""`python -m bot demo`: a generated organisation, six months of handoffs, and its latest digest.

Fast-track requests and their decisions are made the same way.

No Slack and no configuration needed: everything goes into a throwaway directory (a process.toml, a
SQLite database, the chart and the Block Kit JSON). The history is made through the same domain
functions the Slack handlers call, so the digest shown is exactly what Steward would post.
"""

from __future__ import annotations

import json
import random
import tempfile
from datetime import datetime, timedelta
from pathlib import Path

from bot.domain import digest, fasttrack, handoffs, initiatives, pulse
from bot.domain.core import schedule
from bot.domain.core.process import load_process
from bot.domain.core.timeutil import utcnow
from bot.domain.handoffs import Draft
from bot.entry import bootstrap
from handlers import digest as slack_digest
from storage.db import Database
from storage.migrate import upgrade
from storage.models import Headcount

MONTHS = 6
PULSE_SECRET = "demo-only-pulse-secret-not-for-production"  # the demo's throwaway database; never reuse it
# team → (average score in the first month, change a month, chance of "too rigid", of "too ambiguous")
MOOD = {
    "product": (4.1, 0.0, 0.1, 0.1),
    "design": (3.9, -0.05, 0.1, 0.2),
    "eng": (3.9, -0.2, 0.2, 0.2),
    "data": (4.2, 0.0, 0.1, 0.1),
    "qa": (3.4, 0.0, 0.3, 0.1),
    "ops": (3.2, -0.1, 0.5, 0.05),
}
COMMENTS = [
    "Handoff criteria are clear now, thanks",
    "Too many sign-offs for small changes",
    "I never know who decides on exceptions",
    "The QA gate slows every hotfix",
]
PROCESS = (Path(__file__).parent / "demo_process.toml").read_text()  # the generated organisation

# boundary → (handoffs a month, chance of a send-back per round, review hours, monthly drift of review hours)
PROFILE = {
    ("product", "design"): (14, 0.20, 20, 0),
    ("design", "eng"): (22, 0.22, 8, 14),  # reviews slow down every month: a signal
    ("product", "eng"): (10, 0.18, 30, 0),
    ("data", "eng"): (6, 0.15, 26, 0),
    ("eng", "qa"): (26, 0.15, 10, 0),
    ("qa", "ops"): (12, 0.50, 14, 0),  # far more send-backs than anyone: a signal
}
# receiving team → reasons it gives, by kind
REASONS = {
    "design": {
        "rework_requested": ["Success metric missing", "Problem statement too vague"],
        "clarification_requested": ["Which users is this for?"],
    },
    "eng": {
        "rework_requested": [
            "Acceptance criteria incomplete",
            "Wireframes missing for the mobile layout",
            "Sample data missing",
        ],
        "clarification_requested": ["Which API version is meant?", "Unclear scope of the change"],
    },
    "qa": {
        "rework_requested": ["Test plan does not cover the migration", "Release notes missing"],
        "clarification_requested": ["Which environments are in scope?"],
    },
    "ops": {
        "rework_requested": ["Rollback plan missing", "Runbook out of date"],
        "clarification_requested": ["Who is on call for the release?"],
    },
}
# (months back, team, initiative, metric, owner)
INITIATIVES = [
    (3, "design", "Walk Engineering through every spec before handing it off", "cycle_time", "U0DANA"),
    (1, "design", "Pair a designer with the reviewing engineer for the first day", "cycle_time", "U0DEV"),
    (3, "qa", "Runbook template with a rollback section, checked before handoff", "failure_rate_sent", "U0QUIN"),
    (2, "eng", "Release notes drafted in the pull request, not after", "failure_rate_sent", "U0ERIN"),
    (1, "product", "Agree the success metric in the kickoff, not in the handoff", "failure_rate_sent", "U0PAT"),
]


# (months back, team, requester, element, reason, approve?) — Engineering skips QA sign-off again and again
FASTTRACKS = [
    (3, "eng", "U0ELI", "QA sign-off", "Customer escalation", True),
    (2, "ops", "U0OLA", "Change advisory board", "Security fix", True),
    (2, "eng", "U0EMMA", "QA sign-off", "Regulatory deadline", False),
    (1, "eng", "U0ELI", "QA sign-off", "Customer escalation", True),
    (1, "eng", "U0EZRA", "QA sign-off", "Customer escalation", True),
    (1, "eng", "U0EVAN", "QA sign-off", "Security fix", True),
    (1, "product", "U0PIA", "Design review", "Customer escalation", False),
    (1, "ops", "U0OMAR", "Change advisory board", "Security fix", True),
    (0, "eng", "U0ENZO", "QA sign-off", "Customer escalation", None),  # still waiting
]


def fasttracks(db: Database, cfg, now: datetime, current: str) -> None:
    for back, team, requester, element, reason, approve in FASTTRACKS:
        start, end = schedule.bounds(schedule.shift(current, -back), cfg.organization.tz)
        at = min(start + timedelta(days=20), now - timedelta(days=1))
        row, _, route = fasttrack.request(
            db,
            cfg,
            requester,
            fasttrack.Draft(
                team=team,
                element=element,
                reason=reason,
                what=f"{element} for release {back}.{len(requester)}",
                justification="The customer cannot wait for the next release window.",
            ),
            now=at,
        )
        if approve is not None:
            decider = route.deciders[0]
            if approve:
                fasttrack.decide(db, cfg, row.id, decider, approve=True, now=at + timedelta(hours=3))
            else:
                fasttrack.decide(
                    db,
                    cfg,
                    row.id,
                    decider,
                    approve=False,
                    reason="Use the standard path: it is not urgent enough",
                    now=at + timedelta(hours=3),
                )


def generate(db: Database, cfg, now: datetime, seed: int = 7) -> int:
    """Six months of handoffs before `now`'s month, plus the current month so far. Returns how many."""
    rng = random.Random(seed)
    tz = cfg.organization.tz
    current = schedule.period_of(now, tz)
    count = 0
    for back in range(MONTHS, -1, -1):
        period = schedule.shift(current, -back)
        start, end = schedule.bounds(period, tz)
        end = min(end, now - timedelta(days=2))
        month_index = MONTHS - back
        for (src, dst), (per_month, send_back, review_hours, drift) in PROFILE.items():
            boundary = cfg.boundary(src, dst)
            sender = cfg.team(src).members
            receiver = cfg.team(dst).members
            for _ in range(rng.randint(per_month - 3, per_month + 3)):
                at = start + timedelta(seconds=rng.uniform(0, max((end - start).total_seconds() - 86400 * 5, 3600)))
                if at >= end:
                    continue
                h = handoffs.create(
                    db,
                    cfg,
                    rng.choice(sender),
                    Draft(
                        src, dst, f"{cfg.team(src).name} work item {count + 1}", criteria_met=list(boundary.criteria)
                    ),
                    now=at,
                )
                count += 1
                for _round in range(4):
                    at += timedelta(hours=rng.expovariate(1 / (review_hours + drift * month_index)) + 1)
                    if at >= now:
                        break
                    if rng.random() < send_back and _round < 3:
                        kind = rng.choice(["rework_requested", "rework_requested", "clarification_requested"])
                        handoffs.send_back(
                            db, cfg, h.id, rng.choice(receiver), kind, rng.choice(REASONS[dst][kind]), now=at
                        )
                        at += timedelta(hours=rng.expovariate(1 / 12) + 1)
                        if at >= now:
                            break
                        handoffs.resubmit(db, cfg, h.id, h.sender, list(boundary.criteria), None, None, now=at)
                    else:
                        handoffs.accept(db, cfg, h.id, rng.choice(receiver), now=at)
                        break
        if back >= 1:
            with db.write() as session:
                for team in cfg.teams:
                    hired = 2 if team.id == "eng" and back <= 2 else 0  # Engineering grew two months ago
                    session.add(
                        Headcount(
                            period=period,
                            team=team.id,
                            members=len(team.members) - (0 if team.id != "eng" else 2 - hired),
                        )
                    )
            for when, team, text, metric, owner in INITIATIVES:
                if when == back:
                    initiatives.share(db, cfg, team, period, owner, text, metric, owner, now=end - timedelta(days=3))
    fasttracks(db, cfg, now, current)
    pulses(db, cfg, now, rng)
    return count


def pulses(db: Database, cfg, now: datetime, rng: random.Random) -> int:
    """Every week of the demo's months: the survey DM to everyone, three in four answering (through the
    same domain functions as the buttons), a comment now and then. Returns the answers recorded."""
    sealer, tz = pulse.Sealer(PULSE_SECRET), cfg.organization.tz
    start, _ = schedule.bounds(schedule.shift(schedule.period_of(now, tz), -MONTHS), tz)
    monday = start - timedelta(days=start.weekday()) + timedelta(hours=12)
    answers, week_no = 0, 0
    while monday < now - timedelta(days=1):
        pulse.send_due(db, cfg, monday, {})
        week = pulse.week_id(monday.date())
        for user, teams in pulse.members(cfg).items():
            if rng.random() > 0.75:
                continue
            base, drift, rigid, vague = MOOD[teams[0]]
            score = min(5, max(1, round(rng.gauss(base + drift * week_no / 4.3, 0.8))))
            roll = rng.random()
            feeling = "rigid" if roll < rigid else ("ambiguous" if roll < rigid + vague else "right")
            at = monday + timedelta(hours=rng.uniform(1, 60))
            pulse.answer(db, sealer, user, week, at, score=score, feeling=feeling)
            if rng.random() < 0.04:
                pulse.comment(db, sealer, user, week, rng.choice(COMMENTS), at)
            answers += 1
        monday += timedelta(days=7)
        week_no += 1
    return answers


def _python() -> str:
    """The interpreter running the demo, as one types it from here: `.venv/bin/python` after `make demo`
    (no activated virtual environment needed), else its full path."""
    import os
    import sys

    relative = os.path.relpath(sys.executable) if sys.executable else "python3"
    return relative if not relative.startswith("..") and " " not in relative else sys.executable


def run(directory: str | None = None) -> int:
    bootstrap.wire()
    try:
        out = Path(directory) if directory else Path(tempfile.mkdtemp(prefix="steward-demo-"))
        out.mkdir(parents=True, exist_ok=True)
        (out / "process.toml").write_text(PROCESS, encoding="utf-8")
    except OSError as exc:  # not a directory, a file in the way, no permission, a read-only disk
        where = f"--dir: cannot write the demo to {directory}" if directory else "cannot make a temporary directory"
        why = "a file is there, not a directory" if isinstance(exc, FileExistsError) else exc.strerror or str(exc)
        raise bootstrap.Fail(f"{where}: {why}") from None
    cfg = load_process(out / "process.toml")
    path = out / "steward.db"
    if path.exists():
        path.unlink()
    db = Database(f"sqlite:///{path}")
    upgrade(db.engine)
    now = utcnow()
    print(
        f"Generating {cfg.organization.name}: {len(cfg.teams)} teams, {len(cfg.boundaries)} boundaries, {MONTHS} months of handoffs…"
    )
    count = generate(db, cfg, now)
    period = schedule.shift(schedule.period_of(now, cfg.organization.tz), -1)
    d = digest.compose(db, cfg, period, sealer=pulse.Sealer(PULSE_SECRET))
    parts = slack_digest.messages(d)
    print(f"{count} handoffs written. The digest Steward would post for {d.label}:\n")
    print(slack_digest.preview(parts))
    names = []
    for i, part in enumerate(parts, 1):  # one file a message, as Block Kit Builder takes it: {"blocks": [...]}
        names.append(f"digest-{period}-{i}.json")
        (out / names[-1]).write_text(
            json.dumps({"blocks": part["blocks"]}, indent=2, ensure_ascii=False), encoding="utf-8"
        )
    (out / f"trend-{period}.png").write_bytes(digest.chart(d))
    db.dispose()
    messages = f"  {names[0]:<24} the digest's first message" + "".join(
        f"\n  {n:<24} thread reply {i}" for i, n in enumerate(names[1:], 1)
    )
    print(f"""Written to {out}:
  process.toml             the generated organisation's process configuration
  steward.db               its SQLite database
{messages}
  {"":<24} (Block Kit, a message a file: paste one whole into https://app.slack.com/block-kit-builder)
  {f"trend-{period}.png":<24} the trend chart, uploaded in the digest's thread

Explore it:  DATABASE_URL=sqlite:///{path} PROCESS_CONFIG={out}/process.toml PULSE_SECRET={PULSE_SECRET} {_python()} -m bot digest --month {schedule.shift(period, -1)}""")
    return 0
