"""Pulse answers and comments say whether they have been rewritten with their whole week since written
(`bot.domain.pulse.mix`): until then, on PostgreSQL, a row's transaction id and place in the table tell which
click wrote it.

Revision ID: 0008
Revises: 0007
"""
import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    for table in ("pulse_answer", "pulse_comment"):
        op.add_column(table, sa.Column("mixed", sa.Boolean(), nullable=False, server_default=sa.false()))


def downgrade() -> None:
    for table in ("pulse_answer", "pulse_comment"):
        with op.batch_alter_table(table) as batch:
            batch.drop_column("mixed")
