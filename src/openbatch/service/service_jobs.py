"""Service jobs (SubmitServiceJob, DescribeServiceJob, ListServiceJobs, UpdateServiceJob,
TerminateServiceJob(s)).

AWS hands service jobs to another service (SAGEMAKER_TRAINING jobs run on Amazon
SageMaker). OpenBatch has no such service, so it refuses the submission plainly
instead of accepting a job that could never run; the other operations answer as
AWS does for a queue that holds no service jobs.
"""

from __future__ import annotations

from typing import Any

from openbatch.domain.arns import ResourceType
from openbatch.domain.errors import ClientError, NotFound, ValidationError
from openbatch.domain.validation import check_tags
from openbatch.service import named_resources as nr
from openbatch.service.context import ServiceContext

MAX_BULK = 50


def unsupported(job_type: str) -> str:
    return (
        f"Service jobs of type {job_type} cannot run on OpenBatch: AWS runs them on Amazon SageMaker, "
        "which OpenBatch does not provide. Submit a container job with SubmitJob instead."
    )


def _queue(ctx: ServiceContext, reference: str) -> dict[str, Any]:
    return nr.get(ctx, reference, ResourceType.JOB_QUEUE, "JobQueue").body


def _not_found(job_id: str) -> NotFound:
    return NotFound(f"Service job {job_id} does not exist")


def _check_job_id(job_id: str) -> str:
    if not job_id:
        raise ValidationError("jobId must not be empty")
    return job_id


def submit(ctx: ServiceContext, req: dict[str, Any]) -> dict[str, Any]:
    queue = _queue(ctx, req["jobQueue"])
    check_tags(req.get("tags"))
    if queue.get("jobQueueType") != req["serviceJobType"]:
        raise ClientError(
            f"JobQueue {queue['jobQueueName']} is of type {queue.get('jobQueueType', 'ECS')} and cannot accept "
            f"service jobs of type {req['serviceJobType']}"
        )
    raise ClientError(unsupported(req["serviceJobType"]))


def describe(ctx: ServiceContext, req: dict[str, Any]) -> dict[str, Any]:
    raise _not_found(_check_job_id(req["jobId"]))


def update(ctx: ServiceContext, req: dict[str, Any]) -> dict[str, Any]:
    raise _not_found(_check_job_id(req["jobId"]))


def terminate(ctx: ServiceContext, req: dict[str, Any]) -> dict[str, Any]:
    if not req["reason"]:
        raise ValidationError("reason must not be empty")
    raise _not_found(_check_job_id(req["jobId"]))


def terminate_many(ctx: ServiceContext, req: dict[str, Any]) -> dict[str, Any]:
    ids: list[str] = req["jobs"]
    if not 1 <= len(ids) <= MAX_BULK:
        raise ValidationError(f"jobs must list 1 to {MAX_BULK} service job ids")
    if not req["reason"]:
        raise ValidationError("reason must not be empty")
    errors = [{"job": job_id, "code": "ClientException", "message": _not_found(job_id).message} for job_id in ids]
    return {"successful": [], "errors": errors}


def list_jobs(ctx: ServiceContext, req: dict[str, Any]) -> dict[str, Any]:
    if req.get("jobQueue"):
        _queue(ctx, req["jobQueue"])
    for entry in req.get("filters") or []:
        if entry.get("name") not in ("JOB_NAME", "BEFORE_CREATED_AT", "AFTER_CREATED_AT"):
            raise ValidationError(
                f"Unknown filter {entry.get('name')!r}: use JOB_NAME, BEFORE_CREATED_AT or AFTER_CREATED_AT"
            )
    max_results = req.get("maxResults")
    if max_results is not None and not 1 <= max_results <= 100:
        raise ValidationError(f"maxResults must be between 1 and 100; got {max_results}")
    # Nothing is ever accepted (see ``submit``), so every queue lists no service jobs.
    return {"jobSummaryList": []}
