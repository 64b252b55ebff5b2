"""Job definitions through boto3 against a real server: revisions, status, lookups, errors, pagination."""

from __future__ import annotations

import base64
import json
from typing import TYPE_CHECKING, Any

import pytest

from tests.compute import compute_resources
from tests.support import client_exception, unique

if TYPE_CHECKING:
    from mypy_boto3_batch import BatchClient

ACCOUNT = "123456789012"
JD_ARN = f"arn:aws:batch:us-east-1:{ACCOUNT}:job-definition/"
CONTAINER: dict[str, Any] = {"image": "busybox", "command": ["echo", "Ref::word"]}


def register(batch: BatchClient, name: str, **kwargs: Any) -> dict[str, Any]:
    kwargs = {"type": "container", "containerProperties": CONTAINER, **kwargs}
    # None drops a default member from the request.
    out = batch.register_job_definition(jobDefinitionName=name, **{k: v for k, v in kwargs.items() if v is not None})
    return {k: v for k, v in out.items() if k != "ResponseMetadata"}


def describe(batch: BatchClient, **kwargs: Any) -> list[dict[str, Any]]:
    return [dict(d) for d in batch.describe_job_definitions(**kwargs)["jobDefinitions"]]


def revisions(batch: BatchClient, **kwargs: Any) -> list[tuple[int, str]]:
    return [(d["revision"], d["status"]) for d in describe(batch, **kwargs)]


# --- register / describe -------------------------------------------------------------


def test_register_returns_revision_one_and_describes_exact_shape(batch: BatchClient) -> None:
    name = unique("jd")
    out = register(
        batch,
        name,
        parameters={"word": "hi"},
        containerProperties={
            "image": "busybox",
            "command": ["echo", "Ref::word"],
            "resourceRequirements": [{"type": "VCPU", "value": "1"}, {"type": "MEMORY", "value": "128"}],
            "environment": [{"name": "MODE", "value": "fast"}],
        },
        retryStrategy={"attempts": 3, "evaluateOnExit": [{"onExitCode": "1*", "action": "RETRY"}]},
        timeout={"attemptDurationSeconds": 120},
        tags={"k": "v"},
        propagateTags=True,
        schedulingPriority=5,
    )
    assert out == {"jobDefinitionName": name, "jobDefinitionArn": f"{JD_ARN}{name}:1", "revision": 1}
    [definition] = describe(batch, jobDefinitionName=name)
    assert definition == {
        "jobDefinitionName": name,
        "jobDefinitionArn": f"{JD_ARN}{name}:1",
        "revision": 1,
        "status": "ACTIVE",
        "type": "container",
        "parameters": {"word": "hi"},
        "schedulingPriority": 5,
        "containerProperties": {
            "image": "busybox",
            "command": ["echo", "Ref::word"],
            "resourceRequirements": [{"type": "VCPU", "value": "1"}, {"type": "MEMORY", "value": "128"}],
            "environment": [{"name": "MODE", "value": "fast"}],
            "mountPoints": [],
            "volumes": [],
            "ulimits": [],
            "secrets": [],
        },
        "retryStrategy": {"attempts": 3, "evaluateOnExit": [{"onExitCode": "1*", "action": "RETRY"}]},
        "timeout": {"attemptDurationSeconds": 120},
        "tags": {"k": "v"},
        "propagateTags": True,
        "platformCapabilities": ["EC2"],
        "containerOrchestrationType": "ECS",
    }


def test_minimal_definition_gets_defaults(batch: BatchClient) -> None:
    name = unique("jd")
    register(batch, name, containerProperties={"image": "busybox"})
    [definition] = describe(batch, jobDefinitionName=name)
    assert definition["parameters"] == {}
    assert definition["tags"] == {}
    assert definition["propagateTags"] is False
    assert definition["platformCapabilities"] == ["EC2"]
    assert definition["containerProperties"]["environment"] == []
    assert "retryStrategy" not in definition
    assert "timeout" not in definition


def test_unknown_container_members_are_kept(batch: BatchClient) -> None:
    name = unique("jd")
    props = {
        "image": "busybox",
        "vcpus": 2,
        "memory": 256,
        "privileged": True,
        "user": "nobody",
        "linuxParameters": {"initProcessEnabled": True, "sharedMemorySize": 64},
        "logConfiguration": {"logDriver": "awslogs", "options": {"awslogs-group": "g"}},
    }
    register(batch, name, containerProperties=props)
    stored = describe(batch, jobDefinitionName=name)[0]["containerProperties"]
    for key, value in props.items():
        assert stored[key] == value


