"""The ASGI application: AWS Batch REST-JSON routes, tag routes on the raw path, health."""

from __future__ import annotations

import inspect
import json
import logging
import uuid
from collections.abc import Awaitable, Callable, Sequence
from contextlib import AbstractAsyncContextManager
from typing import Any
from urllib.parse import parse_qs, unquote

import orjson
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route, Router
from starlette.types import Receive, Scope, Send

from openbatch.api.asgi_body import read_body
from openbatch.api.auth import Authenticator
from openbatch.api.errors import client_error, response_for
from openbatch.api.operations import OPERATIONS, Services
from openbatch.api.wire import check_input, parse_body
from openbatch.domain.errors import ValidationError
from openbatch.domain.validation import check_text
from openbatch.service import tagging
from openbatch.service.context import Caller

logger = logging.getLogger(__name__)
_TAGS_PREFIX = "/v1/tags/"


def _encode(payload: dict[str, Any]) -> bytes:
    # orjson: a page of 100 job summaries is serialised several times faster (UTF-8 rather than \u escapes);
    # what it refuses (integers beyond 64 bits, keys that are not strings) goes through the standard encoder.
    try:
        return orjson.dumps(payload)
    except TypeError:
        return json.dumps(payload, separators=(",", ":")).encode()


def _ok(payload: dict[str, Any]) -> Response:
    return Response(_encode(payload), media_type="application/json", headers={"x-amzn-RequestId": str(uuid.uuid4())})


class BatchOperations:
    """The Batch REST-JSON operations (``POST /v1/<operation>``): authenticate, check, run, answer."""

    def __init__(self, services: Services, authenticator: Authenticator) -> None:
        self.services = services
        self.authenticator = authenticator

    def authenticate(self, method: str, raw_path: str, headers: dict[str, str], body: bytes) -> Caller | Response:
        """The caller, or the error response refusing the request."""
        try:
            return self.authenticator.authenticate(method, raw_path, headers, body)
        except Exception as exc:
            return response_for(exc, "authentication")

    async def run(self, name: str, caller: Caller, body: bytes) -> dict[str, Any] | Response:
        """``name``'s answer (the payload of a 200), or the error response."""
        operation = OPERATIONS.get(name.lower())
        if operation is None:
            return client_error(f"Unknown operation {name!r}")
        try:
            payload = parse_body(body)
            # The AWS model's types first: nothing mistyped reaches a use case, let alone the store.
            check_input("batch", operation.name, payload)
            request_shape = operation.shape.model_validate(payload)
            result = operation.handler(self.services, caller, request_shape)
            if inspect.isawaitable(result):
                result = await result
            return result
        except Exception as exc:
            return response_for(exc, operation.name)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """ASGI entry for a ``POST /v1/<operation>`` (see ``_BatchRouter``): what ``dispatch`` does for it,
        without a Starlette ``Request`` and ``Response`` in between."""
        raw_path = _raw_path(scope)
        body = await read_body(receive)
        headers = {k.decode("latin-1"): v.decode("latin-1") for k, v in scope["headers"]}
        caller = self.authenticate("POST", raw_path, headers, body)
        answer = caller if isinstance(caller, Response) else await self.run(raw_path[len("/v1/") :], caller, body)
        if isinstance(answer, Response):
            await answer(scope, receive, send)
            return
        content = _encode(answer)
        await send(
            {
                "type": "http.response.start",
                "status": 200,
                "headers": [
                    (b"content-length", str(len(content)).encode()),
                    (b"content-type", b"application/json"),
                    (b"x-amzn-requestid", str(uuid.uuid4()).encode()),
                ],
            }
        )
        await send({"type": "http.response.body", "body": content})


def _raw_path(scope: Scope) -> str:
    raw: bytes | None = scope.get("raw_path")
    path: str = raw.decode("latin-1") if raw else scope["path"]
    return path.split("?", 1)[0]


