"""`MediaConfig`: how the media server connects and what it forwards, and `Media`, the
plugin object that makes a media server with it. Without aiortc, which only the media
server itself (`sfu.MediaServer`) imports, when a client first offers media."""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from meetcore import hookimpl
from meetcore_media import _ice

if TYPE_CHECKING:
    from meetcore import Engine
    from meetcore_media.sdp import Offer
    from meetcore_media.sfu import MediaServer

__all__ = ["AUDIO_STREAMS", "Media", "MediaConfig"]

#: The loudest audio streams each participant gets by default (`MediaConfig`).
AUDIO_STREAMS = 3
#: An ICE server URL (RFC 7064, 7065): a scheme, a host, maybe a port and a transport.
_ICE_URL = re.compile(r"(stuns?|turns?):[^\s/?#@:]+(:\d{1,5})?(\?transport=(udp|tcp))?")


@dataclass(frozen=True)
class MediaConfig:
    """How the server's peer connections gather ICE candidates, and how much audio
    each participant gets.

    `ice_servers`: STUN/TURN servers (URLs, or dicts with `urls`, `username`,
    `credential`); none by default: host candidates only. `addresses`: the
    addresses to gather host candidates on (None: every interface but loopback).
    `from_env()` reads `MEETCORE_ICE_SERVERS` and `MEETCORE_ICE_ADDRESSES`.

    `audio_streams`: in a meeting where more participants send audio, each
    participant gets the audio of this many of the others, the loudest by the
    audio level their clients put in each packet (0: every one). The others are held
    at the server until they are among the loudest again (docs/media.md).
    """

    ice_servers: Sequence[_ice.IceServer] = ()
    addresses: Sequence[str] | None = None
    audio_streams: int = AUDIO_STREAMS

    def __post_init__(self) -> None:
        streams = self.audio_streams
        if not isinstance(streams, int) or isinstance(streams, bool) or streams < 0:
            raise ValueError(f"audio_streams must be 0 (all) or more, not {self.audio_streams!r}")
        for server in self.ice_servers:
            urls = server if isinstance(server, str) else server.get("urls", "")
            for url in [urls] if isinstance(urls, str) else urls:
                if not _ICE_URL.fullmatch(str(url)):
                    why = "an ICE server is a stun:, stuns:, turn: or turns: URL with a host"
                    raise ValueError(f"{why}, not {str(url)[:200]!r}")
        for address in self.addresses or ():
            try:
                ipaddress.ip_address(address)
            except ValueError:
                raise ValueError(f"not an IP address to gather on: {address[:200]!r}") from None

    @classmethod
    def from_env(cls, audio_streams: int = AUDIO_STREAMS) -> MediaConfig:
        """The configuration `MEETCORE_ICE_SERVERS` and `MEETCORE_ICE_ADDRESSES` give
        (`ValueError` naming the variable when one is wrong)."""
        servers, addresses = _ice.servers_from_env(), _ice.addresses_from_env()
        try:
            cls(ice_servers=servers)
        except ValueError as error:
            raise ValueError(f"{_ice.SERVERS_ENV}: {error}") from None
        try:
            cls(addresses=addresses)
        except ValueError as error:
            raise ValueError(f"{_ice.ADDRESSES_ENV}: {error}") from None
        return cls(ice_servers=servers, addresses=addresses, audio_streams=audio_streams)


class Media:
    """meetcore-media with `config` (default: `MediaConfig.from_env()`), for a meeting
    server: `create_app(engine, media=Media(config))`, or as a plugin of its engine,
    `Engine.open(..., plugins=[Media(config)])`, where it answers meetcore-server's
    `meetcore_media_backend` before the installed plugin does."""

    def __init__(self, config: MediaConfig | None = None) -> None:
        self.config = config

    def __call__(self, engine: Engine, send: Callable[[str, Offer, int], bool]) -> MediaServer:
        """The media server of a meeting server on `engine` (`send` sends its offers)."""
        from meetcore_media.sfu import MediaServer

        return MediaServer(engine, send, self.config)

    @hookimpl(optionalhook=True)  # the hook is meetcore-server's: it may not be installed
    def meetcore_media_backend(
        self, engine: Engine, send: Callable[[str, Offer, int], bool]
    ) -> MediaServer:
        return self(engine, send)

    def __repr__(self) -> str:
        return f"Media({self.config!r})"
