"""What runs on a Ray node for an attempt: the job's command as a process group of its own.

A slot (``run_slot``) is one Ray task holding one attempt's resources, on the node Ray picked for
them. It asks the dispatcher for an attempt of that shape, runs it, and hands its exit back with
the question for the next, until none is waiting: a stream of attempts of one shape costs one
actor call each instead of one Ray task each, as Ray itself reuses a leased worker for a stream
of tasks of one scheduling class. (The nodes of a multi-node job run one task each, ``run_attempt``.)

Output is read line by line and sent back to the dispatcher actor in batches (about four a
second while the job prints), each batch also asking whether the attempt is to be stopped:
that is how TerminateJob and timeouts reach a process on another machine. The memory limit is
sampled as the local executor does it (resident set size of the group, from ``/proc``). When
the main process exits, the rest of its group is killed, as when a container's PID 1 exits.

Should the Ray worker die (a lost node, a force-cancelled task), its job's process group dies with
it: a guard process, started once per worker, holds a pipe from the worker and the number of the
group running now; when the pipe closes it kills that group. Starting a job then costs one write,
not an extra ``exec`` of a wrapper (``setpriv --pdeathsig``, 0.85 ms of CPU per job measured here,
is the fallback where the guard cannot start).

Only the standard library and ``ray`` are used here: this module runs inside Ray workers.
"""

from __future__ import annotations

import contextlib
import ctypes
import functools
import os
import selectors
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections import deque
from pathlib import Path
from typing import Any

OOM_REASON = "OutOfMemoryError: Container killed due to memory usage"
NOT_STARTED = "CannotStartContainerError: "
_REPORT_SECONDS = 0.25
"""How often pending output is sent back (and a stop request picked up) while the job prints."""
_HEARTBEAT_SECONDS = 0.5
"""How often a silent job asks whether it is to be stopped."""
_FIRST_REPORT_SECONDS = 0.1
"""The first report (the node's address) comes soon: it is what lets a stop request reach the job.
A job that ends sooner never reports, and costs no round trip."""
_MEMORY_SECONDS = 0.5
_DRAIN_SECONDS = 1.0
_MAX_LINE = 256 * 1024 - 26
_BASE_ENVIRONMENT = ("PATH", "HOME", "USER", "LOGNAME", "SHELL", "LANG", "LC_ALL", "LC_CTYPE", "TZ", "TMPDIR", "TERM")
_GPU_VARIABLES = ("CUDA_VISIBLE_DEVICES", "NVIDIA_VISIBLE_DEVICES")
_PR_SET_PDEATHSIG = 1
_PAGE_SIZE = os.sysconf("SC_PAGE_SIZE")

_PIPES: dict[str, Any] = {"stdin": subprocess.DEVNULL, "stdout": subprocess.PIPE, "stderr": subprocess.PIPE}

Lines = list[tuple[int, str]]
"""(epoch ms, message) events, in order."""


@functools.cache
def setpriv() -> str | None:
    """util-linux's ``setpriv`` if it has ``--pdeathsig``: it sets the parent-death signal and execs the command.
    The fallback to the guard, preferred to a ``preexec_fn``, which makes ``subprocess`` fork the whole Ray worker
    (threads, gRPC's fork handlers) instead of vfork-ing it: measured 110 ms median per job under load against
    about 2 ms. Looked for once, and only where the guard cannot start."""
    path = shutil.which("setpriv")
    if path is None:
        return None
    try:
        usage = subprocess.run([path, "--help"], capture_output=True, text=True, timeout=10).stdout
    except (OSError, subprocess.SubprocessError):
        return None
    return path if "--pdeathsig" in usage else None  # util-linux 2.33 and later


try:
    _PRCTL: Any = ctypes.CDLL(None, use_errno=True).prctl
except (OSError, AttributeError):
    _PRCTL = None
_DISPATCHERS: dict[str, Any] = {}
"""Dispatcher actor handles by name, looked up once per Ray worker (a lookup asks the GCS)."""


def _die_with_worker() -> None:
    """In the child before exec: SIGKILL it when the Ray worker that started it dies (a lost node).
    (libc is loaded beforehand: loading it in the child costs tens of milliseconds per job.)"""
    if _PRCTL is not None:
        _PRCTL(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)


