"""Compute environments through boto3 against a real server, plus the wire-level error contract."""

from __future__ import annotations

import base64
import json
from typing import TYPE_CHECKING, Any

import boto3
import httpx
import pytest

from tests.compute import EC2_REQUIRED, compute_resources
from tests.support import ServerProcess, client_exception, unique

if TYPE_CHECKING:
    from mypy_boto3_batch import BatchClient

ACCOUNT = "123456789012"
CE_ARN = f"arn:aws:batch:us-east-1:{ACCOUNT}:compute-environment/"


def assert_no_nulls(value: Any, path: str = "$") -> None:
    if isinstance(value, dict):
        for key, item in value.items():
            assert item is not None, f"{path}.{key} is null"
            assert_no_nulls(item, f"{path}.{key}")
    elif isinstance(value, list):
        for index, item in enumerate(value):
            assert item is not None, f"{path}[{index}] is null"
            assert_no_nulls(item, f"{path}[{index}]")


def managed(batch: BatchClient, name: str | None = None, **resources: Any) -> str:
    name = name or unique("ce")
    compute = compute_resources(resources.pop("type", "EC2"), resources.pop("maxvCpus", 4), **resources)
    batch.create_compute_environment(computeEnvironmentName=name, type="MANAGED", computeResources=compute)
    return name


def describe_one(batch: BatchClient, reference: str) -> dict[str, Any]:
    found = batch.describe_compute_environments(computeEnvironments=[reference])["computeEnvironments"]
    assert len(found) == 1, found
    return dict(found[0])


def disable(batch: BatchClient, name: str) -> None:
    batch.update_compute_environment(computeEnvironment=name, state="DISABLED")


# --- create / describe ---------------------------------------------------------------


def test_create_managed_returns_name_and_arn_and_describes_exact_shape(batch: BatchClient) -> None:
    name = unique("ce")
    out = batch.create_compute_environment(
        computeEnvironmentName=name,
        type="MANAGED",
        computeResources=compute_resources("EC2", 8, desiredvCpus=2),
        serviceRole="arn:aws:iam::123456789012:role/AWSBatchServiceRole",
        tags={"team": "data"},
    )
    assert out["computeEnvironmentName"] == name
    assert out["computeEnvironmentArn"] == CE_ARN + name

    detail = describe_one(batch, name)
    uuid = detail["uuid"]
    assert detail == {
        "computeEnvironmentName": name,
        "computeEnvironmentArn": CE_ARN + name,
        "ecsClusterArn": f"arn:aws:ecs:us-east-1:{ACCOUNT}:cluster/{name}_Batch_{uuid}",
        "type": "MANAGED",
        "state": "ENABLED",
        "status": "VALID",
        "statusReason": "ComputeEnvironment Healthy",
        "computeResources": {
            "type": "EC2",
            "maxvCpus": 8,
            "minvCpus": 0,
            "desiredvCpus": 2,
            **EC2_REQUIRED,
        },
        "serviceRole": "arn:aws:iam::123456789012:role/AWSBatchServiceRole",
        "tags": {"team": "data"},
        "containerOrchestrationType": "ECS",
        "uuid": uuid,
    }


def test_create_unmanaged_and_disabled(batch: BatchClient) -> None:
    name = unique("unmanaged")
    batch.create_compute_environment(computeEnvironmentName=name, type="UNMANAGED", unmanagedvCpus=16, state="DISABLED")
    detail = describe_one(batch, name)
    assert detail["type"] == "UNMANAGED"
    assert detail["state"] == "DISABLED"
    assert detail["unmanagedvCpus"] == 16
    assert detail["status"] == "VALID"
    assert "computeResources" not in detail


def test_infrastructure_members_are_stored_and_echoed(batch: BatchClient) -> None:
    name = managed(
        batch,
        type="SPOT",
        subnets=["subnet-1"],
        securityGroupIds=["sg-1"],
        bidPercentage=60,
        allocationStrategy="SPOT_CAPACITY_OPTIMIZED",
        tags={"Name": "worker"},
    )
    resources = describe_one(batch, name)["computeResources"]
    assert resources["type"] == "SPOT"
    assert resources["subnets"] == ["subnet-1"]
    assert resources["securityGroupIds"] == ["sg-1"]
    assert resources["bidPercentage"] == 60
    assert resources["allocationStrategy"] == "SPOT_CAPACITY_OPTIMIZED"
    assert resources["tags"] == {"Name": "worker"}


