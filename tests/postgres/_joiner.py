"""One of two engine processes on one PostgreSQL store, for the concurrency test.

`python _joiner.py URL PREFIX MEETINGS JOINS`: opens `Engine.open(URL)`, prints "ready",
waits for a line on stdin, then joins JOINS participants named PREFIX-n into each of
MEETINGS meetings (all meetings at once), and prints one JSON line: how many commands
ran and how many times they were decided (the difference is the Conflict retries).
"""

from __future__ import annotations

import json
import sys

import anyio

import meetcore
from meetcore import Conflict, Engine
from meetcore.commands import Join


class Counter:
    """Counts decisions: the policy hook runs once per attempt of a command."""

    def __init__(self) -> None:
        self.attempts = 0

    @meetcore.hookimpl
    def meetcore_check_command(self) -> None:
        self.attempts += 1


async def main(url: str, prefix: str, meetings: int, joins: int) -> None:
    counter = Counter()
    commands = gave_up = 0
    async with Engine.open(url, plugins=[counter], sweep_leases=False) as engine:
        print("ready", flush=True)
        await anyio.to_thread.run_sync(sys.stdin.readline)

        async def joiner(meeting_id: str) -> None:
            nonlocal commands, gave_up
            for n in range(joins):
                join = Join(
                    meeting_id=meeting_id,
                    participant_id=f"{prefix}-{n}",
                    connection_id=f"{prefix}-c{n}",
                    session_id=f"s-{prefix}",
                    name=f"{prefix} {n}",
                )
                while True:
                    try:
                        await engine.execute(join)
                        break
                    except Conflict:  # the other process kept winning: try again
                        gave_up += 1
                commands += 1

        async with anyio.create_task_group() as tasks:
            for m in range(meetings):
                tasks.start_soon(joiner, f"m-{m}")
    print(json.dumps({"commands": commands, "attempts": counter.attempts, "gave_up": gave_up}))


if __name__ == "__main__":
    anyio.run(main, sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4]))
