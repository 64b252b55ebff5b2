"""ECS (``ecsProperties``) and EKS (``eksProperties``) jobs as one local command.

SubmitJob turns the task's or pod's containers, with the submission's overrides
and ``Ref::`` parameters applied, into a spec for ``openbatch.runners.multi_container``;
the executor runs that as the attempt's command, so the engine treats these jobs
like any other. The job's vCPUs and memory are the sum over its containers (for a
pod, at least the largest init container's). DescribeJobs shows ``ecsProperties``
or ``eksProperties`` (and ``eksAttempts``) in AWS's shape instead of ``container``.
"""

from __future__ import annotations

import json
import re
import socket
import sys
from typing import Any

from openbatch.domain import jobspec
from openbatch.domain.errors import ClientError, ValidationError
from openbatch.domain.job import Job

RUNNER = "openbatch.runners.multi_container"
ECS, EKS = "ecsProperties", "eksProperties"
_CPU = re.compile(r"^([0-9]+(?:\.[0-9]+)?)(m?)$")
_MEMORY = re.compile(r"^([0-9]+(?:\.[0-9]+)?)(Ki|Mi|Gi|Ti|K|M|G|T)?$")
_MEMORY_MIB = {None: 1 / 2**20, "Ki": 1 / 1024, "Mi": 1, "Gi": 1024, "Ti": 1024**2}
_MEMORY_MIB.update({"K": 1000 / 2**20, "M": 10**6 / 2**20, "G": 10**9 / 2**20, "T": 10**12 / 2**20})


def runs(definition: dict[str, Any]) -> bool:
    """A container job definition given as an ECS task or an EKS pod."""
    return (
        definition.get("type") == "container"
        and "containerProperties" not in definition
        and (ECS in definition or EKS in definition)
    )


def _by_name(overrides: list[dict[str, Any]] | None, name: str | None, index: int) -> dict[str, Any]:
    for position, entry in enumerate(overrides or []):
        if (entry.get("name") is not None and entry.get("name") == name) or (
            entry.get("name") is None and position == index
        ):
            return entry
    return {}


def _env_list(value: Any) -> list[dict[str, str]]:
    return [{"name": str(e.get("name", "")), "value": str(e.get("value", ""))} for e in value or []]


def _ecs(definition: dict[str, Any], override: dict[str, Any] | None, parameters: dict[str, str]) -> dict[str, Any]:
    tasks = definition[ECS].get("taskProperties") or []
    if len(tasks) != 1:
        raise ClientError("ecsProperties.taskProperties must hold exactly one task")
    task = dict(tasks[0])
    task_override = ((override or {}).get("taskProperties") or [{}])[0]
    containers = []
    for index, container in enumerate(task.get("containers") or []):
        merged = dict(container)
        change = _by_name(task_override.get("containers"), container.get("name"), index)
        for member in ("command", "resourceRequirements"):
            if change.get(member) is not None:
                merged[member] = change[member]
        if change.get("environment") is not None:
            env = {e["name"]: e.get("value", "") for e in _env_list(merged.get("environment"))}
            env.update({e["name"]: e["value"] for e in _env_list(change["environment"])})
            merged["environment"] = [{"name": k, "value": v} for k, v in env.items()]
        merged.setdefault("name", f"container-{index}")
        merged.setdefault("essential", True)
        merged["command"] = jobspec.substitute_parameters(merged.get("command") or [], parameters)
        jobspec.check_environment(merged.get("environment") or [])
        jobspec.check_resource_requirements(merged.get("resourceRequirements") or [])
        containers.append(merged)
    if not containers:
        raise ClientError("ecsProperties.taskProperties[0].containers must list at least one container")
    if not any(c["essential"] for c in containers):
        raise ClientError("At least one container of the task must be essential")
    task["containers"] = containers
    return {"taskProperties": [task]}


def _eks(definition: dict[str, Any], override: dict[str, Any] | None, parameters: dict[str, str]) -> dict[str, Any]:
    pod = dict(definition[EKS].get("podProperties") or {})
    pod_override = (override or {}).get("podProperties") or {}
    for member in ("containers", "initContainers"):
        merged_list = []
        for index, container in enumerate(pod.get(member) or []):
            merged = dict(container)
            change = _by_name(pod_override.get(member), container.get("name"), index)
            for key in ("image", "command", "args", "env", "resources"):
                if change.get(key) is not None:
                    merged[key] = change[key]
            merged.setdefault("name", f"{'init' if member == 'initContainers' else 'container'}-{index}")
            merged["command"] = jobspec.substitute_parameters(merged.get("command") or [], parameters)
            merged["args"] = jobspec.substitute_parameters(merged.get("args") or [], parameters)
            merged_list.append(merged)
        if merged_list:
            pod[member] = merged_list
    if not pod.get("containers"):
        raise ClientError("eksProperties.podProperties.containers must list at least one container")
    if pod_override.get("metadata") is not None:
        pod["metadata"] = pod_override["metadata"]
    return {"podProperties": pod}


