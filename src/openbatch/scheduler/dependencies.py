"""Admission, dependency edges and the evaluation of new jobs (SUBMITTED → PENDING / RUNNABLE / FAILED),
and the propagation of terminal states to dependents and array parents."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from functools import partial

from openbatch.domain import transitions as t
from openbatch.domain.job import Job, StatusChange
from openbatch.domain.states import TERMINAL, JobStatus
from openbatch.scheduler.core import EngineCore, S


class DependencyMixin(EngineCore):
    def evaluate_before_commit(self, jobs: Sequence[Job], now: int) -> list[StatusChange]:
        """Move new jobs that wait for nothing to RUNNABLE before their first commit; return those changes.

        A plain job without dependencies would be made RUNNABLE by the next cycle anyway, and
        written a second time for it. Decided here, its insert carries RUNNABLE, and the caller
        commits the SUBMITTED and RUNNABLE changes' outbox entries with it, then hands the jobs
        to ``admit``. Nothing else sees these jobs before ``admit``, so nothing can move them
        in between. So for an array job that waits for nothing: its parent is inserted PENDING and
        its children RUNNABLE (one write for 10,000 children, not two). Multi-node jobs, and jobs
        with dependencies, are left to the cycle.
        """
        changes: list[StatusChange] = []
        parent: Job | None = None
        children = 0
        for job in jobs:
            if job.is_array_parent:
                parent = job if job.status is S.SUBMITTED and not job.spec.depends_on else None
                if parent is not None:
                    changes.append(StatusChange(job.id, t.wait_for_dependencies(job), job.status, now, job))
                continue
            if job.parent_id is not None:
                if parent is not None and job.parent_id == parent.id and job.status is S.PENDING and not job.deps:
                    changes.append(StatusChange(job.id, t.make_runnable(job, now), job.status, now, job))
                    children += 1
                continue
            if job.status is S.SUBMITTED and not job.deps and not job.is_multinode_parent and job.cancel_reason is None:
                changes.append(StatusChange(job.id, t.make_runnable(job, now), job.status, now, job))
        if parent is not None and parent.status_summary is not None:
            parent.status_summary[S.PENDING.value] -= children
            parent.status_summary[S.RUNNABLE.value] += children
            parent.summary_updated_at = now
        return changes

    def admit(self, jobs: Iterable[Job]) -> None:
        """Take newly committed jobs (parents before their children); those made RUNNABLE by
        ``evaluate_before_commit`` join their queue at once."""
        batch = list(jobs)
        for job in batch:
            self.jobs[job.id] = job
        # One store query for every dependency that already left memory, not one per job:
        # 10,000 children depending on one finished job must not cost 10,000 queries.
        outside = {d for job in batch for d in job.deps if d not in self.jobs}
        finished = self._stored_statuses(outside) if outside else {}
        for job in batch:
            if job.status is S.RUNNABLE:
                self._enqueue(job)
                if job.array_index is not None:
                    self._park(job)  # its row, just committed, already says RUNNABLE
                continue
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
                self._finish(job, partial(t.fail, now=now, reason=self._dependency_failed_reason(job)))
            elif self._unmet.get(job.id):
                if job.status is S.SUBMITTED:
                    self._set(job, t.wait_for_dependencies)
            else:
                self._release_pending(job, now)

    def _dependency_failed_reason(self, job: Job) -> str:
        """AWS's ``Dependent Job failed``, naming the failed dependency (found when admitted: rare path)."""
        in_memory = [d for d in job.deps if (dep := self.jobs.get(d)) is not None and dep.status is S.FAILED]
        failed = in_memory or [d for d, status in self._stored_statuses(job.deps).items() if status is S.FAILED]
        return f"{t.DEPENDENT_JOB_FAILED}: {failed[0]}" if failed else t.DEPENDENT_JOB_FAILED

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
                    self._set(dependent, partial(t.fail, now=now, reason=f"{t.DEPENDENT_JOB_FAILED}: {done.id}"))
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
