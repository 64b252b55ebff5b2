"""The environment of a job's process is a Batch container's, and the image map gives jobs a Python."""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from tests.compute import compute_resources
from tests.support import ServerProcess, unique, wait_for_status

if TYPE_CHECKING:
    from mypy_boto3_batch import BatchClient

VENV = Path(sys.prefix)
"""The test run's own virtualenv stands in for an image's Python."""
PRINT_ENV = ["python3", "-c", "import json, os, sys; print(json.dumps({**os.environ, 'PREFIX': sys.prefix}))"]


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    root = tmp_path_factory.mktemp("env")
    image_map = root / "images.json"
    image_map.write_text(
        json.dumps({"python:3.11": str(VENV), "tools": {"path": [str(root)], "environment": {"X": "1"}}})
    )
    proc = ServerProcess(root / "data", extra_args=("--image-map", str(image_map)), env={"OPENBATCH_GPUS": ""})
    proc.start()
    try:
        yield proc
    finally:
        proc.stop()


@pytest.fixture(scope="module")
def batch(server: ServerProcess) -> BatchClient:
    return server.batch()


def run_and_read_env(
    batch: BatchClient, server: ServerProcess, queue: str, image: str, *, array: int | None = None, **extra: Any
) -> dict[str, str]:
    definition = batch.register_job_definition(
        jobDefinitionName=unique("env"),
        type="container",
        containerProperties={  # type: ignore[arg-type]
            "image": image,
            "command": PRINT_ENV,
            "environment": [{"name": "MINE", "value": "kept"}, {"name": "AWS_REGION", "value": "mine-1"}],
            "resourceRequirements": [{"type": "VCPU", "value": "1"}, {"type": "MEMORY", "value": "512"}],
            **extra,
        },
        platformCapabilities=["FARGATE"] if "executionRoleArn" in extra else ["EC2"],
    )["jobDefinitionArn"]
    submit: dict[str, Any] = {"arrayProperties": {"size": array}} if array else {}
    job_id = batch.submit_job(jobName="env", jobQueue=queue, jobDefinition=definition, **submit)["jobId"]
    target = f"{job_id}:1" if array else job_id
    detail = wait_for_status(batch, target, ["SUCCEEDED", "FAILED"])
    assert detail["status"] == "SUCCEEDED", detail
    stream = detail["container"]["logStreamName"]
    events = server.logs().get_log_events(logGroupName="/aws/batch/job", logStreamName=stream)["events"]
    env: dict[str, str] = json.loads(events[-1]["message"])
    return env


def make_queue(batch: BatchClient, resource_type: str) -> tuple[str, str]:
    ce, queue = unique("ce"), unique("q")
    batch.create_compute_environment(
        computeEnvironmentName=ce, type="MANAGED", computeResources=compute_resources(resource_type, 4)
    )
    batch.create_job_queue(
        jobQueueName=queue, priority=1, computeEnvironmentOrder=[{"order": 1, "computeEnvironment": ce}]
    )
    return ce, queue


def test_a_job_sees_every_documented_variable(batch: BatchClient, server: ServerProcess) -> None:
    ce, queue = make_queue(batch, "EC2")
    env = run_and_read_env(batch, server, queue, "python:3.11", array=2)
    job_id = env["AWS_BATCH_JOB_ID"]
    assert job_id.endswith(":1")
    assert env["AWS_BATCH_JOB_ATTEMPT"] == "1"
    assert env["AWS_BATCH_JQ_NAME"] == queue
    assert env["AWS_BATCH_CE_NAME"] == ce
    assert env["AWS_BATCH_JOB_ARRAY_INDEX"] == "1"
    assert env["AWS_BATCH_JOB_ARRAY_SIZE"] == "2"
    assert env["AWS_EXECUTION_ENV"] == "AWS_ECS_EC2"
    assert env["AWS_DEFAULT_REGION"] == "us-east-1"
    assert env["AWS_REGION"] == "mine-1", "a variable the job sets itself wins"
    assert env["HOSTNAME"]
    assert env["ECS_CONTAINER_METADATA_URI_V4"].endswith(f"/ecs/v4/{job_id}/1")
    assert env["MINE"] == "kept"
    # The image map put the virtualenv's bin first on PATH: `python3` is its interpreter.
    assert env["PATH"].split(":")[0] == str(VENV / "bin")
    assert Path(env["PREFIX"]) == VENV
    assert env["VIRTUAL_ENV"] == str(VENV)


