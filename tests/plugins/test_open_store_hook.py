"""`meetcore_open_store(url, read_only)`: the engine asks for a store it writes to, the
command line for one it only reads, and an implementation written before `read_only`
existed, which takes `url` alone, goes on working for both."""

from __future__ import annotations

import warnings
from collections.abc import Iterator

import anyio
import pytest
from click.testing import CliRunner

import meetcore
from meetcore import Engine, EventStore, MemoryStore, hookimpl
from meetcore._plugins import open_store
from meetcore.cli import build_cli
from meetcore.commands import InitMeeting


class UrlOnly:
    """A plugin from before `read_only`: its implementation names `url` alone."""

    def __init__(self) -> None:
        self.opened: list[str] = []

    @hookimpl
    def meetcore_open_store(self, url: str) -> EventStore | None:
        if not url.startswith("old://"):
            return None
        self.opened.append(url)
        return MemoryStore()


class Asks:
    """A plugin that names `read_only` too, and remembers what it was asked."""

    def __init__(self) -> None:
        self.asked: list[bool] = []

    @hookimpl
    def meetcore_open_store(self, url: str, read_only: bool) -> EventStore | None:
        if not url.startswith("new://"):
            return None
        self.asked.append(read_only)
        return MemoryStore()


@pytest.fixture(autouse=True)
def no_warnings() -> Iterator[None]:
    """pluggy warns when a call leaves out an argument of the hook: none may."""
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        yield


def test_an_implementation_that_takes_only_the_url_keeps_working() -> None:
    old = UrlOnly()
    pm = meetcore.plugin_manager([old], autoload=False)
    for read_only in (False, True):
        assert isinstance(open_store(pm, "old://x", read_only=read_only), MemoryStore)
        store = pm.hook.meetcore_open_store(url="old://y", read_only=read_only)
        assert isinstance(store, MemoryStore)
    assert old.opened == ["old://x", "old://y", "old://x", "old://y"]


def test_the_engine_asks_for_a_store_to_write_and_the_command_line_to_read() -> None:
    new, old = Asks(), UrlOnly()
    pm = meetcore.plugin_manager([new, old], autoload=False)

    async def engine() -> None:
        async with Engine.open("new://x", plugins=[new], autoload=False) as opened:
            await opened.execute(InitMeeting(meeting_id="abc-def-ghi"))

    anyio.run(engine)
    assert new.asked == [False]
    cli = build_cli(pm)
    # each opens a new, empty store in memory: what they say proves that it was opened
    for command, code, said in [
        (["replay", "new://x"], 1, "meetcore: error: new://x holds no records\n"),
        (
            ["inspect", "new://x", "--meeting", "abc-def-ghi"],
            1,
            "meetcore: error: meeting 'abc-def-ghi' is not in new://x\n",
        ),
        (["export", "--store", "new://x"], 0, ""),
        (["replay", "old://x"], 1, "meetcore: error: old://x holds no records\n"),
    ]:
        result = CliRunner().invoke(cli, command)
        assert (result.exit_code, result.stderr) == (code, said), result.output
    assert new.asked == [False, True, True, True]
    assert old.opened == ["old://x"]
