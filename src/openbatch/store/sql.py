"""The SQL store: SQLite (embedded default) and PostgreSQL through SQLAlchemy Core.

SQLite is supported for exactly one server process: it has one writer at a
time and OpenBatch keeps the scheduler in the same process as the API.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager
from pathlib import Path
from typing import Any

import orjson
from alembic import command
from alembic.config import Config
from sqlalchemy import (
    Connection,
    Engine,
    and_,
    bindparam,
    create_engine,
    delete,
    event,
    func,
    insert,
    literal,
    or_,
    select,
    tuple_,
    union_all,
    update,
)
from sqlalchemy.exc import DBAPIError, IntegrityError
from sqlalchemy.pool import StaticPool

from openbatch.domain.errors import Conflict, NotFound
from openbatch.store.base import (
    Body,
    JobDefinitionRecord,
    JobQuery,
    JobRecord,
    OutboxEntry,
    OutboxRecord,
    ResourceRecord,
)
from openbatch.store.tables import job_definitions, jobs, outbox, resources

_UNFINISHED = ("SUBMITTED", "PENDING", "RUNNABLE", "STARTING", "RUNNING")
_STATUSES = (*_UNFINISHED, "SUCCEEDED", "FAILED")
_json_dumps = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False).encode


def _dumps(value: Body) -> str:
    # orjson writes the same text as the standard encoder here, five times as fast (every job write
    # serialises its body); what it refuses (integers beyond 64 bits, keys that are not strings) goes the slow way.
    try:
        return orjson.dumps(value).decode()
    except TypeError:
        return _json_dumps(value)


def _loads(text: str) -> Body:
    # Likewise for reading (ListJobs, DescribeJobs and recovery decode a body and a spec per job).
    try:
        value: Body = orjson.loads(text)
    except ValueError:
        value = json.loads(text)
    return value


def create_store_engine(url: str) -> Engine:
    if url.startswith("sqlite"):
        in_memory = url in ("sqlite://", "sqlite:///:memory:")
        engine = create_engine(
            url,
            connect_args={"check_same_thread": False},
            poolclass=StaticPool if in_memory else None,
        )

        @event.listens_for(engine, "connect")
        def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
            cursor = dbapi_connection.cursor()
            # WAL lets readers proceed during a write; NORMAL sync is durable across a
            # process crash (the WAL is fsynced at checkpoints), which is the failure
            # mode the server promises to survive.
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute("PRAGMA synchronous=NORMAL")
            cursor.execute("PRAGMA foreign_keys=ON")
            cursor.execute("PRAGMA busy_timeout=10000")
            # A 64 MiB page cache keeps the jobs indexes in memory as history grows;
            # the 2 MiB default made every status update a cache miss past ~100k jobs.
            cursor.execute("PRAGMA cache_size=-65536")
            cursor.close()

        return engine
    return create_engine(url, pool_pre_ping=True, pool_size=5, max_overflow=5)


class SqlStore:
    """:class:`openbatch.store.base.Store` on SQLAlchemy Core."""

    def __init__(self, url: str) -> None:
        if url.startswith("sqlite:///") and url not in ("sqlite:///:memory:",):
            Path(url.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
        self.url = url
        self.engine = create_store_engine(url)
        self._conn: Connection | None = None
        self._on_lost: Callable[[], None] | None = None

    @contextmanager
    def _begin(self) -> Iterator[Connection]:
        """A transaction on this store's own connection.

        The store keeps one connection instead of checking one out of the pool
        per call: checkout, reset and BEGIN cost more than the statements of a
        typical call. Calls come from one thread (the server's event loop). A
        connection the driver reports as broken is dropped and replaced on the
        next call.
        """
        if self._conn is None or self._conn.closed:
            if self._on_lost is not None:
                self._on_lost()  # a pinned connection is never replaced (see ``pin``)
            self._conn = self.engine.connect()
        conn = self._conn
        try:
            with conn.begin():
                yield conn
        except DBAPIError as exc:
            if exc.connection_invalidated or conn.invalidated:
                conn.close()
                self._conn = None
                if self._on_lost is not None:
                    self._on_lost()
            raise

    def release_caches(self) -> None:
        """Hand back the page caches that start-up's scans filled (SQLite keeps up to 64 MiB per
        connection): this store's connection shrinks its cache, and idle pooled ones are closed."""
        if self.dialect != "sqlite":
            return
        if self._conn is not None and not self._conn.closed:
            self._conn.exec_driver_sql("PRAGMA shrink_memory")
            self._conn.commit()
        self.engine.pool.dispose()

    def pin(self, conn: Connection, on_lost: Callable[[], None]) -> None:
        """Use ``conn`` for every later call, and call ``on_lost`` (which must not return) if it breaks.

        A leader's connection holds its session advisory lock: every write made on it commits only
        while this server leads, and PostgreSQL releases the lock only when that session has ended.
        Another connection would write without that guarantee, so a lost one is never replaced.
        """
        if self._conn is not None and self._conn is not conn:
            self._conn.close()
        self._conn = conn
        self._on_lost = on_lost

    def transaction(self) -> AbstractContextManager[Connection]:
        """A transaction on the store's connection, for capabilities' own tables."""
        return self._begin()

    @property
    def dialect(self) -> str:
        return self.engine.dialect.name

    def migrate(self, revision: str = "heads") -> None:
        # "heads": capabilities (workflows, events, …) keep their tables on branches of their own,
        # each starting from 0003, so they can evolve independently; start-up applies all of them.
        config = Config()
        config.set_main_option("script_location", str(Path(__file__).parent / "migrations"))
        with self.engine.begin() as conn:
            if self.dialect == "postgresql":
                # Servers starting together on one database migrate it one after the other.
                conn.exec_driver_sql("SELECT pg_advisory_xact_lock(74658)")
            config.attributes["connection"] = conn
            command.upgrade(config, revision)

    def close(self) -> None:
        self._on_lost = None  # stopping: the lock goes with the connection, on purpose
        if self._conn is not None:
            self._conn.close()
            self._conn = None
        self.engine.dispose()

    # --- resources ---------------------------------------------------------------

    def insert_resource(self, kind: str, name: str, arn: str, created_at: int, body: Body) -> ResourceRecord:
        with self._begin() as conn:
            self._lock_for_write(conn)
            seq = conn.execute(select(func.coalesce(func.max(resources.c.seq), 0))).scalar_one() + 1
            try:
                conn.execute(
                    insert(resources).values(
                        kind=kind, name=name, arn=arn, created_at=created_at, seq=seq, body=_dumps(body)
                    )
                )
            except IntegrityError:
                raise Conflict(f"Object already exists: {kind} {name!r}") from None
        return ResourceRecord(kind=kind, name=name, arn=arn, created_at=created_at, seq=seq, body=body)

    def get_resource(self, kind: str, name: str) -> ResourceRecord | None:
        with self._begin() as conn:
            row = conn.execute(select(resources).where(resources.c.kind == kind, resources.c.name == name)).first()
        return None if row is None else _resource(row._mapping)

    def list_resources(
        self, kind: str, *, names: Sequence[str] | None = None, after_seq: int = 0, limit: int | None = None
    ) -> list[ResourceRecord]:
        stmt = select(resources).where(resources.c.kind == kind, resources.c.seq > after_seq)
        if names is not None:
            stmt = stmt.where(resources.c.name.in_(list(names)))
        stmt = stmt.order_by(resources.c.seq)
        if limit is not None:
            stmt = stmt.limit(limit)
        with self._begin() as conn:
            return [_resource(row._mapping) for row in conn.execute(stmt)]

    def update_resource(self, kind: str, name: str, body: Body) -> None:
        with self._begin() as conn:
            result = conn.execute(
                update(resources).where(resources.c.kind == kind, resources.c.name == name).values(body=_dumps(body))
            )
            if result.rowcount == 0:
                raise NotFound(f"{kind} {name!r} does not exist")

    def delete_resource(self, kind: str, name: str) -> None:
        with self._begin() as conn:
            conn.execute(resources.delete().where(resources.c.kind == kind, resources.c.name == name))

    # --- job definitions ---------------------------------------------------------

    def insert_job_definition(
        self, name: str, arn_for_revision: Callable[[int], str], body_for_revision: Callable[[int], Body]
    ) -> JobDefinitionRecord:
        with self._begin() as conn:
            self._lock_for_write(conn)
            latest = conn.execute(
                select(func.coalesce(func.max(job_definitions.c.revision), 0)).where(job_definitions.c.name == name)
            ).scalar_one()
            revision = int(latest) + 1
            record = JobDefinitionRecord(
                name=name,
                revision=revision,
                status="ACTIVE",
                arn=arn_for_revision(revision),
                body=body_for_revision(revision),
            )
            conn.execute(
                insert(job_definitions).values(
                    name=name, revision=revision, status="ACTIVE", arn=record.arn, body=_dumps(record.body)
                )
            )
        return record

    def get_job_definition(self, name: str, revision: int | None) -> JobDefinitionRecord | None:
        stmt = select(job_definitions).where(job_definitions.c.name == name)
        if revision is None:
            stmt = stmt.where(job_definitions.c.status == "ACTIVE").order_by(job_definitions.c.revision.desc())
        else:
            stmt = stmt.where(job_definitions.c.revision == revision)
        with self._begin() as conn:
            row = conn.execute(stmt.limit(1)).first()
        return None if row is None else _definition(row._mapping)

    def list_job_definitions(
        self,
        *,
        name: str | None = None,
        status: str | None = None,
        refs: Sequence[tuple[str, int | None]] | None = None,
        after: tuple[str, int] | None = None,
        limit: int | None = None,
    ) -> list[JobDefinitionRecord]:
        stmt = select(job_definitions)
        if name is not None:
            stmt = stmt.where(job_definitions.c.name == name)
        if status is not None:
            stmt = stmt.where(job_definitions.c.status == status)
        if refs is not None:
            clauses = [
                job_definitions.c.name == ref_name
                if rev is None
                else and_(job_definitions.c.name == ref_name, job_definitions.c.revision == rev)
                for ref_name, rev in refs
            ]
            if not clauses:
                return []
            stmt = stmt.where(or_(*clauses))
        if after is not None:
            stmt = stmt.where(tuple_(job_definitions.c.name, job_definitions.c.revision) > tuple_(*after))
        stmt = stmt.order_by(job_definitions.c.name, job_definitions.c.revision)
        if limit is not None:
            stmt = stmt.limit(limit)
        with self._begin() as conn:
            return [_definition(row._mapping) for row in conn.execute(stmt)]

    def set_job_definition_status(self, name: str, revision: int, status: str, body: Body) -> None:
        with self._begin() as conn:
            conn.execute(
                update(job_definitions)
                .where(job_definitions.c.name == name, job_definitions.c.revision == revision)
                .values(status=status, body=_dumps(body))
            )

    # --- jobs --------------------------------------------------------------------

    def insert_jobs(self, records: Iterable[JobRecord], outbox: Sequence[OutboxEntry] = ()) -> None:
        rows = [_job_row(r) for r in records]
        if not rows:
            return
        with self._begin() as conn:
            try:
                conn.execute(insert(jobs), rows)
            except IntegrityError:
                raise Conflict("a job with this id already exists") from None
            write_outbox(conn, outbox)

    def save_jobs(self, records: Iterable[JobRecord], outbox: Sequence[OutboxEntry] = ()) -> None:
        rows = [{"b_id": r.id, "status": r.status, "body": _dumps(r.body)} for r in records]
        if not rows and not outbox:
            return
        stmt = update(jobs).where(jobs.c.id == bindparam("b_id")).values(status=bindparam("status"))
        stmt = stmt.values(body=bindparam("body"))
        with self._begin() as conn:
            if rows:
                conn.execute(stmt, rows)
            write_outbox(conn, outbox)

    def read_outbox(self, topic: str, after_id: int = 0, limit: int = 100) -> list[OutboxRecord]:
        stmt = select(outbox).where(outbox.c.topic == topic, outbox.c.id > after_id).order_by(outbox.c.id).limit(limit)
        with self._begin() as conn:
            return [OutboxRecord(row.id, row.topic, row.key, row.created_at, row.body) for row in conn.execute(stmt)]

    def delete_outbox(self, topic: str, up_to_id: int) -> None:
        with self._begin() as conn:
            conn.execute(delete(outbox).where(outbox.c.topic == topic, outbox.c.id <= up_to_id))

    def get_jobs(self, ids: Sequence[str]) -> list[JobRecord]:
        if not ids:
            return []
        with self._begin() as conn:
            return [_job(row._mapping) for row in conn.execute(select(jobs).where(jobs.c.id.in_(list(ids))))]

    def list_jobs(
        self,
        query: JobQuery,
        *,
        after: tuple[int, str] | None = None,
        limit: int = 100,
        newest_first: bool = True,
    ) -> list[JobRecord]:
        stmt = select(jobs)
        if query.queue is not None:
            # Array children are listed through their parent (ListJobs arrayJobId).
            stmt = stmt.where(jobs.c.queue == query.queue, jobs.c.array_index.is_(None))
        if query.parent_id is not None:
            stmt = stmt.where(jobs.c.parent_id == query.parent_id)
        if query.statuses:
            stmt = stmt.where(jobs.c.status.in_(query.statuses))
        if query.name_exact is not None:
            stmt = stmt.where(func.lower(jobs.c.job_name) == query.name_exact.lower())
        if query.name_prefix is not None:
            stmt = stmt.where(func.lower(jobs.c.job_name).startswith(query.name_prefix.lower(), autoescape=True))
        if query.created_before is not None:
            stmt = stmt.where(jobs.c.created_at < query.created_before)
        if query.created_after is not None:
            stmt = stmt.where(jobs.c.created_at > query.created_after)
        if query.share_identifier is not None:
            stmt = stmt.where(jobs.c.share_identifier == query.share_identifier)
        if query.definition_name is not None:
            stmt = stmt.where(jobs.c.definition_name == query.definition_name)
        if query.definition_prefix is not None:
            # substr, not LIKE: job definition names compare case-sensitively, and LIKE does not on SQLite.
            prefix = query.definition_prefix
            stmt = stmt.where(func.substr(jobs.c.definition_name, 1, len(prefix)) == prefix)
        if query.definition_revision is not None:
            stmt = stmt.where(jobs.c.definition_revision == query.definition_revision)
        if query.parent_id is not None:
            if after is not None:
                stmt = stmt.where(jobs.c.array_index > after[0])
            stmt = stmt.order_by(jobs.c.array_index)
        else:
            key = tuple_(jobs.c.created_at, jobs.c.id)
            if after is not None:
                stmt = stmt.where(key < tuple_(*after) if newest_first else key > tuple_(*after))
            if newest_first:
                stmt = stmt.order_by(jobs.c.created_at.desc(), jobs.c.id.desc())
            else:
                stmt = stmt.order_by(jobs.c.created_at, jobs.c.id)
        with self._begin() as conn:
            return [_job(row._mapping) for row in conn.execute(stmt.limit(limit))]

    def load_unfinished_jobs(self, *, except_queued_children: bool = False) -> list[JobRecord]:
        with self._begin() as conn:
            # IN over the unfinished statuses, not NOT IN the finished ones: only the former
            # uses the status index, so start-up does not scan a history of millions of jobs.
            if not except_queued_children:
                rows = conn.execute(select(jobs).where(jobs.c.status.in_(_UNFINISHED)))
                return [_job(row._mapping) for row in rows]
            others = [s for s in _UNFINISHED if s != "RUNNABLE"]
            found = [_job(row._mapping) for row in conn.execute(select(jobs).where(jobs.c.status.in_(others)))]
            # RUNNABLE top-level jobs (no parent) and multi-node nodes (a parent, no array index):
            # two seeks in (status, parent_id, array_index) that step over every queued child.
            for condition in (
                jobs.c.parent_id.is_(None),
                and_(jobs.c.parent_id.is_not(None), jobs.c.array_index.is_(None)),
            ):
                rows = conn.execute(select(jobs).where(jobs.c.status == "RUNNABLE", condition))
                found.extend(_job(row._mapping) for row in rows)
            return found

    def queued_child_ranges(self, parent_ids: Sequence[str]) -> list[tuple[str, int, int]]:
        ranges: list[tuple[str, int, int]] = []
        queued = and_(jobs.c.status == "RUNNABLE", jobs.c.array_index.is_not(None))
        with self._begin() as conn:
            for parent_id in sorted(parent_ids):
                # Count and bounds walk (status, parent_id, array_index) alone; the indices themselves
                # are read only when some are missing (a child started, failed or was cancelled).
                where = and_(queued, jobs.c.parent_id == parent_id)
                stmt = select(func.count(), func.min(jobs.c.array_index), func.max(jobs.c.array_index)).where(where)
                count, first, last = conn.execute(stmt).one()
                if not count:
                    continue
                if last - first + 1 == count:
                    ranges.append((parent_id, int(first), int(last) + 1))
                    continue
                rows = conn.execute(select(jobs.c.array_index).where(where).order_by(jobs.c.array_index))
                start = stop = -1
                for (index,) in rows:
                    if index != stop:
                        if stop > start:
                            ranges.append((parent_id, start, stop))
                        start = index
                    stop = index + 1
                ranges.append((parent_id, start, stop))
        return ranges

    def count_jobs(self) -> int:
        with self._begin() as conn:
            return int(conn.execute(select(func.count()).select_from(jobs)).scalar_one())

    def count_children(self, parent_id: str) -> dict[str, int]:
        # One count per state, each over (status, parent_id, array_index) alone: a million children
        # are counted from the index, never by visiting their rows.
        stmt = union_all(
            *(
                select(literal(status).label("status"), func.count().label("n"))
                .select_from(jobs)
                .where(jobs.c.status == status, jobs.c.parent_id == parent_id)
                for status in _STATUSES
            )
        )
        with self._begin() as conn:
            return {status: int(n) for status, n in conn.execute(stmt) if n}

    def _lock_for_write(self, conn: Connection) -> None:
        # Serialise seq and revision allocation between servers sharing one
        # PostgreSQL database (two writers reading the same max would hand out the
        # same number); SQLite already has a single writer.
        if self.dialect == "postgresql":
            conn.exec_driver_sql("SELECT pg_advisory_xact_lock(74657)")


