"""Crash test: the server is SIGKILLed at random points while thousands of jobs flow.

Checks what users rely on: every acknowledged job reaches exactly one terminal state (here:
SUCCEEDED, since every job is built to succeed, retried ones on their second attempt), no
attempt runs twice (each run appends its job id and attempt number to a file), attempts that
end while the server is down are collected, and no job process is left behind.
"""

from __future__ import annotations

import random
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from botocore.exceptions import BotoCoreError, ClientError

from tests.support import ServerProcess, batch_client, make_queue, shell_definition, unique, wait_for

pytestmark = pytest.mark.slow

TERMINAL = ("SUCCEEDED", "FAILED")


class Flow:
    """Submits a mix of jobs until ``target`` are acknowledged, riding out the server's deaths."""

    def __init__(self, server: ServerProcess, queue: str, runs: Path, target: int, seed: int) -> None:
        self.server = server
        self.queue = queue
        self.target = target
        self.random = random.Random(seed)
        self.acked: dict[str, int] = {}
        """Acknowledged job id → expected successful children (array size, or 0 for a single job)."""
        self.expected_attempts: dict[str, int] = {}
        self.errors = 0
        self.truncated = 0
        """Answers cut off by a SIGKILL (a 200 whose body never arrived)."""
        self.stop = threading.Event()
        marker = f'echo "$AWS_BATCH_JOB_ID $AWS_BATCH_JOB_ATTEMPT" >> {runs}'
        batch = batch_client(server.url)
        self.quick = shell_definition(batch, marker)
        self.slow = shell_definition(batch, f"{marker}; sleep $(( 1 + ${{AWS_BATCH_JOB_ATTEMPT}} % 3 ))")
        self.retried = shell_definition(
            batch, f'{marker}; [ "$AWS_BATCH_JOB_ATTEMPT" -ge 2 ]', retryStrategy={"attempts": 2}
        )

    @property
    def jobs(self) -> int:
        return sum(size or 1 for size in self.acked.values())

    def run(self) -> None:
        batch = batch_client(self.server.url)
        while self.jobs < self.target and not self.stop.is_set():
            kind = self.random.random()
            request: dict[str, Any] = {"jobName": unique("c"), "jobQueue": self.queue}
            size = 0
            attempts = 1
            if kind < 0.1:
                size = self.random.choice([10, 50, 100])
                request.update(jobDefinition=self.quick, arrayProperties={"size": size})
            elif kind < 0.2:
                request.update(jobDefinition=self.slow)
            elif kind < 0.3:
                request.update(jobDefinition=self.retried)
                attempts = 2
            else:
                request.update(jobDefinition=self.quick)
            if self.acked and self.random.random() < 0.3:
                parent = self.random.choice(list(self.acked)[-50:])
                request["dependsOn"] = [{"jobId": parent}]
            try:
                response = batch.submit_job(**request)
            except (ClientError, BotoCoreError):
                # The server died under the request: not acknowledged, so nothing is promised for it.
                self.errors += 1
                time.sleep(0.05)
                batch = batch_client(self.server.url)
                continue
            job_id = response.get("jobId")
            if not job_id:
                # The server died while writing its answer: botocore reads a cut-off body as empty
                # (it does not enforce Content-Length). No id reached the client, so nothing is promised.
                self.truncated += 1
                continue
            self.acked[job_id] = size
            self.expected_attempts[job_id] = attempts


def _statuses(batch: Any, ids: list[str]) -> dict[str, dict[str, Any]]:
    found: dict[str, dict[str, Any]] = {}
    for start in range(0, len(ids), 100):
        for job in batch.describe_jobs(jobs=ids[start : start + 100])["jobs"]:
            found[job["jobId"]] = job
    return found


def _processes_with(token: str) -> list[int]:
    pids = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            if token.encode() in (entry / "environ").read_bytes():
                pids.append(int(entry.name))
        except OSError:
            continue
    return pids


