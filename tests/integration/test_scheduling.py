"""Scheduling through a real server: priorities, compute environment order, waiting reasons, time limits."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

from tests.compute import compute_resources
from tests.support import ServerProcess, make_queue, shell_definition, unique, wait_for, wait_for_status

if TYPE_CHECKING:
    from mypy_boto3_batch import BatchClient

DONE = ("SUCCEEDED", "FAILED")


def submit(batch: BatchClient, queue: str, definition: str, **kwargs: Any) -> str:
    return batch.submit_job(jobName=unique("s"), jobQueue=queue, jobDefinition=definition, **kwargs)["jobId"]


def reason(batch: BatchClient, job_id: str) -> str:
    return str(batch.describe_jobs(jobs=[job_id])["jobs"][0].get("statusReason", ""))


def test_every_runnable_job_says_why_it_waits(batch: BatchClient) -> None:
    queue = make_queue(batch, max_vcpus=1)
    blocker = submit(batch, queue, shell_definition(batch, "sleep 30"))
    wait_for_status(batch, blocker, ["RUNNING"])
    definition = shell_definition(batch, "true")
    head, second, third = (submit(batch, queue, definition) for _ in range(3))
    wait_for(lambda: reason(batch, head).startswith("CAPACITY:INSUFFICIENT_INSTANCE_CAPACITY - "))
    assert "has 0 of 1 free" in reason(batch, head)
    assert reason(batch, second).startswith(f"Waiting behind 1 job(s) ahead of it in job queue {queue}")
    assert reason(batch, third).startswith(f"Waiting behind 2 job(s) ahead of it in job queue {queue}")
    assert "CAPACITY:INSUFFICIENT_INSTANCE_CAPACITY" in reason(batch, third)
    listed = batch.list_jobs(jobQueue=queue, jobStatus="RUNNABLE")["jobSummaryList"]
    assert all(j["statusReason"] for j in listed)
    batch.terminate_job(jobId=blocker, reason="done")
    for job_id in (head, second, third):
        assert wait_for_status(batch, job_id, DONE)["status"] == "SUCCEEDED"


def test_disabled_queue_and_compute_environment_reasons(batch: BatchClient) -> None:
    definition = shell_definition(batch, "true")
    disabled_ce = make_queue(batch, state="DISABLED")
    job = submit(batch, disabled_ce, definition)
    wait_for(lambda: "DISABLED" in reason(batch, job))
    assert "compute environment" in reason(batch, job)
    # A disabled queue refuses new jobs but keeps those it has: submit while the CE is disabled, then
    # disable the queue; its reason must win over the compute environment's.
    queue = make_queue(batch)
    ce = batch.describe_job_queues(jobQueues=[queue])["jobQueues"][0]["computeEnvironmentOrder"][0]
    batch.update_compute_environment(computeEnvironment=ce["computeEnvironment"], state="DISABLED")
    queued = submit(batch, queue, definition)
    batch.update_job_queue(jobQueue=queue, state="DISABLED")
    wait_for(lambda: reason(batch, queued) == f"JobQueue {queue} is DISABLED")
    batch.update_compute_environment(computeEnvironment=ce["computeEnvironment"], state="ENABLED")
    time.sleep(0.3)  # several scheduling cycles: the job must stay put, for the queue's reason
    assert reason(batch, queued) == f"JobQueue {queue} is DISABLED"
    assert batch.describe_jobs(jobs=[queued])["jobs"][0]["status"] == "RUNNABLE"
    batch.update_job_queue(jobQueue=queue, state="ENABLED")
    assert wait_for_status(batch, queued, DONE)["status"] == "SUCCEEDED"
    batch.cancel_job(jobId=job, reason="cleanup")


def test_job_state_time_limit_action_cancels_stuck_head(batch: BatchClient) -> None:
    ce = unique("ce")
    batch.create_compute_environment(
        computeEnvironmentName=ce, type="MANAGED", computeResources=compute_resources("EC2", 1)
    )
    queue = unique("q")
    batch.create_job_queue(
        jobQueueName=queue,
        priority=1,
        computeEnvironmentOrder=[{"order": 1, "computeEnvironment": ce}],
        jobStateTimeLimitActions=[
            {
                "reason": "MISCONFIGURATION:COMPUTE_ENVIRONMENT_MAX_RESOURCE",
                "state": "RUNNABLE",
                "maxTimeSeconds": 1,
                "action": "CANCEL",
            }
        ],
    )
    definition = shell_definition(batch, "true")
    too_big = submit(
        batch, queue, definition, containerOverrides={"resourceRequirements": [{"type": "VCPU", "value": "2"}]}
    )
    behind = submit(batch, queue, definition)
    job = wait_for_status(batch, too_big, DONE, timeout=15)
    assert job["status"] == "FAILED"
    assert job["statusReason"] == (
        "Canceled by JobStateTimeLimit action due to reason: MISCONFIGURATION:COMPUTE_ENVIRONMENT_MAX_RESOURCE"
    )
    assert job["isCancelled"] is True
    # The job behind the cancelled head then runs.
    assert wait_for_status(batch, behind, DONE)["status"] == "SUCCEEDED"


def queues_sharing_one_vcpu(batch: BatchClient, *priorities: int) -> tuple[list[str], str]:
    """Queues with these priorities on one 1-vCPU compute environment, already busy with a 1 s job
    (so what is submitted next waits); returns the queue names and a short job definition."""
    ce = unique("ce")
    batch.create_compute_environment(
        computeEnvironmentName=ce, type="MANAGED", computeResources=compute_resources("EC2", 1)
    )
    names = [unique("q") for _ in priorities]
    for name, priority in zip(names, priorities, strict=True):
        batch.create_job_queue(
            jobQueueName=name, priority=priority, computeEnvironmentOrder=[{"order": 1, "computeEnvironment": ce}]
        )
    blocker = submit(batch, names[0], shell_definition(batch, "sleep 1"))
    wait_for_status(batch, blocker, ["RUNNING"])
    return names, shell_definition(batch, "sleep 0.05")


def test_higher_priority_queue_is_served_first(batch: BatchClient) -> None:
    (low, high), definition = queues_sharing_one_vcpu(batch, 1, 100)
    lows = [submit(batch, low, definition) for _ in range(3)]
    highs = [submit(batch, high, definition) for _ in range(3)]
    jobs = {j: wait_for_status(batch, j, DONE) for j in [*lows, *highs]}
    assert max(jobs[j]["startedAt"] for j in highs) <= min(jobs[j]["startedAt"] for j in lows)


def test_compute_environments_tried_in_order(batch: BatchClient, server: ServerProcess) -> None:
    first, second = unique("ce1"), unique("ce2")
    for name in (first, second):
        batch.create_compute_environment(
            computeEnvironmentName=name, type="MANAGED", computeResources=compute_resources("EC2", 1)
        )
    queue = unique("q")
    batch.create_job_queue(
        jobQueueName=queue,
        priority=1,
        computeEnvironmentOrder=[
            {"order": 2, "computeEnvironment": second},
            {"order": 1, "computeEnvironment": first},
        ],
    )
    definition = shell_definition(batch, 'echo "$AWS_BATCH_CE_NAME"; sleep 1')
    a = submit(batch, queue, definition)
    wait_for_status(batch, a, ["RUNNING"])
    b = submit(batch, queue, definition)
    wait_for_status(batch, b, ["RUNNING"])
    c = submit(batch, queue, definition)
    wait_for(lambda: "INSUFFICIENT" in reason(batch, c))
    placed = []
    for job_id in (a, b, c):
        stream = wait_for_status(batch, job_id, DONE)["container"]["logStreamName"]
        events = server.logs().get_log_events(logGroupName="/aws/batch/job", logStreamName=stream)["events"]
        placed.append(events[0]["message"])
    assert placed[:2] == [first, second]
    assert placed[2] in (first, second)


def test_queue_snapshot_lists_front_of_queue(batch: BatchClient) -> None:
    queue = make_queue(batch, state="DISABLED")
    definition = shell_definition(batch, "true")
    ids = [submit(batch, queue, definition) for _ in range(3)]
    for job_id in ids:
        wait_for_status(batch, job_id, ["RUNNABLE"])
    snapshot = batch.get_job_queue_snapshot(jobQueue=queue)
    front = snapshot["frontOfQueue"]["jobs"]
    assert [j["jobArn"].rsplit("/", 1)[1] for j in front] == ids
    assert all(j["earliestTimeAtPosition"] > 0 for j in front)
    batch.cancel_jobs(jobs=ids, reason="cleanup")


def test_priority_change_takes_effect_on_the_next_decision(batch: BatchClient) -> None:
    (first, second), definition = queues_sharing_one_vcpu(batch, 100, 1)
    from_first = [submit(batch, first, definition) for _ in range(2)]
    from_second = [submit(batch, second, definition) for _ in range(2)]
    # Swap the priorities while everything waits: the second queue must now be served first.
    batch.update_job_queue(jobQueue=second, priority=500)
    jobs = {j: wait_for_status(batch, j, DONE) for j in [*from_first, *from_second]}
    assert max(jobs[j]["startedAt"] for j in from_second) <= min(jobs[j]["startedAt"] for j in from_first)
