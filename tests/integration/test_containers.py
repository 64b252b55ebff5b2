"""Jobs in containers (``--container-runtime bwrap|podman``) through a real server, with an image built here.

The image is a busybox root filesystem made from Debian's ``busybox-static`` (no registry), brought in with
``openbatch image import``. A runtime missing on this host skips its tests, except in CI, where it fails.
"""

from __future__ import annotations

import contextlib
import os
import random
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from openbatch.containers import runtimes
from tests.support import ServerProcess, client_exception, make_queue, shell_definition, unique, wait_for_status

if TYPE_CHECKING:
    from mypy_boto3_batch import BatchClient

pytestmark = pytest.mark.slow

OS_RELEASE = 'PRETTY_NAME="OpenBatch test image"\nID=openbatch-test\n'


@pytest.fixture(scope="session")
def busybox_rootfs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    busybox = shutil.which("busybox") or "/bin/busybox"
    if not _is_static(Path(busybox)):
        _unavailable("busybox-static is not installed (apt-get install busybox-static)")
    root = tmp_path_factory.mktemp("rootfs")
    (root / "bin").mkdir()
    shutil.copy2(busybox, root / "bin" / "busybox")
    applets = subprocess.run([busybox, "--list"], capture_output=True, text=True, check=True).stdout.split()
    for applet in applets:
        if applet != "busybox":
            (root / "bin" / applet).symlink_to("busybox")
    (root / "etc").mkdir()
    (root / "etc" / "os-release").write_text(OS_RELEASE)
    (root / "etc" / "passwd").write_text("root:x:0:0:root:/root:/bin/sh\nworker:x:1234:1234::/home/worker:/bin/sh\n")
    (root / "etc" / "group").write_text("root:x:0:\nworker:x:1234:\n")
    return root


def _is_static(path: Path) -> bool:
    """A 64-bit ELF executable without a program interpreter (PT_INTERP): it runs in an empty root."""
    try:
        data = path.read_bytes()
    except OSError:
        return False
    if data[:5] != b"\x7fELF\x02":
        return False
    phoff = int.from_bytes(data[0x20:0x28], "little")
    size, count = int.from_bytes(data[0x36:0x38], "little"), int.from_bytes(data[0x38:0x3A], "little")
    types = [int.from_bytes(data[phoff + i * size : phoff + i * size + 4], "little") for i in range(count)]
    return 3 not in types


def _unavailable(reason: str) -> None:
    if os.environ.get("CI"):
        pytest.fail(f"{reason} (CI must run the container tests)")
    pytest.skip(reason)


@pytest.fixture(scope="module", params=["bwrap", "podman"])
def container_server(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory, busybox_rootfs: Path
) -> Iterator[ServerProcess]:
    runtime = str(request.param)
    data_dir = tmp_path_factory.mktemp(f"server-{runtime}")
    why = runtimes.probe(runtime, data_dir / "containers" / "podman")
    if why is not None:
        _unavailable(f"{runtime} cannot run containers here: {why}")
    subprocess.run(
        [sys.executable, "-m", "openbatch.cli.main", "image", "import", str(busybox_rootfs), "busybox"],
        env={**os.environ, "OPENBATCH_DATA_DIR": str(data_dir)},
        check=True,
        capture_output=True,
    )
    server = ServerProcess(
        data_dir,
        # auto takes bubblewrap first where it works: the bwrap server also shows that auto says what it took.
        extra_args=(
            "--container-runtime",
            "auto" if runtime == "bwrap" else runtime,
            "--kill-grace-seconds",
            "2",
            "--log-level",
            "info",
        ),
        env={"OPENBATCH_GPUS": "0"},  # one GPU, in name only (see test_gpu_job_sees_its_gpu)
        job_user=None,  # the server's default: nobody under root, mapped to the image's root inside
    ).start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="module")
def cbatch(container_server: ServerProcess) -> BatchClient:
    return container_server.batch()


@pytest.fixture(scope="module")
def cqueue(cbatch: BatchClient) -> str:
    return make_queue(cbatch)


def _run(batch: BatchClient, queue: str, definition: str, status: str = "SUCCEEDED", **kw: Any) -> dict[str, Any]:
    job_id = batch.submit_job(jobName=unique("c"), jobQueue=queue, jobDefinition=definition, **kw)["jobId"]
    return wait_for_status(batch, job_id, [status, "FAILED" if status == "SUCCEEDED" else "SUCCEEDED"], timeout=60)


