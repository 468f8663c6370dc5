"""A writer process whose appends stay in the `-wal` file (its checkpoints are held
back), for the read-only tests: a reader that ignored the WAL would miss them.

Run as `python _wal_writer.py PATH [crash]`. It prints "ready N" (N meetings written,
`m-0`, `m-1`...: three events each), then reads a number a line from stdin and writes
that many more meetings before printing "ready N" again; at the end of stdin it closes
the store (which copies the WAL into the file). With `crash` it exits after its first
meetings without closing anything, as a killed process would, leaving `-wal` and `-shm`.
"""

from __future__ import annotations

import os
import sys

import anyio

from meetcore.testing import sample_events
from meetcore_sqlite import SQLiteStore


def _no_checkpoint(connection: object) -> tuple[bool, int]:
    return False, 0


async def main(path: str, crash: bool) -> None:
    SQLiteStore._checkpoint_pass = staticmethod(_no_checkpoint)  # type: ignore[method-assign]
    store = SQLiteStore(path, synchronous="NORMAL")
    written = 0

    async def write(count: int) -> None:
        nonlocal written
        for n in range(written, written + count):
            await store.append(f"m-{n}", 0, sample_events(f"m-{n}"), None)
        written += count
        sys.stdout.write(f"ready {written}\n")
        sys.stdout.flush()

    await write(3)
    if crash:
        os._exit(0)
    while line := await anyio.to_thread.run_sync(sys.stdin.readline):
        await write(int(line))
    await store.close()


if __name__ == "__main__":
    anyio.run(main, sys.argv[1], sys.argv[2:] == ["crash"])
