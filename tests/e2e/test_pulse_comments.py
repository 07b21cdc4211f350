"""A comment is stored once, shown where its author chooses (the organisation, or one of their teams that at
least `min_group` people were asked in): what the database holds about a comment never narrows its author to
fewer than `min_group` people. Rules called directly, the comment form through the served app, and the
migration that converts the rows stored per group."""

from __future__ import annotations

from datetime import datetime, timedelta

import pytest
from sqlalchemy import text
from sqlmodel import select

from bot.domain import pulse
from bot.domain.core.items import RuleError
from storage.models import PulseComment
from tests.support import pulse as flow
from tests.support.anonymity import SECRET, config
from tests.support.databases import scratch_database
from tests.support.harness import view_of

MONDAY = datetime(2026, 11, 2)
WEEK = pulse.week_id(MONDAY.date())


def comments(db) -> list[tuple[str, str]]:
    with db.read() as session:
        return sorted((c.scope, c.text) for c in session.exec(select(PulseComment)))


def test_a_comment_is_stored_once_where_its_author_chooses(db):
    cfg = config({"design": 6, "eng": 6, "qa": 3}, shared={"U0BOB": ["design", "eng", "qa"]})
    sealer = pulse.Sealer(SECRET)
    pulse.send_due(db, cfg, MONDAY + timedelta(hours=11), {})
    places = pulse.places(db, cfg, "U0BOB", WEEK)
    assert [p.id for p in places] == [pulse.ORG, "design", "eng"]  # qa has 4 people: under min_group
    at = MONDAY + timedelta(hours=12)
    pulse.comment(db, sealer, "U0BOB", WEEK, "My lead ignores every handoff we send", at)
    assert comments(db) == [(pulse.ORG, "My lead ignores every handoff we send")]  # once, no team named
    pulse.comment(db, sealer, "U0BOB", WEEK, "Design reviews wait a week", at, where="design", cfg=cfg)
    assert comments(db) == [("design", "Design reviews wait a week")]  # replaced, still one row
    with pytest.raises(RuleError) as refused:
        pulse.comment(db, sealer, "U0BOB", WEEK, "QA is slow", at, where="qa", cfg=cfg)
    assert refused.value.field == "where" and comments(db) == [("design", "Design reviews wait a week")]
    with pytest.raises(RuleError):  # a team that is not theirs
        pulse.comment(db, sealer, "U0DESIGN0", WEEK, "x", at, where="eng", cfg=cfg)
    pulse.comment(db, sealer, "U0ENG1", WEEK, "Fine here", at)
    for user in pulse.members(cfg):
        pulse.answer(db, sealer, user, WEEK, at, score=3)
    s = pulse.figures(db, cfg, sealer, "2026-11", pulse.final_at(cfg.pulse, "2026-11"))
    shown = {g for g, f in s.teams.items() if f is not None}
    if "design" in shown:
        assert s.teams["design"].comments == ["Design reviews wait a week"]
        assert s.comments == ["Fine here"]
    else:  # design held back: its comment shows under the organisation, without a team
        assert sorted(s.comments) == ["Design reviews wait a week", "Fine here"]
    assert all(not f.comments for g, f in s.teams.items() if f is not None and g != "design")


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_0012_keeps_every_comment_and_drops_the_copies_that_named_the_author_teams(tmp_path, backend):
    from storage.migrate import upgrade

    db = scratch_database(backend, tmp_path)
    upgrade(db.engine, "0011")
    rows = [  # Bob (design, eng) and Carol (eng), as 0011's code stored them: once per group
        ("k1", "2026-W45", "*", "My lead ignores every handoff we send"),
        ("k2", "2026-W45", "design", "My lead ignores every handoff we send"),
        ("k3", "2026-W45", "eng", "My lead ignores every handoff we send"),
        ("k4", "2026-W45", "*", "Fine here"),
        ("k5", "2026-W45", "eng", "Fine here"),
        ("k6", "2026-W46", "eng", "an orphan team copy"),  # no organisation row: kept as it is
    ]
    with db.engine.begin() as conn:
        for key, week, scope, body in rows:
            conn.execute(
                text("INSERT INTO pulse_comment (key, week, scope, text, mixed) VALUES (:k, :w, :s, :t, :m)"),
                dict(k=key, w=week, s=scope, t=body, m=True),
            )
    upgrade(db.engine)
    with db.engine.connect() as conn:
        after = sorted(tuple(r) for r in conn.execute(text("SELECT key, scope, text FROM pulse_comment")))
    assert after == [
        ("k1", "*", "My lead ignores every handoff we send"),
        ("k4", "*", "Fine here"),
        ("k6", "eng", "an orphan team copy"),
    ]


def test_the_comment_form_offers_the_author_teams_of_enough_people(app, fake, db):
    day = flow.monday(1)
    week = flow.week_of(day)
    flow.job(db, fake, flow.at(day, 20))
    flow.click(app, fake, "U0AMY", "pulse_comment", week)
    view = view_of(fake.wait("views.open")[-1])
    where = next(b for b in view["blocks"] if b.get("block_id") == "where")
    # Amy is in Design (2 people: under min_group 3) and Engineering (4)
    assert [o["value"] for o in where["element"]["options"]] == [pulse.ORG, "eng"]
    r = app.submit("U0AMY", view, {"comment": "handoffs wait", "where": "design"})  # forged: not offered
    assert r.status == 200 and "where" in r.json()["errors"] and comments(db) == []
    r = app.submit("U0AMY", view, {"comment": "handoffs wait", "where": "eng"})
    assert r.status == 200 and not r.raw
    assert comments(db) == [("eng", "handoffs wait")]
    flow.click(app, fake, "U0ALICE", "pulse_comment", week)  # Alice: only Design, too small: no choice
    view = view_of(fake.wait("views.open", 2)[-1])
    assert all(b.get("block_id") != "where" for b in view["blocks"])