def _argv(command: list[str], environment: dict[str, str]) -> tuple[list[str], Any]:
    """The command line to start and the ``preexec_fn`` to start it with: the job's process dies with the
    Ray worker that started it (a lost node) either way.

    Through ``setpriv`` the executable is looked up first, so that a missing one still fails to start
    (``CannotStartContainerError``) rather than becoming the wrapper's exit status."""
    wrapper = setpriv()
    if wrapper is None or not command:
        return command, _die_with_worker
    program = command[0]
    if "/" not in program:
        found = shutil.which(program, path=environment.get("PATH", os.defpath))
    else:
        found = program if not os.path.isabs(program) or os.access(program, os.X_OK) else None
    if found is None:
        raise FileNotFoundError(2, "No such file or directory", program)
    return [wrapper, "--pdeathsig", "KILL", "--", *command], None


_GUARD_CODE = """
import os, signal, sys
group = int(sys.argv[1])
try:
    while os.read(0, 4096):
        pass
finally:
    # The Ray worker is gone (its end of the pipe closed): the job it was running goes too.
    pgid = int(os.pread(group, 16, 0) or b"0")
    if pgid > 0:
        try:
            os.killpg(pgid, signal.SIGKILL)
        except OSError:
            pass
"""


class _Guard:
    """A small process that kills the process group of this Ray worker's job when the worker dies."""

    def __init__(self) -> None:
        self.group = os.memfd_create("openbatch-job-group", os.MFD_CLOEXEC)
        os.ftruncate(self.group, 16)
        read, self._pipe = os.pipe()
        try:
            self.process = subprocess.Popen(
                [sys.executable, "-S", "-c", _GUARD_CODE, str(self.group)],
                stdin=read,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
                pass_fds=(self.group,),
                # Not in the worker's group or session: whatever kills those leaves the guard to act.
                start_new_session=True,
            )
        finally:
            os.close(read)

    def alive(self) -> bool:
        return self.process.poll() is None

    def watch(self, pgid: int) -> None:
        os.pwrite(self.group, b"%16d" % pgid, 0)


_GUARDS: list[_Guard] = []


def _guard() -> _Guard | None:
    """This worker's guard, started on first use (again if it died); None where it cannot start."""
    if _GUARDS and _GUARDS[0].alive():
        return _GUARDS[0]
    _GUARDS.clear()
    try:
        _GUARDS.append(_Guard())
    except (OSError, AttributeError, subprocess.SubprocessError):
        return None
    return _GUARDS[0]


def _dispatcher(name: str, namespace: str) -> Any:
    import ray

    handle = _DISPATCHERS.get(name)
    if handle is None:
        handle = _DISPATCHERS[name] = ray.get_actor(name, namespace=namespace)
    return handle


def _group_rss(pgid: int) -> int:
    """Resident bytes of every process in group ``pgid``."""
    total = 0
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/stat", "rb") as stat:
                data = stat.read(1024)
        except OSError:
            continue
        fields = data[data.rfind(b")") + 2 :].split(b" ", 23)
        try:
            if int(fields[2]) == pgid:
                total += int(fields[21]) * _PAGE_SIZE
        except (IndexError, ValueError):
            continue
    return total


def _signal_group(pgid: int, sig: int) -> None:
    with contextlib.suppress(OSError):
        os.killpg(pgid, sig)


def _remove_if_empty(path: str) -> None:
    with contextlib.suppress(OSError):
        os.rmdir(path)


def _working_dir(wanted: str) -> str:
    """The job's working directory as the server named it, if this node can make it; else a fresh one."""
    try:
        Path(wanted).mkdir(parents=True, exist_ok=True)
        return wanted
    except OSError:
        return tempfile.mkdtemp(prefix="openbatch-job-")


class _Output:
    """Lines from the job's stdout and stderr, with partial lines kept until they end."""

    def __init__(self) -> None:
        self.lines: Lines = []
        self._partial: dict[int, bytes] = {}

    def feed(self, fd: int, data: bytes) -> None:
        now = int(time.time() * 1000)
        buffer = self._partial.pop(fd, b"") + data
        *complete, rest = buffer.split(b"\n")
        for line in complete:
            self._add(now, line)
        if len(rest) >= _MAX_LINE:
            self._add(now, rest)
        elif rest:
            self._partial[fd] = rest

    def close(self, fd: int) -> None:
        rest = self._partial.pop(fd, b"")
        if rest:
            self._add(int(time.time() * 1000), rest)

    def _add(self, now: int, line: bytes) -> None:
        for start in range(0, max(len(line), 1), _MAX_LINE):
            self.lines.append((now, line[start : start + _MAX_LINE].decode("utf-8", "replace")))

    def take(self) -> Lines:
        lines, self.lines = self.lines, []
        return lines


