"""Resources survive a server restart, on SQLite and on PostgreSQL; a fresh store gets the defaults; how jobs
are written."""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

import httpx
import pytest

from tests.compute import compute_resources
from tests.support import ServerProcess, make_queue, shell_definition, unique, wait_for_status

if TYPE_CHECKING:
    from mypy_boto3_batch import BatchClient


def _create_everything(batch: BatchClient) -> dict[str, Any]:
    ce, queue, definition, policy = unique("ce"), unique("q"), unique("jd"), unique("sp")
    policy_arn = batch.create_scheduling_policy(
        name=policy, fairsharePolicy={"shareDistribution": [{"shareIdentifier": "a"}]}, tags={"p": "1"}
    )["arn"]
    batch.create_compute_environment(
        computeEnvironmentName=ce,
        type="MANAGED",
        computeResources=compute_resources("EC2", 3),
        tags={"c": "1"},
    )
    batch.create_job_queue(
        jobQueueName=queue,
        priority=7,
        schedulingPolicyArn=policy_arn,
        computeEnvironmentOrder=[{"order": 1, "computeEnvironment": ce}],
    )
    for _ in range(2):
        batch.register_job_definition(
            jobDefinitionName=definition, type="container", containerProperties={"image": "busybox"}
        )
    batch.deregister_job_definition(jobDefinition=f"{definition}:2")
    batch.update_compute_environment(computeEnvironment=ce, state="DISABLED")
    return {"ce": ce, "queue": queue, "definition": definition, "policy_arn": policy_arn}


def _snapshot(batch: BatchClient, names: dict[str, Any]) -> dict[str, Any]:
    return {
        "ces": batch.describe_compute_environments(computeEnvironments=["default", names["ce"]])["computeEnvironments"],
        "queues": batch.describe_job_queues(jobQueues=["default", names["queue"]])["jobQueues"],
        "definitions": batch.describe_job_definitions(jobDefinitionName=names["definition"])["jobDefinitions"],
        "policies": batch.describe_scheduling_policies(arns=[names["policy_arn"]])["schedulingPolicies"],
        "all_ces": [
            ce["computeEnvironmentName"] for ce in batch.describe_compute_environments()["computeEnvironments"]
        ],
    }


def _check_restart(server: ServerProcess) -> None:
    batch = server.batch()
    names = _create_everything(batch)
    before = _snapshot(batch, names)
    assert len(before["ces"]) == 2
    assert [d["status"] for d in before["definitions"]] == ["ACTIVE", "INACTIVE"]

    server.restart()
    batch = server.batch()
    after = _snapshot(batch, names)
    assert after == before
    # Revision numbering and resource uniqueness continue from the stored state.
    revision = batch.register_job_definition(
        jobDefinitionName=names["definition"], type="container", containerProperties={"image": "busybox"}
    )["revision"]
    assert revision == 3
    assert len(batch.describe_compute_environments()["computeEnvironments"]) == len(before["all_ces"])
    # PostgreSQL text cannot hold NUL; such lookups are the caller's error on every backend.
    response = httpx.post(server.url + "/v1/describejobqueues", json={"jobQueues": ["a\x00b"]})
    assert response.status_code == 400
    assert response.headers["x-amzn-ErrorType"] == "ClientException"
    response = httpx.get(server.url + "/v1/tags/" + quote(names["policy_arn"] + "\x00", safe=""))
    assert response.status_code == 400


def test_sqlite_restart_keeps_resources(tmp_path: Path) -> None:
    server = ServerProcess(tmp_path / "data").start()
    try:
        _check_restart(server)
        assert (tmp_path / "data" / "openbatch.db").exists()
    finally:
        server.stop()


@pytest.mark.postgres
def test_postgresql_restart_keeps_resources(tmp_path: Path, postgres_url: str) -> None:
    server = ServerProcess(tmp_path / "data", database_url=postgres_url).start()
    try:
        _check_restart(server)
        assert not (tmp_path / "data" / "openbatch.db").exists()
    finally:
        server.stop()