def test_multinode_definition(batch: BatchClient) -> None:
    name = unique("mnp")
    nodes = {
        "numNodes": 2,
        "mainNode": 0,
        "nodeRangeProperties": [{"targetNodes": "0:1", "container": {"image": "busybox", "vcpus": 1, "memory": 64}}],
    }
    assert register(batch, name, type="multinode", containerProperties=None, nodeProperties=nodes)["revision"] == 1
    definition = describe(batch, jobDefinitionName=name)[0]
    assert definition["type"] == "multinode"
    # Each node range's container is shown with AWS's defaults filled in, as a container definition's is.
    shown = definition["nodeProperties"]
    assert (shown["numNodes"], shown["mainNode"]) == (2, 0)
    (group,) = shown["nodeRangeProperties"]
    assert group["targetNodes"] == "0:1"
    shown_container = group["container"]
    assert (shown_container["image"], shown_container["vcpus"], shown_container["memory"]) == ("busybox", 1, 64)
    assert shown_container["environment"] == shown_container["mountPoints"] == shown_container["volumes"] == []
    assert "containerProperties" not in definition


def test_revisions_increase_and_are_never_reused(batch: BatchClient) -> None:
    name = unique("jd")
    assert [register(batch, name)["revision"] for _ in range(3)] == [1, 2, 3]
    batch.deregister_job_definition(jobDefinition=f"{name}:3")
    batch.deregister_job_definition(jobDefinition=f"{JD_ARN}{name}:2")
    assert revisions(batch, jobDefinitionName=name) == [(1, "ACTIVE"), (2, "INACTIVE"), (3, "INACTIVE")]
    out = register(batch, name)
    assert out["revision"] == 4
    assert out["jobDefinitionArn"] == f"{JD_ARN}{name}:4"
    assert revisions(batch, jobDefinitionName=name, status="ACTIVE") == [(1, "ACTIVE"), (4, "ACTIVE")]
    assert revisions(batch, jobDefinitionName=name, status="INACTIVE") == [(2, "INACTIVE"), (3, "INACTIVE")]


def test_deregistering_twice_is_harmless(batch: BatchClient) -> None:
    name = unique("jd")
    register(batch, name)
    batch.deregister_job_definition(jobDefinition=f"{name}:1")
    batch.deregister_job_definition(jobDefinition=f"{name}:1")
    assert revisions(batch, jobDefinitionName=name) == [(1, "INACTIVE")]


def test_describe_by_reference(batch: BatchClient) -> None:
    name = unique("jd")
    for _ in range(3):
        register(batch, name)
    batch.deregister_job_definition(jobDefinition=f"{name}:2")
    assert revisions(batch, jobDefinitions=[f"{name}:2"]) == [(2, "INACTIVE")]
    assert revisions(batch, jobDefinitions=[f"{JD_ARN}{name}:3", f"{name}:1"]) == [(1, "ACTIVE"), (3, "ACTIVE")]
    assert revisions(batch, jobDefinitions=[name]) == [(1, "ACTIVE"), (2, "INACTIVE"), (3, "ACTIVE")]
    assert revisions(batch, jobDefinitions=[f"{JD_ARN}{name}"]) == [(1, "ACTIVE"), (2, "INACTIVE"), (3, "ACTIVE")]
    assert describe(batch, jobDefinitions=[f"{name}:99", "no-such-definition"]) == []


def test_describe_by_status_across_names(batch: BatchClient) -> None:
    active, inactive = unique("active"), unique("inactive")
    register(batch, active)
    register(batch, inactive)
    batch.deregister_job_definition(jobDefinition=f"{inactive}:1")
    active_names = {d["jobDefinitionName"] for d in describe(batch, status="ACTIVE")}
    inactive_names = {d["jobDefinitionName"] for d in describe(batch, status="INACTIVE")}
    assert active in active_names and active not in inactive_names
    assert inactive in inactive_names and inactive not in active_names
    every = describe(batch)
    assert {active, inactive} <= {d["jobDefinitionName"] for d in every}
    assert every == sorted(every, key=lambda d: (d["jobDefinitionName"], d["revision"]))


