"""``openbatch submit/ls/cancel/terminate/retry`` (and ``describe JOB``): jobs from the terminal."""

from __future__ import annotations

import hashlib
import json
import time
from typing import TYPE_CHECKING, Any

import typer
from rich.live import Live
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from openbatch.cli import common
from openbatch.cli.common import CliError, EndpointOption, OutputOption, ProfileOption, Target, usage

if TYPE_CHECKING:
    from mypy_boto3_batch import BatchClient

STATUSES = ("SUBMITTED", "PENDING", "RUNNABLE", "STARTING", "RUNNING", "SUCCEEDED", "FAILED")
WAITING = ("SUBMITTED", "PENDING", "RUNNABLE")
TERMINAL = ("SUCCEEDED", "FAILED")
_STYLE = {"SUCCEEDED": "green", "FAILED": "red", "RUNNING": "cyan", "STARTING": "cyan", "RUNNABLE": "yellow"}
_POLL_SECONDS = 0.5
_CMD_PREFIX = "openbatch-cmd-"
_DEFAULT_IMAGE = "local"


def require_job(batch: BatchClient, job_id: str) -> dict[str, Any]:
    jobs = batch.describe_jobs(jobs=[job_id])["jobs"]
    if not jobs:
        raise CliError(f"job {job_id} not found", "`openbatch ls` lists jobs; ids look like 1b2c…-…")
    return dict(jobs[0])


def _pairs(values: list[str] | None, option: str) -> dict[str, str]:
    pairs: dict[str, str] = {}
    for value in values or []:
        key, sep, rest = value.partition("=")
        if not sep or not key:
            raise usage(f"{option} takes KEY=VALUE; got {value!r}")
        pairs[key] = rest
    return pairs


def _command_definition(batch: BatchClient, command: list[str], image: str) -> str:
    """Register (once) a job definition that runs ``command``; its name is a hash of what it runs."""
    spec: dict[str, Any] = {"image": image, "command": command}
    digest = hashlib.sha256(json.dumps(spec, sort_keys=True).encode()).hexdigest()[:16]
    name = f"{_CMD_PREFIX}{digest}"
    existing = batch.describe_job_definitions(jobDefinitionName=name, status="ACTIVE")["jobDefinitions"]
    if existing:
        return name
    properties: Any = {
        **spec,
        "resourceRequirements": [{"type": "VCPU", "value": "1"}, {"type": "MEMORY", "value": "256"}],
    }
    batch.register_job_definition(jobDefinitionName=name, type="container", containerProperties=properties)
    return name


def submit(
    command: list[str] | None = typer.Argument(None, metavar="[-- CMD ARGS...]", help="Run this command."),
    queue: str = typer.Option(..., "--queue", "-q", help="Job queue."),
    definition: str | None = typer.Option(None, "--definition", "-d", help="Job definition (name or name:rev)."),
    name: str | None = typer.Option(None, "--name", "-n", help="Job name (default: from the definition/command)."),
    array_size: int | None = typer.Option(None, "--array-size", min=2, max=10000, help="Run an array of N children."),
    depends_on: list[str] | None = typer.Option(None, "--depends-on", help="Job id this one waits for (repeatable)."),
    param: list[str] | None = typer.Option(None, "--param", "-p", help="KEY=VALUE parameter (repeatable)."),
    env: list[str] | None = typer.Option(None, "--env", "-e", help="KEY=VALUE environment variable (repeatable)."),
    vcpus: float | None = typer.Option(None, "--vcpus", min=0.25, help="vCPUs (overrides the definition)."),
    memory: int | None = typer.Option(None, "--memory", min=4, help="Memory in MiB (overrides the definition)."),
    retries: int | None = typer.Option(None, "--attempts", min=1, max=10, help="retryStrategy attempts."),
    timeout: int | None = typer.Option(None, "--timeout", min=60, help="Seconds before the job is stopped."),
    image: str = typer.Option(_DEFAULT_IMAGE, "--image", help="Image for a bare command."),
    wait: bool = typer.Option(False, "--wait", "-w", help="Wait for the end; exit 0 only if it SUCCEEDED."),
    output: str = typer.Option("id", "--output", "-o", help="id (the job id alone) or json."),
    endpoint_url: str | None = EndpointOption,
    profile: str | None = ProfileOption,
) -> None:
    """Submit a job: from a job definition, or a bare command after `--`.

    Prints the job id (so `ID=$(openbatch submit …)` works); the rest goes to stderr.
    """
    with common.reported():
        target = common.resolve(endpoint_url, profile)
        if output not in ("id", "json"):
            raise usage(f"--output must be id or json; got {output!r}")
        if bool(definition) == bool(command):
            raise usage(
                "give either --definition D or a command after --",
                "openbatch submit --queue default -- echo hello",
            )
        batch = common.batch_client(target)
        common.require_queue(batch, queue)
        if command:
            definition = _command_definition(batch, command, image)
            job_name = name or _name_from(command[0])
        else:
            assert definition is not None
            lookup: dict[str, Any] = (
                {"jobDefinitions": [definition]}
                if ":" in definition or definition.startswith("arn:")
                else {"jobDefinitionName": definition, "status": "ACTIVE"}
            )
            if not [d for d in batch.describe_job_definitions(**lookup)["jobDefinitions"] if d["status"] == "ACTIVE"]:
                raise CliError(f"unknown job definition {definition!r}", "`openbatch get jd` lists them")
            job_name = name or _name_from(common.name_of(definition).split(":")[0])
        request: dict[str, Any] = {"jobName": job_name, "jobQueue": queue, "jobDefinition": definition}
        if array_size:
            request["arrayProperties"] = {"size": array_size}
        if depends_on:
            request["dependsOn"] = [{"jobId": job_id} for job_id in depends_on]
        if param:
            request["parameters"] = _pairs(param, "--param")
        overrides: dict[str, Any] = {}
        if env:
            overrides["environment"] = [{"name": k, "value": v} for k, v in _pairs(env, "--env").items()]
        resources = [{"type": "VCPU", "value": f"{vcpus:g}"}] if vcpus else []
        resources += [{"type": "MEMORY", "value": str(memory)}] if memory else []
        if resources:
            overrides["resourceRequirements"] = resources
        if overrides:
            request["containerOverrides"] = overrides
        if retries:
            request["retryStrategy"] = {"attempts": retries}
        if timeout:
            request["timeout"] = {"attemptDurationSeconds": timeout}
        submitted = batch.submit_job(**request)
        job_id = str(submitted["jobId"])
        if output == "json":
            common.dump(dict(submitted), "json")
        else:
            print(job_id, flush=True)
        common.stderr.print(f"submitted {job_name} ({job_id}) to {queue}", markup=False)
        if wait:
            status = wait_for(batch, job_id, array_size)
            if status != "SUCCEEDED":
                raise typer.Exit(common.EXIT_FAILED)


