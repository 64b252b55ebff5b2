"""What waits: the RUNNABLE jobs of one job queue, in dispatch order.

Kept apart from ``capacity`` (what is in use). A queue only orders; the
dispatcher asks for the head, tries to place it, and pops it on success.
"""

from __future__ import annotations

import itertools
from collections import OrderedDict, deque
from collections.abc import Callable, Iterator, Sequence
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


class ChildRun:
    """Array children that became RUNNABLE together and have not been dispatched: kept as index
    ranges of one parent instead of one ``Job`` each, so a queue of a million children holds a few
    ranges. A child is made a ``Job`` again (from its stored row) when it reaches the head of the
    queue or is asked for by id."""

    __slots__ = ("ahead", "parent_id", "ranges")

    def __init__(self, parent_id: str, first: int, stop: int) -> None:
        self.parent_id = parent_id
        self.ranges: deque[range] = deque([range(first, stop)])
        self.ahead: deque[Job] = deque()
        """The first children, already live, in index order (a prefetch: one store read per batch)."""

    def __len__(self) -> int:
        return sum(len(r) for r in self.ranges)

    def __contains__(self, index: int) -> bool:
        return any(index in r for r in self.ranges)

    def indices(self) -> Iterator[int]:
        for r in self.ranges:
            yield from r

    def first(self) -> int:
        return self.ranges[0][0]

    def extend(self, index: int) -> bool:
        """Add ``index`` if it follows the last one (children are pushed in index order)."""
        last = self.ranges[-1]
        if index != last.stop:
            return False
        self.ranges[-1] = range(last.start, index + 1)
        return True

    def pop_first(self) -> None:
        if self.ahead and self.ahead[0].array_index == self.ranges[0][0]:
            self.ahead.popleft()
        head = self.ranges[0]
        if len(head) > 1:
            self.ranges[0] = range(head.start + 1, head.stop)
        else:
            self.ranges.popleft()

    def remove(self, index: int) -> bool:
        for job in self.ahead:
            if job.array_index == index:
                self.ahead.remove(job)
                break
        for position, r in enumerate(self.ranges):
            if index in r:
                parts = [p for p in (range(r.start, index), range(index + 1, r.stop)) if len(p)]
                del self.ranges[position]
                for part in reversed(parts):
                    self.ranges.insert(position, part)
                return True
        return False


Materialise = Callable[[str, Sequence[int]], list[Job]]
"""Parent id and child indices → those children as live jobs (kept by the engine until dispatched)."""

_PREFETCH = 256
"""Children made live at once when a run reaches the head: one store read per this many dispatches."""


def parkable(job: Job) -> bool:
    """A child can wait as part of a range when nothing sets it apart from its siblings: it has not
    run yet (a retried child keeps its own place), and it needs no consumable resource (whose users
    are listed from live jobs)."""
    return (
        job.parent_id is not None
        and job.array_index is not None
        and not job.attempts
        and job.current is None
        and not job.spec.resources.consumables
    )


