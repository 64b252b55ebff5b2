"""Fair-share job queues through a real server: shares converge to their weights, priorities within a share."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import pytest

from tests.support import client_exception, fairshare_queue, shell_definition, wait_for, wait_for_status

if TYPE_CHECKING:
    from mypy_boto3_batch import BatchClient

DONE = ("SUCCEEDED", "FAILED")


def children(batch: BatchClient, parent: str, size: int) -> list[dict[str, Any]]:
    ids = [f"{parent}:{i}" for i in range(size)]
    return [
        dict(j) for start in range(0, size, 100) for j in batch.describe_jobs(jobs=ids[start : start + 100])["jobs"]
    ]


def vcpu_seconds(jobs: list[dict[str, Any]], start: int, end: int) -> float:
    return float(sum(max(0, min(j["stoppedAt"], end) - max(j["startedAt"], start)) for j in jobs)) / 1000


@pytest.mark.slow
def test_two_shares_weighted_1_to_3_converge_to_3_to_1(batch: BatchClient) -> None:
    # Given one compute environment of 4 vCPUs shared by "heavy" (weight 1) and "light" (weight 3)
    queue = fairshare_queue(
        batch, 4, [{"shareIdentifier": "heavy", "weightFactor": 1.0}, {"shareIdentifier": "light", "weightFactor": 3.0}]
    )
    definition = shell_definition(batch, "sleep 0.25")
    # When both keep far more work queued than the compute environment can run
    heavy = batch.submit_job(
        jobName="heavy",
        jobQueue=queue,
        jobDefinition=definition,
        shareIdentifier="heavy",
        arrayProperties={"size": 120},
    )["jobId"]
    light = batch.submit_job(
        jobName="light",
        jobQueue=queue,
        jobDefinition=definition,
        shareIdentifier="light",
        arrayProperties={"size": 60},
    )["jobId"]
    for parent in (heavy, light):
        wait_for_status(batch, parent, DONE, timeout=120)
    heavy_jobs, light_jobs = children(batch, heavy, 120), children(batch, light, 60)
    # Then, while both shares had work waiting, vCPU-seconds split 3:1 (within 10 %)
    first_start = min(j["startedAt"] for j in heavy_jobs + light_jobs)
    window_end = min(max(j["startedAt"] for j in heavy_jobs), max(j["startedAt"] for j in light_jobs))
    window_start = first_start + 1000  # let the shares settle from an empty history
    assert window_end - window_start > 4000, "the contention window is too short to measure"
    ratio = vcpu_seconds(heavy_jobs, window_start, window_end) / vcpu_seconds(light_jobs, window_start, window_end)
    assert 2.7 <= ratio <= 3.3, ratio


def test_share_identifier_rules(batch: BatchClient) -> None:
    queue = fairshare_queue(batch, 2, [{"shareIdentifier": "team*", "weightFactor": 0.5}])
    definition = shell_definition(batch, "true")
    with client_exception("shareIdentifier"):
        batch.submit_job(jobName="x", jobQueue=queue, jobDefinition=definition)
    job = batch.submit_job(jobName="x", jobQueue=queue, jobDefinition=definition, shareIdentifier="teamA")["jobId"]
    detail = wait_for_status(batch, job, DONE)
    assert detail["status"] == "SUCCEEDED"
    assert detail["shareIdentifier"] == "teamA"
    with client_exception("fair share"):
        batch.submit_job(jobName="x", jobQueue="default", jobDefinition=definition, shareIdentifier="teamA")
    listed = batch.list_jobs(
        jobQueue=queue, jobStatus="SUCCEEDED", filters=[{"name": "SHARE_IDENTIFIER", "values": ["teamA"]}]
    )["jobSummaryList"]
    assert [j["jobId"] for j in listed] == [job]


def test_scheduling_priority_orders_jobs_within_a_share(batch: BatchClient) -> None:
    queue = fairshare_queue(batch, 1, [{"shareIdentifier": "a"}])
    blocker_definition = shell_definition(batch, "sleep 1")
    blocker = batch.submit_job(jobName="b", jobQueue=queue, jobDefinition=blocker_definition, shareIdentifier="a")
    wait_for_status(batch, blocker["jobId"], ["RUNNING"])
    definition = shell_definition(batch, "sleep 0.05")
    low = [
        batch.submit_job(
            jobName="low", jobQueue=queue, jobDefinition=definition, shareIdentifier="a", schedulingPriorityOverride=1
        )["jobId"]
        for _ in range(3)
    ]
    high = [
        batch.submit_job(
            jobName="high", jobQueue=queue, jobDefinition=definition, shareIdentifier="a", schedulingPriorityOverride=50
        )["jobId"]
        for _ in range(3)
    ]
    # Every waiting job says why it is not next.
    wait_for(lambda: all(batch.describe_jobs(jobs=[j])["jobs"][0].get("statusReason") for j in low))
    jobs = {j: wait_for_status(batch, j, DONE) for j in low + high}
    assert max(jobs[j]["startedAt"] for j in high) <= min(jobs[j]["startedAt"] for j in low)
    assert jobs[high[0]]["schedulingPriority"] == 50


def test_snapshot_reports_share_utilization(batch: BatchClient) -> None:
    queue = fairshare_queue(batch, 2, [{"shareIdentifier": "x"}, {"shareIdentifier": "y"}])
    definition = shell_definition(batch, "sleep 2")
    ids = [
        batch.submit_job(jobName="s", jobQueue=queue, jobDefinition=definition, shareIdentifier=share)["jobId"]
        for share in ("x", "y", "x")
    ]
    wait_for(lambda: sum(batch.describe_jobs(jobs=ids)["jobs"][i]["status"] == "RUNNING" for i in range(3)) == 2)
    snapshot = batch.get_job_queue_snapshot(jobQueue=queue)
    utilization = snapshot["queueUtilization"]
    assert utilization["totalCapacityUsage"] == [{"capacityUnit": "VCPU", "quantity": 2.0}]
    fairshare = utilization["fairshareUtilization"]
    assert fairshare["activeShareCount"] == 2
    assert {u["shareIdentifier"] for u in fairshare["topCapacityUtilization"]} == {"x", "y"}
    assert len(snapshot["frontOfQueue"]["jobs"]) == 1
    batch.terminate_jobs(jobs=ids, reason="cleanup")


def test_update_scheduling_policy_takes_effect(batch: BatchClient) -> None:
    queue = fairshare_queue(batch, 1, [{"shareIdentifier": "p", "weightFactor": 1.0}])
    policy = batch.describe_job_queues(jobQueues=[queue])["jobQueues"][0]["schedulingPolicyArn"]
    batch.update_scheduling_policy(
        arn=policy, fairsharePolicy={"shareDistribution": [{"shareIdentifier": "p", "weightFactor": 2.0}]}
    )
    definition = shell_definition(batch, "true")
    job = batch.submit_job(jobName="u", jobQueue=queue, jobDefinition=definition, shareIdentifier="p")["jobId"]
    assert wait_for_status(batch, job, DONE)["status"] == "SUCCEEDED"
