"""What the tests share. `tests/conftest.py` puts this folder on sys.path (the tests run
with --import-mode=importlib), so that a test module says `from support import ...`."""

from __future__ import annotations

import inspect
import os
import shutil
import subprocess
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import anyio
import pytest

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


#: The VideoSDK Python SDK version the tests run, exactly (docs/videosdk.md; the
#: benchmark benchmarks/videosdk.py names it too).
VIDEOSDK = "videosdk==0.4.1"


def fresh_venv(folder: Path, *requirements: str, constraints: Path | None = None) -> Path:
    """A new virtual environment in `folder`/venv with `requirements` installed (uv pip
    install, run from `folder`: outside the checkout, whose pins would apply otherwise);
    its python."""
    uv = shutil.which("uv")
    if uv is None:
        pytest.fail("uv is not on PATH (the README's test command runs under uv)")
    venv = folder / "venv"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("VIRTUAL_ENV", "UV_"))}
    run: dict[str, Any] = {"check": True, "capture_output": True, "text": True}
    run |= {"timeout": 600, "env": env, "cwd": str(folder)}
    subprocess.run([uv, "venv", "-q", "--python", sys.executable, str(venv)], **run)
    python = venv / "bin" / "python"
    pinned = ["-c", str(constraints)] if constraints is not None else []
    subprocess.run(
        [uv, "pip", "install", "-q", "--python", str(python), *pinned, *requirements], **run
    )
    return python
