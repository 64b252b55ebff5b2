"""Job notifications as AWS users set them up: EventBridge rule → SNS topic → http/email subscription.

Everything goes through a real server with boto3's ``events`` and ``sns`` clients,
an HTTP receiver and an SMTP server (aiosmtpd) on loopback.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import threading
from collections.abc import Iterator
from email import message_from_bytes
from email.message import Message
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import TYPE_CHECKING, Any

import boto3
import httpx
import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, Envelope, Session
from botocore.exceptions import ClientError
from prometheus_client.parser import text_string_to_metric_families
from typer.testing import CliRunner

from openbatch.cli.background import free_port
from openbatch.cli.main import app
from openbatch.events.signing import verify
from tests.support import (
    CREDENTIALS,
    REGION,
    ServerProcess,
    make_queue,
    shell_definition,
    unique,
    wait_for,
    wait_for_status,
)

if TYPE_CHECKING:
    from mypy_boto3_batch import BatchClient
    from mypy_boto3_events import EventBridgeClient
    from mypy_boto3_sns import SNSClient

FAST_RETRIES = json.dumps(
    {"healthyRetryPolicy": {"minDelayTarget": 1, "maxDelayTarget": 1, "numRetries": 60, "backoffFunction": "linear"}}
)


class Receiver:
    """An HTTP endpoint on loopback that confirms SNS subscriptions and records every message."""

    def __init__(self) -> None:
        self.port = free_port()
        self.messages: list[dict[str, Any]] = []
        self.headers: list[dict[str, str]] = []
        self._server: ThreadingHTTPServer | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hook"

    def start(self) -> Receiver:
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                message = json.loads(body)
                receiver.headers.append({k.lower(): v for k, v in self.headers.items()})
                if message.get("Type") == "SubscriptionConfirmation":
                    # What a receiver does: visit SubscribeURL.
                    httpx.get(message["SubscribeURL"], timeout=10).raise_for_status()
                receiver.messages.append(message)
                self.send_response(200)
                self.end_headers()

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def of_type(self, kind: str) -> list[dict[str, Any]]:
        return [m for m in self.messages if m.get("Type") == kind]


def text_of(message: Message) -> str:
    payload = message.get_payload(decode=True)
    assert isinstance(payload, bytes)
    return payload.decode().replace("\r\n", "\n")


class Mailbox:
    def __init__(self) -> None:
        self.messages: list[Message] = []

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        assert isinstance(envelope.content, bytes)
        self.messages.append(message_from_bytes(envelope.content))
        return "250 Message accepted for delivery"

    def to(self, address: str) -> list[Message]:
        return [m for m in self.messages if m["To"] == address]


@pytest.fixture(scope="module")
def mailbox() -> Iterator[tuple[Mailbox, int]]:
    box = Mailbox()
    port = free_port()
    controller = Controller(box, hostname="127.0.0.1", port=port)
    controller.start()
    try:
        yield box, port
    finally:
        controller.stop()


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory, mailbox: tuple[Mailbox, int]) -> Iterator[ServerProcess]:
    proc = ServerProcess(
        tmp_path_factory.mktemp("events"),
        extra_args=(
            "--kill-grace-seconds",
            "2",
            "--smtp-url",
            f"smtp://127.0.0.1:{mailbox[1]}",
            "--log-level",
            "debug",
            "--log-format",
            "json",
        ),
        env={"OPENBATCH_GPUS": ""},
    ).start()
    try:
        yield proc
    finally:
        proc.stop()


def _kwargs(server: ServerProcess) -> dict[str, Any]:
    return {
        "region_name": REGION,
        "endpoint_url": server.url,
        "aws_access_key_id": "test",
        "aws_secret_access_key": "test",
    }


@pytest.fixture(scope="module")
def events(server: ServerProcess) -> EventBridgeClient:
    return boto3.client("events", **_kwargs(server))


@pytest.fixture(scope="module")
def sns(server: ServerProcess) -> SNSClient:
    return boto3.client("sns", **_kwargs(server))


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    r = Receiver().start()
    try:
        yield r
    finally:
        r.stop()


def failed_jobs_rule(events: EventBridgeClient, queue: str, target_arn: str) -> str:
    name = unique("rule")
    events.put_rule(
        Name=name,
        EventPattern=json.dumps(
            {
                "source": ["aws.batch"],
                "detail-type": ["Batch Job State Change"],
                "detail": {"status": ["FAILED"], "jobQueue": [{"suffix": f":job-queue/{queue}"}]},
            }
        ),
    )
    result = events.put_targets(Rule=name, Targets=[{"Id": "target", "Arn": target_arn}])
    assert result["FailedEntryCount"] == 0
    return name


def subscribe_http(sns: SNSClient, topic: str, receiver: Receiver) -> str:
    sns.subscribe(TopicArn=topic, Protocol="http", Endpoint=receiver.url, Attributes={"DeliveryPolicy": FAST_RETRIES})
    wait_for(lambda: receiver.of_type("SubscriptionConfirmation"))

    def confirmed() -> str | None:
        subs = sns.list_subscriptions_by_topic(TopicArn=topic)["Subscriptions"]
        return next((s["SubscriptionArn"] for s in subs if s["SubscriptionArn"] != "PendingConfirmation"), None)

    arn: str = wait_for(confirmed)
    return arn


def failed_job_ids(receiver: Receiver) -> list[str]:
    return [json.loads(m["Message"])["detail"]["jobId"] for m in receiver.of_type("Notification")]


def test_failed_job_reaches_an_http_subscriber_signed(
    server: ServerProcess, batch: BatchClient, events: EventBridgeClient, sns: SNSClient, receiver: Receiver
) -> None:
    queue = make_queue(batch)
    topic = sns.create_topic(Name=unique("alerts"))["TopicArn"]
    failed_jobs_rule(events, queue, topic)
    subscription = subscribe_http(sns, topic, receiver)
    confirmation = receiver.of_type("SubscriptionConfirmation")[0]
    certificate = httpx.get(confirmation["SigningCertURL"]).content
    assert verify(confirmation, certificate)

    ok = batch.submit_job(jobName="fine", jobQueue=queue, jobDefinition=shell_definition(batch, "true"))["jobId"]
    wait_for_status(batch, ok, ["SUCCEEDED"])
    bad = batch.submit_job(jobName="broken", jobQueue=queue, jobDefinition=shell_definition(batch, "exit 3"))
    wait_for_status(batch, bad["jobId"], ["FAILED"])
    wait_for(lambda: receiver.of_type("Notification"))

    [notification] = receiver.of_type("Notification")
    assert notification["TopicArn"] == topic
    assert notification["SignatureVersion"] == "2"
    assert verify(notification, certificate)
    assert not verify({**notification, "Message": notification["Message"] + " "}, certificate)
    assert receiver.headers[-1]["x-amz-sns-subscription-arn"] == subscription
    assert receiver.headers[-1]["x-amz-sns-message-type"] == "Notification"
    event = json.loads(notification["Message"])
    assert event["source"] == "aws.batch"
    assert event["detail-type"] == "Batch Job State Change"
    assert event["resources"] == [bad["jobArn"]]
    assert event["detail"]["jobId"] == bad["jobId"]
    assert event["detail"]["status"] == "FAILED"
    assert event["detail"]["container"]["exitCode"] == 3
    assert event["region"] == REGION and event["account"] == "123456789012"
    # The receiver can unsubscribe through the UnsubscribeURL.
    httpx.get(notification["UnsubscribeURL"]).raise_for_status()
    assert sns.list_subscriptions_by_topic(TopicArn=topic)["Subscriptions"] == []


@pytest.mark.slow
def test_receiver_down_and_server_crash_lose_nothing(
    server: ServerProcess, batch: BatchClient, events: EventBridgeClient, sns: SNSClient, receiver: Receiver
) -> None:
    queue = make_queue(batch)
    topic = sns.create_topic(Name=unique("alerts"))["TopicArn"]
    failed_jobs_rule(events, queue, topic)
    subscription = subscribe_http(sns, topic, receiver)
    receiver.stop()
    definition = shell_definition(batch, "exit 1")
    first = [batch.submit_job(jobName=f"a{i}", jobQueue=queue, jobDefinition=definition)["jobId"] for i in range(2)]
    for job_id in first:
        wait_for_status(batch, job_id, ["FAILED"])

    def failed_attempts() -> bool:
        attributes = sns.get_subscription_attributes(SubscriptionArn=subscription)["Attributes"]
        deliveries = httpx.get(f"{server.url}/openbatch/deliveries", params={"destination": subscription}).json()
        return attributes["DeliveriesPending"] != "0" and any(d["attempts"] > 0 for d in deliveries["deliveries"])

    wait_for(failed_attempts)
    server.crash()
    server.start()
    later = batch.submit_job(jobName="b", jobQueue=queue, jobDefinition=definition)["jobId"]
    wait_for_status(batch, later, ["FAILED"])
    receiver.start()
    wait_for(lambda: set(failed_job_ids(receiver)) >= {*first, later}, timeout=30)
    # Each job's FAILED event exactly once here (no crash fell between routing and its commit).
    assert sorted(failed_job_ids(receiver)) == sorted([*first, later])
    attributes = sns.get_subscription_attributes(SubscriptionArn=subscription)["Attributes"]
    assert attributes["DeliveriesFailed"] == "0"


def test_email_subscription_through_smtp(
    server: ServerProcess,
    batch: BatchClient,
    events: EventBridgeClient,
    sns: SNSClient,
    mailbox: tuple[Mailbox, int],
) -> None:
    box, _ = mailbox
    address = f"{unique('ops')}@example.com"
    queue = make_queue(batch)
    topic = sns.create_topic(Name=unique("mail"))["TopicArn"]
    failed_jobs_rule(events, queue, topic)
    assert sns.subscribe(TopicArn=topic, Protocol="email", Endpoint=address)["SubscriptionArn"] == (
        "pending confirmation"
    )
    [confirmation] = wait_for(lambda: box.to(address))
    assert confirmation["Subject"] == "AWS Notification - Subscription Confirmation"
    link = re.search(r"http://\S+", text_of(confirmation))
    assert link is not None
    assert "ConfirmSubscriptionResponse" in httpx.get(link.group(0)).text

    job = batch.submit_job(jobName="mailme", jobQueue=queue, jobDefinition=shell_definition(batch, "exit 2"))
    wait_for_status(batch, job["jobId"], ["FAILED"])
    wait_for(lambda: len(box.to(address)) == 2)
    notification = box.to(address)[1]
    assert notification["Subject"] == "AWS Notification Message"
    body = text_of(notification)
    assert json.loads(body.split("\n\n--\n")[0])["detail"]["jobId"] == job["jobId"]


def _openbatch(server: ServerProcess, *args: str) -> subprocess.CompletedProcess[str]:
    """``openbatch notify …`` in this process (the command's own code, without a 2 s interpreter start)."""
    result = CliRunner().invoke(app, ["notify", *args, "--endpoint-url", server.url])
    return subprocess.CompletedProcess(args, result.exit_code, result.stdout, result.stderr)


@pytest.mark.slow
def test_notify_add_ls_rm(
    server: ServerProcess, batch: BatchClient, receiver: Receiver, mailbox: tuple[Mailbox, int]
) -> None:
    queue = make_queue(batch)
    # The installed command, as a user runs it.
    added = subprocess.run(
        [
            *(sys.executable, "-m", "openbatch.cli.main", "notify", "add", "--on", "FAILED", "--queue", queue),
            *("--job-name-prefix", "nightly-", "--webhook", receiver.url),
        ],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "OPENBATCH_ENDPOINT_URL": server.url},
    )
    assert added.returncode == 0, added.stderr
    name = added.stdout.split(":")[0]
    definition = shell_definition(batch, "exit 4")
    other = batch.submit_job(jobName="adhoc", jobQueue=queue, jobDefinition=definition)["jobId"]
    wait_for_status(batch, other, ["FAILED"])
    job = batch.submit_job(jobName="nightly-etl", jobQueue=queue, jobDefinition=definition)["jobId"]
    wait_for_status(batch, job, ["FAILED"])
    wait_for(lambda: receiver.messages)
    # The webhook gets the EventBridge event itself; the job outside the prefix is not reported.
    assert [m["detail"]["jobId"] for m in receiver.messages] == [job]
    assert receiver.messages[0]["detail-type"] == "Batch Job State Change"

    listed = _openbatch(server, "ls")
    assert listed.returncode == 0 and name in listed.stdout and receiver.url in listed.stdout
    assert _openbatch(server, "rm", name).returncode == 0
    assert name not in _openbatch(server, "ls").stdout
    missing = _openbatch(server, "rm", name)
    assert missing.returncode == 1 and missing.stderr.count("\n") == 1 and "no notification" in missing.stderr

    team = f"{unique('team')}@example.com"
    email = _openbatch(server, "add", "--on", "FAILED", "--queue", queue, "--email", team)
    assert email.returncode == 0 and "Confirm the subscription" in email.stdout
    assert f"email {team} (pending confirmation)" in _openbatch(server, "ls").stdout
    [confirmation] = wait_for(lambda: mailbox[0].to(team))
    link = re.search(r"http://\S+", text_of(confirmation))
    assert link is not None
    httpx.get(link.group(0)).raise_for_status()
    assert f"email {team}" in _openbatch(server, "ls").stdout
    failed = batch.submit_job(jobName="mailed", jobQueue=queue, jobDefinition=definition)["jobId"]
    wait_for_status(batch, failed, ["FAILED"])
    notice = wait_for(lambda: mailbox[0].to(team)[1:])[0]
    # The rule's input transformer turns the event into a sentence.
    assert text_of(notice).startswith(f"Job mailed ({failed}) is FAILED in queue arn:aws:batch:")


