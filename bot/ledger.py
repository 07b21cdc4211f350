"""Exactly-once side effects for scheduled jobs: claim, send, record. No Slack in here.

Every side effect (a digest message, the chart upload, a team's prompt) has a ledger row keyed by
(job, period, target). A run claims the row before it sends, and records Slack's `ts` (or the failure
Slack gave) after. So:
- a rerun, a restart or a second clock finds the row `sent` and sends nothing;
- a run that died between claim and send leaves the row `claimed`; once the lease has passed, a later
  run takes it over and sends;
- a refusal from Slack (`channel_not_found`, `not_in_channel`, ...) is stored with its reason and retried
  by a later run, after a back-off that doubles with each attempt (an operator's `run-job` retries now).

Chat messages have no idempotency key, so a process that dies *after* Slack accepted a message but
*before* the row is marked sent would send it again on the retry: that window is the one run-time
statement between the two calls.
"""

from __future__ import annotations

import logging
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import update
from sqlmodel import select

from storage.db import Database
from storage.models import JobLedger, LedgerStatus

log = logging.getLogger("steward")
LEASE = timedelta(minutes=10)
RETRY_AFTER = timedelta(minutes=5)
RETRY_MAX = timedelta(hours=6)


@dataclass(frozen=True)
class Claim:
    id: int
    token: str
    job: str
    period: str
    target: str
    attempts: int


def retry_after(attempts: int) -> timedelta:
    """The wait after the `attempts`-th failure: 5 min, 10, 20, ... at most 6 h."""
    return min(RETRY_AFTER * 2 ** min(max(attempts - 1, 0), 10), RETRY_MAX)


def claim(db: Database, job: str, period: str, target: str, now: datetime, *, force: bool = False) -> Claim | None:
    """Claim a side effect for this run, or None when it is sent, being sent, or failed too recently
    (`force` skips the back-off, never the lease)."""
    token = secrets.token_hex(8)
    with db.write() as session:
        values = dict(job=job, period=period, target=target, status=LedgerStatus.CLAIMED, token=token,
                      attempts=1, claimed_at=now, updated_at=now)
        inserted = session.execute(
            db.insert(JobLedger).values(**values).on_conflict_do_nothing(index_elements=["job", "period", "target"]).returning(JobLedger.id)
        ).scalar()
        if inserted is not None:
            return Claim(inserted, token, job, period, target, 1)
        row = session.exec(select(JobLedger).where(JobLedger.job == job, JobLedger.period == period, JobLedger.target == target)).one()
        if row.status == LedgerStatus.SENT:
            return None
        if row.status == LedgerStatus.CLAIMED and now - row.claimed_at < LEASE:
            return None  # another run is sending it
        if row.status == LedgerStatus.FAILED and not force and now < row.updated_at + retry_after(row.attempts):
            return None
        before = (row.status, row.attempts, row.claimed_at)
        taken = session.execute(
            update(JobLedger)
            .where(JobLedger.id == row.id, JobLedger.token == row.token, JobLedger.status == row.status)
            .values(status=LedgerStatus.CLAIMED, token=token, attempts=JobLedger.attempts + 1, claimed_at=now, updated_at=now)
        )
        if taken.rowcount != 1:
            return None
        if before[0] == LedgerStatus.CLAIMED:
            log.warning("ledger: taking over %s/%s/%s, claimed at %s and never sent", job, period, target, before[2])
        return Claim(row.id, token, job, period, target, before[1] + 1)


def _finish(db: Database, claim: Claim, now: datetime, **values) -> bool:
    with db.write() as session:
        result = session.execute(
            update(JobLedger).where(JobLedger.id == claim.id, JobLedger.token == claim.token).values(updated_at=now, **values)
        )
        return result.rowcount == 1


def sent(db: Database, claim: Claim, now: datetime, channel: str | None, ref: str | None) -> bool:
    return _finish(db, claim, now, status=LedgerStatus.SENT, channel=channel, ref=ref, error=None)


def failed(db: Database, claim: Claim, now: datetime, error: str) -> bool:
    log.warning("%s %s → %s failed (attempt %d): %s", claim.job, claim.period, claim.target, claim.attempts, error)
    return _finish(db, claim, now, status=LedgerStatus.FAILED, error=error[:200])


def entry(db: Database, job: str, period: str, target: str) -> JobLedger | None:
    with db.read() as session:
        return session.exec(select(JobLedger).where(JobLedger.job == job, JobLedger.period == period, JobLedger.target == target)).first()


def entries(db: Database, job: str, period: str) -> list[JobLedger]:
    with db.read() as session:
        return list(session.exec(select(JobLedger).where(JobLedger.job == job, JobLedger.period == period).order_by(JobLedger.id)))
