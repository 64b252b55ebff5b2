"""The job definition of each job in columns of their own, for ListJobs' JOB_DEFINITION filter.

Revision ID: 0003
Revises: 0002
"""

from __future__ import annotations

import json

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("jobs") as batch:
        batch.add_column(sa.Column("definition_name", sa.String(128), nullable=True))
        batch.add_column(sa.Column("definition_revision", sa.Integer, nullable=True))
    jobs = sa.table(
        "jobs",
        sa.column("id", sa.String),
        sa.column("spec", sa.Text),
        sa.column("definition_name", sa.String),
        sa.column("definition_revision", sa.Integer),
    )
    conn = op.get_bind()
    for job_id, text in conn.execute(sa.select(jobs.c.id, jobs.c.spec).where(jobs.c.spec.is_not(None))).fetchall():
        arn = json.loads(text).get("definition_arn", "")
        name, _, rev = arn.rsplit("/", 1)[-1].partition(":")
        conn.execute(
            jobs.update()
            .where(jobs.c.id == job_id)
            .values(definition_name=name or None, definition_revision=int(rev) if rev.isdigit() else None)
        )


def downgrade() -> None:
    with op.batch_alter_table("jobs") as batch:
        batch.drop_column("definition_revision")
        batch.drop_column("definition_name")
