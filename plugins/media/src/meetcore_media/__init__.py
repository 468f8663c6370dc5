"""meetcore-media: the SFU. Forwards each participant's encoded audio and video to the
others without re-encoding, over aiortc (the one package that pins it and touches its
internals, checked by `check_internals` at start).

A meeting server gets its media from `Media(config)`, a plugin object that implements
meetcore-server's `meetcore_media_backend` hook (and a factory the server takes as
`create_app(engine, media=Media(...))`). Installed, this distribution's plugin serves
media configured from the environment, and adds `--audio-streams` to `meetcore serve`.
Importing this package loads no aiortc: `MediaServer` (`meetcore_media.sfu`) does.
See docs/media.md and docs/architecture.md.
"""

from __future__ import annotations

from meetcore_media._config import AUDIO_STREAMS, Media, MediaConfig
from meetcore_media._ice import IceServer

__all__ = ["AUDIO_STREAMS", "IceServer", "Media", "MediaConfig"]
