"""Deprecated alias of `meetcore_media.tracks` (see docs/architecture.md)."""

from __future__ import annotations

import warnings

from meetcore_media.tracks import *  # noqa: F403
from meetcore_media.tracks import __all__ as __all__

warnings.warn(
    "meetcore_webrtc.tracks is deprecated: import meetcore_media.tracks instead",
    DeprecationWarning,
    stacklevel=2,
)
