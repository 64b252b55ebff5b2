"""Trivial-job throughput on a Ray cluster: OpenBatch jobs beside plain Ray tasks, in one run.

Starts a Ray cluster on this machine (a head with no CPUs on 127.0.0.2 and two workers with
``--cpus`` logical CPUs each on 127.0.0.3 and .4, see ``tests/ray_support.py``) and measures:

* plain Ray: N tasks (``num_cpus=1``), each running ``true`` with ``subprocess.run``, submitted
  from a driver at once, until the last result: the baseline;
* OpenBatch: an array job of N children running ``true`` (1 vCPU, 16 MiB each) on the ``default``
  compute environment bound to the cluster (``--ray-address``), from SubmitJob to the parent's
  ``stoppedAt`` (its last child's end).

Plain Ray runs two rounds before each OpenBatch run and two after the last; the ratio is the
mean OpenBatch rate over the mean plain Ray rate. Beside them: CPU per job by process (the
server, the dispatcher actor, Ray's workers and services) and for the whole machine, with plain
Ray's whole-machine CPU per task, and what the dispatcher counted (attempts per Ray task and per
slot call). The rate of either is set by CPU time per job on a small machine.

Usage: ``python bench/ray_throughput.py [--jobs 1000] [--cpus 4] [--rounds 2]``
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.ray_support import LocalRayCluster, RayNode, dispatcher_stats
from tests.support import ServerProcess

from bench.harness import Api, true_definition, wait_finished

RAY_DRIVER = """
import subprocess, sys, time
import ray

def machine_cpu():
    fields = [int(value) for value in open("/proc/stat").readline().split()[1:9]]
    return (sum(fields) - fields[3] - fields[4]) / TICK

TICK = __import__("os").sysconf("SC_CLK_TCK")
ray.init(address=sys.argv[1], _node_ip_address="127.0.0.2", log_to_driver=False, configure_logging=False)

@ray.remote(num_cpus=1, max_retries=0)
def run():
    return subprocess.run(["true"]).returncode

ray.get([run.remote() for _ in range(20)])  # workers started, as the OpenBatch run finds them
for _ in range(int(sys.argv[3])):
    busy = machine_cpu()
    start = time.perf_counter()
    codes = ray.get([run.remote() for _ in range(int(sys.argv[2]))])
    elapsed = time.perf_counter() - start
    assert codes == [0] * len(codes)
    print(f"{int(sys.argv[2]) / elapsed:.1f} {(machine_cpu() - busy) * 1000 / int(sys.argv[2]):.3f}")
"""


SETTLE_SECONDS = 3.0
"""A pause before each side's turn: the nodes end the other driver's idle Ray workers (beyond one per CPU)
then, rather than during the measurement."""


def plain_ray_rate(address: str, jobs: int, rounds: int) -> list[tuple[float, float]]:
    """(tasks per second, machine CPU ms per task) of each round, in a driver process of its own (as the
    server is one)."""
    out = subprocess.run(
        [sys.executable, "-c", RAY_DRIVER, address, str(jobs), str(rounds)],
        capture_output=True,
        text=True,
        check=True,
        timeout=600,
        env={"RAY_USAGE_STATS_ENABLED": "0", "PATH": "/usr/bin:/bin"},
    )
    return [(float(rate), float(cpu)) for rate, cpu in (line.split() for line in out.stdout.splitlines())]


_TICK = os.sysconf("SC_CLK_TCK")


def _role(pid: str, server: int) -> str | None:
    """Which part of the run a process is: the server, Ray's own services, the dispatcher, Ray workers."""
    if int(pid) == server:
        return "server"
    try:
        command = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return None
    if "Dispatcher" in command:
        return "dispatcher actor"
    if command.startswith("ray::") or "default_worker.py" in command:
        return "Ray workers"
    if "raylet" in command or "gcs_server" in command or "ray/" in command or "ray " in command:
        return "Ray services (raylet, GCS, agents)"
    return None


def cpu_by_role(server: int) -> dict[str, float]:
    """CPU seconds so far of every process of the run, by role; a worker's waited-for children included."""
    totals: dict[str, float] = {}
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        role = _role(pid, server)
        if role is None:
            continue
        try:
            data = Path(f"/proc/{pid}/stat").read_bytes()
        except OSError:
            continue
        fields = data[data.rfind(b")") + 2 :].split()
        own = int(fields[11]) + int(fields[12])  # utime, stime
        children = int(fields[13]) + int(fields[14])  # cutime, cstime: the jobs' processes, once waited for
        if role == "Ray workers":
            totals["Ray workers: jobs' processes"] = totals.get("Ray workers: jobs' processes", 0.0) + children / _TICK
            children = 0
        totals[role] = totals.get(role, 0.0) + (own + children) / _TICK
    return totals


def machine_cpu() -> float:
    """CPU seconds the whole machine has spent busy (all cores, from /proc/stat), so far."""
    fields = Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]
    ticks = [int(value) for value in fields]
    idle = ticks[3] + ticks[4]  # idle, iowait
    return (sum(ticks[:8]) - idle) / _TICK


def warm_up(server: ServerProcess, cpus: int) -> None:
    """A Ray worker for every CPU, as the baseline's driver starts its own (a Ray worker serves one driver's
    job and a node keeps few idle ones, so each plain Ray round replaces the dispatcher's workers): as many
    0.3 s jobs as there are CPUs, then 20 trivial ones."""
    api = Api(server.url)
    try:
        name = true_definition(api, f"sleep-{time.monotonic_ns()}", command=("sleep", "0.3"))
        job_id = api.call(
            "SubmitJob", jobName="warm", jobQueue="default", jobDefinition=name, arrayProperties={"size": cpus}
        )["jobId"]
        wait_finished(api, [job_id])
    finally:
        api.close()
    openbatch_rate(server, 20)


