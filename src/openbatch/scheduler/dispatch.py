"""Dispatch: job queues in priority order, their heads fitted to compute environments in order;
why a job waits (the head's blocking reason, positions behind it) and time-limit actions."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from functools import partial

from openbatch.domain import transitions as t
from openbatch.domain.job import Job
from openbatch.domain.resources import ComputeEnvironment, JobQueue
from openbatch.domain.states import TERMINAL
from openbatch.scheduler.capacity import Refusal
from openbatch.scheduler.core import EngineCore, S
from openbatch.scheduler.fairshare import FairshareQueue
from openbatch.scheduler.queues import FifoQueue, Positions, RunnableQueue

_POSITION_LIMIT = 10_000
"""Queue positions are counted this far; a job further back is reported as behind 10,000+."""
_DEPENDENCIES_SHOWN = 5


class DispatchMixin(EngineCore):
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
            refusal = self._refusal(job, ce)
            if refusal is None:
                return ce.name, None
            refusals.append(refusal)
        if not refusals:
            return None, None
        # Say "never fits" only if no compute environment could ever take the job.
        transient = [r for r in refusals if not r.permanent]
        return None, (transient[0] if transient else refusals[0]).reason

    def _refusal(self, job: Job, ce: ComputeEnvironment) -> Refusal | None:
        """Why ``job`` cannot start on ``ce`` now, or None if it can."""
        return self.capacity.refusal(job.spec.resources, ce)

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
        positions: dict[str, Positions] = {}

        def reason(job: Job) -> str | None:
            return self._waiting_reason(job, positions)

        return reason

    def _waiting_reason(self, job: Job, positions: dict[str, Positions]) -> str | None:
        """A current, specific reason for a RUNNABLE job (the head's is set by dispatch) or a PENDING one."""
        if job.status is S.PENDING and not job.is_array_parent:
            return self._dependencies_reason(self.jobs.get(job.id, job))
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
        # A job not among the positions counted is beyond them, or not queued yet: one shown in its RUNNABLE
        # event before its first commit (``evaluate_before_commit``) joins the queue behind every job in it now.
        ahead = table.get(job.id, min(len(waiting), _POSITION_LIMIT))
        more = "+" if ahead >= _POSITION_LIMIT else ""
        text = f"Waiting behind {ahead:,}{more} job(s) ahead of it in job queue {job.spec.queue}"
        blocked = self.blocked.get(job.spec.queue)
        if blocked:
            text += f"; the first one waits: {blocked}"
        return text

    def _dependencies_reason(self, job: Job) -> str | None:
        """``Waiting for 2 dependencies: <jobId> (RUNNING), <jobId> (PENDING)``: the unfinished ones.

        Dependencies no longer in memory have finished (and succeeded, or this job would have failed)."""
        unfinished = [
            (d, dep.status.value if dep is not None else S.RUNNABLE.value)
            for d in job.deps
            # A child waiting in a queue's index range is RUNNABLE without a live object.
            if ((dep := self.jobs.get(d)) is not None and dep.status not in TERMINAL) or self.is_queued_child(d)
        ]
        if not unfinished:
            return job.status_reason
        shown = ", ".join(f"{dep_id} ({status})" for dep_id, status in unfinished[:_DEPENDENCIES_SHOWN])
        more = f" and {len(unfinished) - _DEPENDENCIES_SHOWN} more" if len(unfinished) > _DEPENDENCIES_SHOWN else ""
        plural = "dependency" if len(unfinished) == 1 else "dependencies"
        return f"Waiting for {len(unfinished)} {plural}: {shown}{more}"

    def queue_utilization(self, name: str) -> tuple[float, dict[str, float] | None, int]:
        """vCPUs running for job queue ``name``; for fair-share queues also per share and active shares."""
        total = sum(
            job.spec.resources.vcpus
            for job_id, running in self._running.items()
            if (job := self.jobs.get(job_id)) is not None
            and job.spec.queue == name
            # An attempt queued in a Ray cluster (STARTING until it starts) holds no CPU there yet.
            and not (job.status is S.STARTING and getattr(running.handle, "reports_start", False))
        )
        waiting = self.runnable.get(name)
        if isinstance(waiting, FairshareQueue):
            return total, waiting.running_vcpus(), waiting.active_shares()
        return total, ({} if self._fairshare_policy(name) is not None else None), 0
