"""AWS's platform rules and defaults for container job definitions.

Fargate (API reference, ContainerProperties and ResourceRequirement; user guide,
"Job definitions on Fargate"): an execution role is required; vCPUs and memory are
given only as ``resourceRequirements``, in the combinations Fargate offers; GPUs
are not available. DescribeJobDefinitions then shows the documented defaults,
``assignPublicIp`` DISABLED and platform version LATEST, as AWS does.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from openbatch.domain.errors import ValidationError
from openbatch.fidelity import consumables
from openbatch.service.context import ServiceContext

_GIB = 1024
FARGATE_MEMORY: dict[str, tuple[int, ...]] = {
    "0.25": (512, 1 * _GIB, 2 * _GIB),
    "0.5": tuple(range(1 * _GIB, 4 * _GIB + 1, _GIB)),
    "1": tuple(range(2 * _GIB, 8 * _GIB + 1, _GIB)),
    "2": tuple(range(4 * _GIB, 16 * _GIB + 1, _GIB)),
    "4": tuple(range(8 * _GIB, 30 * _GIB + 1, _GIB)),
    "8": tuple(range(16 * _GIB, 60 * _GIB + 1, 4 * _GIB)),
    "16": tuple(range(32 * _GIB, 120 * _GIB + 1, 8 * _GIB)),
}
"""MEMORY (MiB) Fargate accepts for each VCPU value (API reference, ResourceRequirement)."""


def _vcpu_key(value: str) -> str | None:
    try:
        number = float(value)
    except ValueError:
        return None
    for key in FARGATE_MEMORY:
        if float(key) == number:
            return key
    return None


def check_fargate_container(container: dict[str, Any]) -> None:
    if not container.get("executionRoleArn"):
        raise ValidationError("containerProperties.executionRoleArn is required for a job definition on FARGATE")
    for legacy in ("vcpus", "memory"):
        if container.get(legacy) is not None:
            raise ValidationError(
                f"containerProperties.{legacy} isn't applicable to jobs that run on Fargate resources: "
                "give VCPU and MEMORY in resourceRequirements"
            )
    requirements = {r.get("type"): r.get("value", "") for r in container.get("resourceRequirements") or []}
    if "GPU" in requirements:
        raise ValidationError("GPU resources aren't available for jobs that run on Fargate resources")
    vcpu, memory = requirements.get("VCPU"), requirements.get("MEMORY")
    if vcpu is None or memory is None:
        raise ValidationError("A job definition on FARGATE needs both VCPU and MEMORY in resourceRequirements")
    key = _vcpu_key(vcpu)
    if key is None:
        raise ValidationError(f"VCPU {vcpu} is not available on Fargate: use one of {', '.join(FARGATE_MEMORY)}")
    if not memory.isdigit() or int(memory) not in FARGATE_MEMORY[key]:
        allowed = FARGATE_MEMORY[key]
        raise ValidationError(
            f"MEMORY {memory} is not available on Fargate with VCPU {vcpu}: use {allowed[0]} to {allowed[-1]} "
            f"MiB in steps of {allowed[1] - allowed[0]}"
            if len(allowed) > 3
            else f"MEMORY {memory} is not available on Fargate with VCPU {vcpu}: use one of "
            + ", ".join(str(m) for m in allowed)
        )
    container.setdefault("networkConfiguration", {"assignPublicIp": "DISABLED"})
    container.setdefault("fargatePlatformConfiguration", {"platformVersion": "LATEST"})


CONTAINER_CHECKS: list[Callable[[dict[str, Any]], None]] = []
"""Checks of the container runtime jobs run with (``containers/wiring.py``, added at server start): container
properties it cannot honour are refused at registration."""


def apply(body: dict[str, Any]) -> None:
    """Check ``body`` (RegisterJobDefinition's, defaults applied) and add AWS's platform defaults."""
    container = body.get("containerProperties")
    if container is not None:
        for check in CONTAINER_CHECKS:
            check(container)
    if container is not None and "FARGATE" in (body.get("platformCapabilities") or ()):
        check_fargate_container(container)


def check_consumables(ctx: ServiceContext, body: dict[str, Any]) -> None:
    """``consumableResourceProperties`` must name consumable resources that exist, each once."""
    requirements = consumables.parse_requirements(
        body.get("consumableResourceProperties"), "consumableResourceProperties"
    )
    consumables.check_exist(ctx.store, requirements)
