"""The CloudWatch Logs read API through a real server, with boto3, the AWS CLI and raw HTTP."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import boto3
import httpx
import pytest
from botocore.exceptions import ClientError

from openbatch.logs.store import TRUNCATION_MESSAGE, LogStore
from tests.support import CREDENTIALS, REGION, ServerProcess, make_queue, shell_definition, wait_for_status

if TYPE_CHECKING:
    from mypy_boto3_batch import BatchClient
    from mypy_boto3_logs import CloudWatchLogsClient

GROUP = "/aws/batch/job"
DONE = ["SUCCEEDED", "FAILED"]


@pytest.fixture(scope="module")
def job_stream(batch: BatchClient) -> str:
    queue = make_queue(batch)
    # One pipe: the order of lines across stdout and stderr is the executor's business, not this API's.
    script = "exec 2>&1; echo 'hello ERROR one'; echo 'warn two' >&2; echo 'ok three'; echo 'ERROR Exiting four'"
    job_id = batch.submit_job(jobName="logs", jobQueue=queue, jobDefinition=shell_definition(batch, script))["jobId"]
    job = wait_for_status(batch, job_id, DONE)
    assert job["status"] == "SUCCEEDED"
    return str(job["container"]["logStreamName"])


@pytest.fixture
def logs(server: ServerProcess, monkeypatch: pytest.MonkeyPatch) -> CloudWatchLogsClient:
    # No endpoint_url: the client must find the server through the variable boto3 documents.
    monkeypatch.setenv("AWS_ENDPOINT_URL_CLOUDWATCH_LOGS", server.url)
    monkeypatch.delenv("AWS_ENDPOINT_URL", raising=False)
    return boto3.client("logs", region_name=REGION, aws_access_key_id="test", aws_secret_access_key="test")


def _cli(server: ServerProcess, *args: str) -> Any:
    env = {k: v for k, v in os.environ.items() if k != "AWS_ENDPOINT_URL"}
    env.update(CREDENTIALS, AWS_ENDPOINT_URL_CLOUDWATCH_LOGS=server.url)
    aws = Path(sys.executable).with_name("aws")
    done = subprocess.run(
        [str(aws), "--output", "json", "logs", *args], env=env, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def _raw(server: ServerProcess, operation: str, body: Any) -> httpx.Response:
    return httpx.post(
        server.url + "/",
        content=json.dumps(body),
        headers={"X-Amz-Target": f"Logs_20140328.{operation}", "Content-Type": "application/x-amz-json-1.1"},
    )


def test_boto3_reads_job_output_through_the_documented_variable(logs: CloudWatchLogsClient, job_stream: str) -> None:
    head = logs.get_log_events(logGroupName=GROUP, logStreamName=job_stream, startFromHead=True)
    assert [e["message"] for e in head["events"]] == ["hello ERROR one", "warn two", "ok three", "ERROR Exiting four"]
    again = logs.get_log_events(logGroupName=GROUP, logStreamName=job_stream, nextToken=head["nextForwardToken"])
    assert again["events"] == [] and again["nextForwardToken"] == head["nextForwardToken"]
    tail = logs.get_log_events(logGroupName=GROUP, logStreamName=job_stream, limit=2)
    assert [e["message"] for e in tail["events"]] == ["ok three", "ERROR Exiting four"]
    back = logs.get_log_events(
        logGroupName=GROUP, logStreamName=job_stream, nextToken=tail["nextBackwardToken"], limit=10
    )
    assert [e["message"] for e in back["events"]] == ["hello ERROR one", "warn two"]
    found = logs.filter_log_events(
        logGroupName=GROUP, logStreamNames=[job_stream], filterPattern="ERROR -Exiting", interleaved=True
    )
    assert [(e["logStreamName"], e["message"]) for e in found["events"]] == [(job_stream, "hello ERROR one")]
    assert "nextToken" not in found


def test_aws_cli_get_and_filter_log_events(server: ServerProcess, job_stream: str) -> None:
    stream_args = ("--log-group-name", GROUP, "--log-stream-name", job_stream)
    got = _cli(server, "get-log-events", *stream_args, "--start-from-head")
    assert [e["message"] for e in got["events"]][:2] == ["hello ERROR one", "warn two"]
    found = _cli(
        server, "filter-log-events", "--log-group-name", GROUP, "--log-stream-names", job_stream,
        "--filter-pattern", '"ok three"',
    )  # fmt: skip
    assert [e["message"] for e in found["events"]] == ["ok three"]


def test_filter_pagination_and_stream_listing(server: ServerProcess, logs: CloudWatchLogsClient) -> None:
    # A writer in another process (as the per-host supervisor is): the server reads what it flushed.
    store = LogStore(server.data_dir / "logs")
    group = "/test/paging"
    now = int(time.time() * 1000)
    for i in range(5):
        with store.open_writer(group, f"s/{i}") as writer:
            writer.write_raw(now + i, [f"s{i} line {j}".encode() for j in range(30)])
    store.create_stream(group, "s/empty")

    events: list[str] = []
    kwargs: dict[str, Any] = {}
    for _ in range(50):
        page = logs.filter_log_events(logGroupName=group, logStreamNamePrefix="s/", limit=7, **kwargs)
        events += [e["message"] for e in page["events"]]
        if "nextToken" not in page:
            break
        kwargs = {"nextToken": page["nextToken"]}
    assert events == [f"s{i} line {j}" for i in range(5) for j in range(30)]
    paginated = [
        e["message"]
        for p in logs.get_paginator("filter_log_events").paginate(logGroupName=group, filterPattern="?line ?x")
        for e in p["events"]
    ]
    assert paginated == events

    names: list[str] = []
    kwargs = {}
    for _ in range(10):
        page2 = logs.describe_log_streams(logGroupName=group, limit=2, **kwargs)
        assert len(page2["logStreams"]) <= 2
        names += [s["logStreamName"] for s in page2["logStreams"]]
        if "nextToken" not in page2:
            break
        kwargs = {"nextToken": page2["nextToken"]}
    assert names == ["s/0", "s/1", "s/2", "s/3", "s/4", "s/empty"]
    latest = logs.describe_log_streams(logGroupName=group, orderBy="LastEventTime", descending=True, limit=1)
    assert latest["logStreams"][0]["logStreamName"] == "s/4"
    assert latest["logStreams"][0]["lastEventTimestamp"] == now + 4
    empty = logs.describe_log_streams(logGroupName=group, logStreamNamePrefix="s/e")["logStreams"][0]
    assert empty["logStreamName"] == "s/empty" and "firstEventTimestamp" not in empty
    assert logs.get_log_events(logGroupName=group, logStreamName="s/empty")["events"] == []

    with pytest.raises(ClientError) as info:
        logs.describe_log_streams(logGroupName=group, orderBy="LastEventTime", logStreamNamePrefix="s/")
    assert info.value.response["Error"]["Code"] == "InvalidParameterException"

    groups = logs.describe_log_groups(logGroupNamePrefix="/test/")["logGroups"]
    assert [g["logGroupName"] for g in groups] == [group]
    assert groups[0]["arn"].endswith(f":log-group:{group}:*")


def test_retention_policies(server: ServerProcess, logs: CloudWatchLogsClient) -> None:
    store = LogStore(server.data_dir / "logs")
    group = "/test/retention"
    old = int(time.time() * 1000) - 10 * 86_400_000
    with store.open_writer(group, "old") as writer:
        writer.write_raw(old, [b"ten days ago"])
    with pytest.raises(ClientError) as info:
        logs.put_retention_policy(logGroupName=group, retentionInDays=2)
    assert info.value.response["Error"]["Code"] == "InvalidParameterException"
    logs.put_retention_policy(logGroupName=group, retentionInDays=7)
    (described,) = logs.describe_log_groups(logGroupNamePrefix=group)["logGroups"]
    assert described["retentionInDays"] == 7
    assert logs.get_log_events(logGroupName=group, logStreamName="old", startFromHead=True)["events"] == []
    logs.delete_retention_policy(logGroupName=group)
    assert "retentionInDays" not in logs.describe_log_groups(logGroupNamePrefix=group)["logGroups"][0]
    with pytest.raises(ClientError) as missing:
        logs.put_retention_policy(logGroupName="/no/such/group", retentionInDays=1)
    assert missing.value.response["Error"]["Code"] == "ResourceNotFoundException"


def test_errors_have_aws_shapes(server: ServerProcess, logs: CloudWatchLogsClient, job_stream: str) -> None:
    for body in ({"logGroupName": ""}, {}):
        response = _raw(server, "DescribeLogStreams", body)
        assert response.status_code == 400, response.text
        assert response.json()["__type"] == "InvalidParameterException"
    cases: list[tuple[str, dict[str, Any], str]] = [
        ("GetLogEvents", {"logGroupName": GROUP, "logStreamName": "nope"}, "ResourceNotFoundException"),
        ("GetLogEvents", {"logGroupName": "/nope", "logStreamName": "x"}, "ResourceNotFoundException"),
        ("DescribeLogStreams", {"logGroupName": "/nope"}, "ResourceNotFoundException"),
        ("FilterLogEvents", {"logGroupName": "/nope"}, "ResourceNotFoundException"),
        (
            "GetLogEvents",
            {"logGroupName": GROUP, "logStreamName": job_stream, "nextToken": "f/999999999"},
            "InvalidParameterException",
        ),
        ("FilterLogEvents", {"logGroupName": GROUP, "filterPattern": '"open'}, "InvalidParameterException"),
        ("FilterLogEvents", {"logGroupName": GROUP, "nextToken": "zz"}, "InvalidParameterException"),
        (
            "FilterLogEvents",
            {"logGroupName": GROUP, "logStreamNames": ["a"], "logStreamNamePrefix": "a"},
            "InvalidParameterException",
        ),
        ("DescribeLogGroups", {"nextToken": "!!"}, "InvalidParameterException"),
        ("GetLogEvents", {"logGroupName": GROUP, "logStreamName": job_stream, "limit": 0}, "InvalidParameterException"),
    ]
    for operation, body, error in cases:
        response = _raw(server, operation, body)
        assert response.status_code == 400, (operation, body, response.text)
        assert response.json()["__type"] == error, (operation, body, response.text)
    arn = f"arn:aws:logs:{REGION}:123456789012:log-group:{GROUP}:*"
    by_arn = logs.get_log_events(logGroupIdentifier=arn, logStreamName=job_stream, startFromHead=True)
    assert by_arn["events"][0]["message"] == "hello ERROR one"


@pytest.mark.slow
def test_operator_log_cap_truncates_with_a_marker(tmp_path: Path) -> None:
    capped = ServerProcess(tmp_path / "capped", extra_args=["--max-log-bytes-per-job", "4096"]).start()
    try:
        batch = capped.batch()
        script = "i=0; while [ $i -lt 500 ]; do echo line $i; i=$((i+1)); done"
        job_id = batch.submit_job(jobName="chatty", jobQueue="default", jobDefinition=shell_definition(batch, script))[
            "jobId"
        ]
        job = wait_for_status(batch, job_id, DONE)
        events = capped.logs().get_log_events(
            logGroupName=GROUP, logStreamName=job["container"]["logStreamName"], startFromHead=True
        )["events"]
        messages = [e["message"] for e in events]
        assert messages[-1] == TRUNCATION_MESSAGE.format(limit=4096)
        assert messages[:-1] == [f"line {i}" for i in range(len(messages) - 1)]
        assert 300 < len(messages) < 500
    finally:
        capped.stop()


def test_a_silent_job_has_a_readable_empty_stream(batch: BatchClient, logs: CloudWatchLogsClient) -> None:
    queue = make_queue(batch)
    job_id = batch.submit_job(jobName="silent", jobQueue=queue, jobDefinition=shell_definition(batch, "true"))["jobId"]
    job = wait_for_status(batch, job_id, DONE)
    assert job["status"] == "SUCCEEDED"
    stream = job["container"]["logStreamName"]
    page = logs.get_log_events(logGroupName=GROUP, logStreamName=stream, startFromHead=True)
    assert page["events"] == []
    (listed,) = logs.describe_log_streams(logGroupName=GROUP, logStreamNamePrefix=stream)["logStreams"]
    assert listed["logStreamName"] == stream and "lastEventTimestamp" not in listed
