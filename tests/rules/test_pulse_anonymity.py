"""The pulse's anonymity rules, on the domain functions and the database: the threshold, subtraction
protection proved by enumerating every combination of the figures shown, the month's figures against an
independent count, and the warning signs."""

from __future__ import annotations

import random
from datetime import datetime, timedelta

import pytest

from bot.domain import pulse
from tests.support.anonymity import SECRET, config, isolations, run_month

# -- subtraction protection, proved by enumeration ---------------------------------------------------------


def scenario(rng: random.Random) -> dict[str, set]:
    """Random teams of 1-9 people answering over 1-3 weeks, some people in two teams, and the organisation."""
    weeks = ["2026-W45", "2026-W46", "2026-W47"][: rng.randint(1, 3)]
    teams = {f"t{i}": set() for i in range(rng.randint(2, 5))}
    people = [f"U{n}" for n in range(rng.randint(4, 30))]
    for person in people:
        mine = rng.sample(sorted(teams), 2 if rng.random() < 0.2 else 1)
        for week in weeks:
            if rng.random() < 0.7:
                for t in mine:
                    teams[t].add((person, week))
    coords = dict(teams)
    coords[pulse.ORG] = set().union(*teams.values())
    return coords


def test_a_team_of_four_is_hidden_and_cannot_be_worked_out_from_the_organisation():
    coords = {
        "a": {(f"A{i}", "w") for i in range(6)},
        "b": {(f"B{i}", "w") for i in range(5)},
        "c": {(f"C{i}", "w") for i in range(4)},
    }
    coords[pulse.ORG] = set().union(*coords.values())
    naive = {g for g, cs in coords.items() if len(cs) >= 5}
    assert isolations(coords, naive, 5), (
        "showing every group of 5 or more would reveal team c (the organisation minus a and b)"
    )
    shown, why = pulse.protect(coords, 5)
    assert shown == {"a", pulse.ORG}  # b, the smallest team that merges with c's remainder, is held back too
    assert why == {
        "c": "fewer than 5 answered",
        "b": "held back so that no group under 5 can be worked out from the figures shown",
    }
    assert isolations(coords, shown, 5) == []


def test_a_team_inside_another_cannot_be_subtracted_from_it():
    eng = {(f"E{i}", "w") for i in range(8)}
    platform = set(list(sorted(eng))[:5])  # platform's 5 are all in eng: eng minus platform would be 3 people
    coords = {"eng": eng, "platform": platform, pulse.ORG: set(eng)}
    shown, _ = pulse.protect(coords, 5)
    assert isolations(coords, shown, 5) == [] and len(shown) >= 1


def test_no_small_group_is_ever_derivable_from_what_is_shown():
    rng = random.Random(20261126)
    leaky = 0
    for _ in range(300):
        coords = scenario(rng)
        k = rng.randint(3, 6)
        naive = {g for g, cs in coords.items() if len({u for u, _ in cs}) >= k}
        leaky += bool(isolations(coords, naive, k))
        shown, why = pulse.protect(coords, k)
        assert isolations(coords, shown, k) == [], (coords, shown)
        assert shown.isdisjoint(why) and shown | set(why) == set(coords)
        assert all(len({u for u, _ in coords[g]}) >= k for g in shown)
    assert leaky > 30, "the scenarios include leaks the threshold alone would not stop"


# -- the month's figures from the database --------------------------------------------------------------


def test_figures_match_an_independent_count_and_hold_back_small_teams(db):
    cfg = config({"design": 6, "eng": 7, "qa": 4}, shared={"U0BOTH": ["design", "eng"]})
    monday = datetime(2026, 11, 2)  # closes Saturday 7 November: counts in November
    rng = random.Random(7)
    answers = {}
    for user, teams in pulse.members(cfg).items():
        if user != "U0DESIGN0":  # one person does not answer
            answers[user] = (rng.randint(1, 5), rng.choice([None, *pulse.FEELINGS]))
    s = run_month(db, cfg, answers, monday)
    assert s is not None and "2026-W45" in s.weeks
    assert s.teams["qa"] is None and s.why["qa"] == "fewer than 5 answered"
    for team in ("design", "eng"):
        f = s.teams[team]
        if f is None:
            continue
        mine = [answers[u] for u in pulse.members(cfg) if team in pulse.members(cfg)[u] and u in answers]
        scores = [sc for sc, _ in mine]
        assert f.scores == len(scores) and f.average == pytest.approx(sum(scores) / len(scores))
        assert f.favourable == pytest.approx(sum(1 for x in scores if x >= 4) / len(scores))
        assert f.feelings == {x: sum(1 for _, fe in mine if fe == x) for x in pulse.FEELINGS}
        assert f.asked == sum(1 for u in pulse.members(cfg) if team in pulse.members(cfg)[u])
    # what is shown leaves no group under 5 derivable (qa's 4 are not the organisation minus the others)
    coords = {
        g: {(u, "w") for u, ts in pulse.members(cfg).items() if (g == pulse.ORG or g in ts) and u in answers}
        for g in ["design", "eng", "qa", pulse.ORG]
    }
    shown = {g for g, f in [*s.teams.items(), (pulse.ORG, s.org)] if f is not None}
    assert isolations(coords, shown, 5) == []
    if s.org is not None:
        assert (
            s.org.people == len(answers) and s.org.answered == len(answers) and s.org.asked == len(pulse.members(cfg))
        )


