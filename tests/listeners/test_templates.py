"""Every template renders valid Block Kit (checked by slack_sdk's models) with hostile and oversized input."""

from __future__ import annotations

import dataclasses
import json
import re
from datetime import date, datetime, timedelta, timezone
from pathlib import Path
from types import SimpleNamespace

import pytest
from slack_sdk.models.blocks import Block
from slack_sdk.models.views import View

import templates
from bot.domain.core.process import Right, load_process
from bot.domain.digest import Signal
from bot.domain.fasttrack import Budget
from bot.domain.home import TeamMonth, Waiting
from bot.domain.initiatives import METRICS
from bot.domain.pulse import FEELING_LABELS, ORG, SCORES, Figure, Place, Satisfaction
from bot.domain.review import History
from handlers.digest import context, messages
from storage.models import FastTrack, Handoff, HandoffEvent, Initiative
from templates import _env, _when, clip_escaped, escape_mrkdwn, names, readable_utc, render
from tests.support.data import PROCESS
from tests.support.digest import a_digest

HOSTILE = "<!channel> <!here> <!everyone> <@U0BOSS> <!subteam^S1> <https://evil.example|your bank> & &amp; "
BIG = HOSTILE * 200  # far past every limit


def handoff(text: str, **kw) -> Handoff:
    criteria = [f"Criterion {i} {text[:40]}" for i in range(10)]
    return Handoff(
        id=2**31 - 1,
        from_team="design",
        to_team="eng",
        sender="U0ALICE",
        title=text[:150] if kw.pop("fit", False) else text,
        link="https://example.com/spec?a=1&b=2",
        due_date=date(2026, 12, 24),
        notes=text,
        criteria=criteria,
        criteria_met=criteria[:3],
        state=kw.pop("state", "open"),
        round=99,
        version=5,
        created_at=datetime(2026, 1, 1),
        updated_at=datetime(2026, 1, 2),
        **kw,
    )


def events(text: str, n: int = 11) -> list[HandoffEvent]:
    kinds = [
        "created",
        "rework_requested",
        "resubmitted",
        "clarification_requested",
        "resubmitted",
        "accepted",
        "cancelled",
        "rework_requested",
        "escalated",
        "snoozed",
        "escalated",
    ]
    data = [{}] * 8 + [{"level": 2, "overdue_hours": 5.5}, {"snoozes": 1}, {"manual": True}]
    return [
        HandoffEvent(
            handoff_id=1,
            seq=i + 1,
            kind=kinds[i % len(kinds)],
            actor="U0BOB",
            at=datetime(2026, 1, 1, 12),
            round=i,
            reason=text,
            data=data[i % len(kinds)],
        )
        for i in range(n)
    ]


def clock_events(text: str) -> list[HandoffEvent]:
    """The events a handoff's clock writes: each level of a reminder, to either side, a snooze, by hand."""
    out = []
    for party in ("reviewers", "sender"):
        for data in ({"level": 1, "notify": ["team"]}, {"level": 3, "notify": ["S0LEADS"], "overdue_hours": 12.5}):
            out.append(
                HandoffEvent(
                    handoff_id=1,
                    seq=2,
                    kind="escalated",
                    actor="steward",
                    at=datetime(2026, 1, 1, 12),
                    round=1,
                    data={**data, "party": party},
                )
            )
    out.append(
        HandoffEvent(
            handoff_id=1,
            seq=3,
            kind="snoozed",
            actor="U0BOB",
            at=datetime(2026, 1, 1, 12),
            round=1,
            data={"snoozes": 2},
        )
    )
    out.append(
        HandoffEvent(
            handoff_id=1,
            seq=4,
            kind="escalated",
            actor="U0ALICE",
            at=datetime(2026, 1, 1, 12),
            round=1,
            reason=text,
            data={"manual": True, "notify": ["steward"]},
        )
    )
    return out


def a_quiet_digest(text: str):
    """No activity at all in the month: only handoffs received earlier and still overdue at its end."""
    d = a_digest(text, active=False)
    for tv in d.teams:
        tv.now.fasttracks_waiting = 0
    return d


