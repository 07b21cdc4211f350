"""Fast-track exception requests, their append-only decisions, and the cards that show them.

Revision ID: 0003
Revises: 0002
"""
import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "fasttrack",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("team", sa.String(length=40), nullable=False),
        sa.Column("requester", sa.String(length=20), nullable=False),
        sa.Column("element", sa.String(length=75), nullable=False),
        sa.Column("reason", sa.String(length=75), nullable=False),
        sa.Column("what", sa.String(length=300), nullable=False),
        sa.Column("justification", sa.Text(), nullable=False),
        sa.Column("handoff_id", sa.Integer(), nullable=True),
        sa.Column("needed_by", sa.Date(), nullable=True),
        sa.Column("state", sa.String(length=10), nullable=False),
        sa.Column("over_budget", sa.Boolean(), nullable=False),
        sa.Column("deciders", sa.JSON(), nullable=False),
        sa.Column("decided_by", sa.String(length=20), nullable=True),
        sa.Column("decided_at", sa.DateTime(), nullable=True),
        sa.Column("decision_reason", sa.Text(), nullable=True),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.Column("updated_at", sa.DateTime(), nullable=False),
    )
    op.create_index("ix_fasttrack_team_state", "fasttrack", ["team", "state"])
    op.create_index("ix_fasttrack_requester", "fasttrack", ["requester", "state"])
    op.create_index("ix_fasttrack_decided_at", "fasttrack", ["decided_at"])
    op.create_index("ix_fasttrack_created_at", "fasttrack", ["created_at"])

    op.create_table(
        "fasttrack_event",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("request_id", sa.Integer(), sa.ForeignKey("fasttrack.id"), nullable=False),
        sa.Column("seq", sa.Integer(), nullable=False),
        sa.Column("kind", sa.String(length=20), nullable=False),
        sa.Column("actor", sa.String(length=20), nullable=False),
        sa.Column("at", sa.DateTime(), nullable=False),
        sa.Column("reason", sa.Text(), nullable=True),
        sa.Column("data", sa.JSON(), nullable=False),
        sa.UniqueConstraint("request_id", "seq", name="uq_fasttrack_event_seq"),
    )
    op.create_index("ix_fasttrack_event_kind_at", "fasttrack_event", ["kind", "at"])

    op.create_table(
        "fasttrack_card",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("request_id", sa.Integer(), sa.ForeignKey("fasttrack.id"), nullable=False),
        sa.Column("user", sa.String(length=20), nullable=False),
        sa.Column("channel", sa.String(length=20), nullable=False),
        sa.Column("ts", sa.String(length=40), nullable=False),
        sa.UniqueConstraint("request_id", "user", name="uq_fasttrack_card"),
    )


def downgrade() -> None:
    op.drop_table("fasttrack_card")
    op.drop_table("fasttrack_event")
    op.drop_table("fasttrack")
