"""VideoSDK's Python SDK on meetcore, beside meetcore's own client, in the same run:
`uv run python benchmarks/videosdk.py [--joins 5] [--seconds 8] [--subscribers 2] [--json]`.

Not a test: it measures and reports. Each side runs on a `meetcore serve --dev
--dev-tls` of its own (memory store, candidates on 127.0.0.1), one after the other:

- `join`: seconds from `join()` to meeting-joined, mic and webcam off (the SDK: its
  HTTPS init-config, the socket, its two transports, `requestEntry`, `join` and its two
  `produceData`; meetcore's client: its socket and `join`), the median of `--joins`.
  Each SDK join runs in a new process, whose start is not counted. Target: the SDK's at
  most 1.5 times meetcore's.
- `forward`: one publisher (640x480 at 30 fps, a bar moving across, and a 440 Hz tone)
  and `--subscribers` RECV_ONLY subscribers that decode what they get: all SDK clients,
  then all meetcore clients. The server's CPU (user + system, /proc) over `--seconds`
  once every subscriber decodes, per forwarded stream (audio and video: 2 a
  subscriber), and the video frames a second each subscriber decoded. Target: the
  SDK's per stream at most 1.2 times meetcore's.

The SDK runs from `--sdk-python` (a python with `videosdk` installed; by default one
made with uv in ~/.cache/meetcore-bench, at the version the tests pin) and its driver
`tests/videosdk/sdk_media.py`, unchanged. Everything stays on 127.0.0.1.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import fractions
import json
import os
import ssl
import statistics
import sys
import tempfile
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any
from unittest.mock import patch

import av
import httpx
from aiortc.mediastreams import VideoStreamTrack

from meetcore_client import Meeting, init_meeting
from meetcore_media.tracks import ToneAudioTrack
from meetcore_server.testing import ServeProcess

ROOT = Path(__file__).resolve().parents[1]
# the tests' pin of the SDK and their driver of it, shared (sdk_process.py)
sys.path[:0] = [str(ROOT / "tests"), str(ROOT / "tests" / "videosdk")]
from sdk_process import SdkProcess  # noqa: E402
from support import VIDEOSDK, fresh_venv  # noqa: E402

LOOPBACK = ["127.0.0.1"]
TICKS = os.sysconf("SC_CLK_TCK")


class Bar(VideoStreamTrack):
    """The SDK driver's camera, for meetcore's client: 640x480 at 30 fps, a bright bar
    moving across (the same picture, so the encoders make the same stream)."""

    def __init__(self) -> None:
        super().__init__()
        self.count = 0

    async def recv(self) -> av.VideoFrame:
        pts, _ = await self.next_timestamp()
        frame = av.VideoFrame(width=640, height=480, format="yuv420p")
        x = (self.count * 8) % 600
        self.count += 1
        for number, plane in enumerate(frame.planes):
            width = plane.line_size
            rows = plane.buffer_size // width
            if number == 0:
                row = bytes([40]) * x + bytes([230]) * 40 + bytes([40]) * (width - x - 40)
            else:
                row = bytes([128]) * width
            plane.update(row * rows)
        frame.pts, frame.time_base = pts, fractions.Fraction(1, 90000)
        return frame


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICKS


def sdk_python(given: str | None) -> Path:
    """A python with the SDK: `given`, or one made (once) in the cache folder."""
    if given:
        return Path(given)
    folder = Path.home() / ".cache" / "meetcore-bench" / VIDEOSDK.replace("==", "-")
    python = folder / "venv" / "bin" / "python"
    if not python.exists():
        folder.mkdir(parents=True, exist_ok=True)
        python = fresh_venv(folder, VIDEOSDK)
    return python


class Server:
    def __init__(self, process: ServeProcess, folder: Path) -> None:
        self.process = process
        self.url = process.url
        self.ca = str(Path(folder) / "meetcore-dev-ca.pem")
        trust = ssl.create_default_context(cafile=self.ca)
        self.http = httpx.Client(base_url=self.url, verify=trust, timeout=10)
        self.token = self.http.get("/get-token").json()["token"]

    def room(self) -> str:
        made = self.http.post("/v2/rooms", headers={"Authorization": self.token})
        return str(made.json()["roomId"])


@contextlib.contextmanager
def serve() -> Any:
    with tempfile.TemporaryDirectory() as folder:
        command = [sys.executable, "-m", "meetcore.cli", "serve", "--port", "0", "--dev"]
        command += ["--dev-tls", "--store", "memory://", "--log-level", "warning"]
        env = {"MEETCORE_ICE_ADDRESSES": "127.0.0.1"}
        trusted = {"SSL_CERT_FILE": str(Path(folder) / "meetcore-dev-ca.pem")}
        with (
            ServeProcess(Path(folder), command=command, env=env) as process,
            patch.dict(os.environ, trusted),  # meetcore's client trusts the dev CA
        ):
            yield Server(process, Path(folder))


@contextlib.asynccontextmanager
async def sdk_client(
    python: Path, server: Server, room: str, peer_id: str, **options: Any
) -> AsyncIterator[SdkProcess]:
    client = await SdkProcess.start(
        python,
        room=room,
        token=server.token,
        signaling_base_url=server.url.removeprefix("https://"),
        peer_id=peer_id,
        ca=server.ca,
        options=options,
    )
    try:
        yield client
    finally:
        await client.stop(leave=True)


async def joined(client: SdkProcess) -> dict[str, Any]:
    """The client's meeting-joined event; its error instead fails the run at once."""
    seen = await client.first(lambda e: e["event"] in ("meeting-joined", "error"), 60)
    if seen["event"] == "error":
        raise RuntimeError(f"the SDK failed: {seen}")
    return seen


