"""The job state table: every legal move on one screen."""

from __future__ import annotations

from collections.abc import Mapping
from enum import StrEnum


class JobStatus(StrEnum):
    SUBMITTED = "SUBMITTED"
    PENDING = "PENDING"
    RUNNABLE = "RUNNABLE"
    STARTING = "STARTING"
    RUNNING = "RUNNING"
    SUCCEEDED = "SUCCEEDED"
    FAILED = "FAILED"


S = JobStatus

TRANSITIONS: Mapping[JobStatus, frozenset[JobStatus]] = {
    S.SUBMITTED: frozenset({S.PENDING, S.RUNNABLE, S.FAILED}),
    # PENDING → SUCCEEDED only for array parents, whose children did the work.
    S.PENDING: frozenset({S.RUNNABLE, S.SUCCEEDED, S.FAILED}),
    S.RUNNABLE: frozenset({S.STARTING, S.FAILED}),
    # STARTING/RUNNING → RUNNABLE is a retry after a failed attempt.
    S.STARTING: frozenset({S.RUNNING, S.RUNNABLE, S.FAILED}),
    S.RUNNING: frozenset({S.SUCCEEDED, S.FAILED, S.RUNNABLE}),
    S.SUCCEEDED: frozenset(),
    S.FAILED: frozenset(),
}

TERMINAL = frozenset({S.SUCCEEDED, S.FAILED})
ACTIVE = frozenset({S.STARTING, S.RUNNING})
ALL_STATUSES = tuple(JobStatus)


def is_terminal(status: JobStatus) -> bool:
    return status in TERMINAL


def can_move(source: JobStatus, target: JobStatus) -> bool:
    return target in TRANSITIONS[source]
