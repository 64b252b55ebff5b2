"""Dependencies and array jobs as AWS Batch defines them, through a real server."""

from __future__ import annotations

from itertools import pairwise
from typing import TYPE_CHECKING, Any

import pytest
from botocore.exceptions import ClientError

from tests.support import make_queue, shell_definition, unique, wait_for, wait_for_status

if TYPE_CHECKING:
    from mypy_boto3_batch import BatchClient

DONE = ("SUCCEEDED", "FAILED")


@pytest.fixture(scope="module")
def queue(batch: BatchClient) -> str:
    return make_queue(batch, max_vcpus=16)


def submit(batch: BatchClient, queue: str, definition: str, *deps: str, **kwargs: Any) -> str:
    depends = [{"jobId": d} for d in deps] + kwargs.pop("extra_deps", [])
    return batch.submit_job(
        jobName=unique("dep"), jobQueue=queue, jobDefinition=definition, dependsOn=depends, **kwargs
    )["jobId"]


def finished(batch: BatchClient, ids: list[str]) -> dict[str, dict[str, Any]]:
    result: dict[str, dict[str, Any]] = {}
    for job_id in ids:
        result[job_id] = wait_for_status(batch, job_id, DONE, timeout=60)
    return result


def test_six_job_graph_runs_in_dependency_order(batch: BatchClient, queue: str) -> None:
    # Given A→{B,C,D}, B→D, C→E, {D,E}→F with steps long enough to overlap if unordered
    step = shell_definition(batch, "sleep 0.2")
    a = submit(batch, queue, step)
    b = submit(batch, queue, step, a)
    c = submit(batch, queue, step, a)
    d = submit(batch, queue, step, a, b)
    e = submit(batch, queue, step, c)
    f = submit(batch, queue, step, d, e)
    jobs = finished(batch, [a, b, c, d, e, f])
    assert all(j["status"] == "SUCCEEDED" for j in jobs.values())
    edges = [(a, b), (a, c), (a, d), (b, d), (c, e), (d, f), (e, f)]
    for before, after in edges:
        assert jobs[before]["stoppedAt"] <= jobs[after]["startedAt"], (before, after)
    # B and C are independent and both had capacity: they overlap.
    assert jobs[b]["startedAt"] < jobs[c]["stoppedAt"] and jobs[c]["startedAt"] < jobs[b]["stoppedAt"]


def test_diamond(batch: BatchClient, queue: str) -> None:
    step = shell_definition(batch, "sleep 0.1")
    top = submit(batch, queue, step)
    left, right = submit(batch, queue, step, top), submit(batch, queue, step, top)
    bottom = submit(batch, queue, step, left, right)
    jobs = finished(batch, [top, left, right, bottom])
    assert jobs[bottom]["startedAt"] >= max(jobs[left]["stoppedAt"], jobs[right]["stoppedAt"])
    assert jobs[bottom]["dependsOn"] == [{"jobId": left}, {"jobId": right}]


def test_failure_propagates_through_three_levels(batch: BatchClient, queue: str) -> None:
    broken = submit(batch, queue, shell_definition(batch, "exit 1"))
    ok = shell_definition(batch, "true")
    level1 = submit(batch, queue, ok, broken)
    level2 = submit(batch, queue, ok, level1)
    level3 = submit(batch, queue, ok, level2)
    jobs = finished(batch, [broken, level1, level2, level3])
    for job_id, failed in ((level1, broken), (level2, level1), (level3, level2)):
        assert jobs[job_id]["status"] == "FAILED"
        assert jobs[job_id]["statusReason"] == f"Dependent Job failed: {failed}"
        assert jobs[job_id]["attempts"] == []
        assert "startedAt" not in jobs[job_id]


def test_dependency_being_retried_does_not_fail_dependents(batch: BatchClient, queue: str) -> None:
    flaky = submit(
        batch, queue, shell_definition(batch, '[ "$AWS_BATCH_JOB_ATTEMPT" -ge 2 ]'), retryStrategy={"attempts": 2}
    )
    after = submit(batch, queue, shell_definition(batch, "true"), flaky)
    jobs = finished(batch, [flaky, after])
    assert jobs[flaky]["status"] == "SUCCEEDED" and len(jobs[flaky]["attempts"]) == 2
    assert jobs[after]["status"] == "SUCCEEDED"


