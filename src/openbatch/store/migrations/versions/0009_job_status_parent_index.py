"""Start-up finds queued array children as index ranges, from the index alone.

Recovery keeps a queue's RUNNABLE array children as ranges of indices per parent rather than one
job object each (see ``scheduler/queues.py``). ``(status, parent_id, array_index)`` lets it read
those ranges, and the other unfinished jobs without them, as index range scans that never visit a
child's row; it also serves every query the old ``(status)`` index did.

Revision ID: jobpark1
Revises: joblist1
"""

from __future__ import annotations

from alembic import op

revision = "jobpark1"
down_revision = "joblist1"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index("ix_jobs_status_parent_index", "jobs", ["status", "parent_id", "array_index"])
    op.drop_index("ix_jobs_status", table_name="jobs")


def downgrade() -> None:
    op.create_index("ix_jobs_status", "jobs", ["status"])
    op.drop_index("ix_jobs_status_parent_index", table_name="jobs")
