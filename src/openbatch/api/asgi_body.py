"""Reading a request's body in an ASGI middleware, then handing it on unchanged.

Middlewares that must see the body before the app (signature checks, forwarding to the
leader) read it once here and give the app a ``receive`` that replays it.
"""

from __future__ import annotations

from starlette.types import Message, Receive


class BodyTooLarge(Exception):
    """The body passed ``max_bytes``."""


async def read_body(receive: Receive, max_bytes: int | None = None) -> bytes:
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] != "http.request":
            break
        chunk = message.get("body", b"")
        size += len(chunk)
        if max_bytes is not None and size > max_bytes:
            raise BodyTooLarge
        chunks.append(chunk)
        if not message.get("more_body", False):
            break
    return b"".join(chunks)


def replay(body: bytes, receive: Receive) -> Receive:
    """The body read already, then the client's own messages (a disconnect)."""
    sent = False

    async def replay_body() -> Message:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return replay_body
