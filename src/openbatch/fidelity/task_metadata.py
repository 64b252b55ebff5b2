"""The ECS task metadata endpoint (version 4) for running jobs.

ECS tells every container ``ECS_CONTAINER_METADATA_URI_V4``; ``GET`` on it describes
the container (including ``LogOptions``: the awslogs group, region and stream), and
``GET …/task`` the task. Tools such as Metaflow read the log stream from it. Here
the URI names the job and attempt: ``/ecs/v4/<jobId>/<attempt>[/task]``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import Any, Protocol

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from openbatch.api.errors import error_response
from openbatch.domain.job import Attempt, Job

PREFIX = "/ecs/v4"
LOG_GROUP = "/aws/batch/job"


class JobLookup(Protocol):
    def get_jobs(self, ids: list[str]) -> list[Job]: ...


def metadata_uri(base_url: str, job: Job, attempt: int) -> str:
    return f"{base_url.rstrip('/')}{PREFIX}/{job.id}/{attempt}"


def _iso(ms: int | None) -> str | None:
    if ms is None:
        return None
    return datetime.fromtimestamp(ms / 1000, UTC).isoformat().replace("+00:00", "Z")


def _attempt(job: Job, number: int) -> Attempt | None:
    if job.current is not None and number == job.attempt_number:
        return job.current
    if 1 <= number <= len(job.attempts):
        return job.attempts[number - 1]
    return None


def container_metadata(job: Job, attempt: Attempt, region: str, account: str) -> dict[str, Any]:
    cluster = f"arn:aws:ecs:{region}:{account}:cluster/{job.compute_environment or 'default'}_Batch"
    task_arn = f"arn:aws:ecs:{region}:{account}:task/{job.compute_environment or 'default'}_Batch/{attempt.task_id}"
    running = attempt.stopped_at is None
    resources = job.spec.resources
    data: dict[str, Any] = {
        "DockerId": attempt.task_id,
        "Name": "default",
        "DockerName": f"ecs-{job.spec.definition_name}-default",
        "Image": job.spec.container.get("image", ""),
        "Labels": {
            "com.amazonaws.ecs.cluster": cluster,
            "com.amazonaws.ecs.container-name": "default",
            "com.amazonaws.ecs.task-arn": task_arn,
            "com.amazonaws.ecs.task-definition-family": job.spec.definition_name,
        },
        "DesiredStatus": "RUNNING" if running else "STOPPED",
        "KnownStatus": "RUNNING" if running else "STOPPED",
        "Limits": {"CPU": int(resources.vcpus * 1024), "Memory": resources.memory_mib or 0},
        "StartedAt": _iso(attempt.started_at),
        "FinishedAt": _iso(attempt.stopped_at),
        "Type": "NORMAL",
        "LogDriver": "awslogs",
        "LogOptions": {"awslogs-group": LOG_GROUP, "awslogs-region": region, "awslogs-stream": attempt.log_stream},
        "ContainerARN": f"arn:aws:ecs:{region}:{account}:container/{attempt.task_id}",
        "Networks": [{"NetworkMode": "host", "IPv4Addresses": ["127.0.0.1"]}],
    }
    if attempt.exit_code is not None:
        data["ExitCode"] = attempt.exit_code
    return {k: v for k, v in data.items() if v is not None}


def task_metadata(job: Job, attempt: Attempt, region: str, account: str) -> dict[str, Any]:
    container = container_metadata(job, attempt, region, account)
    return {
        "Cluster": container["Labels"]["com.amazonaws.ecs.cluster"],
        "TaskARN": container["Labels"]["com.amazonaws.ecs.task-arn"],
        "Family": job.spec.definition_name,
        "Revision": job.spec.definition_arn.rsplit(":", 1)[-1],
        "DesiredStatus": container["DesiredStatus"],
        "KnownStatus": container["KnownStatus"],
        "Containers": [container],
        "LaunchType": "FARGATE" if "FARGATE" in job.spec.platform_capabilities else "EC2",
        "AvailabilityZone": f"{region}a",
    }


def routes(jobs: Callable[[], JobLookup], region: str, account: str) -> Sequence[Route]:
    """``GET /ecs/v4/{jobId}/{attempt}`` and ``…/task``; ``jobs`` gives the job service once started."""

    async def handle(request: Request) -> Response:
        job_id = request.path_params["job_id"]
        try:
            number = int(request.path_params["attempt"])
        except ValueError:
            return error_response(400, "ClientException", "The attempt in the metadata path must be a number")
        found = jobs().get_jobs([job_id])
        attempt = _attempt(found[0], number) if found else None
        if not found or attempt is None:
            return error_response(404, "ClientException", f"Job {job_id} has no attempt {number}")
        if request.url.path.endswith("/task"):
            return JSONResponse(task_metadata(found[0], attempt, region, account))
        return JSONResponse(container_metadata(found[0], attempt, region, account))

    return [
        Route(PREFIX + "/{job_id}/{attempt}", handle, methods=["GET"]),
        Route(PREFIX + "/{job_id}/{attempt}/task", handle, methods=["GET"]),
    ]
