"""Multi-node parallel jobs: node ranges, their validation, and each node's effective container.

A multinode job definition's ``nodeProperties`` name ``numNodes``, the ``mainNode``
index and up to five node groups, each a ``targetNodes`` range (``"0:3"``, ``":3"``,
``"2:"``, ``":"``) with a ``container``. The ranges together cover every node; a range
may sit inside another (``0:10`` and ``4:5``), in which case the inner one's container
is the one its nodes run (AWS API reference, NodeRangeProperty). Ranges that cross
without one containing the other, the same range listed twice, a gap, or a range past
the last node are refused here, as is anything that names the main node out of range.

SubmitJob's ``nodeOverrides`` may change ``numNodes`` only if some range is open-ended,
its lower bound below the new count, and ``mainNode`` below it too (API reference,
NodeOverrides); ``nodePropertyOverrides`` apply ``containerOverrides`` to the nodes of
their own ``targetNodes`` range, in the order given.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from openbatch.domain import jobspec
from openbatch.domain.errors import InvalidTransition, ValidationError
from openbatch.domain.job import Job
from openbatch.domain.states import TERMINAL, JobStatus

MAX_NODES = 1000
"""AWS's default limit of nodes in one job (user guide, "Node groups")."""
MAX_NODE_GROUPS = 5
"""AWS: "up to five distinct node groups for each job"."""
_RANGE = re.compile(r"^(\d*):(\d*)$")
_NOT_HERE = ("ecsProperties", "eksProperties", "consumableResourceProperties")


@dataclass(frozen=True, slots=True)
class NodeRange:
    """Node indices ``start`` to ``end`` inclusive; ``end`` None: open-ended (to the last node)."""

    start: int
    end: int | None
    text: str

    def last(self, num_nodes: int) -> int:
        return num_nodes - 1 if self.end is None else self.end

    def covers(self, index: int, num_nodes: int) -> bool:
        return self.start <= index <= self.last(num_nodes)

    def width(self, num_nodes: int) -> int:
        return self.last(num_nodes) - self.start + 1


def parse_range(member: str, text: Any) -> NodeRange:
    """``targetNodes`` as written: ``a:b``, ``:b``, ``a:`` or ``:``."""
    match = _RANGE.fullmatch(text) if isinstance(text, str) else None
    if match is None:
        raise ValidationError(
            f"{member} {text!r} is not a node range: write start:end with node indices, such as 0:3, :3, 2: or :"
        )
    start = int(match[1]) if match[1] else 0
    end = int(match[2]) if match[2] else None
    if end is not None and end < start:
        raise ValidationError(f"{member} {text!r} ends before it starts")
    return NodeRange(start, end, text)


