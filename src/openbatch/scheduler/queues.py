"""What waits: the RUNNABLE jobs of one job queue, in dispatch order.

Kept apart from ``capacity`` (what is in use). A queue only orders; the
dispatcher asks for the head, tries to place it, and pops it on success.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Iterator
from typing import Protocol

from openbatch.domain.job import Job


class RunnableQueue(Protocol):
    def push(self, job: Job) -> None:
        """Add a job that just became RUNNABLE."""
        ...

    def discard(self, job: Job) -> None:
        """Remove a job that left RUNNABLE other than by dispatch (cancel, terminate)."""
        ...

    def peek(self) -> Job | None:
        """The job to dispatch next, or ``None`` if empty."""
        ...

    def pop(self) -> Job:
        """Remove and return the job ``peek`` returned; it is being dispatched."""
        ...

    def __len__(self) -> int: ...

    def __iter__(self) -> Iterator[Job]:
        """Every waiting job in dispatch order (for snapshots; may be O(n)). Do not change the queue
        while iterating."""
        ...


class FifoQueue:
    """First in, first out by the time a job became RUNNABLE (AWS's FIFO job queues).

    An ``OrderedDict`` gives O(1) push, pop at the head and removal from the
    middle (cancel), which a heap or a list does not.
    """

    def __init__(self) -> None:
        self._jobs: OrderedDict[str, Job] = OrderedDict()

    def push(self, job: Job) -> None:
        self._jobs[job.id] = job

    def discard(self, job: Job) -> None:
        self._jobs.pop(job.id, None)

    def peek(self) -> Job | None:
        for job in self._jobs.values():
            return job
        return None

    def pop(self) -> Job:
        return self._jobs.popitem(last=False)[1]

    def positions(self, limit: int) -> dict[str, int]:
        """Job id → how many jobs would be dispatched before it, for the first ``limit`` jobs."""
        return {job_id: position for position, job_id in zip(range(limit), self._jobs, strict=False)}

    def __len__(self) -> int:
        return len(self._jobs)

    def __iter__(self) -> Iterator[Job]:
        # No copy: GetJobQueueSnapshot reads only the first 100 of what may be 10,000 jobs.
        return iter(self._jobs.values())
