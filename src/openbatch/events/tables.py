"""Tables of the events capability (Alembic branch ``events``, migration 0006)."""

from __future__ import annotations

from sqlalchemy import BigInteger, Boolean, Column, Index, Integer, MetaData, String, Table, Text

metadata = MetaData()

events_rules = Table(
    "events_rules",
    metadata,
    Column("name", String(64), primary_key=True),
    Column("arn", String(1600), nullable=False),
    Column("event_pattern", Text, nullable=False),
    Column("state", String(16), nullable=False),
    Column("description", Text, nullable=True),
    Column("created_at", BigInteger, nullable=False),
)

events_targets = Table(
    "events_targets",
    metadata,
    Column("rule", String(64), primary_key=True),
    Column("target_id", String(64), primary_key=True),
    Column("arn", String(1600), nullable=False),
    # The whole Target as the API received it (Input, InputPath, InputTransformer, RetryPolicy …).
    Column("body", Text, nullable=False),
)

sns_topics = Table(
    "sns_topics",
    metadata,
    Column("name", String(256), primary_key=True),
    Column("arn", String(1600), nullable=False, unique=True),
    Column("attributes", Text, nullable=False),
    Column("created_at", BigInteger, nullable=False),
)

sns_subscriptions = Table(
    "sns_subscriptions",
    metadata,
    Column("arn", String(1600), primary_key=True),
    Column("topic_arn", String(1600), nullable=False),
    Column("protocol", String(16), nullable=False),
    Column("endpoint", Text, nullable=False),
    Column("token", String(128), nullable=False),
    Column("confirmed", Boolean, nullable=False),
    Column("attributes", Text, nullable=False),
    Column("created_at", BigInteger, nullable=False),
    Index("ix_sns_subscriptions_topic", "topic_arn"),
)

sns_deliveries = Table(
    "sns_deliveries",
    metadata,
    # The delivery queue and its log: one row per message per destination, delivered in id order
    # per destination and ordering key (a job's ARN: one job's events arrive in order, different
    # jobs' in parallel). Destinations are SNS subscriptions or EventBridge webhook targets.
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("destination", String(1700), nullable=False),
    Column("ordering_key", String(1700), nullable=False),
    Column("kind", String(32), nullable=False),
    Column("message_id", String(64), nullable=False),
    Column("payload", Text, nullable=False),
    Column("state", String(16), nullable=False),
    Column("attempts", Integer, nullable=False),
    Column("next_attempt_at", BigInteger, nullable=False),
    Column("last_error", Text, nullable=True),
    Column("created_at", BigInteger, nullable=False),
    Column("updated_at", BigInteger, nullable=False),
    Index("ix_sns_deliveries_state_destination", "state", "destination", "id"),
)
