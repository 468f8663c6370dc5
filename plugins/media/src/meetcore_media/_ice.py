"""ICE settings shared by the server and the client: servers and the addresses to gather.

aiortc (through aioice) gathers a host candidate on every address of every interface
except loopback, and asks Google's STUN server unless it is given a list of ICE
servers. meetcore passes its own list (empty by default: host candidates only, no
STUN, nothing leaves the machine to gather) and can restrict the addresses gathered
(`MEETCORE_ICE_ADDRESSES=127.0.0.1` on one machine, a server's public address behind
1:1 NAT...). A machine with no address but loopback gathers on 127.0.0.1 rather than
on nothing.

aioice has no per-connection option for the addresses: `gathering_on()` sets them for
the task that gathers (a context variable read by a wrapper installed once around
`aioice.ice.get_host_addresses`, which behaves as before wherever it is not set).

`quiet_closed_connects()` keeps a transport closed under aiortc's connect task from
printing a traceback (see there).

`read_in_batches(pc)` makes the event loop read up to `READ_BATCH` datagrams from a
peer connection's sockets each time it finds one readable. asyncio reads one datagram
per socket per turn of the loop: a server forwarding hundreds of streams takes tens of
milliseconds a turn, so a socket bringing a publisher's audio and video (60 packets a
second and more) fell behind until the kernel dropped what its buffer could not hold
(measured with `benchmarks/media.py --many 10 20`: three frames of four lost, none of
the server's CPU short). It also asks the kernel for `RECEIVE_BUFFER` bytes of receive
buffer per socket (capped by `net.core.rmem_max`): the default 208 KiB holds about 90
datagrams, a fifth of a second of a busy socket, so a process the scheduler left
waiting that long (two cores shared by a server and fifty clients) lost packets.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import logging
import os
import socket
from collections.abc import Iterator, Mapping, Sequence
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from aiortc import RTCConfiguration, RTCPeerConnection

__all__ = [
    "ADDRESSES_ENV",
    "SERVERS_ENV",
    "IceServer",
    "addresses_from_env",
    "configuration",
    "gathering_on",
    "quiet_closed_connects",
    "read_gatherer_in_batches",
    "read_in_batches",
    "servers_from_env",
]

log = logging.getLogger(__name__)

#: Comma-separated addresses to gather host candidates on (default: every interface).
ADDRESSES_ENV = "MEETCORE_ICE_ADDRESSES"
#: Comma-separated STUN/TURN URLs for the server (default: none).
SERVERS_ENV = "MEETCORE_ICE_SERVERS"

#: An ICE server: a URL ("stun:host:3478") or a browser-style dict with `urls`,
#: `username`, `credential`.
IceServer = str | Mapping[str, Any]

_addresses: contextvars.ContextVar[tuple[str, ...] | None] = contextvars.ContextVar(
    "meetcore_ice_addresses", default=None
)
_installed = False
#: Datagrams read from a media socket at most each time the loop finds it readable.
READ_BATCH = 8
#: Bytes of kernel receive buffer asked for each media socket (Linux counts about
#: 2.3 KiB per full-size datagram: some 450 of them).
RECEIVE_BUFFER = 1024 * 1024


def _split(value: str) -> tuple[str, ...]:
    return tuple(part.strip() for part in value.split(",") if part.strip())


def addresses_from_env() -> tuple[str, ...] | None:
    """The addresses `MEETCORE_ICE_ADDRESSES` names, or None (every interface)."""
    value = os.environ.get(ADDRESSES_ENV, "")
    return _split(value) or None


def servers_from_env() -> tuple[str, ...]:
    """The ICE server URLs `MEETCORE_ICE_SERVERS` names (none by default)."""
    return _split(os.environ.get(SERVERS_ENV, ""))


def configuration(servers: Sequence[IceServer] | None) -> RTCConfiguration:
    """An aiortc configuration with exactly these ICE servers (none: host candidates)."""
    from aiortc import RTCConfiguration, RTCIceServer

    ice: list[RTCIceServer] = []
    for server in servers or ():
        if isinstance(server, str):
            ice.append(RTCIceServer(urls=server))
        else:
            ice.append(
                RTCIceServer(
                    urls=server["urls"],
                    username=server.get("username"),
                    credential=server.get("credential"),
                )
            )
    return RTCConfiguration(iceServers=ice)


def _install() -> None:
    global _installed
    if _installed:
        return
    import aioice.ice

    original = aioice.ice.get_host_addresses

    def get_host_addresses(use_ipv4: bool, use_ipv6: bool) -> list[str]:
        chosen = _addresses.get()
        if chosen is not None:
            return list(chosen)
        found: list[str] = original(use_ipv4, use_ipv6)
        return found or (["127.0.0.1"] if use_ipv4 else [])

    aioice.ice.get_host_addresses = get_host_addresses
    _installed = True


@contextlib.contextmanager
def gathering_on(addresses: Sequence[str] | None) -> Iterator[None]:
    """Gather host candidates on `addresses` (None: every interface) in this context:
    wrap `setLocalDescription`, which is where aiortc gathers."""
    _install()
    token = _addresses.set(tuple(addresses) if addresses is not None else None)
    try:
        yield
    finally:
        _addresses.reset(token)


def quiet_closed_connects() -> None:
    """Log at debug level, not as an error with a traceback, a transport closed under
    aiortc's connect task (on the running event loop, once).

    aiortc (1.16) starts a connection's transports in a task nobody awaits. If one of
    them is closed before the task reaches it (the connection closed: the participant
    left, the server shuts down), the task fails with `InvalidStateError:
    RTCIceTransport is closed`, and asyncio prints "Task exception was never
    retrieved" and the traceback when the task is freed (seen once in a full run of
    the suite, in a server's output). The closing itself is handled where it happens;
    everything else goes to the loop's handler as before.
    """
    loop = asyncio.get_running_loop()
    previous = loop.get_exception_handler()
    if getattr(previous, "quiets_closed_connects", False):
        return

    def handler(loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
        future = context.get("future")
        coroutine = future.get_coro() if isinstance(future, asyncio.Task) else None
        name = getattr(coroutine, "__qualname__", "")
        if name == "RTCPeerConnection.__connect" and _closed(context.get("exception")):
            log.debug("a media connection closed while connecting: %s", context["exception"])
        elif previous is not None:
            previous(loop, context)
        else:
            loop.default_exception_handler(context)

    handler.quiets_closed_connects = True  # type: ignore[attr-defined]
    loop.set_exception_handler(handler)


def _closed(error: object) -> bool:
    from aiortc.exceptions import InvalidStateError

    return isinstance(error, InvalidStateError) and "closed" in str(error)


def read_in_batches(pc: RTCPeerConnection) -> None:
    """Read the peer connection's UDP sockets `READ_BATCH` datagrams at a time (call it
    once it has gathered: after `setLocalDescription`). A socket already switched, a
    TURN relay, or an event loop that is not asyncio's selector loop is left as it is."""
    for transceiver in pc.getTransceivers():
        try:
            gatherer = transceiver.receiver.transport.transport.iceGatherer
        except AttributeError:  # aiortc changed: check_internals() says so
            return
        read_gatherer_in_batches(gatherer)


