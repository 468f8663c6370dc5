"""The real VideoSDK Python SDK, in a virtual environment of its own (its pins clash
with the workspace's): shared by the tests of init-config and signaling."""

from __future__ import annotations

from pathlib import Path

import pytest
from support import VIDEOSDK, fresh_venv


@pytest.fixture(scope="session")
def sdk_python(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A virtual environment with VideoSDK's Python SDK, at the version we test."""
    return fresh_venv(tmp_path_factory.mktemp("videosdk"), VIDEOSDK)
