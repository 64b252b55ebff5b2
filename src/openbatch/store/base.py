"""The store contract. Docstrings here are the contract every backend honours.

The store persists plain records; it knows nothing of scheduling. Bodies are
JSON-serialisable dicts owned by the service layer.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

Body = dict[str, Any]


@dataclass(frozen=True, slots=True, kw_only=True)
class ResourceRecord:
    kind: str
    name: str
    arn: str
    created_at: int
    seq: int
    body: Body


@dataclass(frozen=True, slots=True, kw_only=True)
class JobDefinitionRecord:
    name: str
    revision: int
    status: str
    arn: str
    body: Body


@dataclass(frozen=True, slots=True, kw_only=True)
class JobRecord:
    id: str
    parent_id: str | None
    array_index: int | None
    queue: str
    status: str
    job_name: str
    share_identifier: str | None
    created_at: int
    body: Body
    """The job's state: changes with every transition."""
    definition_name: str | None = None
    definition_revision: int | None = None
    """The job definition it runs; written once, like ``spec`` (ListJobs' JOB_DEFINITION filter)."""
    spec: Body | None = None
    """What was submitted: written once by ``insert_jobs`` and never updated (``None`` for array children,
    which share their parent's, and in records passed to ``save_jobs``)."""


@dataclass(frozen=True, slots=True)
class OutboxEntry:
    """A message to deliver later, committed with the change it describes (transactional outbox)."""

    topic: str
    """Which consumer reads it, e.g. ``events``."""
    key: str
    """Delivery is ordered per key (e.g. a job id) within a topic."""
    created_at: int
    body: str
    """JSON text."""


@dataclass(frozen=True, slots=True)
class OutboxRecord:
    id: int
    """Increases with commit order within a topic."""
    topic: str
    key: str
    created_at: int
    body: str


@dataclass(frozen=True, slots=True, kw_only=True)
class JobQuery:
    """Filter for :meth:`Store.list_jobs`. Exactly one of ``queue`` / ``parent_id`` is set."""

    queue: str | None = None
    parent_id: str | None = None
    statuses: tuple[str, ...] = ()
    """Empty means any status."""
    name_prefix: str | None = None
    name_exact: str | None = None
    """Case-insensitive name match (exact, or prefix for a trailing ``*``)."""
    created_before: int | None = None
    created_after: int | None = None
    share_identifier: str | None = None
    definition_name: str | None = None
    definition_prefix: str | None = None
    """Case-sensitive prefix of the job definition name."""
    definition_revision: int | None = None


class Store(Protocol):
    """Durable state of one OpenBatch deployment.

    Every method is synchronous and commits before returning, so whatever a
    method accepted survives a crash of the process right after it returns.
    """

    def migrate(self, revision: str = "heads") -> None:
        """Bring the schema to ``revision``, the newest by default (idempotent)."""
        ...

    def close(self) -> None: ...

    # --- compute environments, job queues, scheduling policies --------------------

    def insert_resource(self, kind: str, name: str, arn: str, created_at: int, body: Body) -> ResourceRecord:
        """Insert a new resource. Raises ``Conflict`` if ``(kind, name)`` or ``arn`` exists."""
        ...

    def get_resource(self, kind: str, name: str) -> ResourceRecord | None: ...

    def list_resources(
        self, kind: str, *, names: Sequence[str] | None = None, after_seq: int = 0, limit: int | None = None
    ) -> list[ResourceRecord]:
        """Resources of ``kind`` in insertion order with ``seq > after_seq``, optionally only ``names``."""
        ...

    def update_resource(self, kind: str, name: str, body: Body) -> None:
        """Replace the body. Raises ``NotFound`` if absent."""
        ...

    def delete_resource(self, kind: str, name: str) -> None:
        """Delete; deleting an absent resource is a no-op."""
        ...

    # --- job definitions ---------------------------------------------------------

    def insert_job_definition(
        self, name: str, arn_for_revision: Callable[[int], str], body_for_revision: Callable[[int], Body]
    ) -> JobDefinitionRecord:
        """Register the next revision of ``name`` atomically.

        ``arn_for_revision(rev) -> str`` and ``body_for_revision(rev) -> Body``
        build the record once the revision number (max existing + 1, never
        reused) is known.
        """
        ...

    def get_job_definition(self, name: str, revision: int | None) -> JobDefinitionRecord | None:
        """``revision=None`` means the latest ACTIVE revision."""
        ...

    def list_job_definitions(
        self,
        *,
        name: str | None = None,
        status: str | None = None,
        refs: Sequence[tuple[str, int | None]] | None = None,
        after: tuple[str, int] | None = None,
        limit: int | None = None,
    ) -> list[JobDefinitionRecord]:
        """Ordered by (name, revision); ``after`` is an exclusive keyset cursor."""
        ...

    def set_job_definition_status(self, name: str, revision: int, status: str, body: Body) -> None: ...

    # --- jobs --------------------------------------------------------------------

    def insert_jobs(self, records: Iterable[JobRecord], outbox: Sequence[OutboxEntry] = ()) -> None:
        """Insert new jobs in one transaction (an array's children are one bulk write), with ``outbox``."""
        ...

    def save_jobs(self, records: Iterable[JobRecord], outbox: Sequence[OutboxEntry] = ()) -> None:
        """Update the mutable part (status, body) of existing jobs in one transaction; ``spec`` is not written.
        The ``outbox`` entries are committed in the same transaction."""
        ...

    def get_jobs(self, ids: Sequence[str]) -> list[JobRecord]:
        """The jobs among ``ids`` that exist, in no particular order."""
        ...

    def list_jobs(
        self,
        query: JobQuery,
        *,
        after: tuple[int, str] | None = None,
        limit: int = 100,
        newest_first: bool = True,
    ) -> list[JobRecord]:
        """Jobs matching ``query`` ordered by (created_at, id); ``after`` is an exclusive keyset cursor."""
        ...

    def load_unfinished_jobs(self, *, except_queued_children: bool = False) -> list[JobRecord]:
        """Every job not SUCCEEDED or FAILED (start-up recovery); with ``except_queued_children``,
        not the RUNNABLE array children (``queued_child_ranges`` gives those)."""
        ...

    def queued_child_ranges(self, parent_ids: Sequence[str]) -> list[tuple[str, int, int]]:
        """The RUNNABLE children of these array parents as ``(parent id, first index, stop index)``
        ranges of consecutive indices, ordered by parent and first index."""
        ...

    def count_jobs(self) -> int: ...

    # --- outbox -------------------------------------------------------------------

    def read_outbox(self, topic: str, after_id: int = 0, limit: int = 100) -> list[OutboxRecord]:
        """Entries of ``topic`` with id > ``after_id``, oldest first."""
        ...

    def delete_outbox(self, topic: str, up_to_id: int) -> None:
        """Remove the entries of ``topic`` with id <= ``up_to_id`` (delivered)."""
        ...

    def count_children(self, parent_id: str) -> dict[str, int]:
        """Array children of ``parent_id`` per status (start-up recovery only)."""
        ...
