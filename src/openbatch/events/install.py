"""Composes events, notifications and metrics into the server (one call from ``server.build_app``)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from starlette.routing import Route

from openbatch.events.api import Handler
from openbatch.events.capability import EventsCapability
from openbatch.events.delivery import SmtpSettings
from openbatch.observability.metrics import ServerMetrics, environment_capacities

if TYPE_CHECKING:
    from openbatch.runtime import Runtime


@dataclass(frozen=True, slots=True)
class Installed:
    routes: list[Route]
    """``/`` (EventBridge, SNS, CloudWatch Logs), ``/metrics``, the signing certificate, the delivery log."""
    stop: Callable[[], Awaitable[None]]
    """Stops delivery; call before the runtime stops (it closes the store)."""
    events: EventsCapability
    metrics: ServerMetrics


def install(runtime: Runtime, logs: Handler) -> Installed:
    settings = runtime.settings
    smtp = None
    if settings.smtp_url:
        smtp = SmtpSettings(
            url=settings.smtp_url,
            sender=settings.smtp_from,
            starttls=settings.smtp_starttls,
            username=settings.smtp_username,
            password=settings.smtp_password,
        )
    events = EventsCapability(
        store=runtime.store,
        clock=runtime.clock,
        region=settings.region,
        account=settings.account_id,
        public_url=settings.public_url or f"http://{settings.host}:{settings.port}",
        data_dir=settings.data_dir,
        smtp=smtp,
    )
    metrics = ServerMetrics(environments=list, deliveries=events.figures)

    def attach(engine: Any) -> None:
        metrics.seed(runtime.store.engine)
        metrics.environments = lambda: environment_capacities(engine.registry, engine.capacity)
        metrics.held = engine.held
        engine.add_status_listener(metrics.on_changes)
        events.start(engine, lambda: runtime.jobs.renderer(runtime.caller).detail, logs)
        if runtime.workflows is not None:
            # Workflow run state changes are events too, committed with the change like jobs' are.
            runs = runtime.workflows.service
            runs.outbox_sources.append(events.service.workflow_outbox_source)
            runs.outbox_committed.append(events.worker.wake)

    runtime.engine_hooks.append(attach)
    routes = [*events.routes(logs), Route("/metrics", metrics.endpoint, methods=["GET"])]
    return Installed(routes=routes, stop=events.stop, events=events, metrics=metrics)
