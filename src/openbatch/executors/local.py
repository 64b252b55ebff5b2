"""Run job attempts as plain process groups on this host."""

from __future__ import annotations

import asyncio
import ctypes
import logging
import os
import pwd
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import IO

from openbatch.containers.runtimes import ContainerStartError, PreparedContainer
from openbatch.containers.runtimes import prepare as prepare_container
from openbatch.executors.base import ExitCallback, ExitInfo, Handle, KnownAttempt, LaunchSpec
from openbatch.logs.store import MAX_EVENT_BYTES, LogStore, LogWriter

__all__ = ["OOM_REASON", "LocalExecutor"]

logger = logging.getLogger(__name__)

OOM_REASON = "OutOfMemoryError: Container killed due to memory usage"
_READ_CHUNK = 64 * 1024
_FINAL_DRAIN_CHUNKS = 16
_PAGE_SIZE = os.sysconf("SC_PAGE_SIZE")
_PR_SET_CHILD_SUBREAPER = 36
_REAP_FIRST_DELAY = 0.002
_REAP_MAX_DELAY = 0.05
_CLOSE_SLACK_SECONDS = 5.0


def _become_subreaper() -> bool:
    """Adopt orphaned descendants so their zombies can be reaped here.

    Without this, a job's background processes are re-parented to PID 1 once
    the job's main process exits; when PID 1 does not reap (common in
    containers) their zombies keep the job's process group alive forever.
    """
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        return int(libc.prctl(_PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)) == 0
    except (OSError, AttributeError):
        return False


def _chop(line: bytes) -> list[bytes]:
    """Split ``line`` into pieces of at most MAX_EVENT_BYTES, never inside a UTF-8 sequence."""
    pieces: list[bytes] = []
    start = 0
    n = len(line)
    while n - start > MAX_EVENT_BYTES:
        cut = start + MAX_EVENT_BYTES
        back = cut
        while back > cut - 3 and line[back] & 0xC0 == 0x80:
            back -= 1
        if line[back] & 0xC0 != 0x80:
            cut = back
        pieces.append(line[start:cut])
        start = cut
    pieces.append(line[start:])
    return pieces


class _Proc:
    __slots__ = ("pgrp", "ppid", "rss")

    def __init__(self, ppid: int, pgrp: int, rss: int) -> None:
        self.ppid = ppid
        self.pgrp = pgrp
        self.rss = rss


def _read_procs() -> dict[int, _Proc]:
    """Parent, process group and resident bytes of every process, from one pass over /proc."""
    procs: dict[int, _Proc] = {}
    try:
        names = os.listdir("/proc")
    except OSError:
        return procs
    for name in names:
        if not name.isdigit():
            continue
        try:
            fd = os.open(f"/proc/{name}/stat", os.O_RDONLY)
        except OSError:
            continue
        try:
            data = os.read(fd, 1024)
        except OSError:
            continue
        finally:
            os.close(fd)
        # comm (field 2) may hold spaces and parentheses; everything after the last ')' is fixed.
        fields = data[data.rfind(b")") + 2 :].split(b" ", 23)
        try:
            procs[int(name)] = _Proc(int(fields[1]), int(fields[2]), int(fields[21]) * _PAGE_SIZE)
        except (IndexError, ValueError):
            continue
    return procs


def _attempt_marker(pid: int) -> bytes | None:
    """``AWS_BATCH_JOB_ID=…\0AWS_BATCH_JOB_ATTEMPT=…`` of ``pid``'s initial environment, if it has both."""
    try:
        environ = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
    except OSError:
        return None
    job = next((v for v in environ if v.startswith(b"AWS_BATCH_JOB_ID=")), None)
    attempt = next((v for v in environ if v.startswith(b"AWS_BATCH_JOB_ATTEMPT=")), None)
    return job + b"\0" + attempt if job is not None and attempt is not None else None


# What a job inherits from the server's environment, like the few variables a
# container image provides. Everything else (credentials, database URLs, the
# server's own settings) stays out of jobs; OPENBATCH_JOB_ENV adds names.
BASE_ENVIRONMENT = ("PATH", "HOME", "USER", "LOGNAME", "SHELL", "LANG", "LC_ALL", "LC_CTYPE", "TZ", "TMPDIR", "TERM")


