"""The meetcore-videosdk plugin (entry point `videosdk` in group `meetcore`): serves
VideoSDK's `server-init-config` and its protoo signaling beside meetcore-server's routes
(through its hook `meetcore_server_routes`, optional: without the server this plugin
does nothing)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from starlette.routing import BaseRoute, Route, WebSocketRoute
from starlette.websockets import WebSocket

from meetcore import hookimpl
from meetcore_videosdk._init_config import INIT_CONFIG_PATH, SIGNALING_PATH, InitConfig

if TYPE_CHECKING:
    from meetcore_videosdk._signaling import ProtooSignaling

__all__ = ["meetcore_server_routes"]


@hookimpl(optionalhook=True)
def meetcore_server_routes(server: Any) -> Sequence[BaseRoute]:
    """`POST /infra/v1/meetings/server-init-config` and the WebSocket at `SIGNALING_PATH`
    (the SDK connects to `{signalingUrl}/?roomId=...`: both with and without the slash)."""
    endpoint = InitConfig(server.engine, server.signaling.public_url, server.signaling.media_node)
    signaling = _Signaling(server)
    return [
        Route(INIT_CONFIG_PATH, endpoint.answer, methods=["POST"]),
        WebSocketRoute(SIGNALING_PATH, signaling.endpoint),
        WebSocketRoute(f"{SIGNALING_PATH}/", signaling.endpoint),
    ]


class _Signaling:
    """The protoo signaling, made at the first VideoSDK connection: it imports its
    transports, and so aiortc, which a server no VideoSDK client comes to never loads
    (as meetcore's own signaling loads it at the first media offer)."""

    def __init__(self, server: Any) -> None:
        self.server = server
        self.signaling: ProtooSignaling | None = None

    async def endpoint(self, websocket: WebSocket) -> None:
        if self.signaling is None:
            from meetcore_videosdk._signaling import ProtooSignaling

            server = self.server
            self.signaling = ProtooSignaling(server.engine, media=server.signaling.media)
        await self.signaling.endpoint(websocket)
