"""SubmitJob: validate a submission and resolve it into jobs (one, or a parent and its children).

Validation follows AWS's order: queue → job definition → fair-share members →
array size → dependencies → timeout and retry → environment → ``Ref::``.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

from openbatch.domain import jobspec
from openbatch.domain.arns import ResourceType, name_from_reference
from openbatch.domain.errors import ClientError, ValidationError
from openbatch.domain.job import STATUS_SUMMARY_KEYS, Job, JobSpec
from openbatch.domain.resources import JobQueue, SchedulingPolicy
from openbatch.domain.states import JobStatus
from openbatch.domain.validation import check_range, check_tags
from openbatch.executors.binding import check_resources_tag
from openbatch.fidelity import consumables, multi_container
from openbatch.service import multinode
from openbatch.service import request_models as s
from openbatch.store.base import JobDefinitionRecord

_JOB_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,127}$")
_SHARE = re.compile(r"^[A-Za-z0-9]{1,255}\*?$")
MAX_DEPENDENCIES = 20
MAX_ARRAY_SIZE = 10_000

FAIRSHARE_ONLY = (
    "Job with shareIdentifier or schedulingPriority can onlybe submitted to job queue with fair share "
    "scheduling policy."
)


@dataclass(frozen=True, slots=True)
class DependencyInfo:
    """What submission needs to know about a job named in ``dependsOn``."""

    exists: bool
    array_size: int | None


DependencyLookup = Callable[[list[str]], dict[str, DependencyInfo]]


def check_job_name(name: str) -> str:
    if not _JOB_NAME.fullmatch(name):
        raise ValidationError(
            f"jobName {name!r} is invalid: up to 128 letters, numbers, hyphens and underscores, "
            "starting with a letter or number"
        )
    return name


def check_queue(queue: JobQueue | None, reference: str) -> JobQueue:
    if queue is None:
        raise ClientError(f"JobQueue {reference} not found")
    if not queue.enabled:
        raise ClientError(f"JobQueue {queue.name} is DISABLED and does not accept new jobs")
    return queue


def effective_container(definition: dict[str, Any], req: s.SubmitJob) -> dict[str, Any]:
    """Definition ``containerProperties`` with the submission's overrides applied (AWS merge rules)."""
    overrides = req.containerOverrides.echo() if req.containerOverrides is not None else None
    return jobspec.merge_container_overrides(definition.get("containerProperties") or {}, overrides)


def check_fairshare(req: s.SubmitJob, policy: SchedulingPolicy | None) -> None:
    if policy is None or policy.fairshare is None:
        if req.shareIdentifier is not None or req.schedulingPriorityOverride is not None:
            raise ClientError(FAIRSHARE_ONLY)
        return
    if req.shareIdentifier is None:
        raise ClientError("shareIdentifier is required for a job queue with a fair share scheduling policy")
    if not _SHARE.fullmatch(req.shareIdentifier) or req.shareIdentifier.endswith("*"):
        raise ValidationError(f"shareIdentifier {req.shareIdentifier!r} must be up to 255 letters and numbers")
    check_range("schedulingPriorityOverride", req.schedulingPriorityOverride, 0, 9999)


def check_dependencies(req: s.SubmitJob, lookup: DependencyLookup) -> tuple[dict[str, str], ...]:
    entries = req.dependsOn or []
    if len(entries) > MAX_DEPENDENCIES:
        raise ValidationError(f"dependsOn can list at most {MAX_DEPENDENCIES} jobs; {len(entries)} were given")
    array_size = req.arrayProperties.size if req.arrayProperties else None
    ids = [e.jobId for e in entries if e.jobId]
    found = lookup(ids) if ids else {}
    for entry in entries:
        # A SEQUENTIAL entry naming a job on a plain job, a pattern copied widely from examples,
        # is accepted as an ordinary dependency on that job (AWS documents no other meaning).
        if entry.type == "SEQUENTIAL" and not (array_size is None and entry.jobId):
            if array_size is None:
                raise ValidationError("A SEQUENTIAL dependency is only valid on an array job")
            if entry.jobId is not None:
                raise ValidationError("A SEQUENTIAL dependency must not name a jobId")
            continue
        if not entry.jobId:
            raise ValidationError("dependsOn entries need a jobId (except type SEQUENTIAL)")
        info = found.get(entry.jobId)
        if info is None or not info.exists:
            raise ClientError(f"dependsOn: job {entry.jobId} does not exist")
        if entry.type == "N_TO_N":
            if array_size is None:
                raise ValidationError("An N_TO_N dependency is only valid on an array job")
            if info.array_size != array_size:
                raise ValidationError(
                    f"An N_TO_N dependency needs array job {entry.jobId} to have the same size "
                    f"({info.array_size}) as this array ({array_size})"
                )
    return tuple(e.echo() for e in entries)


