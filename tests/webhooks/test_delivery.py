"""Delivery to a real HTTP receiver on loopback: bodies, order, counts, signatures, routes."""

from __future__ import annotations

import pytest
from webhooks_support import (
    API_KEY,
    SECRET,
    Receiver,
    engine_with,
    join,
    leave,
    room,
    wait_until,
    webhooks,
)

from meetcore.commands import End
from meetcore_webhooks import InvalidSignature, verify

pytestmark = pytest.mark.anyio


async def test_a_meeting_s_webhooks_arrive_in_log_order_with_exact_counts(
    receiver: Receiver, db: str
) -> None:
    async with engine_with(db, webhooks()) as engine:
        await room(engine, "room-1", receiver.url("/a"))
        expected: list[tuple[str, str | None, int]] = []  # type, participant, count
        present: set[str] = set()

        async def enter(who: str, session: str = "s-1") -> None:
            if not present:
                expected.append(("session-started", None, 0))
            await join(engine, "room-1", who, session)
            present.add(who)
            expected.append(("participant-joined", who, len(present)))

        async def exit_(who: str) -> None:
            await leave(engine, "room-1", who)
            present.discard(who)
            expected.append(("participant-left", who, len(present)))
            if not present:
                expected.append(("session-ended", None, 0))

        for n in range(8):
            await enter(f"p{n}")
        for n in range(0, 8, 2):
            await exit_(f"p{n}")
        for n in range(8, 12):
            await enter(f"p{n}")
        for who in sorted(present):
            await exit_(who)
        await enter("late", "s-2")  # a second session
        await engine.execute(End(meeting_id="room-1"))
        expected.append(("participant-left", "late", 0))
        expected.append(("session-ended", None, 0))
        await wait_until(lambda: len(receiver.bodies()) == len(expected))
        bodies = receiver.bodies("/a")
    got = [(b.webhook_type, b.data.participant_id, b.data.participant_count) for b in bodies]
    assert got == expected
    assert [b.data.session_id for b in bodies] == ["s-1"] * (len(bodies) - 4) + ["s-2"] * 4
    for body in bodies:
        assert body.data.meeting_id == "room-1"
        if body.webhook_type.startswith("participant-"):
            assert body.data.participant_name == f"Name of {body.data.participant_id}"
            assert body.data.start is None
        else:
            assert body.data.participant_name is None
            assert body.data.start is not None
        if body.webhook_type == "session-ended":
            assert body.data.end is not None
            assert body.data.start is not None
            assert body.data.start <= body.data.end
    assert len({b.webhook_id for b in bodies}) == len(bodies)


async def test_every_delivery_is_signed_and_names_its_id_and_key(
    receiver: Receiver, db: str
) -> None:
    async with engine_with(db, webhooks()) as engine:
        await room(engine, "room-1", receiver.url())
        await join(engine, "room-1", "ada")
        await wait_until(lambda: len(receiver.bodies()) == 2)
    for request in receiver.accepted():
        headers = request.headers
        assert headers["content-type"] == "application/json"
        assert headers["meetcore-api-key"] == API_KEY
        assert headers["meetcore-webhook-id"] == request.webhook.webhook_id
        verify(request.body, headers["meetcore-signature"], secret=SECRET)
        with pytest.raises(InvalidSignature, match="does not match"):
            verify(request.body + b" ", headers["meetcore-signature"], secret=SECRET)
        with pytest.raises(InvalidSignature, match="does not match"):
            verify(request.body, headers["meetcore-signature"], secret="another secret")
    first = receiver.accepted()[0]
    assert first.body.startswith(b'{"webhookType":"session-started","webhookId":"room-1:2:')


async def test_routes_the_room_s_endpoint_wins_and_events_filter(
    receiver: Receiver, db: str
) -> None:
    hooks = webhooks(url=receiver.url("/default"), events=("participant-joined",))
    async with engine_with(db, hooks) as engine:
        await room(engine, "own", receiver.url("/own"), ("participant-left", "no-such-event"))
        await room(engine, "all", receiver.url("/all"))  # no events named: all four
        await room(engine, "plain", None)  # the server's default
        for room_id in ("own", "all", "plain"):
            await join(engine, room_id, "ada")
            await leave(engine, room_id, "ada")
        await wait_until(lambda: len(receiver.bodies()) == 1 + 4 + 1)
        await engine.flush()
    assert [b.webhook_type for b in receiver.bodies("/own")] == ["participant-left"]
    assert [b.webhook_type for b in receiver.bodies("/all")] == [
        "session-started",
        "participant-joined",
        "participant-left",
        "session-ended",
    ]
    assert [(b.webhook_type, b.data.meeting_id) for b in receiver.bodies("/default")] == [
        ("participant-joined", "plain")
    ]


async def test_without_a_default_rooms_without_a_webhook_send_nothing(
    receiver: Receiver, db: str
) -> None:
    async with engine_with(db, webhooks()) as engine:
        await room(engine, "quiet", None)
        await room(engine, "loud", receiver.url())
        await join(engine, "quiet", "ada")
        await join(engine, "loud", "bob")
        await wait_until(lambda: len(receiver.bodies()) == 2)
    assert {b.data.meeting_id for b in receiver.bodies()} == {"loud"}
