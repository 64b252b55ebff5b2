"""Attempts another server instance ran, found at start-up: its host is lost to this one.

When several servers share one store, the leader's executor runs every attempt on its host, and
records that host on the attempt (``Attempt.host``). A leader that takes over finds the previous
leader's attempts still STARTING or RUNNING. It cannot follow them (their processes are on another
host's supervisor), and must not start them again while they may still run: that supervisor kills
them a quarter of ``lost_host_seconds`` after its server is gone (see ``supervisor/daemon.py``),
and a server that cannot confirm its leadership for half of it stops itself (``cluster/``). Only
after ``lost_host_seconds``, longer than both together, are they ended as AWS ends a lost
instance's jobs: ``Host EC2 (instance …) terminated.``, and their retry strategy decides what
follows. So an attempt runs once: never again beside itself, and never to completion after it has
been declared lost.

An attempt that *ended* on that host while no server was connected to its supervisor (or just
before, its outcome never committed) has a real outcome, which its supervisor writes to the
database (``supervisor/outcomes.py``). The leader reads those outcomes when it takes over, whenever
a supervisor notifies it, and once more before declaring anything lost, and applies each to its
held attempt exactly as it applies an exit it sees itself: a job that succeeded there is not run
again, and a real failure is not reported as the loss of a host.
"""

from __future__ import annotations

import asyncio
import logging
from functools import partial
from typing import TYPE_CHECKING, Any

from openbatch.domain import transitions as t
from openbatch.domain.job import Job
from openbatch.executors.base import ExitInfo
from openbatch.scheduler.attempts import AttemptsMixin, _status_reason
from openbatch.scheduler.core import S

if TYPE_CHECKING:
    from openbatch.supervisor.outcomes import AttemptOutcome, RecordedOutcomes

logger = logging.getLogger(__name__)

LOST_REASON = "The server that ran this attempt was lost"


def host_terminated(host: str) -> str:
    return f"Host EC2 (instance {host}) terminated."


