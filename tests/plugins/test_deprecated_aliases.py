"""meetcore-webrtc's old import names still work, and warn (the package was split)."""

from __future__ import annotations

import importlib
import sys

import pytest

ALIASES = {
    "meetcore_webrtc.client": "meetcore_client",
    "meetcore_webrtc.app": "meetcore_server.app",
    "meetcore_webrtc.testing": "meetcore_server.testing",
}


@pytest.mark.parametrize(("old", "new"), sorted(ALIASES.items()))
def test_an_old_name_warns_and_gives_the_new_objects(old: str, new: str) -> None:
    sys.modules.pop(old, None)
    with pytest.warns(DeprecationWarning, match=f"{old} is deprecated: import {new} instead"):
        alias = importlib.import_module(old)
    target = importlib.import_module(new)
    assert alias.__all__ == target.__all__
    for name in target.__all__:
        assert getattr(alias, name) is getattr(target, name), name