def test_dependency_already_finished_at_submit(batch: BatchClient, queue: str) -> None:
    good = submit(batch, queue, shell_definition(batch, "true"))
    bad = submit(batch, queue, shell_definition(batch, "exit 2"))
    finished(batch, [good, bad])
    ok = shell_definition(batch, "true")
    after_good, after_bad = submit(batch, queue, ok, good), submit(batch, queue, ok, bad)
    jobs = finished(batch, [after_good, after_bad])
    assert jobs[after_good]["status"] == "SUCCEEDED"
    assert jobs[after_bad]["status"] == "FAILED"
    assert jobs[after_bad]["statusReason"] == f"Dependent Job failed: {bad}"


def test_dependencies_cross_queues(batch: BatchClient, queue: str) -> None:
    other = make_queue(batch, max_vcpus=2)
    first = submit(batch, other, shell_definition(batch, "sleep 0.2"))
    second = submit(batch, queue, shell_definition(batch, "true"), first)
    jobs = finished(batch, [first, second])
    assert jobs[second]["startedAt"] >= jobs[first]["stoppedAt"]


def test_dependency_errors(batch: BatchClient, queue: str) -> None:
    ok = shell_definition(batch, "true")
    for bad in (
        [{"jobId": "does-not-exist"}],
        [{"jobId": f"x{i}"} for i in range(21)],
        [{"type": "SEQUENTIAL"}],  # only on array jobs
    ):
        with pytest.raises(ClientError) as excinfo:
            batch.submit_job(jobName="bad", jobQueue=queue, jobDefinition=ok, dependsOn=bad)  # type: ignore[arg-type]
        assert excinfo.value.response["Error"]["Code"] == "ClientException"


def test_cancel_pending_job_waits_for_its_dependencies(batch: BatchClient, queue: str) -> None:
    running = submit(batch, queue, shell_definition(batch, "sleep 1"))
    pending = submit(batch, queue, shell_definition(batch, "true"), running)
    wait_for_status(batch, pending, ["PENDING"])
    batch.cancel_job(jobId=pending, reason="changed my mind")
    # AWS semantics: a PENDING job is cancelled once its dependencies complete.
    assert batch.describe_jobs(jobs=[pending])["jobs"][0]["status"] == "PENDING"
    jobs = finished(batch, [running, pending])
    assert jobs[running]["status"] == "SUCCEEDED"
    assert jobs[pending]["status"] == "FAILED"
    assert jobs[pending]["statusReason"] == "changed my mind"
    assert jobs[pending]["isCancelled"] is True
    assert jobs[pending]["attempts"] == []


def test_terminate_pending_job_fails_it_at_once(batch: BatchClient, queue: str) -> None:
    running = submit(batch, queue, shell_definition(batch, "sleep 2"))
    pending = submit(batch, queue, shell_definition(batch, "true"), running)
    wait_for_status(batch, pending, ["PENDING"])
    batch.terminate_job(jobId=pending, reason="now")
    assert wait_for_status(batch, pending, DONE, timeout=1.5)["statusReason"] == "now"
    batch.terminate_job(jobId=running, reason="cleanup")


# --- arrays ---------------------------------------------------------------------------


def test_array_job_children_and_status_summary(batch: BatchClient, queue: str) -> None:
    definition = shell_definition(batch, 'echo "$AWS_BATCH_JOB_ARRAY_INDEX/$AWS_BATCH_JOB_ARRAY_SIZE"')
    parent = batch.submit_job(jobName="arr", jobQueue=queue, jobDefinition=definition, arrayProperties={"size": 10})[
        "jobId"
    ]
    job = wait_for_status(batch, parent, DONE)
    assert job["status"] == "SUCCEEDED"
    props = job["arrayProperties"]
    assert props["size"] == 10
    assert props["statusSummary"]["SUCCEEDED"] == 10
    assert set(props["statusSummary"]) == {
        "SUBMITTED",
        "PENDING",
        "RUNNABLE",
        "STARTING",
        "RUNNING",
        "SUCCEEDED",
        "FAILED",
    }
    children = batch.list_jobs(arrayJobId=parent, jobStatus="SUCCEEDED")["jobSummaryList"]
    assert [c["jobId"] for c in children] == [f"{parent}:{i}" for i in range(10)]
    child = batch.describe_jobs(jobs=[f"{parent}:7"])["jobs"][0]
    assert child["arrayProperties"] == {"index": 7}
    assert child["status"] == "SUCCEEDED"
    assert "attempts" in child and child["attempts"][0]["container"]["exitCode"] == 0


