"""Service environments (Create/Describe/Update/DeleteServiceEnvironment).

AWS runs service jobs on Amazon SageMaker; OpenBatch stores and describes these
environments exactly as the API defines them, so infrastructure code that
creates them works, and job queues of type SAGEMAKER_TRAINING can order them.
"""

from __future__ import annotations

from typing import Any

from openbatch.domain.arns import ResourceType
from openbatch.domain.errors import Conflict, ValidationError
from openbatch.domain.validation import check_name, check_tags
from openbatch.service import named_resources as nr
from openbatch.service.context import Caller, ServiceContext
from openbatch.service.pagination import resource_page

TYPE = ResourceType.SERVICE_ENVIRONMENT
KIND = TYPE.value
LABEL = "ServiceEnvironment"
CAPACITY_UNITS = {"SAGEMAKER_TRAINING": "NUM_INSTANCES"}
MAX_ORDER = 3
"""As for compute environments; AWS's documentation gives no other limit."""


def _check_capacity_limits(limits: list[dict[str, Any]], environment_type: str) -> list[dict[str, Any]]:
    if not limits:
        raise ValidationError("capacityLimits must list at least one capacity limit")
    unit = CAPACITY_UNITS[environment_type]
    for limit in limits:
        if limit.get("capacityUnit") != unit:
            raise ValidationError(
                f"capacityLimits.capacityUnit must be {unit} for a {environment_type} service environment; "
                f"got {limit.get('capacityUnit')!r}"
            )
        if limit.get("maxCapacity") is None or limit["maxCapacity"] < 1:
            raise ValidationError("capacityLimits.maxCapacity must be at least 1")
    return limits


def create(ctx: ServiceContext, caller: Caller, req: dict[str, Any]) -> dict[str, Any]:
    name = check_name("Service environment", req["serviceEnvironmentName"])
    environment_type = req["serviceEnvironmentType"]
    arn = caller.arns.build(TYPE, name)
    body = {
        "serviceEnvironmentName": name,
        "serviceEnvironmentArn": arn,
        "serviceEnvironmentType": environment_type,
        "state": req.get("state") or "ENABLED",
        "status": "VALID",
        "capacityLimits": _check_capacity_limits(req.get("capacityLimits") or [], environment_type),
        "tags": check_tags(req.get("tags")),
    }
    ctx.store.insert_resource(KIND, name, arn, ctx.clock.now_ms(), body)
    return {"serviceEnvironmentName": name, "serviceEnvironmentArn": arn}


def update(ctx: ServiceContext, req: dict[str, Any]) -> dict[str, Any]:
    record = nr.get(ctx, req["serviceEnvironment"], TYPE, LABEL)
    body = dict(record.body)
    if req.get("state") is not None:
        body["state"] = req["state"]
    if req.get("capacityLimits") is not None:
        body["capacityLimits"] = _check_capacity_limits(req["capacityLimits"], body["serviceEnvironmentType"])
    ctx.store.update_resource(KIND, record.name, body)
    return {"serviceEnvironmentName": record.name, "serviceEnvironmentArn": record.arn}


def delete(ctx: ServiceContext, req: dict[str, Any]) -> dict[str, Any]:
    record = nr.get(ctx, req["serviceEnvironment"], TYPE, LABEL)
    if record.body.get("state") != "DISABLED":
        raise Conflict(f"Cannot delete ServiceEnvironment {record.name}: it must be DISABLED first")
    for queue in ctx.store.list_resources(ResourceType.JOB_QUEUE.value):
        for entry in queue.body.get("serviceEnvironmentOrder", []):
            if entry.get("serviceEnvironment") == record.arn:
                raise Conflict(
                    f"Cannot delete ServiceEnvironment {record.name}: it is still attached to job queue "
                    f"{queue.name}; remove it from the queue's serviceEnvironmentOrder first"
                )
    ctx.store.delete_resource(KIND, record.name)
    return {}


def describe(ctx: ServiceContext, req: dict[str, Any]) -> dict[str, Any]:
    names = None
    if req.get("serviceEnvironments") is not None:
        if len(req["serviceEnvironments"]) > 100:
            raise ValidationError("serviceEnvironments can list at most 100 names or ARNs")
        names = [nr.resolve(r, TYPE) for r in req["serviceEnvironments"]]
    return resource_page(
        ctx.store,
        KIND,
        "serviceEnvironments",
        names=names,
        max_results=req.get("maxResults"),
        next_token=req.get("nextToken"),
    )


def resolve_order(ctx: ServiceContext, order: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """A job queue's ``serviceEnvironmentOrder`` with each entry resolved to its ARN."""
    if not 1 <= len(order) <= MAX_ORDER:
        raise ValidationError(f"serviceEnvironmentOrder must list 1 to {MAX_ORDER} service environments")
    resolved = []
    for entry in order:
        reference, position = entry.get("serviceEnvironment"), entry.get("order")
        if not isinstance(reference, str) or not isinstance(position, int) or isinstance(position, bool):
            raise ValidationError("serviceEnvironmentOrder entries need an integer order and a serviceEnvironment")
        record = ctx.store.get_resource(KIND, nr.resolve(reference, TYPE))
        if record is None:
            raise ValidationError(f"serviceEnvironmentOrder: ServiceEnvironment {reference} does not exist")
        resolved.append({"order": position, "serviceEnvironment": record.arn})
    return resolved
