"""Jobs through a real server and boto3: states, reasons, retries, timeouts, terminate, cancel, limits."""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
from botocore.exceptions import ClientError

from tests.support import ServerProcess, make_queue, shell_definition, unique, wait_for, wait_for_status

if TYPE_CHECKING:
    from mypy_boto3_batch import BatchClient

DONE = ("SUCCEEDED", "FAILED")


@pytest.fixture(scope="module")
def queue(batch: BatchClient) -> str:
    return make_queue(batch, max_vcpus=8)


def submit(batch: BatchClient, queue: str, definition: str, **kwargs: object) -> str:
    return batch.submit_job(jobName=unique("job"), jobQueue=queue, jobDefinition=definition, **kwargs)["jobId"]  # type: ignore[arg-type]


def test_success_records_attempt_and_reason(batch: BatchClient, queue: str) -> None:
    # Given a definition that exits 0
    definition = shell_definition(batch, "echo hello")
    # When it is submitted
    job_id = submit(batch, queue, definition)
    job = wait_for_status(batch, job_id, DONE)
    # Then it succeeded with AWS's reason and one attempt carrying exit code and log stream
    assert job["status"] == "SUCCEEDED"
    assert job["statusReason"] == "Essential container in task exited"
    assert job["createdAt"] <= job["startedAt"] <= job["stoppedAt"]
    assert len(job["attempts"]) == 1
    attempt = job["attempts"][0]
    assert attempt["container"]["exitCode"] == 0
    assert attempt["container"]["logStreamName"].startswith(definition.split(":")[0] + "/default/")
    assert job["container"]["exitCode"] == 0
    assert job["jobDefinition"].endswith(f"job-definition/{definition}")
    assert job["jobQueue"].endswith(f"job-queue/{queue}")


def test_failure_without_retry(batch: BatchClient, queue: str) -> None:
    job_id = submit(batch, queue, shell_definition(batch, "exit 3"))
    job = wait_for_status(batch, job_id, DONE)
    assert job["status"] == "FAILED"
    assert job["statusReason"] == "Essential container in task exited"
    assert [a["container"]["exitCode"] for a in job["attempts"]] == [3]


def test_retries_until_attempts_exhausted(batch: BatchClient, queue: str) -> None:
    job_id = submit(batch, queue, shell_definition(batch, "exit 1"), retryStrategy={"attempts": 3})
    job = wait_for_status(batch, job_id, DONE)
    assert job["status"] == "FAILED"
    assert [a["container"]["exitCode"] for a in job["attempts"]] == [1, 1, 1]


def test_retry_succeeds_on_a_later_attempt(batch: BatchClient, queue: str) -> None:
    script = '[ "$AWS_BATCH_JOB_ATTEMPT" -ge 2 ]'
    job_id = submit(batch, queue, shell_definition(batch, script), retryStrategy={"attempts": 5})
    job = wait_for_status(batch, job_id, DONE)
    assert job["status"] == "SUCCEEDED"
    assert [a["container"]["exitCode"] for a in job["attempts"]] == [1, 0]


@pytest.mark.parametrize(
    ("rules", "expected_attempts"),
    [
        ([{"onExitCode": "3", "action": "EXIT"}], 1),
        ([{"onExitCode": "4", "action": "EXIT"}], 3),  # no rule matches → retry
        ([{"onExitCode": "3*", "action": "retry"}, {"onReason": "*", "action": "EXIT"}], 3),
        ([{"onStatusReason": "Essential*", "action": "EXIT"}], 1),
        ([{"onReason": "*", "action": "EXIT"}], 1),  # a bare '*' matches an absent reason
    ],
)
def test_evaluate_on_exit(batch: BatchClient, queue: str, rules: list[dict[str, str]], expected_attempts: int) -> None:
    strategy = {"attempts": 3, "evaluateOnExit": rules}
    job_id = submit(batch, queue, shell_definition(batch, "exit 3"), retryStrategy=strategy)
    job = wait_for_status(batch, job_id, DONE)
    assert job["status"] == "FAILED"
    assert len(job["attempts"]) == expected_attempts


