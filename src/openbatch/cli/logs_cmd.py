"""``openbatch logs JOB [-f] [--index N]``: print a job's output, following it across retries.

Reads through the same wire APIs as any client (Batch DescribeJobs and
CloudWatch Logs GetLogEvents). With ``-f`` it follows every attempt in turn
until the job is terminal and exits 1 if the job FAILED. For an array parent
it prints one child (``--index N``) or all children, each line prefixed with
``[index]``; for a multi-node parallel job one node or all nodes, prefixed with ``[#index]``,
its exit status then being the job's (decided by its main node). Errors are one line on
stderr, never a traceback.
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import boto3
import typer
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError, EndpointConnectionError

from openbatch.cli import common

if TYPE_CHECKING:
    from mypy_boto3_batch import BatchClient
    from mypy_boto3_logs import CloudWatchLogsClient

LOG_GROUP = "/aws/batch/job"
DEFAULT_ENDPOINT = "http://127.0.0.1:8080"
_TERMINAL = ("SUCCEEDED", "FAILED")
_POLL_SECONDS = 0.5
_DESCRIBE_BATCH = 100
"""DescribeJobs takes at most 100 job ids per call."""


class CliError(Exception):
    """A problem reported as one line on stderr."""


def logs(
    job_id: str = typer.Argument(..., help="Job id (an array child as parentId:index, a node as jobId#index)."),
    follow: bool = typer.Option(False, "--follow", "-f", help="Follow every attempt until the job ends."),
    index: int | None = typer.Option(None, "--index", help="For an array or multi-node job: only this child or node."),
    attempt: int | None = typer.Option(None, help="Attempt number (default: the latest; all of them with -f)."),
    timestamps: bool = typer.Option(False, "--timestamps", "-t", help="Prefix each line with its time."),
    endpoint_url: str | None = typer.Option(
        None,
        "--endpoint-url",
        "--endpoint",
        envvar="OPENBATCH_ENDPOINT_URL",
        help=f"Server URL (default: the profile's, else {DEFAULT_ENDPOINT}).",
    ),
    profile: str | None = common.ProfileOption,
) -> None:
    """Print the log of a job (CloudWatch Logs group /aws/batch/job)."""
    with common.reported():
        # The same names as every other command: --endpoint-url, OPENBATCH_ENDPOINT_URL, --profile.
        url = endpoint_url or os.environ.get("OPENBATCH_ENDPOINT") or common.resolve(None, profile).endpoint_url
    try:
        code = _run(url, job_id, follow=follow, index=index, attempt=attempt, timestamps=timestamps)
    except CliError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(1) from None
    except EndpointConnectionError:
        typer.echo(f"error: cannot reach the OpenBatch server at {url} (is `openbatch server` running?)", err=True)
        raise typer.Exit(1) from None
    except ClientError as exc:
        error = exc.response.get("Error", {})
        typer.echo(f"error: {error.get('Code', 'Error')}: {error.get('Message', exc)}", err=True)
        raise typer.Exit(1) from None
    except BotoCoreError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(1) from None
    except KeyboardInterrupt:
        raise typer.Exit(130) from None
    except BrokenPipeError:
        # `openbatch logs JOB | head`: the reader went away; that is not an error.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        raise typer.Exit(0) from None
    raise typer.Exit(code)


def _clients(url: str) -> tuple[BatchClient, CloudWatchLogsClient]:
    kwargs: dict[str, Any] = {
        "endpoint_url": url,
        "region_name": os.environ.get("AWS_DEFAULT_REGION", "us-east-1"),
        "aws_access_key_id": os.environ.get("AWS_ACCESS_KEY_ID", "openbatch"),
        "aws_secret_access_key": os.environ.get("AWS_SECRET_ACCESS_KEY", "openbatch"),
        # Fail fast with one line when the server is down instead of retrying for a minute.
        "config": Config(connect_timeout=3, read_timeout=30, retries={"max_attempts": 2, "mode": "standard"}),
    }
    return boto3.client("batch", **kwargs), boto3.client("logs", **kwargs)


def _describe(batch: BatchClient, job_ids: list[str]) -> dict[str, dict[str, Any]]:
    jobs: dict[str, dict[str, Any]] = {}
    for i in range(0, len(job_ids), _DESCRIBE_BATCH):
        for job in batch.describe_jobs(jobs=job_ids[i : i + _DESCRIBE_BATCH])["jobs"]:
            jobs[job["jobId"]] = dict(job)
    return jobs


@dataclass
class _Follower:
    """Prints one job's attempts in order, remembering where each stream was left."""

    job_id: str
    prefix: str
    attempt: int | None
    follow: bool
    timestamps: bool
    tokens: dict[str, str | None] = field(default_factory=dict)
    finished: set[str] = field(default_factory=set)
    status: str = ""
    done: bool = False

    def streams(self, job: Mapping[str, Any]) -> list[tuple[str, bool]]:
        """``(stream, attempt over)`` for the attempts to print, oldest first."""
        attempts = [a.get("container", {}).get("logStreamName") for a in job.get("attempts") or []]
        current = (job.get("container") or {}).get("logStreamName")
        if self.attempt is not None:
            if not 1 <= self.attempt <= len(attempts) + (1 if current and current not in attempts else 0):
                raise CliError(f"job {self.job_id} has no attempt {self.attempt} (it has {len(attempts)} so far)")
            if self.attempt <= len(attempts):
                return [(str(attempts[self.attempt - 1]), True)] if attempts[self.attempt - 1] else []
            return [(str(current), job["status"] in _TERMINAL)]
        listed = [(str(s), True) for s in attempts if s]
        if current and current not in attempts:
            listed.append((str(current), job["status"] in _TERMINAL))
        if not self.follow:
            # Without -f: the latest attempt only, as far as it has got.
            return listed[-1:]
        return listed

    def poll(self, cwl: CloudWatchLogsClient, job: Mapping[str, Any]) -> None:
        self.status = str(job["status"])
        streams = self.streams(job)
        if not streams and not self.follow and not self.prefix:
            raise CliError(f"job {self.job_id} has no attempt yet (status {self.status}); -f waits for its output")
        for stream, over in streams:
            if stream in self.finished:
                continue
            if len(streams) > 1 and stream not in self.tokens:
                sys.stderr.write(f"{self.prefix}--- {stream} ---\n")
            self._drain(cwl, stream)
            if over:
                self.finished.add(stream)
            else:
                break
        if not self.follow or (self.status in _TERMINAL and all(s in self.finished for s, _ in streams)):
            self.done = True

    def _drain(self, cwl: CloudWatchLogsClient, stream: str) -> None:
        token = self.tokens.get(stream)
        for _ in range(1_000_000):
            kwargs: dict[str, Any] = {"nextToken": token} if token else {"startFromHead": True}
            try:
                page = cwl.get_log_events(logGroupName=LOG_GROUP, logStreamName=stream, **kwargs)
            except cwl.exceptions.ResourceNotFoundException:
                # The attempt has not written (or created) its stream yet.
                break
            out = []
            for event in page["events"]:
                stamp = ""
                if self.timestamps:
                    stamp = time.strftime("%Y-%m-%dT%H:%M:%S ", time.localtime(event["timestamp"] / 1000))
                out.append(f"{self.prefix}{stamp}{event['message']}\n")
            sys.stdout.write("".join(out))
            new = page["nextForwardToken"]
            if new == token:
                break
            token = new
        self.tokens[stream] = token
        sys.stdout.flush()


