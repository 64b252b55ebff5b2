"""Multi-node parallel jobs in the service layer: registration, SubmitJob, and their wire shapes.

SubmitJob stores the job and one node job per node (``<jobId>#<index>``), each with
the container of its node range, ``Ref::`` parameters and ``nodeOverrides`` applied.
The job carries the effective ``nodeProperties``; its resources are what all nodes
need together, since they are placed together (``scheduler/multinode.py``). Node jobs
wait in PENDING until then.

DescribeJobs shows the job with ``nodeProperties`` and no ``container`` (AWS documents
that a multi-node job's details are those of its main node, which are in ``attempts``),
and each node job with ``nodeDetails`` {nodeIndex, isMainNode} and its ``container``.
ListJobs summaries carry ``nodeProperties`` {numNodes, and for node jobs nodeIndex and
isMainNode}.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from typing import Any

from openbatch.domain import jobspec
from openbatch.domain import multinode as mn
from openbatch.domain.errors import ClientError, ValidationError
from openbatch.domain.job import Job, JobSpec
from openbatch.domain.states import JobStatus
from openbatch.service import request_models as s

_NOT_WITH_MULTINODE = (
    ("arrayProperties", "array jobs cannot be multi-node parallel jobs"),
    ("containerOverrides", "use nodeOverrides.nodePropertyOverrides to change a multi-node parallel job's containers"),
    ("ecsPropertiesOverride", "a multi-node parallel job runs containers, not an ECS task"),
    ("eksPropertiesOverride", "a multi-node parallel job runs containers, not an EKS pod"),
    ("consumableResourcePropertiesOverride", "consumable resources are not supported on multi-node parallel jobs"),
)


def check_definition(body: dict[str, Any]) -> None:
    """RegisterJobDefinition: ``nodeProperties`` only, and only with type multinode; normalised in place."""
    if body.get("type") != "multinode":
        if "nodeProperties" in body:
            raise ValidationError("nodeProperties is only valid in a job definition of type multinode")
        return
    others = [k for k in ("containerProperties", "ecsProperties", "eksProperties") if k in body]
    if others:
        raise ValidationError(
            f"A multinode job definition gives each node range its container in nodeProperties; "
            f"{', '.join(others)} cannot be given with it"
        )
    if "nodeProperties" not in body:
        raise ValidationError("A multinode job definition needs nodeProperties")
    if "FARGATE" in (body.get("platformCapabilities") or ()):
        raise ValidationError("Multi-node parallel jobs are not supported on FARGATE")
    if body.get("consumableResourceProperties"):
        raise ValidationError("consumableResourceProperties are not supported on multi-node parallel jobs")
    body["nodeProperties"] = mn.check_node_properties(body["nodeProperties"])


def _node_overrides(req: s.SubmitJob) -> tuple[int | None, list[dict[str, Any]] | None]:
    overrides = req.nodeOverrides or {}
    if not isinstance(overrides, dict):
        raise ValidationError("nodeOverrides must be an object")
    property_overrides = overrides.get("nodePropertyOverrides")
    if property_overrides is not None and not (
        isinstance(property_overrides, list) and all(isinstance(o, dict) for o in property_overrides)
    ):
        raise ValidationError("nodeOverrides.nodePropertyOverrides must be a list of objects")
    return overrides.get("numNodes"), property_overrides


def node_containers(properties: dict[str, Any], req: s.SubmitJob, parameters: dict[str, str]) -> list[dict[str, Any]]:
    """Each node's effective container, ``Ref::`` substituted; every node must have a command."""
    _num, property_overrides = _node_overrides(req)
    containers = mn.node_containers(properties, property_overrides)
    for index, container in enumerate(containers):
        command = jobspec.substitute_parameters(container.get("command") or [], parameters)
        if not command:
            raise ClientError(
                f"Node {index} has no command: set command in its node range's container or in nodeOverrides"
            )
        container["command"] = command
    return containers


def plan(body: dict[str, Any], req: s.SubmitJob, parameters: dict[str, str]) -> tuple[dict[str, Any], Any]:
    """SubmitJob of a multinode definition: the job's effective ``nodeProperties`` and what its nodes need."""
    for member, why in _NOT_WITH_MULTINODE:
        if getattr(req, member) is not None:
            raise ClientError(f"{member} cannot be used with multi-node parallel job definition: {why}")
    num_nodes, _overrides = _node_overrides(req)
    properties = mn.with_num_nodes(body["nodeProperties"], num_nodes)
    containers = node_containers(properties, req, parameters)
    return properties, mn.total_resources(containers)


def build_jobs(
    spec: JobSpec, req: s.SubmitJob, job_id: str, now: int, tags: dict[str, str], deps: tuple[str, ...]
) -> list[Job]:
    """The job (SUBMITTED, with the dependencies) followed by its node jobs (PENDING until placed)."""
    properties = spec.node_properties or {}
    containers = node_containers(properties, req, spec.parameters)
    shape = {"numNodes": properties["numNodes"], "mainNode": properties["mainNode"]}
    jobs = [Job(id=job_id, spec=spec, status=JobStatus.SUBMITTED, created_at=now, tags=tags, deps=deps)]
    for index, container in enumerate(containers):
        node_spec = replace(
            spec,
            container=container,
            command=tuple(container["command"]),
            environment={e["name"]: e.get("value", "") for e in container.get("environment") or []},
            resources=jobspec.resources_of(container),
            # The job's retry strategy and timeout apply to the whole job, never to one node.
            retry=jobspec.RetryPolicy(),
            retry_wire=None,
            timeout_seconds=None,
            depends_on=(),
            node_properties=shape,
        )
        jobs.append(
            Job(
                id=mn.node_job_id(job_id, index),
                spec=node_spec,
                status=JobStatus.PENDING,
                created_at=now,
                parent_id=job_id,
                node_index=index,
            )
        )
    return jobs


def render_detail(detail: dict[str, Any], job: Job) -> None:
    """DescribeJobs: ``nodeProperties`` on the job (no container of its own), ``nodeDetails`` on a node job."""
    properties = job.spec.node_properties
    if properties is None:
        return
    if job.node_index is None:
        detail.pop("container", None)
        detail["nodeProperties"] = properties
        return
    detail["nodeDetails"] = {"nodeIndex": job.node_index, "isMainNode": job.node_index == properties["mainNode"]}


def render_summary(summary: dict[str, Any], job: Job) -> None:
    """ListJobs: ``nodeProperties`` {numNodes} on the job; {isMainNode, numNodes, nodeIndex} on a node job."""
    properties = job.spec.node_properties
    if properties is None:
        return
    shape: dict[str, Any] = {"numNodes": properties["numNodes"]}
    if job.node_index is not None:
        shape = {"isMainNode": job.node_index == properties["mainNode"], **shape, "nodeIndex": job.node_index}
    summary["nodeProperties"] = shape


def check_listed_parent(kind: str, parent: Sequence[Job]) -> bool:
    """ListJobs ``arrayJobId``/``multiNodeJobId``: whether the named job is of that kind (else nothing is listed)."""
    if not parent:
        return False
    job = parent[0]
    if kind == "multiNodeJobId":
        return job.is_multinode_parent
    return job.is_array_parent
