"""The cluster's leader table (created by migration ``cluster1``).

``attempt_outcomes`` (migration ``cluster2``) is defined in ``supervisor/outcomes.py``, where the
supervisor, which writes it, can import it without this package.
"""

from __future__ import annotations

from sqlalchemy import BigInteger, Column, Integer, MetaData, String, Table

metadata = MetaData()

cluster_leader = Table(
    "cluster_leader",
    metadata,
    # One row (id 1): the server that runs the scheduler now, as the others reach it.
    Column("id", Integer, primary_key=True),
    Column("instance", String(255), nullable=False),
    Column("url", String(1024), nullable=False),
    Column("since", BigInteger, nullable=False),
)
