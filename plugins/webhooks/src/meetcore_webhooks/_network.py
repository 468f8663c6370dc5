"""Where a webhook may be sent: public addresses, and the networks the operator allows.

A room's `endPoint` is chosen by whoever creates the room, so the server must not be
made to POST into its own network (server-side request forgery): to itself, to a cloud
metadata service (169.254.169.254), to a database on a private address. The check is
made on the address the request really goes to, when it goes:

- `Guard`, the network backend of the delivering connection pool, resolves the host
  once (`resolve`), checks every address it resolves to (`refusal`), and connects to
  exactly those checked addresses, never resolving again: a name that resolves to a
  public address when it is checked and to 127.0.0.1 when it is used (DNS rebinding)
  gains nothing. TLS is then started by httpcore for the URL's own host name, so the
  `Host` header, SNI and certificate verification are the hostname's, as usual.
- `check_destination` refuses what is never sent: other schemes than http(s), user
  info, a URL that does not parse.

Refusals raise `Refused`; the worker parks such a delivery at once (no retries).
Redirects are not followed at all (httpx's default, kept by the worker).
"""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import AsyncIterator, Iterable, Sequence
from typing import Final

import anyio
import httpcore
import httpx

__all__ = [
    "Guard",
    "IPAddress",
    "IPNetwork",
    "Refused",
    "check_destination",
    "parse_networks",
    "refusal",
    "resolve",
    "transport",
]

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network


class Refused(Exception):
    """A webhook destination this server does not send to (one line, why)."""


def _networks(*cidrs: str) -> tuple[IPNetwork, ...]:
    return tuple(ipaddress.ip_network(cidr) for cidr in cidrs)


#: Address kinds never sent to unless allowed, first match names the refusal.
_KINDS: Final = (
    ("unspecified", _networks("0.0.0.0/8", "::/128")),  # Linux connects 0.0.0.0 to itself
    ("loopback", _networks("127.0.0.0/8", "::1/128")),
    ("link-local", _networks("169.254.0.0/16", "fe80::/10")),
    (
        "private",
        _networks(
            "10.0.0.0/8",
            "172.16.0.0/12",
            "192.168.0.0/16",
            "100.64.0.0/10",
            "fc00::/7",
            "fec0::/10",
        ),
    ),
    ("multicast", _networks("224.0.0.0/4", "ff00::/8")),
    ("reserved", _networks("240.0.0.0/4")),  # 255.255.255.255 (broadcast) included
)
#: NAT64's well-known prefix: its addresses reach the IPv4 address in their last 32 bits.
_NAT64: Final = ipaddress.IPv6Network("64:ff9b::/96")


def _forms(address: IPAddress) -> list[IPAddress]:
    """The addresses a connection to `address` reaches: an IPv4-mapped IPv6 address *is*
    its IPv4 address; a NAT64 or 6to4 address also reaches the IPv4 address inside it."""
    if isinstance(address, ipaddress.IPv4Address):
        return [address]
    if address.ipv4_mapped is not None:
        return [address.ipv4_mapped]
    if address in _NAT64:
        return [ipaddress.IPv4Address(int(address) & 0xFFFFFFFF), address]
    if address.sixtofour is not None:
        return [address.sixtofour, address]
    return [address]


def _kind(address: IPAddress) -> str | None:
    for kind, networks in _KINDS:
        if any(address in network for network in networks):
            return kind
    if address.is_reserved or not address.is_global:  # documentation, benchmarking...
        return "non-public"
    return None


def refusal(address: IPAddress, allowed: Sequence[IPNetwork] = ()) -> str | None:
    """Why a webhook may not be sent to `address`, e.g. "a loopback address"; None when
    it may: a public address, or one in an `allowed` network."""
    forms = _forms(address)
    if any(form in network for form in forms for network in allowed):
        return None
    for form in forms:
        kind = _kind(form)
        if kind is not None:
            shown = "" if form == address else f" ({form})"
            return f"a{'n' if kind[0] in 'aeiou' else ''} {kind} address{shown}"
    return None


def parse_networks(values: Iterable[str]) -> tuple[IPNetwork, ...]:
    """CIDR blocks (`10.0.0.0/8`, `fd00::/8`; a bare address is one address); a
    `ValueError` with one line for a bad one."""
    networks: list[IPNetwork] = []
    for value in values:
        try:
            networks.append(ipaddress.ip_network(value.strip()))
        except ValueError as error:
            raise ValueError(f"{value.strip()[:60]!r} is not a network: {error}") from None
    return tuple(networks)


