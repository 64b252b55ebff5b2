"""Job definition use cases: Register/Deregister/DescribeJobDefinitions and reference resolution."""

from __future__ import annotations

from typing import Any

from openbatch.domain import jobspec
from openbatch.domain.arns import ResourceType, is_arn, parse_arn
from openbatch.domain.errors import ClientError, ValidationError
from openbatch.domain.validation import check_name, check_range, check_tags
from openbatch.service import job_definition_rules, multinode
from openbatch.service import request_models as s
from openbatch.service.context import Caller, ServiceContext
from openbatch.service.pagination import decode_position, encode_token, page_size, seq_position
from openbatch.store.base import JobDefinitionRecord

TOKEN_KIND = ResourceType.JOB_DEFINITION.value
MAX_REVISION = 2**31 - 1


def parse_reference(reference: str) -> tuple[str, int | None]:
    """``name``, ``name:rev`` or an ARN with or without ``:rev`` → (name, revision or None)."""
    if is_arn(reference):
        arn = parse_arn(reference)
        if arn.resource_type is not ResourceType.JOB_DEFINITION:
            raise ValidationError(f"{reference!r} is not a job definition ARN")
        reference = arn.resource_id
    name, sep, rev = reference.partition(":")
    if not sep:
        return name, None
    # isdigit() alone admits digits int() rejects (e.g. superscripts), and the
    # revision column is a 32-bit integer.
    if not (rev.isascii() and rev.isdigit()) or int(rev) > MAX_REVISION:
        raise ValidationError(f"Job definition reference {reference!r} must be name, name:revision or an ARN")
    return name, int(rev)


def forget(ctx: ServiceContext, name: str) -> None:
    """Drop cached revisions of ``name`` after it changed (register, deregister, tags)."""
    for key in [k for k in ctx.definition_cache if k[0] == name]:
        del ctx.definition_cache[key]


def resolve(ctx: ServiceContext, reference: str) -> JobDefinitionRecord:
    """The ACTIVE revision a SubmitJob ``jobDefinition`` refers to."""
    name, revision = parse_reference(reference)
    key = (name, revision)
    record = ctx.definition_cache.get(key)
    if record is None:
        record = ctx.store.get_job_definition(name, revision)
        if record is not None:
            ctx.definition_cache[key] = record
    if record is None or record.status != "ACTIVE":
        raise ClientError(f"Job definition {reference} does not exist or is not ACTIVE")
    return record


def _check_container(props: dict[str, Any]) -> None:
    jobspec.check_environment(props.get("environment") or [])
    jobspec.check_resource_requirements(props.get("resourceRequirements") or [])
    jobspec.check_legacy_resources("containerProperties", props)
    if not props.get("image"):
        raise ValidationError("containerProperties.image is required")


def register(ctx: ServiceContext, caller: Caller, req: s.RegisterJobDefinition) -> dict[str, Any]:
    name = check_name("Job definition", req.jobDefinitionName)
    if req.type not in ("container", "multinode"):
        raise ValidationError(f"type must be container or multinode; got {req.type!r}")
    body = req.echo()
    kinds = [k for k in ("containerProperties", "ecsProperties", "eksProperties") if k in body]
    if req.type == "container" and len(kinds) != 1:
        raise ValidationError(
            "A container job definition needs exactly one of containerProperties, ecsProperties or eksProperties"
        )
    multinode.check_definition(body)
    if "containerProperties" in body:
        body["containerProperties"] = {**jobspec.CONTAINER_DEFAULTS, **body["containerProperties"]}
        _check_container(body["containerProperties"])
    check_range("schedulingPriority", req.schedulingPriority, 0, 9999)
    jobspec.check_retry_strategy(body.get("retryStrategy"))
    jobspec.check_timeout(body.get("timeout"))
    body.setdefault("parameters", {})
    body["tags"] = check_tags(req.tags)
    body.setdefault("platformCapabilities", ["EC2"])
    job_definition_rules.apply(body)
    job_definition_rules.check_consumables(ctx, body)
    body.setdefault("propagateTags", False)
    body["containerOrchestrationType"] = "EKS" if "eksProperties" in body else "ECS"

    def arn_for(revision: int) -> str:
        return caller.arns.build(ResourceType.JOB_DEFINITION, f"{name}:{revision}")

    def body_for(revision: int) -> dict[str, Any]:
        return {**body, "jobDefinitionArn": arn_for(revision), "revision": revision, "status": "ACTIVE"}

    record = ctx.store.insert_job_definition(name, arn_for, body_for)
    forget(ctx, name)
    return {"jobDefinitionName": name, "jobDefinitionArn": record.arn, "revision": record.revision}


def deregister(ctx: ServiceContext, req: s.DeregisterJobDefinition) -> dict[str, Any]:
    name, revision = parse_reference(req.jobDefinition)
    if revision is None:
        raise ValidationError("DeregisterJobDefinition needs name:revision or a full ARN with revision")
    record = ctx.store.get_job_definition(name, revision)
    if record is None:
        raise ClientError(f"Job definition {req.jobDefinition} does not exist")
    ctx.store.set_job_definition_status(name, revision, "INACTIVE", {**record.body, "status": "INACTIVE"})
    forget(ctx, name)
    return {}


def _definition_position(position: Any) -> tuple[str, int]:
    name, revision = position
    if not isinstance(name, str):
        raise TypeError(name)
    return name, seq_position(revision)


def describe(ctx: ServiceContext, req: s.DescribeJobDefinitions) -> dict[str, Any]:
    refs = None
    if req.jobDefinitions is not None:
        if req.jobDefinitionName is not None or req.status is not None:
            raise ValidationError("jobDefinitions cannot be combined with jobDefinitionName or status")
        if len(req.jobDefinitions) > 100:
            raise ValidationError("jobDefinitions can list at most 100 references")
        refs = [parse_reference(r) for r in req.jobDefinitions]
    if req.status is not None and req.status not in ("ACTIVE", "INACTIVE"):
        raise ValidationError(f"status must be ACTIVE or INACTIVE; got {req.status!r}")
    limit = page_size(req.maxResults, default=100, maximum=100)
    after = decode_position(TOKEN_KIND, req.nextToken, _definition_position)
    records = ctx.store.list_job_definitions(
        name=req.jobDefinitionName, status=req.status, refs=refs, after=after, limit=limit + 1
    )
    result: dict[str, Any] = {"jobDefinitions": [r.body for r in records[:limit]]}
    if len(records) > limit:
        last = records[limit - 1]
        result["nextToken"] = encode_token(TOKEN_KIND, [last.name, last.revision])
    return result
