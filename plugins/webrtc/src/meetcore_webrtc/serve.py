"""`meetcore serve`: the meeting server on uvicorn, on SQLite by default, with zero setup.

On first start without any API key configured it creates a development key and
secret in `meetcore-keys.json` (readable only by its owner), so that
`meetcore token` in the same directory mints tokens the server accepts.

SIGINT or SIGTERM shut it down gracefully: every connected participant leaves
(1001) and sees it, the log is flushed, then the store closes.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import signal
import socket
from collections.abc import Iterator
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import anyio
import click
import uvicorn

from meetcore import Engine, StoreError
from meetcore_webrtc._http import MeetcoreH11
from meetcore_webrtc.app import Server

__all__ = ["serve"]

#: Largest WebSocket frame uvicorn reads at all; the signaling answers anything above
#: its own limit (64 KiB) with an error and keeps the connection.
WS_MAX_SIZE = 1 << 20


class _Uvicorn(uvicorn.Server):
    """uvicorn, told to let participants leave before it closes their sockets."""

    def __init__(self, config: uvicorn.Config, server: Server) -> None:
        super().__init__(config)
        self.meeting_server = server

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        # uvicorn's own re-raises the signal once it has shut down, which would end
        # the process with a KeyboardInterrupt before the engine closes its store.
        loop = asyncio.get_running_loop()
        for number in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(number, self.handle_exit, number, None)
        try:
            yield
        finally:
            for number in (signal.SIGINT, signal.SIGTERM):
                loop.remove_signal_handler(number)

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        await super().startup(sockets)
        for server in self.servers:
            for sock in server.sockets:
                host, port = sock.getsockname()[:2]
                click.echo(f"meetcore: serving on http://{host}:{port}", err=True)

    async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
        await self.meeting_server.close()
        await super().shutdown(sockets)


class UsageProblem(click.ClickException):
    """What the command line names cannot be used (a port, a store URL): exit 2."""

    exit_code = 2


def _without_password(url: str) -> str:
    """`url` as it may be printed: a password in it replaced by ***."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.replace(f":{parts.password}@", ":***@", 1)
    return urlunsplit(parts._replace(netloc=netloc))


def resume_secret() -> bytes:
    """The secret that signs resume tokens: from the API keys, so that every server
    sharing them (after a restart, or the nodes of a deployment) honours a resume."""
    from meetcore_jwt import load_keys

    keys = sorted(load_keys().items())
    material = "\n".join(f"{key}\t{secret}" for key, secret in keys).encode()
    return hashlib.sha256(b"meetcore resume tokens\n" + material).digest()


def listen(host: str, port: int) -> socket.socket:
    """A socket bound to (host, port), or `click.ClickException` saying why not.

    It is made with proto IPPROTO_TCP, not 0 as `socket.create_server` makes it: the
    sockets it accepts inherit it, and asyncio sets TCP_NODELAY only on sockets whose
    proto says TCP. Without it a reply written in two pieces waited for the client's
    delayed ACK, about 40 ms on every keep-alive request.
    """
    family = _family(host)
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if family == socket.AF_INET6:
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
        sock.bind((host, port))
        sock.listen(2048)
    except OSError as error:
        sock.close()
        reason = error.strerror or str(error)  # a gaierror's errno is not an errno
        raise UsageProblem(f"cannot listen on {host}:{port}: {reason}") from None
    return sock


def _family(host: str) -> socket.AddressFamily:
    return socket.AF_INET6 if ":" in host else socket.AF_INET


def _webhooks(allow_networks: tuple[str, ...] = ()) -> list[object]:
    """meetcore-webhooks' delivery, configured from the environment (`allow_networks`
    over it, when given), when it is installed."""
    try:
        from meetcore_webhooks import Webhooks
    except ImportError:
        if allow_networks:
            raise UsageProblem(
                "--webhook-allow-network needs meetcore-webhooks installed"
            ) from None
        return []
    # A bad MEETCORE_WEBHOOK_* or network is a ValueError: exit 2.
    if allow_networks:
        return [Webhooks.from_env(allow_networks=allow_networks)]
    return [Webhooks.from_env()]


async def run(
    *,
    sock: socket.socket,
    store: str,
    dev: bool,
    lease_ttl: float,
    plugins: list[object] | None = None,
    **uvicorn_options: Any,
) -> None:
    """Open the engine on `store` (with `plugins`; default: webhooks as the environment
    configures them) and serve on `sock` until SIGINT or SIGTERM."""
    plugins = _webhooks() if plugins is None else plugins
    async with Engine.open(store=store, lease_ttl=lease_ttl, plugins=plugins) as engine:
        server = Server(engine, dev=dev, secret=resume_secret())
        config = uvicorn.Config(
            server.app,
            lifespan="on",
            ws_max_size=WS_MAX_SIZE,
            ws_per_message_deflate=False,  # small JSON frames: compressing costs more than it saves
            http=MeetcoreH11,  # header timeout, no Content-Length with Transfer-Encoding
            log_level="warning",
            **uvicorn_options,
        )
        await _Uvicorn(config, server).serve(sockets=[sock])


@click.command()
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option(
    "--port", default=8700, show_default=True, type=click.IntRange(0, 65535), help="Port."
)
@click.option(
    "--store",
    default="sqlite:///meetcore.db",
    show_default=True,
    help="Event store URL (sqlite:///path, memory://, postgresql://...).",
)
@click.option("--dev", is_flag=True, help="Development mode: serve GET /get-token.")
@click.option(
    "--lease-ttl",
    default=15.0,
    show_default=True,
    type=click.FloatRange(0.2, 3600),
    help="Seconds a silent connection keeps its participant in the meeting.",
)
@click.option(
    "--webhook-allow-network",
    "webhook_networks",
    multiple=True,
    metavar="CIDR",
    help="A network webhooks may be sent to although it is not public, e.g. 10.0.0.0/8 "
    "(repeatable; default: public addresses only; MEETCORE_WEBHOOK_ALLOW_NETWORKS).",
)
def serve(
    host: str,
    port: int,
    store: str,
    dev: bool,
    lease_ttl: float,
    webhook_networks: tuple[str, ...],
) -> None:
    """Run the meeting server: REST rooms API, WebSocket signaling, on one event store."""
    from meetcore_jwt import DEFAULT_KEYS_FILE, KeysError, ensure_dev_keys, load_keys

    try:
        plugins = _webhooks(webhook_networks)
    except ValueError as error:
        raise UsageProblem(str(error)) from None
    try:
        if not load_keys():
            api_key, _ = ensure_dev_keys()
            click.echo(
                f"meetcore: created a development API key {api_key} in {DEFAULT_KEYS_FILE}",
                err=True,
            )
    except KeysError as error:
        raise UsageProblem(str(error)) from None
    sock = listen(host, port)
    shown = _without_password(store)
    click.echo(f"meetcore: store {shown}; get a token with: uv run meetcore token", err=True)
    if dev:
        host, port = sock.getsockname()[:2]
        click.echo(f"meetcore: development mode: GET http://{host}:{port}/get-token", err=True)
    try:
        anyio.run(
            lambda: run(sock=sock, store=store, dev=dev, lease_ttl=lease_ttl, plugins=plugins)
        )
    except (StoreError, ValueError) as error:
        raise UsageProblem(str(error)) from None
    finally:
        sock.close()
