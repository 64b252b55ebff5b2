"""Outcomes of attempts that ended while no server was connected, for the next leader to apply.

Several servers share one PostgreSQL database and one of them leads (``cluster/``). When the
leader dies, its host's supervisor keeps running its attempts; one that ends before the supervisor
fences them (or ended just before, its outcome never committed) has a real outcome that only this
supervisor knows. It writes that outcome to ``attempt_outcomes`` (created by migration ``cluster2``)
and sends ``NOTIFY openbatch_attempt_outcome``; the leader that holds the dead host's attempts
(``scheduler/lost_hosts.py``) applies it as it would apply the exit itself, and removes the row.

The table lives here rather than in ``cluster/tables.py`` because the supervisor imports it: the
``openbatch.cluster`` package brings the web stack with it, which a per-host daemon has no use for.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from contextlib import AbstractContextManager
from dataclasses import asdict, dataclass
from typing import Any, Protocol

from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    Connection,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    create_engine,
    delete,
    select,
    text,
    tuple_,
)
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.pool import NullPool

from openbatch.executors.base import HOST_LOST, ExitInfo, attempt_key

logger = logging.getLogger(__name__)

CHANNEL = "openbatch_attempt_outcome"
"""Notified, in the same transaction, whenever a supervisor writes outcomes."""

metadata = MetaData()

attempt_outcomes = Table(
    "attempt_outcomes",
    metadata,
    Column("job_id", String(80), primary_key=True),
    Column("attempt", Integer, primary_key=True),
    # The server instance that launched the attempt (``Attempt.host``).
    Column("host", String(255), nullable=False),
    Column("exit_code", Integer, nullable=True),
    Column("reason", Text, nullable=True),
    Column("started", Boolean, nullable=False),
    Column("started_at", BigInteger, nullable=True),
    Column("stopped_at", BigInteger, nullable=False),
)


@dataclass(frozen=True, slots=True)
class AttemptOutcome:
    """How one attempt ended, as its supervisor recorded it."""

    job_id: str
    attempt: int
    host: str
    exit_code: int | None
    reason: str | None
    started: bool
    started_at: int | None
    """Epoch ms the supervisor started it, if it knows (not after its own restart)."""
    stopped_at: int

    @property
    def key(self) -> str:
        return attempt_key(self.job_id, self.attempt)

    def exit_info(self) -> ExitInfo:
        """The exit as the executor would have reported it; a lost host names this attempt's host."""
        return ExitInfo(
            exit_code=self.exit_code,
            reason=self.reason,
            started=self.started,
            ended_at=self.stopped_at,
            lost_host=self.host if self.reason == HOST_LOST else None,
        )

    def to_row(self) -> dict[str, Any]:
        return asdict(self)


def write_outcomes(conn: Connection, outcomes: Sequence[AttemptOutcome]) -> None:
    """Insert ``outcomes`` (one already there is kept: an attempt ends once), and notify the leader."""
    if not outcomes:
        return
    dialect = postgresql if conn.dialect.name == "postgresql" else sqlite
    statement = dialect.insert(attempt_outcomes).on_conflict_do_nothing(index_elements=["job_id", "attempt"])
    conn.execute(statement, [outcome.to_row() for outcome in outcomes])
    if conn.dialect.name == "postgresql":
        conn.execute(text("SELECT pg_notify(:channel, '')"), {"channel": CHANNEL})


def read_outcomes(conn: Connection) -> list[AttemptOutcome]:
    rows = conn.execute(select(attempt_outcomes)).mappings()
    return [AttemptOutcome(**dict(row)) for row in rows]


def delete_outcomes(conn: Connection, keys: Iterable[tuple[str, int]]) -> None:
    batch = list(keys)
    for start in range(0, len(batch), 500):
        chunk = batch[start : start + 500]
        conn.execute(
            delete(attempt_outcomes).where(tuple_(attempt_outcomes.c.job_id, attempt_outcomes.c.attempt).in_(chunk))
        )


class OutcomeWriter:
    """The supervisor's narrow access to the database: it writes outcomes, nothing else.

    A connection per write (``NullPool``): writes are rare (only while no server is connected),
    and a supervisor holds no connection the rest of the time.
    """

    def __init__(self, database_url: str, host: str) -> None:
        self.database_url = database_url
        self.host = host
        connect_args = {"connect_timeout": 5} if database_url.startswith("postgresql") else {}
        self.engine = create_engine(database_url, poolclass=NullPool, connect_args=connect_args)

    def write(self, outcomes: Sequence[AttemptOutcome]) -> None:
        """Blocking: call it off the event loop."""
        with self.engine.begin() as conn:
            write_outcomes(conn, outcomes)

    def close(self) -> None:
        self.engine.dispose()


class Transactional(Protocol):
    """The store (``SqlStore``), without importing it here: the supervisor has no use for the rest."""

    def transaction(self) -> AbstractContextManager[Connection]: ...


class RecordedOutcomes:
    """The leader's side, on its own (pinned) store connection: every write commits only while it leads."""

    def __init__(self, store: Transactional) -> None:
        self.store = store

    def read(self) -> list[AttemptOutcome]:
        with self.store.transaction() as conn:
            return read_outcomes(conn)

    def remove(self, keys: Iterable[tuple[str, int]]) -> None:
        with self.store.transaction() as conn:
            delete_outcomes(conn, keys)
