"""meetcore-webrtc's old import names still work, and warn (the package was split)."""

from __future__ import annotations

import importlib
import sys

import pytest

pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


ALIASES = {
    "meetcore_webrtc.client": "meetcore_client",
    "meetcore_webrtc.app": "meetcore_server.app",
    "meetcore_webrtc.testing": "meetcore_server.testing",
    "meetcore_webrtc.media": "meetcore_media.sfu",
    "meetcore_webrtc.tracks": "meetcore_media.tracks",
    "meetcore_webrtc.plugin": "meetcore_media.plugin",
}


@pytest.mark.parametrize(("old", "new"), sorted(ALIASES.items()))
def test_an_old_name_warns_and_gives_the_new_objects(old: str, new: str) -> None:
    sys.modules.pop(old, None)
    with pytest.warns(DeprecationWarning, match=f"{old} is deprecated: import {new} instead"):
        alias = importlib.import_module(old)
    target = importlib.import_module(new)
    assert alias.__all__ == target.__all__
    wrapped = {"Server", "create_app"} if old == "meetcore_webrtc.app" else set()
    for name in set(target.__all__) - wrapped:
        assert getattr(alias, name) is getattr(target, name), name


async def test_the_old_server_still_takes_a_media_config() -> None:
    sys.modules.pop("meetcore_webrtc.app", None)
    with pytest.warns(DeprecationWarning, match="meetcore_webrtc.app is deprecated"):
        old_app = importlib.import_module("meetcore_webrtc.app")
    from meetcore import Engine
    from meetcore_media import Media, MediaConfig
    from meetcore_server.app import Server

    async with Engine.open("memory://", autoload=False) as engine:
        server = old_app.Server(engine, media=MediaConfig(addresses=["127.0.0.1"]))
        factory = server.signaling._media_factory
        assert isinstance(factory, Media)
        assert factory.config == MediaConfig(addresses=["127.0.0.1"])
        with pytest.raises(TypeError, match=r"Media\(MediaConfig\(...\)\)"):
            Server(engine, media=MediaConfig())  # type: ignore[arg-type]