def test_fargate_jobs_see_the_fargate_execution_environment(batch: BatchClient, server: ServerProcess) -> None:
    _, queue = make_queue(batch, "FARGATE")
    env = run_and_read_env(
        batch,
        server,
        queue,
        "python:3.11",
        executionRoleArn="arn:aws:iam::123456789012:role/ecsTaskExecutionRole",
        resourceRequirements=[{"type": "VCPU", "value": "1"}, {"type": "MEMORY", "value": "2048"}],
    )
    assert env["AWS_EXECUTION_ENV"] == "AWS_ECS_FARGATE"


def test_unmapped_images_keep_the_base_path(batch: BatchClient, server: ServerProcess) -> None:
    _, queue = make_queue(batch, "EC2")
    env = run_and_read_env(batch, server, queue, "busybox")
    assert not env["PATH"].startswith(str(VENV / "bin"))
    assert "VIRTUAL_ENV" not in env
    assert env["AWS_EXECUTION_ENV"] == "AWS_ECS_EC2"


@pytest.mark.slow
def test_a_bad_image_map_stops_the_server_with_its_reason(tmp_path: Path) -> None:
    bad = tmp_path / "images.json"
    bad.write_text('{"python": 3}')
    proc = ServerProcess(tmp_path / "data", extra_args=("--image-map", str(bad)))
    with pytest.raises(Exception):  # noqa: B017 - the launcher reports the early exit its own way
        proc.start(timeout=15)
    proc.stop()
    assert "'python' must map to a directory or an object" in proc.log_path.read_text()


def test_the_task_metadata_endpoint_names_the_log_stream(batch: BatchClient, server: ServerProcess) -> None:
    """What Metaflow reads: ``LogOptions`` of ``GET $ECS_CONTAINER_METADATA_URI_V4``."""
    _, queue = make_queue(batch, "EC2")
    fetch = (
        "import json, os, urllib.request as u; base = os.environ['ECS_CONTAINER_METADATA_URI_V4']; "
        "print(json.dumps({'container': json.load(u.urlopen(base)), 'task': json.load(u.urlopen(base + '/task'))}))"
    )
    definition = batch.register_job_definition(
        jobDefinitionName=unique("meta"),
        type="container",
        containerProperties={"image": "python:3.11", "command": ["python3", "-c", fetch]},
    )["jobDefinitionArn"]
    job_id = batch.submit_job(jobName="meta", jobQueue=queue, jobDefinition=definition)["jobId"]
    detail = wait_for_status(batch, job_id, ["SUCCEEDED", "FAILED"])
    assert detail["status"] == "SUCCEEDED", detail
    stream = detail["container"]["logStreamName"]
    events = server.logs().get_log_events(logGroupName="/aws/batch/job", logStreamName=stream)["events"]
    metadata = json.loads(events[-1]["message"])
    assert metadata["container"]["LogOptions"] == {
        "awslogs-group": "/aws/batch/job",
        "awslogs-region": "us-east-1",
        "awslogs-stream": stream,
    }
    assert metadata["container"]["KnownStatus"] == "RUNNING"
    assert metadata["task"]["TaskARN"] == detail["container"]["taskArn"]


def test_the_task_metadata_endpoint_answers_unknown_attempts_with_aws_errors(server: ServerProcess) -> None:
    import httpx

    for path, status in (("/ecs/v4/no-such-job/1", 404), ("/ecs/v4/no-such-job/x/task", 400)):
        response = httpx.get(server.url + path)
        assert response.status_code == status
        assert response.json()["__type"] == "ClientException"
