"""Container start overhead: an array job of N ``true`` children per container runtime, beside host processes.

Each runtime gets its own ``openbatch server`` (SQLite, the supervisor, ``--container-runtime``) in the same run,
with a busybox image built here from Debian's ``busybox-static`` (no registry). The figure is the array's
children per second, SubmitJob to the parent's SUCCEEDED, and its ratio to host processes (``none``); beside it
the CPU time the server, its supervisor and the jobs spent per child, which a host shared with other work
disturbs less than the rate, and the whole host's busy CPU time per child (``/proc/stat``: the kernel's own
threads too, and whatever else runs here).

Before the servers, bare launches without OpenBatch: ``true`` and the same ``true`` in a bubblewrap sandbox, with
the CPU time each costs. This process reaps them as a subreaper meanwhile: bubblewrap leaves its sandbox's first
process to be reaped by someone else, and its CPU time (most of the sandbox's) would go uncounted. What the
sandbox costs beyond ``true`` bounds bwrap jobs: host processes' CPU per job / (that + the sandbox's extra).

Usage: ``python bench/containers.py [--size 1000] [--podman-size N] [--max-vcpus 32] [--runtimes none,bwrap,podman]``
"""

from __future__ import annotations

import argparse
import ctypes
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import TYPE_CHECKING

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.compute import compute_resources
from tests.support import ServerProcess

from openbatch.containers import runtimes

if TYPE_CHECKING:
    from mypy_boto3_batch import BatchClient


def busybox_rootfs(root: Path) -> Path:
    busybox = shutil.which("busybox") or "/bin/busybox"
    (root / "bin").mkdir(parents=True)
    shutil.copy2(busybox, root / "bin" / "busybox")
    for applet in subprocess.run([busybox, "--list"], capture_output=True, text=True, check=True).stdout.split():
        if applet != "busybox":
            (root / "bin" / applet).symlink_to("busybox")
    for directory in ("etc", "proc", "dev", "sys", "tmp"):
        (root / directory).mkdir()
    (root / "etc" / "os-release").write_text("ID=bench\n")
    return root


_PR_SET_CHILD_SUBREAPER = 36


def children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def raw_rate(argv: list[str], n: int = 300, in_flight: int = 8) -> tuple[float, float]:
    """Processes per second started and reaped with ``in_flight`` at once, without any server, and the CPU
    milliseconds each cost with all it started (call it while no other child of this process runs)."""
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(_PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)
    try:
        running: set[subprocess.Popen[bytes]] = set()
        started = 0
        cpu = children_cpu()
        start = time.perf_counter()
        while started < n or running:
            while started < n and len(running) < in_flight:
                running.add(subprocess.Popen(argv))
                started += 1
            pid, status = os.wait()  # the orphans handed to this subreaper too
            for proc in [proc for proc in running if proc.pid == pid]:
                proc.returncode = os.waitstatus_to_exitcode(status)
                running.discard(proc)
        elapsed = time.perf_counter() - start
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:  # the last sandboxes' orphans
            try:
                if os.waitpid(-1, os.WNOHANG)[0] == 0:
                    time.sleep(0.01)
            except ChildProcessError:
                break
        return n / elapsed, (children_cpu() - cpu) / n * 1000
    finally:
        libc.prctl(_PR_SET_CHILD_SUBREAPER, 0, 0, 0, 0)


