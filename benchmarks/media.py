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

The bare servers exchange SDP with this process over their stdin and stdout.

`--many P S [S ...]` measures a many-party meeting on a real `meetcore serve` instead:
P publishers, each sending a 640x480 VP8 video at 30 fps and 500 kbps (`--size`,
`--fps`, `--bitrate`; frames encoded once and replayed, so that publishing costs no
encoder) and with `--audio [N]` its microphone's Opus too (every publisher's, or the
first N's; `--speaking K`: only the first K of those send a tone, the others silence;
the server forwards each participant the `--audio-streams` loudest, 3 as by
default), and S subscribers (RECV_ONLY,
the client's `decode=False`: encoded frames counted, nothing decoded) spread over
`--processes` child processes; the publishers receive each other too. For each S: the
seconds until every subscriber and publisher got a frame of every stream it should
(`streams_never_received` counts those still without after 60 s, and
`silent_sections` shows, for the first 20 sections that brought nothing, whose stream
each should carry, the RTP packets its receiver took and the packets the server's
sender reported sending),
the forwarded video streams (P x (P - 1) + P x S), the server's CPU per forwarded
stream, forwarded streams per core of server CPU, and the packets lost between the
publishers and the subscribers (RTP sequence gaps the subscribers' receivers saw,
from their `getStats()`), and the frames delivered (every frame a publisher sent in the
window, counted once per stream that should carry it: frames lost before the server
forwards them, or dropped by it, show here and not in the packets). Frames are counted
exactly: before and after the window the cameras are held until no process's count
moves for a second, so a busy process that catches up late still counts every frame
sent in the window, and none from outside it. Packets are counted over each process's
own window, timed on the machine's monotonic clock.
`largest_under_1_percent_loss` is the most forwarded streams of the run with under 1%
of the packets and of the frames lost; `relay` and `forward` are the bare servers' streams per
core at `--subscribers`, measured in the same run (those of `--modes`). All media goes to 127.0.0.1,
bounded in time.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import fractions
import json
import os
import random
import sys
import tempfile
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import av
import httpx
from aiortc import MediaStreamTrack, RTCPeerConnection, RTCSessionDescription
from aiortc.contrib.media import MediaRelay

from meetcore_client import Meeting, init_meeting
from meetcore_media import _forward, _ice
from meetcore_media.tracks import SyntheticVideoTrack, ToneAudioTrack
from meetcore_server.testing import ServeProcess

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


def udp_drops(pid: int) -> int:
    """Datagrams dropped so far by the UDP sockets a process holds (full receive buffer)."""
    inodes = set()
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        with contextlib.suppress(OSError):
            target = os.readlink(fd)
            if target.startswith("socket:["):
                inodes.add(target[8:-1])
    drops = 0
    for line in Path("/proc/net/udp").read_text().splitlines()[1:]:
        fields = line.split()
        if fields[9] in inodes:
            drops += int(fields[-1])
    return drops


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


@contextlib.asynccontextmanager
async def meetcore_room(*args: str) -> AsyncIterator[tuple[ServeProcess, dict[str, Any]]]:
    """A real `meetcore serve` (SQLite in a temporary folder, candidates on 127.0.0.1)
    with a room: the server, and the `init_meeting` options for the room."""
    with tempfile.TemporaryDirectory() as folder:
        env = {"MEETCORE_ICE_ADDRESSES": "127.0.0.1"}
        with ServeProcess(folder, env=env, args=args).wait_ready() as server:
            async with httpx.AsyncClient(base_url=server.url, timeout=10) as http:
                token = (await http.get("/get-token")).json()["token"]
                room = (await http.post("/v2/rooms", headers={"Authorization": token})).json()
            yield server, {"base_url": server.url, "token": token, "meeting_id": room["roomId"]}


async def run_meetcore(subscribers: int, seconds: float) -> dict[str, Any]:
    async with meetcore_room() as (server, options):
        meetings: list[Meeting] = []
        try:
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
            return await measure(server.process.pid, counters, seconds)
        finally:
            for meeting in meetings:
                if meeting.joined:
                    await meeting.leave()


# -- many publishers, many subscribers -----------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Shape:
    """What each publisher of `--many` sends: a WIDTHxHEIGHT VP8 video at `fps` and
    `bitrate`; the first `audio` publishers their microphone too (Opus, 50 packets a
    second), the first `speaking` of those a tone, the others silence (None: all a
    tone); the server forwards each participant the `audio_streams` loudest (0: all)."""

    width: int = WIDTH
    height: int = HEIGHT
    fps: int = FPS
    bitrate: int = 500_000
    audio: int = 0
    speaking: int | None = None
    audio_streams: int = 3

    def __str__(self) -> str:
        audio = ""
        if self.audio:
            speaking = self.audio if self.speaking is None else min(self.speaking, self.audio)
            audio = (
                f", {self.audio} of them with Opus audio ({speaking} speaking;"
                f" the server forwards {self.audio_streams or 'all'} each)"
            )
        return (
            f"{self.width}x{self.height} VP8 at {self.fps} fps, {self.bitrate // 1000} kbps{audio}"
        )


_clips: dict[Shape, list[bytes]] = {}


def clip(shape: Shape) -> list[bytes]:
    """Three seconds of a scrolling noise texture encoded once with the options aiortc's
    encoder uses (VP8, CBR), but a key frame a second so that a subscriber can start
    anywhere in the loop. The first second is left out: its key frame, made with no
    history, is six times the size of the later ones."""
    if shape not in _clips:
        width, height, fps = shape.width, shape.height, shape.fps
        codec = av.CodecContext.create("libvpx", "w")
        codec.width, codec.height, codec.pix_fmt = width, height, "yuv420p"
        codec.bit_rate, codec.gop_size = shape.bitrate, fps
        codec.time_base = fractions.Fraction(1, fps)
        rate = str(shape.bitrate)
        codec.options = {
            "bufsize": rate,
            "cpu-used": "-6",
            "deadline": "realtime",
            "lag-in-frames": "0",
            "minrate": rate,
            "maxrate": rate,
            "undershoot-pct": "100",
            "overshoot-pct": "15",
        }
        rng = random.Random(7)
        noise = bytes(rng.getrandbits(8) // 2 + 64 for _ in range(width * height))
        grey = bytes([128]) * (width * height // 4)
        frames = []
        for index in range(4 * fps):
            shift = (index * 4 % height) * width
            frame = av.VideoFrame(width, height, "yuv420p")
            frame.planes[0].update(noise[shift:] + noise[:shift])
            frame.planes[1].update(grey)
            frame.planes[2].update(grey)
            frame.pts = index
            encoded = b"".join(bytes(p) for p in codec.encode(frame))
            if index >= fps:
                frames.append(encoded)
        _clips[shape] = frames
    return _clips[shape]


class ReplayedCamera(MediaStreamTrack):
    """A camera whose frames were encoded once (`clip()`): `recv()` gives them as
    `av.Packet`s at the shape's rate, which the sender packs without encoding."""

    kind = "video"

    def __init__(self, shape: Shape) -> None:
        super().__init__()
        self.shape = shape
        self.frames = 0
        self._start: float | None = None
        self._running = asyncio.Event()
        self._running.set()

    def hold(self) -> None:
        """Sends no more frames until `go()`."""
        self._running.clear()

    def go(self) -> None:
        """Sends frames again, at the shape's rate from now on (no burst to catch up)."""
        if self._start is not None and not self._running.is_set():
            loop = asyncio.get_running_loop()
            self._start = loop.time() - self.frames / self.shape.fps
        self._running.set()

    async def recv(self) -> av.Packet:
        await self._running.wait()
        loop = asyncio.get_running_loop()
        if self._start is None:
            self._start = loop.time()
        wait = self._start + self.frames / self.shape.fps - loop.time()
        if wait > 0:
            await asyncio.sleep(wait)
        frames = clip(self.shape)
        packet = av.Packet(frames[self.frames % len(frames)])
        packet.pts = self.frames * (90000 // self.shape.fps)
        packet.time_base = fractions.Fraction(1, 90000)
        self.frames += 1
        return packet


def video_frames(meeting: Meeting) -> int:
    """The video frames a client has received so far, over all its remote streams."""
    return sum(
        getattr(stream.track, "received", 0)
        for participant in meeting.participants.values()
        for stream in participant.streams.values()
        if stream.kind == "video"
    )


async def inbound(meetings: list[Meeting]) -> dict[str, Any]:
    """What clients have received so far: video frames (taken first, at `at` on the
    machine's monotonic clock, which every process shares), audio frames per stream, and
    the packets received and lost on their inbound audio and video, from getStats()."""
    counts: dict[str, Any] = {
        "at": time.monotonic(),
        "frames": sum(video_frames(m) for m in meetings),
        # the audio frames each client got of each other one's microphone
        "audio": {
            f"{meeting.participant_id}<{stream.participant_id}": stream.track.received
            for meeting in meetings
            for participant in meeting.participants.values()
            for stream in participant.streams.values()
            if stream.kind == "audio"
        },
    }
    counts["received"] = counts["lost"] = 0
    for meeting in meetings:
        media = meeting._media
        if media is None or media.pc is None:
            continue
        for report in (await media.pc.getStats()).values():
            if getattr(report, "type", "") == "inbound-rtp":
                counts["received"] += report.packetsReceived
                counts["lost"] += report.packetsLost
    return counts


async def silent_sections(meeting: Meeting) -> list[dict[str, Any]]:
    """A client's remote sections that brought no frame: what each should carry, the RTP
    packets its receiver took and the packets the server's sender reports having sent
    (RTCP), to tell a stream the server never sent from one the client dropped."""
    media = meeting._media
    if media is None or media.pc is None:
        return [{"participant": meeting.participant_id, "media": "none"}]
    silent = []
    for transceiver in media.pc.getTransceivers():
        if transceiver.mid is None or transceiver in media._own():
            continue
        stream = media._remote.get(transceiver.mid)
        if stream is not None and getattr(stream.track, "received", 0) > 0:
            continue
        reports = (await transceiver.receiver.getStats()).values()
        silent.append(
            {
                "participant": meeting.participant_id,
                "mid": transceiver.mid,
                "carries": None if stream is None else f"{stream.participant_id}:{stream.kind}",
                "direction": transceiver.currentDirection,
                "packets_received": sum(
                    r.packetsReceived for r in reports if r.type == "inbound-rtp"
                ),
                "packets_sent_by_server": sum(
                    r.packetsSent for r in reports if r.type == "remote-outbound-rtp"
                ),
            }
        )
    return silent


def receiving(meeting: Meeting) -> int:
    """The remote streams that brought a client frames."""
    return sum(
        1
        for participant in meeting.participants.values()
        for stream in participant.streams.values()
        if getattr(stream.track, "received", 0) > 0
    )


#: Seconds every subscriber may take to get every stream, once all have joined
#: (MEETCORE_BENCH_READY_WITHIN to change it).
READY_WITHIN = float(os.environ.get("MEETCORE_BENCH_READY_WITHIN", "60"))


async def subscriber_process(order: dict[str, Any]) -> None:
    """A child of `--many`: `count` subscribers; prints "ready" once each gets frames of
    `streams` streams, then answers each line on stdin with their packet counts."""
    options = {
        "base_url": order["url"],
        "token": order["token"],
        "meeting_id": order["room"],
        "ice_addresses": LOOPBACK,
    }
    meetings = []
    for _ in range(order["count"]):
        meeting = init_meeting(**options, mode="RECV_ONLY", decode=False)
        await meeting.join()
        meetings.append(meeting)
    try:
        async with asyncio.timeout(READY_WITHIN):
            while not all(receiving(m) >= order["streams"] for m in meetings):
                await asyncio.sleep(0.1)
    except TimeoutError:
        lacking = [order["streams"] - receiving(m) for m in meetings]
        silent = [section for m in meetings for section in await silent_sections(m)]
        print(json.dumps({"lacking": lacking, "silent": silent}), flush=True)
    else:
        print(json.dumps({"ready": order["count"]}), flush=True)
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    while (line := await reader.readline()) and line.strip() != b"quit":
        print(json.dumps(await inbound(meetings)), flush=True)
    for meeting in meetings:
        await meeting.leave()


async def run_many(
    shape: Shape, publishers: int, subscribers: int, seconds: float, processes: int
) -> dict[str, Any]:
    limit = ("--audio-streams", str(shape.audio_streams))
    async with meetcore_room("--log-level", "warning", *limit) as (serve, options):
        server = serve.process
        url, token, room = options["base_url"], options["token"], options["meeting_id"]
        meetings: list[Meeting] = []
        children: list[asyncio.subprocess.Process] = []
        try:
            cameras = []
            for number in range(publishers):
                camera = ReplayedCamera(shape)
                publisher = init_meeting(
                    **options,
                    webcam_enabled=True,
                    mic_enabled=number < shape.audio,
                    custom_microphone_audio_track=ToneAudioTrack(
                        volume=0.1 if shape.speaking is None or number < shape.speaking else 0
                    ),
                    custom_camera_video_track=camera,
                    ice_addresses=LOOPBACK,
                    decode=False,
                )
                meetings.append(publisher)
                cameras.append(camera)
                await publisher.join()
            shares = [
                subscribers // processes + (i < subscribers % processes) for i in range(processes)
            ]
            voices = min(shape.audio, publishers)  # microphones on
            speaking = voices if shape.speaking is None else min(shape.speaking, voices)
            limit = shape.audio_streams
            every = not limit or voices <= limit  # each gets every other voice

            def voices_for(publisher: int | None) -> int:
                """The audio streams a participant gets (a subscriber: None): every
                other one, or the `limit` loudest others that are not silent."""
                if publisher is None:
                    return voices if every else min(limit, speaking)
                if every:
                    return voices - (publisher < voices)
                return min(limit, speaking - (publisher < speaking))

            joining = time.monotonic()
            for share in (s for s in shares if s):
                order = {"url": url, "token": token, "room": room, "count": share}
                order["streams"] = publishers + voices_for(None)
                child = await asyncio.create_subprocess_exec(
                    sys.executable,
                    __file__,
                    "--subscriber-process",
                    json.dumps(order),
                    stdin=asyncio.subprocess.PIPE,
                    stdout=asyncio.subprocess.PIPE,
                )
                children.append(child)
            lacking, silent = 0, []
            for child in children:
                assert child.stdout is not None
                async with asyncio.timeout(READY_WITHIN + 60):
                    line = await child.stdout.readline()
                if not line:
                    raise RuntimeError("a subscriber process died before it was ready")
                report = json.loads(line)
                lacking += sum(report.get("lacking", []))
                silent += report.get("silent", [])
            expected = [publishers - 1 + voices_for(n) for n in range(publishers)]
            try:
                async with asyncio.timeout(READY_WITHIN):  # the publishers get one another
                    while any(receiving(p) < n for p, n in zip(meetings, expected, strict=True)):
                        await asyncio.sleep(0.1)
            except TimeoutError:
                for publisher, n in zip(meetings, expected, strict=True):
                    lacking += max(0, n - receiving(publisher))
                    silent += await silent_sections(publisher)
            ready = time.monotonic() - joining

            async def counts() -> list[dict[str, Any]]:
                """Each process's counts, taken at once: subscribers' and publishers'."""
                for child in children:
                    assert child.stdin is not None
                    child.stdin.write(b"stats\n")
                    await child.stdin.drain()
                found = [await inbound(meetings)]
                for child in children:
                    assert child.stdout is not None
                    found.append(json.loads(await child.stdout.readline()))
                return found

            def rate(before: list[dict[str, Any]], after: list[dict[str, Any]], key: str) -> float:
                """Per second, summed over the processes, each over its own window."""
                return sum(
                    (b[key] - a[key]) / (b["at"] - a["at"])
                    for a, b in zip(before, after, strict=True)
                )

            async def drained() -> list[dict[str, Any]]:
                """The counts once the cameras are held and every frame they sent has
                arrived: unchanged for a second (a busy process catches up first)."""
                for camera in cameras:
                    camera.hold()
                found = await counts()
                for _ in range(30):
                    await asyncio.sleep(1.0)
                    again = await counts()
                    if [c["frames"] for c in again] == [c["frames"] for c in found]:
                        break
                    found = again
                return found

            await asyncio.sleep(1.0)  # settle
            before = await drained()
            pids = [server.pid, os.getpid(), *(child.pid for child in children)]
            drops = [udp_drops(pid) for pid in pids]
            cpus, sent = [cpu_seconds(pid) for pid in pids], sum(c.frames for c in cameras)
            started = time.monotonic()
            for camera in cameras:
                camera.go()
            sending = await counts()  # packets are counted while the cameras send
            await asyncio.sleep(seconds)
            sent_all = await counts()
            for camera in cameras:
                camera.hold()
            elapsed = time.monotonic() - started
            cpus = [cpu_seconds(pid) - was for pid, was in zip(pids, cpus, strict=True)]
            cpu = cpus[0]
            drops = [udp_drops(pid) - was for pid, was in zip(pids, drops, strict=True)]
            after = await drained()
            sent = sum(c.frames for c in cameras) - sent
            received, lost = (rate(sending, sent_all, key) for key in ("received", "lost"))
            frames = sum(b["frames"] - a["frames"] for a, b in zip(before, after, strict=True))
            flowing = sum(  # audio streams that brought frames in the window
                1
                for a, b in zip(sending, sent_all, strict=True)
                for key, count in b["audio"].items()
                if count > a["audio"].get(key, count)
            )
            streams = publishers * (publishers - 1) + publishers * subscribers
            core = cpu / elapsed
            return {
                "forwarded_streams": streams,
                # the audio streams each participant should get, and those that flowed
                "forwarded_audio_streams": subscribers * voices_for(None)
                + sum(voices_for(n) for n in range(publishers)),
                "audio_streams_flowing": flowing,
                "seconds_to_every_stream": round(ready, 1),
                "streams_never_received": lacking,
                "silent_sections": silent[:20],
                "server_cpu_percent": round(100 * core, 1),
                "server_cpu_percent_per_stream": round(100 * core / streams, 3),
                "streams_per_core": round(streams / core, 1) if core else None,
                "loss_percent": round(100 * lost / max(1, received + lost), 2),
                "packets_per_second": round(received),
                "udp_drops_server_publishers_subscribers": drops,
                # every frame a publisher sent in the window, once per stream carrying it
                "frames_delivered_percent": round(
                    100 * frames / max(1, sent * (publishers - 1 + subscribers)), 2
                ),
                "publisher_fps": round(sent / publishers / elapsed, 1),
                "publishers_process_cpu_percent": round(100 * cpus[1] / elapsed, 1),
                "subscriber_processes_cpu_percent": [round(100 * c / elapsed, 1) for c in cpus[2:]],
            }
        finally:
            for child in children:
                if child.stdin is not None:
                    child.stdin.write(b"quit\n")
            for child in children:
                try:
                    await asyncio.wait_for(child.wait(), 15)
                except TimeoutError:
                    child.kill()
            for meeting in meetings:
                if meeting.joined:
                    await meeting.leave()


async def many(args: argparse.Namespace) -> dict[str, Any]:
    publishers, *counts = args.many
    width, height = (int(n) for n in args.size.split("x"))
    audio = args.many[0] if args.audio == -1 else args.audio
    shape = Shape(width, height, args.fps, args.bitrate, audio, args.speaking, args.audio_streams)
    results: dict[str, Any] = {
        "publisher": f"{shape}, replayed",
        "seconds": args.seconds,
        "cpus": os.cpu_count(),
        "processes": args.processes,
    }
    largest = 0
    for count in counts:
        result = await run_many(shape, publishers, count, args.seconds, args.processes)
        results[f"many/{publishers}x{count}"] = result
        lossless = result["loss_percent"] < 1 and result["frames_delivered_percent"] >= 99
        if lossless and not result["streams_never_received"]:
            largest = max(largest, result["forwarded_streams"])
        if not args.json:
            print(
                f"many {publishers}x{count:<3} {result['forwarded_streams']:4} streams"
                f" and {result['audio_streams_flowing']} of"
                f" {result['forwarded_audio_streams']} audio"
                f" (all flowing {result['seconds_to_every_stream']} s after the first"
                f" subscriber joined, {result['streams_never_received']} never): server"
                f" {result['server_cpu_percent']:5.1f}% of a core,"
                f" {result['streams_per_core']} streams per core,"
                f" loss {result['loss_percent']}%,"
                f" frames delivered {result['frames_delivered_percent']}%"
                f" (UDP datagrams dropped by server, publishers, subscribers:"
                f" {result['udp_drops_server_publishers_subscribers']}),"
                f" publishers at {result['publisher_fps']} fps;"
                f" clients' processes {result['publishers_process_cpu_percent']}%,"
                f" {result['subscriber_processes_cpu_percent']}%",
                flush=True,
            )
    results["largest_under_1_percent_loss"] = largest
    for mode in [m for m in ("forward", "relay") if m in args.modes]:
        bare = await run_bare(mode, args.subscribers[-1], args.seconds)
        core = bare["server_cpu_percent"] / 100
        per_core = round(args.subscribers[-1] / core, 1) if core else None
        results[mode] = {**bare, "subscribers": args.subscribers[-1], "streams_per_core": per_core}
        if not args.json:
            print(
                f"{mode:8} bare, {args.subscribers[-1]} subscribers: {per_core} streams per core",
                flush=True,
            )
    return results


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
    parser.add_argument("--many", type=int, nargs="+", metavar="P S", help="P publishers, S...")
    parser.add_argument("--processes", type=int, default=2, help="subscriber processes")
    parser.add_argument("--size", default=f"{WIDTH}x{HEIGHT}", help="--many's video size")
    parser.add_argument("--fps", type=int, default=FPS, help="--many's frame rate")
    parser.add_argument("--bitrate", type=int, default=500_000, help="--many's video bitrate")
    parser.add_argument(
        "--audio",
        type=int,
        nargs="?",
        const=-1,
        default=0,
        metavar="N",
        help="--many's publishers (or the first N) send audio too",
    )
    parser.add_argument(
        "--speaking",
        type=int,
        metavar="N",
        help="of those, the first N send a tone, the others silence (default: all a tone)",
    )
    parser.add_argument(
        "--audio-streams",
        type=int,
        default=3,
        metavar="N",
        help="the server's --audio-streams: the loudest N forwarded to each (0: all)",
    )
    parser.add_argument("--bare-server", choices=["forward", "relay"], help=argparse.SUPPRESS)
    parser.add_argument("--subscriber-process", type=json.loads, help=argparse.SUPPRESS)
    arguments = parser.parse_args()
    if arguments.bare_server:
        asyncio.run(bare_server(arguments.bare_server))
    elif arguments.subscriber_process:
        asyncio.run(subscriber_process(arguments.subscriber_process))
    elif arguments.many:
        if len(arguments.many) < 2:
            parser.error("--many needs P and at least one S")
        outcome = asyncio.run(many(arguments))
        if arguments.json:
            print(json.dumps(outcome, indent=2))
    else:
        outcome = asyncio.run(main(arguments))
        if arguments.json:
            print(json.dumps(outcome, indent=2))
