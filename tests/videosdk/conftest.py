"""The real VideoSDK Python SDK, in a virtual environment of its own (its pins clash
with the workspace's): shared by the tests of init-config and signaling. This folder is
put on sys.path, so that the tests (and benchmarks/videosdk.py) say
`from sdk_process import SdkProcess`."""

from __future__ import annotations

import sys
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from pathlib import Path
from typing import Any

import pytest
from starlette.applications import Starlette
from starlette.routing import Mount
from starlette.testclient import TestClient
from support import VIDEOSDK, fresh_venv

import meetcore_videosdk.plugin
from meetcore import Engine
from meetcore.commands import InitMeeting
from meetcore_jwt import JWTAuth
from meetcore_server.app import Server

sys.path.insert(0, str(Path(__file__).parent))


@contextmanager
def _in_process(keys: dict[str, str], room: str, *plugins: object) -> Iterator[TestClient]:
    holder: dict[str, Any] = {}

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        loaded = [JWTAuth(keys), meetcore_videosdk.plugin, *plugins]
        async with Engine.open("memory://", plugins=loaded, autoload=False) as engine:
            await engine.execute(InitMeeting(meeting_id=room, custom_room_id=room))
            server = Server(engine)
            holder["app"] = server.app
            async with server.signaling.lifespan():
                yield

    async def inner(scope: Any, receive: Any, send: Any) -> None:
        await holder["app"](scope, receive, send)

    with TestClient(Starlette(lifespan=lifespan, routes=[Mount("/", app=inner)])) as test:
        yield test


@pytest.fixture
def in_process() -> Any:
    """`in_process(keys, room, *plugins)`: meetcore's server with meetcore-videosdk (and
    `plugins`) in process, as a context manager giving its `TestClient`; its engine is
    opened in the test client's event loop, with `keys` and the room `room`."""
    return _in_process


@pytest.fixture(scope="session")
def sdk_python(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A virtual environment with VideoSDK's Python SDK, at the version we test."""
    return fresh_venv(tmp_path_factory.mktemp("videosdk"), VIDEOSDK)
