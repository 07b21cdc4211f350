"""The pulse's anonymity as a property: closed months frozen at close (pulse_month, with the groups they were
protected against).

Revision ID: 0012
Revises: 0011
"""
import sqlalchemy as sa
from alembic import op

revision = "0012"
down_revision = "0011"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "pulse_month",
        sa.Column("period", sa.String(7), primary_key=True),
        sa.Column("frozen_at", sa.DateTime(), nullable=False),
        sa.Column("figures", sa.JSON(), nullable=False),
        sa.Column("groups", sa.JSON(), nullable=False),
    )


def downgrade() -> None:
    op.drop_table("pulse_month")
