"""WebSocket signaling and the Python client, against an in-process server on a real socket."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator

import anyio
import anyio.from_thread
import anyio.to_thread
import pytest
import uvicorn
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from meetcore import Engine, ErrorCode, LeaveReason, Rejected, fold
from meetcore.commands import InitMeeting
from meetcore_jwt import JWTAuth, mint_token
from meetcore_webrtc.app import Server
from meetcore_webrtc.client import init_meeting

pytestmark = pytest.mark.anyio

KEYS = {"test-key": "test-secret-0123456789abcdef0123"}


def token(**claims: object) -> str:
    return mint_token(api_key="test-key", secret=KEYS["test-key"], **claims)  # type: ignore[arg-type]


class Running:
    def __init__(self, engine: Engine, server: Server, url: str) -> None:
        self.engine = engine
        self.server = server
        self.url = url


@pytest.fixture
async def running() -> AsyncIterator[Running]:
    async with Engine.open(store="memory://", plugins=[JWTAuth(KEYS)], autoload=False) as engine:
        server = Server(engine)
        config = uvicorn.Config(
            server.app, host="127.0.0.1", port=0, lifespan="on", log_level="warning"
        )
        uv = uvicorn.Server(config)
        async with anyio.create_task_group() as tasks:
            tasks.start_soon(uv.serve)
            while not uv.started:
                await anyio.sleep(0.01)
            port = uv.servers[0].sockets[0].getsockname()[1]
            yield Running(engine, server, f"http://127.0.0.1:{port}")
            uv.should_exit = True


async def test_two_participants_see_each_other_join_and_leave(running: Running) -> None:
    await running.engine.execute(InitMeeting(meeting_id="abc-def-ghi"))
    alice = init_meeting(
        base_url=running.url, token=token(), meeting_id="abc-def-ghi", name="Alice"
    )
    bob = init_meeting(base_url=running.url, token=token(), meeting_id="abc-def-ghi", name="Bob")
    await alice.join()
    assert alice.joined and alice.participants == {}
    joined = anyio.Event()
    seen = []
    alice.on("participant-joined", lambda p: (seen.append(p.display_name), joined.set()))
    await bob.join()
    assert [x.display_name for x in bob.participants.values()] == ["Alice"]
    with anyio.fail_after(5):
        await joined.wait()
    assert seen == ["Bob"]
    left = alice.wait_for("participant-left")
    await bob.leave()
    participant, reason = await left
    assert participant.display_name == "Bob"
    assert reason.code == LeaveReason.MANUAL_LEAVE_CALLED
    assert alice.participants == {}
    await alice.leave()
    state = await running.engine.state("abc-def-ghi")
    assert state is not None and state.session_id is None


async def meeting_with(running: Running, meeting_id: str = "abc-def-ghi", **config: object) -> str:
    await running.engine.execute(InitMeeting(meeting_id=meeting_id, **config))  # type: ignore[arg-type]
    return meeting_id


async def test_duplicate_participant_id_replaces_the_older_connection(running: Running) -> None:
    room = await meeting_with(running)
    first = init_meeting(base_url=running.url, token=token(), meeting_id=room, participant_id="p1")
    watcher = init_meeting(base_url=running.url, token=token(), meeting_id=room, name="W")
    await first.join()
    await watcher.join()
    kicked = first.wait_for("meeting-left")
    seen_left = watcher.wait_for("participant-left")
    seen_joined = watcher.wait_for("participant-joined")
    second = init_meeting(base_url=running.url, token=token(), meeting_id=room, participant_id="p1")
    await second.join()
    (reason,) = await kicked
    assert reason.code == LeaveReason.DUPLICATE_PARTICIPANT
    assert first.state == "DISCONNECTED"
    left, why = await seen_left
    assert (left.id, why.code) == ("p1", 1011)
    (again,) = await seen_joined
    assert again.id == "p1"
    assert set(watcher.participants) == {"p1"}
    assert second.joined


async def test_end_makes_everyone_leave_with_1008(running: Running) -> None:
    room = await meeting_with(running)
    host = init_meeting(base_url=running.url, token=token(), meeting_id=room, name="Host")
    guest = init_meeting(
        base_url=running.url, token=token(permissions=["allow_join"]), meeting_id=room
    )
    await host.join()
    await guest.join()
    with pytest.raises(Rejected) as refused:  # a guest without allow_mod, not alone
        await guest.end()
    assert refused.value.code == ErrorCode.UNAUTHORIZED_REQUEST
    host_left = host.wait_for("meeting-left")
    guest_left = guest.wait_for("meeting-left")
    await host.end()
    assert (await host_left)[0].code == LeaveReason.REMOVE_ALL
    assert (await guest_left)[0].code == LeaveReason.REMOVE_ALL
    state = await running.engine.state(room)
    assert state is not None and state.participants == {} and state.session_id is None


async def test_leave_and_end_before_join_raise_3035(running: Running) -> None:
    room = await meeting_with(running)
    meeting = init_meeting(base_url=running.url, token=token(), meeting_id=room)
    for action in (meeting.leave, meeting.end, meeting.enable_webcam):
        with pytest.raises(Rejected) as refused:
            await action()
        assert refused.value.code == ErrorCode.ACTION_BEFORE_JOINED


async def test_join_refusals_carry_videosdk_codes(running: Running) -> None:
    room = await meeting_with(running)
    cases = [
        ({"token": "not-a-token", "meeting_id": room}, ErrorCode.INVALID_TOKEN),
        ({"token": token(), "meeting_id": "no-such-room"}, ErrorCode.INVALID_MEETING_ID),
        ({"token": token(room_id="other-room"), "meeting_id": room}, 4022),
        ({"token": token(participant_id="p9"), "meeting_id": room, "participant_id": "p1"}, 4023),
        ({"token": token(roles=["crawler"]), "meeting_id": room}, ErrorCode.UNAUTHORIZED_ROLE),
        ({"token": token(), "meeting_id": room, "participant_id": "has space"}, 4004),
    ]
    for options, code in cases:
        meeting = init_meeting(base_url=running.url, **options)  # type: ignore[arg-type]
        errors = []
        meeting.on("error", errors.append)
        with pytest.raises(Rejected) as refused:
            await meeting.join()
        assert refused.value.code == code, options
        assert errors and errors[0]["code"] == code
    assert (await running.engine.state(room)).participants == {}  # type: ignore[union-attr]


async def test_ask_join_is_admitted_or_denied_by_a_moderator(running: Running) -> None:
    room = await meeting_with(running)
    host = init_meeting(base_url=running.url, token=token(), meeting_id=room, name="Host")
    await host.join()
    asked = host.wait_for("entry-requested")
    guest = init_meeting(
        base_url=running.url, token=token(permissions=["ask_join"]), meeting_id=room, name="G"
    )
    guest_joined = guest.wait_for("meeting-joined")
    await guest.join()
    assert guest.waiting and not guest.joined
    (request,) = await asked
    assert (request.participant_id, request.name) == (guest.participant_id, "G")
    await request.allow()
    await guest_joined
    assert guest.joined and set(guest.participants) == {host.participant_id}

    asked = host.wait_for("entry-requested")
    other = init_meeting(
        base_url=running.url, token=token(permissions=["ask_join"]), meeting_id=room, name="O"
    )
    answered = other.wait_for("entry-responded")
    await other.join()
    (request,) = await asked
    await request.deny()
    assert await answered == (other.participant_id, "denied")
    assert not other.joined
    state = await running.engine.state(room)
    assert state is not None and other.participant_id not in state.participants


async def test_a_dropped_connection_resumes_without_gap_or_duplicate(running: Running) -> None:
    room = await meeting_with(running)
    alice = init_meeting(base_url=running.url, token=token(), meeting_id=room, name="Alice")
    await alice.join()
    events: list[tuple[str, str]] = []
    alice.on("participant-joined", lambda p: events.append(("joined", p.id)))
    alice.on("participant-left", lambda p, r: events.append(("left", p.id)))
    states: list[str] = []
    alice.on("meeting-state-changed", lambda s: states.append(s["state"]))
    before = alice.seq

    assert alice._socket is not None
    alice._socket.transport.abort()  # the network drops: no close frame, no leave
    others = []
    for n in range(3):  # the meeting goes on meanwhile
        other = init_meeting(base_url=running.url, token=token(), meeting_id=room, name=f"O{n}")
        await other.join()
        others.append(other)
    await others[0].leave()
    back = alice.wait_for("meeting-state-changed", lambda s: s["state"] == "CONNECTED")
    await back
    with anyio.fail_after(5):
        while alice.seq < (await running.engine.state(room)).version:  # type: ignore[union-attr]
            await anyio.sleep(0.01)
    assert states[:2] == ["RECONNECTING", "CONNECTED"]
    ids = [o.participant_id for o in others]
    assert events == [("joined", ids[0]), ("joined", ids[1]), ("joined", ids[2]), ("left", ids[0])]
    assert set(alice.participants) == {ids[1], ids[2]}
    assert alice.seq > before and alice.joined
    state = await running.engine.state(room)
    assert state is not None and alice.participant_id in state.participants


async def test_a_client_that_vanishes_leaves_with_1001_within_the_lease(running: Running) -> None:
    room = await meeting_with(running)
    running.engine.lease_ttl_ms = 300  # the lease of connections made from now on
    ghost = init_meeting(base_url=running.url, token=token(), meeting_id=room, name="Ghost")
    ghost.reconnect_delays = ()
    watcher = init_meeting(base_url=running.url, token=token(), meeting_id=room, name="W")
    await ghost.join()
    await watcher.join()
    left = watcher.wait_for("participant-left", timeout=5)
    assert ghost._socket is not None
    ghost._phase = "out"  # the process is gone: no reconnect, no leave
    ghost._socket.transport.abort()
    participant, reason = await left
    assert (participant.id, reason.code) == (ghost.participant_id, 1001)
    assert watcher.joined


@pytest.mark.parametrize(
    "frame",
    [
        "not json",
        "[]",
        "null",
        '{"type": "join"}',
        '{"type": "no-such-type"}',
        '{"type": "set-media", "kind": "screen", "enabled": true}',
        '{"type": "set-media", "kind": "mic", "enabled": "yes"}',
        '{"type": "change-mode", "mode": "DANCE"}',
        '{"type": "remove-participant", "participantId": 7}',
        '{"type": "respond-entry", "participantId": "x", "decision": "maybe"}',
        '{"type": "leave", "requestId": {"a": 1}}',
        "{" * 10_000,
        '{"type": "ping", "pad": "' + "x" * 70_000 + '"}',
        "\u0000\u202e",
    ],
)
async def test_bad_messages_are_answered_and_change_nothing(running: Running, frame: str) -> None:
    import websockets

    room = await meeting_with(running)
    alice = init_meeting(base_url=running.url, token=token(), meeting_id=room, name="A")
    await alice.join()
    records_before = len(await running.engine.store.read(room))
    async with websockets.connect(running.url.replace("http", "ws") + "/ws") as raw:
        await raw.send(frame)  # before join: answered, connection kept
        reply = json.loads(await raw.recv())
        assert reply["type"] == "error" and reply["code"] in (3073, 3035)
        await raw.send(json.dumps({"type": "join", "token": token(), "meetingId": room}))
        welcome = json.loads(await raw.recv())
        assert welcome["type"] == "welcome"
        records_joined = len(await running.engine.store.read(room))
        await raw.send(frame)  # after join: answered, connection kept, nothing in the log
        reply = json.loads(await raw.recv())
        assert reply["type"] == "error" and reply["code"] in (3073, 3054)
        await raw.send('{"type": "ping", "requestId": 1}')
        assert json.loads(await raw.recv()) == {"type": "pong", "requestId": 1}
        assert len(await running.engine.store.read(room)) == records_joined
    assert records_joined == records_before + 1
    assert alice.joined


async def test_shutdown_lets_connected_participants_leave_first(running: Running) -> None:
    room = await meeting_with(running)
    alice = init_meeting(base_url=running.url, token=token(), meeting_id=room, name="A")
    bob = init_meeting(base_url=running.url, token=token(), meeting_id=room, name="B")
    await alice.join()
    await bob.join()
    alice_left = alice.wait_for("meeting-left")
    await running.server.close()
    assert (await alice_left)[0].code == LeaveReason.WEBSOCKET_DISCONNECTED
    state = await running.engine.state(room)
    assert state is not None and state.participants == {} and state.session_id is None


_json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner),
    max_leaves=12,
)
_types = st.sampled_from(
    [
        *("join", "resume", "leave", "end", "remove-participant", "set-media", "change-mode"),
        *("respond-entry", "ping", "welcome", "events", "", "JOIN"),
    ]
)
_messages = st.one_of(
    _json_values.map(json.dumps),
    st.builds(
        lambda kind, fields: json.dumps({"type": kind, **fields}),
        _types,
        st.dictionaries(
            st.sampled_from(["participantId", "kind", "enabled", "mode", "decision", "requestId"]),
            _json_values,
        ),
    ),
    st.text(max_size=200),
)


async def test_random_message_sequences_never_break_the_server(running: Running) -> None:
    import websockets

    room = await meeting_with(running)
    ws_url = running.url.replace("http", "ws") + "/ws"
    watcher = init_meeting(base_url=running.url, token=token(), meeting_id=room, name="W")
    await watcher.join()

    @settings(max_examples=40, deadline=None, suppress_health_check=list(HealthCheck))
    @given(st.lists(_messages, min_size=1, max_size=6), st.booleans())
    def scenario(frames: list[str], joined: bool) -> None:
        async def run() -> None:
            async with websockets.connect(ws_url) as raw:
                if joined:
                    await raw.send(
                        json.dumps({"type": "join", "token": token(), "meetingId": room})
                    )
                    assert json.loads(await raw.recv())["type"] == "welcome"
                for frame in frames:
                    await raw.send(frame)
                await raw.send('{"type": "ping", "requestId": "last"}')
                with anyio.fail_after(5):  # every frame answered; the connection still works
                    while True:
                        try:
                            reply = json.loads(await raw.recv())
                        except websockets.ConnectionClosed:
                            return  # a frame made it leave or end: that is allowed
                        assert reply["type"] in {"error", "ok", "pong", "events", "welcome"}
                        if reply == {"type": "pong", "requestId": "last"}:
                            return

        portal.call(run)

    with anyio.from_thread.start_blocking_portal() as portal:
        await anyio.to_thread.run_sync(scenario)
    # The log is still a valid history, and the watcher is still connected.
    records = await running.engine.store.read(room)
    assert fold([r.event for r in records]) == await running.engine.state(room)
    assert watcher.state == "CONNECTED" or not watcher.joined
