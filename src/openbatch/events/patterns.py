"""EventBridge event patterns: validation and matching with AWS's documented semantics.

A pattern is a JSON object whose leaves are arrays of *matchers*. An event matches
when every field named in the pattern matches (``$or`` offers alternatives at any
level). A matcher is a literal (string, number, ``null``, boolean; numbers compare
by value) or a one-key object: ``prefix``, ``suffix``, ``anything-but``,
``numeric``, ``exists``, ``equals-ignore-case``, ``wildcard`` or ``cidr``. When the
event's value is an array, the field matches if any element does.

Patterns are compiled once (``compile_pattern``) into closures, so matching an
event costs no parsing.
"""

from __future__ import annotations

import ipaddress
import json
import re
from collections.abc import Callable, Mapping
from typing import Any

_MISSING: Any = object()
Leaf = Callable[[Any], bool]
"""Matches one event value (``_MISSING`` when the field is absent)."""
Compiled = Callable[[Any], bool]
_MAX_PATTERN_CHARS = 4096
_NUMERIC_OPS = {
    "=": lambda a, b: a == b,
    "<": lambda a, b: a < b,
    "<=": lambda a, b: a <= b,
    ">": lambda a, b: a > b,
    ">=": lambda a, b: a >= b,
}


class InvalidEventPatternError(ValueError):
    """The pattern is not valid (``InvalidEventPatternException`` on the wire)."""


def parse_pattern(text: str) -> Compiled:
    """Validate and compile a pattern given as JSON text."""
    if len(text) > _MAX_PATTERN_CHARS:
        raise InvalidEventPatternError(f"Event pattern is longer than {_MAX_PATTERN_CHARS} characters")
    try:
        value = json.loads(text)
    except ValueError as exc:
        raise InvalidEventPatternError(f"Event pattern is not valid JSON: {exc}") from None
    return compile_pattern(value)


def compile_pattern(pattern: Any) -> Compiled:
    if not isinstance(pattern, dict):
        raise InvalidEventPatternError("Event pattern must be a JSON object")
    if not pattern:
        raise InvalidEventPatternError("Event pattern must not be empty")
    return _compile_object(pattern, "")


def matches(pattern: Compiled, event: Mapping[str, Any]) -> bool:
    return pattern(event)


def _compile_object(pattern: dict[str, Any], path: str) -> Compiled:
    fields: list[tuple[str, Callable[[Any], bool]]] = []
    alternatives: list[Compiled] = []
    for key, value in pattern.items():
        where = f"{path}.{key}" if path else key
        if key == "$or":
            if not isinstance(value, list) or len(value) < 2:
                raise InvalidEventPatternError(f"{where} must be an array of at least two patterns")
            for branch in value:
                if not isinstance(branch, dict) or not branch:
                    raise InvalidEventPatternError(f"Each element of {where} must be a non-empty JSON object")
            alternatives.append(_any_of([_compile_object(branch, path) for branch in value]))
        elif isinstance(value, dict):
            if not value:
                raise InvalidEventPatternError(f"{where} must not be an empty object")
            fields.append((key, _nested(_compile_object(value, where))))
        elif isinstance(value, list):
            fields.append((key, _compile_leaf(value, where)))
        else:
            raise InvalidEventPatternError(
                f"{where}: match value must be an array of values or matchers (got {json.dumps(value)})"
            )

    def match(event: Any) -> bool:
        if not isinstance(event, dict):
            return False
        for key, check in fields:
            if not check(event.get(key, _MISSING)):
                return False
        return all(alternative(event) for alternative in alternatives)

    return match


def _any_of(branches: list[Compiled]) -> Compiled:
    return lambda event: any(branch(event) for branch in branches)


def _nested(inner: Compiled) -> Callable[[Any], bool]:
    def check(value: Any) -> bool:
        if value is _MISSING:
            # A nested pattern made only of exists:false parts matches a missing object.
            return inner({})
        if isinstance(value, list):
            return any(isinstance(item, dict) and inner(item) for item in value)
        return inner(value)

    return check


def _compile_leaf(values: list[Any], where: str) -> Callable[[Any], bool]:
    if not values:
        raise InvalidEventPatternError(f"{where}: empty arrays are not allowed")
    matchers = [_compile_matcher(value, where) for value in values]
    exists_only = [m for m in matchers if isinstance(m, _Exists)]

    def check(value: Any) -> bool:
        if value is _MISSING:
            return any(m.exists is False for m in exists_only)
        if isinstance(value, dict):
            # exists applies to leaves only; objects match nothing here.
            return False
        if isinstance(value, list):
            if not value:
                return False
            return any(m(item) for item in value for m in matchers)
        return any(m(value) for m in matchers)

    return check


class _Exists:
    def __init__(self, exists: bool) -> None:
        self.exists = exists

    def __call__(self, value: Any) -> bool:
        return self.exists


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _literal(expected: Any) -> Leaf:
    if _is_number(expected):
        return lambda value: _is_number(value) and value == expected
    if isinstance(expected, bool):
        return lambda value: isinstance(value, bool) and value is expected
    if expected is None:
        return lambda value: value is None
    return lambda value: isinstance(value, str) and value == expected


