"""Handoffs and their append-only event history.

Revision ID: 0001
Revises:
"""
import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "handoff",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("from_team", sa.String(length=40), nullable=False),
        sa.Column("to_team", sa.String(length=40), nullable=False),
        sa.Column("sender", sa.String(length=20), nullable=False),
        sa.Column("title", sa.String(length=150), nullable=False),
        sa.Column("link", sa.String(length=500), nullable=True),
        sa.Column("due_date", sa.Date(), nullable=True),
        sa.Column("notes", sa.Text(), nullable=True),
        sa.Column("criteria", sa.JSON(), nullable=False),
        sa.Column("criteria_met", sa.JSON(), nullable=False),
        sa.Column("state", sa.String(length=30), nullable=False),
        sa.Column("round", sa.Integer(), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("channel", sa.String(length=20), nullable=True),
        sa.Column("message_ts", sa.String(length=40), nullable=True),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.Column("updated_at", sa.DateTime(), nullable=False),
        sa.Column("accepted_at", sa.DateTime(), nullable=True),
    )
    op.create_index("ix_handoff_to_state", "handoff", ["to_team", "state"])
    op.create_index("ix_handoff_from_state", "handoff", ["from_team", "state"])
    op.create_index("ix_handoff_sender_state", "handoff", ["sender", "state"])
    op.create_index("ix_handoff_accepted_at", "handoff", ["accepted_at"])
    op.create_index("ix_handoff_created_at", "handoff", ["created_at"])

    op.create_table(
        "handoff_event",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("handoff_id", sa.Integer(), sa.ForeignKey("handoff.id"), nullable=False),
        sa.Column("seq", sa.Integer(), nullable=False),
        sa.Column("kind", sa.String(length=30), nullable=False),
        sa.Column("actor", sa.String(length=20), nullable=False),
        sa.Column("at", sa.DateTime(), nullable=False),
        sa.Column("round", sa.Integer(), nullable=False),
        sa.Column("reason", sa.Text(), nullable=True),
        sa.Column("data", sa.JSON(), nullable=False),
        sa.UniqueConstraint("handoff_id", "seq", name="uq_handoff_event_seq"),
    )
    op.create_index("ix_handoff_event_kind_at", "handoff_event", ["kind", "at"])


def downgrade() -> None:
    op.drop_table("handoff_event")
    op.drop_table("handoff")
