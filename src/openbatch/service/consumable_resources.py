"""Consumable resources (Create/Describe/List/Update/DeleteConsumableResource,
ListJobsByConsumableResource): counted things outside compute environments, such as
licence tokens or connections to a rate-limited system.

A job holds its quantities from STARTING until it ends. A REPLENISHABLE resource
gets them back then; a NON_REPLENISHABLE one never does: the quantity is taken off
``totalQuantity`` for good (AWS user guide, "Check how many resources are in-use
and available"). What jobs hold now comes from a :class:`ConsumableUsage`, owned
by the scheduler side.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

from openbatch.domain.arns import ResourceType
from openbatch.domain.errors import Conflict, ValidationError
from openbatch.domain.validation import check_name, check_tags
from openbatch.service import named_resources as nr
from openbatch.service.context import Caller, ServiceContext
from openbatch.store.base import ResourceRecord

TYPE = ResourceType.CONSUMABLE_RESOURCE
KIND = TYPE.value
LABEL = "ConsumableResource"
REPLENISHABLE = "REPLENISHABLE"
NON_REPLENISHABLE = "NON_REPLENISHABLE"
RESOURCE_TYPES = (REPLENISHABLE, NON_REPLENISHABLE)
OPERATIONS = ("SET", "ADD", "REMOVE")
MAX_QUANTITY = 2**63 - 1
JOB_STATUSES = ("SUBMITTED", "PENDING", "RUNNABLE", "STARTING", "RUNNING", "SUCCEEDED", "FAILED")


@dataclass(frozen=True, slots=True, kw_only=True)
class JobUse:
    """One job that requires a consumable resource, as ListJobsByConsumableResource reports it."""

    job_id: str
    job_arn: str
    job_queue_arn: str
    job_name: str
    job_definition_arn: str | None
    share_identifier: str | None
    status: str
    status_reason: str | None
    started_at: int | None
    created_at: int
    quantity: int
    requirements: list[dict[str, Any]]


class ConsumableUsage(Protocol):
    """What the scheduler knows about consumable resources in use."""

    def in_use(self, name: str) -> int:
        """Quantity held by jobs in STARTING or RUNNING."""
        ...

    def jobs_using(self, name: str) -> list[JobUse]:
        """Jobs that require ``name``, oldest first."""
        ...


class NoUsage:
    """Usage before the scheduler is wired: nothing held, no jobs."""

    def in_use(self, name: str) -> int:
        return 0

    def jobs_using(self, name: str) -> list[JobUse]:
        return []


def _check_quantity(member: str, value: int | None) -> int:
    if value is None:
        raise ValidationError(f"{member} is required")
    if not 0 <= value <= MAX_QUANTITY:
        raise ValidationError(f"{member} must be between 0 and {MAX_QUANTITY}; got {value}")
    return value


def get_record(ctx: ServiceContext, reference: str) -> ResourceRecord:
    return nr.get(ctx, reference, TYPE, LABEL)


def _detail(record: ResourceRecord, usage: ConsumableUsage) -> dict[str, Any]:
    body = record.body
    in_use = usage.in_use(record.name)
    total = int(body["totalQuantity"])
    return {
        "consumableResourceName": record.name,
        "consumableResourceArn": record.arn,
        "totalQuantity": total,
        "inUseQuantity": in_use,
        "availableQuantity": max(total - in_use, 0),
        "resourceType": body["resourceType"],
        "createdAt": record.created_at,
        "tags": body.get("tags", {}),
    }


def create(ctx: ServiceContext, caller: Caller, req: dict[str, Any]) -> dict[str, Any]:
    name = check_name("Consumable resource", req["consumableResourceName"])
    resource_type = req.get("resourceType") or REPLENISHABLE
    if resource_type not in RESOURCE_TYPES:
        raise ValidationError(f"resourceType must be REPLENISHABLE or NON_REPLENISHABLE; got {resource_type!r}")
    total = _check_quantity("totalQuantity", req.get("totalQuantity"))
    arn = caller.arns.build(TYPE, name)
    body = {
        "consumableResourceName": name,
        "consumableResourceArn": arn,
        "totalQuantity": total,
        "resourceType": resource_type,
        "tags": check_tags(req.get("tags")),
    }
    ctx.store.insert_resource(KIND, name, arn, ctx.clock.now_ms(), body)
    ctx.resources_changed()
    return {"consumableResourceName": name, "consumableResourceArn": arn}


def describe(ctx: ServiceContext, usage: ConsumableUsage, req: dict[str, Any]) -> dict[str, Any]:
    return _detail(get_record(ctx, req["consumableResource"]), usage)


def update(ctx: ServiceContext, usage: ConsumableUsage, req: dict[str, Any]) -> dict[str, Any]:
    record = get_record(ctx, req["consumableResource"])
    operation = req.get("operation") or "SET"
    if operation not in OPERATIONS:
        raise ValidationError(f"operation must be SET, ADD or REMOVE; got {operation!r}")
    quantity = _check_quantity("quantity", req.get("quantity"))
    total = int(record.body["totalQuantity"])
    if operation == "SET":
        total = quantity
    elif operation == "ADD":
        total += quantity
    else:
        if quantity > total:
            raise ValidationError(f"Cannot REMOVE {quantity}: the total quantity of {record.name} is {total}")
        total -= quantity
    _check_quantity("totalQuantity", total)
    ctx.store.update_resource(KIND, record.name, {**record.body, "totalQuantity": total})
    ctx.resources_changed()
    return {"consumableResourceName": record.name, "consumableResourceArn": record.arn, "totalQuantity": total}


def delete(ctx: ServiceContext, usage: ConsumableUsage, req: dict[str, Any]) -> dict[str, Any]:
    record = get_record(ctx, req["consumableResource"])
    waiting = [use for use in usage.jobs_using(record.name) if use.status not in ("SUCCEEDED", "FAILED")]
    if waiting:
        raise Conflict(
            f"Cannot delete ConsumableResource {record.name}: {len(waiting)} unfinished jobs require it "
            f"(for example {waiting[0].job_id})"
        )
    ctx.store.delete_resource(KIND, record.name)
    ctx.resources_changed()
    return {}


def _one_filter(filters: list[dict[str, Any]] | None, allowed: tuple[str, ...]) -> tuple[str, list[str]] | None:
    if not filters:
        return None
    if len(filters) > 1:
        raise ValidationError("Only one filter can be given at a time")
    name, values = filters[0].get("name"), filters[0].get("values") or []
    if name not in allowed:
        raise ValidationError(f"Unknown filter {name!r}: use {' or '.join(allowed)}")
    if not values:
        raise ValidationError(f"Filter {name} needs at least one value")
    return name, values


def list_resources(ctx: ServiceContext, usage: ConsumableUsage, req: dict[str, Any]) -> dict[str, Any]:
    records = ctx.store.list_resources(KIND)
    chosen = _one_filter(req.get("filters"), ("CONSUMABLE_RESOURCE_NAME",))
    if chosen is not None:
        records = nr.filter_by_name(records, chosen[1])

    def summary(record: ResourceRecord) -> dict[str, Any]:
        detail = _detail(record, usage)
        keys = ("consumableResourceArn", "consumableResourceName", "totalQuantity", "inUseQuantity", "resourceType")
        return {k: detail[k] for k in keys}

    return nr.page(
        records,
        kind=KIND,
        key=lambda record: record.seq,
        render=summary,
        max_results=req.get("maxResults"),
        next_token=req.get("nextToken"),
        result_key="consumableResources",
    )


def list_jobs(ctx: ServiceContext, usage: ConsumableUsage, req: dict[str, Any]) -> dict[str, Any]:
    record = get_record(ctx, req["consumableResource"])
    uses = usage.jobs_using(record.name)
    chosen = _one_filter(req.get("filters"), ("JOB_STATUS", "JOB_NAME"))
    if chosen is not None:
        name, values = chosen
        if name == "JOB_STATUS":
            for value in values:
                if value not in JOB_STATUSES:
                    raise ValidationError(f"JOB_STATUS must be one of {', '.join(JOB_STATUSES)}; got {value!r}")
            uses = [use for use in uses if use.status in values]
        else:
            uses = [use for use in uses if nr.name_matches(use.job_name, values)]
    numbered = list(enumerate(uses, start=1))

    def render(item: tuple[int, JobUse]) -> dict[str, Any]:
        use = item[1]
        entry: dict[str, Any] = {
            "jobArn": use.job_arn,
            "jobQueueArn": use.job_queue_arn,
            "jobName": use.job_name,
            "jobStatus": use.status,
            "quantity": use.quantity,
            "createdAt": use.created_at,
            "consumableResourceProperties": {"consumableResourceList": use.requirements},
        }
        optional = {
            "jobDefinitionArn": use.job_definition_arn,
            "shareIdentifier": use.share_identifier,
            "statusReason": use.status_reason,
            "startedAt": use.started_at,
        }
        entry.update({k: v for k, v in optional.items() if v is not None})
        return entry

    return nr.page(
        numbered,
        kind="consumable-resource-jobs",
        key=lambda item: item[0],
        render=render,
        max_results=req.get("maxResults"),
        next_token=req.get("nextToken"),
        result_key="jobs",
    )