def test_notify_errors_are_one_line(server: ServerProcess) -> None:
    for args in (
        ("add", "--on", "EXPLODED", "--webhook", "http://127.0.0.1:9/x"),
        ("add", "--on", "FAILED"),
        ("add", "--on", "FAILED", "--webhook", "ftp://x"),
    ):
        result = _openbatch(server, *args)
        assert result.returncode == 1 and result.stderr.startswith("error:"), result.stderr
        assert "Traceback" not in result.stderr
    down = CliRunner().invoke(app, ["notify", "ls", "--endpoint-url", f"http://127.0.0.1:{free_port()}"])
    assert down.exit_code == 1 and "cannot reach" in down.stderr and "Traceback" not in down.stderr


def test_api_errors_and_custom_events(
    server: ServerProcess, events: EventBridgeClient, sns: SNSClient, receiver: Receiver
) -> None:
    with pytest.raises(events.exceptions.InvalidEventPatternException):
        events.put_rule(Name=unique("r"), EventPattern='{"source": "aws.batch"}')
    with pytest.raises(events.exceptions.ResourceNotFoundException):
        events.describe_rule(Name="no-such-rule")
    with pytest.raises(sns.exceptions.NotFoundException):
        sns.get_topic_attributes(TopicArn="arn:aws:sns:us-east-1:123456789012:none")
    with pytest.raises(sns.exceptions.InvalidParameterException):
        sns.create_topic(Name="bad name!")
    refused = events.put_events(
        Entries=[
            {"Source": "x", "DetailType": "y", "Detail": "{}", "EventBusName": "other"},
            {"Source": "x", "DetailType": "y", "Detail": "[1]"},
        ]
    )
    assert refused["FailedEntryCount"] == 2
    assert [e["ErrorCode"] for e in refused["Entries"]] == ["InvalidArgument", "MalformedDetail"]

    name = unique("custom")
    events.put_rule(
        Name=name, EventPattern=json.dumps({"source": ["my.app"], "detail": {"n": [{"numeric": [">", 5]}]}})
    )
    events.put_targets(Rule=name, Targets=[{"Id": "hook", "Arn": receiver.url}])
    with pytest.raises(ClientError) as info:
        events.delete_rule(Name=name)
    assert info.value.response["Error"]["Code"] == "ValidationException"
    result = events.put_events(
        Entries=[
            {"Source": "my.app", "DetailType": "t", "Detail": json.dumps({"n": 1})},
            {"Source": "my.app", "DetailType": "t", "Detail": json.dumps({"n": 9})},
            {"Source": "aws.batch", "DetailType": "t", "Detail": "{}"},
        ]
    )
    assert result["FailedEntryCount"] == 1
    assert result["Entries"][2]["ErrorCode"] == "NotAuthorizedForSourceException"
    wait_for(lambda: receiver.messages)
    assert [m["detail"]["n"] for m in receiver.messages] == [9]
    assert events.test_event_pattern(
        EventPattern='{"detail": {"n": [9]}}',
        Event=json.dumps({**receiver.messages[0]}),
    )["Result"]
    assert [r["Name"] for r in events.list_rules(NamePrefix=name)["Rules"]] == [name]
    events.disable_rule(Name=name)
    assert events.describe_rule(Name=name)["State"] == "DISABLED"
    events.remove_targets(Rule=name, Ids=["hook"])
    events.delete_rule(Name=name)
    assert events.list_rules(NamePrefix=name)["Rules"] == []


