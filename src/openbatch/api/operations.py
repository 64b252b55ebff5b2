"""Operation table: wire name → request shape → use case.

Adding an operation is one line here plus its use case; routing, parsing and
errors are shared.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Protocol

from openbatch.service import compute_environments as ces
from openbatch.service import job_definitions as jds
from openbatch.service import job_queues as jqs
from openbatch.service import request_models as s
from openbatch.service import scheduling_policies as sps
from openbatch.service.consumable_resources import ConsumableUsage
from openbatch.service.context import Caller, ServiceContext
from openbatch.service.tagging import JobTags

Reply = dict[str, Any] | Awaitable[dict[str, Any]]
"""What a use case returns: the response, or an awaitable of it (SubmitJob waits for its commit)."""


class Services(Protocol):
    """What the API needs from the running server."""

    @property
    def ctx(self) -> ServiceContext: ...

    @property
    def job_tags(self) -> JobTags: ...

    @property
    def consumable_usage(self) -> ConsumableUsage:
        """What jobs hold of each consumable resource (the scheduler's view)."""
        ...

    def job_operation(self, name: str, caller: Caller, request: Any) -> Reply:
        """Dispatch a job operation (SubmitJob, DescribeJobs, ...) to the job service."""
        ...


Handler = Callable[[Services, Caller, Any], Reply]


@dataclass(frozen=True, slots=True)
class Operation:
    name: str
    shape: type[s.Shape]
    handler: Handler


def _job_op(name: str) -> Handler:
    def handler(services: Services, caller: Caller, request: Any) -> Reply:
        return services.job_operation(name, caller, request)

    return handler


_TABLE: list[Operation] = [
    Operation("CreateComputeEnvironment", s.CreateComputeEnvironment, lambda sv, c, r: ces.create(sv.ctx, c, r)),
    Operation("UpdateComputeEnvironment", s.UpdateComputeEnvironment, lambda sv, c, r: ces.update(sv.ctx, r)),
    Operation("DeleteComputeEnvironment", s.DeleteComputeEnvironment, lambda sv, c, r: ces.delete(sv.ctx, r)),
    Operation("DescribeComputeEnvironments", s.DescribeComputeEnvironments, lambda sv, c, r: ces.describe(sv.ctx, r)),
    Operation("CreateJobQueue", s.CreateJobQueue, lambda sv, c, r: jqs.create(sv.ctx, c, r)),
    Operation("UpdateJobQueue", s.UpdateJobQueue, lambda sv, c, r: jqs.update(sv.ctx, r)),
    Operation("DeleteJobQueue", s.DeleteJobQueue, lambda sv, c, r: jqs.delete(sv.ctx, r)),
    Operation("DescribeJobQueues", s.DescribeJobQueues, lambda sv, c, r: jqs.describe(sv.ctx, r)),
    Operation("RegisterJobDefinition", s.RegisterJobDefinition, lambda sv, c, r: jds.register(sv.ctx, c, r)),
    Operation("DeregisterJobDefinition", s.DeregisterJobDefinition, lambda sv, c, r: jds.deregister(sv.ctx, r)),
    Operation("DescribeJobDefinitions", s.DescribeJobDefinitions, lambda sv, c, r: jds.describe(sv.ctx, r)),
    Operation("CreateSchedulingPolicy", s.CreateSchedulingPolicy, lambda sv, c, r: sps.create(sv.ctx, c, r)),
    Operation("UpdateSchedulingPolicy", s.UpdateSchedulingPolicy, lambda sv, c, r: sps.update(sv.ctx, r)),
    Operation("DeleteSchedulingPolicy", s.DeleteSchedulingPolicy, lambda sv, c, r: sps.delete(sv.ctx, r)),
    Operation("DescribeSchedulingPolicies", s.DescribeSchedulingPolicies, lambda sv, c, r: sps.describe(sv.ctx, r)),
    Operation("ListSchedulingPolicies", s.ListSchedulingPolicies, lambda sv, c, r: sps.list_policies(sv.ctx, r)),
]

OPERATIONS: dict[str, Operation] = {op.name.lower(): op for op in _TABLE}


def _add_extra_operations() -> None:
    from openbatch.api.operations_extra import EXTRA_OPERATIONS

    for name, shape, handler in EXTRA_OPERATIONS:
        OPERATIONS[name.lower()] = Operation(name, shape, handler)


_add_extra_operations()


def register_job_operations(shapes: dict[str, type[s.Shape]]) -> None:
    """Add the job operations (their shapes live with the job service's schemas)."""
    for name, shape in shapes.items():
        OPERATIONS[name.lower()] = Operation(name, shape, _job_op(name))
