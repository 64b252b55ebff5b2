"""ECS-properties and EKS-properties jobs run as local processes, described in AWS's shape."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

from tests.model_shapes import batch_model, response_problems
from tests.support import ServerProcess, make_queue, unique, wait_for_status

if TYPE_CHECKING:
    from mypy_boto3_batch import BatchClient

RESOURCES = [{"type": "VCPU", "value": "0.5"}, {"type": "MEMORY", "value": "64"}]


def log_lines(server: ServerProcess, detail: dict[str, Any]) -> list[str]:
    stream = detail["attempts"][-1]["container"]["logStreamName"]
    events = server.logs().get_log_events(logGroupName="/aws/batch/job", logStreamName=stream)["events"]
    return [e["message"] for e in events]


def describe_raw(server: ServerProcess, job_id: str) -> dict[str, Any]:
    """DescribeJobs' raw JSON, checked member by member against the botocore model."""
    import httpx

    response = httpx.post(f"{server.url}/v1/describejobs", json={"jobs": [job_id]})
    body: dict[str, Any] = response.json()
    problems = response_problems(batch_model().operation_model("DescribeJobs"), body)
    assert not problems, problems
    return body["jobs"][0]  # type: ignore[no-any-return]


def ecs_definition(batch: BatchClient, containers: list[dict[str, Any]]) -> str:
    for container in containers:
        container.setdefault("image", "busybox")
        container.setdefault("resourceRequirements", RESOURCES)
    return batch.register_job_definition(
        jobDefinitionName=unique("ecs"),
        type="container",
        ecsProperties={"taskProperties": [{"containers": containers}]},  # type: ignore[arg-type, misc]
    )["jobDefinitionArn"]


def test_an_ecs_task_runs_its_containers_in_dependency_order(batch: BatchClient, server: ServerProcess) -> None:
    queue = make_queue(batch)
    definition = ecs_definition(
        batch,
        [
            {"name": "setup", "essential": False, "command": ["sh", "-c", "echo ready > shared.txt"]},
            {
                "name": "main",
                "command": ["sh", "-c", "echo main $GREETING $(cat shared.txt)"],
                "environment": [{"name": "GREETING", "value": "hello"}],
                "dependsOn": [{"containerName": "setup", "condition": "SUCCESS"}],
            },
            {"name": "sidecar", "essential": False, "command": ["sleep", "60"]},
        ],
    )
    job_id = batch.submit_job(jobName="ecs", jobQueue=queue, jobDefinition=definition)["jobId"]
    detail = wait_for_status(batch, job_id, ["SUCCEEDED", "FAILED"], timeout=60)
    assert detail["status"] == "SUCCEEDED", detail
    lines = log_lines(server, detail)
    assert "[main] main hello ready" in lines
    assert lines.index("[openbatch] container setup exited with code 0") < lines.index("[main] main hello ready")
    raw = describe_raw(server, job_id)
    assert "container" not in raw
    containers = raw["ecsProperties"]["taskProperties"][0]["containers"]
    assert [c["name"] for c in containers] == ["setup", "main", "sidecar"]
    assert containers[1]["environment"] == [{"name": "GREETING", "value": "hello"}]


def test_an_ecs_task_fails_with_its_essential_container(batch: BatchClient, server: ServerProcess) -> None:
    queue = make_queue(batch)
    definition = ecs_definition(
        batch,
        [
            {"name": "main", "command": ["sh", "-c", "exit 2"]},
            {"name": "helper", "essential": False, "command": ["sleep", "60"]},
        ],
    )
    overridden = batch.submit_job(
        jobName="ecs-override",
        jobQueue=queue,
        jobDefinition=definition,
        ecsPropertiesOverride={"taskProperties": [{"containers": [{"name": "main", "command": ["true"]}]}]},
    )["jobId"]
    failing = batch.submit_job(jobName="ecs-fail", jobQueue=queue, jobDefinition=definition)["jobId"]
    failed = wait_for_status(batch, failing, ["SUCCEEDED", "FAILED"], timeout=60)
    assert failed["status"] == "FAILED"
    assert failed["attempts"][-1]["container"]["exitCode"] == 2
    assert wait_for_status(batch, overridden, ["SUCCEEDED", "FAILED"], timeout=60)["status"] == "SUCCEEDED"


def eks_definition(batch: BatchClient, pod: dict[str, Any], **extra: Any) -> str:
    return batch.register_job_definition(
        jobDefinitionName=unique("eks"),
        type="container",
        eksProperties={"podProperties": pod},  # type: ignore[arg-type, misc]
        **extra,
    )["jobDefinitionArn"]


def test_an_eks_pod_runs_init_containers_first(batch: BatchClient, server: ServerProcess) -> None:
    queue = make_queue(batch)
    definition = eks_definition(
        batch,
        {
            "initContainers": [{"name": "init", "image": "busybox", "command": ["sh", "-c", "echo init > state"]}],
            "containers": [
                {
                    "name": "main",
                    "image": "busybox",
                    "command": ["sh", "-c"],
                    "args": ["echo main $MODE Ref::size $(cat state)"],
                    "env": [{"name": "MODE", "value": "fast"}],
                    "resources": {"limits": {"cpu": "500m", "memory": "256Mi"}},
                }
            ],
        },
        parameters={"size": "small"},
    )
    job_id = batch.submit_job(jobName="eks", jobQueue=queue, jobDefinition=definition, parameters={"size": "large"})[
        "jobId"
    ]
    detail = wait_for_status(batch, job_id, ["SUCCEEDED", "FAILED"], timeout=60)
    assert detail["status"] == "SUCCEEDED", detail
    assert "[main] main fast large init" in log_lines(server, detail)
    raw = describe_raw(server, job_id)
    pod = raw["eksProperties"]["podProperties"]
    assert [c["name"] for c in pod["containers"]] == ["main"]
    assert [c["name"] for c in pod["initContainers"]] == ["init"]
    assert pod["containers"][0]["args"] == ["echo main $MODE large $(cat state)"]
    [attempt] = raw["eksAttempts"]
    assert attempt["containers"] == [{"name": "main", "exitCode": 0}]
    assert attempt["podName"] == pod["podName"]


def test_a_failing_init_container_fails_the_pod(batch: BatchClient, server: ServerProcess) -> None:
    queue = make_queue(batch)
    definition = eks_definition(
        batch,
        {
            "initContainers": [{"name": "init", "image": "busybox", "command": ["sh", "-c", "exit 5"]}],
            "containers": [{"name": "main", "image": "busybox", "command": ["sh", "-c", "echo should-not-run"]}],
        },
    )
    job_id = batch.submit_job(jobName="eks-fail", jobQueue=queue, jobDefinition=definition)["jobId"]
    detail = wait_for_status(batch, job_id, ["SUCCEEDED", "FAILED"], timeout=60)
    assert detail["status"] == "FAILED"
    lines = log_lines(server, detail)
    assert not any("should-not-run" in line for line in lines)
    assert json.dumps(lines).count("init container init failed") == 1
