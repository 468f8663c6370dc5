"""Media through the server: aiortc clients publish, subscribe, and the server forwards.

An in-process server (the engine on memory://, uvicorn on a real socket) and clients
in this process, every ICE candidate on 127.0.0.1 and no STUN server. Frames are
small and slow (the synthetic sources, or 160x120 at 10 fps) to keep the CPU low.
`test_media_serve.py` does the same against a real `meetcore serve` process.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import inspect
import json
import logging
import os
import re
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import aiortc
import pytest
import uvicorn
import websockets
from aiortc.codecs import opus, vpx
from aiortc.mediastreams import MediaStreamError
from support import eventually

from meetcore import Engine, ErrorCode, Record, Rejected, hookimpl
from meetcore.commands import InitMeeting
from meetcore_client import EncodedFrame, Meeting, Participant, Stream, init_meeting
from meetcore_jwt import JWTAuth, mint_token
from meetcore_media import Media, MediaConfig, _forward, hookspecs, plugin
from meetcore_media.sfu import MediaServer
from meetcore_media.tracks import SyntheticVideoTrack, ToneAudioTrack
from meetcore_protocol import OfferRequest
from meetcore_server.app import Server

pytestmark = pytest.mark.anyio

KEYS = {"test-key": "test-secret-0123456789abcdef0123"}
TOKEN = mint_token(api_key="test-key", secret=KEYS["test-key"])
ROOM = "abc-def-ghi"
LOOPBACK = ["127.0.0.1"]


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"  # aiortc runs on asyncio


class Running:
    def __init__(self, engine: Engine, server: Server, url: str) -> None:
        self.engine = engine
        self.server = server
        self.url = url
        self.meetings: list[Meeting] = []

    @property
    def media(self) -> MediaServer:
        media = self.server.signaling._media
        assert media is not None
        return media

    def meeting(self, name: str, **options: Any) -> Meeting:
        options.setdefault("ice_addresses", LOOPBACK)
        meeting = init_meeting(
            base_url=self.url,
            token=TOKEN,
            meeting_id=ROOM,
            name=name,
            participant_id=name.lower(),
            **options,
        )
        self.meetings.append(meeting)
        return meeting


async def serve(plugins: list[object], audio_streams: int = 3) -> AsyncIterator[Running]:
    config = MediaConfig(ice_servers=(), addresses=LOOPBACK, audio_streams=audio_streams)
    async with Engine.open(
        store="memory://", plugins=[JWTAuth(KEYS), *plugins], autoload=False
    ) as engine:
        await engine.execute(InitMeeting(meeting_id=ROOM))
        server = Server(engine, media=Media(config))
        uv = uvicorn.Server(
            uvicorn.Config(server.app, host="127.0.0.1", port=0, lifespan="on", log_level="warning")
        )
        task = asyncio.ensure_future(uv.serve())
        while not uv.started:
            await asyncio.sleep(0.01)
        port = uv.servers[0].sockets[0].getsockname()[1]
        running = Running(engine, server, f"http://127.0.0.1:{port}")
        try:
            yield running
        finally:
            for meeting in running.meetings:
                if meeting.state != "DISCONNECTED":
                    await meeting.close()
            uv.should_exit = True
            await task


@pytest.fixture
async def running() -> AsyncIterator[Running]:
    async for running in serve([]):
        yield running


def small_camera() -> SyntheticVideoTrack:
    return SyntheticVideoTrack(width=160, height=120, fps=10)


class Streams:
    """Every `stream-enabled` and `stream-disabled` a meeting sees on the others."""

    def __init__(self, meeting: Meeting) -> None:
        self.meeting = meeting
        self.live: dict[tuple[str, str], Stream] = {}
        self.disabled: list[tuple[str, str]] = []
        self._changed = asyncio.Event()
        meeting.on("participant-joined", self._watch)
        for participant in meeting.participants.values():
            self._watch(participant)

    def _watch(self, participant: Participant) -> None:
        participant.on("stream-enabled", self._enabled)
        participant.on("stream-disabled", self._disabled)
        for stream in participant.streams.values():
            self._enabled(stream)

    def _enabled(self, stream: Stream) -> None:
        self.live[stream.participant_id, stream.kind] = stream
        self._changed.set()

    def _disabled(self, stream: Stream) -> None:
        if self.live.get((stream.participant_id, stream.kind)) is stream:
            del self.live[stream.participant_id, stream.kind]
        self.disabled.append((stream.participant_id, stream.kind))
        self._changed.set()

    async def until(self, check: Callable[[], bool], timeout: float = 10.0) -> None:
        async with asyncio.timeout(timeout):
            while not check():
                self._changed.clear()
                await self._changed.wait()

    async def have(self, *keys: tuple[str, str], timeout: float = 10.0) -> None:
        await self.until(lambda: set(keys) <= set(self.live), timeout)


async def frames(stream: Stream, count: int, timeout: float = 10.0) -> list[Any]:
    """The next `count` decoded frames of a stream."""
    got = []
    async with asyncio.timeout(timeout):
        while len(got) < count:
            got.append(await stream.track.recv())
    return got


def check_video(frames: list[Any], width: int, height: int) -> None:
    for frame in frames:
        assert (frame.width, frame.height) == (width, height)
        luma = bytes(frame.planes[0])
        assert len(luma) >= width * height and max(luma) > min(luma)  # a picture: the bar


def check_audio(frames: list[Any]) -> None:
    for frame in frames:
        assert frame.sample_rate == 48000 and frame.samples == 960
        assert any(bytes(frame.planes[0]))  # the tone, not silence


def check(kind: str, frames: list[Any], width: int, height: int) -> None:
    if kind == "video":
        check_video(frames, width, height)
    else:
        check_audio(frames)


async def ended(stream: Stream, timeout: float = 5.0) -> None:
    """The stream's track ends: recv() raises MediaStreamError (after any frames left)."""
    async with asyncio.timeout(timeout):
        with pytest.raises(MediaStreamError):  # noqa: PT012
            while True:
                await stream.track.recv()


# ---------------------------------------------------------------------------