def _name_from(text: str) -> str:
    """A valid job name (letters, digits, - and _, 128 at most) from a command or definition."""
    cleaned = "".join(c if c.isalnum() or c in "-_" else "-" for c in text.rsplit("/", 1)[-1]).strip("-")
    return (cleaned or "job")[:128]


def wait_for(batch: BatchClient, job_id: str, array_size: int | None) -> str:
    """Follow the job to its end on stderr: a progress bar for arrays, a live line otherwise."""
    started = time.monotonic()
    if array_size:
        with Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("{task.fields[summary]}"),
            TimeElapsedColumn(),
            console=common.stderr,
            transient=False,
        ) as progress:
            task = progress.add_task(f"array {job_id}", total=array_size, summary="")
            while True:
                job = require_job(batch, job_id)
                summary = (job.get("arrayProperties") or {}).get("statusSummary") or {}
                done = sum(int(summary.get(s, 0)) for s in TERMINAL)
                shown = " ".join(f"{s.lower()}={summary[s]}" for s in STATUSES if summary.get(s))
                progress.update(task, completed=done, summary=shown)
                if job["status"] in TERMINAL:
                    break
                time.sleep(_POLL_SECONDS)
    else:
        with Live(console=common.stderr, transient=True, auto_refresh=False) as live:
            while True:
                job = require_job(batch, job_id)
                status = str(job["status"])
                elapsed = time.monotonic() - started
                reason = f" — {job['statusReason']}" if job.get("statusReason") else ""
                live.update(f"job {job_id} [{_STYLE.get(status, 'magenta')}]{status}[/] {elapsed:.0f}s{reason}")
                live.refresh()
                if status in TERMINAL:
                    break
                time.sleep(_POLL_SECONDS)
    status = str(job["status"])
    exit_code = (job.get("container") or {}).get("exitCode")
    suffix = f" (exit code {exit_code})" if exit_code is not None and status == "FAILED" else ""
    common.stderr.print(f"job {job_id} {status}{suffix}", markup=False)
    return status


# --- ls ---------------------------------------------------------------------------------------