def _targets(batch: BatchClient, job_id: str, index: int | None) -> tuple[list[tuple[str, str]], bool]:
    """``(job id, line prefix)`` for the job, one array child or node, or every child or node; and whether
    the job itself (a multi-node job, decided by its main node) gives the exit status rather than them."""
    jobs = _describe(batch, [job_id])
    job = jobs.get(job_id)
    if job is None:
        raise CliError(f"job {job_id} not found")
    size = (job.get("arrayProperties") or {}).get("size")
    nodes = (job.get("nodeProperties") or {}).get("numNodes")
    kinds, separator, count = ("children", ":", size) if size else ("nodes", "#", nodes)
    if index is not None:
        if not count:
            raise CliError(f"job {job_id} is not an array or multi-node job; --index applies to those")
        if not 0 <= index < count:
            raise CliError(f"job {job_id} has {kinds} 0 to {count - 1}; there is no index {index}")
        return [(f"{job_id}{separator}{index}", "")], False
    if count:
        mark = "" if size else "#"
        return [(f"{job_id}{separator}{i}", f"[{mark}{i}] ") for i in range(count)], bool(nodes)
    return [(job_id, "")], False


def _run(url: str, job_id: str, *, follow: bool, index: int | None, attempt: int | None, timestamps: bool) -> int:
    batch, cwl = _clients(url)
    targets, decided_by_job = _targets(batch, job_id, index)
    followers = [_Follower(child, prefix, attempt, follow, timestamps) for child, prefix in targets]
    while True:
        pending = [f for f in followers if not f.done]
        jobs = _describe(batch, [f.job_id for f in pending])
        for follower in pending:
            job = jobs.get(follower.job_id)
            if job is None:
                raise CliError(f"job {follower.job_id} not found")
            follower.poll(cwl, job)
        if all(f.done for f in followers):
            break
        time.sleep(_POLL_SECONDS)
    if decided_by_job and follow:
        # A node stopped because the main node exited is FAILED even when the job succeeds.
        while (status := _describe(batch, [job_id]).get(job_id, {}).get("status")) not in _TERMINAL:
            time.sleep(_POLL_SECONDS)
        return 1 if status == "FAILED" else 0
    return 1 if follow and any(f.status == "FAILED" for f in followers) else 0
