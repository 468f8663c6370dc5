"""uvicorn's HTTP/1.1 protocol (h11), with the limits a server facing the internet needs.

- A connection must finish sending a request's headers within `HEADER_TIMEOUT` seconds
  of connecting or of its previous response, else it is closed: without this a bare TCP
  connection, or one that sends half its headers, stayed open for as long as its peer
  liked (uvicorn times out only idle keep-alive connections, after a response).
- A request with both `Content-Length` and `Transfer-Encoding` is refused with 400 and
  the connection closed (RFC 9112 section 6.1: the framing is ambiguous, the classic
  request-smuggling vector when a proxy in front reads it the other way).
"""

from __future__ import annotations

import asyncio
from typing import Any

import h11
from uvicorn.config import Config
from uvicorn.protocols.http.h11_impl import H11Protocol
from uvicorn.server import ServerState

__all__ = ["HEADER_TIMEOUT", "MeetcoreH11"]

#: Seconds a client has to send a request's headers (slowloris guard).
HEADER_TIMEOUT = 10.0


class _StrictConnection(h11.Connection):
    """h11's server side, refusing a request that gives its length two ways."""

    def next_event(self) -> Any:
        event = super().next_event()
        if isinstance(event, h11.Request):
            names = {name.lower() for name, _ in event.headers}
            if b"content-length" in names and b"transfer-encoding" in names:
                raise h11.RemoteProtocolError("both Content-Length and Transfer-Encoding")
        return event


class MeetcoreH11(H11Protocol):
    """`uvicorn.Config(http=MeetcoreH11)`: see the module's docstring."""

    header_timeout = HEADER_TIMEOUT

    def __init__(
        self,
        config: Config,
        server_state: ServerState,
        app_state: dict[str, Any],
        _loop: asyncio.AbstractEventLoop | None = None,
    ) -> None:
        super().__init__(config, server_state, app_state, _loop)
        limit = config.h11_max_incomplete_event_size
        self.conn = _StrictConnection(h11.SERVER, *([] if limit is None else [limit]))
        self._header_timer: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._await_headers()

    def connection_lost(self, exc: Exception | None) -> None:
        self._headers_arrived()
        super().connection_lost(exc)

    def handle_events(self) -> None:
        super().handle_events()
        if self.conn.their_state is not h11.IDLE:  # a request's headers are in
            self._headers_arrived()

    def on_response_complete(self) -> None:
        super().on_response_complete()
        if not self.transport.is_closing() and self.conn.their_state is h11.IDLE:
            self._await_headers()  # the next request on this connection

    def _await_headers(self) -> None:
        self._headers_arrived()
        self._header_timer = self.loop.call_later(self.header_timeout, self._headers_too_slow)

    def _headers_arrived(self) -> None:
        if self._header_timer is not None:
            self._header_timer.cancel()
            self._header_timer = None

    def _headers_too_slow(self) -> None:
        self._header_timer = None
        if self.conn.their_state is h11.IDLE and not self.transport.is_closing():
            self.transport.close()
