"""Discovery of the GPUs this host can hand to jobs."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

GPU_ENV_OVERRIDE = "OPENBATCH_GPUS"
_NVIDIA_PROC_DIR = Path("/proc/driver/nvidia/gpus")


def detect_gpus() -> list[int]:
    """GPU indexes usable by jobs on this host, in ascending order.

    ``OPENBATCH_GPUS`` (``"0,1"``; empty for none) wins over detection so that
    an operator can reserve GPUs and tests can pretend to have some. Otherwise
    ``nvidia-smi`` is asked, and without it the driver's ``/proc`` entries are
    counted. Any failure means no GPUs rather than a crash at startup.
    """
    override = os.environ.get(GPU_ENV_OVERRIDE)
    if override is not None:
        return _parse_indexes(override.replace(",", " ").split())
    smi = shutil.which("nvidia-smi")
    if smi is not None:
        try:
            result = subprocess.run(
                [smi, "--query-gpu=index", "--format=csv,noheader"],
                stdin=subprocess.DEVNULL,
                capture_output=True,
                text=True,
                timeout=5,
                check=True,
            )
        except (OSError, subprocess.SubprocessError):
            return []
        return _parse_indexes(result.stdout.split())
    try:
        return list(range(sum(1 for _ in _NVIDIA_PROC_DIR.iterdir())))
    except OSError:
        return []


def _parse_indexes(tokens: list[str]) -> list[int]:
    try:
        return sorted({int(token) for token in tokens})
    except ValueError:
        return []
