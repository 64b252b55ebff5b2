"""Two servers on one PostgreSQL database: the leader is SIGKILLed while 1,000 jobs flow through both.

Checks what the cluster promises: any server answers any call (the follower forwards to the
leader); the follower takes over when the leader dies; every acknowledged job reaches exactly one
terminal state; the attempts that ran on the dead leader's host end with ``Host EC2 (instance …)
terminated.`` and follow their retry strategy; no attempt runs twice and none finishes its work
after it has been declared lost (each job appends its id, attempt and the time to a file as its
last act); a restarted old leader follows; no job process is left behind.
"""

from __future__ import annotations

import json
import os
import random
import signal
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
from botocore.exceptions import BotoCoreError, ClientError

from tests.integration.test_auth import ADMIN, READER, READER_POLICY, SIGNATURE_MISMATCH, client, error_of
from tests.integration.test_crash import _processes_with, _statuses
from tests.support import ServerProcess, batch_client, make_queue, shell_definition, unique, wait_for, wait_for_status

pytestmark = [pytest.mark.slow, pytest.mark.postgres]

TARGET = 1000
LOST_HOST_SECONDS = 6


def _leader_and_follower(
    tmp_path: Path, postgres_url: str, options: tuple[str, ...], env: dict[str, str]
) -> tuple[ServerProcess, ServerProcess]:
    """Two servers on one database (data dirs ``a`` and ``b``): the first leads, the second follows it."""
    first = ServerProcess(tmp_path / "a", database_url=postgres_url, extra_args=options, env=env).start()
    second: ServerProcess | None = None
    try:
        wait_for(lambda: _cluster(first)["role"] == "leader", timeout=60)
        second = ServerProcess(tmp_path / "b", database_url=postgres_url, extra_args=options, env=env).start()
        wait_for(lambda: _cluster(second)["leader"] == first.url, timeout=30)
    except BaseException:
        first.stop()
        if second is not None:
            second.stop()
        raise
    return first, second


def _cluster(server: ServerProcess) -> dict[str, Any]:
    state: dict[str, Any] = httpx.get(f"{server.url}/health/cluster", timeout=5).json()
    return state


class Submitters:
    """One thread per server, as behind a load balancer: one whose server is gone moves to the other."""

    def __init__(self, servers: list[ServerProcess], queue: str, definitions: dict[str, str], seed: int) -> None:
        self.servers = servers
        self.queue = queue
        self.definitions = definitions
        self.random = random.Random(seed)
        self.lock = threading.Lock()
        self.acked: dict[str, int] = {}
        """Job id → array size (0 for a single job)."""
        self.kind: dict[str, str] = {}
        self.through: Counter[str] = Counter()
        self.refused = 0
        self.stop = threading.Event()

    @property
    def jobs(self) -> int:
        with self.lock:
            return sum(size or 1 for size in self.acked.values())

    def run(self, first: int) -> None:
        index = first
        batch = batch_client(self.servers[index].url)
        while self.jobs < TARGET and not self.stop.is_set():
            with self.lock:
                roll = self.random.random()
                size = self.random.choice([10, 25, 50]) if roll < 0.1 else 0
            kind = "quick" if roll < 0.55 else ("slow" if roll < 0.75 else "retried" if roll < 0.95 else "long")
            request: dict[str, Any] = {
                "jobName": unique("j"),
                "jobQueue": self.queue,
                "jobDefinition": self.definitions[kind],
            }
            if size:
                request["arrayProperties"] = {"size": size}
            try:
                job_id = batch.submit_job(**request).get("jobId")
            except (ClientError, BotoCoreError):
                # Its server died under the request: not acknowledged; the other server takes the next.
                with self.lock:
                    self.refused += 1
                index = 1 - index
                batch = batch_client(self.servers[index].url)
                continue
            if not job_id:
                continue  # an answer cut off by the kill: no id reached the client, nothing is promised
            with self.lock:
                self.acked[job_id] = size
                self.kind[job_id] = kind
                self.through[self.servers[index].url] += 1