def test_describe_by_name_arn_unknown_and_all(batch: BatchClient) -> None:
    name = managed(batch)
    by_name = describe_one(batch, name)
    assert describe_one(batch, CE_ARN + name) == by_name
    assert batch.describe_compute_environments(computeEnvironments=["no-such-ce"])["computeEnvironments"] == []
    every = {ce["computeEnvironmentName"] for ce in batch.describe_compute_environments()["computeEnvironments"]}
    assert {"default", name} <= every


def test_default_compute_environment_exists(batch: BatchClient) -> None:
    detail = describe_one(batch, "default")
    assert detail["computeEnvironmentArn"] == CE_ARN + "default"
    assert detail["state"] == "ENABLED"
    assert detail["computeResources"]["maxvCpus"] >= 1


def test_region_in_arns_comes_from_the_signature_scope(server: ServerProcess) -> None:
    client = boto3.client(
        "batch",
        region_name="eu-west-1",
        endpoint_url=server.url,
        aws_access_key_id="test",
        aws_secret_access_key="test",
    )
    name = unique("eu")
    out = client.create_compute_environment(
        computeEnvironmentName=name, type="MANAGED", computeResources=compute_resources("EC2", 1)
    )
    assert out["computeEnvironmentArn"] == f"arn:aws:batch:eu-west-1:{ACCOUNT}:compute-environment/{name}"
    detail = client.describe_compute_environments(computeEnvironments=[name])["computeEnvironments"][0]
    assert detail["ecsClusterArn"].startswith(f"arn:aws:ecs:eu-west-1:{ACCOUNT}:cluster/{name}_Batch_")
    queue = unique("eu-q")
    queue_arn = client.create_job_queue(
        jobQueueName=queue, priority=1, computeEnvironmentOrder=[{"order": 1, "computeEnvironment": name}]
    )["jobQueueArn"]
    assert queue_arn == f"arn:aws:batch:eu-west-1:{ACCOUNT}:job-queue/{queue}"
    described = client.describe_job_queues(jobQueues=[queue])["jobQueues"][0]
    assert described["computeEnvironmentOrder"] == [{"order": 1, "computeEnvironment": out["computeEnvironmentArn"]}]


# --- update ----------------------------------------------------------------------------


def test_update_state_and_resources_by_name_and_arn(batch: BatchClient) -> None:
    name = managed(batch, minvCpus=1, maxvCpus=4)
    out = batch.update_compute_environment(
        computeEnvironment=name, state="DISABLED", computeResources={"maxvCpus": 16, "desiredvCpus": 8}
    )
    assert out["computeEnvironmentName"] == name
    assert out["computeEnvironmentArn"] == CE_ARN + name
    detail = describe_one(batch, name)
    assert detail["state"] == "DISABLED"
    assert detail["status"] == "VALID"
    assert detail["computeResources"]["minvCpus"] == 1
    assert detail["computeResources"]["maxvCpus"] == 16
    assert detail["computeResources"]["desiredvCpus"] == 8

    batch.update_compute_environment(
        computeEnvironment=CE_ARN + name,
        state="ENABLED",
        serviceRole="arn:aws:iam::123456789012:role/other",
        updatePolicy={"terminateJobsOnUpdate": True, "jobExecutionTimeoutMinutes": 10},
    )
    detail = describe_one(batch, name)
    assert detail["state"] == "ENABLED"
    assert detail["serviceRole"] == "arn:aws:iam::123456789012:role/other"
    assert detail["updatePolicy"] == {"terminateJobsOnUpdate": True, "jobExecutionTimeoutMinutes": 10}


