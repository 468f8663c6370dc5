"""Media forwarding's CPU cost: `uv run python benchmarks/media.py [--subscribers 1 2 4] [--json]`.

Not a test: it measures and reports. One publisher sends a 640x480 VP8 video at 30
fps (a scrolling noise texture: a picture that costs something to encode) to a server
process; N subscribers receive it and
decode it. What is measured is the server process's CPU time (user + system, from
/proc) over a window of `--seconds` once every subscriber is receiving, and the
frames the subscribers decoded in that window. The server is, in turn:

- `meetcore`: a real `meetcore serve` (SQLite), the clients the Python client SDK
  (one publisher with a custom 640x480 camera track, N RECV_ONLY subscribers): the
  whole server, forwarding encoded frames;
- `forward`: a bare aiortc server in a subprocess running only the forwarding path
  (`_forward`: the receiver's encoded frames packed by each subscriber's sender);
- `relay`: the same bare server with aiortc's `MediaRelay` instead: the publisher's
  frames decoded once and encoded again for every subscriber.

The bare servers exchange SDP with this process over their stdin and stdout. All
media goes to 127.0.0.1, bounded in time.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import av
import httpx
from aiortc import MediaStreamTrack, RTCPeerConnection, RTCSessionDescription
from aiortc.contrib.media import MediaRelay

from meetcore_webrtc import _forward, _ice
from meetcore_webrtc.client import Meeting, init_meeting
from meetcore_webrtc.tracks import SyntheticVideoTrack

LOOPBACK = ["127.0.0.1"]
WIDTH, HEIGHT, FPS = 640, 480, 30
TICKS = os.sysconf("SC_CLK_TCK")


class ScrollingNoise(SyntheticVideoTrack):
    """A noise texture scrolling down 4 rows a frame: motion and detail, like a camera."""

    def __init__(self) -> None:
        super().__init__(WIDTH, HEIGHT, FPS)
        rng = random.Random(7)
        self._noise = bytes(rng.getrandbits(8) // 2 + 64 for _ in range(WIDTH * HEIGHT))

    async def recv(self) -> av.VideoFrame:
        frame = await super().recv()
        shift = (self.frames * 4 % HEIGHT) * WIDTH
        frame.planes[0].update(self._noise[shift:] + self._noise[:shift])
        return frame


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICKS


async def negotiate(pc: RTCPeerConnection, send: Any) -> None:
    offer = await pc.createOffer()
    with _ice.gathering_on(LOOPBACK):
        await pc.setLocalDescription(offer)
    answer = await send(pc.localDescription.sdp)
    await pc.setRemoteDescription(RTCSessionDescription(sdp=answer, type="answer"))


class Counting:
    """Decodes a remote track's frames as they come, counting them."""

    def __init__(self, track: MediaStreamTrack) -> None:
        self.frames = 0
        self.task = asyncio.ensure_future(self._run(track))

    async def _run(self, track: MediaStreamTrack) -> None:
        try:
            while True:
                await track.recv()
                self.frames += 1
        except Exception:
            pass


async def measure(pid: int, counters: list[Counting], seconds: float) -> dict[str, Any]:
    async with asyncio.timeout(30):  # every subscriber has a picture
        while not all(c.frames for c in counters):
            await asyncio.sleep(0.05)
    await asyncio.sleep(1.0)  # settle
    cpu, frames, started = cpu_seconds(pid), [c.frames for c in counters], time.monotonic()
    await asyncio.sleep(seconds)
    elapsed = time.monotonic() - started
    cpu = cpu_seconds(pid) - cpu
    received = [c.frames - f for c, f in zip(counters, frames, strict=True)]
    return {
        "server_cpu_percent": round(100 * cpu / elapsed, 1),
        "fps_per_subscriber": round(sum(received) / len(received) / elapsed, 1),
    }


# -- the bare server (a subprocess) -------------------------------------------------------


async def bare_server(mode: str) -> None:
    """Reads {"role", "sdp"} lines on stdin, writes each answer's SDP as a JSON line."""
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    pcs: list[RTCPeerConnection] = []
    relay = MediaRelay()
    publication: _forward.Publication | None = None
    source: MediaStreamTrack | None = None
    while line := await reader.readline():
        request = json.loads(line)
        pc = RTCPeerConnection(_ice.configuration([]))
        pcs.append(pc)
        await pc.setRemoteDescription(RTCSessionDescription(sdp=request["sdp"], type="offer"))
        (transceiver,) = pc.getTransceivers()
        if request["role"] == "publisher":
            transceiver.direction = "recvonly"
            if mode == "forward":
                publication = _forward.Publication("publisher", "video", transceiver.receiver)
                _forward.install_tap(transceiver.receiver, publication.feed)
            else:
                source = transceiver.receiver.track
        else:
            transceiver.direction = "sendonly"
            if mode == "forward":
                assert publication is not None
                track = publication.subscribe()
                transceiver.sender.replaceTrack(track)
                _forward.hook_keyframe_requests(transceiver.sender, track)
            else:
                assert source is not None
                transceiver.sender.replaceTrack(relay.subscribe(source))
        answer = await pc.createAnswer()
        with _ice.gathering_on(LOOPBACK):
            await pc.setLocalDescription(answer)
        print(json.dumps({"sdp": pc.localDescription.sdp}), flush=True)
    for pc in pcs:
        await pc.close()


