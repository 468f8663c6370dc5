"""Run with the SDK's own python: the unmodified VideoSDK Python SDK in a meeting, with
media. Its camera is a moving 640x480 test pattern at 30 fps, its microphone a tone.

argv: meeting id, token, signaling_base_url, participant id, then a JSON object of
init_meeting options (mic_enabled, webcam_enabled, mode, name). Prints one JSON line
per event (meeting-joined with the seconds since `join()`, participant-joined/left,
stream-enabled/disabled, media-status-changed, error, meeting-left), and reads commands
on stdin, one a line: `stats` (prints the frames decoded so far of each remote stream,
with their sizes), `disable-webcam`, `enable-webcam`, `disable-mic`, `enable-mic`,
`end`, `leave`, and a moderator's `ask-mic PEER`, `ask-webcam PEER`, `mute PEER`,
`stop-webcam PEER`.
Its aioice gathers on 127.0.0.1 only (everything on loopback)."""

import array
import asyncio
import fractions
import json
import logging
import math
import sys
import time

import aioice.ice

aioice.ice.get_host_addresses = lambda use_ipv4, use_ipv6: ["127.0.0.1"]

from av import AudioFrame, VideoFrame  # noqa: E402
from videosdk import (  # noqa: E402
    CustomAudioTrack,
    CustomVideoTrack,
    MeetingEventHandler,
    ParticipantEventHandler,
    VideoSDK,
)

frames = {}  # "peer:kind" -> [decoded frames, last width, last height]
counting = set()  # the counting tasks


def say(event, **fields):
    print(json.dumps({"event": event, **fields}), flush=True)


class Camera(CustomVideoTrack):
    """640x480 at 30 fps, a bright bar moving across (VP8 has something to encode)."""

    def __init__(self):
        super().__init__()
        self.count = 0

    async def recv(self):
        pts, time_base = await self.next_timestamp()
        frame = VideoFrame(width=640, height=480, format="yuv420p")
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
        frame.pts, frame.time_base = pts, time_base
        return frame


class Tone(CustomAudioTrack):
    """A 440 Hz tone, 20 ms frames at 48 kHz."""

    def __init__(self):
        super().__init__()
        self.sent = 0
        self.start = None

    async def recv(self):
        if self.start is None:
            self.start = time.time()
        self.sent += 960
        wait = self.start + self.sent / 48000 - time.time()
        if wait > 0:
            await asyncio.sleep(wait)
        samples = array.array(
            "h",
            (int(8000 * math.sin(2 * math.pi * 440 * (self.sent + i) / 48000)) for i in range(960)),
        )
        frame = AudioFrame(format="s16", layout="mono", samples=960)
        frame.planes[0].update(samples.tobytes())
        frame.sample_rate = 48000
        frame.pts, frame.time_base = self.sent, fractions.Fraction(1, 48000)
        return frame


async def count(key, track):
    entry = frames.setdefault(key, [0, 0, 0])
    try:
        while True:
            frame = await track.recv()
            entry[0] += 1
            entry[1], entry[2] = getattr(frame, "width", 0), getattr(frame, "height", 0)
    except Exception:
        pass


class Remote(ParticipantEventHandler):
    def __init__(self, participant):
        super().__init__()
        self.participant = participant

    def on_stream_enabled(self, stream):
        say("stream-enabled", id=self.participant.id, kind=stream.kind)
        task = asyncio.ensure_future(count(f"{self.participant.id}:{stream.kind}", stream.track))
        counting.add(task)
        task.add_done_callback(counting.discard)

    def on_stream_disabled(self, stream):
        say("stream-disabled", id=self.participant.id, kind=stream.kind)

    def on_media_status_changed(self, data):
        say("media-status-changed", id=data["peerId"], kind=data["kind"], on=data["newState"])


class Handler(MeetingEventHandler):
    def __init__(self):
        super().__init__()
        self.started = time.monotonic()

    def on_meeting_joined(self, data):
        say("meeting-joined", seconds=time.monotonic() - self.started)

    def on_meeting_left(self, data):
        say("meeting-left")

    def on_participant_joined(self, participant):
        participant.add_event_listener(Remote(participant))
        say("participant-joined", id=participant.id, name=participant.display_name)

    def on_participant_left(self, participant):
        say("participant-left", id=participant.id)

    def on_error(self, data):
        say("error", data=str(data)[:300])

    def on_mic_requested(self, data):  # 0.4.1 never calls it (see Requests)
        say("mic-requested", by=data["participantId"])

    def on_webcam_requested(self, data):
        say("webcam-requested", by=data["participantId"])


class Requests(logging.Handler):
    """The moderator's requests as the SDK's signaling logs them: videosdk 0.4.1 emits
    mic-requested and webcam-requested under an enum its handlers are not looked up
    by, so an app's `on_mic_requested` is never called; what reached the SDK shows here."""

    def emit(self, record):
        message = record.getMessage()
        for heard, event in (("enable mic received", "mic"), ("enable webcam received", "webcam")):
            if heard in message:
                say(f"{event}-request-received")


async def main():
    logging.basicConfig(
        level=logging.DEBUG if "-v" in sys.argv else logging.WARNING, stream=sys.stderr
    )
    signaling = logging.getLogger("videosdk.room_client")
    signaling.setLevel(logging.DEBUG)
    signaling.addHandler(Requests())
    if "-v" not in sys.argv:  # its other debug lines stay out of stderr
        signaling.propagate = False
        warnings = logging.StreamHandler(sys.stderr)
        warnings.setLevel(logging.WARNING)
        signaling.addHandler(warnings)
    loop = asyncio.get_running_loop()
    options = json.loads(sys.argv[5])
    meeting = VideoSDK.init_meeting(
        meeting_id=sys.argv[1],
        token=sys.argv[2],
        signaling_base_url=sys.argv[3],
        participant_id=sys.argv[4],
        name=options.pop("name", sys.argv[4]),
        custom_camera_video_track=Camera(),
        custom_microphone_audio_track=Tone(),
        loop=loop,
        **options,
    )
    handler = Handler()
    meeting.add_event_listener(handler)
    handler.started = time.monotonic()  # join() is where init-config starts
    meeting.join()
    while True:
        line = (await loop.run_in_executor(None, sys.stdin.readline)).strip()
        if line == "stats":
            say("stats", frames=frames, at=time.monotonic())
        elif line == "disable-webcam":
            meeting.disable_webcam()
        elif line == "enable-webcam":
            meeting.enable_webcam(Camera())
        elif line == "disable-mic":
            meeting.disable_mic()
        elif line == "enable-mic":
            meeting.enable_mic(Tone())
        elif line == "end":
            meeting.end()
        elif line.startswith(("ask-mic ", "ask-webcam ", "mute ", "stop-webcam ")):
            command, peer = line.split(" ", 1)
            participant = meeting.participants[peer]
            {
                "ask-mic": participant.enable_mic,
                "ask-webcam": participant.enable_webcam,
                "mute": participant.disable_mic,
                "stop-webcam": participant.disable_webcam,
            }[command]()
        elif line in ("leave", ""):
            meeting.leave()
            await asyncio.sleep(2)
            return


asyncio.run(main())
