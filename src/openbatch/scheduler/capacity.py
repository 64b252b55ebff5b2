"""Resource accounting: what each compute environment and the host have in use.

vCPUs are budgeted per compute environment (``maxvCpus``). Memory and GPUs are
physical and shared by every compute environment on this host.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from openbatch.domain.jobspec import Resources
from openbatch.domain.resources import ComputeEnvironment

MAX_RESOURCE = "MISCONFIGURATION:COMPUTE_ENVIRONMENT_MAX_RESOURCE"
JOB_RESOURCE = "MISCONFIGURATION:JOB_RESOURCE_REQUIREMENT"
INSUFFICIENT = "CAPACITY:INSUFFICIENT_INSTANCE_CAPACITY"


def host_memory_mib() -> int:
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") // (1024 * 1024)
    except (ValueError, OSError):
        return 1 << 20


@dataclass(frozen=True, slots=True)
class Refusal:
    """Why a job cannot be placed now. ``permanent`` means it never can with this configuration."""

    reason: str
    permanent: bool


class Pool(Protocol):
    """Machines other than this host behind a compute environment (a Ray cluster): their memory and
    GPUs, not the host's, are what its jobs use. vCPUs stay budgeted per compute environment here."""

    def refusal(self, need: Resources, ce: ComputeEnvironment, vcpus_used: float) -> Refusal | None: ...

    def acquire(self, need: Resources, ce_name: str) -> None: ...

    def release(self, need: Resources, ce_name: str) -> None: ...


class Capacity:
    def __init__(self, *, memory_mib: int, gpus: list[int]) -> None:
        self.memory_mib = memory_mib
        self.gpus = list(gpus)
        self.free_gpus = list(gpus)
        self.memory_used = 0
        self.vcpus_used: dict[str, float] = {}
        self.pool_of: Callable[[str], Pool | None] = lambda _name: None
        """The pool behind a compute environment, if its jobs do not run on this host."""

    def refusal(self, need: Resources, ce: ComputeEnvironment) -> Refusal | None:
        """``None`` if ``need`` fits ``ce`` right now."""
        if need.vcpus > ce.max_vcpus:
            return Refusal(
                f"{MAX_RESOURCE} - the job needs {need.vcpus:g} vCPUs but compute environment "
                f"{ce.name} has maxvCpus {ce.max_vcpus:g}",
                True,
            )
        pool = self.pool_of(ce.name)
        if pool is not None:
            if not ce.enabled:
                return Refusal(f"{INSUFFICIENT} - compute environment {ce.name} is DISABLED", False)
            return pool.refusal(need, ce, self.vcpus_used.get(ce.name, 0.0))
        if need.memory_mib is not None and need.memory_mib > self.memory_mib:
            return Refusal(
                f"{JOB_RESOURCE} - the job needs {need.memory_mib} MiB of memory but the host has "
                f"{self.memory_mib} MiB",
                True,
            )
        if need.gpus > len(self.gpus):
            have = f"{len(self.gpus)} GPUs" if self.gpus else "no GPUs"
            return Refusal(f"{JOB_RESOURCE} - the job needs {need.gpus} GPUs but the host has {have}", True)
        if not ce.enabled:
            return Refusal(f"{INSUFFICIENT} - compute environment {ce.name} is DISABLED", False)
        free = ce.max_vcpus - self.vcpus_used.get(ce.name, 0.0)
        if need.vcpus > free:
            return Refusal(
                f"{INSUFFICIENT} - the job needs {need.vcpus:g} vCPUs; compute environment {ce.name} "
                f"has {max(free, 0):g} of {ce.max_vcpus:g} free",
                False,
            )
        if need.memory_mib is not None and need.memory_mib > self.memory_mib - self.memory_used:
            return Refusal(
                f"{INSUFFICIENT} - the job needs {need.memory_mib} MiB of memory; "
                f"{self.memory_mib - self.memory_used} MiB are free on the host",
                False,
            )
        if need.gpus > len(self.free_gpus):
            return Refusal(
                f"{INSUFFICIENT} - the job needs {need.gpus} GPUs; {len(self.free_gpus)} are free on the host",
                False,
            )
        return None

    def acquire(self, need: Resources, ce_name: str, gpu_ids: tuple[int, ...] | None = None) -> tuple[int, ...]:
        """Take ``need`` on ``ce_name``; ``gpu_ids`` re-takes the GPUs a re-attached attempt already holds."""
        self.vcpus_used[ce_name] = self.vcpus_used.get(ce_name, 0.0) + need.vcpus
        pool = self.pool_of(ce_name)
        if pool is not None:
            pool.acquire(need, ce_name)
            return ()
        if need.memory_mib is not None:
            self.memory_used += need.memory_mib
        if gpu_ids is not None:
            self.free_gpus = [gpu for gpu in self.free_gpus if gpu not in gpu_ids]
            return gpu_ids
        taken = tuple(self.free_gpus[: need.gpus])
        del self.free_gpus[: need.gpus]
        return taken

    def release(self, need: Resources, ce_name: str, gpu_ids: tuple[int, ...]) -> None:
        self.vcpus_used[ce_name] = self.vcpus_used.get(ce_name, 0.0) - need.vcpus
        pool = self.pool_of(ce_name)
        if pool is not None:
            pool.release(need, ce_name)
            return
        if need.memory_mib is not None:
            self.memory_used -= need.memory_mib
        self.free_gpus.extend(gpu_ids)
        self.free_gpus.sort()
