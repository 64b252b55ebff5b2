"""The live job feed: committed job status changes, fanned out to server-sent event streams.

Each subscriber has a bounded queue. A subscriber that falls behind (a slow browser tab while
thousands of jobs change state) is not allowed to hold memory: its queue is cleared and it is sent
one ``resync`` event instead, after which it reads the current state through the APIs again.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import AsyncIterator, Sequence
from typing import Any

from starlette.requests import Request
from starlette.responses import Response, StreamingResponse

from openbatch.domain.job import StatusChange

logger = logging.getLogger(__name__)

MAX_BACKLOG = 256
"""Batches of changes one subscriber may have waiting before it is told to resync."""
HEARTBEAT_S = 15.0
"""A comment line this often keeps proxies from closing an idle stream and notices closed ones."""
MAX_SUBSCRIBERS = 256
RESYNC = "resync"
CLOSE = "close"


class _Subscriber:
    def __init__(self) -> None:
        self.queue: asyncio.Queue[str] = asyncio.Queue(MAX_BACKLOG)

    def offer(self, message: str) -> None:
        try:
            self.queue.put_nowait(message)
        except asyncio.QueueFull:
            self._replace_backlog(RESYNC)

    def close(self) -> None:
        self._replace_backlog(CLOSE)

    def _replace_backlog(self, message: str) -> None:
        while not self.queue.empty():
            self.queue.get_nowait()
        self.queue.put_nowait(message)


def _change(change: StatusChange) -> dict[str, Any]:
    job = change.job
    event: dict[str, Any] = {
        "jobId": change.job_id,
        "jobName": job.spec.job_name,
        "jobQueue": job.spec.queue,
        "status": change.new.value,
        "at": change.at,
    }
    if change.old is not None:
        event["previousStatus"] = change.old.value
    if job.parent_id is not None:
        event["arrayJobId"] = job.parent_id
        event["arrayIndex"] = job.array_index
    return event


class JobFeed:
    """Registered as an engine status listener; serves ``text/event-stream`` to each subscriber."""

    def __init__(self) -> None:
        self._subscribers: set[_Subscriber] = set()
        self._closed = False

    def close(self) -> None:
        """Ends every stream: called as the server begins to shut down, which would otherwise wait
        (``timeout_graceful_shutdown``) for streams that never end by themselves."""
        self._closed = True
        for subscriber in self._subscribers:
            subscriber.close()

    @property
    def subscribers(self) -> int:
        return len(self._subscribers)

    def on_status_changes(self, changes: Sequence[StatusChange]) -> None:
        if not self._subscribers:
            return
        message = "event: jobs\ndata: " + json.dumps([_change(c) for c in changes], separators=(",", ":")) + "\n\n"
        for subscriber in self._subscribers:
            subscriber.offer(message)

    async def endpoint(self, request: Request) -> Response:
        if self._closed:
            return Response(
                json.dumps({"__type": "ServiceUnavailableException", "message": "The server is shutting down"}),
                status_code=503,
                media_type="application/json",
            )
        if len(self._subscribers) >= MAX_SUBSCRIBERS:
            return Response(
                json.dumps({"__type": "TooManyRequestsException", "message": "Too many open job feeds"}),
                status_code=429,
                media_type="application/json",
            )
        subscriber = _Subscriber()
        self._subscribers.add(subscriber)
        return StreamingResponse(
            self._stream(subscriber),
            media_type="text/event-stream",
            headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"},
        )

    async def _stream(self, subscriber: _Subscriber) -> AsyncIterator[str]:
        try:
            # The retry hint and a first event let the page know the stream is up.
            yield "retry: 3000\nevent: ready\ndata: {}\n\n"
            while True:
                try:
                    message = await asyncio.wait_for(subscriber.queue.get(), HEARTBEAT_S)
                except TimeoutError:
                    yield ": heartbeat\n\n"
                    continue
                if message == CLOSE:
                    return
                yield message if message != RESYNC else "event: resync\ndata: {}\n\n"
        finally:
            self._subscribers.discard(subscriber)
