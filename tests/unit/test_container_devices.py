"""GPU device nodes for containers: which nodes of a device directory a job's GPUs bring, per runtime."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from openbatch.containers import devices, runtimes
from openbatch.containers.spec import ContainerLaunch
from openbatch.executors.base import LaunchSpec


@pytest.fixture
def dev(tmp_path: Path) -> Path:
    """A device directory laid out as NVIDIA's driver makes it (plain files stand in for the nodes)."""
    root = tmp_path / "dev"
    root.mkdir()
    for name in ("nvidia0", "nvidia1", "nvidia2", "nvidiactl", "nvidia-uvm", "nvidia-uvm-tools", "null"):
        (root / name).touch()
    return root


def test_a_job_gets_its_own_gpus_and_the_shared_nodes(dev: Path) -> None:
    nodes = devices.gpu_nodes((2, 0), dev)
    assert nodes == [dev / "nvidia0", dev / "nvidia2", dev / "nvidiactl", dev / "nvidia-uvm", dev / "nvidia-uvm-tools"]


def test_no_gpus_no_nodes_and_missing_nodes_are_left_out(dev: Path, tmp_path: Path) -> None:
    assert devices.gpu_nodes((), dev) == []
    assert devices.gpu_nodes((5,), dev) == [dev / "nvidiactl", dev / "nvidia-uvm", dev / "nvidia-uvm-tools"]
    assert devices.gpu_nodes((0,), tmp_path / "absent") == []


def test_podman_passes_the_nodes_and_the_cpu_limits(dev: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(devices, "DEV", dev)
    rootfs = tmp_path / "rootfs"
    rootfs.mkdir()
    container = ContainerLaunch(
        runtime="podman",
        image="busybox",
        rootfs=str(rootfs),
        state_dir=str(tmp_path / "state"),
        podman_dir=str(tmp_path / "podman"),
        vcpus=1.5,
        swap_mib=16,
        swappiness=10,
    )
    spec = LaunchSpec(
        job_id="job",
        attempt=1,
        command=("true",),
        environment={},
        working_dir=tmp_path / "work",
        log_stream="s",
        memory_mib=64,
        gpu_ids=(1,),
        container=container,
    )
    argv = runtimes.prepare(spec, {"CUDA_VISIBLE_DEVICES": "1"}, None).argv
    joined = " ".join(argv)
    assert f"--device {dev}/nvidia1:{dev}/nvidia1" in joined
    assert f"--device {dev}/nvidiactl:{dev}/nvidiactl" in joined
    assert f"{dev}/nvidia0" not in joined
    assert "--cpus 1.5 --cpu-shares 1536" in joined
    assert "--memory 64m --memory-swap 80m --memory-swappiness 10" in joined
    assert os.path.exists(tmp_path / "state" / runtimes.attempt_name(spec) / "env")


def test_the_launch_carries_the_limits_to_the_supervisor() -> None:
    launch = ContainerLaunch(
        runtime="bwrap", image="b", rootfs="/r", state_dir="/s", vcpus=0.5, swap_mib=8, swappiness=30
    )
    assert ContainerLaunch.from_json(launch.to_json()) == launch
