"""Fast-track rules, called directly: the budget, routing by the decision-rights matrix, separation of
duties, the first decision wins, the over-budget path."""

from __future__ import annotations

import threading
from datetime import date, datetime, timedelta
from functools import partial

import pytest
from sqlalchemy import text
from sqlmodel import select

from bot.domain import fasttrack, handoffs
from bot.domain.core.items import NotAllowed, RuleError
from bot.domain.core.process import Right
from bot.domain.core.timeutil import local_today
from bot.domain.fasttrack import Budget, Draft
from bot.domain.figures import meter, plural
from storage.db import Database
from storage.models import Outbox
from templates import render
from tests.support.harness import view_of

NOW = datetime(2026, 11, 10, 9)


def ask(db, cfg, user="U0BOB", team="eng", element="QA sign-off", **kw):
    draft = Draft(
        team=team,
        element=element,
        reason=kw.pop("reason", "Customer escalation"),
        what=kw.pop("what", "Hotfix 4.2.1"),
        justification=kw.pop("justification", "Checkout is down for a big customer"),
        **kw,
    )
    return fasttrack.request(db, cfg, user, draft, now=NOW)


def items(db, cfg, n, team="design", at=NOW - timedelta(days=2)):
    for i in range(n):
        handoffs.create(
            db,
            cfg,
            "U0ALICE" if team == "design" else "U0BOB",
            handoffs.Draft(
                team,
                "eng" if team == "design" else "qa",
                f"Item {i}",
                criteria_met=list(cfg.boundary(team, "eng" if team == "design" else "qa").criteria),
            ),
            now=at,
        )


def test_the_budget_rule_and_its_meter():
    assert Budget("eng", "2026-11", 0, 0, 10).limit == 1  # max(1, …): a team with no items may still have one
    assert Budget("eng", "2026-11", 27, 0, 10).limit == 2  # floor(2.7)
    assert Budget("eng", "2026-11", 30, 3, 10).over and not Budget("eng", "2026-11", 30, 2, 10).over


def test_one_wording_for_the_meter_and_for_counts():

    nine = Budget("eng", "2026-11", 9, 0, 10)
    assert meter(nine.position, nine) == "1 of 1 allowed this month (10% of 9 items, at least 1)"  # within: 1st of 1
    assert (
        meter(nine.approved, nine) == "0 of 1 allowed this month (10% of 9 items, at least 1)"
    )  # the form, before asking
    full = Budget("eng", "2026-11", 27, 2, 12.5)
    assert (
        meter(full.position, full) == "3 of 3 allowed this month (12.5% of 27 items)"
    )  # the percentage sets it: no "at least"
    ten = Budget("eng", "2026-11", 10, 0, 10)
    assert meter(ten.position, ten) == "1 of 1 allowed this month (10% of 10 items)"
    # past the limit: never "3 of 2 allowed"; the minimum of one said as such, not "10% of 0 items" alone
    assert (
        meter(3, Budget("eng", "2026-11", 0, 2, 10))
        == "over budget: 3 fast-tracks, 1 allowed this month (10% of 0 items, at least 1)"
    )
    assert meter(4, full) == "over budget: 4 fast-tracks, 3 allowed this month (12.5% of 27 items)"
    assert meter(1, Budget("eng", "2026-11", 1, 0, 10)) == "1 of 1 allowed this month (10% of 1 item, at least 1)"
    assert [plural(n, "member") for n in (0, 1, 2)] == ["0 members", "1 member", "2 members"]
    assert [plural(h, "working hour") for h in (1.0, 2.0, 12.5)] == [
        "1 working hour",
        "2 working hours",
        "12.5 working hours",
    ]


def test_items_are_the_handoffs_the_team_sent_this_month(db, cfg):
    items(db, cfg, 12, "eng")
    items(db, cfg, 5, "design")
    items(db, cfg, 4, "eng", at=NOW - timedelta(days=40))  # last month
    b = fasttrack.team_budget(db, cfg, "eng", NOW)
    assert (b.items, b.approved, b.limit) == (12, 0, 1)


def test_cancelled_handoffs_are_not_items(db, cfg):
    items(db, cfg, 20, "eng")  # 20 items: limit 2
    assert fasttrack.team_budget(db, cfg, "eng", NOW).limit == 2
    for h in handoffs.open_for(db, cfg, "U0BOB", limit=100)[0]:
        handoffs.cancel(db, cfg, h.id, "U0BOB", now=NOW - timedelta(days=1))
    items(db, cfg, 20, "eng")
    b = fasttrack.team_budget(db, cfg, "eng", NOW)
    assert (b.items, b.limit) == (20, 2)  # 20 created and cancelled, 20 created: 20 items, not 40
    for h in handoffs.open_for(db, cfg, "U0BOB", limit=100)[0][:11]:
        handoffs.cancel(db, cfg, h.id, "U0BOB", now=NOW)
    b = fasttrack.team_budget(db, cfg, "eng", NOW)
    assert (b.items, b.limit) == (9, 1)


