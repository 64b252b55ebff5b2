"""Request shapes of the AWS Batch operations, as pydantic models: what the use cases take.

They live with the service layer, which defines its own inputs; the API layer validates wire
bodies into them (``api/operations.py``), so services never depend on the API package.

Member names are the wire's camelCase names, so no alias table is needed.
Unknown members are ignored (botocore may send members newer than ours).
Nested AWS-infrastructure shapes that OpenBatch only stores and echoes are
typed as plain JSON objects.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

JsonObject = dict[str, Any]
State = Literal["ENABLED", "DISABLED"]


class Shape(BaseModel):
    model_config = ConfigDict(extra="ignore", strict=False, frozen=True)

    def echo(self) -> JsonObject:
        """The members the caller set, as wire JSON (None omitted)."""
        return self.model_dump(mode="json", exclude_none=True)


class Paginated(Shape):
    maxResults: int | None = None
    nextToken: str | None = None


# --- compute environments -----------------------------------------------------


class ComputeResource(Shape):
    model_config = ConfigDict(extra="allow", frozen=True)
    type: Literal["EC2", "SPOT", "FARGATE", "FARGATE_SPOT", "ECS_MANAGED_INSTANCES"]
    maxvCpus: int
    minvCpus: int | None = None
    desiredvCpus: int | None = None
    allocationStrategy: str | None = None
    instanceTypes: list[str] | None = None


class ComputeResourceUpdate(Shape):
    model_config = ConfigDict(extra="allow", frozen=True)
    type: Literal["EC2", "SPOT", "FARGATE", "FARGATE_SPOT", "ECS_MANAGED_INSTANCES"] | None = None
    maxvCpus: int | None = None
    minvCpus: int | None = None
    desiredvCpus: int | None = None


class UpdatePolicy(Shape):
    terminateJobsOnUpdate: bool | None = None
    jobExecutionTimeoutMinutes: int | None = Field(default=None, ge=1, le=7200)


class CreateComputeEnvironment(Shape):
    computeEnvironmentName: str
    type: Literal["MANAGED", "UNMANAGED"]
    state: State | None = None
    unmanagedvCpus: int | None = Field(default=None, ge=0)
    computeResources: ComputeResource | None = None
    serviceRole: str | None = None
    tags: dict[str, str] | None = None
    eksConfiguration: JsonObject | None = None
    context: str | None = None
    ecsSettings: JsonObject | None = None


class UpdateComputeEnvironment(Shape):
    computeEnvironment: str
    state: State | None = None
    unmanagedvCpus: int | None = Field(default=None, ge=0)
    computeResources: ComputeResourceUpdate | None = None
    serviceRole: str | None = None
    updatePolicy: UpdatePolicy | None = None
    context: str | None = None
    ecsSettings: JsonObject | None = None


class DeleteComputeEnvironment(Shape):
    computeEnvironment: str


class DescribeComputeEnvironments(Paginated):
    computeEnvironments: list[str] | None = None


# --- job queues ---------------------------------------------------------------


class ComputeEnvironmentOrder(Shape):
    order: int
    computeEnvironment: str


class JobStateTimeLimitAction(Shape):
    reason: str
    state: Literal["RUNNABLE"]
    maxTimeSeconds: int
    action: Literal["CANCEL", "TERMINATE"]


class CreateJobQueue(Shape):
    jobQueueName: str
    priority: int
    state: State | None = None
    schedulingPolicyArn: str | None = None
    computeEnvironmentOrder: list[ComputeEnvironmentOrder] | None = None
    serviceEnvironmentOrder: list[JsonObject] | None = None
    jobQueueType: str | None = None
    tags: dict[str, str] | None = None
    jobStateTimeLimitActions: list[JobStateTimeLimitAction] | None = None


class UpdateJobQueue(Shape):
    jobQueue: str
    state: State | None = None
    schedulingPolicyArn: str | None = None
    priority: int | None = None
    computeEnvironmentOrder: list[ComputeEnvironmentOrder] | None = None
    serviceEnvironmentOrder: list[JsonObject] | None = None
    jobStateTimeLimitActions: list[JobStateTimeLimitAction] | None = None


class DeleteJobQueue(Shape):
    jobQueue: str


class DescribeJobQueues(Paginated):
    jobQueues: list[str] | None = None


class GetJobQueueSnapshot(Shape):
    jobQueue: str


# --- scheduling policies ------------------------------------------------------


class ShareAttributes(Shape):
    shareIdentifier: str
    weightFactor: float | None = None


class FairsharePolicy(Shape):
    shareDecaySeconds: int | None = None
    computeReservation: int | None = None
    shareDistribution: list[ShareAttributes] | None = None


class CreateSchedulingPolicy(Shape):
    name: str
    fairsharePolicy: FairsharePolicy | None = None
    quotaSharePolicy: JsonObject | None = None
    tags: dict[str, str] | None = None


class UpdateSchedulingPolicy(Shape):
    arn: str
    fairsharePolicy: FairsharePolicy | None = None
    quotaSharePolicy: JsonObject | None = None


class DeleteSchedulingPolicy(Shape):
    arn: str


class DescribeSchedulingPolicies(Shape):
    arns: list[str]


class ListSchedulingPolicies(Paginated):
    pass


# --- job definitions ----------------------------------------------------------


class KeyValuePair(Shape):
    name: str | None = None
    value: str | None = None


class ResourceRequirement(Shape):
    value: str
    type: Literal["GPU", "VCPU", "MEMORY"]


class ContainerProperties(Shape):
    model_config = ConfigDict(extra="allow", frozen=True)
    image: str | None = None
    vcpus: int | None = None
    memory: int | None = None
    command: list[str] | None = None
    environment: list[KeyValuePair] | None = None
    resourceRequirements: list[ResourceRequirement] | None = None


class EvaluateOnExit(Shape):
    onStatusReason: str | None = Field(default=None, max_length=512)
    onReason: str | None = Field(default=None, max_length=512)
    onExitCode: str | None = Field(default=None, max_length=512)
    action: str


class RetryStrategy(Shape):
    attempts: int | None = None
    evaluateOnExit: list[EvaluateOnExit] | None = None


class JobTimeout(Shape):
    attemptDurationSeconds: int | None = None


class RegisterJobDefinition(Shape):
    jobDefinitionName: str
    type: str
    parameters: dict[str, str] | None = None
    schedulingPriority: int | None = None
    containerProperties: ContainerProperties | None = None
    nodeProperties: JsonObject | None = None
    retryStrategy: RetryStrategy | None = None
    propagateTags: bool | None = None
    timeout: JobTimeout | None = None
    tags: dict[str, str] | None = None
    platformCapabilities: list[Literal["EC2", "FARGATE", "MANAGED_INSTANCES"]] | None = None
    eksProperties: JsonObject | None = None
    ecsProperties: JsonObject | None = None
    consumableResourceProperties: JsonObject | None = None


class DeregisterJobDefinition(Shape):
    jobDefinition: str


class DescribeJobDefinitions(Paginated):
    jobDefinitions: list[str] | None = None
    jobDefinitionName: str | None = None
    status: str | None = None


# --- tags ---------------------------------------------------------------------


class TagResource(Shape):
    tags: dict[str, str]


# --- jobs ---------------------------------------------------------------------


class ContainerOverrides(Shape):
    vcpus: int | None = None
    memory: int | None = None
    command: list[str] | None = None
    instanceType: str | None = None
    environment: list[KeyValuePair] | None = None
    resourceRequirements: list[ResourceRequirement] | None = None


class JobDependency(Shape):
    jobId: str | None = None
    type: Literal["N_TO_N", "SEQUENTIAL"] | None = None


class ArrayProperties(Shape):
    size: int | None = None


class SubmitJob(Shape):
    jobName: str
    jobQueue: str
    jobDefinition: str
    shareIdentifier: str | None = None
    schedulingPriorityOverride: int | None = None
    arrayProperties: ArrayProperties | None = None
    dependsOn: list[JobDependency] | None = None
    parameters: dict[str, str] | None = None
    containerOverrides: ContainerOverrides | None = None
    nodeOverrides: JsonObject | None = None
    retryStrategy: RetryStrategy | None = None
    propagateTags: bool | None = None
    timeout: JobTimeout | None = None
    tags: dict[str, str] | None = None
    eksPropertiesOverride: JsonObject | None = None
    ecsPropertiesOverride: JsonObject | None = None
    consumableResourcePropertiesOverride: JsonObject | None = None


class DescribeJobs(Shape):
    jobs: list[str]


class KeyValuesPair(Shape):
    name: str | None = None
    values: list[str] | None = None


class ListJobs(Paginated):
    jobQueue: str | None = None
    arrayJobId: str | None = None
    multiNodeJobId: str | None = None
    jobStatus: Literal["SUBMITTED", "PENDING", "RUNNABLE", "STARTING", "RUNNING", "SUCCEEDED", "FAILED"] | None = None
    filters: list[KeyValuesPair] | None = None


class CancelJob(Shape):
    jobId: str
    reason: str


class TerminateJob(Shape):
    jobId: str
    reason: str


class CancelJobs(Shape):
    jobs: list[str]
    reason: str


class TerminateJobs(Shape):
    jobs: list[str]
    reason: str


JOB_OPERATIONS: dict[str, type[Shape]] = {
    "SubmitJob": SubmitJob,
    "DescribeJobs": DescribeJobs,
    "ListJobs": ListJobs,
    "CancelJob": CancelJob,
    "TerminateJob": TerminateJob,
    "CancelJobs": CancelJobs,
    "TerminateJobs": TerminateJobs,
    "GetJobQueueSnapshot": GetJobQueueSnapshot,
}