def _summaries(
    batch: BatchClient,
    queues: list[str],
    statuses: list[str],
    name: str | None,
    array_job_id: str | None,
    limit: int,
    multi_node_job_id: str | None = None,
) -> list[tuple[str, dict[str, Any]]]:
    """``(queue, job summary)`` newest first, at most ``limit`` (0: all)."""
    found: list[tuple[str, dict[str, Any]]] = []
    paginator = batch.get_paginator("list_jobs")
    cap: Any = {"MaxItems": limit} if limit else {}
    parent: Any = {"arrayJobId": array_job_id} if array_job_id else {"multiNodeJobId": multi_node_job_id}
    if array_job_id or multi_node_job_id:
        for status in statuses or STATUSES:
            for page in paginator.paginate(**parent, jobStatus=status, PaginationConfig=cap):  # type: ignore[arg-type]
                found.extend(("", dict(j)) for j in page["jobSummaryList"])
        if multi_node_job_id:
            found.sort(key=lambda item: int((item[1].get("nodeProperties") or {}).get("nodeIndex") or 0))
            return found[:limit] if limit else found
    for queue in queues if not array_job_id else []:
        if name:
            # With a filter AWS lists every status; the status filter is then ours.
            pages = paginator.paginate(
                jobQueue=queue, filters=[{"name": "JOB_NAME", "values": [name]}], PaginationConfig=cap
            )
            for page in pages:
                found.extend(
                    (queue, dict(j)) for j in page["jobSummaryList"] if not statuses or j["status"] in statuses
                )
            continue
        for status in statuses or STATUSES:
            for page in paginator.paginate(jobQueue=queue, jobStatus=status, PaginationConfig=cap):  # type: ignore[arg-type]
                found.extend((queue, dict(j)) for j in page["jobSummaryList"])
    found.sort(key=lambda item: (-int(item[1].get("createdAt") or 0), item[1]["jobId"]))
    return found[:limit] if limit else found


def list_jobs_to(
    target: Target,
    *,
    output: str,
    queue: str | None,
    statuses: list[str],
    name: str | None,
    array_job_id: str | None,
    limit: int = 200,
    multi_node_job_id: str | None = None,
) -> None:
    batch = common.batch_client(target)
    wanted = [s.upper() for s in statuses]
    for status in wanted:
        if status not in STATUSES:
            raise usage(f"unknown status {status!r}", f"statuses: {', '.join(STATUSES)}")
    if array_job_id and multi_node_job_id:
        raise usage("--array-job-id and --multi-node-job-id cannot be given together")
    for parent in (array_job_id, multi_node_job_id):
        if parent:
            require_job(batch, parent)
    queues = [common.name_of(queue)] if queue else common.known_queues(batch)
    if queue:
        common.require_queue(batch, queue)
    found = _summaries(batch, queues, wanted, name, array_job_id, limit, multi_node_job_id)
    if output in ("json", "yaml"):
        common.dump([{**summary, **({"jobQueue": q} if q else {})} for q, summary in found], output)
        return
    if not found:
        common.stderr.print("no jobs")
        return
    now = int(time.time() * 1000)
    wide = output == "wide"
    columns = ["JOB ID", "NAME", "QUEUE", "STATUS", "AGE"]
    columns += ["DEFINITION", "ARRAY", "EXIT", "REASON"] if wide else []
    rows = []
    for q, job in found:
        array = job.get("arrayProperties") or job.get("nodeProperties") or {}
        rows.append(
            [
                job["jobId"],
                job["jobName"],
                q,
                job["status"],
                common.age(job.get("createdAt"), now),
                *(
                    [
                        common.name_of(str(job.get("jobDefinition") or "")),
                        array.get("size", array.get("index", array.get("nodeIndex", array.get("numNodes", "")))),
                        (job.get("container") or {}).get("exitCode", ""),
                        job.get("statusReason", ""),
                    ]
                    if wide
                    else []
                ),
            ]
        )
    common.table(columns, rows)


def ls(
    queue: str | None = typer.Option(None, "--queue", "-q", help="Only this queue (default: every queue)."),
    status: list[str] | None = typer.Option(None, "--status", "-s", help="Only this status (repeatable)."),
    name: str | None = typer.Option(None, "--name", help="Job name, or a prefix ending in * (e.g. 'etl*')."),
    array_job_id: str | None = typer.Option(None, "--array-job-id", help="The children of this array job."),
    multi_node_job_id: str | None = typer.Option(
        None, "--multi-node-job-id", help="The nodes of this multi-node parallel job (jobId#index), in index order."
    ),
    limit: int = typer.Option(200, "--limit", min=0, help="At most this many, newest first (0: all)."),
    output: str = OutputOption,
    endpoint_url: str | None = EndpointOption,
    profile: str | None = ProfileOption,
) -> None:
    """List jobs in every status, newest first."""
    with common.reported():
        target = common.resolve(endpoint_url, profile)
        common.check_output(output)
        list_jobs_to(
            target,
            output=output,
            queue=queue,
            statuses=status or [],
            name=name,
            array_job_id=array_job_id,
            limit=limit,
            multi_node_job_id=multi_node_job_id,
        )


# --- cancel / terminate / retry ----------------------------------------------------------


