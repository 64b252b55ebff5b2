"""Followers answer every call by forwarding it to the leader, so that any server answers any call.

The request goes on as it came (method, raw path, query, headers with the client's ``Host``, body),
so a SigV4 signature made for this server's address verifies on the leader, and the leader's answer
comes back as it was sent. Only ``/health`` (and ``/health/cluster``) are answered here.

A call that cannot reach the leader (connection refused: it died, nothing was sent) waits for the
next leader, which may be this server, and goes there; one that fails after it was sent is not
repeated (a SubmitJob may have been committed): the client gets 503 and decides, as botocore does.
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import time
from collections.abc import AsyncIterator

import httpx
from starlette.types import ASGIApp, Receive, Scope, Send

from openbatch.api.asgi_body import read_body, replay
from openbatch.api.errors import error_response
from openbatch.cluster.leadership import Leadership

logger = logging.getLogger(__name__)

FORWARDED = b"x-openbatch-forwarded"
_XFF = b"x-forwarded-for"
_HOP_BY_HOP = frozenset(
    {
        b"connection",
        b"keep-alive",
        b"proxy-authenticate",
        b"proxy-authorization",
        b"te",
        b"trailer",
        b"trailers",
        b"transfer-encoding",
        b"upgrade",
        b"content-length",
    }
)


class Forwarding:
    """ASGI middleware: serve here when this server leads, else forward to the leader."""

    def __init__(self, app: ASGIApp, leadership: Leadership, *, wait_seconds: float = 30.0) -> None:
        self.app = app
        self.leadership = leadership
        self.wait_seconds = wait_seconds
        self._client: httpx.AsyncClient | None = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or self.leadership.leads or scope["path"].startswith("/health"):
            await self.app(_as_forwarded(scope), receive, send)
            return
        body = await read_body(receive)
        # The client's own X-Forwarded-For is dropped: the leader reads this server's, and trusts it.
        headers = [(k, v) for k, v in scope["headers"] if k.lower() not in _HOP_BY_HOP and k.lower() != _XFF]
        if any(k.lower() == FORWARDED for k, _ in headers):
            # Sent here by a server that took this one for the leader: never passed on again.
            await _unavailable("This server does not run the scheduler now; retry", scope, receive, send)
            return
        client = scope.get("client")
        headers.append((_XFF, (client[0] if client else "").encode()))
        headers.append((FORWARDED, b"1"))
        deadline = time.monotonic() + self.wait_seconds
        while True:
            if self.leadership.leads:
                await self.app(scope, replay(body, receive), send)
                return
            url = self.leadership.leader_url
            if url is not None:
                try:
                    response = await self._forward(url, scope, headers, body)
                except httpx.ConnectError:
                    pass  # nothing was sent: wait for the next leader
                except httpx.HTTPError as exc:
                    await _unavailable(f"The leading server did not answer: {exc}", scope, receive, send)
                    return
                else:
                    await _relay(response, receive, send)
                    return
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                await _unavailable("No server runs the scheduler now; retry", scope, receive, send)
                return
            await self.leadership.changed(min(remaining, 1.0))

    async def _forward(
        self, base: str, scope: Scope, headers: list[tuple[bytes, bytes]], body: bytes
    ) -> httpx.Response:
        """Send the call to the leader; return once its answer's status and headers are in."""
        if self._client is None:
            self._client = httpx.AsyncClient(timeout=httpx.Timeout(120.0, connect=5.0))
        path = scope.get("raw_path") or scope["path"].encode()
        query = scope.get("query_string") or b""
        target = base + path.decode("latin-1") + ("?" + query.decode("latin-1") if query else "")
        request = self._client.build_request(
            scope["method"],
            target,
            headers=[(k.decode("latin-1"), v.decode("latin-1")) for k, v in headers],
            content=body,
        )
        return await self._client.send(request, stream=True)


def _as_forwarded(scope: Scope) -> Scope:
    """A forwarded call comes from a follower's address, often loopback: it must not get what callers on
    this host get unsigned (``/metrics``, task metadata). Its client is the original one, or none."""
    headers = dict(scope.get("headers") or ())
    if FORWARDED not in headers:
        return scope
    original = headers.get(_XFF, b"").decode("latin-1").split(",")[0].strip()
    try:
        trusted = not ipaddress.ip_address(original).is_loopback
    except ValueError:
        trusted = False
    return {**scope, "client": (original if trusted else "forwarded", 0)}


async def _relay(response: httpx.Response, receive: Receive, send: Send) -> None:
    """The leader's answer as it comes (an event stream included), until it ends or the client leaves."""
    streaming = asyncio.ensure_future(_stream(response, send))
    gone = asyncio.ensure_future(_disconnected(receive))
    try:
        await asyncio.wait({streaming, gone}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in (streaming, gone):
            task.cancel()
        await asyncio.gather(streaming, gone, return_exceptions=True)
        await response.aclose()


async def _stream(response: httpx.Response, send: Send) -> None:
    reply = [(k.lower(), v) for k, v in response.headers.raw if k.lower() not in _HOP_BY_HOP and k.lower() != b"date"]
    await send({"type": "http.response.start", "status": response.status_code, "headers": reply})
    try:
        async for chunk in _chunks(response):
            await send({"type": "http.response.body", "body": chunk, "more_body": True})
    except httpx.HTTPError as exc:
        # Cut off midway (the leader died): the status is sent already, so the answer just ends short.
        logger.warning("the leader's answer was cut off: %s", exc)
    await send({"type": "http.response.body", "body": b"", "more_body": False})


async def _disconnected(receive: Receive) -> None:
    while (await receive())["type"] != "http.disconnect":
        pass


async def _chunks(response: httpx.Response) -> AsyncIterator[bytes]:
    async for chunk in response.aiter_raw():
        if chunk:
            yield chunk


async def _unavailable(message: str, scope: Scope, receive: Receive, send: Send) -> None:
    await error_response(503, "ServiceUnavailableException", message)(scope, receive, send)
