"""Scheduler cost per decision against the number of finished jobs in the store.

For each history size (default 10,000 and 1,000,000 finished jobs, written
straight into a fresh SQLite store), a real server runtime (store, scheduler,
local executor) runs an array of ``--array`` children running ``true``, and
the scheduler's own time per placement decision is printed (evaluate and
dispatch), beside the time spent starting processes and writing the store.
The runs share this process, so their ratio is the figure that matters; list
the smallest history again at the end to see the run-to-run noise.

Usage: ``python bench/decision_time.py [--history 10000 1000000 10000] [--array 2000]``
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from openbatch.config import Settings
from openbatch.runtime import Runtime
from openbatch.scheduler.engine import EngineStats
from openbatch.service import request_models as s
from openbatch.store.base import JobRecord
from openbatch.store.sql import SqlStore

BATCH = 50_000


def fill_history(url: str, finished: int) -> None:
    """Finished array children (what a long-lived deployment accumulates), bulk-inserted."""
    store = SqlStore(url)
    store.migrate()
    now = int(time.time() * 1000) - 86_400_000
    written = 0
    while written < finished:
        parent = str(uuid.uuid4())
        count = min(BATCH, finished - written)
        store.insert_jobs(
            JobRecord(
                id=f"{parent}:{i}",
                parent_id=parent,
                array_index=i,
                queue="default",
                status="SUCCEEDED",
                job_name="history",
                share_identifier=None,
                created_at=now + written + i,
                body={"status_reason": "Essential container in task exited", "attempts": [], "deps": []},
            )
            for i in range(count)
        )
        written += count
    store.close()


async def run_array(data_dir: Path, size: int) -> tuple[EngineStats, float]:
    runtime = Runtime(Settings(data_dir=data_dir, default_max_vcpus=64))
    await runtime.start()
    try:
        ctx, caller = runtime.ctx, runtime.caller
        from openbatch.service import job_definitions

        job_definitions.register(
            ctx,
            caller,
            s.RegisterJobDefinition.model_validate(
                {
                    "jobDefinitionName": "true",
                    "type": "container",
                    "containerProperties": {
                        "image": "none",
                        "command": ["true"],
                        "resourceRequirements": [{"type": "VCPU", "value": "1"}],
                    },
                }
            ),
        )
        # A fresh runtime: its engine's counters cover this array only.
        engine = runtime.jobs.engine
        started = time.perf_counter()
        request = s.SubmitJob.model_validate(
            {"jobName": "bench", "jobQueue": "default", "jobDefinition": "true", "arrayProperties": {"size": size}}
        )
        parent = (await runtime.jobs.op_SubmitJob(caller, request))["jobId"]
        while True:
            job = runtime.jobs.get_jobs([parent])[0]
            if job.status.value in ("SUCCEEDED", "FAILED"):
                break
            await asyncio.sleep(0.01)
        return dataclasses.replace(engine.stats), time.perf_counter() - started
    finally:
        await runtime.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--history", type=int, nargs="+", default=[10_000, 1_000_000, 10_000])
    parser.add_argument("--array", type=int, default=2_000)
    parser.add_argument("--fill", nargs=2, metavar=("URL", "COUNT"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.fill:
        fill_history(args.fill[0], int(args.fill[1]))
        return
    results = []
    for finished in args.history:
        with tempfile.TemporaryDirectory() as tmp:
            data = Path(tmp)
            started = time.perf_counter()
            # In a child process, so this one's memory (and so its fork cost) is not inflated.
            url = f"sqlite:///{data / 'openbatch.db'}"
            subprocess.run([sys.executable, __file__, "--fill", url, str(finished)], check=True)
            print(f"{finished:>10,} finished jobs stored in {time.perf_counter() - started:.1f} s")
            stats, wall = asyncio.run(run_array(data, args.array))
            per = 1e6 / max(stats.dispatched, 1)
            decision = stats.decision_seconds * per
            results.append(decision)
            print(
                f"{'':>10}  {stats.dispatched:,} decisions in {stats.cycles:,} cycles: "
                f"{decision:.0f} µs scheduling logic per decision; with process start "
                f"{stats.launch_seconds * per:.0f} µs and store writes {stats.flush_seconds * per:.0f} µs; "
                f"array of {args.array:,} done in {wall:.2f} s"
            )
    if len(results) > 1:
        largest = args.history.index(max(args.history))
        smallest = args.history.index(min(args.history))
        ratio = results[largest] / results[smallest]
        print(f"scheduling logic per decision, largest history / smallest: {ratio:.2f}x")


if __name__ == "__main__":
    main()