def check_destination(url: str) -> httpx.URL:
    """`url` parsed as it will be requested, or `Refused` when it is never sent to:
    not http(s), no host, user info (`user:password@`), or no valid URL at all."""
    try:
        parsed = httpx.URL(url)
    except httpx.InvalidURL as error:
        raise Refused(f"not a valid URL: {error}") from None
    if parsed.scheme not in ("http", "https"):
        raise Refused(f"{parsed.scheme or 'no'} scheme: webhooks go to http(s) URLs only")
    if not parsed.host:
        raise Refused("the URL has no host")
    if parsed.userinfo:
        raise Refused("the URL has user info (user:password@): not sent")
    return parsed


async def resolve(host: str, port: int) -> list[IPAddress]:
    """The addresses `host` resolves to, in the resolver's order (`host` may be an
    address itself). Tests replace this function to make names resolve as they like."""
    try:
        found = await anyio.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except OSError as error:  # socket.gaierror
        raise httpcore.ConnectError(f"cannot resolve {host}: {error.strerror or error}") from None
    addresses: list[IPAddress] = []
    for *_, sockaddr in found:
        address = ipaddress.ip_address(sockaddr[0])
        if address not in addresses:
            addresses.append(address)
    return addresses


def _is(host: str, address: IPAddress) -> bool:
    """Whether `host` is `address` written as usual (not a name, nor 2130706433...)."""
    try:
        return ipaddress.ip_address(host) == address
    except ValueError:
        return False


class Guard(httpcore.AsyncNetworkBackend):
    """httpcore's anyio network backend, connecting only to addresses `refusal` passes
    (see the module docstring)."""

    def __init__(self, allowed: Sequence[IPNetwork] = ()) -> None:
        self.allowed = tuple(allowed)
        self._backend = httpcore.AnyIOBackend()

    async def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Iterable[httpcore.SOCKET_OPTION] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        with anyio.move_on_after(timeout) as scope:
            addresses = await resolve(host, port)
        if scope.cancelled_caught:
            raise httpcore.ConnectTimeout(f"cannot resolve {host} within {timeout:g} s")
        for address in addresses:
            why = refusal(address, self.allowed)
            if why is not None:
                named = f"{host} is" if _is(host, address) else f"{host} is {address},"
                raise Refused(f"{named} {why}")
        failure = httpcore.ConnectError(f"{host} resolves to no address")
        for address in addresses:  # every one checked; connect to one of them, as it is
            try:
                return await self._backend.connect_tcp(
                    str(address), port, timeout, local_address, socket_options
                )
            except httpcore.ConnectError as error:
                failure = error
        raise failure

    async def connect_unix_socket(
        self,
        path: str,
        timeout: float | None = None,
        socket_options: Iterable[httpcore.SOCKET_OPTION] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        raise Refused("webhooks are not sent to Unix sockets")

    async def sleep(self, seconds: float) -> None:
        await self._backend.sleep(seconds)


class _Body(httpx.AsyncByteStream):
    """An httpcore response body, as httpx reads one."""

    def __init__(self, response: httpcore.Response) -> None:
        self._response = response

    async def __aiter__(self) -> AsyncIterator[bytes]:
        async for chunk in self._response.aiter_stream():
            yield chunk

    async def aclose(self) -> None:
        await self._response.aclose()


class _Transport(httpx.AsyncBaseTransport):
    """httpx over an httpcore pool with a network backend of our own (httpx's own
    transport takes none): what httpx's `AsyncHTTPTransport` does, without proxies."""

    def __init__(self, pool: httpcore.AsyncConnectionPool) -> None:
        self._pool = pool

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        assert isinstance(request.stream, httpx.AsyncByteStream)
        url = request.url
        response = await self._pool.handle_async_request(
            httpcore.Request(
                method=request.method,
                url=httpcore.URL(
                    scheme=url.raw_scheme, host=url.raw_host, port=url.port, target=url.raw_path
                ),
                headers=request.headers.raw,
                content=request.stream,
                extensions=request.extensions,
            )
        )
        return httpx.Response(
            status_code=response.status,
            headers=response.headers,
            stream=_Body(response),
            extensions=response.extensions,
        )

    async def aclose(self) -> None:
        await self._pool.aclose()


def transport(allowed: Sequence[IPNetwork], limits: httpx.Limits) -> httpx.AsyncBaseTransport:
    """An httpx transport that connects through `Guard(allowed)`, trusting httpx's
    default certificates (certifi, or `SSL_CERT_FILE` / `SSL_CERT_DIR`)."""
    pool = httpcore.AsyncConnectionPool(
        ssl_context=httpx.create_ssl_context(),
        max_connections=limits.max_connections,
        max_keepalive_connections=limits.max_keepalive_connections,
        keepalive_expiry=limits.keepalive_expiry,
        network_backend=Guard(allowed),
    )
    return _Transport(pool)