def _cpu(value: Any) -> float:
    match = _CPU.match(str(value))
    if match is None:
        raise ValidationError(f"cpu {value!r} is not a Kubernetes CPU quantity such as 1 or 500m")
    return float(match[1]) / (1000 if match[2] else 1)


def _memory_mib(value: Any) -> int:
    match = _MEMORY.match(str(value))
    if match is None:
        raise ValidationError(f"memory {value!r} is not a Kubernetes memory quantity such as 1024Mi or 2Gi")
    return max(int(float(match[1]) * _MEMORY_MIB[match[2]]), 1)


def _pod_container_needs(container: dict[str, Any]) -> tuple[float, int]:
    resources = container.get("resources") or {}
    wanted = {**(resources.get("requests") or {}), **(resources.get("limits") or {})}
    cpu = _cpu(wanted["cpu"]) if "cpu" in wanted else 0.0
    memory = _memory_mib(wanted["memory"]) if "memory" in wanted else 0
    return cpu, memory


def _requirements(vcpus: float, memory: int) -> list[dict[str, str]]:
    needs = [{"type": "VCPU", "value": f"{max(vcpus, 0.25):g}"}]
    if memory:
        needs.append({"type": "MEMORY", "value": str(memory)})
    return needs


def container_of(definition: dict[str, Any], req: Any) -> dict[str, Any]:
    """The effective 'container' SubmitJob stores for an ECS or EKS job: the runner's command,
    the summed resources, and the effective properties (for DescribeJobs)."""
    parameters = {**definition.get("parameters", {}), **(req.parameters or {})}
    if ECS in definition:
        properties = _ecs(definition, req.ecsPropertiesOverride, parameters)
        containers = properties["taskProperties"][0]["containers"]
        vcpus = memory = 0.0
        for container in containers:
            need = jobspec.resources_of(container)
            vcpus += need.vcpus
            memory += need.memory_mib or 0
        spec = {
            "kind": "ecs",
            "containers": [
                {
                    "name": c["name"],
                    "command": c["command"],
                    "environment": {e["name"]: e["value"] for e in _env_list(c.get("environment"))},
                    "essential": c["essential"],
                    "dependsOn": c.get("dependsOn") or [],
                }
                for c in containers
            ],
        }
        kind = ECS
    else:
        properties = _eks(definition, req.eksPropertiesOverride, parameters)
        pod = properties["podProperties"]
        sums = [_pod_container_needs(c) for c in pod["containers"]]
        inits = [_pod_container_needs(c) for c in pod.get("initContainers") or []]
        vcpus = max(sum(c for c, _ in sums), max((c for c, _ in inits), default=0.0))
        memory = max(sum(m for _, m in sums), max((m for _, m in inits), default=0))

        def runner_container(c: dict[str, Any]) -> dict[str, Any]:
            env = {e["name"]: e["value"] for e in _env_list(c.get("env"))}
            return {"name": c["name"], "command": [*c["command"], *c["args"]], "environment": env}

        spec = {
            "kind": "eks",
            "containers": [runner_container(c) for c in pod["containers"]],
            "initContainers": [runner_container(c) for c in pod.get("initContainers") or []],
        }
        kind = EKS
    return {
        "command": [sys.executable, "-m", RUNNER, json.dumps(spec, separators=(",", ":"))],
        "resourceRequirements": _requirements(vcpus, int(memory)),
        "environment": [],
        kind: properties,
    }


def render_detail(detail: dict[str, Any], job: Job) -> None:
    """DescribeJobs for an ECS or EKS job: its properties instead of ``container``."""
    container = job.spec.container
    if ECS not in container and EKS not in container:
        return
    detail.pop("container", None)
    latest = job.current or (job.attempts[-1] if job.attempts else None)
    if ECS in container:
        properties = json.loads(json.dumps(container[ECS]))
        if latest is not None:
            for entry in properties["taskProperties"][0]["containers"]:
                entry["logStreamName"] = latest.log_stream
        detail[ECS] = properties
        return
    pod = json.loads(json.dumps(container[EKS]["podProperties"]))
    pod_name = f"aws-batch.{job.id.replace(':', '-')}"
    pod["podName"] = pod_name
    pod["nodeName"] = socket.gethostname()
    detail[EKS] = {"podProperties": pod}
    attempts = [*job.attempts, *([job.current] if job.current is not None else [])]
    detail["eksAttempts"] = [
        {
            k: v
            for k, v in {
                # One process stands for the pod: its exit code is a container's only when there is one.
                "containers": [
                    {"name": c["name"], "exitCode": a.exit_code}
                    if a.exit_code is not None and len(pod["containers"]) == 1
                    else {"name": c["name"]}
                    for c in pod["containers"]
                ],
                "podName": pod_name,
                "nodeName": pod["nodeName"],
                "startedAt": a.started_at,
                "stoppedAt": a.stopped_at,
                "statusReason": a.status_reason,
            }.items()
            if v is not None
        }
        for a in attempts
    ]
