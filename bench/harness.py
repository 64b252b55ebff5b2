"""What every benchmark of the runner shares: fresh stores, real server processes, clients, measurements."""

from __future__ import annotations

import asyncio
import os
import random
import signal
import statistics
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import httpx
from tests.compute import compute_resources
from tests.support import DEFAULT_PG_URL, ServerProcess

from openbatch.cli.background import free_port

ROOT = Path(__file__).resolve().parents[1]
T = TypeVar("T")
PG_URL = os.environ.get("OPENBATCH_TEST_PG_URL", DEFAULT_PG_URL)


@dataclass
class Row:
    """One line of the table: a figure beside its baseline measured in the same run."""

    store: str
    name: str
    value: float
    unit: str
    baseline: float | None = None
    baseline_name: str = ""
    higher_is_better: bool = True
    target: str = ""
    met: bool | None = None
    note: str = ""
    load: float = field(default_factory=lambda: os.getloadavg()[0])

    @property
    def ratio(self) -> float | None:
        if self.baseline is None or self.baseline == 0:
            return None
        return self.value / self.baseline


@contextmanager
def fresh_store(kind: str) -> Iterator[str | None]:
    """A database URL for a store nobody else uses (``None``: the server's own SQLite file), dropped after."""
    if kind == "sqlite":
        yield None
        return
    import psycopg

    name = f"bench_{uuid.uuid4().hex[:12]}"
    admin = PG_URL.rsplit("/", 1)[0] + "/postgres"
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    try:
        yield PG_URL.rsplit("/", 1)[0] + "/" + name
    finally:
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def start_server(data_dir: Path, database_url: str | None, max_vcpus: int = 64) -> ServerProcess:
    return ServerProcess(data_dir, database_url=database_url, extra_args=("--max-vcpus", str(max_vcpus))).start(
        timeout=300
    )


def cpu_seconds(pid: int) -> float:
    """User + system CPU time the process has used so far (a figure the machine's other load hardly moves)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"no VmRSS for {pid}")


def server_pid(server: ServerProcess) -> int:
    assert server.process is not None
    return server.process.pid


class Api:
    """Unsigned AWS Batch REST-JSON calls over one keep-alive connection (the server runs without auth)."""

    def __init__(self, url: str) -> None:
        self.client = httpx.Client(base_url=url, timeout=600)

    def call(self, operation: str, **body: Any) -> dict[str, Any]:
        response = self.client.post(f"/v1/{operation.lower()}", json=body)
        if response.status_code != 200:
            raise RuntimeError(f"{operation}: {response.status_code} {response.text}")
        result: dict[str, Any] = response.json()
        return result

    def timed(self, operation: str, **body: Any) -> tuple[float, dict[str, Any]]:
        started = time.perf_counter()
        result = self.call(operation, **body)
        return (time.perf_counter() - started) * 1000, result

    def close(self) -> None:
        self.client.close()


def make_queue(api: Api, name: str, max_vcpus: int, *, enabled: bool = True) -> str:
    api.call(
        "CreateComputeEnvironment",
        computeEnvironmentName=name,
        type="MANAGED",
        state="ENABLED" if enabled else "DISABLED",
        computeResources=dict(compute_resources("EC2", max_vcpus, minvCpus=0)),
    )
    api.call(
        "CreateJobQueue",
        jobQueueName=name,
        priority=10,
        computeEnvironmentOrder=[{"order": 1, "computeEnvironment": name}],
    )
    return name


def true_definition(api: Api, name: str = "true", command: Sequence[str] = ("true",)) -> str:
    """A 1-vCPU, 16 MiB job definition running ``command`` (``true`` unless told otherwise)."""
    api.call(
        "RegisterJobDefinition",
        jobDefinitionName=name,
        type="container",
        containerProperties={
            "image": "none",
            "command": list(command),
            "resourceRequirements": [{"type": "VCPU", "value": "1"}, {"type": "MEMORY", "value": "16"}],
        },
    )
    return name


def wait_finished(api: Api, ids: Sequence[str], timeout: float = 600) -> list[dict[str, Any]]:
    """Poll DescribeJobs (100 at a time) until every job is SUCCEEDED or FAILED; return their descriptions."""
    deadline = time.monotonic() + timeout
    done: dict[str, dict[str, Any]] = {}
    waiting = list(ids)
    while waiting:
        if time.monotonic() > deadline:
            raise TimeoutError(f"{len(waiting)} jobs not finished, e.g. {waiting[0]}")
        left = []
        for start in range(0, len(waiting), 100):
            for job in api.call("DescribeJobs", jobs=waiting[start : start + 100])["jobs"]:
                if job["status"] in ("SUCCEEDED", "FAILED"):
                    done[job["jobId"]] = job
                else:
                    left.append(job["jobId"])
        waiting = left
        if waiting:
            time.sleep(0.05)
    failed = [j for j in done.values() if j["status"] != "SUCCEEDED"]
    if failed:
        raise RuntimeError(f"{len(failed)} jobs failed, e.g. {failed[0].get('statusReason')}")
    return [done[i] for i in ids]


def percentile(samples: Sequence[float], q: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, round(q / 100 * (len(ordered) - 1)))]


def median(samples: Sequence[float]) -> float:
    return statistics.median(samples)


def serial_spawn(n: int) -> list[float]:
    """Per-process seconds of ``Popen(['true']).wait()`` from Python, one after the other: the floor."""
    times = []
    for _ in range(n):
        started = time.perf_counter()
        subprocess.Popen(["true"]).wait()
        times.append(time.perf_counter() - started)
    return times


@contextmanager
def null_server() -> Iterator[tuple[str, int]]:
    """The do-nothing Starlette/uvicorn endpoint (``bench/null_server.py``) on a free port."""
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "bench.null_server", str(port)], cwd=ROOT, start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                if httpx.get(f"{url}/health", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline or proc.poll() is not None:
                raise RuntimeError("the do-nothing endpoint did not start")
            time.sleep(0.05)
        yield url, proc.pid
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(10)


async def concurrent_posts(
    url: str, operation: str, bodies: Sequence[dict[str, Any]], in_flight: int
) -> tuple[float, list[dict[str, Any]]]:
    """POST every body with ``in_flight`` requests outstanding (asyncio + httpx); seconds taken and answers."""
    limits = httpx.Limits(max_connections=in_flight, max_keepalive_connections=in_flight)
    results: list[dict[str, Any]] = [{} for _ in bodies]
    queue = iter(enumerate(bodies))
    async with httpx.AsyncClient(base_url=url, timeout=600, limits=limits) as client:

        async def worker() -> None:
            for index, body in queue:
                try:
                    response = await client.post(f"/v1/{operation.lower()}", json=body)
                except httpx.TransportError:
                    # A connection the loaded machine dropped: sent once more (at worst one extra job).
                    response = await client.post(f"/v1/{operation.lower()}", json=body)
                if response.status_code != 200:
                    raise RuntimeError(f"{operation}: {response.status_code} {response.text}")
                results[index] = response.json()

        started = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(in_flight)))
        return time.perf_counter() - started, results


def sample_ids(ids: Sequence[T], k: int, seed: int) -> list[T]:
    return random.Random(seed).sample(list(ids), min(k, len(ids)))