def job_base_environment() -> dict[str, str]:
    names = [*BASE_ENVIRONMENT, *os.environ.get("OPENBATCH_JOB_ENV", "").replace(",", " ").split()]
    return {name: os.environ[name] for name in names if name in os.environ}


def make_job_dir(path: Path) -> None:
    """A job's working directory ``<work>/<shard>/<jobId>``.

    The shard is created traversable but not listable (0711): a job finds another job's
    directory only by knowing its id.
    """
    # os.mkdir first: one syscall in the common case, where pathlib's mkdir does several.
    try:
        os.mkdir(path)
    except FileExistsError:
        pass
    except FileNotFoundError:
        # The engine (ahead of time) and the supervisor (at launch) may both get here at once.
        path.parent.parent.mkdir(parents=True, exist_ok=True)
        for directory, mode in ((path.parent, 0o711), (path, 0o777)):
            try:
                os.mkdir(directory, mode)
            except FileExistsError:
                pass


class Sandbox:
    """bubblewrap around a host-process job: its own PID namespace (a fresh /proc, so the server's and
    supervisor's processes, environments and memory are out of sight) and the server's directories
    hidden under empty tmpfs mounts; the rest of the host's file system is the job's as before.

    For a server that cannot run jobs as another user (it does not run as root): the job shares the
    server's uid, so only namespaces keep it from the server's files and memory.
    """

    def __init__(self, hidden: tuple[Path, ...], bwrap: str = "bwrap") -> None:
        self.hidden = hidden
        self.bwrap = bwrap

    @classmethod
    def probe(cls, hidden: tuple[Path, ...]) -> Sandbox | None:
        """A sandbox if bubblewrap works here (user namespaces allowed), else None."""
        bwrap = shutil.which("bwrap")
        if bwrap is None:
            return None
        sandbox = cls(hidden, bwrap)
        try:
            probe = subprocess.run(sandbox.wrap(("true",), Path("/")), capture_output=True, timeout=10, check=False)
        except (OSError, subprocess.SubprocessError):
            return None
        return sandbox if probe.returncode == 0 else None

    def wrap(self, command: tuple[str, ...], working_dir: Path) -> tuple[str, ...]:
        hide = [arg for path in self.hidden for arg in ("--tmpfs", str(path))]
        return (
            self.bwrap,
            "--dev-bind",
            "/",
            "/",
            *hide,
            "--unshare-pid",
            "--proc",
            "/proc",
            "--die-with-parent",
            "--chdir",
            str(working_dir),
            "--",
            *command,
        )


def _user_name(uid: int) -> str:
    try:
        return pwd.getpwuid(uid).pw_name
    except KeyError:
        return str(uid)


class _NotStarted:
    """Handle of an attempt whose process never started; killing it is a no-op."""

    __slots__ = ()

    @property
    def pid(self) -> int:
        return -1


class _Attempt:
    __slots__ = (
        "container",
        "deadline",
        "finished",
        "group_gone",
        "kill_timer",
        "limit_bytes",
        "log_failed",
        "on_exit",
        "oom",
        "partial",
        "pgid",
        "pidfd",
        "pipes",
        "proc",
        "reap_delay",
        "reap_timer",
        "reason",
        "returncode",
        "spec",
        "drain_timer",
        "escaped",
        "marker",
        "writer",
    )

    def __init__(
        self,
        spec: LaunchSpec,
        on_exit: ExitCallback,
        proc: subprocess.Popen[bytes],
        pidfd: int,
    ) -> None:
        self.spec = spec
        self.on_exit = on_exit
        self.proc = proc
        self.pgid = proc.pid
        self.pidfd = pidfd
        # Opened with the first line of output: a silent job holds no open file (see LocalExecutor).
        self.writer: LogWriter | None = None
        self.pipes: list[IO[bytes] | None] = [proc.stdout, proc.stderr]
        self.partial = [b"", b""]
        self.returncode: int | None = None
        self.reason: str | None = None
        self.oom = False
        self.group_gone = False
        self.finished = False
        self.log_failed = False
        self.limit_bytes = spec.memory_mib * 1024 * 1024 if spec.memory_mib is not None else None
        self.container: PreparedContainer | None = None
        self.kill_timer: asyncio.TimerHandle | None = None
        self.drain_timer: asyncio.TimerHandle | None = None
        self.reap_timer: asyncio.TimerHandle | None = None
        self.reap_delay = _REAP_FIRST_DELAY
        self.deadline = 0.0
        self.escaped: set[int] = set()
        """Descendants that left the process group (``setsid``, ``setpgid``): found by following parent
        links (and, for orphans re-parented to this subreaper, the job's variables), killed and counted
        with the group."""
        env = spec.environment
        job_id = env.get("AWS_BATCH_JOB_ID", spec.job_id)
        attempt = env.get("AWS_BATCH_JOB_ATTEMPT", str(spec.attempt))
        self.marker = f"AWS_BATCH_JOB_ID={job_id}\0AWS_BATCH_JOB_ATTEMPT={attempt}".encode()

    @property
    def pid(self) -> int:
        return self.pgid


