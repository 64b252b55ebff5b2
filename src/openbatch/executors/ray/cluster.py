"""The server's side of one Ray cluster: an executor for the attempts placed on its compute
environments, and the capacity (``scheduler.capacity.Pool``) those environments have.

Attempts go to the dispatcher actor (``dispatcher.py``) in batches; its events (output, ends)
come back through one long poll, and are acknowledged by the next. Capacity is read from the
cluster's live nodes every second, so nodes joining or leaving (the Ray autoscaler) change what
the scheduler places at once; what OpenBatch has placed is counted here, as Ray counts it: CPU,
memory and GPUs are logical reservations, not limits (the task enforces the memory limit).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from openbatch.domain.jobspec import Resources
from openbatch.domain.resources import ComputeEnvironment
from openbatch.executors.base import HOST_LOST, ExitCallback, ExitInfo, Handle, LaunchSpec, attempt_key, deliver_exit
from openbatch.executors.binding import RESOURCES_TAG, parse_resources
from openbatch.executors.ray.average import RunTime
from openbatch.logs.store import LogStore, LogWriter
from openbatch.scheduler.capacity import INSUFFICIENT, JOB_RESOURCE, Refusal
from openbatch.supervisor.client import KnownAttempt

logger = logging.getLogger(__name__)

NAMESPACE = "openbatch"
MAIN_NODE_ADDRESS = "AWS_BATCH_JOB_MAIN_NODE_PRIVATE_IPV4_ADDRESS"
_POLL_WAIT_SECONDS = 0.5
_NODES_SECONDS = 1.0
_RETRY_SECONDS = 2.0
_MIB = 1024 * 1024
QUEUED_SECONDS = 0.25
"""About this much work per CPU is handed to Ray beyond what runs (see ``RayCluster.queued_per_cpu``)."""
MAX_QUEUED_PER_CPU = 16.0


@dataclass(frozen=True, slots=True)
class Node:
    address: str
    resources: Mapping[str, float]
    available: Mapping[str, float] | None = None
    """What Ray has not reserved on the node now (tasks and placement groups, anyone's); None: unknown."""

    @property
    def cpus(self) -> float:
        return self.resources.get("CPU", 0.0)

    @property
    def memory_mib(self) -> float:
        return self.resources.get("memory", 0.0) / _MIB

    @property
    def gpus(self) -> float:
        return self.resources.get("GPU", 0.0)


class RayAttempt:
    """A handle: the attempt's process is on another machine, so it has no pid here."""

    __slots__ = ("key", "reports_start", "writer")

    def __init__(self, key: str, *, reports_start: bool = False) -> None:
        self.key = key
        self.writer: LogWriter | None = None
        self.reports_start = reports_start
        """The attempt may wait in Ray's queue: the job stays STARTING until ``on_start`` (or its exit) says it ran."""

    @property
    def pid(self) -> int:
        return -1


@dataclass(slots=True)
class _Used:
    cpus: float = 0.0
    memory_mib: float = 0.0
    gpus: float = 0.0
    by_ce: dict[str, float] = field(default_factory=dict)


def exit_from_result(result: Mapping[str, Any]) -> ExitInfo:
    lost = result.get("reason") == HOST_LOST
    return ExitInfo(
        exit_code=result.get("exitCode"),
        reason=result.get("reason"),
        started=bool(result.get("started", True)),
        ended_at=result.get("endedAt"),
        started_at=result.get("startedAt"),
        lost_host=str(result.get("lostHost") or "unknown") if lost else None,
    )


@dataclass(frozen=True, slots=True, kw_only=True)
class ClusterSettings:
    address: str
    """``HOST:PORT`` of the head (GCS), or ``ray://HOST:PORT``."""
    dispatcher_name: str
    """The detached actor that owns this server's attempts on the cluster (``dispatcher.py``)."""
    log_group: str = "/aws/batch/job"
    kill_grace_seconds: float = 30.0


class RayCluster:
    """Executor and capacity pool for the compute environments bound to the Ray cluster at ``address``."""

    reattaches = True

    @property
    def address(self) -> str:
        return self.settings.address

    def __init__(
        self,
        settings: ClusterSettings,
        log_store: LogStore,
        environments: Callable[[str], ComputeEnvironment | None] = lambda _name: None,
    ) -> None:
        self.settings = settings
        self._log_store = log_store
        self._environments = environments
        """The compute environments by name, for their ``openbatch:ray-resources`` tag."""
        self.on_change: Callable[[], None] = lambda: None
        """Called on the event loop when the cluster's nodes change (or it connects)."""
        self.on_start: Callable[[str, int, int | None], None] = lambda _job_id, _attempt, _at: None
        """Called with (job id, attempt number, epoch ms) when an attempt's process starts on its node."""
        self.error: str | None = "connecting"
        """Why the cluster cannot take jobs now; ``None`` once connected."""
        self.nodes: tuple[Node, ...] = ()
        self._used = _Used()
        """What OpenBatch has placed on the cluster, over all its compute environments."""
        self._actor: Any = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self._known: dict[str, KnownAttempt] = {}
        """What the dispatcher held when this server connected."""
        self._callbacks: dict[str, ExitCallback] = {}
        self._handles: dict[str, RayAttempt] = {}
        self._streams: dict[str, str] = {}
        """Log stream of every attempt followed, by key."""
        self._pending: list[tuple[str, dict[str, Any], dict[str, Any]]] = []
        """Launches not sent yet: (key, spec, task options), sent as one call."""
        self._closing = False
        self._acked = 0
        """The last event handled: the next poll acknowledges it."""
        self._polls_sent = 0
        self._deferred: dict[str, tuple[ExitInfo, int]] = {}
        """Re-attached attempts that had ended: (exit, polls sent when attached)."""
        self._run_time = RunTime()
        """How long attempts ran on the cluster (process start to end), recent ones counting most."""

    # --- connection --------------------------------------------------------------------

    async def start(self, timeout: float) -> None:
        """Connect (waiting up to ``timeout`` for what the dispatcher holds); keep trying in the background."""
        self._loop = asyncio.get_running_loop()
        connected = self._loop.create_future()
        self._tasks.append(self._loop.create_task(self._run(connected), name=f"openbatch-ray-{self.address}"))
        try:
            await asyncio.wait_for(asyncio.shield(connected), timeout)
        except TimeoutError:
            logger.error(
                "Ray cluster %s: not connected after %gs (%s); still trying", self.address, timeout, self.error
            )

    async def _run(self, connected: asyncio.Future[None]) -> None:
        while not self._closing:
            try:
                await asyncio.to_thread(self._connect)
                break
            except Exception as exc:
                self.error = f"Ray cluster {self.address} is not reachable: {exc}"
                logger.warning("%s; retrying", self.error)
                await asyncio.sleep(_RETRY_SECONDS)
        if self._closing:
            return
        self.error = None
        if not connected.done():
            connected.set_result(None)
        logger.info(
            "Ray cluster %s: %d nodes, dispatcher %s holds %d attempts",
            self.address,
            len(self.nodes),
            self.settings.dispatcher_name,
            len(self._known),
        )
        self._flush_launches()
        self.on_change()
        assert self._loop is not None
        self._tasks.append(self._loop.create_task(self._watch_nodes(), name="openbatch-ray-nodes"))
        await self._poll()

    def _connect(self) -> None:
        import ray

        from openbatch.executors.ray.dispatcher import Dispatcher

        if not ray.is_initialized():
            host = self.address.rsplit(":", 1)[0]
            # A loopback cluster (127.0.0.2 and the like): this driver is its node at that address; Ray
            # would otherwise swap in the machine's routable address, where no node of the cluster is.
            local = host if host.startswith("127.") and not self.address.startswith("ray://") else None
            ray.init(
                address=self.address,
                namespace=NAMESPACE,
                log_to_driver=False,
                # The server's logging (text or JSON lines) stays as the CLI configured it.
                configure_logging=False,
                _node_ip_address=local,
            )
        actor_class = ray.remote(Dispatcher)
        self._actor = actor_class.options(
            name=self.settings.dispatcher_name,
            namespace=NAMESPACE,
            lifetime="detached",
            get_if_exists=True,
            max_restarts=-1,
            num_cpus=0,
            # On the head node: the actor owns the tasks, which die with it if its node goes.
            resources={"node:__internal_head__": 0.001},
        ).remote()
        held = ray.get(self._actor.known.remote(), timeout=60)
        self._known = {
            key: KnownAttempt(key, spec, exit_from_result(result) if result is not None else None)
            for key, spec, result in held
        }
        for key, spec, _result in held:
            self._streams[key] = str(spec.get("logStream") or key)
        self.nodes = _read_nodes()

    async def _watch_nodes(self) -> None:
        while not self._closing:
            await asyncio.sleep(_NODES_SECONDS)
            try:
                nodes = await asyncio.to_thread(_read_nodes)
            except Exception as exc:
                logger.warning("Ray cluster %s: reading its nodes failed: %s", self.address, exc)
                continue
            if nodes != self.nodes:
                before = {node.address for node in self.nodes}
                after = {node.address for node in nodes}
                if before != after:
                    logger.info("Ray cluster %s: nodes %s", self.address, ", ".join(sorted(after)) or "none")
                self.nodes = nodes
                self.on_change()

    async def _poll(self) -> None:
        while not self._closing:
            self._polls_sent += 1
            sent = self._polls_sent
            try:
                events = await _resolve(self._actor.poll.remote(self._acked, _POLL_WAIT_SECONDS))
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                if self._closing:
                    return
                logger.warning("Ray cluster %s: polling the dispatcher failed: %s", self.address, exc)
                await asyncio.sleep(_RETRY_SECONDS)
                continue
            for number, kind, key, payload in events:
                self._acked = max(self._acked, number)
                if kind == "log":
                    self._write(key, payload)
                elif kind == "start":
                    job_id, _sep, number = key.rpartition("#")
                    if key in self._callbacks and number.isdigit():
                        self.on_start(job_id, int(number), payload.get("startedAt"))
                    # Reported while it runs: it runs long enough that one attempt per CPU in Ray will
                    # do, known now rather than when it ends (perhaps hours later).
                    self._run_time.add(QUEUED_SECONDS)
                elif kind == "exit":
                    self._write(key, payload.get("lines", ()))
                    info = exit_from_result(payload)
                    self._ran(info)
                    self._deliver(key, info)
            for key, (info, attached) in list(self._deferred.items()):
                if attached < sent:
                    del self._deferred[key]
                    self._deliver(key, info)

    def _ran(self, info: ExitInfo) -> None:
        if info.started_at is None or info.ended_at is None or not info.started:
            return
        self._run_time.add_span(info.started_at, info.ended_at)

    def queued_per_cpu(self) -> float:
        """vCPUs of attempts handed to Ray beyond its CPUs, per CPU: about ``QUEUED_SECONDS`` of work at the
        recent attempts' average run time, at least one attempt and at most ``MAX_QUEUED_PER_CPU``.

        So a CPU takes its next attempt without a round trip through the server, and the dispatcher can
        hand a slot several short attempts in one call (see ``dispatcher.py``); while attempts are long,
        at most one per CPU waits in Ray, so the server's own order (priorities, fair share) decides the
        rest."""
        seconds = self._run_time.seconds
        if seconds is None:
            return 1.0
        return max(1.0, min(MAX_QUEUED_PER_CPU, QUEUED_SECONDS / max(seconds, 0.001)))

    def _write(self, key: str, lines: Iterable[tuple[int, str]]) -> None:
        lines = list(lines)
        stream = self._streams.get(key)
        if not lines or stream is None:
            return
        handle = self._handles.get(key)
        writer = handle.writer if handle is not None else None
        if writer is None:
            writer = self._log_store.open_writer(self.settings.log_group, stream)
            if handle is not None:
                handle.writer = writer
        try:
            for timestamp, message in lines:
                writer.write(int(timestamp), str(message))
            writer.flush()
        except OSError:
            logger.exception("writing the log of attempt %s failed", key)
        if handle is None:
            writer.close()

    def _deliver(self, key: str, info: ExitInfo) -> None:
        handle = self._handles.pop(key, None)
        if handle is not None and handle.writer is not None:
            handle.writer.close()
        deliver_exit(self._callbacks.pop(key, None), info, key)

    # --- Executor protocol ----------------------------------------------------------------

    def known_attempts(self) -> Mapping[str, KnownAttempt]:
        return self._known

    def attach(self, key: str, on_exit: ExitCallback) -> Handle:
        handle = self._handles[key] = RayAttempt(key)
        self._callbacks[key] = on_exit
        known = self._known.get(key)
        if known is not None and known.exit is not None:
            # Delivered after the next poll: its end event, with the last lines of output, and any
            # output not acknowledged by the previous server come first (if the dispatcher still has them).
            self._deferred[key] = (known.exit, self._polls_sent)
        return handle

    def forget(self, keys: Iterable[str]) -> None:
        batch = [key for key in keys if self._known.pop(key, None) is not None or key in self._streams]
        for key in batch:
            self._streams.pop(key, None)
        if batch and self._actor is not None:
            self._actor.forget.remote(batch)

    def launch(self, spec: LaunchSpec, on_exit: ExitCallback) -> Handle:
        key = attempt_key(spec.job_id, spec.attempt)
        # The nodes of a multi-node job start together once their placement group is ready: they are
        # RUNNING from then on. Any other attempt may wait in Ray's queue (see ``refusal``).
        handle = self._handles[key] = RayAttempt(key, reports_start=spec.node_group is None)
        self._callbacks[key] = on_exit
        self._streams[key] = spec.log_stream
        try:
            self._log_store.create_stream(self.settings.log_group, spec.log_stream)
        except OSError:
            logger.exception("creating log stream %s of job %s failed", spec.log_stream, spec.job_id)
        if spec.container is not None:
            info = ExitInfo(
                exit_code=None,
                started=False,
                reason="CannotStartContainerError: container images are not run on Ray compute environments",
            )
            asyncio.get_running_loop().call_soon(self._deliver, key, info)
            return handle
        options: dict[str, Any] = {"num_cpus": spec.vcpus}
        if spec.memory_mib:
            options["memory"] = spec.memory_mib * _MIB
        if spec.gpus:
            options["num_gpus"] = spec.gpus
        custom = {**self._ce_resources(spec.compute_environment), **_tag_resources(spec.tags)}
        if custom:
            options["resources"] = custom
        environment = dict(spec.environment)
        body = {
            "jobId": spec.job_id,
            "attempt": spec.attempt,
            "command": list(spec.command),
            "environment": environment,
            "workingDir": str(spec.working_dir),
            "logStream": spec.log_stream,
            "memoryMib": spec.memory_mib,
            "computeEnvironment": spec.compute_environment,
        }
        group = spec.node_group
        if group is not None:
            # One bundle per node, as each node's task asks: the dispatcher reserves them all at once
            # and fills in the main node's address once it knows where the main node's bundle is.
            environment.pop(MAIN_NODE_ADDRESS, None)
            body["nodeGroup"] = {
                "key": group.key,
                "index": group.index,
                "mainIndex": group.main_index,
                "bundles": [bundle(node, custom) for node in group.nodes],
            }
        first = not self._pending
        self._pending.append((key, body, options))
        if first:
            asyncio.get_running_loop().call_soon(self._flush_launches)
        return handle

    def _flush_launches(self) -> None:
        if self._actor is None or not self._pending:
            return  # sent once connected
        batch, self._pending = self._pending, []
        self._actor.launch.remote(batch)

    def kill(self, handle: Handle, grace_seconds: float | None = None, reason: str | None = None) -> None:
        if not isinstance(handle, RayAttempt) or handle.key not in self._callbacks:
            return
        pending = [item for item in self._pending if item[0] == handle.key]
        if pending:
            # Not sent yet: it never starts.
            self._pending = [item for item in self._pending if item[0] != handle.key]
            info = ExitInfo(exit_code=None, started=False, reason=reason)
            asyncio.get_running_loop().call_soon(self._deliver, handle.key, info)
            return
        grace = self.settings.kill_grace_seconds if grace_seconds is None else grace_seconds
        if self._actor is not None:
            self._actor.kill.remote(handle.key, grace, reason)

    async def aclose(self) -> None:
        """Disconnect; the attempts keep running under the dispatcher."""
        self._closing = True
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            try:
                await task
            except (asyncio.CancelledError, Exception):
                pass
        for handle in self._handles.values():
            if handle.writer is not None:
                handle.writer.close()

    # --- capacity (scheduler.capacity.Pool) ------------------------------------------------------

    def _ce_resources(self, ce_name: str) -> dict[str, float]:
        ce = self._environments(ce_name)
        return parse_resources(ce.tags.get(RESOURCES_TAG, "")) if ce is not None else {}

    def refusal(self, need: Resources, ce: ComputeEnvironment, vcpus_used: float) -> Refusal | None:
        if self.error is not None:
            return Refusal(f"{INSUFFICIENT} - {self.error}", False)
        custom = self._ce_resources(ce.name)
        memory = need.memory_mib or 0
        eligible = [node for node in self.nodes if all(node.resources.get(n, 0.0) >= q for n, q in custom.items())]
        if not any(
            node.cpus >= need.vcpus and node.memory_mib >= memory and node.gpus >= need.gpus for node in eligible
        ):
            return Refusal(f"{JOB_RESOURCE} - {self._no_node_reason(need, eligible, custom)}", True)
        total_cpus = sum(node.cpus for node in eligible)
        # Beyond what the cluster can run at once, a few attempts more are handed to Ray and wait in its
        # queue (STARTING): each CPU takes its next task as soon as it is free, as with plain Ray tasks,
        # instead of idling for a round trip through this server. Only where the cluster, not maxvCpus,
        # is the limit: Ray then never runs more than maxvCpus of them at once.
        queued = round(total_cpus * self.queued_per_cpu()) if ce.max_vcpus >= total_cpus else 0.0
        free = min(ce.max_vcpus + queued - vcpus_used, total_cpus + queued - self._used.cpus)
        if need.vcpus > free:
            also = f", and {queued:g} vCPUs of attempts queued in Ray" if queued else ""
            return Refusal(
                f"{INSUFFICIENT} - the job needs {need.vcpus:g} vCPUs; compute environment {ce.name} has "
                f"{max(free, 0):g} free (maxvCpus {ce.max_vcpus:g}, Ray cluster {self.address}: "
                f"{total_cpus:g} CPUs{also})",
                False,
            )
        free_memory = sum(node.memory_mib for node in eligible) - self._used.memory_mib
        if memory > free_memory:
            return Refusal(
                f"{INSUFFICIENT} - the job needs {memory} MiB of memory; {max(free_memory, 0):.0f} MiB are free "
                f"on Ray cluster {self.address}",
                False,
            )
        free_gpus = sum(node.gpus for node in eligible) - self._used.gpus
        if need.gpus > free_gpus:
            return Refusal(
                f"{INSUFFICIENT} - the job needs {need.gpus} GPUs; {max(free_gpus, 0):g} are free on Ray cluster "
                f"{self.address}",
                False,
            )
        return None

    def _no_node_reason(self, need: Resources, eligible: list[Node], custom: Mapping[str, float]) -> str:
        wanted = _describe_need(need, custom)
        if not eligible:
            return f"the job needs {wanted} but Ray cluster {self.address} has no such node"
        largest = ", ".join(
            f"{node.address}: {node.cpus:g} CPUs, {node.memory_mib:.0f} MiB, {node.gpus:g} GPUs" for node in eligible
        )
        return f"the job needs {wanted} but no node of Ray cluster {self.address} has that much ({largest})"

    def gang_refusal(self, nodes: Sequence[Resources], ce: ComputeEnvironment, vcpus_used: float) -> Refusal | None:
        """Why the nodes of a multi-node parallel job cannot start now, each on a Ray node of its own
        (the dispatcher's STRICT_SPREAD placement group), or None if they can."""
        lead = f"the {len(nodes)} nodes of this multi-node parallel job start together, each on a Ray node of its own"
        if self.error is not None:
            return Refusal(f"{INSUFFICIENT} - {lead}: {self.error}", False)
        custom = self._ce_resources(ce.name)
        eligible = [node for node in self.nodes if all(node.resources.get(n, 0.0) >= q for n, q in custom.items())]
        bundles = [bundle(need, custom) for need in nodes]
        held = spread(bundles, [node.resources for node in eligible])
        if held < len(nodes):
            return Refusal(
                f"{JOB_RESOURCE} - {lead}: {_nodes_wanted(nodes, custom)}, and Ray cluster {self.address} has "
                f"{held} that can hold them at once ({_describe(eligible, lambda node: node.resources)})",
                True,
            )
        vcpus = sum(need.vcpus for need in nodes)
        free = min(ce.max_vcpus - vcpus_used, sum(node.cpus for node in eligible) - self._used.cpus)
        if vcpus > free:
            return Refusal(
                f"{INSUFFICIENT} - {lead}: they need {vcpus:g} vCPUs; compute environment {ce.name} has "
                f"{max(free, 0):g} free (maxvCpus {ce.max_vcpus:g}, Ray cluster {self.address})",
                False,
            )
        free_now = spread(bundles, [_available(node) for node in eligible])
        if free_now < len(nodes):
            return Refusal(
                f"{INSUFFICIENT} - {lead}: {_nodes_wanted(nodes, custom)}, and {free_now} of the nodes of Ray "
                f"cluster {self.address} have that much free now ({_describe(eligible, _available)})",
                False,
            )
        return None

    def acquire(self, need: Resources, ce_name: str) -> None:
        self._used.cpus += need.vcpus
        self._used.memory_mib += need.memory_mib or 0
        self._used.gpus += need.gpus

    def release(self, need: Resources, ce_name: str) -> None:
        self._used.cpus -= need.vcpus
        self._used.memory_mib -= need.memory_mib or 0
        self._used.gpus -= need.gpus


def bundle(need: Resources, custom: Mapping[str, float]) -> dict[str, float]:
    """The Ray resources one attempt (or one node of a multi-node job) asks for."""
    wanted = {"CPU": need.vcpus, **custom}
    if need.memory_mib:
        wanted["memory"] = need.memory_mib * _MIB
    if need.gpus:
        wanted["GPU"] = need.gpus
    return wanted


def spread(bundles: Sequence[Mapping[str, float]], nodes: Sequence[Mapping[str, float]]) -> int:
    """How many of ``bundles`` fit at once with at most one on each of ``nodes``: a maximum bipartite
    matching (augmenting paths), as a STRICT_SPREAD placement group needs one node per bundle."""
    fits = [[n for n, node in enumerate(nodes) if all(node.get(k, 0.0) >= q for k, q in b.items())] for b in bundles]
    holder: dict[int, int] = {}
    """Node index -> bundle index placed there."""

    def place(b: int, seen: set[int]) -> bool:
        for n in fits[b]:
            if n in seen:
                continue
            seen.add(n)
            if n not in holder or place(holder[n], seen):
                holder[n] = b
                return True
        return False

    if all(b == bundles[0] for b in bundles):
        return min(len(bundles), len(fits[0])) if bundles else 0
    placed = 0
    shapes: dict[tuple[tuple[str, float], ...], bool] = {}
    for b, wanted in enumerate(bundles):
        shape = tuple(sorted(wanted.items()))
        if shapes.get(shape) is False:
            continue  # a bundle just like one that found no node finds none either
        found = place(b, set())
        shapes[shape] = found
        placed += found
    return placed


def _available(node: Node) -> Mapping[str, float]:
    return node.available if node.available is not None else node.resources


def _describe_need(need: Resources, custom: Mapping[str, float]) -> str:
    """``1 vCPUs, 128 MiB of memory and big=1``: what one job or node asks of a Ray node."""
    wanted = f"{need.vcpus:g} vCPUs"
    if need.memory_mib:
        wanted += f", {need.memory_mib} MiB of memory"
    if need.gpus:
        wanted += f", {need.gpus} GPUs"
    if custom:
        wanted += " and " + " ".join(f"{n}={q:g}" for n, q in custom.items())
    return wanted


def _nodes_wanted(nodes: Sequence[Resources], custom: Mapping[str, float]) -> str:
    shapes: dict[str, int] = {}
    for need in nodes:
        wanted = _describe_need(need, custom)
        shapes[wanted] = shapes.get(wanted, 0) + 1
    return "they need " + "; ".join(f"{count} with {wanted}" for wanted, count in shapes.items())


def _describe(nodes: Sequence[Node], resources: Callable[[Node], Mapping[str, float]]) -> str:
    if not nodes:
        return "no node has the compute environment's resources"
    return ", ".join(
        f"{node.address}: {resources(node).get('CPU', 0.0):g} CPUs, "
        f"{resources(node).get('memory', 0.0) / _MIB:.0f} MiB, {resources(node).get('GPU', 0.0):g} GPUs"
        for node in nodes
    )


def _tag_resources(tags: Mapping[str, str]) -> dict[str, float]:
    value = tags.get(RESOURCES_TAG)
    if not value:
        return {}
    try:
        return parse_resources(value)
    except ValueError:
        return {}  # refused at SubmitJob; a tag changed since then is ignored


def _read_nodes() -> tuple[Node, ...]:
    import ray

    try:
        from ray._private.state import available_resources_per_node

        available: dict[str, dict[str, float]] | None = available_resources_per_node()
    except Exception:
        available = None  # a Ray without it: multi-node jobs are placed by the cluster's totals alone
    nodes = [
        Node(
            str(entry.get("NodeManagerAddress", "")),
            dict(entry.get("Resources") or {}),
            dict(available.get(str(entry.get("NodeID")), {})) if available is not None else None,
        )
        for entry in ray.nodes()
        if entry.get("Alive")
    ]
    return tuple(sorted(nodes, key=lambda node: node.address))


async def _resolve(ref: Any) -> Any:
    return await asyncio.wrap_future(ref.future())
