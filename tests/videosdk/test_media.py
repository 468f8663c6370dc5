"""VideoSDK's unmodified Python SDK in meetcore meetings with media (issue 22): audio and
video both ways with meetcore's own Python client and with a second SDK client, webcam
off and on mid-meeting, the end of the meeting, and a killed SDK process. One
`meetcore serve --dev --dev-tls`, one log, one SFU, two protocols; everything on
127.0.0.1 (the SDK's aioice is made to gather there, `sdk_media.py`)."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import ssl
import sys
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any
from unittest.mock import patch

import httpx
import pytest
from sdk_process import SdkProcess
from support import eventually

import meetcore_protocol as p
from meetcore_client import Meeting, init_meeting
from meetcore_jwt import mint_token
from meetcore_media.tracks import SyntheticVideoTrack, ToneAudioTrack
from meetcore_server.testing import ServeProcess

pytestmark = [pytest.mark.slow, pytest.mark.media]

LOOPBACK = ["127.0.0.1"]
#: Seconds a participant whose connection is gone stays in (`--lease-ttl`).
LEASE = 5


class Server:
    def __init__(self, process: ServeProcess, folder: Path) -> None:
        self.process = process
        self.url = process.url
        self.base = process.url.removeprefix("https://")
        self.ca = str(folder / "meetcore-dev-ca.pem")
        trust = ssl.create_default_context(cafile=self.ca)
        self.token = httpx.get(f"{self.url}/get-token", verify=trust, timeout=10).json()["token"]
        self.trust = trust
        ((self.api_key, self.secret),) = json.loads(
            (folder / "meetcore-keys.json").read_text()
        ).items()

    def token_for(self, *permissions: str) -> str:
        return mint_token(api_key=self.api_key, secret=self.secret, permissions=permissions)

    def room(self, room_id: str) -> str:
        made = httpx.post(
            f"{self.url}/v2/rooms",
            headers={"Authorization": self.token},
            json={"customRoomId": room_id},
            verify=self.trust,
            timeout=10,
        )
        assert made.status_code == 200, made.text
        return room_id


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    folder = tmp_path_factory.mktemp("videosdk-media")
    command = [sys.executable, "-m", "meetcore.cli", "serve", "--port", "0", "--dev"]
    command += ["--dev-tls", "--store", "memory://", "--lease-ttl", str(LEASE)]
    env = {"MEETCORE_ICE_ADDRESSES": "127.0.0.1"}
    trusted = {"SSL_CERT_FILE": str(folder / "meetcore-dev-ca.pem")}  # the Python client
    with ServeProcess(folder, command=command, env=env) as process, patch.dict(os.environ, trusted):
        yield Server(process, folder)
        failures = [line for line in process.lines if " ERROR " in line or "Traceback" in line]
        assert not failures, "\n".join(process.lines)


@asynccontextmanager
async def sdk(
    python: Path, server: Server, room: str, peer_id: str, token: str = "", **options: Any
) -> AsyncIterator[SdkProcess]:
    client = await SdkProcess.start(
        python,
        room=room,
        token=token or server.token,
        signaling_base_url=server.base,
        peer_id=peer_id,
        ca=server.ca,
        options=options,
    )
    failed = True
    try:
        yield client
        failed = False
    finally:
        err = await client.stop(leave=False)
        if failed:
            print(json.dumps(client.events, indent=1)[-4000:])
            print(err[-4000:])
            print("\n".join(server.process.lines[-40:]))


class Counted:
    """A meetcore client's decoded frames of each remote stream, as they come."""

    def __init__(self, meeting: Meeting) -> None:
        self.frames: dict[str, int] = {}
        self.sizes: dict[str, tuple[int, int]] = {}
        self.events: list[tuple[str, str, str]] = []
        self._tasks: set[asyncio.Future[None]] = set()
        meeting.on("participant-joined", self._watch)
        self._meeting = meeting

    def watch_present(self) -> None:
        for participant in self._meeting.participants.values():
            self._watch(participant)

    def _watch(self, participant: Any) -> None:
        def enabled(stream: Any) -> None:
            self.events.append(("stream-enabled", participant.id, stream.kind))
            task = asyncio.ensure_future(
                self._count(f"{participant.id}:{stream.kind}", stream.track)
            )
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

        participant.on("stream-enabled", enabled)
        participant.on(
            "stream-disabled",
            lambda stream: self.events.append(("stream-disabled", participant.id, stream.kind)),
        )

    async def _count(self, key: str, track: Any) -> None:
        self.frames.setdefault(key, 0)
        try:
            while True:
                frame = await track.recv()
                self.frames[key] += 1
                if hasattr(frame, "width"):
                    self.sizes[key] = (frame.width, frame.height)
        except Exception:
            pass

    async def wait_for(self, event: tuple[str, str, str], timeout: float = 30) -> None:
        async with asyncio.timeout(timeout):
            while event not in self.events:
                await asyncio.sleep(0.05)


