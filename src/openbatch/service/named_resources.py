"""Shared plumbing for the newer named Batch resources (service environments, quota
shares, consumable resources): reference resolution, lookup and paginated listing.

They live in the generic ``resources`` table under their ARN resource type, so
tagging, pagination and restarts work as for compute environments.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from openbatch.domain.arns import ResourceType, name_from_reference
from openbatch.domain.errors import NotFound, ValidationError
from openbatch.service.context import ServiceContext
from openbatch.service.pagination import decode_position, encode_token, page_size, seq_position
from openbatch.store.base import ResourceRecord

JsonObject = dict[str, Any]


def resolve(reference: str, resource_type: ResourceType) -> str:
    """A name or ARN of ``resource_type`` → the name."""
    if not reference:
        raise ValidationError(f"The {resource_type.value} name or ARN must not be empty")
    return name_from_reference(reference, resource_type)


def get(ctx: ServiceContext, reference: str, resource_type: ResourceType, label: str) -> ResourceRecord:
    record = ctx.store.get_resource(resource_type.value, resolve(reference, resource_type))
    if record is None:
        raise NotFound(f"{label} {reference} does not exist")
    return record


def name_matches(name: str, values: list[str]) -> bool:
    """Case-insensitive name match; a trailing ``*`` matches a prefix (AWS's name filters)."""
    name = name.lower()
    for value in values:
        wanted = value.lower()
        if (wanted.endswith("*") and name.startswith(wanted[:-1])) or name == wanted:
            return True
    return False


def filter_by_name(records: list[ResourceRecord], values: list[str]) -> list[ResourceRecord]:
    return [record for record in records if name_matches(record.name, values)]


def page(
    items: list[Any],
    *,
    kind: str,
    key: Callable[[Any], int],
    render: Callable[[Any], JsonObject],
    max_results: int | None,
    next_token: str | None,
    result_key: str,
    maximum: int = 100,
) -> JsonObject:
    """One page over ``items`` already sorted by ``key`` (a strictly increasing int)."""
    limit = page_size(max_results, default=maximum, maximum=maximum)
    after = decode_position(kind, next_token, seq_position) or 0
    remaining = [item for item in items if key(item) > after]
    result: JsonObject = {result_key: [render(item) for item in remaining[:limit]]}
    if len(remaining) > limit:
        result["nextToken"] = encode_token(kind, key(remaining[limit - 1]))
    return result