def test_metrics_count_what_ran_and_logs_are_structured(server: ServerProcess, batch: BatchClient) -> None:
    queue = make_queue(batch, max_vcpus=7)
    good, bad = shell_definition(batch, "true"), shell_definition(batch, "exit 1")
    ids = [batch.submit_job(jobName=f"ok{i}", jobQueue=queue, jobDefinition=good)["jobId"] for i in range(2)]
    ids.append(batch.submit_job(jobName="ko", jobQueue=queue, jobDefinition=bad)["jobId"])
    for job_id in ids:
        wait_for_status(batch, job_id, ["SUCCEEDED", "FAILED"])

    families = {f.name: f for f in text_string_to_metric_families(httpx.get(f"{server.url}/metrics").text)}

    def value(family: str, sample: str | None = None, **labels: str) -> float:
        for s in families[family].samples:
            if (sample is None or s.name == sample) and all(s.labels.get(k) == v for k, v in labels.items()):
                return float(s.value)
        raise AssertionError(f"no sample {family} {labels}")

    assert value("openbatch_jobs_submitted", "openbatch_jobs_submitted_total", queue=queue) == 3
    assert value("openbatch_jobs_completed", "openbatch_jobs_completed_total", queue=queue, outcome="SUCCEEDED") == 2
    assert value("openbatch_jobs_completed", "openbatch_jobs_completed_total", queue=queue, outcome="FAILED") == 1
    assert value("openbatch_jobs", queue=queue, state="SUCCEEDED") == 2
    assert value("openbatch_jobs", queue=queue, state="FAILED") == 1
    assert value("openbatch_job_wait_seconds", "openbatch_job_wait_seconds_count", queue=queue) == 3
    assert value("openbatch_job_run_seconds", "openbatch_job_run_seconds_count", queue=queue) == 3
    ce = batch.describe_job_queues(jobQueues=[queue])["jobQueues"][0]["computeEnvironmentOrder"][0]
    ce_name = ce["computeEnvironment"].rsplit("/", 1)[-1]
    assert value("openbatch_compute_environment_vcpus_capacity", ce=ce_name) == 7
    assert value("openbatch_compute_environment_vcpus_in_use", ce=ce_name) == 0
    sleeper = shell_definition(
        batch,
        "sleep 60",
        container={"resourceRequirements": [{"type": "VCPU", "value": "2"}, {"type": "MEMORY", "value": "96"}]},
    )
    running = batch.submit_job(jobName="sleeper", jobQueue=queue, jobDefinition=sleeper)["jobId"]
    wait_for_status(batch, running, ["RUNNING"])
    families = {f.name: f for f in text_string_to_metric_families(httpx.get(f"{server.url}/metrics").text)}
    assert value("openbatch_compute_environment_vcpus_in_use", ce=ce_name) == 2
    assert value("openbatch_compute_environment_memory_mib_in_use", ce=ce_name) == 96
    assert value("openbatch_jobs", queue=queue, state="RUNNING") == 1
    batch.terminate_job(jobId=running, reason="done measuring")
    wait_for_status(batch, running, ["FAILED"])
    assert "openbatch_event_delivery_backlog" in families

    lines = [json.loads(line) for line in Path(server.log_path).read_text().splitlines() if line.startswith("{")]
    calls = [line for line in lines if line["message"] == "api call"]
    assert any(c["operation"] == "SubmitJob" and c["status"] == 200 and c["duration_ms"] >= 0 for c in calls)
    changes = [line for line in lines if line["message"] == "job state change" and line["job_id"] == ids[2]]
    assert [c["new_status"] for c in changes][0] == "SUBMITTED"
    assert changes[-1]["new_status"] == "FAILED" and changes[-1]["level"] == "info"


