"""ASGI middleware that logs each API call (operation, status, duration) at debug level."""

from __future__ import annotations

import logging
import time

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from openbatch.api.operations import OPERATIONS

logger = logging.getLogger("openbatch.api.calls")
OPERATION_KEY = "openbatch.operation"
"""Scope key where a route names the operation it ran (JSON 1.1 targets, SNS actions)."""


def operation_of(scope: Scope) -> str:
    named = scope.get(OPERATION_KEY)
    if isinstance(named, str):
        return named
    path: str = scope.get("path", "")
    marker = path.find("/v1/")
    if marker >= 0:
        segment = path[marker + 4 :].split("/", 1)[0]
        operation = OPERATIONS.get(segment.lower())
        return operation.name if operation is not None else segment or path
    return path


class RequestLog:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not logger.isEnabledFor(logging.DEBUG):
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500

        async def record(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
            await send(message)

        try:
            await self.app(scope, receive, record)
        finally:
            logger.debug(
                "api call",
                extra={
                    "operation": operation_of(scope),
                    "method": scope.get("method"),
                    "status": status,
                    "duration_ms": round((time.perf_counter() - started) * 1000, 3),
                },
            )
