"""Deprecated alias of `meetcore_server.app` (see docs/architecture.md). `Server` and
`create_app` still take a `MediaConfig` as `media`, as they did, and wrap it in
`meetcore_media.Media`."""

from __future__ import annotations

import warnings
from typing import Any

from meetcore_media import Media, MediaConfig
from meetcore_server.app import NO_GET_TOKEN
from meetcore_server.app import Server as _Server

__all__ = ["NO_GET_TOKEN", "Server", "create_app"]

warnings.warn(
    "meetcore_webrtc.app is deprecated: import meetcore_server.app instead",
    DeprecationWarning,
    stacklevel=2,
)


def _media(options: dict[str, Any]) -> dict[str, Any]:
    if isinstance(options.get("media"), MediaConfig):
        options["media"] = Media(options["media"])
    return options


class Server(_Server):
    """`meetcore_server.app.Server`, taking `media=MediaConfig(...)` as it used to."""

    def __init__(self, engine: Any, **options: Any) -> None:
        super().__init__(engine, **_media(options))


def create_app(engine: Any, **options: Any) -> Any:
    """`meetcore_server.app.create_app`, taking `media=MediaConfig(...)` as it used to."""
    return Server(engine, **options).app
