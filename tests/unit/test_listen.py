"""The server's pre-bound listening socket."""

from __future__ import annotations

import socket

from openbatch.server import listen


def test_listening_socket_is_tcp_so_connections_get_nodelay() -> None:
    # asyncio turns Nagle's algorithm off only for sockets whose protocol is TCP; with proto 0
    # each response waited for the client's delayed ACK (about 40 ms a request).
    sock = listen("127.0.0.1", 0)
    try:
        assert sock.proto == socket.IPPROTO_TCP
        client = socket.create_connection(sock.getsockname())
        accepted, _ = sock.accept()
        try:
            assert accepted.proto == socket.IPPROTO_TCP
        finally:
            accepted.close()
            client.close()
    finally:
        sock.close()
