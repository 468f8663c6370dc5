"""Every test here starts with no key configured: no MEETCORE_* variable, and a fresh
empty current directory (so no meetcore-keys.json of the developer's is read)."""

from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture(autouse=True)
def no_configured_keys(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    for name in ("MEETCORE_API_KEY", "MEETCORE_API_SECRET", "MEETCORE_KEYS_FILE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.chdir(tmp_path)
    return tmp_path
