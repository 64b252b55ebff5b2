"""Operation table of the newer Batch operations (consumable resources, service
environments, service jobs, quota shares). ``operations.py`` merges it into
``OPERATIONS``; each use case receives the request as wire JSON (``Shape.echo()``).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from openbatch.api import schemas_extra as x
from openbatch.service import consumable_resources as crs
from openbatch.service import quota_shares as qss
from openbatch.service import service_environments as ses
from openbatch.service import service_jobs as sjs
from openbatch.service.request_models import Shape

if TYPE_CHECKING:
    from openbatch.api.operations import Reply, Services
    from openbatch.service.context import Caller

ExtraHandler = Callable[["Services", "Caller", Any], "Reply"]


def _wire(request: Shape) -> dict[str, Any]:
    return request.echo()


EXTRA_OPERATIONS: list[tuple[str, type[Shape], ExtraHandler]] = [
    # consumable resources
    ("CreateConsumableResource", x.CreateConsumableResource, lambda sv, c, r: crs.create(sv.ctx, c, _wire(r))),
    (
        "DescribeConsumableResource",
        x.DescribeConsumableResource,
        lambda sv, c, r: crs.describe(sv.ctx, sv.consumable_usage, _wire(r)),
    ),
    (
        "UpdateConsumableResource",
        x.UpdateConsumableResource,
        lambda sv, c, r: crs.update(sv.ctx, sv.consumable_usage, _wire(r)),
    ),
    (
        "DeleteConsumableResource",
        x.DeleteConsumableResource,
        lambda sv, c, r: crs.delete(sv.ctx, sv.consumable_usage, _wire(r)),
    ),
    (
        "ListConsumableResources",
        x.ListConsumableResources,
        lambda sv, c, r: crs.list_resources(sv.ctx, sv.consumable_usage, _wire(r)),
    ),
    (
        "ListJobsByConsumableResource",
        x.ListJobsByConsumableResource,
        lambda sv, c, r: crs.list_jobs(sv.ctx, sv.consumable_usage, _wire(r)),
    ),
    # service environments
    ("CreateServiceEnvironment", x.CreateServiceEnvironment, lambda sv, c, r: ses.create(sv.ctx, c, _wire(r))),
    ("DescribeServiceEnvironments", x.DescribeServiceEnvironments, lambda sv, c, r: ses.describe(sv.ctx, _wire(r))),
    ("UpdateServiceEnvironment", x.UpdateServiceEnvironment, lambda sv, c, r: ses.update(sv.ctx, _wire(r))),
    ("DeleteServiceEnvironment", x.DeleteServiceEnvironment, lambda sv, c, r: ses.delete(sv.ctx, _wire(r))),
    # service jobs
    ("SubmitServiceJob", x.SubmitServiceJob, lambda sv, c, r: sjs.submit(sv.ctx, _wire(r))),
    ("DescribeServiceJob", x.DescribeServiceJob, lambda sv, c, r: sjs.describe(sv.ctx, _wire(r))),
    ("ListServiceJobs", x.ListServiceJobs, lambda sv, c, r: sjs.list_jobs(sv.ctx, _wire(r))),
    ("UpdateServiceJob", x.UpdateServiceJob, lambda sv, c, r: sjs.update(sv.ctx, _wire(r))),
    ("TerminateServiceJob", x.TerminateServiceJob, lambda sv, c, r: sjs.terminate(sv.ctx, _wire(r))),
    ("TerminateServiceJobs", x.TerminateServiceJobs, lambda sv, c, r: sjs.terminate_many(sv.ctx, _wire(r))),
    # quota shares
    ("CreateQuotaShare", x.CreateQuotaShare, lambda sv, c, r: qss.create(sv.ctx, c, _wire(r))),
    ("DescribeQuotaShare", x.DescribeQuotaShare, lambda sv, c, r: qss.describe(sv.ctx, _wire(r))),
    ("ListQuotaShares", x.ListQuotaShares, lambda sv, c, r: qss.list_shares(sv.ctx, _wire(r))),
    ("UpdateQuotaShare", x.UpdateQuotaShare, lambda sv, c, r: qss.update(sv.ctx, _wire(r))),
    ("DeleteQuotaShare", x.DeleteQuotaShare, lambda sv, c, r: qss.delete(sv.ctx, _wire(r))),
]