def test_update_errors(batch: BatchClient) -> None:
    name = managed(batch, minvCpus=2, maxvCpus=4)
    with client_exception("no-such-ce"):
        batch.update_compute_environment(computeEnvironment="no-such-ce", state="DISABLED")
    with client_exception("minvCpus", "maxvCpus"):
        batch.update_compute_environment(computeEnvironment=name, computeResources={"maxvCpus": 1})
    with client_exception("desiredvCpus"):
        batch.update_compute_environment(computeEnvironment=name, computeResources={"desiredvCpus": 99})
    unmanaged = unique("unmanaged")
    batch.create_compute_environment(computeEnvironmentName=unmanaged, type="UNMANAGED")
    with client_exception("UNMANAGED"):
        batch.update_compute_environment(computeEnvironment=unmanaged, computeResources={"maxvCpus": 4})
    with client_exception("unmanagedvCpus"):
        batch.update_compute_environment(computeEnvironment=name, unmanagedvCpus=4)
    with client_exception("state"):
        batch.update_compute_environment(computeEnvironment=name, state="PAUSED")  # type: ignore[arg-type]
    assert describe_one(batch, name)["computeResources"]["maxvCpus"] == 4


# --- delete ----------------------------------------------------------------------------


def test_delete_requires_disabled_then_removes(batch: BatchClient) -> None:
    name = managed(batch)
    with client_exception("DISABLED"):
        batch.delete_compute_environment(computeEnvironment=name)
    disable(batch, name)
    out = batch.delete_compute_environment(computeEnvironment=CE_ARN + name)
    assert {k: v for k, v in out.items() if k != "ResponseMetadata"} == {}
    assert batch.describe_compute_environments(computeEnvironments=[name])["computeEnvironments"] == []
    with client_exception(name):
        batch.delete_compute_environment(computeEnvironment=name)
    # The name is free again.
    managed(batch, name)
    assert describe_one(batch, name)["state"] == "ENABLED"


def test_delete_refused_while_attached_to_a_queue(batch: BatchClient) -> None:
    name = managed(batch)
    queue = unique("q")
    batch.create_job_queue(
        jobQueueName=queue, priority=1, computeEnvironmentOrder=[{"order": 1, "computeEnvironment": CE_ARN + name}]
    )
    disable(batch, name)
    with client_exception(name, queue):
        batch.delete_compute_environment(computeEnvironment=name)
    batch.update_job_queue(jobQueue=queue, state="DISABLED")
    batch.delete_job_queue(jobQueue=queue)
    batch.delete_compute_environment(computeEnvironment=name)
    assert batch.describe_compute_environments(computeEnvironments=[name])["computeEnvironments"] == []


# --- create errors ---------------------------------------------------------------------


def test_duplicate_name(batch: BatchClient) -> None:
    name = managed(batch)
    with client_exception("already exists", name):
        managed(batch, name)


@pytest.mark.parametrize("name", ["-starts-with-hyphen", "has space", "dots.not.allowed", "x" * 129, "ünïcode", ""])
def test_bad_names(batch: BatchClient, name: str) -> None:
    with client_exception("name"):
        batch.create_compute_environment(computeEnvironmentName=name, type="UNMANAGED")


def test_managed_needs_compute_resources_and_unmanaged_refuses_them(batch: BatchClient) -> None:
    with client_exception("computeResources", "MANAGED"):
        batch.create_compute_environment(computeEnvironmentName=unique("ce"), type="MANAGED")
    with client_exception("computeResources", "UNMANAGED"):
        batch.create_compute_environment(
            computeEnvironmentName=unique("ce"), type="UNMANAGED", computeResources={"type": "EC2", "maxvCpus": 2}
        )


@pytest.mark.parametrize(
    ("resources", "fragment"),
    [
        ({"minvCpus": 8, "maxvCpus": 4}, "minvCpus (8) cannot be greater than maxvCpus (4)"),
        ({"maxvCpus": -1}, "negative"),
        ({"minvCpus": 0, "maxvCpus": 4, "desiredvCpus": 5}, "desiredvCpus"),
        ({"type": "GPU", "maxvCpus": 4}, "computeResources.type"),
    ],
)
def test_bad_compute_resources(batch: BatchClient, resources: dict[str, Any], fragment: str) -> None:
    name = unique("ce")
    with client_exception(fragment):
        managed(batch, name, **resources)
    assert batch.describe_compute_environments(computeEnvironments=[name])["computeEnvironments"] == []