def _output(server: ServerProcess, job: dict[str, Any]) -> list[str]:
    stream = job["container"]["logStreamName"]
    events = server.logs().get_log_events(logGroupName="/aws/batch/job", logStreamName=stream, startFromHead=True)
    return [event["message"] for event in events["events"]]


def _processes_with(marker: str) -> list[int]:
    found = []
    for name in os.listdir("/proc"):
        if name.isdigit():
            try:
                if marker.encode() in Path(f"/proc/{name}/cmdline").read_bytes():
                    found.append(int(name))
            except OSError:
                continue
    return found


def test_job_sees_its_image_environment_and_working_dir(
    container_server: ServerProcess, cbatch: BatchClient, cqueue: str
) -> None:
    data_dir = container_server.data_dir
    script = (
        f'cat /etc/os-release; echo "greeting=$GREETING"; echo "cwd=$(pwd)"; echo "uid=$(id -u)";'
        f" ls {data_dir} >/dev/null 2>&1 || echo server-files-hidden;"
        " echo written > in-workdir && cat in-workdir"
    )
    definition = shell_definition(
        cbatch, script, container={"environment": [{"name": "GREETING", "value": "hello from the image"}]}
    )
    job = _run(cbatch, cqueue, definition)
    assert job["status"] == "SUCCEEDED", job
    lines = _output(container_server, job)
    assert 'PRETTY_NAME="OpenBatch test image"' in lines
    assert "greeting=hello from the image" in lines
    cwd = next(line for line in lines if line.startswith("cwd="))[4:]
    assert cwd.endswith(job["jobId"])
    assert "uid=0" in lines
    assert "server-files-hidden" in lines
    assert "written" in lines
    runtime = container_server.extra_args[1]
    expected = "bwrap" if runtime == "auto" else runtime
    assert f"container runtime: {expected}" in container_server.log_path.read_text()
    # The image itself is unchanged by what a job wrote.
    as_worker = shell_definition(
        cbatch, "id -u; echo x > /etc/changed && echo root-writable", container={"user": "worker"}
    )
    job = _run(cbatch, cqueue, as_worker, status="FAILED")
    assert "1234" in _output(container_server, job)


def test_devices_ptys_shared_memory_and_host_names(
    container_server: ServerProcess, cbatch: BatchClient, cqueue: str
) -> None:
    script = (
        "echo gone > /dev/null && echo null-ok; head -c 4 /dev/zero | wc -c; head -c 16 /dev/urandom | wc -c;"
        " echo in-shm > /dev/shm/f && cat /dev/shm/f;"
        # A pty of the job's own devpts: the job sees it and only it.
        " exec 3<>/dev/ptmx && ls /dev/pts | tr '\\n' ' ' && echo;"
        " ls -l /proc/self/fd/0 >/dev/null && test -L /dev/stdout && echo links-ok;"
        " cat /etc/hosts"
    )
    host_names = {" ".join(line.split()) for line in Path("/etc/hosts").read_text().splitlines() if line.strip()}
    for container in ({}, {"user": "worker"}, {"readonlyRootFilesystem": True}):
        job = _run(cbatch, cqueue, shell_definition(cbatch, script, container=container))
        lines = _output(container_server, job)
        assert job["status"] == "SUCCEEDED", (container, lines)
        assert lines[:4] == ["null-ok", "4", "16", "in-shm"], (container, lines)
        assert lines[4].split() == ["0", "ptmx"], (container, lines)
        assert lines[5] == "links-ok", (container, lines)
        assert host_names <= {" ".join(line.split()) for line in lines[6:]}, (container, lines)


def test_memory_limit_ends_with_the_oom_reason(cbatch: BatchClient, cqueue: str) -> None:
    definition = shell_definition(
        cbatch,
        "dd if=/dev/zero of=/dev/null bs=200M count=1",
        container={"resourceRequirements": [{"type": "VCPU", "value": "1"}, {"type": "MEMORY", "value": "32"}]},
    )
    job = _run(cbatch, cqueue, definition, status="FAILED")
    assert job["status"] == "FAILED"
    assert job["container"]["reason"] == "OutOfMemoryError: Container killed due to memory usage"
    assert job["container"]["exitCode"] == 137


