"""Helpers of the webhook tests: a real HTTP receiver on 127.0.0.1, and an engine on a
SQLite file that delivers to it (loopback allowed explicitly: `LOOPBACK`).

The receiver is a small HTTP/1.1 server (asyncio streams, keep-alive) that records every
request it answers; per path it can answer with another status, or slowly, or redirect,
and it can be stopped and started again on the same port (an endpoint that is down for
a while). It may listen on another loopback address, and speak TLS (`tls_pair`).
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import ssl
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any

import anyio
import click
import msgspec
from click.testing import CliRunner, Result
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

import meetcore_sqlite
import meetcore_webhooks.plugin
from meetcore import Engine, plugin_manager
from meetcore.cli import build_cli
from meetcore.commands import InitMeeting, Join, Leave, Webhook
from meetcore_webhooks import WebhookBody, Webhooks
from meetcore_webhooks._state import STATE, State, decode_state

API_KEY = "test-key"
SECRET = "test-secret-0123456789abcdef0123"
#: Tiny delays, so that retries and parking take milliseconds.
FAST: dict[str, Any] = {
    "base_delay": 0.01,
    "max_delay": 0.05,
    "timeout": 0.5,
    "poll_interval": 0.05,
    "lease_ttl": 1.0,
}
#: The receivers listen on loopback addresses, which webhooks are not sent to unless allowed.
LOOPBACK = ("127.0.0.0/8",)


@dataclass
class Received:
    """One request the receiver answered."""

    path: str
    headers: dict[str, str]
    body: bytes
    status: int
    at: float

    @property
    def webhook(self) -> WebhookBody:
        return msgspec.json.decode(self.body, type=WebhookBody)


@dataclass
class Receiver:
    """The HTTP receiver (see the module docstring)."""

    port: int = 0
    host: str = "127.0.0.1"
    #: Serve HTTPS with this context (`tls_pair`); the names clients asked for (SNI)
    #: are in `server_names`.
    tls: ssl.SSLContext | None = None
    received: list[Received] = field(default_factory=list)
    #: path -> status to answer (default 200)
    status: dict[str, int] = field(default_factory=dict)
    #: path -> seconds to wait before answering
    delay: dict[str, float] = field(default_factory=dict)
    #: path -> where to redirect (302) instead
    redirect: dict[str, str] = field(default_factory=dict)
    server_names: list[str | None] = field(default_factory=list)
    _server: asyncio.Server | None = None
    _writers: set[asyncio.StreamWriter] = field(default_factory=set)

    def url(self, path: str = "/hook", host: str | None = None) -> str:
        """The receiver's URL for `path`, by its address or by the `host` name given."""
        scheme = "https" if self.tls is not None else "http"
        return f"{scheme}://{host or self.host}:{self.port}{path}"

    async def start(self) -> None:
        if self.tls is not None:
            self.tls.sni_callback = lambda _sock, name, _ctx: self.server_names.append(name)
        self._server = await asyncio.start_server(self._handle, self.host, self.port, ssl=self.tls)
        self.port = self._server.sockets[0].getsockname()[1]

    async def stop(self) -> None:
        """Stop listening and drop every open connection: the endpoint is down."""
        if self._server is not None:
            self._server.close()
            for writer in list(self._writers):
                writer.close()
            await self._server.wait_closed()
            self._server = None

    def accepted(self, path: str | None = None) -> list[Received]:
        """The requests answered 2xx (for `path`), in the order they came."""
        return [
            r for r in self.received if 200 <= r.status < 300 and (path is None or r.path == path)
        ]

    def bodies(self, path: str | None = None) -> list[WebhookBody]:
        """The webhooks accepted (for `path`), each once (first time), in order."""
        seen: set[str] = set()
        out: list[WebhookBody] = []
        for request in self.accepted(path):
            body = request.webhook
            if body.webhook_id not in seen:
                seen.add(body.webhook_id)
                out.append(body)
        return out

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._writers.add(writer)
        try:
            while True:
                line = await reader.readline()
                if not line:
                    return
                _, path, _ = line.decode().split(" ", 2)
                headers: dict[str, str] = {}
                while (header := await reader.readline()) not in (b"\r\n", b"\n", b""):
                    name, _, value = header.decode().partition(":")
                    headers[name.strip().lower()] = value.strip()
                body = await reader.readexactly(int(headers.get("content-length", "0")))
                delay = self.delay.get(path, 0.0)
                if delay:
                    await asyncio.sleep(delay)
                status = 302 if path in self.redirect else self.status.get(path, 200)
                self.received.append(Received(path, headers, body, status, time.monotonic()))
                location = f"location: {self.redirect[path]}\r\n" if path in self.redirect else ""
                writer.write(
                    f"HTTP/1.1 {status} X\r\n{location}content-length: 2\r\n\r\nok".encode()
                )
                await writer.drain()
        except (ConnectionError, asyncio.IncompleteReadError, ssl.SSLError):
            return
        finally:
            self._writers.discard(writer)
            writer.close()


