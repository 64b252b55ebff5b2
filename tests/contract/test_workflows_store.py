"""The workflow tables on SQLite and PostgreSQL: revisions, runs with their steps, schedules."""

from __future__ import annotations

from pathlib import Path

import pytest

from openbatch.config import normalize_database_url
from openbatch.domain.errors import Conflict
from openbatch.store.sql import SqlStore
from openbatch.workflows.store import RunRow, ScheduleRow, StepRow, WorkflowStore


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> WorkflowStore:
    if request.param == "sqlite":
        sql = SqlStore(f"sqlite:///{tmp_path / 'wf.db'}")
    else:
        sql = SqlStore(normalize_database_url(request.getfixturevalue("postgres_url")))
    sql.migrate()
    request.addfinalizer(sql.close)
    return WorkflowStore(sql.engine)


def test_workflow_tables(store: WorkflowStore) -> None:
    """One test per backend: a PostgreSQL database per test costs seconds."""
    # Definitions get a new revision only when they change.
    first = store.put_definition("flow", {"steps": {"a": {}}}, 1)
    assert store.put_definition("flow", {"steps": {"a": {}}}, 2).revision == first.revision == 1
    assert store.put_definition("flow", {"steps": {"b": {}}}, 3).revision == 2
    assert store.get_definition("flow", 1) == first
    assert [(d.name, d.revision) for d in store.list_definitions()] == [("flow", 2)]
    assert store.get_definition("other", None) is None

    # Runs and steps are saved, and listed newest first.
    for index in range(3):
        run = RunRow(f"r{index}", "flow", 1, "RUNNING", 100 + index, {"parameters": {}})
        store.insert_run(run, [StepRow(run.run_id, s, "WAITING", None, {}) for s in ("a", "b")])
    store.save(
        [RunRow("r1", "flow", 1, "FAILED", 101, {"reason": "x"})], [StepRow("r1", "a", "FAILED", "j1", {"n": 1})]
    )
    assert [r.run_id for r in store.list_runs(limit=10)] == ["r2", "r1", "r0"]
    assert [r.run_id for r in store.list_runs(limit=10, before=(102, "r2"))] == ["r1", "r0"]
    assert [r.run_id for r in store.list_runs(status="FAILED", limit=10)] == ["r1"]
    assert {r.run_id for r in store.unfinished_runs()} == {"r0", "r2"}
    steps = {s.step: s for s in store.get_steps("r1")}
    assert (steps["a"].status, steps["a"].job_id, steps["a"].body) == ("FAILED", "j1", {"n": 1})
    assert store.get_run("r1") == RunRow("r1", "flow", 1, "FAILED", 101, {"reason": "x"})

    # Schedules.
    row = ScheduleRow("nightly", "ENABLED", 5, {"cron": "0 2 * * *"})
    store.insert_schedule(row)
    with pytest.raises(Conflict):
        store.insert_schedule(row)
    store.update_schedule(ScheduleRow("nightly", "PAUSED", 6, {"cron": "0 3 * * *"}))
    assert store.list_schedules() == [ScheduleRow("nightly", "PAUSED", 6, {"cron": "0 3 * * *"})]
    assert store.delete_schedule("nightly") and not store.delete_schedule("nightly")
