"""A writer for the crash test: appends to a few meetings concurrently, forever, and
prints each acknowledged append as "meeting_id version" (the last version), flushed.

Run as `python _writer.py PATH SYNCHRONOUS`; the test kills it with SIGKILL.
"""

from __future__ import annotations

import sys

import anyio

from meetcore.events import SessionStarted
from meetcore_sqlite import SQLiteStore

MEETINGS = [f"m-{n}" for n in range(8)]


async def main(path: str, synchronous: str) -> None:
    store = SQLiteStore(path, synchronous=synchronous)  # type: ignore[arg-type]

    async def writer(meeting_id: str) -> None:
        records = await store.read(meeting_id)
        version = records[-1].version if records else 0
        n = 0
        while True:
            n += 1
            count = 1 + n % 3  # appends of 1 to 3 events, all or nothing
            events = [
                SessionStarted(meeting_id=meeting_id, at=version + i, session_id=f"s-{version + i}")
                for i in range(1, count + 1)
            ]
            appended = await store.append(meeting_id, version, events, None)
            version = appended[-1].version
            sys.stdout.write(f"{meeting_id} {version}\n")
            sys.stdout.flush()

    async with anyio.create_task_group() as tasks:
        for meeting_id in MEETINGS:
            tasks.start_soon(writer, meeting_id)


if __name__ == "__main__":
    anyio.run(main, sys.argv[1], sys.argv[2])