def native(server: Server, room: str, name: str, **options: Any) -> Meeting:
    return init_meeting(
        base_url=server.url,
        token=server.token,
        meeting_id=room,
        name=name,
        ice_addresses=LOOPBACK,
        **options,
    )


async def publishing(
    server: Server, room: str, name: str, width: int = 640, height: int = 480, fps: int = 30
) -> tuple[Meeting, Counted]:
    """A meetcore client in `room` sending a synthetic camera and a tone, joined, with
    the frames it decodes of each remote stream counted."""
    meeting = native(
        server,
        room,
        name,
        mic_enabled=True,
        webcam_enabled=True,
        custom_camera_video_track=SyntheticVideoTrack(width=width, height=height, fps=fps),
        custom_microphone_audio_track=ToneAudioTrack(),
    )
    counted = Counted(meeting)
    await meeting.join()
    counted.watch_present()
    return meeting, counted


async def rates(
    sdk_client: SdkProcess, counted: Counted, seconds: float
) -> tuple[dict[str, float], dict[str, float]]:
    """Frames per second each side decoded of each stream, over `seconds`."""
    before_sdk, before_native, started = (
        await sdk_client.stats(),
        dict(counted.frames),
        time.monotonic(),
    )
    await asyncio.sleep(seconds)
    after_sdk, after_native = await sdk_client.stats(), dict(counted.frames)
    elapsed = time.monotonic() - started
    sdk_rates = {
        key: (value[0] - before_sdk["frames"].get(key, [0])[0])
        / (after_sdk["at"] - before_sdk["at"])
        for key, value in after_sdk["frames"].items()
    }
    native_rates = {
        key: (value - before_native.get(key, 0)) / elapsed for key, value in after_native.items()
    }
    return sdk_rates, native_rates


@pytest.mark.anyio
@pytest.mark.parametrize("first", ["sdk", "meetcore"])
async def test_an_sdk_client_and_a_meetcore_client_get_each_other_s_audio_and_video(
    server: Server, sdk_python: Path, first: str
) -> None:
    """Whoever joins first: the late one gets the media already flowing (newPeer and
    newConsumer on join for the SDK, the server's offer for meetcore's client)."""
    room = server.room(f"media-both-ways-{first}")
    early = await publishing(server, room, "Bob") if first == "meetcore" else None
    async with sdk(sdk_python, server, room, "sdk-alice") as alice:
        await alice.wait_for(event="meeting-joined")
        bob, counted = early or await publishing(server, room, "Bob")
        bob_id = bob.local_participant.id
        await alice.wait_for(event="participant-joined", id=bob_id)
        await alice.wait_for(event="stream-enabled", id=bob_id, kind="video")
        await alice.wait_for(event="stream-enabled", id=bob_id, kind="audio")
        await counted.wait_for(("stream-enabled", "sdk-alice", "video"))
        await counted.wait_for(("stream-enabled", "sdk-alice", "audio"))
        await asyncio.sleep(1)  # past the first key frame
        sdk_rates, native_rates = await rates(alice, counted, 3)
        print("the SDK decoded", sdk_rates, "meetcore's client", native_rates)
        # video both ways at 640x480, at least 20 of the 30 frames a second; audio 50/s
        assert sdk_rates[f"{bob_id}:video"] >= 20
        assert native_rates["sdk-alice:video"] >= 20
        assert counted.sizes["sdk-alice:video"] == (640, 480)
        last = (await alice.stats())["frames"][f"{bob_id}:video"]
        assert (last[1], last[2]) == (640, 480)
        assert sdk_rates[f"{bob_id}:audio"] >= 40
        assert native_rates["sdk-alice:audio"] >= 40

        # the SDK's webcam off and on: meetcore's client sees the stream end and start
        await alice.command("disable-webcam")
        await counted.wait_for(("stream-disabled", "sdk-alice", "video"))
        webcam = bob.participants["sdk-alice"]
        assert webcam.webcam_on is False
        await alice.command("enable-webcam")
        enabled_again = [e for e in counted.events if e == ("stream-enabled", "sdk-alice", "video")]
        async with asyncio.timeout(30):
            while len(enabled_again) < 2:
                await asyncio.sleep(0.05)
                enabled_again = [
                    e for e in counted.events if e == ("stream-enabled", "sdk-alice", "video")
                ]
        assert bob.participants["sdk-alice"].webcam_on is True

        # meetcore's client's webcam off: the SDK's stream ends, and it is told the state
        await bob.disable_webcam()
        await alice.wait_for(event="stream-disabled", id=bob_id, kind="video")
        await alice.wait_for(event="media-status-changed", id=bob_id, kind="video", on=False)

        # the moderator (meetcore's client, a dev token) ends the meeting: the SDK leaves
        await bob.end()
        await alice.wait_for(event="meeting-left")


