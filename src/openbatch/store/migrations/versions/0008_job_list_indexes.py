"""Job lists walk an index in their own order: top-level jobs only, keyed (created_at, id).

ListJobs by queue never lists array children, and pages by (created_at, id). The old
(queue, status, created_at) index held every child too, so a page behind a million RUNNABLE
children first stepped over them, and the id tie-break made the database sort what it found.
Partial indexes without the children, ending in id, make every page an index range scan.

Revision ID: joblist1
Revises: 0003
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "joblist1"
down_revision = "0003"
branch_labels = ("job_list",)
depends_on = None

_TOP_LEVEL = sa.text("array_index IS NULL")


def upgrade() -> None:
    op.drop_index("ix_jobs_queue_created", table_name="jobs")
    op.create_index(
        "ix_jobs_top_queue_created",
        "jobs",
        ["queue", "created_at", "id"],
        sqlite_where=_TOP_LEVEL,
        postgresql_where=_TOP_LEVEL,
    )
    op.create_index(
        "ix_jobs_top_queue_status_created",
        "jobs",
        ["queue", "status", "created_at", "id"],
        sqlite_where=_TOP_LEVEL,
        postgresql_where=_TOP_LEVEL,
    )


def downgrade() -> None:
    op.drop_index("ix_jobs_top_queue_status_created", table_name="jobs")
    op.drop_index("ix_jobs_top_queue_created", table_name="jobs")
    op.create_index("ix_jobs_queue_created", "jobs", ["queue", "created_at"])