def native(server: Server, room: str, **options: Any) -> Meeting:
    return init_meeting(
        base_url=server.url,
        token=server.token,
        meeting_id=room,
        ice_addresses=LOOPBACK,
        **options,
    )


# -- join --------------------------------------------------------------------------------


async def joins(python: Path, count: int) -> dict[str, Any]:
    off = {"mic_enabled": False, "webcam_enabled": False}
    sdk_times, native_times = [], []
    with serve() as server:
        room = server.room()
        # warm both paths once (the server's first TLS handshake, imports), uncounted
        for number in range(count + 1):
            async with sdk_client(python, server, room, f"sdk-{number}", **off) as client:
                joined_at = await joined(client)
            meeting = native(server, room, **off)
            started = time.monotonic()
            await meeting.join()
            took = time.monotonic() - started
            await meeting.leave()
            if number:
                sdk_times.append(joined_at["seconds"])
                native_times.append(took)
    sdk, meetcore = statistics.median(sdk_times), statistics.median(native_times)
    return {
        "sdk_seconds": round(sdk, 4),
        "meetcore_seconds": round(meetcore, 4),
        "ratio": round(sdk / meetcore, 2),
        "target": 1.5,
        "sdk_all": [round(t, 4) for t in sdk_times],
        "meetcore_all": [round(t, 4) for t in native_times],
    }


# -- forwarding ----------------------------------------------------------------------------


async def window(server: Server, seconds: float, frames: Any) -> tuple[float, float, float]:
    """Server CPU seconds and video frames decoded over `seconds`, and the elapsed time."""
    pid = server.process.process.pid
    before_cpu, before_frames, started = cpu_seconds(pid), await frames(), time.monotonic()
    await asyncio.sleep(seconds)
    cpu, decoded = cpu_seconds(pid) - before_cpu, await frames() - before_frames
    return cpu, decoded, time.monotonic() - started


async def forward_sdk(python: Path, subscribers: int, seconds: float) -> dict[str, Any]:
    with serve() as server:
        room = server.room()
        async with contextlib.AsyncExitStack() as stack:
            await stack.enter_async_context(sdk_client(python, server, room, "publisher"))
            clients = []
            for number in range(subscribers):
                client = await stack.enter_async_context(
                    sdk_client(
                        python,
                        server,
                        room,
                        f"subscriber-{number}",
                        mode="RECV_ONLY",
                        mic_enabled=False,
                        webcam_enabled=False,
                    )
                )
                clients.append(client)

            async def frames() -> int:
                total = 0
                for client in clients:
                    got = (await client.stats())["frames"].get("publisher:video")
                    total += got[0] if got else 0
                return total

            async def everyone_decodes() -> bool:
                for client in clients:
                    got = (await client.stats())["frames"].get("publisher:video")
                    if not got or not got[0]:
                        return False
                return True

            async with asyncio.timeout(60):
                while not await everyone_decodes():
                    await asyncio.sleep(0.2)
            await asyncio.sleep(2)  # settle
            cpu, decoded, elapsed = await window(server, seconds, frames)
    return _forwarding(cpu, decoded, elapsed, subscribers)


