"""AWS's rules for the ``computeResources`` of a MANAGED compute environment, by type.

Sources (see docs/validation.md): the API reference's ComputeResource page
("instanceRole ... is required for Amazon EC2 instances types", "spotIamFleetRole
... is required if the allocation strategy is set to BEST_FIT or if the
allocation strategy isn't specified", "securityGroupIds ... is required for jobs
that are running on Fargate resources"), the CloudFormation ComputeResources
property (Subnets required) and the user guide's "Compute environments on
Fargate" (members that can't be provided for Fargate).
"""

from __future__ import annotations

from typing import Any

from openbatch.domain.errors import ValidationError

EC2_TYPES = ("EC2", "SPOT")
FARGATE_TYPES = ("FARGATE", "FARGATE_SPOT")
INSTANCE_ROLE_REQUIRED = "Error executing request, Exception : Instance role is required."
"""AWS's own wording for a missing instanceRole."""
NOT_FOR_FARGATE = (
    "allocationStrategy",
    "bidPercentage",
    "desiredvCpus",
    "imageId",
    "instanceTypes",
    "ec2Configuration",
    "ec2KeyPair",
    "instanceRole",
    "launchTemplate",
    "minvCpus",
    "placementGroup",
    "spotIamFleetRole",
    "tags",
)


def _non_empty_list(resources: dict[str, Any], member: str, what: str, resource_type: str) -> None:
    value = resources.get(member)
    if not value:
        raise ValidationError(
            f"computeResources.{member} must list at least 1 {what} for a MANAGED compute environment "
            f"of type {resource_type}"
        )


def check_create(resources: dict[str, Any]) -> None:
    """Reject what AWS rejects in CreateComputeEnvironment's ``computeResources``."""
    resource_type = resources.get("type")
    if resource_type in EC2_TYPES:
        if not resources.get("instanceRole"):
            raise ValidationError(INSTANCE_ROLE_REQUIRED)
        _non_empty_list(resources, "instanceTypes", "instance type (or optimal)", resource_type)
        _non_empty_list(resources, "subnets", "subnet", resource_type)
        strategy = resources.get("allocationStrategy")
        if resource_type == "SPOT" and strategy in (None, "BEST_FIT") and not resources.get("spotIamFleetRole"):
            raise ValidationError(
                "computeResources.spotIamFleetRole is required for a SPOT compute environment whose "
                "allocationStrategy is BEST_FIT or not specified"
            )
    elif resource_type in FARGATE_TYPES:
        given = [member for member in NOT_FOR_FARGATE if member in resources]
        if given:
            raise ValidationError(
                f"computeResources.{given[0]} isn't applicable for Fargate compute environments and can't be provided"
            )
        _non_empty_list(resources, "subnets", "subnet", resource_type)
        _non_empty_list(resources, "securityGroupIds", "security group", resource_type)
