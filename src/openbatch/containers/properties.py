"""A job's container properties as ECS documents them, mapped to a :class:`ContainerLaunch` (the server's side).

``volumes`` (``host.sourcePath``) with ``mountPoints``, ``readonlyRootFilesystem``, ``user``, ``environment``
(already in the job's environment) and ``linuxParameters`` (``initProcessEnabled``, ``sharedMemorySize``,
``tmpfs``, ``maxSwap`` and ``swappiness`` where cgroups allow), the job's vCPUs (CPU shares and quota) and
GPUs (their device nodes) are honoured; what the runtimes here cannot honour is refused at RegisterJobDefinition by
:func:`check` rather than silently dropped.
"""

from __future__ import annotations

import posixpath
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from openbatch.containers import cgroups
from openbatch.containers.images import ImageError, ImageStore, parse_reference
from openbatch.containers.spec import ContainerLaunch, Mount, Tmpfs
from openbatch.domain.errors import ValidationError


def check(container: Mapping[str, Any], runtime: str) -> None:
    """Refuse (ClientException) container properties that ``runtime`` cannot honour."""
    image = container.get("image")
    if isinstance(image, str) and image:
        try:
            parse_reference(image)
        except ImageError as exc:
            raise ValidationError(f"containerProperties.image: {exc}") from None
    volumes: dict[str, Mapping[str, Any]] = {}
    for volume in container.get("volumes") or []:
        name = volume.get("name") or ""
        if volume.get("efsVolumeConfiguration") is not None:
            raise ValidationError(
                f"Volume {name!r}: efsVolumeConfiguration is not available on this server; "
                "use host.sourcePath with a host path"
            )
        source = (volume.get("host") or {}).get("sourcePath")
        if source is not None and not posixpath.isabs(source):
            raise ValidationError(f"Volume {name!r}: host.sourcePath must be an absolute path; got {source!r}")
        if source is not None and "," in source:
            raise ValidationError(f"Volume {name!r}: host.sourcePath cannot contain a comma; got {source!r}")
        volumes[name] = volume
    for mount in container.get("mountPoints") or []:
        if mount.get("sourceVolume") not in volumes:
            raise ValidationError(
                f"mountPoints sourceVolume {mount.get('sourceVolume')!r} is not the name of a volume of this "
                "job definition"
            )
        target = mount.get("containerPath") or ""
        if not posixpath.isabs(target) or "," in target:
            raise ValidationError(f"mountPoints containerPath must be an absolute path without commas; got {target!r}")
    if container.get("privileged"):
        raise ValidationError("privileged containers are not available on this server")
    if container.get("ulimits"):
        raise ValidationError("ulimits are not applied by this server's container runtime; remove them")
    linux = container.get("linuxParameters") or {}
    if linux.get("devices"):
        raise ValidationError("linuxParameters.devices are not available on this server")
    _check_swap(linux)
    shm = linux.get("sharedMemorySize")
    if shm is not None and shm < 1:
        raise ValidationError(f"linuxParameters.sharedMemorySize must be at least 1 MiB; got {shm}")
    for tmpfs in linux.get("tmpfs") or []:
        target = tmpfs.get("containerPath") or ""
        if not posixpath.isabs(target):
            raise ValidationError(f"linuxParameters.tmpfs containerPath must be an absolute path; got {target!r}")
        if not isinstance(tmpfs.get("size"), int) or tmpfs["size"] < 1:
            raise ValidationError(f"linuxParameters.tmpfs size must be a number of MiB; got {tmpfs.get('size')!r}")
        if runtime == "bwrap" and tmpfs.get("mountOptions"):
            raise ValidationError(
                "linuxParameters.tmpfs mountOptions are not available with the bwrap container runtime"
            )


def _check_swap(linux: Mapping[str, Any]) -> None:
    max_swap, swappiness = linux.get("maxSwap"), linux.get("swappiness")
    if max_swap is not None and (not isinstance(max_swap, int) or max_swap < 0):
        raise ValidationError(f"linuxParameters.maxSwap must be 0 or a positive number of MiB; got {max_swap!r}")
    if swappiness is not None and (not isinstance(swappiness, int) or not 0 <= swappiness <= 100):
        raise ValidationError(f"linuxParameters.swappiness must be a whole number from 0 to 100; got {swappiness!r}")
    if max_swap in (None, 0):
        return  # no swap beyond memory (0), or the host's setting; swappiness counts only with maxSwap
    found = cgroups.layout()
    if found.memory is None:
        raise ValidationError(
            "linuxParameters.maxSwap is not available on this server: it cannot make memory cgroups here"
        )
    if swappiness is not None and found.v2:
        raise ValidationError("linuxParameters.swappiness is not available on this server (cgroup v2 has none)")


class Launcher:
    """Builds each attempt's :class:`ContainerLaunch` from its job's container properties."""

    def __init__(self, runtime: str, images: ImageStore, state_dir: Path, podman_dir: Path | None) -> None:
        self.runtime = runtime
        self.images = images
        self.state_dir = str(state_dir)
        self.podman_dir = str(podman_dir) if podman_dir is not None else None

    def launch_of(self, container: Mapping[str, Any], vcpus: float | None = None) -> ContainerLaunch:
        image = str(container.get("image") or "")
        try:
            found = self.images.resolve(image) if image else None
        except ImageError:
            found = None
        rootfs = str(self.images.rootfs_of(found)) if found is not None else None
        sources = {v.get("name"): (v.get("host") or {}).get("sourcePath") for v in container.get("volumes") or []}
        mounts = []
        for mount in container.get("mountPoints") or []:
            source = sources.get(mount.get("sourceVolume"))
            if source is None:
                # A volume without a host path is Docker's empty volume, private to the container.
                continue
            mounts.append(Mount(source, mount["containerPath"], bool(mount.get("readOnly", False))))
        linux = container.get("linuxParameters") or {}
        tmpfs = tuple(
            Tmpfs(t["containerPath"], int(t["size"]), tuple(t.get("mountOptions") or ()))
            for t in linux.get("tmpfs") or []
        )
        return ContainerLaunch(
            runtime=self.runtime,
            image=image,
            rootfs=rootfs,
            state_dir=self.state_dir,
            podman_dir=self.podman_dir,
            readonly_root=bool(container.get("readonlyRootFilesystem", False)),
            user=container.get("user") or None,
            mounts=tuple(mounts),
            tmpfs=tmpfs,
            init_process=bool(linux.get("initProcessEnabled", False)),
            shared_memory_mib=linux.get("sharedMemorySize"),
            vcpus=vcpus,
            swap_mib=int(linux.get("maxSwap") or 0),
            swappiness=linux.get("swappiness") if linux.get("maxSwap") else None,
        )
