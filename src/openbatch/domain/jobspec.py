"""Rules for what a job runs: resource requirements, environment, retry strategy, timeout.

Shared by RegisterJobDefinition and SubmitJob (whose overrides obey the same rules).
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from openbatch.domain.errors import ValidationError

PROTECTED_ENV_PREFIX = "AWS_BATCH"
_EXIT_CODE_PATTERN = re.compile(r"^[0-9]*\*?$")
_REF = "Ref::"
_MAX_TIMEOUT_SECONDS = 2**31 - 1
_DECIMAL = re.compile(r"[0-9]+(\.[0-9]+)?")
"""How resourceRequirements values are written in AWS's documentation ("1", "0.25", "2048"): no exponent,
sign, spaces, underscores or hexadecimal, all of which float() would take (``"1e9"`` vCPUs once got in)."""
MAX_VCPUS = 192
"""AWS Batch runs a container as an ECS task, whose CPU on EC2 is at most 196,608 CPU units, 192 vCPUs
(ECS API reference, RegisterTaskDefinition ``cpu``; Batch: "each vCPU is equivalent to 1,024 CPU shares")."""
MAX_INTEGER = 2**31 - 1
"""MEMORY and GPU are whole numbers; the model's ``memory`` member next to them is a 32-bit Integer."""


CONTAINER_DEFAULTS: dict[str, Any] = {
    "environment": [],
    "mountPoints": [],
    "volumes": [],
    "ulimits": [],
    "resourceRequirements": [],
    "secrets": [],
}
"""Members DescribeJobDefinitions shows for every container, empty when not given (as AWS does)."""


@dataclass(frozen=True, slots=True)
class Resources:
    vcpus: float = 1.0
    memory_mib: int | None = None
    gpus: int = 0
    consumables: tuple[tuple[str, int], ...] = ()
    """Consumable resources the job holds while it runs: (name, quantity)."""


def check_resource_requirements(requirements: Iterable[Mapping[str, str]]) -> None:
    seen: set[str] = set()
    for req in requirements:
        kind, value = req["type"], req["value"]
        if kind in seen:
            raise ValidationError(f"resourceRequirements lists {kind} more than once")
        seen.add(kind)
        try:
            number = float(value)
        except ValueError:
            raise ValidationError(f"resourceRequirements {kind} value {value!r} is not a number") from None
        if not math.isfinite(number):
            raise ValidationError(f"resourceRequirements {kind} value {value!r} is not a finite number")
        if kind == "VCPU" and number <= 0:
            raise ValidationError(f"VCPU must be greater than 0; got {value}")
        if kind == "MEMORY" and (number < 4 or not number.is_integer()):
            raise ValidationError(f"MEMORY must be a whole number of MiB, at least 4; got {value}")
        if kind == "GPU" and (number < 0 or not number.is_integer()):
            raise ValidationError(f"GPU must be a whole number of GPUs; got {value}")
        # AWS's ResourceRequirement: VCPU is a number of vCPUs (at least one on EC2, 0.25 steps on Fargate),
        # MEMORY a hard limit in MiB of at least 4, GPU a number of physical GPUs.
        if not _DECIMAL.fullmatch(value):
            raise ValidationError(
                f"resourceRequirements {kind} value {value!r} must be a plain decimal number such as 2 or 0.5"
            )
        if kind == "VCPU" and number > MAX_VCPUS:
            raise ValidationError(f"VCPU must be at most {MAX_VCPUS} vCPUs; got {value}")
        if kind in ("MEMORY", "GPU") and number > MAX_INTEGER:
            raise ValidationError(f"{kind} must be at most {MAX_INTEGER}; got {value}")


def check_legacy_resources(member: str, container: Mapping[str, Any]) -> None:
    """The deprecated ``vcpus`` and ``memory`` members obey the same limits as resourceRequirements."""
    vcpus, memory = container.get("vcpus"), container.get("memory")
    if vcpus is not None and not 1 <= vcpus <= MAX_VCPUS:
        raise ValidationError(f"{member}.vcpus must be between 1 and {MAX_VCPUS}; got {vcpus}")
    if memory is not None and memory < 4:
        raise ValidationError(f"{member}.memory must be at least 4 MiB; got {memory}")


def resources_of(container: Mapping[str, Any]) -> Resources:
    """Effective resources: ``resourceRequirements`` win over the legacy vcpus/memory members."""
    vcpus = float(container.get("vcpus") or 1)
    memory = container.get("memory")
    gpus = 0
    for req in container.get("resourceRequirements") or []:
        if req["type"] == "VCPU":
            vcpus = float(req["value"])
        elif req["type"] == "MEMORY":
            memory = int(float(req["value"]))
        elif req["type"] == "GPU":
            gpus = int(float(req["value"]))
    return Resources(vcpus=vcpus, memory_mib=int(memory) if memory else None, gpus=gpus)


