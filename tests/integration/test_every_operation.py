"""Every operation of the installed botocore Batch model, called through boto3 against a
real server, each response checked member by member against the model's output shape."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import pytest
from botocore.exceptions import ClientError

from tests.model_shapes import batch_model, response_problems
from tests.support import ServerProcess, client_exception, unique, wait_for_status

if TYPE_CHECKING:
    from mypy_boto3_batch import BatchClient
    from mypy_boto3_batch.type_defs import ComputeResourceTypeDef

MODEL = batch_model()
EC2_RESOURCES: ComputeResourceTypeDef = {
    "type": "EC2",
    "maxvCpus": 4,
    "minvCpus": 0,
    "instanceTypes": ["optimal"],
    "subnets": ["subnet-0123456789abcdef0"],
    "securityGroupIds": ["sg-0123456789abcdef0"],
    "instanceRole": "ecsInstanceRole",
}


class Recorder:
    """Records the raw JSON body of every Batch response, keyed by operation name."""

    def __init__(self, batch: BatchClient) -> None:
        self.bodies: dict[str, list[dict[str, Any]]] = {}
        self.failed: dict[str, str] = {}
        batch.meta.events.register("after-call.batch", self._after_call)

    def _after_call(self, http_response: Any, parsed: Any, model: Any, **_: Any) -> None:
        if http_response.status_code != 200:
            return
        body = json.loads(http_response.content or b"{}")
        self.bodies.setdefault(model.name, []).append(body)

    def expect_error(self, name: str, call: Callable[[], Any], *fragments: str) -> None:
        with client_exception(*fragments):
            call()
        self.failed[name] = "ClientException"


@pytest.fixture(scope="module")
def recorded(server: ServerProcess) -> tuple[BatchClient, Recorder]:
    batch = server.batch()
    return batch, Recorder(batch)


def test_every_operation_answers_in_the_models_shape(recorded: tuple[BatchClient, Recorder]) -> None:
    batch, rec = recorded
    ce, queue, policy = unique("ce"), unique("q"), unique("sp")
    batch.create_compute_environment(computeEnvironmentName=ce, type="MANAGED", computeResources=EC2_RESOURCES)
    batch.describe_compute_environments(computeEnvironments=[ce])
    batch.update_compute_environment(computeEnvironment=ce, computeResources={"maxvCpus": 8})
    policy_arn = batch.create_scheduling_policy(
        name=policy, fairsharePolicy={"shareDistribution": [{"shareIdentifier": "a", "weightFactor": 1.0}]}
    )["arn"]
    batch.describe_scheduling_policies(arns=[policy_arn])
    batch.list_scheduling_policies()
    batch.update_scheduling_policy(arn=policy_arn, fairsharePolicy={"shareDecaySeconds": 60})
    queue_arn = batch.create_job_queue(
        jobQueueName=queue, priority=1, computeEnvironmentOrder=[{"order": 1, "computeEnvironment": ce}]
    )["jobQueueArn"]
    batch.describe_job_queues(jobQueues=[queue])
    batch.update_job_queue(jobQueue=queue, priority=2)

    licence = unique("licence")
    licence_arn = batch.create_consumable_resource(
        consumableResourceName=licence, totalQuantity=3, resourceType="REPLENISHABLE", tags={"team": "a"}
    )["consumableResourceArn"]
    batch.describe_consumable_resource(consumableResource=licence)
    batch.list_consumable_resources(filters=[{"name": "CONSUMABLE_RESOURCE_NAME", "values": [licence]}])
    batch.update_consumable_resource(consumableResource=licence_arn, operation="ADD", quantity=2)

    definition = batch.register_job_definition(
        jobDefinitionName=unique("jd"),
        type="container",
        containerProperties={
            "image": "busybox",
            "command": ["sleep", "30"],
            "resourceRequirements": [{"type": "VCPU", "value": "1"}, {"type": "MEMORY", "value": "64"}],
        },
    )["jobDefinitionArn"]
    batch.describe_job_definitions(jobDefinitions=[definition])
    first = batch.submit_job(jobName=unique("job"), jobQueue=queue, jobDefinition=definition)["jobId"]
    # Two PENDING behind the first, so that cancelling them takes effect (a RUNNING job ignores CancelJob).
    job_ids = [first] + [
        batch.submit_job(jobName=unique("job"), jobQueue=queue, jobDefinition=definition, dependsOn=[{"jobId": first}])[
            "jobId"
        ]
        for _ in range(2)
    ]
    job_ids.append(batch.submit_job(jobName=unique("job"), jobQueue=queue, jobDefinition=definition)["jobId"])
    wait_for_status(batch, job_ids[0], ["RUNNING"])
    batch.describe_jobs(jobs=job_ids)
    batch.list_jobs(jobQueue=queue, jobStatus="RUNNING")
    batch.get_job_queue_snapshot(jobQueue=queue)
    batch.list_jobs_by_consumable_resource(consumableResource=licence)
    batch.cancel_job(jobId=job_ids[1], reason="test")
    batch.terminate_job(jobId=job_ids[0], reason="test")
    batch.cancel_jobs(jobs=[job_ids[2]], reason="test")
    batch.terminate_jobs(jobs=[job_ids[3]], reason="test")
    for job_id in job_ids:
        wait_for_status(batch, job_id, ["FAILED"])
    batch.describe_jobs(jobs=job_ids)

    batch.tag_resource(resourceArn=queue_arn, tags={"stage": "test"})
    batch.list_tags_for_resource(resourceArn=licence_arn)
    batch.untag_resource(resourceArn=queue_arn, tagKeys=["stage"])

    environment = unique("se")
    batch.create_service_environment(
        serviceEnvironmentName=environment,
        serviceEnvironmentType="SAGEMAKER_TRAINING",
        capacityLimits=[{"maxCapacity": 4, "capacityUnit": "NUM_INSTANCES"}],
        tags={"team": "a"},
    )
    batch.describe_service_environments(serviceEnvironments=[environment])
    batch.update_service_environment(
        serviceEnvironment=environment, capacityLimits=[{"maxCapacity": 8, "capacityUnit": "NUM_INSTANCES"}]
    )
    service_queue = unique("sq")
    batch.create_job_queue(
        jobQueueName=service_queue,
        priority=1,
        jobQueueType="SAGEMAKER_TRAINING",
        serviceEnvironmentOrder=[{"order": 1, "serviceEnvironment": environment}],
    )
    share_arn = batch.create_quota_share(
        quotaShareName=unique("share"),
        jobQueue=service_queue,
        capacityLimits=[{"maxCapacity": 2, "capacityUnit": "NUM_INSTANCES"}],
        resourceSharingConfiguration={"strategy": "LEND_AND_BORROW", "borrowLimit": 50},
        preemptionConfiguration={"inSharePreemption": "DISABLED"},
    )["quotaShareArn"]
    batch.describe_quota_share(quotaShareArn=share_arn)
    batch.list_quota_shares(jobQueue=service_queue)
    batch.update_quota_share(quotaShareArn=share_arn, state="DISABLED")
    rec.expect_error(
        "SubmitServiceJob",
        lambda: batch.submit_service_job(
            jobName="train",
            jobQueue=service_queue,
            serviceJobType="SAGEMAKER_TRAINING",
            serviceRequestPayload="{}",
        ),
        "cannot run on OpenBatch",
    )
    missing = "00000000-0000-0000-0000-000000000000"
    rec.expect_error("DescribeServiceJob", lambda: batch.describe_service_job(jobId=missing), "does not exist")
    rec.expect_error(
        "UpdateServiceJob", lambda: batch.update_service_job(jobId=missing, schedulingPriority=1), "does not exist"
    )
    rec.expect_error(
        "TerminateServiceJob", lambda: batch.terminate_service_job(jobId=missing, reason="x"), "does not exist"
    )
    batch.list_service_jobs(jobQueue=service_queue)
    batch.terminate_service_jobs(jobs=[missing], reason="x")

    batch.delete_quota_share(quotaShareArn=share_arn)
    batch.update_job_queue(jobQueue=service_queue, state="DISABLED")
    batch.delete_job_queue(jobQueue=service_queue)
    batch.update_service_environment(serviceEnvironment=environment, state="DISABLED")
    batch.delete_service_environment(serviceEnvironment=environment)
    batch.delete_consumable_resource(consumableResource=licence)
    batch.deregister_job_definition(jobDefinition=definition)
    batch.update_job_queue(jobQueue=queue, state="DISABLED")
    batch.delete_job_queue(jobQueue=queue)
    batch.update_compute_environment(computeEnvironment=ce, state="DISABLED")
    batch.delete_compute_environment(computeEnvironment=ce)
    batch.delete_scheduling_policy(arn=policy_arn)

    called = set(rec.bodies) | set(rec.failed)
    assert called == set(MODEL.operation_names), sorted(set(MODEL.operation_names) ^ called)
    problems = [
        f"{name}: {problem}"
        for name, bodies in rec.bodies.items()
        for body in bodies
        for problem in response_problems(MODEL.operation_model(name), body)
    ]
    assert not problems, "\n".join(problems)


def test_no_model_operation_is_unknown(server: ServerProcess) -> None:
    """An empty request to each route gets a validation error or an answer, never ``Unknown operation``."""
    import httpx

    with httpx.Client(base_url=server.url) as client:
        for name in MODEL.operation_names:
            http = MODEL.operation_model(name).http
            uri = http["requestUri"].replace("{resourceArn}", "arn%3Aaws%3Abatch%3Aus-east-1%3A1%3Ajob-queue%2Fnone")
            response = client.request(http["method"], uri, content=b"{}" if http["method"] == "POST" else None)
            assert "unknown operation" not in response.text.lower(), (name, response.text)


def test_service_job_submission_explains_why_it_cannot_run(batch: BatchClient) -> None:
    queue = unique("q")
    batch.create_compute_environment(computeEnvironmentName=queue, type="MANAGED", computeResources=EC2_RESOURCES)
    batch.create_job_queue(
        jobQueueName=queue, priority=1, computeEnvironmentOrder=[{"order": 1, "computeEnvironment": queue}]
    )
    with client_exception("type ECS", "cannot accept service jobs"):
        batch.submit_service_job(
            jobName="train", jobQueue=queue, serviceJobType="SAGEMAKER_TRAINING", serviceRequestPayload="{}"
        )
    with pytest.raises(ClientError):
        batch.submit_service_job(
            jobName="train", jobQueue=unique("none"), serviceJobType="SAGEMAKER_TRAINING", serviceRequestPayload="{}"
        )
