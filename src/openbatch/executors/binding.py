"""Which executor runs a compute environment's jobs, from the environment's tags.

A compute environment created through the unmodified AWS API is bound by tags:

* ``openbatch:executor`` — ``local`` (the default: this host's supervisor) or ``ray``;
* ``openbatch:ray-address`` — ``HOST:PORT`` of the Ray cluster's head (GCS), or ``ray://HOST:PORT``;
* ``openbatch:ray-resources`` — custom Ray resources every job of the environment asks for, as
  ``name=quantity`` pairs separated by spaces (``ssd=1 zone_a=0.001``); the same tag on a job
  (SubmitJob ``tags``) adds resources for that job alone.

The server option ``--ray-address`` binds the ``default`` compute environment when it has no
``openbatch:executor`` tag of its own.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass

from openbatch.domain.errors import ValidationError

EXECUTOR_TAG = "openbatch:executor"
ADDRESS_TAG = "openbatch:ray-address"
RESOURCES_TAG = "openbatch:ray-resources"
EXECUTORS = ("local", "ray")
_ADDRESS = re.compile(r"(ray://)?[A-Za-z0-9._-]+:[0-9]{1,5}")
_RESOURCE = re.compile(r"([A-Za-z0-9_:./-]+)(?:=([0-9]*\.?[0-9]+))?")
_RESERVED = ("CPU", "GPU", "memory", "object_store_memory")


@dataclass(frozen=True, slots=True)
class Binding:
    executor: str
    address: str | None = None


def binding_of(name: str, tags: Mapping[str, str], default_ray_address: str | None = None) -> Binding:
    executor = tags.get(EXECUTOR_TAG)
    if executor is None:
        if name == "default" and default_ray_address:
            return Binding("ray", default_ray_address)
        return Binding("local")
    return Binding(executor, tags.get(ADDRESS_TAG))


def parse_resources(value: str) -> dict[str, float]:
    """``name=quantity name=quantity`` → {name: quantity}; a bare name asks for 1. Raises ValueError."""
    found: dict[str, float] = {}
    for part in value.split():
        match = _RESOURCE.fullmatch(part)
        if match is None:
            raise ValueError(f"{part!r} is not name=quantity")
        name, quantity = match.group(1), float(match.group(2) or 1)
        if name in _RESERVED:
            raise ValueError(f"{name} is set from the job's resourceRequirements, not from {RESOURCES_TAG}")
        if quantity <= 0:
            raise ValueError(f"the quantity of {name} must be greater than 0")
        found[name] = quantity
    return found


def check_binding_tags(tags: Mapping[str, str] | None) -> None:
    """CreateComputeEnvironment / TagResource: a binding that cannot work is refused with a clear message."""
    if not tags:
        return
    executor = tags.get(EXECUTOR_TAG)
    if executor is not None and executor not in EXECUTORS:
        raise ValidationError(f"Tag {EXECUTOR_TAG} must be one of {', '.join(EXECUTORS)}; got {executor!r}")
    address = tags.get(ADDRESS_TAG)
    if executor == "ray" and not address:
        raise ValidationError(f"Tag {EXECUTOR_TAG}=ray needs tag {ADDRESS_TAG} (HOST:PORT of the Ray cluster)")
    if address is not None and not _ADDRESS.fullmatch(address):
        raise ValidationError(f"Tag {ADDRESS_TAG} must be HOST:PORT or ray://HOST:PORT; got {address!r}")
    check_resources_tag(tags)


def check_resources_tag(tags: Mapping[str, str] | None) -> None:
    """SubmitJob and CreateComputeEnvironment: ``openbatch:ray-resources`` must parse."""
    value = (tags or {}).get(RESOURCES_TAG)
    if value is None:
        return
    try:
        parse_resources(value)
    except ValueError as exc:
        raise ValidationError(f"Tag {RESOURCES_TAG}: {exc}") from None
