"""The pulse's anonymity as a property, at the rules' level: random organisations (overlapping teams, pauses
and stops, people joining and leaving teams, `pulse.teams` changing between months) run week by week through
the rules (send, answer, comment, pause, resume), and every month is read as the Home, the digest, its preview
(`digest --month`) and `--again` read it, under the configuration of the moment and under others later. Checked
on every example:

- the month reads the same whatever the configuration becomes (frozen at close);
- no combination (sums and differences) of the figures shown, of the scores' counts, of the pause counts shown,
  isolates fewer than `min_group` people (months' answers are disjoint, so a combination across months isolates
  fewer than `min_group` only if one within a month does: checking each month covers every month);
- every count is over everyone asked, paused or stopped included, against an independent count;
- without PULSE_SECRET no row links a score, a feeling or a comment to fewer than `min_group` people: a
  comment is stored once, under the organisation or a team of at least `min_group` people asked that week;
  an answer row holds no user and its value is sealed (another secret cannot read it).

A fixed seed; PULSE_PROPERTY_EXAMPLES sets how many organisations (default 12, well under a minute on SQLite),
PULSE_PROPERTY_SEED another seed."""

from __future__ import annotations

import os
import random
from datetime import datetime, timedelta

from sqlmodel import select

from bot.domain import pulse
from bot.domain.core.process import parse_process
from storage.models import PulseAnswer, PulseComment
from tests.support.anonymity import isolations

EXAMPLES = int(os.environ.get("PULSE_PROPERTY_EXAMPLES", "12"))
SEED = int(os.environ.get("PULSE_PROPERTY_SEED", "20261207"))
SECRET = "property-test-secret-0123456789ab"
FIRST_MONDAY = datetime(2027, 1, 4)  # 2027-W01: eight weeks, four closing in January and four in February
MONTHS = ("2027-01", "2027-02")


def build(members: dict[str, set[str]], pulse_teams: list[str], k: int):
    return parse_process(
        {
            "organization": {"name": "Acme", "timezone": "UTC", "digest_channel": "C0SYNC"},
            "teams": [
                {"id": t, "name": t.upper(), "channel": f"C0{t.upper()}", "members": sorted(m)}
                for t, m in members.items()
            ],
            "pulse": {"min_group": k, "teams": pulse_teams, "remind_after_days": 0},
        }
    )


def test_nothing_ever_shown_or_stored_isolates_fewer_than_min_group(db):
    rng = random.Random(SEED)
    for example in range(EXAMPLES):
        if example:
            _clean(db)
        one_organisation(db, rng, example)


def _clean(db):
    from tests.conftest import clean

    clean(db)


