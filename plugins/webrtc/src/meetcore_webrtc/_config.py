"""`MediaConfig`: how the media server connects and what it forwards. Its own module,
without aiortc, so that `meetcore serve` can build one before media is first used."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from meetcore_webrtc import _ice

__all__ = ["AUDIO_STREAMS", "MediaConfig"]

#: The loudest audio streams each participant gets by default (`MediaConfig`).
AUDIO_STREAMS = 3


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

    @classmethod
    def from_env(cls, audio_streams: int = AUDIO_STREAMS) -> MediaConfig:
        return cls(
            ice_servers=_ice.servers_from_env(),
            addresses=_ice.addresses_from_env(),
            audio_streams=audio_streams,
        )