def matrix_review_contexts(text: str) -> dict[str, list[dict]]:

    hist = [None, History(), History(5, 3, 1, [text] * 3, True), History(1, 0, 1, [text], False)]
    rows = [
        dict(element=text or "e", sets=s, grants=["U0STEW", "U0CAROL"], owns=o, history=h)
        for s, o in (("qa", "design"), ("U0STEW", text or "x"))
        for h in hist
    ] * 6  # 48 rows: past the 40 shown
    dm = dict(
        quarter="2026-Q4",
        quarter_label="Q4 2026",
        last_label="Q3 2026",
        rows=rows,
        names={"qa": text, "design": text},
        confirmed_at=None,
        proposed=0,
        proposed_at=None,
        recurring=3,
    )
    return {
        "matrix_review_dm": [
            dm,
            dict(
                dm,
                rows=rows[:1],
                confirmed_at=datetime(2026, 10, 2, 9),
                proposed=2,
                proposed_at=datetime(2026, 10, 3, 9),
            ),
            dict(dm, rows=rows[2:3], proposed=1, proposed_at=datetime(2026, 10, 3, 9)),
        ],
        "matrix_review_modal": [
            dict(
                quarter="2026-Q4",
                quarter_label="Q4 2026",
                elements=[text or "e"] * 30,
                channels=[("C0SYNC", "The digest channel")] + [(f"C0T{i}", text + "'s channel") for i in range(120)],
            )
        ],
        "matrix_review_proposal": [
            dict(user="U0CAROL", quarter_label="Q4 2026", elements=[text or "e"] * 30, text=text or "t")
        ],
    }


def pulse_contexts(text: str) -> dict[str, list[dict]]:
    closes = datetime(2026, 11, 28, 9)
    dm = dict(
        question=text or "q",
        week="2026-W48",
        closes=closes,
        feelings=FEELING_LABELS,
        scores=SCORES,
        min_group=5,
        commented=False,
        paused=False,
        until=None,
        answered=False,
    )
    return {
        "pulse_dm": [
            dm,
            dict(dm, answered=True, commented=True),
            dict(dm, paused=True, until=closes),
            dict(dm, paused=True),
        ],
        "pulse_reminder": [dict(closes=closes)],
        "pulse_comment_modal": [
            dict(week="2026-W48", min_group=5, places=[Place(ORG, text or "o")]),
            dict(
                week="2026-W48",
                min_group=5,
                places=[Place(ORG, text or "o"), *[Place(f"t{i}", text or "t") for i in range(120)]],
            ),
        ],
        "pulse_closed": [dict(at=closes)],
        "pulse_digest": [a_satisfaction(text, shown) for shown in (True, False)],
    }


def welcome_contexts(text: str) -> dict[str, list[dict]]:
    """A team on 20 boundaries each way with ten long criteria, and 30 rights rows each naming 30 granters."""
    b = {"model": "centralized", "criteria": [text[:70] or "c"] * 10, "steward": "U0STEW", "sla": 48}
    sends = [dict(b, to=t) for t in ("eng", "design", text[:40] or "x")] * 7
    receives = [dict(b, **{"from": "qa"})] * 20
    rights = [{"element": text[:75] or "e", "sets": "qa", "grants": ["U0STEW"] * 30, "owns": "U0BOB"}] * 30
    full = dict(
        team=text[:60] or "T",
        channel="C0ENG",
        sends=sends,
        receives=receives,
        rights=rights,
        names={"eng": text[:60], "qa": "QA"},
        percent="10",
    )
    return {
        "welcome_dm": [
            full,
            dict(full, sends=[], receives=[], rights=[]),
            dict(full, sends=sends[:1], receives=receives[:1], rights=rights[:1]),
        ]
    }


def a_satisfaction(text: str, shown: bool) -> dict:
    """A month's satisfaction with `text` everywhere a person wrote something, 40 teams."""

    def fig(g):
        return Figure(
            group=g,
            asked=40,
            opted_out=2,
            answered=30,
            people=9,
            scores=29,
            average=3.4,
            favourable=0.55,
            feelings={"rigid": 12, "right": 10, "ambiguous": 8},
            comments=[text or "c"] * 12,
            change=-0.3,
        )

    teams = {f"t{i}": fig(f"t{i}") if shown else None for i in range(40)}
    names = {g: text or g for g in teams} | {ORG: text or "Acme"}
    s = Satisfaction(
        period="2026-11",
        min_group=5,
        weeks=["2026-W45", "2026-W46"],
        org=fig(ORG) if shown else None,
        teams=teams,
        why={} if shown else {g: "fewer than 5 answered" for g in [*teams, ORG]},
        comments=[text or "c"] * 20,
    )
    signals = [Signal(text or "s", ["U0STEW", "U0BOB"], role="stewards", metric="satisfaction")] * 12
    return dict(s=s, names=names, label="November 2026", question=text or "q", signals=signals)


