"""Shared state of the job engine and the primitives every part of it uses.

The engine is one object (``JobEngine`` in ``engine.py``) assembled from parts, one
module each: dependencies and arrays (``dependencies.py``), dispatch and waiting
reasons (``dispatch.py``), attempts (``attempts.py``), start-up recovery
(``recovery.py``) and multi-node parallel jobs (``multinode.py``). This module holds
what they share: the job table, state changes with their consequences (array summaries,
persistence, listeners) and the flush.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import zlib
from collections import defaultdict
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from openbatch.clock import Clock
from openbatch.domain import transitions as t
from openbatch.domain.job import Job, JobSpec, StatusChange

__all__ = ["StatusChange"]
from openbatch.domain.resources import FairsharePolicy
from openbatch.domain.states import TERMINAL, JobStatus
from openbatch.executors.base import Executor, Handle
from openbatch.scheduler.capacity import Capacity
from openbatch.scheduler.fairshare import FairshareQueue
from openbatch.scheduler.queues import FifoQueue, RunnableQueue
from openbatch.scheduler.registry import Registry
from openbatch.store.base import OutboxEntry, Store
from openbatch.store.job_codec import from_record, to_record

logger = logging.getLogger(__name__)

S = JobStatus


def host_terminated(instance: str) -> str:
    """AWS's status reason for an attempt whose instance went away."""
    return f"Host EC2 (instance {instance}) terminated."


HOST_TERMINATED = host_terminated(f"openbatch-{socket.gethostname()}")
SERVER_STOPPED = "The OpenBatch server stopped while this attempt was running"

StatusListener = Callable[[Sequence[StatusChange]], None]
"""Told, after the commit, of the job state changes a flush or an admission wrote."""
OutboxSource = Callable[[Sequence[StatusChange]], list[OutboxEntry]]
"""Turns state changes into outbox entries written in the same transaction as the jobs."""
LaunchEnvironment = Callable[[Job, int], Mapping[str, str]]
"""Variables added to an attempt's environment (job, attempt number)."""


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


class RunningAttempt:
    """Executor-side state of one attempt in STARTING/RUNNING."""

    __slots__ = ("gpu_ids", "handle", "stop_reason", "timed_out", "timer")

    def __init__(self, gpu_ids: tuple[int, ...]) -> None:
        self.handle: Handle | None = None
        """Set once the attempt is handed to the executor (after its STARTING state is committed)."""
        self.gpu_ids = gpu_ids
        self.timer: asyncio.TimerHandle | None = None
        self.timed_out = False
        self.stop_reason: str | None = None