class LostHostsMixin(AttemptsMixin):
    host: str | None = None
    """This server instance, recorded on the attempts it launches; ``None``: one server, no record."""
    lost_host_seconds: float = 0.0
    """How long after start-up another instance's attempts are declared lost."""
    recorded_outcomes: RecordedOutcomes | None = None
    """Several servers share the store: outcomes supervisors recorded while no server was connected."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._held: dict[str, str | None] = {}
        """Attempts that ran elsewhere, by job id, until declared lost: TerminateJob's reason, if asked."""
        self._held_attempt: dict[str, int] = {}
        """Which attempt of the job is held: once it has ended, the job may run a new one here."""
        self._applied_outcomes: list[tuple[str, int]] = []
        """Recorded outcomes applied: removed from the store once the jobs' new states are committed."""
        self._outcomes_due = False

    def _launch(self, job: Job, ce_name: str, now: int) -> None:
        super()._launch(job, ce_name, now)
        if self.host is not None and job.current is not None:
            job.current.host = self.host

    def _ran_elsewhere(self, job: Job) -> bool:
        current = job.current
        return self.host is not None and current is not None and current.host not in (None, self.host)

    def _hold_lost(self, jobs: list[Job]) -> None:
        """Leave these attempts as they are until their host's supervisor records how they ended, or has
        certainly killed them."""
        for job in jobs:
            self._held[job.id] = None
            self._held_attempt[job.id] = job.attempt_number
        if jobs:
            logger.warning(
                "%d attempts ran on servers that are gone; ended as recorded, or as lost hosts in %.0f s",
                len(jobs),
                self.lost_host_seconds,
            )
            asyncio.get_running_loop().call_later(self.lost_host_seconds, self._declare_lost, [j.id for j in jobs])
        # What ended while no server was connected (rows no longer needed go too): once recovery is done.
        self.outcomes_recorded()

    def outcomes_recorded(self) -> None:
        """A supervisor wrote outcomes (``NOTIFY``): apply them soon, once for many notifications."""
        if self.recorded_outcomes is None or self._outcomes_due:
            return
        self._outcomes_due = True
        asyncio.get_running_loop().call_soon(self.apply_recorded_outcomes)

    def apply_recorded_outcomes(self) -> None:
        """Apply the recorded outcome of each held attempt; remove the rows no held attempt needs (an
        attempt this server follows itself, one declared lost already, a job finished meanwhile)."""
        self._outcomes_due = False
        if self.recorded_outcomes is None:
            return
        try:
            outcomes = self.recorded_outcomes.read()
        except Exception:
            logger.exception("could not read the recorded attempt outcomes")
            return
        unused = []
        for outcome in outcomes:
            job = self.jobs.get(outcome.job_id)
            if job is not None and job.id in self._held and self._outcome_matches(job, outcome):
                self._held_attempt.pop(job.id, None)
                self._apply_outcome(job, outcome, self._held.pop(job.id))
                self._applied_outcomes.append((outcome.job_id, outcome.attempt))
            else:
                unused.append((outcome.job_id, outcome.attempt))
        if unused:
            try:
                self.recorded_outcomes.remove(unused)
            except Exception:
                logger.exception("could not remove %d recorded attempt outcomes", len(unused))
        if len(unused) < len(outcomes):
            logger.warning(
                "applied %d attempt outcomes recorded while their server was gone", len(outcomes) - len(unused)
            )
            self.wake()

    @staticmethod
    def _outcome_matches(job: Job, outcome: AttemptOutcome) -> bool:
        current = job.current
        return (
            job.status in (S.STARTING, S.RUNNING)
            and current is not None
            and job.attempt_number == outcome.attempt
            and current.host == outcome.host
        )

    def _apply_outcome(self, job: Job, outcome: AttemptOutcome, stop_reason: str | None) -> None:
        """End a held attempt as its exit would have ended it on the server that launched it."""
        info = outcome.exit_info()
        if job.status is S.STARTING:
            # Its RUNNING state was never committed (the server died right after launching it).
            started = outcome.started_at or outcome.stopped_at
            self._set(job, lambda j: t.start(j, started))
        now = max(min(outcome.stopped_at, self.clock.now_ms()), job.started_at or 0)
        self._ended_elsewhere(job, info, now, _status_reason(info, stop_reason, False), stop_reason)

    def _ended_elsewhere(self, job: Job, info: ExitInfo, now: int, status_reason: str, stop_reason: str | None) -> None:
        """A held attempt's recorded end; kinds of jobs with rules of their own (nodes) override this."""
        self._conclude(job, info, now, status_reason, stop_reason, timed_out=False)

    def _after_commit(self) -> None:
        super()._after_commit()
        if self._applied_outcomes and self.recorded_outcomes is not None:
            applied, self._applied_outcomes = self._applied_outcomes, []
            try:
                self.recorded_outcomes.remove(applied)
            except Exception:
                # Harmless: their attempts are no longer held, so the next reading removes them.
                logger.exception("could not remove %d applied attempt outcomes", len(applied))

    def terminate(self, job: Job, reason: str) -> None:
        if job.id in self._held:
            self._held[job.id] = self._held[job.id] or reason  # applied when the attempt is declared lost
            return
        super().terminate(job, reason)

    def _declare_lost(self, job_ids: list[str]) -> None:
        self.apply_recorded_outcomes()  # a notification may have been missed
        now = self.clock.now_ms()
        for job_id in job_ids:
            if job_id not in self._held:
                continue  # its recorded outcome was applied: the job may run a new attempt by now
            stop_reason = self._held.pop(job_id)
            attempt = self._held_attempt.pop(job_id, None)
            job = self.jobs.get(job_id)
            if job is None or job.status not in (S.STARTING, S.RUNNING) or job.current is None:
                continue
            if job.attempt_number != attempt:
                continue  # ended meanwhile (a multi-node job, by its nodes' recorded ends) and running again here
            self._attempt_lost(job, now, host_terminated(job.current.host or "unknown"), stop_reason)
        self.wake()

    def _attempt_lost(self, job: Job, now: int, status_reason: str, stop_reason: str | None) -> None:
        """End the current attempt of ``job`` as its host's loss; kinds of jobs with rules of their own
        (multi-node parallel jobs' nodes) override this."""
        attempt = t.finish_attempt(job, now, None, LOST_REASON, status_reason)
        if stop_reason is not None:
            self._finish(job, partial(t.terminate, now=now, reason=stop_reason))
        elif t.should_retry(job.spec.retry, len(job.attempts), attempt):
            self._set(job, partial(t.retry, now=now))
            self._enqueue(job)
        else:
            self._finish(job, partial(t.fail, now=now, reason=status_reason))
