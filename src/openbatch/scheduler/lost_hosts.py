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
"""

from __future__ import annotations

import asyncio
import logging
from functools import partial
from typing import Any

from openbatch.domain import transitions as t
from openbatch.domain.job import Job
from openbatch.scheduler.attempts import AttemptsMixin
from openbatch.scheduler.core import S

logger = logging.getLogger(__name__)

LOST_REASON = "The server that ran this attempt was lost"


def host_terminated(host: str) -> str:
    return f"Host EC2 (instance {host}) terminated."


class LostHostsMixin(AttemptsMixin):
    host: str | None = None
    """This server instance, recorded on the attempts it launches; ``None``: one server, no record."""
    lost_host_seconds: float = 0.0
    """How long after start-up another instance's attempts are declared lost."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._held: dict[str, str | None] = {}
        """Attempts that ran elsewhere, by job id, until declared lost: TerminateJob's reason, if asked."""

    def _launch(self, job: Job, ce_name: str, now: int) -> None:
        super()._launch(job, ce_name, now)
        if self.host is not None and job.current is not None:
            job.current.host = self.host

    def _ran_elsewhere(self, job: Job) -> bool:
        current = job.current
        return self.host is not None and current is not None and current.host not in (None, self.host)

    def _hold_lost(self, jobs: list[Job]) -> None:
        """Leave these attempts as they are until their host's supervisor has certainly killed them."""
        for job in jobs:
            self._held[job.id] = None
        if jobs:
            logger.warning(
                "%d attempts ran on servers that are gone; ended as lost hosts in %.0f s",
                len(jobs),
                self.lost_host_seconds,
            )
            asyncio.get_running_loop().call_later(self.lost_host_seconds, self._declare_lost, [j.id for j in jobs])

    def terminate(self, job: Job, reason: str) -> None:
        if job.id in self._held:
            self._held[job.id] = self._held[job.id] or reason  # applied when the attempt is declared lost
            return
        super().terminate(job, reason)

    def _declare_lost(self, job_ids: list[str]) -> None:
        now = self.clock.now_ms()
        for job_id in job_ids:
            stop_reason = self._held.pop(job_id, None)
            job = self.jobs.get(job_id)
            if job is None or job.status not in (S.STARTING, S.RUNNING) or job.current is None:
                continue
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
