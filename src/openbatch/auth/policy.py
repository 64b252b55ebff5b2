"""IAM identity-based policies: the grammar (Effect, Action/NotAction, Resource/NotResource) and evaluation.

Evaluation follows IAM's logic for one identity policy: a request is allowed only
when some statement allows it and no statement denies it (explicit deny wins,
default deny). ``Condition`` and ``Principal`` are refused when the policy is
loaded rather than ignored: ignoring a condition would silently widen an Allow
or narrow a Deny.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum
from functools import lru_cache
from typing import Any

_VERSIONS = ("2012-10-17", "2008-10-17")
_KNOWN_KEYS = {"Sid", "Effect", "Action", "NotAction", "Resource", "NotResource", "Condition", "Principal"}


class PolicyError(ValueError):
    """The policy document does not follow IAM's grammar (or uses what OpenBatch does not support)."""


class Effect(StrEnum):
    ALLOW = "Allow"
    DENY = "Deny"


@dataclass(frozen=True, slots=True)
class Statement:
    effect: Effect
    actions: tuple[str, ...]
    not_actions: bool
    """True for ``NotAction``: the statement applies to every action *not* listed."""
    resources: tuple[str, ...]
    not_resources: bool
    sid: str | None = None

    def applies_to(self, action: str, resource: str) -> bool:
        action_hit = any(action_matches(pattern, action) for pattern in self.actions)
        if action_hit == self.not_actions:
            return False
        resource_hit = any(resource_matches(pattern, resource) for pattern in self.resources)
        return resource_hit != self.not_resources


class Outcome(StrEnum):
    ALLOWED = "allowed"
    IMPLICIT_DENY = "implicit deny"
    EXPLICIT_DENY = "explicit deny"


@dataclass(frozen=True, slots=True)
class Decision:
    outcome: Outcome
    resource: str
    """The first resource that was not allowed (or the last one checked when allowed)."""

    @property
    def allowed(self) -> bool:
        return self.outcome is Outcome.ALLOWED


@dataclass(frozen=True, slots=True)
class Policy:
    statements: tuple[Statement, ...]

    def evaluate(self, action: str, resources: Sequence[str]) -> Decision:
        """Every resource must be allowed; one explicit deny on any of them denies the request."""
        resources = resources or ("*",)
        for resource in resources:
            if any(s.effect is Effect.DENY and s.applies_to(action, resource) for s in self.statements):
                return Decision(Outcome.EXPLICIT_DENY, resource)
        for resource in resources:
            if not any(s.effect is Effect.ALLOW and s.applies_to(action, resource) for s in self.statements):
                return Decision(Outcome.IMPLICIT_DENY, resource)
        return Decision(Outcome.ALLOWED, resources[-1])


ALLOW_ALL = Policy((Statement(Effect.ALLOW, ("*",), False, ("*",), False),))


def parse_policy(document: str | Mapping[str, Any]) -> Policy:
    """Parse an IAM policy given as JSON text or as an already decoded mapping."""
    if isinstance(document, str):
        try:
            document = json.loads(document)
        except ValueError as exc:
            raise PolicyError(f"the policy is not valid JSON: {exc}") from None
    if not isinstance(document, Mapping):
        raise PolicyError("a policy must be a JSON object with a 'Statement' member")
    unknown = set(document) - {"Version", "Id", "Statement"}
    if unknown:
        raise PolicyError(f"unknown policy member(s): {', '.join(sorted(unknown))}")
    version = document.get("Version", "2012-10-17")
    if version not in _VERSIONS:
        raise PolicyError(f"policy Version must be one of {', '.join(_VERSIONS)}; got {version!r}")
    raw = document.get("Statement")
    if raw is None:
        raise PolicyError("a policy needs a 'Statement' member")
    items = [raw] if isinstance(raw, Mapping) else raw
    if not isinstance(items, list) or not items:
        raise PolicyError("'Statement' must be a statement object or a non-empty list of them")
    return Policy(tuple(_statement(item, index) for index, item in enumerate(items)))


def _statement(item: Any, index: int) -> Statement:
    where = f"Statement[{index}]"
    if not isinstance(item, Mapping):
        raise PolicyError(f"{where} must be an object")
    unknown = set(item) - _KNOWN_KEYS
    if unknown:
        raise PolicyError(f"{where} has unknown member(s): {', '.join(sorted(unknown))}")
    if "Condition" in item:
        raise PolicyError(f"{where}: Condition is not supported by OpenBatch; remove it or split the statement")
    if "Principal" in item:
        raise PolicyError(f"{where}: Principal belongs in resource-based policies, not in a key's identity policy")
    effect = item.get("Effect")
    if effect not in ("Allow", "Deny"):
        raise PolicyError(f"{where}: Effect must be 'Allow' or 'Deny'; got {effect!r}")
    actions, not_actions = _pair(item, "Action", "NotAction", where)
    resources, not_resources = _pair(item, "Resource", "NotResource", where)
    for action in actions:
        if action != "*" and ":" not in action:
            raise PolicyError(f"{where}: action {action!r} must look like 'service:Operation' (or be '*')")
    for resource in resources:
        if resource != "*" and not resource.startswith("arn:"):
            raise PolicyError(f"{where}: resource {resource!r} must be an ARN (wildcards allowed) or '*'")
    sid = item.get("Sid")
    sid = sid if isinstance(sid, str) else None
    return Statement(Effect(effect), actions, not_actions, resources, not_resources, sid)


def _pair(item: Mapping[str, Any], name: str, negated: str, where: str) -> tuple[tuple[str, ...], bool]:
    if (name in item) == (negated in item):
        raise PolicyError(f"{where} needs exactly one of {name} and {negated}")
    key = name if name in item else negated
    return _strings(item[key], f"{where}.{key}"), key == negated


def _strings(value: Any, where: str) -> tuple[str, ...]:
    values: Iterable[Any] = [value] if isinstance(value, str) else value
    if not isinstance(values, list) or not values or not all(isinstance(v, str) and v for v in values):
        raise PolicyError(f"{where} must be a non-empty string or list of non-empty strings")
    return tuple(values)


@lru_cache(maxsize=4096)
def _glob(pattern: str, case_sensitive: bool) -> re.Pattern[str]:
    # IAM wildcards: * is any run of characters, ? is exactly one; nothing else is special.
    body = "".join(".*" if c == "*" else "." if c == "?" else re.escape(c) for c in pattern)
    return re.compile(body, re.DOTALL if case_sensitive else re.DOTALL | re.IGNORECASE)


def action_matches(pattern: str, action: str) -> bool:
    """Actions compare case-insensitively (``batch:submitjob`` is ``batch:SubmitJob``)."""
    return _glob(pattern, False).fullmatch(action) is not None


def resource_matches(pattern: str, resource: str) -> bool:
    """ARN patterns match segment by segment for partition, service, region and account; the
    resource part (which may hold ``/`` and ``:``) is matched as a whole. Case-sensitive, as in IAM."""
    if pattern == "*":
        return True
    pattern_parts = pattern.split(":", 5)
    resource_parts = resource.split(":", 5)
    if len(pattern_parts) != 6 or len(resource_parts) != 6:
        # Not an ARN on one side: only "*" (handled above) covers a request on "*".
        return False
    return all(_glob(p, True).fullmatch(r) is not None for p, r in zip(pattern_parts, resource_parts, strict=True))
