"""The browser side of `meetcore serve`: the SDK at `/sdk/meetcore.js`, the demo page at `/`.

The files sit beside this module (and so in the wheel): `meetcore.js`, the SDK, an
ES module with no dependency and no build step; `index.html`, `demo.js`, `demo.css`
and `favicon.svg`, the demo page, served under `/static/`. `routes()` gives the
Starlette routes that serve them; the server adds them to its own.
"""

from __future__ import annotations

from pathlib import Path

from starlette.requests import Request
from starlette.responses import FileResponse, PlainTextResponse, Response
from starlette.routing import BaseRoute, Route

__all__ = ["FILES", "HERE", "routes"]

HERE = Path(__file__).resolve().parent

#: What `/static/{name}` serves, with its content type: nothing else in this folder.
FILES: dict[str, str] = {
    "meetcore.js": "text/javascript; charset=utf-8",
    "demo.js": "text/javascript; charset=utf-8",
    "demo.css": "text/css; charset=utf-8",
    "index.html": "text/html; charset=utf-8",
    "favicon.svg": "image/svg+xml",
}

#: The files change with the package, not with time: let the browser check each load.
_HEADERS = {"Cache-Control": "no-cache"}


def _file(name: str) -> Response:
    media_type = FILES.get(name)
    path = HERE / name
    if media_type is None or not path.is_file():
        return PlainTextResponse("Not Found", status_code=404)
    return FileResponse(path, media_type=media_type, headers=_HEADERS)


async def sdk(request: Request) -> Response:
    """`GET /sdk/meetcore.js`: the browser SDK, as a JavaScript module."""
    return _file("meetcore.js")


async def demo_page(request: Request) -> Response:
    """`GET /`: the demo page (`?meetingId=...` joins that room)."""
    return _file("index.html")


async def static_file(request: Request) -> Response:
    """`GET /static/{name}`: the demo page's script, style sheet and icon."""
    return _file(str(request.path_params["name"]))


def routes() -> list[BaseRoute]:
    """The routes that serve the SDK and the demo page."""
    return [
        Route("/", demo_page, methods=["GET", "HEAD"]),
        Route("/sdk/meetcore.js", sdk, methods=["GET", "HEAD"]),
        Route("/static/{name}", static_file, methods=["GET", "HEAD"]),
    ]
