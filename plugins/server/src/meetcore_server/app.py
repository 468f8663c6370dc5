"""The meeting server as an ASGI app: the REST rooms API and WebSocket signaling on one engine.

`create_app(engine)` gives a Starlette app for an engine that is already open;
`meetcore serve` (`meetcore_server.serve`) runs it on uvicorn. Embedders can
mount the app in their own ASGI server the same way.
"""

from __future__ import annotations

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route, WebSocketRoute

from meetcore import Engine
from meetcore_server import rest, static
from meetcore_server.hookspecs import MediaFactory
from meetcore_server.rooms import RoomsView
from meetcore_server.signaling import Signaling

__all__ = ["NO_GET_TOKEN", "Server", "create_app"]

#: What `GET /get-token` answers (404) when the server is not in development mode.
NO_GET_TOKEN = (
    "GET /get-token is served in development mode only: start the server with "
    "meetcore serve --dev (never in production), or get a token with: uv run meetcore token"
)


class Server:
    """The engine with its two fronts: `rooms` (REST, a projection of the log) and
    `signaling` (the participants' WebSockets). `app` is the ASGI app.

    `secret` signs the tokens that let a client resume its connection; servers that
    share it accept each other's (see `meetcore serve`, which derives it from the API
    keys). Without it, a resume works only on the same server process.

    `media` makes the media server, when a client first offers media: meetcore-media's
    `Media(MediaConfig(...))`, for example (`docs/media.md`). By default the engine's
    plugins are asked (`meetcore_media_backend`): installed, meetcore-media serves
    media configured from the environment.

    `public_url` is the URL clients reach this server at. On a store that places
    meetings' media on nodes (`meetcore.MediaPlacement`: PostgreSQL), the server
    announces it to the cluster and sends each join to its meeting's media node
    (`docs/deploy.md`); without it, it serves every meeting itself.
    """

    def __init__(
        self,
        engine: Engine,
        *,
        dev: bool = False,
        secret: bytes | None = None,
        media: MediaFactory | None = None,
        public_url: str | None = None,
    ) -> None:
        if media is not None and not callable(media):
            why = "media makes the media server: Media(MediaConfig(...)), both from meetcore_media"
            raise TypeError(f"{why}, not a {type(media).__name__}")
        self.engine = engine
        self.dev = dev
        self.rooms = RoomsView(engine.store)
        self.signaling = Signaling(engine, secret=secret, media=media, public_url=public_url)
        routes: list[BaseRoute] = [
            *rest.routes(self),
            WebSocketRoute("/ws", self.signaling.endpoint),
        ]
        get_token = self.get_token if dev else self.no_get_token
        routes.append(Route("/get-token", get_token, methods=["GET"]))
        routes.extend(static.routes())  # the browser SDK and the demo page
        for theirs in engine.plugins.hook.meetcore_server_routes(server=self):
            routes.extend(theirs)  # after every route of the server's own
        self.app = Starlette(
            routes=routes,
            lifespan=self.signaling.lifespan,
            exception_handlers=rest.exception_handlers(),
        )
        self.app.state.server = self

    async def get_token(self, request: Request) -> Response:
        """The seeds' token server (`--dev` only): a token from the auth plugin's
        `meetcore_dev_token` (meetcore-jwt's: 24 h, allow_join and allow_mod)."""
        token = self.engine.plugins.hook.meetcore_dev_token()
        if token is None:
            why = "no API key configured, or no auth plugin that makes development tokens"
            return JSONResponse({"error": why}, status_code=503)
        return JSONResponse({"token": token})

    async def no_get_token(self, request: Request) -> Response:
        """`/get-token` without development mode: a 404 that says how to turn it on."""
        raise HTTPException(404, NO_GET_TOKEN)

    async def close(self) -> None:
        """Let every connected participant leave (1001) and close their sockets."""
        await self.signaling.close()


def create_app(
    engine: Engine,
    *,
    dev: bool = False,
    secret: bytes | None = None,
    media: MediaFactory | None = None,
    public_url: str | None = None,
) -> Starlette:
    """The ASGI app of a meeting server on `engine` (see `Server`)."""
    return Server(engine, dev=dev, secret=secret, media=media, public_url=public_url).app
