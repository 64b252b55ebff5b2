"""The dispatcher: a detached, named Ray actor that owns a server's attempts on the cluster.

Tasks owned by a plain driver die about a second after it does; tasks submitted by a
detached actor do not. So the server hands every attempt to this actor, which submits it
as a Ray task (``task.run_attempt``), collects its output and its end as numbered events,
and keeps them until the server acknowledges them. A restarted server finds the actor by
name, asks what it holds (``known``), and reads on from the first event it has not
acknowledged: running attempts are followed again and nothing they printed is lost.

Any other attempt waits in a queue of its shape (the Ray options it asks: CPUs, memory, GPUs,
custom resources) for a slot: a Ray task with those options (``task.run_slot``) that takes
attempts of its shape one after another. A slot is submitted for each attempt queued beyond the
slots already on their way, so every attempt has a Ray task asking for its resources, as with one
task per attempt; a running slot that finishes an attempt takes the next of its shape at once
(one actor call), unless an attempt of another shape has waited longer: then it ends, and Ray
hands its resources on. A slot that finds nothing waits a moment for the server's next attempt.

The nodes of a multi-node parallel job (a spec with ``nodeGroup``) are placed together: the
first of them to arrive reserves a placement group, one bundle per node, STRICT_SPREAD (each
node on a Ray node of its own, as each node of such a job gets an instance of its own on AWS).
Their tasks are submitted once every bundle is reserved, node ``i`` into bundle ``i``, with the
main node's address filled in; the group is removed when every node's attempt has ended.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import time
from collections import deque
from typing import Any

import ray
from ray import exceptions as rex
from ray.util.placement_group import PlacementGroup, placement_group, placement_group_table, remove_placement_group
from ray.util.scheduling_strategies import PlacementGroupSchedulingStrategy

from openbatch.executors.ray.average import RunTime
from openbatch.executors.ray.task import run_attempt, run_slot

HOST_LOST = "The host stopped while this attempt was running"
"""Same text as ``executors.base.HOST_LOST`` (not imported: this module runs inside Ray)."""
EXIT_LOST = "The attempt's exit did not reach the server"
_FORCE_AFTER_SECONDS = 10.0
"""A stopped attempt whose task has not ended this long after its grace period is force-cancelled."""
_UNREPORTED_SECONDS = 1.0
"""A task reports first within 0.1 s of starting its process (``task._FIRST_REPORT_SECONDS``)."""
_LOST_ERRORS = (rex.NodeDiedError, rex.WorkerCrashedError, rex.LocalRayletDiedError, rex.ObjectLostError)
GANG_STRATEGY = "STRICT_SPREAD"
"""Every node of a multi-node parallel job on a Ray node of its own (the server waits until enough are free)."""
MAIN_NODE_ADDRESS = "AWS_BATCH_JOB_MAIN_NODE_PRIVATE_IPV4_ADDRESS"

_SLOT_IDLE_SECONDS = 0.1
"""How long a slot that finds no attempt of its shape waits for one before it hands its resources back:
long enough for a server to answer an attempt's end with the next (a chain of dependent jobs)."""

_BATCH = 8
"""At most this many attempts handed to a slot at once (they run back to back; see ``task.run_slot``)."""

_SHORT_SECONDS = 0.05
"""Attempts this short (the recent average) run several to a slot: a slot is submitted per batch queued."""

_remote_attempt = ray.remote(max_retries=0)(run_attempt)
_remote_slot = ray.remote(max_retries=0)(run_slot)


class _Attempt:
    __slots__ = ("exit", "node", "options", "order", "ref", "shape", "slot", "spec", "stop")

    def __init__(self, spec: dict[str, Any], options: dict[str, Any], order: int) -> None:
        self.spec = spec
        self.options = options
        self.order = order
        """Launch order: a slot takes an attempt of its own shape only if none of another shape waited longer."""
        self.shape = json.dumps(options, sort_keys=True)
        """The name of its shape (the Ray options it asks for): attempts of one shape share slots."""
        self.ref: Any = None
        """The task of a node of a multi-node job, once its placement group is ready."""
        self.slot: _Slot | None = None
        """The slot running it, once one took it."""
        self.node: str | None = None
        self.exit: dict[str, Any] | None = None
        self.stop: tuple[float, str | None] | None = None


class _Slot:
    """A Ray task running attempts of one shape, one after another (``task.run_slot``)."""

    __slots__ = ("held", "node", "options", "ref", "shape")

    def __init__(self, shape: str, options: dict[str, Any]) -> None:
        self.shape = shape
        self.options = options
        self.ref: Any = None
        self.node: str | None = None
        """Its node's address, from its first call; None while Ray has not started it."""
        self.held: dict[str, None] = {}
        """The attempts handed to it whose exits it has not sent yet, in the order handed."""


