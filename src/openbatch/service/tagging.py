"""TagResource / UntagResource / ListTagsForResource across every taggable resource type."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol

from openbatch.domain.arns import ResourceType, parse_arn
from openbatch.domain.errors import NotFound, ValidationError
from openbatch.domain.validation import check_tags
from openbatch.service import job_definitions
from openbatch.service.context import ServiceContext


class JobTags(Protocol):
    """The job side of tagging, owned by the job service."""

    def get_tags(self, job_id: str) -> dict[str, str]: ...

    def set_tags(self, job_id: str, tags: dict[str, str]) -> None: ...


def _edit(
    ctx: ServiceContext, jobs: JobTags, arn: str, change: Callable[[dict[str, str]], dict[str, str]]
) -> dict[str, str]:
    parsed = parse_arn(arn)
    kind, ident = parsed.resource_type, parsed.resource_id
    if kind is ResourceType.JOB:
        if ":" in ident or "#" in ident:
            raise ValidationError("Array child jobs and multi-node parallel nodes cannot be tagged")
        before = jobs.get_tags(ident)
        after = change(dict(before))
        if after != before:
            jobs.set_tags(ident, check_tags(after))
        return after
    if kind is ResourceType.JOB_DEFINITION:
        name, revision = job_definitions.parse_reference(ident)
        record = ctx.store.get_job_definition(name, revision) if revision is not None else None
        if record is None:
            raise NotFound(f"Resource {arn} not found")
        after = change(dict(record.body.get("tags", {})))
        if after != record.body.get("tags", {}):
            body = {**record.body, "tags": check_tags(after)}
            ctx.store.set_job_definition_status(name, record.revision, record.status, body)
            job_definitions.forget(ctx, name)
        return after
    resource = ctx.store.get_resource(kind.value, ident)
    if resource is None:
        raise NotFound(f"Resource {arn} not found")
    after = change(dict(resource.body.get("tags", {})))
    if after != resource.body.get("tags", {}):
        ctx.store.update_resource(kind.value, ident, {**resource.body, "tags": check_tags(after)})
    return after


def tag_resource(ctx: ServiceContext, jobs: JobTags, arn: str, tags: dict[str, str]) -> dict[str, Any]:
    check_tags(tags)
    _edit(ctx, jobs, arn, lambda current: {**current, **tags})
    return {}


def untag_resource(ctx: ServiceContext, jobs: JobTags, arn: str, keys: list[str]) -> dict[str, Any]:
    if not keys:
        raise ValidationError("tagKeys must list at least one key")
    _edit(ctx, jobs, arn, lambda current: {k: v for k, v in current.items() if k not in keys})
    return {}


def list_tags(ctx: ServiceContext, jobs: JobTags, arn: str) -> dict[str, Any]:
    return {"tags": _edit(ctx, jobs, arn, lambda current: current)}