@pytest.mark.anyio
async def test_two_sdk_clients_meet_and_one_killed_leaves_within_the_lease(
    server: Server, sdk_python: Path
) -> None:
    room = server.room("two-sdks")
    watcher = native(server, room, "Watcher")
    left: asyncio.Future[tuple[str, Any]] = asyncio.get_running_loop().create_future()
    watcher.on(
        "participant-left",
        lambda p, reason=None: (
            p.id == "sdk-carol" and not left.done() and left.set_result((p.id, reason))
        ),
    )
    await watcher.join()
    async with (
        sdk(sdk_python, server, room, "sdk-alice") as alice,
        sdk(sdk_python, server, room, "sdk-carol") as carol,
    ):
        await alice.wait_for(event="meeting-joined")
        await carol.wait_for(event="meeting-joined")
        # whoever joined first, each sees the other, and gets its audio and video
        await alice.wait_for(event="participant-joined", id="sdk-carol")
        await carol.wait_for(event="participant-joined", id="sdk-alice")
        for me, other in ((alice, "sdk-carol"), (carol, "sdk-alice")):
            await me.wait_for(event="stream-enabled", id=other, kind="video")
            await me.wait_for(event="stream-enabled", id=other, kind="audio")
        await asyncio.sleep(1)
        first = await alice.stats()
        await asyncio.sleep(2)
        then = await alice.stats()
        fps = (then["frames"]["sdk-carol:video"][0] - first["frames"]["sdk-carol:video"][0]) / (
            then["at"] - first["at"]
        )
        assert fps >= 20, (first, then)
        assert then["frames"]["sdk-carol:video"][1:] == [640, 480]

        # a moderator asks the other to switch its mic on, and switches its webcam off
        await alice.command("ask-mic sdk-carol")
        await carol.wait_for(event="mic-request-received")
        await alice.command("stop-webcam sdk-carol")
        await alice.wait_for(event="stream-disabled", id="sdk-carol", kind="video")
        await alice.wait_for(event="media-status-changed", id="sdk-carol", kind="video", on=False)
        await eventually(lambda: not watcher.participants["sdk-carol"].webcam_on)

        killed = time.monotonic()
        carol.process.send_signal(signal.SIGKILL)
        await alice.wait_for(event="participant-left", id="sdk-carol", timeout=LEASE + 15)
        who, reason = await asyncio.wait_for(left, LEASE + 15)
        assert time.monotonic() - killed < LEASE + 10
        assert who == "sdk-carol" and reason is not None and reason.code == 1001, reason
        await alice.command("leave")
        await alice.wait_for(event="meeting-left")
    await watcher.leave()