def contexts(text: str) -> dict[str, list[dict]]:
    cfg = load_process(PROCESS)
    b = cfg.boundary("design", "eng")
    h = handoff(text)
    states = ["open", "rework_requested", "clarification_requested", "accepted", "cancelled"]
    return {
        "handoff_card": [
            dict(
                h=handoff(text, state=s),
                from_name=text,
                to_name=text,
                events=events(text),
                steward="U0STEW",
                fasttracks=[a_request(text, state=st) for st in ("pending", "approved", "denied")] * 3,
            )
            for s in states
        ]
        + [
            dict(
                h=handoff(text, state=s),
                from_name=text,
                to_name=text,
                events=events(text),
                steward=None,
                deadline=datetime(2026, 1, 2, 9),
                overdue=o,
                reviewers="S0REVIEW",
            )
            for s in states
            for o in (0, 12.5)
        ],
        "handoff_escalation": [
            dict(h=h, ev=ev, to=to, from_name=text, to_name=text, deadline=d, overdue=o, snoozes_left=left, channel=c)
            for ev in clock_events(text)
            for to in ("team", "S0LEADS", "U0STEW", None)
            for d, o, left, c in ((datetime(2026, 1, 2, 9), 12.5, 1, "C0ENG"), (None, 0, 0, None))
        ],
        "handoff_resubmit_reminder": [
            dict(h=h, to_name=text, deadline=d, overdue=o) for d, o in ((datetime(2026, 1, 2, 9), 3.0), (None, 0))
        ],
        "fasttrack_escalated_dm": [dict(r=a_request(text), hours=h) for h in (24.0, 1.0, 2.5)],
        "handoff_modal": [
            dict(
                from_teams=cfg.teams,
                from_team=cfg.teams[0],
                to_teams=cfg.teams[1:],
                to_team=to,
                boundary=bd,
                model=m,
                criteria_block="criteria-design-eng",
                alternatives=list(cfg.teams),
            )
            for to, bd, m in [
                (None, None, None),
                (cfg.teams[1], b, "centralized"),
                (cfg.teams[2], None, None),
                (cfg.teams[1], b, "hybrid"),
            ]
        ]
        + [
            dict(
                from_teams=cfg.teams[:1],
                from_team=cfg.teams[0],
                to_teams=cfg.teams[1:],
                to_team=None,
                boundary=None,
                model=None,
                criteria_block="c",
                alternatives=[],
            )
        ],
        "handoff_resubmit_modal": [
            dict(h=h, to_team_name=text, last_reason=text, last_kind=k, model=m)
            for k, m in [("rework_requested", "centralized"), ("clarification_requested", "hybrid")]
        ],
        "handoff_sendback_modal": [dict(h=h, kind=k) for k in ("rework_requested", "clarification_requested")],
        "handoff_submitted_dm": [dict(h=h, to_name=text, channel="C0ENG"), dict(h=h, to_name=text, channel=None)],
        "handoff_sent_back_dm": [
            dict(h=h, to_name=text, actor="U0BOB", reason=text, kind=k)
            for k in ("rework_requested", "clarification_requested")
        ],
        "handoff_accepted_dm": [dict(h=h, to_name=text, actor="U0BOB")],
        "handoff_list": [
            dict(sent=[h] * 20, received=[h] * 20, names={"eng": text, "design": text}, now=datetime(2026, 3, 1)),
            dict(
                sent=[h] * 20,
                received=[h] * 20,
                names={},
                now=datetime(2026, 3, 1),
                clocks={h.id: (datetime(2026, 3, 2, 9), 12.5)},
            ),
            dict(sent=[], received=[], names={}, now=datetime(2026, 3, 1)),
        ],
        "handoff_help": [dict(problem=text, command="/handoff"), dict(problem=None, command="/handoff")],
        "notice": [dict(text=text)],
        **pulse_contexts(text),
        **matrix_review_contexts(text),
        **welcome_contexts(text),
        "delivery_failed": [
            dict(what=text, channel=c, error=e) for c, e in (("C0ENG", "channel_not_found"), (None, text[:60] or "x"))
        ],
        "handoff_resubmitted": [dict(h=h, actor="U0ALICE"), dict(h=h, actor="U0ALICE", reviewer="U0BOB")],
        "error": [dict(ref="deadbeef")],
        "digest": [
            digest_context(a_digest(text)),
            digest_context(a_digest(text, active=False)),
            digest_context(a_quiet_digest(text)),
        ],
        "digest_summary": [
            dict(digest_context(d), replaces=r)
            for d in (a_digest(text), a_digest(text, active=False), a_quiet_digest(text))
            for r in (None, {"channel": "C0SYNC", "at": datetime(2026, 11, 2, 8)})
        ],
        "initiative_prompt": [
            dict(
                team=cfg.teams[0],
                period="2026-11",
                label="November 2026",
                due=datetime(2026, 12, 1, 8),
                initiative=i,
                metric_label=text,
            )
            for i in (None, an_initiative(text))
        ]
        + [
            dict(
                team=cfg.teams[0],
                period="2026-11",
                label="November 2026",
                due=datetime(2026, 12, 1, 8),
                initiative=i,
                metric_label=text,
                figures=a_digest(text).figures[:2],
                figures_label=text,
                earlier=an_initiative(text),
                earlier_label=text,
                earlier_since=text,
                earlier_moved=(text, text, text),
            )
            for i in (None, an_initiative(text))
        ],
        "fasttrack_modal": [
            dict(
                teams=t,
                budgets={x.id: Budget(x.id, "2026-11", 27, 2, 10) for x in cfg.teams},
                rights=rights(text),
                reasons=[text[:75] or "r", "Other"],
                handoffs=hs,
            )
            for t, hs in ((cfg.teams, [h] * 120), (cfg.teams[:1], []))
        ],
        "fasttrack_card": [
            dict(
                r=a_request(text, state=st, over=o),
                team_name=text,
                budget=Budget("eng", "2026-11", 9, int(o), 10),
                right=rt,
                names={"qa": text, "eng": text},
                handoff=hd,
                mode=mode,
                why=w,
            )
            for st in ("pending", "approved", "denied")
            for mode in ("decide", "watch")
            for o, hd, w in ((True, h, text), (False, None, None))
            for rt in (rights(text)[0], rights(text, "U0PMO")[0])
        ],
        "fasttrack_owner_notice": [
            dict(r=a_request(text, state=st), team_name=text, owner=o, names={"qa": text}, handoff=hd)
            for st in ("approved", "denied")
            for o, hd in (("qa", h), ("U0PMO", None))
        ],
        "fasttrack_already": [dict(r=a_request(text, state=st)) for st in ("approved", "denied")],
        "fasttrack_deny_modal": [dict(r=a_request(text))],
        "fasttrack_decided_dm": [dict(r=a_request(text, state=st)) for st in ("approved", "denied")],
        "fasttrack_submitted_dm": [
            dict(r=a_request(text, over=o), budget=Budget("eng", "2026-11", 9, int(o), 10), why=w, channel=c)
            for o, w, c in ((True, None, "C0FT"), (False, text, None))
        ],
        "fasttrack_list": [
            dict(
                mine=[a_request(text)] * 20,
                waiting=[a_request(text, over=True)] * 20,
                names={"eng": text},
                budgets=[Budget(t, "2026-11", 9, 1, 10) for t in ("eng", "qa")],
            ),
            dict(mine=[], waiting=[], names={}),
        ],
        "fasttrack_rights": [
            dict(
                rows=[{"element": text, "sets": "qa", "grants": ["U0STEW"] * 30, "owns": "U0BOB"}] * 50,
                names={"qa": text},
                percent="12.5",
                backups=["U0HEAD"],
            ),
            dict(rows=[], names={}, percent="10", backups=[]),
        ],
        "fasttrack_help": [dict(problem=text, command="/fasttrack"), dict(problem=None, command="/fasttrack")],
        "home": home_contexts(text),
        "initiative_modal": [
            dict(team=cfg.teams[0], period="2026-11", label="November 2026", metrics=METRICS, current=c, user="U0ALICE")
            for c in (None, an_initiative(text))
        ],
    }


