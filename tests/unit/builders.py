"""Small fluent builders for domain objects used by the unit tests.

``make_job().status(JobStatus.RUNNING).retry(attempts=3).build()`` gives a ``Job``;
``.spec()`` gives just its ``JobSpec``. Every value has a dull, valid default so a
test only states what it is about.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from openbatch.domain.job import STATUS_SUMMARY_KEYS, Attempt, Job, JobSpec
from openbatch.domain.jobspec import Resources, RetryPolicy
from openbatch.domain.resources import ComputeEnvironment, JobQueue, SchedulingPolicy
from openbatch.domain.states import JobStatus
from openbatch.service import request_models as s
from openbatch.store.base import JobDefinitionRecord

REGION = "us-east-1"
ACCOUNT = "123456789012"
NOW = 1_700_000_000_000
"""A fixed epoch-milliseconds clock for tests."""

JOB_ID = "876da822-4198-45f2-a252-6cea32512ea8"
DEFINITION_ARN = f"arn:aws:batch:{REGION}:{ACCOUNT}:job-definition/sleeper:1"


def exit_rule(
    action: str,
    *,
    on_exit_code: str | None = None,
    on_reason: str | None = None,
    on_status_reason: str | None = None,
) -> dict[str, str]:
    """One ``evaluateOnExit`` entry in wire form."""
    rule = {"action": action}
    if on_exit_code is not None:
        rule["onExitCode"] = on_exit_code
    if on_reason is not None:
        rule["onReason"] = on_reason
    if on_status_reason is not None:
        rule["onStatusReason"] = on_status_reason
    return rule


def retry_policy(attempts: int = 1, *rules: dict[str, str]) -> RetryPolicy:
    wire: dict[str, Any] = {"attempts": attempts}
    if rules:
        wire["evaluateOnExit"] = list(rules)
    return RetryPolicy.from_wire(wire)


class JobBuilder:
    """Builds a ``Job`` (and its ``JobSpec``) one fact at a time."""

    def __init__(self) -> None:
        self._id = JOB_ID
        self._status = JobStatus.SUBMITTED
        self._created_at = NOW
        self._job_name = "sleeper-job"
        self._queue = "default-queue"
        self._command: tuple[str, ...] = ("sleep", "1")
        self._environment: dict[str, str] = {}
        self._resources = Resources(vcpus=1.0, memory_mib=512, gpus=0)
        self._retry_wire: dict[str, Any] | None = None
        self._timeout: int | None = None
        self._parameters: dict[str, str] = {}
        self._share: str | None = None
        self._priority: int | None = None
        self._depends_on: tuple[dict[str, str], ...] = ()
        self._array_size: int | None = None
        self._fields: dict[str, Any] = {}

    # --- the spec -------------------------------------------------------------

    def named(self, job_name: str) -> JobBuilder:
        self._job_name = job_name
        return self

    def queue(self, queue: str) -> JobBuilder:
        self._queue = queue
        return self

    def command(self, *args: str) -> JobBuilder:
        self._command = args
        return self

    def env(self, **variables: str) -> JobBuilder:
        self._environment.update(variables)
        return self

    def resources(self, *, vcpus: float = 1.0, memory: int | None = 512, gpus: int = 0) -> JobBuilder:
        self._resources = Resources(vcpus=vcpus, memory_mib=memory, gpus=gpus)
        return self

    def retry(self, *, attempts: int = 1, rules: Sequence[dict[str, str]] = ()) -> JobBuilder:
        wire: dict[str, Any] = {"attempts": attempts}
        if rules:
            wire["evaluateOnExit"] = list(rules)
        self._retry_wire = wire
        return self

    def timeout(self, seconds: int) -> JobBuilder:
        self._timeout = seconds
        return self

    def params(self, **parameters: str) -> JobBuilder:
        self._parameters.update(parameters)
        return self

    def share(self, identifier: str, priority: int | None = None) -> JobBuilder:
        self._share = identifier
        self._priority = priority
        return self

    def depends_on(self, *entries: dict[str, str]) -> JobBuilder:
        self._depends_on = tuple(entries)
        return self

    def array(self, size: int, *, summary: Mapping[str, int] | None = None, updated_at: int = NOW) -> JobBuilder:
        """An array parent: the spec carries the size, the job a status summary."""
        self._array_size = size
        counts = dict.fromkeys(STATUS_SUMMARY_KEYS, 0)
        counts.update(summary if summary is not None else {JobStatus.PENDING.value: size})
        self._fields["status_summary"] = counts
        self._fields["summary_updated_at"] = updated_at
        return self

    # --- the job --------------------------------------------------------------

    def id(self, job_id: str) -> JobBuilder:
        self._id = job_id
        return self

    def status(self, status: JobStatus) -> JobBuilder:
        self._status = status
        return self

    def created(self, at: int) -> JobBuilder:
        self._created_at = at
        return self

    def child_of(self, parent_id: str, index: int, *, size: int = 2) -> JobBuilder:
        """An array child: id ``parent:index``, sharing an array spec of ``size``."""
        self._id = f"{parent_id}:{index}"
        self._array_size = size
        self._fields.update(parent_id=parent_id, array_index=index)
        return self

    def deps(self, *job_ids: str) -> JobBuilder:
        self._fields["deps"] = job_ids
        return self

    def reason(self, status_reason: str) -> JobBuilder:
        self._fields["status_reason"] = status_reason
        return self

    def started(self, at: int) -> JobBuilder:
        self._fields["started_at"] = at
        return self

    def stopped(self, at: int) -> JobBuilder:
        self._fields["stopped_at"] = at
        return self

    def tags(self, **tags: str) -> JobBuilder:
        self._fields["tags"] = dict(tags)
        return self

    def attempt(self, **fields: Any) -> JobBuilder:
        """Append a finished attempt."""
        self._fields.setdefault("attempts", []).append(Attempt(**fields))
        return self

    def current(self, **fields: Any) -> JobBuilder:
        """The attempt in STARTING/RUNNING."""
        self._fields["current"] = Attempt(**fields)
        return self

    def placed_on(self, compute_environment: str) -> JobBuilder:
        self._fields["compute_environment"] = compute_environment
        return self

    def runnable_since(self, at: int) -> JobBuilder:
        self._fields["runnable_since"] = at
        return self

    def cancelled(self, pending_reason: str | None = None) -> JobBuilder:
        self._fields["is_cancelled"] = True
        if pending_reason is not None:
            self._fields["cancel_reason"] = pending_reason
        return self

    def terminated(self) -> JobBuilder:
        self._fields["is_terminated"] = True
        return self

    # --- results --------------------------------------------------------------

    def spec(self) -> JobSpec:
        memory = self._resources.memory_mib
        requirements = [{"type": "VCPU", "value": f"{self._resources.vcpus:g}"}]
        if memory is not None:
            requirements.append({"type": "MEMORY", "value": str(memory)})
        if self._resources.gpus:
            requirements.append({"type": "GPU", "value": str(self._resources.gpus)})
        container: dict[str, Any] = {
            "image": "busybox",
            "command": list(self._command),
            "environment": [{"name": k, "value": v} for k, v in self._environment.items()],
            "resourceRequirements": requirements,
        }
        return JobSpec(
            job_name=self._job_name,
            queue=self._queue,
            definition_arn=DEFINITION_ARN,
            definition_name="sleeper",
            container=container,
            command=self._command,
            environment=dict(self._environment),
            resources=self._resources,
            retry=RetryPolicy.from_wire(self._retry_wire),
            retry_wire=self._retry_wire,
            timeout_seconds=self._timeout,
            parameters=dict(self._parameters),
            propagate_tags=False,
            platform_capabilities=("EC2",),
            scheduling_priority=self._priority,
            share_identifier=self._share,
            depends_on=self._depends_on,
            array_size=self._array_size,
        )

    def build(self) -> Job:
        fields = dict(self._fields)
        if "attempts" in fields:
            fields["attempts"] = list(fields["attempts"])
        return Job(id=self._id, spec=self.spec(), status=self._status, created_at=self._created_at, **fields)


def make_job() -> JobBuilder:
    return JobBuilder()


# --- requests and resources ---------------------------------------------------


def make_submit(**members: Any) -> s.SubmitJob:
    """A SubmitJob request; ``members`` are wire members that replace or add to the defaults."""
    body: dict[str, Any] = {"jobName": "sleeper-job", "jobQueue": "default-queue", "jobDefinition": "sleeper"}
    body.update(members)
    return s.SubmitJob.model_validate(body)


def make_definition(
    *,
    command: Sequence[str] | None = ("sleep", "1"),
    container: Mapping[str, Any] | None = None,
    **body: Any,
) -> JobDefinitionRecord:
    """An ACTIVE container job definition ``sleeper:1``; ``container`` replaces ``containerProperties``."""
    if container is None:
        props: dict[str, Any] = {
            "image": "busybox",
            "resourceRequirements": [{"type": "VCPU", "value": "1"}, {"type": "MEMORY", "value": "512"}],
        }
        if command is not None:
            props["command"] = list(command)
    else:
        props = dict(container)
    full: dict[str, Any] = {
        "jobDefinitionName": "sleeper",
        "jobDefinitionArn": DEFINITION_ARN,
        "revision": 1,
        "status": "ACTIVE",
        "type": "container",
        "containerProperties": props,
    }
    full.update(body)
    return JobDefinitionRecord(name="sleeper", revision=1, status="ACTIVE", arn=DEFINITION_ARN, body=full)


def make_queue(name: str = "default-queue", *, enabled: bool = True, policy_arn: str | None = None) -> JobQueue:
    return JobQueue(
        name=name,
        arn=f"arn:aws:batch:{REGION}:{ACCOUNT}:job-queue/{name}",
        enabled=enabled,
        priority=1,
        compute_environments=("default-ce",),
        scheduling_policy_arn=policy_arn,
    )


def make_ce(name: str = "default-ce", *, max_vcpus: float = 4, enabled: bool = True) -> ComputeEnvironment:
    return ComputeEnvironment(
        name=name,
        arn=f"arn:aws:batch:{REGION}:{ACCOUNT}:compute-environment/{name}",
        enabled=enabled,
        max_vcpus=max_vcpus,
    )


def make_policy(*shares: Mapping[str, Any], fairshare: bool = True) -> SchedulingPolicy:
    """A scheduling policy; ``shares`` are ``shareDistribution`` entries in wire form."""
    body: dict[str, Any] = {"name": "fair", "arn": f"arn:aws:batch:{REGION}:{ACCOUNT}:scheduling-policy/fair"}
    if fairshare:
        body["fairsharePolicy"] = {"shareDecaySeconds": 0, "shareDistribution": [dict(x) for x in shares]}
    return SchedulingPolicy.from_body(body)
