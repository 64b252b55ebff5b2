"""The server's side of the supervisor: an :class:`~openbatch.executors.base.Executor` over its socket.

``start`` connects to the supervisor of the state directory, starting one if none runs (a
process of its own session, so it outlives the server), and reads what it holds: attempts
still running and exits not yet acknowledged. The engine re-attaches to those, launches new
attempts, and acknowledges each exit with ``forget`` once the outcome is committed.
"""

from __future__ import annotations

import asyncio
import logging
import os
import subprocess
import sys
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from openbatch.executors.base import ExitCallback, ExitInfo, Handle, LaunchSpec, deliver_exit
from openbatch.executors.local import job_base_environment
from openbatch.supervisor import protocol as p

logger = logging.getLogger(__name__)

_CONNECT_SECONDS = 10.0
_RESPAWN_SECONDS = 1.0
_LOST = "CannotStartContainerError: the supervisor stopped before starting this attempt"


@dataclass(frozen=True, slots=True)
class OutcomeTarget:
    """Where the supervisor writes the outcomes of attempts that end while no server is connected."""

    database_url: str
    host: str
    """This server instance, as its attempts record it (``Attempt.host``)."""
    keep_seconds: float
    """How long after the server left that is still of use to the next leader."""


@dataclass(frozen=True, slots=True)
class KnownAttempt:
    """An attempt the supervisor holds: still running (``exit`` is None) or ended, not yet acknowledged."""

    key: str
    spec: Mapping[str, Any]
    exit: ExitInfo | None

    @property
    def gpu_ids(self) -> tuple[int, ...]:
        return tuple(int(gpu) for gpu in self.spec.get("gpuIds", ()))


class SupervisedAttempt:
    __slots__ = ("key", "pid")

    def __init__(self, key: str) -> None:
        self.key = key
        self.pid = -1


