"""The attempt outcomes table on SQLite and PostgreSQL: what a supervisor writes, the leader reads and removes."""

from __future__ import annotations

import pytest
from sqlalchemy import create_engine

from openbatch.config import normalize_database_url
from openbatch.executors.base import HOST_LOST
from openbatch.store.sql import SqlStore
from openbatch.supervisor.outcomes import CHANNEL, AttemptOutcome, OutcomeWriter, RecordedOutcomes


@pytest.fixture
def store(migrated_store: SqlStore) -> SqlStore:
    return migrated_store


def _outcome(job_id: str, attempt: int = 1, exit_code: int | None = 0, reason: str | None = None) -> AttemptOutcome:
    return AttemptOutcome(
        job_id=job_id,
        attempt=attempt,
        host="openbatch-a",
        exit_code=exit_code,
        reason=reason,
        started=True,
        started_at=1_000,
        stopped_at=2_000,
    )


def test_written_outcomes_are_read_back_until_removed(store: SqlStore) -> None:
    writer = OutcomeWriter(store.url, "openbatch-a")
    try:
        writer.write([_outcome("j1"), _outcome("j2", 2, 3), _outcome("j3", reason=HOST_LOST, exit_code=137)])
        # The same attempt written again (after a second absence of its server) keeps its first outcome.
        writer.write([_outcome("j1", exit_code=1), _outcome("j4:7")])
    finally:
        writer.close()
    recorded = RecordedOutcomes(store)

    by_key = {outcome.key: outcome for outcome in recorded.read()}
    assert set(by_key) == {"j1#1", "j2#2", "j3#1", "j4:7#1"}
    assert by_key["j1#1"] == _outcome("j1")
    failed = by_key["j2#2"].exit_info()
    assert (failed.exit_code, failed.started, failed.ended_at, failed.lost_host) == (3, True, 2_000, None)
    # A supervisor's own kill (fenced, or stopped) names the host it ran on, as a declared loss does.
    assert by_key["j3#1"].exit_info().lost_host == "openbatch-a"

    recorded.remove([("j1", 1), ("j2", 2), ("j2", 1), ("missing", 1)])
    assert sorted(outcome.key for outcome in recorded.read()) == ["j3#1", "j4:7#1"]


@pytest.mark.postgres
def test_a_write_notifies_listeners(postgres_url: str) -> None:
    url = normalize_database_url(postgres_url)
    store = SqlStore(url)
    store.migrate()
    engine = create_engine(url)
    listener = engine.connect().execution_options(isolation_level="AUTOCOMMIT")
    writer = OutcomeWriter(url, "openbatch-a")
    try:
        listener.exec_driver_sql(f"LISTEN {CHANNEL}")
        writer.write([_outcome("j1")])
        raw = listener.connection.driver_connection
        assert raw is not None
        notes = list(raw.notifies(timeout=5.0, stop_after=1))
        assert [note.channel for note in notes] == [CHANNEL]
    finally:
        writer.close()
        listener.close()
        engine.dispose()
        store.close()