def test_timeout_is_never_retried(batch: BatchClient, queue: str) -> None:
    job_id = submit(
        batch,
        queue,
        shell_definition(batch, "sleep 30"),
        timeout={"attemptDurationSeconds": 1},
        retryStrategy={"attempts": 3},
    )
    job = wait_for_status(batch, job_id, DONE)
    assert job["status"] == "FAILED"
    assert job["statusReason"] == "Job attempt duration exceeded timeout"
    assert len(job["attempts"]) == 1
    assert job["attempts"][0]["statusReason"] == "Job attempt duration exceeded timeout"
    assert job["attempts"][0]["container"]["exitCode"] == 143  # SIGTERM honoured by sleep


def test_terminate_running_job_kills_its_process_group(batch: BatchClient, queue: str, tmp_path: Path) -> None:
    pid_file = tmp_path / "pgid"
    script = f"echo $$ > {pid_file}; sleep 100 & sleep 100"
    job_id = submit(batch, queue, shell_definition(batch, script), retryStrategy={"attempts": 3})
    wait_for_status(batch, job_id, ["RUNNING"])
    pgid = int(wait_for(lambda: pid_file.exists() and pid_file.read_text().strip()))
    batch.terminate_job(jobId=job_id, reason="stopped by the operator")
    job = wait_for_status(batch, job_id, DONE)
    assert job["status"] == "FAILED"
    assert job["statusReason"] == "stopped by the operator"
    assert job["isTerminated"] is True
    assert len(job["attempts"]) == 1  # terminated jobs are never retried

    def group_gone() -> bool:
        try:
            os.killpg(pgid, 0)
        except ProcessLookupError:
            return True
        return False

    wait_for(group_gone, timeout=10)


def test_cancel_runnable_job(batch: BatchClient) -> None:
    # A queue whose only compute environment is disabled keeps jobs RUNNABLE.
    queue = make_queue(batch, state="DISABLED")
    job_id = submit(batch, queue, shell_definition(batch, "true"))
    job = wait_for_status(batch, job_id, ["RUNNABLE"])
    assert "DISABLED" in job["statusReason"]
    batch.cancel_job(jobId=job_id, reason="not needed")
    job = wait_for_status(batch, job_id, DONE)
    assert job["status"] == "FAILED"
    assert job["statusReason"] == "not needed"
    assert job["isCancelled"] is True
    assert job["attempts"] == []
    assert "startedAt" not in job


def test_cancel_running_job_has_no_effect(batch: BatchClient, queue: str) -> None:
    job_id = submit(batch, queue, shell_definition(batch, "sleep 1"))
    wait_for_status(batch, job_id, ["RUNNING"])
    batch.cancel_job(jobId=job_id, reason="too late")
    job = wait_for_status(batch, job_id, DONE)
    assert job["status"] == "SUCCEEDED"


def test_memory_limit_kills_the_job(batch: BatchClient, queue: str) -> None:
    script = "python3 -c 'import time; b = bytearray(400 * 1024 * 1024); time.sleep(5)'"
    definition = shell_definition(
        batch,
        script,
        container={"resourceRequirements": [{"type": "VCPU", "value": "1"}, {"type": "MEMORY", "value": "64"}]},
    )
    job = wait_for_status(batch, submit(batch, queue, definition), DONE)
    assert job["status"] == "FAILED"
    assert job["container"]["reason"] == "OutOfMemoryError: Container killed due to memory usage"
    assert job["container"]["exitCode"] == 137


def test_job_too_big_for_any_compute_environment_waits_with_reason(batch: BatchClient) -> None:
    queue = make_queue(batch, max_vcpus=2)
    definition = shell_definition(batch, "true")
    job_id = submit(
        batch, queue, definition, containerOverrides={"resourceRequirements": [{"type": "VCPU", "value": "4"}]}
    )
    wait_for_status(batch, job_id, ["RUNNABLE"])
    wait_for(lambda: "MAX_RESOURCE" in batch.describe_jobs(jobs=[job_id])["jobs"][0].get("statusReason", ""))
    described = batch.describe_jobs(jobs=[job_id])["jobs"][0]
    assert described["statusReason"].startswith("MISCONFIGURATION:COMPUTE_ENVIRONMENT_MAX_RESOURCE - ")
    batch.cancel_job(jobId=job_id, reason="cleanup")


