"""Job queue use cases (Create/Update/Delete/DescribeJobQueues)."""

from __future__ import annotations

from typing import Any

from openbatch.domain.arns import ResourceType, name_from_reference
from openbatch.domain.errors import Conflict, NotFound, ValidationError
from openbatch.domain.validation import check_name, check_range, check_tags
from openbatch.service import compute_environments as ces
from openbatch.service import request_models as s
from openbatch.service import scheduling_policies as policies
from openbatch.service import service_environments
from openbatch.service.context import Caller, ServiceContext
from openbatch.service.pagination import resource_page

KIND = ResourceType.JOB_QUEUE.value
HEALTHY = "JobQueue Healthy"
MAX_COMPUTE_ENVIRONMENTS = 3
_FARGATE = {"FARGATE", "FARGATE_SPOT"}
SERVICE_QUEUE_TYPES = ("SAGEMAKER_TRAINING",)
"""Queue types whose jobs are service jobs (SubmitServiceJob), ordered over service environments."""


def resolve_name(reference: str) -> str:
    return name_from_reference(reference, ResourceType.JOB_QUEUE)


def get_body(ctx: ServiceContext, reference: str) -> dict[str, Any]:
    record = ctx.store.get_resource(KIND, resolve_name(reference))
    if record is None:
        raise NotFound(f"JobQueue {reference} not found")
    return record.body


def _resolve_order(ctx: ServiceContext, order: list[s.ComputeEnvironmentOrder]) -> list[dict[str, Any]]:
    if not 1 <= len(order) <= MAX_COMPUTE_ENVIRONMENTS:
        raise ValidationError(f"computeEnvironmentOrder must list 1 to {MAX_COMPUTE_ENVIRONMENTS} compute environments")
    if len({e.order for e in order}) != len(order):
        raise ValidationError("computeEnvironmentOrder entries must have distinct order values")
    resolved, kinds = [], set()
    for entry in order:
        record = ctx.store.get_resource(ces.KIND, ces.resolve_name(entry.computeEnvironment))
        if record is None:
            raise ValidationError(
                f"computeEnvironmentOrder: ComputeEnvironment {entry.computeEnvironment} does not exist"
            )
        if record.body.get("status") != "VALID":
            raise ValidationError(f"ComputeEnvironment {record.name} is not VALID")
        resource_type = record.body.get("computeResources", {}).get("type", "EC2")
        kinds.add("FARGATE" if resource_type in _FARGATE else "EC2")
        resolved.append({"order": entry.order, "computeEnvironment": record.arn})
    if len(kinds) > 1:
        raise ValidationError("A job queue cannot mix Fargate and EC2/SPOT compute environments")
    return resolved


def _check_policy(ctx: ServiceContext, arn: str) -> None:
    policies.get_body(ctx, arn)


def _check_time_limit_actions(actions: list[s.JobStateTimeLimitAction]) -> list[dict[str, Any]]:
    if len(actions) > 5:
        raise ValidationError("jobStateTimeLimitActions can hold at most 5 actions")
    for action in actions:
        # AWS's minimum is 600 s; shorter limits are accepted as an OpenBatch
        # extension so that stuck-job handling can be exercised quickly.
        check_range("jobStateTimeLimitActions.maxTimeSeconds", action.maxTimeSeconds, 1, 86400)
        if action.action != "CANCEL":
            raise ValidationError("jobStateTimeLimitActions.action must be CANCEL for this job queue type")
    return [a.echo() for a in actions]


def create(ctx: ServiceContext, caller: Caller, req: s.CreateJobQueue) -> dict[str, Any]:
    name = check_name("Job queue", req.jobQueueName)
    check_range("priority", req.priority, 0, 1000)
    if req.jobQueueType in SERVICE_QUEUE_TYPES:
        return _create_service_queue(ctx, caller, req, name)
    if req.serviceEnvironmentOrder:
        raise ValidationError("serviceEnvironmentOrder is only valid for a job queue of type SAGEMAKER_TRAINING")
    if not req.computeEnvironmentOrder:
        raise ValidationError("computeEnvironmentOrder must list at least one compute environment")
    order = _resolve_order(ctx, req.computeEnvironmentOrder)
    if req.schedulingPolicyArn is not None:
        _check_policy(ctx, req.schedulingPolicyArn)
    arn = caller.arns.build(ResourceType.JOB_QUEUE, name)
    body = req.echo()
    body.update(
        jobQueueArn=arn,
        state=req.state or "ENABLED",
        status="VALID",
        statusReason=HEALTHY,
        computeEnvironmentOrder=order,
        jobQueueType=req.jobQueueType or "ECS",
        tags=check_tags(req.tags),
        jobStateTimeLimitActions=_check_time_limit_actions(req.jobStateTimeLimitActions or []),
    )
    body.pop("serviceEnvironmentOrder", None)
    ctx.store.insert_resource(KIND, name, arn, ctx.clock.now_ms(), body)
    ctx.resources_changed()
    return {"jobQueueName": name, "jobQueueArn": arn}


