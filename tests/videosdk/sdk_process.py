"""The other side of `sdk_media.py`: one VideoSDK SDK client run in a process of its
own (with the SDK's own python), its events as they come, and commands on its stdin.
The tests (`test_media.py`) and `benchmarks/videosdk.py` both drive SDK clients with it.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from meetcore_server.testing import clean_env

SCRIPT = Path(__file__).with_name("sdk_media.py")


class SdkProcess:
    """One SDK client: `events` it printed so far (one JSON object a line)."""

    def __init__(self, process: asyncio.subprocess.Process, peer_id: str) -> None:
        self.process = process
        self.peer_id = peer_id
        self.events: list[dict[str, Any]] = []
        self._new = asyncio.Event()
        self._reader = asyncio.ensure_future(self._read())

    @classmethod
    async def start(
        cls,
        python: Path,
        *,
        room: str,
        token: str,
        signaling_base_url: str,
        peer_id: str,
        ca: str,
        options: dict[str, Any],
    ) -> SdkProcess:
        """`sdk_media.py` run by `python`, trusting the CA file `ca` (both variables
        the SDK reads, as docs/videosdk.md says), with `init_meeting` options."""
        process = await asyncio.create_subprocess_exec(
            str(python),
            str(SCRIPT),
            room,
            token,
            signaling_base_url,
            peer_id,
            json.dumps(options),
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            env=clean_env({"REQUESTS_CA_BUNDLE": ca, "SSL_CERT_FILE": ca}),
        )
        return cls(process, peer_id)

    async def _read(self) -> None:
        assert self.process.stdout is not None
        while raw := await self.process.stdout.readline():
            try:
                self.events.append(json.loads(raw))
            except ValueError:
                continue
            self._new.set()

    async def wait_for(self, timeout: float = 30, **fields: Any) -> dict[str, Any]:
        """The first event (seen so far or to come) with these fields."""
        return await self.first(
            lambda event: all(event.get(k) == v for k, v in fields.items()), timeout
        )

    async def first(
        self, matches: Callable[[dict[str, Any]], bool], timeout: float = 30
    ) -> dict[str, Any]:
        """The first event (seen so far or to come) that `matches`."""
        async with asyncio.timeout(timeout):
            while True:
                for event in self.events:
                    if matches(event):
                        return event
                self._new.clear()
                await self._new.wait()

    async def command(self, line: str) -> None:
        assert self.process.stdin is not None
        self.process.stdin.write(line.encode() + b"\n")
        await self.process.stdin.drain()

    async def stats(self) -> dict[str, Any]:
        """The frames decoded so far of each remote stream (`sdk_media.py`'s `stats`)."""
        before = len([e for e in self.events if e["event"] == "stats"])
        await self.command("stats")
        async with asyncio.timeout(10):
            while len(stats := [e for e in self.events if e["event"] == "stats"]) == before:
                self._new.clear()
                await self._new.wait()
        return stats[-1]

    async def stop(self, *, leave: bool) -> str:
        """Ends the process, after the SDK's own leave if `leave` (killed otherwise, or
        when it has not left within 10 s), and returns what it wrote on stderr."""
        if leave and self.process.returncode is None:
            with contextlib.suppress(OSError):
                await self.command("leave")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.process.wait(), 10)
        if self.process.returncode is None:
            self.process.kill()
        self._reader.cancel()
        assert self.process.stderr is not None
        err = await self.process.stderr.read()
        await self.process.wait()
        return err.decode(errors="replace")
