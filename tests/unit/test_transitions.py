"""Event functions (what each one records) and the retry decision (reference §4.2, §5.4)."""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from openbatch.domain import transitions as t
from openbatch.domain.errors import InvalidTransition
from openbatch.domain.job import Attempt
from openbatch.domain.jobspec import ExitRule, RetryPolicy
from openbatch.domain.states import JobStatus
from tests.unit.builders import NOW, exit_rule, make_job, retry_policy

S = JobStatus
LATER = NOW + 5_000


# --- event functions ------------------------------------------------------------


def test_wait_for_dependencies() -> None:
    job = make_job().build()
    assert t.wait_for_dependencies(job) is S.SUBMITTED
    assert job.status is S.PENDING
    assert job.status_reason is None
    assert job.runnable_since is None


@pytest.mark.parametrize("source", [S.SUBMITTED, S.PENDING])
def test_make_runnable_records_when_and_clears_reason(source: JobStatus) -> None:
    job = make_job().status(source).reason("waiting").build()
    assert t.make_runnable(job, LATER) is source
    assert job.status is S.RUNNABLE
    assert job.runnable_since == LATER
    assert job.status_reason is None
    assert job.started_at is None and job.stopped_at is None


def test_place_opens_the_attempt_and_clears_the_queue_reason() -> None:
    job = make_job().status(S.RUNNABLE).reason("CAPACITY:INSUFFICIENT_INSTANCE_CAPACITY - busy").build()
    attempt = Attempt(task_id="task-1", log_stream="sleeper/default/task-1")
    assert t.place(job, "ce-a", attempt) is S.RUNNABLE
    assert job.status is S.STARTING
    assert job.compute_environment == "ce-a"
    assert job.current is attempt
    assert job.status_reason is None
    assert job.started_at is None
    assert job.attempt_number == 1


def test_start_stamps_job_and_attempt() -> None:
    job = make_job().status(S.STARTING).current(task_id="task-1").build()
    assert t.start(job, LATER) is S.STARTING
    assert job.status is S.RUNNING
    assert job.started_at == LATER
    assert job.current is not None and job.current.started_at == LATER


def test_start_without_a_current_attempt() -> None:
    job = make_job().status(S.STARTING).build()
    t.start(job, LATER)
    assert job.started_at == LATER
    assert job.current is None


def test_finish_attempt_closes_and_appends_the_current_attempt() -> None:
    job = make_job().status(S.RUNNING).started(NOW).current(started_at=NOW, task_id="task-1").build()
    current = job.current
    closed = t.finish_attempt(job, LATER, 3, "OutOfMemoryError", t.ESSENTIAL_CONTAINER_EXITED)
    assert closed is current
    assert job.attempts == [
        Attempt(
            started_at=NOW,
            stopped_at=LATER,
            exit_code=3,
            reason="OutOfMemoryError",
            status_reason=t.ESSENTIAL_CONTAINER_EXITED,
            task_id="task-1",
        )
    ]
    assert job.current is None
    assert job.status is S.RUNNING, "finish_attempt leaves the status to the caller"
    assert job.attempt_number == 1


def test_finish_attempt_without_current_records_a_fresh_attempt() -> None:
    job = make_job().status(S.STARTING).build()
    closed = t.finish_attempt(job, LATER, None, "CannotPullContainerError: nope", "Task failed to start")
    assert closed == Attempt(
        stopped_at=LATER, reason="CannotPullContainerError: nope", status_reason="Task failed to start"
    )
    assert job.attempts == [closed]


def test_succeed_defaults_to_the_aws_reason() -> None:
    job = make_job().status(S.RUNNING).started(NOW).build()
    assert t.succeed(job, LATER) is S.RUNNING
    assert job.status is S.SUCCEEDED
    assert job.status_reason == "Essential container in task exited"
    assert job.stopped_at == LATER


def test_succeed_without_reason_keeps_the_previous_one() -> None:
    parent = make_job().array(3).status(S.PENDING).reason("kept").build()
    t.succeed(parent, LATER, reason=None)
    assert parent.status is S.SUCCEEDED
    assert parent.status_reason == "kept"


def test_fail_of_a_job_that_ran_sets_stopped_at() -> None:
    job = make_job().status(S.RUNNING).started(NOW).build()
    assert t.fail(job, LATER, t.TIMEOUT_REASON) is S.RUNNING
    assert job.status is S.FAILED
    assert job.status_reason == "Job attempt duration exceeded timeout"
    assert job.stopped_at == LATER
    assert not job.is_cancelled and not job.is_terminated


