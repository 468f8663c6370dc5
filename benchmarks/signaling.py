"""Signaling at scale: `uv run python benchmarks/signaling.py [--participants 1000] [--json]`.

Not a test: it measures and reports. A real `meetcore serve` subprocess (SQLite, as
by default) on 127.0.0.1, and this process running the clients:

- `converge`: N signaling-only participants (the Python client SDK) join one meeting
  through real WebSockets, all at once; the time until every client's roster holds
  all N (target: under 10 s for 1,000 on a 2-core machine). Every roster is checked
  to be the same.
- `latency`: 1,000 participants join another meeting at a steady rate (100 joins/s)
  and stay; each join is timed from connecting to the server's `welcome` (what
  `meeting-joined` waits for): p50 and p99 (target p99 under 250 ms), while everyone
  already in receives each join. These joiners speak the wire protocol and do not
  decode what they receive, so that the clients' own work stays out of the server's
  numbers.
- the server's peak resident memory (VmHWM) in each (target under 300 MB).
- `keepalive`: many small REST requests (`GET /v2/rooms/validate/{roomId}`) one after
  another on one keep-alive connection, against the same requests each on a new
  connection (the peer). Reusing a connection must not be slower than opening one: the
  ratio of the medians is at most 1 (it was ~15 when accepted sockets lacked
  TCP_NODELAY and every reply waited ~40 ms for the client's delayed ACK).

Each phase runs on a fresh server process.

Traffic goes to 127.0.0.1 only, bounded in count and time.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
import websockets

from meetcore_client import Meeting, init_meeting
from meetcore_server.testing import ServeProcess

TARGET_CONVERGE_S = 10.0
TARGET_P99_MS = 250.0
TARGET_RSS_MB = 300.0
TARGET_KEEPALIVE_RATIO = 1.0  # keep-alive median / new-connection median


def peak_rss_mb(pid: int) -> float:
    """The peak resident memory (VmHWM) of the running process `pid`."""
    status = Path(f"/proc/{pid}/status").read_text()
    found = re.search(r"VmHWM:\s+(\d+) kB", status)
    return int(found.group(1)) / 1024 if found else float("nan")


def cpu_seconds(pid: int) -> float:
    """User + system CPU time the running process `pid` has used so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def _room(client: httpx.AsyncClient, token: str) -> str:
    response = await client.post("/v2/rooms", headers={"Authorization": token})
    response.raise_for_status()
    room: str = response.json()["roomId"]
    return room


def _meeting(url: str, token: str, room: str, n: int) -> Meeting:
    return init_meeting(
        base_url=url, token=token, meeting_id=room, name=f"p{n}", mode="SIGNALLING_ONLY"
    )


async def converge(url: str, token: str, room: str, participants: int) -> dict[str, Any]:
    meetings = [_meeting(url, token, room, n) for n in range(participants)]
    everyone = asyncio.Event()
    complete = 0

    def check(meeting: Meeting) -> None:
        nonlocal complete
        if len(meeting.participants) == participants - 1 and not getattr(meeting, "_done", 0):
            meeting._done = 1  # type: ignore[attr-defined]
            complete += 1
            if complete == participants:
                everyone.set()

    for meeting in meetings:
        meeting.on("participant-joined", lambda _p, m=meeting: check(m))
        meeting.on("meeting-joined", lambda m=meeting: check(m))
    started = time.perf_counter()
    gate = asyncio.Semaphore(100)  # handshakes in flight at once

    async def join(meeting: Meeting) -> None:
        async with gate:
            await meeting.join()

    await asyncio.gather(*(join(m) for m in meetings))
    await asyncio.wait_for(everyone.wait(), timeout=120)
    seconds = time.perf_counter() - started
    rosters = {
        frozenset([*m.participants, m.local_participant.id])  # type: ignore[union-attr]
        for m in meetings
    }
    if len(rosters) != 1 or len(next(iter(rosters))) != participants:
        raise RuntimeError(f"the clients' rosters differ: {sorted(map(len, rosters))}")
    await asyncio.gather(*(m.close() for m in meetings))
    return {"participants": participants, "seconds": seconds, "same_roster": True}


async def _drain(socket: Any) -> None:
    """Read (and drop) everything the server sends; ping within the lease."""

    async def ping() -> None:
        while True:
            await asyncio.sleep(5)
            await socket.send('{"type":"ping"}')

    beat = asyncio.ensure_future(ping())
    try:
        async for _ in socket:
            pass
    except websockets.ConnectionClosed:
        pass
    finally:
        beat.cancel()


async def latency(url: str, token: str, room: str, joins: int, rate: float) -> dict[str, Any]:
    """Joins at a steady `rate`, each timed from connecting to the server's `welcome`.

    The joiners speak the wire protocol directly and stay in, reading every frame
    without decoding it: the server does all its fan-out work, while the clients' own
    work (which real clients do on their own machines) stays out of the measurement.
    """
    ws_url = url.replace("http", "ws", 1) + "/ws"
    latencies: list[float] = []
    sockets: list[Any] = []
    readers: list[asyncio.Task[None]] = []

    async def join(n: int) -> None:
        started = time.perf_counter()
        socket = await websockets.connect(ws_url, max_size=None, compression=None)
        hello = {"type": "join", "token": token, "meetingId": room, "name": f"p{n}"}
        await socket.send(json.dumps({**hello, "mode": "SIGNALLING_ONLY"}))
        while True:  # the server writes the tag first: no need to parse the snapshot
            reply = await socket.recv()
            if reply.startswith('{"type":"welcome"'):
                break
            if reply.startswith('{"type":"error"'):
                raise RuntimeError(reply)
        latencies.append((time.perf_counter() - started) * 1000)
        sockets.append(socket)
        readers.append(asyncio.ensure_future(_drain(socket)))

    tasks = []
    start = time.perf_counter()
    for n in range(joins):
        delay = start + n / rate - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        tasks.append(asyncio.ensure_future(join(n)))
    await asyncio.gather(*tasks)
    await asyncio.gather(*(socket.close() for socket in sockets))
    await asyncio.gather(*readers)
    ordered = sorted(latencies)
    return {
        "joins": joins,
        "rate_per_s": rate,
        "p50_ms": statistics.median(ordered),
        "p99_ms": ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))],
        "max_ms": ordered[-1],
    }


