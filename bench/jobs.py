"""End-to-end job throughput of a real ``openbatch server`` (SQLite + local executor).

Prints, in one run on this machine:

* the raw rate of spawning ``true`` from Python (``subprocess.Popen(...).wait()``), the baseline;
* an array job of N children running ``true``: SubmitJob to parent SUCCEEDED, in jobs/s;
* N separate SubmitJob calls (boto3, several client threads) running ``true``, in jobs/s;
* a chain of L jobs, each depending on the previous one: time per link.

Usage: ``python bench/jobs.py [--array 10000] [--jobs 2000] [--chain 100] [--max-vcpus 64]``
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from itertools import pairwise
from pathlib import Path
from typing import TYPE_CHECKING, Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.compute import compute_resources
from tests.support import ServerProcess, batch_client

if TYPE_CHECKING:
    from mypy_boto3_batch import BatchClient


def raw_spawn_rate(n: int) -> float:
    start = time.perf_counter()
    for _ in range(n):
        subprocess.Popen(["true"]).wait()
    return n / (time.perf_counter() - start)


def wait_done(batch: BatchClient, job_id: str, timeout: float = 600.0) -> dict[str, object]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        job = batch.describe_jobs(jobs=[job_id])["jobs"][0]
        if job["status"] in ("SUCCEEDED", "FAILED"):
            return dict(job)
        time.sleep(0.01)
    raise TimeoutError(job_id)


def setup(batch: BatchClient, max_vcpus: int) -> tuple[str, str]:
    batch.create_compute_environment(
        computeEnvironmentName="bench",
        type="MANAGED",
        computeResources=compute_resources("EC2", max_vcpus, minvCpus=0),
    )
    batch.create_job_queue(
        jobQueueName="bench", priority=100, computeEnvironmentOrder=[{"order": 1, "computeEnvironment": "bench"}]
    )
    batch.register_job_definition(
        jobDefinitionName="true",
        type="container",
        containerProperties={
            "image": "none",
            "command": ["true"],
            "resourceRequirements": [{"type": "VCPU", "value": "1"}, {"type": "MEMORY", "value": "16"}],
        },
    )
    return "bench", "true"


def bench_array(batch: BatchClient, queue: str, definition: str, size: int) -> float:
    start = time.perf_counter()
    parent = batch.submit_job(
        jobName="array", jobQueue=queue, jobDefinition=definition, arrayProperties={"size": size}
    )["jobId"]
    job = wait_done(batch, parent)
    elapsed = time.perf_counter() - start
    assert job["status"] == "SUCCEEDED", job
    return elapsed


def bench_submits(url: str, queue: str, definition: str, n: int, threads: int) -> float:
    clients = [batch_client(url) for _ in range(threads)]
    per_thread = n // threads

    def run(client: BatchClient) -> list[str]:
        return [
            client.submit_job(jobName="j", jobQueue=queue, jobDefinition=definition)["jobId"] for _ in range(per_thread)
        ]

    start = time.perf_counter()
    with ThreadPoolExecutor(threads) as pool:
        ids = [job_id for chunk in pool.map(run, clients) for job_id in chunk]
    submitted = time.perf_counter() - start
    wait_done(clients[0], ids[-1])
    # Server timestamps, so polling for 2,000 results does not count against the server.
    jobs = [j for i in range(0, len(ids), 100) for j in clients[0].describe_jobs(jobs=ids[i : i + 100])["jobs"]]
    while any(j["status"] not in ("SUCCEEDED", "FAILED") for j in jobs):
        time.sleep(0.1)
        jobs = [j for i in range(0, len(ids), 100) for j in clients[0].describe_jobs(jobs=ids[i : i + 100])["jobs"]]
    assert all(j["status"] == "SUCCEEDED" for j in jobs)
    elapsed = (max(j["stoppedAt"] for j in jobs) - min(j["createdAt"] for j in jobs)) / 1000
    print(f"  submit phase: {len(ids)} SubmitJob calls in {submitted:.2f} s ({len(ids) / submitted:,.0f} calls/s)")
    return elapsed


def bench_chain(batch: BatchClient, queue: str, definition: str, links: int) -> tuple[float, float]:
    ids: list[str] = []
    start = time.perf_counter()
    for _ in range(links):
        depends: list[Any] = [{"jobId": ids[-1]}] if ids else []
        ids.append(
            batch.submit_job(jobName="link", jobQueue=queue, jobDefinition=definition, dependsOn=depends)["jobId"]
        )
    wait_done(batch, ids[-1])
    wall = time.perf_counter() - start
    jobs = {j["jobId"]: j for i in range(0, links, 100) for j in batch.describe_jobs(jobs=ids[i : i + 100])["jobs"]}
    gaps = [jobs[b]["startedAt"] - jobs[a]["stoppedAt"] for a, b in pairwise(ids)]
    span = jobs[ids[-1]]["stoppedAt"] - jobs[ids[0]]["startedAt"]
    assert all(jobs[i]["status"] == "SUCCEEDED" for i in ids)
    print(
        f"  chain wall time incl. submits: {wall:.2f} s; dependency hand-off (stop→next start) "
        f"mean {sum(gaps) / len(gaps):.2f} ms, max {max(gaps)} ms"
    )
    return span / links, wall


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--array", type=int, default=10_000)
    parser.add_argument("--jobs", type=int, default=2_000)
    parser.add_argument("--chain", type=int, default=100)
    parser.add_argument("--threads", type=int, default=4)
    parser.add_argument("--max-vcpus", type=int, default=64)
    args = parser.parse_args()

    raw = raw_spawn_rate(2000)
    print(f"baseline: raw Popen(['true']).wait() from Python: {raw:,.0f} processes/s")
    with tempfile.TemporaryDirectory() as tmp:
        server = ServerProcess(Path(tmp) / "data").start()
        try:
            batch = server.batch()
            queue, definition = setup(batch, args.max_vcpus)
            elapsed = bench_array(batch, queue, definition, args.array)
            rate = args.array / elapsed
            print(
                f"array of {args.array:,} `true` children, SubmitJob → parent SUCCEEDED: {elapsed:.2f} s "
                f"= {rate:,.0f} jobs/s ({rate / raw:.0%} of raw spawn rate)"
            )
            elapsed = bench_submits(server.url, queue, definition, args.jobs, args.threads)
            rate = args.jobs / elapsed
            print(
                f"{args.jobs:,} separate SubmitJob `true` jobs ({args.threads} client threads), first submit → "
                f"last SUCCEEDED: {elapsed:.2f} s = {rate:,.0f} jobs/s ({rate / raw:.0%} of raw spawn rate)"
            )
            per_link, _wall = bench_chain(batch, queue, definition, args.chain)
            print(
                f"chain of {args.chain} dependent `true` jobs: {per_link:.2f} ms per link "
                "(first start → last stop / links)"
            )
        finally:
            server.stop()


if __name__ == "__main__":
    main()
