"""Turn an attempt into the command that runs it inside a container (the supervisor's side).

:func:`prepare` is the one hook of the local executor: it returns the argv and environment to run instead of
the job's command, who runs them, whether the runtime limits memory itself, and what to clean up afterwards.

``bwrap`` (bubblewrap): the image's root filesystem under an overlay (kernel overlayfs when the supervisor is
root, else ``fuse-overlayfs``), so writes go to a per-attempt upper layer and the image never changes;
``readonlyRootFilesystem`` binds it read-only. The job gets its own PID, IPC, UTS and user namespaces and the
host's network (``--share-net``); bubblewrap dies with the executor's process (``--die-with-parent``). Memory is
limited by a cgroup (v1 ``memory`` or v2) made before ``exec bwrap`` when the supervisor is root; otherwise the
executor's RSS sampling applies.

``podman``: ``podman run --rm --init --rootfs ROOTFS:O`` (an overlay over the same image directory), with the
project's own ``containers.conf`` (runc; ulimits within the host's hard limits, which even root here cannot
raise) given in ``CONTAINERS_CONF`` and its own storage, never the host's configuration. A killed client leaves
its container running, so the cleanup removes it with ``podman rm -f -t 0``.
"""

from __future__ import annotations

import asyncio
import atexit
import contextlib
import ctypes
import hashlib
import itertools
import os
import re
import resource
import shutil
import stat
import subprocess
import sys
import tempfile
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from openbatch.containers import cgroups, devices
from openbatch.containers.spec import ContainerLaunch
from openbatch.executors.base import LaunchSpec

DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
_MNT_DETACH = 2
_MS_NOSUID = 2
_MS_NOEXEC = 8
_MS_PRIVATE = 1 << 18
_HOST_FILES = ("/etc/hosts", "/etc/resolv.conf")
_DEVICE_NODES = (("null", 1, 3), ("zero", 1, 5), ("full", 1, 7), ("random", 1, 8), ("urandom", 1, 9), ("tty", 5, 0))
_DEVICE_LINKS = (
    ("fd", "/proc/self/fd"),
    ("stdin", "/proc/self/fd/0"),
    ("stdout", "/proc/self/fd/1"),
    ("stderr", "/proc/self/fd/2"),
    ("core", "/proc/kcore"),
    ("ptmx", "pts/ptmx"),
)
_MIB = 1024 * 1024
_SHIM = Path(__file__).with_name("podman_shim.py")
_BWRAP = shutil.which("bwrap") or "bwrap"
_SETPRIV = shutil.which("setpriv")
_CHILD_PID = re.compile(rb'"child-pid":\s*(\d+)')
_LIBC = ctypes.CDLL(None, use_errno=True)
"""libc, loaded once: a ``CDLL`` made per mount or unmount costs as much as the call itself."""


