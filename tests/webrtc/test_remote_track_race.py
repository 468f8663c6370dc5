"""`RemoteTrack.recv` cancelled by its caller just as its source's read fails."""

from __future__ import annotations

import asyncio
import contextlib
import gc
from typing import Any

from aiortc.mediastreams import MediaStreamError

from meetcore_client._media import RemoteTrack


class _Source:
    """A source whose pending read the test ends."""

    def __init__(self) -> None:
        self.read: asyncio.Future[Any] | None = None

    async def recv(self) -> Any:
        self.read = asyncio.get_running_loop().create_future()
        return await self.read


def test_a_read_cancelled_as_its_source_ends_leaves_no_unretrieved_exception() -> None:
    """The source's read fails (MediaStreamError, the meeting ended) in the same loop
    turn as the caller cancels recv(): the failed read is retrieved, not reported as
    'Task exception was never retrieved'."""

    async def main() -> list[str]:
        reported: list[str] = []
        loop = asyncio.get_running_loop()
        loop.set_exception_handler(lambda _, context: reported.append(context["message"]))
        source = _Source()
        track = RemoteTrack(source, "video", "t1")  # type: ignore[arg-type]
        reader = asyncio.ensure_future(track.recv())
        await asyncio.sleep(0.01)
        assert source.read is not None
        source.read.set_exception(MediaStreamError())
        reader.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await reader
        del reader
        source.read = None
        await asyncio.sleep(0.01)
        gc.collect()
        await asyncio.sleep(0.01)
        return reported

    assert asyncio.run(main()) == []
