"""Scheduling policies and TagResource/UntagResource/ListTagsForResource through boto3 and raw HTTP."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any
from urllib.parse import quote

import httpx
import pytest

from tests.compute import compute_resources
from tests.support import ServerProcess, client_exception, unique

if TYPE_CHECKING:
    from mypy_boto3_batch import BatchClient
    from mypy_boto3_batch.type_defs import FairsharePolicyTypeDef

ACCOUNT = "123456789012"
PREFIX = f"arn:aws:batch:us-east-1:{ACCOUNT}:"
SP_ARN = PREFIX + "scheduling-policy/"


def policy(batch: BatchClient, **kwargs: Any) -> str:
    return batch.create_scheduling_policy(name=unique("sp"), **kwargs)["arn"]


def describe_one(batch: BatchClient, arn: str) -> dict[str, Any]:
    found = batch.describe_scheduling_policies(arns=[arn])["schedulingPolicies"]
    assert len(found) == 1, found
    return dict(found[0])


def tags_of(batch: BatchClient, arn: str) -> dict[str, str]:
    return dict(batch.list_tags_for_resource(resourceArn=arn)["tags"])


@pytest.fixture(scope="module")
def idle_queue(batch: BatchClient) -> str:
    """A queue whose only compute environment is DISABLED, so submitted jobs stay RUNNABLE."""
    ce, queue = unique("idle-ce"), unique("idle-q")
    batch.create_compute_environment(
        computeEnvironmentName=ce, type="MANAGED", state="DISABLED", computeResources=compute_resources("EC2", 1)
    )
    batch.create_job_queue(
        jobQueueName=queue, priority=1, computeEnvironmentOrder=[{"order": 1, "computeEnvironment": ce}]
    )
    return queue


# --- scheduling policies -------------------------------------------------------------


FAIRSHARE: FairsharePolicyTypeDef = {
    "shareDecaySeconds": 3600,
    "computeReservation": 25,
    "shareDistribution": [
        {"shareIdentifier": "teamA", "weightFactor": 0.5},
        {"shareIdentifier": "teamB*", "weightFactor": 2.0},
    ],
}


def test_create_returns_name_and_arn_and_describes_exact_shape(batch: BatchClient) -> None:
    name = unique("fair")
    out = batch.create_scheduling_policy(name=name, fairsharePolicy=FAIRSHARE, tags={"a": "b"})
    assert {k: v for k, v in out.items() if k != "ResponseMetadata"} == {"name": name, "arn": SP_ARN + name}
    assert describe_one(batch, SP_ARN + name) == {
        "name": name,
        "arn": SP_ARN + name,
        "fairsharePolicy": FAIRSHARE,
        "tags": {"a": "b"},
    }


def test_policy_without_members(batch: BatchClient) -> None:
    arn = policy(batch)
    detail = describe_one(batch, arn)
    assert detail["arn"] == arn
    assert detail["tags"] == {}
    assert detail.get("fairsharePolicy", {}) == {}


def test_quota_share_policy_is_stored(batch: BatchClient) -> None:
    arn = policy(batch, quotaSharePolicy={"idleResourceAssignmentStrategy": "FIFO"})
    assert describe_one(batch, arn)["quotaSharePolicy"] == {"idleResourceAssignmentStrategy": "FIFO"}
    with client_exception("quota share"):
        batch.update_scheduling_policy(arn=arn, fairsharePolicy={"shareDecaySeconds": 60})


def test_update_replaces_the_fairshare_policy(batch: BatchClient) -> None:
    arn = policy(batch, fairsharePolicy=FAIRSHARE)
    out = batch.update_scheduling_policy(arn=arn, fairsharePolicy={"shareDecaySeconds": 60})
    assert {k: v for k, v in out.items() if k != "ResponseMetadata"} == {}
    assert describe_one(batch, arn)["fairsharePolicy"] == {"shareDecaySeconds": 60}


def test_describe_several_and_unknown(batch: BatchClient) -> None:
    first, second = policy(batch), policy(batch)
    found = batch.describe_scheduling_policies(arns=[second, first, SP_ARN + "no-such-policy"])["schedulingPolicies"]
    assert {p["arn"] for p in found} == {first, second}


def test_delete(batch: BatchClient) -> None:
    arn = policy(batch)
    out = batch.delete_scheduling_policy(arn=arn)
    assert {k: v for k, v in out.items() if k != "ResponseMetadata"} == {}
    assert batch.describe_scheduling_policies(arns=[arn])["schedulingPolicies"] == []
    with client_exception("does not exist"):
        batch.delete_scheduling_policy(arn=arn)


def test_delete_refused_while_a_queue_uses_it(batch: BatchClient) -> None:
    arn = policy(batch, fairsharePolicy=FAIRSHARE)
    queue = unique("fair-q")
    batch.create_job_queue(
        jobQueueName=queue,
        priority=1,
        schedulingPolicyArn=arn,
        computeEnvironmentOrder=[{"order": 1, "computeEnvironment": "default"}],
    )
    with client_exception("in use", queue):
        batch.delete_scheduling_policy(arn=arn)
    batch.update_job_queue(jobQueue=queue, state="DISABLED")
    batch.delete_job_queue(jobQueue=queue)
    batch.delete_scheduling_policy(arn=arn)


def test_duplicate_and_bad_names(batch: BatchClient) -> None:
    name = unique("dup")
    batch.create_scheduling_policy(name=name)
    with client_exception("already exists"):
        batch.create_scheduling_policy(name=name)
    for bad in ("has space", "-x", "x" * 129):
        with client_exception("name"):
            batch.create_scheduling_policy(name=bad)


@pytest.mark.parametrize(
    ("fairshare", "fragment"),
    [
        ({"shareDecaySeconds": 604801}, "shareDecaySeconds"),
        ({"shareDecaySeconds": -1}, "shareDecaySeconds"),
        ({"computeReservation": 100}, "computeReservation"),
        ({"shareDistribution": [{"shareIdentifier": "a", "weightFactor": 0}]}, "weightFactor"),
        ({"shareDistribution": [{"shareIdentifier": "a", "weightFactor": 1000}]}, "weightFactor"),
        ({"shareDistribution": [{"shareIdentifier": "a-b"}]}, "shareIdentifier"),
        ({"shareDistribution": [{"shareIdentifier": "caf\u00e9"}]}, "shareIdentifier"),
        ({"shareDistribution": [{"shareIdentifier": "*"}]}, "shareIdentifier"),
        ({"shareDistribution": [{"shareIdentifier": "user*"}, {"shareIdentifier": "user1"}]}, "overlaps"),
        ({"shareDistribution": [{"shareIdentifier": "a"}, {"shareIdentifier": "a"}]}, "overlaps"),
    ],
)
def test_invalid_fairshare_policies(batch: BatchClient, fairshare: dict[str, Any], fragment: str) -> None:
    with client_exception(fragment):
        batch.create_scheduling_policy(name=unique("bad"), fairsharePolicy=fairshare)  # type: ignore[arg-type]


def test_other_errors(batch: BatchClient) -> None:
    with client_exception("either"):
        policy(batch, fairsharePolicy={}, quotaSharePolicy={"idleResourceAssignmentStrategy": "FIFO"})
    with client_exception("not a scheduling policy ARN"):
        batch.describe_scheduling_policies(arns=[PREFIX + "job-queue/default"])
    with client_exception("not a valid"):
        batch.describe_scheduling_policies(arns=["my-policy"])
    with client_exception("100"):
        batch.describe_scheduling_policies(arns=[f"{SP_ARN}p{i}" for i in range(101)])
    with client_exception("does not exist"):
        batch.update_scheduling_policy(arn=SP_ARN + "no-such-policy", fairsharePolicy={})
    with client_exception("not a valid"):
        batch.delete_scheduling_policy(arn="no-such-policy")


def test_list_paginates_every_policy_once(batch: BatchClient) -> None:
    created = {policy(batch) for _ in range(5)}
    paginator = batch.get_paginator("list_scheduling_policies")
    seen: list[str] = []
    tokens: list[str] = []
    for page in paginator.paginate(PaginationConfig={"PageSize": 2}):
        assert len(page["schedulingPolicies"]) <= 2
        for item in page["schedulingPolicies"]:
            assert set(item) == {"arn"}
            seen.append(item["arn"])
        if "nextToken" in page:
            tokens.append(page["nextToken"])
    assert len(seen) == len(set(seen))
    assert created <= set(seen)
    assert len(tokens) == len(set(tokens)) >= 2
    assert [p["arn"] for p in batch.list_scheduling_policies()["schedulingPolicies"]] == seen
    for max_results in (0, 101):
        with client_exception("maxResults"):
            batch.list_scheduling_policies(maxResults=max_results)
    with client_exception("nextToken"):
        batch.list_scheduling_policies(nextToken="definitely-not-a-token")


# --- tags ------------------------------------------------------------------------------


def _resources(batch: BatchClient, idle_queue: str) -> dict[str, str]:
    """One ARN of every taggable type, each created with tag ``created=yes``."""
    created = {"created": "yes"}
    ce = unique("tag-ce")
    ce_arn = batch.create_compute_environment(
        computeEnvironmentName=ce,
        type="MANAGED",
        computeResources=compute_resources("EC2", 1),
        tags=created,
    )["computeEnvironmentArn"]
    queue_arn = batch.create_job_queue(
        jobQueueName=unique("tag-q"),
        priority=1,
        computeEnvironmentOrder=[{"order": 1, "computeEnvironment": ce}],
        tags=created,
    )["jobQueueArn"]
    definition_arn = batch.register_job_definition(
        jobDefinitionName=unique("tag-jd"),
        type="container",
        containerProperties={"image": "busybox", "command": ["true"]},
        tags=created,
    )["jobDefinitionArn"]
    policy_arn = policy(batch, tags=created)
    job = batch.submit_job(jobName="tagged", jobQueue=idle_queue, jobDefinition=definition_arn, tags=created)
    return {
        "compute-environment": ce_arn,
        "job-queue": queue_arn,
        "job-definition": definition_arn,
        "scheduling-policy": policy_arn,
        "job": job["jobArn"],
    }


@pytest.mark.parametrize("kind", ["compute-environment", "job-queue", "job-definition", "scheduling-policy", "job"])
def test_tag_list_untag_every_resource_type(batch: BatchClient, idle_queue: str, kind: str) -> None:
    arn = _resources(batch, idle_queue)[kind]
    assert f":{kind}/" in arn
    assert tags_of(batch, arn) == {"created": "yes"}

    batch.tag_resource(resourceArn=arn, tags={"team": "ml", "cost center": "42", "empty": ""})
    assert tags_of(batch, arn) == {"created": "yes", "team": "ml", "cost center": "42", "empty": ""}

    batch.tag_resource(resourceArn=arn, tags={"team": "infra"})
    assert tags_of(batch, arn)["team"] == "infra"

    out = batch.untag_resource(resourceArn=arn, tagKeys=["cost center", "created", "never-set"])
    assert {k: v for k, v in out.items() if k != "ResponseMetadata"} == {}
    assert tags_of(batch, arn) == {"team": "infra", "empty": ""}


def test_tags_reach_describe_outputs(batch: BatchClient, idle_queue: str) -> None:
    arns = _resources(batch, idle_queue)
    for arn in arns.values():
        batch.tag_resource(resourceArn=arn, tags={"seen": "true"})
    ce = batch.describe_compute_environments(computeEnvironments=[arns["compute-environment"]])
    assert ce["computeEnvironments"][0]["tags"]["seen"] == "true"
    queue = batch.describe_job_queues(jobQueues=[arns["job-queue"]])
    assert queue["jobQueues"][0]["tags"]["seen"] == "true"
    definition = batch.describe_job_definitions(jobDefinitions=[arns["job-definition"]])
    assert definition["jobDefinitions"][0]["tags"]["seen"] == "true"
    assert describe_one(batch, arns["scheduling-policy"])["tags"]["seen"] == "true"


def test_job_definition_tags_are_per_revision(batch: BatchClient) -> None:
    name = unique("jd")
    first = batch.register_job_definition(jobDefinitionName=name, type="container", containerProperties={"image": "b"})
    second = batch.register_job_definition(jobDefinitionName=name, type="container", containerProperties={"image": "b"})
    batch.tag_resource(resourceArn=first["jobDefinitionArn"], tags={"rev": "1"})
    assert tags_of(batch, second["jobDefinitionArn"]) == {}
    batch.deregister_job_definition(jobDefinition=first["jobDefinitionArn"])
    assert tags_of(batch, first["jobDefinitionArn"]) == {"rev": "1"}
    [described] = batch.describe_job_definitions(jobDefinitions=[first["jobDefinitionArn"]])["jobDefinitions"]
    assert described["status"] == "INACTIVE"


def test_tag_errors(batch: BatchClient, idle_queue: str) -> None:
    arn = policy(batch)
    with client_exception("not found"):
        batch.list_tags_for_resource(resourceArn=PREFIX + "job-queue/no-such-queue")
    with client_exception("not found"):
        batch.tag_resource(resourceArn=PREFIX + "compute-environment/no-such-ce", tags={"a": "b"})
    with client_exception("00000000-0000-4000-8000-000000000000"):
        batch.untag_resource(resourceArn=PREFIX + "job/00000000-0000-4000-8000-000000000000", tagKeys=["a"])
    with client_exception("not found"):
        batch.list_tags_for_resource(resourceArn=PREFIX + "job-definition/no-such-definition:1")
    with client_exception("not a valid"):
        batch.list_tags_for_resource(resourceArn="not-an-arn")
    with client_exception("taggable"):
        batch.list_tags_for_resource(resourceArn=PREFIX + "consumable-thing/x")
    for revision in ("\u00b2", "9" * 30):
        with client_exception("name:revision"):
            batch.list_tags_for_resource(resourceArn=f"{PREFIX}job-definition/x:{revision}")
    with client_exception("cannot be tagged"):
        batch.tag_resource(resourceArn=PREFIX + "job/abc:3", tags={"a": "b"})
    with client_exception("aws:"):
        batch.tag_resource(resourceArn=arn, tags={"aws:owner": "me"})
    with client_exception("128"):
        batch.tag_resource(resourceArn=arn, tags={"k" * 129: "v"})
    with client_exception("256"):
        batch.tag_resource(resourceArn=arn, tags={"k": "v" * 257})
    batch.tag_resource(resourceArn=arn, tags={f"k{i}": "v" for i in range(50)})
    with client_exception("50"):
        batch.tag_resource(resourceArn=arn, tags={"one-too-many": "v"})
    assert len(tags_of(batch, arn)) == 50


def test_tag_routes_on_the_raw_wire(server: ServerProcess, batch: BatchClient) -> None:
    name = unique("wire")
    arn = batch.register_job_definition(jobDefinitionName=name, type="container", containerProperties={"image": "b"})[
        "jobDefinitionArn"
    ]
    url = f"{server.url}/v1/tags/{quote(arn, safe='')}"
    assert "%2F" in url and "%3A" in url

    response = httpx.post(url, json={"tags": {"a": "1", "b c": "2"}})
    assert response.status_code == 200, response.text
    assert response.json() == {}

    response = httpx.get(url)
    assert response.status_code == 200
    assert response.json() == {"tags": {"a": "1", "b c": "2"}}

    response = httpx.delete(url + "?tagKeys=a&tagKeys=b%20c")
    assert response.status_code == 200
    assert httpx.get(url).json() == {"tags": {}}

    # Some clients only escape ':'; the label must still resolve.
    response = httpx.get(f"{server.url}/v1/tags/{quote(arn, safe='/')}")
    assert response.status_code == 200, response.text
    assert response.json() == {"tags": {}}

    for bad in (b"[]", b"{bad", b'{"tags": ["a"]}', b'{"tags": {"a": 1}}', b"{}"):
        response = httpx.post(url, content=bad)
        assert response.status_code == 400, (bad, response.text)
        assert response.headers["x-amzn-ErrorType"] == "ClientException"
        assert response.json()["__type"] == "ClientException"

    response = httpx.delete(url)
    assert response.status_code == 400
    assert "tagKeys" in response.json()["message"]

    for method in ("PUT", "PATCH"):
        response = httpx.request(method, url, json={"tags": {}})
        assert response.status_code == 400
        assert response.headers["x-amzn-ErrorType"] == "ClientException"
