"""The device nodes a container gets for its GPUs (NVIDIA's driver layout under ``/dev``).

A job with a GPU requirement sees ``CUDA_VISIBLE_DEVICES`` (set by the executor) and, in a container, the
nodes of its own GPUs plus the driver's shared ones: ``nvidia<N>`` for each GPU index, ``nvidiactl``,
``nvidia-uvm``, ``nvidia-uvm-tools`` and ``nvidia-modeset``, those that exist on this host.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

DEV = Path("/dev")
SHARED_NODES = ("nvidiactl", "nvidia-uvm", "nvidia-uvm-tools", "nvidia-modeset")


def gpu_nodes(gpu_ids: Iterable[int], dev: Path | None = None) -> list[Path]:
    """The device nodes to bind into a container for ``gpu_ids`` (none without GPUs)."""
    ids = sorted(set(gpu_ids))
    if not ids:
        return []
    dev = DEV if dev is None else dev
    wanted = [dev / f"nvidia{index}" for index in ids] + [dev / name for name in SHARED_NODES]
    return [node for node in wanted if node.exists()]