class _Shape:
    """The attempts of one shape waiting for a slot, and its slots."""

    __slots__ = ("idle", "options", "queue", "running", "starting")

    def __init__(self, options: dict[str, Any]) -> None:
        self.options = options
        self.queue: deque[str] = deque()
        self.starting = 0
        """Slots submitted to Ray and not started yet: each stands for an attempt in the queue."""
        self.running = 0
        """Slots started and not ended."""
        self.idle: deque[asyncio.Future[str | None]] = deque()
        """Slots waiting for an attempt of this shape, oldest first."""


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
        self._shapes: dict[str, _Shape] = {}
        self._slots: dict[str, _Slot] = {}
        self._order = itertools.count()
        self._counts = {"slots": 0, "calls": 0, "handed": 0, "reports": 0, "returned": 0}
        """What the slots did, for ``stats`` (how many attempts each Ray task and each call carried)."""
        self._slot_ids = itertools.count()
        self._run_time = RunTime()
        """How long the attempts run in slots ran (process start to end), recent ones counting most."""

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
            attempt = self._attempts[key] = _Attempt(spec, options, next(self._order))
            group = spec.get("nodeGroup")
            if group is None:
                self._enqueue(key, attempt)
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

    # --- slots ------------------------------------------------------------------------------------

    def _enqueue(self, key: str, attempt: _Attempt) -> None:
        name = attempt.shape
        shape = self._shapes.get(name)
        if shape is None:
            shape = self._shapes[name] = _Shape(attempt.options)
        shape.queue.append(key)
        self._serve(name, shape)

    def _serve(self, name: str, shape: _Shape) -> None:
        """Hand queued attempts to idle slots; submit a slot for each one left beyond the slots on their way."""
        while shape.idle and shape.queue:
            waiting = shape.idle.popleft()
            if not waiting.done():
                waiting.set_result(shape.queue.popleft())
        while shape.starting < self._slots_wanted(shape):
            if not self._submit_slot(name, shape):
                return

    def _slots_wanted(self, shape: _Shape) -> int:
        """Slots on their way that the queue of ``shape`` calls for: one per attempt (each may be long, and
        is then the demand the Ray autoscaler sees), or one per batch while recent attempts were short."""
        seconds = self._run_time.seconds
        if seconds is None or seconds >= _SHORT_SECONDS:
            return len(shape.queue)
        return -(-len(shape.queue) // _BATCH)

    def _submit_slot(self, name: str, shape: _Shape) -> bool:
        context = ray.get_runtime_context()
        me = (context.get_actor_name(), context.namespace)
        slot_id = f"{next(self._slot_ids)}"
        slot = _Slot(name, shape.options)
        try:
            slot.ref = _remote_slot.options(**shape.options).remote(me, slot_id)
        except Exception as exc:
            # Options Ray refuses: every attempt of this shape waiting ends, not started.
            self._fail_queue(shape, {"started": False, "reason": f"CannotStartContainerError: {exc}", "lines": []})
            return False
        self._slots[slot_id] = slot
        shape.starting += 1
        self._counts["slots"] += 1
        asyncio.get_running_loop().create_task(self._follow_slot(slot_id, slot))
        return True

    def _fail_queue(self, shape: _Shape, result: dict[str, Any]) -> None:
        for key in list(shape.queue):
            self._end(key, {**result, "endedAt": _now()})
        shape.queue.clear()

    def _take(self, name: str, shape: _Shape, first: bool) -> list[str]:
        """The next attempts for a slot of shape ``name``: the oldest of its shape, its share of them when
        many wait, but none that waited less than an attempt of another shape; a slot that ran one already
        then ends, and Ray hands its resources on. (A slot just started takes its first attempt regardless:
        Ray gave it those resources for one, and ending it would only have Ray start another.)"""
        heads = (self._attempts.get(other.queue[0]) for n, other in self._shapes.items() if n != name and other.queue)
        oldest_elsewhere = min((head.order for head in heads if head is not None), default=None)
        share = min(_BATCH, max(1, -(-len(shape.queue) // max(1, shape.running))))
        taken: list[str] = []
        while shape.queue and len(taken) < share:
            attempt = self._attempts.get(shape.queue[0])
            if attempt is None or attempt.exit is not None:
                shape.queue.popleft()  # forgotten or ended while it waited
                continue
            if oldest_elsewhere is not None and attempt.order > oldest_elsewhere and (taken or not first):
                break
            taken.append(shape.queue.popleft())
        return taken

    def _waiting_elsewhere(self, name: str) -> bool:
        return any(other.queue for other_name, other in self._shapes.items() if other_name != name)

    def _ended_in_slot(self, ended: list[tuple[str, dict[str, Any]]]) -> None:
        for key, result in ended:
            attempt = self._attempts.get(key)
            if attempt is None or attempt.exit is not None:
                continue  # forgotten, or sent again after a report that did reach this actor
            if attempt.slot is not None:
                attempt.slot.held.pop(key, None)
            result.setdefault("endedAt", _now())
            if result.get("started") and result.get("startedAt") is not None:
                self._run_time.add_span(result["startedAt"], result["endedAt"])
            self._end(key, result)

    def _requeue(self, keys: list[str]) -> None:
        """Attempts a slot gives back, not started: first in their queue again (they are the oldest)."""
        shapes: dict[str, _Shape] = {}
        for key in reversed(keys):
            attempt = self._attempts.get(key)
            if attempt is None or attempt.exit is not None or attempt.slot is None:
                continue
            name = attempt.shape
            attempt.slot.held.pop(key, None)
            attempt.slot = None
            if attempt.stop is not None:
                # Stopped while it waited in the slot's hand: it never starts.
                self._end(key, {"started": False, "reason": attempt.stop[1], "lines": [], "endedAt": _now()})
                continue
            shape = self._shapes.get(name)
            if shape is None:
                shape = self._shapes[name] = _Shape(attempt.options)
            shape.queue.appendleft(key)
            shapes[name] = shape
        for name, shape in shapes.items():
            self._serve(name, shape)

    async def next(
        self, slot_id: str, node: str, ended: list[tuple[str, dict[str, Any]]]
    ) -> list[tuple[str, dict[str, Any]]] | None:
        """From a slot: the exits of the attempts it ran; the answer is its next attempts, or None to end."""
        slot = self._slots.get(slot_id)
        if slot is None:
            return None  # a slot of this actor before it restarted: its attempts are gone with that state
        shape = self._shapes.get(slot.shape)
        if shape is None:
            shape = self._shapes[slot.shape] = _Shape(slot.options)
        done_before = slot.node is not None
        if slot.node is None:
            slot.node = node
            shape.starting -= 1
            shape.running += 1
        self._ended_in_slot(ended)
        self._counts["calls"] += 1
        keys = self._take(slot.shape, shape, first=not done_before)
        if shape.queue:
            self._serve(slot.shape, shape)  # those it left may call for a slot more (one per batch)
        if not keys and (ended or done_before) and not self._waiting_elsewhere(slot.shape):
            # Only a slot that ran something waits (for the next link of a chain, say); one that finds
            # its attempt taken by a slot that was quicker ends at once.
            waiting: asyncio.Future[str | None] = asyncio.get_running_loop().create_future()
            shape.idle.append(waiting)
            key: str | None = None
            try:
                key = await asyncio.wait_for(asyncio.shield(waiting), _SLOT_IDLE_SECONDS)
            except TimeoutError:
                if waiting.done() and not waiting.cancelled():
                    key = waiting.result()
                else:
                    waiting.cancel()
            attempt = self._attempts.get(key) if key is not None else None
            if key is not None and attempt is not None and attempt.exit is None:
                keys = [key]
        if not keys:
            del self._slots[slot_id]
            return None
        work = []
        for key in keys:
            attempt = self._attempts[key]
            attempt.slot = slot
            slot.held[key] = None
            work.append((key, attempt.spec))
        self._counts["handed"] += len(work)
        return work

    async def _follow_slot(self, slot_id: str, slot: _Slot) -> None:
        """A slot's task ends: normally once it is given nothing more; otherwise with what it held."""
        could_not_run = False
        try:
            await slot.ref
            result: dict[str, Any] | None = None
        except Exception as exc:
            result = _not_returned(exc, slot.node)
            could_not_run = not isinstance(exc, (rex.TaskCancelledError, *_LOST_ERRORS))
        self._slots.pop(slot_id, None)
        shape = self._shapes.get(slot.shape)
        if shape is not None:
            if slot.node is None:
                shape.starting -= 1  # it never started (a lost node, a worker that failed to start)
            else:
                shape.running -= 1
        held = list(slot.held)
        if result is None:
            # Left only by a report that did not arrive: what it gave back never started here, and goes back
            # to the queue. One that reported its start ran, and its exit is lost: it is not run again.
            self._requeue([key for key in held if key in self._attempts and self._attempts[key].node is None])
            for key in held:
                attempt = self._attempts.get(key)
                if attempt is not None and attempt.exit is None and attempt.slot is slot:
                    self._end(key, {"started": True, "exitCode": None, "reason": EXIT_LOST, "lines": []})
        else:
            for key in held:
                attempt = self._attempts.get(key)
                if attempt is None or attempt.exit is not None:
                    continue
                if result.get("exitCode") == 137 and attempt.node is None:
                    # Cancelled before it reported: it had not started, or had run for a moment at most.
                    ended = {"started": False, "lines": [], "reason": attempt.stop[1] if attempt.stop else None}
                else:
                    ended = dict(result)
                    if attempt.stop is not None and result.get("exitCode") == 137:
                        ended["reason"] = attempt.stop[1]
                ended["endedAt"] = _now()
                self._end(key, ended)
        if shape is None:
            return
        if could_not_run and result is not None and slot.node is None:
            self._fail_queue(shape, result)  # its task could not start at all: the rest would wait for ever
        self._serve(slot.shape, shape)
        if not (shape.queue or shape.starting or shape.running or shape.idle):
            del self._shapes[slot.shape]

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
        except Exception as exc:
            result = _not_returned(exc, attempt.node)
            if isinstance(exc, rex.TaskCancelledError) and attempt.stop is not None:
                result["reason"] = attempt.stop[1]
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
        self,
        key: str,
        node: str,
        lines: list[tuple[int, str]],
        started: int | None = None,
        ended: list[tuple[str, dict[str, Any]]] | None = None,
        returned: list[str] | None = None,
    ) -> tuple[float, str | None] | None:
        """From a running attempt: its node, new output, when it started; from its slot, the exits of the
        attempts it ran before and those it gives back. The answer is a stop request, if any."""
        self._counts["reports"] += 1
        if ended:
            self._ended_in_slot(ended)
        if returned:
            self._counts["returned"] += len(returned)
            self._requeue(returned)
        attempt = self._attempts.get(key)
        if attempt is None:
            return (0.0, None)  # forgotten: nobody follows it any more
        if attempt.node is None:
            # Its first report: the server shows the job RUNNING from its real start (it was STARTING,
            # possibly queued in Ray behind other tasks). A job too short to report starts with its end.
            self._emit("start", key, {"node": node, "startedAt": started})
            if started is not None:
                self._run_time.add_span(started, _now())  # not short: known now, not when it ends
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
        if attempt.spec.get("nodeGroup") is None:
            self._stop_in_slot(key, attempt, grace)
            return
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

    def _stop_in_slot(self, key: str, attempt: _Attempt, grace: float) -> None:
        if attempt.slot is None:
            # Still waiting for a slot: it never starts.
            shape = self._shapes.get(attempt.shape)
            if shape is not None and key in shape.queue:
                shape.queue.remove(key)
            assert attempt.stop is not None
            self._end(key, {"started": False, "reason": attempt.stop[1], "lines": [], "endedAt": _now()})
            return
        # Running: its next report (within task._FIRST_REPORT_SECONDS of its start, then every
        # task._HEARTBEAT_SECONDS) picks the stop up; a slot that does not end it is cancelled.
        asyncio.get_running_loop().call_later(grace + _FORCE_AFTER_SECONDS, self._force_slot, key)

    def _force_slot(self, key: str) -> None:
        attempt = self._attempts.get(key)
        slot = attempt.slot if attempt is not None else None
        if attempt is not None and attempt.exit is None and slot is not None and slot.ref is not None:
            ray.cancel(slot.ref, force=True)

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

    async def stats(self) -> dict[str, int]:
        """Counts since the actor started: slot tasks submitted, slot calls, attempts handed, reports, and
        attempts given back."""
        return dict(self._counts)

    async def last_event(self) -> int:
        return self._number


def _not_returned(exc: Exception, node: str | None) -> dict[str, Any]:
    """The exit of an attempt (or a slot's) whose Ray task raised ``exc`` rather than returning: cancelled,
    lost with its node, or not run at all. ``node``: where it reported from, None if it never did."""
    if isinstance(exc, rex.TaskCancelledError):
        return {"started": node is not None, "exitCode": 137 if node else None, "lines": []}
    if isinstance(exc, _LOST_ERRORS):
        return {"started": True, "exitCode": None, "reason": HOST_LOST, "lines": [], "lostHost": node or _node_of(exc)}
    return {"started": False, "reason": f"CannotStartContainerError: {type(exc).__name__}: {exc}", "lines": []}


def _now() -> int:
    return int(time.time() * 1000)


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
