"""Endpoints that are down, slow or failing: nothing is lost, order is kept, other rooms
are not delayed, and what fails for good is parked and visible, then sent again."""

from __future__ import annotations

import json

import pytest
from webhooks_support import (
    Receiver,
    engine_with,
    join,
    leave,
    room,
    run_cli,
    saved_state,
    wait_saved,
    wait_until,
    webhooks,
)

from meetcore_webhooks import Webhooks
from meetcore_webhooks._state import Lane

pytestmark = pytest.mark.anyio


def versions(receiver: Receiver, path: str | None = None) -> list[int]:
    """The meeting versions of the webhooks accepted, first arrivals, in arrival order."""
    return [int(b.webhook_id.split(":")[1]) for b in receiver.bodies(path)]


def lane(hooks: Webhooks, meeting_id: str) -> Lane:
    """The meeting's lane in the deliverer's memory (an empty one when it has none)."""
    return hooks._state.lanes.get(meeting_id) or Lane(deliveries=[])


def attempts(hooks: Webhooks, meeting_id: str) -> int:
    return lane(hooks, meeting_id).attempts


async def test_an_endpoint_down_for_a_while_loses_nothing_and_keeps_the_order(
    receiver: Receiver, db: str
) -> None:
    await receiver.stop()  # down; it comes back on the same port
    hooks = webhooks(attempts=10_000)
    async with engine_with(db, hooks) as engine:
        await room(engine, "room-1", receiver.url())
        for n in range(5):
            await join(engine, "room-1", f"p{n}")
        for n in range(5):
            await leave(engine, "room-1", f"p{n}")
        await wait_until(lambda: attempts(hooks, "room-1") >= 5)
        assert receiver.received == []
        state = await wait_saved(
            db, lambda s: len(s.lanes.get("room-1", Lane(deliveries=[])).deliveries) == 12
        )
        assert state.lanes["room-1"].last_error is not None, "queued, durably, while down"
        await receiver.start()
        await wait_until(lambda: len(receiver.bodies()) == 12)
        # the receiver has the last body before its answer reaches the deliverer
        await wait_until(lambda: "room-1" not in hooks._state.lanes)
    assert versions(receiver) == list(range(2, 14))
    assert (await saved_state(db)).lanes == {}


async def test_a_slow_and_a_failing_endpoint_never_delay_another_room(
    receiver: Receiver, db: str
) -> None:
    receiver.delay["/slow"] = 3.0
    receiver.status["/fail"] = 500
    hooks = webhooks(timeout=0.2, attempts=10_000)
    async with engine_with(db, hooks) as engine:
        for name in ("slow", "fail", "ok"):
            await room(engine, name, receiver.url(f"/{name}"))
        for n in range(5):
            for name in ("slow", "fail", "ok"):
                await join(engine, name, f"p{n}")
        await wait_until(lambda: len(receiver.bodies("/ok")) == 6, timeout=1.0)
        assert versions(receiver, "/ok") == list(range(2, 8))
        assert receiver.bodies("/slow") == [], "all of them while the slow one still hangs"
        await wait_until(lambda: attempts(hooks, "slow") >= 2 and attempts(hooks, "fail") >= 3)
        assert receiver.bodies("/fail") == []
        fails = [r.webhook.webhook_id for r in receiver.received if r.path == "/fail"]
        assert set(fails) == {"fail:2:session-started"}, "the head is retried, nothing after it"
        assert hooks._state.lanes["slow"].last_error == "no answer within 0.2 s"
        assert hooks._state.lanes["fail"].last_error == "HTTP 500"
        del receiver.delay["/slow"], receiver.status["/fail"]  # both recover
        await wait_until(lambda: len(receiver.bodies()) == 18)
    assert versions(receiver, "/slow") == list(range(2, 8))
    assert versions(receiver, "/fail") == list(range(2, 8))


