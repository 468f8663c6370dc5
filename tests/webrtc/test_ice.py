"""`_ice.quiet_closed_connects`: aiortc's unawaited connect task, failing on a transport
closed under it, is logged at debug level instead of printed with a traceback."""

from __future__ import annotations

import asyncio
import gc
import logging
import socket
from pathlib import Path
from typing import Any

import pytest
from aiortc.exceptions import InvalidStateError

from meetcore_media import MediaConfig, _ice
from meetcore_server.testing import serve_refuses


class RTCPeerConnection:
    """Stands for aiortc's: its connect task has the same name (`__qualname__`)."""

    def __init__(self, error: Exception) -> None:
        self.error = error

    async def __connect(self) -> None:
        raise self.error

    def connect(self) -> None:
        asyncio.ensure_future(self.__connect())  # noqa: RUF006 (as aiortc does: unawaited)


def _connecting(task: asyncio.Task[Any]) -> bool:
    return getattr(task.get_coro(), "__qualname__", "") == "RTCPeerConnection.__connect"


async def _unretrieved(error: Exception) -> None:
    """Let a connect task fail with `error`, and be freed without anyone asking."""
    RTCPeerConnection(error).connect()
    async with asyncio.timeout(5):  # until the task has run and failed
        while any(_connecting(task) for task in asyncio.all_tasks()):
            await asyncio.sleep(0)
    gc.collect()  # the task's finalizer reports the exception nobody retrieved
    await asyncio.sleep(0)


@pytest.mark.anyio
async def test_a_transport_closed_under_the_connect_task_is_not_an_error(
    caplog: pytest.LogCaptureFixture,
) -> None:
    loop = asyncio.get_running_loop()
    reported: list[dict[str, Any]] = []
    loop.set_exception_handler(lambda loop, context: reported.append(context))
    try:
        _ice.quiet_closed_connects()
        _ice.quiet_closed_connects()  # once per loop, however often it is called
        with caplog.at_level(logging.DEBUG, logger="meetcore_media._ice"):
            await _unretrieved(InvalidStateError("RTCIceTransport is closed"))
        assert reported == []
        assert "a media connection closed while connecting" in caplog.text
        # Anything else still reaches the loop's handler as before, exactly once.
        await _unretrieved(InvalidStateError("something else"))
        await _unretrieved(ValueError("RTCIceTransport is closed"))
        assert [str(context["exception"]) for context in reported] == [
            "something else",
            "RTCIceTransport is closed",
        ]
    finally:
        loop.set_exception_handler(None)


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"  # aiortc runs on asyncio


@pytest.mark.parametrize("batched", [False, True])
@pytest.mark.anyio
async def test_a_media_socket_is_read_in_batches(batched: bool) -> None:
    """200 datagrams wait on a peer connection's socket: asyncio reads one a turn of
    the loop; after `read_in_batches` a turn reads up to READ_BATCH of them."""
    import aiortc

    pc = aiortc.RTCPeerConnection(_ice.configuration([]))
    try:
        pc.addTransceiver("audio", direction="sendonly")
        with _ice.gathering_on(["127.0.0.1"]):
            await pc.setLocalDescription(await pc.createOffer())
        if batched:
            _ice.read_in_batches(pc)
            _ice.read_in_batches(pc)  # once is enough; twice changes nothing
        gatherer = pc.getTransceivers()[0].receiver.transport.transport.iceGatherer
        (protocol,) = gatherer._connection._protocols
        received: list[bytes] = []
        protocol.datagram_received = lambda data, address: received.append(data)
        sender = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        for n in range(200):
            sender.sendto(n.to_bytes(2, "big"), protocol.transport.get_extra_info("sockname"))
        sender.close()
        for _ in range(3):  # three turns of the loop
            await asyncio.sleep(0)
        if batched:
            assert _ice.READ_BATCH <= len(received) <= 3 * _ice.READ_BATCH
        else:
            assert 1 <= len(received) <= 3
        assert received == [n.to_bytes(2, "big") for n in range(len(received))]
    finally:
        await pc.close()


@pytest.mark.parametrize(
    ("name", "value", "says"),
    [
        ("MEETCORE_ICE_SERVERS", "notaurl", "MEETCORE_ICE_SERVERS: an ICE server is a stun:"),
        ("MEETCORE_ICE_SERVERS", "stun:", "not 'stun:'"),
        ("MEETCORE_ICE_SERVERS", "stun:ok.example.com,http://x", "not 'http://x'"),
        ("MEETCORE_ICE_ADDRESSES", "999.1.1.1", "MEETCORE_ICE_ADDRESSES: not an IP address"),
        ("MEETCORE_ICE_ADDRESSES", "x" * 5000, "not an IP address to gather on"),
    ],
)
def test_serve_refuses_a_wrong_ice_setting_in_one_line(
    tmp_path: Path, name: str, value: str, says: str
) -> None:
    """Not at the first offer, blaming the client's SDP, as it did."""
    line = serve_refuses(tmp_path, "--port", "0", "--store", "memory://", env={name: value})
    assert line.startswith("meetcore: error: "), line
    assert says in line, line
    assert len(line) < 400


def test_a_media_config_refuses_what_aiortc_cannot_use() -> None:
    MediaConfig(
        ice_servers=["stun:stun.example.com:3478", {"urls": ["turn:1.2.3.4?transport=tcp"]}]
    )
    with pytest.raises(ValueError, match="not 'stun:x y'"):
        MediaConfig(ice_servers=["stun:x y"])
    with pytest.raises(ValueError, match="not an IP address"):
        MediaConfig(addresses=["localhost"])
