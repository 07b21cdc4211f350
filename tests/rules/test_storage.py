"""Storage on SQLite and PostgreSQL: migrations match the models, events rebuild the state, and SQLite
takes concurrent writers without "database is locked"."""

from __future__ import annotations

import threading
from datetime import datetime, timedelta

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import text
from sqlmodel import select

from bot.domain import handoffs
from bot.domain.core import outbox
from bot.domain.core.items import RuleError
from bot.domain.handoffs import Draft
from storage.db import Database, normalize_url
from storage.migrate import upgrade
from storage.models import Handoff, SQLModel
from tests.support.databases import scratch_database


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
    for call in (
        lambda: handoffs.accept(db, cfg, h.id, "U0ALICE"),
        lambda: handoffs.resubmit(db, cfg, h.id, "U0BOB", [], None, None),
    ):
        try:
            call()
            raise AssertionError("allowed")
        except RuleError as exc:
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
    except RuleError as exc:
        assert exc.field == "criteria"


def test_sqlite_concurrent_writers_do_not_fail(tmp_path, cfg):

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


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_0004_carries_the_job_ledger_and_cards_into_the_outbox(tmp_path, cfg, backend):
    """An installation upgraded with a posted digest, a sent prompt and a fast-track card sends none of them
    again: the ledger's sent rows and the cards become sent outbox rows; an unsent ledger row is left out."""

    db = scratch_database(backend, tmp_path)
    upgrade(db.engine, "0003")
    t = datetime(2026, 11, 2, 8)
    with db.engine.begin() as conn:
        for target, status, ref in (
            ("C0SYNC:1", "sent", "1.1"),
            ("C0SYNC:chart", "sent", "F1"),
            ("C0SYNC:2", "failed", None),
        ):
            conn.execute(
                text(
                    "INSERT INTO job_ledger (job, period, target, status, token, attempts, channel, ref, claimed_at, updated_at)"
                    " VALUES ('digest', '2026-10', :t, :s, 'x', 1, 'C0SYNC', :r, :at, :at)"
                ),
                dict(t=target, s=status, r=ref, at=t),
            )
        conn.execute(
            text(
                "INSERT INTO job_ledger (job, period, target, status, token, attempts, channel, ref, claimed_at, updated_at)"
                " VALUES ('initiative-prompt', '2026-11', 'eng', 'sent', 'x', 1, 'C0ENG', '2.2', :at, :at)"
            ),
            dict(at=t),
        )
        conn.execute(
            text(
                "INSERT INTO fasttrack (id, team, requester, element, reason, what, justification, state, over_budget,"
                " deciders, version, created_at, updated_at) VALUES (7, 'eng', 'U0BOB', 'QA sign-off', 'Other', 'w', 'j',"
                " 'pending', false, '[\"U0STEW\"]', 1, :at, :at)"
            ),
            dict(at=t),
        )
        conn.execute(
            text("INSERT INTO fasttrack_card (request_id, \"user\", channel, ts) VALUES (7, 'U0STEW', 'D0STEW', '3.3')")
        )
        conn.execute(
            text(
                "INSERT INTO fasttrack_event (request_id, seq, kind, actor, at, data) VALUES (7, 1, 'requested', 'U0BOB', :at, '{}')"
            ),
            dict(at=t),
        )
        for hid, channel, ts in ((5, "C0ENG", "4.4"), (6, None, None)):  # a card posted, and one never posted
            conn.execute(
                text(
                    "INSERT INTO handoff (id, from_team, to_team, sender, title, criteria, criteria_met, state, round, version,"
                    " channel, message_ts, created_at, updated_at) VALUES (:id, 'design', 'eng', 'U0ALICE', 't', '[]', '[]',"
                    " 'open', 1, 1, :c, :ts, :at, :at)"
                ),
                dict(id=hid, c=channel, ts=ts, at=t),
            )
            conn.execute(
                text(
                    "INSERT INTO handoff_event (handoff_id, seq, kind, actor, at, round, data)"
                    " VALUES (:id, 1, 'created', 'U0ALICE', :at, 1, '{}')"
                ),
                dict(id=hid, at=t),
            )
    upgrade(db.engine)  # tables others refer to must not be rebuilt (SQLite refused to drop them)
    rows = {r.key: r for r in outbox.listing(db, ["sent", "pending", "failed"])}
    assert set(rows) == {
        "digest:2026-10:C0SYNC:1",
        "digest:2026-10:C0SYNC:chart",
        "prompt:2026-11:eng",
        "fasttrack:7:card:U0STEW",
        "handoff:5:card",
    }
    assert {(k, r.status, r.result_channel, r.result_ts) for k, r in rows.items()} == {
        ("digest:2026-10:C0SYNC:1", "sent", "C0SYNC", "1.1"),
        ("digest:2026-10:C0SYNC:chart", "sent", "C0SYNC", "F1"),
        ("prompt:2026-11:eng", "sent", "C0ENG", "2.2"),
        ("fasttrack:7:card:U0STEW", "sent", "D0STEW", "3.3"),
        ("handoff:5:card", "sent", "C0ENG", "4.4"),
    }

    assert handoffs.accept(db, cfg, 5, "U0BOB").keys[0] == "handoff:5:card:update"  # its update finds the card
    assert handoffs.get(db, 6).next_escalation_at is not None  # open handoffs get a clock
    assert rows["fasttrack:7:card:U0STEW"].params == {"id": 7, "user": "U0STEW"}  # its updates find it
    db.dispose()
