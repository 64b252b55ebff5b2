"""Jobs to and from store records. Array children store no spec: they share their parent's.

The spec (what was submitted) is written once; every later write carries only the state.
"""

from __future__ import annotations

from dataclasses import fields
from typing import Any

from openbatch.domain.job import Attempt, Job, JobSpec
from openbatch.domain.jobspec import Resources, RetryPolicy
from openbatch.domain.states import JobStatus
from openbatch.store.base import JobRecord

_ATTEMPT_FIELDS = (
    "started_at",
    "stopped_at",
    "exit_code",
    "reason",
    "status_reason",
    "log_stream",
    "task_id",
    "pid",
    "host",
)


_SPEC_FIELDS = tuple(f.name for f in fields(JobSpec) if f.name not in ("retry", "resources"))


def spec_to_body(spec: JobSpec) -> dict[str, Any]:
    # Field by field rather than dataclasses.asdict, whose deep copy dominated SubmitJob.
    body = {name: getattr(spec, name) for name in _SPEC_FIELDS}
    resources = spec.resources
    body["resources"] = {"vcpus": resources.vcpus, "memory_mib": resources.memory_mib, "gpus": resources.gpus}
    if resources.consumables:
        body["resources"]["consumables"] = [list(item) for item in resources.consumables]
    return body


def spec_from_body(body: dict[str, Any]) -> JobSpec:
    data = dict(body)
    stored = dict(data["resources"])
    stored["consumables"] = tuple((str(name), int(quantity)) for name, quantity in stored.get("consumables", ()))
    data["resources"] = Resources(**stored)
    data["retry"] = RetryPolicy.from_wire(data.get("retry_wire"))
    data["command"] = tuple(data["command"])
    data["platform_capabilities"] = tuple(data["platform_capabilities"])
    data["depends_on"] = tuple(data["depends_on"])
    return JobSpec(**data)


def _attempt_to_body(attempt: Attempt) -> dict[str, Any]:
    return {k: v for k in _ATTEMPT_FIELDS if (v := getattr(attempt, k, None)) is not None}


def _attempt_from_body(body: dict[str, Any]) -> Attempt:
    return Attempt(**{k: body.get(k) for k in _ATTEMPT_FIELDS})


def to_record(job: Job, *, with_spec: bool = False) -> JobRecord:
    """The job as a record; ``with_spec`` for the first write (the spec never changes afterwards)."""
    body: dict[str, Any] = {
        "status_reason": job.status_reason,
        "started_at": job.started_at,
        "stopped_at": job.stopped_at,
        "attempts": [_attempt_to_body(a) for a in job.attempts],
        "deps": list(job.deps),
    }
    if job.array_index is None:
        body["tags"] = job.tags
    if job.current is not None:
        body["current"] = _attempt_to_body(job.current)
    if job.compute_environment is not None:
        body["compute_environment"] = job.compute_environment
    for flag in ("is_cancelled", "is_terminated"):
        if getattr(job, flag):
            body[flag] = True
    if job.cancel_reason is not None:
        body["cancel_reason"] = job.cancel_reason
    if job.status_summary is not None:
        body["status_summary"] = job.status_summary
        body["summary_updated_at"] = job.summary_updated_at
    if job.runnable_since is not None:
        body["runnable_since"] = job.runnable_since
    if job.node_index is not None:
        body["node_index"] = job.node_index
    return JobRecord(
        id=job.id,
        parent_id=job.parent_id,
        # Node jobs keep their index in the same column as array children: ListJobs lists both through
        # their parent in index order, and a queue's listing leaves both out.
        array_index=job.array_index if job.array_index is not None else job.node_index,
        queue=job.spec.queue,
        status=job.status.value,
        job_name=job.spec.job_name,
        share_identifier=job.spec.share_identifier,
        created_at=job.created_at,
        body={k: v for k, v in body.items() if v is not None},
        spec=spec_to_body(job.spec) if with_spec and job.array_index is None else None,
        definition_name=job.spec.definition_name if with_spec else None,
        definition_revision=_revision_of(job.spec.definition_arn) if with_spec else None,
    )


def _revision_of(definition_arn: str) -> int | None:
    revision = definition_arn.rsplit(":", 1)[-1]
    return int(revision) if revision.isdigit() else None


def from_record(record: JobRecord, parent_spec: JobSpec | None = None) -> Job:
    body = record.body
    node_index = body.get("node_index")
    array_index = record.array_index if node_index is None else None
    spec = parent_spec if array_index is not None and parent_spec is not None else None
    if spec is None:
        if record.spec is None:
            raise ValueError(f"job {record.id!r} has no spec and no parent spec was given")
        spec = spec_from_body(record.spec)
    job = Job(
        id=record.id,
        spec=spec,
        status=JobStatus(record.status),
        created_at=record.created_at,
        status_reason=body.get("status_reason"),
        started_at=body.get("started_at"),
        stopped_at=body.get("stopped_at"),
        tags=dict(body.get("tags", {})),
        attempts=[_attempt_from_body(a) for a in body.get("attempts", [])],
        is_cancelled=bool(body.get("is_cancelled")),
        is_terminated=bool(body.get("is_terminated")),
        parent_id=record.parent_id,
        array_index=array_index,
        node_index=node_index,
        deps=tuple(body.get("deps", [])),
        status_summary=body.get("status_summary"),
        summary_updated_at=body.get("summary_updated_at"),
        cancel_reason=body.get("cancel_reason"),
        runnable_since=body.get("runnable_since"),
        compute_environment=body.get("compute_environment"),
    )
    if "current" in body:
        job.current = _attempt_from_body(body["current"])
    return job