def test_leader_sigkilled_while_jobs_flow_through_both_servers(
    tmp_path: Path, postgres_url: str, figures: Callable[[str], None]
) -> None:
    token = f"OPENBATCH_CLUSTER_TEST={uuid.uuid4().hex}"
    name, _, value = token.partition("=")
    options = ("--kill-grace-seconds", "1", "--lost-host-seconds", str(LOST_HOST_SECONDS))
    env = {name: value, "OPENBATCH_JOB_ENV": name, "OPENBATCH_GPUS": ""}
    first, second = _leader_and_follower(tmp_path, postgres_url, options, env)
    runs = tmp_path / "runs"
    runs.touch()
    try:
        assert _cluster(second)["role"] == "follower"
        lost_instance = _cluster(first)["instance"]

        # Created through the follower: forwarded to the leader, which runs them.
        batch = second.batch()
        queue = make_queue(batch, max_vcpus=32)
        marker = f'echo "$AWS_BATCH_JOB_ID $AWS_BATCH_JOB_ATTEMPT $(date +%s%3N)" >> {runs}'
        definitions = {
            "quick": shell_definition(batch, marker),
            "slow": shell_definition(batch, f"sleep 1; {marker}"),
            "retried": shell_definition(batch, f"sleep 1; {marker}", retryStrategy={"attempts": 2}),
            # Longer than the takeover and the wait together: only the lost host's supervisor ends one
            # of these before the new leader declares it lost and runs it again.
            "long": shell_definition(batch, f"sleep 12; {marker}", retryStrategy={"attempts": 2}),
        }
        flow = Submitters([first, second], queue, definitions, seed=20261128)
        threads = [threading.Thread(target=flow.run, args=(i,), daemon=True) for i in (0, 1)]
        began = time.monotonic()
        for thread in threads:
            thread.start()
        wait_for(lambda: flow.jobs >= TARGET * 0.4, timeout=120, interval=0.01)
        killed = time.monotonic()
        first.crash()
        wait_for(lambda: _cluster(second)["role"] == "leader", timeout=60, interval=0.02)
        takeover = time.monotonic() - killed
        for thread in threads:
            thread.join(timeout=120)
        flow.stop.set()
        assert not any(thread.is_alive() for thread in threads), "the submitters did not reach their target"

        ids = list(flow.acked)
        children = [f"{job_id}:{i}" for job_id, size in flow.acked.items() for i in range(size)]

        def all_terminal() -> bool:
            return all(job["status"] in ("SUCCEEDED", "FAILED") for job in _statuses(batch, ids).values())

        wait_for(all_terminal, timeout=120, interval=1.0)
        done = time.monotonic() - began
        jobs = _statuses(batch, ids + children)

        # The old leader, restarted, follows; a job submitted through it runs on the new leader.
        first.start()
        wait_for(lambda: _cluster(first)["leader"] == second.url, timeout=30)
        assert _cluster(first)["role"] == "follower"
        # The console's live feed, an event stream, comes through the follower as the leader sends it.
        with httpx.stream("GET", f"{first.url}/api/jobs/events", timeout=30) as feed:
            events = feed.iter_lines()
            assert next(line for line in events if line.startswith("event:")) == "event: ready"
            again = first.batch().submit_job(jobName="after", jobQueue=queue, jobDefinition=definitions["quick"])
            assert any(again["jobId"] in line for line in events)
        assert wait_for_status(first.batch(), again["jobId"], ["SUCCEEDED", "FAILED"])["status"] == "SUCCEEDED"
    finally:
        first.stop()
        second.stop()
    time.sleep(1.0)
    orphans = _processes_with(token)

    lines = [line.split() for line in runs.read_text().splitlines() if line.strip()]
    runs_of = Counter((job_id, int(attempt)) for job_id, attempt, _at in lines)
    twice = [key for key, n in runs_of.items() if n > 1]
    host_lost = f"Host EC2 (instance {lost_instance}) terminated."
    singles = [job_id for job_id, size in flow.acked.items() if not size]
    missing = [job_id for job_id in singles + children if job_id not in jobs]
    # A job's own outcome: FAILED only when its attempt was lost and its retry strategy said no more.
    unexpected = {
        job_id: job.get("statusReason")
        for job_id in singles + children
        if (job := jobs.get(job_id)) is not None
        and not (job["status"] == "SUCCEEDED" or job.get("statusReason") == host_lost)
    }
    lost_attempts = [
        (job_id, n)
        for job_id in singles + children
        for n, attempt in enumerate(jobs.get(job_id, {}).get("attempts", []), start=1)
        if attempt.get("statusReason") == host_lost
    ]
    late = []
    succeeded_twice = []
    for job_id, attempt_text, at in lines:
        if job_id not in jobs:
            continue  # the job submitted after the takeover
        attempts = jobs[job_id]["attempts"]
        attempt = attempts[int(attempt_text) - 1]
        if attempt.get("statusReason") == host_lost and int(at) > attempt["stoppedAt"]:
            late.append(job_id)  # finished its work after it had been declared lost
    for job_id in singles + children:
        job = jobs.get(job_id)
        if job is None or job["status"] != "SUCCEEDED":
            continue
        completed = [n for (run_id, n) in runs_of if run_id == job_id]
        counted = [n for n in completed if job["attempts"][n - 1].get("statusReason") != host_lost]
        if counted != [len(job["attempts"])]:
            succeeded_twice.append((job_id, completed))
    finished_before_loss = sum(1 for job_id, n in runs_of if (job_id, n) in set(lost_attempts))
    retried_after_loss = sum(1 for job_id, n in lost_attempts if len(jobs[job_id]["attempts"]) > n)
    figures(
        f"cluster (2 servers, PostgreSQL): {len(singles) + len(children)} jobs "
        f"({flow.through[first.url]} submissions through the leader, {flow.through[second.url]} through the "
        f"follower, {flow.refused} refused by the dying one); leader SIGKILLed, follower leading after "
        f"{takeover:.2f} s; {len(lost_attempts)} attempts lost with its host ({retried_after_loss} retried, "
        f"{finished_before_loss} had done their work), "
        f"all done in {done:.1f} s; missing {len(missing)}, unexpected outcomes {len(unexpected)}, attempts run "
        f"twice {len(twice)}, finished after declared lost {len(late)}, succeeded twice {len(succeeded_twice)}, "
        f"orphan processes {len(orphans)}"
    )
    assert not missing, missing[:5]
    assert not unexpected, list(unexpected.items())[:5]
    assert not twice, twice[:5]
    assert not late, late[:5]
    assert not succeeded_twice, succeeded_twice[:5]
    assert not orphans


