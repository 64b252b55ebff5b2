"""Process spawn throughput: bare ``subprocess.Popen`` against :class:`LocalExecutor`.

Usage: ``python bench/spawn_rate.py --n 2000 [--concurrency K] [--log-dir DIR]``

Each executor attempt creates its log stream file, so the executor figure
also measures the file system under ``--log-dir`` (the system temporary
directory by default); point it at the server's real data volume, or at a
tmpfs to see the executor's own overhead.

The executor does strictly more per job than a bare spawn (two pipes, a
pidfd, a log stream file, a process group and its cleanup), so the ratio
shows what that bookkeeping costs on top of ``fork``/``exec`` itself.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from openbatch.executors.base import ExitInfo, LaunchSpec
from openbatch.executors.local import LocalExecutor
from openbatch.logs.store import LogStore


def serial_popen(n: int) -> float:
    start = time.perf_counter()
    for _ in range(n):
        subprocess.Popen(["true"]).wait()
    return n / (time.perf_counter() - start)


def concurrent_popen(n: int, concurrency: int) -> float:
    in_flight: dict[int, subprocess.Popen[bytes]] = {}
    launched = 0
    start = time.perf_counter()
    while launched < n or in_flight:
        while launched < n and len(in_flight) < concurrency:
            proc = subprocess.Popen(["true"])
            in_flight[proc.pid] = proc
            launched += 1
        pid, status = os.wait()
        proc = in_flight.pop(pid)
        proc.returncode = os.waitstatus_to_exitcode(status)
    return n / (time.perf_counter() - start)


async def executor_rate(n: int, concurrency: int, workdir: Path) -> float:
    store = LogStore(workdir / "logs")
    executor = LocalExecutor(store)
    loop = asyncio.get_running_loop()
    finished = loop.create_future()
    launched = 0
    done = 0
    failures: list[ExitInfo] = []

    def launch_next() -> None:
        nonlocal launched
        launched += 1
        spec = LaunchSpec(
            job_id=f"bench-{launched}",
            attempt=1,
            command=("true",),
            environment={"AWS_BATCH_JOB_ID": f"bench-{launched}"},
            working_dir=workdir / "work",
            log_stream=f"bench/default/{launched:08x}",
        )
        executor.launch(spec, on_exit)

    def on_exit(info: ExitInfo) -> None:
        nonlocal done
        done += 1
        if info.exit_code != 0:
            failures.append(info)
        if launched < n:
            launch_next()
        elif done == n:
            finished.set_result(None)

    start = time.perf_counter()
    for _ in range(min(concurrency, n)):
        launch_next()
    await finished
    elapsed = time.perf_counter() - start
    await executor.aclose()
    if failures:
        raise SystemExit(f"{len(failures)} attempts failed, first: {failures[0]}")
    return n / elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--n", type=int, default=2000, help="number of `true` processes per measurement")
    parser.add_argument("--concurrency", type=int, default=2 * (os.cpu_count() or 1), help="max in flight")
    parser.add_argument("--log-dir", type=Path, default=None, help="parent of the temporary log store")
    args = parser.parse_args()
    n: int = args.n
    concurrency: int = args.concurrency
    log_dir: Path | None = args.log_dir

    print(f"python {sys.version.split()[0]}, {os.cpu_count()} CPUs, n={n}, concurrency={concurrency}")
    serial = serial_popen(n)
    print(f"Popen(['true']).wait() serial          {serial:9.0f} jobs/s")
    raw = concurrent_popen(n, concurrency)
    print(f"Popen(['true']) x{concurrency:<3d} in flight        {raw:9.0f} jobs/s")
    with tempfile.TemporaryDirectory(prefix="openbatch-bench-", dir=log_dir) as tmp:
        rate = asyncio.run(executor_rate(n, concurrency, Path(tmp)))
    print(f"LocalExecutor x{concurrency:<3d} in flight          {rate:9.0f} jobs/s")
    print(f"ratio executor / serial Popen          {rate / serial:9.2f}")
    print(f"ratio executor / concurrent Popen      {rate / raw:9.2f}")


if __name__ == "__main__":
    main()