def test_the_aiortc_internals_forwarding_relies_on_are_there() -> None:
    assert aiortc.__version__ == _forward.AIORTC_VERSION
    assert _forward.check_internals() == []


async def test_two_participants_exchange_audio_and_video(running: Running) -> None:
    alice = running.meeting("Alice", mic_enabled=True, webcam_enabled=True)
    bob = running.meeting("Bob", mic_enabled=True, webcam_enabled=True)
    await alice.join()
    alice_sees = Streams(alice)
    await bob.join()
    bob_sees = Streams(bob)
    await alice_sees.have(("bob", "audio"), ("bob", "video"))
    await bob_sees.have(("alice", "audio"), ("alice", "video"))

    for sees in (alice_sees, bob_sees):
        for (_, kind), stream in sees.live.items():
            assert stream.layers == 1 and not stream.multistream and not stream.local
            check(kind, await frames(stream, 5), 320, 240)

    # the local participant has its own streams too (the tracks being sent)
    assert alice.local_participant is not None
    assert set(alice.local_participant.streams) == {"alice:audio", "alice:video"}
    assert {s.kind for s in bob.participants["alice"].streams.values()} == {"audio", "video"}
    assert bob.participants["alice"].multistream  # asked for (the default) and recorded...
    assert all(s.layers == 1 for s in bob.participants["alice"].streams.values())  # ...not sent
    await bob.leave()
    await alice.leave()


async def test_disabling_a_webcam_ends_the_stream_and_enabling_it_brings_a_new_one(
    running: Running,
) -> None:
    alice = running.meeting("Alice", webcam_enabled=True)
    bob = running.meeting("Bob")  # publishes nothing, receives
    await alice.join()
    await bob.join()
    bob_sees = Streams(bob)
    await bob_sees.have(("alice", "video"))
    video = bob_sees.live["alice", "video"]
    await frames(video, 3)

    disabled = bob.participants["alice"].wait_for("stream-disabled")
    mine = alice.local_participant
    assert mine is not None
    local_off = mine.wait_for("stream-disabled")
    await alice.disable_webcam()
    (gone,) = await disabled
    assert gone is video and video.ended
    assert (await local_off)[0].local
    await ended(video)
    assert bob.participants["alice"].streams == {}
    # the server stopped forwarding: its section for Alice's video is free
    (peer,) = [p for p in running.media.transports.values() if p.participant_id == "bob"]
    await eventually(lambda: all(slot.stream is None for slot in peer.slots))
    assert all(slot.track.source is None for slot in peer.slots)

    await alice.enable_webcam()  # mid-meeting: publishing starts again
    await bob_sees.until(lambda: ("alice", "video") in bob_sees.live)
    again = bob_sees.live["alice", "video"]
    assert again is not video
    check_video(await frames(again, 3), 320, 240)
    assert bob_sees.disabled == [("alice", "video")]


async def test_four_participants_each_receive_the_three_others(running: Running) -> None:
    names = ["Ann", "Ben", "Cat", "Dan"]
    meetings = [
        running.meeting(
            name, mic_enabled=True, webcam_enabled=True, custom_camera_video_track=small_camera()
        )
        for name in names
    ]
    seen = []
    for meeting in meetings:
        await meeting.join()
        seen.append(Streams(meeting))
    ids = [name.lower() for name in names]
    for meeting, sees in zip(meetings, seen, strict=True):
        others = [i for i in ids if i != meeting.participant_id]
        await sees.have(*[(i, k) for i in others for k in ("audio", "video")], timeout=15)
    for sees in seen:
        for (_, kind), stream in sorted(sees.live.items()):
            check(kind, await frames(stream, 3), 160, 120)

    # Dan leaves: his streams end for every other peer, then he is gone
    dan_streams = [sees.live["dan", kind] for sees in seen[:3] for kind in ("audio", "video")]
    lefts = [m.wait_for("participant-left") for m in meetings[:3]]
    await meetings[3].leave()
    for left in lefts:
        (participant, _) = await left
        assert participant.id == "dan" and participant.streams == {}
    for stream in dan_streams:
        assert stream.ended
        await ended(stream)
    for meeting, sees in zip(meetings[:3], seen[:3], strict=True):
        assert "dan" not in meeting.participants
        assert {who for who, _ in sees.live} == set(ids[:3]) - {meeting.participant_id}
    # the server freed Dan's sections and forgot his media connection
    await eventually(
        lambda: "dan" not in {p.participant_id for p in running.media.transports.values()}
    )
    for peer in running.media.transports.values():
        await eventually(
            lambda peer=peer: all(s.stream is None or s.stream[0] != "dan" for s in peer.slots)
        )
    # and the others still flow
    check_video(await frames(seen[0].live["ben", "video"], 2), 160, 120)


#: Rounds of the all-see-all test below: the issue's 10 of each (10 runs of 8 take about
#: 30 s here, the participants leaving together: one by one, each leave renegotiated
#: with all the others, took 60 s; MEETCORE_TEST_MEDIA_ROUNDS=3 for a quicker loop).
ROUNDS = {4: 10, 8: int(os.environ.get("MEETCORE_TEST_MEDIA_ROUNDS", "10"))}


async def lacks(watcher: Streams, others: list[str]) -> list[str]:
    """What of the others' video a participant lacks 10 s on: whose stream it never
    got, or ["a frame"] when it has them all but a frame of one."""
    try:
        async with asyncio.timeout(10):
            await watcher.have(*[(other, "video") for other in others])
            for other in others:
                await watcher.live[other, "video"].track.recv()
    except TimeoutError:
        got = {who for who, kind in watcher.live if kind == "video"}
        return sorted(set(others) - got) or ["a frame"]
    return []


