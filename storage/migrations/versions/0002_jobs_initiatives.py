"""The job ledger (exactly-once side effects), improvement initiatives, headcount records, closed months'
figures, and an index that answers "handoffs created in a month, by boundary" on its own.

Revision ID: 0002
Revises: 0001
"""
import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "job_ledger",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("job", sa.String(length=40), nullable=False),
        sa.Column("period", sa.String(length=20), nullable=False),
        sa.Column("target", sa.String(length=80), nullable=False),
        sa.Column("status", sa.String(length=10), nullable=False),
        sa.Column("token", sa.String(length=32), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("channel", sa.String(length=20), nullable=True),
        sa.Column("ref", sa.String(length=40), nullable=True),
        sa.Column("error", sa.String(length=200), nullable=True),
        sa.Column("claimed_at", sa.DateTime(), nullable=False),
        sa.Column("updated_at", sa.DateTime(), nullable=False),
        sa.UniqueConstraint("job", "period", "target", name="uq_job_ledger_key"),
    )
    op.create_index("ix_job_ledger_status", "job_ledger", ["status", "updated_at"])

    op.create_table(
        "initiative",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("team", sa.String(length=40), nullable=False),
        sa.Column("period", sa.String(length=7), nullable=False),
        sa.Column("text", sa.String(length=300), nullable=False),
        sa.Column("metric", sa.String(length=30), nullable=False),
        sa.Column("owner", sa.String(length=20), nullable=False),
        sa.Column("set_by", sa.String(length=20), nullable=False),
        sa.Column("set_at", sa.DateTime(), nullable=False),
        sa.Column("baseline_period", sa.String(length=7), nullable=False),
        sa.Column("baseline", sa.Float(), nullable=True),
    )
    op.create_index("ix_initiative_team_period", "initiative", ["team", "period"])

    op.create_table(
        "headcount",
        sa.Column("period", sa.String(length=7), primary_key=True),
        sa.Column("team", sa.String(length=40), primary_key=True),
        sa.Column("members", sa.Integer(), nullable=False),
    )

    op.create_table(
        "month_rollup",
        sa.Column("period", sa.String(length=7), primary_key=True),
        sa.Column("start", sa.DateTime(), nullable=False),
        sa.Column("end", sa.DateTime(), nullable=False),
        sa.Column("computed_at", sa.DateTime(), nullable=False),
        sa.Column("data", sa.JSON(), nullable=False),
    )
    op.create_index("ix_handoff_created_teams", "handoff", ["created_at", "from_team", "to_team"])
    op.drop_index("ix_handoff_created_at", "handoff")


def downgrade() -> None:
    op.create_index("ix_handoff_created_at", "handoff", ["created_at"])
    op.drop_index("ix_handoff_created_teams", "handoff")
    op.drop_table("month_rollup")
    op.drop_table("headcount")
    op.drop_table("initiative")
    op.drop_table("job_ledger")