@pytest.mark.slow
def test_each_jobs_events_arrive_in_order(
    server: ServerProcess, batch: BatchClient, events: EventBridgeClient, receiver: Receiver
) -> None:
    queue = make_queue(batch)
    name = unique("all")
    pattern = {"source": ["aws.batch"], "detail": {"jobQueue": [{"suffix": f":job-queue/{queue}"}]}}
    events.put_rule(Name=name, EventPattern=json.dumps(pattern))
    events.put_targets(Rule=name, Targets=[{"Id": "hook", "Arn": receiver.url}])
    definition = shell_definition(batch, "exit 1", retryStrategy={"attempts": 2})
    ids = [batch.submit_job(jobName=f"j{i}", jobQueue=queue, jobDefinition=definition)["jobId"] for i in range(3)]
    for job_id in ids:
        wait_for_status(batch, job_id, ["FAILED"])

    def statuses(job_id: str) -> list[str]:
        return [m["detail"]["status"] for m in receiver.messages if m["detail"]["jobId"] == job_id]

    wait_for(lambda: all(statuses(job_id)[-1:] == ["FAILED"] for job_id in ids))
    for job_id in ids:
        # Two attempts: RUNNING goes back to RUNNABLE once; every change once, in the order it happened.
        assert statuses(job_id) == [
            "SUBMITTED",
            "RUNNABLE",
            "STARTING",
            "RUNNING",
            "RUNNABLE",
            "STARTING",
            "RUNNING",
            "FAILED",
        ], statuses(job_id)