async def run_bare(mode: str, subscribers: int, seconds: float) -> dict[str, Any]:
    server = await asyncio.create_subprocess_exec(
        sys.executable,
        __file__,
        "--bare-server",
        mode,
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
    )
    assert server.stdin is not None
    assert server.stdout is not None
    stdin, stdout = server.stdin, server.stdout

    async def send(role: str, sdp: str) -> str:
        stdin.write((json.dumps({"role": role, "sdp": sdp}) + "\n").encode())
        await stdin.drain()
        return str(json.loads(await stdout.readline())["sdp"])

    pcs = []
    try:
        publisher = RTCPeerConnection(_ice.configuration([]))
        pcs.append(publisher)
        sender = publisher.addTransceiver(ScrollingNoise(), "sendonly")
        _forward.prefer_forwarded_codecs(sender)
        await negotiate(publisher, lambda sdp: send("publisher", sdp))
        await asyncio.sleep(0.5)
        counters = []
        for _ in range(subscribers):
            pc = RTCPeerConnection(_ice.configuration([]))
            pcs.append(pc)
            transceiver = pc.addTransceiver("video", "recvonly")
            _forward.prefer_forwarded_codecs(transceiver)
            await negotiate(pc, lambda sdp: send("subscriber", sdp))
            counters.append(Counting(transceiver.receiver.track))
        return await measure(server.pid, counters, seconds)
    finally:
        for pc in pcs:
            await pc.close()
        stdin.close()
        try:
            await asyncio.wait_for(server.wait(), 10)
        except TimeoutError:
            server.kill()


# -- the real server ------------------------------------------------------------------------


async def run_meetcore(subscribers: int, seconds: float) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as folder:
        env = {k: v for k, v in os.environ.items() if not k.startswith("MEETCORE_")}
        env["MEETCORE_ICE_ADDRESSES"] = "127.0.0.1"
        command = [sys.executable, "-m", "meetcore.cli", "serve", "--port", "0", "--dev"]
        server = subprocess.Popen(command, cwd=folder, env=env, stderr=subprocess.PIPE, text=True)
        meetings: list[Meeting] = []
        try:
            assert server.stderr is not None
            url = ""
            while not url:
                line = server.stderr.readline()
                if not line:
                    raise RuntimeError("meetcore serve did not start")
                found = re.search(r"serving on (http://\S+)", line)
                url = found.group(1) if found else ""
            async with httpx.AsyncClient(base_url=url, timeout=10) as http:
                token = (await http.get("/get-token")).json()["token"]
                room = (await http.post("/v2/rooms", headers={"Authorization": token})).json()
            options = {"base_url": url, "token": token, "meeting_id": room["roomId"]}
            publisher = init_meeting(
                **options,
                webcam_enabled=True,
                custom_camera_video_track=ScrollingNoise(),
                ice_addresses=LOOPBACK,
            )
            meetings.append(publisher)
            await publisher.join()
            counters = []
            for _ in range(subscribers):
                subscriber = init_meeting(**options, mode="RECV_ONLY", ice_addresses=LOOPBACK)
                meetings.append(subscriber)
                await subscriber.join()
                async with asyncio.timeout(15):
                    while not subscriber.participants.get(publisher.participant_id, None) or not (
                        subscriber.participants[publisher.participant_id].streams
                    ):
                        await asyncio.sleep(0.05)
                (stream,) = subscriber.participants[publisher.participant_id].streams.values()
                counters.append(Counting(stream.track))
            return await measure(server.pid, counters, seconds)
        finally:
            for meeting in meetings:
                if meeting.joined:
                    await meeting.leave()
            server.terminate()
            server.wait(15)


async def main(args: argparse.Namespace) -> dict[str, Any]:
    results: dict[str, Any] = {
        "publisher": f"{WIDTH}x{HEIGHT} VP8 at {FPS} fps",
        "seconds": args.seconds,
        "cpus": os.cpu_count(),
    }
    for mode in args.modes:
        for count in args.subscribers:
            if mode == "meetcore":
                result = await run_meetcore(count, args.seconds)
            else:
                result = await run_bare(mode, count, args.seconds)
            results[f"{mode}/{count}"] = result
            if not args.json:
                print(
                    f"{mode:8} {count} subscriber(s): server {result['server_cpu_percent']:5.1f}%"
                    f" of a core, {result['fps_per_subscriber']:4.1f} fps each",
                    flush=True,
                )
    return results


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--subscribers", type=int, nargs="+", default=[1, 2, 4])
    parser.add_argument("--modes", nargs="+", default=["meetcore", "forward", "relay"])
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--bare-server", choices=["forward", "relay"], help=argparse.SUPPRESS)
    arguments = parser.parse_args()
    if arguments.bare_server:
        asyncio.run(bare_server(arguments.bare_server))
    else:
        outcome = asyncio.run(main(arguments))
        if arguments.json:
            print(json.dumps(outcome, indent=2))
