"""The ASGI application: AWS Batch REST-JSON routes, tag routes on the raw path, health."""

from __future__ import annotations

import inspect
import json
import logging
import uuid
from collections.abc import Awaitable, Callable
from contextlib import AbstractAsyncContextManager
from typing import Any
from urllib.parse import parse_qs, unquote

import orjson
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route
from starlette.types import Receive, Scope, Send

from openbatch.api.auth import Authenticator
from openbatch.api.errors import client_error, response_for
from openbatch.api.operations import OPERATIONS, Services
from openbatch.api.wire import check_input, parse_body
from openbatch.domain.errors import ValidationError
from openbatch.domain.validation import check_text
from openbatch.service import tagging

logger = logging.getLogger(__name__)
_TAGS_PREFIX = "/v1/tags/"


def _ok(payload: dict[str, Any]) -> Response:
    # orjson: a page of 100 job summaries is serialised several times faster (UTF-8 rather than \u escapes);
    # what it refuses (integers beyond 64 bits, keys that are not strings) goes through the standard encoder.
    try:
        body: bytes | str = orjson.dumps(payload)
    except TypeError:
        body = json.dumps(payload, separators=(",", ":"))
    return Response(
        body,
        media_type="application/json",
        headers={"x-amzn-RequestId": str(uuid.uuid4())},
    )


def create_app(
    services: Services,
    authenticator: Authenticator,
    *,
    lifespan: Callable[[Starlette], AbstractAsyncContextManager[None]] | None = None,
    extra_routes: list[BaseRoute] | None = None,
) -> Starlette:
    async def dispatch(request: Request) -> Response:
        raw_path = request.scope.get("raw_path", b"").decode("latin-1") or request.url.path
        raw_path = raw_path.split("?", 1)[0]
        # Clients may put the API under a path prefix (endpoint .../prefix/batch).
        marker = raw_path.find("/v1/")
        if marker < 0:
            return client_error(f"Unknown operation: {request.method} {raw_path}")
        route = raw_path[marker:]
        body = await request.body()
        headers = {k.lower(): v for k, v in request.headers.items()}
        try:
            caller = authenticator.authenticate(request.method, raw_path, headers, body)
        except Exception as exc:
            return response_for(exc, "authentication")
        if route.startswith(_TAGS_PREFIX):
            return _tags(services, caller, request, route, body)
        if request.method != "POST":
            return client_error(f"Operation {route} must be called with POST")
        operation = OPERATIONS.get(route[len("/v1/") :].lower())
        if operation is None:
            return client_error(f"Unknown operation {route[len('/v1/') :]!r}")
        try:
            payload = parse_body(body)
            # The AWS model's types first: nothing mistyped reaches a use case, let alone the store.
            check_input("batch", operation.name, payload)
            request_shape = operation.shape.model_validate(payload)
            result = operation.handler(services, caller, request_shape)
            if inspect.isawaitable(result):
                result = await result
            return _ok(result)
        except Exception as exc:
            return response_for(exc, operation.name)

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
    # What no route matches (a path with a newline escapes "{path:path}") gets an AWS error, not a bare 404.
    app.router.default = _AnyMethod(dispatch)
    return app


class _AnyMethod:
    """An ASGI endpoint, which Starlette routes for every method (a function would get GET only):
    even TRACE or an invented method gets an AWS-shaped error rather than a bare 405."""

    def __init__(self, handler: Callable[[Request], Awaitable[Response]]) -> None:
        self.handler = handler

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        response = await self.handler(Request(scope, receive))
        await response(scope, receive, send)
