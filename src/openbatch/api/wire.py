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
from collections.abc import Callable
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
    """Refuse what would only fail deeper down: invalid text anywhere, and absurd nesting.

    One pass gathers every string (member names too) and checks them joined, in C; only a
    refused body is walked again to name the member.
    """
    texts: list[str] = []
    pending: list[tuple[Any, int]] = [(value, 1)]
    while pending:
        item, depth = pending.pop()
        if depth > MAX_DEPTH:
            raise MalformedBody(f"The request body is nested more than {MAX_DEPTH} levels deep")
        if isinstance(item, dict):
            texts.extend(item)
            children = item.values()
        else:
            children = item
        for child in children:
            if isinstance(child, str):
                texts.append(child)
            elif isinstance(child, dict | list):
                pending.append((child, depth + 1))
    try:
        check_text("request body", "".join(texts))
    except ValidationError:
        _locate_invalid_text(value)
        raise


def _locate_invalid_text(value: Any) -> None:
    """Raise naming the member whose text (or name) is invalid."""
    pending: list[tuple[str, Any]] = [("", value)]
    while pending:
        path, item = pending.pop()
        if isinstance(item, str):
            check_text(path or "request body", item)
        elif isinstance(item, list):
            pending.extend((f"{path}[{i}]", child) for i, child in enumerate(item))
        elif isinstance(item, dict):
            for key, child in item.items():
                check_text(f"a member name in {path or 'the request body'}", key)
                pending.append((f"{path}.{key}" if path else key, child))


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
    _checker(service, shape, body_only=body_only)(payload, None, problems)
    if problems:
        count = len(problems)
        noun = "error" if count == 1 else "errors"
        raise ValidationError(f"{count} validation {noun} detected: " + "; ".join(problems[:MAX_REPORTED]))


Path = tuple[Any, str | int] | None
"""Where a value sits, built as (parent, member name or list index) and rendered only for a problem."""
Checker = Callable[[Any, Path, list[str]], None]
"""Appends a sentence per problem found in a value."""


def _render(path: Path) -> str:
    parts: list[str] = []
    while path is not None:
        path, segment = path
        parts.append(f"[{segment}]" if isinstance(segment, int) else f".{segment}")
    return "".join(reversed(parts)).lstrip(".") or "request body"


def _problem(path: Path, constraint: str, value: Any = None, shown: str = "Value") -> str:
    if value is not None:
        shown = f"Value '{value}'"
    return f"{shown} at '{_render(path)}' failed to satisfy constraint: Member must {constraint}"


_CHECKERS: dict[tuple[str, str, bool], Checker] = {}


def _checker(service: str, shape: Shape, *, body_only: bool = False) -> Checker:
    """A checker per shape, built once: walking botocore's shape objects on every request costs
    several times the JSON parsing. Children are built on first use (shapes may be recursive)."""
    key = (service, shape.name, body_only)
    checker = _CHECKERS.get(key)
    if checker is None:
        checker = _build(service, shape, body_only)
        _CHECKERS[key] = checker
    return checker


def _build(service: str, shape: Shape, body_only: bool) -> Checker:
    kind = shape.type_name
    if kind == "structure":
        assert isinstance(shape, StructureShape)
        # Members bound to the URI, query or headers are not in a REST body.
        members = {
            name: member
            for name, member in shape.members.items()
            if not (body_only and member.serialization.get("location"))
        }
        required = tuple(name for name in shape.required_members if name in members)
        built: dict[str, Checker] = {}

        def check_structure(value: Any, path: Path, problems: list[str]) -> None:
            if not isinstance(value, dict):
                problems.append(_problem(path, "be an object"))
                return
            missing = [name for name in required if value.get(name) is None]
            problems.extend(_problem((path, name), "not be null", None, "Value null") for name in missing)
            for name, child in value.items():
                member = members.get(name)
                if member is None or child is None:
                    continue
                check = built.get(name)
                if check is None:
                    check = built[name] = _checker(service, member)
                check(child, (path, name), problems)

        return check_structure
    if kind in ("list", "map"):
        item_shape = (
            shape.member if isinstance(shape, ListShape) else shape.value if isinstance(shape, MapShape) else None
        )
        assert item_shape is not None
        container, noun = (list, "a list") if kind == "list" else (dict, "a map")
        item: list[Checker] = []

        def check_container(value: Any, path: Path, problems: list[str]) -> None:
            if not isinstance(value, container):
                problems.append(_problem(path, f"be {noun}"))
                return
            if not item:
                item.append(_checker(service, item_shape))
            check = item[0]
            pairs = enumerate(value) if isinstance(value, list) else value.items()
            for index, child in pairs:
                check(child, (path, index), problems)

        return check_container
    if kind in _INT_BOUNDS:
        low, high = _INT_BOUNDS[kind]
        low, high = max(low, shape.metadata.get("min", low)), min(high, shape.metadata.get("max", high))

        def check_integer(value: Any, path: Path, problems: list[str]) -> None:
            if isinstance(value, bool) or not isinstance(value, int):
                problems.append(_problem(path, "be an integer"))
            elif not low <= value <= high:
                problems.append(_problem(path, f"have value between {low} and {high}", value))

        return check_integer
    if kind in ("float", "double"):

        def check_number(value: Any, path: Path, problems: list[str]) -> None:
            if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
                problems.append(_problem(path, "be a finite number"))

        return check_number
    expected: tuple[type, ...]
    expected, noun = {
        "string": ((str,), "a string"),
        "boolean": ((bool,), "a boolean"),
        "timestamp": ((int, float, str), "a timestamp"),
        "blob": ((str,), "base64 text"),
    }.get(kind, ((object,), "a value"))

    def check_scalar(value: Any, path: Path, problems: list[str]) -> None:
        if not isinstance(value, expected) or (isinstance(value, bool) and bool not in expected):
            problems.append(_problem(path, f"be {noun}"))

    return check_scalar
