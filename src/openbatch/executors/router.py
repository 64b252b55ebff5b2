"""One executor for the engine, several behind it: each attempt goes to the executor of the compute
environment it was placed on (``LaunchSpec.compute_environment``), the rest to the default one.

The engine keeps a single executor; this router is that executor. Handles are wrapped so that a
kill reaches the executor that launched the attempt, and attempts held when the server started
(``known_attempts``) are remembered by owner so that ``attach`` and ``forget`` reach it too.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping

from openbatch.executors.base import Executor, ExitCallback, Handle, KnownAttempt, LaunchSpec, attempt_key


class Routed:
    """A handle of the executor that launched (or attached to) the attempt."""

    __slots__ = ("executor", "inner")

    def __init__(self, inner: Handle, executor: Executor) -> None:
        self.inner = inner
        self.executor = executor

    @property
    def pid(self) -> int:
        return self.inner.pid

    @property
    def reports_start(self) -> bool:
        return bool(getattr(self.inner, "reports_start", False))


class ExecutorRouter:
    def __init__(self, default: Executor, choose: Callable[[str], Executor | None]) -> None:
        self.default = default
        self.choose = choose
        """The executor of a compute environment; ``None``: the default one."""
        self.extra: list[Executor] = []
        """Executors other than the default that may hold attempts (for ``known_attempts`` and ``aclose``)."""
        self._owners: dict[str, Executor] = {}
        """Attempts not on the default executor, by key, until forgotten."""
        self.reattaches = default.reattaches

    def add(self, executor: Executor) -> None:
        if executor not in self.extra:
            self.extra.append(executor)

    def known_attempts(self) -> Mapping[str, KnownAttempt]:
        known: dict[str, KnownAttempt] = dict(self.default.known_attempts())
        for executor in self.extra:
            held = executor.known_attempts()
            known.update(held)
            self._owners.update(dict.fromkeys(held, executor))
        return known

    def attach(self, key: str, on_exit: ExitCallback) -> Handle:
        executor = self._owners.get(key, self.default)
        return Routed(executor.attach(key, on_exit), executor)

    def forget(self, keys: Iterable[str]) -> None:
        mine: list[str] = []
        theirs: dict[int, tuple[Executor, list[str]]] = {}
        for key in keys:
            owner = self._owners.pop(key, None)
            if owner is None:
                mine.append(key)
            else:
                theirs.setdefault(id(owner), (owner, []))[1].append(key)
        if mine:
            self.default.forget(mine)
        for owner, batch in theirs.values():
            owner.forget(batch)

    def launch(self, spec: LaunchSpec, on_exit: ExitCallback) -> Handle:
        executor = self.choose(spec.compute_environment) or self.default
        if executor is not self.default:
            self._owners[attempt_key(spec.job_id, spec.attempt)] = executor
        return Routed(executor.launch(spec, on_exit), executor)

    def kill(self, handle: Handle, grace_seconds: float, reason: str | None = None) -> None:
        if isinstance(handle, Routed):
            handle.executor.kill(handle.inner, grace_seconds, reason)
        else:
            self.default.kill(handle, grace_seconds, reason)

    async def aclose(self) -> None:
        for executor in self.extra:
            await executor.aclose()
        await self.default.aclose()
