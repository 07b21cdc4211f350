"""The job ledger: a side effect is claimed once, retried after a crash or a refusal, never sent twice."""

from __future__ import annotations

import threading
from datetime import datetime, timedelta

from bot import ledger
from storage.db import Database

T = datetime(2026, 11, 2, 8)


def test_a_sent_effect_is_never_claimed_again(db):
    claim = ledger.claim(db, "digest", "2026-10", "C0SYNC:1", T)
    assert claim is not None and claim.attempts == 1
    assert ledger.sent(db, claim, T, "C0SYNC", "1700000000.000001")
    for later in (T, T + timedelta(days=40)):
        assert ledger.claim(db, "digest", "2026-10", "C0SYNC:1", later, force=True) is None
    row = ledger.entry(db, "digest", "2026-10", "C0SYNC:1")
    assert (row.status, row.ref, row.channel) == ("sent", "1700000000.000001", "C0SYNC")
    # another target, job or period is another side effect
    assert ledger.claim(db, "digest", "2026-10", "C0SYNC:2", T) is not None
    assert ledger.claim(db, "digest", "2026-09", "C0SYNC:1", T) is not None


def test_a_run_that_died_between_claim_and_send_is_taken_over_after_the_lease(db):
    dead = ledger.claim(db, "digest", "2026-10", "C0SYNC:1", T)
    assert ledger.claim(db, "digest", "2026-10", "C0SYNC:1", T + timedelta(minutes=9), force=True) is None  # maybe still sending
    taken = ledger.claim(db, "digest", "2026-10", "C0SYNC:1", T + ledger.LEASE)
    assert taken is not None and taken.attempts == 2 and taken.token != dead.token
    # the dead run, had it woken up, can no longer mark the row
    assert not ledger.sent(db, dead, T, "C0SYNC", "1")
    assert ledger.sent(db, taken, T, "C0SYNC", "2") and ledger.entry(db, "digest", "2026-10", "C0SYNC:1").ref == "2"


def test_a_refusal_is_recorded_and_retried_after_a_back_off(db):
    claim = ledger.claim(db, "digest", "2026-10", "C0SYNC:1", T)
    ledger.failed(db, claim, T, "channel_not_found")
    row = ledger.entry(db, "digest", "2026-10", "C0SYNC:1")
    assert (row.status, row.error, row.attempts) == ("failed", "channel_not_found", 1)
    assert ledger.claim(db, "digest", "2026-10", "C0SYNC:1", T + timedelta(minutes=4)) is None
    second = ledger.claim(db, "digest", "2026-10", "C0SYNC:1", T + timedelta(minutes=5))
    assert second is not None and second.attempts == 2
    ledger.failed(db, second, T + timedelta(minutes=5), "not_in_channel")
    # the wait doubles: 10 minutes after the second failure; an operator's forced run does not wait
    assert ledger.claim(db, "digest", "2026-10", "C0SYNC:1", T + timedelta(minutes=14)) is None
    assert ledger.claim(db, "digest", "2026-10", "C0SYNC:1", T + timedelta(minutes=6), force=True) is not None
    assert [ledger.retry_after(n) for n in (1, 2, 3, 10)] == [timedelta(minutes=m) for m in (5, 10, 20, 360)]


def test_concurrent_claims_give_one_winner(db):
    """Eight runs (each with its own engine, like separate clock processes) claim the same effects."""
    wins: list[str] = []
    barrier = threading.Barrier(8)

    def contender(n: int) -> None:
        mine = Database(db.url)
        barrier.wait()
        for target in ("C0SYNC:1", "C0SYNC:2", "C0SYNC:chart"):
            if ledger.claim(mine, "digest", "2026-10", target, T) is not None:
                wins.append(target)
        mine.dispose()

    threads = [threading.Thread(target=contender, args=(n,)) for n in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(wins) == ["C0SYNC:1", "C0SYNC:2", "C0SYNC:chart"]
