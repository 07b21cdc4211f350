"""A handoff remembers its card's permalink (chat.getPermalink, asked when the card is posted), so the
digest links each signal to the handoffs behind it.

Revision ID: 0007_digest
Revises: 0006
"""
import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("handoff", sa.Column("permalink", sa.String(length=500), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("handoff") as batch:
        batch.drop_column("permalink")
