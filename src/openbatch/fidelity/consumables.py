"""Consumable resources on the scheduler side: a capacity check beside vCPUs, memory and GPUs.

A job's requirements travel in its ``Resources`` (``consumables``: name → quantity),
so the engine's placement (refusal, acquire, release) covers them unchanged. A job
holds its quantities from placement (STARTING) until its attempt ends. A
NON_REPLENISHABLE resource then loses them for good: ``totalQuantity`` is lowered
in the store, so the consumption survives restarts (AWS user guide, "Check how many
resources are in-use and available").
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from openbatch.domain.arns import ResourceType, name_from_reference
from openbatch.domain.errors import ClientError, ValidationError
from openbatch.domain.job import Job, StatusChange
from openbatch.domain.jobspec import Resources
from openbatch.domain.resources import ComputeEnvironment
from openbatch.domain.states import TERMINAL
from openbatch.scheduler.capacity import Capacity, Refusal
from openbatch.service.consumable_resources import NON_REPLENISHABLE, JobUse
from openbatch.store.base import Store

if TYPE_CHECKING:
    from openbatch.domain.arns import ArnFactory
    from openbatch.scheduler.registry import Registry

KIND = ResourceType.CONSUMABLE_RESOURCE.value
WAITING = "CONSUMABLE_RESOURCE"
"""Prefix of the waiting reason, like the CAPACITY:/MISCONFIGURATION: ones."""
MAX_QUANTITY = 2**63 - 1
RECENT_FINISHED = 1000
"""Finished jobs remembered per resource for ListJobsByConsumableResource."""

Requirements = tuple[tuple[str, int], ...]


def parse_requirements(properties: Mapping[str, Any] | None, member: str) -> Requirements:
    """``consumableResourceProperties`` → ((name, quantity), ...), names resolved from ARNs."""
    if not properties:
        return ()
    entries = properties.get("consumableResourceList")
    if not isinstance(entries, list):
        raise ValidationError(f"{member}.consumableResourceList must be a list")
    found: dict[str, int] = {}
    for entry in entries:
        if not isinstance(entry, dict):
            raise ValidationError(f"{member}.consumableResourceList entries must be objects")
        reference, quantity = entry.get("consumableResource"), entry.get("quantity")
        if not isinstance(reference, str) or not reference:
            raise ValidationError(f"{member}: consumableResource is required in every entry")
        if isinstance(quantity, bool) or not isinstance(quantity, int) or not 1 <= quantity <= MAX_QUANTITY:
            raise ValidationError(f"{member}: quantity of {reference} must be a whole number of at least 1")
        name = name_from_reference(reference, ResourceType.CONSUMABLE_RESOURCE)
        if name in found:
            raise ValidationError(f"{member} lists consumable resource {name} more than once")
        found[name] = quantity
    return tuple(found.items())


def effective_requirements(definition: Mapping[str, Any], override: Mapping[str, Any] | None) -> Requirements:
    """SubmitJob's override replaces the job definition's list (AWS: the override wins as a whole)."""
    if override:
        return parse_requirements(override, "consumableResourcePropertiesOverride")
    return parse_requirements(definition.get("consumableResourceProperties"), "consumableResourceProperties")


def check_exist(store: Store, requirements: Iterable[tuple[str, int]]) -> None:
    for name, _quantity in requirements:
        if store.get_resource(KIND, name) is None:
            raise ClientError(f"ConsumableResource {name} does not exist")


def render(requirements: Requirements, arns: ArnFactory) -> dict[str, Any]:
    return {
        "consumableResourceList": [
            {"consumableResource": arns.build(ResourceType.CONSUMABLE_RESOURCE, name), "quantity": quantity}
            for name, quantity in requirements
        ]
    }


class ConsumableCapacity(Capacity):
    """Capacity that also counts consumable resources; totals come from the store (cached)."""

    def __init__(self, *, memory_mib: int, gpus: list[int], store: Store) -> None:
        super().__init__(memory_mib=memory_mib, gpus=gpus)
        self._store = store
        self.in_use: dict[str, int] = {}
        self._bodies: dict[str, dict[str, Any] | None] = {}

    def forget(self) -> None:
        """Consumable resources changed (created, updated, deleted): read them again."""
        self._bodies.clear()

    def _body(self, name: str) -> dict[str, Any] | None:
        if name not in self._bodies:
            record = self._store.get_resource(KIND, name)
            self._bodies[name] = dict(record.body) if record is not None else None
        return self._bodies[name]

    def available(self, name: str) -> tuple[int, int] | None:
        """(available, total) of ``name``, or None if it does not exist."""
        body = self._body(name)
        if body is None:
            return None
        total = int(body["totalQuantity"])
        return max(total - self.in_use.get(name, 0), 0), total

    def refusal(self, need: Resources, ce: ComputeEnvironment) -> Refusal | None:
        refused = super().refusal(need, ce)
        if refused is not None:
            return refused
        for name, quantity in need.consumables:
            state = self.available(name)
            if state is None:
                return Refusal(f"{WAITING} - consumable resource {name} does not exist", False)
            free, total = state
            if quantity > free:
                return Refusal(
                    f"{WAITING} - the job needs {quantity} of consumable resource {name}; "
                    f"{free} of {total} are available",
                    False,
                )
        return None

    def acquire(self, need: Resources, ce_name: str, gpu_ids: tuple[int, ...] | None = None) -> tuple[int, ...]:
        taken = super().acquire(need, ce_name, gpu_ids)
        for name, quantity in need.consumables:
            self.in_use[name] = self.in_use.get(name, 0) + quantity
        return taken

    def release(self, need: Resources, ce_name: str, gpu_ids: tuple[int, ...]) -> None:
        super().release(need, ce_name, gpu_ids)
        for name, quantity in need.consumables:
            self.in_use[name] = max(self.in_use.get(name, 0) - quantity, 0)
            body = self._body(name)
            if body is not None and body.get("resourceType") == NON_REPLENISHABLE:
                # Consumed for good, whether the job succeeded or failed.
                body["totalQuantity"] = max(int(body["totalQuantity"]) - quantity, 0)
                self._store.update_resource(KIND, name, body)
                self._bodies[name] = body


class EngineConsumableUsage:
    """The API's view (``service.consumable_resources.ConsumableUsage``) of what jobs hold and need."""

    def __init__(self, capacity: ConsumableCapacity, arns: ArnFactory, registry: Registry) -> None:
        self._capacity = capacity
        self._arns = arns
        self._registry = registry
        self.live_jobs: Mapping[str, Job] = {}
        """The engine's jobs (set once the engine exists)."""
        self._finished: dict[str, deque[JobUse]] = {}

    def in_use(self, name: str) -> int:
        return self._capacity.in_use.get(name, 0)

    def jobs_using(self, name: str) -> list[JobUse]:
        live = [self._use(job, name) for job in self.live_jobs.values() if job.status not in TERMINAL]
        uses = [*self._finished.get(name, ()), *(use for use in live if use is not None)]
        return sorted(uses, key=lambda use: (use.created_at, use.job_id))

    def on_status_changes(self, changes: Sequence[StatusChange]) -> None:
        """Remember finished jobs per resource (the engine forgets them once flushed)."""
        for change in changes:
            if change.new not in TERMINAL:
                continue
            for name, _quantity in change.job.spec.resources.consumables:
                use = self._use(change.job, name)
                if use is not None:
                    self._finished.setdefault(name, deque(maxlen=RECENT_FINISHED)).append(use)

    def _use(self, job: Job, name: str) -> JobUse | None:
        if job.is_array_parent:
            return None
        requirements = job.spec.resources.consumables
        quantity = dict(requirements).get(name)
        if quantity is None:
            return None
        queue = self._registry.queues.get(job.spec.queue)
        queue_arn = queue.arn if queue is not None else self._arns.build(ResourceType.JOB_QUEUE, job.spec.queue)
        return JobUse(
            job_id=job.id,
            job_arn=self._arns.build(ResourceType.JOB, job.id),
            job_queue_arn=queue_arn,
            job_name=job.spec.job_name,
            job_definition_arn=job.spec.definition_arn,
            share_identifier=job.spec.share_identifier,
            status=job.status.value,
            status_reason=job.status_reason,
            started_at=job.started_at,
            created_at=job.created_at,
            quantity=quantity,
            requirements=render(requirements, self._arns)["consumableResourceList"],
        )