@pytest.mark.anyio
async def test_modes_removal_and_a_participant_without_allow_mod(
    server: Server, sdk_python: Path
) -> None:
    room = server.room("modes")
    host, counted = await publishing(server, room, "Host", 320, 240, 15)
    host_id = host.local_participant.id
    plain = server.token_for("allow_join")
    async with (
        sdk(sdk_python, server, room, "sdk-viewer", mode="RECV_ONLY") as viewer,
        sdk(
            sdk_python,
            server,
            room,
            "sdk-listener",
            mode="SIGNALLING_ONLY",
            mic_enabled=False,
            webcam_enabled=False,
        ) as listener,
        sdk(sdk_python, server, room, "sdk-guest", token=plain) as guest,
    ):
        for client in (viewer, listener, guest):
            await client.wait_for(event="meeting-joined")
            await client.wait_for(event="participant-joined", id=host_id)
        # RECV_ONLY gets the host's media and sends none; SIGNALLING_ONLY gets none
        await viewer.wait_for(event="stream-enabled", id=host_id, kind="video")
        await guest.wait_for(event="stream-enabled", id=host_id, kind="video")
        await counted.wait_for(("stream-enabled", "sdk-guest", "video"))
        assert host.participants["sdk-viewer"].mode == "RECV_ONLY"
        assert host.participants["sdk-listener"].mode == "SIGNALLING_ONLY"
        await asyncio.sleep(1)  # proof that nothing comes meanwhile
        assert not [e for e in counted.events if e[1] in ("sdk-viewer", "sdk-listener")]
        assert not [e for e in listener.events if e["event"] == "stream-enabled"]

        # without allow_mod, ending the meeting or asking for a mic is refused
        await guest.command("ask-mic sdk-viewer")
        await guest.command("end")

        def refused(what: str) -> bool:
            return any(f"refused {what} of sdk-guest" in line for line in server.process.lines)

        await eventually(lambda: refused("closeRoom") and refused("enablePeerMic"))
        assert "sdk-guest" in host.participants and host.joined
        assert not [e for e in viewer.events if e["event"] == "meeting-left"]
        assert not [e for e in viewer.events if e["event"] == "mic-request-received"]

        # the host (a moderator, on meetcore's protocol) switches the guest's webcam off:
        # its stream stops reaching everyone, whichever protocol they speak
        await host._request(
            p.SetMediaRequest(kind="webcam", enabled=False, participant_id="sdk-guest")
        )
        await counted.wait_for(("stream-disabled", "sdk-guest", "video"))
        await viewer.wait_for(event="stream-disabled", id="sdk-guest", kind="video")
        await viewer.wait_for(event="media-status-changed", id="sdk-guest", kind="video", on=False)

        # the host removes the viewer: its SDK leaves; the others see it go
        await host.remove_participant("sdk-viewer")
        await viewer.wait_for(event="meeting-left")
        await guest.wait_for(event="participant-left", id="sdk-viewer")
        await listener.wait_for(event="participant-left", id="sdk-viewer")

        # the same participant id joins again: the first connection is taken out
        async with sdk(
            sdk_python,
            server,
            room,
            "sdk-listener",
            mode="SIGNALLING_ONLY",
            mic_enabled=False,
            webcam_enabled=False,
        ) as again:
            await again.wait_for(event="meeting-joined")
            await listener.wait_for(event="meeting-left")
            await again.wait_for(event="participant-joined", id=host_id)
            assert host.participants["sdk-listener"].mode == "SIGNALLING_ONLY"
            assert not [e for e in again.events if e["event"] == "meeting-left"]
    await host.leave()


# -- one meeting, three SDKs: VideoSDK's, meetcore's Python client, meetcore.js ---------------

CHROMIUM = Path("/usr/bin/chromium")
# What the page decoded of a participant's video so far (null: no such stream).
PAGE_DECODED = """
async (participantId) => {
  const meeting = window.demo.meeting;
  const stream = meeting.participants.get(participantId)?.streamOf("video");
  if (!stream || !meeting.peerConnection) return null;
  let count = null;
  (await meeting.peerConnection.getStats()).forEach((report) => {
    if (report.type === "inbound-rtp" && report.kind === "video" && report.mid === stream.mid) {
      count = report.framesDecoded;
    }
  });
  return count;
}
"""


async def page_decoded(page: Any, participant_id: str) -> int:
    """The page's count (Chrome's stats lack the report for a moment while the page
    applies an offer)."""
    async with asyncio.timeout(10):
        while (count := await page.evaluate(PAGE_DECODED, participant_id)) is None:
            await asyncio.sleep(0.1)
    return int(count)


