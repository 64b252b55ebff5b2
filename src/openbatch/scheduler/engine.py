"""The job engine: every unfinished job in memory, moved through its lifecycle by events.

Vocabulary and the cycle diagram are in ``scheduler/README.md``. In short:

* submit → ``admit()``: the job is already committed; its dependency edges are
  registered and it joins the *evaluation* list.
* each *cycle* (run when woken, never by polling): evaluate → dispatch →
  time-limit actions → flush.
* a process exit, a terminal state or a resource change wakes the loop.

All of it runs on the event loop thread, so no locks are needed. The store
is written at the end of each cycle in one transaction (*flush*); SubmitJob
commits its own rows before answering, so no accepted job is ever lost.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import socket
import time
import uuid
import zlib
from collections import defaultdict
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from functools import partial
from pathlib import Path

from openbatch.clock import Clock
from openbatch.domain import transitions as t
from openbatch.domain.job import STATUS_SUMMARY_KEYS, Attempt, Job, JobSpec
from openbatch.domain.resources import ComputeEnvironment, FairsharePolicy, JobQueue
from openbatch.domain.states import TERMINAL, JobStatus
from openbatch.executors.base import Executor, ExitInfo, Handle, LaunchSpec
from openbatch.scheduler.capacity import Capacity, Refusal
from openbatch.scheduler.fairshare import FairshareQueue
from openbatch.scheduler.queues import FifoQueue, RunnableQueue
from openbatch.scheduler.registry import Registry
from openbatch.store.base import Store
from openbatch.store.job_codec import from_record, to_record

logger = logging.getLogger(__name__)

S = JobStatus
TASK_FAILED_TO_START = "Task failed to start"
HOST_TERMINATED = f"Host EC2 (instance openbatch-{socket.gethostname()}) terminated."
_POSITION_LIMIT = 10_000
"""Queue positions are counted this far; a job further back is reported as behind 10,000+."""
SERVER_STOPPED = "The OpenBatch server stopped while this attempt was running"


@dataclass(slots=True)
class EngineStats:
    """Counters for benchmarks and metrics."""

    cycles: int = 0
    cycle_seconds: float = 0.0
    """Time spent in cycles (evaluate + dispatch + flush), excluding process exits."""
    dispatched: int = 0
    """Placement decisions that launched an attempt."""
    launch_seconds: float = 0.0
    """Part of ``cycle_seconds`` spent in the executor starting processes."""
    flush_seconds: float = 0.0
    """Part of ``cycle_seconds`` spent writing to the store."""

    @property
    def decision_seconds(self) -> float:
        """Scheduling logic alone: evaluate and dispatch, without process starts and store writes."""
        return self.cycle_seconds - self.launch_seconds - self.flush_seconds


class _Running:
    """Executor-side state of one attempt in STARTING/RUNNING."""

    __slots__ = ("gpu_ids", "handle", "stop_reason", "timed_out", "timer")

    def __init__(self, handle: Handle, gpu_ids: tuple[int, ...]) -> None:
        self.handle = handle
        self.gpu_ids = gpu_ids
        self.timer: asyncio.TimerHandle | None = None
        self.timed_out = False
        self.stop_reason: str | None = None


class JobEngine:
    def __init__(
        self,
        *,
        store: Store,
        clock: Clock,
        executor: Executor,
        registry: Registry,
        capacity: Capacity,
        work_dir: Path,
        kill_grace_seconds: float = 30.0,
    ) -> None:
        self.store = store
        self.clock = clock
        self.executor = executor
        self.registry = registry
        self.capacity = capacity
        self.work_dir = work_dir
        self._shards = [work_dir / f"{shard:02x}" for shard in range(256)]
        self.kill_grace_seconds = kill_grace_seconds
        self.jobs: dict[str, Job] = {}
        """Unfinished jobs, plus finished ones until their final state is flushed."""
        self.runnable: dict[str, RunnableQueue] = {}
        self._dependents: dict[str, list[str]] = defaultdict(list)
        self._unmet: dict[str, int] = {}
        self._dep_failed: set[str] = set()
        self._to_evaluate: list[Job] = []
        self._dirty: dict[str, Job] = {}
        self._running: dict[str, _Running] = {}
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._stopping = False
        self._janitor = ThreadPoolExecutor(1, thread_name_prefix="openbatch-janitor")
        self.blocked: dict[str, str] = {}
        """Per job queue: why its head could not be placed in the last cycle."""
        self._blocked_since: dict[str, tuple[str, int]] = {}
        self._timer: asyncio.TimerHandle | None = None
        self._timer_at = 0
        self.stats = EngineStats()

    # --- lifecycle -----------------------------------------------------------------

    def start(self) -> None:
        self.registry.refresh()
        self._recover()
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

    def wake(self) -> None:
        self._wake.set()

    def mark_dirty(self, job: Job) -> None:
        """Persist ``job`` at the next flush (for changes outside transitions, such as tags)."""
        self._dirty[job.id] = job

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
        self.flush()
        self.stats.flush_seconds += time.perf_counter() - flushing
        self.stats.cycles += 1
        self.stats.cycle_seconds += time.perf_counter() - started

    # --- admission and dependencies -------------------------------------------------

    def admit(self, jobs: Iterable[Job]) -> None:
        """Take newly committed jobs (parents before their children)."""
        batch = list(jobs)
        for job in batch:
            self.jobs[job.id] = job
        # One store query for every dependency that already left memory, not one per job:
        # 10,000 children depending on one finished job must not cost 10,000 queries.
        outside = {d for job in batch for d in job.deps if d not in self.jobs}
        finished = self._stored_statuses(outside)
        for job in batch:
            self._register_dependencies(job, finished)
            self._to_evaluate.append(job)
        self.wake()

    def _stored_statuses(self, ids: Iterable[str]) -> dict[str, JobStatus]:
        wanted = list(ids)
        statuses: dict[str, JobStatus] = {}
        for start in range(0, len(wanted), 500):
            statuses.update((r.id, S(r.status)) for r in self.store.get_jobs(wanted[start : start + 500]))
        return statuses

    def _register_dependencies(self, job: Job, finished: dict[str, JobStatus]) -> None:
        unmet = 0
        for dep_id in job.deps:
            dep = self.jobs.get(dep_id)
            # A dependency unknown to memory and store was validated at submit and is gone: met.
            status = dep.status if dep is not None else finished.get(dep_id, S.SUCCEEDED)
            if status is S.SUCCEEDED:
                continue
            if status is S.FAILED:
                self._dep_failed.add(job.id)
                continue
            self._dependents[dep_id].append(job.id)
            unmet += 1
        if unmet:
            self._unmet[job.id] = unmet

    def _evaluate(self, now: int) -> None:
        batch, self._to_evaluate = self._to_evaluate, []
        for job in batch:
            if job.status not in (S.SUBMITTED, S.PENDING):
                continue
            if job.is_array_parent:
                if job.status is S.SUBMITTED:
                    self._set(job, t.wait_for_dependencies)
                continue
            if job.id in self._dep_failed:
                self._finish(job, lambda j: t.fail(j, now, t.DEPENDENT_JOB_FAILED))
            elif self._unmet.get(job.id):
                if job.status is S.SUBMITTED:
                    self._set(job, t.wait_for_dependencies)
            else:
                self._release_pending(job, now)

    def _release_pending(self, job: Job, now: int) -> None:
        """All dependencies succeeded: run the job, or apply a cancel that was waiting for this."""
        if job.cancel_reason is not None:
            reason = job.cancel_reason
            self._finish(job, lambda j: t.cancel(j, now, reason))
            return
        self._set(job, lambda j: t.make_runnable(j, now))
        self._enqueue(job)

    def _on_terminal(self, job: Job) -> None:
        """Propagate a terminal state to dependents and the array parent, iteratively.

        A worklist instead of recursion: a SEQUENTIAL array of 10,000 children
        failing at child 0 cascades 10,000 levels deep.
        """
        work = [job]
        now = self.clock.now_ms()
        while work:
            done = work.pop()
            self._unmet.pop(done.id, None)
            self._dep_failed.discard(done.id)
            for dependent_id in self._dependents.pop(done.id, ()):
                dependent = self.jobs.get(dependent_id)
                if dependent is None or dependent.status in TERMINAL:
                    continue
                if done.status is S.FAILED:
                    # A job with an unfinished dependency is always SUBMITTED or PENDING.
                    self._set(dependent, lambda j: t.fail(j, now, t.DEPENDENT_JOB_FAILED))
                    work.append(dependent)
                    continue
                left = self._unmet.get(dependent_id, 1) - 1
                if left > 0:
                    self._unmet[dependent_id] = left
                    continue
                self._unmet.pop(dependent_id, None)
                if dependent.status is S.PENDING:
                    if dependent.cancel_reason is not None:
                        reason = dependent.cancel_reason
                        self._set(dependent, partial(t.cancel, now=now, reason=reason))
                        work.append(dependent)
                    else:
                        self._set(dependent, lambda j: t.make_runnable(j, now))
                        self._enqueue(dependent)
            parent = self.jobs.get(done.parent_id) if done.parent_id else None
            if parent is not None and parent.status not in TERMINAL and self._array_done(parent):
                self._close_array(parent, now)
                work.append(parent)

    # --- array parents --------------------------------------------------------------

    def _array_done(self, parent: Job) -> bool:
        summary = parent.status_summary or {}
        return summary.get("SUCCEEDED", 0) + summary.get("FAILED", 0) >= (parent.spec.array_size or 0)

    def _close_array(self, parent: Job, now: int) -> None:
        if parent.status is S.SUBMITTED:
            self._set(parent, t.wait_for_dependencies)
        summary = parent.status_summary or {}
        if summary.get("FAILED", 0):
            self._set(parent, lambda j: t.fail(j, now, t.ARRAY_CHILD_FAILED))
        else:
            self._set(parent, lambda j: t.succeed(j, now, None))
        parent.stopped_at = now

    def _count_child(self, child: Job, old: JobStatus | None) -> None:
        parent = self.jobs.get(child.parent_id) if child.parent_id else None
        if parent is None or parent.status_summary is None:
            return
        summary = parent.status_summary
        if old is not None:
            summary[old.value] -= 1
        summary[child.status.value] += 1
        parent.summary_updated_at = self.clock.now_ms()
        self._dirty[parent.id] = parent

    # --- state changes ----------------------------------------------------------------

    def _set(self, job: Job, change: Callable[[Job], JobStatus]) -> None:
        """Apply a transition and record its consequences (persistence, array summary)."""
        old = change(job)
        self._dirty[job.id] = job
        if job.parent_id is not None:
            self._count_child(job, old)

    def _finish(self, job: Job, change: Callable[[Job], JobStatus]) -> None:
        """A transition into a terminal state, with propagation."""
        self._set(job, change)
        self._on_terminal(job)

    def _enqueue(self, job: Job) -> None:
        """A job became RUNNABLE: queue it, and have its working directory made off the event loop
        (creating a directory costs more than starting a process on some file systems)."""
        self._queue_of(job).push(job)
        if not job.attempts:
            self._janitor.submit(_make_dirs, self.work_dir_of(job.id))

    def _queue_of(self, job: Job) -> RunnableQueue:
        queue = self.runnable.get(job.spec.queue)
        if queue is None:
            queue = self.runnable[job.spec.queue] = self._new_queue(job.spec.queue)
        return queue

    def _new_queue(self, name: str) -> RunnableQueue:
        fairshare = self._fairshare_policy(name)
        return FifoQueue() if fairshare is None else FairshareQueue(fairshare, self.clock)

    def _fairshare_policy(self, name: str) -> FairsharePolicy | None:
        queue = self.registry.queues.get(name)
        policy = self.registry.policy_of(queue) if queue is not None else None
        return policy.fairshare if policy is not None else None

    def _sync_queue_kinds(self) -> None:
        """Apply policy changes: new weights at once; a queue that gained or lost a policy is re-ordered."""
        for name, waiting in list(self.runnable.items()):
            fairshare = self._fairshare_policy(name)
            if isinstance(waiting, FairshareQueue) and fairshare is not None:
                waiting.set_policy(fairshare)
            elif isinstance(waiting, FairshareQueue) != (fairshare is not None):
                replacement = self._new_queue(name)
                for job in waiting:
                    replacement.push(job)
                self.runnable[name] = replacement

    def _release_share(self, job: Job) -> None:
        waiting = self.runnable.get(job.spec.queue)
        if isinstance(waiting, FairshareQueue):
            waiting.stopped(job)

    # --- dispatch -------------------------------------------------------------------

    def _dispatch(self, now: int) -> None:
        """Queues in priority order; each queue's heads tried on its compute environments in order."""
        registry = self.registry
        for queue in registry.queues_by_priority:
            waiting = self.runnable.get(queue.name)
            if not waiting:
                self.blocked.pop(queue.name, None)
                continue
            if not queue.enabled:
                self._block(queue, waiting, f"JobQueue {queue.name} is DISABLED", now)
                continue
            environments = [
                registry.compute_environments[n]
                for n in queue.compute_environments
                if n in registry.compute_environments
            ]
            while (job := waiting.peek()) is not None:
                if isinstance(waiting, FairshareQueue) and not self._reservation_allows(waiting, job, environments):
                    if self._start_from_reserve(waiting, environments, now):
                        continue
                    max_vcpus = sum(ce.max_vcpus for ce in environments if ce.enabled)
                    self._block(queue, waiting, waiting.reservation_reason(job, max_vcpus), now)
                    break
                ce_name, reason = self._fit(job, environments)
                if ce_name is not None:
                    waiting.pop()
                    self._start(waiting, job, ce_name, now)
                    continue
                # FIFO: the head of the queue blocks the jobs behind it (AWS semantics).
                if not self._block(queue, waiting, reason or f"JobQueue {queue.name} has no compute environment", now):
                    break
            else:
                self.blocked.pop(queue.name, None)

    def _start(self, waiting: RunnableQueue, job: Job, ce_name: str, now: int) -> None:
        self._blocked_since.pop(job.id, None)
        if isinstance(waiting, FairshareQueue):
            # Before the next peek: the next decision of this cycle must see these vCPUs in use.
            waiting.started(job)
        self._launch(job, ce_name, now)
        self.stats.dispatched += 1

    def _reservation_allows(self, waiting: FairshareQueue, job: Job, environments: list[ComputeEnvironment]) -> bool:
        enabled = [ce for ce in environments if ce.enabled]
        max_vcpus = sum(ce.max_vcpus for ce in enabled)
        free = sum(max(ce.max_vcpus - self.capacity.vcpus_used.get(ce.name, 0.0), 0.0) for ce in enabled)
        return waiting.admits(job, free, max_vcpus)

    def _start_from_reserve(self, waiting: FairshareQueue, environments: list[ComputeEnvironment], now: int) -> bool:
        """computeReservation: a share not yet using the queue may start a job in the reserved vCPUs."""
        other = waiting.peek_for_reserve()
        if other is None:
            return False
        ce_name, _reason = self._fit(other, environments)
        if ce_name is None:
            return False
        waiting.discard(other)
        self._start(waiting, other, ce_name, now)
        return True

    def _fit(self, job: Job, environments: list[ComputeEnvironment]) -> tuple[str | None, str | None]:
        """The first compute environment with room for ``job``, or why there is none."""
        refusals: list[Refusal] = []
        for ce in environments:
            refusal = self.capacity.refusal(job.spec.resources, ce)
            if refusal is None:
                return ce.name, None
            refusals.append(refusal)
        if not refusals:
            return None, None
        # Say "never fits" only if no compute environment could ever take the job.
        transient = [r for r in refusals if not r.permanent]
        return None, (transient[0] if transient else refusals[0]).reason

    def _block(self, queue: JobQueue, waiting: RunnableQueue, reason: str, now: int) -> bool:
        """Record why the head waits; apply ``jobStateTimeLimitActions``.

        Returns True if the head was cancelled by a time-limit action (the next
        head should be tried), False if the queue stays blocked.
        """
        job = waiting.peek()
        if job is None:
            return False
        self.blocked[queue.name] = reason
        self._note_reason(job, reason)
        since = self._blocked_since.get(job.id)
        if since is None or since[0] != reason:
            since = self._blocked_since[job.id] = (reason, now)
        for action in queue.time_limit_actions:
            if not reason.startswith(action.reason):
                continue
            deadline = since[1] + action.max_time_ms
            if now < deadline:
                self._wake_at(deadline)
                continue
            waiting.pop()
            self._blocked_since.pop(job.id, None)
            message = f"Canceled by JobStateTimeLimit action due to reason: {action.reason}"
            self._finish(job, partial(t.cancel, now=now, reason=message))
            return True
        return False

    def _wake_at(self, deadline_ms: int) -> None:
        if self._timer is not None and self._timer_at <= deadline_ms:
            return
        if self._timer is not None:
            self._timer.cancel()
        delay = max(0.0, (deadline_ms - self.clock.now_ms()) / 1000)
        self._timer_at = deadline_ms
        self._timer = asyncio.get_running_loop().call_later(delay, self._timer_fired)

    def _timer_fired(self) -> None:
        self._timer = None
        self.wake()

    def waiting_reasons(self) -> Callable[[Job], str | None]:
        """A reason lookup for one request: FIFO positions are counted once per queue, not once per job,
        so listing 1,000 RUNNABLE jobs of a 10,000-job queue walks the queue once."""
        positions: dict[str, dict[str, int]] = {}

        def reason(job: Job) -> str | None:
            return self._waiting_reason(job, positions)

        return reason

    def _waiting_reason(self, job: Job, positions: dict[str, dict[str, int]]) -> str | None:
        """A current, specific reason for a RUNNABLE job (the head's is set by dispatch)."""
        if job.status is not S.RUNNABLE:
            return job.status_reason
        job = self.jobs.get(job.id, job)
        waiting = self.runnable.get(job.spec.queue)
        head = waiting.peek() if waiting is not None else None
        if waiting is None or head is None or head.id == job.id:
            return job.status_reason
        if isinstance(waiting, FairshareQueue):
            return waiting.position_reason(job) or job.status_reason
        if not isinstance(waiting, FifoQueue):
            return job.status_reason
        table = positions.get(job.spec.queue)
        if table is None:
            table = positions[job.spec.queue] = waiting.positions(limit=_POSITION_LIMIT)
        ahead = table.get(job.id, _POSITION_LIMIT)
        more = "+" if ahead >= _POSITION_LIMIT else ""
        text = f"Waiting behind {ahead:,}{more} job(s) ahead of it in job queue {job.spec.queue}"
        blocked = self.blocked.get(job.spec.queue)
        if blocked:
            text += f"; the first one waits: {blocked}"
        return text

    def queue_utilization(self, name: str) -> tuple[float, dict[str, float] | None, int]:
        """vCPUs running for job queue ``name``; for fair-share queues also per share and active shares."""
        total = sum(
            job.spec.resources.vcpus
            for job_id in self._running
            if (job := self.jobs.get(job_id)) is not None and job.spec.queue == name
        )
        waiting = self.runnable.get(name)
        if isinstance(waiting, FairshareQueue):
            return total, waiting.running_vcpus(), waiting.active_shares()
        return total, ({} if self._fairshare_policy(name) is not None else None), 0

    def _note_reason(self, job: Job | None, reason: str) -> None:
        if job is not None and job.status_reason != reason:
            job.status_reason = reason
            self._dirty[job.id] = job

    def _launch(self, job: Job, ce_name: str, now: int) -> None:
        task_id = uuid.uuid4().hex
        attempt = Attempt(task_id=task_id, log_stream=f"{job.spec.definition_name[:200]}/default/{task_id}")
        self._set(job, lambda j: t.place(j, ce_name, attempt))
        gpu_ids = self.capacity.acquire(job.spec.resources, ce_name)
        spec = job.spec
        environment = dict(spec.environment)
        environment.update(
            AWS_BATCH_JOB_ID=job.id,
            AWS_BATCH_JOB_ATTEMPT=str(job.attempt_number),
            AWS_BATCH_JQ_NAME=spec.queue,
            AWS_BATCH_CE_NAME=ce_name,
        )
        if job.array_index is not None:
            environment["AWS_BATCH_JOB_ARRAY_INDEX"] = str(job.array_index)
            environment["AWS_BATCH_JOB_ARRAY_SIZE"] = str(spec.array_size)
        launch = LaunchSpec(
            job_id=job.id,
            attempt=job.attempt_number,
            command=spec.command,
            environment=environment,
            working_dir=self.work_dir_of(job.id),
            log_stream=attempt.log_stream or task_id,
            memory_mib=spec.resources.memory_mib,
            gpu_ids=gpu_ids,
        )
        job_id = job.id
        launching = time.perf_counter()
        handle = self.executor.launch(launch, lambda info: self._on_exit(job_id, info))
        self.stats.launch_seconds += time.perf_counter() - launching
        attempt.pid = handle.pid
        running = self._running[job_id] = _Running(handle, gpu_ids)
        self._set(job, lambda j: t.start(j, now))
        if spec.timeout_seconds:
            running.timer = asyncio.get_running_loop().call_later(spec.timeout_seconds, self._time_out, job_id)

    def work_dir_of(self, job_id: str) -> Path:
        """``<work>/<shard>/<jobId>``: 256 shards keep creating and removing one job's directory from
        contending for the same parent directory lock as every other job's."""
        return self._shards[zlib.crc32(job_id.encode()) & 0xFF] / job_id

    def _time_out(self, job_id: str) -> None:
        running = self._running.get(job_id)
        if running is None:
            return
        running.timed_out = True
        self.executor.kill(running.handle, self.kill_grace_seconds, None)

    def _on_exit(self, job_id: str, info: ExitInfo) -> None:
        job = self.jobs.get(job_id)
        running = self._running.pop(job_id, None)
        if job is None or running is None:
            return
        if running.timer is not None:
            running.timer.cancel()
        self.capacity.release(job.spec.resources, job.compute_environment or "", running.gpu_ids)
        self._release_share(job)
        now = self.clock.now_ms()
        if not info.started:
            status_reason = TASK_FAILED_TO_START
        elif self._stopping and running.stop_reason is None and not running.timed_out:
            status_reason = HOST_TERMINATED
            info = ExitInfo(exit_code=info.exit_code, reason=SERVER_STOPPED, started=True)
        elif running.stop_reason is not None:
            status_reason = running.stop_reason
        elif running.timed_out:
            status_reason = t.TIMEOUT_REASON
        else:
            status_reason = t.ESSENTIAL_CONTAINER_EXITED
        attempt = t.finish_attempt(job, now, info.exit_code, info.reason, status_reason)
        if running.stop_reason is not None:
            reason = running.stop_reason
            self._finish(job, lambda j: t.terminate(j, now, reason))
        elif running.timed_out:
            self._finish(job, lambda j: t.fail(j, now, t.TIMEOUT_REASON))
        elif info.exit_code == 0 and info.started:
            self._finish(job, lambda j: t.succeed(j, now))
        elif t.should_retry(job.spec.retry, len(job.attempts), attempt):
            self._set(job, lambda j: t.retry(j, now))
            self._enqueue(job)
        else:
            self._finish(job, lambda j: t.fail(j, now, status_reason))
        if job.status in TERMINAL:
            # Off the event loop: removing a directory costs more than starting a job on
            # some file systems. Only finished jobs, so a retry never races its own mkdir.
            self._janitor.submit(_remove_empty_dir, self.work_dir_of(job_id))
        self.wake()

    # --- cancel and terminate ---------------------------------------------------------

    def cancel(self, job: Job, reason: str) -> None:
        """CancelJob: effective before STARTING; PENDING jobs fail once their dependencies finish."""
        now = self.clock.now_ms()
        if job.is_array_parent:
            self._for_children(job, lambda child: self.cancel(child, reason))
            return
        if job.status in (S.SUBMITTED, S.RUNNABLE):
            self._queue_of(job).discard(job)
            self._finish(job, lambda j: t.cancel(j, now, reason))
        elif job.status is S.PENDING:
            job.cancel_reason = reason
            job.is_cancelled = True
            self._dirty[job.id] = job
        self.wake()

    def terminate(self, job: Job, reason: str) -> None:
        """TerminateJob: like cancel before STARTING; stops the process group after that."""
        if job.is_array_parent:
            self._for_children(job, lambda child: self.terminate(child, reason))
            return
        if job.status in (S.STARTING, S.RUNNING):
            running = self._running.get(job.id)
            if running is not None and running.stop_reason is None:
                running.stop_reason = reason
                self.executor.kill(running.handle, self.kill_grace_seconds, None)
            return
        if job.status is S.PENDING:
            now = self.clock.now_ms()
            self._finish(job, lambda j: t.cancel(j, now, reason))
            self.wake()
            return
        self.cancel(job, reason)

    def _for_children(self, parent: Job, action: Callable[[Job], None]) -> None:
        size = parent.spec.array_size or 0
        for index in range(size):
            child = self.jobs.get(f"{parent.id}:{index}")
            if child is not None and child.status not in TERMINAL:
                action(child)

    # --- persistence ----------------------------------------------------------------

    def flush(self) -> None:
        """Write every changed job in one transaction; forget finished ones."""
        if not self._dirty:
            return
        dirty = self._dirty
        # Cleared only after the commit: if the store fails, the next flush retries these.
        self.store.save_jobs([to_record(job) for job in dirty.values()])
        self._dirty = {}
        for job in dirty.values():
            if job.status in TERMINAL and job.id not in self._running:
                self.jobs.pop(job.id, None)

    def _recover(self) -> None:
        """Reload unfinished jobs after a restart.

        Attempts that were STARTING/RUNNING when the server stopped cannot be
        re-attached (their output pipes died with the server): their process
        group is killed and the attempt ends as a lost host, so retry rules
        such as ``onStatusReason: "Host EC2*"`` apply exactly as on AWS.
        """
        records = self.store.load_unfinished_jobs()
        if not records:
            return
        records.sort(key=lambda r: (r.array_index is not None, r.created_at))
        specs: dict[str, JobSpec] = {}
        loaded: list[Job] = []
        for record in records:
            parent_spec = specs.get(record.parent_id or "")
            if record.parent_id is not None and parent_spec is None:
                parents = self.store.get_jobs([record.parent_id])
                if parents:
                    parent_spec = specs[record.parent_id] = from_record(parents[0]).spec
            job = from_record(record, parent_spec)
            if job.array_index is None:
                specs[job.id] = job.spec
            self.jobs[job.id] = job
            loaded.append(job)
        now = self.clock.now_ms()
        self._recount_arrays(loaded)
        waiting = [job for job in loaded if job.status in (S.SUBMITTED, S.PENDING)]
        finished = self._stored_statuses({d for job in waiting for d in job.deps if d not in self.jobs})
        for job in waiting:
            self._register_dependencies(job, finished)
            self._to_evaluate.append(job)
        for job in sorted((j for j in loaded if j.status is S.RUNNABLE), key=lambda j: j.runnable_since or 0):
            self._enqueue(job)
        for job in loaded:
            if job.status in (S.STARTING, S.RUNNING):
                self._abandon_attempt(job, now)
        logger.info("recovered %d unfinished jobs", len(loaded))

    def _recount_arrays(self, loaded: list[Job]) -> None:
        for job in loaded:
            if job.is_array_parent:
                summary = dict.fromkeys(STATUS_SUMMARY_KEYS, 0)
                summary.update(self.store.count_children(job.id))
                job.status_summary = summary

    def _abandon_attempt(self, job: Job, now: int) -> None:
        pid = job.current.pid if job.current else None
        if pid:
            _kill_orphan(pid, job.id)
        attempt = t.finish_attempt(job, now, None, SERVER_STOPPED, HOST_TERMINATED)
        if t.should_retry(job.spec.retry, len(job.attempts), attempt):
            self._set(job, lambda j: t.retry(j, now))
            self._enqueue(job)
        else:
            self._finish(job, lambda j: t.fail(j, now, HOST_TERMINATED))


def _make_dirs(path: Path) -> None:
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError:
        logger.warning("could not create working directory %s", path)


def _remove_empty_dir(path: Path) -> None:
    try:
        os.rmdir(path)
    except OSError:
        pass  # not empty (the job left files for the user) or already gone


def _kill_orphan(pid: int, job_id: str) -> None:
    """Kill the process group of an attempt left by a previous server, if it is still that job's."""
    try:
        environ = Path(f"/proc/{pid}/environ").read_bytes()
    except OSError:
        return
    if f"AWS_BATCH_JOB_ID={job_id}".encode() not in environ.split(b"\0"):
        return  # the pid now belongs to another process
    try:
        os.killpg(pid, signal.SIGKILL)
    except OSError:
        pass
