"""What a client that misbehaves at the HTTP level can cost: `meetcore_server._http`."""

from __future__ import annotations

import asyncio
import socket
import time
from collections.abc import Iterator
from contextlib import contextmanager

import pytest
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse
from starlette.routing import Route

from meetcore_server import serve
from meetcore_server._http import MeetcoreH11
from meetcore_server.testing import ServeProcess

TIMEOUT = 0.5  # the header timeout these tests give the server


class _Quick(MeetcoreH11):
    header_timeout = TIMEOUT


async def _echo(request: Request) -> PlainTextResponse:
    return PlainTextResponse(f"got {len(await request.body())} bytes")


@contextmanager
def _server() -> Iterator[tuple[str, int]]:
    """uvicorn with meetcore's protocol, in a thread, on a free loopback port."""
    import threading

    app = Starlette(routes=[Route("/", _echo, methods=["GET", "POST"])])
    sock = serve.listen("127.0.0.1", 0)
    server = uvicorn.Server(uvicorn.Config(app, http=_Quick, log_level="error", lifespan="off"))
    thread = threading.Thread(target=asyncio.run, args=(server.serve(sockets=[sock]),))
    thread.start()
    try:
        deadline = time.monotonic() + 10
        while not server.started and time.monotonic() < deadline:
            time.sleep(0.01)
        yield sock.getsockname()[:2]
    finally:
        server.should_exit = True
        thread.join(10)
        sock.close()


def _closed_after(address: tuple[str, int], pieces: list[bytes], wait: float = 5.0) -> float:
    """Send `pieces` (a pause between them), then the seconds until the server closes."""
    with socket.create_connection(address) as conn:
        for piece in pieces:
            conn.sendall(piece)
        start = time.monotonic()
        conn.settimeout(wait)
        while conn.recv(4096):
            pass
        return time.monotonic() - start


@pytest.mark.parametrize(
    "pieces",
    [[], [b"GET / HTTP/1.1\r\nHost: x\r\n"], [b"GET / HT"]],
    ids=["nothing sent", "half the headers", "half the request line"],
)
def test_a_client_that_does_not_finish_its_headers_is_closed(pieces: list[bytes]) -> None:
    with _server() as address:
        assert _closed_after(address, pieces) < TIMEOUT + 2  # socket.timeout otherwise


def test_headers_sent_slowly_but_in_time_are_served() -> None:
    with _server() as address, socket.create_connection(address) as conn:
        for piece in (b"GET / HTTP/1.1\r\n", b"Host: x\r\n", b"\r\n"):
            conn.sendall(piece)
            time.sleep(TIMEOUT / 5)
        conn.settimeout(5)
        assert conn.recv(4096).startswith(b"HTTP/1.1 200")


def test_a_body_may_take_longer_than_the_headers_timeout() -> None:
    with _server() as address, socket.create_connection(address) as conn:
        conn.sendall(b"POST / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n")
        conn.sendall(b"Content-Length: 4\r\n\r\nab")
        time.sleep(TIMEOUT * 2)
        conn.sendall(b"cd")
        assert _until_closed(conn).endswith(b"\r\n\r\ngot 4 bytes")


def test_the_next_request_on_a_keep_alive_connection_has_the_same_limit() -> None:
    with _server() as address, socket.create_connection(address) as conn:
        conn.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        conn.settimeout(5)
        reply = b""
        while not reply.endswith(b"got 0 bytes"):  # the whole first response
            reply += conn.recv(4096)
        assert reply.startswith(b"HTTP/1.1 200")
        conn.sendall(b"GET / HTTP/1.1\r\n")  # and never the rest
        start = time.monotonic()
        assert conn.recv(4096) == b""
        assert time.monotonic() - start < TIMEOUT + 2


def _ambiguous(port: int) -> bytes:
    with socket.create_connection(("127.0.0.1", port)) as conn:
        conn.sendall(
            b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n"
            b"Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n"
        )
        return _until_closed(conn)


def _until_closed(conn: socket.socket) -> bytes:
    conn.settimeout(5)
    reply = b""
    while chunk := conn.recv(4096):
        reply += chunk
    return reply


def test_content_length_with_transfer_encoding_is_refused() -> None:
    with _server() as (_, port):
        assert _ambiguous(port).startswith(b"HTTP/1.1 400")


def test_meetcore_serve_uses_these_limits(tmp_path: object) -> None:
    with ServeProcess(str(tmp_path), store="memory://") as server:
        server.wait_ready()
        port = int(server.url.rsplit(":", 1)[1])
        assert _ambiguous(port).startswith(b"HTTP/1.1 400")
