"""The real VideoSDK Python SDK, in a virtual environment of its own (its pins clash
with the workspace's): shared by the tests of init-config and signaling."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

#: The SDK version these tests run, exactly (docs/videosdk.md).
VIDEOSDK = "videosdk==0.4.1"


@pytest.fixture(scope="session")
def sdk_python(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A virtual environment with VideoSDK's Python SDK, at the version we test."""
    uv = shutil.which("uv")
    if uv is None:
        pytest.fail("uv is not on PATH (the README's test command runs under uv)")
    venv = tmp_path_factory.mktemp("videosdk") / "venv"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("VIRTUAL_ENV", "UV_"))}
    # outside the checkout: uv would apply the workspace's pins, which exclude the SDK's
    run = {"check": True, "capture_output": True, "text": True, "timeout": 600, "env": env}
    run["cwd"] = str(venv.parent)
    subprocess.run([uv, "venv", "-q", "--python", sys.executable, str(venv)], **run)
    python = venv / "bin" / "python"
    subprocess.run([uv, "pip", "install", "-q", "--python", str(python), VIDEOSDK], **run)
    return python
