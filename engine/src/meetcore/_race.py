"""Engine processes racing on one store: `meetcore.testing.race_engines`, and the racer.

A store must never let two engines win the same version of a meeting. The test of
that needs separate processes (separate connections, caches and locks), started
together: each runs this module, `python -m meetcore._race URL PREFIX MEETINGS JOINS`,
which opens `Engine.open(URL)`, prints "ready", waits for a line on stdin, then joins
JOINS participants named PREFIX-n into each of the meetings m-0 ... m-(MEETINGS-1), all
meetings at once, and prints one JSON line of counts.
"""

from __future__ import annotations

import json
import subprocess
import sys

import anyio

from meetcore._codes import Rejected
from meetcore._engine import Engine
from meetcore._store import Conflict
from meetcore.commands import Join
from meetcore.hookspecs import hookimpl

__all__ = ["race_engines"]


def race_engines(
    url: str, *, meetings: int, joins: int, racers: int = 2, timeout: float = 60.0
) -> list[dict[str, int]]:
    """Race `racers` engine processes on the store at `url` (its plugin must be
    installed): each joins `joins` participants into each of the meetings m-0 ...
    m-(`meetings` - 1), which must exist. Returns each racer's counts: `commands` run,
    `attempts` (decisions: more than commands when it lost a race and decided again)
    and `gave_up` (`Conflict` after every retry, then tried again)."""
    processes = [
        subprocess.Popen(
            [sys.executable, "-m", "meetcore._race", url, f"r{n}", str(meetings), str(joins)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for n in range(racers)
    ]
    try:
        for process in processes:  # all open and ready before any starts
            assert process.stdout is not None
            if process.stdout.readline() != "ready\n":
                raise RuntimeError(f"a racer did not start: {process.communicate()[1]}")
        for process in processes:
            assert process.stdin is not None
            process.stdin.write("go\n")
            process.stdin.flush()
        results = []
        for process in processes:
            out, err = process.communicate(timeout=timeout)
            if process.returncode != 0:
                raise RuntimeError(f"a racer failed: {err}")
            results.append(json.loads(out.strip().splitlines()[-1]))
        return results
    finally:
        for process in processes:
            if process.poll() is None:
                process.kill()
                process.wait()


class _Counter:
    """Counts decisions: the policy hook runs once per attempt of a command."""

    def __init__(self) -> None:
        self.attempts = 0

    @hookimpl
    def meetcore_check_command(self) -> None:
        self.attempts += 1


async def _race(url: str, prefix: str, meetings: int, joins: int) -> None:
    counter = _Counter()
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
                    except Conflict:  # the others kept winning: try again
                        gave_up += 1
                commands += 1

        async with anyio.create_task_group() as tasks:
            for m in range(meetings):
                tasks.start_soon(joiner, f"m-{m}")
    print(json.dumps({"commands": commands, "attempts": counter.attempts, "gave_up": gave_up}))


if __name__ == "__main__":
    try:
        anyio.run(_race, sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4]))
    except Rejected as error:  # a meeting that does not exist, say
        sys.exit(f"racer: {error}")
