"""The meetcore-videosdk plugin (entry point `videosdk` in group `meetcore`): serves
VideoSDK's `server-init-config` beside meetcore-server's routes (through its hook
`meetcore_server_routes`, optional: without the server this plugin does nothing)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from starlette.routing import BaseRoute, Route

from meetcore import hookimpl
from meetcore_videosdk._init_config import INIT_CONFIG_PATH, InitConfig

__all__ = ["meetcore_server_routes"]


@hookimpl(optionalhook=True)
def meetcore_server_routes(server: Any) -> Sequence[BaseRoute]:
    """`POST /infra/v1/meetings/server-init-config` on the server's engine."""
    endpoint = InitConfig(server.engine, server.signaling.public_url)
    return [Route(INIT_CONFIG_PATH, endpoint.answer, methods=["POST"])]