def test_fail_after_an_attempt_that_never_started_sets_stopped_at() -> None:
    job = make_job().status(S.STARTING).attempt(stopped_at=NOW, status_reason="Task failed to start").build()
    t.fail(job, LATER, "Task failed to start")
    assert job.stopped_at == LATER
    assert job.started_at is None


@pytest.mark.parametrize("source", [S.SUBMITTED, S.PENDING, S.RUNNABLE])
def test_fail_of_a_job_that_never_ran_has_no_stopped_at(source: JobStatus) -> None:
    job = make_job().status(source).build()
    t.fail(job, LATER, t.DEPENDENT_JOB_FAILED)
    assert job.status is S.FAILED
    assert job.status_reason == "Dependent Job failed"
    assert job.stopped_at is None and job.started_at is None
    assert job.attempts == []


def test_array_child_failed_reason_text() -> None:
    assert t.ARRAY_CHILD_FAILED == "Array Child Job failed"


@pytest.mark.parametrize("source", [S.STARTING, S.RUNNING])
def test_retry_sends_the_job_back_to_runnable(source: JobStatus) -> None:
    job = (
        make_job()
        .status(source)
        .retry(attempts=3)
        .started(NOW)
        .attempt(started_at=NOW, stopped_at=LATER, exit_code=1)
        .reason("x")
        .build()
    )
    assert t.retry(job, LATER) is source
    assert job.status is S.RUNNABLE
    assert job.runnable_since == LATER
    assert job.status_reason is None
    assert len(job.attempts) == 1, "the finished attempt is kept"
    assert not job.is_cancelled and not job.is_terminated


@pytest.mark.parametrize("source", [S.SUBMITTED, S.PENDING, S.RUNNABLE])
def test_cancel(source: JobStatus) -> None:
    job = make_job().status(source).build()
    assert t.cancel(job, LATER, "no longer needed") is source
    assert job.status is S.FAILED
    assert job.status_reason == "no longer needed"
    assert job.is_cancelled and not job.is_terminated
    assert job.stopped_at is None


@pytest.mark.parametrize("source", [S.SUBMITTED, S.PENDING, S.RUNNABLE, S.STARTING, S.RUNNING])
def test_terminate(source: JobStatus) -> None:
    builder = make_job().status(source)
    if source is S.RUNNING:
        builder.started(NOW)
    job = builder.build()
    assert t.terminate(job, LATER, "operator stop") is source
    assert job.status is S.FAILED
    assert job.status_reason == "operator stop"
    assert job.is_terminated and not job.is_cancelled
    assert job.stopped_at == (LATER if source is S.RUNNING else None)


@pytest.mark.parametrize("source", [S.SUCCEEDED, S.FAILED])
def test_refused_cancel_or_terminate_leaves_the_job_untouched(source: JobStatus) -> None:
    job = make_job().status(source).build()
    with pytest.raises(InvalidTransition):
        t.cancel(job, LATER, "late")
    with pytest.raises(InvalidTransition):
        t.terminate(job, LATER, "late")
    assert not job.is_cancelled and not job.is_terminated


def test_a_retried_job_through_its_whole_life() -> None:
    job = make_job().retry(attempts=2).build()
    t.make_runnable(job, NOW)
    t.place(job, "ce-a", Attempt(task_id="t1"))
    t.start(job, NOW + 1)
    first = t.finish_attempt(job, NOW + 2, 1, None, t.ESSENTIAL_CONTAINER_EXITED)
    assert t.should_retry(job.spec.retry, len(job.attempts), first)
    t.retry(job, NOW + 3)
    t.place(job, "ce-b", Attempt(task_id="t2"))
    assert job.attempt_number == 2
    t.start(job, NOW + 4)
    second = t.finish_attempt(job, NOW + 5, 0, None, t.ESSENTIAL_CONTAINER_EXITED)
    t.succeed(job, NOW + 5)
    assert job.status is S.SUCCEEDED
    assert [a.task_id for a in job.attempts] == ["t1", "t2"]
    assert job.started_at == NOW + 4, "startedAt is the latest attempt's"
    assert job.stopped_at == NOW + 5
    assert job.compute_environment == "ce-b"
    assert second.exit_code == 0 and job.attempt_number == 2


# --- should_retry -----------------------------------------------------------------


