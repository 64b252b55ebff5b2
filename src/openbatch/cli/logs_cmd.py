"""``openbatch logs JOB_ID [-f]``: print a job's output, following it while the job runs."""

from __future__ import annotations

import sys
import time
from collections.abc import Mapping
from typing import Any

import typer

from openbatch.cli import client

LOG_GROUP = "/aws/batch/job"
_TERMINAL = ("SUCCEEDED", "FAILED")


def logs(
    job_id: str = typer.Argument(..., help="Job id (array children as parentId:index)."),
    follow: bool = typer.Option(False, "--follow", "-f", help="Keep printing new lines until the job ends."),
    attempt: int | None = typer.Option(None, help="Attempt number (default: the latest)."),
    timestamps: bool = typer.Option(False, "--timestamps", "-t", help="Prefix each line with its time."),
    endpoint: str | None = typer.Option(None, help="Server URL (default $OPENBATCH_ENDPOINT or :8080)."),
) -> None:
    """Print the log of a job (CloudWatch Logs stream /aws/batch/job/<stream>)."""
    batch, cwl = client.batch(endpoint), client.logs(endpoint)
    stream = None
    while stream is None:
        jobs = batch.describe_jobs(jobs=[job_id])["jobs"]
        if not jobs:
            typer.echo(f"Job {job_id} not found", err=True)
            raise typer.Exit(1)
        job = jobs[0]
        stream = _stream_of(job, attempt)
        if stream is None:
            if not follow or job["status"] in _TERMINAL:
                typer.echo(f"Job {job_id} has no log yet (status {job['status']})", err=True)
                raise typer.Exit(1)
            time.sleep(0.5)
    token = None
    while True:
        kwargs: dict[str, Any] = {"nextToken": token} if token else {}
        try:
            page = cwl.get_log_events(logGroupName=LOG_GROUP, logStreamName=stream, startFromHead=True, **kwargs)
        except cwl.exceptions.ResourceNotFoundException:
            # The stream is created with the first line of output.
            if not follow or batch.describe_jobs(jobs=[job_id])["jobs"][0]["status"] in _TERMINAL:
                return
            time.sleep(0.3)
            continue
        for event in page["events"]:
            prefix = time.strftime("%H:%M:%S ", time.localtime(event["timestamp"] / 1000)) if timestamps else ""
            sys.stdout.write(f"{prefix}{event['message']}\n")
        sys.stdout.flush()
        new_token = page["nextForwardToken"]
        if new_token == token:
            if not follow:
                return
            status = batch.describe_jobs(jobs=[job_id])["jobs"][0]["status"]
            if status in _TERMINAL or _stream_of(batch.describe_jobs(jobs=[job_id])["jobs"][0], attempt) != stream:
                # One more read so lines written just before the end are not missed.
                page = cwl.get_log_events(logGroupName=LOG_GROUP, logStreamName=stream, nextToken=new_token)
                for event in page["events"]:
                    sys.stdout.write(f"{event['message']}\n")
                return
            time.sleep(0.3)
        token = new_token


def _stream_of(job: Mapping[str, Any], attempt: int | None) -> str | None:
    attempts = job.get("attempts") or []
    if attempt is not None:
        if 1 <= attempt <= len(attempts):
            return str(attempts[attempt - 1]["container"].get("logStreamName"))
        return None
    name = (job.get("container") or {}).get("logStreamName")
    return str(name) if name else None