class ContainerStartError(Exception):
    """The attempt cannot start; ``reason`` is the container's reason (``CannotPullContainerError: …``)."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass(slots=True)
class PreparedContainer:
    argv: list[str]
    env: dict[str, str]
    run_as: tuple[int, int] | None
    """Who runs ``argv`` (``None``: the supervisor's own user)."""
    limits_memory: bool
    """The runtime enforces the memory limit itself: the executor's RSS sampling stays out of it."""
    runtime: str = "bwrap"
    name: str = ""
    attempt_dir: Path | None = None
    overlay: Path | None = None
    devpts: Path | None = None
    """The attempt's own devpts instance, mounted in the supervisor's namespace until the sandbox has it."""
    fuse: bool = False
    group: cgroups.AttemptGroup | None = None
    podman_base: list[str] = field(default_factory=list)
    podman_env: dict[str, str] = field(default_factory=dict)
    memory_limited: bool = False
    own_pid_namespace: bool = False
    """Every process of the job is in a PID namespace whose init is in the attempt's process group, so
    none can outlive it outside that group (bubblewrap): the executor need not look for orphans."""
    pass_fds: tuple[int, ...] = ()
    """Descriptors ``argv`` needs (bubblewrap's ``--info-fd`` and ``--block-fd``), closed here once it runs."""
    info_fd: int | None = None
    block_fd: int | None = None
    info: bytes = b""
    pid: int = 0
    loop: asyncio.AbstractEventLoop | None = None

    def started(self, loop: asyncio.AbstractEventLoop, pid: int) -> None:
        """``argv`` runs as ``pid``: once bubblewrap has made the sandbox's first process (it says so on
        ``--info-fd``), put both in the attempt's cgroups and let the job start (``--block-fd``)."""
        for fd in self.pass_fds:
            os.close(fd)
        self.pass_fds = ()
        if self.info_fd is None:
            return
        self.pid, self.loop = pid, loop
        loop.add_reader(self.info_fd, self._on_info)

    def _on_info(self) -> None:
        assert self.info_fd is not None
        try:
            chunk = os.read(self.info_fd, 4096)
        except BlockingIOError:
            return
        except OSError:
            chunk = b""
        self.info += chunk
        if chunk and not self.info.rstrip().endswith(b"}"):
            return
        self._stop_info()
        child = _CHILD_PID.search(self.info)
        if child is None:
            self._unblock()  # bubblewrap failed before its sandbox existed: it says why on stderr
            return
        if self.overlay is not None and not self.fuse:
            # The sandbox holds its own copy of the mount now; the supervisor's namespace keeps no
            # overlay per running attempt (each would be copied into, and listed for, every next one).
            # Off the event loop: an unmount waits for an RCU grace period, milliseconds on a busy host.
            # One work item for both: each hand-over to a thread is a wake-up and a pass of the GIL.
            _worker().submit(_unmount_all, (self.overlay, self.devpts))
            self.overlay = self.devpts = None
        # Moving a process between cgroups waits for an RCU grace period too: the job waits, the loop goes on.
        block, self.block_fd = self.block_fd, None
        _starter().submit(_let_go, self.group, self.pid, int(child.group(1)), block)

    def _stop_info(self) -> None:
        if self.info_fd is not None:
            if self.loop is not None:
                self.loop.remove_reader(self.info_fd)
            os.close(self.info_fd)
            self.info_fd = None

    def _unblock(self) -> None:
        if self.block_fd is not None:
            with contextlib.suppress(OSError):
                os.write(self.block_fd, b"x")
            os.close(self.block_fd)
            self.block_fd = None

    def out_of_memory(self, returncode: int) -> bool:
        """Whether the attempt ended because it went over its memory limit (read before :meth:`cleanup`)."""
        if self.group is not None and self.group.memory is not None:
            return self.group.out_of_memory()
        # podman exits 137 when the container's init was SIGKILLed; a client the executor killed ends by a signal.
        return self.runtime == "podman" and self.memory_limited and returncode == 137

    def finish(self, returncode: int, loop: asyncio.AbstractEventLoop) -> None:
        """The attempt's processes are all gone: release what it held, off the event loop."""
        self._release_fds()
        if self.runtime == "podman" or self.fuse:
            loop.run_in_executor(None, self.cleanup, returncode)  # waits on podman or fusermount
        else:
            # Threads of its own, few: each is read by every exit's orphan check (_adopt_orphans).
            _worker().submit(self.cleanup, returncode)

    def _release_fds(self) -> None:
        for fd in self.pass_fds:
            os.close(fd)
        self.pass_fds = ()
        self._stop_info()
        self._unblock()

    def cleanup(self, returncode: int) -> None:
        """Blocking; on the event loop only for an attempt that never started (its fds are closed here)."""
        if self.loop is None:
            self._release_fds()
        if self.runtime == "podman" and returncode < 0:
            subprocess.run(
                [*self.podman_base, "rm", "-f", "-t", "0", "--ignore", self.name],
                env=self.podman_env,
                capture_output=True,
                check=False,
                timeout=60,
            )
        if self.group is not None:
            cgroups.pool().release(self.group)
            self.group = None
        if self.overlay is not None:
            _unmount(self.overlay, self.fuse)
        if self.devpts is not None:
            _unmount(self.devpts, False)
        if self.attempt_dir is not None:
            shutil.rmtree(self.attempt_dir, ignore_errors=True)


def _let_go(group: cgroups.AttemptGroup | None, pid: int, child: int, block: int | None) -> None:
    """Put bubblewrap and its sandbox's first process in the attempt's cgroups, then let the job start."""
    try:
        if group is not None:
            group.add(pid)
            group.add(child)
    except OSError:
        # Not limited as it should be: the attempt must not run at all.
        with contextlib.suppress(OSError):
            os.killpg(pid, 9)
    if block is not None:
        with contextlib.suppress(OSError):
            os.write(block, b"x")
        os.close(block)


_WORKER: ThreadPoolExecutor | None = None
_STARTER: ThreadPoolExecutor | None = None


def _starter() -> ThreadPoolExecutor:
    global _STARTER
    if _STARTER is None:
        _STARTER = ThreadPoolExecutor(max_workers=1, thread_name_prefix="containers-start")
    return _STARTER


def _worker() -> ThreadPoolExecutor:
    global _WORKER
    if _WORKER is None:
        # Unmounts wait for RCU grace periods, which concurrent ones share: a few threads keep up with a
        # busy host, where one would leave finished attempts' overlays in every new sandbox's mount table.
        _WORKER = ThreadPoolExecutor(max_workers=4, thread_name_prefix="containers")
    return _WORKER


def prepare(spec: LaunchSpec, env: Mapping[str, str], run_as: tuple[int, int] | None) -> PreparedContainer:
    """How to run ``spec`` in its container; raises :class:`ContainerStartError` when it cannot start."""
    container = spec.container
    assert container is not None
    if container.rootfs is None or not Path(container.rootfs).is_dir():
        raise ContainerStartError(
            f"CannotPullContainerError: pull image manifest has been retried 1 time(s): failed to resolve ref "
            f"{container.image}: not found in the local image store (openbatch image import/load brings it in)"
        )
    environment = {"PATH": DEFAULT_PATH, "HOSTNAME": "localhost", **env}
    if container.runtime == "bwrap":
        return _bwrap(spec, container, environment, run_as)
    if container.runtime == "podman":
        return _podman(spec, container, environment)
    raise ContainerStartError(f"CannotStartContainerError: unknown container runtime {container.runtime!r}")


def attempt_name(spec: LaunchSpec) -> str:
    """A container name for the attempt (podman's rules: [a-zA-Z0-9][a-zA-Z0-9_.-]*)."""
    return "job-" + re.sub(r"[^A-Za-z0-9_.-]", "-", f"{spec.job_id}-{spec.attempt}")


# --- bubblewrap -----------------------------------------------------------------------------------


def _bwrap(
    spec: LaunchSpec, c: ContainerLaunch, env: dict[str, str], run_as: tuple[int, int] | None
) -> PreparedContainer:
    assert c.rootfs is not None
    rootfs = Path(c.rootfs)
    identity = _user_of(rootfs, c.user)
    if identity is not None and "HOME" not in spec.environment:
        env["HOME"] = identity[2]
    elif "HOME" not in spec.environment:
        env["HOME"] = "/root"
    prepared = PreparedContainer(
        argv=[], env=env, run_as=run_as, limits_memory=False, name=attempt_name(spec), own_pid_namespace=True
    )
    try:
        shared = run_as is not None or c.user is not None
        merged, own_dev, copied = _overlay(rootfs, Path(c.state_dir), prepared, shared)
        working_dir = str(spec.working_dir)
        if c.readonly_root or shared:
            # bubblewrap makes missing mount points itself, in the job's process, but not in a read-only root
            # nor, for a job of another user, in the image's directories owned by root.
            for path, is_file in [
                (working_dir, False),
                *((m.target, Path(m.source).is_file()) for m in c.mounts),
                *((t.target, False) for t in c.tmpfs),
                *((host_file, True) for host_file in _HOST_FILES if host_file not in copied),
            ]:
                _make_inside(merged, path, is_file)
        argv = [
            _BWRAP,
            "--ro-bind" if c.readonly_root else "--bind",
            str(merged),
            "/",
            "--proc",
            "/proc",
            # bubblewrap's own --dev makes a tmpfs, binds six host nodes one by one and mounts a devpts, each
            # bind followed by a full read of the mount table: a /dev made ahead is one bind instead.
            *(("--dev-bind", str(own_dev), "/dev") if own_dev is not None else ("--dev", "/dev")),
            "--unshare-all",
            "--share-net",
            "--die-with-parent",
        ]
        for host_file in _HOST_FILES:
            if host_file not in copied and os.path.exists(host_file):
                argv += ["--ro-bind-try", host_file, host_file]
        argv += ["--bind", working_dir, working_dir]
        for mount in c.mounts:
            argv += ["--ro-bind" if mount.read_only else "--bind", mount.source, mount.target]
        for tmpfs in c.tmpfs:
            argv += ["--size", str(tmpfs.size_mib * _MIB), "--tmpfs", tmpfs.target]
        if c.shared_memory_mib is not None:
            argv += ["--size", str(c.shared_memory_mib * _MIB), "--tmpfs", "/dev/shm"]
        uid, gid = (identity[0], identity[1]) if identity is not None else (0, 0)
        if run_as is None and os.geteuid() == 0 and identity is not None and uid != 0:
            # A root supervisor runs a job that names its user as that user of the host, too.
            prepared.run_as = (uid, gid)
        if prepared.run_as is not None or os.geteuid() != 0:
            argv += ["--unshare-user", "--uid", str(uid), "--gid", str(gid)]
        for node in devices.gpu_nodes(spec.gpu_ids):
            argv += ["--dev-bind", str(node), str(node)]
        group = (
            cgroups.pool().acquire(spec.memory_mib, c.vcpus, c.swap_mib, c.swappiness) if os.geteuid() == 0 else None
        )
        prepared.group = group
        prepared.limits_memory = group is not None and group.memory is not None and spec.memory_mib is not None
        if group is not None or not prepared.fuse:
            # bubblewrap says when the sandbox's first process exists and waits for the word to go on:
            # the supervisor puts both in the attempt's cgroups then (see PreparedContainer.started).
            info_read, info_write = os.pipe2(os.O_CLOEXEC | os.O_NONBLOCK)
            block_read, block_write = os.pipe2(os.O_CLOEXEC)
            os.set_blocking(info_write, True)
            prepared.info_fd, prepared.block_fd = info_read, block_write
            prepared.pass_fds = (info_write, block_read)
            argv += ["--info-fd", str(info_write), "--block-fd", str(block_read)]
        argv += ["--chdir", working_dir, "--", *spec.command]
        if prepared.run_as is not None and _SETPRIV is not None:
            # The supervisor spawns with vfork only when it changes no ids itself; a fork of it costs more
            # than bubblewrap's whole sandbox. setpriv drops to the job's user instead.
            user, group_id = prepared.run_as
            argv = [_SETPRIV, f"--reuid={user}", f"--regid={group_id}", "--clear-groups", "--", *argv]
            prepared.run_as = None
        prepared.argv = argv
        return prepared
    except ContainerStartError:
        prepared.cleanup(0)
        raise
    except OSError as exc:
        prepared.cleanup(0)
        raise ContainerStartError(f"CannotStartContainerError: {exc}") from exc


@dataclass(frozen=True, slots=True)
class _Mounted:
    """An attempt directory with the image mounted at its ``merged``, made ahead of its attempt (root only)."""

    attempt_dir: Path
    dev: Path | None
    """The attempt's /dev (nodes, links and its own devpts), or ``None``: bubblewrap's ``--dev`` then."""
    copied: tuple[str, ...]
    """The host's files (``/etc/hosts``, ``/etc/resolv.conf``) already copied into the image's upper layer."""


_READY: dict[tuple[str, str, bool], list[_Mounted]] = {}
"""Attempt directories with an image already mounted, by (state directory, image, shared): a root
supervisor mounts the next attempts' overlays on its own threads, so that a launch rarely waits for a
mount on the event loop."""
_READY_DEPTH = 2
_NAMES = itertools.count(1)


def _overlay(
    rootfs: Path, state_dir: Path, prepared: PreparedContainer, shared: bool
) -> tuple[Path, Path | None, tuple[str, ...]]:
    """A writable view of the image for this attempt alone (the image stays as it is), the attempt's own
    /dev if one was made, and which of the host's files are in the view already.

    ``shared``: the job runs as another user, who must be able to reach the merged root."""
    _state_in_memory(state_dir)
    if os.geteuid() == 0:
        ready = _READY.setdefault((str(state_dir), str(rootfs), shared), [])
        try:
            mounted = ready.pop()
        except IndexError:
            mounted = _mounted(rootfs, state_dir, shared)
        if len(ready) < _READY_DEPTH:
            _worker().submit(_make_ready, ready, rootfs, state_dir, shared)
        prepared.attempt_dir = mounted.attempt_dir
        prepared.overlay = mounted.attempt_dir / "merged"
        if mounted.dev is not None:
            prepared.devpts = mounted.dev / "pts"
        return prepared.overlay, mounted.dev, mounted.copied
    attempt_dir = Path(state_dir) / prepared.name
    prepared.attempt_dir = attempt_dir
    upper, work, merged = _layers(attempt_dir, shared)
    fuse = shutil.which("fuse-overlayfs")
    if fuse is None:
        raise ContainerStartError(
            "CannotStartContainerError: a server that is not root needs fuse-overlayfs to run images with bwrap"
        )
    options = f"lowerdir={rootfs},upperdir={upper},workdir={work}"
    result = subprocess.run([fuse, "-o", options, str(merged)], capture_output=True, text=True, check=False)
    if result.returncode != 0:
        raise ContainerStartError(f"CannotStartContainerError: fuse-overlayfs: {result.stderr.strip()}")
    prepared.fuse = True
    prepared.overlay = merged
    return merged, None, ()


def _layers(attempt_dir: Path, shared: bool) -> tuple[Path, Path, Path]:
    upper, work, merged = attempt_dir / "upper", attempt_dir / "work", attempt_dir / "merged"
    os.mkdir(attempt_dir)
    for path in (upper, work, merged):
        os.mkdir(path)
    if shared:
        attempt_dir.chmod(0o755)
        upper.chmod(0o755)
    return upper, work, merged


def _mounted(rootfs: Path, state_dir: Path, shared: bool) -> _Mounted:
    """A new attempt directory of ``state_dir`` with ``rootfs`` mounted at its ``merged`` (root only)."""
    attempt_dir = state_dir / f"{os.getpid()}-{next(_NAMES)}"
    try:
        upper, work, merged = _layers(attempt_dir, shared)
        options = f"lowerdir={rootfs},upperdir={upper},workdir={work}"
        if _LIBC.mount(b"overlay", str(merged).encode(), b"overlay", 0, options.encode()) != 0:
            errno = ctypes.get_errno()
            raise ContainerStartError(f"CannotStartContainerError: mounting the image failed: {os.strerror(errno)}")
    except (OSError, ContainerStartError):
        shutil.rmtree(attempt_dir, ignore_errors=True)
        raise
    try:
        copied = _copy_host_files(merged)
    except OSError:
        _unmount(merged, False)
        shutil.rmtree(attempt_dir, ignore_errors=True)
        raise
    return _Mounted(attempt_dir, _make_dev(attempt_dir / "dev"), copied)


def _copy_host_files(merged: Path) -> tuple[str, ...]:
    """Copy the host's ``/etc/hosts`` and ``/etc/resolv.conf`` into the attempt's upper layer, which saves
    bubblewrap a bind (and a read of the mount table) for each. An image whose ``/etc`` or file is a
    symlink keeps the bind: bubblewrap resolves it inside the container, and a copy here would follow
    it on the host."""
    try:
        if not stat.S_ISDIR(os.lstat(merged / "etc").st_mode):
            return ()
    except FileNotFoundError:
        return ()
    copied = []
    for host_file in _HOST_FILES:
        target = merged / host_file.lstrip("/")
        content = _host_file(host_file)
        if content is None:
            continue
        try:
            mode = os.lstat(target).st_mode
        except FileNotFoundError:
            mode = stat.S_IFREG
        if not stat.S_ISREG(mode):
            continue
        descriptor = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW | os.O_CLOEXEC, 0o644)
        try:
            os.fchmod(descriptor, 0o644)
            os.write(descriptor, content)
        finally:
            os.close(descriptor)
        copied.append(host_file)
    return tuple(copied)


