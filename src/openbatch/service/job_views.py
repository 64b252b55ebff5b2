"""Jobs rendered as the AWS wire shapes JobDetail and JobSummary."""

from __future__ import annotations

import socket
from collections.abc import Callable
from typing import Any

from openbatch.domain.arns import ArnFactory, ResourceType
from openbatch.domain.job import Attempt, Job
from openbatch.fidelity import consumables, multi_container
from openbatch.service import multinode

_HOST = socket.gethostname()


def _drop_none(data: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in data.items() if v is not None}


class JobRenderer:
    """Builds wire shapes; queue ARNs come from a lookup so renamed regions stay consistent."""

    def __init__(
        self, arns: ArnFactory, queue_arns: dict[str, str], reason_of: Callable[[Job], str | None] | None = None
    ) -> None:
        self.arns = arns
        self.queue_arns = queue_arns
        self.reason_of = reason_of or (lambda job: job.status_reason)

    def job_arn(self, job_id: str) -> str:
        return self.arns.build(ResourceType.JOB, job_id)

    def queue_arn(self, queue: str) -> str:
        return self.queue_arns.get(queue) or self.arns.build(ResourceType.JOB_QUEUE, queue)

    def _attempt_container(self, job: Job, attempt: Attempt) -> dict[str, Any]:
        ce = job.compute_environment or "default"
        region, account = self.arns.region, self.arns.account
        return _drop_none(
            {
                "containerInstanceArn": f"arn:aws:ecs:{region}:{account}:container-instance/{_HOST}",
                "taskArn": f"arn:aws:ecs:{region}:{account}:task/{ce}_Batch/{attempt.task_id}"
                if attempt.task_id
                else None,
                "exitCode": attempt.exit_code,
                "reason": attempt.reason,
                "logStreamName": attempt.log_stream,
                "networkInterfaces": [],
            }
        )

    def _attempt(self, job: Job, attempt: Attempt) -> dict[str, Any]:
        return _drop_none(
            {
                "container": self._attempt_container(job, attempt),
                "startedAt": attempt.started_at,
                "stoppedAt": attempt.stopped_at,
                "statusReason": attempt.status_reason,
            }
        )

    def detail(self, job: Job) -> dict[str, Any]:
        spec = job.spec
        container = dict(spec.container)
        container["command"] = list(spec.command)
        latest = job.current or (job.attempts[-1] if job.attempts else None)
        if latest is not None:
            container.update(self._attempt_container(job, latest))
        detail: dict[str, Any] = {
            "jobArn": self.job_arn(job.id),
            "jobName": spec.job_name,
            "jobId": job.id,
            "jobQueue": self.queue_arn(spec.queue),
            "status": job.status.value,
            "shareIdentifier": spec.share_identifier,
            "schedulingPriority": spec.scheduling_priority,
            "attempts": [self._attempt(job, a) for a in job.attempts],
            "statusReason": self.reason_of(job),
            "createdAt": job.created_at,
            "retryStrategy": spec.retry_wire,
            "startedAt": job.started_at,
            "stoppedAt": job.stopped_at,
            "dependsOn": self._depends_on(job),
            "jobDefinition": spec.definition_arn,
            "parameters": spec.parameters,
            "container": container,
            "timeout": {"attemptDurationSeconds": spec.timeout_seconds} if spec.timeout_seconds else None,
            "tags": job.tags if job.array_index is None else None,
            "propagateTags": spec.propagate_tags,
            "platformCapabilities": list(spec.platform_capabilities),
            "arrayProperties": self._array_properties(job),
            "isCancelled": True if job.is_cancelled else None,
            "isTerminated": True if job.is_terminated else None,
            "consumableResourceProperties": (
                consumables.render(spec.resources.consumables, self.arns) if spec.resources.consumables else None
            ),
        }
        multi_container.render_detail(detail, job)
        multinode.render_detail(detail, job)
        return _drop_none(detail)

    def _depends_on(self, job: Job) -> list[dict[str, str]]:
        if job.array_index is None:
            return [dict(d) for d in job.spec.depends_on]
        return [{"jobId": dep} for dep in job.deps]

    def _array_properties(self, job: Job) -> dict[str, Any] | None:
        if job.array_index is not None:
            return {"index": job.array_index}
        if job.spec.array_size is None:
            return None
        return _drop_none(
            {
                "statusSummary": dict(job.status_summary or {}),
                "statusSummaryLastUpdatedAt": job.summary_updated_at,
                "size": job.spec.array_size,
            }
        )

    def summary(self, job: Job) -> dict[str, Any]:
        latest = job.current or (job.attempts[-1] if job.attempts else None)
        container = None
        if latest is not None and (latest.exit_code is not None or latest.reason is not None):
            container = _drop_none({"exitCode": latest.exit_code, "reason": latest.reason})
        summary = _drop_none(
            {
                "jobArn": self.job_arn(job.id),
                "jobId": job.id,
                "jobName": job.spec.job_name,
                "createdAt": job.created_at,
                "shareIdentifier": job.spec.share_identifier,
                "status": job.status.value,
                "statusReason": self.reason_of(job),
                "startedAt": job.started_at,
                "stoppedAt": job.stopped_at,
                "container": container,
                "arrayProperties": self._array_properties(job),
                "jobDefinition": job.spec.definition_arn,
                "isCancelled": True if job.is_cancelled else None,
                "isTerminated": True if job.is_terminated else None,
            }
        )
        multinode.render_summary(summary, job)
        return summary
