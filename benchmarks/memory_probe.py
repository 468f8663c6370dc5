"""The memory section's fresh process: `python memory_probe.py COMMANDS [--trace]`.

It is what an embedder's process is: Python, meetcore and what meetcore imports,
nothing of the benchmark harness (its peer library alone is megabytes). It opens an
engine on `memory://`, reads the baseline RSS, then executes the commands of the
JSON Lines file COMMANDS one line at a time, decoded as a server decodes what
arrives (each string its own object), and prints as JSON: the RSS once it holds the
meetings, after `gc.collect()`, and with `--trace` where the growth went
(tracemalloc runs from the baseline on, and costs memory of its own).
"""

from __future__ import annotations

import argparse
import gc
import json
import linecache
import tracemalloc
from pathlib import Path
from typing import Any

import anyio
import msgspec

from meetcore import Engine
from meetcore.commands import AnyCommand

MB = 1 << 20


def rss() -> int:
    """This process's resident set size in bytes (VmRSS), or -1 without /proc."""
    try:
        with open("/proc/self/status", "rb") as status:
            for line in status:
                if line.startswith(b"VmRSS:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return -1


def top_allocations(snapshot: tracemalloc.Snapshot, n: int = 12) -> tuple[float, list[Any]]:
    """What is allocated since tracing started, by file:line: total MB, the top `n` lines."""
    stats = snapshot.statistics("lineno")
    rows = []
    for stat in stats[:n]:
        frame = stat.traceback[0]
        path = Path(frame.filename)
        rows.append(
            {
                "where": f"{path.parent.name}/{path.name}:{frame.lineno}",
                "code": linecache.getline(frame.filename, frame.lineno).strip(),
                "mb": stat.size / MB,
                "blocks": stat.count,
            }
        )
    return sum(s.size for s in stats) / MB, rows


async def probe(commands: Path, trace: bool) -> dict[str, Any]:
    decode = msgspec.json.Decoder(AnyCommand).decode
    async with Engine.open("memory://", autoload=False, sweep_leases=False) as engine:
        gc.collect()
        baseline = rss()
        if trace:
            tracemalloc.start()
        meetings: dict[str, int] = {}
        with commands.open("rb") as lines:
            for line in lines:
                command = decode(line)
                await engine.execute(command)
                meetings[command.meeting_id] = meetings.get(command.meeting_id, 0) + 1
        built = rss()
        gc.collect()
        after = rss()
        traced: tuple[float, list[Any]] = (0.0, [])
        if trace:
            traced = top_allocations(tracemalloc.take_snapshot())
            tracemalloc.stop()
        # Checked once measured: every meeting has everyone who joined it.
        records = len(await engine.store.read_all(0, limit=1 << 40))
        participants = {m: len(s.participants) for m in meetings if (s := await engine.state(m))}
    return {
        "baseline_bytes": baseline,
        "built_bytes": built,
        "after_gc_bytes": after,
        "records": records,
        "participants": participants,
        "traced_mb": traced[0],
        "top_allocations": traced[1],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("commands", type=Path)
    parser.add_argument("--trace", action="store_true")
    args = parser.parse_args()
    print(json.dumps(anyio.run(probe, args.commands, args.trace)))


if __name__ == "__main__":
    main()
