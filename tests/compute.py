"""``computeResources`` that satisfy AWS's rules for each compute environment type."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, cast

if TYPE_CHECKING:
    from mypy_boto3_batch.type_defs import ComputeResourceTypeDef

EC2_REQUIRED: dict[str, Any] = {
    "instanceTypes": ["optimal"],
    "subnets": ["subnet-0123456789abcdef0"],
    "instanceRole": "ecsInstanceRole",
}
FARGATE_REQUIRED: dict[str, Any] = {
    "subnets": ["subnet-0123456789abcdef0"],
    "securityGroupIds": ["sg-0123456789abcdef0"],
}


def compute_resources(resource_type: str = "EC2", max_vcpus: int = 4, **members: Any) -> ComputeResourceTypeDef:
    """A valid ``computeResources`` of ``resource_type``; ``members`` add to or replace the defaults."""
    base = FARGATE_REQUIRED if resource_type.startswith("FARGATE") else EC2_REQUIRED
    if resource_type == "SPOT":
        base = {**base, "allocationStrategy": "SPOT_CAPACITY_OPTIMIZED"}
    return cast("ComputeResourceTypeDef", {"type": resource_type, "maxvCpus": max_vcpus, **base, **members})
