"""meetcore-server: the meeting server. The REST rooms API, meetcore's signaling WebSocket,
the rooms view, the browser SDK and demo page, and `meetcore serve`.

`create_app(engine)` (or `Server(engine)`) serves an open engine as an ASGI app; media
comes from a media plugin (meetcore-media) through the `meetcore_media_backend` hook,
so this package never imports aiortc. See docs/architecture.md.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from meetcore_server.app import Server, create_app

__all__ = ["Server", "create_app"]


def __getattr__(name: str) -> Any:
    # Lazy, so that loading the plugin (every `meetcore` command does) loads no Starlette.
    if name in __all__:
        from meetcore_server import app

        return getattr(app, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
