"""Deprecated alias of `meetcore_client` (meetcore-webrtc was split: see docs/architecture.md)."""

from __future__ import annotations

import warnings

from meetcore_client import *  # noqa: F403
from meetcore_client import __all__ as __all__

warnings.warn(
    "meetcore_webrtc.client is deprecated: import meetcore_client instead",
    DeprecationWarning,
    stacklevel=2,
)