def one_organisation(db, rng: random.Random, example: int) -> None:
    k = rng.randint(3, 6)
    people = [f"U0P{i:02d}" for i in range(rng.randint(k + 2, 26))]
    team_ids = [f"t{i}" for i in range(rng.randint(2, 5))]
    members = {t: set(rng.sample(people, rng.randint(1, min(len(people), 12)))) for t in team_ids}

    def some_teams() -> list[str]:
        return sorted(rng.sample(team_ids, rng.randint(1, len(team_ids))))

    pulse_teams = some_teams()
    sealer = pulse.Sealer(SECRET)
    paused_until: dict[str, datetime | None] = {}  # our own record of pauses (None: stopped)
    truth: dict[str, dict] = {m: {"asked": {}, "answered": set(), "scored": set(), "opted": set()} for m in MONTHS}
    asked_in: dict[tuple[str, str], int] = {}  # (week, team) → people asked
    first_read: dict[str, pulse.Satisfaction | None] = {}
    context = f"example {example} (seed {SEED})"

    for n in range(8):
        monday = FIRST_MONDAY + timedelta(days=7 * n)
        week = pulse.week_id(monday.date())
        month = MONTHS[n // 4]
        if n == 4:  # between months: the configuration changes
            pulse_teams = some_teams()
        for _ in range(rng.randint(0, 3)):  # people join and leave teams
            t, u = rng.choice(team_ids), rng.choice(people)
            (members[t].discard if u in members[t] else members[t].add)(u)
        cfg = build(members, pulse_teams, k)
        before = monday + timedelta(hours=9)
        for u in rng.sample(people, rng.randint(0, 3)):  # pauses, stops and resumptions before the survey
            choice = rng.choice(["pause", "stop", "resume"])
            if choice == "pause":
                days = rng.randint(3, 30)
                pulse.pause(db, u, None, before, days=days)
                paused_until[u] = before + timedelta(days=days)
            elif choice == "stop":
                pulse.stop(db, u, None, before)
                paused_until[u] = None
            else:
                pulse.resume(db, u, None, before)
                paused_until.pop(u, None)
        sent_at = monday + timedelta(hours=11)
        pulse.send_due(db, cfg, sent_at, {})
        asked = pulse.members(cfg)
        off = {u for u, until in paused_until.items() if until is None or until > sent_at}
        for u, teams in asked.items():
            truth[month]["asked"][(u, week)] = teams
            for t in teams:
                asked_in[(week, t)] = asked_in.get((week, t), 0) + 1
            if u in off:
                truth[month]["opted"].add((u, week))
        at = monday + timedelta(hours=12)
        for u in sorted(set(asked) - off):
            what = rng.random()
            if what < 0.15:
                continue  # does not answer
            if what < 0.22:  # pauses mid-week instead of answering
                pulse.pause(db, u, week, at)
                paused_until[u] = at + timedelta(days=pulse.PAUSE_DAYS)
                truth[month]["opted"].add((u, week))
                continue
            score = rng.choice([None, 1, 2, 3, 4, 5, 4, 5])
            feeling = rng.choice([None, *pulse.FEELINGS])
            if score or feeling:
                pulse.answer(db, sealer, u, week, at, score=score, feeling=feeling)
            if rng.random() < 0.3 or not (score or feeling):
                places = pulse.places(db, cfg, u, week)
                assert all(p.id == pulse.ORG or asked_in[(week, p.id)] >= k for p in places), context
                where = rng.choice(places).id
                pulse.comment(db, sealer, u, week, f"comment {u} {week}", at, where=where, cfg=cfg)
            truth[month]["answered"].add((u, week))
            if score:
                truth[month]["scored"].add((u, week))
        if n % 4 == 3:  # the month's last week: the month is read once final, as the digest reads it
            read = pulse.figures(db, cfg, sealer, month, pulse.final_at(cfg.pulse, month))
            first_read[month] = read
            check_month(read, truth[month], k, f"{context}, {month}")
    # read again later, as the Home, `digest --month` and `--again` do, under other configurations
    for _ in range(3):
        other = build(members, some_teams(), k)
        for month in MONTHS:
            again = pulse.figures(db, other, sealer, month, datetime(2027, 6, 1))
            assert again == first_read[month], f"{context}: {month} recomputed under another configuration"
    check_rows(db, asked_in, k, context)


def check_month(s: pulse.Satisfaction | None, truth: dict, k: int, context: str) -> None:
    if s is None:
        assert not truth["asked"], context
        return
    groups = [*s.teams, pulse.ORG]

    def coords(which: set) -> dict[str, set]:
        return {
            g: {c for c in which if g == pulse.ORG or g in truth["asked"][c]} for g in groups
        }  # the teams a person was asked in that week

    answered, scored, opted = coords(truth["answered"]), coords(truth["scored"]), coords(truth["opted"])
    asked = coords(set(truth["asked"]))
    figures = {**s.teams, pulse.ORG: s.org}
    shown = {g for g, f in figures.items() if f is not None}
    for g in shown:
        f = figures[g]
        assert f.asked == len(asked[g]), f"{context}: {g} asked {f.asked}, everyone asked is {len(asked[g])}"
        assert f.answered == len(answered[g]) and f.scores == len(scored[g]), f"{context}: {g}"
        assert f.people >= k and len({u for u, _ in scored[g]}) >= k, f"{context}: {g} shown with fewer than {k}"
        if f.opted_out is not None:
            assert f.opted_out == len(opted[g]), f"{context}: {g}"
    for what, cs in (("answers", answered), ("scores", scored)):
        assert isolations(cs, shown, k) == [], f"{context}: {what} of fewer than {k} derivable from {sorted(shown)}"
    pauses_shown = {g for g in shown if figures[g].opted_out is not None}
    assert isolations(opted, pauses_shown, k) == [], f"{context}: a pause derivable from {sorted(pauses_shown)}"


def check_rows(db, asked_in: dict[tuple[str, str], int], k: int, context: str) -> None:
    """What the database holds, read without the secret."""
    assert set(PulseAnswer.model_fields) == {"key", "week", "scope", "sealed", "mixed"}
    assert set(PulseComment.model_fields) == {"key", "week", "scope", "text", "mixed"}
    with db.read() as session:
        notes = list(session.exec(select(PulseComment)))
        answers = list(session.exec(select(PulseAnswer)))
    for c in notes:
        assert c.scope == pulse.ORG or asked_in.get((c.week, c.scope), 0) >= k, (
            f"{context}: a comment stored under {c.scope}, {asked_in.get((c.week, c.scope), 0)} people asked"
        )
    per_author = {}
    for c in notes:
        per_author[c.text] = per_author.get(c.text, 0) + 1
    assert all(n == 1 for n in per_author.values()), f"{context}: a comment stored more than once"
    wrong = pulse.Sealer("another-secret-entirely-0123456789")
    unreadable = 0
    for a in answers:
        try:
            wrong.open(a.key, a.sealed)
        except ValueError:
            unreadable += 1
    if len(answers) >= 20:  # another secret reads most rows as nonsense: the value is not stored in the clear
        assert unreadable >= len(answers) // 4, f"{context}: answers readable without the secret"
