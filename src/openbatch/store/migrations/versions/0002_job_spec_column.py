"""Job specs in their own column, written once, so status updates rewrite only the job's state.

Revision ID: 0002
Revises: 0001
"""

from __future__ import annotations

import json

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("jobs") as batch:
        batch.add_column(sa.Column("spec", sa.Text, nullable=True))
    jobs = sa.table("jobs", sa.column("id", sa.String), sa.column("body", sa.Text), sa.column("spec", sa.Text))
    conn = op.get_bind()
    rows = conn.execute(sa.select(jobs.c.id, jobs.c.body).where(jobs.c.body.like('%"spec":%'))).fetchall()
    for job_id, text in rows:
        body = json.loads(text)
        spec = body.pop("spec", None)
        if spec is not None:
            conn.execute(jobs.update().where(jobs.c.id == job_id).values(body=json.dumps(body), spec=json.dumps(spec)))


def downgrade() -> None:
    with op.batch_alter_table("jobs") as batch:
        batch.drop_column("spec")
