"""GPU requirements through a real server whose host has GPUs 0-1 (``OPENBATCH_GPUS`` stands in for detection)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from tests.support import ServerProcess, shell_definition, unique, wait_for, wait_for_status

if TYPE_CHECKING:
    from mypy_boto3_batch import BatchClient

DONE = ("SUCCEEDED", "FAILED")


@pytest.fixture(scope="module")
def gpu_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    server = ServerProcess(tmp_path_factory.mktemp("gpu"), env={"OPENBATCH_GPUS": "0,1"}).start()
    try:
        yield server
    finally:
        server.stop()


def gpu_job(batch: BatchClient, definition: str, gpus: int) -> str:
    return batch.submit_job(
        jobName=unique("gpu"),
        jobQueue="default",
        jobDefinition=definition,
        containerOverrides={"resourceRequirements": [{"type": "GPU", "value": str(gpus)}]},
    )["jobId"]


def test_whole_gpus_are_assigned_and_never_shared(gpu_server: ServerProcess, tmp_path: Path) -> None:
    batch = gpu_server.batch()
    out = tmp_path / "gpus"
    out.mkdir()
    definition = shell_definition(
        batch, f'echo "$CUDA_VISIBLE_DEVICES $NVIDIA_VISIBLE_DEVICES" > {out}/$AWS_BATCH_JOB_ID; sleep 0.5'
    )
    ids = [gpu_job(batch, definition, 1) for _ in range(4)]
    jobs = {job_id: wait_for_status(batch, job_id, DONE) for job_id in ids}
    assigned = {job_id: (out / job_id).read_text().split() for job_id in ids}
    for cuda, nvidia in assigned.values():
        assert cuda == nvidia and cuda in ("0", "1")
    # Jobs holding the same GPU never overlap in time.
    for a in ids:
        for b in ids:
            if a < b and assigned[a][0] == assigned[b][0]:
                overlap = min(jobs[a]["stoppedAt"], jobs[b]["stoppedAt"]) - max(
                    jobs[a]["startedAt"], jobs[b]["startedAt"]
                )
                assert overlap <= 0, (a, b)


def test_two_gpu_job_gets_both(gpu_server: ServerProcess, tmp_path: Path) -> None:
    batch = gpu_server.batch()
    out = tmp_path / "both"
    definition = shell_definition(batch, f'echo "$CUDA_VISIBLE_DEVICES" > {out}')
    assert wait_for_status(batch, gpu_job(batch, definition, 2), DONE)["status"] == "SUCCEEDED"
    assert out.read_text().strip() == "0,1"


def test_more_gpus_than_the_host_has_waits_with_a_reason(gpu_server: ServerProcess) -> None:
    batch = gpu_server.batch()
    job_id = gpu_job(batch, shell_definition(batch, "true"), 3)

    def reason() -> str:
        return str(batch.describe_jobs(jobs=[job_id])["jobs"][0].get("statusReason", ""))

    wait_for(lambda: "GPU" in reason())
    assert reason() == "MISCONFIGURATION:JOB_RESOURCE_REQUIREMENT - the job needs 3 GPUs but the host has 2 GPUs"
    assert batch.describe_jobs(jobs=[job_id])["jobs"][0]["status"] == "RUNNABLE"
    batch.cancel_job(jobId=job_id, reason="cleanup")


def test_no_gpu_on_the_host(batch: BatchClient) -> None:
    # The module-wide server of conftest declares no GPUs.
    job_id = gpu_job(batch, shell_definition(batch, "true"), 1)
    wait_for(lambda: "no GPUs" in str(batch.describe_jobs(jobs=[job_id])["jobs"][0].get("statusReason", "")))
    batch.cancel_job(jobId=job_id, reason="cleanup")
