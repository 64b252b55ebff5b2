"""What every use case needs: the store, ARN building, the clock, change listeners."""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import lru_cache

from openbatch.clock import Clock
from openbatch.domain.arns import ArnFactory
from openbatch.store.base import JobDefinitionRecord, Store


@dataclass(frozen=True, slots=True, kw_only=True)
class Caller:
    """Who is calling, as far as ARNs are concerned: the region comes from the SigV4 scope."""

    region: str
    account: str

    @property
    def arns(self) -> ArnFactory:
        return _arn_factory(self.region, self.account)


@lru_cache(maxsize=64)
def _arn_factory(region: str, account: str) -> ArnFactory:
    # One per region a client names (bounded: the region comes from the request); every SubmitJob needs one.
    return ArnFactory(region=region, account=account)


@dataclass(slots=True, kw_only=True)
class ServiceContext:
    store: Store
    clock: Clock
    default_caller: Caller
    host_vcpus: int = field(default_factory=lambda: os.cpu_count() or 1)
    listeners: list[Callable[[], None]] = field(default_factory=list)
    definition_cache: dict[tuple[str, int | None], JobDefinitionRecord] = field(default_factory=dict)
    """Job definitions by (name, revision or None for latest ACTIVE), for SubmitJob.

    Valid because this process is the only writer of its store; servers sharing a
    PostgreSQL database will need to invalidate it on each other's changes.
    """

    def resources_changed(self) -> None:
        """Tell the scheduler that queues, compute environments or policies changed."""
        for listener in self.listeners:
            listener()
