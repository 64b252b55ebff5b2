"""Which IAM action, on which resources, each request asks for.

Batch operations map to their actions and resource types as AWS's Service
Authorization Reference lists them (SubmitJob needs the job queue *and* the job
definition; Describe*/List* act on ``*``). A job definition naming a role
(``jobRoleArn``/``executionRoleArn``) also needs ``iam:PassRole`` on it, as on
AWS: without that check any user allowed to register definitions could borrow
any role's credentials. CloudWatch Logs reads act on log stream ARNs. Other
JSON and query protocols map to ``<service>:<Operation>`` on ``*``; routes that
are not AWS APIs (OpenBatch's own: workflows, deliveries, metrics) to
``openbatch:<Operation>`` on ``*`` (``openbatch:Http<Method>`` where unnamed).
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import Any
from urllib.parse import parse_qsl, unquote

from openbatch.auth.errors import Protocol


@dataclass(frozen=True, slots=True)
class AccessRequest:
    action: str
    resources: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class Scope:
    """Where ARNs live: the request's region (from its SigV4 scope) and the server's account."""

    region: str
    account: str
    partition: str = "aws"

    def batch(self, kind: str, name: str) -> str:
        if name.startswith("arn:"):
            return name
        return f"arn:{self.partition}:batch:{self.region}:{self.account}:{kind}/{name}"

    def logs(self, rest: str) -> str:
        return f"arn:{self.partition}:logs:{self.region}:{self.account}:{rest}"


LatestRevision = Callable[[str], int | None]
"""The latest ACTIVE revision of a job definition name (SubmitJob by name is authorised on ``name:revision``)."""

_SERVICE_OF_TARGET = {"Logs_20140328": "logs", "AWSEvents": "events", "GraniteServiceVersion20100801": "cloudwatch"}
_SERVICE_OF_SIGNING_NAME = {"monitoring": "cloudwatch"}
_ALL = ("*",)


@lru_cache(maxsize=1)
def batch_operations() -> dict[str, str]:
    """Lower-cased request path → operation name, from botocore's own Batch model."""
    import botocore.session

    model = botocore.session.get_session().get_service_model("batch")
    operations = {}
    for name in model.operation_names:
        uri = model.operation_model(name).http.get("requestUri", "")
        operations[uri.split("?", 1)[0].lower()] = name
    return operations


def requests_for(
    protocol: Protocol,
    method: str,
    path: str,
    headers: Mapping[str, str],
    query: Sequence[tuple[str, str]],
    body: bytes,
    scope: Scope,
    signing_service: str,
    latest_revision: LatestRevision,
) -> list[AccessRequest]:
    marker = path.find("/v1/")
    if marker >= 0:
        return _batch(method, path[marker:], _json(body), scope, latest_revision)
    target = headers.get("x-amz-target")
    if target:
        prefix, _, operation = target.partition(".")
        service = _SERVICE_OF_TARGET.get(prefix) or _SERVICE_OF_SIGNING_NAME.get(signing_service, signing_service)
        if service == "logs":
            return [_logs(operation, _json(body), scope)]
        return [AccessRequest(f"{service}:{operation}", _ALL)]
    if protocol is Protocol.QUERY or any(k == "Action" for k, _ in query):
        params = dict(query)
        if headers.get("content-type", "").startswith("application/x-www-form-urlencoded"):
            params.update(parse_qsl(body.decode("utf-8", "replace"), keep_blank_values=True))
        service = _SERVICE_OF_SIGNING_NAME.get(signing_service, signing_service)
        topic = params.get("TopicArn")
        return [AccessRequest(f"{service}:{params.get('Action', '')}", (topic,) if topic else _ALL)]
    return [AccessRequest(f"openbatch:{native_operation(method, path)}", _ALL)]


_NATIVE: list[tuple[str, re.Pattern[str], str]] = [
    (method, re.compile(pattern), operation)
    for method, pattern, operation in (
        ("POST", r"/api/workflows/validate", "ValidateWorkflow"),
        ("POST", r"/api/workflows/definitions", "RegisterWorkflow"),
        ("GET", r"/api/workflows/definitions", "ListWorkflows"),
        ("GET", r"/api/workflows/definitions/[^/]+", "DescribeWorkflow"),
        ("DELETE", r"/api/workflows/definitions/[^/]+", "DeleteWorkflow"),
        ("POST", r"/api/workflows/runs", "StartWorkflowRun"),
        ("GET", r"/api/workflows/runs", "ListWorkflowRuns"),
        ("GET", r"/api/workflows/runs/[^/]+", "DescribeWorkflowRun"),
        ("POST", r"/api/workflows/runs/[^/]+/cancel", "CancelWorkflowRun"),
        ("POST", r"/api/workflows/runs/[^/]+/redrive", "RedriveWorkflowRun"),
        ("POST", r"/api/workflows/schedules", "CreateSchedule"),
        ("GET", r"/api/workflows/schedules", "ListSchedules"),
        ("POST", r"/api/workflows/schedules/[^/]+/pause", "PauseSchedule"),
        ("POST", r"/api/workflows/schedules/[^/]+/resume", "ResumeSchedule"),
        ("GET", r"/api/workflows/schedules/[^/]+", "DescribeSchedule"),
        ("PUT", r"/api/workflows/schedules/[^/]+", "UpdateSchedule"),
        ("DELETE", r"/api/workflows/schedules/[^/]+", "DeleteSchedule"),
        ("GET", r"/api/openapi\.json", "GetOpenApi"),
        ("GET", r"/openbatch/deliveries", "ListDeliveries"),
        ("GET", r"/metrics", "GetMetrics"),
        ("GET", r"/api/jobs/events", "StreamJobEvents"),
    )
]