def test_parameters_and_environment(batch: BatchClient, queue: str, server: ServerProcess) -> None:
    definition = shell_definition(
        batch,
        "",
        container={
            "command": [
                "sh",
                "-c",
                'echo "$0 $GREETING $AWS_BATCH_JOB_ID $AWS_BATCH_JOB_ATTEMPT $AWS_BATCH_JQ_NAME $AWS_BATCH_CE_NAME"',
                "Ref::word",
            ],
            "environment": [{"name": "GREETING", "value": "hello"}],
        },
        parameters={"word": "default"},
    )
    job_id = submit(
        batch,
        queue,
        definition,
        parameters={"word": "custom"},
        containerOverrides={"environment": [{"name": "GREETING", "value": "bonjour"}]},
    )
    job = wait_for_status(batch, job_id, DONE)
    assert job["status"] == "SUCCEEDED"
    assert job["container"]["command"][-1] == "custom"
    assert job["parameters"] == {"word": "custom"}
    events = server.logs().get_log_events(
        logGroupName="/aws/batch/job", logStreamName=job["container"]["logStreamName"], startFromHead=True
    )["events"]
    words = events[0]["message"].split()
    assert words[0:2] == ["custom", "bonjour"]
    assert words[2] == job_id and words[3] == "1" and words[4] == queue
    assert words[5].startswith("ce-")


def test_missing_parameter_is_a_client_error(batch: BatchClient, queue: str) -> None:
    definition = shell_definition(batch, "", container={"command": ["echo", "Ref::nothere"]})
    with pytest.raises(ClientError) as excinfo:
        submit(batch, queue, definition)
    assert excinfo.value.response["Error"]["Code"] == "ClientException"
    assert "No parameter found for reference nothere" in excinfo.value.response["Error"]["Message"]


def test_reserved_environment_variable_is_rejected(batch: BatchClient, queue: str) -> None:
    with pytest.raises(ClientError) as excinfo:
        submit(
            batch,
            queue,
            shell_definition(batch, "true"),
            containerOverrides={"environment": [{"name": "AWS_BATCH_JOB_ID", "value": "x"}]},
        )
    assert excinfo.value.response["Error"]["Code"] == "ClientException"


def test_logs_of_a_running_job(batch: BatchClient, queue: str, server: ServerProcess) -> None:
    job_id = submit(batch, queue, shell_definition(batch, "echo first; echo second >&2; sleep 2; echo third"))
    job = wait_for_status(batch, job_id, ["RUNNING"])
    stream = job["container"]["logStreamName"]
    logs = server.logs()

    def lines() -> list[str]:
        page = logs.get_log_events(logGroupName="/aws/batch/job", logStreamName=stream, startFromHead=True)
        return [e["message"] for e in page["events"]]

    assert wait_for(lambda: lines() == ["first", "second"] and lines(), timeout=5)
    assert batch.describe_jobs(jobs=[job_id])["jobs"][0]["status"] == "RUNNING"
    wait_for_status(batch, job_id, DONE)
    assert lines() == ["first", "second", "third"]


def test_list_jobs_defaults_to_running(batch: BatchClient, queue: str) -> None:
    running = submit(batch, queue, shell_definition(batch, "sleep 3"))
    done = submit(batch, queue, shell_definition(batch, "true"))
    wait_for_status(batch, running, ["RUNNING"])
    wait_for_status(batch, done, DONE)
    listed = {j["jobId"] for j in batch.list_jobs(jobQueue=queue)["jobSummaryList"]}
    assert running in listed and done not in listed
    succeeded = {j["jobId"] for j in batch.list_jobs(jobQueue=queue, jobStatus="SUCCEEDED")["jobSummaryList"]}
    assert done in succeeded
    by_name = batch.list_jobs(jobQueue=queue, filters=[{"name": "JOB_NAME", "values": ["job-*"]}])
    assert {running, done} <= {j["jobId"] for j in by_name["jobSummaryList"]}
    batch.terminate_job(jobId=running, reason="cleanup")


def test_bulk_cancel_and_terminate(batch: BatchClient) -> None:
    queue = make_queue(batch, state="DISABLED")
    definition = shell_definition(batch, "true")
    ids = [submit(batch, queue, definition) for _ in range(3)]
    for job_id in ids:
        wait_for_status(batch, job_id, ["RUNNABLE"])
    result = batch.cancel_jobs(jobs=[*ids[:2], "no-such-job"], reason="bulk")
    assert set(result["successful"]) == {*ids[:2], "no-such-job"}
    assert result["errors"] == []
    result = batch.terminate_jobs(jobs=[ids[2]], reason="bulk terminate")
    assert result["successful"] == [ids[2]]
    for job_id in ids:
        assert wait_for_status(batch, job_id, DONE)["status"] == "FAILED"


