"""The escalation clock of each handoff's round, and an index that finds the handoffs due for a look
without reading the others; a fast-track request remembers it was escalated.

Revision ID: 0005
Revises: 0004
"""
import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("handoff") as batch:
        batch.add_column(sa.Column("waiting_since", sa.DateTime(), nullable=True))
        batch.add_column(sa.Column("snoozes", sa.Integer(), nullable=False, server_default="0"))
        batch.add_column(sa.Column("level", sa.Integer(), nullable=False, server_default="0"))
        batch.add_column(sa.Column("next_escalation_at", sa.DateTime(), nullable=True))
        batch.create_index("ix_handoff_escalation", ["next_escalation_at"])
    # open handoffs start their clock at their last change: the clock's first sweep sets the rest
    op.execute("UPDATE handoff SET waiting_since = updated_at, next_escalation_at = updated_at"
               " WHERE state IN ('open', 'rework_requested', 'clarification_requested')")
    with op.batch_alter_table("fasttrack") as batch:
        batch.add_column(sa.Column("escalated", sa.Boolean(), nullable=False, server_default=sa.false()))


def downgrade() -> None:
    with op.batch_alter_table("fasttrack") as batch:
        batch.drop_column("escalated")
    with op.batch_alter_table("handoff") as batch:
        batch.drop_index("ix_handoff_escalation")
        for column in ("next_escalation_at", "level", "snoozes", "waiting_since"):
            batch.drop_column(column)
