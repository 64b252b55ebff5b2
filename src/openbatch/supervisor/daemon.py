"""The supervisor process: ``python -m openbatch.supervisor STATE_DIR --logs-dir DIR``.

One per host and state directory (an exclusive ``flock`` on ``STATE_DIR/lock``). It runs
attempts with the local executor (a child subreaper: descendants stay inside the attempt),
so their output goes to the log store and their exit status to a durable record even while
no server is connected. It exits on its own once no attempt runs and no server has been
connected for ``linger_seconds``. When several servers share a PostgreSQL database, the server
also tells it where that database is: an attempt that ends while no server is connected has its
outcome written there for the next leader (``outcomes.py``).
"""

from __future__ import annotations

import argparse
import asyncio
import fcntl
import logging
import os
import signal
import time
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any

from openbatch.executors.base import HOST_LOST, ExitInfo, Handle
from openbatch.executors.local import LocalExecutor, Sandbox
from openbatch.logs.store import LogStore
from openbatch.supervisor import protocol as p
from openbatch.supervisor.mounts import own_mount_namespace
from openbatch.supervisor.records import AttemptRecord, AttemptRecords

if TYPE_CHECKING:
    from openbatch.supervisor.outcomes import AttemptOutcome, OutcomeWriter

logger = logging.getLogger(__name__)

_MAX_LINE = 16 * 1024 * 1024
"""A launch message carries the job's command and environment (at most a few MiB)."""