class FifoQueue:
    """First in, first out by the time a job became RUNNABLE (AWS's FIFO job queues).

    An ``OrderedDict`` gives O(1) push, pop at the head and removal from the
    middle (cancel), which a heap or a list does not. Array children that become
    RUNNABLE one after another join a ``ChildRun`` (see ``parkable``) when the queue
    was given a ``materialise`` function.
    """

    def __init__(self, materialise: Materialise | None = None) -> None:
        self._entries: OrderedDict[str, Job | ChildRun] = OrderedDict()
        self._materialise = materialise
        self._runs_of: dict[str, list[str]] = {}
        """Parent id → keys of its runs in this queue."""
        self._tail_run: ChildRun | None = None
        self._run_seq = 0
        self._size = 0

    # --- runs ---------------------------------------------------------------------------

    def parks(self, job: Job) -> bool:
        """Whether ``job`` waits here as part of a run (its ``Job`` need not stay in memory)."""
        if self._materialise is None or not parkable(job) or job.parent_id is None or job.array_index is None:
            return False
        return self.holds(job.parent_id, job.array_index)

    def _runs(self, parent_id: str) -> list[ChildRun]:
        return [entry for key in self._runs_of.get(parent_id, ()) if isinstance(entry := self._entries[key], ChildRun)]

    def push_run(self, parent_id: str, first: int, stop: int) -> None:
        """Children ``first`` … ``stop - 1`` of ``parent_id`` (recovery: their rows say RUNNABLE)."""
        tail = self._tail_run
        if tail is not None and tail.parent_id == parent_id and tail.ranges[-1].stop == first:
            tail.ranges[-1] = range(tail.ranges[-1].start, stop)
        else:
            self._new_run(parent_id, first, stop)
        self._size += stop - first

    def _new_run(self, parent_id: str, first: int, stop: int) -> None:
        self._run_seq += 1
        key = f"\0run{self._run_seq}"
        run = self._entries[key] = ChildRun(parent_id, first, stop)
        self._runs_of.setdefault(parent_id, []).append(key)
        self._tail_run = run

    def _drop_run(self, key: str, run: ChildRun) -> None:
        del self._entries[key]
        keys = self._runs_of[run.parent_id]
        keys.remove(key)
        if not keys:
            del self._runs_of[run.parent_id]
        if self._tail_run is run:
            self._tail_run = None

    def unpark(self, parent_id: str) -> list[Job]:
        """Every child of ``parent_id`` waiting in a run, live, taken out of the queue (cancel of the array)."""
        keys = list(self._runs_of.get(parent_id, ()))
        jobs: list[Job] = []
        for key in keys:
            run = self._entries[key]
            assert isinstance(run, ChildRun)
            indices = list(run.indices())
            self._drop_run(key, run)
            self._size -= len(indices)
            if self._materialise is not None:
                for start in range(0, len(indices), 500):
                    jobs.extend(self._materialise(parent_id, indices[start : start + 500]))
        return jobs

    def children_in_runs(self) -> int:
        """Children waiting as index ranges (those made live ahead of dispatch included)."""
        return sum(len(entry) for entry in self._entries.values() if isinstance(entry, ChildRun))

    def holds(self, parent_id: str, index: int) -> bool:
        return any(index in run for run in self._runs(parent_id))

    def find(self, parent_id: str, index: int) -> Job | None:
        """Child ``index`` of ``parent_id`` if it waits in a run here, made live (it keeps its place)."""
        if self._materialise is None or not self.holds(parent_id, index):
            return None
        found = self._materialise(parent_id, [index])
        return found[0] if found else None

    # --- the queue ------------------------------------------------------------------------

    def push(self, job: Job) -> None:
        if self._materialise is not None and parkable(job):
            assert job.parent_id is not None and job.array_index is not None
            run = self._tail_run
            if run is None or run.parent_id != job.parent_id or not run.extend(job.array_index):
                self._new_run(job.parent_id, job.array_index, job.array_index + 1)
            self._size += 1
            return
        self._entries[job.id] = job
        self._tail_run = None
        self._size += 1

    def discard(self, job: Job) -> None:
        if self._entries.pop(job.id, None) is not None:
            self._size -= 1
            return
        if job.parent_id is None or job.array_index is None:
            return
        for key in list(self._runs_of.get(job.parent_id, ())):
            run = self._entries[key]
            assert isinstance(run, ChildRun)
            if run.remove(job.array_index):
                self._size -= 1
                if not run.ranges:
                    self._drop_run(key, run)
                return

    def peek(self) -> Job | None:
        while self._entries:
            key, entry = next(iter(self._entries.items()))
            if isinstance(entry, Job):
                return entry
            head = entry.first()
            if entry.ahead and entry.ahead[0].array_index == head:
                return entry.ahead[0]
            assert self._materialise is not None
            entry.ahead = deque(self._materialise(entry.parent_id, list(itertools.islice(entry.indices(), _PREFETCH))))
            if entry.ahead and entry.ahead[0].array_index == head:
                return entry.ahead[0]
            # The head child's row is gone or no longer RUNNABLE (it cannot be: every change goes
            # through the engine, which takes a child out of its run first): drop it, not the queue.
            entry.pop_first()
            self._size -= 1
            if not entry.ranges:
                self._drop_run(key, entry)
        return None

    def pop(self) -> Job:
        job = self.peek()
        assert job is not None
        key, entry = next(iter(self._entries.items()))
        if isinstance(entry, Job):
            del self._entries[key]
        else:
            entry.pop_first()
            if not entry.ranges:
                self._drop_run(key, entry)
        self._size -= 1
        return job

    def positions(self, limit: int) -> Positions:
        """How many jobs would be dispatched before a job, for the first ``limit`` jobs."""
        return Positions(self, limit)

    def __len__(self) -> int:
        return self._size

    def __iter__(self) -> Iterator[Job]:
        # No copy: GetJobQueueSnapshot reads only the first 100 of what may be 10,000 jobs. Children
        # in runs are made live in batches as the iteration reaches them.
        for entry in self._entries.values():
            if isinstance(entry, Job):
                yield entry
                continue
            assert self._materialise is not None
            indices = iter(list(entry.indices()))
            while batch := list(itertools.islice(indices, _PREFETCH)):
                yield from self._materialise(entry.parent_id, batch)


