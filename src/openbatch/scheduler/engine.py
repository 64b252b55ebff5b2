"""The job engine: every unfinished job in memory, moved through its lifecycle by events.

Vocabulary and the cycle diagram are in ``scheduler/README.md``. In short:

* submit → ``admit()``: the job is already committed; its dependency edges are
  registered and it joins the *evaluation* list (a job that waits for nothing was made
  RUNNABLE before its commit, ``evaluate_before_commit``, and joins its queue).
* each *cycle* (run when woken, never by polling): evaluate → dispatch →
  time-limit actions → flush → launch what the flush made durable.
* a process exit, a terminal state or a resource change wakes the loop.

All of it runs on the event loop thread, so no locks are needed. The store
is written at the end of each cycle in one transaction (*flush*); SubmitJob
commits its own rows before answering, so no accepted job is ever lost.

``JobEngine`` is assembled from one module per concern (see ``core.py``).
"""

from __future__ import annotations

import asyncio
import logging
import time

from openbatch.domain.states import TERMINAL
from openbatch.scheduler.attempts import TASK_FAILED_TO_START
from openbatch.scheduler.core import HOST_TERMINATED, SERVER_STOPPED, EngineStats, StatusChange
from openbatch.scheduler.multinode import MultiNodeMixin

__all__ = [
    "HOST_TERMINATED",
    "SERVER_STOPPED",
    "TASK_FAILED_TO_START",
    "EngineStats",
    "JobEngine",
    "StatusChange",
]

logger = logging.getLogger(__name__)


class JobEngine(MultiNodeMixin):
    # --- lifecycle -----------------------------------------------------------------

    def start(self) -> None:
        self.registry.refresh()
        self.recover()
        self._task = asyncio.get_running_loop().create_task(self._loop(), name="openbatch-scheduler")
        self.wake()

    async def stop(self) -> None:
        """Stop scheduling, end running attempts as a lost host (retried under their strategy), persist."""
        self._stopping = True
        self._wake.set()
        if self._task is not None:
            await self._task
        # Attempts cannot outlive the server (their output pipes end with it): stopping them
        # here records why, where a crash leaves that to the next start-up's recovery.
        await self.executor.aclose()
        self.flush()
        self._janitor.shutdown(wait=True)

    def resources_changed(self) -> None:
        """Queues, compute environments or policies changed: the next decision uses the new ones."""
        before = set(self.registry.queues)
        self.registry.refresh()
        self._sync_queue_kinds()
        gone = before - set(self.registry.queues)
        if gone:
            # AWS: "all jobs in the queue are eventually terminated when you delete a job queue".
            for job in [j for j in self.jobs.values() if j.spec.queue in gone and j.parent_id is None]:
                if job.status not in TERMINAL:
                    self.terminate(job, f"Job queue {job.spec.queue} was deleted")
        self.wake()

    async def _loop(self) -> None:
        while not self._stopping:
            await self._wake.wait()
            self._wake.clear()
            try:
                self.run_cycle()
            except Exception:
                logger.exception("scheduling cycle failed; retrying on the next wake-up")
                await asyncio.sleep(0.5)
                self._wake.set()
            # Yield so exits and requests queued during the cycle are handled
            # before the next one; wake-ups in between coalesce into one cycle.
            await asyncio.sleep(0)

    def run_cycle(self) -> None:
        """One scheduling cycle: 1. evaluate new jobs, 2. dispatch, 3. flush."""
        started = time.perf_counter()
        now = self.clock.now_ms()
        self._evaluate(now)
        self._dispatch(now)
        flushing = time.perf_counter()
        launched_before = self.stats.launch_seconds
        self.flush()  # also starts the attempts placed by this cycle, once their placement is committed
        launching = self.stats.launch_seconds - launched_before
        self.stats.flush_seconds += time.perf_counter() - flushing - launching
        self.stats.cycles += 1
        self.stats.cycle_seconds += time.perf_counter() - started
