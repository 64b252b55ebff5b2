"""Ray compute environments: which compute environments run on a Ray cluster, and the cluster
(executor and capacity) each of them uses.

A server process is one Ray driver, and a driver joins one cluster: every Ray compute environment
of a server names the same address. One naming another waits with a reason that says so.
"""

from __future__ import annotations

import asyncio
import hashlib
import importlib.util
import logging
from collections.abc import Callable, Sequence

from openbatch.domain.job import Job
from openbatch.domain.jobspec import Resources
from openbatch.domain.resources import ComputeEnvironment
from openbatch.executors.base import Executor
from openbatch.executors.binding import binding_of
from openbatch.executors.ray.cluster import ClusterSettings, RayCluster
from openbatch.executors.router import ExecutorRouter
from openbatch.logs.store import LogStore
from openbatch.scheduler.capacity import INSUFFICIENT, MAX_RESOURCE, Capacity, Pool, Refusal
from openbatch.scheduler.multinode import NodePlacement
from openbatch.scheduler.registry import Registry

logger = logging.getLogger(__name__)

_CONNECT_SECONDS = 60.0
"""How long the server's start waits for a Ray cluster's dispatcher (its running attempts) before
going on; recovery then relaunches the attempts it could not see, which the dispatcher, once
reached, recognises and does not run twice."""


class Unavailable:
    """The capacity of a compute environment bound to a Ray cluster this server cannot use."""

    def __init__(self, reason: str) -> None:
        self.reason = reason

    def refusal(self, need: Resources, ce: ComputeEnvironment, vcpus_used: float) -> Refusal | None:
        return Refusal(f"{INSUFFICIENT} - {self.reason}", False)

    def acquire(self, need: Resources, ce_name: str) -> None:
        pass

    def release(self, need: Resources, ce_name: str) -> None:
        pass


class RayEnvironments:
    def __init__(
        self,
        registry: Registry,
        log_store: LogStore,
        router: ExecutorRouter,
        *,
        default_address: str | None,
        owner: str,
        kill_grace_seconds: float,
    ) -> None:
        self._registry = registry
        self._log_store = log_store
        self._router = router
        self._default_address = default_address
        self.dispatcher_name = "dispatcher-" + hashlib.sha256(owner.encode()).hexdigest()[:12]
        """One dispatcher per store: every server of one database (and only those) shares it."""
        self._kill_grace = kill_grace_seconds
        self.cluster: RayCluster | None = None
        self._wake: Callable[[], None] = lambda: None
        self._on_start: Callable[[str, int, int | None], None] = lambda _job_id, _attempt, _at: None
        self._started = False
        self._connecting: asyncio.Task[None] | None = None

    def set_wake(self, wake: Callable[[], None]) -> None:
        """``wake`` (the engine's) is called when a cluster's capacity changes."""
        self._wake = wake
        if self.cluster is not None:
            self.cluster.on_change = wake

    def set_started(self, started: Callable[[str, int, int | None], None]) -> None:
        """``started`` (the engine's ``attempt_started``) is called when an attempt's process starts."""
        self._on_start = started
        if self.cluster is not None:
            self.cluster.on_start = started

    def _address_of(self, ce_name: str) -> str | None | Unavailable:
        """The Ray address a compute environment is bound to; ``None``: not a Ray one."""
        ce = self._registry.compute_environments.get(ce_name)
        if ce is None:
            return None
        binding = binding_of(ce.name, ce.tags, self._default_address)
        if binding.executor != "ray":
            return None
        if binding.address is None:
            return Unavailable(f"compute environment {ce_name} names no Ray cluster address")
        return binding.address

    def _cluster_for(self, ce_name: str) -> RayCluster | Unavailable | None:
        address = self._address_of(ce_name)
        if address is None or isinstance(address, Unavailable):
            return address
        if self.cluster is not None:
            if self.cluster.address == address:
                return self.cluster
            return Unavailable(
                f"this server is connected to Ray cluster {self.cluster.address}; one Ray cluster per server, "
                f"and compute environment {ce_name} names {address}"
            )
        if importlib.util.find_spec("ray") is None:
            return Unavailable("Ray is not installed on this server (pip install 'openbatch[ray]')")
        settings = ClusterSettings(
            address=address, dispatcher_name=self.dispatcher_name, kill_grace_seconds=self._kill_grace
        )
        cluster = self.cluster = RayCluster(settings, self._log_store, self._registry.compute_environments.get)
        cluster.on_change = self._wake
        cluster.on_start = self._on_start
        self._router.add(cluster)
        if self._started:
            # Bound after the server started (CreateComputeEnvironment): connect in the background.
            self._connecting = asyncio.get_running_loop().create_task(cluster.start(_CONNECT_SECONDS))
        return cluster

    def executor_for(self, ce_name: str) -> Executor | None:
        found = self._cluster_for(ce_name)
        return found if isinstance(found, RayCluster) else None

    def pool_for(self, ce_name: str) -> Pool | None:
        return self._cluster_for(ce_name)

    async def start(self) -> None:
        """Connect to the cluster of the Ray compute environments that exist now, before recovery asks
        what attempts it holds."""
        self._registry.refresh()
        for name in sorted(self._registry.compute_environments):
            if isinstance(self._cluster_for(name), RayCluster):
                break
        self._started = True
        if self.cluster is not None:
            await self.cluster.start(_CONNECT_SECONDS)


class RayNodePlacement:
    """Multi-node parallel jobs on Ray compute environments: every node on a Ray node of its own, all
    placed at once (the dispatcher's placement group); on other compute environments as ``fallback``
    places them."""

    def __init__(self, environments: RayEnvironments, capacity: Capacity, fallback: NodePlacement) -> None:
        self._environments = environments
        self._capacity = capacity
        self._fallback = fallback

    def refusal(self, nodes: Sequence[Resources], total: Resources, ce: ComputeEnvironment) -> Refusal | None:
        cluster = self._environments.executor_for(ce.name)
        if not isinstance(cluster, RayCluster):
            return self._fallback.refusal(nodes, total, ce)
        if total.vcpus > ce.max_vcpus:
            return Refusal(
                f"{MAX_RESOURCE} - the {len(nodes)} nodes of this multi-node parallel job need {total.vcpus:g} "
                f"vCPUs together but compute environment {ce.name} has maxvCpus {ce.max_vcpus:g}",
                True,
            )
        if not ce.enabled:
            return Refusal(f"{INSUFFICIENT} - compute environment {ce.name} is DISABLED", False)
        return cluster.gang_refusal(nodes, ce, self._capacity.vcpus_used.get(ce.name, 0.0))

    def main_node_address(self, parent: Job) -> str:
        if isinstance(self._environments.executor_for(parent.compute_environment or ""), RayCluster):
            return ""  # known once the nodes are placed: the dispatcher fills it in
        return self._fallback.main_node_address(parent)
