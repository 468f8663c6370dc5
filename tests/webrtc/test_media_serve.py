"""Media through a real `meetcore serve` process: two aiortc clients in this process
exchange audio and video through it, with no STUN server and every candidate on
127.0.0.1 (`MEETCORE_ICE_ADDRESSES` for the server, `ice_addresses` for the clients)."""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from aiortc.mediastreams import MediaStreamError

from meetcore_client import Meeting, Stream, init_meeting
from meetcore_media.tracks import SyntheticVideoTrack, ToneAudioTrack
from meetcore_server.testing import ServeProcess, serve_refuses

pytestmark = [
    pytest.mark.anyio,
    pytest.mark.skipif(sys.platform == "win32", reason="needs POSIX signals"),
]


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
def serve(tmp_path: Path) -> Iterator[ServeProcess]:
    server = ServeProcess(tmp_path, env={"MEETCORE_ICE_ADDRESSES": "127.0.0.1"}).wait_ready()
    try:
        yield server
    finally:
        code = server.terminate()
        assert code == 0, server.output
        assert "Traceback" not in server.output, server.output


@pytest.fixture
async def room(serve: ServeProcess) -> tuple[str, str]:
    async with httpx.AsyncClient(base_url=serve.url, timeout=10) as http:
        token = (await http.get("/get-token")).json()["token"]
        created = await http.post("/v2/rooms", headers={"Authorization": token})
    return token, created.json()["roomId"]


async def next_frames(stream: Stream, count: int) -> list[Any]:
    async with asyncio.timeout(10):
        return [await stream.track.recv() for _ in range(count)]


async def stream_of(meeting: Meeting, participant_id: str, kind: str) -> Stream:
    async with asyncio.timeout(10):
        while True:
            participant = meeting.participants.get(participant_id)
            if participant is not None and f"{participant_id}:{kind}" in participant.streams:
                return participant.streams[f"{participant_id}:{kind}"]
            await asyncio.sleep(0.02)


async def test_two_clients_exchange_media_through_meetcore_serve(
    serve: ServeProcess, room: tuple[str, str]
) -> None:
    token, room_id = room
    camera = SyntheticVideoTrack(width=160, height=120, fps=10)
    alice = init_meeting(
        base_url=serve.url,
        token=token,
        meeting_id=room_id,
        participant_id="alice",
        mic_enabled=True,
        webcam_enabled=True,
        custom_camera_video_track=camera,
        ice_servers=[],
        ice_addresses=["127.0.0.1"],
    )
    bob = init_meeting(
        base_url=serve.url,
        token=token,
        meeting_id=room_id,
        participant_id="bob",
        mic_enabled=True,
        webcam_enabled=True,
        ice_servers=[],
        ice_addresses=["127.0.0.1"],
    )
    await alice.join()
    await bob.join()
    try:
        at_bob = await stream_of(bob, "alice", "video")
        at_alice = await stream_of(alice, "bob", "video")
        assert [(f.width, f.height) for f in await next_frames(at_bob, 3)] == [(160, 120)] * 3
        assert [(f.width, f.height) for f in await next_frames(at_alice, 3)] == [(320, 240)] * 3
        for frame in await next_frames(await stream_of(bob, "alice", "audio"), 3):
            assert frame.sample_rate == 48000 and any(bytes(frame.planes[0]))

        off = bob.participants["alice"].wait_for("stream-disabled")
        await alice.disable_webcam()
        assert (await off)[0] is at_bob
        with pytest.raises(MediaStreamError):  # noqa: PT012
            async with asyncio.timeout(5):
                while True:
                    await at_bob.track.recv()

        audio = await stream_of(alice, "bob", "audio")
        left = alice.wait_for("participant-left")
        await bob.leave()
        (gone, _) = await left
        assert gone.id == "bob" and gone.streams == {} and audio.ended
    finally:
        for meeting in (alice, bob):
            if meeting.joined:
                await meeting.leave()


async def test_audio_streams_sets_how_many_voices_each_participant_gets(tmp_path: Path) -> None:
    """`meetcore serve --audio-streams 1`, three microphones on, one of them speaking:
    a listener gets the speaker's audio only (the others' packets are held)."""
    env = {"MEETCORE_ICE_ADDRESSES": "127.0.0.1"}
    with ServeProcess(tmp_path, args=["--audio-streams", "1"], env=env).wait_ready() as serve:
        async with httpx.AsyncClient(base_url=serve.url, timeout=10) as http:
            token = (await http.get("/get-token")).json()["token"]
            room_id = (await http.post("/v2/rooms", headers={"Authorization": token})).json()[
                "roomId"
            ]
        options: dict[str, Any] = {
            "base_url": serve.url,
            "token": token,
            "meeting_id": room_id,
            "ice_addresses": ["127.0.0.1"],
        }
        meetings = [
            init_meeting(
                **options,
                participant_id=name,
                mic_enabled=True,
                custom_microphone_audio_track=ToneAudioTrack(volume=volume),
            )
            for name, volume in (("loud", 0.3), ("mute1", 0.0), ("mute2", 0.0))
        ]
        listener = init_meeting(**options, participant_id="ear", mode="RECV_ONLY", decode=False)
        try:
            for meeting in [*meetings, listener]:
                await meeting.join()
            tracks = {
                name: (await stream_of(listener, name, "audio")).track
                for name in ("loud", "mute1", "mute2")
            }
            async with asyncio.timeout(10):  # until a second with the speaker's packets only
                while True:
                    before = {name: track.received for name, track in tracks.items()}
                    await asyncio.sleep(1)
                    got = {name for name, track in tracks.items() if track.received > before[name]}
                    if got == {"loud"}:
                        break
        finally:
            for meeting in [*meetings, listener]:
                if meeting.joined:
                    await meeting.leave()
    assert "Traceback" not in serve.output


@pytest.mark.parametrize("value", ["-1", "abc", "", "99999999999999999999", "1.5"])
def test_a_bad_audio_streams_is_a_usage_error(tmp_path: Path, value: str) -> None:
    line = serve_refuses(tmp_path, "--port", "0", "--audio-streams", value)
    assert "--audio-streams" in line and len(line) < 400
