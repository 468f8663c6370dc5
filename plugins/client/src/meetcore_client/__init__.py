"""meetcore-client: the Python client SDK, shaped like VideoSDK's (`init_meeting`, `join`,
events). Signaling needs only this package; audio and video need the extra,
`meetcore-client[media]` (meetcore-media and aiortc), imported only once a meeting has
media to send or receive. See docs/embedding.md and docs/media.md.
"""

from __future__ import annotations

from meetcore_client.meeting import (
    CONNECT_TIMEOUT,
    DEAD_NODE_RETRY,
    MAX_REDIRECTS,
    NO_MEDIA,
    RECONNECT_DELAYS,
    REQUEST_TIMEOUT,
    EncodedFrame,
    EntryRequest,
    Meeting,
    Participant,
    Reason,
    Stream,
    init_meeting,
)

__all__ = [
    "CONNECT_TIMEOUT",
    "DEAD_NODE_RETRY",
    "MAX_REDIRECTS",
    "NO_MEDIA",
    "RECONNECT_DELAYS",
    "REQUEST_TIMEOUT",
    "EncodedFrame",
    "EntryRequest",
    "Meeting",
    "Participant",
    "Reason",
    "Stream",
    "init_meeting",
]
