"""Multi-node parallel jobs through boto3 against a real server: nodes, their environment, the main node deciding."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import pytest

from tests.support import (
    ServerProcess,
    client_exception,
    make_queue,
    unique,
    wait_for,
    wait_for_status,
)

if TYPE_CHECKING:
    from mypy_boto3_batch import BatchClient

DONE = ("SUCCEEDED", "FAILED")
PRINT_ENV = 'env | grep "^AWS_BATCH_" | sort'


def container(script: str, vcpus: str = "1") -> Any:
    return {
        "image": "busybox",
        "command": ["sh", "-c", script],
        "resourceRequirements": [{"type": "VCPU", "value": vcpus}, {"type": "MEMORY", "value": "32"}],
    }


def multinode_definition(
    batch: BatchClient, ranges: list[tuple[str, str]], *, num_nodes: int = 3, main_node: int = 0, **kwargs: Any
) -> str:
    """Register a multinode definition: one ``(targetNodes, script)`` per node range; returns ``name:revision``."""
    name = unique("mnp")
    result = batch.register_job_definition(
        jobDefinitionName=name,
        type="multinode",
        nodeProperties={
            "numNodes": num_nodes,
            "mainNode": main_node,
            "nodeRangeProperties": [{"targetNodes": target, "container": container(s)} for target, s in ranges],
        },
        **kwargs,
    )
    return f"{name}:{result['revision']}"


def node(batch: BatchClient, job_id: str, index: int) -> dict[str, Any]:
    jobs: list[Any] = batch.describe_jobs(jobs=[f"{job_id}#{index}"])["jobs"]
    assert len(jobs) == 1
    return dict(jobs[0])


def log_lines(server: ServerProcess, detail: dict[str, Any]) -> list[str]:
    stream = detail["container"]["logStreamName"]
    events = server.logs().get_log_events(logGroupName="/aws/batch/job", logStreamName=stream)["events"]
    return [e["message"] for e in events]


def test_every_node_sees_its_environment(batch: BatchClient, server: ServerProcess, tmp_path: Path) -> None:
    queue = make_queue(batch, max_vcpus=4)
    marks = tmp_path / "marks"
    marks.mkdir()
    # The main node (1 of 3) waits until each node has written its environment.
    wait_all = f'while [ "$(ls {marks} | wc -l)" -lt 3 ]; do sleep 0.05; done'
    record = f"{PRINT_ENV}; touch {marks}/$AWS_BATCH_JOB_NODE_INDEX"
    definition = multinode_definition(
        batch, [("0:", f"{record}; sleep 30"), ("1:1", f"{record}; {wait_all}")], main_node=1
    )
    job_id = batch.submit_job(jobName="mnp-env", jobQueue=queue, jobDefinition=definition)["jobId"]
    job = wait_for_status(batch, job_id, DONE, timeout=60)
    assert job["status"] == "SUCCEEDED", job
    # The job shows its node properties, no container of its own, and its main node's attempt
    assert job["nodeProperties"]["numNodes"] == 3
    assert job["nodeProperties"]["mainNode"] == 1
    assert [r["targetNodes"] for r in job["nodeProperties"]["nodeRangeProperties"]] == ["0:", "1:1"]
    assert "container" not in job and "nodeDetails" not in job
    main = node(batch, job_id, 1)
    assert [a["container"]["logStreamName"] for a in job["attempts"]] == [main["container"]["logStreamName"]]
    assert job["attempts"][0]["container"]["exitCode"] == 0
    for index in range(3):
        detail = node(batch, job_id, index)
        assert detail["jobId"] == f"{job_id}#{index}"
        assert detail["nodeDetails"] == {"nodeIndex": index, "isMainNode": index == 1}
        assert detail["jobName"] == "mnp-env"
        assert detail["status"] == ("SUCCEEDED" if index == 1 else "FAILED"), detail
        env = dict(line.split("=", 1) for line in log_lines(server, detail) if line.startswith("AWS_BATCH_"))
        expected = {
            "AWS_BATCH_JOB_ID": f"{job_id}#{index}",
            "AWS_BATCH_JOB_ATTEMPT": "1",
            "AWS_BATCH_JOB_NODE_INDEX": str(index),
            "AWS_BATCH_JOB_NUM_NODES": "3",
            "AWS_BATCH_JOB_MAIN_NODE_INDEX": "1",
            "AWS_BATCH_JQ_NAME": queue,
        }
        if index != 1:
            # Every node is a process of this host, so the main node is at the loopback address.
            expected["AWS_BATCH_JOB_MAIN_NODE_PRIVATE_IPV4_ADDRESS"] = "127.0.0.1"
        assert {k: env.get(k) for k in expected} == expected
        if index == 1:
            assert "AWS_BATCH_JOB_MAIN_NODE_PRIVATE_IPV4_ADDRESS" not in env  # as on AWS: children only
        assert "AWS_BATCH_JOB_ARRAY_INDEX" not in env
    # The children, still sleeping when the main node exited, were stopped because of it
    stopped = node(batch, job_id, 0)
    assert stopped["statusReason"].startswith("The main node of the multi-node parallel job exited")
    assert stopped["container"]["exitCode"] != 0

    # ListJobs lists the nodes through their job, in index order, and not among the queue's jobs
    listed = batch.list_jobs(multiNodeJobId=job_id, jobStatus="FAILED")["jobSummaryList"]
    assert [s["jobId"] for s in listed] == [f"{job_id}#0", f"{job_id}#2"]
    assert listed[0]["nodeProperties"] == {"isMainNode": False, "numNodes": 3, "nodeIndex": 0}
    succeeded = batch.list_jobs(multiNodeJobId=job_id, jobStatus="SUCCEEDED")["jobSummaryList"]
    assert [s["nodeProperties"] for s in succeeded] == [{"isMainNode": True, "numNodes": 3, "nodeIndex": 1}]
    in_queue = batch.list_jobs(jobQueue=queue, jobStatus="SUCCEEDED")["jobSummaryList"]
    assert [s["jobId"] for s in in_queue] == [job_id]
    assert in_queue[0]["nodeProperties"] == {"numNodes": 3}
    # Naming a job of the other kind lists nothing
    assert batch.list_jobs(arrayJobId=job_id, jobStatus="SUCCEEDED")["jobSummaryList"] == []
    assert batch.list_jobs(multiNodeJobId=unique("none"), jobStatus="SUCCEEDED")["jobSummaryList"] == []


def test_the_main_node_decides_the_job(batch: BatchClient, tmp_path: Path) -> None:
    queue = make_queue(batch, max_vcpus=8)
    # A child failing while the main node succeeds: the job succeeds (AWS takes no action on a child's end)
    child_done = tmp_path / "child-done"
    definition = multinode_definition(
        batch,
        [("0:0", f"while [ ! -e {child_done} ]; do sleep 0.05; done; exit 0"), ("1:", f"touch {child_done}; exit 5")],
        num_nodes=2,
    )
    ok = batch.submit_job(jobName="main-ok", jobQueue=queue, jobDefinition=definition)["jobId"]
    # A main node failing while every child succeeds: the job fails with the main node's reason and exit code
    failing = multinode_definition(batch, [("0:0", "sleep 0.5; exit 3"), ("1:", "exit 0")], num_nodes=2)
    bad = batch.submit_job(jobName="main-bad", jobQueue=queue, jobDefinition=failing)["jobId"]

    job = wait_for_status(batch, ok, DONE, timeout=60)
    assert job["status"] == "SUCCEEDED", job
    failed_child = node(batch, ok, 1)
    assert failed_child["status"] == "FAILED"
    assert failed_child["container"]["exitCode"] == 5

    job = wait_for_status(batch, bad, DONE, timeout=60)
    assert job["status"] == "FAILED", job
    assert job["statusReason"] == "Essential container in task exited"
    assert [a["container"]["exitCode"] for a in job["attempts"]] == [3]
    assert node(batch, bad, 1)["status"] == "SUCCEEDED"
    assert node(batch, bad, 0)["status"] == "FAILED"


def test_a_retry_runs_every_node_again(batch: BatchClient, tmp_path: Path) -> None:
    queue = make_queue(batch, max_vcpus=8)
    runs = tmp_path / "runs"
    script = f'echo "$AWS_BATCH_JOB_NODE_INDEX $AWS_BATCH_JOB_ATTEMPT" >> {runs}'
    definition = multinode_definition(
        batch,
        [("0:0", f'{script}; sleep 0.3; [ "$AWS_BATCH_JOB_ATTEMPT" -ge 2 ]'), ("1:", f"{script}; exec sleep 30")],
        num_nodes=3,
        retryStrategy={"attempts": 2},
    )
    job_id = batch.submit_job(jobName="retry", jobQueue=queue, jobDefinition=definition)["jobId"]
    job = wait_for_status(batch, job_id, DONE, timeout=90)
    assert job["status"] == "SUCCEEDED", job
    assert [a["container"]["exitCode"] for a in job["attempts"]] == [1, 0]
    assert sorted(runs.read_text().split("\n")[:-1]) == sorted(f"{i} {a}" for i in range(3) for a in (1, 2))
    for index in range(3):
        assert len(node(batch, job_id, index)["attempts"]) == 2


def test_terminate_stops_every_node(batch: BatchClient, tmp_path: Path) -> None:
    queue = make_queue(batch, max_vcpus=8)
    pids = tmp_path / "pids"
    definition = multinode_definition(batch, [("0:", f"echo $$ >> {pids}; exec sleep 60")], num_nodes=3)
    job_id = batch.submit_job(jobName="term", jobQueue=queue, jobDefinition=definition)["jobId"]
    wait_for_status(batch, job_id, ["RUNNING"], timeout=30)
    wait_for(lambda: pids.exists() and len(pids.read_text().split()) == 3)
    batch.terminate_job(jobId=job_id, reason="stop the whole job")
    job = wait_for_status(batch, job_id, DONE, timeout=60)
    assert job["status"] == "FAILED"
    assert job["statusReason"] == "stop the whole job"
    assert job["isTerminated"] is True
    for index in range(3):
        detail = node(batch, job_id, index)
        assert detail["status"] == "FAILED" and detail["isTerminated"] is True
        assert detail["statusReason"] == "stop the whole job"
    for pid in pids.read_text().split():
        assert not Path(f"/proc/{pid}").exists() or "Z" in Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1][:3]


def test_the_timeout_covers_the_whole_job(batch: BatchClient) -> None:
    queue = make_queue(batch, max_vcpus=8)
    definition = multinode_definition(
        batch, [("0:", "exec sleep 60")], num_nodes=2, timeout={"attemptDurationSeconds": 1}
    )
    job_id = batch.submit_job(jobName="slow", jobQueue=queue, jobDefinition=definition, retryStrategy={"attempts": 3})[
        "jobId"
    ]
    job = wait_for_status(batch, job_id, DONE, timeout=60)
    assert job["status"] == "FAILED"
    assert job["statusReason"] == "Job attempt duration exceeded timeout"
    assert len(job["attempts"]) == 1  # a timeout is never retried
    assert {node(batch, job_id, i)["statusReason"] for i in range(2)} == {"Job attempt duration exceeded timeout"}


def test_nodes_start_together_or_wait_together(batch: BatchClient, tmp_path: Path) -> None:
    small = make_queue(batch, max_vcpus=2)
    definition = multinode_definition(batch, [("0:", "true")], num_nodes=3)
    never = batch.submit_job(jobName="too-big", jobQueue=small, jobDefinition=definition)["jobId"]
    reason = wait_for(lambda: batch.describe_jobs(jobs=[never])["jobs"][0].get("statusReason"))
    assert reason.startswith("MISCONFIGURATION:COMPUTE_ENVIRONMENT_MAX_RESOURCE - the 3 nodes of this multi-node")
    assert "needs 3 vCPUs" in reason
    assert batch.describe_jobs(jobs=[f"{never}#0"])["jobs"][0]["status"] == "PENDING"
    batch.terminate_job(jobId=never, reason="never fits")
    assert wait_for_status(batch, f"{never}#2", DONE)["statusReason"] == "never fits"

    queue = make_queue(batch, max_vcpus=3)
    release = tmp_path / "release"
    blocker_definition = multinode_definition(
        batch, [("0:", f"while [ ! -e {release} ]; do sleep 0.05; done")], num_nodes=1
    )
    blocker = batch.submit_job(jobName="blocker", jobQueue=queue, jobDefinition=blocker_definition)["jobId"]
    wait_for_status(batch, blocker, ["RUNNING"])
    gang = batch.submit_job(jobName="gang", jobQueue=queue, jobDefinition=definition)["jobId"]
    reason = wait_for(lambda: batch.describe_jobs(jobs=[gang])["jobs"][0].get("statusReason"))
    assert reason.startswith("CAPACITY:INSUFFICIENT_INSTANCE_CAPACITY - the 3 nodes of this multi-node")
    # Two of the three vCPUs are free, yet no node starts before all of them can
    time.sleep(0.5)
    statuses = {j["status"] for j in batch.describe_jobs(jobs=[f"{gang}#{i}" for i in range(3)])["jobs"]}
    assert statuses == {"PENDING"}
    release.touch()
    assert wait_for_status(batch, gang, DONE, timeout=60)["status"] == "SUCCEEDED"


@pytest.mark.parametrize(
    ("node_properties", "fragments"),
    [
        ({"numNodes": 3, "mainNode": 0, "nodeRangeProperties": [{"targetNodes": "0:1"}]}, ("container",)),
        ({"numNodes": 3, "mainNode": 0, "nodeRangeProperties": [{"targetNodes": "0-2"}]}, ("node range",)),
        ({"numNodes": 3, "mainNode": 0, "nodeRangeProperties": [{"targetNodes": "2:1"}]}, ("ends before",)),
        ({"numNodes": 3, "mainNode": 0, "nodeRangeProperties": [{"targetNodes": "0:1"}]}, ("cover", "2")),
        ({"numNodes": 3, "mainNode": 0, "nodeRangeProperties": [{"targetNodes": "0:3"}]}, ("past the last",)),
        ({"numNodes": 3, "mainNode": 3, "nodeRangeProperties": [{"targetNodes": ":"}]}, ("mainNode", "0 and 2")),
        ({"numNodes": 0, "mainNode": 0, "nodeRangeProperties": [{"targetNodes": ":"}]}, ("numNodes",)),
        (
            {"numNodes": 4, "mainNode": 0, "nodeRangeProperties": [{"targetNodes": "0:2"}, {"targetNodes": "1:3"}]},
            ("overlap",),
        ),
        (
            {"numNodes": 4, "mainNode": 0, "nodeRangeProperties": [{"targetNodes": "0:"}, {"targetNodes": "0:3"}]},
            ("same nodes",),
        ),
        (
            {"numNodes": 9, "mainNode": 0, "nodeRangeProperties": [{"targetNodes": f"{i}:{i}"} for i in range(6)]},
            ("1 to 5",),
        ),
    ],
)
def test_bad_node_properties_are_refused(
    batch: BatchClient, node_properties: dict[str, Any], fragments: tuple[str, ...]
) -> None:
    ranges = node_properties["nodeRangeProperties"]
    if fragments != ("container",):
        for entry in ranges:
            entry["container"] = container("true")
    with client_exception(*fragments):
        batch.register_job_definition(jobDefinitionName=unique("bad"), type="multinode", nodeProperties=node_properties)  # type: ignore[arg-type]


def test_multinode_definitions_are_checked_as_a_whole(batch: BatchClient) -> None:
    nodes: Any = {
        "numNodes": 2,
        "mainNode": 0,
        "nodeRangeProperties": [{"targetNodes": ":", "container": container("true")}],
    }
    # containerProperties beside nodeProperties, and nodeProperties on a container definition
    kinds: list[tuple[Literal["container", "multinode"], str]] = [
        ("multinode", "containerProperties"),
        ("container", "multinode"),
    ]
    for kind, fragment in kinds:
        with client_exception(fragment):
            batch.register_job_definition(
                jobDefinitionName=unique("bad"), type=kind, nodeProperties=nodes, containerProperties=container("true")
            )
    with client_exception("AWS_BATCH"):
        bad_env = {**container("true"), "environment": [{"name": "AWS_BATCH_JOB_NODE_INDEX", "value": "7"}]}
        batch.register_job_definition(
            jobDefinitionName=unique("bad"),
            type="multinode",
            nodeProperties={**nodes, "nodeRangeProperties": [{"targetNodes": ":", "container": bad_env}]},  # type: ignore[arg-type]
        )
    with client_exception("FARGATE"):
        batch.register_job_definition(
            jobDefinitionName=unique("bad"), type="multinode", nodeProperties=nodes, platformCapabilities=["FARGATE"]
        )
    # Nested ranges are fine: the inner range's container runs its nodes
    nested = multinode_definition(batch, [("0:9", "exit 1"), ("4:5", "true")], num_nodes=10)
    detail = batch.describe_job_definitions(jobDefinitions=[nested])["jobDefinitions"][0]
    assert detail["type"] == "multinode"
    assert detail["nodeProperties"]["nodeRangeProperties"][1]["container"]["environment"] == []


def test_submissions_are_checked_against_the_node_ranges(batch: BatchClient) -> None:
    queue = make_queue(batch, max_vcpus=4)
    closed = multinode_definition(batch, [("0:0", "true"), ("1:2", "true")], num_nodes=3)
    open_ended = multinode_definition(batch, [("0:0", "true"), ("2:", "true"), ("1:1", "true")], num_nodes=3)
    plain = batch.register_job_definition(
        jobDefinitionName=unique("c"), type="container", containerProperties=container("true")
    )["jobDefinitionArn"]
    cases: list[tuple[str, dict[str, Any], tuple[str, ...]]] = [
        (closed, {"nodeOverrides": {"numNodes": 5}}, ("open upper bound",)),
        (open_ended, {"nodeOverrides": {"numNodes": 2}}, ("numNodes 2",)),
        (open_ended, {"arrayProperties": {"size": 2}}, ("arrayProperties",)),
        (open_ended, {"containerOverrides": {"command": ["true"]}}, ("containerOverrides", "nodeOverrides")),
        (plain, {"nodeOverrides": {"numNodes": 2}}, ("nodeOverrides",)),
        (
            open_ended,
            {"nodeOverrides": {"nodePropertyOverrides": [{"targetNodes": "0:7", "containerOverrides": {}}]}},
            ("past the last",),
        ),
        (
            open_ended,
            {
                "nodeOverrides": {
                    "nodePropertyOverrides": [
                        {
                            "targetNodes": "1:",
                            "containerOverrides": {"environment": [{"name": "AWS_BATCH_X", "value": "1"}]},
                        }
                    ]
                }
            },
            ("AWS_BATCH_X",),
        ),
    ]
    for definition, extra, fragments in cases:
        with client_exception(*fragments):
            batch.submit_job(jobName="bad", jobQueue=queue, jobDefinition=definition, **extra)


def test_node_overrides_change_the_count_and_the_containers(
    batch: BatchClient, server: ServerProcess, tmp_path: Path
) -> None:
    queue = make_queue(batch, max_vcpus=8)
    marks = tmp_path / "marks"
    marks.mkdir()
    child = f"touch {marks}/$AWS_BATCH_JOB_NODE_INDEX"
    definition = multinode_definition(
        batch,
        [
            ("0:0", f'while [ "$(ls {marks} | wc -l)" -lt 3 ]; do sleep 0.05; done; echo main'),
            ("1:", f"echo child $GREETING; {child}"),
        ],
        num_nodes=2,
    )
    job_id = batch.submit_job(
        jobName="grown",
        jobQueue=queue,
        jobDefinition=definition,
        nodeOverrides={
            "numNodes": 4,
            "nodePropertyOverrides": [
                {
                    "targetNodes": "2:3",
                    "containerOverrides": {
                        "command": ["sh", "-c", f"echo other $GREETING; {child}"],
                        "environment": [{"name": "GREETING", "value": "hi"}],
                    },
                }
            ],
        },
    )["jobId"]
    job = wait_for_status(batch, job_id, DONE, timeout=60)
    assert job["status"] == "SUCCEEDED", job
    assert job["nodeProperties"]["numNodes"] == 4
    listed = batch.list_jobs(multiNodeJobId=job_id, jobStatus="SUCCEEDED")["jobSummaryList"]
    assert [s["nodeProperties"]["nodeIndex"] for s in listed] == [0, 1, 2, 3]
    outputs = [log_lines(server, node(batch, job_id, index))[0] for index in range(4)]
    assert outputs == ["main", "child", "other hi", "other hi"]


def test_cancel_before_start_closes_every_node(batch: BatchClient) -> None:
    blocked = make_queue(batch, state="DISABLED")
    definition = multinode_definition(batch, [("0:", "true")], num_nodes=2)
    job_id = batch.submit_job(jobName="cancelled", jobQueue=blocked, jobDefinition=definition)["jobId"]
    wait_for_status(batch, job_id, ["RUNNABLE"])
    batch.cancel_job(jobId=job_id, reason="not needed")
    job = wait_for_status(batch, job_id, DONE)
    assert job["status"] == "FAILED" and job["isCancelled"] is True
    for index in range(2):
        detail = node(batch, job_id, index)
        assert (detail["status"], detail["statusReason"], detail.get("isCancelled")) == ("FAILED", "not needed", True)


@pytest.mark.slow
def test_a_restart_mid_job_neither_loses_nor_repeats_a_node(tmp_path: Path) -> None:
    server = ServerProcess(tmp_path / "data").start()
    try:
        batch = server.batch()
        queue = make_queue(batch, max_vcpus=8)
        runs = tmp_path / "runs"
        release = tmp_path / "release"
        marks = tmp_path / "marks"
        marks.mkdir()
        script = (
            f'echo "$AWS_BATCH_JOB_NODE_INDEX $AWS_BATCH_JOB_ATTEMPT" >> {runs}; '
            f"touch {marks}/$AWS_BATCH_JOB_NODE_INDEX; "
        )
        definition = multinode_definition(
            batch,
            [
                ("0:0", f'{script} while [ "$(ls {marks} | wc -l)" -lt 3 ] || [ ! -e {release} ]; do sleep 0.05; done'),
                ("1:", f"{script} exec sleep 60"),
            ],
            num_nodes=3,
        )
        job_id = batch.submit_job(jobName="restarted", jobQueue=queue, jobDefinition=definition)["jobId"]
        wait_for_status(batch, job_id, ["RUNNING"], timeout=30)
        wait_for(lambda: runs.exists() and len(runs.read_text().splitlines()) == 3)
        # When the server is killed outright mid-job and started again
        server.crash()
        server.start()
        batch = server.batch()
        # Then the nodes were re-attached, still running their first attempt
        assert batch.describe_jobs(jobs=[job_id])["jobs"][0]["status"] == "RUNNING"
        assert {node(batch, job_id, i)["status"] for i in range(3)} == {"RUNNING"}
        release.touch()
        job = wait_for_status(batch, job_id, DONE, timeout=60)
        assert job["status"] == "SUCCEEDED", job
        assert len(job["attempts"]) == 1
        # and every node ran exactly once
        assert sorted(runs.read_text().splitlines()) == ["0 1", "1 1", "2 1"]
        # When stopped gracefully while a job runs, the job goes on and ends under the next server
        release.unlink()
        runs.unlink()
        for mark in marks.iterdir():
            mark.unlink()
        again = batch.submit_job(jobName="graceful", jobQueue=queue, jobDefinition=definition)["jobId"]
        wait_for(lambda: runs.exists() and len(runs.read_text().splitlines()) == 3)
        server.restart()
        batch = server.batch()
        release.touch()
        job = wait_for_status(batch, again, DONE, timeout=60)
        assert job["status"] == "SUCCEEDED", job
        assert sorted(runs.read_text().splitlines()) == ["0 1", "1 1", "2 1"]
    finally:
        server.stop()


def test_openbatch_logs_follows_every_node(batch: BatchClient, server: ServerProcess, tmp_path: Path) -> None:
    queue = make_queue(batch, max_vcpus=4)
    marks = tmp_path / "marks"
    marks.mkdir()
    definition = multinode_definition(
        batch,
        [
            ("0:0", f'while [ "$(ls {marks} | wc -l)" -lt 2 ]; do sleep 0.05; done; echo main done'),
            ("1:", f'echo "node $AWS_BATCH_JOB_NODE_INDEX"; touch {marks}/$AWS_BATCH_JOB_NODE_INDEX; exit 4'),
        ],
    )
    job_id = batch.submit_job(jobName="logs", jobQueue=queue, jobDefinition=definition)["jobId"]

    def logs(*args: str) -> subprocess.CompletedProcess[str]:
        command = [sys.executable, "-m", "openbatch.cli.main", "logs", job_id, *args, "--endpoint-url", server.url]
        return subprocess.run(command, capture_output=True, text=True, timeout=90)

    # Every node's lines, prefixed with its index; the exit status is the job's, although nodes failed
    followed = logs("-f")
    assert followed.returncode == 0, followed.stderr
    # (in the order the nodes wrote them, as the followed streams are read in turn)
    assert sorted(followed.stdout.splitlines()) == ["[#0] main done", "[#1] node 1", "[#2] node 2"]
    one = logs("--index", "2")
    assert (one.returncode, one.stdout) == (0, "node 2\n")
    beyond = logs("--index", "3")
    assert beyond.returncode == 1 and beyond.stderr == f"error: job {job_id} has nodes 0 to 2; there is no index 3\n"


def test_openbatch_ls_lists_the_nodes(batch: BatchClient, server: ServerProcess) -> None:
    queue = make_queue(batch, max_vcpus=4)
    definition = multinode_definition(batch, [("0:", "true")], num_nodes=2)
    job_id = batch.submit_job(jobName="listed", jobQueue=queue, jobDefinition=definition)["jobId"]
    wait_for_status(batch, job_id, DONE, timeout=60)

    def ls(*args: str) -> subprocess.CompletedProcess[str]:
        command = [sys.executable, "-m", "openbatch.cli.main", "ls", *args, "--endpoint-url", server.url]
        return subprocess.run(command, capture_output=True, text=True, timeout=90)

    nodes = ls("--multi-node-job-id", job_id, "-o", "json")
    assert nodes.returncode == 0, nodes.stderr
    assert [j["jobId"] for j in json.loads(nodes.stdout)] == [f"{job_id}#0", f"{job_id}#1"]
    both = ls("--multi-node-job-id", job_id, "--array-job-id", job_id)
    assert both.returncode != 0 and "cannot be given together" in both.stderr