class LocalExecutor:
    """Runs each attempt as a process group of this host, output going to a :class:`LogStore`.

    Linux only (``pidfd_open`` needs kernel 5.3 or later). Everything is
    driven by the event loop without helper threads: each attempt costs three
    file descriptors watched with ``add_reader`` (stdout, stderr and a pidfd
    that becomes readable when the main process exits), plus the log file
    once there is output to append, so thousands of short jobs per second are
    limited by ``fork``/``exec`` and log stream creation, not by bookkeeping.
    Output is split into CloudWatch-sized events as it arrives
    and appended to the stream at once; at most one partial line per pipe is
    held in memory, whatever the job prints. The stream is created (empty) at
    launch, as on AWS; its writer is opened only with the first line of output,
    so a silent job holds no file open. Empty lines produce no event, as with
    the ``awslogs`` log driver.

    When the main process exits the rest of its process group is SIGKILLed,
    mirroring a container whose PID 1 exits. The executor makes this process a
    child subreaper (Linux ``PR_SET_CHILD_SUBREAPER``) so that the group's
    orphans are re-parented here and their zombies reaped; ``on_exit`` is only
    called once the group is gone (or ``pipe_drain_seconds`` after the main
    exit, whichever is first). A descendant that moved itself to another
    process group or session (``setsid``, a double-forking daemon) is still
    the attempt's: a scan of ``/proc`` every ``memory_poll_interval`` follows
    parent links from the group (and identifies orphans re-parented to this
    subreaper by the job's ``AWS_BATCH_*`` variables), so such processes are
    signalled, counted against the memory limit and killed with the attempt.

    Memory limits are enforced without cgroups, which need privileges or a
    delegated hierarchy that a self-hosted server often lacks: one timer,
    running while some attempt runs, reads ``/proc/*/stat`` once per
    ``memory_poll_interval`` and sums the resident set size per attempt. An
    attempt over its limit is SIGKILLed and reported as exit code 137 with an
    ``OutOfMemoryError`` reason. This is a sampling check: an
    allocation spike shorter than the poll interval can go unnoticed (and a
    fast enough one can exhaust the host first), and pages shared between
    processes of a group are counted once per process.
    """

    def __init__(
        self,
        log_store: LogStore,
        log_group: str = "/aws/batch/job",
        *,
        kill_grace_seconds: float = 30.0,
        memory_poll_interval: float = 0.25,
        pipe_drain_seconds: float = 1.0,
        reap_orphans: bool = True,
        run_as: tuple[int, int] | None = None,
        sandbox: Sandbox | None = None,
    ) -> None:
        self._log_store = log_store
        self._log_group = log_group
        self._kill_grace = kill_grace_seconds
        self._memory_poll_interval = memory_poll_interval
        self._pipe_drain = pipe_drain_seconds
        self._subreaper = reap_orphans and _become_subreaper()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._active: set[_Attempt] = set()
        self._watched: dict[int, _Attempt] = {}
        """Attempts whose main process runs, by process group: scanned for escapes and memory."""
        self._scan_timer: asyncio.TimerHandle | None = None
        self._idle: asyncio.Future[None] | None = None
        self._closing = False
        self._base_env = job_base_environment()
        self._run_as = run_as
        self._sandbox = sandbox
        """Namespaces around host-process jobs when they cannot run as another user (see :class:`Sandbox`)."""
        self._run_as_name = _user_name(run_as[0]) if run_as is not None else None
        """(uid, gid) jobs run as, when it is not this process's own user."""

    reattaches = False
    """Attempts are this process's children: they end with it."""

    def known_attempts(self) -> Mapping[str, KnownAttempt]:
        return {}

    def attach(self, key: str, on_exit: ExitCallback) -> Handle:
        raise KeyError(key)

    def forget(self, keys: Iterable[str]) -> None:
        pass

    @property
    def running(self) -> int:
        """Attempts launched whose ``on_exit`` has not been called yet."""
        return len(self._active)

    # -- Executor protocol -------------------------------------------------

    def launch(self, spec: LaunchSpec, on_exit: ExitCallback) -> Handle:
        loop = asyncio.get_running_loop()
        if self._closing:
            raise RuntimeError("LocalExecutor is closed")
        if self._loop is None:
            self._loop = loop
        elif self._loop is not loop:
            raise RuntimeError("LocalExecutor is bound to another event loop")
        if not spec.command:
            return self._not_started(loop, on_exit, "empty command")
        env = self._base_env.copy()
        if self._run_as_name is not None:
            # The server's HOME is not the job user's (nor readable by it): home is the working dir.
            env.update(HOME=str(spec.working_dir), USER=self._run_as_name, LOGNAME=self._run_as_name)
        env.update(spec.environment)
        # The attempt's marker: how an orphan re-parented to this subreaper is traced back to it.
        env.setdefault("AWS_BATCH_JOB_ID", spec.job_id)
        env.setdefault("AWS_BATCH_JOB_ATTEMPT", str(spec.attempt))
        if spec.gpu_ids:
            visible = ",".join(str(gpu) for gpu in spec.gpu_ids)
            env["CUDA_VISIBLE_DEVICES"] = visible
            env["NVIDIA_VISIBLE_DEVICES"] = visible
        uid, gid = self._run_as if self._run_as is not None else (None, None)
        container: PreparedContainer | None = None
        try:
            make_job_dir(spec.working_dir)
            if uid is not None:
                os.chown(spec.working_dir, uid, gid if gid is not None else -1)
            command = spec.command
            if spec.container is not None:
                # The container's environment is the job's own, not the server's (its PATH is the image's).
                own = {k: v for k, v in env.items() if k in spec.environment or k not in self._base_env}
                container = prepare_container(spec, own, self._run_as)
                command, env = tuple(container.argv), container.env
                uid, gid = container.run_as if container.run_as is not None else (None, None)
            elif self._sandbox is not None:
                command = self._sandbox.wrap(command, spec.working_dir)
            proc = subprocess.Popen(
                command,
                cwd=spec.working_dir,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                process_group=0,
                close_fds=True,
                pass_fds=container.pass_fds if container is not None else (),
                user=uid,
                group=gid,
                extra_groups=[] if uid is not None else None,
            )
            if container is not None:
                container.started(loop, proc.pid)
        except ContainerStartError as exc:
            return self._not_started(loop, on_exit, exc.reason, prefix="")
        except (OSError, ValueError, subprocess.SubprocessError) as exc:
            if container is not None:
                container.cleanup(0)
            return self._not_started(loop, on_exit, str(exc))
        try:
            pidfd = os.pidfd_open(proc.pid)
        except OSError as exc:
            self._abandon(proc, None)
            return self._not_started(loop, on_exit, str(exc))
        try:
            # The stream exists once the attempt's process does, as on AWS, even if the job prints nothing.
            self._log_store.create_stream(self._log_group, spec.log_stream)
        except OSError:
            # A full or broken log volume must not stop the job; it runs without its log.
            logger.exception("creating log stream %s of job %s failed", spec.log_stream, spec.job_id)
        attempt = _Attempt(spec, on_exit, proc, pidfd)
        if container is not None:
            attempt.container = container
            if container.limits_memory:
                attempt.limit_bytes = None
        for index, pipe in enumerate(attempt.pipes):
            assert pipe is not None
            fd = pipe.fileno()
            os.set_blocking(fd, False)
            loop.add_reader(fd, self._on_pipe_readable, attempt, index)
        loop.add_reader(pidfd, self._on_main_exit, attempt)
        self._active.add(attempt)
        self._watched[attempt.pgid] = attempt
        self._arm_scan_timer()
        return attempt

    def kill(self, handle: Handle, grace_seconds: float | None = None, reason: str | None = None) -> None:
        """SIGTERM the attempt's process group, SIGKILL it after the grace period.

        ``grace_seconds`` defaults to ``kill_grace_seconds``; zero or less kills
        at once. A second call may shorten a pending grace period, never extend it.
        """
        if not isinstance(handle, _Attempt) or handle.returncode is not None or handle.finished:
            return
        if reason is not None and handle.reason is None:
            handle.reason = reason
        grace = self._kill_grace if grace_seconds is None else grace_seconds
        if grace <= 0:
            self._signal(handle, signal.SIGKILL)
            return
        self._signal(handle, signal.SIGTERM)
        loop = self._require_loop()
        when = loop.time() + grace
        if handle.kill_timer is None or when < handle.kill_timer.when():
            if handle.kill_timer is not None:
                handle.kill_timer.cancel()
            handle.kill_timer = loop.call_at(when, self._escalate, handle)

    async def aclose(self) -> None:
        self._closing = True
        if self._scan_timer is not None:
            self._scan_timer.cancel()
            self._scan_timer = None
        if not self._active:
            return
        loop = self._require_loop()
        for attempt in list(self._active):
            if attempt.returncode is None:
                self._signal(attempt, signal.SIGKILL)
        self._idle = loop.create_future()
        try:
            await asyncio.wait_for(self._idle, self._pipe_drain + _CLOSE_SLACK_SECONDS)
        except TimeoutError:
            for attempt in list(self._active):
                self._force_finish(attempt)
        finally:
            self._idle = None

    # -- internals -----------------------------------------------------------

    def _require_loop(self) -> asyncio.AbstractEventLoop:
        if self._loop is None:
            raise RuntimeError("LocalExecutor has not launched anything yet")
        return self._loop

    @staticmethod
    def _not_started(
        loop: asyncio.AbstractEventLoop, on_exit: ExitCallback, error: str, prefix: str = "CannotStartContainerError: "
    ) -> Handle:
        info = ExitInfo(exit_code=None, started=False, reason=f"{prefix}{error}")
        loop.call_soon(on_exit, info)
        return _NotStarted()

    @staticmethod
    def _abandon(proc: subprocess.Popen[bytes], pidfd: int | None) -> None:
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except OSError:
            pass
        proc.wait()
        for pipe in (proc.stdout, proc.stderr):
            if pipe is not None:
                pipe.close()
        if pidfd is not None:
            os.close(pidfd)

    @staticmethod
    def _signal(attempt: _Attempt, sig: int) -> None:
        # Safe against pgid reuse: we only signal while the leader is unreaped or,
        # as subreaper, while group members that only we can reap remain.
        try:
            os.killpg(attempt.pgid, sig)
        except (ProcessLookupError, PermissionError):
            pass
        for pid in list(attempt.escaped):
            try:
                os.kill(pid, sig)
            except (ProcessLookupError, PermissionError):
                attempt.escaped.discard(pid)

    def _escalate(self, attempt: _Attempt) -> None:
        attempt.kill_timer = None
        if attempt.returncode is None:
            self._signal(attempt, signal.SIGKILL)

    def _on_pipe_readable(self, attempt: _Attempt, index: int) -> None:
        pipe = attempt.pipes[index]
        if pipe is None:
            return
        try:
            data = os.read(pipe.fileno(), _READ_CHUNK)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            data = b""
        if data:
            self._emit(attempt, index, data, final=False)
        else:
            self._close_pipe(attempt, index)
            self._maybe_finish(attempt)

    def _emit(self, attempt: _Attempt, index: int, data: bytes, *, final: bool) -> None:
        pending = attempt.partial[index]
        buf = pending + data if pending else data
        lines = buf.split(b"\n")
        rest = b"" if final else lines.pop()
        if len(rest) >= MAX_EVENT_BYTES:
            pieces = _chop(rest)
            rest = pieces.pop()
            lines.extend(pieces)
        attempt.partial[index] = rest
        if len(buf) > MAX_EVENT_BYTES:
            events = [piece for line in lines for piece in _chop(line) if piece]
        else:
            events = [line for line in lines if line]
        if not events or attempt.log_failed:
            return
        try:
            if attempt.writer is None:
                attempt.writer = self._log_store.open_writer(self._log_group, attempt.spec.log_stream)
            attempt.writer.write_raw(time.time_ns() // 1_000_000, events)
            attempt.writer.flush()
        except OSError:
            # A full or broken log volume must not take the job or the server down;
            # the job keeps running and the rest of its output is dropped.
            attempt.log_failed = True
            logger.exception("writing the log of job %s failed; dropping its output", attempt.spec.job_id)

    def _close_pipe(self, attempt: _Attempt, index: int) -> None:
        pipe = attempt.pipes[index]
        if pipe is None:
            return
        attempt.pipes[index] = None
        self._require_loop().remove_reader(pipe.fileno())
        pipe.close()
        if attempt.partial[index]:
            self._emit(attempt, index, b"", final=True)

    def _on_main_exit(self, attempt: _Attempt) -> None:
        loop = self._require_loop()
        loop.remove_reader(attempt.pidfd)
        # Kill the rest of the group (and what left it) before reaping: while the zombie leader
        # exists its pid, and so the pgid, cannot be handed to a new process.
        self._watched.pop(attempt.pgid, None)
        self._adopt_orphans(attempt)
        self._signal(attempt, signal.SIGKILL)
        returncode = attempt.proc.poll()
        if returncode is None:
            returncode = attempt.proc.wait()
        os.close(attempt.pidfd)
        attempt.pidfd = -1
        attempt.returncode = returncode
        if attempt.kill_timer is not None:
            attempt.kill_timer.cancel()
            attempt.kill_timer = None
        attempt.deadline = loop.time() + self._pipe_drain
        if attempt.pipes[0] is not None or attempt.pipes[1] is not None:
            attempt.drain_timer = loop.call_later(self._pipe_drain, self._force_drain, attempt)
        if self._subreaper:
            self._reap_group(attempt)
        else:
            attempt.group_gone = True
        self._maybe_finish(attempt)

    def _reap_group(self, attempt: _Attempt) -> None:
        attempt.reap_timer = None
        while True:
            try:
                if os.waitid(os.P_PGID, attempt.pgid, os.WEXITED | os.WNOHANG) is None:
                    break
            except ChildProcessError:
                break
        self._adopt_orphans(attempt)
        for pid in list(attempt.escaped):
            try:
                os.waitpid(pid, os.WNOHANG)  # ours to reap once re-parented to this subreaper
            except ChildProcessError:
                pass
            try:
                os.kill(pid, 0)
            except (ProcessLookupError, PermissionError):
                attempt.escaped.discard(pid)
        try:
            os.killpg(attempt.pgid, 0)
        except (ProcessLookupError, PermissionError):
            if not attempt.escaped:
                attempt.group_gone = True
                return
        loop = self._require_loop()
        if loop.time() >= attempt.deadline:
            logger.warning("process group %d of job %s outlived its leader", attempt.pgid, attempt.spec.job_id)
            attempt.group_gone = True
            return
        # Members may have forked since the last SIGKILL; keep sweeping until the group is empty.
        self._signal(attempt, signal.SIGKILL)
        delay = attempt.reap_delay
        attempt.reap_delay = min(delay * 2, _REAP_MAX_DELAY)
        attempt.reap_timer = loop.call_later(delay, self._retry_reap, attempt)

    def _retry_reap(self, attempt: _Attempt) -> None:
        self._reap_group(attempt)
        self._maybe_finish(attempt)

    def _force_drain(self, attempt: _Attempt) -> None:
        """Stop waiting for EOF on pipes held open by a descendant outside the group."""
        attempt.drain_timer = None
        for index, pipe in enumerate(attempt.pipes):
            if pipe is None:
                continue
            for _ in range(_FINAL_DRAIN_CHUNKS):
                try:
                    data = os.read(pipe.fileno(), _READ_CHUNK)
                except OSError:
                    break
                if not data:
                    break
                self._emit(attempt, index, data, final=False)
            self._close_pipe(attempt, index)
        self._maybe_finish(attempt)

    def _force_finish(self, attempt: _Attempt) -> None:
        loop = self._require_loop()
        if attempt.returncode is None:
            loop.remove_reader(attempt.pidfd)
            os.close(attempt.pidfd)
            attempt.pidfd = -1
            polled = attempt.proc.poll()
            attempt.returncode = -signal.SIGKILL if polled is None else polled
        for index in range(len(attempt.pipes)):
            self._close_pipe(attempt, index)
        attempt.group_gone = True
        self._maybe_finish(attempt)

    def _maybe_finish(self, attempt: _Attempt) -> None:
        if (
            attempt.finished
            or attempt.returncode is None
            or not attempt.group_gone
            or attempt.pipes[0] is not None
            or attempt.pipes[1] is not None
        ):
            return
        attempt.finished = True
        for timer in (attempt.drain_timer, attempt.reap_timer, attempt.kill_timer):
            if timer is not None:
                timer.cancel()
        attempt.drain_timer = attempt.reap_timer = attempt.kill_timer = None
        try:
            if attempt.writer is not None:
                attempt.writer.close()
        except OSError:
            logger.exception("closing the log of job %s failed", attempt.spec.job_id)
        self._active.discard(attempt)
        if not self._active and self._idle is not None and not self._idle.done():
            self._idle.set_result(None)

        code = attempt.returncode
        if attempt.container is not None:
            if attempt.reason is None and attempt.container.out_of_memory(code):
                attempt.reason = OOM_REASON
                attempt.oom = True
            attempt.container.finish(code, self._require_loop())
        if code < 0:
            code = 128 - code
        if attempt.oom:
            code = 137
        info = ExitInfo(exit_code=code, reason=attempt.reason)
        try:
            attempt.on_exit(info)
        except Exception:
            logger.exception("on_exit callback of job %s failed", attempt.spec.job_id)

    def _adopt_orphans(self, attempt: _Attempt) -> None:
        """Claim (and kill) this subreaper's children that carry ``attempt``'s marker and left its group.

        Cheaper than a scan of /proc, so it can run at every exit: only this process's own children
        are read, from ``/proc/self/task/*/children``.
        """
        if not self._subreaper:
            return
        if attempt.container is not None and attempt.container.own_pid_namespace:
            # Reading every thread's children list and their environments at each exit was a sixth of a
            # supervisor's time with short bubblewrap jobs; their processes cannot leave the namespace.
            return
        try:
            tasks = os.listdir("/proc/self/task")
        except OSError:
            return
        mains = {a.pgid for a in self._active}
        for task in tasks:
            try:
                children = Path(f"/proc/self/task/{task}/children").read_text().split()
            except OSError:
                continue
            for child in children:
                pid = int(child)
                if pid in mains or pid in attempt.escaped:
                    continue
                if _attempt_marker(pid) == attempt.marker:
                    attempt.escaped.add(pid)
                    try:
                        os.kill(pid, signal.SIGKILL)
                    except (ProcessLookupError, PermissionError):
                        pass

    def _arm_scan_timer(self) -> None:
        if self._scan_timer is None and self._watched and not self._closing:
            loop = self._require_loop()
            self._scan_timer = loop.call_later(self._memory_poll_interval, self._scan)

    def _scan(self, rearm: bool = True) -> None:
        """One pass over /proc: find each attempt's escaped descendants, enforce memory limits."""
        if rearm:
            self._scan_timer = None
        if not self._watched:
            return
        procs = _read_procs()
        owner: dict[int, _Attempt] = {}
        for pid, proc in procs.items():
            attempt = self._watched.get(proc.pgrp)
            if attempt is not None:
                owner[pid] = attempt
        for attempt in self._watched.values():
            for pid in attempt.escaped:
                if pid in procs:
                    owner.setdefault(pid, attempt)
        me = os.getpid()
        for pid in procs:
            if pid in owner:
                continue
            # Walk up to a known member (bounded: parent links end at 1 or 0).
            chain: list[int] = []
            cursor: int | None = pid
            found: _Attempt | None = None
            for _ in range(64):
                if cursor is None or cursor in (0, 1, me):
                    break
                if cursor in owner:
                    found = owner[cursor]
                    break
                chain.append(cursor)
                parent = procs.get(cursor)
                cursor = parent.ppid if parent is not None else None
            if found is None and cursor == me and chain and self._subreaper:
                # An orphan re-parented to this subreaper: whose attempt it is shows in its variables.
                marker = _attempt_marker(chain[-1])
                found = next((a for a in self._watched.values() if a.marker == marker), None)
            if found is not None:
                for member in chain:
                    owner[member] = found
                    if procs[member].pgrp != found.pgid:
                        found.escaped.add(member)
        usage: dict[int, int] = {}
        for pid, attempt in owner.items():
            usage[attempt.pgid] = usage.get(attempt.pgid, 0) + procs[pid].rss
        for pgid, attempt in list(self._watched.items()):
            if attempt.limit_bytes is not None and usage.get(pgid, 0) > attempt.limit_bytes:
                if attempt.reason is None:
                    attempt.reason = OOM_REASON
                    attempt.oom = True
                self._signal(attempt, signal.SIGKILL)
                attempt.limit_bytes = None
        if rearm:
            self._arm_scan_timer()
