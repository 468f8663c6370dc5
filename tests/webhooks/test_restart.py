"""Delivery across restarts, crashes and several servers on one store: resumed from the
durable cursor, nothing lost, duplicates only under the same id, order kept."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import anyio
import pytest
from webhooks_support import (
    Receiver,
    engine_with,
    join,
    leave,
    room,
    saved_state,
    wait_saved,
    wait_until,
    webhooks,
)

from meetcore import Engine
from meetcore_webhooks import Webhooks

pytestmark = pytest.mark.anyio

DELIVERER = Path(__file__).with_name("_deliverer.py")


def versions(receiver: Receiver) -> list[int]:
    return [int(b.webhook_id.split(":")[1]) for b in receiver.bodies()]


async def test_deliveries_pending_at_shutdown_go_after_a_restart(
    receiver: Receiver, db: str
) -> None:
    await receiver.stop()
    first = webhooks(attempts=10_000)
    async with engine_with(db, first) as engine:
        await room(engine, "room-1", receiver.url())
        for who in ("ada", "bob", "cy"):
            await join(engine, "room-1", who)
        await leave(engine, "room-1", "ada")
        await wait_until(lambda: first._state.cursor == 6)  # queued, in memory only
    saved = await saved_state(db)
    assert [d.id for d in saved.lanes["room-1"].deliveries] == [
        "room-1:2:session-started",
        "room-1:3:participant-joined",
        "room-1:4:participant-joined",
        "room-1:5:participant-joined",
        "room-1:6:participant-left",
    ]
    await receiver.start()
    async with engine_with(db, webhooks()) as engine:
        await leave(engine, "room-1", "bob")  # after the restart: behind the older ones
        await wait_until(lambda: len(receiver.bodies()) == 6)
    assert versions(receiver) == [2, 3, 4, 5, 6, 7]
    assert receiver.bodies()[-1].data.participant_count == 1
    assert receiver.bodies()[-1].data.participant_name == "Name of bob"


async def test_a_server_killed_mid_delivery_loses_nothing(
    receiver: Receiver, db: str, tmp_path: Path
) -> None:
    receiver.delay["/hook"] = 0.03  # slow enough to kill it halfway
    child = subprocess.Popen(
        [sys.executable, str(DELIVERER), db, receiver.url(), "40"],
        stdout=subprocess.PIPE,
        text=True,
        env=os.environ | {"MEETCORE_DISABLE_PLUGIN_AUTOLOAD": "1"},
    )
    try:
        assert child.stdout is not None
        line = await anyio.to_thread.run_sync(child.stdout.readline)
        assert line == "appended\n"
        await wait_until(lambda: len(receiver.accepted()) >= 10, timeout=10)
        child.send_signal(signal.SIGKILL)  # no shutdown, no final save, the lease held
        child.wait()
    finally:
        with contextlib.suppress(ProcessLookupError):
            child.kill()
    before = len(receiver.bodies())
    assert 10 <= before < 40
    del receiver.delay["/hook"]
    async with engine_with(db, webhooks()):  # takes over once the dead one's lease lapses
        await wait_until(lambda: len(receiver.bodies()) == 40, timeout=10)
    assert versions(receiver) == list(range(2, 42)), "every webhook, first arrivals in order"
    ids = [r.webhook.webhook_id for r in receiver.accepted()]
    assert set(ids) == {b.webhook_id for b in receiver.bodies()}, "repeats only of the same id"
    assert all(
        r.headers["meetcore-webhook-id"] == r.webhook.webhook_id for r in receiver.accepted()
    )


@contextlib.asynccontextmanager
async def server(store: str, hooks: Webhooks) -> AsyncIterator[tuple[Engine, anyio.Event]]:
    """An engine in a task of its own, so that servers stop in any order; set the event
    to stop it."""
    ready: list[Engine] = []
    stop = anyio.Event()
    stopped = anyio.Event()

    async def run() -> None:
        async with engine_with(store, hooks) as engine:
            ready.append(engine)
            await stop.wait()
        stopped.set()

    async with anyio.create_task_group() as tasks:
        tasks.start_soon(run)
        await wait_until(lambda: bool(ready))
        yield ready[0], stop
        stop.set()
        await stopped.wait()


async def test_two_servers_on_one_store_deliver_once_and_hand_over(
    receiver: Receiver, db: str
) -> None:
    a, b = webhooks(), webhooks()
    async with server(db, a) as (one, stop_one), server(db, b) as (two, _):
        await wait_until(lambda: a.delivering)
        await room(one, "room-1", receiver.url())
        await room(two, "room-2", receiver.url())
        for n in range(3):
            await join(one, "room-1", f"a{n}")
            await join(two, "room-2", f"b{n}")  # appended by the standby: delivered by `a`
        await wait_until(lambda: len(receiver.bodies()) == 8)
        await wait_until(lambda: a._state.lanes == {})  # every answer seen: none sent twice
        assert not b.delivering
        stop_one.set()  # `a` saves, frees the lease; `b` takes over
        await wait_until(lambda: b.delivering)
        await leave(two, "room-1", "a0")
        await wait_until(lambda: len(receiver.bodies()) == 9)
    ids = [r.webhook.webhook_id for r in receiver.accepted()]
    assert len(ids) == len(set(ids)) == 9, "each webhook once: one deliverer at a time"
    room_1 = [int(i.split(":")[1]) for i in ids if i.startswith("room-1:")]
    assert room_1 == sorted(room_1)


async def test_the_first_start_on_a_store_begins_at_the_end_of_the_log(
    receiver: Receiver, db: str
) -> None:
    async with engine_with(db, None) as engine:  # a server without meetcore-webhooks
        await room(engine, "room-1", receiver.url())
        await join(engine, "room-1", "ada")
    async with engine_with(db, webhooks()) as engine:
        await join(engine, "room-1", "bob")
        await wait_until(lambda: len(receiver.bodies()) == 1)
        await wait_saved(db, lambda s: s.cursor == 4)
    assert [b.webhook_id for b in receiver.bodies()] == ["room-1:4:participant-joined"]
    assert receiver.bodies()[0].data.participant_count == 2, "counts from the whole log"
