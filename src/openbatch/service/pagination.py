"""Opaque, forward-only pagination tokens.

A token encodes the keyset position after the last item returned, so it can
never repeat (botocore aborts a paginator that sees the same token twice).
"""

from __future__ import annotations

import base64
import json
from collections.abc import Callable
from typing import Any, TypeVar

from openbatch.domain.errors import ValidationError
from openbatch.store.base import ResourceRecord, Store

T = TypeVar("T")
_MAX_BIGINT = 2**63


def encode_token(kind: str, position: Any) -> str:
    raw = json.dumps({"k": kind, "p": position}, separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_token(kind: str, token: str | None) -> Any:
    """The position in ``token``, or ``None`` for the first page."""
    if not token:
        return None
    try:
        padded = token + "=" * (-len(token) % 4)
        data = json.loads(base64.urlsafe_b64decode(padded.encode()))
        if data["k"] != kind:
            raise ValueError(kind)
        return data["p"]
    except (ValueError, KeyError, TypeError):
        raise ValidationError(f"The nextToken {token!r} is not valid for this operation") from None


def decode_position(kind: str, token: str | None, parse: Callable[[Any], T]) -> T | None:
    """Like :func:`decode_token`, with the position converted by ``parse``.

    Tokens come back from the caller, so a well-formed token can still carry a
    position of the wrong shape; that is the caller's error, not a server fault.
    """
    position = decode_token(kind, token)
    if position is None:
        return None
    try:
        return parse(position)
    except (ValueError, TypeError, KeyError, IndexError):
        raise ValidationError(f"The nextToken {token!r} is not valid for this operation") from None


def seq_position(position: Any) -> int:
    """The position of a token over insertion-ordered resources."""
    if isinstance(position, bool) or not isinstance(position, int) or not 0 <= position < _MAX_BIGINT:
        raise ValueError(position)
    return position


def page_size(value: int | None, *, default: int, maximum: int) -> int:
    if value is None:
        return default
    if not 1 <= value <= maximum:
        raise ValidationError(f"maxResults must be between 1 and {maximum}; got {value}")
    return value


def resource_page(
    store: Store,
    kind: str,
    result_key: str,
    *,
    max_results: int | None,
    next_token: str | None,
    names: list[str] | None = None,
    render: Callable[[ResourceRecord], dict[str, Any]] = lambda record: record.body,
) -> dict[str, Any]:
    """One page of insertion-ordered resources, as the Describe*/List* operations return it."""
    limit = page_size(max_results, default=100, maximum=100)
    after = decode_position(kind, next_token, seq_position) or 0
    records = store.list_resources(kind, names=names, after_seq=after, limit=limit + 1)
    result: dict[str, Any] = {result_key: [render(r) for r in records[:limit]]}
    if len(records) > limit:
        result["nextToken"] = encode_token(kind, records[limit - 1].seq)
    return result
