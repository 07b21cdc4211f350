"""Storage on SQLite and PostgreSQL: migrations match the models, events rebuild the state, and SQLite
takes concurrent writers without "database is locked"."""

from __future__ import annotations

import threading
from datetime import datetime, timedelta

from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext

from bot import handoffs
from bot.handoffs import Draft, HandoffError
from storage.db import Database, normalize_url
from storage.models import Handoff, SQLModel
from sqlmodel import select


def draft(title="Spec", met=("Specification with acceptance criteria", "Wireframes", "Glossary of terms")):
    return Draft(from_team="design", to_team="eng", title=title, criteria_met=list(met))


def test_migrations_match_the_models(db):
    with db.engine.connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn), SQLModel.metadata)
    assert diff == []


def test_events_rebuild_every_handoff(db, cfg):
    t = datetime(2026, 3, 2, 9)
    a = handoffs.create(db, cfg, "U0ALICE", draft("A"), t)
    handoffs.send_back(db, cfg, a.id, "U0BOB", "rework_requested", "More", t + timedelta(hours=1))
    handoffs.resubmit(db, cfg, a.id, "U0ALICE", list(a.criteria), "done", None, t + timedelta(hours=2))
    handoffs.send_back(db, cfg, a.id, "U0STEW", "clarification_requested", "Which?", t + timedelta(hours=3))
    handoffs.resubmit(db, cfg, a.id, "U0AMY", list(a.criteria), None, None, t + timedelta(hours=4))
    handoffs.accept(db, cfg, a.id, "U0BOB", t + timedelta(hours=5))
    b = handoffs.create(db, cfg, "U0ALICE", draft("B"), t)
    handoffs.cancel(db, cfg, b.id, "U0ALICE", t + timedelta(hours=1))
    with db.read() as s:
        rows = s.exec(select(Handoff)).all()
    for h in rows:
        assert handoffs.replay(handoffs.history(db, h.id)) == {c: getattr(h, c) for c in handoffs.COLUMNS}
    got = handoffs.get(db, a.id)
    assert (got.state, got.round, got.accepted_at) == ("accepted", 3, t + timedelta(hours=5))


def test_rules_at_the_domain_level(db, cfg):
    t = datetime(2026, 3, 2, 9)
    h = handoffs.create(db, cfg, "U0ALICE", draft(), t)
    # Not from the sender's side; not twice; not after the end.
    for call in (lambda: handoffs.accept(db, cfg, h.id, "U0ALICE"), lambda: handoffs.resubmit(db, cfg, h.id, "U0BOB", [], None, None)):
        try:
            call()
            raise AssertionError("allowed")
        except HandoffError as exc:
            assert "Only" in str(exc)
    assert handoffs.resubmit(db, cfg, h.id, "U0ALICE", list(h.criteria), None, None).changed is False  # not sent back
    assert handoffs.accept(db, cfg, h.id, "U0BOB").changed is True
    assert handoffs.accept(db, cfg, h.id, "U0BOB").changed is False
    assert handoffs.cancel(db, cfg, h.id, "U0ALICE").changed is False
    # Centralized: a resubmission must meet every criterion.
    h2 = handoffs.create(db, cfg, "U0ALICE", draft("C"), t)
    handoffs.send_back(db, cfg, h2.id, "U0BOB", "rework_requested", "x")
    try:
        handoffs.resubmit(db, cfg, h2.id, "U0ALICE", ["Wireframes"], None, None)
        raise AssertionError("allowed")
    except HandoffError as exc:
        assert exc.field == "criteria"


def test_sqlite_concurrent_writers_do_not_fail(tmp_path, cfg):
    from storage.migrate import upgrade

    db = Database(f"sqlite:///{tmp_path}/c.db")
    upgrade(db.engine)
    ids = [handoffs.create(db, cfg, "U0ALICE", draft(f"H{i}")).id for i in range(40)]
    errors = []

    def work(chunk):
        try:
            for i in chunk:
                handoffs.send_back(db, cfg, i, "U0BOB", "rework_requested", "again")
                handoffs.resubmit(db, cfg, i, "U0ALICE", list(cfg.boundary("design", "eng").criteria), None, None)
                handoffs.accept(db, cfg, i, "U0BOB")
                handoffs.create(db, cfg, "U0ALICE", draft("more"))
        except Exception as exc:  # noqa: BLE001
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(ids[k::8],)) for k in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert all(handoffs.get(db, i).state == "accepted" for i in ids)


def test_url_normalisation():
    assert normalize_url("postgres://u@h/d") == "postgresql+psycopg://u@h/d"
    assert normalize_url("postgresql://u@h/d") == "postgresql+psycopg://u@h/d"
    assert normalize_url("sqlite:///x.db") == "sqlite:///x.db"
