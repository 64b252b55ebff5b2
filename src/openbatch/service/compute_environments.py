"""Compute environment use cases (Create/Update/Delete/DescribeComputeEnvironments)."""

from __future__ import annotations

import uuid
from typing import Any

from openbatch.domain.arns import ResourceType, name_from_reference
from openbatch.domain.errors import Conflict, NotFound, ValidationError
from openbatch.domain.validation import check_name, check_tags
from openbatch.executors.binding import check_binding_tags
from openbatch.service import compute_rules
from openbatch.service import request_models as s
from openbatch.service.context import Caller, ServiceContext
from openbatch.service.pagination import resource_page

KIND = ResourceType.COMPUTE_ENVIRONMENT.value
HEALTHY = "ComputeEnvironment Healthy"


def resolve_name(reference: str) -> str:
    return name_from_reference(reference, ResourceType.COMPUTE_ENVIRONMENT)


def get_body(ctx: ServiceContext, reference: str) -> dict[str, Any]:
    record = ctx.store.get_resource(KIND, resolve_name(reference))
    if record is None:
        raise NotFound(f"ComputeEnvironment {reference} does not exist")
    return record.body


def _check_vcpus(resources: dict[str, Any]) -> None:
    low, high = resources.get("minvCpus", 0), resources.get("maxvCpus", 0)
    desired = resources.get("desiredvCpus")
    if low < 0 or high < 0:
        raise ValidationError("minvCpus and maxvCpus must not be negative")
    if low > high:
        raise ValidationError(f"minvCpus ({low}) cannot be greater than maxvCpus ({high})")
    if desired is not None and not low <= desired <= high:
        raise ValidationError(f"desiredvCpus ({desired}) must be between minvCpus ({low}) and maxvCpus ({high})")


def _check_definition(req: s.CreateComputeEnvironment) -> None:
    """CreateComputeEnvironment's rules, which every stored compute environment satisfies."""
    if req.type == "MANAGED":
        if req.computeResources is None:
            raise ValidationError("computeResources must be specified for a MANAGED compute environment")
        _check_vcpus(req.computeResources.echo())
    elif req.computeResources is not None:
        raise ValidationError("computeResources cannot be specified for an UNMANAGED compute environment")


def create(ctx: ServiceContext, caller: Caller, req: s.CreateComputeEnvironment) -> dict[str, Any]:
    name = check_name("Compute environment", req.computeEnvironmentName)
    _check_definition(req)
    check_binding_tags(req.tags)
    body = req.echo()
    if req.type == "MANAGED" and req.computeResources is not None:
        compute_rules.check_create(body["computeResources"])
    if req.type == "MANAGED":
        body["computeResources"].setdefault("minvCpus", 0)
    arn = caller.arns.build(ResourceType.COMPUTE_ENVIRONMENT, name)
    env_uuid = str(uuid.uuid4())
    body.update(
        computeEnvironmentArn=arn,
        state=req.state or "ENABLED",
        status="VALID",
        statusReason=HEALTHY,
        tags=check_tags(req.tags),
        uuid=env_uuid,
        containerOrchestrationType="ECS",
        ecsClusterArn=f"arn:aws:ecs:{caller.region}:{caller.account}:cluster/{name}_Batch_{env_uuid}",
    )
    ctx.store.insert_resource(KIND, name, arn, ctx.clock.now_ms(), body)
    ctx.resources_changed()
    return {"computeEnvironmentName": name, "computeEnvironmentArn": arn}


def update(ctx: ServiceContext, req: s.UpdateComputeEnvironment) -> dict[str, Any]:
    body = get_body(ctx, req.computeEnvironment)
    changes = req.echo()
    changes.pop("computeEnvironment")
    if "computeResources" in changes:
        if body.get("type") != "MANAGED":
            raise ValidationError("computeResources cannot be updated on an UNMANAGED compute environment")
        merged = {**body["computeResources"], **changes.pop("computeResources")}
        _check_vcpus(merged)
        body["computeResources"] = merged
    if "unmanagedvCpus" in changes and body.get("type") == "MANAGED":
        raise ValidationError("unmanagedvCpus can only be set on an UNMANAGED compute environment")
    body.update(changes)
    # An update can never store what a create would refuse: the merged result passes create's rules.
    _check_definition(s.CreateComputeEnvironment.model_validate(body))
    ctx.store.update_resource(KIND, body["computeEnvironmentName"], body)
    ctx.resources_changed()
    return {
        "computeEnvironmentName": body["computeEnvironmentName"],
        "computeEnvironmentArn": body["computeEnvironmentArn"],
    }


def delete(ctx: ServiceContext, req: s.DeleteComputeEnvironment) -> dict[str, Any]:
    body = get_body(ctx, req.computeEnvironment)
    name = body["computeEnvironmentName"]
    if body.get("state") != "DISABLED":
        raise Conflict(f"Cannot delete ComputeEnvironment {name}: it must be DISABLED first")
    for queue in ctx.store.list_resources(ResourceType.JOB_QUEUE.value):
        for entry in queue.body.get("computeEnvironmentOrder", []):
            if resolve_name(entry["computeEnvironment"]) == name:
                raise Conflict(
                    f"Cannot delete ComputeEnvironment {name}: it is still attached to job queue "
                    f"{queue.name}; remove it from the queue's computeEnvironmentOrder first"
                )
    ctx.store.delete_resource(KIND, name)
    ctx.resources_changed()
    return {}


def describe(ctx: ServiceContext, req: s.DescribeComputeEnvironments) -> dict[str, Any]:
    names = None
    if req.computeEnvironments is not None:
        if len(req.computeEnvironments) > 100:
            raise ValidationError("computeEnvironments can list at most 100 names or ARNs")
        names = [resolve_name(r) for r in req.computeEnvironments]
    return resource_page(
        ctx.store, KIND, "computeEnvironments", names=names, max_results=req.maxResults, next_token=req.nextToken
    )