def build_spec(
    req: s.SubmitJob, queue: JobQueue, definition: JobDefinitionRecord, depends_on: tuple[dict[str, str], ...]
) -> JobSpec:
    body = definition.body
    parameters = {**body.get("parameters", {}), **(req.parameters or {})}
    node_properties = None
    if body.get("type") == "multinode":
        node_properties, resources = multinode.plan(body, req, parameters)
        container: dict[str, Any] = {}
        command: list[str] = []
    else:
        if req.nodeOverrides is not None:
            raise ClientError(f"nodeOverrides only apply to a multinode job definition; {definition.arn} is not one")
        if multi_container.runs(body):
            container = multi_container.container_of(body, req)
        elif body.get("type") != "container" or "containerProperties" not in body:
            raise ClientError(
                f"Job definition {definition.arn} is not supported here: only container job definitions "
                "with containerProperties can run"
            )
        else:
            container = effective_container(body, req)
        jobspec.check_environment(container.get("environment") or [])
        jobspec.check_resource_requirements(container.get("resourceRequirements") or [])
        jobspec.check_legacy_resources("containerOverrides", container)
        command = jobspec.substitute_parameters(container.get("command") or [], parameters)
        if not command:
            raise ClientError("The job has no command: set command in the job definition or containerOverrides")
        container["command"] = command
        resources = jobspec.resources_of(container)
    retry_wire = req.retryStrategy.echo() if req.retryStrategy else body.get("retryStrategy")
    jobspec.check_retry_strategy(retry_wire)
    timeout_wire = req.timeout.echo() if req.timeout else body.get("timeout")
    jobspec.check_timeout(timeout_wire)
    array_size = req.arrayProperties.size if req.arrayProperties else None
    if array_size is not None and not 2 <= array_size <= MAX_ARRAY_SIZE:
        raise ValidationError(f"arrayProperties.size must be between 2 and {MAX_ARRAY_SIZE}; got {array_size}")
    priority = req.schedulingPriorityOverride
    if priority is None:
        priority = body.get("schedulingPriority")
    return JobSpec(
        job_name=check_job_name(req.jobName),
        queue=queue.name,
        definition_arn=definition.arn,
        definition_name=definition.name,
        container=container,
        command=tuple(command),
        environment={e["name"]: e.get("value", "") for e in container.get("environment") or []},
        resources=replace(
            resources,
            consumables=consumables.effective_requirements(body, req.consumableResourcePropertiesOverride),
        ),
        retry=jobspec.RetryPolicy.from_wire(retry_wire),
        retry_wire=retry_wire,
        timeout_seconds=(timeout_wire or {}).get("attemptDurationSeconds"),
        parameters=parameters,
        propagate_tags=bool(req.propagateTags if req.propagateTags is not None else body.get("propagateTags")),
        platform_capabilities=tuple(body.get("platformCapabilities") or ["EC2"]),
        scheduling_priority=priority,
        share_identifier=req.shareIdentifier,
        depends_on=depends_on,
        array_size=array_size,
        node_properties=node_properties,
    )


def is_plain_sequential(spec: JobSpec, dependency: dict[str, str]) -> bool:
    """A SEQUENTIAL entry with a jobId on a job that is not an array: an ordinary dependency."""
    return spec.array_size is None and dependency.get("type") == "SEQUENTIAL" and bool(dependency.get("jobId"))


def build_jobs(spec: JobSpec, req: s.SubmitJob, now: int) -> list[Job]:
    """The jobs to store: one job, or an array parent followed by its children."""
    job_id = str(uuid.uuid4())
    tags = check_tags(req.tags)
    check_resources_tag(tags)
    plain = tuple(d["jobId"] for d in spec.depends_on if d.get("type") is None or is_plain_sequential(spec, d))
    if spec.node_properties is not None:
        return multinode.build_jobs(spec, req, job_id, now, tags, plain)
    if spec.array_size is None:
        return [Job(id=job_id, spec=spec, status=JobStatus.SUBMITTED, created_at=now, tags=tags, deps=plain)]
    summary = dict.fromkeys(STATUS_SUMMARY_KEYS, 0)
    summary[JobStatus.PENDING.value] = spec.array_size
    parent = Job(
        id=job_id,
        spec=spec,
        status=JobStatus.SUBMITTED,
        created_at=now,
        tags=tags,
        status_summary=summary,
        summary_updated_at=now,
    )
    n_to_n = [d["jobId"] for d in spec.depends_on if d.get("type") == "N_TO_N"]
    sequential = any(d.get("type") == "SEQUENTIAL" for d in spec.depends_on)
    jobs = [parent]
    for index in range(spec.array_size):
        deps = list(plain)
        deps.extend(f"{other}:{index}" for other in n_to_n)
        if sequential and index > 0:
            deps.append(f"{job_id}:{index - 1}")
        jobs.append(
            Job(
                id=f"{job_id}:{index}",
                spec=spec,
                status=JobStatus.PENDING,
                created_at=now,
                parent_id=job_id,
                array_index=index,
                deps=tuple(deps),
            )
        )
    return jobs


def queue_name(reference: str) -> str:
    return name_from_reference(reference, ResourceType.JOB_QUEUE)
