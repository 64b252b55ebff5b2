"""Why a PENDING job waits, and which dependency failed — for plain jobs and workflow steps alike."""

from __future__ import annotations

from typing import TYPE_CHECKING

from tests.support import shell_definition, wait_for, wait_for_status

if TYPE_CHECKING:
    from mypy_boto3_batch import BatchClient


def test_a_pending_job_names_what_it_waits_for(batch: BatchClient) -> None:
    slow = shell_definition(batch, "sleep 30")
    running = batch.submit_job(jobName="running", jobQueue="default", jobDefinition=slow)["jobId"]
    wait_for_status(batch, running, ["RUNNING"])
    waiting = batch.submit_job(
        jobName="waiting", jobQueue="default", jobDefinition=slow, dependsOn=[{"jobId": running}]
    )["jobId"]
    last = batch.submit_job(
        jobName="last",
        jobQueue="default",
        jobDefinition=shell_definition(batch, "true"),
        dependsOn=[{"jobId": running}, {"jobId": waiting}],
    )["jobId"]

    def reason() -> str | None:
        job = batch.describe_jobs(jobs=[last])["jobs"][0]
        text = job.get("statusReason")
        return text if job["status"] == "PENDING" and text else None

    assert wait_for(reason) == f"Waiting for 2 dependencies: {running} (RUNNING), {waiting} (PENDING)"
    listed = batch.list_jobs(jobQueue="default", jobStatus="PENDING")["jobSummaryList"]
    assert next(j for j in listed if j["jobId"] == waiting)["statusReason"] == (
        f"Waiting for 1 dependency: {running} (RUNNING)"
    )
    batch.terminate_job(jobId=running, reason="stop")
    failed = wait_for_status(batch, waiting, ["FAILED"])
    assert failed["statusReason"] == f"Dependent Job failed: {running}"
    assert wait_for_status(batch, last, ["FAILED"])["statusReason"].startswith("Dependent Job failed: ")