@pytest.mark.slow
@pytest.mark.parametrize("size", [4, 8])
async def test_in_every_run_every_participant_gets_every_video_within_10_s(
    running: Running, size: int
) -> None:
    """Meetings of 4 and 8 participants with video, one after the other: in every run,
    every participant decodes a frame of every other participant's video within 10 s of
    the last join (an earlier report had one participant of 4 lack one video for 40 s,
    once in three runs)."""
    for run in range(ROUNDS[size]):
        meetings = [
            running.meeting(
                f"R{run}P{n}",
                mic_enabled=True,
                webcam_enabled=True,
                custom_camera_video_track=small_camera(),
            )
            for n in range(size)
        ]
        watchers = []
        for meeting in meetings:
            await meeting.join()
            watchers.append(Streams(meeting))
        ids = [m.participant_id for m in meetings]
        seen = await asyncio.gather(
            *(
                lacks(w, [i for i in ids if i != m.participant_id])
                for m, w in zip(meetings, watchers, strict=True)
            )
        )
        lacking = {i: what for i, what in zip(ids, seen, strict=True) if what}
        assert lacking == {}, f"run {run}: {lacking}"
        await asyncio.gather(*(meeting.leave() for meeting in meetings))


async def test_a_late_subscriber_gets_a_picture_at_once_through_a_forwarded_pli(
    running: Running, monkeypatch: pytest.MonkeyPatch
) -> None:
    # aiortc's VP8 encoder makes a key frame every 3000 frames (5 minutes at 10 fps), and
    # when it starts again for a new bitrate (REMB): hold the bitrate, so that only the
    # first frame and the ones a PLI asks for are key frames.
    monkeypatch.setattr(vpx.Vp8Encoder, "target_bitrate", property(lambda self: 500_000))
    alice = running.meeting("Alice", webcam_enabled=True, custom_camera_video_track=small_camera())
    watcher = running.meeting("Watcher")
    await alice.join()
    await watcher.join()
    await Streams(watcher).have(("alice", "video"))  # Alice now sends to the server
    (publisher,) = [p for p in running.media.transports.values() if p.participant_id == "alice"]
    publication = publisher.publications["video"]
    await eventually(lambda: publication.frames > 20)  # well past her first key frame
    requests = publication.keyframe_requests

    keyframes = publication.keyframes
    bob = running.meeting("Bob")  # without a PLI, Bob would wait minutes for a picture
    await bob.join()
    bob_sees = Streams(bob)
    await bob_sees.have(("alice", "video"))
    started = time.monotonic()
    (first,) = await frames(bob_sees.live["alice", "video"], 1, timeout=3)
    waited = time.monotonic() - started
    check_video([first], 160, 120)
    assert publication.keyframe_requests > requests  # the server asked Alice
    assert publication.keyframes > keyframes  # and she sent one
    assert waited < 3  # a round trip, not a key-frame interval (generous: a busy CI box)


async def test_frames_are_forwarded_not_decoded_and_encoded_per_subscriber(
    running: Running, monkeypatch: pytest.MonkeyPatch
) -> None:
    """One publisher, three subscribers: one VP8 encoder encodes (the publisher's), the
    server packs the encoded frames three times and decodes none; each subscriber decodes."""
    calls: Counter[tuple[str, int]] = Counter()
    lock = threading.Lock()

    def counting(name: str, original: Callable[..., Any]) -> Callable[..., Any]:
        def wrapper(self: object, *args: Any, **kwargs: Any) -> Any:
            with lock:
                calls[name, id(self)] += 1
            return original(self, *args, **kwargs)

        return wrapper

    for cls, method in [
        (vpx.Vp8Encoder, "encode"),
        (vpx.Vp8Encoder, "pack"),
        (vpx.Vp8Decoder, "decode"),
        (opus.OpusEncoder, "encode"),
        (opus.OpusEncoder, "pack"),
    ]:
        monkeypatch.setattr(cls, method, counting(method, getattr(cls, method)))

    alice = running.meeting(
        "Alice", mic_enabled=True, webcam_enabled=True, custom_camera_video_track=small_camera()
    )
    await alice.join()
    subscribers = [running.meeting(f"S{n}") for n in range(3)]
    for subscriber in subscribers:
        await subscriber.join()
    for subscriber in subscribers:
        sees = Streams(subscriber)
        await sees.have(("alice", "video"), ("alice", "audio"))
        await frames(sees.live["alice", "video"], 5)
        await frames(sees.live["alice", "audio"], 5)

    def instances(name: str) -> int:
        return len({obj for (called, obj) in calls if called == name})

    assert instances("encode") == 2  # Alice's VP8 and Opus encoders, and no other
    assert instances("pack") == 6  # each subscriber's two senders on the server
    assert instances("decode") == 3  # each subscriber's VP8 decoder, none on the server
    for peer in running.media.transports.values():
        for publication in peer.publications.values():
            assert len(publication.subscribers) == (3 if peer.participant_id == "alice" else 0)


