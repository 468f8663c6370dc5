"""A participant in its own process, for tests/webrtc/test_e2e.py to kill or to replace.

    python _client.py BASE_URL TOKEN MEETING_ID NAME [PARTICIPANT_ID]

Joins, prints one JSON line per event it sees (`meeting-joined` with its
participantId, `participant-joined`, `participant-left`, `meeting-left` with the
reason's code), and stays in the meeting until it is left (exit 0) or killed.
"""

from __future__ import annotations

import asyncio
import json
import sys
from typing import Any

from meetcore_client import init_meeting


def say(**line: Any) -> None:
    print(json.dumps(line), flush=True)


async def main(base_url: str, token: str, meeting_id: str, name: str, pid: str | None) -> int:
    meeting = init_meeting(
        base_url=base_url, token=token, meeting_id=meeting_id, name=name, participant_id=pid
    )
    left = asyncio.Event()
    meeting.on(
        "meeting-joined", lambda: say(event="meeting-joined", participantId=meeting.participant_id)
    )
    meeting.on("participant-joined", lambda p: say(event="participant-joined", participantId=p.id))
    meeting.on(
        "participant-left",
        lambda p, reason: say(event="participant-left", participantId=p.id, code=reason.code),
    )
    meeting.on("error", lambda error: say(event="error", code=error["code"]))

    def on_left(reason: Any) -> None:
        say(event="meeting-left", code=reason.code)
        left.set()

    meeting.on("meeting-left", on_left)
    await meeting.join()
    await left.wait()
    return 0


if __name__ == "__main__":
    url, token, room, name, *rest = sys.argv[1:]
    sys.exit(asyncio.run(main(url, token, room, name, rest[0] if rest else None)))
