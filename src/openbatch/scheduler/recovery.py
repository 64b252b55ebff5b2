"""Start-up recovery: reload unfinished jobs and rebuild the in-memory state from the store."""

from __future__ import annotations

import logging
import os
import signal
from functools import partial
from pathlib import Path

from openbatch.domain import transitions as t
from openbatch.domain.job import STATUS_SUMMARY_KEYS, Job, JobSpec
from openbatch.executors.base import KnownAttempt, attempt_key
from openbatch.scheduler.core import HOST_TERMINATED, SERVER_STOPPED, RunningAttempt, S
from openbatch.scheduler.dependencies import DependencyMixin
from openbatch.scheduler.lost_hosts import LostHostsMixin
from openbatch.scheduler.queues import FifoQueue
from openbatch.store.job_codec import from_record

logger = logging.getLogger(__name__)


class RecoveryMixin(LostHostsMixin, DependencyMixin):
    def recover(self) -> None:
        """Reload unfinished jobs after a restart, and re-attach to their attempts.

        With an executor whose attempts outlive the server (the supervisor), an attempt
        STARTING/RUNNING in the store is followed again: still running, or ended while
        no server was connected (its real exit is applied). One the executor never
        received (the server stopped between committing STARTING and launching) is
        launched now under the same attempt number. With an executor whose attempts end
        with the server, they are lost: the attempt ends as a lost host, so retry rules
        such as ``onStatusReason: "Host EC2*"`` apply exactly as on AWS.
        """
        # Queued array children are not read one by one: they come back as index ranges (see
        # ``queues.ChildRun``), so a million of them cost a few ranges, not a million objects.
        records = self.store.load_unfinished_jobs(except_queued_children=True)
        arrays = [r.id for r in records if r.parent_id is None and (r.spec or {}).get("array_size") is not None]
        ranges = self.store.queued_child_ranges(arrays)
        known = dict(self.executor.known_attempts())
        if not records and not ranges:
            self.executor.forget(list(known))
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
        runs = self._recover_runs(ranges, specs, loaded)
        now = self.clock.now_ms()
        self._recount_arrays(loaded)
        waiting = [job for job in loaded if job.status in (S.SUBMITTED, S.PENDING)]
        finished = self._stored_statuses({d for job in waiting for d in job.deps if d not in self.jobs})
        for job in waiting:
            self._register_dependencies(job, finished)
            self._to_evaluate.append(job)
        queued: list[tuple[int, Job | tuple[str, int, int]]] = [
            (job.runnable_since or 0, job) for job in loaded if job.status is S.RUNNABLE
        ]
        queued.extend(runs)
        queued.sort(key=lambda entry: entry[0])
        for _since, entry in queued:
            if isinstance(entry, Job):
                self._enqueue(entry)
            else:
                parent_id, first, stop = entry
                fifo = self.runnable.get(specs[parent_id].queue)
                if fifo is None:
                    fifo = self.runnable[specs[parent_id].queue] = self._new_queue(specs[parent_id].queue)
                assert isinstance(fifo, FifoQueue)
                fifo.push_run(parent_id, first, stop)
        followed = 0
        elsewhere = []
        for job in loaded:
            if job.status not in (S.STARTING, S.RUNNING):
                continue
            key = attempt_key(job.id, job.attempt_number)
            if key not in known and self._ran_elsewhere(job):
                elsewhere.append(job)  # another server's: neither followed nor started again here
            elif self.executor.reattaches:
                followed += self._reattach(job, known.pop(key, None))
            else:
                self._abandon_attempt(job, now)
        self._hold_lost(elsewhere)
        # Ended attempts whose outcome the store already has (the server stopped before acknowledging).
        self.executor.forget(list(known))
        logger.info("recovered %d unfinished jobs; re-attached to %d attempts", len(loaded), followed)

    def _recover_runs(
        self, ranges: list[tuple[str, int, int]], specs: dict[str, JobSpec], loaded: list[Job]
    ) -> list[tuple[int, tuple[str, int, int]]]:
        """Queued children's ranges with the time they became RUNNABLE (their first child's), for
        FIFO queues; the children of an array in a fair-share queue are loaded as jobs (into ``loaded``)."""
        runs: list[tuple[str, int, int]] = []
        for parent_id, first, stop in ranges:
            spec = specs.get(parent_id)
            if spec is None:
                continue  # no unfinished parent: nothing can dispatch these (never happens in a consistent store)
            if self._fairshare_policy(spec.queue) is None:
                runs.append((parent_id, first, stop))
                continue
            ids = [f"{parent_id}:{index}" for index in range(first, stop)]
            for start in range(0, len(ids), 500):
                for record in self.store.get_jobs(ids[start : start + 500]):
                    job = from_record(record, spec)
                    self.jobs[job.id] = job
                    loaded.append(job)
        since: dict[str, int] = {}
        heads = [f"{parent_id}:{first}" for parent_id, first, _stop in runs]
        for start in range(0, len(heads), 500):
            for record in self.store.get_jobs(heads[start : start + 500]):
                head = from_record(record, specs[record.parent_id or ""])
                since[head.id] = head.runnable_since or 0
        return [(since.get(f"{p}:{first}", 0), (p, first, stop)) for p, first, stop in runs]

    def _reattach(self, job: Job, known: KnownAttempt | None) -> int:
        gpu_ids = known.gpu_ids if known is not None else None
        running = self._running[job.id] = RunningAttempt(
            self.capacity.acquire(job.spec.resources, job.compute_environment or "", gpu_ids)
        )
        if known is None:
            self._to_launch.append(job)  # never reached the executor: launched after the next commit
            return 0
        running.handle = self.executor.attach(attempt_key(job.id, job.attempt_number), partial(self._on_exit, job.id))
        if job.status is S.STARTING:
            now = self.clock.now_ms()
            self._set(job, lambda j: t.start(j, now))
        self._arm_timeout(job, running)
        return 1

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
