"""``/metrics`` in the Prometheus text format.

Counters and histograms are fed by the engine's status listener (after each
commit), so they count what the store holds. Job counts per queue and state
start from one grouped query at start-up and then follow the same changes.
Resource usage and event delivery figures are read when scraped.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector
from sqlalchemy import Engine, func, select
from starlette.requests import Request
from starlette.responses import Response

from openbatch.domain.job import StatusChange
from openbatch.domain.states import ACTIVE, TERMINAL, JobStatus
from openbatch.scheduler.capacity import Capacity
from openbatch.scheduler.registry import Registry
from openbatch.store.tables import jobs

logger = logging.getLogger("openbatch.jobs")
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
_DURATION_BUCKETS = (0.1, 0.5, 1, 2, 5, 10, 30, 60, 120, 300, 600, 1800, 3600, 7200, 21600, 86400)


@dataclass(frozen=True, slots=True)
class EnvironmentCapacity:
    name: str
    vcpus: float
    memory_mib: int
    gpus: int


@dataclass(frozen=True, slots=True)
class DeliveryFigures:
    backlog: int
    delivered: Mapping[str, int]
    failed_attempts: Mapping[str, int]
    dead: int


class ServerMetrics:
    def __init__(
        self,
        *,
        environments: Callable[[], Iterable[EnvironmentCapacity]],
        deliveries: Callable[[], DeliveryFigures] | None = None,
        held: Callable[[], tuple[int, int]] | None = None,
    ) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.environments = environments
        self.deliveries = deliveries
        self.held = held
        """The scheduler's jobs held as objects, and queued array children held as index ranges."""
        self.submitted = Counter(
            "openbatch_jobs_submitted", "Jobs submitted (array children included)", ["queue"], registry=self.registry
        )
        self.completed = Counter(
            "openbatch_jobs_completed", "Jobs that ended, by outcome", ["queue", "outcome"], registry=self.registry
        )
        self.wait = Histogram(
            "openbatch_job_wait_seconds",
            "From submission to the start of the first attempt",
            ["queue"],
            buckets=_DURATION_BUCKETS,
            registry=self.registry,
        )
        self.run = Histogram(
            "openbatch_job_run_seconds",
            "From the start of the first attempt to the end of the job",
            ["queue"],
            buckets=_DURATION_BUCKETS,
            registry=self.registry,
        )
        self.counts: dict[tuple[str, str], int] = {}
        self._placed: dict[str, tuple[str, float, int, int]] = {}
        """Jobs in STARTING/RUNNING: job id → (compute environment, vCPUs, MiB, GPUs)."""
        self.registry.register(_Snapshot(self))

    def seed(self, engine: Engine) -> None:
        """Job counts per queue and state from the store (once, at start-up)."""
        with engine.connect() as conn:
            rows = conn.execute(select(jobs.c.queue, jobs.c.status, func.count()).group_by(jobs.c.queue, jobs.c.status))
            self.counts = {(queue, status): int(n) for queue, status, n in rows}

    def on_changes(self, changes: Sequence[StatusChange]) -> None:
        log_changes = logger.isEnabledFor(logging.INFO)
        for change in changes:
            job = change.job
            queue = job.spec.queue
            if change.old is None:
                self.submitted.labels(queue).inc()
            else:
                key = (queue, change.old.value)
                self.counts[key] = self.counts.get(key, 0) - 1
            key = (queue, change.new.value)
            self.counts[key] = self.counts.get(key, 0) + 1
            self._track_resources(change)
            if change.new is JobStatus.RUNNING and change.old is not JobStatus.RUNNING and not job.attempts:
                self.wait.labels(queue).observe(max(change.at - job.created_at, 0) / 1000)
            if change.new in TERMINAL:
                self.completed.labels(queue, change.new.value).inc()
                if job.started_at is not None:
                    stopped = job.stopped_at or change.at
                    self.run.labels(queue).observe(max(stopped - job.started_at, 0) / 1000)
            if log_changes:
                logger.info(
                    "job state change",
                    extra={
                        "job_id": change.job_id,
                        "job_name": job.spec.job_name,
                        "queue": queue,
                        "old_status": change.old.value if change.old else None,
                        "new_status": change.new.value,
                        "status_reason": job.status_reason,
                    },
                )

    def _track_resources(self, change: StatusChange) -> None:
        job = change.job
        if change.new in ACTIVE and change.job_id not in self._placed and job.compute_environment:
            need = job.spec.resources
            self._placed[change.job_id] = (job.compute_environment, need.vcpus, need.memory_mib or 0, need.gpus)
        elif change.new not in ACTIVE:
            self._placed.pop(change.job_id, None)

    def in_use(self) -> dict[str, tuple[float, int, int]]:
        totals: dict[str, tuple[float, int, int]] = {}
        for ce, vcpus, memory, gpus in self._placed.values():
            v, m, g = totals.get(ce, (0.0, 0, 0))
            totals[ce] = (v + vcpus, m + memory, g + gpus)
        return totals

    async def endpoint(self, request: Request) -> Response:
        return Response(generate_latest(self.registry), media_type=CONTENT_TYPE)