async def keepalive(url: str, token: str, room: str, requests: int) -> dict[str, Any]:
    headers = {"Authorization": token}
    path = f"/v2/rooms/validate/{room}"

    async def timed(client: httpx.AsyncClient) -> float:
        start = time.perf_counter()
        response = await client.get(path, headers=headers)
        elapsed = time.perf_counter() - start
        response.raise_for_status()
        return elapsed * 1000

    one = httpx.Limits(max_connections=1, max_keepalive_connections=1)
    async with httpx.AsyncClient(base_url=url, limits=one) as client:
        await timed(client)  # connect outside the timing
        reused = [await timed(client) for _ in range(requests)]
    fresh = []
    for _ in range(requests):
        async with httpx.AsyncClient(base_url=url) as client:
            fresh.append(await timed(client))
    reused_ms, fresh_ms = statistics.median(reused), statistics.median(fresh)
    return {
        "requests": requests,
        "keepalive_p50_ms": reused_ms,
        "keepalive_max_ms": max(reused),
        "new_connection_p50_ms": fresh_ms,
        "ratio": reused_ms / fresh_ms,
    }


def _client_cpu() -> float:
    return time.process_time()


async def bench(participants: int, joins: int, rate: float, requests: int) -> dict[str, Any]:
    """Each phase on a fresh server, so that one's leftovers (leases running out,
    say) do not disturb the next."""
    phases = [
        ("converge", lambda url, token, room: converge(url, token, room, participants)),
        ("latency", lambda url, token, room: latency(url, token, room, joins, rate)),
        ("keepalive", lambda url, token, room: keepalive(url, token, room, requests)),
    ]
    results: dict[str, Any] = {}
    for name, run in phases:
        with tempfile.TemporaryDirectory() as folder, ServeProcess(folder) as server:
            async with httpx.AsyncClient(base_url=server.url) as client:
                token = (await client.get("/get-token")).json()["token"]
                room = await _room(client, token)
                server_cpu, client_cpu = cpu_seconds(server.process.pid), _client_cpu()
                results[name] = await run(server.url, token, room)
                results[name]["server_cpu_s"] = cpu_seconds(server.process.pid) - server_cpu
                results[name]["client_cpu_s"] = _client_cpu() - client_cpu
                results[name]["server_peak_rss_mb"] = peak_rss_mb(server.process.pid)
            await server.stop(timeout=30)
    return results


def render(results: dict[str, Any]) -> list[str]:
    c, lat = results["converge"], results["latency"]
    peak = max(c["server_peak_rss_mb"], lat["server_peak_rss_mb"])
    verdict = "PASS" if c["seconds"] < TARGET_CONVERGE_S else "BELOW"
    lines = [
        f"converge: {c['participants']} participants, same roster everywhere in "
        f"{c['seconds']:.2f} s (target < {TARGET_CONVERGE_S:.0f} s: {verdict});"
        f" CPU: server {c['server_cpu_s']:.1f} s, clients {c['client_cpu_s']:.1f} s",
    ]
    verdict = "PASS" if lat["p99_ms"] < TARGET_P99_MS else "BELOW"
    lines.append(
        f"latency: {lat['joins']} joins at {lat['rate_per_s']:.0f}/s, all staying in:"
        f" p50 {lat['p50_ms']:.1f} ms,"
        f" p99 {lat['p99_ms']:.1f} ms, max {lat['max_ms']:.1f} ms"
        f" (target p99 < {TARGET_P99_MS:.0f} ms: {verdict});"
        f" CPU: server {lat['server_cpu_s']:.1f} s, clients {lat['client_cpu_s']:.1f} s"
    )
    verdict = "PASS" if peak < TARGET_RSS_MB else "BELOW"
    lines.append(
        f"server peak RSS: {peak:.0f} MB, with {c['participants']} in one meeting"
        f" (target < {TARGET_RSS_MB:.0f} MB: {verdict})"
    )
    k = results["keepalive"]
    verdict = "PASS" if k["ratio"] <= TARGET_KEEPALIVE_RATIO else "BELOW"
    lines.append(
        f"keepalive: {k['requests']} small requests on one connection: p50"
        f" {k['keepalive_p50_ms']:.2f} ms (max {k['keepalive_max_ms']:.1f}), each on a new"
        f" connection {k['new_connection_p50_ms']:.2f} ms; ratio {k['ratio']:.2f}"
        f" (target <= {TARGET_KEEPALIVE_RATIO:.0f}: {verdict})"
    )
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--participants", type=int, default=1000)
    parser.add_argument("--joins", type=int, default=1000, help="joins in the latency run")
    parser.add_argument("--rate", type=float, default=100.0, help="joins per second")
    parser.add_argument(
        "--requests", type=int, default=500, help="requests in the keep-alive run, each way"
    )
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    results = asyncio.run(bench(args.participants, args.joins, args.rate, args.requests))
    if args.json:
        print(json.dumps(results, indent=2))
    else:
        print("\n".join(render(results)))


if __name__ == "__main__":
    main()
