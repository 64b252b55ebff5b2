"""The dispatcher: a detached, named Ray actor that owns a server's attempts on the cluster.

Tasks owned by a plain driver die about a second after it does; tasks submitted by a
detached actor do not. So the server hands every attempt to this actor, which submits it
as a Ray task (``task.run_attempt``), collects its output and its end as numbered events,
and keeps them until the server acknowledges them. A restarted server finds the actor by
name, asks what it holds (``known``), and reads on from the first event it has not
acknowledged: running attempts are followed again and nothing they printed is lost.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import ray
from ray import exceptions as rex

from openbatch.executors.ray.task import run_attempt

HOST_LOST = "The host stopped while this attempt was running"
"""Same text as ``executors.base.HOST_LOST`` (not imported: this module runs inside Ray)."""
_FORCE_AFTER_SECONDS = 10.0
"""A stopped attempt whose task has not ended this long after its grace period is force-cancelled."""
_UNREPORTED_SECONDS = 1.0
"""A task reports first within 0.1 s of starting its process (``task._FIRST_REPORT_SECONDS``)."""
_LOST_ERRORS = (rex.NodeDiedError, rex.WorkerCrashedError, rex.LocalRayletDiedError, rex.ObjectLostError)

_remote_attempt = ray.remote(max_retries=0)(run_attempt)


class _Attempt:
    __slots__ = ("exit", "node", "ref", "spec", "stop")

    def __init__(self, spec: dict[str, Any]) -> None:
        self.spec = spec
        self.ref: Any = None
        self.node: str | None = None
        self.exit: dict[str, Any] | None = None
        self.stop: tuple[float, str | None] | None = None


class Dispatcher:
    def __init__(self) -> None:
        self._attempts: dict[str, _Attempt] = {}
        self._events: list[tuple[int, str, str, Any]] = []
        """(number, kind, attempt key, payload): ``log`` (lines) and ``exit`` (the exit), oldest first."""
        self._number = 0
        self._new = asyncio.Event()

    def _emit(self, kind: str, key: str, payload: Any) -> None:
        self._number += 1
        self._events.append((self._number, kind, key, payload))
        self._new.set()

    async def ping(self) -> int:
        return len(self._attempts)

    async def launch(self, batch: list[tuple[str, dict[str, Any], dict[str, Any]]]) -> None:
        """Submit (key, spec, task options) for each attempt it does not hold already."""
        context = ray.get_runtime_context()
        me = (context.get_actor_name(), context.namespace)
        for key, spec, options in batch:
            if key in self._attempts:
                continue  # launched before, by a server that did not learn of it: follow that launch
            attempt = self._attempts[key] = _Attempt(spec)
            try:
                attempt.ref = _remote_attempt.options(**options).remote(me, key, spec)
            except Exception as exc:
                self._end(key, {"started": False, "reason": f"CannotStartContainerError: {exc}", "lines": []})
                continue
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

    async def report(self, key: str, node: str, lines: list[tuple[int, str]]) -> tuple[float, str | None] | None:
        """From a running attempt: its node, new output; the answer is a stop request, if any."""
        attempt = self._attempts.get(key)
        if attempt is None:
            return (0.0, None)  # forgotten: nobody follows it any more
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


def _node_of(exc: Exception) -> str:
    """The lost node as Ray names it in the error, when the attempt had not reported its address yet."""
    text = str(exc)
    marker = "node_id="
    if marker in text:
        return text.split(marker, 1)[1].split()[0].strip(",.)")[:16]
    return "unknown"