def openbatch_rate(server: ServerProcess, jobs: int) -> float:
    """Array children per second, from SubmitJob to the parent's ``stoppedAt`` (set as its last child ends)."""
    api = Api(server.url)
    try:
        name = true_definition(api, f"true-{time.monotonic_ns()}")
        start = time.time()
        job_id = api.call(
            "SubmitJob", jobName="bench", jobQueue="default", jobDefinition=name, arrayProperties={"size": max(jobs, 2)}
        )["jobId"]
        [job] = wait_finished(api, [job_id])
    finally:
        api.close()
    assert job["status"] == "SUCCEEDED"  # wait_finished raises on a failed job
    return jobs / (float(job["stoppedAt"]) / 1000 - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--jobs", type=int, default=1000, help="tasks and array children per measurement")
    parser.add_argument("--cpus", type=int, default=4, help="logical CPUs of each of the two worker nodes")
    parser.add_argument("--rounds", type=int, default=2, help="OpenBatch runs, each after two plain Ray rounds")
    args = parser.parse_args()

    started = time.perf_counter()
    cluster = LocalRayCluster(
        workers=[
            RayNode("127.0.0.3", cpus=args.cpus, memory_mib=2048),
            RayNode("127.0.0.4", cpus=args.cpus, memory_mib=2048),
        ]
    ).start()
    up = time.perf_counter() - started
    print(
        f"Ray cluster {cluster.address}: head + 2 workers x {args.cpus} CPUs, up in {up:.1f}s "
        f"(load average {os.getloadavg()[0]:.1f})"
    )
    plain: list[tuple[float, float]] = []
    ours: list[float] = []
    ours_cpu: list[dict[str, float]] = []
    cpu_before: dict[str, float] = {}
    cpu_after: dict[str, float] = {}
    try:
        with tempfile.TemporaryDirectory() as data:
            server = ServerProcess(
                Path(data),
                extra_args=("--ray-address", cluster.address, "--max-vcpus", str(2 * args.cpus)),
                env={"RAY_USAGE_STATS_ENABLED": "0"},
            ).start(timeout=180)
            try:
                assert server.process is not None
                for _round in range(args.rounds):
                    time.sleep(SETTLE_SECONDS)
                    plain += plain_ray_rate(cluster.address, args.jobs, 2)
                    time.sleep(SETTLE_SECONDS)
                    warm_up(server, 2 * args.cpus)
                    before = cpu_by_role(server.process.pid)
                    before["machine, all processes"] = machine_cpu()
                    ours.append(openbatch_rate(server, args.jobs))
                    after = cpu_by_role(server.process.pid)
                    after["machine, all processes"] = machine_cpu()
                    ours_cpu.append(
                        {role: (used - before.get(role, used)) * 1000 / args.jobs for role, used in after.items()}
                    )
                    for role, used in after.items():
                        cpu_after[role] = cpu_after.get(role, 0.0) + used
                        cpu_before[role] = cpu_before.get(role, 0.0) + before.get(role, used)
                counts = dispatcher_stats(cluster.address)
                time.sleep(SETTLE_SECONDS)
                plain += plain_ray_rate(cluster.address, args.jobs, 2)
            finally:
                server.stop()
    finally:
        cluster.stop()
    baseline = statistics.mean(rate for rate, _cpu in plain)
    measured = args.jobs * len(ours)
    print(
        f"plain Ray tasks running `true`:     {baseline:8.1f} /s  (mean of {len(plain)} rounds: "
        f"{', '.join(f'{rate:.0f}' for rate, _cpu in plain)})"
    )
    rounds = ", ".join(
        f"{rate:.0f} ({cpu['machine, all processes']:.2f} ms, server {cpu.get('server', 0.0):.2f})"
        for rate, cpu in zip(ours, ours_cpu, strict=True)
    )
    print(
        f"OpenBatch array of {args.jobs} on Ray:     {statistics.mean(ours):8.1f} jobs/s  "
        f"(mean of {len(ours)} rounds: {rounds})"
    )
    for number, cpu in enumerate(ours_cpu, 1):
        print(f"round {number}: " + ", ".join(f"{role} {ms:.2f}" for role, ms in sorted(cpu.items())))
    print(f"plain Ray machine CPU per task by round: {', '.join(f'{cpu:.2f} ms' for _rate, cpu in plain)}")
    print(f"OpenBatch / plain Ray:              {statistics.mean(ours) / baseline:8.1%}  (target >= 70%)")
    print(f"load average (1 min) at the end:    {os.getloadavg()[0]:8.1f}")
    print(
        f"dispatcher, since it started (warm-ups included): {counts['handed']} attempts in "
        f"{counts['slots']} Ray tasks and {counts['calls']} slot calls; {counts['reports']} reports, "
        f"{counts['returned']} attempts given back"
    )
    print("CPU per OpenBatch job, by process (Ray workers that ended during a round are not counted):")
    for role in sorted(cpu_after, key=lambda role: (role.startswith("machine"), role)):
        print(f"  {role:38s} {(cpu_after[role] - cpu_before[role]) * 1000 / measured:6.2f} ms")
    print(
        f"  {'plain Ray, machine, all processes':38s} {statistics.mean(cpu for _rate, cpu in plain):6.2f} ms per task"
    )


if __name__ == "__main__":
    main()
