"""What an attempt's container is: the part of a :class:`~openbatch.executors.base.LaunchSpec` a runtime reads.

Resolved by the server (image name → root filesystem of the local image store, volumes → host paths) and
carried to the supervisor as JSON, so the supervisor needs no configuration of its own to run it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

RUNTIMES = ("none", "bwrap", "podman")


@dataclass(frozen=True, slots=True)
class Mount:
    """A host path seen inside the container (ECS ``mountPoints`` over ``volumes``)."""

    source: str
    target: str
    read_only: bool = False


@dataclass(frozen=True, slots=True)
class Tmpfs:
    """A tmpfs mount (``linuxParameters.tmpfs``); ``size_mib`` as ECS gives it."""

    target: str
    size_mib: int
    options: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True, kw_only=True)
class ContainerLaunch:
    runtime: str
    """``bwrap`` or ``podman``."""
    image: str
    """The job's ``image`` as submitted (for messages)."""
    rootfs: str | None
    """The image's root filesystem directory in the local store; ``None``: the image is not there."""
    state_dir: str
    """Per-attempt scratch of the runtime (overlay layers, mount points): outside the server's data dir, so
    that a job running as another user can reach its root filesystem."""
    podman_dir: str | None = None
    """podman's storage and the project's ``containers.conf`` (``podman`` only)."""
    readonly_root: bool = False
    user: str | None = None
    """``user`` of the container properties: a name of the image's /etc/passwd, ``uid`` or ``uid:gid``."""
    mounts: tuple[Mount, ...] = ()
    tmpfs: tuple[Tmpfs, ...] = ()
    init_process: bool = False
    shared_memory_mib: int | None = None
    vcpus: float | None = None
    """CPU shares and quota of the attempt (``None``: not limited)."""
    swap_mib: int = 0
    """Swap the attempt may use beyond its memory (``linuxParameters.maxSwap``)."""
    swappiness: int | None = None
    """``linuxParameters.swappiness`` (``None``: the host's)."""

    def to_json(self) -> dict[str, Any]:
        return {
            "runtime": self.runtime,
            "image": self.image,
            "rootfs": self.rootfs,
            "stateDir": self.state_dir,
            "podmanDir": self.podman_dir,
            "readonlyRoot": self.readonly_root,
            "user": self.user,
            "mounts": [{"source": m.source, "target": m.target, "readOnly": m.read_only} for m in self.mounts],
            "tmpfs": [{"target": t.target, "sizeMib": t.size_mib, "options": list(t.options)} for t in self.tmpfs],
            "initProcess": self.init_process,
            "sharedMemoryMib": self.shared_memory_mib,
            "vcpus": self.vcpus,
            "swapMib": self.swap_mib,
            "swappiness": self.swappiness,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> ContainerLaunch:
        shm = data.get("sharedMemoryMib")
        return cls(
            runtime=str(data["runtime"]),
            image=str(data["image"]),
            rootfs=None if data.get("rootfs") is None else str(data["rootfs"]),
            state_dir=str(data["stateDir"]),
            podman_dir=None if data.get("podmanDir") is None else str(data["podmanDir"]),
            readonly_root=bool(data.get("readonlyRoot", False)),
            user=None if data.get("user") is None else str(data["user"]),
            mounts=tuple(
                Mount(str(m["source"]), str(m["target"]), bool(m.get("readOnly", False)))
                for m in data.get("mounts", ())
            ),
            tmpfs=tuple(
                Tmpfs(str(t["target"]), int(t["sizeMib"]), tuple(str(o) for o in t.get("options", ())))
                for t in data.get("tmpfs", ())
            ),
            init_process=bool(data.get("initProcess", False)),
            shared_memory_mib=None if shm is None else int(shm),
            vcpus=None if data.get("vcpus") is None else float(data["vcpus"]),
            swap_mib=int(data.get("swapMib") or 0),
            swappiness=None if data.get("swappiness") is None else int(data["swappiness"]),
        )