def test_array_parent_states_never_include_running(batch: BatchClient, queue: str) -> None:
    definition = shell_definition(batch, "sleep 0.5")
    parent = batch.submit_job(jobName="arr", jobQueue=queue, jobDefinition=definition, arrayProperties={"size": 3})[
        "jobId"
    ]
    seen = set()

    def poll() -> bool:
        status = batch.describe_jobs(jobs=[parent])["jobs"][0]["status"]
        seen.add(status)
        return status in DONE

    wait_for(poll, timeout=20, interval=0.02)
    assert seen <= {"SUBMITTED", "PENDING", "SUCCEEDED"}
    assert "PENDING" in seen


def test_array_fails_when_a_child_fails(batch: BatchClient, queue: str) -> None:
    definition = shell_definition(batch, '[ "$AWS_BATCH_JOB_ARRAY_INDEX" != 2 ]')
    parent = batch.submit_job(jobName="arr", jobQueue=queue, jobDefinition=definition, arrayProperties={"size": 4})[
        "jobId"
    ]
    job = wait_for_status(batch, parent, DONE)
    assert job["status"] == "FAILED"
    assert job["statusReason"] == "Array Child Job failed"
    assert job["arrayProperties"]["statusSummary"]["FAILED"] == 1
    assert job["arrayProperties"]["statusSummary"]["SUCCEEDED"] == 3


def test_dependency_on_array_parent_waits_for_whole_array(batch: BatchClient, queue: str) -> None:
    parent = batch.submit_job(
        jobName="arr", jobQueue=queue, jobDefinition=shell_definition(batch, "sleep 0.2"), arrayProperties={"size": 4}
    )["jobId"]
    after = submit(batch, queue, shell_definition(batch, "true"), parent)
    jobs = finished(batch, [parent, after])
    children = batch.describe_jobs(jobs=[f"{parent}:{i}" for i in range(4)])["jobs"]
    assert jobs[after]["startedAt"] >= max(c["stoppedAt"] for c in children)


def test_sequential_array_children_never_overlap(batch: BatchClient, queue: str) -> None:
    definition = shell_definition(batch, "sleep 0.05")
    parent = batch.submit_job(
        jobName="seq",
        jobQueue=queue,
        jobDefinition=definition,
        arrayProperties={"size": 20},
        dependsOn=[{"type": "SEQUENTIAL"}],
    )["jobId"]
    assert wait_for_status(batch, parent, DONE, timeout=60)["status"] == "SUCCEEDED"
    children = batch.describe_jobs(jobs=[f"{parent}:{i}" for i in range(20)])["jobs"]
    children.sort(key=lambda c: c["arrayProperties"]["index"])
    for before, after in pairwise(children):
        assert before["stoppedAt"] <= after["startedAt"]


def test_n_to_n_across_two_arrays_of_100(batch: BatchClient, queue: str) -> None:
    first = batch.submit_job(
        jobName="a", jobQueue=queue, jobDefinition=shell_definition(batch, "true"), arrayProperties={"size": 100}
    )["jobId"]
    second = batch.submit_job(
        jobName="b",
        jobQueue=queue,
        jobDefinition=shell_definition(batch, "true"),
        arrayProperties={"size": 100},
        dependsOn=[{"jobId": first, "type": "N_TO_N"}],
    )["jobId"]
    assert wait_for_status(batch, second, DONE, timeout=60)["status"] == "SUCCEEDED"
    for start in range(0, 100, 50):
        ids = [f"{first}:{i}" for i in range(start, start + 50)] + [f"{second}:{i}" for i in range(start, start + 50)]
        by_id = {j["jobId"]: j for j in batch.describe_jobs(jobs=ids)["jobs"]}
        for i in range(start, start + 50):
            assert by_id[f"{first}:{i}"]["stoppedAt"] <= by_id[f"{second}:{i}"]["startedAt"]