def webhooks(**options: Any) -> Webhooks:
    """A `Webhooks` with the test key, tiny delays, and the receivers' loopback allowed."""
    return Webhooks(
        api_key=API_KEY, secret=SECRET, **(FAST | {"allow_networks": LOOPBACK} | options)
    )


def tls_pair(name: str, directory: str) -> tuple[ssl.SSLContext, str]:
    """A server context with a certificate for the DNS name `name` only (no address),
    issued by a fresh CA, and the path of that CA's certificate (for SSL_CERT_FILE)."""
    now = datetime.datetime.now(datetime.UTC)
    valid = (now - datetime.timedelta(hours=1), now + datetime.timedelta(hours=1))

    def certificate(
        subject: str, key: ec.EllipticCurvePrivateKey, issuer: str, signer: Any, ca: bool
    ) -> x509.Certificate:
        builder = (
            x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)]))
            .issuer_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, issuer)]))
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(valid[0])
            .not_valid_after(valid[1])
            .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), False)
        )
        if ca:
            usage = x509.KeyUsage(False, False, False, False, False, True, True, False, False)
            builder = builder.add_extension(usage, critical=True)
        else:
            builder = builder.add_extension(
                x509.SubjectAlternativeName([x509.DNSName(name)]), False
            )
            builder = builder.add_extension(
                x509.AuthorityKeyIdentifier.from_issuer_public_key(signer.public_key()), False
            )
        return builder.sign(signer, hashes.SHA256())

    ca_key, key = ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(ec.SECP256R1())
    ca = certificate("meetcore test CA", ca_key, "meetcore test CA", ca_key, True)
    leaf = certificate(name, key, "meetcore test CA", ca_key, False)
    pem = serialization.Encoding.PEM
    ca_file, chain = f"{directory}/ca.pem", f"{directory}/{name}.pem"
    with open(ca_file, "wb") as out:
        out.write(ca.public_bytes(pem))
    with open(chain, "wb") as out:
        out.write(leaf.public_bytes(pem))
        out.write(
            key.private_bytes(pem, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
        )
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(chain)
    return context, ca_file


@contextlib.asynccontextmanager
async def engine_with(store: str, hooks: Webhooks | None) -> AsyncIterator[Engine]:
    """An engine on `store` (SQLite) delivering with `hooks`, no installed plugin."""
    plugins: list[object] = [meetcore_sqlite]
    if hooks is not None:
        plugins.append(hooks)
    async with Engine.open(store, plugins=plugins, autoload=False, sweep_leases=False) as engine:
        yield engine


async def wait_until(condition: Callable[[], bool], timeout: float = 5.0) -> None:
    """Poll `condition` until it holds; fail after `timeout` seconds."""
    with anyio.fail_after(timeout):
        while not condition():
            await anyio.sleep(0.01)


async def room(engine: Engine, room_id: str, url: str | None, events: tuple[str, ...] = ()) -> None:
    hook = None if url is None else Webhook(end_point=url, events=events)
    await engine.execute(InitMeeting(meeting_id=room_id, webhook=hook))


async def join(engine: Engine, room_id: str, who: str, session: str = "s-1") -> None:
    await engine.execute(
        Join(
            meeting_id=room_id,
            participant_id=who,
            connection_id=f"c-{who}",
            session_id=session,
            name=f"Name of {who}",
        )
    )


async def leave(engine: Engine, room_id: str, who: str) -> None:
    await engine.execute(Leave(meeting_id=room_id, participant_id=who, connection_id=f"c-{who}"))


async def saved_state(store: str) -> State:
    """The delivery state as saved in the SQLite file `store` names, read beside the engine."""
    sqlite = meetcore_sqlite.open_url(store)
    try:
        return decode_state(await sqlite.load_checkpoint(STATE))
    finally:
        await sqlite.close()


def cli() -> click.Group:
    """`meetcore` with the SQLite and webhooks plugins only."""
    return build_cli(plugin_manager([meetcore_sqlite, meetcore_webhooks.plugin], autoload=False))


async def run_cli(*args: str) -> Result:
    """Run `meetcore ARGS` in a thread (the command runs its own event loop)."""
    return await anyio.to_thread.run_sync(
        lambda: CliRunner().invoke(cli(), list(args), prog_name="meetcore")
    )


async def wait_saved(store: str, condition: Callable[[State], bool], timeout: float = 5.0) -> State:
    """Poll the saved delivery state until `condition` holds; returns it."""
    with anyio.fail_after(timeout):
        while not condition(state := await saved_state(store)):
            await anyio.sleep(0.02)
    return state
