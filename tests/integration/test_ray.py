"""Ray compute environments on a real multi-node Ray cluster on this machine.

The cluster: a head with no CPUs on 127.0.0.2 and two workers with different resources,
``small`` (127.0.0.3: 1 CPU, 1 GiB, custom resource ``small``) and ``big`` (127.0.0.4: 2 CPUs,
3 GiB, custom resource ``big``). Jobs show where they ran through ``OPENBATCH_NODE_ADDRESS``.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from tests.compute import compute_resources
from tests.support import ServerProcess, client_exception, unique, wait_for, wait_for_status

if TYPE_CHECKING:
    from mypy_boto3_batch import BatchClient

    from tests.ray_support import LocalRayCluster

pytest.importorskip("ray")

pytestmark = pytest.mark.slow

SMALL = "127.0.0.3"
BIG = "127.0.0.4"


@pytest.fixture(scope="session")
def ray_cluster() -> Iterator[LocalRayCluster]:
    from tests.ray_support import LocalRayCluster, RayNode

    cluster = LocalRayCluster(
        workers=[
            RayNode(SMALL, cpus=1, memory_mib=1024, resources={"small": 1}),
            RayNode(BIG, cpus=2, memory_mib=3072, resources={"big": 1}),
        ]
    ).start()
    try:
        yield cluster
    finally:
        cluster.stop()


@pytest.fixture(scope="module")
def ray_server(tmp_path_factory: pytest.TempPathFactory, ray_cluster: LocalRayCluster) -> Iterator[ServerProcess]:
    proc = ServerProcess(
        tmp_path_factory.mktemp("ray-server"),
        extra_args=("--kill-grace-seconds", "2"),
        env={"OPENBATCH_GPUS": "", "RAY_USAGE_STATS_ENABLED": "0"},
    ).start(timeout=120)
    try:
        yield proc
    finally:
        proc.stop()


@pytest.fixture(scope="module")
def ray_queue(ray_server: ServerProcess, ray_cluster: LocalRayCluster) -> str:
    """A job queue whose compute environment is bound to the cluster by tags, through the AWS API."""
    batch = ray_server.batch()
    ce = unique("ray-ce")
    batch.create_compute_environment(
        computeEnvironmentName=ce,
        type="MANAGED",
        computeResources=compute_resources("EC2", 8, minvCpus=0),
        tags={"openbatch:executor": "ray", "openbatch:ray-address": ray_cluster.address},
    )
    queue = unique("ray-q")
    batch.create_job_queue(
        jobQueueName=queue, priority=1, computeEnvironmentOrder=[{"order": 1, "computeEnvironment": ce}]
    )
    return queue


def definition(batch: BatchClient, script: str, vcpus: str = "1", memory: str = "128", **kwargs: Any) -> str:
    name = unique("ray-jd")
    result = batch.register_job_definition(
        jobDefinitionName=name,
        type="container",
        containerProperties={
            "image": "busybox",
            "command": ["sh", "-c", script],
            "resourceRequirements": [{"type": "VCPU", "value": vcpus}, {"type": "MEMORY", "value": memory}],
        },
        **kwargs,
    )
    return f"{name}:{result['revision']}"


def output(server: ServerProcess, job: dict[str, Any]) -> list[str]:
    stream = job["container"]["logStreamName"]
    events = server.logs().get_log_events(logGroupName="/aws/batch/job", logStreamName=stream)["events"]
    return [event["message"] for event in events]


def node_of(server: ServerProcess, job: dict[str, Any]) -> str:
    lines = [line for line in output(server, job) if line.startswith("node=")]
    assert lines, output(server, job)
    return lines[0].removeprefix("node=").split()[0]


NODE_SCRIPT = 'echo "node=$OPENBATCH_NODE_ADDRESS job=$AWS_BATCH_JOB_ID ce=$AWS_BATCH_CE_NAME"'


def test_jobs_land_on_nodes_by_their_requirements(ray_server: ServerProcess, ray_queue: str) -> None:
    batch = ray_server.batch()
    submitted = {
        # Only the big node has 2 CPUs, and 2 GiB of memory.
        "two-vcpus": (definition(batch, NODE_SCRIPT, vcpus="2"), {}, BIG),
        "two-gib": (definition(batch, NODE_SCRIPT, memory="2048"), {}, BIG),
        # A custom Ray resource, asked for by the job's tag.
        "small-only": (definition(batch, NODE_SCRIPT), {"openbatch:ray-resources": "small"}, SMALL),
        "big-only": (definition(batch, NODE_SCRIPT), {"openbatch:ray-resources": "big=0.5"}, BIG),
    }
    ids = {
        name: batch.submit_job(jobName=name, jobQueue=ray_queue, jobDefinition=jd, tags=tags)["jobId"]
        for name, (jd, tags, _node) in submitted.items()
    }
    for name, job_id in ids.items():
        job = wait_for_status(batch, job_id, ["SUCCEEDED", "FAILED"], timeout=120)
        assert job["status"] == "SUCCEEDED", job
        line = next(line for line in output(ray_server, job) if line.startswith("node="))
        ce = batch.describe_job_queues(jobQueues=[ray_queue])["jobQueues"][0]["computeEnvironmentOrder"][0]
        expected_ce = ce["computeEnvironment"].rsplit("/", 1)[-1]
        assert line == f"node={submitted[name][2]} job={job_id} ce={expected_ce}", (name, line)


def test_a_job_bigger_than_any_node_waits_with_a_reason(ray_server: ServerProcess, ray_queue: str) -> None:
    batch = ray_server.batch()
    job_id = batch.submit_job(
        jobName="too-big", jobQueue=ray_queue, jobDefinition=definition(batch, "true", vcpus="3")
    )["jobId"]

    def reason() -> str | None:
        job = batch.describe_jobs(jobs=[job_id])["jobs"][0]
        text = job.get("statusReason") or ""
        return text if job["status"] == "RUNNABLE" and "no node of Ray cluster" in text else None

    text = wait_for(reason, timeout=60)
    assert text.startswith("MISCONFIGURATION:JOB_RESOURCE_REQUIREMENT - the job needs 3 vCPUs"), text
    assert f"{BIG}: 2 CPUs" in text, text
    batch.terminate_job(jobId=job_id, reason="too big")
    assert wait_for_status(batch, job_id, ["FAILED"])["statusReason"] == "too big"


def test_terminate_kills_the_remote_process_group(ray_server: ServerProcess, ray_queue: str, tmp_path: Path) -> None:
    batch = ray_server.batch()
    pids = tmp_path / "pids"
    tmp_path.chmod(0o777)
    script = f"sleep 300 & echo $$ $! > {pids}.tmp; mv {pids}.tmp {pids}; echo started; wait"
    job_id = batch.submit_job(jobName="stop-me", jobQueue=ray_queue, jobDefinition=definition(batch, script))["jobId"]
    wait_for(pids.exists, timeout=120)
    shell, sleeper = (int(pid) for pid in pids.read_text().split())
    assert _alive(shell) and _alive(sleeper)
    batch.terminate_job(jobId=job_id, reason="stopped by the test")
    job = wait_for_status(batch, job_id, ["FAILED"], timeout=60)
    assert job["statusReason"] == "stopped by the test"
    assert job["attempts"][0]["container"]["exitCode"] in (137, 143)
    wait_for(lambda: not _alive(shell) and not _alive(sleeper), timeout=10)
    assert "started" in output(ray_server, job)


def test_a_job_queued_in_ray_is_starting_until_it_runs_and_terminate_stops_it_there(
    ray_server: ServerProcess, ray_queue: str, tmp_path: Path
) -> None:
    batch = ray_server.batch()
    go = tmp_path / "go"
    tmp_path.chmod(0o777)
    busy = definition(batch, f"echo started; while [ ! -e {go} ]; do sleep 0.1; done")
    # Three jobs fill the cluster's three CPUs; the fourth is handed to Ray and waits in its queue.
    holders = [batch.submit_job(jobName=f"hold-{n}", jobQueue=ray_queue, jobDefinition=busy)["jobId"] for n in range(3)]
    for job_id in holders:
        running: dict[str, Any] = dict(wait_for_status(batch, job_id, ["RUNNING"], timeout=120))
        wait_for(partial(_printed, ray_server, running, "started"), timeout=60)
    queued = batch.submit_job(jobName="queued", jobQueue=ray_queue, jobDefinition=busy)["jobId"]
    job = wait_for_status(batch, queued, ["STARTING"], timeout=60)
    assert "startedAt" not in job
    # The queue's usage counts what runs on the cluster, not what waits in Ray's queue.
    usage = batch.get_job_queue_snapshot(jobQueue=ray_queue)["queueUtilization"]["totalCapacityUsage"]
    assert usage == [{"capacityUnit": "VCPU", "quantity": 3.0}], usage
    batch.terminate_job(jobId=queued, reason="never ran")
    job = wait_for_status(batch, queued, ["FAILED"], timeout=60)
    assert job["statusReason"] == "never ran"
    go.touch()
    for job_id in holders:
        assert wait_for_status(batch, job_id, ["SUCCEEDED", "FAILED"], timeout=60)["status"] == "SUCCEEDED"
    assert output(ray_server, job) == []  # its process never started


def test_short_jobs_run_several_to_a_ray_task_and_a_long_one_holds_up_none(
    ray_server: ServerProcess, ray_queue: str, ray_cluster: LocalRayCluster
) -> None:
    """Short attempts are handed to slots (Ray tasks of one shape) several at a time; an attempt that runs
    past its first report gives back those handed with it, which then run beside it, not after it."""
    from tests.ray_support import dispatcher_stats

    batch = ray_server.batch()
    before = dispatcher_stats(ray_cluster.address)
    warm = batch.submit_job(
        jobName="short", jobQueue=ray_queue, jobDefinition=definition(batch, "true"), arrayProperties={"size": 60}
    )["jobId"]
    assert wait_for_status(batch, warm, ["SUCCEEDED", "FAILED"], timeout=120)["status"] == "SUCCEEDED"
    middle = dispatcher_stats(ray_cluster.address)
    handed, calls = middle["handed"] - before.get("handed", 0), middle["calls"] - before.get("calls", 0)
    assert handed == 60 and calls < handed, (handed, calls)

    script = 'if [ "$AWS_BATCH_JOB_ARRAY_INDEX" = 0 ]; then sleep 4; fi; echo "ran $AWS_BATCH_JOB_ARRAY_INDEX"'
    array = batch.submit_job(
        jobName="one-long", jobQueue=ray_queue, jobDefinition=definition(batch, script), arrayProperties={"size": 12}
    )["jobId"]
    assert wait_for_status(batch, array, ["SUCCEEDED", "FAILED"], timeout=120)["status"] == "SUCCEEDED"
    children = batch.describe_jobs(jobs=[f"{array}:{index}" for index in range(12)])["jobs"]
    ends = {job["arrayProperties"]["index"]: job["stoppedAt"] for job in children}
    assert all(ends[index] < ends[0] - 2000 for index in range(1, 12)), ends
    after = dispatcher_stats(ray_cluster.address)
    assert after["returned"] > middle["returned"], (middle, after)
    for child in children:
        assert output(ray_server, dict(child)) == [f"ran {child['arrayProperties']['index']}"]


def test_a_server_restart_reattaches_to_a_running_ray_job(
    ray_server: ServerProcess, ray_queue: str, tmp_path: Path
) -> None:
    batch = ray_server.batch()
    go = tmp_path / "go"
    tmp_path.chmod(0o777)
    script = f"echo before; while [ ! -e {go} ]; do sleep 0.2; done; echo after; exit 3"
    job_id = batch.submit_job(jobName="outlive", jobQueue=ray_queue, jobDefinition=definition(batch, script))["jobId"]
    job = wait_for_status(batch, job_id, ["RUNNING"], timeout=120)
    wait_for(lambda: "before" in output(ray_server, job), timeout=60)
    ray_server.crash()  # SIGKILL: nothing is handed over
    go.touch()  # the job ends while no server runs
    time.sleep(1)
    ray_server.start(timeout=120)
    batch = ray_server.batch()
    job = wait_for_status(batch, job_id, ["SUCCEEDED", "FAILED"], timeout=120)
    assert job["status"] == "FAILED" and len(job["attempts"]) == 1, job
    assert job["attempts"][0]["container"]["exitCode"] == 3
    assert output(ray_server, job) == ["before", "after"]

    # And one still running when the server comes back is followed to its end.
    go.unlink()
    job_id = batch.submit_job(
        jobName="outlive2", jobQueue=ray_queue, jobDefinition=definition(batch, script.replace("exit 3", "exit 0"))
    )["jobId"]
    job = wait_for_status(batch, job_id, ["RUNNING"], timeout=120)
    wait_for(lambda: "before" in output(ray_server, job), timeout=60)
    ray_server.restart()
    batch = ray_server.batch()
    assert batch.describe_jobs(jobs=[job_id])["jobs"][0]["status"] == "RUNNING"
    go.touch()
    job = wait_for_status(batch, job_id, ["SUCCEEDED", "FAILED"], timeout=120)
    assert job["status"] == "SUCCEEDED" and len(job["attempts"]) == 1, job
    assert output(ray_server, job) == ["before", "after"]


def test_a_lost_node_fails_the_attempt_and_the_retry_runs_on_another(
    ray_server: ServerProcess, ray_cluster: LocalRayCluster, ray_queue: str
) -> None:
    batch = ray_server.batch()
    script = f"{NODE_SCRIPT}; sleep 300"
    jd = definition(batch, script + "; true", retryStrategy={"attempts": 2})
    first = batch.submit_job(jobName="lost", jobQueue=ray_queue, jobDefinition=jd)["jobId"]
    job = wait_for_status(batch, first, ["RUNNING"], timeout=120)
    wait_for(lambda: any(line.startswith("node=") for line in output(ray_server, job)), timeout=60)
    node = node_of(ray_server, job)
    victim = next(worker for worker in ray_cluster.workers if worker.address == node)
    ray_cluster.kill(victim)
    try:
        # The retry runs on the other node; the first attempt failed with the lost host.
        job = wait_for(lambda: _with_attempts(batch, first, 1), timeout=90)
        assert job["attempts"][0]["statusReason"] == f"Host EC2 (instance {node}) terminated.", job
        job = wait_for_status(batch, first, ["RUNNING"], timeout=120)
        wait_for(lambda: sum(line.startswith("node=") for line in output(ray_server, job)) >= 1, timeout=60)
        assert node_of(ray_server, job) != node
        batch.terminate_job(jobId=first, reason="done")
        wait_for_status(batch, first, ["FAILED"], timeout=60)
    finally:
        ray_cluster.restart(victim)


def multinode_definition(batch: BatchClient, script: str, num_nodes: int, main_node: int = 0) -> str:
    name = unique("ray-mnp")
    result = batch.register_job_definition(
        jobDefinitionName=name,
        type="multinode",
        nodeProperties={
            "numNodes": num_nodes,
            "mainNode": main_node,
            "nodeRangeProperties": [
                {
                    "targetNodes": "0:",
                    "container": {
                        "image": "busybox",
                        "command": ["sh", "-c", script],
                        "resourceRequirements": [
                            {"type": "VCPU", "value": "1"},
                            {"type": "MEMORY", "value": "128"},
                        ],
                    },
                }
            ],
        },
    )
    return f"{name}:{result['revision']}"


MNP_SCRIPT = (
    'echo "node=$OPENBATCH_NODE_ADDRESS index=$AWS_BATCH_JOB_NODE_INDEX num=$AWS_BATCH_JOB_NUM_NODES '
    'main=$AWS_BATCH_JOB_MAIN_NODE_INDEX main_address=${AWS_BATCH_JOB_MAIN_NODE_PRIVATE_IPV4_ADDRESS-none}"'
)


def test_a_multinode_job_spans_the_ray_nodes(ray_server: ServerProcess, ray_queue: str, tmp_path: Path) -> None:
    batch = ray_server.batch()
    tmp_path.chmod(0o777)
    # The main node (1) waits for the other to have printed: its exit stops the other node.
    script = (
        f"{MNP_SCRIPT}; touch {tmp_path}/$AWS_BATCH_JOB_NODE_INDEX; while [ ! -e {tmp_path}/0 ]; do sleep 0.1; done"
    )
    jd = multinode_definition(batch, script, num_nodes=2, main_node=1)
    job_id = batch.submit_job(jobName="mnp", jobQueue=ray_queue, jobDefinition=jd)["jobId"]
    job = wait_for_status(batch, job_id, ["SUCCEEDED", "FAILED"], timeout=120)
    assert job["status"] == "SUCCEEDED", job
    lines: dict[int, dict[str, str]] = {}
    for index in range(2):
        node = dict(batch.describe_jobs(jobs=[f"{job_id}#{index}"])["jobs"][0])
        fields = dict(item.split("=", 1) for item in node_line(ray_server, node).split())
        lines[index] = fields
        assert (fields["index"], fields["num"], fields["main"]) == (str(index), "2", "1"), fields
    # Each node on a Ray node of its own: the two workers (the head has no CPUs).
    assert {lines[0]["node"], lines[1]["node"]} == {SMALL, BIG}, lines
    assert lines[0]["main_address"] == lines[1]["node"], lines
    assert lines[1]["main_address"] == "none", lines  # as on AWS: the main node does not get it

    # The job's placement group is gone with it: a job that needs the whole big node runs.
    job_id = batch.submit_job(
        jobName="after-mnp", jobQueue=ray_queue, jobDefinition=definition(batch, NODE_SCRIPT, vcpus="2")
    )["jobId"]
    job = wait_for_status(batch, job_id, ["SUCCEEDED", "FAILED"], timeout=120)
    assert job["status"] == "SUCCEEDED", job
    assert node_of(ray_server, job) == BIG


def test_a_multinode_job_wider_than_the_cluster_waits_with_a_reason(ray_server: ServerProcess, ray_queue: str) -> None:
    batch = ray_server.batch()
    job_id = batch.submit_job(
        jobName="mnp-too-wide", jobQueue=ray_queue, jobDefinition=multinode_definition(batch, "true", num_nodes=3)
    )["jobId"]

    def reason() -> str | None:
        job = batch.describe_jobs(jobs=[job_id])["jobs"][0]
        text = job.get("statusReason") or ""
        # (Until the server has connected to the cluster, the reason says that instead.)
        return text if job["status"] == "RUNNABLE" and "that can hold them" in text else None

    text = wait_for(reason, timeout=60)
    assert text.startswith(
        "MISCONFIGURATION:JOB_RESOURCE_REQUIREMENT - the 3 nodes of this multi-node parallel job start together, "
        "each on a Ray node of its own: they need 3 with 1 vCPUs, 128 MiB of memory"
    ), text
    assert "has 2 that can hold them at once" in text and f"{BIG}: 2 CPUs" in text, text
    batch.terminate_job(jobId=job_id, reason="too wide")
    assert wait_for_status(batch, job_id, ["FAILED"])["statusReason"] == "too wide"


def test_a_multinode_job_outlives_a_server_restart_and_terminate_frees_its_nodes(
    ray_server: ServerProcess, ray_queue: str, tmp_path: Path
) -> None:
    batch = ray_server.batch()
    tmp_path.chmod(0o777)
    go = tmp_path / "go"
    # The main node (0) ends after the other has printed: its exit stops a node still running.
    script = (
        f"touch {tmp_path}/$AWS_BATCH_JOB_NODE_INDEX; while [ ! -e {go} ]; do sleep 0.1; done; echo done; "
        f"touch {tmp_path}/done-$AWS_BATCH_JOB_NODE_INDEX; while [ ! -e {tmp_path}/done-1 ]; do sleep 0.1; done"
    )
    jd = multinode_definition(batch, script, num_nodes=2)
    job_id = batch.submit_job(jobName="mnp-restart", jobQueue=ray_queue, jobDefinition=jd)["jobId"]
    wait_for(lambda: (tmp_path / "0").exists() and (tmp_path / "1").exists(), timeout=120)
    ray_server.crash()  # SIGKILL: the nodes run on, under the dispatcher
    ray_server.start(timeout=120)
    batch = ray_server.batch()
    assert batch.describe_jobs(jobs=[job_id])["jobs"][0]["status"] == "RUNNING"
    go.touch()
    job = wait_for_status(batch, job_id, ["SUCCEEDED", "FAILED"], timeout=120)
    assert job["status"] == "SUCCEEDED" and len(job["attempts"]) == 1, job
    for index in range(2):
        node: dict[str, Any] = dict(batch.describe_jobs(jobs=[f"{job_id}#{index}"])["jobs"][0])
        assert len(node["attempts"]) == 1, node
        assert output(ray_server, node) == ["done"]  # each ran once

    # Terminated while running: both nodes stop, and their placement group goes with them.
    for mark in tmp_path.iterdir():
        mark.unlink()
    job_id = batch.submit_job(jobName="mnp-stop", jobQueue=ray_queue, jobDefinition=jd)["jobId"]
    wait_for_status(batch, job_id, ["RUNNING"], timeout=120)
    batch.terminate_job(jobId=job_id, reason="stopped by the test")
    job = wait_for_status(batch, job_id, ["FAILED"], timeout=60)
    assert job["statusReason"] == "stopped by the test"
    job_id = batch.submit_job(
        jobName="after-stop", jobQueue=ray_queue, jobDefinition=definition(batch, NODE_SCRIPT, vcpus="2")
    )["jobId"]
    job = wait_for_status(batch, job_id, ["SUCCEEDED", "FAILED"], timeout=120)
    assert job["status"] == "SUCCEEDED", job


def node_line(server: ServerProcess, job: dict[str, Any]) -> str:
    lines = [line for line in output(server, job) if line.startswith("node=")]
    assert lines, output(server, job)
    return lines[0]


def test_bad_bindings_are_refused(ray_server: ServerProcess) -> None:
    batch = ray_server.batch()
    for tags, fragment in (
        ({"openbatch:executor": "slurm"}, "must be one of local, ray"),
        ({"openbatch:executor": "ray"}, "needs tag openbatch:ray-address"),
        ({"openbatch:executor": "ray", "openbatch:ray-address": "no port"}, "HOST:PORT"),
        ({"openbatch:ray-resources": "CPU=2"}, "resourceRequirements"),
    ):
        with client_exception(fragment):
            batch.create_compute_environment(
                computeEnvironmentName=unique("bad"),
                type="MANAGED",
                computeResources=compute_resources("EC2", 4, minvCpus=0),
                tags=tags,
            )


def _with_attempts(batch: BatchClient, job_id: str, count: int) -> dict[str, Any] | None:
    job: dict[str, Any] = dict(batch.describe_jobs(jobs=[job_id])["jobs"][0])
    return job if len(job.get("attempts", [])) >= count else None


def _printed(server: ServerProcess, job: dict[str, Any], line: str) -> bool:
    return line in output(server, job)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"
