"""Deprecated alias of `meetcore_media.sfu` (see docs/architecture.md)."""

from __future__ import annotations

import warnings

from meetcore_media.sfu import *  # noqa: F403
from meetcore_media.sfu import __all__ as __all__

warnings.warn(
    "meetcore_webrtc.media is deprecated: import meetcore_media.sfu instead",
    DeprecationWarning,
    stacklevel=2,
)
