"""A server process for the crash test: `python _deliverer.py STORE URL EVENTS`.

Opens an engine on STORE delivering to URL, makes room "room-1" and joins/leaves until
EVENTS webhooks are in the log, prints "appended", then serves until it is killed.
"""

from __future__ import annotations

import sys

import anyio

import meetcore_sqlite
from meetcore import Engine
from meetcore.commands import InitMeeting, Join, Leave, Webhook
from meetcore_webhooks import Webhooks


async def main(store: str, url: str, events: int) -> None:
    hooks = Webhooks(
        api_key="test-key",
        secret="test-secret-0123456789abcdef0123",
        base_delay=0.01,
        max_delay=0.05,
        timeout=0.5,
        poll_interval=0.05,
        lease_ttl=1.0,
        attempts=10_000,
        allow_networks=["127.0.0.0/8"],  # the receiver's
    )
    async with Engine.open(
        store, plugins=[meetcore_sqlite, hooks], autoload=False, sweep_leases=False
    ) as engine:
        await engine.execute(InitMeeting(meeting_id="room-1", webhook=Webhook(end_point=url)))
        made = n = 0
        while made < events:  # session-started + joined, then left + session-ended
            n += 1
            who = f"p{n}"
            await engine.execute(
                Join(
                    meeting_id="room-1",
                    participant_id=who,
                    connection_id=f"c-{who}",
                    session_id=f"s-{n}",
                    name=who,
                )
            )
            await engine.execute(
                Leave(meeting_id="room-1", participant_id=who, connection_id=f"c-{who}")
            )
            made += 4
        print("appended", flush=True)
        await anyio.sleep_forever()


if __name__ == "__main__":
    anyio.run(main, sys.argv[1], sys.argv[2], int(sys.argv[3]))