class SupervisorExecutor:
    """Runs attempts through the host's supervisor process; they survive this server."""

    reattaches = True

    def __init__(
        self,
        state_dir: Path,
        logs_dir: Path,
        *,
        kill_grace_seconds: float = 30.0,
        linger_seconds: float = 5.0,
        run_as: tuple[int, int] | None = None,
        sandbox_hidden: tuple[Path, ...] = (),
        fence_seconds: float | None = None,
        outcomes: OutcomeTarget | None = None,
    ) -> None:
        self.state_dir = state_dir
        self.fence_seconds = fence_seconds
        """Several servers share the store: the supervisor kills its attempts after this long without one."""
        self.outcomes = outcomes
        """Several servers share the store: outcomes that reach no server go there, for the next leader.
        Sent over the (private) socket, never in the supervisor's arguments or environment, which
        other users or its jobs could read."""
        self.sandbox_hidden = sandbox_hidden
        self.logs_dir = logs_dir
        self.kill_grace_seconds = kill_grace_seconds
        self.linger_seconds = linger_seconds
        self.run_as = run_as
        self._reader: asyncio.StreamReader | None = None
        self._writer: asyncio.StreamWriter | None = None
        self._task: asyncio.Task[None] | None = None
        self._callbacks: dict[str, ExitCallback] = {}
        self._handles: dict[str, SupervisedAttempt] = {}
        self._known: dict[str, KnownAttempt] = {}
        self._launching: dict[str, dict[str, Any]] = {}
        """Launches sent but not yet answered (started, refused or exit): sent again after a reconnect
        if the new supervisor does not know them (the old one died, or was stopping, before claiming)."""
        self._unsent: list[dict[str, Any]] = []
        """Requests made while the supervisor was out of reach: sent once it is back."""
        self._closing = False
        self._reconnecting = False

    # --- connection -------------------------------------------------------------------

    async def start(self) -> None:
        await self._connect()
        self._task = asyncio.get_running_loop().create_task(self._read(), name="openbatch-supervisor-client")

    async def _connect(self) -> None:
        path = p.socket_path(self.state_dir)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + _CONNECT_SECONDS
        next_spawn = loop.time()
        while True:
            try:
                self._reader, self._writer = await asyncio.open_unix_connection(str(path), limit=1 << 24)
                break
            except (FileNotFoundError, ConnectionRefusedError) as exc:
                if loop.time() >= next_spawn:
                    # Again after a while: a supervisor that was exiting (idle) held the lock the first time.
                    self._spawn()
                    next_spawn = loop.time() + _RESPAWN_SECONDS
                if loop.time() > deadline:
                    log = self.state_dir / "supervisor.log"
                    raise RuntimeError(f"the supervisor did not start (see {log})") from exc
                await asyncio.sleep(0.05)
        line = await asyncio.wait_for(self._reader.readline(), _CONNECT_SECONDS)
        state = p.decode(line)
        if state.get("op") != "state":
            raise RuntimeError(f"unexpected first message from the supervisor: {state.get('op')!r}")
        if self.fence_seconds is not None:
            # First on the connection, before any launch: no attempt runs unfenced.
            self._writer.write(p.encode({"op": "fence", "seconds": self.fence_seconds}))
        if self.outcomes is not None:
            target = self.outcomes
            message = {
                "op": "outcomes",
                "databaseUrl": target.database_url,
                "host": target.host,
                "keepSeconds": target.keep_seconds,
            }
            self._writer.write(p.encode(message))
        self._known = {}
        for item in state["attempts"]:
            info = p.exit_from_json(item["exit"]) if item.get("exit") is not None else None
            self._known[item["key"]] = KnownAttempt(item["key"], item["spec"], info)

    def _spawn(self) -> None:
        """Start the supervisor in a session of its own: the server's death or stop signals do not reach it."""
        self.state_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        command = [
            sys.executable,
            "-m",
            "openbatch.supervisor",
            str(self.state_dir),
            "--logs-dir",
            str(self.logs_dir),
            "--kill-grace-seconds",
            str(self.kill_grace_seconds),
            "--linger-seconds",
            str(self.linger_seconds),
        ]
        if self.run_as is not None:
            command += ["--uid", str(self.run_as[0]), "--gid", str(self.run_as[1])]
        for path in self.sandbox_hidden:
            command += ["--sandbox-hide", str(path)]
        # Only what a job may see: the supervisor's environment is the base of every job's.
        environment = job_base_environment()
        for name in ("PYTHONPATH", "OPENBATCH_JOB_ENV", "OPENBATCH_GPUS"):
            if name in os.environ:
                environment[name] = os.environ[name]
        with open(self.state_dir / "supervisor.log", "ab") as log:
            # --detach: the child forks the supervisor and exits at once, so this server is not its parent.
            subprocess.run(
                [*command, "--detach"],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=log,
                start_new_session=True,
                close_fds=True,
                env=environment,
                check=False,
                timeout=30,
            )

    async def _read(self) -> None:
        while not self._closing:
            assert self._reader is not None
            try:
                line = await self._reader.readline()
            except (ConnectionError, asyncio.LimitOverrunError, ValueError):
                line = b""
            if not line:
                if self._closing:
                    return
                logger.error("lost the supervisor; reconnecting")
                self._reconnecting = True
                try:
                    await self._reconnect()
                finally:
                    self._reconnecting = False
                continue
            self._handle(p.decode(line))

    async def _reconnect(self) -> None:
        """The supervisor died (and took its attempts with it): a new one reports them as lost."""
        while not self._closing:
            try:
                await self._connect()
                break
            except (RuntimeError, OSError, TimeoutError) as exc:
                logger.error("could not reach the supervisor: %s", exc)
                await asyncio.sleep(1.0)
        unsent, self._unsent = self._unsent, []
        unsent_launches = {str(m["key"]) for m in unsent if m["op"] == "launch"}
        resend = []
        for key in list(self._callbacks):
            known = self._known.get(key)
            if known is not None:
                self._launching.pop(key, None)
                if known.exit is not None:
                    self._deliver(key, known.exit)
            elif key in self._launching and key not in unsent_launches:
                resend.append(self._launching[key])
            elif key not in unsent_launches:
                self._deliver(key, ExitInfo(exit_code=None, reason=_LOST, started=False))
        self._reconnecting = False
        for message in [*resend, *unsent]:
            self._send(message)

    def _handle(self, message: dict[str, Any]) -> None:
        op = message.get("op")
        key = str(message.get("key", ""))
        self._launching.pop(key, None)
        if op == "exit":
            self._deliver(key, p.exit_from_json(message["exit"]))
        elif op == "started":
            handle = self._handles.get(key)
            if handle is not None:
                handle.pid = int(message["pid"])
        elif op == "refused":
            # Launched before (by an earlier server): its exit reaches this callback all the same.
            logger.warning("attempt %s was launched already; following that launch", key)

    def _deliver(self, key: str, info: ExitInfo) -> None:
        self._launching.pop(key, None)
        self._handles.pop(key, None)
        deliver_exit(self._callbacks.pop(key, None), info, key)

    def _send(self, message: dict[str, Any]) -> None:
        if self._writer is None or self._writer.is_closing() or self._reconnecting:
            self._unsent.append(message)
            return
        self._writer.write(p.encode(message))

    # --- Executor protocol ----------------------------------------------------------

    def known_attempts(self) -> Mapping[str, KnownAttempt]:
        return self._known

    def launch(self, spec: LaunchSpec, on_exit: ExitCallback) -> Handle:
        key = p.attempt_key(spec.job_id, spec.attempt)
        handle = self._handles[key] = SupervisedAttempt(key)
        self._callbacks[key] = on_exit
        message = self._launching[key] = {"op": "launch", "key": key, "spec": p.spec_to_json(spec)}
        self._send(message)
        return handle

    def attach(self, key: str, on_exit: ExitCallback) -> Handle:
        handle = self._handles[key] = SupervisedAttempt(key)
        self._callbacks[key] = on_exit
        known = self._known.get(key)
        if known is not None and known.exit is not None:
            info = known.exit
            asyncio.get_running_loop().call_soon(self._deliver, key, info)
        return handle

    def kill(self, handle: Handle, grace_seconds: float | None = None, reason: str | None = None) -> None:
        if not isinstance(handle, SupervisedAttempt) or handle.key not in self._callbacks:
            return
        grace = self.kill_grace_seconds if grace_seconds is None else grace_seconds
        self._send({"op": "kill", "key": handle.key, "grace": grace, "reason": reason})

    def forget(self, keys: Iterable[str]) -> None:
        batch = list(keys)
        for key in batch:
            self._known.pop(key, None)
        if batch:
            self._send({"op": "forget", "keys": batch})

    async def aclose(self) -> None:
        """Disconnect; the attempts keep running under the supervisor."""
        self._closing = True
        if self._writer is not None:
            self._writer.close()
            try:
                await self._writer.wait_closed()
            except (ConnectionError, OSError):
                pass
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except (asyncio.CancelledError, Exception):
                pass
