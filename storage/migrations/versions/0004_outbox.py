"""The outbox: every message after an ack, written with the decision that causes it. It replaces the job
ledger and the fast-track card table (their rows are carried over, so nothing is posted again), and
handoffs and fast-track requests remember the modal they came from.

Revision ID: 0004
Revises: 0003
"""
from datetime import datetime, timezone

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    outbox = op.create_table(
        "outbox",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("key", sa.String(length=200), nullable=False),
        sa.Column("item", sa.String(length=60), nullable=False),
        sa.Column("kind", sa.String(length=10), nullable=False),
        sa.Column("channel", sa.String(length=20), nullable=False),
        sa.Column("anchor", sa.String(length=200), nullable=True),
        sa.Column("render", sa.String(length=40), nullable=False),
        sa.Column("params", sa.JSON(), nullable=False),
        sa.Column("actor", sa.String(length=20), nullable=True),
        sa.Column("status", sa.String(length=10), nullable=False),
        sa.Column("generation", sa.Integer(), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("check", sa.Boolean(), nullable=False),
        sa.Column("token", sa.String(length=32), nullable=True),
        sa.Column("next_at", sa.DateTime(), nullable=False),
        sa.Column("lease_until", sa.DateTime(), nullable=True),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.Column("updated_at", sa.DateTime(), nullable=False),
        sa.Column("sent_at", sa.DateTime(), nullable=True),
        sa.Column("result_channel", sa.String(length=20), nullable=True),
        sa.Column("result_ts", sa.String(length=40), nullable=True),
        sa.Column("error", sa.String(length=200), nullable=True),
        sa.UniqueConstraint("key", name="uq_outbox_key"),
    )
    op.create_index("ix_outbox_due", "outbox", ["status", "next_at"])
    op.create_index("ix_outbox_item", "outbox", ["item"])

    conn = op.get_bind()
    def moment(value):  # SQLite hands raw rows' datetimes back as text
        return datetime.fromisoformat(value) if isinstance(value, str) else value

    rows = []
    # The ledger's sent rows become sent outbox rows, so nothing is posted again; a row it had not sent is
    # left out, and the digest job writes it again (a digest is completed, never restarted).
    for job, period, target, attempts, channel, ref, claimed_at, updated_at in conn.execute(sa.text(
            "SELECT job, period, target, attempts, channel, ref, claimed_at, updated_at FROM job_ledger WHERE status = 'sent'")):
        claimed_at, updated_at = moment(claimed_at), moment(updated_at)
        if job == "digest":
            key, item, kind, render, params = f"digest:{period}:{target}", f"digest:{period}", "post", "static", {}
            if target.endswith(":chart"):
                kind, render, params = "upload", "digest_chart", {"period": period}
        else:
            key, item, kind, render, params = f"prompt:{period}:{target}", f"prompt:{period}", "post", "initiative_prompt", {
                "team": target, "period": period}
        rows.append(dict(key=key, item=item, kind=kind, channel=(channel or target.split(":")[0])[:20], anchor=None,
                         render=render, params=params, actor=None, status="sent", generation=1, attempts=attempts,
                         check=False, token=None, next_at=updated_at, lease_until=None, created_at=claimed_at,
                         updated_at=updated_at, sent_at=updated_at, result_channel=channel, result_ts=ref, error=None))
    now = datetime.now(timezone.utc).replace(tzinfo=None)
    for request_id, user, channel, ts in conn.execute(sa.text('SELECT request_id, "user", channel, ts FROM fasttrack_card')):
        rows.append(dict(key=f"fasttrack:{request_id}:card:{user or 'channel'}", item=f"fasttrack:{request_id}", kind="post",
                         channel=(user or channel)[:20], anchor=None, render="fasttrack_card",
                         params={"id": request_id, "user": user or None}, actor=None, status="sent", generation=1, attempts=1,
                         check=False, token=None, next_at=now, lease_until=None, created_at=now,
                         updated_at=now, sent_at=now, result_channel=channel, result_ts=ts, error=None))
    # the receiving teams' cards already posted: their updates and thread replies find them here
    for handoff_id, channel, ts in conn.execute(sa.text(
            "SELECT id, channel, message_ts FROM handoff WHERE channel IS NOT NULL AND message_ts IS NOT NULL")):
        rows.append(dict(key=f"handoff:{handoff_id}:card", item=f"handoff:{handoff_id}", kind="post", channel=channel[:20], anchor=None,
                         render="handoff_card", params={"id": handoff_id}, actor=None, status="sent", generation=1, attempts=1,
                         check=False, token=None, next_at=now, lease_until=None, created_at=now, updated_at=now, sent_at=now,
                         result_channel=channel, result_ts=ts, error=None))
    for row in rows:
        conn.execute(outbox.insert().values(**row))
    op.drop_table("job_ledger")
    op.drop_table("fasttrack_card")

    # ADD COLUMN and a unique index, not a table rebuild: SQLite could not drop a table others refer to
    op.add_column("handoff", sa.Column("view_id", sa.String(length=40), nullable=True))
    op.create_index("uq_handoff_view", "handoff", ["view_id"], unique=True)
    op.add_column("fasttrack", sa.Column("view_id", sa.String(length=40), nullable=True))
    op.create_index("uq_fasttrack_view", "fasttrack", ["view_id"], unique=True)


def downgrade() -> None:
    raise NotImplementedError("0004 carries the job ledger and card rows into the outbox; restore a backup to go back")