def test_health_and_defaults_on_a_fresh_store(tmp_path: Path) -> None:
    server = ServerProcess(tmp_path / "data").start()
    try:
        response = httpx.get(server.url + "/health")
        assert response.status_code == 200
        batch = server.batch()
        ces = batch.describe_compute_environments()["computeEnvironments"]
        assert [ce["computeEnvironmentName"] for ce in ces] == ["default"]
        assert ces[0]["state"] == "ENABLED"
        assert ces[0]["status"] == "VALID"
        assert ces[0]["computeResources"]["maxvCpus"] >= 1
        queues = batch.describe_job_queues()["jobQueues"]
        assert [q["jobQueueName"] for q in queues] == ["default"]
        assert queues[0]["state"] == "ENABLED"
        assert queues[0]["computeEnvironmentOrder"] == [
            {"order": 1, "computeEnvironment": ces[0]["computeEnvironmentArn"]}
        ]
        assert batch.describe_job_definitions()["jobDefinitions"] == []
        assert batch.list_scheduling_policies()["schedulingPolicies"] == []
    finally:
        server.stop()


def test_a_job_waiting_for_nothing_is_stored_runnable_by_its_first_write(tmp_path: Path) -> None:
    # Given a server whose SQLite store records every change of a job row's status
    server = ServerProcess(tmp_path / "data").start()
    try:
        with sqlite3.connect(server.data_dir / "openbatch.db") as db:
            db.executescript(
                "CREATE TABLE status_updates (id TEXT, old TEXT, new TEXT);"
                "CREATE TRIGGER record_status_updates AFTER UPDATE OF status ON jobs WHEN old.status != new.status "
                "BEGIN INSERT INTO status_updates VALUES (new.id, old.status, new.status); END;"
            )
        batch = server.batch()
        queue = make_queue(batch, state="DISABLED")  # its jobs stay RUNNABLE
        definition = shell_definition(batch, "true")

        # When a job with no dependencies is submitted, an array job with none, and one that depends on the first
        first = batch.submit_job(jobName="first", jobQueue=queue, jobDefinition=definition)["jobId"]
        array = batch.submit_job(
            jobName="array", jobQueue=queue, jobDefinition=definition, arrayProperties={"size": 50}
        )["jobId"]
        second = batch.submit_job(
            jobName="second", jobQueue=queue, jobDefinition=definition, dependsOn=[{"jobId": first}]
        )["jobId"]
        wait_for_status(batch, second, ["PENDING"])
        batch.list_jobs(jobQueue=queue, jobStatus="RUNNABLE")  # ListJobs writes the engine's changes first

        # Then the first and the array's children were inserted RUNNABLE (the array PENDING) and their status
        # never written again; the second moved as before
        with sqlite3.connect(server.data_dir / "openbatch.db") as db:
            updates = db.execute("SELECT id, old, new FROM status_updates").fetchall()
            stored = dict(db.execute("SELECT id, status FROM jobs WHERE id IN (?, ?)", (first, second)).fetchall())
            children = db.execute("SELECT status, count(*) FROM jobs WHERE parent_id = ? GROUP BY status", (array,))
            by_status = dict(children.fetchall())
            parent_status = db.execute("SELECT status FROM jobs WHERE id = ?", (array,)).fetchone()[0]
        assert updates == [(second, "SUBMITTED", "PENDING")]
        assert stored == {first: "RUNNABLE", second: "PENDING"}
        assert by_status == {"RUNNABLE": 50} and parent_status == "PENDING"
        assert batch.describe_jobs(jobs=[first])["jobs"][0]["status"] == "RUNNABLE"
        parent = batch.describe_jobs(jobs=[array])["jobs"][0]
        assert parent["status"] == "PENDING"
        assert parent["arrayProperties"]["statusSummary"]["RUNNABLE"] == 50
        assert parent["arrayProperties"]["statusSummary"]["PENDING"] == 0
    finally:
        server.stop()
