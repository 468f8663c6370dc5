"""Helpers of the webhook tests: a real HTTP receiver on 127.0.0.1, and an engine on a
SQLite file that delivers to it.

The receiver is a small HTTP/1.1 server (asyncio streams, keep-alive) that records every
request it answers; per path it can answer with another status, or slowly, and it can
be stopped and started again on the same port (an endpoint that is down for a while).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any

import anyio
import click
import msgspec
from click.testing import CliRunner, Result

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
    received: list[Received] = field(default_factory=list)
    #: path -> status to answer (default 200)
    status: dict[str, int] = field(default_factory=dict)
    #: path -> seconds to wait before answering
    delay: dict[str, float] = field(default_factory=dict)
    _server: asyncio.Server | None = None
    _writers: set[asyncio.StreamWriter] = field(default_factory=set)

    def url(self, path: str = "/hook") -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._handle, "127.0.0.1", self.port)
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
                status = self.status.get(path, 200)
                self.received.append(Received(path, headers, body, status, time.monotonic()))
                writer.write(f"HTTP/1.1 {status} X\r\ncontent-length: 2\r\n\r\nok".encode())
                await writer.drain()
        except (ConnectionError, asyncio.IncompleteReadError):
            return
        finally:
            self._writers.discard(writer)
            writer.close()


def webhooks(**options: Any) -> Webhooks:
    """A `Webhooks` with the test key and tiny delays."""
    return Webhooks(api_key=API_KEY, secret=SECRET, **(FAST | options))


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
