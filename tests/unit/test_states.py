"""The job state table: every (source, target) pair, through ``can_move`` and the event functions."""

from __future__ import annotations

import itertools
from collections.abc import Callable

import pytest

from openbatch.domain import transitions as t
from openbatch.domain.errors import InvalidTransition
from openbatch.domain.job import Attempt, Job
from openbatch.domain.states import ACTIVE, ALL_STATUSES, TERMINAL, TRANSITIONS, JobStatus, can_move, is_terminal
from tests.unit.builders import NOW, make_job

S = JobStatus

# Written out independently of ``states.TRANSITIONS`` (reference §4.2, §5.2).
ALLOWED: frozenset[tuple[JobStatus, JobStatus]] = frozenset(
    {
        (S.SUBMITTED, S.PENDING),  # T3: unfinished dependencies
        (S.SUBMITTED, S.RUNNABLE),  # T2
        (S.SUBMITTED, S.FAILED),  # T14/T18/T19
        (S.PENDING, S.RUNNABLE),  # T4
        (S.PENDING, S.SUCCEEDED),  # array parent: all children succeeded
        (S.PENDING, S.FAILED),  # T5/T14/T19
        (S.RUNNABLE, S.STARTING),  # T6
        (S.RUNNABLE, S.FAILED),  # T14/T17/T19
        (S.STARTING, S.RUNNING),  # T7
        (S.STARTING, S.RUNNABLE),  # T12 with retry
        (S.STARTING, S.FAILED),  # T12/T13/T15
        (S.RUNNING, S.SUCCEEDED),  # T8
        (S.RUNNING, S.RUNNABLE),  # T9
        (S.RUNNING, S.FAILED),  # T10/T11/T13/T15
    }
)

ALL_PAIRS = list(itertools.product(JobStatus, JobStatus))


def _event_for(target: JobStatus) -> Callable[[Job], JobStatus]:
    """The transition function whose destination is ``target``."""
    events: dict[JobStatus, Callable[[Job], JobStatus]] = {
        S.PENDING: t.wait_for_dependencies,
        S.RUNNABLE: lambda job: t.make_runnable(job, NOW),
        S.STARTING: lambda job: t.place(job, "ce", Attempt()),
        S.RUNNING: lambda job: t.start(job, NOW),
        S.SUCCEEDED: lambda job: t.succeed(job, NOW),
        S.FAILED: lambda job: t.fail(job, NOW, "boom"),
    }
    if target is S.SUBMITTED:
        return lambda job: t._move(job, S.SUBMITTED, None)
    return events[target]


def _pair_id(pair: tuple[JobStatus, JobStatus]) -> str:
    return f"{pair[0].value}->{pair[1].value}"


def test_table_matches_reference() -> None:
    table = {(source, target) for source, targets in TRANSITIONS.items() for target in targets}
    assert table == ALLOWED
    assert set(TRANSITIONS) == set(JobStatus)


@pytest.mark.parametrize("pair", ALL_PAIRS, ids=_pair_id)
def test_can_move(pair: tuple[JobStatus, JobStatus]) -> None:
    assert can_move(*pair) is (pair in ALLOWED)


@pytest.mark.parametrize("pair", ALL_PAIRS, ids=_pair_id)
def test_event_functions_follow_the_table(pair: tuple[JobStatus, JobStatus]) -> None:
    source, target = pair
    job = make_job().status(source).build()
    event = _event_for(target)
    if pair in ALLOWED:
        assert event(job) is source
        assert job.status is target
    else:
        with pytest.raises(InvalidTransition) as info:
            event(job)
        assert job.status is source
        assert (info.value.job_id, info.value.source, info.value.target) == (job.id, source.value, target.value)
        assert source.value in info.value.message and target.value in info.value.message


@pytest.mark.parametrize("source", list(JobStatus), ids=str)
@pytest.mark.parametrize("event", [t.cancel, t.terminate], ids=["cancel", "terminate"])
def test_cancel_and_terminate_follow_the_table(source: JobStatus, event: Callable[[Job, int, str], JobStatus]) -> None:
    job = make_job().status(source).build()
    if (source, S.FAILED) in ALLOWED:
        assert event(job, NOW, "stop") is source
        assert job.status is S.FAILED
    else:
        with pytest.raises(InvalidTransition):
            event(job, NOW, "stop")
        assert job.status is source


def test_terminal_set() -> None:
    assert TERMINAL == {S.SUCCEEDED, S.FAILED}
    assert ACTIVE == {S.STARTING, S.RUNNING}
    assert ALL_STATUSES == tuple(JobStatus)
    assert [s.value for s in JobStatus] == [
        "SUBMITTED",
        "PENDING",
        "RUNNABLE",
        "STARTING",
        "RUNNING",
        "SUCCEEDED",
        "FAILED",
    ]


@pytest.mark.parametrize("status", list(JobStatus), ids=str)
def test_terminal_states_have_no_way_out(status: JobStatus) -> None:
    assert is_terminal(status) is (status in TERMINAL)
    assert (not TRANSITIONS[status]) is is_terminal(status)


@pytest.mark.parametrize("status", sorted(set(JobStatus) - TERMINAL), ids=str)
def test_every_live_state_can_fail(status: JobStatus) -> None:
    assert can_move(status, S.FAILED)


@pytest.mark.parametrize("status", list(JobStatus), ids=str)
def test_no_self_loops(status: JobStatus) -> None:
    assert not can_move(status, status)