class EngineCore:
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
        self._live_children: set[str] = set()
        """Array children made live out of a queue's run (its head, a prefetch, or asked for by id):
        kept in ``jobs`` until they leave RUNNABLE."""
        self._dirty: dict[str, Job] = {}
        self._changes: list[StatusChange] = []
        """State changes since the last flush, in order: for listeners and the outbox."""
        self._running: dict[str, RunningAttempt] = {}
        self._to_launch: list[Job] = []
        self._to_forget: list[str] = []
        """Ended attempts whose outcome the next flush commits; then the executor may drop them."""
        """Placed attempts, handed to the executor once their STARTING state is committed."""
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
        self._status_listeners: list[StatusListener] = []
        self._outbox_sources: list[OutboxSource] = []
        self._launch_environments: list[LaunchEnvironment] = []

    # --- seams for other capabilities ---------------------------------------------------

    def add_status_listener(self, listener: StatusListener) -> None:
        """``listener`` is called on the event loop after each commit of job state changes."""
        self._status_listeners.append(listener)

    def add_outbox_source(self, source: OutboxSource) -> None:
        """``source``'s entries are committed in the same transaction as the state changes they describe."""
        self._outbox_sources.append(source)

    def add_launch_environment(self, source: LaunchEnvironment) -> None:
        """``source`` adds variables to every attempt's environment."""
        self._launch_environments.append(source)

    def outbox_for(self, changes: Sequence[StatusChange]) -> list[OutboxEntry]:
        return [entry for source in self._outbox_sources for entry in source(changes)]

    def notify(self, changes: Sequence[StatusChange]) -> None:
        """Tell listeners about committed changes; a failing listener never stops the engine."""
        if not changes:
            return
        for listener in self._status_listeners:
            try:
                listener(changes)
            except Exception:
                logger.exception("job status listener %r failed", listener)

    # --- parts provided by the other modules -------------------------------------------

    def _on_terminal(self, job: Job) -> None:
        raise NotImplementedError

    def _launch(self, job: Job, ce_name: str, now: int) -> None:
        raise NotImplementedError

    # --- basics -------------------------------------------------------------------------

    def work_dir_of(self, job_id: str) -> Path:
        """``<work>/<shard>/<jobId>``: 256 shards keep creating and removing one job's directory from
        contending for the same parent directory lock as every other job's."""
        return self._shards[zlib.crc32(job_id.encode()) & 0xFF] / job_id

    def wake(self) -> None:
        self._wake.set()

    def mark_dirty(self, job: Job) -> None:
        """Persist ``job`` at the next flush (for changes outside transitions, such as tags)."""
        self._dirty[job.id] = job

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
        if old is not job.status:
            self._changes.append(StatusChange(job.id, old, job.status, self.clock.now_ms(), job))
        if job.parent_id is not None:
            self._count_child(job, old)

    def _finish(self, job: Job, change: Callable[[Job], JobStatus]) -> None:
        """A transition into a terminal state, with propagation."""
        self._set(job, change)
        self._on_terminal(job)

    def _enqueue(self, job: Job) -> None:
        """A job became RUNNABLE: queue it. (Its working directory is made by the executor at launch,
        in the supervisor's process, off this event loop.)"""
        self._queue_of(job).push(job)

    def _queue_of(self, job: Job) -> RunnableQueue:
        queue = self.runnable.get(job.spec.queue)
        if queue is None:
            queue = self.runnable[job.spec.queue] = self._new_queue(job.spec.queue)
        return queue

    def _new_queue(self, name: str) -> RunnableQueue:
        fairshare = self._fairshare_policy(name)
        return FifoQueue(self._materialise_children) if fairshare is None else FairshareQueue(fairshare, self.clock)

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

    def _note_reason(self, job: Job | None, reason: str) -> None:
        if job is not None and job.status_reason != reason:
            job.status_reason = reason
            self._dirty[job.id] = job

    # --- queued array children ------------------------------------------------------

    def _park(self, job: Job) -> None:
        """A child whose RUNNABLE state is now durable and that waits in a run of its queue leaves
        memory: its row is exact, and the queue makes it live again when it is needed."""
        if job.status is not S.RUNNABLE:
            self._live_children.discard(job.id)
            return
        if job.id in self._live_children:
            return
        waiting = self.runnable.get(job.spec.queue)
        if isinstance(waiting, FifoQueue) and waiting.parks(job):
            del self.jobs[job.id]

    def _materialise_children(self, parent_id: str, indices: Sequence[int]) -> list[Job]:
        """Children of ``parent_id`` waiting in a run, live: from memory when there, else from their rows."""
        found: dict[int, Job] = {}
        missing: list[str] = []
        for index in indices:
            child_id = f"{parent_id}:{index}"
            job = self.jobs.get(child_id)
            if job is None:
                missing.append(child_id)
            else:
                found[index] = job
        if missing:
            spec = self._spec_of(parent_id)
            for start in range(0, len(missing), 500):
                for record in self.store.get_jobs(missing[start : start + 500]):
                    job = from_record(record, spec)
                    if job.status is S.RUNNABLE and job.array_index is not None:
                        self.jobs[job.id] = job
                        found[job.array_index] = job
        live = [found[i] for i in indices if i in found]
        self._live_children.update(job.id for job in live)
        return live

    def _spec_of(self, parent_id: str) -> JobSpec | None:
        parent = self.jobs.get(parent_id)
        if parent is not None:
            return parent.spec
        records = self.store.get_jobs([parent_id])
        return from_record(records[0]).spec if records else None

    def _queue_holding(self, job_id: str) -> tuple[FifoQueue, str, int] | None:
        parent_id, sep, index = job_id.rpartition(":")
        if not sep or not index.isdigit():
            return None
        parent = self.jobs.get(parent_id)
        if parent is None or not parent.is_array_parent:
            return None
        waiting = self.runnable.get(parent.spec.queue)
        return (waiting, parent_id, int(index)) if isinstance(waiting, FifoQueue) else None

    def find(self, job_id: str) -> Job | None:
        """The live job ``job_id``, including an array child that waits in a run (made live, in place)."""
        job = self.jobs.get(job_id)
        if job is not None:
            return job
        holding = self._queue_holding(job_id)
        return holding[0].find(holding[1], holding[2]) if holding is not None else None

    def held(self) -> tuple[int, int]:
        """Jobs held as objects, and queued array children held as index ranges instead (metrics)."""
        in_runs = sum(q.children_in_runs() for q in self.runnable.values() if isinstance(q, FifoQueue))
        return len(self.jobs), max(in_runs - len(self._live_children), 0)

    def is_queued_child(self, job_id: str) -> bool:
        """Whether ``job_id`` is an array child waiting in a run (RUNNABLE, not in ``jobs``)."""
        if job_id in self.jobs:
            return False
        holding = self._queue_holding(job_id)
        return holding is not None and holding[0].holds(holding[1], holding[2])

    # --- persistence ----------------------------------------------------------------

    def flush(self) -> None:
        """Write every changed job in one transaction (with its outbox entries); forget finished ones;
        then tell listeners and hand placed attempts to the executor."""
        if self._dirty:
            dirty, changes = self._dirty, self._changes
            # Cleared only after the commit: if the store fails, the next flush retries these.
            self.store.save_jobs([to_record(job) for job in dirty.values()], outbox=self.outbox_for(changes))
            self._dirty, self._changes = {}, []
            for job in dirty.values():
                if job.status in TERMINAL and job.id not in self._running:
                    self.jobs.pop(job.id, None)
                    self._live_children.discard(job.id)
                elif job.array_index is not None:
                    self._park(job)
            self.notify(changes)
        self._after_commit()

    def _after_commit(self) -> None:
        """Work that must wait until the state it follows from is durable (see ``attempts.py``)."""


def _remove_empty_dir(path: Path) -> None:
    try:
        os.rmdir(path)
    except OSError:
        pass  # not empty (the job left files for the user) or already gone
