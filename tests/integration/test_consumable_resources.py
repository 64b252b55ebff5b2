"""Consumable resources scheduled for real through a server: contention, replenishment, waiting
reasons, exact quantities, ListJobsByConsumableResource, and a restart."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from tests.support import ServerProcess, client_exception, make_queue, unique, wait_for, wait_for_status

if TYPE_CHECKING:
    from mypy_boto3_batch import BatchClient

WAIT_FOR_FILE = 'for i in $(seq 600); do [ -f "$GATE" ] && exit 0; sleep 0.1; done; exit 1'
"""Holds its consumable resources until the test creates the gate file (60 s at most)."""


def resource(batch: BatchClient, total: int, kind: str = "REPLENISHABLE") -> str:
    name = unique("licence")
    batch.create_consumable_resource(consumableResourceName=name, totalQuantity=total, resourceType=kind)
    return name


def gated_definition(batch: BatchClient, gate: Path, needs: dict[str, int]) -> str:
    return batch.register_job_definition(
        jobDefinitionName=unique("gated"),
        type="container",
        containerProperties={
            "image": "busybox",
            "command": ["sh", "-c", WAIT_FOR_FILE],
            "environment": [{"name": "GATE", "value": str(gate)}],
            "resourceRequirements": [{"type": "VCPU", "value": "1"}, {"type": "MEMORY", "value": "32"}],
        },
        consumableResourceProperties={
            "consumableResourceList": [{"consumableResource": n, "quantity": q} for n, q in needs.items()]
        },
    )["jobDefinitionArn"]


def quantities(batch: BatchClient, name: str) -> tuple[int, int, int]:
    detail = batch.describe_consumable_resource(consumableResource=name)
    return detail["totalQuantity"], detail["inUseQuantity"], detail["availableQuantity"]


def status_of(batch: BatchClient, job_id: str) -> dict[str, Any]:
    return dict(batch.describe_jobs(jobs=[job_id])["jobs"][0])


def test_jobs_wait_for_a_replenishable_resource_and_get_it_back(batch: BatchClient, tmp_path: Path) -> None:
    licence = resource(batch, 2)
    queue = make_queue(batch, max_vcpus=8)
    gate = tmp_path / "gate"
    definition = gated_definition(batch, gate, {licence: 1})
    jobs = [batch.submit_job(jobName=f"job{i}", jobQueue=queue, jobDefinition=definition)["jobId"] for i in range(3)]
    for job_id in jobs[:2]:
        wait_for_status(batch, job_id, ["RUNNING"])
    third = wait_for(lambda: (d := status_of(batch, jobs[2])).get("statusReason") and d)
    assert third["status"] == "RUNNABLE"
    assert third["statusReason"] == (
        f"CONSUMABLE_RESOURCE - the job needs 1 of consumable resource {licence}; 0 of 2 are available"
    )
    assert third["consumableResourceProperties"]["consumableResourceList"][0]["quantity"] == 1
    assert quantities(batch, licence) == (2, 2, 0)
    listed = batch.list_jobs_by_consumable_resource(consumableResource=licence)["jobs"]
    assert sorted(j["jobArn"].rsplit("/", 1)[-1] for j in listed) == sorted(jobs)
    assert {j["jobStatus"] for j in listed} == {"RUNNING", "RUNNABLE"}
    waiting = batch.list_jobs_by_consumable_resource(
        consumableResource=licence, filters=[{"name": "JOB_STATUS", "values": ["RUNNABLE"]}]
    )["jobs"]
    assert [j["jobName"] for j in waiting] == ["job2"] and waiting[0]["quantity"] == 1
    gate.touch()
    for job_id in jobs:
        assert wait_for_status(batch, job_id, ["SUCCEEDED", "FAILED"])["status"] == "SUCCEEDED"
    assert quantities(batch, licence) == (2, 0, 2)
    finished = batch.list_jobs_by_consumable_resource(consumableResource=licence)["jobs"]
    assert {j["jobStatus"] for j in finished} == {"SUCCEEDED"}


def test_a_non_replenishable_resource_is_consumed(batch: BatchClient, tmp_path: Path) -> None:
    tokens = resource(batch, 3, "NON_REPLENISHABLE")
    queue = make_queue(batch, max_vcpus=8)
    gate = tmp_path / "gate"
    gate.touch()
    definition = gated_definition(batch, gate, {tokens: 2})
    first = batch.submit_job(jobName="first", jobQueue=queue, jobDefinition=definition)["jobId"]
    assert wait_for_status(batch, first, ["SUCCEEDED", "FAILED"])["status"] == "SUCCEEDED"
    assert quantities(batch, tokens) == (1, 0, 1)
    second = batch.submit_job(jobName="second", jobQueue=queue, jobDefinition=definition)["jobId"]
    reason = wait_for(lambda: status_of(batch, second).get("statusReason"))
    assert reason.endswith(f"needs 2 of consumable resource {tokens}; 1 of 1 are available")
    updated = batch.update_consumable_resource(consumableResource=tokens, operation="ADD", quantity=1)
    assert updated["totalQuantity"] == 2
    assert wait_for_status(batch, second, ["SUCCEEDED", "FAILED"])["status"] == "SUCCEEDED"
    assert quantities(batch, tokens) == (0, 0, 0)


def test_submit_override_and_unknown_resources(batch: BatchClient, tmp_path: Path) -> None:
    licence = resource(batch, 1)
    queue = make_queue(batch)
    gate = tmp_path / "gate"
    gate.touch()
    with client_exception("ConsumableResource", "does not exist"):
        gated_definition(batch, gate, {unique("missing"): 1})
    with client_exception("quantity"):
        gated_definition(batch, gate, {licence: 0})
    definition = gated_definition(batch, gate, {licence: 1})
    with client_exception("does not exist"):
        batch.submit_job(
            jobName="x",
            jobQueue=queue,
            jobDefinition=definition,
            consumableResourcePropertiesOverride={
                "consumableResourceList": [{"consumableResource": unique("missing"), "quantity": 1}]
            },
        )
    bigger = resource(batch, 5)
    job_id = batch.submit_job(
        jobName="override",
        jobQueue=queue,
        jobDefinition=definition,
        consumableResourcePropertiesOverride={
            "consumableResourceList": [{"consumableResource": bigger, "quantity": 4}]
        },
    )["jobId"]
    assert wait_for_status(batch, job_id, ["SUCCEEDED", "FAILED"])["status"] == "SUCCEEDED"
    [entry] = status_of(batch, job_id)["consumableResourceProperties"]["consumableResourceList"]
    assert entry["consumableResource"].endswith(f":consumable-resource/{bigger}") and entry["quantity"] == 4
    with client_exception("unfinished"):
        waiting = batch.submit_job(
            jobName="holds",
            jobQueue=queue,
            jobDefinition=definition,
            consumableResourcePropertiesOverride={
                "consumableResourceList": [{"consumableResource": bigger, "quantity": 9}]
            },
        )["jobId"]
        batch.delete_consumable_resource(consumableResource=bigger)
    batch.cancel_job(jobId=waiting, reason="done")


@pytest.fixture
def restartable(tmp_path: Path) -> Iterator[ServerProcess]:
    proc = ServerProcess(tmp_path / "data", extra_args=("--kill-grace-seconds", "2"), env={"OPENBATCH_GPUS": ""})
    proc.start()
    try:
        yield proc
    finally:
        proc.stop()


@pytest.mark.slow
def test_quantities_and_waiting_jobs_survive_a_restart(restartable: ServerProcess, tmp_path: Path) -> None:
    batch = restartable.batch()
    tokens = resource(batch, 3, "NON_REPLENISHABLE")
    queue = make_queue(batch, max_vcpus=8)
    gate = tmp_path / "gate"
    gate.touch()
    consumed = batch.submit_job(jobName="c", jobQueue=queue, jobDefinition=gated_definition(batch, gate, {tokens: 2}))
    assert wait_for_status(batch, consumed["jobId"], ["SUCCEEDED", "FAILED"])["status"] == "SUCCEEDED"
    waiting = batch.submit_job(jobName="w", jobQueue=queue, jobDefinition=gated_definition(batch, gate, {tokens: 3}))
    wait_for(lambda: status_of(batch, waiting["jobId"]).get("statusReason"))
    restartable.restart()
    batch = restartable.batch()
    assert quantities(batch, tokens) == (1, 0, 1)
    reason = wait_for(lambda: status_of(batch, waiting["jobId"]).get("statusReason"))
    assert reason.endswith(f"needs 3 of consumable resource {tokens}; 1 of 1 are available")
    listed = batch.list_jobs_by_consumable_resource(consumableResource=tokens)["jobs"]
    assert [j["jobName"] for j in listed] == ["w"]