def test_dead_deliveries_are_visible(
    server: ServerProcess, events: EventBridgeClient, sns: SNSClient, receiver: Receiver
) -> None:
    topic = sns.create_topic(Name=unique("dead"))["TopicArn"]
    subscription = subscribe_http(sns, topic, receiver)
    sns.set_subscription_attributes(
        SubscriptionArn=subscription,
        AttributeName="DeliveryPolicy",
        AttributeValue=json.dumps({"healthyRetryPolicy": {"minDelayTarget": 0, "maxDelayTarget": 0, "numRetries": 1}}),
    )
    receiver.stop()
    sns.publish(TopicArn=topic, Message="nobody listens", Subject="lost")
    name = unique("deadhook")
    events.put_rule(Name=name, EventPattern=json.dumps({"source": [name]}))
    dead_url = f"http://127.0.0.1:{free_port()}/gone"
    events.put_targets(Rule=name, Targets=[{"Id": "hook", "Arn": dead_url, "RetryPolicy": {"MaximumRetryAttempts": 0}}])
    events.put_events(Entries=[{"Source": name, "DetailType": "t", "Detail": "{}"}])

    def dead() -> list[dict[str, Any]]:
        found: list[dict[str, Any]] = httpx.get(f"{server.url}/openbatch/deliveries", params={"state": "DEAD"}).json()[
            "deliveries"
        ]
        return (
            found
            if {subscription, f"arn:aws:events:us-east-1:123456789012:rule/{name}#hook"}
            <= {d["destination"] for d in found}
            else []
        )

    deliveries = {d["destination"]: d for d in wait_for(dead)}
    assert deliveries[subscription]["attempts"] == 2 and "ConnectError" in deliveries[subscription]["lastError"]
    attributes = sns.get_subscription_attributes(SubscriptionArn=subscription)["Attributes"]
    assert attributes["DeliveriesFailed"] == "1" and attributes["DeliveriesPending"] == "0"
    metrics = {f.name: f for f in text_string_to_metric_families(httpx.get(f"{server.url}/metrics").text)}
    assert metrics["openbatch_event_deliveries_dead"].samples[0].value >= 2
    failures = {s.labels["protocol"]: s.value for s in metrics["openbatch_event_delivery_failures"].samples}
    assert failures["http"] >= 2 and failures["webhook"] >= 1


