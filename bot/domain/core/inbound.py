"""Deliveries from outside, handled once: an Events API delivery's `event_id` (Slack retries one it thinks
was lost, and may deliver it twice) is recorded with a unique key in the transaction that acts on it."""

from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy import delete
from sqlmodel import Session

from storage.db import Database
from storage.models import SlackEvent

EVENT_KEEP = timedelta(days=1)  # Slack retries an event within minutes; a day of event ids is plenty


def first_delivery(s: Session, db: Database, event_id: str, now: datetime) -> bool:
    """Record an Events API delivery's `event_id` in the caller's transaction: False when it was handled
    before (a duplicate, or Slack's retry of it). Ids older than EVENT_KEEP are pruned."""
    first = s.execute(
        db.insert(SlackEvent)
        .values(event_id=event_id[:40], seen_at=now)
        .on_conflict_do_nothing(index_elements=["event_id"])
        .returning(SlackEvent.event_id)
    ).first()
    if first is None:  # (RETURNING, not rowcount: psycopg gives -1 for a skipped row)
        return False
    s.execute(delete(SlackEvent).where(SlackEvent.seen_at < now - EVENT_KEEP))
    return True