def test_needed_by_today_is_the_organisations_date(db, cfg):

    la = cfg.model_copy(
        update={"organization": cfg.organization.model_copy(update={"timezone": "America/Los_Angeles"})}
    )
    evening = datetime(2026, 12, 1, 2, 0)  # 18:00 on 30 November in Los Angeles
    draft = Draft(
        team="eng",
        element="QA sign-off",
        reason="Customer escalation",
        what="Hotfix",
        justification="Down",
        needed_by=date(2026, 11, 30),
    )
    assert fasttrack.check(db, la, "U0BOB", draft, local_today(la, evening)) == {}
    row, budget, _ = fasttrack.request(db, la, "U0BOB", draft, now=evening)
    assert row.needed_by == date(2026, 11, 30)
    with pytest.raises(RuleError) as exc:
        fasttrack.request(db, cfg, "U0BOB", draft, now=evening)  # Berlin: already 1 December
    assert exc.value.field == "needed_by"
    card = render(
        "fasttrack_card",
        r=row,
        team_name="Engineering",
        budget=budget,
        right=la.right("QA sign-off"),
        names={},
        handoff=None,
        mode="decide",
        why=None,
    )
    assert "needed by Mon 30 Nov 2026\n" in card["blocks"][1]["text"]["text"]


def test_routing_follows_the_matrix_and_never_the_requester(db, cfg):
    row, budget, route = ask(db, cfg, element="QA sign-off")
    assert row.deciders == ["U0CAROL", "U0STEW"] and not row.over_budget
    assert budget.position == 1
    row, _, _ = ask(db, cfg, element="Design review")  # names nobody: [fasttrack].approvers
    assert row.deciders == ["U0STEW"]
    row, _, _ = ask(db, cfg, user="U0CAROL", team="qa", element="QA sign-off")  # Carol is a granter, not of her own
    assert row.deciders == ["U0STEW"]
    row, _, route = ask(
        db, cfg, user="U0ALICE", team="design", element="Architecture review"
    )  # she is the only granter
    assert row.deciders == ["U0HEAD"] and route.why == "the only approver named for this element is the requester"
    events = fasttrack.history(db, row.id)
    assert events[0].kind == "requested" and events[0].actor == "U0ALICE"
    assert events[0].data["right"]["element"] == "Architecture review" and events[0].data["budget"]["limit"] == 1


def test_who_may_decide(db, cfg):
    row, _, _ = ask(db, cfg, user="U0CAROL", team="qa")
    with pytest.raises(NotAllowed, match="separation of duties"):
        fasttrack.decide(db, cfg, row.id, "U0CAROL", approve=True, now=NOW)
    with pytest.raises(NotAllowed, match="Only the approvers the decision-rights matrix names for “QA sign-off”"):
        fasttrack.decide(db, cfg, row.id, "U0EVE", approve=True, now=NOW)
    with pytest.raises(NotAllowed):
        fasttrack.decide(db, cfg, row.id, "U0HEAD", approve=True, now=NOW)  # backups decide over-budget requests only
    assert fasttrack.get(db, row.id).state == "pending"
    decision = fasttrack.decide(db, cfg, row.id, "U0STEW", approve=True, now=NOW)
    assert decision.changed and decision.request.state == "approved" and decision.request.decided_by == "U0STEW"
    again = fasttrack.decide(db, cfg, row.id, "U0STEW", approve=False, reason="changed my mind", now=NOW)
    assert not again.changed and again.request.state == "approved"
    assert [e.kind for e in fasttrack.history(db, row.id)] == ["requested", "approved"]


def test_deny_needs_a_reason(db, cfg):
    row, _, _ = ask(db, cfg)
    for reason in (None, "   "):
        with pytest.raises(RuleError, match="Give a reason") as exc:
            fasttrack.decide(db, cfg, row.id, "U0CAROL", approve=False, reason=reason, now=NOW)
        assert exc.value.field == "reason"
    decision = fasttrack.decide(db, cfg, row.id, "U0CAROL", approve=False, reason="  Use the standard path  ", now=NOW)
    assert decision.changed and (decision.request.state, decision.request.decision_reason) == (
        "denied",
        "Use the standard path",
    )
    assert fasttrack.team_budget(db, cfg, "eng", NOW).approved == 0  # denied requests use no budget


