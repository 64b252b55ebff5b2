"""Job transitions, named for the event. Each checks the state table and records the reason.

Policy inputs (attempts left, timeout, exit-rule match) are decided by the
caller and passed in, so these functions stay pure bookkeeping.
"""

from __future__ import annotations

from openbatch.domain.errors import InvalidTransition
from openbatch.domain.job import Attempt, Job
from openbatch.domain.jobspec import ExitRule, RetryPolicy
from openbatch.domain.states import JobStatus, can_move

ESSENTIAL_CONTAINER_EXITED = "Essential container in task exited"
TIMEOUT_REASON = "Job attempt duration exceeded timeout"
DEPENDENT_JOB_FAILED = "Dependent Job failed"
ARRAY_CHILD_FAILED = "Array Child Job failed"


def _move(job: Job, target: JobStatus, reason: str | None) -> JobStatus:
    source = job.status
    if not can_move(source, target):
        raise InvalidTransition(job.id, source.value, target.value)
    job.status = target
    if reason is not None:
        job.status_reason = reason
    return source


def wait_for_dependencies(job: Job) -> JobStatus:
    return _move(job, JobStatus.PENDING, None)


def make_runnable(job: Job, now: int) -> JobStatus:
    source = _move(job, JobStatus.RUNNABLE, None)
    job.status_reason = None
    job.runnable_since = now
    return source


def place(job: Job, compute_environment: str, attempt: Attempt) -> JobStatus:
    source = _move(job, JobStatus.STARTING, None)
    job.compute_environment = compute_environment
    job.current = attempt
    job.status_reason = None
    return source


def start(job: Job, now: int) -> JobStatus:
    source = _move(job, JobStatus.RUNNING, None)
    job.started_at = now
    if job.current is not None:
        job.current.started_at = now
    return source


def finish_attempt(job: Job, now: int, exit_code: int | None, reason: str | None, status_reason: str) -> Attempt:
    """Close the current attempt and append it to ``attempts``; the status is decided next."""
    attempt = job.current or Attempt()
    attempt.stopped_at = now
    attempt.exit_code = exit_code
    attempt.reason = reason
    attempt.status_reason = status_reason
    job.attempts.append(attempt)
    job.current = None
    return attempt


def succeed(job: Job, now: int, reason: str | None = ESSENTIAL_CONTAINER_EXITED) -> JobStatus:
    source = _move(job, JobStatus.SUCCEEDED, reason)
    job.stopped_at = now
    return source


def fail(job: Job, now: int, reason: str) -> JobStatus:
    source = _move(job, JobStatus.FAILED, reason)
    if job.started_at is not None or job.attempts:
        job.stopped_at = now
    return source


def retry(job: Job, now: int) -> JobStatus:
    """Send the job back to RUNNABLE for its next attempt."""
    return make_runnable(job, now)


def cancel(job: Job, now: int, reason: str) -> JobStatus:
    source = fail(job, now, reason)
    job.is_cancelled = True
    return source


def terminate(job: Job, now: int, reason: str) -> JobStatus:
    source = fail(job, now, reason)
    job.is_terminated = True
    return source


def should_retry(policy: RetryPolicy, attempts_made: int, attempt: Attempt) -> bool:
    """AWS retry rules: attempts is the total count; first matching rule wins; no match → retry."""
    if attempts_made >= policy.attempts:
        return False
    exit_code = None if attempt.exit_code is None else str(attempt.exit_code)
    for rule in policy.rules:
        if _rule_matches(rule, attempt.status_reason, attempt.reason, exit_code):
            return rule.action == "RETRY"
    return True


def _rule_matches(rule: ExitRule, status_reason: str | None, reason: str | None, exit_code: str | None) -> bool:
    return (
        _glob(rule.on_status_reason, status_reason)
        and _glob(rule.on_reason, reason)
        and _glob(rule.on_exit_code, exit_code)
    )


def _glob(pattern: str | None, value: str | None) -> bool:
    """Exact match, or prefix match for a trailing ``*``; an absent pattern matches anything."""
    if pattern is None:
        return True
    value = value or ""
    if pattern.endswith("*"):
        return value.startswith(pattern[:-1])
    return value == pattern
