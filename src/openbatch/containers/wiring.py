"""``openbatch server --container-runtime``: which runtime runs jobs' images, checked at start."""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from openbatch.config import Settings
from openbatch.containers import cgroups, properties, runtimes
from openbatch.containers.images import ImageStore
from openbatch.domain.job import Job
from openbatch.fidelity import multi_container
from openbatch.scheduler.engine import JobEngine
from openbatch.service import job_definition_rules

logger = logging.getLogger(__name__)

CHOICES = ("none", "bwrap", "podman", "auto")


class ContainerRuntimeError(RuntimeError):
    """The runtime asked for cannot run containers on this host (said at start)."""


def images_of(data_dir: Path) -> ImageStore:
    return ImageStore(data_dir / "images")


def podman_dir_of(data_dir: Path) -> Path:
    return data_dir / "containers" / "podman"


def state_dir_of(settings: Settings) -> Path:
    """Per-attempt overlays beside the jobs' working directories: outside the data dir (0700), which a job
    running as another user could not traverse to its root filesystem."""
    work = settings.work_dir
    return work.parent / f"{work.name}-containers"


def choose(requested: str, data_dir: Path) -> str:
    """The runtime to use: ``requested``, or for ``auto`` the first that works (bwrap, podman, else none)."""
    if requested not in CHOICES:
        raise ContainerRuntimeError(f"--container-runtime must be one of {', '.join(CHOICES)}; got {requested!r}")
    if requested == "none":
        return "none"
    candidates = ("bwrap", "podman") if requested == "auto" else (requested,)
    reasons = []
    for candidate in candidates:
        why = runtimes.probe(candidate, podman_dir_of(data_dir))
        if why is None:
            return candidate
        reasons.append(f"{candidate}: {why}")
    if requested == "auto":
        logger.warning("no container runtime works here (%s): jobs run as host processes", "; ".join(reasons))
        return "none"
    raise ContainerRuntimeError(f"container runtime {requested} does not work here: {reasons[0]}")


@dataclass(frozen=True, slots=True)
class ContainerRuntime:
    name: str
    launcher: properties.Launcher | None

    def install(self, engine: JobEngine) -> None:
        launcher = self.launcher
        if launcher is None:
            return

        def container_of(job: Job) -> Any:
            container = job.spec.container
            if multi_container.ECS in container or multi_container.EKS in container:
                return None  # the runner of an ECS or EKS job's containers runs on the host (README)
            return launcher.launch_of(container, vcpus=job.spec.resources.vcpus)

        engine.container_of = container_of


def configure(settings: Settings, requested: str) -> Callable[[JobEngine], None]:
    """Pick the runtime, say which at start, refuse at registration what it cannot honour."""
    name = choose(requested, settings.data_dir)
    if name == "none":
        logger.info("container runtime: none (jobs run as processes of this host; image is not used)")
        return ContainerRuntime(name, None).install
    state_dir = state_dir_of(settings)
    state_dir.mkdir(parents=True, exist_ok=True)
    state_dir.chmod(0o711)
    memory, cpu = cgroups.layout().says()
    if name == "podman":
        memory, cpu = "podman --memory", "podman --cpus and --cpu-shares"
    logger.info(
        "container runtime: %s (images from %s; memory limits by %s; vCPUs by %s; host network)",
        name,
        images_of(settings.data_dir).root,
        memory,
        cpu,
    )
    job_definition_rules.CONTAINER_CHECKS.append(lambda container: properties.check(container, name))
    launcher = properties.Launcher(
        name,
        images_of(settings.data_dir),
        state_dir,
        podman_dir_of(settings.data_dir) if name == "podman" else None,
    )
    return ContainerRuntime(name, launcher).install