def native_operation(method: str, path: str) -> str:
    """OpenBatch's own routes: named operations where known, ``Http<Method>`` for anything else."""
    for route_method, pattern, operation in _NATIVE:
        if route_method == method and pattern.fullmatch(path):
            return operation
    return f"Http{method.capitalize()}"


def _json(body: bytes) -> dict[str, Any]:
    try:
        value = json.loads(body) if body.strip() else {}
    except (ValueError, RecursionError):
        return {}
    return value if isinstance(value, dict) else {}


def _str(value: Any) -> str | None:
    return value if isinstance(value, str) and value else None


def _strs(value: Any) -> list[str]:
    return [v for v in value if isinstance(v, str) and v] if isinstance(value, list) else []


def _batch(method: str, route: str, body: dict[str, Any], scope: Scope, latest: LatestRevision) -> list[AccessRequest]:
    if route.startswith("/v1/tags/"):
        arn = unquote(route[len("/v1/tags/") :])
        action = {"GET": "ListTagsForResource", "POST": "TagResource", "DELETE": "UntagResource"}.get(method)
        return [AccessRequest(f"batch:{action or 'TagResource'}", (arn,))]
    name = batch_operations().get(route.lower()) or route[len("/v1/") :]
    resources = _batch_resources(name, body, scope, latest)
    if name in ("CancelJobs", "TerminateJobs"):
        # The batched forms are authorised as their single-job actions, once per job.
        single = name[:-1]
        return [AccessRequest(f"batch:{single}", (scope.batch("job", job),)) for job in _strs(body.get("jobs"))] or [
            AccessRequest(f"batch:{single}", _ALL)
        ]
    requests = [AccessRequest(f"batch:{name}", resources)]
    if name == "RegisterJobDefinition":
        requests.extend(AccessRequest("iam:PassRole", (role,)) for role in _passed_roles(body))
    return requests


def _batch_resources(name: str, body: dict[str, Any], scope: Scope, latest: LatestRevision) -> tuple[str, ...]:
    if name == "SubmitJob":
        return (_definition_arn(_str(body.get("jobDefinition")) or "", scope, latest), _queue(body, scope))
    if name in ("CancelJob", "TerminateJob"):
        return (scope.batch("job", _str(body.get("jobId")) or ""),)
    if name in ("CreateComputeEnvironment", "UpdateComputeEnvironment", "DeleteComputeEnvironment"):
        ce = _str(body.get("computeEnvironmentName")) or _str(body.get("computeEnvironment")) or ""
        return (scope.batch("compute-environment", ce),)
    if name in ("CreateJobQueue", "UpdateJobQueue"):
        resources = [_queue(body, scope)]
        order = body.get("computeEnvironmentOrder")
        entries = [e for e in order if isinstance(e, dict)] if isinstance(order, list) else []
        names = [_str(e.get("computeEnvironment")) for e in entries]
        resources.extend(scope.batch("compute-environment", name) for name in names if name)
        if _str(body.get("schedulingPolicyArn")):
            resources.append(body["schedulingPolicyArn"])
        return tuple(resources)
    if name in ("DeleteJobQueue", "GetJobQueueSnapshot"):
        return (_queue(body, scope),)
    if name in ("CreateSchedulingPolicy", "UpdateSchedulingPolicy", "DeleteSchedulingPolicy"):
        return (scope.batch("scheduling-policy", _str(body.get("name")) or _str(body.get("arn")) or ""),)
    if name == "RegisterJobDefinition":
        return (scope.batch("job-definition", _str(body.get("jobDefinitionName")) or ""),)
    if name == "DeregisterJobDefinition":
        return (_definition_arn(_str(body.get("jobDefinition")) or "", scope, latest),)
    return _ALL


def _queue(body: dict[str, Any], scope: Scope) -> str:
    return scope.batch("job-queue", _str(body.get("jobQueue")) or _str(body.get("jobQueueName")) or "")


def _definition_arn(reference: str, scope: Scope, latest: LatestRevision) -> str:
    if reference.startswith("arn:") or ":" in reference:
        return scope.batch("job-definition", reference)
    revision = latest(reference) if reference else None
    # A name with no ACTIVE revision cannot be submitted anyway; the service reports that.
    return scope.batch("job-definition", f"{reference}:{revision}" if revision is not None else reference)


def _passed_roles(body: dict[str, Any]) -> list[str]:
    containers = [body.get("containerProperties")]
    nodes = body.get("nodeProperties")
    if isinstance(nodes, dict) and isinstance(nodes.get("nodeRangeProperties"), list):
        containers.extend(group.get("container") for group in nodes["nodeRangeProperties"] if isinstance(group, dict))
    roles: list[str] = []
    for container in containers:
        if isinstance(container, dict):
            roles.extend(r for r in (_str(container.get("jobRoleArn")), _str(container.get("executionRoleArn"))) if r)
    return roles


def _logs(operation: str, body: dict[str, Any], scope: Scope) -> AccessRequest:
    group = _str(body.get("logGroupName"))
    identifier = _str(body.get("logGroupIdentifier"))
    group_arn = identifier.removesuffix(":*") if identifier and identifier.startswith("arn:") else None
    if group_arn is None and (group or identifier):
        group_arn = scope.logs(f"log-group:{group or identifier}")
    if group_arn is None:
        return AccessRequest(f"logs:{operation}", _ALL)
    stream = _str(body.get("logStreamName"))
    if operation == "GetLogEvents" and stream:
        return AccessRequest(f"logs:{operation}", (f"{group_arn}:log-stream:{stream}",))
    # Log group actions are evaluated on the group's streams, as AWS names them in AccessDenied.
    return AccessRequest(f"logs:{operation}", (f"{group_arn}:log-stream:",))
