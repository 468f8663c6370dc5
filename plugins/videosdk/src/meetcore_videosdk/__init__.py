"""meetcore-videosdk: VideoSDK's own wire protocol over meetcore's engine, log and SFU,
so that VideoSDK's official SDKs join meetcore meetings by changing their
`signaling_base_url` alone (docs/videosdk.md).

Built so far: `POST /infra/v1/meetings/server-init-config`, which the Python SDK calls
first, and the protoo WebSocket signaling at `/videosdk` (`_signaling`: join, peers,
transports). Not yet: media through it (mediasoup's transports: `meetcore_media.ice_lite`).
"""

from __future__ import annotations

from meetcore_videosdk._init_config import INIT_CONFIG_PATH, SIGNALING_PATH, encrypt_ice_servers

__all__ = ["INIT_CONFIG_PATH", "SIGNALING_PATH", "encrypt_ice_servers"]
