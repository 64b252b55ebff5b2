"""Quota shares (Create/Describe/List/Update/DeleteQuotaShare), stored and described as
the API defines them. Quota shares divide a queue's capacity between service jobs,
which OpenBatch cannot run (see ``service_jobs``), so they are not scheduled.

Names are unique per account (the ARN is ``quota-share/<name>``), a stricter rule
than a per-queue one, so every ARN names one share.
"""

from __future__ import annotations

from typing import Any

from openbatch.domain.arns import ResourceType, parse_arn
from openbatch.domain.errors import NotFound, ValidationError
from openbatch.domain.validation import check_name, check_tags
from openbatch.service import named_resources as nr
from openbatch.service.context import Caller, ServiceContext

TYPE = ResourceType.QUOTA_SHARE
KIND = TYPE.value
DETAIL_KEYS = (
    "quotaShareName",
    "quotaShareArn",
    "jobQueueArn",
    "capacityLimits",
    "resourceSharingConfiguration",
    "preemptionConfiguration",
    "state",
    "status",
)


def _name_of(arn: str) -> str:
    if not arn:
        raise ValidationError("quotaShareArn must not be empty")
    parsed = parse_arn(arn)
    if parsed.resource_type is not TYPE:
        raise ValidationError(f"{arn!r} is not a quota share ARN")
    return parsed.resource_id


def _get(ctx: ServiceContext, arn: str) -> dict[str, Any]:
    record = ctx.store.get_resource(KIND, _name_of(arn))
    if record is None:
        raise NotFound(f"QuotaShare {arn} does not exist")
    return dict(record.body)


def _check_limits(limits: list[dict[str, Any]]) -> list[dict[str, Any]]:
    if not limits:
        raise ValidationError("capacityLimits must list at least one capacity limit")
    units = [limit["capacityUnit"] for limit in limits]
    if len(set(units)) != len(units):
        raise ValidationError("capacityLimits must not list a capacityUnit twice")
    for limit in limits:
        if limit["maxCapacity"] < 0:
            raise ValidationError("capacityLimits.maxCapacity must not be negative")
    return limits


def _check_sharing(config: dict[str, Any]) -> dict[str, Any]:
    borrow = config.get("borrowLimit")
    if borrow is not None:
        if config["strategy"] != "LEND_AND_BORROW":
            raise ValidationError("borrowLimit can only be set with the LEND_AND_BORROW strategy")
        if borrow < -1:
            raise ValidationError("borrowLimit must be -1 (unlimited) or a percentage of at least 0")
    return config


def create(ctx: ServiceContext, caller: Caller, req: dict[str, Any]) -> dict[str, Any]:
    name = check_name("Quota share", req["quotaShareName"])
    queue = nr.get(ctx, req["jobQueue"], ResourceType.JOB_QUEUE, "JobQueue")
    if queue.body.get("status") != "VALID":
        raise ValidationError(f"JobQueue {queue.name} must be VALID to hold a quota share")
    arn = caller.arns.build(TYPE, name)
    body = {
        "quotaShareName": name,
        "quotaShareArn": arn,
        "jobQueueArn": queue.arn,
        "capacityLimits": _check_limits(req["capacityLimits"]),
        "resourceSharingConfiguration": _check_sharing(req["resourceSharingConfiguration"]),
        "preemptionConfiguration": req["preemptionConfiguration"],
        "state": req.get("state") or "ENABLED",
        "status": "VALID",
        "tags": check_tags(req.get("tags")),
    }
    ctx.store.insert_resource(KIND, name, arn, ctx.clock.now_ms(), body)
    return {"quotaShareName": name, "quotaShareArn": arn}


def describe(ctx: ServiceContext, req: dict[str, Any]) -> dict[str, Any]:
    return _get(ctx, req["quotaShareArn"])


def update(ctx: ServiceContext, req: dict[str, Any]) -> dict[str, Any]:
    body = _get(ctx, req["quotaShareArn"])
    if req.get("capacityLimits") is not None:
        body["capacityLimits"] = _check_limits(req["capacityLimits"])
    if req.get("resourceSharingConfiguration") is not None:
        body["resourceSharingConfiguration"] = _check_sharing(req["resourceSharingConfiguration"])
    if req.get("preemptionConfiguration") is not None:
        body["preemptionConfiguration"] = req["preemptionConfiguration"]
    if req.get("state") is not None:
        body["state"] = req["state"]
    ctx.store.update_resource(KIND, body["quotaShareName"], body)
    return {"quotaShareName": body["quotaShareName"], "quotaShareArn": body["quotaShareArn"]}


def delete(ctx: ServiceContext, req: dict[str, Any]) -> dict[str, Any]:
    body = _get(ctx, req["quotaShareArn"])
    ctx.store.delete_resource(KIND, body["quotaShareName"])
    return {}


def list_shares(ctx: ServiceContext, req: dict[str, Any]) -> dict[str, Any]:
    queue = nr.get(ctx, req["jobQueue"], ResourceType.JOB_QUEUE, "JobQueue")
    records = [r for r in ctx.store.list_resources(KIND) if r.body.get("jobQueueArn") == queue.arn]
    return nr.page(
        records,
        kind=KIND,
        key=lambda record: record.seq,
        render=lambda record: {k: record.body[k] for k in DETAIL_KEYS if k in record.body},
        max_results=req.get("maxResults"),
        next_token=req.get("nextToken"),
        result_key="quotaShares",
    )