def test_who_paused_cannot_be_worked_out_from_the_counts_shown(db):
    """Five people in design paused, and one in qa (a team of 4, hidden). Were the pause counts of every
    shown group given, the organisation's 6 minus design's 5 would say that someone outside design paused."""
    cfg = config({"design": 12, "eng": 6, "qa": 4})
    sealer = pulse.Sealer(SECRET)
    monday = datetime(2026, 11, 2)
    week = pulse.week_id(monday.date())
    pulse.send_due(db, cfg, monday + timedelta(hours=11), {})
    paused = {"U0QA0"} | {f"U0DESIGN{i}" for i in range(5)}
    for user in pulse.members(cfg):
        if user in paused:
            pulse.pause(db, user, week, monday + timedelta(hours=12))
        else:
            pulse.answer(db, sealer, user, week, monday + timedelta(hours=12), score=4, feeling=None)
    period = pulse.close_day(cfg.pulse, week).strftime("%Y-%m")
    s = pulse.figures(db, cfg, sealer, period, pulse.final_at(cfg.pulse, period))
    shown = {g: f for g, f in [*s.teams.items(), (pulse.ORG, s.org)] if f is not None}
    assert set(shown) == {"design", pulse.ORG}  # qa (3 answered) hidden, and eng so qa cannot be subtracted
    assert shown[pulse.ORG].opted_out == 6 and shown["design"].opted_out is None
    assert shown[pulse.ORG].asked == len(pulse.members(cfg)) and shown["design"].asked == 12  # everyone asked
    assert shown["design"].answered == 7 and shown[pulse.ORG].answered == 16


def test_a_lone_pause_is_never_shown(db):
    cfg = config({"design": 6, "eng": 6})
    sealer = pulse.Sealer(SECRET)
    monday = datetime(2026, 11, 2)
    week = pulse.week_id(monday.date())
    pulse.send_due(db, cfg, monday + timedelta(hours=11), {})
    for user in pulse.members(cfg):
        if user == "U0ENG0":
            pulse.pause(db, user, week, monday + timedelta(hours=12))
        else:
            pulse.answer(db, sealer, user, week, monday + timedelta(hours=12), score=3, feeling=None)
    period = pulse.close_day(cfg.pulse, week).strftime("%Y-%m")
    s = pulse.figures(db, cfg, sealer, period, pulse.final_at(cfg.pulse, period))
    assert s.org is not None and s.org.opted_out is None and s.org.answered == 11 and s.org.asked == 12


def test_no_figures_while_a_week_of_the_month_is_open(db):
    cfg = config({"design": 6})
    sealer = pulse.Sealer(SECRET)
    monday = datetime(2026, 11, 2)
    pulse.send_due(db, cfg, monday + timedelta(hours=11), {})
    # the month's first week has closed, but not its last: figures would move as the month goes on
    assert pulse.figures(db, cfg, sealer, "2026-11", monday + timedelta(days=6)) is None
    assert pulse.figures(db, cfg, sealer, "2026-11", pulse.final_at(cfg.pulse, "2026-11")) is not None


def test_comments_are_shown_only_for_groups_shown_in_key_order(db):
    cfg = config({"design": 5, "qa": 3})
    sealer = pulse.Sealer(SECRET)
    monday = datetime(2026, 11, 2)
    pulse.send_due(db, cfg, monday + timedelta(hours=11), {})
    week = pulse.week_id(monday.date())
    for i, user in enumerate(sorted(pulse.members(cfg))):
        pulse.answer(db, sealer, user, week, monday + timedelta(hours=12), score=3)
        pulse.comment(
            db,
            sealer,
            user,
            week,
            f"comment {i} from {'qa' if 'QA' in user else 'design'}",
            monday + timedelta(hours=12),
        )
    s = pulse.figures(db, cfg, sealer, "2026-11", pulse.final_at(cfg.pulse, "2026-11"))
    # design (5) and the organisation (8) both reach 5, but together they would give qa's 3 away: the
    # organisation is kept, design held back with qa, and every comment shows once, under the organisation
    assert s.teams == {"design": None, "qa": None} and s.org is not None and s.org.people == 8
    assert sorted(s.comments) == sorted(f"comment {i} from {'qa' if i >= 5 else 'design'}" for i in range(8))
    assert s.comments != sorted(s.comments, key=lambda c: int(c.split()[1]))  # not in the order they were written


def test_signals_name_the_stewards(db):
    cfg = config({"design": 5, "eng": 5})
    months = []
    for monday, score in ((datetime(2026, 9, 7), 5), (datetime(2026, 10, 5), 4), (datetime(2026, 11, 2), 2)):
        answers = {u: (score, "rigid" if score == 2 else "right") for u in pulse.members(cfg)}
        months.append(run_month(db, cfg, answers, monday))
    now = pulse.with_changes(months[2], months[1])
    assert now.teams["design"].change == pytest.approx(-2)
    found = pulse.signals(cfg, now, months[1], months[0], failure={"eng": (0.4, 0.1), "design": (0.1, 0.2)})
    kinds = {(s.group, s.kind) for s in found}
    assert ("design", "falling") in kinds and ("eng", "falling") in kinds and (pulse.ORG, "falling") in kinds
    assert ("eng", "falling_while_failing") in kinds and ("design", "falling_while_failing") not in kinds
    assert ("design", "rigid") in kinds and not any(s.kind == "ambiguous" for s in found)
    assert all(s.owners == ("U0STEW",) for s in found)