def test_a_follower_forwards_signed_calls_unchanged(tmp_path: Path, postgres_url: str) -> None:
    """SigV4 signatures made for the follower's address verify on the leader; refusals come back as they are."""
    auth_file = tmp_path / "auth.yaml"
    keys = [
        {"accessKeyId": ADMIN[0], "secretAccessKey": ADMIN[1], "user": "admin"},
        {"accessKeyId": READER[0], "secretAccessKey": READER[1], "user": "reader", "policy": READER_POLICY},
    ]
    auth_file.write_text(json.dumps({"keys": keys}))
    servers = [
        ServerProcess(tmp_path / name, database_url=postgres_url, auth_file=auth_file, env={"OPENBATCH_GPUS": ""})
        for name in ("a", "b")
    ]
    leader, follower = servers
    try:
        leader.start()
        wait_for(lambda: _cluster(leader)["role"] == "leader", timeout=60)
        follower.start()
        wait_for(lambda: _cluster(follower)["leader"] == leader.url, timeout=30)
        admin = client(follower, ADMIN)
        queue = make_queue(admin)
        job = admin.submit_job(jobName="signed", jobQueue=queue, jobDefinition=shell_definition(admin, "true"))
        assert wait_for_status(admin, job["jobId"], ["SUCCEEDED", "FAILED"])["status"] == "SUCCEEDED"
        with pytest.raises(ClientError) as denied:
            client(follower, READER).terminate_job(jobId=job["jobId"], reason="no")
        assert error_of(denied)[0] == 403
        with pytest.raises(ClientError) as forged:
            client(follower, (ADMIN[0], "not-the-secret")).describe_job_queues()
        code, message = error_of(forged)[1:]
        assert code == "InvalidSignatureException" and message.startswith(SIGNATURE_MISMATCH)
        # Unsigned metrics are for callers on the leader's own host: a call forwarded from the follower's
        # loopback address is not one of them.
        assert httpx.get(f"{leader.url}/metrics", timeout=10).status_code == 200
        assert httpx.get(f"{follower.url}/metrics", timeout=10).status_code == 403
    finally:
        for server in servers:
            server.stop()