def test_describe_jobs_limit_and_unknown_ids(batch: BatchClient) -> None:
    assert batch.describe_jobs(jobs=["nope"])["jobs"] == []
    with pytest.raises(ClientError) as excinfo:
        batch.describe_jobs(jobs=[f"id-{i}" for i in range(101)])
    assert "Maximum number of jobs supported is" in excinfo.value.response["Error"]["Message"]


def test_submit_to_unknown_or_disabled_queue(batch: BatchClient) -> None:
    definition = shell_definition(batch, "true")
    with pytest.raises(ClientError) as excinfo:
        submit(batch, "no-such-queue", definition)
    assert excinfo.value.response["Error"]["Code"] == "ClientException"
    queue = make_queue(batch)
    batch.update_job_queue(jobQueue=queue, state="DISABLED")
    with pytest.raises(ClientError):
        submit(batch, queue, definition)


def test_start_order_follows_submission_in_a_fifo_queue(batch: BatchClient, tmp_path: Path) -> None:
    queue = make_queue(batch, max_vcpus=1)
    out = tmp_path / "order"
    definition = shell_definition(batch, f'echo "$AWS_BATCH_JOB_ID" >> {out}; sleep 0.05')
    ids = [submit(batch, queue, definition) for _ in range(6)]
    for job_id in ids:
        wait_for_status(batch, job_id, DONE)
    assert out.read_text().split() == ids


def test_deleting_a_queue_terminates_its_jobs(batch: BatchClient) -> None:
    queue = make_queue(batch, max_vcpus=2)
    definition = shell_definition(batch, "sleep 30")
    running = submit(batch, queue, definition)
    waiting = [submit(batch, queue, definition) for _ in range(3)]
    wait_for_status(batch, running, ["RUNNING"])
    batch.update_job_queue(jobQueue=queue, state="DISABLED")
    batch.delete_job_queue(jobQueue=queue)
    for job_id in [running, *waiting]:
        job = wait_for_status(batch, job_id, DONE)
        assert job["status"] == "FAILED"
        assert job["statusReason"] == f"Job queue {queue} was deleted"


def test_raising_max_vcpus_takes_effect_without_restart(batch: BatchClient) -> None:
    queue = make_queue(batch, max_vcpus=1)
    definition = shell_definition(batch, "true")
    job_id = submit(
        batch, queue, definition, containerOverrides={"resourceRequirements": [{"type": "VCPU", "value": "2"}]}
    )
    wait_for(lambda: "MAX_RESOURCE" in batch.describe_jobs(jobs=[job_id])["jobs"][0].get("statusReason", ""))
    ce = batch.describe_job_queues(jobQueues=[queue])["jobQueues"][0]["computeEnvironmentOrder"][0]
    batch.update_compute_environment(computeEnvironment=ce["computeEnvironment"], computeResources={"maxvCpus": 4})
    assert wait_for_status(batch, job_id, DONE)["status"] == "SUCCEEDED"


def test_list_jobs_by_job_definition(batch: BatchClient, queue: str) -> None:
    first = shell_definition(batch, "true")
    name = first.split(":")[0]
    second_revision = batch.register_job_definition(
        jobDefinitionName=name,
        type="container",
        containerProperties={
            "image": "x",
            "command": ["true"],
            "resourceRequirements": [{"type": "VCPU", "value": "1"}],
        },
    )
    a, b = submit(batch, queue, first), submit(batch, queue, second_revision["jobDefinitionArn"])
    for job_id in (a, b):
        wait_for_status(batch, job_id, DONE)

    def listed(value: str) -> set[str]:
        page = batch.list_jobs(jobQueue=queue, filters=[{"name": "JOB_DEFINITION", "values": [value]}])
        return {j["jobId"] for j in page["jobSummaryList"]}

    assert listed(name) == {a, b}
    assert listed(first) == {a}
    assert listed(second_revision["jobDefinitionArn"]) == {b}
    assert listed(name[:5] + "*") >= {a, b}
    assert listed(name.upper()) == set()  # job definition names compare case-sensitively
