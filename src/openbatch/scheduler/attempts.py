"""Attempts: placing a job (STARTING, committed), handing it to the executor once that is durable,
timeouts, process exits (success, retry, failure), cancel and terminate."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Callable
from functools import partial

from openbatch.containers.spec import ContainerLaunch
from openbatch.domain import transitions as t
from openbatch.domain.job import Attempt, Job
from openbatch.domain.states import TERMINAL
from openbatch.executors.base import HOST_LOST, ExitInfo, LaunchSpec, attempt_key
from openbatch.scheduler.core import (
    HOST_TERMINATED,
    SERVER_STOPPED,
    EngineCore,
    RunningAttempt,
    S,
    _remove_empty_dir,
    host_terminated,
)
from openbatch.scheduler.queues import FifoQueue

TASK_FAILED_TO_START = "Task failed to start"


class AttemptsMixin(EngineCore):
    container_of: Callable[[Job], ContainerLaunch | None] | None = None
    """The container an attempt of the job runs in (``openbatch.containers``), when a runtime is configured."""

    def _launch(self, job: Job, ce_name: str, now: int) -> None:
        """Place ``job`` on ``ce_name``: the attempt exists (STARTING) from here, and its process is started
        only after this state is committed, so a crash in between can never leave a running process behind
        a job the store still shows as RUNNABLE (which a restart would run a second time)."""
        task_id = uuid.uuid4().hex
        attempt = Attempt(task_id=task_id, log_stream=f"{job.spec.definition_name[:200]}/default/{task_id}")
        self._set(job, lambda j: t.place(j, ce_name, attempt))
        self._running[job.id] = RunningAttempt(self.capacity.acquire(job.spec.resources, ce_name))
        self._to_launch.append(job)

    def _after_commit(self) -> None:
        if self._to_forget:
            ended, self._to_forget = self._to_forget, []
            self.executor.forget(ended)
        placed, self._to_launch = self._to_launch, []
        if not placed:
            return
        launching = time.perf_counter()
        for job in placed:
            running = self._running.get(job.id)
            if running is None or running.handle is not None:
                continue
            if running.stop_reason is not None:
                # Terminated between placement and launch: the process is never started.
                self._on_exit(job.id, ExitInfo(exit_code=None, started=False))
                continue
            self._hand_to_executor(job, running)
        self.stats.launch_seconds += time.perf_counter() - launching
        self.wake()  # the RUNNING states (and any exits) are flushed by the next cycle

    def _hand_to_executor(self, job: Job, running: RunningAttempt) -> None:
        job_id = job.id
        now = self.clock.now_ms()  # before the launch: the process may end before launch() returns
        running.handle = self.executor.launch(self.launch_spec(job, running.gpu_ids), partial(self._on_exit, job_id))
        if job.current is not None and running.handle.pid > 0:
            # Known at once for an in-process executor (a lost attempt's group is killed by it at
            # start-up); the supervisor's executor learns its pid later and re-attaches by key instead.
            job.current.pid = running.handle.pid
        if getattr(running.handle, "reports_start", False):
            return  # STARTING until the executor says the process started (attempt_started) or ended
        if job.status is S.STARTING:
            self._set(job, lambda j: t.start(j, now))
        self._arm_timeout(job, running)

    def attempt_started(self, job_id: str, attempt: int, started_at: int | None) -> None:
        """An executor that queues attempts (a Ray cluster) says this one's process has started."""
        job = self.jobs.get(job_id)
        running = self._running.get(job_id)
        if job is None or running is None or job.status is not S.STARTING or job.attempt_number != attempt:
            return
        self._mark_started(job, started_at)
        self._arm_timeout(job, running)
        self.wake()

    def _mark_started(self, job: Job, started_at: int | None) -> None:
        now = self.clock.now_ms()
        at = min(started_at, now) if started_at is not None else now
        self._set(job, lambda j: t.start(j, at))

    def _arm_timeout(self, job: Job, running: RunningAttempt) -> None:
        timeout = job.spec.timeout_seconds
        if not timeout:
            return
        started = job.started_at or self.clock.now_ms()
        delay = max(0.0, timeout - (self.clock.now_ms() - started) / 1000)
        running.timer = asyncio.get_running_loop().call_later(delay, self._time_out, job.id)

    def launch_spec(self, job: Job, gpu_ids: tuple[int, ...]) -> LaunchSpec:
        spec = job.spec
        current = job.current
        assert current is not None, "a placed job has a current attempt"
        environment = dict(spec.environment)
        for source in self._launch_environments:
            environment.update(source(job, job.attempt_number))
        environment.update(
            AWS_BATCH_JOB_ID=job.id,
            AWS_BATCH_JOB_ATTEMPT=str(job.attempt_number),
            AWS_BATCH_JQ_NAME=spec.queue,
            AWS_BATCH_CE_NAME=job.compute_environment or "",
        )
        tags = job.tags
        if not tags and job.parent_id is not None and (parent := self.jobs.get(job.parent_id)) is not None:
            tags = parent.tags  # an array child's tags are its parent's
        if job.array_index is not None:
            environment["AWS_BATCH_JOB_ARRAY_INDEX"] = str(job.array_index)
            environment["AWS_BATCH_JOB_ARRAY_SIZE"] = str(spec.array_size)
        return LaunchSpec(
            job_id=job.id,
            attempt=job.attempt_number,
            command=spec.command,
            environment=environment,
            working_dir=self.work_dir_of(job.id),
            log_stream=current.log_stream or current.task_id or job.id,
            memory_mib=spec.resources.memory_mib,
            gpu_ids=gpu_ids,
            container=self.container_of(job) if self.container_of is not None else None,
            compute_environment=job.compute_environment or "",
            vcpus=spec.resources.vcpus,
            gpus=spec.resources.gpus,
            tags=tags,
        )

    def _time_out(self, job_id: str) -> None:
        running = self._running.get(job_id)
        if running is None:
            return
        running.timed_out = True
        if running.handle is not None:
            self.executor.kill(running.handle, self.kill_grace_seconds, None)

    def _on_exit(self, job_id: str, info: ExitInfo) -> None:
        ended = self._end_attempt(job_id, info)
        if ended is None:
            return
        job, running, info, now, status_reason = ended
        self._conclude(job, info, now, status_reason, running.stop_reason, timed_out=running.timed_out)

    def _conclude(
        self, job: Job, info: ExitInfo, now: int, status_reason: str, stop_reason: str | None, *, timed_out: bool
    ) -> None:
        """What follows an attempt's end: success, a retry under the job's strategy, or failure."""
        self._release_share(job)
        attempt = t.finish_attempt(job, now, info.exit_code, info.reason, status_reason)
        if stop_reason is not None:
            reason = stop_reason
            self._finish(job, lambda j: t.terminate(j, now, reason))
        elif timed_out:
            self._finish(job, lambda j: t.fail(j, now, t.TIMEOUT_REASON))
        elif info.exit_code == 0 and info.started:
            self._finish(job, lambda j: t.succeed(j, now))
        elif t.should_retry(job.spec.retry, len(job.attempts), attempt):
            self._set(job, lambda j: t.retry(j, now))
            self._enqueue(job)
        else:
            self._finish(job, lambda j: t.fail(j, now, status_reason))
        self._after_exit(job)

    def _after_exit(self, job: Job) -> None:
        if job.status in TERMINAL:
            # Off the event loop: removing a directory costs more than starting a job on
            # some file systems. Only finished jobs, so a retry never races its own mkdir.
            self._janitor.submit(_remove_empty_dir, self.work_dir_of(job.id))
        self.wake()

    def _end_attempt(self, job_id: str, info: ExitInfo) -> tuple[Job, RunningAttempt, ExitInfo, int, str] | None:
        """The attempt's process ended: free what it held; when it ended and the attempt's statusReason."""
        job = self.jobs.get(job_id)
        running = self._running.pop(job_id, None)
        if job is None or running is None:
            return None
        if job.status is S.STARTING and info.started and running.handle is not None:
            # From an executor that reports starts: the process ran (too briefly to report its start).
            self._mark_started(job, info.started_at)
        if running.timer is not None:
            running.timer.cancel()
        self.capacity.release(job.spec.resources, job.compute_environment or "", running.gpu_ids)
        # Acknowledged to the executor once this outcome is committed (see _after_commit).
        self._to_forget.append(attempt_key(job_id, job.attempt_number))
        now = self.clock.now_ms()
        if info.ended_at is not None:
            # Ended while no server was connected: the real end, never before the recorded start.
            now = max(min(info.ended_at, now), job.started_at or 0)
        if self._stopping and running.stop_reason is None and info.started and not running.timed_out:
            status_reason = HOST_TERMINATED
            info = ExitInfo(exit_code=info.exit_code, reason=SERVER_STOPPED, started=True)
        else:
            status_reason = _status_reason(info, running.stop_reason, running.timed_out)
        return job, running, info, now, status_reason

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
                if running.handle is not None:  # else it is never launched (see _after_commit)
                    self.executor.kill(running.handle, self.kill_grace_seconds, None)
            return
        if job.status is S.PENDING:
            now = self.clock.now_ms()
            self._finish(job, lambda j: t.cancel(j, now, reason))
            self.wake()
            return
        self.cancel(job, reason)

    def _for_children(self, parent: Job, action: Callable[[Job], None]) -> None:
        waiting = self.runnable.get(parent.spec.queue)
        if isinstance(waiting, FifoQueue):
            # Children waiting as index ranges are made live (and leave the queue: the action ends them).
            waiting.unpark(parent.id)
        size = parent.spec.array_size or 0
        for index in range(size):
            child = self.jobs.get(f"{parent.id}:{index}")
            if child is not None and child.status not in TERMINAL:
                action(child)


def _status_reason(info: ExitInfo, stop_reason: str | None, timed_out: bool) -> str:
    """The ended attempt's statusReason."""
    if stop_reason is not None:
        return stop_reason
    if not info.started:
        return TASK_FAILED_TO_START
    if info.reason == HOST_LOST:
        return HOST_TERMINATED if info.lost_host is None else host_terminated(info.lost_host)
    if timed_out:
        return t.TIMEOUT_REASON
    return t.ESSENTIAL_CONTAINER_EXITED
