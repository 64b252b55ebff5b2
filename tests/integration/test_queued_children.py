"""Queued array children held as index ranges behave exactly like children held as jobs.

A FIFO job queue keeps the RUNNABLE children of an array as index ranges of their parent
(``scheduler/queues.py``) and makes a child a job again when it is dispatched or asked for; a
fair-share queue keeps every child as a job. The same array goes through both, and everything a
client sees — DescribeJobs, ListJobs with every filter and paging, cancel, terminate, a
dependency on one child, a restart, the order children run in — must be the same.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx
import pytest

from tests.support import ServerProcess, fairshare_queue, make_queue, shell_definition, wait_for, wait_for_status

if TYPE_CHECKING:
    from mypy_boto3_batch import BatchClient

SIZE = 300


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    proc = ServerProcess(tmp_path_factory.mktemp("queued-children")).start()
    try:
        yield proc
    finally:
        proc.stop()


def held_queue(batch: BatchClient) -> str:
    """A FIFO queue whose one compute environment (1 vCPU) is DISABLED: its jobs wait RUNNABLE."""
    return make_queue(batch, max_vcpus=1, state="DISABLED")


def release(batch: BatchClient, queue: str) -> None:
    for entry in batch.describe_job_queues(jobQueues=[queue])["jobQueues"][0]["computeEnvironmentOrder"]:
        batch.update_compute_environment(computeEnvironment=entry["computeEnvironment"], state="ENABLED")


def held_in_ranges(server: ServerProcess) -> float:
    text = httpx.get(f"{server.url}/metrics", timeout=10).text
    match = re.search(r"^openbatch_scheduler_queued_children_in_ranges ([0-9.e+]+)$", text, re.M)
    assert match is not None, "the scheduler's gauge is missing"
    return float(match.group(1))


def list_children(batch: BatchClient, parent: str, page: int = 70, **kwargs: Any) -> list[int]:
    indices: list[int] = []
    token: dict[str, Any] = {}
    while True:
        out = batch.list_jobs(arrayJobId=parent, maxResults=page, **token, **kwargs)
        indices += [j["arrayProperties"]["index"] for j in out["jobSummaryList"]]
        if "nextToken" not in out:
            return indices
        token = {"nextToken": out["nextToken"]}


def share_of(fair: bool) -> dict[str, Any]:
    return {"shareIdentifier": "a"} if fair else {}


def comparable(job: dict[str, Any]) -> dict[str, Any]:
    """What must match between the two queues: all but ids, ARNs, times, the queue itself and why a
    RUNNABLE job waits (a fair-share queue words its positions differently)."""
    container = job.get("container", {})
    return {
        "status": job["status"],
        "statusReason": job.get("statusReason") if job["status"] != "RUNNABLE" else None,
        "jobName": job["jobName"],
        "arrayProperties": job.get("arrayProperties"),
        "attempts": len(job.get("attempts", [])),
        "command": container.get("command"),
        "environment": sorted((e["name"], e["value"]) for e in container.get("environment", [])),
        "parameters": job.get("parameters"),
        "tags": job.get("tags"),
        "dependsOn": job.get("dependsOn"),
        "timeout": job.get("timeout"),
        "retryStrategy": job.get("retryStrategy"),
        "isCancelled": job.get("isCancelled"),
        "isTerminated": job.get("isTerminated"),
    }


def all_runnable(batch: BatchClient, parent: str) -> bool:
    return len(list_children(batch, parent, page=100, jobStatus="RUNNABLE")) == SIZE


def has_failed(run: Scenario, index: int) -> bool:
    return bool(run.describe(index)[0]["status"] == "FAILED")


class Scenario:
    """One array in one queue, driven through the same steps as the other."""

    def __init__(self, batch: BatchClient, queue: str, definition: str, share: str | None) -> None:
        self.batch = batch
        self.queue = queue
        extra: dict[str, Any] = {"shareIdentifier": share} if share else {}
        self.parent = batch.submit_job(
            jobName="ranged",
            jobQueue=queue,
            jobDefinition=definition,
            arrayProperties={"size": SIZE},
            parameters={"greeting": "hi"},
            tags={"team": "blue"},
            **extra,
        )["jobId"]
        self.created = batch.describe_jobs(jobs=[self.parent])["jobs"][0]["createdAt"]
        self.definition = definition
        self.dependent = ""

    def child(self, index: int) -> str:
        return f"{self.parent}:{index}"

    def describe(self, *indices: int) -> list[dict[str, Any]]:
        jobs = self.batch.describe_jobs(jobs=[self.child(i) for i in indices])["jobs"]
        by_index = {j["arrayProperties"]["index"]: comparable(dict(j)) for j in jobs}
        return [by_index[i] for i in indices]

    def listings(self) -> dict[str, list[int]]:
        name, revision = self.definition.split(":")
        return {
            "running (the default)": list_children(self.batch, self.parent),
            "runnable": list_children(self.batch, self.parent, jobStatus="RUNNABLE"),
            "failed": list_children(self.batch, self.parent, jobStatus="FAILED"),
            "name": list_children(self.batch, self.parent, filters=[{"name": "JOB_NAME", "values": ["ranged"]}]),
            "name prefix": list_children(self.batch, self.parent, filters=[{"name": "JOB_NAME", "values": ["ran*"]}]),
            "other name": list_children(self.batch, self.parent, filters=[{"name": "JOB_NAME", "values": ["other"]}]),
            "after": list_children(
                self.batch, self.parent, filters=[{"name": "AFTER_CREATED_AT", "values": [str(self.created - 1)]}]
            ),
            "before": list_children(
                self.batch, self.parent, filters=[{"name": "BEFORE_CREATED_AT", "values": [str(self.created - 1)]}]
            ),
            "definition": list_children(
                self.batch, self.parent, filters=[{"name": "JOB_DEFINITION", "values": [name]}]
            ),
            "definition revision": list_children(
                self.batch, self.parent, filters=[{"name": "JOB_DEFINITION", "values": [f"{name}:{revision}"]}]
            ),
        }


def test_children_in_ranges_behave_as_jobs_do(server: ServerProcess, tmp_path: Path) -> None:
    batch = server.batch()
    definition = shell_definition(
        batch,
        f"echo $AWS_BATCH_JOB_ARRAY_INDEX >> {tmp_path}/order-${{AWS_BATCH_JOB_ID%%:*}}",
        parameters={"greeting": "hello"},
        retryStrategy={"attempts": 2},
        timeout={"attemptDurationSeconds": 600},
    )
    fifo_queue = held_queue(batch)
    fair_queue = fairshare_queue(batch, 1, [{"shareIdentifier": "a"}], state="DISABLED")
    before = held_in_ranges(server)
    fifo = Scenario(batch, fifo_queue, definition, None)
    fair = Scenario(batch, fair_queue, definition, "a")
    for run in (fifo, fair):
        wait_for(partial(all_runnable, batch, run.parent), timeout=60)

    # The FIFO queue holds its children as ranges (all but the few made live for its head).
    assert held_in_ranges(server) - before >= SIZE - 260

    sample: tuple[int, ...] = (0, 1, 150, 299)
    described = fifo.describe(*sample)
    assert described == fair.describe(*sample)
    assert described[2]["status"] == "RUNNABLE" and described[2]["arrayProperties"] == {"index": 150}
    reasons = [j["statusReason"] for j in batch.describe_jobs(jobs=[fifo.child(0), fifo.child(150)])["jobs"]]
    assert reasons[0].startswith("CAPACITY:INSUFFICIENT_INSTANCE_CAPACITY - compute environment ")
    assert (
        reasons[1]
        == f"Waiting behind 150 job(s) ahead of it in job queue {fifo_queue}; the first one waits: {reasons[0]}"
    )
    listings = fifo.listings()
    assert listings == fair.listings()
    assert listings["runnable"] == list(range(SIZE)) == listings["name"] == listings["name prefix"]
    assert listings["after"] == listings["runnable"] == listings["definition"] == listings["definition revision"]
    assert listings["other name"] == listings["before"] == listings["failed"] == listings["running (the default)"] == []

    # Cancel and terminate children in the middle of a range; a job waits for one queued child.
    for run in (fifo, fair):
        batch.cancel_job(jobId=run.child(10), reason="not needed")
        batch.terminate_job(jobId=run.child(20), reason="stop it")
        run.dependent = batch.submit_job(
            jobName="after-100",
            jobQueue=run.queue,
            jobDefinition=definition,
            dependsOn=[{"jobId": run.child(100)}],
            **share_of(run is fair),
        )["jobId"]
    for run in (fifo, fair):
        wait_for(partial(has_failed, run, 20))
    assert fifo.describe(9, 10, 11, 20, 21) == fair.describe(9, 10, 11, 20, 21)
    assert fifo.describe(10)[0]["statusReason"] == "not needed"
    assert fifo.describe(20)[0]["statusReason"] == "stop it"
    assert list_children(batch, fifo.parent, jobStatus="FAILED") == [10, 20]
    assert len(list_children(batch, fifo.parent, jobStatus="RUNNABLE")) == SIZE - 2
    waiting = batch.describe_jobs(jobs=[fifo.dependent])["jobs"][0]
    assert waiting["status"] == "PENDING"
    assert waiting["statusReason"] == f"Waiting for 1 dependency: {fifo.child(100)} (RUNNABLE)"

    # A restart reads the ranges back from the store: the same answers, and they still act alike.
    sample = (0, 9, 10, 11, 20, 150, 299)
    described = fifo.describe(*sample)
    raw = batch.describe_jobs(jobs=[fifo.child(i) for i in sample])["jobs"]
    server.restart()
    batch = fifo.batch = fair.batch = server.batch()
    assert fifo.describe(*sample) == described == fair.describe(*sample)
    assert batch.describe_jobs(jobs=[fifo.child(i) for i in sample])["jobs"] == raw
    assert fifo.listings() == fair.listings()
    for run in (fifo, fair):
        batch.cancel_job(jobId=run.child(30), reason="after the restart")
    for run in (fifo, fair):
        wait_for(partial(has_failed, run, 30))
    assert fifo.describe(29, 30, 31) == fair.describe(29, 30, 31)

    # Run them: the FIFO queue runs its children in index order, one at a time.
    for queue in (fifo_queue, fair_queue):
        release(batch, queue)
    for run in (fifo, fair):
        parent = wait_for_status(batch, run.parent, ("SUCCEEDED", "FAILED"), timeout=180)
        assert parent["status"] == "FAILED"
        assert parent["arrayProperties"]["statusSummary"]["SUCCEEDED"] == SIZE - 3
        assert parent["arrayProperties"]["statusSummary"]["FAILED"] == 3
        assert wait_for_status(batch, run.dependent, ("SUCCEEDED", "FAILED"), timeout=60)["status"] == "SUCCEEDED"
    assert fifo.describe(0, 10, 150) == fair.describe(0, 10, 150)
    ran = [int(line) for line in (tmp_path / f"order-{fifo.parent}").read_text().split()]
    assert ran == [i for i in range(SIZE) if i not in (10, 20, 30)]
    started = [j["startedAt"] for j in batch.describe_jobs(jobs=[fifo.child(i) for i in (0, 1, 2, 50, 99)])["jobs"]]
    assert started == sorted(started)
    dependent = batch.describe_jobs(jobs=[fifo.dependent, fifo.child(100)])["jobs"]
    assert dependent[0]["startedAt"] >= dependent[1]["stoppedAt"]


def test_cancelling_an_array_ends_the_children_in_ranges(server: ServerProcess) -> None:
    batch = server.batch()
    queue = held_queue(batch)
    definition = shell_definition(batch, "true")
    parent = batch.submit_job(jobName="gone", jobQueue=queue, jobDefinition=definition, arrayProperties={"size": 500})
    wait_for(lambda: len(list_children(batch, parent["jobId"], page=100, jobStatus="RUNNABLE")) == 500, timeout=60)
    batch.cancel_job(jobId=parent["jobId"], reason="the whole array")
    done = wait_for_status(batch, parent["jobId"], ("SUCCEEDED", "FAILED"), timeout=60)
    assert done["status"] == "FAILED"
    assert done["arrayProperties"]["statusSummary"]["FAILED"] == 500
    assert list_children(batch, parent["jobId"], page=100, jobStatus="FAILED") == list(range(500))
    child = batch.describe_jobs(jobs=[f"{parent['jobId']}:321"])["jobs"][0]
    assert (child["status"], child["statusReason"]) == ("FAILED", "the whole array")
    # Nothing of it is left in the queue: a job submitted after it runs.
    release(batch, queue)
    later = batch.submit_job(jobName="later", jobQueue=queue, jobDefinition=definition)["jobId"]
    assert wait_for_status(batch, later, ("SUCCEEDED", "FAILED"), timeout=60)["status"] == "SUCCEEDED"


def test_a_queue_snapshot_and_positions_count_children_in_ranges(server: ServerProcess) -> None:
    batch = server.batch()
    queue = held_queue(batch)
    definition = shell_definition(batch, "true")
    first = batch.submit_job(jobName="first", jobQueue=queue, jobDefinition=definition)["jobId"]
    parent = batch.submit_job(jobName="arr", jobQueue=queue, jobDefinition=definition, arrayProperties={"size": 400})
    wait_for(lambda: len(list_children(batch, parent["jobId"], page=100, jobStatus="RUNNABLE")) == 400, timeout=60)
    front = batch.get_job_queue_snapshot(jobQueue=queue)["frontOfQueue"]["jobs"]
    assert [j["jobArn"].rsplit("/", 1)[1] for j in front] == [first] + [f"{parent['jobId']}:{i}" for i in range(99)]
    reason = batch.describe_jobs(jobs=[f"{parent['jobId']}:300"])["jobs"][0]["statusReason"]
    assert reason.startswith(f"Waiting behind 301 job(s) ahead of it in job queue {queue}")
