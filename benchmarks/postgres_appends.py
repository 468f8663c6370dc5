"""meetcore-postgres throughput and cross-node latency, on the PostgreSQL of this machine.

- appends: durable commands/s (`Engine.execute` of joins) from 100 concurrent meetings
  on one node (one process), then the same 100 meetings spread over two nodes (two
  processes, 50 each, on one database);
- latency: node A executes joins at a steady rate, node B (another process) is
  subscribed to the meeting; each join carries `time.time()` in its metadata and B
  notes when the record reaches its subscriber. p50/p99 against the 50 ms p99 target.

    uv run python benchmarks/postgres_appends.py [--seconds 3] [--meetings 100]
        [--server postgresql://postgres@127.0.0.1:5432] [--json]

It creates a database `meetcore_bench_<random>` and drops it at the end. Not a test: it
prints numbers.
"""

from __future__ import annotations

import argparse
import json
import secrets
import statistics
import subprocess
import sys
import time
from typing import Any

import anyio
import psycopg

from meetcore import Engine
from meetcore.commands import InitMeeting, Join
from meetcore_postgres import PostgresStore

TARGET_P99_MS = 50
SCRIPT = __file__


def join(meeting_id: str, n: int, prefix: str = "p", **meta: Any) -> Join:
    return Join(
        meeting_id=meeting_id,
        participant_id=f"{prefix}{n}",
        connection_id=f"{prefix}c{n}",
        session_id="s-1",
        name=f"participant {n}",
        meta_data=meta,
    )


# -- appends -------------------------------------------------------------------------


async def appends(url: str, meetings: list[str], seconds: float, prefix: str) -> dict[str, Any]:
    """Joins executed in `seconds` by one task per meeting, through one engine."""
    store = PostgresStore(url)
    done = 0
    try:
        async with Engine.open(store, sweep_leases=False) as engine:
            for meeting_id in meetings:
                await engine.execute(InitMeeting(meeting_id=meeting_id))
            start_transactions = store.transactions
            go = time.time()
            if prefix:  # a node process: start when the parent says, together with the other
                print("ready", flush=True)
                go = float(await anyio.to_thread.run_sync(sys.stdin.readline))
                await anyio.sleep(max(go - time.time(), 0))
            deadline = go + seconds

            async def worker(meeting_id: str) -> None:
                nonlocal done
                n = 0
                while time.time() < deadline:
                    await engine.execute(join(meeting_id, n, prefix or "p"))
                    n += 1
                    done += 1

            async with anyio.create_task_group() as tasks:
                for meeting_id in meetings:
                    tasks.start_soon(worker, meeting_id)
            elapsed = time.time() - go
            transactions = store.transactions - start_transactions
    finally:
        await store.close()
    return {"commands": done, "seconds": elapsed, "transactions": transactions}


