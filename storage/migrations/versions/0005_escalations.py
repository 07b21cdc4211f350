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
    # ADD COLUMN, not a table rebuild: SQLite could not drop a table others refer to
    op.add_column("handoff", sa.Column("waiting_since", sa.DateTime(), nullable=True))
    op.add_column("handoff", sa.Column("snoozes", sa.Integer(), nullable=False, server_default="0"))
    op.add_column("handoff", sa.Column("level", sa.Integer(), nullable=False, server_default="0"))
    op.add_column("handoff", sa.Column("next_escalation_at", sa.DateTime(), nullable=True))
    op.create_index("ix_handoff_escalation", "handoff", ["next_escalation_at"])
    # open handoffs start their clock at their last change: the clock's first sweep sets the rest
    op.execute("UPDATE handoff SET waiting_since = updated_at, next_escalation_at = updated_at"
               " WHERE state IN ('open', 'rework_requested', 'clarification_requested')")
    op.add_column("fasttrack", sa.Column("escalated", sa.Boolean(), nullable=False, server_default=sa.false()))


def downgrade() -> None:
    with op.batch_alter_table("fasttrack") as batch:
        batch.drop_column("escalated")
    with op.batch_alter_table("handoff") as batch:
        batch.drop_index("ix_handoff_escalation")
        for column in ("next_escalation_at", "level", "snoozes", "waiting_since"):
            batch.drop_column(column)
