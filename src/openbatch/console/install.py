"""Routes of the console (static page, job feed) and the redirect from ``/`` for browsers."""

from __future__ import annotations

from collections.abc import Callable
from importlib import resources
from typing import TYPE_CHECKING, Any

from starlette.responses import RedirectResponse, Response
from starlette.routing import BaseRoute, Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.types import ASGIApp, Receive, Scope, Send

from openbatch.console.feed import JobFeed

if TYPE_CHECKING:
    from starlette.requests import Request

ROOT_PATH = "/console"
FEED_PATH = "/api/jobs/events"


def console_files() -> frozenset[str]:
    """Every path the console's static files are served at (what may be fetched without a signature)."""
    paths = {ROOT_PATH, f"{ROOT_PATH}/"}
    pending = [(resources.files("openbatch.console") / "static", ROOT_PATH)]
    while pending:
        folder, prefix = pending.pop()
        for entry in folder.iterdir():
            if entry.is_dir():
                pending.append((entry, f"{prefix}/{entry.name}"))
            elif not entry.name.startswith("."):
                paths.add(f"{prefix}/{entry.name}")
    return frozenset(paths)


class _Static(StaticFiles):
    """The page's files, revalidated on every load (ETag): an upgraded server never runs old modules."""

    def file_response(self, *args: Any, **kwargs: Any) -> Response:
        response = super().file_response(*args, **kwargs)
        response.headers["Cache-Control"] = "no-cache"
        response.headers["X-Content-Type-Options"] = "nosniff"
        return response


class Console:
    """The console's routes, and ``close`` to end its event streams when the server shuts down."""

    def __init__(self, routes: list[BaseRoute], feed: JobFeed) -> None:
        self.routes = routes
        self.close = feed.close


def install(engine_hooks: list[Callable[[Any], None]]) -> Console:
    """The console; its feed joins the engine's status listeners through ``engine_hooks``
    (the runtime's: called with the engine before it starts)."""
    feed = JobFeed()
    engine_hooks.append(lambda engine: engine.add_status_listener(feed.on_status_changes))

    async def to_page(request: Request) -> Response:
        return RedirectResponse(f"{ROOT_PATH}/", status_code=307)

    routes: list[BaseRoute] = [
        Route(ROOT_PATH, to_page, methods=["GET", "HEAD"]),
        Mount(ROOT_PATH, app=_Static(packages=[("openbatch.console", "static")], html=True)),
        Route(FEED_PATH, feed.endpoint, methods=["GET"]),
    ]
    return Console(routes, feed)


class RootRedirect:
    """Sends a browser opening ``/`` to the console. Only a plain GET that asks for HTML: ``/`` also
    serves CloudWatch Logs, EventBridge and SNS (POST, or GET with an ``Action``), which pass through."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if (
            scope["type"] == "http"
            and scope["method"] in ("GET", "HEAD")
            and scope["path"] == "/"
            and not scope.get("query_string")
            and any(k == b"accept" and b"text/html" in v for k, v in scope["headers"])
        ):
            await RedirectResponse(f"{ROOT_PATH}/", status_code=307)(scope, receive, send)
            return
        await self.app(scope, receive, send)