@pytest.mark.parametrize(
    "field,kw",
    [
        ("team", {"team": "qa"}),
        ("element", {"element": "Nope"}),
        ("reason", {"reason": "Because"}),
        ("what", {"what": " "}),
        ("what", {"what": "x" * 301}),
        ("justification", {"justification": ""}),
        ("needed_by", {"needed_by": date(2020, 1, 1)}),
        ("handoff", {"handoff_id": 999}),
    ],
)
def test_bad_requests_name_the_field(db, cfg, field, kw):
    with pytest.raises(RuleError) as exc:
        ask(db, cfg, **kw)
    assert exc.value.field == field


def test_an_element_or_reason_no_longer_configured_is_chosen_again(db, cfg):
    for kw, field, message in [
        (
            {"element": "Security review"},
            "element",
            "That gate is no longer in the decision-rights matrix; choose again.",
        ),
        ({"element": None}, "element", "Choose the gate to skip."),
        (
            {"reason": "Board request"},
            "reason",
            "That reason is no longer one of the fast-track reasons; choose again.",
        ),
        ({"reason": None}, "reason", "Choose a reason."),
    ]:
        with pytest.raises(RuleError) as exc:
            ask(db, cfg, **kw)
        assert (exc.value.field, str(exc.value)) == (field, message)
    assert fasttrack.listing(db, "U0BOB")[0] == []


def test_the_form_names_elements_and_reasons_not_positions(steward, fake, db):

    assert steward.command("U0BOB", "", command="/fasttrack").status == 200
    view = view_of(fake.wait("views.open")[-1])
    values = {
        b["block_id"]: [o["value"] for o in b["element"]["options"]]
        for b in view["blocks"]
        if b.get("block_id") in ("element", "reason")
    }
    assert values == {
        "element": ["QA sign-off", "Design review", "Architecture review"],
        "reason": ["Regulatory deadline", "Customer escalation", "Security fix", "Other"],
    }
    r = steward.submit(
        "U0BOB", view, {"what": "Hotfix", "element": "0", "reason": "Board request", "justification": "Down"}
    ).json()
    assert r == {
        "response_action": "errors",
        "errors": {
            "element": "That gate is no longer in the decision-rights matrix; choose again.",
            "reason": "That reason is no longer one of the fast-track reasons; choose again.",
        },
    }
    assert fasttrack.listing(db, "U0BOB")[0] == []
    r = steward.submit(
        "U0BOB", view, {"what": "Hotfix", "element": "Design review", "reason": "Other", "justification": "Down"}
    )
    assert r.raw in (b"", b"{}")
    assert [(x.element, x.reason) for x in fasttrack.listing(db, "U0BOB")[0]] == [("Design review", "Other")]


def test_over_budget_goes_to_the_backup_approvers(db, cfg):
    items(db, cfg, 12, "eng")  # limit 1
    first, _, _ = ask(db, cfg)
    fasttrack.decide(db, cfg, first.id, "U0STEW", approve=True, now=NOW)
    second, budget, route = ask(db, cfg)
    assert (budget.position, budget.limit, budget.over) == (2, 1, True)
    assert second.over_budget and second.deciders == ["U0HEAD"] and route.deciders == ["U0HEAD"]
    with db.read() as s:  # no card for the regular approvers: they could not act on it
        cards = s.exec(
            select(Outbox).where(Outbox.item == f"fasttrack:{second.id}", Outbox.render == "fasttrack_card")
        ).all()
    assert [c.channel for c in cards] == ["U0HEAD"]
    with pytest.raises(
        NotAllowed, match="over the team's fast-track budget, so a backup approver decides it: <@U0HEAD>"
    ):
        fasttrack.decide(db, cfg, second.id, "U0STEW", approve=True, now=NOW)
    decision = fasttrack.decide(db, cfg, second.id, "U0HEAD", approve=True, now=NOW)
    assert decision.changed and fasttrack.team_budget(db, cfg, "eng", NOW).approved == 2


def test_a_request_the_budget_no_longer_covers_is_rerouted(db, cfg):
    first, _, _ = ask(db, cfg)
    second, _, _ = ask(db, cfg)  # both asked while nothing was approved: both within the budget of 1
    assert not second.over_budget
    assert fasttrack.decide(db, cfg, first.id, "U0CAROL", approve=True, now=NOW).changed
    decision = fasttrack.decide(db, cfg, second.id, "U0CAROL", approve=True, now=NOW)
    assert decision.rerouted and not decision.changed
    row = fasttrack.get(db, second.id)
    assert (row.state, row.over_budget, row.deciders) == ("pending", True, ["U0HEAD"])
    assert [e.kind for e in fasttrack.history(db, second.id)] == ["requested", "rerouted"]


