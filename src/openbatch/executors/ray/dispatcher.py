"""The dispatcher: a detached, named Ray actor that owns a server's attempts on the cluster.

Tasks owned by a plain driver die about a second after it does; tasks submitted by a
detached actor do not. So the server hands every attempt to this actor, which submits it
as a Ray task (``task.run_attempt``), collects its output and its end as numbered events,
and keeps them until the server acknowledges them. A restarted server finds the actor by
name, asks what it holds (``known``), and reads on from the first event it has not
acknowledged: running attempts are followed again and nothing they printed is lost.

The nodes of a multi-node parallel job (a spec with ``nodeGroup``) are placed together: the
first of them to arrive reserves a placement group, one bundle per node, STRICT_SPREAD (each
node on a Ray node of its own, as each node of such a job gets an instance of its own on AWS).
Their tasks are submitted once every bundle is reserved, node ``i`` into bundle ``i``, with the
main node's address filled in; the group is removed when every node's attempt has ended.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import ray
from ray import exceptions as rex
from ray.util.placement_group import PlacementGroup, placement_group, placement_group_table, remove_placement_group
from ray.util.scheduling_strategies import PlacementGroupSchedulingStrategy

from openbatch.executors.ray.task import run_attempt

HOST_LOST = "The host stopped while this attempt was running"
"""Same text as ``executors.base.HOST_LOST`` (not imported: this module runs inside Ray)."""
_FORCE_AFTER_SECONDS = 10.0
"""A stopped attempt whose task has not ended this long after its grace period is force-cancelled."""
_UNREPORTED_SECONDS = 1.0
"""A task reports first within 0.1 s of starting its process (``task._FIRST_REPORT_SECONDS``)."""
_LOST_ERRORS = (rex.NodeDiedError, rex.WorkerCrashedError, rex.LocalRayletDiedError, rex.ObjectLostError)
GANG_STRATEGY = "STRICT_SPREAD"
"""Every node of a multi-node parallel job on a Ray node of its own (the server waits until enough are free)."""
MAIN_NODE_ADDRESS = "AWS_BATCH_JOB_MAIN_NODE_PRIVATE_IPV4_ADDRESS"

_remote_attempt = ray.remote(max_retries=0)(run_attempt)


class _Attempt:
    __slots__ = ("exit", "node", "options", "ref", "spec", "stop")

    def __init__(self, spec: dict[str, Any], options: dict[str, Any]) -> None:
        self.spec = spec
        self.options = options
        self.ref: Any = None
        """The task, once submitted (a node of a multi-node job: once its placement group is ready)."""
        self.node: str | None = None
        self.exit: dict[str, Any] | None = None
        self.stop: tuple[float, str | None] | None = None


class _Gang:
    """The nodes of one attempt of a multi-node parallel job, and the placement group that holds them."""

    __slots__ = ("members", "pg", "ready", "waiting")

    def __init__(self, pg: PlacementGroup) -> None:
        self.pg = pg
        self.members: dict[int, str] = {}
        """Attempt keys by node index."""
        self.ready = False
        self.waiting: asyncio.Task[None] | None = None


class Dispatcher:
    def __init__(self) -> None:
        self._attempts: dict[str, _Attempt] = {}
        self._events: list[tuple[int, str, str, Any]] = []
        """(number, kind, attempt key, payload): ``log`` (lines) and ``exit`` (the exit), oldest first."""
        self._number = 0
        self._new = asyncio.Event()
        self._gangs: dict[str, _Gang] = {}
        """Multi-node jobs' attempts by ``nodeGroup`` key, until every node of one has ended."""

    def _emit(self, kind: str, key: str, payload: Any) -> None:
        self._number += 1
        self._events.append((self._number, kind, key, payload))
        self._new.set()

    async def ping(self) -> int:
        return len(self._attempts)

    async def launch(self, batch: list[tuple[str, dict[str, Any], dict[str, Any]]]) -> None:
        """Submit (key, spec, task options) for each attempt it does not hold already."""
        for key, spec, options in batch:
            if key in self._attempts:
                continue  # launched before, by a server that did not learn of it: follow that launch
            attempt = self._attempts[key] = _Attempt(spec, options)
            group = spec.get("nodeGroup")
            if group is None:
                self._submit(key, attempt)
                continue
            gang = self._gangs.get(group["key"])
            if gang is None:
                try:
                    gang = self._gangs[group["key"]] = self._reserve(group)
                except Exception as exc:
                    self._end(key, {"started": False, "reason": f"CannotStartContainerError: {exc}", "lines": []})
                    continue
            gang.members[int(group["index"])] = key
            if gang.ready:
                self._submit_node(key, attempt, gang)

    def _reserve(self, group: dict[str, Any]) -> _Gang:
        """The placement group of one attempt of a multi-node job; its nodes start once it is ready."""
        bundles = [dict(bundle) for bundle in group["bundles"]]
        pg = placement_group(bundles, strategy=GANG_STRATEGY, name=f"openbatch-{group['key']}")
        gang = _Gang(pg)
        gang.waiting = asyncio.get_running_loop().create_task(self._start_gang(str(group["key"]), gang))
        return gang

    async def _start_gang(self, gang_key: str, gang: _Gang) -> None:
        try:
            await gang.pg.ready()
        except Exception as exc:
            gang.waiting = None
            for key in list(gang.members.values()):
                attempt = self._attempts.get(key)
                if attempt is not None and attempt.exit is None:
                    self._end(key, {"started": False, "reason": f"CannotStartContainerError: {exc}", "lines": []})
            return
        if self._gangs.get(gang_key) is not gang:
            return  # every node was stopped while it waited
        gang.ready = True
        gang.waiting = None
        addresses = _bundle_addresses(gang.pg)
        for key in gang.members.values():
            attempt = self._attempts.get(key)
            if attempt is not None and attempt.exit is None and attempt.ref is None:
                main = int(attempt.spec["nodeGroup"]["mainIndex"])
                if int(attempt.spec["nodeGroup"]["index"]) != main and main in addresses:
                    attempt.spec["environment"][MAIN_NODE_ADDRESS] = addresses[main]
                self._submit_node(key, attempt, gang)

    def _submit_node(self, key: str, attempt: _Attempt, gang: _Gang) -> None:
        index = int(attempt.spec["nodeGroup"]["index"])
        strategy = PlacementGroupSchedulingStrategy(
            gang.pg, placement_group_bundle_index=index, placement_group_capture_child_tasks=False
        )
        self._submit(key, attempt, strategy)

    def _release(self, key: str, attempt: _Attempt) -> None:
        """Once every node of its multi-node job's attempt has ended, the placement group goes."""
        group = attempt.spec.get("nodeGroup")
        gang = self._gangs.get(group["key"]) if group is not None else None
        if gang is None or group is None:
            return
        for member in gang.members.values():
            held = self._attempts.get(member)
            if held is not None and held.exit is None:
                return
        del self._gangs[group["key"]]
        if gang.waiting is not None:
            gang.waiting.cancel()
        try:
            remove_placement_group(gang.pg)
        except Exception:
            pass  # already gone with its nodes; nothing runs in it any more

    def _submit(self, key: str, attempt: _Attempt, strategy: Any = None) -> None:
        context = ray.get_runtime_context()
        me = (context.get_actor_name(), context.namespace)
        options = attempt.options if strategy is None else {**attempt.options, "scheduling_strategy": strategy}
        try:
            attempt.ref = _remote_attempt.options(**options).remote(me, key, attempt.spec)
        except Exception as exc:
            self._end(key, {"started": False, "reason": f"CannotStartContainerError: {exc}", "lines": []})
            return
        asyncio.get_running_loop().create_task(self._follow(key, attempt))

    async def _follow(self, key: str, attempt: _Attempt) -> None:
        try:
            result: dict[str, Any] = await attempt.ref
        except rex.TaskCancelledError:
            result = {"started": attempt.node is not None, "exitCode": 137 if attempt.node else None, "lines": []}
            if attempt.stop is not None:
                result["reason"] = attempt.stop[1]
        except _LOST_ERRORS as exc:
            result = {"started": True, "exitCode": None, "reason": HOST_LOST, "lines": []}
            result["lostHost"] = attempt.node or _node_of(exc)
        except Exception as exc:
            result = {"started": False, "reason": f"CannotStartContainerError: {type(exc).__name__}: {exc}"}
            result["lines"] = []
        result["endedAt"] = int(time.time() * 1000)
        self._end(key, result)

    def _end(self, key: str, result: dict[str, Any]) -> None:
        attempt = self._attempts.get(key)
        if attempt is not None:
            attempt.exit = result
        self._emit("exit", key, result)
        if attempt is not None:
            self._release(key, attempt)

    async def report(
        self, key: str, node: str, lines: list[tuple[int, str]], started: int | None = None
    ) -> tuple[float, str | None] | None:
        """From a running attempt: its node, new output, when it started; the answer is a stop request, if any."""
        attempt = self._attempts.get(key)
        if attempt is None:
            return (0.0, None)  # forgotten: nobody follows it any more
        if attempt.node is None:
            # Its first report: the server shows the job RUNNING from its real start (it was STARTING,
            # possibly queued in Ray behind other tasks). A job too short to report starts with its end.
            self._emit("start", key, {"node": node, "startedAt": started})
        attempt.node = node
        if lines:
            self._emit("log", key, lines)
        return attempt.stop

    async def kill(self, key: str, grace: float, reason: str | None) -> None:
        attempt = self._attempts.get(key)
        if attempt is None or attempt.exit is not None:
            return
        if attempt.stop is None or grace < attempt.stop[0]:
            attempt.stop = (grace, reason)
        if attempt.ref is None:
            # A node whose multi-node job still waits for its placement group: it never starts.
            self._end(key, {"started": False, "reason": reason, "lines": [], "endedAt": int(time.time() * 1000)})
            return
        loop = asyncio.get_running_loop()
        if attempt.node is None:
            # Not reported yet: just started (its first report, which picks up the stop, comes within
            # _UNREPORTED_SECONDS) or still waiting for resources, which cancelling drops.
            loop.call_later(_UNREPORTED_SECONDS, self._cancel_unreported, key)
        loop.call_later(grace + _FORCE_AFTER_SECONDS, self._force, key)

    def _cancel_unreported(self, key: str) -> None:
        attempt = self._attempts.get(key)
        if attempt is not None and attempt.exit is None and attempt.node is None:
            # A running task is interrupted instead, and kills its process group on the way out.
            ray.cancel(attempt.ref, force=False)

    def _force(self, key: str) -> None:
        attempt = self._attempts.get(key)
        if attempt is not None and attempt.exit is None:
            ray.cancel(attempt.ref, force=True)

    async def poll(self, after: int, wait: float) -> list[tuple[int, str, str, Any]]:
        """Events numbered above ``after`` (those up to it are acknowledged and dropped), waiting up to
        ``wait`` seconds for one."""
        if self._events and self._events[0][0] <= after:
            self._events = [event for event in self._events if event[0] > after]
        if not self._events:
            self._new.clear()
            try:
                await asyncio.wait_for(self._new.wait(), wait)
            except TimeoutError:
                return []
        return list(self._events)

    async def forget(self, keys: list[str]) -> None:
        for key in keys:
            self._attempts.pop(key, None)

    async def known(self) -> list[tuple[str, dict[str, Any], dict[str, Any] | None]]:
        """Every attempt held: (key, spec, exit or None while it runs)."""
        return [(key, attempt.spec, attempt.exit) for key, attempt in self._attempts.items()]

    async def last_event(self) -> int:
        return self._number


def _bundle_addresses(pg: PlacementGroup) -> dict[int, str]:
    """The address of the Ray node that holds each bundle of a ready placement group."""
    try:
        placed = placement_group_table(pg).get("bundles_to_node_id") or {}
        addresses = {entry["NodeID"]: entry["NodeManagerAddress"] for entry in ray.nodes()}
    except Exception:
        return {}  # the GCS unreachable for a moment: the nodes start without the main node's address
    return {int(index): addresses[node] for index, node in placed.items() if node in addresses}


def _node_of(exc: Exception) -> str:
    """The lost node as Ray names it in the error, when the attempt had not reported its address yet."""
    text = str(exc)
    marker = "node_id="
    if marker in text:
        return text.split(marker, 1)[1].split()[0].strip(",.)")[:16]
    return "unknown"
