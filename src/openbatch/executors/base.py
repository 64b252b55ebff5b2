"""The executor seam: how a placed job attempt becomes a running process.

An executor knows nothing about the store, the scheduler or job states. It is
handed a fully resolved :class:`LaunchSpec` and reports exactly once, through
the ``on_exit`` callback, how the attempt ended.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from openbatch.containers.spec import ContainerLaunch
from openbatch.domain.jobspec import Resources

logger = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True, kw_only=True)
class NodeGroup:
    """The multi-node parallel job an attempt is one node of: an executor whose nodes are separate
    machines (a Ray cluster) places every node of one attempt of the job together."""

    key: str
    """The multi-node job's id and attempt: the same for every node of that attempt."""
    index: int
    main_index: int
    nodes: tuple[Resources, ...]
    """What each node asks for, by node index."""


@dataclass(frozen=True, slots=True, kw_only=True)
class LaunchSpec:
    """Everything needed to run one attempt of one job."""

    job_id: str
    attempt: int
    """1-based attempt number."""
    command: tuple[str, ...]
    """argv; no shell is involved unless argv[0] is one."""
    environment: dict[str, str]
    """Variables added on top of the server's own environment (AWS_BATCH_* included)."""
    working_dir: Path
    log_stream: str
    """CloudWatch-style stream name, e.g. ``myjobdef/default/<taskId>``."""
    memory_mib: int | None = None
    """Hard memory limit for the whole process tree; ``None`` means unlimited."""
    gpu_ids: tuple[int, ...] = field(default_factory=tuple)
    container: ContainerLaunch | None = None
    """Run inside this container (``openbatch.containers``); ``None``: a process of the host."""
    compute_environment: str = ""
    """The compute environment the attempt was placed on: which executor runs it (``executors/router.py``)."""
    vcpus: float = 1.0
    gpus: int = 0
    """What the job asked for, for executors that place attempts themselves (a Ray cluster)."""
    tags: Mapping[str, str] = field(default_factory=dict)
    """The job's tags: an executor may read placement hints from them (``openbatch:ray-resources``)."""
    node_group: NodeGroup | None = None
    """Set for a node of a multi-node parallel job."""


@dataclass(frozen=True, slots=True, kw_only=True)
class ExitInfo:
    """How an attempt ended."""

    exit_code: int | None
    """Process exit code; 128+N when killed by signal N; ``None`` if it never started."""
    reason: str | None = None
    """Container-level reason (e.g. ``OutOfMemoryError: Container killed due to memory usage``)."""
    started: bool = True
    """False when the process could not be started at all (bad executable, bad cwd)."""
    ended_at: int | None = None
    """Epoch ms when it ended, if known to differ from when the exit is reported (an attempt that
    ended while no server was connected); ``None`` means now."""
    lost_host: str | None = None
    """With ``reason`` :data:`HOST_LOST`: the host (node) that went away, named in the job's status reason."""
    started_at: int | None = None
    """Epoch ms when the process started, from an executor that reports starts itself (``reports_start``)."""


ExitCallback = Callable[[ExitInfo], None]


def deliver_exit(on_exit: ExitCallback | None, info: ExitInfo, key: str) -> None:
    """Call an attempt's exit callback, if it still has one; a failing callback is logged, never
    raised into the executor that reports the exit."""
    if on_exit is None:
        return
    try:
        on_exit(info)
    except Exception:
        logger.exception("exit callback of attempt %s failed", key)


HOST_LOST = "The host stopped while this attempt was running"
"""``ExitInfo.reason`` of an attempt that ended because its host (or the process that ran it) went
away rather than by its own exit: the job sees AWS's ``Host EC2 … terminated.``."""


class Handle(Protocol):
    """An opaque reference to a launched attempt."""

    @property
    def pid(self) -> int: ...


class KnownAttempt(Protocol):
    """An attempt an executor already held when the server started: running, or ended (``exit``)."""

    @property
    def exit(self) -> ExitInfo | None: ...

    @property
    def gpu_ids(self) -> tuple[int, ...]: ...

    @property
    def spec(self) -> Mapping[str, Any]: ...


def attempt_key(job_id: str, attempt: int) -> str:
    """How executors name an attempt: unique per job and attempt number."""
    return f"{job_id}#{attempt}"


class Executor(Protocol):
    """Runs job attempts. All methods are called from the event loop thread."""

    reattaches: bool
    """True if attempts outlive the server (``known_attempts``/``attach``/``forget`` are meaningful);
    False if they end with it."""

    def known_attempts(self) -> Mapping[str, KnownAttempt]:
        """Attempts held when the server started, by :func:`attempt_key`."""
        ...

    def attach(self, key: str, on_exit: ExitCallback) -> Handle:
        """Follow a known attempt: ``on_exit`` is called once it ends (soon, if it already has)."""
        ...

    def forget(self, keys: Iterable[str]) -> None:
        """The outcome of these ended attempts is committed: the executor may drop them."""
        ...

    def launch(self, spec: LaunchSpec, on_exit: ExitCallback) -> Handle:
        """Start the attempt and return at once.

        ``on_exit`` is called exactly once, from the event loop, after the
        process has exited and all of its output has been written to the log
        store. If the process cannot be started, ``on_exit`` is still called
        (soon, not re-entrantly) with ``started=False`` and a reason.
        """
        ...

    def kill(self, handle: Handle, grace_seconds: float, reason: str | None = None) -> None:
        """Stop the attempt's whole process group: SIGTERM, then SIGKILL after the grace period.

        ``reason``, if given, becomes ``ExitInfo.reason``. Killing an attempt
        that already exited does nothing.
        """
        ...

    async def aclose(self) -> None:
        """Kill whatever still runs and release resources."""
        ...
