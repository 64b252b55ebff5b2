"""The environment of a Batch container, for jobs that run as local processes.

ECS sets ``AWS_EXECUTION_ENV`` in every container (``AWS_ECS_EC2``, or
``AWS_ECS_FARGATE`` on Fargate), and the region variables; tools such as
Metaflow read them to know they run on Batch. The engine itself adds the
``AWS_BATCH_*`` variables. The image map gives jobs a Python or other tools: an
``image`` names a local directory (a virtualenv or any prefix) whose ``bin`` goes
first on ``PATH``, as the image's would in a container.
"""

from __future__ import annotations

import json
import os
import socket
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from openbatch.domain.job import Job
from openbatch.fidelity.task_metadata import metadata_uri

FARGATE_TYPES = ("FARGATE", "FARGATE_SPOT")
DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


class ImageMapError(ValueError):
    """The image map file is unreadable or malformed (reported at server start)."""


@dataclass(frozen=True, slots=True)
class ImageEnvironment:
    """What an image name stands for on this host."""

    path: tuple[str, ...] = ()
    """Directories put first on PATH, in order."""
    environment: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class ImageMap:
    """Image name → local environment. Lookup: the exact image, then without its tag or digest
    (``python:3.12`` → ``python``), then ``*``."""

    entries: dict[str, ImageEnvironment] = field(default_factory=dict)

    def lookup(self, image: str | None) -> ImageEnvironment | None:
        if not image:
            return self.entries.get("*")
        repository = image.split("@", 1)[0]
        last = repository.rsplit("/", 1)[-1]
        if ":" in last:
            repository = repository[: len(repository) - len(last)] + last.split(":", 1)[0]
        for key in (image, repository, "*"):
            if key in self.entries:
                return self.entries[key]
        return None

    @classmethod
    def load(cls, path: Path) -> ImageMap:
        """Read a JSON object: ``{"image": "/dir" | {"path": "/dir" | ["/a", "/b"], "environment": {...}}}``.

        A directory with a ``bin`` subdirectory (a virtualenv, a prefix) contributes
        ``bin``; a virtualenv (``pyvenv.cfg``) also sets ``VIRTUAL_ENV``.
        """
        try:
            raw = json.loads(path.read_text())
        except (OSError, ValueError) as exc:
            raise ImageMapError(f"image map {path}: {exc}") from None
        if not isinstance(raw, dict):
            raise ImageMapError(f"image map {path}: expected a JSON object of image names")
        return cls({str(name): _entry(path, str(name), value) for name, value in raw.items()})


def _entry(source: Path, name: str, value: Any) -> ImageEnvironment:
    if isinstance(value, str):
        value = {"path": value}
    if not isinstance(value, dict):
        raise ImageMapError(f"image map {source}: {name!r} must map to a directory or an object")
    dirs = value.get("path", [])
    dirs = [dirs] if isinstance(dirs, str) else dirs
    env = value.get("environment", {})
    if not isinstance(dirs, list) or not all(isinstance(d, str) for d in dirs):
        raise ImageMapError(f"image map {source}: {name!r}.path must be a directory or a list of directories")
    if not isinstance(env, dict) or not all(isinstance(k, str) and isinstance(v, str) for k, v in env.items()):
        raise ImageMapError(f"image map {source}: {name!r}.environment must map names to strings")
    path: list[str] = []
    environment = dict(env)
    for entry in dirs:
        directory = Path(entry).expanduser()
        if not directory.is_absolute():
            directory = (source.parent / directory).resolve()
        if (directory / "pyvenv.cfg").is_file():
            environment.setdefault("VIRTUAL_ENV", str(directory))
        path.append(str(directory / "bin") if (directory / "bin").is_dir() else str(directory))
    return ImageEnvironment(tuple(path), environment)


def batch_container_environment(
    job: Job,
    attempt: int,
    ce: Mapping[str, Any] | None,
    *,
    region: str,
    image_map: ImageMap | None = None,
    hostname: str | None = None,
    base_path: str | None = None,
    metadata_base: str | None = None,
) -> dict[str, str]:
    """Variables ECS gives a Batch job's container, plus the image map's, for ``attempt`` of ``job``
    placed on compute environment ``ce`` (its stored body). Variables the job sets itself win."""
    resource_type = ((ce or {}).get("computeResources") or {}).get("type", "EC2")
    env: dict[str, str] = {
        "AWS_EXECUTION_ENV": "AWS_ECS_FARGATE" if resource_type in FARGATE_TYPES else "AWS_ECS_EC2",
        "AWS_DEFAULT_REGION": region,
        "AWS_REGION": region,
        "HOSTNAME": hostname or socket.gethostname(),
    }
    if metadata_base:
        env["ECS_CONTAINER_METADATA_URI_V4"] = metadata_uri(metadata_base, job, attempt)
    image = job.spec.container.get("image")
    mapped = image_map.lookup(image) if image_map is not None else None
    if mapped is not None:
        env.update(mapped.environment)
        if mapped.path:
            current = job.spec.environment.get("PATH") or base_path or os.environ.get("PATH") or DEFAULT_PATH
            env["PATH"] = os.pathsep.join([*mapped.path, current])
    for name in job.spec.environment:
        if name != "PATH":
            env.pop(name, None)
    return env


class EngineHooks(Protocol):
    def add_launch_environment(self, source: Callable[[Job, int], Mapping[str, str]]) -> None: ...


@dataclass(slots=True)
class ContainerEnvironment:
    """The launch environment source wired into the engine; compute environment bodies are read
    through ``lookup_ce`` (the store, cached by the caller's registry refresh)."""

    region_of: Callable[[Job], str]
    lookup_ce: Callable[[str], Mapping[str, Any] | None]
    image_map: ImageMap | None = None
    hostname: str = field(default_factory=socket.gethostname)
    metadata_base: str | None = None
    """This server's URL, for ``ECS_CONTAINER_METADATA_URI_V4`` (``task_metadata``)."""

    def __call__(self, job: Job, attempt: int) -> Mapping[str, str]:
        ce = self.lookup_ce(job.compute_environment) if job.compute_environment else None
        return batch_container_environment(
            job,
            attempt,
            ce,
            region=self.region_of(job),
            image_map=self.image_map,
            hostname=self.hostname,
            metadata_base=self.metadata_base,
        )

    def install(self, engine: EngineHooks) -> None:
        engine.add_launch_environment(self)
