"""FIFO job queues holding array children as index ranges: order, removal and lookups."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

from openbatch.domain.job import Attempt, Job
from openbatch.domain.states import JobStatus
from openbatch.scheduler.queues import FifoQueue
from tests.unit.builders import make_job

PARENT = "p"


class Rows:
    """Stands in for the store's rows of one array: children made live on request, counted."""

    def __init__(self) -> None:
        self.live: dict[str, Job] = {}
        self.reads = 0

    def child(self, index: int) -> Job:
        job = make_job().id(f"{PARENT}:{index}").status(JobStatus.RUNNABLE).build()
        job.parent_id, job.array_index = PARENT, index
        return job

    def materialise(self, parent_id: str, indices: Sequence[int]) -> list[Job]:
        self.reads += 1
        return [self.live.setdefault(f"{parent_id}:{i}", self.child(i)) for i in indices]


def queue_with(rows: Rows, *items: Job) -> FifoQueue:
    queue = FifoQueue(rows.materialise)
    for job in items:
        queue.push(job)
    return queue


def drain(queue: FifoQueue) -> list[str]:
    out = []
    while queue.peek() is not None:
        out.append(queue.pop().id)
    return out


def test_consecutive_children_join_one_run_and_come_out_in_order() -> None:
    rows = Rows()
    single = make_job().id("single").status(JobStatus.RUNNABLE).build()
    queue = queue_with(rows, *(rows.child(i) for i in range(1000)), single)
    assert len(queue) == 1001
    assert queue.children_in_runs() == 1000
    assert drain(queue) == [f"p:{i}" for i in range(1000)] + ["single"]
    assert rows.reads <= 1000 // 256 + 1  # one read per prefetch batch, not one per child
    assert len(queue) == 0


def test_a_child_removed_from_the_middle_splits_its_run() -> None:
    rows = Rows()
    queue = queue_with(rows, *(rows.child(i) for i in range(10)))
    queue.discard(rows.child(4))
    queue.discard(rows.child(0))
    assert not queue.holds(PARENT, 4) and queue.holds(PARENT, 5)
    assert len(queue) == 8
    assert list(queue.positions(100).as_dict()) == [f"p:{i}" for i in (1, 2, 3, 5, 6, 7, 8, 9)]
    assert drain(queue) == [f"p:{i}" for i in (1, 2, 3, 5, 6, 7, 8, 9)]


def test_a_retried_child_waits_as_a_job_of_its_own_at_the_tail() -> None:
    rows = Rows()
    retried = dataclasses.replace(rows.child(3), attempts=[Attempt(exit_code=1)])
    queue = queue_with(rows, rows.child(0), rows.child(1), retried, rows.child(7))
    assert not queue.parks(retried) and queue.parks(rows.child(7))
    assert drain(queue) == ["p:0", "p:1", "p:3", "p:7"]


def test_find_and_unpark_make_children_live() -> None:
    rows = Rows()
    queue = queue_with(rows, *(rows.child(i) for i in range(600)))
    found = queue.find(PARENT, 450)
    assert found is not None and found.id == "p:450" and len(queue) == 600  # it keeps its place
    assert queue.find(PARENT, 600) is None and queue.find("other", 1) is None
    everything = queue.unpark(PARENT)
    assert [j.array_index for j in everything] == list(range(600))
    assert len(queue) == 0 and queue.peek() is None


def test_iteration_and_positions_walk_runs_without_changing_them() -> None:
    rows = Rows()
    first = make_job().id("first").status(JobStatus.RUNNABLE).build()
    queue = queue_with(rows, first, *(rows.child(i) for i in range(300)))
    positions = queue.positions(5).as_dict()
    assert positions == {"first": 0, "p:0": 1, "p:1": 2, "p:2": 3, "p:3": 4}
    lazy = queue.positions(1000)
    assert lazy.get("p:2", -1) == 3 and lazy.get("p:999", -1) == -1 and lazy.get("first", -1) == 0
    assert [j.id for j in list(queue)[:3]] == ["first", "p:0", "p:1"]
    assert len(queue) == 301


def test_a_queue_without_a_materialiser_holds_every_child_as_a_job() -> None:
    rows = Rows()
    queue = FifoQueue()
    children = [rows.child(i) for i in range(3)]
    for child in children:
        queue.push(child)
    assert queue.children_in_runs() == 0 and not queue.parks(children[0])
    assert drain(queue) == ["p:0", "p:1", "p:2"]


def test_recovered_ranges_join_when_consecutive() -> None:
    rows = Rows()
    queue = FifoQueue(rows.materialise)
    queue.push_run(PARENT, 0, 100)
    queue.push_run(PARENT, 100, 150)
    queue.push_run(PARENT, 200, 210)
    assert len(queue) == 160
    assert drain(queue) == [f"p:{i}" for i in [*range(150), *range(200, 210)]]


def test_a_position_lookup_kept_past_a_change_of_the_queue_walks_it_afresh() -> None:
    rows = Rows()
    first = make_job().id("first").status(JobStatus.RUNNABLE).build()
    queue = queue_with(rows, first, *(rows.child(i) for i in range(5)))
    lookup = queue.positions(100)
    assert lookup.get("first", -1) == 0
    queue.discard(first)
    queue.push(make_job().id("last").status(JobStatus.RUNNABLE).build())
    assert lookup.get("last", -1) == 5
    assert lookup.get("p:0", -1) == 0