class Supervisor:
    def __init__(
        self,
        state_dir: Path,
        logs_dir: Path,
        *,
        kill_grace_seconds: float = 30.0,
        linger_seconds: float = 5.0,
        run_as: tuple[int, int] | None = None,
        sandbox_hidden: tuple[Path, ...] = (),
    ) -> None:
        self.state_dir = state_dir
        self.records = AttemptRecords(state_dir / "attempts")
        sandbox = Sandbox(sandbox_hidden) if sandbox_hidden else None
        self.executor = LocalExecutor(
            LogStore(logs_dir), kill_grace_seconds=kill_grace_seconds, run_as=run_as, sandbox=sandbox
        )
        self.linger_seconds = linger_seconds
        self.handles: dict[str, Handle] = {}
        self.specs: dict[str, dict[str, Any]] = {}
        self.exits: dict[str, dict[str, Any]] = {}
        self.client: asyncio.StreamWriter | None = None
        self.stopping = False
        self._idle_since = asyncio.get_running_loop().time()
        self.fence_seconds: float | None = None
        """Set by a server that shares its store with others: kill the attempts once no server has
        been connected for this long, before another server declares them lost."""
        self._alone_since = self._idle_since
        self.started_at: dict[str, int] = {}
        """When each attempt started (epoch ms), for the outcome a next leader applies."""
        self.outcome_writer: OutcomeWriter | None = None
        """Set by a server that shares a PostgreSQL database with others: where outcomes go while alone."""
        self.outcomes_keep_seconds = 0.0
        """How long after the last server left writing outcomes is still worth it (the next leader
        declares the attempts lost after that)."""
        self.published: set[str] = set()
        """Ended attempts whose outcome is in the database since the last server left."""
        self._publishing: asyncio.Task[None] | None = None
        self._publish_after = 0.0
        self._connection = 0

    # --- start-up -------------------------------------------------------------------

    def recover(self) -> None:
        """Attempts of a previous supervisor: their outcome is known, or they were lost with it."""
        for record in self.records.load():
            self.specs[record.key] = record.spec
            if record.started_at is not None:
                self.started_at[record.key] = record.started_at
            if record.exit is None:
                _kill_lost(record)
                info = ExitInfo(exit_code=None, reason=HOST_LOST, started=True)
                record.exit = p.exit_to_json(info, _now_ms())
                self.records.finish(record.key, record.exit)
            self.exits[record.key] = record.exit

    async def serve(self, path: Path) -> None:
        _prepare_socket(path)
        server = await asyncio.start_unix_server(self._connected, path=str(path), limit=_MAX_LINE)
        os.chmod(path, 0o600)
        logger.info("supervisor listening on %s", path)
        async with server:
            while not self.stopping and not self._idle_long_enough():
                self._fence()
                self._publish()
                await asyncio.sleep(0.1)
        # Stopped (SIGTERM): the host goes away, and its attempts with it.
        await self.executor.aclose()

    def _fence(self) -> None:
        """No server for ``fence_seconds``: another one may take over this host's attempts, so they end."""
        if self.fence_seconds is None or self.client is not None or not self.handles:
            return
        if asyncio.get_running_loop().time() - self._alone_since < self.fence_seconds:
            return
        logger.warning("no server for %.1f s: killing %d attempts (lost host)", self.fence_seconds, len(self.handles))
        self.fence_seconds = None
        for handle in self.handles.values():
            self.executor.kill(handle, 0, HOST_LOST)

    def _publish(self) -> None:
        """Alone: write the outcomes no server has acknowledged (``forget``) to the shared database.

        Every one of them, not only those that end from now on: an exit told to the server that just
        died may never have been committed. Written at most once per absence; a server that connects
        later is told of them in ``state`` as always, and the leader drops rows it has no use for."""
        writer = self.outcome_writer
        if writer is None or self.client is not None or self._publishing is not None:
            return
        loop = asyncio.get_running_loop()
        now = loop.time()
        if now < self._publish_after:
            return
        pending = self._unpublished(now)
        if pending:
            outcomes = [self._outcome(key, writer.host) for key in pending]
            self._publishing = loop.create_task(self._write_outcomes(writer, outcomes, self._connection))

    def _unpublished(self, now: float) -> list[str]:
        """Outcomes still to write: none once writing them is no use (or no server asked for it)."""
        if self.outcome_writer is None or self.client is not None:
            return []
        if now - self._alone_since > self.outcomes_keep_seconds:
            return []
        return [key for key in self.exits if key not in self.published]

    def _outcome(self, key: str, host: str) -> AttemptOutcome:
        from openbatch.supervisor.outcomes import AttemptOutcome

        spec, status = self.specs[key], self.exits[key]
        code = status.get("exitCode")
        ended = status.get("endedAt")
        return AttemptOutcome(
            job_id=str(spec["jobId"]),
            attempt=int(spec["attempt"]),
            host=host,
            exit_code=None if code is None else int(code),
            reason=status.get("reason"),
            started=bool(status.get("started", True)),
            started_at=self.started_at.get(key),
            stopped_at=int(ended) if ended is not None else _now_ms(),
        )

    async def _write_outcomes(self, writer: OutcomeWriter, outcomes: list[AttemptOutcome], connection: int) -> None:
        try:
            await asyncio.to_thread(writer.write, outcomes)
        except Exception as exc:
            logger.warning(
                "could not record %d attempt outcomes in the database (%s); trying again", len(outcomes), exc
            )
            self._publish_after = asyncio.get_running_loop().time() + 1.0
        else:
            logger.info("recorded %d attempt outcomes for the next server", len(outcomes))
            if connection == self._connection:  # no server came meanwhile (it starts a new round)
                self.published.update(outcome.key for outcome in outcomes)
        finally:
            self._publishing = None

    def _set_outcomes(self, message: dict[str, Any] | None) -> None:
        url = None if message is None else str(message["databaseUrl"])
        writer = self.outcome_writer
        if writer is not None and (url is None or writer.database_url != url):
            writer.close()
            self.outcome_writer = writer = None
        if message is None or url is None:
            return
        if writer is None:
            from openbatch.supervisor.outcomes import OutcomeWriter  # only a server on PostgreSQL asks for it

            self.outcome_writer = OutcomeWriter(url, str(message["host"]))
        self.outcomes_keep_seconds = float(message["keepSeconds"])

    def _idle_long_enough(self) -> bool:
        now = asyncio.get_running_loop().time()
        if self.client is not None or self.handles or self._publishing is not None or self._unpublished(now):
            self._idle_since = now
            return False
        return now - self._idle_since >= self.linger_seconds

    # --- the connection -----------------------------------------------------------

    async def _connected(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if self.client is not None:
            # A new server replaces one that is gone (or about to be): the newest is the one to tell.
            self.client.close()
        self.client = writer
        self.fence_seconds = None  # until this server asks for it (``fence``)
        self._set_outcomes(None)  # likewise (``outcomes``)
        self._connection += 1
        self.published = set()  # a leader may have removed them: written again if this server goes too
        attempts = [
            {"key": key, "spec": spec, "running": key in self.handles, "exit": self.exits.get(key)}
            for key, spec in self.specs.items()
        ]
        self._send({"op": "state", "attempts": attempts})
        try:
            while line := await reader.readline():
                try:
                    self._handle(p.decode(line))
                except (KeyError, TypeError, ValueError) as exc:
                    logger.error("bad request from the server: %s", exc)
        except (ConnectionError, ValueError, asyncio.LimitOverrunError) as exc:
            logger.warning("server connection ended: %s", exc)
        finally:
            if self.client is writer:
                self.client = None
                self._alone_since = asyncio.get_running_loop().time()
            writer.close()

    def _send(self, message: dict[str, Any]) -> None:
        if self.client is None or self.client.is_closing():
            return  # told again in ``state`` on the next connection
        self.client.write(p.encode(message))

    def _handle(self, message: dict[str, Any]) -> None:
        op = message.get("op")
        if op == "launch":
            self.launch(str(message["key"]), message["spec"])
        elif op == "kill":
            handle = self.handles.get(str(message["key"]))
            if handle is not None:
                self.executor.kill(handle, float(message.get("grace", 0)), message.get("reason"))
        elif op == "forget":
            for key in message.get("keys", ()):
                self.forget(str(key))
        elif op == "fence":
            seconds = message.get("seconds")
            self.fence_seconds = None if seconds is None else float(seconds)
        elif op == "outcomes":
            self._set_outcomes(message)
        else:
            logger.warning("unknown supervisor request %r", op)

    # --- attempts -------------------------------------------------------------------

    def launch(self, key: str, spec_json: dict[str, Any]) -> None:
        if self.stopping:
            # Not claimed: the server sends it again to the next supervisor.
            logger.info("stopping: not starting attempt %s", key)
            return
        if key in self.specs or not self.records.claim(key, spec_json):
            self._send({"op": "refused", "key": key})
            return
        self.specs[key] = spec_json
        handle = self.executor.launch(p.spec_from_json(spec_json), partial(self._exited, key))
        if key in self.exits:
            return  # could not start: reported already
        self.handles[key] = handle
        started_at = self.started_at[key] = _now_ms()
        self.records.note_pid(key, handle.pid, started_at)
        self._send({"op": "started", "key": key, "pid": handle.pid})

    def _exited(self, key: str, info: ExitInfo) -> None:
        self.handles.pop(key, None)
        if self.stopping:
            info = ExitInfo(exit_code=info.exit_code, reason=HOST_LOST, started=info.started)
        status = p.exit_to_json(info, _now_ms())
        self.exits[key] = status
        self.records.finish(key, status)
        self._send({"op": "exit", "key": key, "exit": status})

    def forget(self, key: str) -> None:
        if key in self.handles:
            return  # still running: the server must not forget what it has not seen end
        self.specs.pop(key, None)
        self.exits.pop(key, None)
        self.started_at.pop(key, None)
        self.published.discard(key)
        self.records.forget(key)


def _now_ms() -> int:
    return time.time_ns() // 1_000_000


def _prepare_socket(path: Path) -> None:
    """A private directory; a stale socket of a dead supervisor is removed (we hold the lock)."""
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    try:
        path.unlink()
    except FileNotFoundError:
        pass


def _kill_lost(record: AttemptRecord) -> None:
    """Kill an attempt left running by a supervisor that died, if its pid still is that attempt's."""
    if not record.pid:
        return
    environment = record.spec.get("environment", {})
    marker = f"AWS_BATCH_JOB_ID={environment.get('AWS_BATCH_JOB_ID', record.spec.get('jobId'))}".encode()
    try:
        environ = Path(f"/proc/{record.pid}/environ").read_bytes().split(b"\0")
    except OSError:
        return
    if marker in environ:
        try:
            os.killpg(record.pid, signal.SIGKILL)
        except OSError:
            pass


async def run(args: argparse.Namespace) -> int:
    run_as = (args.uid, args.gid) if args.uid is not None else None
    state_dir = Path(args.state_dir)
    supervisor = Supervisor(
        state_dir,
        Path(args.logs_dir),
        kill_grace_seconds=args.kill_grace_seconds,
        linger_seconds=args.linger_seconds,
        run_as=run_as,
        sandbox_hidden=tuple(Path(path) for path in args.sandbox_hide),
    )
    supervisor.recover()
    loop = asyncio.get_running_loop()
    # The server's stop (Ctrl-C reaches its whole terminal process group) must not stop the jobs;
    # SIGTERM to the supervisor itself stops the host: its attempts end as a lost host.
    loop.add_signal_handler(signal.SIGINT, lambda: None)
    loop.add_signal_handler(signal.SIGTERM, partial(setattr, supervisor, "stopping", True))
    await supervisor.serve(p.socket_path(state_dir))
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m openbatch.supervisor")
    parser.add_argument("state_dir")
    parser.add_argument("--logs-dir", required=True)
    parser.add_argument("--kill-grace-seconds", type=float, default=30.0)
    parser.add_argument("--linger-seconds", type=float, default=5.0)
    parser.add_argument("--uid", type=int, default=None)
    parser.add_argument("--gid", type=int, default=None)
    parser.add_argument(
        "--sandbox-hide", action="append", default=[], help="Run jobs in bubblewrap with this directory hidden."
    )
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s supervisor: %(message)s")
    state_dir = Path(args.state_dir)
    state_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    with open(state_dir / "lock", "w") as lock:  # held for the life of the process
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            logger.info("another supervisor serves %s", state_dir)
            return 0
        (state_dir / "pid").write_text(str(os.getpid()))
        own_mount_namespace()  # before asyncio.run, which starts threads
        return asyncio.run(run(args))
