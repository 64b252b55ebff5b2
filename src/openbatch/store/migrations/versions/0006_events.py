"""Events: EventBridge rules and targets, SNS topics and subscriptions, the delivery queue and log.

Revision ID: 0006
Revises: 0003
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0003"
branch_labels = ("events",)
depends_on = None


def upgrade() -> None:
    op.create_table(
        "events_rules",
        sa.Column("name", sa.String(64), primary_key=True),
        sa.Column("arn", sa.String(1600), nullable=False),
        sa.Column("event_pattern", sa.Text, nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("description", sa.Text, nullable=True),
        sa.Column("created_at", sa.BigInteger, nullable=False),
    )
    op.create_table(
        "events_targets",
        sa.Column("rule", sa.String(64), primary_key=True),
        sa.Column("target_id", sa.String(64), primary_key=True),
        sa.Column("arn", sa.String(1600), nullable=False),
        sa.Column("body", sa.Text, nullable=False),
    )
    op.create_table(
        "sns_topics",
        sa.Column("name", sa.String(256), primary_key=True),
        sa.Column("arn", sa.String(1600), nullable=False, unique=True),
        sa.Column("attributes", sa.Text, nullable=False),
        sa.Column("created_at", sa.BigInteger, nullable=False),
    )
    op.create_table(
        "sns_subscriptions",
        sa.Column("arn", sa.String(1600), primary_key=True),
        sa.Column("topic_arn", sa.String(1600), nullable=False),
        sa.Column("protocol", sa.String(16), nullable=False),
        sa.Column("endpoint", sa.Text, nullable=False),
        sa.Column("token", sa.String(128), nullable=False),
        sa.Column("confirmed", sa.Boolean, nullable=False),
        sa.Column("attributes", sa.Text, nullable=False),
        sa.Column("created_at", sa.BigInteger, nullable=False),
    )
    op.create_index("ix_sns_subscriptions_topic", "sns_subscriptions", ["topic_arn"])
    op.create_table(
        "sns_deliveries",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("destination", sa.String(1700), nullable=False),
        sa.Column("ordering_key", sa.String(1700), nullable=False),
        sa.Column("kind", sa.String(32), nullable=False),
        sa.Column("message_id", sa.String(64), nullable=False),
        sa.Column("payload", sa.Text, nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("attempts", sa.Integer, nullable=False),
        sa.Column("next_attempt_at", sa.BigInteger, nullable=False),
        sa.Column("last_error", sa.Text, nullable=True),
        sa.Column("created_at", sa.BigInteger, nullable=False),
        sa.Column("updated_at", sa.BigInteger, nullable=False),
    )
    op.create_index("ix_sns_deliveries_state_destination", "sns_deliveries", ["state", "destination", "id"])


def downgrade() -> None:
    op.drop_table("sns_deliveries")
    op.drop_table("sns_subscriptions")
    op.drop_table("sns_topics")
    op.drop_table("events_targets")
    op.drop_table("events_rules")