def test_bad_type_and_state(batch: BatchClient) -> None:
    with client_exception("type"):
        batch.create_compute_environment(computeEnvironmentName=unique("ce"), type="SERVERLESS")  # type: ignore[arg-type]
    with client_exception("state"):
        batch.create_compute_environment(
            computeEnvironmentName=unique("ce"),
            type="UNMANAGED",
            state="ON",  # type: ignore[arg-type]
        )


# --- pagination ------------------------------------------------------------------------


def test_paginator_sees_every_environment_once(batch: BatchClient) -> None:
    created = {managed(batch, unique("page")) for _ in range(5)}
    paginator = batch.get_paginator("describe_compute_environments")
    seen: list[str] = []
    tokens: list[str] = []
    for page in paginator.paginate(PaginationConfig={"PageSize": 2}):
        assert len(page["computeEnvironments"]) <= 2
        seen.extend(ce["computeEnvironmentName"] for ce in page["computeEnvironments"])
        if "nextToken" in page:
            tokens.append(page["nextToken"])
    assert len(seen) == len(set(seen))
    assert created <= set(seen)
    assert len(tokens) == len(set(tokens))
    assert len(tokens) >= 3
    every = batch.describe_compute_environments()["computeEnvironments"]
    assert [ce["computeEnvironmentName"] for ce in every] == seen


def test_pagination_over_a_name_list(batch: BatchClient) -> None:
    names = [managed(batch, unique("named")) for _ in range(3)]
    first = batch.describe_compute_environments(computeEnvironments=names, maxResults=2)
    assert [ce["computeEnvironmentName"] for ce in first["computeEnvironments"]] == names[:2]
    second = batch.describe_compute_environments(computeEnvironments=names, maxResults=2, nextToken=first["nextToken"])
    assert [ce["computeEnvironmentName"] for ce in second["computeEnvironments"]] == names[2:]
    assert "nextToken" not in second


@pytest.mark.parametrize("max_results", [0, -1, 101])
def test_max_results_out_of_range(batch: BatchClient, max_results: int) -> None:
    with client_exception("maxResults"):
        batch.describe_compute_environments(maxResults=max_results)


def _token(payload: Any) -> str:
    return base64.urlsafe_b64encode(json.dumps(payload).encode()).decode().rstrip("=")


@pytest.mark.parametrize(
    "token",
    [
        "not-a-token",
        "%%%",
        _token({"k": "job-queue", "p": 1}),
        _token({"k": "compute-environment", "p": "x"}),
        _token({"k": "compute-environment", "p": [1, 2]}),
        _token({"k": "compute-environment", "p": 10**30}),
        _token({"k": "compute-environment", "p": -5}),
        _token([1, 2]),
        _token("plain"),
    ],
)
def test_bad_next_token(batch: BatchClient, token: str) -> None:
    with client_exception("nextToken"):
        batch.describe_compute_environments(nextToken=token)


def test_too_many_names(batch: BatchClient) -> None:
    with client_exception("100"):
        batch.describe_compute_environments(computeEnvironments=[f"ce-{i}" for i in range(101)])


# --- wire-level errors botocore cannot produce ----------------------------------------------


def _assert_client_exception(response: httpx.Response, *fragments: str) -> str:
    assert response.status_code == 400, response.text
    assert response.headers["x-amzn-ErrorType"] == "ClientException"
    assert response.headers["content-type"].startswith("application/json")
    assert response.headers.get("x-amzn-RequestId")
    body = response.json()
    assert set(body) == {"__type", "message"}
    assert body["__type"] == "ClientException"
    message: str = body["message"]
    assert message
    for fragment in fragments:
        assert fragment.lower() in message.lower(), message
    return message