def test_terminate_and_timeout_leave_no_process(cbatch: BatchClient, cqueue: str) -> None:
    # Unusual sleep lengths: how this test's processes are told from everyone else's.
    marker_terminate = str(random.randint(3000, 3999))
    marker_timeout = str(random.randint(4000, 4999))
    hang = shell_definition(cbatch, f"sleep {marker_terminate} & sleep {marker_terminate}; wait")
    job_id = cbatch.submit_job(jobName=unique("t"), jobQueue=cqueue, jobDefinition=hang)["jobId"]
    wait_for_status(cbatch, job_id, ["RUNNING"], timeout=60)
    timed = shell_definition(cbatch, f"sleep {marker_timeout}", timeout={"attemptDurationSeconds": 2})
    timed_job = cbatch.submit_job(jobName=unique("t"), jobQueue=cqueue, jobDefinition=timed)["jobId"]
    cbatch.terminate_job(jobId=job_id, reason="stop it")
    job = wait_for_status(cbatch, job_id, ["FAILED"], timeout=60)
    assert job["statusReason"] == "stop it"
    timed_out = wait_for_status(cbatch, timed_job, ["FAILED"], timeout=60)
    assert timed_out["statusReason"].startswith("Job attempt duration exceeded timeout"), timed_out["attempts"]
    for marker in (marker_terminate, marker_timeout):
        assert _processes_with(f"sleep\0{marker}") == [] and _processes_with(f"sleep {marker}") == []


def test_missing_image_fails_to_pull_and_the_retry_rule_decides(cbatch: BatchClient, cqueue: str) -> None:
    exit_rule = shell_definition(
        cbatch,
        "true",
        container={"image": "123456789012.dkr.ecr.us-east-1.amazonaws.com/absent:1"},
        retryStrategy={"attempts": 3, "evaluateOnExit": [{"onReason": "CannotPullContainerError:*", "action": "EXIT"}]},
    )
    job = _run(cbatch, cqueue, exit_rule, status="FAILED")
    assert len(job["attempts"]) == 1, job["attempts"]
    assert job["container"]["reason"].startswith("CannotPullContainerError: ")
    assert job["attempts"][0]["container"]["reason"].startswith("CannotPullContainerError: ")
    retry_rule = shell_definition(
        cbatch,
        "true",
        container={"image": "absent:latest"},
        retryStrategy={
            "attempts": 2,
            "evaluateOnExit": [
                {"onReason": "CannotPullContainerError:*", "action": "RETRY"},
                {"onReason": "*", "action": "EXIT"},
            ],
        },
    )
    job = _run(cbatch, cqueue, retry_rule, status="FAILED")
    assert len(job["attempts"]) == 2


@pytest.fixture
def volume() -> Iterator[Path]:
    """A host directory the job's user can reach (pytest's own temporary directories are private to root)."""
    path = Path(tempfile.mkdtemp(prefix="openbatch-volume-"))
    path.chmod(0o777)
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


def test_host_volume_and_read_only_root(
    cbatch: BatchClient, cqueue: str, volume: Path, container_server: ServerProcess
) -> None:
    (volume / "input").write_text("from the host\n")
    definition = shell_definition(
        cbatch,
        "cat /data/input; echo from-the-job > /data/output;"
        " touch /etc/nope 2>/dev/null && echo root-writable || echo root-read-only;"
        " echo scratch > /scratch/x && cat /scratch/x",
        container={
            "readonlyRootFilesystem": True,
            "volumes": [{"name": "data", "host": {"sourcePath": str(volume)}}],
            "mountPoints": [{"sourceVolume": "data", "containerPath": "/data", "readOnly": False}],
            "linuxParameters": {"tmpfs": [{"containerPath": "/scratch", "size": 8}], "sharedMemorySize": 16},
        },
    )
    job = _run(cbatch, cqueue, definition)
    lines = _output(container_server, job)
    assert job["status"] == "SUCCEEDED", lines
    assert "from the host" in lines
    assert "root-read-only" in lines
    assert "scratch" in lines
    assert (volume / "output").read_text() == "from-the-job\n"


def test_what_cannot_be_honoured_is_refused(cbatch: BatchClient) -> None:
    cases: list[tuple[dict[str, Any], str]] = [
        ({"privileged": True}, "privileged"),
        ({"linuxParameters": {"devices": [{"hostPath": "/dev/fuse"}]}}, "devices"),
        ({"mountPoints": [{"sourceVolume": "nope", "containerPath": "/x"}]}, "sourceVolume"),
        ({"image": "Not A Valid/Name"}, "image"),
        ({"linuxParameters": {"maxSwap": -1}}, "maxSwap"),
        ({"linuxParameters": {"maxSwap": 8, "swappiness": 101}}, "swappiness"),
    ]
    for properties, message in cases:
        body: Any = {"image": "busybox", "command": ["true"], **properties}
        with client_exception(message):
            cbatch.register_job_definition(
                jobDefinitionName=unique("bad"),
                type="container",
                containerProperties=body,
            )


