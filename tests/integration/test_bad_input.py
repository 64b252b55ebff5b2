"""Fixed regressions for bad input: each once answered 500, was stored and broke boto3, or was accepted.

Sent raw over HTTP where boto3 would refuse the input on the client side, so
that the server's own checks are what is tested.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import httpx
import pytest

from tests.compute import compute_resources
from tests.support import ServerProcess, client_exception, make_queue, shell_definition, unique

if TYPE_CHECKING:
    from mypy_boto3_batch import BatchClient

SURROGATE = "\ud800"


def _post(server: ServerProcess, operation: str, body: dict[str, Any]) -> httpx.Response:
    # ensure_ascii: a lone surrogate travels as the JSON escape \ud800, as any client could send it.
    content = json.dumps(body, ensure_ascii=True).encode()
    return httpx.post(f"{server.url}/v1/{operation.lower()}", content=content, timeout=30)


def _logs(server: ServerProcess, operation: str, body: dict[str, Any]) -> httpx.Response:
    return httpx.post(
        server.url + "/",
        content=json.dumps(body, ensure_ascii=True).encode(),
        headers={"x-amz-target": f"Logs_20140328.{operation}", "content-type": "application/x-amz-json-1.1"},
        timeout=30,
    )


def _assert_error(response: httpx.Response, status: int, error_type: str, *fragments: str) -> None:
    assert response.status_code == status, response.text
    assert response.headers["x-amzn-ErrorType"] == error_type
    payload = response.json()
    assert payload["__type"] == error_type
    for fragment in fragments:
        assert fragment.lower() in payload["message"].lower(), payload["message"]


@pytest.fixture(scope="module")
def queue(batch: BatchClient) -> str:
    return make_queue(batch, max_vcpus=2)


@pytest.mark.parametrize(
    ("operation", "body"),
    [
        ("CreateComputeEnvironment", {"computeEnvironmentName": SURROGATE, "type": "UNMANAGED"}),
        ("CreateComputeEnvironment", {"computeEnvironmentName": "ce", "type": "UNMANAGED", "tags": {SURROGATE: "v"}}),
        ("DescribeJobQueues", {"jobQueues": ["q" + SURROGATE]}),
        ("DescribeJobs", {"jobs": [SURROGATE]}),
        ("ListJobs", {"jobQueue": "default", "filters": [{"name": "JOB_NAME", "values": ["a\udfffb"]}]}),
        (
            "RegisterJobDefinition",
            {
                "jobDefinitionName": "jd",
                "type": "container",
                "containerProperties": {"image": "busybox", "command": ["echo", SURROGATE]},
            },
        ),
        ("SubmitJob", {"jobName": "j", "jobQueue": "default", "jobDefinition": "jd", "parameters": {"p": SURROGATE}}),
        (
            "CreateSchedulingPolicy",
            {"name": "sp", "fairsharePolicy": {"shareDistribution": [{"shareIdentifier": SURROGATE}]}},
        ),
        ("UpdateComputeEnvironment", {"computeEnvironment": "default", "serviceRole": SURROGATE}),
        ("DescribeComputeEnvironments", {"unknownMember": SURROGATE}),
    ],
)
def test_a_lone_surrogate_in_any_string_is_a_client_exception(
    server: ServerProcess, operation: str, body: dict[str, Any]
) -> None:
    _assert_error(_post(server, operation, body), 400, "ClientException", "surrogate")


@pytest.mark.parametrize("text", ["a\x00b", "\x1b[31m", "bell\x07", "\ufffe"])
def test_control_characters_are_client_exceptions(server: ServerProcess, text: str) -> None:
    response = _post(server, "SubmitJob", {"jobName": "j", "jobQueue": "default", "jobDefinition": text})
    _assert_error(response, 400, "ClientException", "character")


def test_tabs_and_newlines_are_text(batch: BatchClient) -> None:
    definition = shell_definition(
        batch, "printf 'a\\tb\\n'", container={"environment": [{"name": "X", "value": "1\n2\t3"}]}
    )
    described = batch.describe_job_definitions(jobDefinitions=[definition])["jobDefinitions"][0]
    assert described["containerProperties"]["environment"] == [{"name": "X", "value": "1\n2\t3"}]


def test_tag_routes_refuse_invalid_text(server: ServerProcess, queue: str, batch: BatchClient) -> None:
    arn = batch.describe_job_queues(jobQueues=[queue])["jobQueues"][0]["jobQueueArn"]
    url = f"{server.url}/v1/tags/{arn}"
    response = httpx.post(url, content=json.dumps({"tags": {"k": SURROGATE}}).encode())
    _assert_error(response, 400, "ClientException", "surrogate")
    response = httpx.post(url, content=json.dumps({"tags": {"k": ["not", "a", "string"]}}).encode())
    _assert_error(response, 400, "ClientException", "tags")
    response = httpx.delete(url, params={"tagKeys": "a\x01"})
    _assert_error(response, 400, "ClientException", "character")
    assert httpx.get(url).json() == {"tags": {}}


@pytest.mark.parametrize(
    ("operation", "body"),
    [
        ("DescribeLogStreams", {"logGroupName": ""}),
        ("DescribeLogStreams", {"logGroupName": "/aws/batch/job", "limit": "5"}),
        ("GetLogEvents", {"logGroupName": "/aws/batch/job", "logStreamName": SURROGATE}),
        ("GetLogEvents", {"logGroupName": "/aws/batch/job", "logStreamName": "s", "startTime": "yesterday"}),
        ("GetLogEvents", {"logGroupName": "/aws/batch/job", "logStreamName": "s", "limit": 2**70}),
        ("GetLogEvents", {"logGroupName": "/aws/batch/job", "logStreamName": "s", "startFromHead": "yes"}),
    ],
)
def test_logs_bad_input_is_invalid_parameter(server: ServerProcess, operation: str, body: dict[str, Any]) -> None:
    response = _logs(server, operation, body)
    assert response.status_code == 400, response.text
    assert response.json()["__type"] == "InvalidParameterException", response.text


def test_logs_malformed_body_is_a_serialization_exception(server: ServerProcess) -> None:
    response = httpx.post(
        server.url + "/",
        content=b"[" * 10_000,
        headers={"x-amz-target": "Logs_20140328.GetLogEvents", "content-type": "application/x-amz-json-1.1"},
    )
    assert response.status_code == 400
    assert response.json()["__type"] == "SerializationException"


@pytest.mark.parametrize(
    "members",
    [
        {"instanceTypes": "m5.large"},
        {"subnets": 5},
        {"ec2Configuration": "AL2"},
        {"launchTemplate": ["lt"]},
        {"maxvCpus": "8"},
        {"maxvCpus": True},
        {"minvCpus": 1.5},
        {"maxvCpus": 2**40},
        {"tags": {"k": 1}},
    ],
)
def test_a_wrongly_typed_update_is_refused_and_nothing_is_stored(
    server: ServerProcess, batch: BatchClient, members: dict[str, Any]
) -> None:
    name = unique("ce")
    batch.create_compute_environment(
        computeEnvironmentName=name, type="MANAGED", computeResources=compute_resources("EC2", 4, minvCpus=0)
    )
    before = batch.describe_compute_environments(computeEnvironments=[name])["computeEnvironments"][0]
    response = _post(server, "UpdateComputeEnvironment", {"computeEnvironment": name, "computeResources": members})
    _assert_error(response, 400, "ClientException", "computeResources")
    after = batch.describe_compute_environments(computeEnvironments=[name])["computeEnvironments"][0]
    assert after == before


def test_an_update_cannot_store_what_create_refuses(batch: BatchClient) -> None:
    name = unique("ce")
    batch.create_compute_environment(
        computeEnvironmentName=name, type="MANAGED", computeResources=compute_resources("EC2", 4, minvCpus=0)
    )
    with client_exception("minvCpus", "maxvCpus"):
        batch.update_compute_environment(computeEnvironment=name, computeResources={"minvCpus": 8})
    with client_exception("type"):
        batch.update_compute_environment(
            computeEnvironment=name,
            computeResources={"type": "NOT_A_TYPE"},  # type: ignore[typeddict-item]
        )
    described = batch.describe_compute_environments(computeEnvironments=[name])["computeEnvironments"][0]
    assert described["computeResources"]["minvCpus"] == 0
    assert described["computeResources"]["type"] == "EC2"


@pytest.mark.slow
def test_describe_still_parses_after_bad_updates_and_a_restart(server: ServerProcess) -> None:
    batch = server.batch()
    name = unique("ce")
    batch.create_compute_environment(
        computeEnvironmentName=name, type="MANAGED", computeResources=compute_resources("EC2", 4, minvCpus=0)
    )
    for members in ({"ec2Configuration": "x"}, {"instanceTypes": {"a": 1}}, {"securityGroupIds": [1, 2]}):
        response = _post(server, "UpdateComputeEnvironment", {"computeEnvironment": name, "computeResources": members})
        assert response.status_code == 400
    server.restart()
    batch = server.batch()
    paginator = batch.get_paginator("describe_compute_environments")
    names = [ce["computeEnvironmentName"] for page in paginator.paginate() for ce in page["computeEnvironments"]]
    assert name in names


@pytest.mark.parametrize(
    ("requirement", "fragment"),
    [
        ({"type": "VCPU", "value": "1e9"}, "plain decimal"),
        ({"type": "VCPU", "value": "1_000"}, "plain decimal"),
        ({"type": "VCPU", "value": " 2"}, "plain decimal"),
        ({"type": "VCPU", "value": "193"}, "at most 192"),
        ({"type": "MEMORY", "value": "0x100"}, "not a number"),
        ({"type": "MEMORY", "value": "3"}, "at least 4"),
        ({"type": "MEMORY", "value": "99999999999"}, "at most"),
        ({"type": "GPU", "value": "1.5"}, "whole number"),
        ({"type": "GPU", "value": "1e3"}, "plain decimal"),
    ],
)
def test_resource_requirements_follow_aws_formats_and_limits(
    batch: BatchClient, queue: str, requirement: Any, fragment: str
) -> None:
    with client_exception(requirement["type"], fragment):
        batch.register_job_definition(
            jobDefinitionName=unique("jd"),
            type="container",
            containerProperties={"image": "busybox", "command": ["true"], "resourceRequirements": [requirement]},
        )
    definition = shell_definition(batch)
    with client_exception(requirement["type"], fragment):
        batch.submit_job(
            jobName="j",
            jobQueue=queue,
            jobDefinition=definition,
            containerOverrides={"resourceRequirements": [requirement]},
        )


def test_legacy_vcpus_and_memory_follow_the_same_limits(batch: BatchClient, queue: str) -> None:
    with client_exception("vcpus", "between 1 and 192"):
        batch.register_job_definition(
            jobDefinitionName=unique("jd"), type="container", containerProperties={"image": "busybox", "vcpus": 1000}
        )
    with client_exception("containerOverrides.vcpus"):
        batch.submit_job(
            jobName="j", jobQueue=queue, jobDefinition=shell_definition(batch), containerOverrides={"vcpus": 10**6}
        )
    job = batch.submit_job(
        jobName="j",
        jobQueue=queue,
        jobDefinition=shell_definition(batch),
        containerOverrides={"resourceRequirements": [{"type": "VCPU", "value": "0.5"}]},
    )
    assert job["jobId"]


@pytest.mark.parametrize(
    ("operation", "body", "member"),
    [
        ("CreateJobQueue", {"jobQueueName": "q", "priority": 10**30}, "priority"),
        ("DescribeComputeEnvironments", {"maxResults": 2**63}, "maxResults"),
        ("ListJobs", {"jobQueue": "default", "maxResults": -(2**64)}, "maxResults"),
        (
            "SubmitJob",
            {"jobName": "j", "jobQueue": "q", "jobDefinition": "d", "arrayProperties": {"size": 1e400}},
            "size",
        ),
        (
            "SubmitJob",
            {"jobName": "j", "jobQueue": "q", "jobDefinition": "d", "timeout": {"attemptDurationSeconds": True}},
            "attemptDurationSeconds",
        ),
        (
            "CreateSchedulingPolicy",
            {"name": "p", "fairsharePolicy": {"shareDistribution": [{"shareIdentifier": "a", "weightFactor": "NaN"}]}},
            "weightFactor",
        ),
    ],
)
def test_huge_and_mistyped_numbers_are_client_exceptions(
    server: ServerProcess, operation: str, body: dict[str, Any], member: str
) -> None:
    _assert_error(_post(server, operation, body), 400, "ClientException", member)


def test_non_finite_json_numbers_are_client_exceptions(server: ServerProcess) -> None:
    # Python's json reads these literals (and 1e999 as infinity); weightFactor is a float in the model.
    for literal in (b"NaN", b"Infinity", b"-Infinity", b"1e999"):
        share = b'{"shareIdentifier": "a", "weightFactor": %s}' % literal
        content = b'{"name": "p", "fairsharePolicy": {"shareDistribution": [%s]}}' % share
        response = httpx.post(f"{server.url}/v1/createschedulingpolicy", content=content)
        _assert_error(response, 400, "ClientException", "weightFactor")


@pytest.fixture
def small_limit_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    proc = ServerProcess(tmp_path_factory.mktemp("limits"), extra_args=("--max-request-bytes", "65536")).start()
    try:
        yield proc
    finally:
        proc.stop()


def test_request_size_limit_is_a_413_client_exception(small_limit_server: ServerProcess) -> None:
    url = f"{small_limit_server.url}/v1/describecomputeenvironments"
    big = b'{"computeEnvironments": ["' + b"a" * 70_000 + b'"]}'
    with httpx.Client(timeout=30) as client:
        _assert_error(client.post(url, content=big), 413, "ClientException", "65536 bytes")

        def chunks() -> Iterator[bytes]:
            # No Content-Length: the limit is enforced while the body streams in.
            yield b'{"computeEnvironments": ["'
            for _ in range(20):
                yield b"b" * 8192
            yield b'"]}'

        _assert_error(client.post(url, content=chunks()), 413, "ClientException", "larger")
        # The same connection serves the next request.
        fits = b'{"computeEnvironments": ["' + b"c" * 60_000 + b'"]}'
        response = client.post(url, content=fits)
        assert response.status_code == 200, response.text
    assert httpx.get(f"{small_limit_server.url}/health").status_code == 200


@pytest.mark.parametrize(
    "args",
    [
        ["server", "--data-dir", "/proc/no-such-dir/openbatch", "--port", "1"],
        ["server", "--port", "99999"],
    ],
)
def test_cli_errors_are_one_line_not_a_traceback(args: list[str]) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "openbatch.cli.main", *args], capture_output=True, text=True, timeout=60
    )
    assert result.returncode != 0
    assert "Traceback" not in result.stderr, result.stderr
    assert "error: " in result.stderr.lower() or "invalid value" in result.stderr.lower(), result.stderr
