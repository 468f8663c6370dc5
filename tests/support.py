"""What the tests share. `tests/conftest.py` puts this folder on sys.path (the tests run
with --import-mode=importlib), so that a test module says `from support import ...`."""

from __future__ import annotations

import inspect
from collections.abc import Awaitable, Callable

import anyio

__all__ = ["eventually"]


async def eventually(
    check: Callable[[], object | Awaitable[object]], timeout: float = 10.0
) -> None:
    """Wait until `check()` (a function or a coroutine function) is true, polling every
    20 ms; `TimeoutError` after `timeout` seconds."""
    with anyio.fail_after(timeout):
        while True:
            result = check()
            if inspect.isawaitable(result):
                result = await result
            if result:
                return
            await anyio.sleep(0.02)