def _cgroup_dir(pid: int, controller: str) -> Path:
    """``pid``'s group in the ``controller`` hierarchy (cgroup v1), or its v2 group."""
    lines = Path(f"/proc/{pid}/cgroup").read_text().splitlines()
    for line in lines:
        _, controllers, path = line.split(":", 2)
        if controller in controllers.split(","):
            return Path("/sys/fs/cgroup") / controller / path.lstrip("/")
    unified = next(line for line in lines if line.startswith("0::")).split(":", 2)[2]
    return Path("/sys/fs/cgroup") / unified.lstrip("/")


def _busy_loops(marker: str) -> list[int]:
    """The job's own shells (not the runtime's processes, whose command lines hold the job's too)."""
    found = []
    for pid in _processes_with(marker):
        with contextlib.suppress(OSError):
            if Path(f"/proc/{pid}/cmdline").read_bytes().startswith(b"sh\0-c\0"):
                found.append(pid)
    return found


def _cpu_seconds(pids: list[int]) -> float:
    total = 0
    for pid in pids:
        with contextlib.suppress(OSError):
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            total += int(fields[11]) + int(fields[12])
    return total / os.sysconf("SC_CLK_TCK")


def test_vcpus_memory_and_swap_limits_are_the_attempts_cgroup(
    container_server: ServerProcess, cbatch: BatchClient, cqueue: str
) -> None:
    if os.geteuid() != 0:
        pytest.skip("cgroups per attempt need a root server")
    marker = f"busy{random.randint(10**6, 10**7)}"
    definition = shell_definition(
        cbatch,
        "true",
        container={
            "command": ["sh", "-c", "while :; do :; done & while :; do :; done", marker],
            "resourceRequirements": [{"type": "VCPU", "value": "1"}, {"type": "MEMORY", "value": "48"}],
            "linuxParameters": {"maxSwap": 16, "swappiness": 10},
        },
    )
    job_id = cbatch.submit_job(jobName=unique("cpu"), jobQueue=cqueue, jobDefinition=definition)["jobId"]
    try:
        wait_for_status(cbatch, job_id, ["RUNNING"], timeout=60)
        deadline = time.monotonic() + 30
        pids = _busy_loops(marker)
        while len(pids) < 2 and time.monotonic() < deadline:
            time.sleep(0.1)
            pids = _busy_loops(marker)
        assert len(pids) >= 2, pids
        cpu = _cgroup_dir(pids[0], "cpu")
        if (cpu / "cpu.cfs_quota_us").exists():
            quota = int((cpu / "cpu.cfs_quota_us").read_text()) / int((cpu / "cpu.cfs_period_us").read_text())
            assert int((cpu / "cpu.shares").read_text()) == 1024
        else:
            limit, period = (cpu / "cpu.max").read_text().split()
            quota = int(limit) / int(period)
        assert quota == pytest.approx(1.0)
        memory = _cgroup_dir(pids[0], "memory")
        if (memory / "memory.memsw.limit_in_bytes").exists():
            assert int((memory / "memory.limit_in_bytes").read_text()) == 48 * 1024 * 1024
            assert int((memory / "memory.memsw.limit_in_bytes").read_text()) == (48 + 16) * 1024 * 1024
            assert int((memory / "memory.swappiness").read_text()) == 10
        # Two busy loops get about one CPU between them (generous: the host is shared).
        before, start = _cpu_seconds(pids), time.monotonic()
        time.sleep(3)
        used = (_cpu_seconds(pids) - before) / (time.monotonic() - start)
        assert used < 1.35, used
    finally:
        cbatch.terminate_job(jobId=job_id, reason="done")
    wait_for_status(cbatch, job_id, ["FAILED"], timeout=60)


def test_gpu_job_sees_its_gpu(container_server: ServerProcess, cbatch: BatchClient, cqueue: str) -> None:
    # The server is told it has one GPU (OPENBATCH_GPUS); this host has no device nodes to bind, which the
    # unit tests cover with a directory of their own.
    definition = shell_definition(
        cbatch,
        'echo "visible=$CUDA_VISIBLE_DEVICES"',
        container={
            "resourceRequirements": [
                {"type": "VCPU", "value": "1"},
                {"type": "MEMORY", "value": "64"},
                {"type": "GPU", "value": "1"},
            ]
        },
    )
    job = _run(cbatch, cqueue, definition)
    assert job["status"] == "SUCCEEDED", job
    assert "visible=0" in _output(container_server, job)
