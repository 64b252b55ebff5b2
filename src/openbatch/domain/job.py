"""The job entity, its immutable specification and its attempts.

``Job`` is deliberately mutable: it is owned by the single scheduler thread
(the event loop) and changed only through ``domain.transitions``, which check
every move against ``states.TRANSITIONS``. Copy-on-write per transition cost
too much at thousands of transitions per second.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from openbatch.domain.jobspec import Resources, RetryPolicy
from openbatch.domain.states import JobStatus

STATUS_SUMMARY_KEYS = tuple(s.value for s in JobStatus)


@dataclass(frozen=True, slots=True, kw_only=True)
class JobSpec:
    """What was submitted, resolved against the job definition. Shared by array children."""

    job_name: str
    queue: str
    definition_arn: str
    definition_name: str
    container: dict[str, Any]
    """Effective container properties (definition merged with overrides, command substituted)."""
    command: tuple[str, ...]
    environment: dict[str, str]
    resources: Resources
    retry: RetryPolicy
    retry_wire: dict[str, Any] | None
    timeout_seconds: int | None
    parameters: dict[str, str]
    propagate_tags: bool
    platform_capabilities: tuple[str, ...]
    scheduling_priority: int | None
    share_identifier: str | None
    depends_on: tuple[dict[str, str], ...]
    array_size: int | None = None
    node_properties: dict[str, Any] | None = None
    """Multi-node parallel jobs: on the job itself, the effective ``nodeProperties`` (numNodes, mainNode,
    nodeRangeProperties); on each of its node jobs, ``numNodes`` and ``mainNode``."""


@dataclass(slots=True, kw_only=True)
class Attempt:
    started_at: int | None = None
    stopped_at: int | None = None
    exit_code: int | None = None
    reason: str | None = None
    status_reason: str | None = None
    log_stream: str | None = None
    task_id: str | None = None
    pid: int | None = None
    """Process (and process group) id while running; used to clean up after a crash."""
    host: str | None = None
    """The server instance whose executor ran it, when several servers share the store."""


@dataclass(slots=True, kw_only=True, eq=False)
class Job:
    id: str
    spec: JobSpec
    status: JobStatus
    created_at: int
    status_reason: str | None = None
    started_at: int | None = None
    stopped_at: int | None = None
    tags: dict[str, str] = field(default_factory=dict)
    attempts: list[Attempt] = field(default_factory=list)
    is_cancelled: bool = False
    is_terminated: bool = False
    parent_id: str | None = None
    array_index: int | None = None
    deps: tuple[str, ...] = ()
    """Job ids this job waits for (effective edges, array-child level included)."""
    status_summary: dict[str, int] | None = None
    """Array parents only: children per status, maintained incrementally."""
    summary_updated_at: int | None = None
    cancel_reason: str | None = None
    """A cancel asked for while PENDING; applied when the dependencies complete (AWS semantics)."""
    runnable_since: int | None = None
    compute_environment: str | None = None
    current: Attempt | None = None
    """The attempt in STARTING/RUNNING."""
    node_index: int | None = None
    """Node jobs of a multi-node parallel job (``<parentId>#<index>``): the node's index."""

    @property
    def is_array_parent(self) -> bool:
        return self.spec.array_size is not None and self.array_index is None

    @property
    def is_multinode_parent(self) -> bool:
        return self.spec.node_properties is not None and self.node_index is None

    @property
    def is_node(self) -> bool:
        return self.node_index is not None

    @property
    def attempt_number(self) -> int:
        return len(self.attempts) + (1 if self.current is not None else 0)


@dataclass(frozen=True, slots=True)
class StatusChange:
    """One job moving from ``old`` to ``new`` (``old`` is None when the job was just submitted)."""

    job_id: str
    old: JobStatus | None
    new: JobStatus
    at: int
    """Epoch milliseconds."""
    job: Job
    """The live job: read it while handling the change, do not keep it."""
