"""Workflow tables (migration 0005, branch ``workflows``) and the queries on them.

Rows keep a few columns for lookups and everything else in a JSON ``body``, like the
job rows. Writes come from the server's event loop only, so one transaction per batch
of step changes is enough; the job store's own connection is not touched.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import BigInteger, Column, Engine, Index, Integer, String, Table, Text, bindparam, func, select, update
from sqlalchemy.exc import IntegrityError

from openbatch.domain.errors import Conflict
from openbatch.store.base import OutboxEntry
from openbatch.store.sql import write_outbox
from openbatch.store.tables import metadata

_dumps = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False).encode

workflow_definitions = Table(
    "workflow_definitions",
    metadata,
    Column("name", String(100), primary_key=True),
    Column("revision", Integer, primary_key=True),
    Column("created_at", BigInteger, nullable=False),
    Column("body", Text, nullable=False),
)

workflow_runs = Table(
    "workflow_runs",
    metadata,
    Column("run_id", String(64), primary_key=True),
    Column("name", String(100), nullable=False),
    Column("revision", Integer, nullable=False),
    Column("status", String(16), nullable=False),
    Column("created_at", BigInteger, nullable=False),
    Column("body", Text, nullable=False),
    Index("ix_workflow_runs_name_created", "name", "created_at"),
    Index("ix_workflow_runs_status", "status"),
)

workflow_steps = Table(
    "workflow_steps",
    metadata,
    Column("run_id", String(64), primary_key=True),
    Column("step", String(64), primary_key=True),
    Column("status", String(16), nullable=False),
    Column("job_id", String(64), nullable=True),
    Column("body", Text, nullable=False),
)

workflow_schedules = Table(
    "workflow_schedules",
    metadata,
    Column("name", String(128), primary_key=True),
    Column("state", String(16), nullable=False),
    Column("next_fire_at", BigInteger, nullable=True),
    Column("body", Text, nullable=False),
)


@dataclass(frozen=True, slots=True)
class DefinitionRow:
    name: str
    revision: int
    created_at: int
    body: dict[str, Any]


@dataclass(frozen=True, slots=True)
class RunRow:
    run_id: str
    name: str
    revision: int
    status: str
    created_at: int
    body: dict[str, Any]


@dataclass(frozen=True, slots=True)
class StepRow:
    run_id: str
    step: str
    status: str
    job_id: str | None
    body: dict[str, Any]


@dataclass(frozen=True, slots=True)
class ScheduleRow:
    name: str
    state: str
    next_fire_at: int | None
    body: dict[str, Any]


class WorkflowStore:
    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    # --- definitions -------------------------------------------------------------

    def put_definition(self, name: str, body: dict[str, Any], now: int) -> DefinitionRow:
        """A new revision of ``name``, unless the latest one has the same body (then that one)."""
        latest = self.get_definition(name, None)
        if latest is not None and latest.body == body:
            return latest
        revision = (latest.revision if latest else 0) + 1
        try:
            with self.engine.begin() as conn:
                conn.execute(
                    workflow_definitions.insert().values(
                        name=name, revision=revision, created_at=now, body=_dumps(body)
                    )
                )
        except IntegrityError:
            raise Conflict(f"Workflow {name} was registered concurrently; retry") from None
        return DefinitionRow(name, revision, now, body)

    def get_definition(self, name: str, revision: int | None) -> DefinitionRow | None:
        t = workflow_definitions
        query = select(t).where(t.c.name == name)
        query = query.where(t.c.revision == revision) if revision is not None else query.order_by(t.c.revision.desc())
        with self.engine.connect() as conn:
            row = conn.execute(query.limit(1)).first()
        return DefinitionRow(row.name, row.revision, row.created_at, json.loads(row.body)) if row else None

    def list_definitions(self) -> list[DefinitionRow]:
        t = workflow_definitions
        latest = select(t.c.name, func.max(t.c.revision).label("revision")).group_by(t.c.name).subquery()
        query = (
            select(t).join(latest, (t.c.name == latest.c.name) & (t.c.revision == latest.c.revision)).order_by(t.c.name)
        )
        with self.engine.connect() as conn:
            rows = conn.execute(query).fetchall()
        return [DefinitionRow(r.name, r.revision, r.created_at, json.loads(r.body)) for r in rows]

    def delete_definition(self, name: str) -> int:
        """Remove every revision of ``name``; how many there were. Runs keep their own copy of the document."""
        t = workflow_definitions
        with self.engine.begin() as conn:
            return int(conn.execute(t.delete().where(t.c.name == name)).rowcount)

    # --- runs and steps ----------------------------------------------------------------

    def insert_run(self, run: RunRow, steps: Sequence[StepRow], outbox: Sequence[OutboxEntry] = ()) -> None:
        with self.engine.begin() as conn:
            write_outbox(conn, outbox)
            conn.execute(
                workflow_runs.insert().values(
                    run_id=run.run_id,
                    name=run.name,
                    revision=run.revision,
                    status=run.status,
                    created_at=run.created_at,
                    body=_dumps(run.body),
                )
            )
            conn.execute(
                workflow_steps.insert(),
                [
                    {"run_id": s.run_id, "step": s.step, "status": s.status, "job_id": s.job_id, "body": _dumps(s.body)}
                    for s in steps
                ],
            )

    def save(self, runs: Iterable[RunRow], steps: Iterable[StepRow], outbox: Sequence[OutboxEntry] = ()) -> None:
        """Update runs and steps in one transaction, with the outbox entries describing the changes."""
        run_rows = [{"k": r.run_id, "status": r.status, "body": _dumps(r.body)} for r in runs]
        step_rows = [
            {"k": s.run_id, "s": s.step, "status": s.status, "job_id": s.job_id, "body": _dumps(s.body)} for s in steps
        ]
        if not run_rows and not step_rows:
            return
        with self.engine.begin() as conn:
            write_outbox(conn, outbox)
            if run_rows:
                r = workflow_runs
                conn.execute(
                    update(r)
                    .where(r.c.run_id == bindparam("k"))
                    .values(status=bindparam("status"), body=bindparam("body")),
                    run_rows,
                )
            if step_rows:
                st = workflow_steps
                conn.execute(
                    update(st)
                    .where((st.c.run_id == bindparam("k")) & (st.c.step == bindparam("s")))
                    .values(status=bindparam("status"), job_id=bindparam("job_id"), body=bindparam("body")),
                    step_rows,
                )

    def get_run(self, run_id: str) -> RunRow | None:
        with self.engine.connect() as conn:
            row = conn.execute(select(workflow_runs).where(workflow_runs.c.run_id == run_id)).first()
        return _run(row) if row else None

    def get_steps(self, run_id: str) -> list[StepRow]:
        with self.engine.connect() as conn:
            rows = conn.execute(select(workflow_steps).where(workflow_steps.c.run_id == run_id)).fetchall()
        return [StepRow(r.run_id, r.step, r.status, r.job_id, json.loads(r.body)) for r in rows]

    def list_runs(
        self, *, name: str | None = None, status: str | None = None, before: tuple[int, str] | None = None, limit: int
    ) -> list[RunRow]:
        """Newest first."""
        t = workflow_runs
        query = select(t)
        if name is not None:
            query = query.where(t.c.name == name)
        if status is not None:
            query = query.where(t.c.status == status)
        if before is not None:
            created, run_id = before
            query = query.where((t.c.created_at < created) | ((t.c.created_at == created) & (t.c.run_id < run_id)))
        query = query.order_by(t.c.created_at.desc(), t.c.run_id.desc()).limit(limit)
        with self.engine.connect() as conn:
            return [_run(r) for r in conn.execute(query).fetchall()]

    def unfinished_runs(self) -> list[RunRow]:
        with self.engine.connect() as conn:
            rows = conn.execute(select(workflow_runs).where(workflow_runs.c.status == "RUNNING")).fetchall()
        return [_run(r) for r in rows]

    # --- schedules ---------------------------------------------------------------------

    def insert_schedule(self, row: ScheduleRow) -> None:
        try:
            with self.engine.begin() as conn:
                conn.execute(
                    workflow_schedules.insert().values(
                        name=row.name, state=row.state, next_fire_at=row.next_fire_at, body=_dumps(row.body)
                    )
                )
        except IntegrityError:
            raise Conflict(f"Schedule {row.name} already exists") from None

    def update_schedule(self, row: ScheduleRow) -> None:
        t = workflow_schedules
        with self.engine.begin() as conn:
            conn.execute(
                update(t)
                .where(t.c.name == row.name)
                .values(state=row.state, next_fire_at=row.next_fire_at, body=_dumps(row.body))
            )

    def delete_schedule(self, name: str) -> bool:
        t = workflow_schedules
        with self.engine.begin() as conn:
            return conn.execute(t.delete().where(t.c.name == name)).rowcount > 0

    def list_schedules(self) -> list[ScheduleRow]:
        t = workflow_schedules
        with self.engine.connect() as conn:
            rows = conn.execute(select(t).order_by(t.c.name)).fetchall()
        return [ScheduleRow(r.name, r.state, r.next_fire_at, json.loads(r.body)) for r in rows]


def _run(row: Any) -> RunRow:
    return RunRow(row.run_id, row.name, row.revision, row.status, row.created_at, json.loads(row.body))