@pytest.mark.parametrize(
    ("path", "content", "fragments"),
    [
        ("/v1/createcomputeenvironment", b"{not json", ("JSON",)),
        ("/v1/createcomputeenvironment", b"[1, 2, 3]", ("JSON object",)),
        ("/v1/createcomputeenvironment", b'"text"', ("JSON object",)),
        ("/v1/createcomputeenvironment", b"null", ("JSON object",)),
        ("/v1/createcomputeenvironment", b"\xff\xfe", ("JSON",)),
        ("/v1/createjobqueue", b'{"jobQueueName": "q", "priority": "high"}', ("priority",)),
        ("/v1/createjobqueue", b'{"jobQueueName": ["q"], "priority": 1}', ("jobQueueName",)),
        ("/v1/createjobqueue", b'{"priority": 1}', ("jobQueueName",)),
        ("/v1/createjobqueue", b'{"jobQueueName": "q", "priority": 1, "computeEnvironmentOrder": {}}', ()),
        ("/v1/createcomputeenvironment", b'{"computeEnvironmentName": "x", "type": "MANAGED", "tags": [1]}', ("tags",)),
        ("/v1/describecomputeenvironments", b'{"maxResults": "many"}', ("maxResults",)),
        ("/v1/describecomputeenvironments", b'{"computeEnvironments": "default"}', ("computeEnvironments",)),
        ("/v1/describejobdefinitions", b'{"nextToken": 5}', ("nextToken",)),
        ("/v1/registerjobdefinition", b'{"jobDefinitionName": "x", "type": "container", "retryStrategy": 3}', ()),
        ("/v1/describecomputeenvironments", b'{"computeEnvironments": ["a\\u0000b"]}', ("NUL",)),
        (
            "/v1/createcomputeenvironment",
            b'{"computeEnvironmentName": "x", "type": "UNMANAGED", "tags": {"\\u0000": ""}}',
            ("NUL",),
        ),
        ("/v1/describecomputeenvironments", b'{"x":' * 100 + b"1" + b"}" * 100, ("nested",)),
        ("/v1/describecomputeenvironments", b'{"x":' + b"[" * 100_000 + b"]" * 100_000 + b"}", ("nested",)),
        ("/v1/nosuchop", b"{}", ("nosuchop",)),
        ("/v1/", b"{}", ()),
        ("/not-the-api", b"{}", ()),
    ],
)
def test_raw_requests_are_client_exceptions(
    server: ServerProcess, path: str, content: bytes, fragments: tuple[str, ...]
) -> None:
    response = httpx.post(server.url + path, content=content, headers={"content-type": "application/json"})
    _assert_client_exception(response, *fragments)


@pytest.mark.parametrize("method", ["GET", "PUT", "DELETE", "PATCH", "OPTIONS"])
def test_operations_only_answer_post(server: ServerProcess, method: str) -> None:
    response = httpx.request(method, server.url + "/v1/describecomputeenvironments")
    _assert_client_exception(response, "POST")


def test_empty_body_means_no_members(server: ServerProcess) -> None:
    response = httpx.post(server.url + "/v1/describecomputeenvironments", content=b"")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("application/json")
    assert response.headers.get("x-amzn-RequestId")
    assert "computeEnvironments" in response.json()


def test_operation_names_are_case_insensitive_and_prefix_is_allowed(server: ServerProcess) -> None:
    for path in ("/v1/DescribeComputeEnvironments", "/some/prefix/v1/describecomputeenvironments"):
        response = httpx.post(server.url + path, json={})
        assert response.status_code == 200, response.text


def test_unknown_members_are_ignored(server: ServerProcess) -> None:
    response = httpx.post(
        server.url + "/v1/describecomputeenvironments", json={"someFutureMember": {"x": 1}, "maxResults": 1}
    )
    assert response.status_code == 200
    assert len(response.json()["computeEnvironments"]) == 1


def test_describe_outputs_have_no_null_members(server: ServerProcess, batch: BatchClient) -> None:
    managed(batch)
    batch.register_job_definition(
        jobDefinitionName=unique("jd"), type="container", containerProperties={"image": "busybox"}
    )
    batch.create_scheduling_policy(name=unique("sp"))
    for operation, key in [
        ("describecomputeenvironments", "computeEnvironments"),
        ("describejobqueues", "jobQueues"),
        ("describejobdefinitions", "jobDefinitions"),
        ("listschedulingpolicies", "schedulingPolicies"),
    ]:
        response = httpx.post(f"{server.url}/v1/{operation}", json={})
        assert response.status_code == 200
        body = response.json()
        assert isinstance(body[key], list)
        assert_no_nulls(body)