def _resource(m: Any) -> ResourceRecord:
    return ResourceRecord(
        kind=m["kind"],
        name=m["name"],
        arn=m["arn"],
        created_at=m["created_at"],
        seq=m["seq"],
        body=_loads(m["body"]),
    )


def _definition(m: Any) -> JobDefinitionRecord:
    return JobDefinitionRecord(
        name=m["name"], revision=m["revision"], status=m["status"], arn=m["arn"], body=_loads(m["body"])
    )


def _job(m: Any) -> JobRecord:
    return JobRecord(
        id=m["id"],
        parent_id=m["parent_id"],
        array_index=m["array_index"],
        queue=m["queue"],
        status=m["status"],
        job_name=m["job_name"],
        share_identifier=m["share_identifier"],
        created_at=m["created_at"],
        body=_loads(m["body"]),
        spec=_loads(m["spec"]) if m["spec"] is not None else None,
        definition_name=m["definition_name"],
        definition_revision=m["definition_revision"],
    )


def _job_row(r: JobRecord) -> dict[str, Any]:
    return {
        "id": r.id,
        "parent_id": r.parent_id,
        "array_index": r.array_index,
        "queue": r.queue,
        "status": r.status,
        "job_name": r.job_name,
        "share_identifier": r.share_identifier,
        "created_at": r.created_at,
        "body": _dumps(r.body),
        "spec": _dumps(r.spec) if r.spec is not None else None,
        "definition_name": r.definition_name,
        "definition_revision": r.definition_revision,
    }


def write_outbox(conn: Connection, entries: Sequence[OutboxEntry]) -> None:
    """Add outbox entries inside the caller's transaction (other capabilities' stores use it too)."""
    if entries:
        conn.execute(
            insert(outbox),
            [{"topic": e.topic, "key": e.key, "created_at": e.created_at, "body": e.body} for e in entries],
        )