async def forward_meetcore(subscribers: int, seconds: float) -> dict[str, Any]:
    with serve() as server:
        room = server.room()
        meetings = []
        tasks: set[asyncio.Future[None]] = set()
        try:
            publisher = native(
                server,
                room,
                mic_enabled=True,
                webcam_enabled=True,
                custom_camera_video_track=Bar(),
                custom_microphone_audio_track=ToneAudioTrack(frequency=440),
            )
            meetings.append(publisher)
            await publisher.join()
            counts: list[list[int]] = []
            for _ in range(subscribers):
                subscriber = native(server, room, mode="RECV_ONLY")
                meetings.append(subscriber)
                await subscriber.join()
                count = [0]
                counts.append(count)

                async def counting(stream: Any, count: list[int] = count) -> None:
                    with contextlib.suppress(Exception):
                        while True:
                            await stream.track.recv()
                            count[0] += 1

                async with asyncio.timeout(30):
                    while True:
                        who = subscriber.participants.get(publisher.participant_id)
                        videos = [
                            s for s in (who.streams.values() if who else ()) if s.kind == "video"
                        ]
                        if videos:
                            break
                        await asyncio.sleep(0.05)
                tasks.add(asyncio.ensure_future(counting(videos[0])))

            async def frames() -> int:
                return sum(count[0] for count in counts)

            async with asyncio.timeout(30):
                while not all(count[0] for count in counts):
                    await asyncio.sleep(0.1)
            await asyncio.sleep(2)
            cpu, decoded, elapsed = await window(server, seconds, frames)
        finally:
            for task in tasks:
                task.cancel()
            for meeting in meetings:
                if meeting.joined:
                    await meeting.leave()
    return _forwarding(cpu, decoded, elapsed, subscribers)


def _forwarding(cpu: float, decoded: float, elapsed: float, subscribers: int) -> dict[str, Any]:
    streams = 2 * subscribers
    return {
        "server_cpu_percent": round(100 * cpu / elapsed, 1),
        "server_cpu_percent_per_stream": round(100 * cpu / elapsed / streams, 3),
        "fps_per_subscriber": round(decoded / elapsed / subscribers, 1),
    }


async def main(arguments: argparse.Namespace) -> dict[str, Any]:
    python = sdk_python(arguments.sdk_python)
    result: dict[str, Any] = {"joins": arguments.joins, "seconds": arguments.seconds}
    result["join"] = await joins(python, arguments.joins)
    sdk = await forward_sdk(python, arguments.subscribers, arguments.seconds)
    meetcore = await forward_meetcore(arguments.subscribers, arguments.seconds)
    result["forward"] = {
        "subscribers": arguments.subscribers,
        "sdk": sdk,
        "meetcore": meetcore,
        "ratio": round(
            sdk["server_cpu_percent_per_stream"] / meetcore["server_cpu_percent_per_stream"], 2
        ),
        "target": 1.2,
    }
    return result


def report(result: dict[str, Any]) -> str:
    join, forward = result["join"], result["forward"]
    return "\n".join(
        [
            f"join (median of {result['joins']}):"
            f" VideoSDK's SDK {join['sdk_seconds'] * 1000:.0f} ms,"
            f" meetcore's client {join['meetcore_seconds'] * 1000:.0f} ms:"
            f" {join['ratio']}x (target at most {join['target']}x)",
            f"forwarding to {forward['subscribers']} subscribers, server CPU per stream:"
            f" VideoSDK {forward['sdk']['server_cpu_percent_per_stream']}%,"
            f" meetcore {forward['meetcore']['server_cpu_percent_per_stream']}%:"
            f" {forward['ratio']}x (target at most {forward['target']}x);"
            f" decoded fps per subscriber {forward['sdk']['fps_per_subscriber']}"
            f" / {forward['meetcore']['fps_per_subscriber']}",
        ]
    )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--joins", type=int, default=5)
    parser.add_argument("--seconds", type=float, default=8.0)
    parser.add_argument("--subscribers", type=int, default=2)
    parser.add_argument("--sdk-python", help="a python with videosdk installed")
    parser.add_argument("--json", action="store_true")
    arguments = parser.parse_args()
    outcome = asyncio.run(main(arguments))
    print(json.dumps(outcome, indent=2) if arguments.json else report(outcome))
