"""Deprecated alias of `meetcore_server.app` (see docs/architecture.md)."""

from __future__ import annotations

import warnings

from meetcore_server.app import *  # noqa: F403
from meetcore_server.app import __all__ as __all__

warnings.warn(
    "meetcore_webrtc.app is deprecated: import meetcore_server.app instead",
    DeprecationWarning,
    stacklevel=2,
)
