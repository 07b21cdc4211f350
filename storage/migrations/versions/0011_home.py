"""The App Home: when each person last opened it (home_view), the Events API deliveries already handled
(slack_event, pruned after a day), and an index on fast-track requests by state (each Home reads the pending
ones it may decide without a scan of every request ever made).

Revision ID: 0011
Revises: 0010
"""
import sqlalchemy as sa
from alembic import op

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "home_view",
        sa.Column("user", sa.String(20), primary_key=True),
        sa.Column("opened_at", sa.DateTime(), nullable=False),
    )
    op.create_table(
        "slack_event",
        sa.Column("event_id", sa.String(40), primary_key=True),
        sa.Column("seen_at", sa.DateTime(), nullable=False),
    )
    op.create_index("ix_slack_event_seen", "slack_event", ["seen_at"])
    op.create_index("ix_fasttrack_state", "fasttrack", ["state", "id"])


def downgrade() -> None:
    op.drop_index("ix_fasttrack_state", "fasttrack")
    op.drop_index("ix_slack_event_seen", "slack_event")
    op.drop_table("slack_event")
    op.drop_table("home_view")
