"""The weekly satisfaction pulse: who was asked (pulse_recipient), what was answered, apart and keyed by
an HMAC (pulse_answer, pulse_comment: no rowid, so not even the insertion order is kept), opt-outs, and
members' time zones.

Revision ID: 0006
Revises: 0005
"""
import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "pulse_recipient",
        sa.Column("week", sa.String(8), primary_key=True),
        sa.Column("user", sa.String(20), primary_key=True),
        sa.Column("teams", sa.JSON(), nullable=False),
        sa.Column("tz", sa.String(64), nullable=False),
        sa.Column("due_at", sa.DateTime(), nullable=False),
        sa.Column("closes_at", sa.DateTime(), nullable=False),
        sa.Column("remind_at", sa.DateTime(), nullable=True),
        sa.Column("state", sa.String(10), nullable=False),
        sa.Column("reminded", sa.Boolean(), nullable=False),
        sa.Column("answered", sa.Boolean(), nullable=False),
        sa.Column("opted_out", sa.Boolean(), nullable=False),
    )
    op.create_index("ix_pulse_recipient_remind", "pulse_recipient", ["state", "reminded", "remind_at"])
    for name in ("pulse_answer", "pulse_comment"):
        value = sa.Column("sealed", sa.Integer(), nullable=False) if name == "pulse_answer" else sa.Column("text", sa.Text(), nullable=False)
        op.create_table(
            name,
            sa.Column("key", sa.String(32), primary_key=True),
            sa.Column("week", sa.String(8), nullable=False),
            sa.Column("scope", sa.String(40), nullable=False),
            value,
            sqlite_with_rowid=False,
        )
        op.create_index(f"ix_{name}_week", name, ["week", "scope"])
    op.create_table(
        "pulse_optout",
        sa.Column("user", sa.String(20), primary_key=True),
        sa.Column("until", sa.DateTime(), nullable=True),
        sa.Column("since", sa.DateTime(), nullable=False),
    )
    op.create_table(
        "member_tz",
        sa.Column("user", sa.String(20), primary_key=True),
        sa.Column("tz", sa.String(64), nullable=False),
        sa.Column("updated_at", sa.DateTime(), nullable=False),
    )


def downgrade() -> None:
    for name in ("member_tz", "pulse_optout", "pulse_comment", "pulse_answer", "pulse_recipient"):
        op.drop_table(name)
