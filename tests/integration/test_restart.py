"""A crash or restart loses no accepted job."""

from __future__ import annotations

import time
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


def test_jobs_outlive_a_crashed_server_and_finish_once(tmp_path: Path) -> None:
    server = ServerProcess(tmp_path / "data").start()
    try:
        batch = server.batch()
        queue = make_queue(batch, max_vcpus=8)
        runs = tmp_path / "runs"
        release = tmp_path / "release"
        # Each run appends "<jobId> <attempt> <pid>" to a file, then waits for the test to release it.
        script = (
            f'echo "$AWS_BATCH_JOB_ID $AWS_BATCH_JOB_ATTEMPT $$" >> {runs}; '
            f"while [ ! -e {release}.$AWS_BATCH_JOB_ID ]; do sleep 0.05; done; exit $(cat {release}.$AWS_BATCH_JOB_ID)"
        )
        definition = shell_definition(batch, script)
        ends_while_down = batch.submit_job(
            jobName=unique("d"), jobQueue=queue, jobDefinition=definition, retryStrategy={"attempts": 2}
        )["jobId"]
        ends_after = batch.submit_job(jobName=unique("a"), jobQueue=queue, jobDefinition=definition)["jobId"]
        fails_while_down = batch.submit_job(jobName=unique("f"), jobQueue=queue, jobDefinition=definition)["jobId"]
        blocked = make_queue(batch, state="DISABLED")
        waiting = batch.submit_job(jobName=unique("w"), jobQueue=blocked, jobDefinition=definition)["jobId"]
        started = [ends_while_down, ends_after, fails_while_down]
        for job_id in started:
            wait_for_status(batch, job_id, ["RUNNING"])
        wait_for(lambda: len(_read(runs).splitlines()) == 3)
        pids = {line.split()[0]: int(line.split()[2]) for line in _read(runs).splitlines()}

        # When the server is killed outright, two jobs end while it is down, and it starts again
        server.crash()
        Path(f"{release}.{ends_while_down}").write_text("0")
        Path(f"{release}.{fails_while_down}").write_text("3")
        wait_for(lambda: _gone(pids[ends_while_down]) and _gone(pids[fails_while_down]))
        down_until = int(time.time() * 1000)
        server.start()
        batch = server.batch()

        # Then the job that succeeded while the server was down is SUCCEEDED, with its one attempt
        done = wait_for_status(batch, ends_while_down, DONE)
        assert done["status"] == "SUCCEEDED"
        assert [a["container"]["exitCode"] for a in done["attempts"]] == [0]
        assert done["stoppedAt"] <= down_until
        # the one that failed meanwhile is FAILED with its real exit code, not as a lost host
        failed = wait_for_status(batch, fails_while_down, DONE)
        assert failed["status"] == "FAILED"
        assert failed["statusReason"] == "Essential container in task exited"
        assert [a["container"]["exitCode"] for a in failed["attempts"]] == [3]
        # the one still running was re-attached: same process, finishing under the new server
        assert batch.describe_jobs(jobs=[ends_after])["jobs"][0]["status"] == "RUNNING"
        assert not _gone(pids[ends_after])
        Path(f"{release}.{ends_after}").write_text("0")
        after = wait_for_status(batch, ends_after, DONE)
        assert after["status"] == "SUCCEEDED" and len(after["attempts"]) == 1
        # Every job ran exactly once
        assert sorted(line.split()[0] for line in _read(runs).splitlines()) == sorted(started)
        # and a job that was waiting is still there, still waiting
        assert batch.describe_jobs(jobs=[waiting])["jobs"][0]["status"] == "RUNNABLE"
    finally:
        server.stop()


def test_a_lost_host_ends_attempts_under_their_retry_strategy(tmp_path: Path) -> None:
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
        # When the host's supervisor stops (the host goes away) while the server runs
        server.stop_supervisor()
        # Then the interrupted attempts end as a lost host, and each job follows its retry strategy
        job = wait_for_status(batch, retried, DONE)
        assert job["status"] == "SUCCEEDED"
        first = job["attempts"][0]
        assert first["statusReason"].startswith("Host EC2 (instance openbatch-")
        assert first["container"]["reason"] == "The host stopped while this attempt was running"
        failed = wait_for_status(batch, single, DONE)
        assert failed["status"] == "FAILED"
        assert failed["statusReason"].startswith("Host EC2")
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


def test_graceful_restart_keeps_attempts_running(tmp_path: Path) -> None:
    server = ServerProcess(tmp_path / "data").start()
    try:
        batch = server.batch()
        release = tmp_path / "release"
        definition = shell_definition(batch, f"while [ ! -e {release} ]; do sleep 0.05; done")
        job_id = batch.submit_job(jobName=unique("g"), jobQueue="default", jobDefinition=definition)["jobId"]
        wait_for_status(batch, job_id, ["RUNNING"])
        # When the server is stopped with SIGTERM and started again
        server.restart()
        batch = server.batch()
        # Then the attempt ran on, and ends normally under the new server
        release.touch()
        job = wait_for_status(batch, job_id, DONE)
        assert job["status"] == "SUCCEEDED"
        assert len(job["attempts"]) == 1
    finally:
        server.stop()
