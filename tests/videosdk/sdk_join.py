"""Run with the SDK's own python: the unmodified VideoSDK Python SDK joins a meeting.

argv: meeting id, token, signaling_base_url, name. Prints one JSON line per event; reads
"leave" on stdin. Its aioice gathers on 127.0.0.1 only (everything on loopback)."""

import asyncio
import json
import logging
import sys

import aioice.ice

aioice.ice.get_host_addresses = lambda use_ipv4, use_ipv6: ["127.0.0.1"]

from videosdk import MeetingEventHandler, VideoSDK  # noqa: E402


def say(event, **fields):
    print(json.dumps({"event": event, **fields}), flush=True)


class Handler(MeetingEventHandler):
    def on_meeting_joined(self, data):
        say("meeting-joined")

    def on_meeting_left(self, data):
        say("meeting-left")

    def on_participant_joined(self, participant):
        say("participant-joined", id=participant.id, name=participant.display_name)

    def on_participant_left(self, participant):
        say("participant-left", id=participant.id)

    def on_error(self, data):
        say("error", data=str(data)[:300])


async def main():
    logging.basicConfig(
        level=logging.DEBUG if "-v" in sys.argv else logging.INFO, stream=sys.stderr
    )
    loop = asyncio.get_running_loop()
    meeting = VideoSDK.init_meeting(
        meeting_id=sys.argv[1],
        token=sys.argv[2],
        signaling_base_url=sys.argv[3],
        name=sys.argv[4],
        participant_id="sdk-peer",
        mic_enabled=False,
        webcam_enabled=False,
        loop=loop,
    )
    meeting.add_event_listener(Handler())
    meeting.join()
    line = await loop.run_in_executor(None, sys.stdin.readline)
    if line.strip() == "leave":
        meeting.leave()
        await asyncio.sleep(2)


asyncio.run(main())
