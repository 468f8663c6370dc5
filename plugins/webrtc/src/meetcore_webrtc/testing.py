"""Deprecated alias of `meetcore_server.testing` (see docs/architecture.md)."""

from __future__ import annotations

import warnings

from meetcore_server.testing import *  # noqa: F403
from meetcore_server.testing import __all__ as __all__

warnings.warn(
    "meetcore_webrtc.testing is deprecated: import meetcore_server.testing instead",
    DeprecationWarning,
    stacklevel=2,
)
