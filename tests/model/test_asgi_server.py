"""The shared uvicorn runner's socket: what both servers' latency depends on."""

from __future__ import annotations

import socket

from ganops.model.asgi_server import bind


def test_the_listening_socket_disables_nagle_for_every_connection() -> None:
    # h11 writes a response's head and body in two writes; with Nagle on, the body waits for
    # the client's delayed ACK (~40 ms per keep-alive request, measured by bench/serving.py).
    server = bind("127.0.0.1", 0)
    try:
        assert server.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY) != 0
        client = socket.create_connection(server.getsockname()[:2])
        accepted, _ = server.accept()
        with client, accepted:
            assert accepted.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY) != 0
    finally:
        server.close()
