"""``openbatch demo``: start an embedded server and run a real multi-job pipeline on this machine.

The pipeline is what Batch users build by hand: a preparation job, an array
job fanning out over slices of the input, a reduction depending on the whole
array, and a check depending on the reduction. It is submitted through the
AWS Batch API with boto3, exactly as against AWS.
"""

from __future__ import annotations

import subprocess
import tempfile
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer
from rich.console import Console
from rich.live import Live
from rich.table import Table

from openbatch.cli import client
from openbatch.cli.background import free_port, launch_server

if TYPE_CHECKING:
    from mypy_boto3_batch import BatchClient

console = Console()
_TERMINAL = ("SUCCEEDED", "FAILED")
_STYLE = {"SUCCEEDED": "green", "FAILED": "red", "RUNNING": "cyan", "RUNNABLE": "yellow", "PENDING": "magenta"}
SLICES = 4
NUMBERS = 200_000

_PART = '"$OUT/part.$AWS_BATCH_JOB_ARRAY_INDEX"'
STEPS: list[tuple[str, str]] = [
    ("prepare", 'seq 1 "$N" > "$OUT/input.txt" && echo "wrote $(wc -l < "$OUT/input.txt") numbers"'),
    (
        "square",
        (
            'awk -v i="$AWS_BATCH_JOB_ARRAY_INDEX" -v n="$AWS_BATCH_JOB_ARRAY_SIZE" '
            '\'NR % n == i { s += $1 * $1 } END { printf "%.0f\\n", s }\' "$OUT/input.txt" '
            f'> {_PART} && echo "slice $AWS_BATCH_JOB_ARRAY_INDEX: $(cat {_PART})"'
        ),
    ),
    ("sum", 'cat "$OUT"/part.* | awk \'{ s += $1 } END { printf "%.0f\\n", s }\' > "$OUT/sum" && cat "$OUT/sum"'),
    (
        "verify",
        (
            'expected=$(awk -v n="$N" \'BEGIN { printf "%.0f", n * (n + 1) * (2 * n + 1) / 6 }\'); '
            'got=$(cat "$OUT/sum"); echo "sum of squares 1..$N = $got (expected $expected)"; '
            '[ "$got" = "$expected" ]'
        ),
    ),
]


def _register(batch: BatchClient, out: Path) -> dict[str, str]:
    arns = {}
    for name, script in STEPS:
        result = batch.register_job_definition(
            jobDefinitionName=f"demo-{name}",
            type="container",
            containerProperties={
                "image": "local",
                "command": ["sh", "-c", script],
                "environment": [{"name": "OUT", "value": str(out)}, {"name": "N", "value": str(NUMBERS)}],
                "resourceRequirements": [{"type": "VCPU", "value": "1"}, {"type": "MEMORY", "value": "256"}],
            },
            retryStrategy={"attempts": 2, "evaluateOnExit": [{"onExitCode": "1", "action": "EXIT"}]},
            timeout={"attemptDurationSeconds": 120},
        )
        arns[name] = result["jobDefinitionArn"]
    return arns


def _submit(batch: BatchClient, definitions: dict[str, str]) -> list[tuple[str, str]]:
    prepare = batch.submit_job(jobName="prepare", jobQueue="default", jobDefinition=definitions["prepare"])["jobId"]
    square = batch.submit_job(
        jobName="square",
        jobQueue="default",
        jobDefinition=definitions["square"],
        arrayProperties={"size": SLICES},
        dependsOn=[{"jobId": prepare}],
    )["jobId"]
    total = batch.submit_job(
        jobName="sum", jobQueue="default", jobDefinition=definitions["sum"], dependsOn=[{"jobId": square}]
    )["jobId"]
    verify = batch.submit_job(
        jobName="verify", jobQueue="default", jobDefinition=definitions["verify"], dependsOn=[{"jobId": total}]
    )["jobId"]
    jobs = [("prepare", prepare), ("square", square)]
    jobs += [(f"  square[{i}]", f"{square}:{i}") for i in range(SLICES)]
    jobs += [("sum", total), ("verify", verify)]
    return jobs


