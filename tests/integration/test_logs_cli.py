"""``openbatch logs`` through a real server: retries, array jobs, exit codes and one-line errors."""

from __future__ import annotations

import subprocess
import sys
from typing import TYPE_CHECKING

import pytest

from openbatch.cli.background import free_port
from tests.support import ServerProcess, make_queue, shell_definition, unique, wait_for_status

if TYPE_CHECKING:
    from mypy_boto3_batch import BatchClient

OPENBATCH = [sys.executable, "-m", "openbatch.cli.main"]


def _logs(server: ServerProcess, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*OPENBATCH, "logs", *args, "--endpoint-url", server.url], capture_output=True, text=True, timeout=90
    )


def _submit(batch: BatchClient, script: str, **kwargs: object) -> str:
    definition = shell_definition(batch, script)
    job = batch.submit_job(jobName=unique("logs"), jobQueue="default", jobDefinition=definition, **kwargs)  # type: ignore[arg-type]
    return str(job["jobId"])


@pytest.mark.slow
def test_follow_across_retries_and_exit_status(server: ServerProcess, batch: BatchClient) -> None:
    retried = _submit(
        batch,
        'echo "attempt $AWS_BATCH_JOB_ATTEMPT"; sleep 0.5; test "$AWS_BATCH_JOB_ATTEMPT" = 2',
        retryStrategy={"attempts": 2},
    )
    failing = _submit(batch, "echo before failing; exit 3")
    followed = _logs(server, retried, "-f")
    assert followed.returncode == 0, followed.stderr
    assert followed.stdout.splitlines() == ["attempt 1", "attempt 2"]
    failed = _logs(server, failing, "-f")
    assert failed.returncode == 1
    assert failed.stdout.splitlines() == ["before failing"]
    latest = _logs(server, retried)
    assert (latest.returncode, latest.stdout.splitlines()) == (0, ["attempt 2"])
    first = _logs(server, retried, "--attempt", "1")
    assert first.stdout.splitlines() == ["attempt 1"]
    missing = _logs(server, retried, "--attempt", "5")
    assert missing.returncode == 1
    assert missing.stderr.startswith("error: job ") and "no attempt 5" in missing.stderr
    assert len(missing.stderr.splitlines()) == 1


@pytest.mark.slow
def test_array_children(server: ServerProcess, batch: BatchClient) -> None:
    parent = _submit(batch, 'echo "child $AWS_BATCH_JOB_ARRAY_INDEX"', arrayProperties={"size": 3})
    everything = _logs(server, parent, "-f")
    assert everything.returncode == 0, everything.stderr
    assert everything.stdout.splitlines() == ["[0] child 0", "[1] child 1", "[2] child 2"]
    wait_for_status(batch, parent, ["SUCCEEDED"])
    one = _logs(server, parent, "--index", "1")
    assert one.stdout.splitlines() == ["child 1"]
    beyond = _logs(server, parent, "--index", "3")
    assert beyond.returncode == 1 and beyond.stderr.count("\n") == 1 and "no index 3" in beyond.stderr


def test_one_line_errors(server: ServerProcess) -> None:
    unknown = _logs(server, "no-such-job")
    assert unknown.returncode == 1
    assert unknown.stderr == "error: job no-such-job not found\n"
    down = subprocess.run(
        [*OPENBATCH, "logs", "x", "--endpoint-url", f"http://127.0.0.1:{free_port()}"],
        capture_output=True,
        text=True,
        timeout=90,
    )
    assert down.returncode == 1
    assert down.stderr.startswith("error: cannot reach the OpenBatch server") and down.stderr.count("\n") == 1
    assert "Traceback" not in down.stderr


def test_a_job_without_an_attempt(server: ServerProcess, batch: BatchClient) -> None:
    queue = make_queue(batch, state="DISABLED")
    job_id = batch.submit_job(jobName="waits", jobQueue=queue, jobDefinition=shell_definition(batch, "true"))["jobId"]
    result = _logs(server, job_id)
    assert result.returncode == 1
    assert result.stderr.startswith(f"error: job {job_id} has no attempt yet") and result.stderr.count("\n") == 1
    batch.cancel_job(jobId=job_id, reason="test over")