@dataclass(frozen=True)
class RetryCase:
    id: str
    policy: RetryPolicy
    attempts_made: int
    attempt: Attempt
    expected: bool


def _exited(code: int | None = 1, reason: str | None = None, status_reason: str | None = None) -> Attempt:
    return Attempt(exit_code=code, reason=reason, status_reason=status_reason)


DOCS_EXAMPLE = retry_policy(
    5,
    exit_rule("RETRY", on_reason="AGENT"),
    exit_rule("RETRY", on_status_reason="Task failed to start"),
    exit_rule("EXIT", on_reason="*"),
)
BOTH = retry_policy(3, exit_rule("EXIT", on_exit_code="1", on_reason="OutOfMemory*"))
ALL_THREE = retry_policy(
    3, exit_rule("EXIT", on_exit_code="137", on_reason="OOM*", on_status_reason="Essential container*")
)

RETRY_CASES = [
    # attempts counts the total number of attempts, not the retries
    RetryCase("default-policy-never-retries", RetryPolicy(), 1, _exited(), False),
    RetryCase("3-attempts-after-1", retry_policy(3), 1, _exited(), True),
    RetryCase("3-attempts-after-2", retry_policy(3), 2, _exited(), True),
    RetryCase("3-attempts-after-3", retry_policy(3), 3, _exited(), False),
    RetryCase("10-attempts-after-9", retry_policy(10), 9, _exited(), True),
    RetryCase("10-attempts-after-10", retry_policy(10), 10, _exited(), False),
    RetryCase(
        "exhausted-beats-retry-rule",
        retry_policy(2, exit_rule("RETRY", on_exit_code="*")),
        2,
        _exited(),
        False,
    ),
    # no rule matches → RETRY
    RetryCase("no-rules", retry_policy(2), 1, _exited(code=255), True),
    RetryCase("no-rule-matches", retry_policy(2, exit_rule("EXIT", on_exit_code="137")), 1, _exited(1), True),
    # first matching rule wins
    RetryCase(
        "first-match-exit",
        retry_policy(3, exit_rule("EXIT", on_exit_code="1"), exit_rule("RETRY", on_exit_code="*")),
        1,
        _exited(1),
        False,
    ),
    RetryCase(
        "first-match-catch-all-retry",
        retry_policy(3, exit_rule("EXIT", on_exit_code="1"), exit_rule("RETRY", on_exit_code="*")),
        1,
        _exited(2),
        True,
    ),
    RetryCase(
        "catch-all-first-shadows-later",
        retry_policy(3, exit_rule("RETRY", on_exit_code="*"), exit_rule("EXIT", on_exit_code="1")),
        1,
        _exited(1),
        True,
    ),
    RetryCase(
        "first-match-exit-catch-all",
        retry_policy(3, exit_rule("RETRY", on_exit_code="1"), exit_rule("EXIT", on_exit_code="*")),
        1,
        _exited(2),
        False,
    ),
    # onExitCode: exact, or prefix with a trailing *
    RetryCase("exit-exact", retry_policy(3, exit_rule("EXIT", on_exit_code="137")), 1, _exited(137), False),
    RetryCase("exit-exact-not-prefix", retry_policy(3, exit_rule("EXIT", on_exit_code="1")), 1, _exited(137), True),
    RetryCase("exit-zero", retry_policy(3, exit_rule("EXIT", on_exit_code="0")), 1, _exited(0), False),
    RetryCase("exit-glob-1", retry_policy(3, exit_rule("EXIT", on_exit_code="1*")), 1, _exited(1), False),
    RetryCase("exit-glob-10", retry_policy(3, exit_rule("EXIT", on_exit_code="1*")), 1, _exited(10), False),
    RetryCase("exit-glob-137", retry_policy(3, exit_rule("EXIT", on_exit_code="1*")), 1, _exited(137), False),
    RetryCase("exit-glob-not-21", retry_policy(3, exit_rule("EXIT", on_exit_code="1*")), 1, _exited(21), True),
    RetryCase("exit-star-absent", retry_policy(3, exit_rule("EXIT", on_exit_code="*")), 1, _exited(None), False),
    RetryCase("exit-exact-absent", retry_policy(3, exit_rule("EXIT", on_exit_code="1")), 1, _exited(None), True),
    # onReason / onStatusReason
    RetryCase(
        "reason-glob",
        retry_policy(3, exit_rule("EXIT", on_reason="CannotPull*")),
        1,
        _exited(None, reason="CannotPullContainerError: pull access denied"),
        False,
    ),
    RetryCase(
        "reason-exact-needs-whole-string",
        retry_policy(3, exit_rule("EXIT", on_reason="CannotPull")),
        1,
        _exited(None, reason="CannotPullContainerError: pull access denied"),
        True,
    ),
    RetryCase(
        "reason-exact-vs-absent",
        retry_policy(3, exit_rule("EXIT", on_reason="AGENT")),
        1,
        _exited(1, reason=None),
        True,
    ),
    RetryCase(
        "status-reason-spot-reclaim",
        retry_policy(3, exit_rule("RETRY", on_status_reason="Host EC2*"), exit_rule("EXIT", on_reason="*")),
        1,
        _exited(None, status_reason="Host EC2 (instance i-0123456789abcdef0) terminated."),
        True,
    ),
    RetryCase(
        "status-reason-other-falls-to-exit",
        retry_policy(3, exit_rule("RETRY", on_status_reason="Host EC2*"), exit_rule("EXIT", on_reason="*")),
        1,
        _exited(1, status_reason="Essential container in task exited"),
        False,
    ),
    # the documented example: RETRY on AGENT / "Task failed to start", else EXIT via a bare "*"
    RetryCase("docs-agent", DOCS_EXAMPLE, 1, _exited(None, reason="AGENT"), True),
    RetryCase("docs-task-failed-to-start", DOCS_EXAMPLE, 1, _exited(None, status_reason="Task failed to start"), True),
    RetryCase("docs-catch-all-absent-reason", DOCS_EXAMPLE, 1, _exited(1), False),
    RetryCase("docs-catch-all-other-reason", DOCS_EXAMPLE, 1, _exited(1, reason="OutOfMemoryError"), False),
    # several conditions in one rule must all match
    RetryCase("and-both-match", BOTH, 1, _exited(1, reason="OutOfMemoryError: killed"), False),
    RetryCase("and-reason-differs", BOTH, 1, _exited(1, reason="Other"), True),
    RetryCase("and-code-differs", BOTH, 1, _exited(2, reason="OutOfMemoryError: killed"), True),
    RetryCase("and-reason-absent", BOTH, 1, _exited(1), True),
    RetryCase(
        "and-three-match",
        ALL_THREE,
        1,
        _exited(137, reason="OOMKilled", status_reason="Essential container in task exited"),
        False,
    ),
    RetryCase(
        "and-three-status-differs",
        ALL_THREE,
        1,
        _exited(137, reason="OOMKilled", status_reason="Task failed to start"),
        True,
    ),
]