async def test_a_client_with_decode_false_gets_encoded_frames_and_decodes_nothing(
    running: Running, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A bot, a recorder or a load test: `decode=False` gives each remote stream's frames
    as they arrived (`EncodedFrame`: VP8 from a key frame on, Opus) and counts them
    whether they are read or not; no decoder runs in the client. A section that carries
    the publisher's video again after a webcam off and on feeds the new stream."""
    decoded: Counter[str] = Counter()
    for cls, name in [(vpx.Vp8Decoder, "vp8"), (opus.OpusDecoder, "opus")]:

        def counting(self: object, *args: Any, name: str = name, original: Any = cls.decode) -> Any:
            decoded[name] += 1
            return original(self, *args)

        monkeypatch.setattr(cls, "decode", counting)

    alice = running.meeting(
        "Alice", mic_enabled=True, webcam_enabled=True, custom_camera_video_track=small_camera()
    )
    bot = running.meeting("Bot", mode="RECV_ONLY", decode=False)
    await alice.join()
    await bot.join()
    sees = Streams(bot)
    await sees.have(("alice", "video"), ("alice", "audio"))
    video, audio = sees.live["alice", "video"], sees.live["alice", "audio"]
    got = await frames(video, 3)
    assert all(isinstance(frame, EncodedFrame) for frame in got)
    assert got[0].keyframe and got[0].data and vpx_size(got[0].data) == (160, 120)
    assert got[1].timestamp > got[0].timestamp
    sound = await frames(audio, 3)
    assert all(frame.keyframe and len(frame.data) > 0 for frame in sound)
    # counted as they come, read or not
    await eventually(lambda: audio.track.received >= 50 and video.track.received >= 10)
    assert video.track.keyframes >= 1 and video.track.bytes > 0
    assert audio.track.frames == 3  # handed out by recv()
    await eventually(lambda: audio.track.dropped > 0, timeout=5)  # unread: bounded
    assert decoded == Counter()

    await alice.disable_webcam()
    await ended(video)
    await sees.until(lambda: ("alice", "video") not in sees.live)
    await alice.enable_webcam()
    await sees.have(("alice", "video"))
    again = sees.live["alice", "video"]
    assert again is not video
    (first,) = await frames(again, 1)
    assert isinstance(first, EncodedFrame) and first.keyframe
    assert decoded == Counter()


def vpx_size(data: bytes) -> tuple[int, int]:
    """Width and height of a VP8 key frame (RFC 6386, 9.1)."""
    assert data[3:6] == b"\x9d\x01\x2a", "not a VP8 key frame"
    return (
        int.from_bytes(data[6:8], "little") & 0x3FFF,
        int.from_bytes(data[8:10], "little") & 0x3FFF,
    )


async def test_an_answer_past_64_kib_is_read_in_a_meeting_of_many_publishers(
    running: Running,
) -> None:
    """30 participants with mic and webcam on, which the log says publish (their media
    connections are elsewhere: raw protocol clients that never offer): a subscriber gets
    a section for each of their 60 streams, and its answer, larger than the 64 KiB other
    messages may be, is read (protocol.MAX_ANSWER_BYTES): every section is confirmed."""
    ws = running.url.replace("http://", "ws://") + "/ws"
    sockets = []
    drains = []

    async def drain(raw: Any) -> None:
        with contextlib.suppress(Exception):
            async for _ in raw:
                pass

    for n in range(30):
        raw = await websockets.connect(ws, max_size=None)
        join = {
            "type": "join",
            "token": TOKEN,
            "meetingId": ROOM,
            "participantId": f"p{n}",
            "micEnabled": True,
            "webcamEnabled": True,
        }
        await raw.send(json.dumps(join))
        assert json.loads(await raw.recv())["type"] == "welcome"
        sockets.append(raw)
        drains.append(asyncio.ensure_future(drain(raw)))
    sizes: list[int] = []
    original = Meeting._request

    async def request(self: Meeting, message: Any) -> Any:
        if type(message).__name__ == "AnswerRequest":
            sizes.append(len(message.sdp))
        return await original(self, message)

    Meeting._request = request  # type: ignore[method-assign]
    try:
        bob = running.meeting("Bob", mode="RECV_ONLY", decode=False)
        await bob.join()
        sees = Streams(bob)
        wanted = [(f"p{n}", kind) for n in range(30) for kind in ("audio", "video")]
        await sees.have(*wanted, timeout=20)
    finally:
        Meeting._request = original  # type: ignore[method-assign]
    assert max(sizes) > 64 * 1024
    (peer,) = running.media.transports.values()
    await eventually(lambda: sum(slot.confirmed for slot in peer.slots) == 60)
    for raw in sockets:
        await raw.close()
    for task in drains:
        task.cancel()


async def test_leaving_while_an_answer_is_on_its_way_is_not_a_media_failure(
    running: Running, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """A client that leaves while its media task answers the server's offer: the answer
    is refused (the client is out), which is no failure to warn of or to recover from.
    Made certain here: Bob's answer waits until he is out (the media's closing starts
    a step after that), and his media closes only once the answer was tried."""
    from meetcore_client import _media as _client_media

    gate, waiting, tried = asyncio.Event(), asyncio.Event(), asyncio.Event()
    answer, close = _client_media.ClientMedia._answer, _client_media.ClientMedia.close

    async def late_answer(self: Any, message: Any, generation: int) -> None:
        waiting.set()
        await gate.wait()
        try:
            await answer(self, message, generation)
        finally:
            tried.set()

    async def close_after_the_answer(self: Any) -> None:
        gate.set()
        await tried.wait()  # the media task handled the refusal in the same step
        await close(self)

    monkeypatch.setattr(_client_media.ClientMedia, "_answer", late_answer)
    monkeypatch.setattr(_client_media.ClientMedia, "close", close_after_the_answer)
    alice = running.meeting("Alice", webcam_enabled=True, custom_camera_video_track=small_camera())
    await alice.join()
    bob = running.meeting("Bob")
    await bob.join()
    async with asyncio.timeout(10):
        await waiting.wait()  # the server offered Bob Alice's video; his answer waits
    with caplog.at_level(logging.DEBUG, logger="meetcore.client.media"):
        async with asyncio.timeout(10):
            await bob.leave()
    assert tried.is_set()
    assert [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING] == []
    assert any("cut short by leaving" in r.getMessage() for r in caplog.records)


async def test_a_stream_back_before_its_old_section_was_seen_free_has_one_msid(
    running: Running, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Alice's camera goes off and on again before Bob has answered the offer that frees
    its section: the server carries it in a new section, and the freed one must not keep
    Alice's msid (Chromium refuses an offer with one msid twice: "Duplicate a=msid
    lines", and the page got no more media; seen when a page resumed meanwhile)."""
    from meetcore_client import _media as _client_media

    offers: list[str] = []
    gate = asyncio.Event()
    gate.set()
    answer = _client_media.ClientMedia._answer

    async def gated(self: Any, message: Any, generation: int) -> None:
        offers.append(message.sdp)
        await gate.wait()
        await answer(self, message, generation)

    monkeypatch.setattr(_client_media.ClientMedia, "_answer", gated)
    alice = running.meeting("Alice", webcam_enabled=True, custom_camera_video_track=small_camera())
    await alice.join()
    bob = running.meeting("Bob")
    await bob.join()
    sees = Streams(bob)
    await sees.have(("alice", "video"))
    gate.clear()
    held = len(offers)
    await alice.disable_webcam()
    await eventually(lambda: len(offers) > held)  # the offer that frees the section: held
    await alice.enable_webcam()
    await eventually(
        lambda: alice.local_participant is not None and alice.local_participant.webcam_on
    )
    gate.set()
    await sees.have(("alice", "video"))
    check_video(await frames(sees.live["alice", "video"], 2), 160, 120)
    (peer,) = [p for p in running.media.transports.values() if p.participant_id == "bob"]
    assert len(peer.slots) == 2  # the freed section was not reusable yet: a new one
    for sdp in offers:
        msids = re.findall(r"^a=msid:(.*)$", sdp, re.M)
        assert len(msids) == len(set(msids)), msids


async def test_a_client_whose_connection_fails_makes_a_new_one(running: Running) -> None:
    alice = running.meeting("Alice", webcam_enabled=True, custom_camera_video_track=small_camera())
    camera = small_camera()
    bob = running.meeting("Bob", webcam_enabled=True, custom_camera_video_track=camera)
    await alice.join()

    def peer_of(participant_id: str) -> list[Any]:
        media = running.server.signaling._media
        peers = media.transports.values() if media is not None else ()
        return [p for p in peers if p.participant_id == participant_id]

    await eventually(lambda: peer_of("alice") != [])
    (alone,) = peer_of("alice")
    assert alice._media is not None
    alice._media._failed()  # alone in the meeting: the server replaces its only connection
    await eventually(lambda: peer_of("alice") not in ([], [alone]))
    assert alone.closed

    await bob.join()
    bob_sees, alice_sees = Streams(bob), Streams(alice)
    await bob_sees.have(("alice", "video"))
    await alice_sees.have(("bob", "video"))
    before = bob_sees.live["alice", "video"]
    (old,) = peer_of("bob")
    assert bob._media is not None
    bob._media._failed()  # what a failed negotiation or ICE failure does
    await ended(before)  # its streams end...
    await bob_sees.until(lambda: ("alice", "video") in bob_sees.live)  # ...and come back
    check_video(await frames(bob_sees.live["alice", "video"], 2), 160, 120)
    (new,) = peer_of("bob")
    assert new is not old and old.closed  # the server replaced its side
    # Alice still gets Bob's video, from his new connection: his camera was not stopped
    # with the old one (aiortc stops a closing sender's track)
    await eventually(lambda: new.publications["video"].subscribers != set())
    await eventually(lambda: new.publications["video"].frames > 5)
    assert camera.readyState == "live"
    check_video(await frames(alice_sees.live["bob", "video"], 2), 160, 120)


class Voice(ToneAudioTrack):
    """A microphone the test makes speak (a tone at `volume`) or not (all-zero samples:
    -127 dBov, the level of a muted microphone)."""

    def __init__(self, volume: float, speaking: bool = True) -> None:
        super().__init__(volume=volume)
        self.speaking = speaking

    async def recv(self) -> Any:
        frame = await super().recv()
        if not self.speaking:
            frame.planes[0].update(bytes(frame.samples * 2))
        return frame


@pytest.fixture
async def running_voices(request: pytest.FixtureRequest) -> AsyncIterator[Running]:
    """A server that forwards each participant `request.param` audio streams."""
    async for running in serve([], audio_streams=request.param):
        yield running


@pytest.mark.parametrize("running_voices", [2], indirect=True)
async def test_a_listener_gets_the_loudest_voices_as_they_change(
    running_voices: Running,
) -> None:
    """A server that forwards two audio streams to each participant, four microphones
    on: a listener gets the two speaking, not the two silent ones; when one of those
    speaks louder, it gets that one instead of the quieter speaker. Each speaker gets
    the other speaker and the loudest of the rest (it does not count itself)."""
    running = running_voices
    voices = {"ann": Voice(0.3), "ben": Voice(0.1), "cat": Voice(0.5, False), "dan": Voice(0)}
    people = {}
    for name, voice in voices.items():
        people[name] = running.meeting(
            name.title(), mic_enabled=True, custom_microphone_audio_track=voice
        )
        await people[name].join()
    listener = running.meeting("Listener", mode="RECV_ONLY", decode=False)
    await listener.join()
    sees = Streams(listener)
    await sees.have(*[(name, "audio") for name in voices])

    async def listening(heard: set[str]) -> None:
        """Until a half second in which the listener got packets of `heard` only."""
        async with asyncio.timeout(10):
            while True:
                tracks = {name: sees.live[name, "audio"].track for name in voices}
                before = {name: track.received for name, track in tracks.items()}
                await asyncio.sleep(0.5)
                got = {name for name, track in tracks.items() if track.received > before[name]}
                if got == heard:
                    return

    await listening({"ann", "ben"})
    voices["cat"].speaking = True  # louder than ann and ben
    await listening({"cat", "ann"})
    held = {
        peer.participant_id: peer.publications["audio"].held
        for peer in running.media.transports.values()
        if "audio" in peer.publications
    }
    assert held["dan"] > 0 and held["ann"] == 0  # the quietest, to nobody at all
    # a speaker gets the other speaker and the third loudest: two others
    ann_sees = Streams(people["ann"])
    await ann_sees.have(*[(name, "audio") for name in voices if name != "ann"])
    for name in ("ben", "cat"):
        stream = ann_sees.live[name, "audio"]
        async with asyncio.timeout(5):  # past what it queued while cat was silent
            while not any(bytes((await stream.track.recv()).planes[0])):
                pass
        check_audio(await frames(stream, 5))


@pytest.mark.parametrize("running_voices", [1], indirect=True)
async def test_a_voice_the_log_says_is_off_takes_no_place(running_voices: Running) -> None:
    """A server forwarding one voice: Ann speaks; Mallory turns her microphone off, but
    her client (hostile, or broken) keeps sending a louder one. The server forwards it
    to nobody, and it takes no place from Ann: only the voices the log says are on are
    ranked (it took the one place, and the listener heard nobody)."""
    running = running_voices
    ann = running.meeting("Ann", mic_enabled=True, custom_microphone_audio_track=Voice(0.1))
    await ann.join()
    listener = running.meeting("Listener", mode="RECV_ONLY", decode=False)
    await listener.join()
    mallory = running.meeting("Mallory", mic_enabled=True, custom_microphone_audio_track=Voice(0.9))
    await mallory.join()
    sees = Streams(listener)
    await sees.have(("ann", "audio"), ("mallory", "audio"))
    media = mallory._media
    assert media is not None
    sending = media.publish
    media.publish = lambda kind, enabled: sending(kind, enabled or kind == "audio")  # type: ignore[method-assign]
    await mallory.mute_mic()
    await eventually(lambda: "mallory" not in {who for who, _ in sees.live})
    (room,) = running.media.rooms.values()
    assert room.loudest is not None
    await eventually(lambda: {p.participant_id for p in room.loudest.publications} == {"ann"})
    ann_audio = sees.live["ann", "audio"].track
    before = ann_audio.received
    await asyncio.sleep(1)
    assert ann_audio.received - before > 20  # 50 a second
    assert room.loudest.speakers == {"ann"}


async def test_a_refused_offer_leaves_no_media_room_behind(running: Running) -> None:
    """An offer the server cannot use made the meeting's media room, which follows its
    log, and left it there for good: one per meeting a client could join."""
    alice = running.meeting("Alice")
    await alice.join()
    with pytest.raises(Rejected) as refused:
        await alice._request(OfferRequest(sdp="v=0 garbage"))
    assert refused.value.code == ErrorCode.INVALID_PARAMETER
    assert running.media.rooms == {}
    bob = running.meeting("Bob", webcam_enabled=True, custom_camera_video_track=small_camera())
    await bob.join()  # media works in the meeting as before
    await Streams(alice).have(("bob", "video"))
    assert list(running.media.rooms) == [ROOM]


async def test_recv_only_receives_and_signalling_only_has_no_media(running: Running) -> None:
    alice = running.meeting("Alice", webcam_enabled=True, mic_enabled=True)
    viewer = running.meeting("Viewer", mode="RECV_ONLY", webcam_enabled=True)
    silent = running.meeting("Silent", mode="SIGNALLING_ONLY")
    await alice.join()
    await viewer.join()
    await silent.join()
    viewer_sees = Streams(viewer)
    await viewer_sees.have(("alice", "audio"), ("alice", "video"))
    await frames(viewer_sees.live["alice", "video"], 2)
    assert viewer.local_participant is not None
    assert not viewer.local_participant.webcam_on  # RECV_ONLY: the engine kept it off
    assert viewer.local_participant.streams == {}
    alice_sees = Streams(alice)
    await asyncio.sleep(0.3)
    assert not any(who == "viewer" for who, _ in alice_sees.live)
    assert silent._media is None  # no media connection at all
    assert "silent" not in {p.participant_id for p in running.media.transports.values()}
    assert silent.participants["alice"].streams == {}

    # SIGNALLING_ONLY -> RECV_ONLY: media starts; and back: it stops
    silent_sees = Streams(silent)
    await silent.change_mode("RECV_ONLY")
    await silent_sees.have(("alice", "audio"), ("alice", "video"))
    await frames(silent_sees.live["alice", "video"], 2)
    await silent.change_mode("SIGNALLING_ONLY")
    await silent_sees.until(lambda: not silent_sees.live)
    await eventually(
        lambda: "silent" not in {p.participant_id for p in running.media.transports.values()}
    )


class MediaWatcher:
    """A plugin implementing the webrtc plugin's media hooks."""

    def __init__(self) -> None:
        self.events: list[tuple[int, str]] = []
        self.published: list[tuple[str, str]] = []
        self.unpublished: list[tuple[str, str]] = []
        self.packets = 0
        self._tasks: set[asyncio.Task[None]] = set()

    @hookimpl
    def meetcore_media_event(self, meeting_id: str, record: Record) -> None:
        assert meeting_id == ROOM
        self.events.append((record.version, type(record.event).__name__))

    @hookimpl
    async def meetcore_media_published(
        self, participant_id: str, kind: str, publication: _forward.Publication
    ) -> None:
        self.published.append((participant_id, kind))
        if kind == "video":  # a recorder would do this: encoded packets, no decoding
            track = publication.subscribe()
            task = asyncio.ensure_future(self._count(track))
            self._tasks.add(task)

    @hookimpl
    def meetcore_media_unpublished(self, participant_id: str, kind: str) -> None:
        self.unpublished.append((participant_id, kind))

    async def _count(self, track: _forward.ForwardTrack) -> None:
        try:
            while True:
                packet = await track.recv()
                assert packet.pts is not None and bytes(packet)
                self.packets += 1
        except MediaStreamError:
            pass


async def test_plugins_see_the_media_events_and_the_publications() -> None:
    watcher = MediaWatcher()
    async for running in serve([plugin, watcher]):
        alice = running.meeting(
            "Alice", webcam_enabled=True, custom_camera_video_track=small_camera()
        )
        bob = running.meeting("Bob", mic_enabled=True)
        await alice.join()
        await bob.join()
        await Streams(bob).have(("alice", "video"))
        await eventually(lambda: ("alice", "video") in watcher.published and watcher.packets >= 3)
        assert ("bob", "audio") in watcher.published
        await alice.disable_webcam()
        await eventually(lambda: ("alice", "video") in watcher.unpublished)
        await bob.leave()
        await eventually(lambda: ("bob", "audio") in watcher.unpublished)
        kinds = [name for _, name in watcher.events]
        assert {"ParticipantJoined", "MediaChanged", "ParticipantLeft"} <= set(kinds)
        versions = [version for version, _ in watcher.events]
        assert versions == sorted(set(versions))  # in log order, once each
        await alice.leave()


def test_docs_media_md_documents_every_media_hook() -> None:
    page = (Path(__file__).resolve().parents[2] / "docs" / "media.md").read_text()
    sections = dict(re.findall(r"^### (meetcore_\w+)\n(.*?)(?=^#)", page, re.M | re.S))
    hooks = {
        name: function
        for name, function in vars(hookspecs).items()
        if name.startswith("meetcore_") and hasattr(function, "meetcore_spec")
    }
    assert (
        set(sections)
        == set(hooks)
        == {
            "meetcore_media_event",
            "meetcore_media_published",
            "meetcore_media_unpublished",
        }
    )
    for name, function in hooks.items():
        for parameter in inspect.signature(function).parameters:
            assert f"{parameter}:" in sections[name], (name, parameter)


def test_the_signalling_path_does_not_import_aiortc() -> None:
    code = (
        "import sys, meetcore_client, meetcore_server.app, meetcore_server.plugin;"
        "import meetcore_server.serve, meetcore_media, meetcore_media.plugin;"
        "import meetcore_media.hookspecs;"
        "assert 'aiortc' not in sys.modules and 'av' not in sys.modules, 'imported'"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)
    # a server with every installed plugin, VideoSDK's routes among them: aiortc waits
    # for the first media offer or VideoSDK connection (it was loaded at start, 0.3 s)
    code = (
        "import sys, anyio\n"
        "from meetcore import Engine\n"
        "from meetcore_server.app import Server\n"
        "async def main():\n"
        "    async with Engine.open('memory://', autoload=True) as engine:\n"
        "        paths = [getattr(r, 'path', '') for r in Server(engine).app.routes]\n"
        "        assert '/videosdk' in paths, paths\n"
        "anyio.run(main)\n"
        "assert 'aiortc' not in sys.modules and 'av' not in sys.modules, 'imported'"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)


# ---------------------------------------------------------------------------
# Forwarding, without the network


class FakeReceiver:
    """Stands for a publisher's RTCRtpReceiver: records the PLIs asked of it."""

    def __init__(self) -> None:
        self.plis: list[int] = []

    def getSynchronizationSources(self) -> list[Any]:
        return [aiortc.rtcrtpreceiver.RTCRtpSynchronizationSource(timestamp=0, source=1234)]  # type: ignore[arg-type]

    async def _send_rtcp_pli(self, ssrc: int) -> None:
        self.plis.append(ssrc)


KEY, DELTA = b"\x00key", b"\x01delta"


async def test_a_forward_track_waits_for_a_key_frame_asks_for_one_and_rebases_time() -> None:
    receiver = FakeReceiver()
    publication = _forward.Publication("alice", "video", receiver)  # type: ignore[arg-type]
    track = publication.subscribe()
    await asyncio.sleep(0)
    assert receiver.plis == [1234]  # asked at once
    publication.push(DELTA, 9000)  # useless without the key frame: dropped
    publication.push(KEY, 12000)
    publication.push(DELTA, 15000)
    first, second = await track.recv(), await track.recv()
    assert (bytes(first), bytes(second)) == (KEY, DELTA)
    assert first.pts is not None and second.pts == first.pts + 3000
    assert first.time_base == _forward.fractions.Fraction(1, 90000)

    # attached to another publisher: its timestamps follow on, never back
    other = _forward.Publication("bob", "video", receiver)  # type: ignore[arg-type]
    track.attach(other)
    other.push(KEY, 5)
    third = await track.recv()
    assert third.pts is not None and third.pts > second.pts
    assert publication.subscribers == set() and other.subscribers == {track}
    track.stop()
    assert other.subscribers == set()
    with pytest.raises(MediaStreamError):
        await track.recv()


async def test_a_remote_track_read_that_is_cancelled_leaves_no_error_behind() -> None:
    """A task reading a client's remote track is cancelled (an app stops counting frames),
    then the meeting ends: the source's own read, which ends with MediaStreamError, is
    cancelled with it and retrieved (the loop reported "Task exception was never
    retrieved" for each such read, from benchmarks/videosdk.py)."""
    from meetcore_client._media import RemoteTrack

    class Source(aiortc.MediaStreamTrack):
        kind = "video"

        def __init__(self) -> None:
            super().__init__()
            self.reading = asyncio.Event()
            self.cancelled = 0

        async def recv(self) -> Any:
            self.reading.set()
            try:
                await asyncio.Event().wait()
            except asyncio.CancelledError:
                self.cancelled += 1
                raise MediaStreamError from None  # as aiortc's track, stopped under a read

    loop = asyncio.get_running_loop()
    reported: list[dict[str, Any]] = []
    loop.set_exception_handler(lambda loop, context: reported.append(context))
    try:
        source = Source()
        track = RemoteTrack(source, "video", "t1")
        reader = asyncio.ensure_future(track.recv())
        await source.reading.wait()
        reader.cancel()
        with pytest.raises(asyncio.CancelledError):
            await reader
        await eventually(lambda: source.cancelled == 1)
        # the track still reads after that, and a read ended by stop() raises
        source.reading.clear()
        again = asyncio.ensure_future(track.recv())
        await source.reading.wait()
        track.stop()
        with pytest.raises(MediaStreamError):
            await again
        await eventually(lambda: source.cancelled == 2)
        del reader, again
        gc.collect()  # a task's finalizer reports the exception nobody retrieved
        await asyncio.sleep(0)
        assert reported == []
    finally:
        loop.set_exception_handler(None)


async def test_a_read_cancelled_as_its_source_ends_leaves_no_error_behind() -> None:
    """The source's read fails (MediaStreamError, the meeting ended) in the same loop
    turn as the caller cancels recv(): the failed read is retrieved too (found by an
    attack helper)."""
    from meetcore_client._media import RemoteTrack

    class Source:
        def __init__(self) -> None:
            self.read: asyncio.Future[Any] | None = None

        async def recv(self) -> Any:
            self.read = asyncio.get_running_loop().create_future()
            return await self.read

    loop = asyncio.get_running_loop()
    reported: list[dict[str, Any]] = []
    loop.set_exception_handler(lambda loop, context: reported.append(context))
    try:
        source = Source()
        track = RemoteTrack(source, "video", "t1")  # type: ignore[arg-type]
        reader = asyncio.ensure_future(track.recv())
        await eventually(lambda: source.read is not None)
        assert source.read is not None
        source.read.set_exception(MediaStreamError())
        reader.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await reader
        del reader
        source.read = None
        await asyncio.sleep(0)  # the read's task finishes
        gc.collect()  # a task's finalizer reports the exception nobody retrieved
        await asyncio.sleep(0)
        assert reported == []
    finally:
        loop.set_exception_handler(None)


async def test_key_frame_requests_are_throttled_and_audio_needs_none() -> None:
    receiver = FakeReceiver()
    video = _forward.Publication("alice", "video", receiver)  # type: ignore[arg-type]
    for _ in range(5):
        video.request_keyframe()
    await asyncio.sleep(0)
    assert len(receiver.plis) == 1
    audio = _forward.Publication("alice", "audio", receiver)  # type: ignore[arg-type]
    track = audio.subscribe()
    audio.push(b"opus", 960)
    assert bytes(await track.recv()) == b"opus"  # no key frame to wait for
    assert _forward.is_keyframe("video", b"\x10") and not _forward.is_keyframe("video", b"\x11")


class Loud:
    """A publication as `Loudest` ranks it: its packets' levels, and who gets its frames."""

    def __init__(self, loudest: _forward.Loudest, who: str, level: int | None) -> None:
        self.publication = _forward.Publication(who, "audio")
        loudest.add(self.publication)
        self.level = level
        self.tracks: dict[str, _forward.ForwardTrack] = {}
        self.got: Counter[str] = Counter()
        self.frames = 0

    def listen(self, *listeners: str) -> None:
        for listener in listeners:
            if listener != self.publication.participant_id:
                track = _forward.ForwardTrack("audio", owner=listener)
                track.attach(self.publication)
                self.tracks[listener] = track

    def speak(self) -> None:
        """One 20 ms packet."""
        if self.level is not None:
            self.publication.heard(self.level)
        self.publication.push(b"opus", 960 * self.frames)
        self.frames += 1
        for listener, track in self.tracks.items():
            while not track._queue.empty():
                track._queue.get_nowait()
                self.got[listener] += 1


def test_each_participant_gets_the_loudest_audio_of_the_others(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Four participants speaking, two streams each: the two loudest (levels 10 and 20,
    in -dBov) go to everyone else; the third goes only to those two (who do not get
    themselves); the quietest to nobody, and is counted held. A plugin's track gets
    every frame. Turned up, a quiet one takes its place at the next ranking; one that
    stops sending is not ranked; with two publishers, everything is forwarded; silence
    goes to nobody, and one that starts to speak is ranked at once."""
    now = [100.0]
    monkeypatch.setattr(_forward.time, "monotonic", lambda: now[0])
    loudest = _forward.Loudest(2)
    levels = {"a": 10, "b": 20, "c": 40, "d": 60}
    voices = {who: Loud(loudest, who, level) for who, level in levels.items()}
    for voice in voices.values():
        voice.listen(*voices, "listener")
    recorder = voices["d"].publication.subscribe()

    def talk(ticks: int, who: str = "abcd") -> dict[str, dict[str, int]]:
        """What each one's packets reached in the last 10 of `ticks` 20 ms ticks."""
        for tick in range(ticks):
            if tick == ticks - 10:
                for voice in voices.values():
                    voice.got.clear()
            now[0] += 0.02
            for speaker in who:
                voices[speaker].speak()
        return {w: dict(v.got) for w, v in voices.items()}

    got = talk(50)  # 1 s: the levels settle
    assert got["a"] == {"b": 10, "c": 10, "d": 10, "listener": 10}
    assert got["b"] == {"a": 10, "c": 10, "d": 10, "listener": 10}
    assert got["c"] == {"a": 10, "b": 10}  # third: only for the two loudest
    assert got["d"] == {}
    assert voices["d"].publication.held >= 10 and voices["a"].publication.held == 0
    assert recorder._queue.qsize() == 50  # a plugin's track: every frame
    assert loudest.speakers == {"a", "b"}

    voices["d"].level = 0  # d speaks up: the loudest at the next ranking
    got = talk(50)
    assert loudest.speakers == {"d", "a"}
    assert got["d"]["listener"] == 10 and "listener" not in got["b"]
    assert got["b"] == {"a": 10, "d": 10}  # third now, for the two loudest

    got = talk(50, who="bcd")  # a stops sending: silent after 0.5 s, it is not ranked
    assert loudest.speakers == {"d", "b"}
    assert got["c"] == {"b": 10, "d": 10}

    for who in "bc":  # two left: each gets all of the other one
        loudest.discard(voices[who].publication)
    assert voices["b"].publication.loudest is None
    got = talk(20, who="ad")
    assert got["a"]["listener"] == got["a"]["d"] == got["d"]["listener"] == got["d"]["a"] == 10

    voices["e"] = Loud(loudest, "e", 127)  # a third, silent (a muted microphone)
    voices["e"].listen("a", "d", "listener")
    got = talk(50, who="ade")
    assert got["e"] == {}  # silence goes to nobody, not even as the third
    voices["e"].level = 30  # e speaks: ranked again at its first packet, not 0.3 s later
    voices["e"].got.clear()
    voices["e"].speak()
    assert voices["e"].got == {"a": 1, "d": 1}


def test_a_voice_louder_than_the_one_forwarded_is_ranked_at_its_packet(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """One voice forwarded: a held voice that speaks up is ranked again as soon as it is
    louder than the forwarded one (with its credit), at its packet, not at the next
    ranking 0.3 s later: the first word is not cut."""
    now = [100.0]
    monkeypatch.setattr(_forward.time, "monotonic", lambda: now[0])
    loudest = _forward.Loudest(1)
    voices = {who: Loud(loudest, who, level) for who, level in {"a": 70, "b": 80, "c": 90}.items()}
    for voice in voices.values():
        voice.listen("listener")
    for _ in range(50):
        now[0] += 0.02
        for voice in voices.values():
            voice.speak()
    assert loudest.speakers == {"a"}
    loudest.rank(now[0])  # the next ranking is 0.3 s, 15 packets, away
    voices["c"].level = 0
    voices["c"].got.clear()
    packets = 0
    while not voices["c"].got["listener"] and packets < 10:
        now[0] += 0.02
        packets += 1
        for voice in voices.values():
            voice.speak()
    assert packets <= 4 and loudest.speakers == {"c"}  # 57 dB + 3 passed at the 3rd packet