@pytest.mark.browser
@pytest.mark.skipif(not CHROMIUM.exists(), reason="needs Debian's chromium (/usr/bin/chromium)")
@pytest.mark.anyio
async def test_a_videosdk_client_a_python_client_and_a_browser_in_one_meeting(
    server: Server, sdk_python: Path
) -> None:
    playwright_api = pytest.importorskip("playwright.async_api")
    room = server.room("three-sdks")
    async with (
        playwright_api.async_playwright() as playwright,
        sdk(sdk_python, server, room, "sdk-alice") as alice,
    ):
        browser = await playwright.chromium.launch(
            executable_path=str(CHROMIUM),
            headless=True,
            args=[
                "--no-sandbox",
                "--use-fake-ui-for-media-stream",
                "--use-fake-device-for-media-stream",
                "--ignore-certificate-errors",  # the development CA's certificate
                "--disable-gpu",
                "--no-first-run",
                "--disable-background-networking",
            ],
        )
        try:
            await alice.wait_for(event="meeting-joined")
            bob, counted = await publishing(server, room, "Bob")
            bob_id = bob.local_participant.id

            page = await browser.new_page()
            await page.goto(f"{server.url}/?meetingId={room}")
            await page.fill("#name", "Carol")
            await page.set_checked("#webcam", True)
            await page.set_checked("#mic", True)
            await page.click("#join")
            await page.wait_for_selector("#room:not([hidden])")
            carol_id = await page.evaluate("window.demo.meeting.localParticipant.id")

            # everyone sees everyone join, and gets everyone's audio and video
            for who in (bob_id, carol_id):
                await alice.wait_for(event="participant-joined", id=who)
                for kind in ("audio", "video"):
                    await alice.wait_for(event="stream-enabled", id=who, kind=kind)
            for who in ("sdk-alice", carol_id):
                for kind in ("audio", "video"):
                    await counted.wait_for(("stream-enabled", who, kind))
            await page.wait_for_selector('#people li[data-participant-id="sdk-alice"]')
            await page.wait_for_function(
                f"async () => (await ({PAGE_DECODED})('sdk-alice')) > 0", timeout=30_000
            )
            await page.wait_for_function(
                f"async () => (await ({PAGE_DECODED})({json.dumps(bob_id)})) > 0", timeout=30_000
            )

            # frames keep coming, every way, over a few seconds
            page_before = await page_decoded(page, "sdk-alice")
            sdk_rates, native_rates = await rates(alice, counted, 3)
            page_after = await page_decoded(page, "sdk-alice")
            print("SDK", sdk_rates, "Python", native_rates, "page", page_before, page_after)
            for key in (f"{bob_id}:video", f"{carol_id}:video"):
                assert sdk_rates[key] >= 10, sdk_rates
            for key in (f"{bob_id}:audio", f"{carol_id}:audio"):
                assert sdk_rates[key] >= 40, sdk_rates
            for key in ("sdk-alice:video", f"{carol_id}:video"):
                assert native_rates[key] >= 10, native_rates
            assert native_rates["sdk-alice:audio"] >= 40, native_rates
            assert page_after - page_before >= 30  # 10 a second of the SDK's video

            # the page leaves: the SDK sees it go; the SDK leaves: the page does
            await page.click("#leave")
            await alice.wait_for(event="participant-left", id=carol_id)
            page2 = await browser.new_page()
            await page2.goto(f"{server.url}/?meetingId={room}")
            await page2.fill("#name", "Dora")
            await page2.set_checked("#webcam", False)
            await page2.set_checked("#mic", False)
            await page2.click("#join")
            await page2.wait_for_selector('#people li[data-participant-id="sdk-alice"]')
            await alice.command("leave")
            await alice.wait_for(event="meeting-left")
            await page2.wait_for_selector(
                '#people li[data-participant-id="sdk-alice"]', state="detached"
            )
            assert "sdk-alice" not in bob.participants
            await bob.leave()
        finally:
            await browser.close()


@pytest.mark.anyio
async def test_an_ask_join_sdk_client_waits_until_a_moderator_lets_it_in_or_denies_it(
    server: Server, sdk_python: Path
) -> None:
    room = server.room("waiting-room")
    host = native(server, room, "Host")
    answers = iter(["allowed", "denied"])

    async def answer(request: Any) -> None:
        await asyncio.sleep(1)  # the SDK's join waits meanwhile
        await (request.allow() if next(answers) == "allowed" else request.deny())

    tasks: set[asyncio.Future[None]] = set()
    host.on("entry-requested", lambda request: tasks.add(asyncio.ensure_future(answer(request))))
    await host.join()
    asking = server.token_for("ask_join")
    async with sdk(sdk_python, server, room, "sdk-asking", token=asking) as let_in:
        await let_in.wait_for(event="meeting-joined")
        await let_in.wait_for(event="participant-joined", id=host.local_participant.id)
        assert "sdk-asking" in host.participants
        async with sdk(sdk_python, server, room, "sdk-denied", token=asking) as denied:
            await denied.wait_for(event="error")
            assert "sdk-denied" not in host.participants
            assert not [e for e in denied.events if e["event"] == "meeting-joined"]
    await host.leave()