def _create_service_queue(ctx: ServiceContext, caller: Caller, req: s.CreateJobQueue, name: str) -> dict[str, Any]:
    """A queue for service jobs: it orders service environments instead of compute environments."""
    if req.computeEnvironmentOrder:
        raise ValidationError(f"A job queue of type {req.jobQueueType} cannot list compute environments")
    if not req.serviceEnvironmentOrder:
        raise ValidationError(f"A job queue of type {req.jobQueueType} needs serviceEnvironmentOrder")
    if req.schedulingPolicyArn is not None:
        _check_policy(ctx, req.schedulingPolicyArn)
    arn = caller.arns.build(ResourceType.JOB_QUEUE, name)
    body = req.echo()
    body.update(
        jobQueueArn=arn,
        state=req.state or "ENABLED",
        status="VALID",
        statusReason=HEALTHY,
        computeEnvironmentOrder=[],
        serviceEnvironmentOrder=service_environments.resolve_order(ctx, req.serviceEnvironmentOrder),
        tags=check_tags(req.tags),
        jobStateTimeLimitActions=_check_time_limit_actions(req.jobStateTimeLimitActions or []),
    )
    ctx.store.insert_resource(KIND, name, arn, ctx.clock.now_ms(), body)
    ctx.resources_changed()
    return {"jobQueueName": name, "jobQueueArn": arn}


def update(ctx: ServiceContext, req: s.UpdateJobQueue) -> dict[str, Any]:
    body = get_body(ctx, req.jobQueue)
    if req.priority is not None:
        check_range("priority", req.priority, 0, 1000)
        body["priority"] = req.priority
    if req.state is not None:
        body["state"] = req.state
    service_queue = body.get("jobQueueType") in SERVICE_QUEUE_TYPES
    if req.computeEnvironmentOrder is not None:
        if service_queue:
            raise ValidationError(f"A job queue of type {body['jobQueueType']} cannot list compute environments")
        body["computeEnvironmentOrder"] = _resolve_order(ctx, req.computeEnvironmentOrder)
    if req.serviceEnvironmentOrder is not None:
        if not service_queue:
            raise ValidationError("serviceEnvironmentOrder is only valid for a job queue of type SAGEMAKER_TRAINING")
        body["serviceEnvironmentOrder"] = service_environments.resolve_order(ctx, req.serviceEnvironmentOrder)
    if req.schedulingPolicyArn is not None:
        _check_policy(ctx, req.schedulingPolicyArn)
        body["schedulingPolicyArn"] = req.schedulingPolicyArn
    if req.jobStateTimeLimitActions is not None:
        body["jobStateTimeLimitActions"] = _check_time_limit_actions(req.jobStateTimeLimitActions)
    ctx.store.update_resource(KIND, body["jobQueueName"], body)
    ctx.resources_changed()
    return {"jobQueueName": body["jobQueueName"], "jobQueueArn": body["jobQueueArn"]}


def delete(ctx: ServiceContext, req: s.DeleteJobQueue) -> dict[str, Any]:
    body = get_body(ctx, req.jobQueue)
    if body.get("state") != "DISABLED":
        raise Conflict(f"Cannot delete JobQueue {body['jobQueueName']}: it must be DISABLED first")
    ctx.store.delete_resource(KIND, body["jobQueueName"])
    ctx.resources_changed()
    return {}


def describe(ctx: ServiceContext, req: s.DescribeJobQueues) -> dict[str, Any]:
    names = None
    if req.jobQueues is not None:
        if len(req.jobQueues) > 100:
            raise ValidationError("jobQueues can list at most 100 names or ARNs")
        names = [resolve_name(r) for r in req.jobQueues]
    return resource_page(
        ctx.store, KIND, "jobQueues", names=names, max_results=req.maxResults, next_token=req.nextToken
    )
