"""Typed views of compute environments, job queues and scheduling policies.

The stored body is the AWS detail shape (what Describe* returns); these views
carry only what scheduling needs, parsed once when the resource changes.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True, slots=True, kw_only=True)
class ComputeEnvironment:
    name: str
    arn: str
    enabled: bool
    max_vcpus: float
    """vCPUs that jobs placed here may use at once."""
    managed: bool = True
    tags: Mapping[str, str] = field(default_factory=dict)
    """Its tags: ``openbatch:executor`` and friends bind it to an executor (``executors/router.py``)."""

    @classmethod
    def from_body(cls, body: dict[str, Any], *, host_vcpus: int) -> ComputeEnvironment:
        managed = body.get("type") == "MANAGED"
        if managed:
            max_vcpus = float(body.get("computeResources", {}).get("maxvCpus", 0))
        else:
            # UNMANAGED: the capacity is this host's, unless unmanagedvCpus narrows it.
            max_vcpus = float(body.get("unmanagedvCpus") or host_vcpus)
        return cls(
            name=body["computeEnvironmentName"],
            arn=body["computeEnvironmentArn"],
            enabled=body.get("state", "ENABLED") == "ENABLED",
            max_vcpus=max_vcpus,
            managed=managed,
            tags=dict(body.get("tags") or {}),
        )


@dataclass(frozen=True, slots=True, kw_only=True)
class TimeLimitAction:
    reason: str
    max_time_ms: int
    action: str


@dataclass(frozen=True, slots=True, kw_only=True)
class JobQueue:
    name: str
    arn: str
    enabled: bool
    priority: int
    compute_environments: tuple[str, ...]
    """Compute environment names in ascending ``order``."""
    scheduling_policy_arn: str | None = None
    time_limit_actions: tuple[TimeLimitAction, ...] = field(default_factory=tuple)

    @classmethod
    def from_body(cls, body: dict[str, Any]) -> JobQueue:
        order = sorted(body.get("computeEnvironmentOrder", []), key=lambda e: e["order"])
        return cls(
            name=body["jobQueueName"],
            arn=body["jobQueueArn"],
            enabled=body.get("state", "ENABLED") == "ENABLED",
            priority=int(body["priority"]),
            compute_environments=tuple(e["computeEnvironment"].rsplit("/", 1)[-1] for e in order),
            scheduling_policy_arn=body.get("schedulingPolicyArn"),
            time_limit_actions=tuple(
                TimeLimitAction(reason=a["reason"], max_time_ms=int(a["maxTimeSeconds"]) * 1000, action=a["action"])
                for a in body.get("jobStateTimeLimitActions", [])
            ),
        )


@dataclass(frozen=True, slots=True, kw_only=True)
class ShareWeight:
    share_identifier: str
    """Exact identifier, or a prefix when ``wildcard``."""
    weight_factor: float
    wildcard: bool = False

    def matches(self, share: str) -> bool:
        return share.startswith(self.share_identifier) if self.wildcard else share == self.share_identifier


@dataclass(frozen=True, slots=True, kw_only=True)
class FairsharePolicy:
    share_decay_seconds: int = 0
    compute_reservation: int = 0
    weights: tuple[ShareWeight, ...] = field(default_factory=tuple)

    def weight_of(self, share: str) -> float:
        exact = [w for w in self.weights if not w.wildcard and w.matches(share)]
        if exact:
            return exact[0].weight_factor
        for weight in self.weights:
            if weight.matches(share):
                return weight.weight_factor
        return 1.0


@dataclass(frozen=True, slots=True, kw_only=True)
class SchedulingPolicy:
    name: str
    arn: str
    fairshare: FairsharePolicy | None

    @classmethod
    def from_body(cls, body: dict[str, Any]) -> SchedulingPolicy:
        fp = body.get("fairsharePolicy")
        fairshare = None
        if fp is not None:
            weights = []
            for entry in fp.get("shareDistribution", []):
                ident = entry["shareIdentifier"]
                weights.append(
                    ShareWeight(
                        share_identifier=ident.rstrip("*"),
                        weight_factor=float(entry.get("weightFactor", 1.0)),
                        wildcard=ident.endswith("*"),
                    )
                )
            fairshare = FairsharePolicy(
                share_decay_seconds=int(fp.get("shareDecaySeconds", 0)),
                compute_reservation=int(fp.get("computeReservation", 0)),
                weights=tuple(weights),
            )
        return cls(name=body["name"], arn=body["arn"], fairshare=fairshare)
