"""meetcore-client: the Python client SDK, shaped like VideoSDK's (`init_meeting`, `join`,
events). Signaling needs only this package; audio and video need the extra,
`meetcore-client[media]` (meetcore-media and aiortc), imported only once a meeting has
media to send or receive. See docs/embedding.md and docs/media.md.
"""

from __future__ import annotations

from meetcore_client import meeting as _meeting
from meetcore_client.meeting import *  # noqa: F403 - the SDK's public names, listed once there

__all__ = _meeting.__all__
