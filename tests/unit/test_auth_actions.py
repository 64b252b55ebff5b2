"""Which action and resources each request is authorised as (AWS's Service Authorization Reference)."""

from __future__ import annotations

import json
from typing import Any

from openbatch.auth.actions import AccessRequest, Scope, requests_for
from openbatch.auth.errors import Protocol

SCOPE = Scope(region="eu-west-1", account="111122223333")
ARN = "arn:aws:batch:eu-west-1:111122223333"


def batch(path: str, body: dict[str, Any], method: str = "POST") -> list[AccessRequest]:
    return requests_for(
        Protocol.REST_JSON,
        method,
        path,
        {},
        [],
        json.dumps(body).encode(),
        SCOPE,
        "batch",
        lambda name: 4 if name == "nightly" else None,
    )


def test_submit_job_needs_queue_and_definition_revision() -> None:
    by_name = batch("/v1/submitjob", {"jobName": "j", "jobQueue": "q", "jobDefinition": "nightly"})
    assert by_name == [AccessRequest("batch:SubmitJob", (f"{ARN}:job-definition/nightly:4", f"{ARN}:job-queue/q"))]
    by_revision = batch("/v1/submitjob", {"jobName": "j", "jobQueue": f"{ARN}:job-queue/q", "jobDefinition": "d:2"})
    assert by_revision[0].resources == (f"{ARN}:job-definition/d:2", f"{ARN}:job-queue/q")


def test_batched_job_operations_are_authorised_per_job() -> None:
    requests = batch("/v1/terminatejobs", {"jobs": ["a", "b"], "reason": "r"})
    assert requests == [
        AccessRequest("batch:TerminateJob", (f"{ARN}:job/a",)),
        AccessRequest("batch:TerminateJob", (f"{ARN}:job/b",)),
    ]


def test_job_queue_names_its_compute_environments_and_policy() -> None:
    policy = f"{ARN}:scheduling-policy/fair"
    body = {
        "jobQueueName": "q",
        "priority": 1,
        "schedulingPolicyArn": policy,
        "computeEnvironmentOrder": [{"order": 1, "computeEnvironment": "ce1"}],
    }
    [request] = batch("/v1/createjobqueue", body)
    assert request.resources == (f"{ARN}:job-queue/q", f"{ARN}:compute-environment/ce1", policy)


def test_a_job_definition_with_a_role_needs_pass_role() -> None:
    role = "arn:aws:iam::111122223333:role/JobRole"
    body = {"jobDefinitionName": "d", "type": "container", "containerProperties": {"jobRoleArn": role}}
    assert batch("/v1/registerjobdefinition", body) == [
        AccessRequest("batch:RegisterJobDefinition", (f"{ARN}:job-definition/d",)),
        AccessRequest("iam:PassRole", (role,)),
    ]


def test_describe_and_list_act_on_everything_and_tags_on_the_resource() -> None:
    assert batch("/v1/describejobs", {"jobs": ["a"]}) == [AccessRequest("batch:DescribeJobs", ("*",))]
    tagged = f"{ARN}:job-queue/q"
    quoted = tagged.replace(":", "%3A").replace("/", "%2F")
    assert batch(f"/v1/tags/{quoted}", {}, method="DELETE") == [AccessRequest("batch:UntagResource", (tagged,))]


def test_logs_reads_act_on_log_streams() -> None:
    body = json.dumps({"logGroupName": "/aws/batch/job", "logStreamName": "d/default/1"}).encode()
    headers = {"x-amz-target": "Logs_20140328.GetLogEvents"}
    [request] = requests_for(Protocol.JSON, "POST", "/", headers, [], body, SCOPE, "logs", lambda _: None)
    assert request == AccessRequest(
        "logs:GetLogEvents", ("arn:aws:logs:eu-west-1:111122223333:log-group:/aws/batch/job:log-stream:d/default/1",)
    )


def test_query_protocol_and_native_routes() -> None:
    body = b"Action=Publish&TopicArn=arn%3Aaws%3Asns%3Aeu-west-1%3A1%3At&Message=x"
    headers = {"content-type": "application/x-www-form-urlencoded; charset=utf-8"}
    [sns] = requests_for(Protocol.QUERY, "POST", "/", headers, [], body, SCOPE, "sns", lambda _: None)
    assert sns == AccessRequest("sns:Publish", ("arn:aws:sns:eu-west-1:1:t",))
    [run] = requests_for(
        Protocol.REST_JSON, "POST", "/api/workflows/runs/r1/cancel", {}, [], b"", SCOPE, "x", lambda _: None
    )
    assert run.action == "openbatch:CancelWorkflowRun"
    [other] = requests_for(Protocol.REST_JSON, "PUT", "/anything", {}, [], b"", SCOPE, "x", lambda _: None)
    assert other.action == "openbatch:HttpPut"
