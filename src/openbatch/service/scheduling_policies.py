"""Scheduling policy use cases. Policies are addressed by ARN only, as in AWS."""

from __future__ import annotations

from typing import Any

from openbatch.domain.arns import ResourceType, parse_arn
from openbatch.domain.errors import Conflict, NotFound, ValidationError
from openbatch.domain.validation import check_name, check_range, check_tags
from openbatch.service import request_models as s
from openbatch.service.context import Caller, ServiceContext
from openbatch.service.pagination import resource_page

KIND = ResourceType.SCHEDULING_POLICY.value


def name_of(arn: str) -> str:
    parsed = parse_arn(arn)
    if parsed.resource_type is not ResourceType.SCHEDULING_POLICY:
        raise ValidationError(f"{arn!r} is not a scheduling policy ARN")
    return parsed.resource_id


def get_body(ctx: ServiceContext, arn: str) -> dict[str, Any]:
    record = ctx.store.get_resource(KIND, name_of(arn))
    if record is None:
        raise NotFound(f"SchedulingPolicy {arn} does not exist")
    return record.body


def _check_fairshare(policy: s.FairsharePolicy) -> dict[str, Any]:
    check_range("shareDecaySeconds", policy.shareDecaySeconds, 0, 604800)
    check_range("computeReservation", policy.computeReservation, 0, 99)
    shares = policy.shareDistribution or []
    if len(shares) > 500:
        raise ValidationError("shareDistribution can hold at most 500 share identifiers")
    seen: list[str] = []
    for share in shares:
        ident = share.shareIdentifier
        stem = ident[:-1] if ident.endswith("*") else ident
        if not (stem.isascii() and stem.isalnum()) or len(ident) > 255:
            raise ValidationError(
                f"shareIdentifier {ident!r} must be up to 255 letters and numbers, optionally ending in '*'"
            )
        check_range(f"weightFactor of {ident}", share.weightFactor, 0.0001, 999.9999)
        for other in seen:
            other_stem = other.rstrip("*")
            overlap = (
                ident == other
                or (other.endswith("*") and stem.startswith(other_stem))
                or (ident.endswith("*") and other_stem.startswith(stem))
            )
            if overlap:
                raise ValidationError(f"shareIdentifier {ident!r} overlaps {other!r} in shareDistribution")
        seen.append(ident)
    return policy.echo()


def create(ctx: ServiceContext, caller: Caller, req: s.CreateSchedulingPolicy) -> dict[str, Any]:
    name = check_name("Scheduling policy", req.name)
    if req.fairsharePolicy is not None and req.quotaSharePolicy is not None:
        raise ValidationError("Specify either fairsharePolicy or quotaSharePolicy, not both")
    arn = caller.arns.build(ResourceType.SCHEDULING_POLICY, name)
    body: dict[str, Any] = {"name": name, "arn": arn, "tags": check_tags(req.tags)}
    if req.quotaSharePolicy is not None:
        body["quotaSharePolicy"] = req.quotaSharePolicy
    else:
        body["fairsharePolicy"] = _check_fairshare(req.fairsharePolicy or s.FairsharePolicy())
    ctx.store.insert_resource(KIND, name, arn, ctx.clock.now_ms(), body)
    return {"name": name, "arn": arn}


def update(ctx: ServiceContext, req: s.UpdateSchedulingPolicy) -> dict[str, Any]:
    body = get_body(ctx, req.arn)
    if req.fairsharePolicy is not None:
        if "quotaSharePolicy" in body:
            raise ValidationError("A quota share policy cannot be changed into a fair share policy")
        body["fairsharePolicy"] = _check_fairshare(req.fairsharePolicy)
    if req.quotaSharePolicy is not None:
        if "fairsharePolicy" in body:
            raise ValidationError("A fair share policy cannot be changed into a quota share policy")
        body["quotaSharePolicy"] = req.quotaSharePolicy
    ctx.store.update_resource(KIND, body["name"], body)
    ctx.resources_changed()
    return {}


def delete(ctx: ServiceContext, req: s.DeleteSchedulingPolicy) -> dict[str, Any]:
    body = get_body(ctx, req.arn)
    for queue in ctx.store.list_resources(ResourceType.JOB_QUEUE.value):
        if queue.body.get("schedulingPolicyArn") == body["arn"]:
            raise Conflict(f"SchedulingPolicy {body['name']} is in use by job queue {queue.name}")
    ctx.store.delete_resource(KIND, body["name"])
    return {}


def describe(ctx: ServiceContext, req: s.DescribeSchedulingPolicies) -> dict[str, Any]:
    if len(req.arns) > 100:
        raise ValidationError("arns can list at most 100 scheduling policy ARNs")
    names = [name_of(arn) for arn in req.arns]
    records = ctx.store.list_resources(KIND, names=names)
    return {"schedulingPolicies": [r.body for r in records]}


def list_policies(ctx: ServiceContext, req: s.ListSchedulingPolicies) -> dict[str, Any]:
    return resource_page(
        ctx.store,
        KIND,
        "schedulingPolicies",
        max_results=req.maxResults,
        next_token=req.nextToken,
        render=lambda record: {"arn": record.arn},
    )
