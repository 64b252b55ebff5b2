"""Several servers on one PostgreSQL database: which one leads, and where the others reach it.

Revision ID: cluster1
Revises: 0003
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "cluster1"
down_revision = "0003"
branch_labels = ("cluster",)
depends_on = None


def upgrade() -> None:
    op.create_table(
        "cluster_leader",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("instance", sa.String(255), nullable=False),
        sa.Column("url", sa.String(1024), nullable=False),
        sa.Column("since", sa.BigInteger, nullable=False),
    )


def downgrade() -> None:
    op.drop_table("cluster_leader")
