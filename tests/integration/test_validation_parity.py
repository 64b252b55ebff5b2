"""AWS's validation rules, one test per row of docs/validation.md, through boto3 against a real server."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import pytest

from tests.compute import EC2_REQUIRED, FARGATE_REQUIRED, compute_resources
from tests.support import client_exception, make_queue, unique, wait_for_status

if TYPE_CHECKING:
    from mypy_boto3_batch import BatchClient

EXECUTION_ROLE = "arn:aws:iam::123456789012:role/ecsTaskExecutionRole"


def create_ce(batch: BatchClient, resources: dict[str, Any]) -> str:
    name = unique("ce")
    batch.create_compute_environment(computeEnvironmentName=name, type="MANAGED", computeResources=resources)  # type: ignore[arg-type]
    return name


def without(members: dict[str, Any], *names: str) -> dict[str, Any]:
    return {k: v for k, v in members.items() if k not in names}


@pytest.mark.parametrize("resource_type", ["EC2", "SPOT"])
def test_managed_ec2_and_spot_require_an_instance_role(batch: BatchClient, resource_type: str) -> None:
    resources = without(dict(compute_resources(resource_type)), "instanceRole")
    with client_exception("Instance role is required"):
        create_ce(batch, resources)


@pytest.mark.parametrize(("member", "fragment"), [("instanceTypes", "instance type"), ("subnets", "subnet")])
def test_managed_ec2_requires_instance_types_and_subnets(batch: BatchClient, member: str, fragment: str) -> None:
    with client_exception(member, fragment):
        create_ce(batch, without(dict(compute_resources("EC2")), member))
    with client_exception(member):
        create_ce(batch, {**compute_resources("EC2"), member: []})


def test_spot_with_best_fit_requires_a_fleet_role(batch: BatchClient) -> None:
    with client_exception("spotIamFleetRole", "BEST_FIT"):
        create_ce(batch, {"type": "SPOT", "maxvCpus": 4, **EC2_REQUIRED})
    with client_exception("spotIamFleetRole"):
        create_ce(batch, {"type": "SPOT", "maxvCpus": 4, "allocationStrategy": "BEST_FIT", **EC2_REQUIRED})
    create_ce(batch, {"type": "SPOT", "maxvCpus": 4, "spotIamFleetRole": "arn:aws:iam::1:role/fleet", **EC2_REQUIRED})


def test_fargate_compute_environment_rules(batch: BatchClient) -> None:
    name = create_ce(batch, dict(compute_resources("FARGATE")))
    assert (
        batch.describe_compute_environments(computeEnvironments=[name])["computeEnvironments"][0]["status"] == "VALID"
    )
    with client_exception("instanceRole", "isn't applicable for Fargate"):
        create_ce(batch, {**compute_resources("FARGATE_SPOT"), "instanceRole": "ecsInstanceRole"})
    with client_exception("securityGroupIds"):
        create_ce(batch, {"type": "FARGATE", "maxvCpus": 4, "subnets": ["subnet-1"]})
    with client_exception("subnets"):
        create_ce(batch, {"type": "FARGATE", "maxvCpus": 4, **without(FARGATE_REQUIRED, "subnets")})


def register_fargate(batch: BatchClient, **container: Any) -> dict[str, Any]:
    props = {
        "image": "busybox",
        "command": ["true"],
        "executionRoleArn": EXECUTION_ROLE,
        "resourceRequirements": [{"type": "VCPU", "value": "0.25"}, {"type": "MEMORY", "value": "512"}],
        **container,
    }
    out = batch.register_job_definition(
        jobDefinitionName=unique("fg"),
        type="container",
        platformCapabilities=["FARGATE"],
        containerProperties=props,  # type: ignore[arg-type]
    )
    return dict(batch.describe_job_definitions(jobDefinitions=[out["jobDefinitionArn"]])["jobDefinitions"][0])


def test_fargate_job_definition_rules_and_defaults(batch: BatchClient) -> None:
    detail = register_fargate(batch)
    container = detail["containerProperties"]
    assert container["networkConfiguration"] == {"assignPublicIp": "DISABLED"}
    assert container["fargatePlatformConfiguration"] == {"platformVersion": "LATEST"}
    assert detail["platformCapabilities"] == ["FARGATE"]
    with client_exception("executionRoleArn"):
        register_fargate(batch, executionRoleArn="")
    with client_exception("MEMORY 3072", "VCPU 0.25"):
        register_fargate(
            batch, resourceRequirements=[{"type": "VCPU", "value": "0.25"}, {"type": "MEMORY", "value": "3072"}]
        )
    with client_exception("VCPU 3"):
        register_fargate(
            batch, resourceRequirements=[{"type": "VCPU", "value": "3"}, {"type": "MEMORY", "value": "8192"}]
        )
    with client_exception("GPU"):
        register_fargate(
            batch,
            resourceRequirements=[
                {"type": "VCPU", "value": "1"},
                {"type": "MEMORY", "value": "2048"},
                {"type": "GPU", "value": "1"},
            ],
        )
    with client_exception("vcpus", "resourceRequirements"):
        register_fargate(batch, vcpus=1)
    explicit = register_fargate(batch, networkConfiguration={"assignPublicIp": "ENABLED"})
    assert explicit["containerProperties"]["networkConfiguration"] == {"assignPublicIp": "ENABLED"}


def test_container_job_definition_describes_with_aws_defaults(batch: BatchClient) -> None:
    name = unique("jd")
    out = batch.register_job_definition(
        jobDefinitionName=name, type="container", containerProperties={"image": "busybox", "command": ["true"]}
    )
    [detail] = batch.describe_job_definitions(jobDefinitions=[out["jobDefinitionArn"]])["jobDefinitions"]
    assert detail == {
        "jobDefinitionName": name,
        "jobDefinitionArn": out["jobDefinitionArn"],
        "revision": 1,
        "status": "ACTIVE",
        "type": "container",
        "parameters": {},
        "containerProperties": {
            "image": "busybox",
            "command": ["true"],
            "volumes": [],
            "environment": [],
            "mountPoints": [],
            "ulimits": [],
            "resourceRequirements": [],
            "secrets": [],
        },
        "tags": {},
        "propagateTags": False,
        "platformCapabilities": ["EC2"],
        "containerOrchestrationType": "ECS",
    }


def test_cancel_and_terminate_refuse_an_empty_job_id(batch: BatchClient) -> None:
    with client_exception("jobId"):
        batch.cancel_job(jobId="", reason="r")
    with client_exception("jobId"):
        batch.terminate_job(jobId="", reason="r")


def test_sequential_dependency_on_a_plain_job_is_an_ordinary_dependency(batch: BatchClient) -> None:
    queue = make_queue(batch)
    definition = batch.register_job_definition(
        jobDefinitionName=unique("jd"),
        type="container",
        containerProperties={
            "image": "busybox",
            "command": ["sh", "-c", "sleep 0.5"],
            "resourceRequirements": [{"type": "VCPU", "value": "1"}, {"type": "MEMORY", "value": "64"}],
        },
    )["jobDefinitionArn"]
    first = batch.submit_job(jobName="first", jobQueue=queue, jobDefinition=definition)["jobId"]
    second = batch.submit_job(
        jobName="second", jobQueue=queue, jobDefinition=definition, dependsOn=[{"jobId": first, "type": "SEQUENTIAL"}]
    )["jobId"]
    done = wait_for_status(batch, second, ["SUCCEEDED", "FAILED"])
    assert done["status"] == "SUCCEEDED"
    before = batch.describe_jobs(jobs=[first])["jobs"][0]
    assert before["stoppedAt"] <= done["startedAt"]
    assert done["dependsOn"] == [{"jobId": first, "type": "SEQUENTIAL"}]
    with client_exception("SEQUENTIAL"):
        batch.submit_job(jobName="x", jobQueue=queue, jobDefinition=definition, dependsOn=[{"type": "SEQUENTIAL"}])


@pytest.mark.parametrize(
    ("tags", "fragment"),
    [
        ({f"k{i}": "v" for i in range(51)}, "at most 50 tags"),
        ({"k" * 129: "v"}, "1 to 128"),
        ({"key": "v" * 257}, "at most 256"),
        ({"aws:owner": "me"}, "reserved prefix"),
    ],
)
def test_tag_limits(batch: BatchClient, tags: dict[str, str], fragment: str) -> None:
    with client_exception(fragment):
        batch.create_compute_environment(computeEnvironmentName=unique("ce"), type="UNMANAGED", tags=tags)
    arn = batch.describe_job_queues(jobQueues=["default"])["jobQueues"][0]["jobQueueArn"]
    with client_exception(fragment):
        batch.tag_resource(resourceArn=arn, tags=tags)
    at_limit = {f"k{i}": "v" * 256 for i in range(50)}
    name = unique("ce")
    batch.create_compute_environment(computeEnvironmentName=name, type="UNMANAGED", tags=at_limit)
    assert batch.describe_compute_environments(computeEnvironments=[name])["computeEnvironments"][0]["tags"] == at_limit


def test_newer_resources_check_their_members(batch: BatchClient) -> None:
    with client_exception("NUM_INSTANCES"):
        batch.create_service_environment(
            serviceEnvironmentName=unique("se"),
            serviceEnvironmentType="SAGEMAKER_TRAINING",
            capacityLimits=[{"maxCapacity": 1, "capacityUnit": "VCPU"}],
        )
    with client_exception("resourceType"):
        batch.create_consumable_resource(consumableResourceName=unique("cr"), totalQuantity=1, resourceType="SOMETIMES")
    with client_exception("borrowLimit", "LEND_AND_BORROW"):
        batch.create_quota_share(
            quotaShareName=unique("qs"),
            jobQueue="default",
            capacityLimits=[{"maxCapacity": 1, "capacityUnit": "NUM_INSTANCES"}],
            resourceSharingConfiguration={"strategy": "RESERVE", "borrowLimit": 10},
            preemptionConfiguration={"inSharePreemption": "DISABLED"},
        )
