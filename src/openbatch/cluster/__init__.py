"""Several servers on one PostgreSQL database: one leads (runs the scheduler), the others forward to it.

``leadership.py`` elects the leader and hands over when it dies; ``forwarding.py`` lets any server
answer any call; ``scheduler/lost_hosts.py`` ends the attempts a dead leader's host ran: as they
ended, when their supervisor recorded that (``supervisor/outcomes.py``), else as lost once that
supervisor has killed them. ``install`` wires it into a server.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from openbatch.cluster.forwarding import Forwarding
from openbatch.cluster.leadership import Leadership, instance_name

if TYPE_CHECKING:
    from openbatch.runtime import Runtime

__all__ = ["Leadership", "install", "routes"]


def leadership_for(runtime: Runtime) -> Leadership:
    settings = runtime.settings
    return Leadership(
        runtime.store,
        instance=instance_name(settings.data_dir),
        url=settings.advertised_url,
        lost_host_seconds=settings.lost_host_seconds,
        lead=runtime.start,
        outcomes_recorded=runtime.attempt_outcomes_recorded,
    )


def routes(leadership: Leadership) -> list[Route]:
    """``GET /health/cluster``: this server's role, and the leader it forwards to."""

    async def describe(_request: Request) -> Response:
        return JSONResponse(leadership.describe())

    return [Route("/health/cluster", describe, methods=["GET"])]


def install(app: Starlette, leadership: Leadership) -> None:
    """Forward what this server cannot answer; add it outside authentication (the leader authenticates)."""
    app.add_middleware(Forwarding, leadership=leadership)