def test_n_to_n_child_failure_fails_matching_child(batch: BatchClient, queue: str) -> None:
    first = batch.submit_job(
        jobName="a",
        jobQueue=queue,
        jobDefinition=shell_definition(batch, '[ "$AWS_BATCH_JOB_ARRAY_INDEX" != 1 ]'),
        arrayProperties={"size": 3},
    )["jobId"]
    second = batch.submit_job(
        jobName="b",
        jobQueue=queue,
        jobDefinition=shell_definition(batch, "true"),
        arrayProperties={"size": 3},
        dependsOn=[{"jobId": first, "type": "N_TO_N"}],
    )["jobId"]
    wait_for_status(batch, second, DONE)
    children = {j["jobId"]: j for j in batch.describe_jobs(jobs=[f"{second}:{i}" for i in range(3)])["jobs"]}
    assert children[f"{second}:1"]["statusReason"] == f"Dependent Job failed: {first}:1"
    assert children[f"{second}:0"]["status"] == "SUCCEEDED"


def test_n_to_n_size_mismatch_is_rejected(batch: BatchClient, queue: str) -> None:
    first = batch.submit_job(
        jobName="a", jobQueue=queue, jobDefinition=shell_definition(batch, "true"), arrayProperties={"size": 3}
    )["jobId"]
    with pytest.raises(ClientError):
        batch.submit_job(
            jobName="b",
            jobQueue=queue,
            jobDefinition=shell_definition(batch, "true"),
            arrayProperties={"size": 4},
            dependsOn=[{"jobId": first, "type": "N_TO_N"}],
        )


def test_mixed_whole_job_and_sequential_dependencies(batch: BatchClient, queue: str) -> None:
    gate = submit(batch, queue, shell_definition(batch, "sleep 0.2"))
    parent = batch.submit_job(
        jobName="mix",
        jobQueue=queue,
        jobDefinition=shell_definition(batch, "true"),
        arrayProperties={"size": 3},
        dependsOn=[{"jobId": gate}, {"type": "SEQUENTIAL"}],
    )["jobId"]
    jobs = finished(batch, [gate, parent])
    children = sorted(
        batch.describe_jobs(jobs=[f"{parent}:{i}" for i in range(3)])["jobs"],
        key=lambda c: c["arrayProperties"]["index"],
    )
    assert children[0]["startedAt"] >= jobs[gate]["stoppedAt"]
    assert children[0]["stoppedAt"] <= children[1]["startedAt"] <= children[1]["stoppedAt"] <= children[2]["startedAt"]


def test_cancel_parent_reaches_every_child(batch: BatchClient) -> None:
    stuck = make_queue(batch, state="DISABLED")
    parent = batch.submit_job(
        jobName="arr", jobQueue=stuck, jobDefinition=shell_definition(batch, "true"), arrayProperties={"size": 5}
    )["jobId"]
    wait_for(lambda: batch.describe_jobs(jobs=[parent])["jobs"][0]["arrayProperties"]["statusSummary"]["RUNNABLE"] == 5)
    batch.cancel_job(jobId=parent, reason="abort array")
    job = wait_for_status(batch, parent, DONE)
    assert job["status"] == "FAILED"
    assert job["arrayProperties"]["statusSummary"]["FAILED"] == 5
    child = batch.describe_jobs(jobs=[f"{parent}:3"])["jobs"][0]
    assert child["statusReason"] == "abort array"


def test_terminate_one_child_fails_the_parent(batch: BatchClient, queue: str) -> None:
    parent = batch.submit_job(
        jobName="arr", jobQueue=queue, jobDefinition=shell_definition(batch, "sleep 1"), arrayProperties={"size": 3}
    )["jobId"]
    wait_for_status(batch, f"{parent}:1", ["RUNNING"])
    batch.terminate_job(jobId=f"{parent}:1", reason="one child")
    job = wait_for_status(batch, parent, DONE)
    assert job["status"] == "FAILED"
    assert job["statusReason"] == "Array Child Job failed"


def test_array_size_limits(batch: BatchClient, queue: str) -> None:
    definition = shell_definition(batch, "true")
    for size in (1, 10_001):
        with pytest.raises(ClientError):
            batch.submit_job(jobName="bad", jobQueue=queue, jobDefinition=definition, arrayProperties={"size": size})