def home_contexts(text: str) -> list[dict]:
    """Homes with every section full of `text`: capped lists, teams with and without satisfaction, each pulse state."""

    from bot.domain.figures import Figure

    h, sent_back = handoff(text, fit=True), handoff(text, fit=True, state="rework_requested")
    w = Waiting(
        reviews=[h] * 10,
        reviews_total=50,
        resubmits=[sent_back] * 5,
        resubmits_total=9,
        fasttracks=[a_request(text)] * 5,
        fasttracks_total=7,
    )
    sat = Figure("Satisfaction (1–5)", "score", 3.8, 3.4, False, 9, 8, noun="answer", minimum=5, before_label=text)
    team = TeamMonth(
        id="eng",
        name=text[:60],
        sent=3,
        received=4,
        sent_change="+1",
        received_change="−2",
        cycle="5.0 h",
        cycle_change=text[:40],
        failure="25%",
        failure_change="+5 pts",
        budget=Budget("eng", "2026-11", 9, 1, 10),
        satisfaction=sat,
        satisfaction_label="Oct 2026",
        initiative=an_initiative(text),
    )
    bounds = [
        SimpleNamespace(
            from_team="design",
            to_team="eng",
            steward="U0STEW",
            sla_hours=48,
            criteria=[f"{text[:60]} {i}" for i in range(10)],
        )
    ] * 10
    rs = rights(text)[:10]
    full = dict(
        user="U0BOB",
        waiting=w,
        clocks={h.id: (datetime(2026, 1, 2, 9), 12.5)},
        budgets={2**31 - 1: Budget("eng", "2026-11", 9, 3, 10)},
        names={"eng": text[:60], "design": text[:60]},
        teams=[team, dataclasses_replace(team, satisfaction=None, initiative=None)] * 2 + [team],
        month_label="November 2026",
        last_label="Oct 2026",
        boundaries=bounds,
        boundaries_total=14,
        models=["centralized"] * 10,
        rights=rs,
        rights_total=12,
        granters={r.element: ["U0STEW", "eng"] * 8 for r in rs},
        pulse_on=True,
        pulse={"state": "on", "until": None},
        roles=True,
        now=datetime(2026, 11, 20, 9),
    )
    empty = dict(
        full,
        waiting=Waiting(),
        teams=[],
        boundaries=[],
        boundaries_total=0,
        models=[],
        rights=[],
        rights_total=0,
        pulse=None,
        pulse_on=False,
        roles=True,
    )
    return [
        full,
        dict(full, pulse={"state": "paused", "until": datetime(2026, 12, 18, 9)}),
        dict(full, pulse={"state": "stopped", "until": None}),
        empty,
        dict(empty, roles=False),
    ]