def run_crash_test(
    tmp_path: Path,
    figures: Callable[[str], None],
    *,
    target: int,
    restarts: int,
    database_url: str | None = None,
) -> None:
    token = f"OPENBATCH_CRASH_TEST={uuid.uuid4().hex}"
    name, _, value = token.partition("=")
    server = ServerProcess(
        tmp_path / "data",
        database_url=database_url,
        env={name: value, "OPENBATCH_JOB_ENV": name},
        extra_args=("--kill-grace-seconds", "1"),
    ).start()
    runs = tmp_path / "runs"
    runs.touch()
    rng = random.Random(20261128)
    start_seconds: list[float] = []
    try:
        queue = make_queue(batch_client(server.url), max_vcpus=32)
        flow = Flow(server, queue, runs, target, seed=rng.randrange(1 << 30))
        submitter = threading.Thread(target=flow.run, name="submitter", daemon=True)
        submitter.start()
        began = time.monotonic()
        for _ in range(restarts):
            time.sleep(rng.uniform(0.3, 2.0))
            server.crash()
            time.sleep(rng.uniform(0.0, 0.8))  # attempts go on (and some end) while no server runs
            started = time.monotonic()
            server.start()
            start_seconds.append(time.monotonic() - started)
        submitter.join(timeout=120)
        flow.stop.set()
        assert not submitter.is_alive(), "the submitter did not reach its target"
        batch = batch_client(server.url)
        ids = list(flow.acked)

        def all_terminal() -> bool:
            return all(job["status"] in TERMINAL for job in _statuses(batch, ids).values())

        wait_for(all_terminal, timeout=180, interval=1.0)
        elapsed = time.monotonic() - began
        jobs = _statuses(batch, ids)
        assert server.process is not None
        orphans = [pid for pid in _processes_with(token) if pid not in (server.process.pid, server.supervisor_pid)]
    finally:
        server.stop()

    lines = [tuple(line.split()) for line in runs.read_text().splitlines() if line.strip()]
    runs_per_attempt = Counter(lines)
    twice = {key: n for key, n in runs_per_attempt.items() if n > 1}
    runs_per_job = Counter(job_id for job_id, _attempt in lines)
    lost = [job_id for job_id in flow.acked if job_id not in jobs]
    failed = {job_id: job.get("statusReason") for job_id, job in jobs.items() if job["status"] != "SUCCEEDED"}
    wrong_runs = []
    for job_id, size in flow.acked.items():
        if size:
            children = [f"{job_id}:{index}" for index in range(size)]
            wrong_runs += [child for child in children if runs_per_job[child] != 1]
        elif runs_per_job[job_id] != flow.expected_attempts[job_id]:
            wrong_runs.append(job_id)
    store = "PostgreSQL" if database_url else "SQLite"
    figures(
        f"crash test ({store}): {flow.jobs} jobs acknowledged ({len(flow.acked)} submissions, {flow.errors} "
        f"refused while down, {flow.truncated} answers cut off by a kill), {restarts} SIGKILLs, "
        f"restart to healthy max {max(start_seconds):.2f} s / mean "
        f"{sum(start_seconds) / len(start_seconds):.2f} s, all done in {elapsed:.1f} s; lost {len(lost)}, "
        f"not SUCCEEDED {len(failed)}, attempts run twice {len(twice)}, jobs with a wrong number of runs "
        f"{len(wrong_runs)}, orphan processes {len(orphans)}"
    )
    assert not lost
    assert not failed, list(failed.items())[:5]
    assert not twice, list(twice.items())[:5]
    assert not wrong_runs, wrong_runs[:5]
    assert not orphans


def test_sigkill_at_random_points_loses_nothing_and_runs_nothing_twice(
    tmp_path: Path, figures: Callable[[str], None]
) -> None:
    run_crash_test(tmp_path, figures, target=5000, restarts=20)


@pytest.mark.postgres
def test_sigkill_on_postgresql(tmp_path: Path, postgres_url: str, figures: Callable[[str], None]) -> None:
    run_crash_test(tmp_path, figures, target=1000, restarts=5, database_url=postgres_url)
