"""The migration tree upgrades a store written by an older release without losing jobs."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from sqlalchemy import text

from openbatch.config import normalize_database_url
from openbatch.store.sql import SqlStore


@pytest.fixture(params=["sqlite", "postgresql"])
def old_store(request: pytest.FixtureRequest, tmp_path: Path) -> SqlStore:
    if request.param == "sqlite":
        return SqlStore(f"sqlite:///{tmp_path / 'old.db'}")
    return SqlStore(normalize_database_url(request.getfixturevalue("postgres_url")))


def test_job_specs_move_out_of_the_body(old_store: SqlStore) -> None:
    # Given a store at revision 0001, where a job's spec lived inside its body
    old_store.migrate("0001")
    spec = {"job_name": "old", "array_size": None, "definition_arn": "arn:aws:batch:us-east-1:1:job-definition/jd:3"}
    with old_store.engine.begin() as conn:
        conn.execute(
            text(
                "INSERT INTO jobs (id, parent_id, array_index, queue, status, job_name, share_identifier, "
                "created_at, body) VALUES ('j1', NULL, NULL, 'q', 'SUCCEEDED', 'old', NULL, 1, :body)"
            ),
            {"body": json.dumps({"spec": spec, "attempts": []})},
        )
    # When it is migrated to the newest revision
    old_store.migrate()
    # Then the job keeps its state, and its spec is in the spec column
    (record,) = old_store.get_jobs(["j1"])
    assert record.spec == spec
    assert record.body == {"attempts": []}
    assert (record.definition_name, record.definition_revision) == ("jd", 3)
    old_store.close()
