"""Request shapes of the newer Batch operations: consumable resources, service
environments, service jobs and quota shares (members as in the botocore model).

Kept apart from ``service/request_models.py`` so that these capabilities stay behind their own
seam; the use cases receive ``Shape.echo()`` dicts, never these classes.
"""

from __future__ import annotations

from typing import Literal

from openbatch.service.request_models import KeyValuesPair, Paginated, Shape

State = Literal["ENABLED", "DISABLED"]


# --- consumable resources -------------------------------------------------------


class CreateConsumableResource(Shape):
    consumableResourceName: str
    totalQuantity: int | None = None
    resourceType: str | None = None
    tags: dict[str, str] | None = None


class DescribeConsumableResource(Shape):
    consumableResource: str


class UpdateConsumableResource(Shape):
    consumableResource: str
    operation: str | None = None
    quantity: int | None = None
    clientToken: str | None = None


class DeleteConsumableResource(Shape):
    consumableResource: str


class ListConsumableResources(Paginated):
    filters: list[KeyValuesPair] | None = None


class ListJobsByConsumableResource(Paginated):
    consumableResource: str
    filters: list[KeyValuesPair] | None = None


# --- service environments ---------------------------------------------------------


class CapacityLimit(Shape):
    maxCapacity: int | None = None
    capacityUnit: str | None = None


class CreateServiceEnvironment(Shape):
    serviceEnvironmentName: str
    serviceEnvironmentType: Literal["SAGEMAKER_TRAINING"]
    state: State | None = None
    capacityLimits: list[CapacityLimit]
    tags: dict[str, str] | None = None


class DescribeServiceEnvironments(Paginated):
    serviceEnvironments: list[str] | None = None


class UpdateServiceEnvironment(Shape):
    serviceEnvironment: str
    state: State | None = None
    capacityLimits: list[CapacityLimit] | None = None


class DeleteServiceEnvironment(Shape):
    serviceEnvironment: str


# --- service jobs -------------------------------------------------------------------


class ServiceJobEvaluateOnExit(Shape):
    action: Literal["RETRY", "EXIT"] | None = None
    onStatusReason: str | None = None


class ServiceJobRetryStrategy(Shape):
    attempts: int
    evaluateOnExit: list[ServiceJobEvaluateOnExit] | None = None


class ServiceJobPreemptionConfiguration(Shape):
    preemptionRetriesBeforeTermination: int | None = None


class ServiceJobTimeout(Shape):
    attemptDurationSeconds: int | None = None


class SubmitServiceJob(Shape):
    jobName: str
    jobQueue: str
    serviceRequestPayload: str
    serviceJobType: Literal["SAGEMAKER_TRAINING"]
    retryStrategy: ServiceJobRetryStrategy | None = None
    schedulingPriority: int | None = None
    shareIdentifier: str | None = None
    quotaShareName: str | None = None
    preemptionConfiguration: ServiceJobPreemptionConfiguration | None = None
    timeoutConfig: ServiceJobTimeout | None = None
    tags: dict[str, str] | None = None
    clientToken: str | None = None


class DescribeServiceJob(Shape):
    jobId: str


class ListServiceJobs(Paginated):
    jobQueue: str | None = None
    jobStatus: (
        Literal["SUBMITTED", "PENDING", "RUNNABLE", "SCHEDULED", "STARTING", "RUNNING", "SUCCEEDED", "FAILED"] | None
    ) = None
    filters: list[KeyValuesPair] | None = None


class UpdateServiceJob(Shape):
    jobId: str
    schedulingPriority: int


class TerminateServiceJob(Shape):
    jobId: str
    reason: str


class TerminateServiceJobs(Shape):
    jobs: list[str]
    reason: str


# --- quota shares -------------------------------------------------------------------


class QuotaShareCapacityLimit(Shape):
    maxCapacity: int
    capacityUnit: str


class QuotaShareResourceSharingConfiguration(Shape):
    strategy: Literal["RESERVE", "LEND", "LEND_AND_BORROW"]
    borrowLimit: int | None = None


class QuotaSharePreemptionConfiguration(Shape):
    inSharePreemption: State


class CreateQuotaShare(Shape):
    quotaShareName: str
    jobQueue: str
    capacityLimits: list[QuotaShareCapacityLimit]
    resourceSharingConfiguration: QuotaShareResourceSharingConfiguration
    preemptionConfiguration: QuotaSharePreemptionConfiguration
    state: State | None = None
    tags: dict[str, str] | None = None


class DescribeQuotaShare(Shape):
    quotaShareArn: str


class ListQuotaShares(Paginated):
    jobQueue: str


class UpdateQuotaShare(Shape):
    quotaShareArn: str
    capacityLimits: list[QuotaShareCapacityLimit] | None = None
    resourceSharingConfiguration: QuotaShareResourceSharingConfiguration | None = None
    preemptionConfiguration: QuotaSharePreemptionConfiguration | None = None
    state: State | None = None


class DeleteQuotaShare(Shape):
    quotaShareArn: str