def _table(details: dict[str, dict[str, Any]], jobs: list[tuple[str, str]]) -> Table:
    table = Table(title="OpenBatch demo pipeline", expand=False)
    for column in ("job", "job id", "status", "time", "reason"):
        table.add_column(column)
    for label, job_id in jobs:
        job = details.get(job_id, {})
        status = job.get("status", "SUBMITTED")
        elapsed = ""
        if job.get("startedAt") and job.get("stoppedAt"):
            elapsed = f"{(job['stoppedAt'] - job['startedAt']) / 1000:.2f}s"
        table.add_row(
            label,
            job_id[:13] + ("…" if len(job_id) > 13 else ""),
            f"[{_STYLE.get(status, 'white')}]{status}[/]",
            elapsed,
            "" if status == "SUCCEEDED" else job.get("statusReason", ""),
        )
    return table


def _watch(batch: BatchClient, jobs: list[tuple[str, str]], timeout: float) -> dict[str, dict[str, Any]]:
    details: dict[str, dict[str, Any]] = {}
    deadline = time.monotonic() + timeout
    with Live(_table(details, jobs), console=console, refresh_per_second=8) as live:
        while time.monotonic() < deadline:
            found = batch.describe_jobs(jobs=[job_id for _, job_id in jobs])["jobs"]
            details = {j["jobId"]: dict(j) for j in found}
            live.update(_table(details, jobs))
            if all(details.get(job_id, {}).get("status") in _TERMINAL for _, job_id in jobs):
                break
            time.sleep(0.2)
    return details


def demo(
    data_dir: Path | None = typer.Option(None, help="Data directory for the embedded server (default: a temp dir)."),
    timeout: float = typer.Option(300, help="Give up after this many seconds."),
) -> None:
    """Start an embedded server (SQLite + local executor) and run a four-step pipeline with an array job."""
    root = Path(tempfile.mkdtemp(prefix="openbatch-demo-")) if data_dir is None else data_dir
    root.mkdir(parents=True, exist_ok=True)
    # The pipeline's files live outside the data dir, which jobs cannot reach (they run as another
    # user when the server runs as root): a directory every job may write, like /tmp.
    out = Path(tempfile.mkdtemp(prefix="openbatch-demo-pipeline-"))
    out.chmod(0o1777)
    port = free_port()
    console.print(f"[bold]Starting OpenBatch[/] on http://127.0.0.1:{port} (data in {root})")
    server = launch_server(root, port)
    try:
        batch = client.batch(f"http://127.0.0.1:{port}")
        definitions = _register(batch, out)
        console.print(f"Registered {len(definitions)} job definitions; submitting the pipeline to queue 'default'")
        jobs = _submit(batch, definitions)
        details = _watch(batch, jobs, timeout)
        verify = details.get(jobs[-1][1], {})
        _print_log(port, verify)
        ok = all(details.get(job_id, {}).get("status") == "SUCCEEDED" for _, job_id in jobs)
        if ok:
            console.print("[bold green]Pipeline SUCCEEDED[/] — every job ran as a real process on this machine.")
        else:
            console.print("[bold red]Pipeline FAILED[/]")
            raise typer.Exit(1)
    finally:
        server.terminate()
        try:
            server.wait(15)
        except subprocess.TimeoutExpired:
            server.kill()
        console.print(f"Server stopped; its store, logs and the pipeline's files are in {root}")


def _print_log(port: int, job: dict[str, Any]) -> None:
    stream = job.get("container", {}).get("logStreamName")
    if not stream:
        return
    logs = client.logs(f"http://127.0.0.1:{port}")
    try:
        events = logs.get_log_events(logGroupName="/aws/batch/job", logStreamName=stream, startFromHead=True)["events"]
    except logs.exceptions.ResourceNotFoundException:
        return
    console.print(f"[bold]Log of verify[/] (/aws/batch/job/{stream}):")
    for event in events:
        console.print(f"  {event['message']}")
