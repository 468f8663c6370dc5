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
"""

from __future__ import annotations

import contextlib
import contextvars
import os
from collections.abc import Iterator, Mapping, Sequence
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from aiortc import RTCConfiguration

__all__ = [
    "ADDRESSES_ENV",
    "SERVERS_ENV",
    "IceServer",
    "addresses_from_env",
    "configuration",
    "gathering_on",
    "servers_from_env",
]

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
