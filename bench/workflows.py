"""A 1,000-step workflow from start to SUCCEEDED, beside the same graph submitted as plain jobs with dependsOn.

Printed beside them: the raw cost of spawning `true` 1,000 times from Python, the floor for
both (and a gauge of how loaded the machine is).

The graph has mixed fan-out and fan-in: 20 layers of 50 steps running ``true``; each
step after the first layer depends on 1 to 3 steps of the layer before (seeded, so
every run measures the same graph). Both variants run on the same server, one after
the other:

* plain jobs: SubmitJob per step through boto3 in topological order (``dependsOn``
  with the upstream job ids), then wait until every job SUCCEEDED — what a Batch
  user's "master script" does;
* workflow: one StartWorkflowRun call (native API), then wait until the run SUCCEEDED.

Usage: ``python bench/workflows.py [--layers 20] [--width 50] [--max-vcpus 8]``
"""

from __future__ import annotations

import argparse
import json
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.support import ServerProcess

if TYPE_CHECKING:
    from mypy_boto3_batch import BatchClient


def raw_spawn_seconds(n: int) -> float:
    """The floor: spawning ``true`` n times from Python, one after the other."""
    started = time.perf_counter()
    for _ in range(n):
        subprocess.Popen(["true"]).wait()
    return time.perf_counter() - started


def graph(layers: int, width: int, seed: int = 1) -> dict[str, list[str]]:
    """Step → upstream steps, in topological order."""
    rng = random.Random(seed)
    steps: dict[str, list[str]] = {}
    for layer in range(layers):
        for index in range(width):
            upstream = [] if layer == 0 else rng.sample(range(width), rng.randint(1, 3))
            steps[f"s{layer}_{index}"] = [f"s{layer - 1}_{u}" for u in upstream]
    return steps


def sinks(steps: dict[str, list[str]]) -> list[str]:
    used = {dep for deps in steps.values() for dep in deps}
    return [name for name in steps if name not in used]


def plain_jobs(batch: BatchClient, steps: dict[str, list[str]]) -> float:
    definition = batch.register_job_definition(
        jobDefinitionName="bench-true",
        type="container",
        containerProperties={
            "image": "local",
            "command": ["true"],
            "resourceRequirements": [{"type": "VCPU", "value": "1"}, {"type": "MEMORY", "value": "64"}],
        },
    )["jobDefinitionArn"]
    started = time.perf_counter()
    ids: dict[str, str] = {}
    for name, deps in steps.items():
        ids[name] = batch.submit_job(
            jobName=f"plain-{name}",
            jobQueue="default",
            jobDefinition=definition,
            dependsOn=[{"jobId": ids[d]} for d in deps],
        )["jobId"]
    # Every job has a path to a sink, and a job starts only after its dependencies succeed.
    waiting = [ids[name] for name in sinks(steps)]
    deadline = time.monotonic() + 600
    while waiting and time.monotonic() < deadline:
        left = []
        for start in range(0, len(waiting), 100):
            for job in batch.describe_jobs(jobs=waiting[start : start + 100])["jobs"]:
                if job["status"] == "FAILED":
                    raise RuntimeError(f"job {job['jobId']} failed: {job.get('statusReason')}")
                if job["status"] != "SUCCEEDED":
                    left.append(job["jobId"])
        waiting = left
        if waiting:
            time.sleep(0.05)
    if waiting:
        raise TimeoutError("plain jobs did not finish")
    return time.perf_counter() - started


def workflow_run(url: str, steps: dict[str, list[str]]) -> float:
    document = {
        "name": "bench-1000",
        "defaults": {"memory": 64},
        "steps": {name: {"command": ["true"], "dependsOn": deps} for name, deps in steps.items()},
    }
    with httpx.Client(base_url=url, timeout=120) as client:
        started = time.perf_counter()
        response = client.post("/api/workflows/runs", json={"document": document})
        response.raise_for_status()
        run_id = response.json()["runId"]
        deadline = time.monotonic() + 600
        run: dict[str, Any] = {}
        while time.monotonic() < deadline:
            run = client.get(f"/api/workflows/runs/{run_id}", params={"steps": "false"}).json()
            if run["status"] != "RUNNING":
                break
            time.sleep(0.05)
        elapsed = time.perf_counter() - started
    if run.get("status") != "SUCCEEDED":
        raise RuntimeError(f"the run ended {run.get('status')}: {json.dumps(run.get('statusReason'))}")
    return elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--layers", type=int, default=20)
    parser.add_argument("--width", type=int, default=50)
    parser.add_argument("--max-vcpus", type=int, default=8)
    args = parser.parse_args()
    steps = graph(args.layers, args.width)
    edges = sum(len(d) for d in steps.values())
    raw = raw_spawn_seconds(len(steps))
    with tempfile.TemporaryDirectory() as tmp:
        server = ServerProcess(Path(tmp), extra_args=("--max-vcpus", str(args.max_vcpus))).start()
        try:
            batch = server.batch()
            plain = plain_jobs(batch, steps)
            flow = workflow_run(server.url, steps)
        finally:
            server.stop()
    print(
        f"graph: {len(steps)} steps running `true`, {edges} dependencies, {args.layers} layers, "
        f"maxvCpus {args.max_vcpus}"
    )
    print(f"baseline: {len(steps)} x subprocess.Popen(['true']).wait():    {raw:6.2f} s")
    print(f"plain jobs with dependsOn (boto3 SubmitJob per step): {plain:6.2f} s")
    print(f"workflow run (one StartWorkflowRun call):            {flow:6.2f} s")
    print(f"workflow / plain jobs:                               {flow / plain:6.2f}x")


if __name__ == "__main__":
    main()