def test_name_lookup_resolves_the_latest_active_revision(batch: BatchClient) -> None:
    """SubmitJob resolves ``name``, ``name:rev`` and ARNs; a queue on a DISABLED environment keeps jobs idle."""
    ce, queue = unique("idle-ce"), unique("idle-q")
    batch.create_compute_environment(
        computeEnvironmentName=ce, type="MANAGED", state="DISABLED", computeResources=compute_resources("EC2", 1)
    )
    batch.create_job_queue(
        jobQueueName=queue, priority=1, computeEnvironmentOrder=[{"order": 1, "computeEnvironment": ce}]
    )
    name = unique("jd")
    for _ in range(3):
        register(batch, name, parameters={"word": "x"})
    batch.deregister_job_definition(jobDefinition=f"{name}:3")

    def submitted_definition(reference: str) -> str:
        job_id = batch.submit_job(jobName="lookup", jobQueue=queue, jobDefinition=reference)["jobId"]
        detail = batch.describe_jobs(jobs=[job_id])["jobs"][0]
        batch.cancel_job(jobId=job_id, reason="test done")
        return detail["jobDefinition"]

    assert submitted_definition(name) == f"{JD_ARN}{name}:2"
    assert submitted_definition(f"{name}:1") == f"{JD_ARN}{name}:1"
    assert submitted_definition(f"{JD_ARN}{name}:1") == f"{JD_ARN}{name}:1"
    assert submitted_definition(f"{JD_ARN}{name}") == f"{JD_ARN}{name}:2"
    with client_exception(f"{name}:3"):
        batch.submit_job(jobName="lookup", jobQueue=queue, jobDefinition=f"{name}:3")
    with client_exception("no-such-definition"):
        batch.submit_job(jobName="lookup", jobQueue=queue, jobDefinition="no-such-definition")
    batch.deregister_job_definition(jobDefinition=f"{name}:1")
    batch.deregister_job_definition(jobDefinition=f"{name}:2")
    with client_exception(name):
        batch.submit_job(jobName="lookup", jobQueue=queue, jobDefinition=name)


# --- errors --------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["-x", "with space", "x" * 129, "name:1", "a/b"])
def test_bad_names(batch: BatchClient, name: str) -> None:
    with client_exception("name"):
        register(batch, name)


@pytest.mark.parametrize("variable", ["AWS_BATCH_JOB_ID", "AWS_BATCH", "AWS_BATCHY"])
def test_reserved_environment_variables(batch: BatchClient, variable: str) -> None:
    name = unique("jd")
    with client_exception(variable, "AWS_BATCH"):
        register(
            batch, name, containerProperties={"image": "busybox", "environment": [{"name": variable, "value": "1"}]}
        )
    assert describe(batch, jobDefinitionName=name) == []


@pytest.mark.parametrize("attempts", [0, 11, -1])
def test_retry_attempts_out_of_range(batch: BatchClient, attempts: int) -> None:
    with client_exception("attempts", "between 1 and 10"):
        register(batch, unique("jd"), retryStrategy={"attempts": attempts})


def test_retry_attempts_boundaries(batch: BatchClient) -> None:
    assert register(batch, unique("jd"), retryStrategy={"attempts": 1})["revision"] == 1
    assert register(batch, unique("jd"), retryStrategy={"attempts": 10})["revision"] == 1


@pytest.mark.parametrize(
    ("kwargs", "fragments"),
    [
        ({"type": "docker"}, ("type",)),
        ({"containerProperties": None}, ("containerProperties",)),
        ({"containerProperties": {"command": ["true"]}}, ("image",)),
        ({"ecsProperties": {"taskProperties": []}}, ("exactly one",)),
        ({"type": "multinode"}, ("nodeProperties",)),
        ({"containerProperties": {"image": "b", "vcpus": 0}}, ("vcpus",)),
        ({"containerProperties": {"image": "b", "memory": 2}}, ("memory",)),
        ({"containerProperties": {"image": "b", "resourceRequirements": [{"type": "VCPU", "value": "x"}]}}, ("VCPU",)),
        (
            {"containerProperties": {"image": "b", "resourceRequirements": [{"type": "MEMORY", "value": "1"}]}},
            ("MEMORY",),
        ),
        ({"retryStrategy": {"attempts": 2, "evaluateOnExit": [{"action": "MAYBE"}]}}, ("action",)),
        (
            {"retryStrategy": {"attempts": 2, "evaluateOnExit": [{"onExitCode": "abc", "action": "EXIT"}]}},
            ("onExitCode",),
        ),
        ({"timeout": {"attemptDurationSeconds": 0}}, ("attemptDurationSeconds",)),
        ({"schedulingPriority": 10000}, ("schedulingPriority",)),
        ({"tags": {"aws:reserved": "x"}}, ("aws:",)),
        ({"platformCapabilities": ["LAMBDA"]}, ("platformCapabilities",)),
    ],
)
def test_invalid_registrations(batch: BatchClient, kwargs: dict[str, Any], fragments: tuple[str, ...]) -> None:
    name = unique("jd")
    with client_exception(*fragments):
        register(batch, name, **kwargs)
    assert describe(batch, jobDefinitionName=name) == []


