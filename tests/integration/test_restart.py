"""A crash or restart loses no accepted job."""

from __future__ import annotations

from functools import partial
from pathlib import Path

from tests.support import ServerProcess, make_queue, shell_definition, unique, wait_for, wait_for_status

DONE = ("SUCCEEDED", "FAILED")


def _gone(pid: int) -> bool:
    """Dead: no such process, or a zombie (its parent server died, so nobody may reap it)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return True
    return stat.rsplit(")", 1)[1].split()[0] == "Z"


def _read(path: Path) -> str:
    return path.read_text() if path.exists() else ""


def test_crash_with_running_jobs_retries_or_fails_them(tmp_path: Path) -> None:
    server = ServerProcess(tmp_path / "data").start()
    try:
        batch = server.batch()
        queue = make_queue(batch, max_vcpus=8)
        marker = tmp_path / "pid"
        # Attempt 1 blocks (and records its pid); later attempts finish at once.
        script = f'if [ "$AWS_BATCH_JOB_ATTEMPT" = 1 ]; then echo $$ > {marker}.$AWS_BATCH_JOB_ID; exec sleep 100; fi'
        definition = shell_definition(batch, script)
        retried = batch.submit_job(
            jobName=unique("r"), jobQueue=queue, jobDefinition=definition, retryStrategy={"attempts": 2}
        )["jobId"]
        not_retried = batch.submit_job(jobName=unique("n"), jobQueue=queue, jobDefinition=definition)["jobId"]
        blocked = make_queue(batch, state="DISABLED")
        waiting = batch.submit_job(jobName=unique("w"), jobQueue=blocked, jobDefinition=definition)["jobId"]
        for job_id in (retried, not_retried):
            wait_for_status(batch, job_id, ["RUNNING"])
        pids = [int(wait_for(partial(_read, Path(f"{marker}.{j}")))) for j in (retried, not_retried)]
        wait_for_status(batch, waiting, ["RUNNABLE"])

        # When the server is killed outright and started again
        server.crash()
        server.start()
        batch = server.batch()

        # Then the orphaned attempts are killed and each job is retried under its strategy or failed
        retried_job = wait_for_status(batch, retried, DONE)
        assert retried_job["status"] == "SUCCEEDED"
        assert retried_job["attempts"][0]["statusReason"].startswith("Host EC2 (instance openbatch-")
        assert len(retried_job["attempts"]) == 2
        failed = wait_for_status(batch, not_retried, DONE)
        assert failed["status"] == "FAILED"
        assert failed["statusReason"].startswith("Host EC2")
        for pid in pids:
            wait_for(partial(_gone, pid), timeout=10)
        # and a job that was waiting is still there, still waiting
        assert batch.describe_jobs(jobs=[waiting])["jobs"][0]["status"] == "RUNNABLE"
    finally:
        server.stop()


def test_graceful_restart_keeps_pending_graph_and_arrays(tmp_path: Path) -> None:
    server = ServerProcess(tmp_path / "data").start()
    try:
        batch = server.batch()
        blocked = make_queue(batch, state="DISABLED")
        definition = shell_definition(batch, "true")
        first = batch.submit_job(jobName="first", jobQueue=blocked, jobDefinition=definition)["jobId"]
        array = batch.submit_job(
            jobName="arr",
            jobQueue=blocked,
            jobDefinition=definition,
            arrayProperties={"size": 5},
            dependsOn=[{"jobId": first}],
        )["jobId"]
        wait_for_status(batch, array, ["PENDING"])
        server.restart()
        batch = server.batch()
        parent = batch.describe_jobs(jobs=[array])["jobs"][0]
        assert parent["status"] == "PENDING"
        assert parent["arrayProperties"]["statusSummary"]["PENDING"] == 5
        # Enabling the compute environment releases the whole graph.
        ce = batch.describe_job_queues(jobQueues=[blocked])["jobQueues"][0]["computeEnvironmentOrder"][0]
        batch.update_compute_environment(computeEnvironment=ce["computeEnvironment"], state="ENABLED")
        assert wait_for_status(batch, array, DONE)["status"] == "SUCCEEDED"
        assert batch.describe_jobs(jobs=[first])["jobs"][0]["status"] == "SUCCEEDED"
    finally:
        server.stop()


def test_graceful_stop_ends_running_attempts_as_a_lost_host(tmp_path: Path) -> None:
    server = ServerProcess(tmp_path / "data").start()
    try:
        batch = server.batch()
        definition = shell_definition(batch, '[ "$AWS_BATCH_JOB_ATTEMPT" -ge 2 ] || exec sleep 100')
        retried = batch.submit_job(
            jobName=unique("g"), jobQueue="default", jobDefinition=definition, retryStrategy={"attempts": 2}
        )["jobId"]
        single = batch.submit_job(jobName=unique("s"), jobQueue="default", jobDefinition=definition)["jobId"]
        for job_id in (retried, single):
            wait_for_status(batch, job_id, ["RUNNING"])
        # When the server is stopped with SIGTERM and started again
        server.restart()
        batch = server.batch()
        # Then the interrupted attempts say why, and each job follows its retry strategy
        job = wait_for_status(batch, retried, DONE)
        assert job["status"] == "SUCCEEDED"
        first = job["attempts"][0]
        assert first["statusReason"].startswith("Host EC2 (instance openbatch-")
        assert first["container"]["reason"] == "The OpenBatch server stopped while this attempt was running"
        failed = wait_for_status(batch, single, DONE)
        assert failed["status"] == "FAILED"
        assert failed["statusReason"].startswith("Host EC2")
    finally:
        server.stop()