class Positions:
    """Positions in a FIFO queue, found by walking it only as far as the jobs asked about, and a run
    of children at a time: a page of the first hundred jobs never walks the ten thousand behind them,
    and a job behind a million queued children steps over them in a few ranges."""

    def __init__(self, queue: FifoQueue, limit: int) -> None:
        self._queue = queue
        self._limit = limit
        self._restart()

    def _restart(self) -> None:
        # The queue's own entries (jobs and runs, not children), not a copy: a lookup is used within one
        # call, and one kept past it starts over if the queue changed meanwhile (see ``get``).
        self._entries = iter(self._queue._entries.values())
        self._count = 0
        self._seen: dict[str, int] = {}
        self._runs: list[tuple[int, ChildRun]] = []
        """Runs walked so far, each with the position of its first child."""

    def get(self, job_id: str, default: int) -> int:
        try:
            return self._get(job_id, default)
        except RuntimeError:  # the queue changed since this lookup began walking it
            self._restart()
            return self._get(job_id, default)

    def _get(self, job_id: str, default: int) -> int:
        found = self._seen.get(job_id)
        if found is None:
            found = self._in_runs(job_id, self._runs)
        while found is None and self._count < self._limit:
            entry = next(self._entries, None)
            if entry is None:
                break
            if isinstance(entry, ChildRun):
                self._runs.append((self._count, entry))
                found = self._in_runs(job_id, self._runs[-1:])
                self._count += len(entry)
            else:
                self._seen[entry.id] = self._count
                found = self._count if entry.id == job_id else None
                self._count += 1
        return found if found is not None and found < self._limit else default

    @staticmethod
    def _in_runs(job_id: str, runs: list[tuple[int, ChildRun]]) -> int | None:
        parent_id, sep, index_text = job_id.rpartition(":")
        if not sep or not index_text.isdigit():
            return None
        index = int(index_text)
        for first, run in runs:
            if run.parent_id != parent_id:
                continue
            offset = first
            for r in run.ranges:
                if index in r:
                    return offset + index - r.start
                offset += len(r)
        return None

    def as_dict(self) -> dict[str, int]:
        """Every job id up to the limit → its position (walks the rest)."""
        self.get("", 0)
        positions = dict(self._seen)
        for first, run in self._runs:
            for offset, index in enumerate(run.indices()):
                positions[f"{run.parent_id}:{index}"] = first + offset
        return {job_id: p for job_id, p in sorted(positions.items(), key=lambda item: item[1]) if p < self._limit}