@pytest.mark.parametrize("case", RETRY_CASES, ids=lambda c: c.id)
def test_should_retry(case: RetryCase) -> None:
    assert t.should_retry(case.policy, case.attempts_made, case.attempt) is case.expected


@pytest.mark.parametrize(
    ("action", "expected"),
    [("RETRY", True), ("retry", True), ("Retry", True), ("EXIT", False), ("exit", False), ("Exit", False)],
)
def test_action_is_case_insensitive(action: str, expected: bool) -> None:
    # The rule matches exit code 1; the catch-all behind it does the opposite of ``action``.
    opposite = "EXIT" if expected else "RETRY"
    policy = retry_policy(3, exit_rule(action, on_exit_code="1"), exit_rule(opposite, on_exit_code="*"))
    assert t.should_retry(policy, 1, _exited(1)) is expected
    assert t.should_retry(policy, 1, _exited(2)) is not expected


def test_retry_policy_from_wire() -> None:
    assert RetryPolicy.from_wire(None) == RetryPolicy(attempts=1, rules=())
    assert RetryPolicy.from_wire({}) == RetryPolicy(attempts=1, rules=())
    assert RetryPolicy.from_wire({"attempts": 4}) == RetryPolicy(attempts=4)
    policy = RetryPolicy.from_wire(
        {
            "attempts": 2,
            "evaluateOnExit": [
                {"action": "retry", "onStatusReason": "Host EC2*"},
                {"action": "Exit", "onReason": "*", "onExitCode": "1*"},
            ],
        }
    )
    assert policy == RetryPolicy(
        attempts=2,
        rules=(
            ExitRule(action="RETRY", on_status_reason="Host EC2*"),
            ExitRule(action="EXIT", on_reason="*", on_exit_code="1*"),
        ),
    )
