"""Request limits as ASGI middleware: a body size cap and a bound on requests in flight.

Both are answered before any route runs, in AWS's JSON error shape:

* a body over ``max_body_bytes`` gets HTTP 413 ``ClientException``. The
  declared ``Content-Length`` is checked first, and the body is read in the
  server's chunks and given up on as soon as the cap is passed, so a 10 MB
  body never sits in memory. uvicorn stops reading the socket while the app is
  not receiving (flow control), so what the client has not sent yet stays in
  the kernel's buffers.
* beyond ``max_concurrent`` requests in flight, a request gets HTTP 429
  ``TooManyRequestsException`` at once. botocore retries both (status 429 in
  its legacy mode, the error code in its standard and adaptive modes), so a
  flooding client slows down instead of growing a queue in the server.

Memory is then bounded by about ``max_concurrent × max_body_bytes`` plus what
the routes build from those bodies.
"""

from __future__ import annotations

import asyncio
import ctypes
import ctypes.util
import json
import time
import uuid
from collections.abc import Callable, Iterable

from starlette.types import ASGIApp, Receive, Scope, Send

from openbatch.api.asgi_body import BodyTooLarge, read_body, replay

DEFAULT_MAX_BODY_BYTES = 1024 * 1024
"""1 MiB: AWS Batch's largest documented request, a SubmitJob with its overrides, is far smaller."""
DEFAULT_MAX_CONCURRENT_REQUESTS = 256
"""Enough for many clients waiting on SubmitJob's group commit; small enough to bound memory."""
LARGE_BODY_BYTES = 256 * 1024
TRIM_INTERVAL_SECONDS = 1.0


def malloc_trim() -> Callable[[], None] | None:
    """glibc's ``malloc_trim(0)``: hands freed heap pages back to the system (elsewhere: nothing)."""
    name = ctypes.util.find_library("c")
    if name is None:
        return None
    try:
        trim = ctypes.CDLL(name).malloc_trim
    except (OSError, AttributeError):
        return None
    trim.argtypes = [ctypes.c_size_t]
    trim.restype = ctypes.c_int

    def run() -> None:
        trim(0)

    return run


class RequestLimits:
    """Wraps the application; ``exempt`` paths (health checks) are never limited."""

    def __init__(
        self,
        app: ASGIApp,
        *,
        max_body_bytes: int = DEFAULT_MAX_BODY_BYTES,
        max_concurrent: int = DEFAULT_MAX_CONCURRENT_REQUESTS,
        exempt: Iterable[str] = ("/health",),
        shortcut: tuple[Callable[[Scope], bool], ASGIApp] | None = None,
    ) -> None:
        if max_body_bytes < 1 or max_concurrent < 1:
            raise ValueError("max_body_bytes and max_concurrent must be at least 1")
        self.app = app
        self.max_body_bytes = max_body_bytes
        self.max_concurrent = max_concurrent
        self.exempt = frozenset(exempt)
        self.shortcut = shortcut
        """(which requests, the app that serves them): taken past the wrapped app, once admitted and read.
        Only for a server whose middlewares inside this one have nothing to do for those requests."""
        self.in_flight = 0
        """Requests being handled now (one event loop: a plain counter needs no lock)."""
        self._trim = malloc_trim()
        self._large_bodies = False
        self._trimmed_at = 0.0
        self._trim_pending = False

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] in self.exempt:
            await self.app(scope, receive, send)
            return
        if self.in_flight >= self.max_concurrent:
            await _send_error(
                send,
                429,
                "TooManyRequestsException",
                f"Too many requests: the server is handling {self.max_concurrent} already; retry later",
            )
            return
        self.in_flight += 1
        try:
            await self._handle(scope, receive, send)
        finally:
            self.in_flight -= 1
            if self.in_flight == 0 and self._large_bodies:
                self._give_back_memory()

    def _give_back_memory(self) -> None:
        """After large bodies, once the server is idle: glibc keeps freed ~1 MiB blocks in its heap
        (its mmap threshold grows after the first ones are freed), so RSS would stay at the peak."""
        if self._trim is None or self._trim_pending or self.in_flight or not self._large_bodies:
            return
        wait = self._trimmed_at + TRIM_INTERVAL_SECONDS - time.monotonic()
        if wait > 0:
            # At most one trim a second: try again then, if still idle.
            self._trim_pending = True
            asyncio.get_running_loop().call_later(wait, self._retry_trim)
            return
        self._large_bodies = False
        self._trimmed_at = time.monotonic()
        self._trim()

    def _retry_trim(self) -> None:
        self._trim_pending = False
        self._give_back_memory()

    async def _handle(self, scope: Scope, receive: Receive, send: Send) -> None:
        declared = _content_length(scope)
        if declared == -1:
            await _send_error(send, 400, "ClientException", "The Content-Length header is not a valid number")
            return
        if declared is not None and declared > self.max_body_bytes:
            await self._too_large(send)
            return
        try:
            body = await read_body(receive, self.max_body_bytes)
        except BodyTooLarge:
            await self._too_large(send)
            return
        if len(body) >= LARGE_BODY_BYTES:
            self._large_bodies = True
        app = self.app
        if self.shortcut is not None and self.shortcut[0](scope):
            app = self.shortcut[1]
        # After the body only a disconnect can come; the route sees it through the replay.
        await app(scope, replay(body, receive), send)

    async def _too_large(self, send: Send) -> None:
        # The connection stays open: a client still sending would otherwise get a reset instead of
        # this answer. uvicorn reads and discards the rest of the body once the response is complete.
        await _send_error(
            send,
            413,
            "ClientException",
            f"The request body is larger than the server's limit of {self.max_body_bytes} bytes",
        )


def _content_length(scope: Scope) -> int | None:
    """The declared body length; ``None`` when absent, ``-1`` when malformed."""
    for name, value in scope.get("headers", []):
        if name == b"content-length":
            text = value.decode("latin-1").strip()
            return int(text) if text.isascii() and text.isdigit() else -1
    return None


async def _send_error(send: Send, status: int, error_type: str, message: str) -> None:
    body = json.dumps({"__type": error_type, "message": message}).encode()
    headers = [
        (b"content-type", b"application/json"),
        (b"content-length", str(len(body)).encode()),
        (b"x-amzn-requestid", str(uuid.uuid4()).encode()),
        (b"x-amzn-errortype", error_type.encode()),
    ]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})