def run_attempt(dispatcher: tuple[str, str], key: str, spec: dict[str, Any]) -> dict[str, Any]:
    """Run one attempt to its end; the result is the attempt's exit (and its last lines of output).

    ``dispatcher`` is the (name, namespace) of the dispatcher actor: a name rather than a handle, so
    that a job too short to report (most trivial jobs) costs no actor lookup at all."""
    import ray

    return _run(dispatcher, key, spec, ray.util.get_node_ip_address())


class _Hand:
    """What a slot holds between its calls to the dispatcher: attempts handed to it and not started yet,
    and the exits of those it ran, not sent yet."""

    __slots__ = ("ended", "waiting")

    def __init__(self) -> None:
        self.waiting: deque[tuple[str, dict[str, Any]]] = deque()
        self.ended: list[tuple[str, dict[str, Any]]] = []

    def give_back(self) -> tuple[list[tuple[str, dict[str, Any]]], list[tuple[str, dict[str, Any]]]]:
        """For a report: the exits to send, and the attempts it will not start (one runs longer than
        a moment: the others go back to the queue, for a slot that is free)."""
        ended, self.ended = self.ended, []
        returned = list(self.waiting)
        self.waiting.clear()
        return ended, returned

    def keep(self, ended: list[tuple[str, dict[str, Any]]]) -> None:
        """A report that may not have reached the dispatcher: its exits go again with the next call (the
        dispatcher takes an exit once). What it gave back is not run here: if the dispatcher did not
        get it, it goes back to the queue when this slot ends."""
        self.ended[:0] = ended


def run_slot(dispatcher: tuple[str, str], slot: str) -> None:
    """Run attempts of one shape, one after another, for as long as the dispatcher has one for this slot.

    The dispatcher may hand over several at once (when many wait): they run back to back, and their
    exits go with the next call. An attempt that runs past its first report sends the exits then,
    and gives back the attempts not started, so that a long job holds up nothing."""
    import ray

    node = ray.util.get_node_ip_address()
    handle = _dispatcher(*dispatcher)
    hand = _Hand()
    while True:
        if not hand.waiting:
            ended, hand.ended = hand.ended, []
            # Not ray.get: that tells the raylet the task is blocked, which lends its CPU to another task
            # for the wait (two raylet round trips per call, and more attempts running than CPUs).
            work = _call(handle.next.remote(slot, node, ended))
            if not work:
                return
            hand.waiting.extend(work)
        key, spec = hand.waiting.popleft()
        result = _run(dispatcher, key, spec, node, hand)
        hand.ended.append((key, result))  # after the run: its reports replace the list


def _call(ref: Any, timeout: float | None = None) -> Any:
    """The value of an actor call's result, waited for without telling the raylet that this task is blocked."""
    return ref.future().result(timeout)


def _run(
    dispatcher: tuple[str, str], key: str, spec: dict[str, Any], node: str, hand: _Hand | None = None
) -> dict[str, Any]:
    environment = {name: os.environ[name] for name in _BASE_ENVIRONMENT if name in os.environ}
    environment.update(spec["environment"])
    # Ray hands the task its GPUs through CUDA_VISIBLE_DEVICES: the job gets the same ones.
    environment.update({name: os.environ[name] for name in _GPU_VARIABLES if name in os.environ})
    environment["OPENBATCH_NODE_ADDRESS"] = node
    started = int(time.time() * 1000)
    guard = _guard()
    cwd = _working_dir(spec["workingDir"])
    try:
        if guard is not None:
            argv, before_exec = list(spec["command"]), None
        else:
            argv, before_exec = _argv(list(spec["command"]), environment)
        proc = subprocess.Popen(
            argv,
            cwd=cwd,
            env=environment,
            process_group=0,
            preexec_fn=before_exec,
            **_PIPES,
        )
    except (OSError, ValueError, subprocess.SubprocessError) as exc:
        _remove_if_empty(cwd)
        ended = int(time.time() * 1000)
        return {"started": False, "reason": f"{NOT_STARTED}{exc}", "node": node, "lines": [], "endedAt": ended}
    if guard is not None:
        guard.watch(proc.pid)
    try:
        return _Follow(dispatcher, key, spec, proc, node, started, hand).run()
    finally:
        if guard is not None:
            guard.watch(0)
        # On this node, as the server removes a local job's: one the job left files in stays for the user.
        _remove_if_empty(cwd)