async def test_parked_after_the_last_attempt_visible_then_sent_again_in_order(
    receiver: Receiver, db: str
) -> None:
    receiver.status["/hook"] = 503
    hooks = webhooks(attempts=3)
    async with engine_with(db, hooks) as engine:
        await room(engine, "room-1", receiver.url())
        await room(engine, "room-2", receiver.url("/other"))
        await join(engine, "room-1", "ada")
        await wait_until(lambda: lane(hooks, "room-1").parked_at is not None)
        await join(engine, "room-1", "bob")  # held behind the parked head, in order
        await join(engine, "room-2", "cy")  # another room flows meanwhile
        await wait_until(lambda: len(receiver.bodies("/other")) == 2)
        await wait_until(lambda: len(lane(hooks, "room-1").deliveries) == 3)
        tried = [r.webhook.webhook_id for r in receiver.received if r.path == "/hook"]
        assert tried == ["room-1:2:session-started"] * 3, "three attempts, then parked"
        await wait_saved(
            db, lambda s: len(s.lanes.get("room-1", Lane(deliveries=[])).deliveries) == 3
        )
        status = await run_cli("webhooks", "status", "--store", db)
        assert status.exit_code == 0, status.output
        assert "parked     3 deliveries of 1 meeting" in status.output
        assert "room-1:2:session-started" in status.output
        assert "HTTP 503" in status.output
        report = json.loads((await run_cli("webhooks", "status", "--store", db, "--json")).output)
        (parked,) = report["lanes"]
        assert parked["meetingId"] == "room-1"
        assert parked["status"] == "parked"
        assert parked["attempts"] == 3
        assert [d["webhookType"] for d in parked["deliveries"]] == [
            "session-started",
            "participant-joined",
            "participant-joined",
        ]
        assert report["deliverer"]["owner"] == hooks.owner

        missing = await run_cli("webhooks", "retry", "--store", db, "room-9")
        assert missing.exit_code == 1
        assert missing.output.strip().count("\n") == 0
        assert "nothing parked matches 'room-9'" in missing.output
        usage = await run_cli("webhooks", "retry", "--store", db)
        assert usage.exit_code == 2
        assert "--all" in usage.output

        assert receiver.bodies("/hook") == []
        del receiver.status["/hook"]  # the endpoint is fixed
        retried = await run_cli("webhooks", "retry", "--store", db, "room-1:2:session-started")
        assert retried.exit_code == 0, retried.output
        assert "asked to send 3 deliveries of 1 meeting again" in retried.output
        await wait_until(lambda: len(receiver.bodies("/hook")) == 3)
        assert versions(receiver, "/hook") == [2, 3, 4]
        await join(engine, "room-1", "dee")  # the lane flows again
        await wait_until(lambda: len(receiver.bodies("/hook")) == 4)
        await wait_until(lambda: hooks._state.lanes == {})
    status = await run_cli("webhooks", "status", "--store", db)
    assert "pending    0 deliveries" in status.output
    assert "parked     0 deliveries" in status.output
    assert "deliverer  none" in status.output
    nothing = await run_cli("webhooks", "retry", "--store", db, "--all")
    assert nothing.exit_code == 0
    assert nothing.output == "nothing is parked\n"


async def test_a_retry_asked_while_no_server_runs_is_applied_at_the_next_start(
    receiver: Receiver, db: str
) -> None:
    receiver.status["/hook"] = 500
    hooks = webhooks(attempts=2)
    async with engine_with(db, hooks) as engine:
        await room(engine, "room-1", receiver.url())
        await join(engine, "room-1", "ada")
        await wait_until(lambda: len(receiver.received) == 2)
        # the receiver has the last attempt before its 500 reaches the deliverer
        await wait_until(lambda: lane(hooks, "room-1").parked_at is not None)
    parked = (await saved_state(db)).lanes["room-1"]
    assert parked.parked_at is not None
    assert len(parked.deliveries) == 2, "parked deliveries survive the restart"
    retried = await run_cli("webhooks", "retry", "--store", db, "--all")
    assert "no server is delivering now: they go when one starts" in retried.output
    status = await run_cli("webhooks", "status", "--store", db)
    assert "retry      asked for, not picked up yet: all" in status.output
    del receiver.status["/hook"]
    async with engine_with(db, webhooks()):
        await wait_until(lambda: len(receiver.bodies()) == 2)
    assert versions(receiver) == [2, 3]
    assert (
        "retry"
        not in (await run_cli("webhooks", "status", "--store", db)).output.split("deliverer")[1]
    )
