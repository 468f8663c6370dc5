"""Deprecated alias of `meetcore_media.plugin` (see docs/architecture.md)."""

from __future__ import annotations

import warnings

from meetcore_media.plugin import *  # noqa: F403
from meetcore_media.plugin import __all__ as __all__

warnings.warn(
    "meetcore_webrtc.plugin is deprecated: import meetcore_media.plugin instead",
    DeprecationWarning,
    stacklevel=2,
)