def run_at_once(calls) -> list:
    """Run each call on its own thread (and its own engine, like separate workers), all released at once."""
    results = []
    barrier = threading.Barrier(len(calls))

    def run(call) -> None:
        barrier.wait()
        try:
            results.append(call())
        except NotAllowed as exc:
            results.append(exc)

    threads = [threading.Thread(target=run, args=(c,)) for c in calls]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return results


def test_concurrent_clicks_record_one_decision(db, cfg):
    """Sixteen clicks at once, approve and deny, from both approvers."""
    row, _, _ = ask(db, cfg)
    engines = [Database(db.url) for _ in range(16)]
    results = run_at_once(
        [
            (
                lambda i=i: fasttrack.decide(
                    engines[i], cfg, row.id, ["U0CAROL", "U0STEW"][i % 2], approve=i % 3 != 0, reason="No", now=NOW
                )
            )
            for i in range(16)
        ]
    )
    for engine in engines:
        engine.dispose()
    assert sum(1 for r in results if r.changed) == 1 and not any(isinstance(r, Exception) for r in results)
    assert len([e for e in fasttrack.history(db, row.id) if e.kind in ("approved", "denied")]) == 1
    assert fasttrack.get(db, row.id).state in ("approved", "denied")


def test_two_approvals_at_once_never_overrun_the_budget(db, cfg):
    """Two requests of one team, budget 1, approved at the same moment by the two approvers."""
    for _ in range(10):
        first, _, _ = ask(db, cfg)
        second, _, _ = ask(db, cfg)
        engines = [Database(db.url) for _ in range(3)]
        clicks = [(first.id, "U0CAROL"), (second.id, "U0STEW"), (second.id, "U0CAROL")]  # the last: a second click
        results = run_at_once(
            [
                partial(fasttrack.decide, engine, cfg, rid, user, approve=True, now=NOW)
                for engine, (rid, user) in zip(engines, clicks, strict=True)
            ]
        )
        for engine in engines:
            engine.dispose()
        assert sum(1 for r in results if not isinstance(r, Exception) and r.changed) == 1
        assert sum(1 for r in results if not isinstance(r, Exception) and r.rerouted) == 1
        # a click that lost to a re-route is refused: the request no longer names a regular approver
        assert all("backup approver decides it" in str(r) for r in results if isinstance(r, Exception))
        states = sorted((fasttrack.get(db, x.id).state, fasttrack.get(db, x.id).over_budget) for x in (first, second))
        assert states == [("approved", False), ("pending", True)]
        assert fasttrack.team_budget(db, cfg, "eng", NOW).approved == 1
        clean_fasttracks(db)


def clean_fasttracks(db) -> None:

    with db.engine.begin() as conn:
        for table in ("outbox", "fasttrack_event", "fasttrack"):
            conn.execute(text(f"DELETE FROM {table}"))


def test_a_decision_reaches_whoever_owns_the_gate(db, cfg):

    def owned_by(owner: str):
        rights = tuple(
            Right(**{**r.model_dump(), "owns_execution": owner}) if r.element == "QA sign-off" else r
            for r in cfg.rights
        )
        return cfg.model_copy(update={"rights": rights})

    def notices(request_id: int) -> list[str]:
        with db.read() as s:
            return [
                o.channel
                for o in s.exec(
                    select(Outbox).where(
                        Outbox.item == f"fasttrack:{request_id}", Outbox.render == "fasttrack_owner_notice"
                    )
                )
            ]

    items(db, cfg, 50, "eng")  # a budget of 5: every request here is within it
    for owner, decider, approve, expected in (
        ("qa", "U0CAROL", True, ["C0QA"]),  # a team: its channel, its member decided or not
        ("U0PMO", "U0STEW", False, ["U0PMO"]),  # a person: a DM, denied too
        ("U0STEW", "U0STEW", True, []),  # not the decider about their own decision
        ("U0BOB", "U0CAROL", True, []),
    ):  # nor the requester, who has the decision's DM
        rules = owned_by(owner)
        row, _, _ = ask(db, rules)
        assert notices(row.id) == []  # asked: nothing for the owner yet
        fasttrack.decide(
            db, rules, row.id, decider, approve=approve, reason=None if approve else "Use the standard path", now=NOW
        )
        assert notices(row.id) == expected, owner