class _Snapshot(Collector):
    """Gauges computed at scrape time."""

    def __init__(self, metrics: ServerMetrics) -> None:
        self.metrics = metrics

    def describe(self) -> Iterable[Metric]:
        # Without describe(), registering calls collect() at once: before the store is migrated.
        return []

    def collect(self) -> Iterable[Metric]:
        m = self.metrics
        jobs_gauge = GaugeMetricFamily("openbatch_jobs", "Jobs by queue and state", labels=["queue", "state"])
        for (queue, state), n in sorted(m.counts.items()):
            jobs_gauge.add_metric([queue, state], max(n, 0))
        yield jobs_gauge
        in_use = m.in_use()
        gauges: dict[str, GaugeMetricFamily] = {}
        for name, text in (
            ("vcpus", "vCPUs"),
            ("memory_mib", "memory (MiB; the host's memory is shared by every compute environment)"),
            ("gpus", "GPUs (the host's GPUs are shared by every compute environment)"),
        ):
            gauges[f"{name}_in_use"] = GaugeMetricFamily(
                f"openbatch_compute_environment_{name}_in_use", f"{text} used by running jobs", labels=["ce"]
            )
            gauges[f"{name}_capacity"] = GaugeMetricFamily(
                f"openbatch_compute_environment_{name}_capacity", f"{text} available", labels=["ce"]
            )
        for env in m.environments():
            vcpus, memory, gpus = in_use.get(env.name, (0.0, 0, 0))
            for name, used, capacity in (
                ("vcpus", vcpus, env.vcpus),
                ("memory_mib", memory, env.memory_mib),
                ("gpus", gpus, env.gpus),
            ):
                gauges[f"{name}_in_use"].add_metric([env.name], used)
                gauges[f"{name}_capacity"].add_metric([env.name], capacity)
        yield from gauges.values()
        if m.held is not None:
            objects, ranged = m.held()
            yield GaugeMetricFamily(
                "openbatch_scheduler_jobs_in_memory", "Unfinished jobs the scheduler holds as objects", value=objects
            )
            yield GaugeMetricFamily(
                "openbatch_scheduler_queued_children_in_ranges",
                "RUNNABLE array children waiting as index ranges of their parent rather than as objects",
                value=ranged,
            )
        if m.deliveries is None:
            return
        try:
            figures = m.deliveries()
        except Exception:
            logging.getLogger(__name__).exception("could not read event delivery figures")
            return
        yield GaugeMetricFamily(
            "openbatch_event_delivery_backlog",
            "Event messages not yet delivered (outbox entries and pending deliveries)",
            value=figures.backlog,
        )
        yield GaugeMetricFamily(
            "openbatch_event_deliveries_dead",
            "Deliveries given up after their last retry (kept in the log)",
            value=figures.dead,
        )
        yield _counter_family(
            "openbatch_event_deliveries", "Messages delivered since start, by protocol", figures.delivered
        )
        yield _counter_family(
            "openbatch_event_delivery_failures",
            "Failed delivery attempts since start, by protocol",
            figures.failed_attempts,
        )


def _counter_family(name: str, documentation: str, values: Mapping[str, int]) -> Metric:
    from prometheus_client.core import CounterMetricFamily

    family = CounterMetricFamily(name, documentation, labels=["protocol"])
    for protocol, value in sorted(values.items()):
        family.add_metric([protocol], value)
    return family


def environment_capacities(registry: Registry, capacity: Capacity) -> list[EnvironmentCapacity]:
    """Each compute environment's maxvCpus, and the host's memory and GPUs (which they share)."""
    return [
        EnvironmentCapacity(name, float(ce.max_vcpus), int(capacity.memory_mib), len(capacity.gpus))
        for name, ce in sorted(registry.compute_environments.items())
    ]