def read_gatherer_in_batches(gatherer: Any) -> None:
    """`read_in_batches` for the sockets of one `RTCIceGatherer` (once it has gathered)."""
    loop = asyncio.get_running_loop()
    if not isinstance(loop, asyncio.selector_events.BaseSelectorEventLoop):
        return
    try:
        protocols = list(gatherer._connection._protocols)
    except AttributeError:  # aiortc or aioice changed: check_internals() says so
        return
    for protocol in protocols:
        transport = getattr(protocol, "transport", None)
        if (
            isinstance(transport, _DatagramTransport)
            and not transport._conn_lost
            and not getattr(transport, "_meetcore_batched", False)
        ):
            with contextlib.suppress(OSError):
                transport._sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, RECEIVE_BUFFER)
            loop._remove_reader(transport._sock_fd)  # type: ignore[attr-defined]
            loop._add_reader(transport._sock_fd, _read_batch, transport)  # type: ignore[attr-defined]
            transport._meetcore_batched = True


_DatagramTransport = asyncio.selector_events._SelectorDatagramTransport  # type: ignore[attr-defined]


def _read_batch(transport: Any) -> None:
    """asyncio's `_SelectorDatagramTransport._read_ready`, up to READ_BATCH times."""
    for _ in range(READ_BATCH):
        if transport._conn_lost:
            return
        try:
            data, address = transport._sock.recvfrom(transport.max_size)
        except (BlockingIOError, InterruptedError):
            return
        except OSError as error:
            transport._protocol.error_received(error)
            return
        except (SystemExit, KeyboardInterrupt):
            raise
        except BaseException as error:
            transport._fatal_error(error, "Fatal read error on datagram transport")
            return
        transport._protocol.datagram_received(data, address)
