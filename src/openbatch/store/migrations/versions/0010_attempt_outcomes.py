"""Several servers on one PostgreSQL database: outcomes of attempts that ended while no server was connected.

A supervisor whose server died writes them here; the next leader applies them instead of
declaring the attempts lost (see ``supervisor/outcomes.py``).

Revision ID: cluster2
Revises: cluster1
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "cluster2"
down_revision = "cluster1"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "attempt_outcomes",
        sa.Column("job_id", sa.String(80), primary_key=True),
        sa.Column("attempt", sa.Integer, primary_key=True),
        sa.Column("host", sa.String(255), nullable=False),
        sa.Column("exit_code", sa.Integer, nullable=True),
        sa.Column("reason", sa.Text, nullable=True),
        sa.Column("started", sa.Boolean, nullable=False),
        sa.Column("started_at", sa.BigInteger, nullable=True),
        sa.Column("stopped_at", sa.BigInteger, nullable=False),
    )


def downgrade() -> None:
    op.drop_table("attempt_outcomes")