def dataclasses_replace(obj, **changes):

    return dataclasses.replace(obj, **changes)


def rights(text: str, owner: str = "qa"):

    return [
        Right(
            element=(text or "e")[:75],
            sets_standard=(text or "qa")[:40],
            grants_exceptions=("U0STEW",),
            owns_execution=owner,
        )
    ] * 120


def a_request(text: str, state: str = "pending", over: bool = False):

    return FastTrack(
        id=2**31 - 1,
        team="eng",
        requester="U0BOB",
        element=text[:75],
        reason=text[:75],
        what=text[:300],
        justification=text,
        handoff_id=1,
        needed_by=date(2026, 12, 1),
        state=state,
        over_budget=over,
        deciders=["U0CAROL", "U0STEW"] * 10,
        decided_by="U0STEW" if state != "pending" else None,
        decided_at=datetime(2026, 11, 11) if state != "pending" else None,
        decision_reason=text if state == "denied" else None,
        version=2,
        created_at=datetime(2026, 11, 10),
        updated_at=datetime(2026, 11, 10),
    )


def digest_context(d) -> dict:

    return context(d)


def an_initiative(text: str):

    return Initiative(
        team="design",
        period="2026-11",
        text=text,
        metric="failure_rate_sent",
        owner="U0AMY",
        set_by="U0ALICE",
        set_at=datetime(2026, 11, 28),
        baseline_period="2026-10",
        baseline=0.25,
    )


