"""Jobs through the AWS CLI v1 and OpenBatch's own CLI, against a real server."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from tests.support import ServerProcess, aws_cli, shell_definition, unique, wait_for_status

if TYPE_CHECKING:
    from mypy_boto3_batch import BatchClient

OPENBATCH = [sys.executable, "-m", "openbatch.cli.main"]


def test_aws_cli_submit_describe_and_list(server: ServerProcess, batch: BatchClient) -> None:
    definition = shell_definition(batch, "echo from-cli")
    submitted = json.loads(
        aws_cli(
            server.url,
            "batch",
            "submit-job",
            "--job-name",
            unique("cli"),
            "--job-queue",
            "default",
            "--job-definition",
            definition,
        ).stdout
    )
    assert submitted["jobArn"].endswith(f"job/{submitted['jobId']}")
    wait_for_status(batch, submitted["jobId"], ["SUCCEEDED"])
    described = json.loads(aws_cli(server.url, "batch", "describe-jobs", "--jobs", submitted["jobId"]).stdout)
    assert described["jobs"][0]["status"] == "SUCCEEDED"
    listed = json.loads(
        aws_cli(server.url, "batch", "list-jobs", "--job-queue", "default", "--job-status", "SUCCEEDED").stdout
    )
    assert submitted["jobId"] in {j["jobId"] for j in listed["jobSummaryList"]}


def test_aws_cli_error_exits_255(server: ServerProcess) -> None:
    result = aws_cli(
        server.url,
        "batch",
        "submit-job",
        "--job-name",
        "x",
        "--job-queue",
        "nope",
        "--job-definition",
        "nope",
        check=False,
    )
    assert result.returncode == 255
    assert "ClientException" in result.stderr


def test_openbatch_logs_prints_and_follows(server: ServerProcess, batch: BatchClient) -> None:
    definition = shell_definition(batch, "echo one; sleep 1; echo two")
    job_id = batch.submit_job(jobName=unique("logs"), jobQueue="default", jobDefinition=definition)["jobId"]
    wait_for_status(batch, job_id, ["RUNNING"])
    followed = subprocess.run(
        [*OPENBATCH, "logs", job_id, "-f", "--endpoint", server.url],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    assert followed.stdout.split() == ["one", "two"]
    once = subprocess.run(
        [*OPENBATCH, "logs", job_id, "--endpoint", server.url], capture_output=True, text=True, timeout=60, check=True
    )
    assert once.stdout.split() == ["one", "two"]


def test_openbatch_logs_unknown_job(server: ServerProcess) -> None:
    result = subprocess.run(
        [*OPENBATCH, "logs", "no-such-job", "--endpoint", server.url], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 1
    assert "not found" in result.stderr


def test_demo_runs_the_pipeline(tmp_path: Path) -> None:
    result = subprocess.run(
        [*OPENBATCH, "demo", "--data-dir", str(tmp_path / "demo")], capture_output=True, text=True, timeout=180
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Pipeline SUCCEEDED" in result.stdout
    assert "expected 2666686666700000" in result.stdout