def merge_container_overrides(container: Mapping[str, Any], overrides: Mapping[str, Any] | None) -> dict[str, Any]:
    """``container`` with SubmitJob's ``containerOverrides`` (wire form) applied, by AWS's merge rules:
    the command is replaced; environment variables merge by name; resource requirements merge by type;
    the legacy ``vcpus``/``memory`` replace only themselves."""
    merged = dict(container)
    if not overrides:
        return merged
    if overrides.get("command") is not None:
        merged["command"] = list(overrides["command"])
    if overrides.get("environment") is not None:
        env = {e["name"]: e.get("value", "") for e in merged.get("environment") or []}
        env.update({e.get("name") or "": e.get("value") or "" for e in overrides["environment"]})
        merged["environment"] = [{"name": k, "value": v} for k, v in env.items()]
    if overrides.get("resourceRequirements") is not None:
        by_type = {r["type"]: r for r in merged.get("resourceRequirements") or []}
        by_type.update({r["type"]: dict(r) for r in overrides["resourceRequirements"]})
        merged["resourceRequirements"] = list(by_type.values())
    for legacy in ("vcpus", "memory"):
        if overrides.get(legacy) is not None:
            merged[legacy] = overrides[legacy]
    return merged


def check_environment(environment: Iterable[Mapping[str, Any]]) -> None:
    for pair in environment:
        name = pair.get("name") or ""
        if name.startswith(PROTECTED_ENV_PREFIX):
            raise ValidationError(
                f"Environment variable {name!r} is not allowed: names starting with "
                f"{PROTECTED_ENV_PREFIX!r} are reserved for variables set by AWS Batch"
            )


@dataclass(frozen=True, slots=True, kw_only=True)
class ExitRule:
    action: str
    """RETRY or EXIT (upper-cased)."""
    on_status_reason: str | None = None
    on_reason: str | None = None
    on_exit_code: str | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class RetryPolicy:
    attempts: int = 1
    rules: tuple[ExitRule, ...] = field(default_factory=tuple)

    @classmethod
    def from_wire(cls, strategy: Mapping[str, Any] | None) -> RetryPolicy:
        if not strategy:
            return cls()
        return cls(
            attempts=int(strategy.get("attempts") or 1),
            rules=tuple(
                ExitRule(
                    action=rule["action"].upper(),
                    on_status_reason=rule.get("onStatusReason"),
                    on_reason=rule.get("onReason"),
                    on_exit_code=rule.get("onExitCode"),
                )
                for rule in strategy.get("evaluateOnExit") or []
            ),
        )


def check_retry_strategy(strategy: Mapping[str, Any] | None) -> None:
    if not strategy:
        return
    attempts = strategy.get("attempts")
    if attempts is not None and not 1 <= attempts <= 10:
        raise ValidationError(f"retryStrategy.attempts must be between 1 and 10; got {attempts}")
    rules = strategy.get("evaluateOnExit") or []
    if rules and attempts is None:
        raise ValidationError("retryStrategy.attempts is required when evaluateOnExit is set")
    if len(rules) > 5:
        raise ValidationError("retryStrategy.evaluateOnExit can hold at most 5 rules")
    for rule in rules:
        if rule["action"].upper() not in ("RETRY", "EXIT"):
            raise ValidationError(f"evaluateOnExit action must be RETRY or EXIT; got {rule['action']!r}")
        code = rule.get("onExitCode")
        if code is not None and not _EXIT_CODE_PATTERN.fullmatch(code):
            raise ValidationError(
                f"evaluateOnExit onExitCode {code!r} must contain only digits, optionally ending in '*'"
            )


def check_timeout(timeout: Mapping[str, Any] | None) -> None:
    seconds = (timeout or {}).get("attemptDurationSeconds")
    # AWS's minimum is 60 s; shorter timeouts are accepted (an OpenBatch extension).
    if seconds is not None and not 1 <= seconds <= _MAX_TIMEOUT_SECONDS:
        raise ValidationError(
            f"timeout.attemptDurationSeconds must be between 1 and {_MAX_TIMEOUT_SECONDS}; got {seconds}"
        )


def substitute_parameters(command: Iterable[str], parameters: Mapping[str, str]) -> list[str]:
    """Replace ``Ref::name`` placeholders, whole-element or inside an element."""
    result = []
    for element in command:
        if _REF in element:
            element = _REF_PATTERN.sub(lambda m: _lookup(m.group(1), parameters), element)
        result.append(element)
    return result


_REF_PATTERN = re.compile(r"Ref::([A-Za-z0-9_.\-]+)")


def _lookup(name: str, parameters: Mapping[str, str]) -> str:
    if name not in parameters:
        raise ValidationError(f"Unable to substitute value. No parameter found for reference {name}")
    return parameters[name]
