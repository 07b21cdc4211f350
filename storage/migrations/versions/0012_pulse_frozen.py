"""The pulse's anonymity as a property: closed months frozen at close (pulse_month, with the groups they were
protected against); comments stored once. A comment used to be stored once per group of its author (each of
their teams, and the organisation "*"), so the set of groups named the author's teams. Every comment has its
organisation row (keyed as the single row is now), so the team copies go: the text of every comment stays.
A team copy without an organisation row of the same week and text (none is written so) is kept as it is.

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
    op.execute(
        "DELETE FROM pulse_comment WHERE scope <> '*' AND EXISTS (SELECT 1 FROM pulse_comment o"
        " WHERE o.scope = '*' AND o.week = pulse_comment.week AND o.text = pulse_comment.text)"
    )


def downgrade() -> None:
    # comments stay stored once (their team copies cannot be made again without PULSE_SECRET): the previous
    # code reads the organisation's rows as before
    op.drop_table("pulse_month")
