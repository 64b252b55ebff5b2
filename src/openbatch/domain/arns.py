"""ARN building and parsing for the Batch resource types."""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import StrEnum

from openbatch.domain.errors import ValidationError


class ResourceType(StrEnum):
    COMPUTE_ENVIRONMENT = "compute-environment"
    JOB_QUEUE = "job-queue"
    JOB_DEFINITION = "job-definition"
    JOB = "job"
    SCHEDULING_POLICY = "scheduling-policy"
    SERVICE_ENVIRONMENT = "service-environment"
    SERVICE_JOB = "service-job"
    QUOTA_SHARE = "quota-share"
    CONSUMABLE_RESOURCE = "consumable-resource"


_ARN = re.compile(r"^arn:(?P<partition>aws[a-z-]*):batch:(?P<region>[^:]*):(?P<account>\d*):(?P<rest>.+)$")


@dataclass(frozen=True, slots=True)
class Arn:
    partition: str
    region: str
    account: str
    resource_type: ResourceType
    resource_id: str
    """Name (``name:revision`` for job definitions, job id for jobs)."""

    def __str__(self) -> str:
        return _text(self.partition, self.region, self.account, self.resource_type, self.resource_id)


def _text(partition: str, region: str, account: str, resource_type: ResourceType, resource_id: str) -> str:
    return f"arn:{partition}:batch:{region}:{account}:{resource_type.value}/{resource_id}"


@dataclass(frozen=True, slots=True)
class ArnFactory:
    """Builds ARNs for one account and region."""

    region: str
    account: str
    partition: str = "aws"

    def build(self, resource_type: ResourceType, resource_id: str) -> str:
        # Without building an ``Arn`` on the way: every SubmitJob answer has one.
        return _text(self.partition, self.region, self.account, resource_type, resource_id)

    def in_region(self, region: str) -> ArnFactory:
        return ArnFactory(region=region, account=self.account, partition=self.partition)


def is_arn(value: str) -> bool:
    return value.startswith("arn:")


def parse_arn(value: str) -> Arn:
    """Parse a Batch ARN; raise ``ValidationError`` for anything else."""
    match = _ARN.match(value)
    if match is None:
        raise ValidationError(f"{value!r} is not a valid AWS Batch ARN")
    kind, sep, resource_id = match["rest"].partition("/")
    try:
        resource_type = ResourceType(kind)
    except ValueError:
        raise ValidationError(f"{value!r} does not name a taggable AWS Batch resource") from None
    if not sep or not resource_id:
        raise ValidationError(f"{value!r} is not a valid AWS Batch ARN")
    return Arn(match["partition"], match["region"], match["account"], resource_type, resource_id)


def name_from_reference(value: str, resource_type: ResourceType) -> str:
    """Accept a name or an ARN of the given type and return the name part."""
    if not is_arn(value):
        return value
    arn = parse_arn(value)
    if arn.resource_type is not resource_type:
        raise ValidationError(f"{value!r} is not a {resource_type.value} ARN")
    return arn.resource_id
