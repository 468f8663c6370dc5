"""Times as VideoSDK writes them."""

from __future__ import annotations

import functools
from datetime import UTC, datetime

__all__ = ["iso_time"]


def iso_time(ms: int) -> str:
    """Unix milliseconds as ISO-8601 UTC with milliseconds, as VideoSDK writes times
    (`2023-11-14T22:13:20.000Z`); "`ms` ms" for a value no calendar holds."""
    seconds, millis = divmod(ms, 1000)
    text = _second(seconds)
    return f"{text}.{millis:03d}Z" if text is not None else f"{ms} ms"


@functools.lru_cache(maxsize=4096)
def _second(seconds: int) -> str | None:
    try:
        return datetime.fromtimestamp(seconds, UTC).strftime("%Y-%m-%dT%H:%M:%S")
    except (OverflowError, OSError, ValueError):
        return None