def test_attempts_ending_while_no_server_is_connected_keep_their_own_outcome(tmp_path: Path, postgres_url: str) -> None:
    """The leader's jobs end after it is SIGKILLed, before its supervisor fences them: the next leader
    applies how they really ended (their supervisor wrote it to the database) instead of declaring them
    lost, so a job that succeeded there is not run again and a real failure stays a real failure. One of
    them ends while the leader is frozen, its exit told to a server that never commits it."""
    # Long enough that the jobs below end well before their supervisor's fence (a quarter of this).
    options = ("--kill-grace-seconds", "1", "--lost-host-seconds", "20")
    env = {"OPENBATCH_GPUS": ""}
    first, second = _leader_and_follower(tmp_path, postgres_url, options, env)
    runs = tmp_path / "runs"
    runs.touch()
    try:
        batch = second.batch()
        queue = make_queue(batch)

        def submit(name: str, then: str = "", **kwargs: Any) -> str:
            # Each job waits for the test to let it end, so that it ends exactly when the test means it to.
            release = tmp_path / name
            script = f'while [ ! -e {release} ]; do sleep 0.05; done; echo "$AWS_BATCH_JOB_ID" >> {runs}{then}'
            definition = shell_definition(batch, script, **kwargs)
            job_id: str = batch.submit_job(jobName=name, jobQueue=queue, jobDefinition=definition)["jobId"]
            return job_id

        # A retry strategy: a job declared lost would run again.
        succeeds = submit("succeeds", retryStrategy={"attempts": 2})
        fails = submit("fails", "; exit 3")
        told = submit("told", retryStrategy={"attempts": 2})
        for job_id in (succeeds, fails, told):
            wait_for_status(batch, job_id, ["RUNNING"])

        assert first.process is not None
        os.kill(first.process.pid, signal.SIGSTOP)
        (tmp_path / "told").touch()
        # Its supervisor has recorded the exit and told the (frozen) server, which never commits it.
        wait_for(lambda: (tmp_path / "a" / "supervisor" / "attempts" / f"{told}#1.exit").exists())
        first.crash()
        (tmp_path / "succeeds").touch()
        (tmp_path / "fails").touch()

        wait_for(lambda: _cluster(second)["role"] == "leader", timeout=60)
        # Longer than lost_host_seconds: a job wrongly declared lost would show it by the end of this.
        jobs = {
            job_id: wait_for_status(batch, job_id, ["SUCCEEDED", "FAILED"], timeout=60)
            for job_id in (succeeds, fails, told)
        }
    finally:
        first.stop()
        second.stop()

    for job_id in (succeeds, told):
        job = jobs[job_id]
        assert job["status"] == "SUCCEEDED", job.get("statusReason")
        assert [(a["container"].get("exitCode"), a["statusReason"]) for a in job["attempts"]] == [
            (0, "Essential container in task exited")
        ]
    failed = jobs[fails]
    assert failed["status"] == "FAILED"
    assert failed["statusReason"] == "Essential container in task exited"
    assert [a["container"].get("exitCode") for a in failed["attempts"]] == [3]
    assert sorted(runs.read_text().split()) == sorted([succeeds, fails, told])  # each ran once
