"""`meetcore serve`'s listening socket: what the sockets it accepts inherit."""

from __future__ import annotations

import asyncio
import socket

import pytest

from meetcore.cli import UsageProblem
from meetcore_server.serve import SEND_TIMEOUT, listen


def accepted_option(level: int, option: int) -> int:
    """The value of a socket option on a connection accepted by `listen()`'s socket."""
    sock = listen("127.0.0.1", 0)
    seen: list[int] = []

    async def main() -> None:
        def accepted(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            peer = writer.get_extra_info("socket")
            seen.append(peer.getsockopt(level, option))
            writer.close()

        server = await asyncio.start_server(accepted, sock=sock)
        async with server:
            _, writer = await asyncio.open_connection(*sock.getsockname()[:2])
            for _ in range(200):
                if seen:
                    break
                await asyncio.sleep(0.01)
            writer.close()

    asyncio.run(main())
    assert seen, "no connection accepted"
    return seen[0]


def test_accepted_sockets_have_tcp_nodelay() -> None:
    """asyncio sets TCP_NODELAY only where the socket's proto says TCP; with proto 0 a
    keep-alive reply in two writes waited ~40 ms for the client's delayed ACK."""
    assert accepted_option(socket.IPPROTO_TCP, socket.TCP_NODELAY) != 0


@pytest.mark.skipif(not hasattr(socket, "TCP_USER_TIMEOUT"), reason="Linux only")
def test_accepted_sockets_give_up_on_a_client_that_reads_nothing() -> None:
    """A client that stops reading (zero window) or vanishes is dropped by the kernel
    SEND_TIMEOUT seconds after the server's data stopped being acknowledged, so its
    connection and the task writing to it do not stay forever."""
    timeout = accepted_option(socket.IPPROTO_TCP, socket.TCP_USER_TIMEOUT)
    assert timeout == int(SEND_TIMEOUT * 1000)


@pytest.mark.parametrize(
    ("host", "port", "why"),
    [
        ("256.1.1.1", 0, "cannot listen on 256.1.1.1:0: "),
        ("no-such-host.invalid", 0, "cannot listen on no-such-host.invalid:0: "),
    ],
)
def test_an_address_that_cannot_be_used_is_one_line(host: str, port: int, why: str) -> None:
    with pytest.raises(UsageProblem) as caught:
        listen(host, port)
    assert caught.value.message.startswith(why)
    assert "Unknown error" not in caught.value.message


def test_a_port_in_use_is_one_line() -> None:
    first = listen("127.0.0.1", 0)
    try:
        with pytest.raises(UsageProblem, match="Address already in use"):
            listen("127.0.0.1", first.getsockname()[1])
    finally:
        first.close()