def test_every_template_is_covered():
    assert sorted(contexts("x")) == names()


def user_texts(node):
    """Every string Slack would render or parse, excluding ids, values and input initial values."""
    if isinstance(node, dict):
        for key, value in node.items():
            if key in ("text",) and isinstance(value, str):
                yield value
            elif key not in ("initial_value", "private_metadata", "value", "action_id", "block_id", "callback_id"):
                yield from user_texts(value)
    elif isinstance(node, list):
        for item in node:
            yield from user_texts(item)


# What may stand between < and > in Slack's mrkdwn, as Steward writes it: a mention, a channel, a user
# group, a date token, a link. Anything else between < and > is a raw `<word>` Slack turns into a link or
# swallows; an & that starts no entity is not valid either.
_TOKEN = re.compile(
    r"<(?:@[UW][A-Z0-9]{2,}|#[CG][A-Z0-9]{2,}|!subteam\^S[A-Z0-9]{2,}"
    r"|!date\^\d+\^[^|<>]+\|[^<>]+|https?://[^\s<>|]+(?:\|[^<>]*)?)>"
)
_ENTITY = re.compile(r"&(?!amp;|lt;|gt;)")


def mrkdwn_problems(text: str) -> list[str]:
    """Why `text` is not valid mrkdwn as Steward must write it (empty when it is): the one check for
    inserted values and for a template's own words. A `>` starting a line is a quote and may stay."""
    rest = _TOKEN.sub("", text)
    problems = [f"raw {m.group(0)!r}" for m in re.finditer(r"<[^<>]{0,40}>?", rest)]
    rest = re.sub(r"<[^<>]{0,40}>?", "", rest)
    problems += [
        f"raw '>' in {rest[max(m.start() - 20, 0) : m.start() + 1]!r}" for m in re.finditer(r"(?<!\n)(?<!^)>", rest)
    ]
    problems += [f"unescaped '&' in {text[max(m.start() - 20, 0) : m.start() + 10]!r}" for m in _ENTITY.finditer(rest)]
    return problems


def static_text(source: str) -> list[str]:
    """A template's own words: the text between its tags, as Jinja's lexer reads it (comments, tags and
    expressions are not static text; an expression is escaped when rendered). The JSON escapes of a line
    break are read as one, so a quote's `>` is at the start of its line."""

    # JSON's own syntax has no <, > or &, so a data token is checked whole (a leading space: a token that
    # starts after an expression does not start a line)
    return [" " + value.replace("\\n", "\n") for _, kind, value in _env.lex(source) if kind == "data"]


def static_problems(source: str) -> list[str]:
    return [p for text in static_text(source) for p in mrkdwn_problems(text)]


def test_every_templates_own_words_are_valid_mrkdwn():
    """Every template, present or future, is read: its static text gets the check inserted values get."""

    files = sorted(Path(templates.__file__).parent.glob("*.j2"))
    assert len(files) == len(names()) + 1  # and _macros.j2
    problems = {f.name: static_problems(f.read_text()) for f in files}
    assert {k: v for k, v in problems.items() if v} == {}


def test_the_static_check_catches_raw_words_and_ampersands():

    help_source = (Path(templates.__file__).parent / "handoff_help.json.j2").read_text()
    assert "&lt;team&gt;" in help_source and static_problems(help_source) == []
    broken = help_source.replace("&lt;team&gt;", "<team>").replace("&lt;number&gt;", "<number>")
    assert static_problems(broken) == ["raw '<team>'", "raw '<number>'", "raw '<number>'"]
    assert static_problems('{"text": "Q&A {{ x }} &amp; <@U0ABC> <#C0ENG> <https://a.example|a>"}') == [
        "unescaped '&' in ' {\"text\": \"Q&A '"
    ]
    assert static_problems('{"text": "{% if x %}a -> b{% endif %}"}') == ["raw '>' in ' a ->'"]
    assert (
        static_problems('{"text": "said:\\n>{{ reason }}"} {# a <comment> & more #}') == []
    )  # a quote; a comment is not shown
    assert (
        mrkdwn_problems("<!date^1790000000^{date_short_pretty} {time}|Thu 26 Nov 2026 12:14 UTC> <!subteam^S0X>") == []
    )
    assert mrkdwn_problems("<!channel> <!date^x^y|z>") == ["raw '<!channel>'", "raw '<!date^x^y|z>'"]


