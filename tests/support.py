"""Test support: real ``openbatch server`` processes and real clients."""

from __future__ import annotations

import os
import pwd
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import boto3
import pytest
from botocore.exceptions import ClientError

from openbatch.cli.background import free_port, launch_server
from tests.compute import compute_resources

if TYPE_CHECKING:
    from mypy_boto3_batch import BatchClient
    from mypy_boto3_logs import CloudWatchLogsClient

REGION = "us-east-1"
CREDENTIALS = {"AWS_ACCESS_KEY_ID": "test", "AWS_SECRET_ACCESS_KEY": "test", "AWS_DEFAULT_REGION": REGION}
DEFAULT_PG_URL = "postgresql://postgres@127.0.0.1:5432/test"


@dataclass
class ServerProcess:
    """One ``openbatch server`` child process on a free loopback port."""

    data_dir: Path
    database_url: str | None = None
    extra_args: Sequence[str] = ()
    env: dict[str, str] = field(default_factory=dict)
    """Variables added to the server's environment."""
    auth_file: Path | None = None
    """``--auth-file``: SigV4 keys and policies (``None``: no authentication, as before)."""
    job_user: str | None = field(default_factory=lambda: pwd.getpwuid(os.geteuid()).pw_name)
    """Jobs run as the test's own user, so that they can write to the test's temporary directories;
    ``None`` keeps the server's default (``nobody`` under root), as the isolation tests need."""
    port: int = field(default_factory=free_port)
    process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def log_path(self) -> Path:
        return self.data_dir / "server.log"

    def start(self, timeout: float = 30.0) -> ServerProcess:
        extra = [*self.extra_args, *(["--database-url", self.database_url] if self.database_url else [])]
        if self.auth_file is not None:
            extra += ["--auth-file", str(self.auth_file)]
        if self.job_user is not None:
            extra += ["--job-user", self.job_user]
        self.process = launch_server(self.data_dir, self.port, extra_args=extra, env=self.env, timeout=timeout)
        return self

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 20.0, *, keep_jobs: bool = False) -> None:
        """Stop the server; unless ``keep_jobs``, also the supervisor and the jobs it still runs."""
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(sig)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(5)
        if not keep_jobs:
            self.stop_supervisor()

    def stop_supervisor(self, timeout: float = 20.0) -> None:
        """SIGTERM the host's supervisor (its attempts end as a lost host) and wait until it is gone."""
        pid = self.supervisor_pid
        if pid is None:
            return
        os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + timeout
        while _is_supervisor(pid) and time.monotonic() < deadline:
            time.sleep(0.02)

    @property
    def supervisor_pid(self) -> int | None:
        try:
            pid = int((self.data_dir / "supervisor" / "pid").read_text())
        except (OSError, ValueError):
            return None
        return pid if _is_supervisor(pid) else None

    def crash(self) -> None:
        """SIGKILL the server alone: the supervisor and its jobs go on, as after a real crash."""
        self.stop(signal.SIGKILL, keep_jobs=True)

    def restart(self) -> ServerProcess:
        self.stop(keep_jobs=True)
        return self.start()

    def batch(self) -> BatchClient:
        return batch_client(self.url)

    def logs(self) -> CloudWatchLogsClient:
        return boto3.client(
            "logs",
            region_name=REGION,
            endpoint_url=self.url,
            aws_access_key_id="test",
            aws_secret_access_key="test",
        )


def batch_client(url: str) -> BatchClient:
    return boto3.client(
        "batch", region_name=REGION, endpoint_url=url, aws_access_key_id="test", aws_secret_access_key="test"
    )


@contextmanager
def client_exception(*fragments: str) -> Iterator[None]:
    """Expect HTTP 400 ``ClientException`` whose message mentions every fragment (case-insensitive)."""
    with pytest.raises(ClientError) as info:
        yield
    response = info.value.response
    assert response["Error"]["Code"] == "ClientException", response
    assert response["ResponseMetadata"]["HTTPStatusCode"] == 400
    message = response["Error"]["Message"].lower()
    for fragment in fragments:
        assert fragment.lower() in message, message


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def wait_for(predicate: Callable[[], Any], timeout: float = 20.0, interval: float = 0.05) -> Any:
    """Poll until ``predicate`` returns something truthy; fail the test after ``timeout``."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout}s (last value {value!r})")
        time.sleep(interval)


def wait_for_status(batch: BatchClient, job_id: str, statuses: Sequence[str], timeout: float = 30.0) -> dict[str, Any]:
    def check() -> dict[str, Any] | None:
        jobs = batch.describe_jobs(jobs=[job_id])["jobs"]
        return dict(jobs[0]) if jobs and jobs[0]["status"] in statuses else None

    result: dict[str, Any] = wait_for(check, timeout)
    return result


def aws_cli(url: str, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    """Run the AWS CLI v1 (``aws batch …``) against ``url``."""
    env = {**os.environ, **CREDENTIALS}
    aws = Path(sys.executable).with_name("aws")
    return subprocess.run(
        [str(aws), "--endpoint-url", url, "--output", "json", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=check,
    )


def make_queue(
    batch: BatchClient, *, max_vcpus: int = 16, priority: int = 10, state: Literal["ENABLED", "DISABLED"] = "ENABLED"
) -> str:
    """A fresh compute environment and job queue; returns the queue name."""
    ce = unique("ce")
    batch.create_compute_environment(
        computeEnvironmentName=ce,
        type="MANAGED",
        state=state,
        computeResources=compute_resources("EC2", max_vcpus, minvCpus=0),
    )
    queue = unique("q")
    batch.create_job_queue(
        jobQueueName=queue, priority=priority, computeEnvironmentOrder=[{"order": 1, "computeEnvironment": ce}]
    )
    return queue


def fairshare_queue(
    batch: BatchClient,
    max_vcpus: int,
    shares: list[dict[str, Any]],
    decay: int = 0,
    *,
    state: Literal["ENABLED", "DISABLED"] = "ENABLED",
) -> str:
    """A fresh compute environment (in ``state``) and a job queue with a fair-share policy; returns the queue name."""
    ce = unique("ce")
    batch.create_compute_environment(
        computeEnvironmentName=ce, type="MANAGED", state=state, computeResources=compute_resources("EC2", max_vcpus)
    )
    fairshare: Any = {"shareDecaySeconds": decay, "shareDistribution": shares}
    policy = batch.create_scheduling_policy(name=unique("fs"), fairsharePolicy=fairshare)["arn"]
    queue = unique("q")
    batch.create_job_queue(
        jobQueueName=queue,
        priority=1,
        schedulingPolicyArn=policy,
        computeEnvironmentOrder=[{"order": 1, "computeEnvironment": ce}],
    )
    return queue


def shell_definition(batch: BatchClient, script: str = "true", **kwargs: Any) -> str:
    """Register a job definition running ``sh -c script``; returns ``name:revision``."""
    name = unique("jd")
    props: Any = {
        "image": "busybox",
        "command": ["sh", "-c", script],
        "resourceRequirements": [{"type": "VCPU", "value": "1"}, {"type": "MEMORY", "value": "64"}],
    }
    props.update(kwargs.pop("container", {}))
    result = batch.register_job_definition(
        jobDefinitionName=name, type="container", containerProperties=props, **kwargs
    )
    return f"{name}:{result['revision']}"


def _is_supervisor(pid: int) -> bool:
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return False
    return b"openbatch.supervisor" in cmdline