def _stop(job_id: str, reason: str, endpoint_url: str | None, profile: str | None, *, terminate: bool) -> None:
    with common.reported():
        target = common.resolve(endpoint_url, profile)
        batch = common.batch_client(target)
        job = require_job(batch, job_id)
        status = str(job["status"])
        if status in TERMINAL:
            raise CliError(f"job {job_id} has already {status}", "nothing to stop; `openbatch retry` runs it again")
        if terminate:
            batch.terminate_job(jobId=job_id, reason=reason)
            common.stdout.print(f"job {job_id} terminating (was {status})", markup=False)
            return
        if status in ("STARTING", "RUNNING"):
            raise CliError(
                f"job {job_id} is {status}; cancel only stops jobs that have not started",
                f"openbatch terminate {job_id}",
            )
        batch.cancel_job(jobId=job_id, reason=reason)
        # AWS semantics: a PENDING job is failed once its dependencies have finished.
        later = " (it fails once its dependencies finish)" if status == "PENDING" else ""
        common.stdout.print(f"job {job_id} cancelled (was {status}){later}", markup=False)


def cancel(
    job_id: str = typer.Argument(..., metavar="JOB", help="Job id."),
    reason: str = typer.Option("Cancelled with openbatch cancel", "--reason", help="Why (shown in statusReason)."),
    endpoint_url: str | None = EndpointOption,
    profile: str | None = ProfileOption,
) -> None:
    """Cancel a job that has not started yet (SUBMITTED, PENDING or RUNNABLE)."""
    _stop(job_id, reason, endpoint_url, profile, terminate=False)


def terminate(
    job_id: str = typer.Argument(..., metavar="JOB", help="Job id."),
    reason: str = typer.Option("Terminated with openbatch terminate", "--reason", help="Why (statusReason)."),
    endpoint_url: str | None = EndpointOption,
    profile: str | None = ProfileOption,
) -> None:
    """Terminate a job in any state that is not finished (running ones are stopped)."""
    _stop(job_id, reason, endpoint_url, profile, terminate=True)


def retry_request(job: dict[str, Any]) -> dict[str, Any]:
    """A SubmitJob request with the finished job's spec: definition, queue, parameters, overrides,
    retry strategy, timeout, tags."""
    request: dict[str, Any] = {
        "jobName": job["jobName"],
        "jobQueue": job["jobQueue"],
        "jobDefinition": job["jobDefinition"],
    }
    for key in (
        "parameters",
        "retryStrategy",
        "timeout",
        "tags",
        "propagateTags",
        "shareIdentifier",
        "schedulingPriority",
    ):
        if job.get(key) not in (None, {}, []):
            request[key] = job[key]
    size = (job.get("arrayProperties") or {}).get("size")
    if size:
        request["arrayProperties"] = {"size": size}
    container = job.get("container") or {}
    overrides: dict[str, Any] = {}
    if container.get("command"):
        overrides["command"] = container["command"]
    environment = [e for e in container.get("environment") or [] if not str(e["name"]).startswith("AWS_BATCH_")]
    if environment:
        overrides["environment"] = environment
    if container.get("resourceRequirements"):
        overrides["resourceRequirements"] = container["resourceRequirements"]
    if overrides and not job.get("nodeProperties"):
        request["containerOverrides"] = overrides
    return request


def retry(
    job_id: str = typer.Argument(..., metavar="JOB", help="A finished (SUCCEEDED or FAILED) job's id."),
    queue: str | None = typer.Option(None, "--queue", "-q", help="Another queue (default: the job's)."),
    wait: bool = typer.Option(False, "--wait", "-w", help="Wait for the end; exit 0 only if it SUCCEEDED."),
    endpoint_url: str | None = EndpointOption,
    profile: str | None = ProfileOption,
) -> None:
    """Submit a finished job again with the same spec; prints the new job id."""
    with common.reported():
        target = common.resolve(endpoint_url, profile)
        batch = common.batch_client(target)
        job = require_job(batch, job_id)
        if job["status"] not in TERMINAL:
            raise CliError(f"job {job_id} is {job['status']}; only finished jobs can be retried")
        request = retry_request(job)
        if queue:
            common.require_queue(batch, queue)
            request["jobQueue"] = queue
        if job.get("dependsOn"):
            common.stderr.print("note: its dependencies are not carried over (they have finished)")
        submitted = batch.submit_job(**request)
        new_id = str(submitted["jobId"])
        print(new_id, flush=True)
        common.stderr.print(f"resubmitted {job['jobName']} as {new_id}", markup=False)
        if wait and wait_for(batch, new_id, request.get("arrayProperties", {}).get("size")) != "SUCCEEDED":
            raise typer.Exit(common.EXIT_FAILED)
