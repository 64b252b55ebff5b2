"""Wires the fidelity pieces into a server: the container environment on every launch."""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

from openbatch.domain.arns import ResourceType
from openbatch.domain.job import Job
from openbatch.fidelity.container_env import ContainerEnvironment, EngineHooks, ImageMap, ImageMapError

if TYPE_CHECKING:
    from openbatch.config import Settings
    from openbatch.scheduler.registry import Registry
    from openbatch.service.context import ServiceContext

logger = logging.getLogger(__name__)


def load_image_map(settings: Settings) -> ImageMap | None:
    """The ``--image-map`` file, or ``None``; a bad file stops the server with a one-line reason."""
    path = settings.image_map
    if path is None:
        return None
    try:
        image_map = ImageMap.load(path)
    except ImageMapError as exc:
        raise SystemExit(f"openbatch server: {exc}") from None
    logger.info("image map %s: %d images", path, len(image_map.entries))
    return image_map


def container_environment_hook(
    settings: Settings, ctx: ServiceContext, registry: Registry
) -> Callable[[EngineHooks], None]:
    """An engine hook adding the Batch container environment (and the image map) to every attempt."""
    image_map = load_image_map(settings)
    bodies: dict[str, Mapping[str, Any] | None] = {}
    # Compute environments change rarely; forget the cached bodies whenever any resource changes.
    ctx.listeners.append(bodies.clear)

    def lookup_ce(name: str) -> Mapping[str, Any] | None:
        if name not in bodies:
            record = ctx.store.get_resource(ResourceType.COMPUTE_ENVIRONMENT.value, name)
            bodies[name] = record.body if record is not None else None
        return bodies[name]

    def region_of(job: Job) -> str:
        queue = registry.queues.get(job.spec.queue)
        if queue is not None and queue.arn.count(":") >= 5:
            return queue.arn.split(":")[3] or settings.region
        return settings.region

    host = settings.host if settings.host.startswith("127.") or settings.host == "localhost" else "127.0.0.1"
    source = ContainerEnvironment(
        region_of=region_of,
        lookup_ce=lookup_ce,
        image_map=image_map,
        metadata_base=f"http://{host}:{settings.port}",
    )
    return source.install
