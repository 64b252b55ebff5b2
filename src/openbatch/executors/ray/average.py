"""How long attempts have been running on a Ray cluster, recent ones counting most.

The server uses it to decide how much work to queue in Ray (``cluster.RayCluster.queued_per_cpu``),
the dispatcher actor how many slots to submit (``dispatcher.Dispatcher._slots_wanted``). Only the
standard library: the dispatcher runs inside Ray.
"""

from __future__ import annotations

RUN_TIME_WEIGHT = 0.2
"""Weight of each new run time: about ten attempts outweigh everything before them."""


class RunTime:
    """An exponentially weighted average of run times, in seconds; None until the first."""

    __slots__ = ("seconds",)

    def __init__(self) -> None:
        self.seconds: float | None = None

    def add(self, seconds: float) -> None:
        average = self.seconds
        self.seconds = seconds if average is None else average + RUN_TIME_WEIGHT * (seconds - average)

    def add_span(self, started_ms: int, ended_ms: int) -> None:
        self.add(max(ended_ms - started_ms, 0) / 1000)
