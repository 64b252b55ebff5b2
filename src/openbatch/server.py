"""Builds the ASGI app around a runtime and serves it with uvicorn."""

from __future__ import annotations

import gc
import logging
import resource
import socket
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager

import uvicorn
from starlette.applications import Starlette

from openbatch import cluster
from openbatch.api.app import batch_operations, create_app, is_batch_operation
from openbatch.api.auth import ScopeAuthenticator
from openbatch.api.limits import RequestLimits
from openbatch.api.logs_api import LogsApi
from openbatch.api.operations import register_job_operations
from openbatch.api.wire import service_model
from openbatch.auth.setup import attach_job_roles, install_auth
from openbatch.config import Settings
from openbatch.console import FEED_PATH, RootRedirect
from openbatch.console import install as install_console
from openbatch.containers import wiring as containers
from openbatch.events.install import install as install_events
from openbatch.fidelity import task_metadata
from openbatch.fidelity.wiring import container_environment_hook
from openbatch.observability.requests import RequestLog
from openbatch.runtime import Runtime
from openbatch.service import request_models as s
from openbatch.workflows.capability import routes as workflow_routes

logger = logging.getLogger(__name__)


def build_app(settings: Settings) -> tuple[Starlette, Runtime]:
    runtime = Runtime(settings)
    runtime.engine_hooks.append(container_environment_hook(settings, runtime.ctx, runtime.registry))
    runtime.engine_hooks.append(containers.configure(settings, settings.container_runtime))
    register_job_operations(s.JOB_OPERATIONS)
    # On PostgreSQL the scheduler runs in one server at a time: this one starts its runtime when elected.
    leadership = cluster.leadership_for(runtime) if settings.clustered else None

    @asynccontextmanager
    async def lifespan(_app: Starlette) -> AsyncIterator[None]:
        if leadership is not None:
            await leadership.start()
        else:
            await runtime.start()
        # What exists now (modules, the AWS model requests are checked against, recovered jobs) lives as long as
        # the server: kept out of the cyclic collector's full passes, which otherwise walk all of it each time
        # (0.4-0.5 s pauses in the middle of job listings, on a loaded 2-core machine).
        service_model("batch")
        gc.freeze()
        # Young collections ten times rarer than Python's default (every 700 allocations): a request allocates
        # hundreds of containers, nearly all freed by reference counting, and each young pass cost about as much
        # as a small request; the cycles it finds are few, so memory hardly changes.
        gc.set_threshold(7_000, 10, 10)
        logger.info("OpenBatch ready on http://%s:%s (data in %s)", settings.host, settings.port, settings.data_dir)
        try:
            yield
        finally:
            if leadership is not None:
                await leadership.stop()
            await events.stop()
            await runtime.stop()

    console = install_console(runtime.engine_hooks)
    logs = LogsApi(runtime.log_store)
    # POST / is shared by CloudWatch Logs, EventBridge and SNS; the events router dispatches it.
    events = install_events(runtime, logs.handle)
    app = create_app(
        runtime,
        ScopeAuthenticator(runtime.caller),
        lifespan=lifespan,
        extra_routes=[
            *console.routes,
            *events.routes,
            *workflow_routes(runtime.started_workflows),
            *task_metadata.routes(lambda: runtime.jobs, settings.region, settings.account_id),
            *(cluster.routes(leadership) if leadership is not None else []),
        ],
    )
    app.add_middleware(RequestLog)
    app.state.shutdown_started = [console.close]
    # Outside authentication: a browser opening / is sent to the console page, which is public.
    app.add_middleware(RootRedirect)
    broker = install_auth(app, runtime.ctx, settings)
    if broker is not None:
        runtime.engine_hooks.append(lambda engine: attach_job_roles(broker, engine))
    if leadership is not None:
        cluster.install(app, leadership)
    # Batch operations, most of the traffic, skip the middlewares in between when none of them acts on those:
    # with neither signatures to check nor a leader to forward to, only the request log does, and it comes along.
    shortcut = None
    if broker is None and leadership is None:
        shortcut = (is_batch_operation, RequestLog(batch_operations(app)))
    # Added last, so outermost: oversized bodies and floods are turned away before authentication reads a body.
    app.add_middleware(
        RequestLimits,
        max_body_bytes=settings.max_request_bytes,
        max_concurrent=settings.max_concurrent_requests,
        # A job feed stays open as long as its page: it must not hold one of the slots for requests.
        exempt=("/health", FEED_PATH),
        shortcut=shortcut,
    )
    return app, runtime


def raise_open_file_limit() -> None:
    """Each running attempt holds a few descriptors (pipes, pidfd, log): allow as many as the hard limit."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
        except (ValueError, OSError):
            logger.warning("could not raise the open file limit from %d", soft)


def listen(host: str, port: int) -> socket.socket:
    """Bind the listening socket before anything starts, so that a taken port fails at once, before
    the runtime starts or logs that it is ready. Raises OSError (EADDRINUSE when the port is taken)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    # IPPROTO_TCP named explicitly: asyncio sets TCP_NODELAY only on sockets whose proto says TCP, and
    # with proto 0 every response waited ~40 ms for the client's delayed ACK (Nagle's algorithm).
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    try:
        # As uvicorn does: reuse a port left in TIME_WAIT; a port another process listens on stays refused.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
        sock.listen(2048)
    except OSError:
        sock.close()
        raise
    return sock


def serve(settings: Settings, *, log_level: str = "info", sock: socket.socket | None = None) -> None:
    raise_open_file_limit()
    app, _runtime = build_app(settings)
    config = uvicorn.Config(
        app,
        host=settings.host,
        port=settings.port,
        log_level=log_level,
        access_log=False,
        # Logging is configured by the CLI (text or JSON) for uvicorn's loggers too.
        log_config=None,
        lifespan="on",
        timeout_graceful_shutdown=5,
    )
    server = _Server(config, getattr(app.state, "shutdown_started", []))
    # uvicorn's own event loop choice (uvloop where installed, as uvicorn[standard] does), rather than asyncio's.
    server.run(sockets=[sock] if sock is not None else None)


class _Server(uvicorn.Server):
    """uvicorn's server, telling the app when shutdown begins: streams that never end by themselves
    (the console's job feed) end then, instead of holding the shutdown for its graceful timeout."""

    def __init__(self, config: uvicorn.Config, shutdown_started: list[Callable[[], None]]) -> None:
        super().__init__(config)
        self.shutdown_started = shutdown_started

    async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
        for hook in self.shutdown_started:
            hook()
        await super().shutdown(sockets)
