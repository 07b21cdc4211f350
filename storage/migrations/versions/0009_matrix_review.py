"""The quarterly decision-rights matrix review: who confirmed their rows for which quarter, and the changes
proposed (append-only).

Revision ID: 0009
Revises: 0008
"""
import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "matrix_review_event",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("quarter", sa.String(7), nullable=False),
        sa.Column("user", sa.String(20), nullable=False),
        sa.Column("kind", sa.String(10), nullable=False),
        sa.Column("once", sa.String(10), nullable=True),
        sa.Column("at", sa.DateTime(), nullable=False),
        sa.Column("elements", sa.JSON(), nullable=False),
        sa.Column("text", sa.Text(), nullable=True),
        sa.Column("channel", sa.String(20), nullable=True),
        sa.UniqueConstraint("quarter", "user", "once", name="uq_matrix_review_once"),
    )
    op.create_index("ix_matrix_review_quarter", "matrix_review_event", ["quarter", "kind"])


def downgrade() -> None:
    op.drop_table("matrix_review_event")