def host_busy_seconds() -> float:
    """CPU time all of this host's CPUs have spent busy so far (``/proc/stat``)."""
    fields = [int(value) for value in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    idle = fields[3] + fields[4]  # idle, iowait
    return (sum(fields[:8]) - idle) / os.sysconf("SC_CLK_TCK")


def cpu_seconds(data_dir: Path, server_pid: int) -> float:
    """CPU time so far of the server and its supervisor, with the children each has reaped (the jobs)."""
    total = 0
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            cmdline = Path(f"/proc/{name}/cmdline").read_bytes()
            stat = Path(f"/proc/{name}/stat").read_text()
        except OSError:
            continue
        if int(name) == server_pid or (b"openbatch.supervisor" in cmdline and str(data_dir).encode() in cmdline):
            fields = stat.rsplit(")", 1)[1].split()
            total += sum(int(value) for value in fields[11:15])
    return total / os.sysconf("SC_CLK_TCK")


def wait_done(batch: BatchClient, job_id: str, timeout: float) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        status = batch.describe_jobs(jobs=[job_id])["jobs"][0]["status"]
        if status in ("SUCCEEDED", "FAILED"):
            return status
        time.sleep(0.05)
    raise TimeoutError(job_id)


def bench_runtime(runtime: str, size: int, max_vcpus: int, rootfs: Path, scratch: Path) -> tuple[float, float, float]:
    """Children per second, CPU milliseconds per child (server, supervisor and jobs together), and the whole
    host's busy CPU milliseconds per child."""
    data_dir = scratch / runtime
    data_dir.mkdir()
    if runtime != "none":
        subprocess.run(
            [sys.executable, "-m", "openbatch.cli.main", "image", "import", str(rootfs), "busybox"],
            env={**os.environ, "OPENBATCH_DATA_DIR": str(data_dir)},
            check=True,
            capture_output=True,
        )
    server = ServerProcess(
        data_dir, extra_args=("--container-runtime", runtime, "--max-vcpus", str(max_vcpus)), env={"OPENBATCH_GPUS": ""}
    ).start(timeout=60)
    try:
        batch = server.batch()
        batch.create_compute_environment(
            computeEnvironmentName="bench", type="MANAGED", computeResources=compute_resources("EC2", max_vcpus)
        )
        batch.create_job_queue(
            jobQueueName="bench", priority=1, computeEnvironmentOrder=[{"order": 1, "computeEnvironment": "bench"}]
        )
        batch.register_job_definition(
            jobDefinitionName="true",
            type="container",
            containerProperties={
                "image": "busybox",
                "command": ["true"],
                "resourceRequirements": [{"type": "VCPU", "value": "1"}, {"type": "MEMORY", "value": "64"}],
            },
        )
        assert server.process is not None
        cpu_before = cpu_seconds(data_dir, server.process.pid)
        busy_before = host_busy_seconds()
        start = time.perf_counter()
        job_id = batch.submit_job(
            jobName="array", jobQueue="bench", jobDefinition="true", arrayProperties={"size": size}
        )["jobId"]
        status = wait_done(batch, job_id, timeout=3600)
        elapsed = time.perf_counter() - start
        cpu = (cpu_seconds(data_dir, server.process.pid) - cpu_before) / size * 1000
        busy = (host_busy_seconds() - busy_before) / size * 1000
        if status != "SUCCEEDED":
            failed = batch.list_jobs(arrayJobId=job_id, jobStatus="FAILED")["jobSummaryList"]
            details = batch.describe_jobs(jobs=[j["jobId"] for j in failed[:3]])["jobs"] if failed else []
            reasons = [(j.get("statusReason"), j.get("container", {}).get("reason")) for j in details]
            logs = server.logs()
            for job in details:
                stream = job.get("container", {}).get("logStreamName")
                if stream:
                    events = logs.get_log_events(logGroupName="/aws/batch/job", logStreamName=stream)["events"]
                    reasons.append(("output", " | ".join(e["message"] for e in events[-3:])))
            raise SystemExit(f"{runtime}: the array ended {status}: {len(failed)} children failed, e.g. {reasons}")
        return size / elapsed, cpu, busy
    finally:
        server.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size", type=int, default=1000, help="children per array")
    parser.add_argument("--podman-size", type=int, default=None, help="children of podman's array (default --size)")
    parser.add_argument("--max-vcpus", type=int, default=32, help="children running at once")
    parser.add_argument("--runtimes", default="none,bwrap,podman")
    args = parser.parse_args()
    rates: dict[str, float] = {}
    cpus: dict[str, float] = {}
    wanted = args.runtimes.split(",")
    with tempfile.TemporaryDirectory(prefix="bench-containers-") as tmp:
        scratch = Path(tmp)
        rootfs = busybox_rootfs(scratch / "rootfs")
        bare: tuple[float, float, float, float] | None = None
        if "bwrap" in wanted and runtimes.probe("bwrap", scratch / "probe") is None:
            # What bubblewrap itself costs here, the same sandbox without OpenBatch, measured before any server
            # runs (its CPU time is read from this process's reaped children).
            sandbox = ["bwrap", "--ro-bind", str(rootfs), "/", "--proc", "/proc", "--dev", "/dev"]
            sandbox += ["--unshare-all", "--share-net", "--die-with-parent", "/bin/true"]
            bare = (*raw_rate([str(rootfs / "bin" / "true")]), *raw_rate(sandbox))
        for runtime in wanted:
            if runtime != "none":
                why = runtimes.probe(runtime, scratch / "probe")
                if why is not None:
                    print(f"{runtime:>7}: skipped ({why})")
                    continue
            size = (args.podman_size or args.size) if runtime == "podman" else args.size
            if runtime == "bwrap" and bare is not None:
                true_rate, true_cpu, bwrap_rate, bwrap_cpu = bare
                print(
                    f"         (bare processes, 8 at once: true {true_rate:.0f}/s, {true_cpu:.2f} ms CPU each;"
                    f" bwrap … true {bwrap_rate:.0f}/s, {bwrap_cpu:.2f} ms CPU each)",
                    flush=True,
                )
            rates[runtime], cpus[runtime], busy = bench_runtime(runtime, size, args.max_vcpus, rootfs, scratch)
            base = rates.get("none")
            ratio = f"  {rates[runtime] / base:6.1%} of host processes" if base else ""
            cpu = f"; {cpus[runtime]:.1f} ms CPU per job" + (
                f" ({cpus['none'] / cpus[runtime]:.1%} of host processes' jobs per CPU second)"
                if "none" in cpus
                else ""
            )
            print(
                f"{runtime:>7}: {size} children in an array, {rates[runtime]:8.1f} jobs/s{ratio}{cpu};"
                f" host-wide {busy:.1f} ms busy per job",
                flush=True,
            )
            if runtime == "bwrap" and bare is not None and "none" in cpus:
                extra = bare[3] - bare[1]
                print(
                    f"         (the sandbox's own {extra:.2f} ms beyond true bounds bwrap jobs here at"
                    f" {cpus['none'] / (cpus['none'] + extra):.1%} of host processes' jobs per CPU second)",
                    flush=True,
                )
    print(f"load average at the end: {' '.join(Path('/proc/loadavg').read_text().split()[:3])}")


if __name__ == "__main__":
    main()