def test_clients_find_the_server_through_their_endpoint_variables(
    server: ServerProcess, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in ("AWS_ENDPOINT_URL_SNS", "AWS_ENDPOINT_URL_EVENTBRIDGE"):
        monkeypatch.setenv(name, server.url)
    topic = unique("cli")
    aws = str(Path(sys.executable).with_name("aws"))
    created = subprocess.run(
        [aws, "sns", "create-topic", "--name", topic, "--output", "json"],
        env={**os.environ, **CREDENTIALS},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert created.returncode == 0, created.stderr
    arn = json.loads(created.stdout)["TopicArn"]
    # boto3 reads the same variables (no endpoint_url given).
    sns = boto3.client("sns", region_name=REGION, aws_access_key_id="t", aws_secret_access_key="t")
    events = boto3.client("events", region_name=REGION, aws_access_key_id="t", aws_secret_access_key="t")
    assert arn in [t["TopicArn"] for t in sns.list_topics()["Topics"]]
    assert events.list_rules(NamePrefix=topic)["Rules"] == []


def test_workflow_run_state_changes_are_events(
    server: ServerProcess, events: EventBridgeClient, receiver: Receiver
) -> None:
    name = unique("wf")
    workflow = unique("events-wf")
    pattern = {"source": ["openbatch.workflows"], "detail": {"workflowName": [workflow]}}
    events.put_rule(Name=name, EventPattern=json.dumps(pattern))
    events.put_targets(Rule=name, Targets=[{"Id": "hook", "Arn": receiver.url}])
    document = f"""
name: {workflow}
defaults: {{queue: default, vcpus: 1, memory: 64}}
steps:
  ok: {{command: [sh, -c, "true"]}}
  broken: {{command: [sh, -c, "exit 4"], dependsOn: [ok]}}
"""
    with httpx.Client(base_url=server.url, timeout=30) as client:
        response = client.post("/api/workflows/runs", json={"definition": document, "parameters": {}})
    assert response.status_code == 200, response.text
    run_id = response.json()["runId"]

    def statuses() -> list[str]:
        return [m["detail"]["status"] for m in receiver.messages if m["detail"].get("runId") == run_id]

    wait_for(lambda: statuses()[-1:] == ["FAILED"], timeout=60)
    # Each change once, in order; the event carries the run with its steps, as the native API shows it.
    assert statuses() == ["RUNNING", "FAILED"]
    last = receiver.messages[-1]
    assert last["detail-type"] == "Workflow Run State Change"
    assert last["resources"] == [f"arn:aws:openbatch:us-east-1:123456789012:workflow-run/{run_id}"]
    assert last["detail"]["steps"]["broken"]["status"] == "FAILED"
