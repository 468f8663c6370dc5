"""The hooks the server adds to meetcore's (through `meetcore_addhooks`): how `meetcore
serve` is extended, and where its media comes from.

The server imports no other plugin. `meetcore serve` asks the installed plugins for
their options (`meetcore_serve_options`) and, once the command line is read, for the
plugin objects its engine runs with (`meetcore_serve_plugins`): webhooks' delivery,
the media plugin configured by `--audio-streams`, any third party's. The signaling asks
`meetcore_media_backend` for the forwarder that answers its clients' media offers
(meetcore-media implements it when installed).

`docs/plugins.md` documents each hook. Implementations are called with keyword
arguments and may take any subset of them.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Collection, Mapping, Sequence
from typing import TYPE_CHECKING, Any, Literal, Protocol

import pluggy

from meetcore.hookspecs import hookspec

if TYPE_CHECKING:
    import click
    from starlette.routing import BaseRoute

    from meetcore import Engine
    from meetcore_server.app import Server

__all__ = [
    "MediaBackend",
    "MediaFactory",
    "MediaOffer",
    "MediaSend",
    "add_to",
    "meetcore_media_backend",
    "meetcore_serve_options",
    "meetcore_serve_plugins",
    "meetcore_server_routes",
]


class MediaSection(Protocol):
    """A media section of the server's offer: which participant's audio or video."""

    @property
    def mid(self) -> str: ...
    @property
    def participant_id(self) -> str: ...
    @property
    def kind(self) -> Literal["audio", "video"]: ...


class MediaOffer(Protocol):
    """The media server renegotiates with a client (meetcore-media's `Offer`)."""

    @property
    def sdp(self) -> str: ...
    @property
    def sections(self) -> Sequence[MediaSection]: ...
    @property
    def version(self) -> int: ...


#: How the media server sends an offer: `send(connection_id, offer, after)`, once the
#: connection has been sent the events up to `after`; False when it is not here.
MediaSend = Callable[[str, MediaOffer, int], bool]


class MediaBackend(Protocol):
    """What the signaling needs of a media server (meetcore-media's `MediaServer`)."""

    @property
    def rooms(self) -> Collection[str]:
        """The meetings with media on this node."""
        ...

    async def offer(
        self, meeting_id: str, participant_id: str, connection_id: str, sdp: str
    ) -> str:
        """A client's SDP offer; the answer's SDP. Raises `meetcore.Rejected`."""
        ...

    async def answer(self, connection_id: str, sdp: str) -> None:
        """A client's answer to the server's last offer."""
        ...

    def resumed(self, connection_id: str) -> None:
        """The connection resumed: send it again the offer it may have missed."""
        ...

    async def close(self) -> None:
        """Close every media connection."""
        ...


#: Makes the media server of a meeting server: `factory(engine, send)`.
MediaFactory = Callable[["Engine", MediaSend], MediaBackend]


@hookspec(firstresult=True)
def meetcore_media_backend(engine: Engine, send: MediaSend) -> MediaBackend | None:
    """The media server for a meeting server on `engine`, made when its first client
    offers media; None if this plugin has none. The first result wins (plugins given
    to the engine are asked before the installed ones). Without any, offers are
    refused with 5000 and a message that says to install meetcore-media.

    An embedder that opens its engine without autoload and passes a plugin implementing
    this hook marks it `@hookimpl(optionalhook=True)` (or passes `meetcore_server.plugin`
    too): the server adds its hooks only when it is made, after the engine opened."""


@hookspec
def meetcore_serve_options() -> Sequence[click.Parameter]:
    """Options this plugin adds to `meetcore serve` (`click.Option`s). Their values
    reach `meetcore_serve_plugins` by their parameter names."""
    return ()


@hookspec
def meetcore_serve_plugins(options: Mapping[str, Any]) -> Sequence[object]:
    """The plugin objects `meetcore serve`'s engine runs with, configured from the
    command line's `options` (every option's value, by parameter name). Raise
    `ValueError` for a bad configuration: the command exits 2 with its message."""
    return ()


@hookspec
def meetcore_server_routes(server: Server) -> Sequence[BaseRoute]:
    """Starlette routes a plugin serves beside the server's own (another protocol's
    front end: meetcore-videosdk's init-config, for example), on its engine
    (`server.engine`). Called once, as the server is made; every implementation runs.
    The server's own routes come first: a plugin cannot replace them."""
    return ()


def add_to(pm: pluggy.PluginManager) -> None:
    """Add these hookspecs to `pm` unless it has them (the plugin's `meetcore_addhooks`
    does it; a server on an engine opened without autoload does it itself)."""
    caller = getattr(pm.hook, "meetcore_media_backend", None)
    if caller is None or not caller.has_spec():
        pm.add_hookspecs(sys.modules[__name__])