_HOST_FILE_CACHE: dict[str, tuple[tuple[int, int, int], bytes]] = {}


def _host_file(path: str) -> bytes | None:
    """The content of one of the host's files, read again only when a ``stat`` says it changed."""
    try:
        info = os.stat(path)
        key = (info.st_ino, info.st_mtime_ns, info.st_size)
        cached = _HOST_FILE_CACHE.get(path)
        if cached is not None and cached[0] == key:
            return cached[1]
        content = Path(path).read_bytes()
    except OSError:
        return None
    _HOST_FILE_CACHE[path] = (key, content)
    return content


def _make_dev(dev: Path) -> Path | None:
    """The attempt's /dev as bubblewrap's ``--dev`` makes it (null, zero, full, random, urandom, tty, the
    ``/proc/self/fd`` links, ``shm`` and a devpts instance of its own for ptys), made ahead on the
    supervisor's threads so the sandbox binds it once. ``None`` when it cannot be had here (a state
    directory on a ``nodev`` file system): bubblewrap's ``--dev`` then."""
    try:
        os.mkdir(dev)
        # Names relative to the directory's descriptor: one path lookup for the whole of /dev.
        directory = os.open(dev, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        try:
            os.chmod(directory, 0o755)
            for name, major, minor in _DEVICE_NODES:
                os.mknod(name, stat.S_IFCHR | 0o666, os.makedev(major, minor), dir_fd=directory)
                os.chmod(name, 0o666, dir_fd=directory)
            for name, target in _DEVICE_LINKS:
                os.symlink(target, name, dir_fd=directory)
            os.mkdir("shm", dir_fd=directory)
            os.chmod("shm", 0o1777, dir_fd=directory)
            os.mkdir("pts", dir_fd=directory)
            # A mount that forbids devices would leave the job with a /dev/null it cannot open.
            os.close(os.open("null", os.O_WRONLY | os.O_CLOEXEC, dir_fd=directory))
        finally:
            os.close(directory)
    except OSError:
        shutil.rmtree(dev, ignore_errors=True)
        return None
    pts = str(dev / "pts").encode()
    if _LIBC.mount(b"devpts", pts, b"devpts", _MS_NOSUID | _MS_NOEXEC, b"newinstance,ptmxmode=0666,mode=620") != 0:
        shutil.rmtree(dev, ignore_errors=True)
        return None
    return dev


def _make_ready(ready: list[_Mounted], rootfs: Path, state_dir: Path, shared: bool) -> None:
    if len(ready) >= _READY_DEPTH or not rootfs.is_dir():
        return
    with contextlib.suppress(OSError, ContainerStartError):
        ready.append(_mounted(rootfs, state_dir, shared))


_IN_MEMORY: set[Path] = set()


def _state_in_memory(state_dir: Path) -> None:
    """Keep the overlays' upper layers in a tmpfs of this supervisor (root only).

    Making and removing the few directories of each attempt on a disk cost more than running the
    container itself (half the throughput of short jobs here). Pages a job writes to its root
    filesystem are charged to its own memory cgroup, so they count against its memory limit: large
    outputs belong in the working directory or a volume. Unmounted when the supervisor exits.
    """
    if state_dir in _IN_MEMORY or os.geteuid() != 0:
        return
    _IN_MEMORY.add(state_dir)
    if not os.path.ismount(state_dir):
        if _LIBC.mount(b"tmpfs", str(state_dir).encode(), b"tmpfs", 0, b"mode=0711") != 0:
            return
        atexit.register(_LIBC.umount2, str(state_dir).encode(), _MNT_DETACH)
    # Private: an overlay unmounted here once its sandbox has a copy must stay mounted in that sandbox.
    _LIBC.mount(None, str(state_dir).encode(), None, _MS_PRIVATE, None)


def _unmount(merged: Path, fuse: bool) -> None:
    if fuse:
        for tool in ("fusermount3", "fusermount"):
            if shutil.which(tool):
                subprocess.run([tool, "-u", "-z", str(merged)], capture_output=True, check=False)
                return
    _LIBC.umount2(str(merged).encode(), _MNT_DETACH)


def _unmount_all(mounts: tuple[Path | None, ...]) -> None:
    for mount in mounts:
        if mount is not None:
            _unmount(mount, False)


def _make_inside(root: Path, path: str, is_file: bool) -> None:
    """Create a mount point ``path`` in the container's root, never through one of its symlinks."""
    parts = [part for part in Path(path).parts if part != "/"]
    current = root
    for index, part in enumerate(parts):
        if part in ("..", "."):
            return
        current = current / part
        last = index == len(parts) - 1
        try:
            mode = os.lstat(current).st_mode
        except FileNotFoundError:
            if last and is_file:
                current.touch()
            else:
                current.mkdir(mode=0o755)
            continue
        if (mode & 0o170000) == 0o120000:
            return  # a symlink of the image: bubblewrap resolves it inside the container


def _user_of(rootfs: Path, user: str | None) -> tuple[int, int, str] | None:
    """(uid, gid, home) of ``user`` as the image's /etc/passwd gives it; numeric ``uid[:gid]`` as is."""
    if not user:
        return None
    name, _, group = user.partition(":")
    entries: dict[str, tuple[int, int, str]] = {}
    with contextlib.suppress(OSError):
        for line in (rootfs / "etc" / "passwd").read_text(errors="replace").splitlines():
            fields = line.split(":")
            if len(fields) >= 6 and fields[2].isdigit() and fields[3].isdigit():
                entries[fields[0]] = (int(fields[2]), int(fields[3]), fields[5] or "/")
    if name.isdigit():
        uid = int(name)
        found = next((e for e in entries.values() if e[0] == uid), None)
        gid, home = (found[1], found[2]) if found else (uid, "/")
    elif name in entries:
        uid, gid, home = entries[name]
    else:
        raise ContainerStartError(
            f"CannotStartContainerError: unable to find user {name}: no matching entries in passwd file"
        )
    if group:
        if not group.isdigit():
            gid = _group_id(rootfs, group)
        else:
            gid = int(group)
    return uid, gid, home


def _group_id(rootfs: Path, group: str) -> int:
    with contextlib.suppress(OSError):
        for line in (rootfs / "etc" / "group").read_text(errors="replace").splitlines():
            fields = line.split(":")
            if len(fields) >= 3 and fields[0] == group and fields[2].isdigit():
                return int(fields[2])
    raise ContainerStartError(f"CannotStartContainerError: unable to find group {group}: no matching entries")


# --- podman ---------------------------------------------------------------------------------------


def podman_base(podman_dir: Path) -> tuple[list[str], dict[str, str]]:
    """podman with the project's storage and configuration, and the environment it runs with."""
    podman_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    conf = podman_dir / "containers.conf"
    if not conf.exists():
        # Even root cannot raise a hard rlimit without CAP_SYS_RESOURCE: stay within the host's.
        nofile = min(_hard_limit(resource.RLIMIT_NOFILE), 1048576)
        nproc = min(_hard_limit(resource.RLIMIT_NPROC), 32768)
        temporary = conf.with_suffix(".tmp")
        temporary.write_text(
            "[containers]\n"
            f'default_ulimits = ["nofile={nofile}:{nofile}", "nproc={nproc}:{nproc}"]\n'
            "[engine]\n"
            'runtime = "runc"\n'
            'events_logger = "none"\n'
            'cgroup_manager = "cgroupfs"\n'
        )
        os.replace(temporary, conf)
    argv = [
        shutil.which("podman") or "podman",
        "--root",
        str(podman_dir / "storage"),
        "--runroot",
        str(_runroot(podman_dir)),
    ]
    env = {"PATH": os.environ.get("PATH", DEFAULT_PATH), "CONTAINERS_CONF": str(conf), "HOME": str(podman_dir)}
    return argv, env


def _runroot(podman_dir: Path) -> Path:
    """podman's run state: a short path (podman refuses a runroot over 50 characters), one per store."""
    digest = hashlib.sha256(str(podman_dir.resolve()).encode()).hexdigest()[:12]
    path = Path(tempfile.gettempdir()) / f"obpodman-{digest}"
    path.mkdir(mode=0o700, exist_ok=True)
    return path


def _hard_limit(which: int) -> int:
    hard = resource.getrlimit(which)[1]
    return hard if hard != resource.RLIM_INFINITY else 1 << 20


def _podman(spec: LaunchSpec, c: ContainerLaunch, env: dict[str, str]) -> PreparedContainer:
    assert c.rootfs is not None and c.podman_dir is not None
    base, client_env = podman_base(Path(c.podman_dir))
    name = attempt_name(spec)
    attempt_dir = Path(c.state_dir) / name
    prepared = PreparedContainer(
        argv=[],
        env=client_env,
        run_as=None,
        limits_memory=True,
        runtime="podman",
        name=name,
        attempt_dir=attempt_dir,
        podman_base=base,
        podman_env=client_env,
        memory_limited=spec.memory_mib is not None,
    )
    # The attempt's marker on the client too: how a restarted supervisor knows the process is this attempt's.
    for marker in ("AWS_BATCH_JOB_ID", "AWS_BATCH_JOB_ATTEMPT"):
        if marker in env:
            client_env[marker] = env[marker]
    try:
        attempt_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        env_file = attempt_dir / "env"
        lines = []
        for key, value in env.items():
            if "\n" in value:
                client_env[key] = value  # ``--env NAME`` takes it from the client's environment
            else:
                lines.append(f"{key}={value}")
        env_file.write_text("".join(line + "\n" for line in lines))
    except OSError as exc:
        raise ContainerStartError(f"CannotStartContainerError: {exc}") from exc
    working_dir = str(spec.working_dir)
    argv = [*base, "run", "--rm", "--init", "--name", name, "--network", "host", "--log-driver", "none"]
    argv += ["--env-file", str(env_file)]
    argv += [arg for key in env if "\n" in env[key] for arg in ("--env", key)]
    if c.readonly_root:
        argv.append("--read-only")
    if spec.memory_mib is not None:
        argv += ["--memory", f"{spec.memory_mib}m", "--memory-swap", f"{spec.memory_mib + c.swap_mib}m"]
        if c.swappiness is not None:
            argv += ["--memory-swappiness", str(c.swappiness)]
    if c.vcpus is not None:
        shares = max(2, round(c.vcpus * cgroups.SHARES_PER_VCPU))
        argv += ["--cpus", f"{c.vcpus:g}", "--cpu-shares", str(shares)]
    for node in devices.gpu_nodes(spec.gpu_ids):
        argv += ["--device", f"{node}:{node}"]
    if c.user:
        argv += ["--user", c.user]
    # --mount, not --volume: an array child's directory has a colon (``<jobId>:<index>``).
    argv += ["--mount", f"type=bind,source={working_dir},destination={working_dir}", "--workdir", working_dir]
    for mount in c.mounts:
        bind = f"type=bind,source={mount.source},destination={mount.target}"
        argv += ["--mount", bind + (",readonly=true" if mount.read_only else "")]
    for tmpfs in c.tmpfs:
        argv += ["--tmpfs", f"{tmpfs.target}:" + ",".join([f"size={tmpfs.size_mib}m", *tmpfs.options])]
    if c.shared_memory_mib is not None:
        argv += ["--shm-size", f"{c.shared_memory_mib}m"]
    argv += ["--rootfs", f"{c.rootfs}:O", *spec.command]
    prepared.argv = [sys.executable, "-I", str(_SHIM), *argv]
    return prepared


# --- what works on this host ----------------------------------------------------------------------


def probe(runtime: str, scratch: Path) -> str | None:
    """``None`` if ``runtime`` can run a container here, else why not."""
    if runtime == "bwrap":
        bwrap = shutil.which("bwrap")
        if bwrap is None:
            return "bwrap is not installed (Debian: apt-get install bubblewrap)"
        if os.geteuid() != 0 and shutil.which("fuse-overlayfs") is None:
            return "bwrap needs root (for overlayfs) or fuse-overlayfs"
        argv = [bwrap, "--ro-bind", "/", "/", "--proc", "/proc", "--dev", "/dev", "--unshare-all"]
        argv += ["--share-net", "--die-with-parent", "--unshare-user", "--uid", "0", "--gid", "0", "true"]
        return _try(argv, None)
    if runtime == "podman":
        if shutil.which("podman") is None:
            return "podman is not installed (Debian: apt-get install podman runc)"
        if shutil.which("runc") is None:
            return "runc is not installed (Debian: apt-get install runc)"
        base, env = podman_base(scratch)
        return _try([*base, "info", "--format", "{{.Host.OCIRuntime.Name}}"], env)
    return None


def _try(argv: list[str], env: dict[str, str] | None) -> str | None:
    try:
        result = subprocess.run(argv, capture_output=True, text=True, env=env, timeout=60, check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return str(exc)
    if result.returncode != 0:
        return (result.stderr.strip().splitlines() or [f"exit status {result.returncode}"])[-1]
    return None