def _count(member: str, value: Any, low: int, high: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValidationError(f"{member} must be a whole number; got {value!r}")
    if not low <= value <= high:
        raise ValidationError(f"{member} must be between {low} and {high}; got {value}")
    return value


def _check_fits(member: str, ranges: Sequence[NodeRange], num_nodes: int) -> None:
    for node_range in ranges:
        if node_range.start >= num_nodes or (node_range.end is not None and node_range.end >= num_nodes):
            raise ValidationError(
                f"{member} {node_range.text!r} names nodes past the last one: numNodes is {num_nodes}, "
                f"so node indices run from 0 to {num_nodes - 1}"
            )


def check_layout(ranges: Sequence[NodeRange], num_nodes: int, main_node: int) -> None:
    """Ranges within ``0..num_nodes-1``, nested or apart (never crossing, never twice), covering every node."""
    member = "nodeProperties.nodeRangeProperties.targetNodes"
    _check_fits(member, ranges, num_nodes)
    if not 0 <= main_node < num_nodes:
        raise ValidationError(
            f"nodeProperties.mainNode {main_node} is not one of the job's nodes: numNodes is {num_nodes}, "
            f"so it must be between 0 and {num_nodes - 1}"
        )
    spans = [(r.start, r.last(num_nodes), r.text) for r in ranges]
    for i, (a_start, a_end, a_text) in enumerate(spans):
        for b_start, b_end, b_text in spans[i + 1 :]:
            if (a_start, a_end) == (b_start, b_end):
                raise ValidationError(f"{member} {a_text!r} and {b_text!r} name the same nodes: list a range once")
            apart = a_end < b_start or b_end < a_start
            nested = (a_start <= b_start and b_end <= a_end) or (b_start <= a_start and a_end <= b_end)
            if not (apart or nested):
                raise ValidationError(
                    f"{member} {a_text!r} and {b_text!r} overlap without one containing the other: "
                    "node ranges may only be nested (such as 0:10 and 4:5) or apart"
                )
    covered = [False] * num_nodes
    for start, end, _text in spans:
        for index in range(start, end + 1):
            covered[index] = True
    missing = [index for index, done in enumerate(covered) if not done]
    if missing:
        shown = ", ".join(str(i) for i in missing[:10]) + (" …" if len(missing) > 10 else "")
        raise ValidationError(
            f"The node ranges must cover every node from 0 to {num_nodes - 1}; no range covers node(s) {shown}"
        )


def check_container(member: str, container: Mapping[str, Any]) -> None:
    jobspec.check_environment(container.get("environment") or [])
    jobspec.check_resource_requirements(container.get("resourceRequirements") or [])
    jobspec.check_legacy_resources(member, container)


def check_node_properties(properties: Mapping[str, Any]) -> dict[str, Any]:
    """RegisterJobDefinition's ``nodeProperties``, checked; returned with AWS's container defaults filled in."""
    if not isinstance(properties, Mapping):
        raise ValidationError("nodeProperties must be an object with numNodes, mainNode and nodeRangeProperties")
    for required in ("numNodes", "mainNode", "nodeRangeProperties"):
        if required not in properties:
            raise ValidationError(f"nodeProperties.{required} is required")
    num_nodes = _count("nodeProperties.numNodes", properties["numNodes"], 1, MAX_NODES)
    main_node = _count("nodeProperties.mainNode", properties["mainNode"], 0, MAX_NODES - 1)
    groups = properties["nodeRangeProperties"]
    if not isinstance(groups, list) or not 1 <= len(groups) <= MAX_NODE_GROUPS:
        raise ValidationError(f"nodeProperties.nodeRangeProperties must list 1 to {MAX_NODE_GROUPS} node ranges")
    ranges = []
    normalized = []
    for position, group in enumerate(groups):
        member = f"nodeProperties.nodeRangeProperties[{position}]"
        if not isinstance(group, Mapping):
            raise ValidationError(f"{member} must be an object with targetNodes and container")
        ranges.append(parse_range(f"{member}.targetNodes", group.get("targetNodes")))
        for kind in _NOT_HERE:
            if kind in group:
                raise ValidationError(f"{member}.{kind} is not supported here: give each node range a container")
        container = group.get("container")
        if not isinstance(container, Mapping):
            raise ValidationError(f"{member}.container is required")
        if not container.get("image"):
            raise ValidationError(f"{member}.container.image is required")
        check_container(f"{member}.container", container)
        normalized.append({**group, "container": {**jobspec.CONTAINER_DEFAULTS, **container}})
    check_layout(ranges, num_nodes, main_node)
    return {**properties, "nodeRangeProperties": normalized}


def with_num_nodes(properties: Mapping[str, Any], num_nodes: int | None) -> dict[str, Any]:
    """The definition's node properties with SubmitJob's ``nodeOverrides.numNodes`` applied (AWS's three rules)."""
    result = dict(properties)
    if num_nodes is None:
        return result
    num_nodes = _count("nodeOverrides.numNodes", num_nodes, 1, MAX_NODES)
    ranges = [parse_range("targetNodes", g["targetNodes"]) for g in properties["nodeRangeProperties"]]
    open_ended = [r for r in ranges if r.end is None]
    if not open_ended:
        raise ValidationError(
            "nodeOverrides.numNodes needs a node range with an open upper bound (such as 1: or :) in the job definition"
        )
    if not any(r.start < num_nodes for r in open_ended):
        raise ValidationError(
            f"nodeOverrides.numNodes {num_nodes} must be greater than the lower bound of the job definition's "
            f"open-ended node range ({', '.join(r.text for r in open_ended)})"
        )
    main_node = int(properties["mainNode"])
    if main_node >= num_nodes:
        raise ValidationError(
            f"nodeOverrides.numNodes {num_nodes} must be greater than the job definition's mainNode {main_node}"
        )
    check_layout(ranges, num_nodes, main_node)
    result["numNodes"] = num_nodes
    return result


def node_containers(
    properties: Mapping[str, Any], property_overrides: Sequence[Mapping[str, Any]] | None
) -> list[dict[str, Any]]:
    """Each node's container: its innermost range's, then ``nodePropertyOverrides`` that target it, in order."""
    num_nodes = int(properties["numNodes"])
    groups = [(parse_range("targetNodes", g["targetNodes"]), g["container"]) for g in properties["nodeRangeProperties"]]
    # Innermost first: the narrowest range containing a node decides its container.
    groups.sort(key=lambda item: item[0].width(num_nodes))
    containers: list[dict[str, Any]] = []
    for index in range(num_nodes):
        container = next(c for r, c in groups if r.covers(index, num_nodes))
        containers.append(dict(container))
    for position, override in enumerate(property_overrides or ()):
        member = f"nodeOverrides.nodePropertyOverrides[{position}]"
        target = parse_range(f"{member}.targetNodes", override.get("targetNodes"))
        _check_fits(f"{member}.targetNodes", [target], num_nodes)
        for kind in ("ecsPropertiesOverride", "eksPropertiesOverride", "consumableResourcePropertiesOverride"):
            if override.get(kind) is not None:
                raise ValidationError(f"{member}.{kind} is not supported here: use containerOverrides")
        changes = override.get("containerOverrides")
        for index in range(target.start, target.last(num_nodes) + 1):
            containers[index] = jobspec.merge_container_overrides(containers[index], changes)
    for index, container in enumerate(containers):
        check_container(f"node {index}'s container", container)
    return containers


def total_resources(containers: Sequence[Mapping[str, Any]]) -> jobspec.Resources:
    """What the nodes need together: they are placed at once or not at all."""
    needs = [jobspec.resources_of(c) for c in containers]
    memory = sum(n.memory_mib or 0 for n in needs)
    return jobspec.Resources(
        vcpus=sum(n.vcpus for n in needs),
        memory_mib=memory or None,
        gpus=sum(n.gpus for n in needs),
    )


def node_job_id(job_id: str, index: int) -> str:
    """AWS addresses node ``index`` of multi-node job ``job_id`` as ``jobId#index``."""
    return f"{job_id}#{index}"


def rerun_node(job: Job, now: int) -> JobStatus:
    """A finished node job runs again: its multi-node job is starting its next attempt.

    The one move out of a finished state, so it does not go through ``states.TRANSITIONS``:
    AWS runs every node of a multi-node job again for each new attempt of the job (user
    guide, "each new attempt of a multi-node parallel job updates the corresponding attempts
    of its associated child nodes"), and a node keeps its id ``jobId#index``.
    """
    source = job.status
    if source not in TERMINAL:
        raise InvalidTransition(job.id, source.value, JobStatus.RUNNABLE.value)
    job.status = JobStatus.RUNNABLE
    job.status_reason = None
    job.stopped_at = None
    job.runnable_since = now
    return source
