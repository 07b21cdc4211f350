"""Handoffs written with the moment of every step, and digests to render, for the digest's tests."""

from __future__ import annotations

from collections import Counter
from datetime import datetime, timedelta

from bot.domain import digest, figures, handoffs, metrics
from bot.domain.core import schedule
from bot.domain.fasttrack import Budget
from bot.domain.handoffs import Draft
from bot.domain.review import Status
from storage.models import Initiative


def to_sync(fake) -> list:
    """The digests' first messages posted to the sync channel (their details are thread replies)."""
    return [c for c in fake.of("chat.postMessage") if c.args["channel"] == "C0SYNC" and not c.args.get("thread_ts")]


def seed_october(db, cfg) -> None:
    start = datetime(2026, 10, 6, 8)
    for i in range(3):
        h = handoffs.create(
            db,
            cfg,
            "U0ALICE",
            Draft("design", "eng", f"Spec {i}", criteria_met=list(cfg.boundary("design", "eng").criteria)),
            now=start,
        )
        handoffs.accept(db, cfg, h.id, "U0BOB", now=start + timedelta(hours=i + 1))


H = timedelta(hours=1)


ALL = ["Specification with acceptance criteria", "Wireframes", "Glossary of terms"]


QA = ["Release notes", "Test plan"]


def hand(
    db, cfg, start: datetime, src="design", dst="eng", sender="U0ALICE", reviewer="U0BOB", steps=(), title="Work"
) -> int:
    """A handoff created at `start`, then `steps`: ("accept", hours) or (kind, hours, reason) or
    ("resubmit", hours), each hours after the previous step."""
    criteria = ALL if src == "design" else QA
    h = handoffs.create(db, cfg, sender, Draft(src, dst, title, criteria_met=criteria), now=start)
    at = start
    for step in steps:
        at += step[1] * H
        if step[0] == "accept":
            handoffs.accept(db, cfg, h.id, reviewer, now=at)
        elif step[0] == "resubmit":
            handoffs.resubmit(db, cfg, h.id, sender, criteria, None, None, now=at)
        else:
            handoffs.send_back(db, cfg, h.id, reviewer, step[0], step[2], now=at)
    return h.id


def month(db, cfg, period) -> metrics.Month:
    start, end = schedule.bounds(period, cfg.organization.tz)
    return metrics.month(db, period, start, end, [t.id for t in cfg.teams])


def a_digest(text: str, active: bool = True):
    """A digest whose every piece of text is `text`: team names, reasons, initiatives, signals."""

    def team(t: str) -> metrics.TeamMonth:
        row = metrics.TeamMonth(t, sent=3 * active, received=2 * active)
        row.as_sender = metrics.Side(4 * active, 1 * active, {0.5: 3600.0, 0.85: 7200.0} if active else {})
        row.reasons = Counter({("rework_requested", text.casefold()): 2}) if active else Counter()
        row.open_overdue = 2  # overdue at the month's end even in a month with no activity
        return row

    def month(period: str) -> metrics.Month:
        teams = {t: team(t) for t in ("design", "eng", "qa")}
        b = metrics.BoundaryMonth(
            "design",
            "eng",
            created=3 * active,
            side=metrics.Side(2 * active, 1 * active, {0.5: 200000.0} if active else {}),
        )
        b.responses = metrics.Responses(5 * active, 4 * active, 3.25 if active else None)
        b.escalations, b.manual_escalations, b.snoozes = (
            Counter({1: 3 * active, 2: 1 * active, 3: 1 * active}),
            1 * active,
            2 * active,
        )
        total = metrics.BoundaryMonth(
            "*", "*", created=3 * active, side=b.side, sent_back=Counter({"rework_requested": 2 * active})
        )
        return metrics.Month(period, teams, {("design", "eng"): b}, total, {text.casefold(): text})

    months = [month(p) for p in ("2026-05", "2026-06", "2026-07", "2026-08", "2026-09", "2026-10")]
    initiative = Initiative(
        team="design",
        period="2026-10",
        text=text[:300],
        metric="cycle_time",
        owner="U0AMY",
        set_by="U0ALICE",
        set_at=datetime(2026, 10, 28),
        baseline_period="2026-09",
        baseline=3600.0,
    )
    teams = [
        digest.TeamView(
            t, text, months[-1].teams[t], months[-2].teams[t], [text] * 3, initiative if t != "qa" else None, 1800.0
        )
        for t in ("design", "eng", "qa")
    ]
    boundaries = [
        digest.BoundaryView(
            text,
            text,
            "U0STEW",
            months[-1].boundaries[("design", "eng")],
            months[-2].boundaries[("design", "eng")],
            [text] * 3,
            48,
        )
    ]
    for tv in teams:
        tv.budget = Budget(tv.id, "2026-10", tv.now.sent, 4 * active, 10)
        tv.now.fasttracks_approved, tv.now.fasttracks_denied, tv.now.fasttracks_waiting = 4 * active, 2 * active, 1
    review = [
        digest.Exception_(text, 4, text, True, text, None),
        digest.Exception_(text, 3, text, True, None, "U0STEW"),
        digest.Exception_(text, 1, text, False, None, None),
    ] * (5 if active else 0)
    signals = [
        digest.Signal(
            text, ["U0STEW"], role=text, links=[(7, text, "https://acme.slack.com/archives/C0ENG/p1"), (8, text, None)]
        ),
        digest.Signal(text, channel="C0ENG", role=text),
        digest.Signal(text),
    ]
    changes = [digest.Signal(text, ["U0AMY"], role=text, kind="change", good=g) for g in (True, False)]
    satisfaction = figures.Figure(
        text, "score", 3.5 * active or None, 3.0, False, 12 * active, 10, noun="answer", before_label=text
    )
    teams[0].satisfaction = satisfaction
    figs = [
        figures.Figure(
            text, "duration", 3600.0 * active or None, 7200.0, True, 6 * active, 6, before_label="Sep 2026", detail=text
        ),
        figures.Figure(text, "rate", 0.5, 0.25, True, 2, 9, before_label="Sep 2026"),
        satisfaction,
    ]

    return digest.Digest(
        "2026-10",
        "October 2026",
        text,
        "C0SYNC",
        months,
        teams,
        boundaries,
        signals,
        {},
        review,
        matrix=Status("2026-Q4", [text] * 20, [text] * 20 if active else []),
        figures=figs,
        highlights=(signals + changes)[:5],
        changes=changes,
        definitions="https://example.org/steward#the-monthly-digest" if active else "",
    )
