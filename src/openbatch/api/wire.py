"""Request bodies checked before any use case sees them, against AWS's own service model.

Two layers, in this order:

1. :func:`parse_body` — the body is a JSON object, not absurdly nested, and
   every string in it (keys included, members we do not know included, since
   some are stored and echoed) is valid text (:func:`check_text`).
2. :func:`check_input` — every member the service model (botocore's copy of
   the AWS model: ``batch``, ``logs``) knows has its wire type, and numbers
   their range (the model's, within 32 or 64 bits). So a string where a list belongs, ``true``
   where a number belongs or a number beyond 64 bits is refused here, and can
   never be stored and then break every client's Describe*. Members the model
   does not know are left alone (newer clients send newer members); enums are
   left to the request shapes (AWS accepts some in any case), and so are the
   model's patterns (Java regular expressions, and CloudWatch Logs takes log
   group ARNs ending in ``:*`` that its own pattern would refuse), and lengths
   to the use cases, whose messages name the rule (tags, names).

New operations get both checks by being in the model: nothing to add per
operation.
"""

from __future__ import annotations

import json
import math
from functools import cache
from typing import Any

import botocore.session
from botocore.model import ListShape, MapShape, OperationNotFoundError, ServiceModel, Shape, StructureShape

from openbatch.domain.errors import ValidationError
from openbatch.domain.validation import check_text

MAX_DEPTH = 64
"""Real payloads are a handful of levels deep, while validation and storage recurse over the whole document."""
MAX_REPORTED = 5
_INT_BOUNDS = {"integer": (-(2**31), 2**31 - 1), "long": (-(2**63), 2**63 - 1)}
"""The model's integer types are Java's 32- and 64-bit integers; larger JSON numbers cannot be stored either."""


class MalformedBody(ValidationError):
    """The body is not a JSON object (CloudWatch Logs answers ``SerializationException``)."""


def parse_body(body: bytes) -> dict[str, Any]:
    """The request body as a JSON object (empty body: ``{}``), every string in it checked."""
    if not body.strip():
        return {}
    try:
        value = json.loads(body)
    except RecursionError:
        raise MalformedBody(f"The request body is nested more than {MAX_DEPTH} levels deep") from None
    except ValueError as exc:
        raise MalformedBody(f"The request body is not valid JSON: {exc}") from None
    if not isinstance(value, dict):
        raise MalformedBody("The request body must be a JSON object")
    check_document(value)
    return value


def check_document(value: Any) -> None:
    """Refuse what would only fail deeper down: invalid text anywhere, and absurd nesting."""
    pending = [("", value, 1)]
    while pending:
        path, item, depth = pending.pop()
        if isinstance(item, str):
            check_text(path or "request body", item)
        elif isinstance(item, dict | list):
            if depth > MAX_DEPTH:
                raise MalformedBody(f"The request body is nested more than {MAX_DEPTH} levels deep")
            if isinstance(item, list):
                pending.extend((f"{path}[{i}]", child, depth + 1) for i, child in enumerate(item))
                continue
            for key, child in item.items():
                check_text(f"a member name in {path or 'the request body'}", key)
                pending.append((f"{path}.{key}" if path else key, child, depth + 1))


@cache
def service_model(service: str) -> ServiceModel:
    """botocore's installed copy of the AWS model (``batch``, ``logs``); loaded once."""
    model: ServiceModel = botocore.session.get_session().get_service_model(service)
    return model


def check_input(service: str, operation: str, payload: dict[str, Any], *, body_only: bool = True) -> None:
    """Check ``payload`` against ``operation``'s input shape; operations not in the model pass.

    ``body_only``: skip members a REST route takes from the path, query or headers.
    """
    try:
        shape = service_model(service).operation_model(operation).input_shape
    except OperationNotFoundError:
        return
    if shape is None:
        return
    problems: list[str] = []
    _check(shape, payload, "", problems, body_only=body_only)
    if problems:
        count = len(problems)
        noun = "error" if count == 1 else "errors"
        raise ValidationError(f"{count} validation {noun} detected: " + "; ".join(problems[:MAX_REPORTED]))


def _check(shape: Shape, value: Any, path: str, problems: list[str], *, body_only: bool = False) -> None:
    if len(problems) >= MAX_REPORTED:
        return
    kind = shape.type_name
    where = path or "request body"
    if kind == "structure":
        assert isinstance(shape, StructureShape)
        if not isinstance(value, dict):
            problems.append(f"Value at '{where}' failed to satisfy constraint: Member must be an object")
            return
        for name, member in shape.members.items():
            # Members bound to the URI, query or headers are not in a REST body.
            if body_only and member.serialization.get("location"):
                continue
            child = value.get(name)
            child_path = f"{path}.{name}" if path else name
            if child is None:
                if name in shape.required_members:
                    problems.append(
                        f"Value null at '{child_path}' failed to satisfy constraint: Member must not be null"
                    )
                continue
            _check(member, child, child_path, problems)
    elif kind == "list":
        assert isinstance(shape, ListShape)
        if not isinstance(value, list):
            problems.append(f"Value at '{where}' failed to satisfy constraint: Member must be a list")
            return
        for index, item in enumerate(value):
            _check(shape.member, item, f"{path}[{index}]", problems)
    elif kind == "map":
        assert isinstance(shape, MapShape)
        if not isinstance(value, dict):
            problems.append(f"Value at '{where}' failed to satisfy constraint: Member must be a map")
            return
        for key, item in value.items():
            _check(shape.key, key, f"a key of {where}", problems)
            _check(shape.value, item, f"{path}.{key}", problems)
    elif kind == "string":
        if not isinstance(value, str):
            problems.append(f"Value at '{where}' failed to satisfy constraint: Member must be a string")
    elif kind in _INT_BOUNDS:
        if isinstance(value, bool) or not isinstance(value, int):
            problems.append(f"Value at '{where}' failed to satisfy constraint: Member must be an integer")
            return
        low, high = _INT_BOUNDS[kind]
        low, high = max(low, shape.metadata.get("min", low)), min(high, shape.metadata.get("max", high))
        if not low <= value <= high:
            problems.append(
                f"Value '{value}' at '{where}' failed to satisfy constraint: Member must have value "
                f"between {low} and {high}"
            )
    elif kind in ("float", "double"):
        if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
            problems.append(f"Value at '{where}' failed to satisfy constraint: Member must be a finite number")
    elif kind == "boolean":
        if not isinstance(value, bool):
            problems.append(f"Value at '{where}' failed to satisfy constraint: Member must be a boolean")
    elif kind == "timestamp":
        if isinstance(value, bool) or not isinstance(value, int | float | str):
            problems.append(f"Value at '{where}' failed to satisfy constraint: Member must be a timestamp")
    elif kind == "blob" and not isinstance(value, str):
        problems.append(f"Value at '{where}' failed to satisfy constraint: Member must be base64 text")
