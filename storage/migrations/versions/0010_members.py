"""Teams in step with Slack: who each member source gave (`team_member`), joins and leaves
(`member_event`), each source's last read (`member_sync`), a stamp renewed at each change (`member_version`), and the
one welcome DM per person per team (`welcome`).

Revision ID: 0010
Revises: 0009
"""
import sqlalchemy as sa
from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "team_member",
        sa.Column("team", sa.String(length=40), primary_key=True),
        sa.Column("source", sa.String(length=10), primary_key=True),
        sa.Column("user_id", sa.String(length=20), primary_key=True),
        sa.Column("since", sa.DateTime(), nullable=False),
    )
    op.create_table(
        "member_event",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("team", sa.String(length=40), nullable=False),
        sa.Column("user_id", sa.String(length=20), nullable=False),
        sa.Column("kind", sa.String(length=8), nullable=False),
        sa.Column("source", sa.String(length=10), nullable=False),
        sa.Column("baseline", sa.Boolean(), nullable=False),
        sa.Column("at", sa.DateTime(), nullable=False),
    )
    op.create_index("ix_member_event_team_at", "member_event", ["team", "at"])
    op.create_table(
        "member_sync",
        sa.Column("team", sa.String(length=40), primary_key=True),
        sa.Column("source", sa.String(length=10), primary_key=True),
        sa.Column("ref", sa.String(length=20), nullable=False),
        sa.Column("synced_at", sa.DateTime(), nullable=False),
        sa.Column("error", sa.String(length=200), nullable=True),
    )
    op.create_table(
        "member_version",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=False),
        sa.Column("stamp", sa.String(length=32), nullable=False),
    )
    op.create_table(
        "welcome",
        sa.Column("team", sa.String(length=40), primary_key=True),
        sa.Column("user_id", sa.String(length=20), primary_key=True),
        sa.Column("at", sa.DateTime(), nullable=False),
        sa.Column("sent", sa.Boolean(), nullable=False),
    )


def downgrade() -> None:
    for table in ("welcome", "member_version", "member_sync", "member_event", "team_member"):
        op.drop_table(table)
