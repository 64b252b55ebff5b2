"""SQLAlchemy Core tables. The single Alembic tree in ``migrations/`` creates exactly these."""

from __future__ import annotations

from sqlalchemy import BigInteger, Column, Index, Integer, MetaData, String, Table, Text, text

metadata = MetaData()

resources = Table(
    "resources",
    metadata,
    # compute-environment | job-queue | scheduling-policy (see domain.arns.ResourceType)
    Column("kind", String(32), primary_key=True),
    Column("name", String(128), primary_key=True),
    Column("arn", String(512), nullable=False, unique=True),
    Column("created_at", BigInteger, nullable=False),
    # Insertion order, used as the stable pagination key.
    Column("seq", BigInteger, nullable=False),
    Column("body", Text, nullable=False),
)

job_definitions = Table(
    "job_definitions",
    metadata,
    Column("name", String(128), primary_key=True),
    Column("revision", Integer, primary_key=True),
    Column("status", String(16), nullable=False),
    Column("arn", String(512), nullable=False, unique=True),
    Column("body", Text, nullable=False),
)

jobs = Table(
    "jobs",
    metadata,
    Column("id", String(80), primary_key=True),
    Column("parent_id", String(64), nullable=True),
    Column("array_index", Integer, nullable=True),
    Column("queue", String(128), nullable=False),
    Column("status", String(16), nullable=False),
    Column("job_name", String(128), nullable=False),
    Column("share_identifier", String(255), nullable=True),
    Column("created_at", BigInteger, nullable=False),
    Column("body", Text, nullable=False),
    Column("spec", Text, nullable=True),
    Column("definition_name", String(128), nullable=True),
    Column("definition_revision", Integer, nullable=True),
    Index("ix_jobs_queue_status_created", "queue", "status", "created_at"),
    # ListJobs by queue: top-level jobs only (children are listed through their parent), in page order.
    Index(
        "ix_jobs_top_queue_created",
        "queue",
        "created_at",
        "id",
        sqlite_where=text("array_index IS NULL"),
        postgresql_where=text("array_index IS NULL"),
    ),
    Index(
        "ix_jobs_top_queue_status_created",
        "queue",
        "status",
        "created_at",
        "id",
        sqlite_where=text("array_index IS NULL"),
        postgresql_where=text("array_index IS NULL"),
    ),
    Index("ix_jobs_parent_index", "parent_id", "array_index"),
    # Unfinished jobs by status; queued array children as (parent, index) ranges (see recovery).
    Index("ix_jobs_status_parent_index", "status", "parent_id", "array_index"),
)

outbox = Table(
    "outbox",
    metadata,
    Column("id", BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True),
    Column("topic", String(64), nullable=False),
    Column("key", String(255), nullable=False),
    Column("created_at", BigInteger, nullable=False),
    Column("body", Text, nullable=False),
    Index("ix_outbox_topic_id", "topic", "id"),
)
