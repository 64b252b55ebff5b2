"""In-memory views of queues, compute environments and policies, rebuilt when they change.

The scheduler reads these on every decision, so they must not cost a query.
"""

from __future__ import annotations

import os

from openbatch.domain.arns import ResourceType
from openbatch.domain.resources import ComputeEnvironment, JobQueue, SchedulingPolicy
from openbatch.store.base import Store


class Registry:
    def __init__(self, store: Store, host_vcpus: int | None = None) -> None:
        self._store = store
        self.host_vcpus = host_vcpus or os.cpu_count() or 1
        self.queues: dict[str, JobQueue] = {}
        self.compute_environments: dict[str, ComputeEnvironment] = {}
        self.policies: dict[str, SchedulingPolicy] = {}
        self.queues_by_priority: list[JobQueue] = []

    def refresh(self) -> None:
        store = self._store
        self.compute_environments = {
            r.name: ComputeEnvironment.from_body(r.body, host_vcpus=self.host_vcpus)
            for r in store.list_resources(ResourceType.COMPUTE_ENVIRONMENT.value)
        }
        self.queues = {r.name: JobQueue.from_body(r.body) for r in store.list_resources(ResourceType.JOB_QUEUE.value)}
        self.policies = {
            r.body["arn"]: SchedulingPolicy.from_body(r.body)
            for r in store.list_resources(ResourceType.SCHEDULING_POLICY.value)
        }
        # Higher priority first; ties broken by name so the order is stable.
        self.queues_by_priority = sorted(self.queues.values(), key=lambda q: (-q.priority, q.name))

    def policy_of(self, queue: JobQueue) -> SchedulingPolicy | None:
        if queue.scheduling_policy_arn is None:
            return None
        return self.policies.get(queue.scheduling_policy_arn)