def test_deregister_errors(batch: BatchClient) -> None:
    name = unique("jd")
    register(batch, name)
    with client_exception("revision"):
        batch.deregister_job_definition(jobDefinition=name)
    with client_exception(f"{name}:2", "does not exist"):
        batch.deregister_job_definition(jobDefinition=f"{name}:2")
    with client_exception("no-such-definition"):
        batch.deregister_job_definition(jobDefinition="no-such-definition:1")
    for revision in ("latest", "\u00b2", "9" * 30):
        with client_exception("name:revision"):
            batch.deregister_job_definition(jobDefinition=f"{name}:{revision}")
    with client_exception("job definition ARN"):
        batch.deregister_job_definition(jobDefinition=f"arn:aws:batch:us-east-1:{ACCOUNT}:job-queue/{name}")
    assert revisions(batch, jobDefinitionName=name) == [(1, "ACTIVE")]


def test_describe_errors(batch: BatchClient) -> None:
    with client_exception("cannot be combined"):
        batch.describe_job_definitions(jobDefinitions=["x:1"], status="ACTIVE")
    with client_exception("cannot be combined"):
        batch.describe_job_definitions(jobDefinitions=["x:1"], jobDefinitionName="x")
    with client_exception("status", "ACTIVE or INACTIVE"):
        batch.describe_job_definitions(status="DELETED")
    with client_exception("100"):
        batch.describe_job_definitions(jobDefinitions=[f"x:{i}" for i in range(1, 102)])
    for reference in ("x:one", "x:", "x:\u00b2", "x:\u0661", "x:" + "9" * 30, "x:1:2"):
        with client_exception("name:revision"):
            batch.describe_job_definitions(jobDefinitions=[reference])
    for max_results in (0, 101):
        with client_exception("maxResults"):
            batch.describe_job_definitions(maxResults=max_results)
    for token in ("bogus", _token(["x"]), _token([1, 2]), _token(["x", "1"]), _token(["x", 2**63]), _token({"a": 1})):
        with client_exception("nextToken"):
            batch.describe_job_definitions(nextToken=token)
    queue_token = batch.describe_job_queues(maxResults=1)
    if "nextToken" in queue_token:
        with client_exception("nextToken"):
            batch.describe_job_definitions(nextToken=queue_token["nextToken"])


def _token(position: Any) -> str:
    raw = json.dumps({"k": "job-definition", "p": position}).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


# --- pagination ----------------------------------------------------------------------


def test_paginator_over_revisions_of_one_name(batch: BatchClient) -> None:
    name = unique("paged")
    for _ in range(5):
        register(batch, name)
    paginator = batch.get_paginator("describe_job_definitions")
    seen: list[int] = []
    tokens: list[str] = []
    for page in paginator.paginate(jobDefinitionName=name, PaginationConfig={"PageSize": 2}):
        assert len(page["jobDefinitions"]) <= 2
        seen.extend(d["revision"] for d in page["jobDefinitions"])
        if "nextToken" in page:
            tokens.append(page["nextToken"])
    assert seen == [1, 2, 3, 4, 5]
    assert len(tokens) == len(set(tokens)) == 2


def test_paginator_over_everything(batch: BatchClient) -> None:
    for _ in range(3):
        register(batch, unique("all"))
    paginator = batch.get_paginator("describe_job_definitions")
    pages = list(paginator.paginate(PaginationConfig={"PageSize": 3}))
    seen = [(d["jobDefinitionName"], d["revision"]) for page in pages for d in page["jobDefinitions"]]
    assert len(seen) == len(set(seen))
    assert seen == sorted(seen)
    assert seen == [(d["jobDefinitionName"], d["revision"]) for d in describe(batch)]
    tokens = [page["nextToken"] for page in pages if "nextToken" in page]
    assert len(tokens) == len(set(tokens))


def test_pagination_with_status_filter(batch: BatchClient) -> None:
    name = unique("mixed")
    for _ in range(6):
        register(batch, name)
    for revision in (2, 4, 6):
        batch.deregister_job_definition(jobDefinition=f"{name}:{revision}")
    paginator = batch.get_paginator("describe_job_definitions")
    pages = paginator.paginate(jobDefinitionName=name, status="INACTIVE", PaginationConfig={"PageSize": 1})
    assert [d["revision"] for page in pages for d in page["jobDefinitions"]] == [2, 4, 6]