def create_app(
    services: Services,
    authenticator: Authenticator,
    *,
    lifespan: Callable[[Starlette], AbstractAsyncContextManager[None]] | None = None,
    extra_routes: list[BaseRoute] | None = None,
) -> Starlette:
    batch = BatchOperations(services, authenticator)

    async def dispatch(request: Request) -> Response:
        raw_path = _raw_path(request.scope)
        # Clients may put the API under a path prefix (endpoint .../prefix/batch).
        marker = raw_path.find("/v1/")
        if marker < 0:
            return client_error(f"Unknown operation: {request.method} {raw_path}")
        route = raw_path[marker:]
        body = await request.body()
        headers = {k.lower(): v for k, v in request.headers.items()}
        caller = batch.authenticate(request.method, raw_path, headers, body)
        if isinstance(caller, Response):
            return caller
        if route.startswith(_TAGS_PREFIX):
            return _tags(services, caller, request, route, body)
        if request.method != "POST":
            return client_error(f"Operation {route} must be called with POST")
        answer = await batch.run(route[len("/v1/") :], caller, body)
        return answer if isinstance(answer, Response) else _ok(answer)

    def _tags(services: Services, caller: Any, request: Request, route: str, body: bytes) -> Response:
        arn = unquote(route[len(_TAGS_PREFIX) :])
        jobs = services.job_tags
        try:
            check_text("resourceArn", arn)
            if request.method == "GET":
                return _ok(tagging.list_tags(services.ctx, jobs, arn))
            if request.method == "POST":
                payload = parse_body(body)
                check_input("batch", "TagResource", payload)
                tags = payload.get("tags")
                if not isinstance(tags, dict) or not all(
                    isinstance(k, str) and isinstance(v, str) for k, v in tags.items()
                ):
                    raise ValidationError("tags must be a map of string keys to string values")
                return _ok(tagging.tag_resource(services.ctx, jobs, arn, tags))
            if request.method == "DELETE":
                keys = parse_qs(request.url.query, keep_blank_values=True).get("tagKeys", [])
                check_input("batch", "UntagResource", {"resourceArn": arn, "tagKeys": keys}, body_only=False)
                for key in keys:
                    check_text("tagKeys", key)
                return _ok(tagging.untag_resource(services.ctx, jobs, arn, keys))
        except Exception as exc:
            return response_for(exc, "Tagging")
        return client_error(f"Method {request.method} is not allowed on {route}")

    async def health(request: Request) -> Response:
        return JSONResponse({"status": "ok"})

    routes: list[BaseRoute] = [Route("/health", health, methods=["GET"]), *(extra_routes or [])]
    # Every method reaches dispatch so that even unsupported ones get an AWS error shape.
    routes.append(Route("/{path:path}", _AnyMethod(dispatch)))
    app = Starlette(routes=routes, lifespan=lifespan)
    app.router = _BatchRouter(batch, routes, lifespan=lifespan)
    # What no route matches (a path with a newline escapes "{path:path}") gets an AWS error, not a bare 404.
    app.router.default = _AnyMethod(dispatch)
    return app


class _BatchRouter(Router):
    """Starlette's router, with the Batch operations taken before any route is matched.

    ``POST /v1/<operation>`` is most of the traffic, and nothing but the catch-all route serves it:
    going straight to ``BatchOperations`` saves matching it against every route, and building a
    ``Request`` and a ``Response``. Being the router, this runs inside every middleware (request
    limits, forwarding, authentication, the request log), as the routes do.
    """

    def __init__(self, batch: BatchOperations, routes: Sequence[BaseRoute], **kwargs: Any) -> None:
        super().__init__(routes, **kwargs)
        self.batch = batch

    async def app(self, scope: Scope, receive: Receive, send: Send) -> None:
        if is_batch_operation(scope):
            await self.batch(scope, receive, send)
            return
        await super().app(scope, receive, send)


def is_batch_operation(scope: Scope) -> bool:
    """``POST /v1/<operation>``: one segment after /v1/ (tags and prefixed paths take the catch-all route)."""
    if scope["type"] != "http" or scope["method"] != "POST":
        return False
    raw: bytes = scope.get("raw_path") or b""
    return raw.startswith(b"/v1/") and raw.find(b"/", 4) < 0 and b"?" not in raw


def batch_operations(app: Starlette) -> BatchOperations:
    """The Batch operations of an app made by ``create_app``."""
    router = app.router
    if not isinstance(router, _BatchRouter):
        raise TypeError("not an app made by create_app")
    return router.batch


class _AnyMethod:
    """An ASGI endpoint, which Starlette routes for every method (a function would get GET only):
    even TRACE or an invented method gets an AWS-shaped error rather than a bare 405."""

    def __init__(self, handler: Callable[[Request], Awaitable[Response]]) -> None:
        self.handler = handler

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        response = await self.handler(Request(scope, receive))
        await response(scope, receive, send)