@pytest.mark.parametrize("text", [HOSTILE, BIG, "", "plain words"])
def test_templates_render_valid_block_kit_and_escape_user_text(text):
    for name, cases in contexts(text).items():
        for ctx in cases:
            out = render(name, **ctx)
            if out.get("type") == "home":
                View(**out).validate_json()
                assert len(out["blocks"]) <= 100 and len(json.dumps(out)) < 250_000
                for block in out["blocks"]:
                    if block["type"] == "section":
                        assert len(block["text"]["text"]) <= 3000
            elif out.get("type") == "modal":
                View(**out).validate_json()
                assert len(out["blocks"]) <= 100 and len(out.get("private_metadata", "")) <= 3000
                assert len(json.dumps(out)) < 250_000
            else:
                assert len(out["blocks"]) <= 50 and len(out["text"]) <= 4000
                for block in out["blocks"]:
                    Block.parse(block).validate_json()
                    if block["type"] == "section":
                        assert len(block["text"]["text"]) <= 3000
            for s in user_texts(out):
                assert mrkdwn_problems(s) == [], (name, mrkdwn_problems(s)[:3], s[:200])
                s = s.replace("<!subteam^S0REVIEW>", "").replace(
                    "<!subteam^S0LEADS>", ""
                )  # groups Steward was configured to mention
                for ping in ("<!channel>", "<!here>", "<!everyone>", "<@U0BOSS>", "<!subteam", "<https://evil"):
                    assert ping not in s, (name, s[:200])


def test_escaping_and_clipping_rules():
    assert escape_mrkdwn("a & <b> c") == "a &amp; &lt;b&gt; c"
    assert escape_mrkdwn("*bold* _it_") == "*bold* _it_"  # nothing else is escaped
    clipped = clip_escaped("&" * 10, 12)
    assert clipped == "&amp;&amp;…" and len(clipped) <= 12
    assert clip_escaped("short", 10) == "short"


def test_mentions_come_only_from_ids():
    with pytest.raises(ValueError):
        render("handoff_accepted_dm", h=handoff("x"), to_name="E", actor="<!channel>")


def test_notices_show_only_the_named_people_as_mentions():
    out = render(
        "notice", text="Only <@U0STEW> can; not <@U0BOSS> <!channel> <@U0STEW|x>", people=["U0STEW", "<!here>"]
    )
    for text in (out["text"], out["blocks"][0]["text"]["text"]):
        assert "Only <@U0STEW> can" in text and "&lt;@U0BOSS&gt;" in text and "&lt;!channel&gt;" in text
        assert "&lt;@U0STEW|x&gt;" in text  # only the exact token of a named id
    assert "<@" not in render("notice", text="<@U0STEW>")["text"]  # nobody named: nothing restored


def test_digest_shows_responses_escalations_and_overdue():

    quiet = a_quiet_digest("Ops <!here>")
    assert not quiet.month.active
    text = json.dumps([messages(a_digest("Ops <!here>")), messages(quiet)], ensure_ascii=False)
    assert (
        "First response (SLA 48 working h): 80% in time (4 of 5), median 3.2 working h · escalations L1 ×3, L2 ×1, L3 ×1, by hand ×1 · snoozes 2"
        in text
    )
    assert "· 2 received overdue at the month's end" in text
    assert (
        "Still waiting past their deadline at the month's end, by receiving team: Ops &lt;!here&gt; 2, Ops &lt;!here&gt; 2, Ops &lt;!here&gt; 2."
        in text
    )
    assert "<!here>" not in text


def test_a_time_is_a_slack_date_token_with_a_readable_utc_fallback():

    noon = datetime(2026, 11, 26, 12, 14)  # naive UTC, as stored
    assert _when(noon) == "<!date^1795695240^{date_short_pretty} {time}|Thu 26 Nov 2026 12:14 UTC>"
    berlin = datetime(2026, 11, 26, 13, 14, tzinfo=timezone(timedelta(hours=1)))
    assert _when(berlin) == _when(noon) and readable_utc(berlin) == "Thu 26 Nov 2026 12:14 UTC"
    assert _when(date(2026, 11, 26)) == "Thu 26 Nov 2026"  # a date has no time of day: no token