def _compile_matcher(spec: Any, where: str) -> Leaf:
    if spec is None or isinstance(spec, str | int | float | bool):
        return _literal(spec)
    if isinstance(spec, list):
        raise InvalidEventPatternError(f"{where}: arrays cannot be nested in a match array")
    if not isinstance(spec, dict) or len(spec) != 1:
        raise InvalidEventPatternError(f"{where}: a matcher must be an object with exactly one key")
    ((op, arg),) = spec.items()
    if op == "prefix":
        return _affix(arg, where, "prefix", str.startswith)
    if op == "suffix":
        return _affix(arg, where, "suffix", str.endswith)
    if op == "equals-ignore-case":
        text = _string(arg, where, op)
        folded = text.casefold()
        return lambda value: isinstance(value, str) and value.casefold() == folded
    if op == "wildcard":
        regex = _wildcard(_string(arg, where, op), where)
        return lambda value: isinstance(value, str) and regex.fullmatch(value) is not None
    if op == "exists":
        if not isinstance(arg, bool):
            raise InvalidEventPatternError(f"{where}: exists takes true or false")
        return _Exists(arg)
    if op == "numeric":
        return _numeric(arg, where)
    if op == "anything-but":
        return _anything_but(arg, where)
    if op == "cidr":
        try:
            network = ipaddress.ip_network(_string(arg, where, op), strict=False)
        except ValueError:
            raise InvalidEventPatternError(f"{where}: {arg!r} is not a CIDR block") from None
        return lambda value: isinstance(value, str) and _in_network(value, network)
    raise InvalidEventPatternError(f"{where}: unrecognized match type {op}")


def _string(arg: Any, where: str, op: str) -> str:
    if not isinstance(arg, str):
        raise InvalidEventPatternError(f"{where}: {op} match pattern must be a string")
    return arg


def _affix(arg: Any, where: str, op: str, test: Callable[[str, str], bool]) -> Leaf:
    if isinstance(arg, dict) and len(arg) == 1 and "equals-ignore-case" in arg:
        folded = _string(arg["equals-ignore-case"], where, op).casefold()
        return lambda value: isinstance(value, str) and test(value.casefold(), folded)
    text = _string(arg, where, op)
    return lambda value: isinstance(value, str) and test(value, text)


def _wildcard(text: str, where: str) -> re.Pattern[str]:
    parts: list[str] = []
    i = 0
    previous_star = False
    while i < len(text):
        char = text[i]
        if char == "\\" and i + 1 < len(text) and text[i + 1] in "*\\":
            parts.append(re.escape(text[i + 1]))
            i += 2
            previous_star = False
            continue
        if char == "*":
            if previous_star:
                raise InvalidEventPatternError(f"{where}: consecutive wildcard characters are not allowed")
            parts.append(".*")
            previous_star = True
        else:
            parts.append(re.escape(char))
            previous_star = False
        i += 1
    return re.compile("".join(parts), re.DOTALL)


def _numeric(arg: Any, where: str) -> Leaf:
    if not isinstance(arg, list) or len(arg) not in (2, 4):
        raise InvalidEventPatternError(f"{where}: numeric takes [op, number] or [op, number, op, number]")
    checks: list[tuple[Callable[[float, float], bool], float]] = []
    for i in range(0, len(arg), 2):
        op, bound = arg[i], arg[i + 1]
        if op not in _NUMERIC_OPS or not _is_number(bound):
            raise InvalidEventPatternError(f"{where}: bad numeric comparison {json.dumps(arg)}")
        checks.append((_NUMERIC_OPS[op], float(bound)))
    if len(checks) == 2:
        ops = (arg[0], arg[2])
        lower = {">", ">="}
        upper = {"<", "<="}
        if not (ops[0] in lower and ops[1] in upper) or checks[0][1] >= checks[1][1]:
            raise InvalidEventPatternError(
                f"{where}: a numeric range must be a lower bound (> or >=) then a larger upper bound (< or <=)"
            )
    return lambda value: _is_number(value) and all(test(float(value), bound) for test, bound in checks)


def _anything_but(arg: Any, where: str) -> Leaf:
    if isinstance(arg, dict):
        if len(arg) != 1:
            raise InvalidEventPatternError(f"{where}: anything-but takes one matcher")
        ((op, inner),) = arg.items()
        if op in ("prefix", "suffix", "wildcard", "equals-ignore-case"):
            items = inner if isinstance(inner, list) and op in ("wildcard", "equals-ignore-case") else [inner]
            if not items:
                raise InvalidEventPatternError(f"{where}: empty arrays are not allowed")
            negated = [_compile_matcher({op: item}, where) for item in items]
            return lambda value: isinstance(value, str) and not any(m(value) for m in negated)
        raise InvalidEventPatternError(f"{where}: anything-but does not support {op}")
    items = arg if isinstance(arg, list) else [arg]
    if not items:
        raise InvalidEventPatternError(f"{where}: empty arrays are not allowed")
    for item in items:
        if not (isinstance(item, str) or _is_number(item)):
            raise InvalidEventPatternError(f"{where}: anything-but values must be strings or numbers")
    excluded = [_literal(item) for item in items]
    return lambda value: not any(m(value) for m in excluded)


def _in_network(value: str, network: ipaddress.IPv4Network | ipaddress.IPv6Network) -> bool:
    try:
        return ipaddress.ip_address(value) in network
    except ValueError:
        return False