def two_nodes(url: str, meetings: int, seconds: float) -> dict[str, Any]:
    """Two node processes, each driving half of the meetings, started together."""
    half = meetings // 2
    processes = [
        subprocess.Popen(
            [sys.executable, SCRIPT, "_node", url, prefix, str(half), str(seconds)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        for prefix in ("a", "b")
    ]
    results = []
    try:
        for process in processes:
            assert process.stdout is not None
            if process.stdout.readline() != "ready\n":
                raise SystemExit("a node process failed to start")
        go = time.time() + 0.5
        for process in processes:
            assert process.stdin is not None
            process.stdin.write(f"{go}\n")
            process.stdin.flush()
        for process in processes:
            out, _ = process.communicate(timeout=seconds + 120)
            results.append(json.loads(out.strip().splitlines()[-1]))
    finally:
        for process in processes:
            if process.poll() is None:
                process.kill()
    commands = sum(r["commands"] for r in results)
    elapsed = max(r["seconds"] for r in results)
    return {
        "commands": commands,
        "seconds": elapsed,
        "transactions": sum(r["transactions"] for r in results),
        "per_node": [round(r["commands"] / r["seconds"]) for r in results],
    }


async def node_main(url: str, prefix: str, meetings: int, seconds: float) -> None:
    result = await appends(url, [f"{prefix}-m-{n}" for n in range(meetings)], seconds, prefix)
    print(json.dumps(result), flush=True)


# -- cross-node latency ---------------------------------------------------------------


async def subscriber_main(url: str, meeting_id: str, count: int) -> None:
    """Node B: follow the meeting; print the latency (ms) of each join that carries a time."""
    latencies: list[float] = []
    async with Engine.open(url, sweep_leases=False) as engine:
        print("ready", flush=True)
        async for record in engine.subscribe(meeting_id):
            sent = getattr(record.event, "meta_data", {}).get("sent")
            if sent is not None:
                latencies.append((time.time() - sent) * 1000)
                if len(latencies) == count:
                    break
    print(json.dumps(latencies), flush=True)


async def latency(url: str, count: int, rate: float) -> dict[str, Any]:
    meeting_id = "lat-mtg-one"
    store = PostgresStore(url)
    try:
        async with Engine.open(store, sweep_leases=False) as engine:
            await engine.execute(InitMeeting(meeting_id=meeting_id))
            process = await anyio.open_process(
                [sys.executable, SCRIPT, "_subscriber", url, meeting_id, str(count)],
            )
            assert process.stdout is not None
            output = b""
            while b"ready\n" not in output:
                output += await process.stdout.receive()
            await anyio.sleep(0.5)  # let B's watch connect
            for n in range(count):
                await engine.execute(join(meeting_id, n, sent=time.time()))
                await anyio.sleep(1 / rate)
            with anyio.fail_after(30):
                rest = b""
                async for chunk in process.stdout:
                    rest += chunk
            await process.wait()
    finally:
        await store.close()
    samples = sorted(json.loads(rest.strip().splitlines()[-1]))
    return {
        "count": len(samples),
        "rate_per_s": rate,
        "p50_ms": statistics.median(samples),
        "p99_ms": samples[min(len(samples) - 1, int(len(samples) * 0.99))],
        "max_ms": samples[-1],
    }


# -- main ------------------------------------------------------------------------------


async def run(server: str, seconds: float, meetings: int, samples: int) -> dict[str, Any]:
    name = f"meetcore_bench_{secrets.token_hex(4)}"
    with psycopg.connect(f"{server}/postgres", autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    try:
        url = f"{server}/{name}"
        one = await appends(f"{url}?schema=one", [f"m-{n}" for n in range(meetings)], seconds, "")
        two = await anyio.to_thread.run_sync(two_nodes, f"{url}?schema=two", meetings, seconds)
        lat = await latency(f"{url}?schema=lat", samples, rate=200)
    finally:
        with psycopg.connect(f"{server}/postgres", autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    for result in (one, two):
        result["commands_per_s"] = round(result["commands"] / result["seconds"])
        result["appends_per_transaction"] = round(result["commands"] / result["transactions"], 1)
    return {"meetings": meetings, "one_node": one, "two_nodes": two, "latency": lat}


def render(report: dict[str, Any]) -> list[str]:
    one, two, lat = report["one_node"], report["two_nodes"], report["latency"]
    verdict = "meets" if lat["p99_ms"] < TARGET_P99_MS else "misses"
    return [
        f"one node:  {one['commands_per_s']:>7,} commands/s from {report['meetings']} meetings "
        f"({one['appends_per_transaction']} appends a transaction)",
        f"two nodes: {two['commands_per_s']:>7,} commands/s from {report['meetings']} meetings "
        f"(per node {', '.join(f'{r:,}' for r in two['per_node'])}; "
        f"{two['appends_per_transaction']} appends a transaction)",
        f"cross-node latency over {lat['count']} joins at {lat['rate_per_s']:.0f}/s: "
        f"p50 {lat['p50_ms']:.1f} ms, p99 {lat['p99_ms']:.1f} ms, max {lat['max_ms']:.1f} ms "
        f"({verdict} the p99 < {TARGET_P99_MS} ms target)",
    ]


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "_node":
        anyio.run(node_main, sys.argv[2], sys.argv[3], int(sys.argv[4]), float(sys.argv[5]))
    elif len(sys.argv) > 1 and sys.argv[1] == "_subscriber":
        anyio.run(subscriber_main, sys.argv[2], sys.argv[3], int(sys.argv[4]))
    else:
        parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
        parser.add_argument("--seconds", type=float, default=3.0)
        parser.add_argument("--meetings", type=int, default=100)
        parser.add_argument("--samples", type=int, default=1000)
        parser.add_argument("--server", default="postgresql://postgres@127.0.0.1:5432")
        parser.add_argument("--json", action="store_true")
        options = parser.parse_args()
        report = anyio.run(run, options.server, options.seconds, options.meetings, options.samples)
        if options.json:
            print(json.dumps(report, indent=2))
        else:
            print("\n".join(render(report)))