class _Follow:
    def __init__(
        self,
        dispatcher: tuple[str, str],
        key: str,
        spec: dict[str, Any],
        proc: subprocess.Popen[bytes],
        node: str,
        started: int,
        hand: _Hand | None = None,
    ) -> None:
        self.dispatcher = dispatcher
        self.hand = hand
        self.started = started
        """Epoch ms the process started: sent with the first report and the result (the job is RUNNING from it)."""
        self.key = key
        self.proc = proc
        self.node = node
        self.limit = spec["memoryMib"] * 1024 * 1024 if spec.get("memoryMib") else None
        self.output = _Output()
        self.reason: str | None = None
        self.kill_at: float | None = None

    def run(self) -> dict[str, Any]:
        try:
            return self._run()
        except BaseException:
            # Cancelled (KeyboardInterrupt from ray.cancel) or failing: the job does not outlive its task.
            _signal_group(self.proc.pid, signal.SIGKILL)
            raise

    def _run(self) -> dict[str, Any]:
        proc = self.proc
        assert proc.stdout is not None and proc.stderr is not None
        selector = selectors.DefaultSelector()
        for pipe in (proc.stdout, proc.stderr):
            os.set_blocking(pipe.fileno(), False)
            selector.register(pipe.fileno(), selectors.EVENT_READ)
        open_pipes = 2
        started = time.monotonic()
        next_report = started + _REPORT_SECONDS
        next_heartbeat = started + _FIRST_REPORT_SECONDS
        next_memory = started + min(_MEMORY_SECONDS, 0.1)
        drain_until: float | None = None
        while open_pipes:
            now = time.monotonic()
            if drain_until is None and proc.poll() is not None:
                # The main process is gone: the rest of its group goes with it (a container's PID 1).
                _signal_group(proc.pid, signal.SIGKILL)
                drain_until = now + _DRAIN_SECONDS
            if drain_until is not None and now >= drain_until:
                break
            for selected, _events in selector.select(timeout=0.05):
                fd = int(selected.fd)
                try:
                    data = os.read(fd, 64 * 1024)
                except BlockingIOError:
                    continue
                except OSError:
                    data = b""
                if data:
                    self.output.feed(fd, data)
                else:
                    selector.unregister(fd)
                    self.output.close(fd)
                    open_pipes -= 1
            if drain_until is not None:
                continue
            now = time.monotonic()
            if (self.output.lines and now >= next_report) or now >= next_heartbeat:
                self._report()
                next_report = now + _REPORT_SECONDS
                next_heartbeat = now + _HEARTBEAT_SECONDS
            if self.limit is not None and now >= next_memory:
                next_memory = now + _MEMORY_SECONDS
                if self.reason is None and _group_rss(proc.pid) > self.limit:
                    self.reason = OOM_REASON
                    _signal_group(proc.pid, signal.SIGKILL)
            if self.kill_at is not None and now >= self.kill_at:
                _signal_group(proc.pid, signal.SIGKILL)
                self.kill_at = None
        selector.close()
        proc.stdout.close()
        proc.stderr.close()
        code = proc.wait()
        _signal_group(proc.pid, signal.SIGKILL)
        exit_code = 128 - code if code < 0 else code
        if self.reason == OOM_REASON:
            exit_code = 137
        return {
            "started": True,
            "startedAt": self.started,
            "exitCode": exit_code,
            "reason": self.reason,
            "node": self.node,
            "lines": self.output.take(),
            "endedAt": int(time.time() * 1000),
        }

    def _report(self) -> None:
        """Send pending output; the answer says whether to stop (the grace period, in seconds)."""
        try:
            dispatcher = _dispatcher(*self.dispatcher)
        except Exception:
            return  # the dispatcher restarting: the job goes on
        ended, returned = self.hand.give_back() if self.hand is not None else ([], [])
        try:
            returned_keys = [key for key, _spec in returned]
            output = self.output.take()
            stop = _call(dispatcher.report.remote(self.key, self.node, output, self.started, ended, returned_keys), 60)
        except Exception:
            # The dispatcher restarting: the output of this batch is lost, the job goes on.
            if self.hand is not None:
                self.hand.keep(ended)
            return
        if stop is None or self.kill_at is not None:
            return
        grace, reason = stop
        if reason and self.reason is None:
            self.reason = reason
        if grace <= 0:
            _signal_group(self.proc.pid, signal.SIGKILL)
            return
        _signal_group(self.proc.pid, signal.SIGTERM)
        self.kill_at = time.monotonic() + grace
