"""Job queues through boto3 against a real server."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, cast

import pytest

from tests.compute import compute_resources
from tests.support import client_exception, unique

if TYPE_CHECKING:
    from mypy_boto3_batch import BatchClient
    from mypy_boto3_batch.literals import CEStateType

ACCOUNT = "123456789012"
PREFIX = f"arn:aws:batch:us-east-1:{ACCOUNT}:"
CE_ARN = PREFIX + "compute-environment/"
JQ_ARN = PREFIX + "job-queue/"


def compute_environment(batch: BatchClient, resource_type: str = "EC2", state: str = "ENABLED") -> str:
    name = unique("ce")
    batch.create_compute_environment(
        computeEnvironmentName=name,
        type="MANAGED",
        state=cast("CEStateType", state),
        computeResources=compute_resources(resource_type, 4),
    )
    return name


def queue(batch: BatchClient, *environments: str, priority: int = 10, **kwargs: Any) -> str:
    name = unique("q")
    order = [{"order": i + 1, "computeEnvironment": ce} for i, ce in enumerate(environments)]
    batch.create_job_queue(jobQueueName=name, priority=priority, computeEnvironmentOrder=order, **kwargs)  # type: ignore[arg-type]
    return name


def describe_one(batch: BatchClient, reference: str) -> dict[str, Any]:
    found = batch.describe_job_queues(jobQueues=[reference])["jobQueues"]
    assert len(found) == 1, found
    return dict(found[0])


@pytest.fixture(scope="module")
def ce(batch: BatchClient) -> str:
    return compute_environment(batch)


@pytest.fixture(scope="module")
def policy_arn(batch: BatchClient) -> str:
    return batch.create_scheduling_policy(
        name=unique("fair"), fairsharePolicy={"shareDistribution": [{"shareIdentifier": "a"}]}
    )["arn"]


# --- create / describe ---------------------------------------------------------------


def test_create_returns_name_and_arn_and_describes_exact_shape(batch: BatchClient) -> None:
    first, second = compute_environment(batch), compute_environment(batch)
    name = unique("q")
    out = batch.create_job_queue(
        jobQueueName=name,
        priority=100,
        computeEnvironmentOrder=[
            {"order": 2, "computeEnvironment": CE_ARN + second},
            {"order": 1, "computeEnvironment": first},
        ],
        tags={"owner": "me"},
    )
    assert {k: v for k, v in out.items() if k != "ResponseMetadata"} == {
        "jobQueueName": name,
        "jobQueueArn": JQ_ARN + name,
    }
    assert describe_one(batch, name) == {
        "jobQueueName": name,
        "jobQueueArn": JQ_ARN + name,
        "state": "ENABLED",
        "status": "VALID",
        "statusReason": "JobQueue Healthy",
        "priority": 100,
        "computeEnvironmentOrder": [
            {"order": 2, "computeEnvironment": CE_ARN + second},
            {"order": 1, "computeEnvironment": CE_ARN + first},
        ],
        "jobQueueType": "ECS",
        "tags": {"owner": "me"},
        "jobStateTimeLimitActions": [],
    }


def test_optional_members_are_echoed(batch: BatchClient, ce: str, policy_arn: str) -> None:
    actions = [{"reason": "stuck", "state": "RUNNABLE", "maxTimeSeconds": 600, "action": "CANCEL"}]
    name = queue(batch, ce, state="DISABLED", schedulingPolicyArn=policy_arn, jobStateTimeLimitActions=actions)
    detail = describe_one(batch, name)
    assert detail["state"] == "DISABLED"
    assert detail["status"] == "VALID"
    assert detail["schedulingPolicyArn"] == policy_arn
    assert detail["jobStateTimeLimitActions"] == actions


def test_describe_by_name_arn_unknown_and_all(batch: BatchClient, ce: str) -> None:
    name = queue(batch, ce)
    assert describe_one(batch, JQ_ARN + name) == describe_one(batch, name)
    assert batch.describe_job_queues(jobQueues=["no-such-queue"])["jobQueues"] == []
    every = {q["jobQueueName"] for q in batch.describe_job_queues()["jobQueues"]}
    assert {"default", name} <= every


def test_default_queue_uses_default_environment(batch: BatchClient) -> None:
    detail = describe_one(batch, "default")
    assert detail["state"] == "ENABLED"
    assert detail["computeEnvironmentOrder"] == [{"order": 1, "computeEnvironment": CE_ARN + "default"}]


def test_boundary_priorities_are_accepted(batch: BatchClient, ce: str) -> None:
    assert describe_one(batch, queue(batch, ce, priority=0))["priority"] == 0
    assert describe_one(batch, queue(batch, ce, priority=1000))["priority"] == 1000


def test_three_environments_are_the_maximum(batch: BatchClient) -> None:
    environments = [compute_environment(batch) for _ in range(4)]
    name = queue(batch, *environments[:3])
    assert len(describe_one(batch, name)["computeEnvironmentOrder"]) == 3
    with client_exception("computeEnvironmentOrder", "3"):
        queue(batch, *environments)
    with client_exception("computeEnvironmentOrder", "3"):
        batch.update_job_queue(
            jobQueue=name,
            computeEnvironmentOrder=[{"order": i, "computeEnvironment": e} for i, e in enumerate(environments)],
        )


# --- update ----------------------------------------------------------------------------


def test_update_every_member(batch: BatchClient, ce: str, policy_arn: str) -> None:
    name = queue(batch, ce, priority=5)
    other = compute_environment(batch)
    out = batch.update_job_queue(
        jobQueue=JQ_ARN + name,
        priority=7,
        state="DISABLED",
        computeEnvironmentOrder=[{"order": 1, "computeEnvironment": other}],
        schedulingPolicyArn=policy_arn,
        jobStateTimeLimitActions=[{"reason": "r", "state": "RUNNABLE", "maxTimeSeconds": 900, "action": "CANCEL"}],
    )
    assert out["jobQueueName"] == name
    assert out["jobQueueArn"] == JQ_ARN + name
    detail = describe_one(batch, name)
    assert detail["priority"] == 7
    assert detail["state"] == "DISABLED"
    assert detail["computeEnvironmentOrder"] == [{"order": 1, "computeEnvironment": CE_ARN + other}]
    assert detail["schedulingPolicyArn"] == policy_arn
    assert detail["jobStateTimeLimitActions"][0]["maxTimeSeconds"] == 900
    assert detail["status"] == "VALID"
    assert detail["statusReason"] == "JobQueue Healthy"

    batch.update_job_queue(jobQueue=name, state="ENABLED")
    detail = describe_one(batch, name)
    assert detail["state"] == "ENABLED"
    assert detail["priority"] == 7
    assert detail["schedulingPolicyArn"] == policy_arn


def test_update_errors(batch: BatchClient, ce: str) -> None:
    name = queue(batch, ce)
    with client_exception("no-such-queue"):
        batch.update_job_queue(jobQueue="no-such-queue", priority=1)
    with client_exception("priority"):
        batch.update_job_queue(jobQueue=name, priority=1001)
    with client_exception("no-such-ce"):
        batch.update_job_queue(
            jobQueue=name, computeEnvironmentOrder=[{"order": 1, "computeEnvironment": "no-such-ce"}]
        )
    with client_exception("SchedulingPolicy"):
        batch.update_job_queue(jobQueue=name, schedulingPolicyArn=PREFIX + "scheduling-policy/no-such-policy")
    with client_exception("state"):
        batch.update_job_queue(jobQueue=name, state="OFF")  # type: ignore[arg-type]
    assert describe_one(batch, name)["priority"] == 10


# --- delete ----------------------------------------------------------------------------


def test_delete_requires_disabled(batch: BatchClient, ce: str) -> None:
    name = queue(batch, ce)
    with client_exception("DISABLED"):
        batch.delete_job_queue(jobQueue=name)
    assert describe_one(batch, name)["state"] == "ENABLED"
    batch.update_job_queue(jobQueue=name, state="DISABLED")
    out = batch.delete_job_queue(jobQueue=JQ_ARN + name)
    assert {k: v for k, v in out.items() if k != "ResponseMetadata"} == {}
    assert batch.describe_job_queues(jobQueues=[name])["jobQueues"] == []
    with client_exception(name):
        batch.delete_job_queue(jobQueue=name)


# --- create errors ---------------------------------------------------------------------


def test_duplicate_name(batch: BatchClient, ce: str) -> None:
    name = queue(batch, ce)
    with client_exception("already exists", name):
        batch.create_job_queue(
            jobQueueName=name, priority=1, computeEnvironmentOrder=[{"order": 1, "computeEnvironment": ce}]
        )


@pytest.mark.parametrize("name", ["_leading", "white space", "x" * 129, "a/b", "a:b"])
def test_bad_names(batch: BatchClient, ce: str, name: str) -> None:
    with client_exception("name"):
        batch.create_job_queue(
            jobQueueName=name, priority=1, computeEnvironmentOrder=[{"order": 1, "computeEnvironment": ce}]
        )


@pytest.mark.parametrize("priority", [-1, 1001, 2**31])
def test_priority_out_of_range(batch: BatchClient, ce: str, priority: int) -> None:
    # 2**31 is no 32-bit Integer (the model's type for priority): refused by the type check, also "between".
    with client_exception("priority", "between 0 and 1000" if priority < 2**31 else "between"):
        queue(batch, ce, priority=priority)


def test_unknown_environment(batch: BatchClient) -> None:
    with client_exception("ComputeEnvironment", "no-such-ce", "does not exist"):
        queue(batch, "no-such-ce")
    with client_exception("no-such-ce"):
        queue(batch, CE_ARN + "no-such-ce")


def test_environment_arn_of_the_wrong_type(batch: BatchClient) -> None:
    with client_exception("compute-environment"):
        queue(batch, JQ_ARN + "default")


def test_no_environments(batch: BatchClient) -> None:
    with client_exception("computeEnvironmentOrder"):
        batch.create_job_queue(jobQueueName=unique("q"), priority=1, computeEnvironmentOrder=[])
    with client_exception("computeEnvironmentOrder"):
        batch.create_job_queue(jobQueueName=unique("q"), priority=1)


def test_duplicate_order_values(batch: BatchClient) -> None:
    first, second = compute_environment(batch), compute_environment(batch)
    with client_exception("order"):
        batch.create_job_queue(
            jobQueueName=unique("q"),
            priority=1,
            computeEnvironmentOrder=[
                {"order": 1, "computeEnvironment": first},
                {"order": 1, "computeEnvironment": second},
            ],
        )


def test_cannot_mix_fargate_and_ec2(batch: BatchClient, ce: str) -> None:
    fargate = compute_environment(batch, "FARGATE")
    assert describe_one(batch, queue(batch, fargate))["jobQueueType"] == "ECS"
    with client_exception("Fargate"):
        queue(batch, ce, fargate)


def test_unknown_or_malformed_scheduling_policy(batch: BatchClient, ce: str) -> None:
    with client_exception("no-such-policy"):
        queue(batch, ce, schedulingPolicyArn=PREFIX + "scheduling-policy/no-such-policy")
    with client_exception("not-an-arn"):
        queue(batch, ce, schedulingPolicyArn="not-an-arn")
    with client_exception("scheduling policy"):
        queue(batch, ce, schedulingPolicyArn=JQ_ARN + "default")


def test_bad_time_limit_actions(batch: BatchClient, ce: str) -> None:
    bad = {"reason": "r", "state": "RUNNABLE", "maxTimeSeconds": 86401, "action": "CANCEL"}
    with client_exception("maxTimeSeconds"):
        queue(batch, ce, jobStateTimeLimitActions=[bad])
    with client_exception("CANCEL"):
        queue(batch, ce, jobStateTimeLimitActions=[{**bad, "maxTimeSeconds": 600, "action": "TERMINATE"}])
    with client_exception("state"):
        queue(batch, ce, jobStateTimeLimitActions=[{**bad, "maxTimeSeconds": 600, "state": "RUNNING"}])


def test_disabled_environment_can_still_back_a_queue(batch: BatchClient) -> None:
    disabled = compute_environment(batch, state="DISABLED")
    assert describe_one(batch, queue(batch, disabled))["status"] == "VALID"


# --- pagination ------------------------------------------------------------------------


def test_paginator_sees_every_queue_once(batch: BatchClient, ce: str) -> None:
    created = {queue(batch, ce) for _ in range(5)}
    paginator = batch.get_paginator("describe_job_queues")
    seen: list[str] = []
    tokens: list[str] = []
    for page in paginator.paginate(PaginationConfig={"PageSize": 2}):
        assert len(page["jobQueues"]) <= 2
        seen.extend(q["jobQueueName"] for q in page["jobQueues"])
        if "nextToken" in page:
            tokens.append(page["nextToken"])
    assert len(seen) == len(set(seen))
    assert created <= set(seen)
    assert len(tokens) == len(set(tokens)) >= 3
    assert [q["jobQueueName"] for q in batch.describe_job_queues()["jobQueues"]] == seen

    limited = list(paginator.paginate(PaginationConfig={"MaxItems": 3, "PageSize": 1}))
    assert sum(len(page["jobQueues"]) for page in limited) == 3


def test_paging_past_a_deleted_queue(batch: BatchClient, ce: str) -> None:
    names = [queue(batch, ce) for _ in range(3)]
    first = batch.describe_job_queues(jobQueues=names, maxResults=1)
    assert [q["jobQueueName"] for q in first["jobQueues"]] == names[:1]
    batch.update_job_queue(jobQueue=names[0], state="DISABLED")
    batch.delete_job_queue(jobQueue=names[0])
    rest = batch.describe_job_queues(jobQueues=names, maxResults=5, nextToken=first["nextToken"])
    assert [q["jobQueueName"] for q in rest["jobQueues"]] == names[1:]
    assert "nextToken" not in rest


@pytest.mark.parametrize("max_results", [0, 101])
def test_max_results_out_of_range(batch: BatchClient, max_results: int) -> None:
    with client_exception("maxResults"):
        batch.describe_job_queues(maxResults=max_results)


def test_bad_next_token(batch: BatchClient) -> None:
    with client_exception("nextToken"):
        batch.describe_job_queues(nextToken="garbage!")
    token = batch.describe_compute_environments(maxResults=1)["nextToken"]
    with client_exception("nextToken"):
        batch.describe_job_queues(nextToken=token)
