"""WebSocket signaling and the Python client, against an in-process server on a real socket."""

from __future__ import annotations

import json
import logging
import re
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import anyio
import anyio.from_thread
import anyio.to_thread
import httpx
import msgspec
import pytest
import uvicorn
import websockets
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from websockets.asyncio.client import ClientConnection

import meetcore_sqlite
from meetcore import Engine, ErrorCode, LeaveReason, Rejected, fold
from meetcore.commands import InitMeeting
from meetcore.events import ParticipantLeft
from meetcore.replay import Replay
from meetcore_client import init_meeting
from meetcore_jwt import JWTAuth, mint_token
from meetcore_media import Media, MediaConfig
from meetcore_server.app import Server
from meetcore_server.signaling import Signaling

pytestmark = pytest.mark.anyio

KEYS = {"test-key": "test-secret-0123456789abcdef0123"}


def token(**claims: object) -> str:
    return mint_token(api_key="test-key", secret=KEYS["test-key"], **claims)  # type: ignore[arg-type]


class Running:
    def __init__(self, engine: Engine, server: Server, url: str) -> None:
        self.engine = engine
        self.server = server
        self.url = url


@asynccontextmanager
async def serving(store: str, *plugins: object) -> AsyncIterator[Running]:
    """A server on a real socket of 127.0.0.1, its engine on `store`."""
    plugins = (JWTAuth(KEYS), *plugins)
    async with Engine.open(store=store, plugins=plugins, autoload=False) as engine:
        server = Server(engine, media=Media(MediaConfig(addresses=["127.0.0.1"])))
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


@pytest.fixture
async def running() -> AsyncIterator[Running]:
    async with serving("memory://") as running:
        yield running


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
        # nested 1,000 deep (2 KB): in arrays, in objects, where a field is unknown
        "[" * 1000 + "]" * 1000,
        '{"type": "ping", "pad": ' + "[" * 1000 + "]" * 1000 + "}",
        '{"type": "ping", "pad": ' + '{"a":' * 1000 + "1" + "}" * 1000 + "}",
        '{"type": "join", "token": "t", "meetingId": "m", "metaData": '
        + '{"a":' * 1000
        + "[]"
        + "}" * 1000
        + "}",
        '{"type": "join", "token": "t", "meetingId": "m", "metaData": {"a": '
        + "[" * 1000
        + "]" * 1000
        + "}}",
        # numbers too big for their field
        '{"type": "ping", "requestId": ' + "9" * 5000 + "}",
        '{"type": "ping", "requestId": 1e999}',
        '{"type": "join", "token": "t", "meetingId": "m", "metaData": {"a": 1e999}}',
        # not UTF-8 (a binary frame)
        b'{"type": "ping", "requestId": "\xff"}',
        b"\xc0\xaf",
    ],
)
async def test_bad_messages_are_answered_and_change_nothing(
    running: Running, frame: str | bytes
) -> None:
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


def ws_url(running: Running) -> str:
    return running.url.replace("http", "ws") + "/ws"


async def raw_join(
    running: Running, room: str, *, credential: str | None = None, **fields: object
) -> tuple[ClientConnection, dict[str, Any]]:
    """A participant speaking the protocol itself: its socket and its welcome."""
    raw = await websockets.connect(ws_url(running))
    hello = {"type": "join", "token": credential or token(), "meetingId": room, **fields}
    await raw.send(json.dumps(hello))
    welcome = json.loads(await raw.recv())
    assert welcome["type"] == "welcome", welcome
    return raw, welcome


async def raw_resume(
    running: Running, welcome: dict[str, Any], last_seq: int, **changes: object
) -> ClientConnection:
    """A new socket that asks to take `welcome`'s connection back after `last_seq`."""
    raw = await websockets.connect(ws_url(running))
    hello = {
        "type": "resume",
        "token": token(),
        "meetingId": welcome["meetingId"],
        "participantId": welcome["participantId"],
        "connectionId": welcome["connectionId"],
        "resumeToken": welcome["resumeToken"],
        "lastSeq": last_seq,
        **changes,
    }
    await raw.send(json.dumps(hello))
    return raw


async def received(raw: ClientConnection) -> list[dict[str, Any]]:
    """Every message the server sends until it closes the connection (within 5 s)."""
    messages = []
    with anyio.fail_after(5):
        try:
            while True:
                messages.append(json.loads(await raw.recv()))
        except websockets.ConnectionClosed:
            return messages


async def until(raw: ClientConnection, done: Any) -> list[dict[str, Any]]:
    """The messages the server sends up to the first one for which `done` is true."""
    messages = []
    with anyio.fail_after(5):
        while not messages or not done(messages[-1]):
            messages.append(json.loads(await raw.recv()))
    return messages


def deliveries(messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The `{seq, event}` the messages carry, in order."""
    return [d for m in messages if m["type"] == "events" for d in m["events"]]


async def refused(raw: ClientConnection, code: int) -> None:
    """The server's one answer is error `code`, and it closes the connection with `code`."""
    messages = await received(raw)
    assert [(m["type"], m.get("code")) for m in messages] == [("error", code)], messages
    assert raw.close_code == code


@pytest.mark.parametrize(
    "how",
    ["leave", "removed-by-api", "removed-by-moderator", "replaced", "ended", "denied"],
)
async def test_a_connection_out_of_the_meeting_cannot_be_resumed(
    running: Running, how: str
) -> None:
    """However a connection left, its resume token no longer lets it in: refused with 3035
    and closed, with not one event sent (it could follow the meeting unseen before)."""
    room = await meeting_with(running)
    host, _ = await raw_join(running, room, participantId="host")
    permissions = ["ask_join"] if how == "denied" else ["allow_join"]
    guest, welcome = await raw_join(
        running, room, credential=token(permissions=permissions), participantId="guest"
    )
    if how == "leave":
        await guest.send('{"type": "leave"}')
    elif how == "removed-by-api":
        async with httpx.AsyncClient(base_url=running.url) as api:
            response = await api.post(
                "/v2/sessions/participants/remove",
                json={"roomId": room, "participantId": "guest"},
                headers={"Authorization": token()},
            )
        assert response.status_code == 200, response.text
    elif how == "removed-by-moderator":
        await host.send('{"type": "remove-participant", "participantId": "guest"}')
    elif how == "replaced":
        await raw_join(running, room, participantId="guest")
    elif how == "ended":
        await host.send('{"type": "end"}')
    else:
        await host.send('{"type": "respond-entry", "participantId": "guest", "decision": "denied"}')
    seen = deliveries(await received(guest))
    assert seen[-1]["event"]["connectionId"] == welcome["connectionId"]  # its own way out
    for last_seq in (seen[-1]["seq"], welcome["seq"], 0):
        await refused(await raw_resume(running, welcome, last_seq), ErrorCode.ACTION_BEFORE_JOINED)
    state = await running.engine.state(room)
    assert state is not None and "guest" not in state.waiting
    joined = state.participants.get("guest")
    assert joined is None or joined.connection_id != welcome["connectionId"]


async def test_a_resume_shows_a_waiting_guest_nothing_from_before_it_was_let_in(
    running: Running,
) -> None:
    """A waiting guest resumes from its own request at the earliest (from 0 it read the
    whole history, names and all, before); let in while it was away, it gets a snapshot,
    not the events it was not allowed to see."""
    room = await meeting_with(running)
    host, _ = await raw_join(running, room, participantId="host", name="Host")
    await raw_join(running, room, participantId="early", name="Early")
    guest, welcome = await raw_join(
        running, room, credential=token(permissions=["ask_join"]), participantId="guest"
    )
    assert welcome["waiting"] and "participants" not in welcome
    for last_seq in (0, welcome["seq"] - 1):
        await refused(await raw_resume(running, welcome, last_seq), ErrorCode.INVALID_PARAMETER)
    assert guest.transport is not None
    guest.transport.abort()  # its network drops while it waits
    await raw_join(running, room, participantId="late", name="Late")
    await host.send('{"type": "respond-entry", "participantId": "guest", "decision": "allowed"}')
    with anyio.fail_after(5):
        while "guest" not in (await running.engine.state(room)).participants:  # type: ignore[union-attr]
            await anyio.sleep(0.01)
    back = await raw_resume(running, welcome, welcome["seq"])
    messages = await until(back, lambda m: m["type"] == "welcome" and not m.get("resumed"))
    assert messages[0]["type"] == "welcome" and messages[0]["resumed"]
    assert messages[0]["seq"] == welcome["seq"]
    before = deliveries(messages)  # before it is in: only what is about its own request
    assert [d["event"]["type"] for d in before] == ["entry-responded"]
    assert {d["event"]["connectionId"] for d in before} == {welcome["connectionId"]}
    names = {p["participantId"] for p in messages[-1]["participants"]}
    assert names == {"host", "early", "late", "guest"}  # the meeting as it is now
    await back.close()


async def test_a_resume_after_a_drop_gets_exactly_the_missed_events(running: Running) -> None:
    room = await meeting_with(running)
    alice, welcome = await raw_join(running, room, participantId="alice")
    bob, _ = await raw_join(running, room, participantId="bob")
    assert alice.transport is not None
    alice.transport.abort()  # the network drops: no close frame, no leave
    carol, _ = await raw_join(running, room, participantId="carol")
    await carol.send('{"type": "set-media", "kind": "mic", "enabled": true}')
    await bob.send('{"type": "leave"}')
    await received(bob)
    records = await running.engine.store.read(room)
    last = records[-1].version
    assert records[-1].event.participant_id == "bob"  # type: ignore[union-attr]
    back = await raw_resume(running, welcome, welcome["seq"])
    messages = await until(back, lambda m: m["type"] == "events" and m["events"][-1]["seq"] == last)
    assert messages[0]["type"] == "welcome" and messages[0]["resumed"]
    assert messages[0]["seq"] == welcome["seq"]
    missed = [r for r in records if r.version > welcome["seq"]]
    assert deliveries(messages) == [
        {"seq": r.version, "event": json.loads(msgspec.json.encode(r.event))} for r in missed
    ]
    state = await running.engine.state(room)
    assert (
        state is not None and state.participants["alice"].connection_id == welcome["connectionId"]
    )
    await back.close()


async def test_a_resume_with_a_forged_token_or_a_seq_outside_its_time_is_refused(
    running: Running,
) -> None:
    room = await meeting_with(running)
    _alice, welcome = await raw_join(running, room, participantId="alice")
    seq = welcome["seq"]
    forged = {"resumeToken": "0" * 64}
    await refused(await raw_resume(running, welcome, seq, **forged), ErrorCode.INVALID_TOKEN)
    elsewhere = {"connectionId": "0" * 16}  # the token is for its own connection only
    await refused(await raw_resume(running, welcome, seq, **elsewhere), ErrorCode.INVALID_TOKEN)
    someone_else = {"participantId": "mallory"}
    await refused(await raw_resume(running, welcome, seq, **someone_else), 3035)
    for last_seq in (seq + 1, 10**30, -1, seq - 1, 0):  # past the end; before its join
        await refused(await raw_resume(running, welcome, last_seq), ErrorCode.INVALID_PARAMETER)
    back = await raw_resume(running, welcome, seq)  # its own, from its welcome: fine
    assert json.loads(await back.recv())["resumed"]
    await back.close()


async def test_of_two_joins_with_one_participant_id_at_once_one_stays_and_one_is_told(
    tmp_path: Path,
) -> None:
    """The duplicate-join race, 30 times: the connection whose join was replaced always
    gets its welcome, then its own participant-left (1011), then is closed (1000); it
    used to stay open, replaced but never told, receiving the meeting's events.

    On SQLite: a store that really waits, so that the other join can come in between."""
    async with serving(f"sqlite:///{tmp_path / 'race.db'}", meetcore_sqlite) as running:
        await race_duplicate_joins(running)


async def race_duplicate_joins(running: Running) -> None:
    room = await meeting_with(running)
    with anyio.fail_after(60):
        for n in range(30):
            pid = f"racer{n}"
            sockets = [await websockets.connect(ws_url(running)) for _ in range(2)]
            hello = json.dumps(
                {"type": "join", "token": token(), "meetingId": room, "participantId": pid}
            )
            async with anyio.create_task_group() as tasks:
                for raw in sockets:
                    tasks.start_soon(raw.send, hello)
            welcomes = [json.loads(await raw.recv()) for raw in sockets]
            assert [w["type"] for w in welcomes] == ["welcome", "welcome"]
            state = await running.engine.state(room)
            assert state is not None
            live = state.participants[pid].connection_id
            (winner,) = [
                s for s, w in zip(sockets, welcomes, strict=True) if w["connectionId"] == live
            ]
            ((loser, lost),) = [
                (s, w) for s, w in zip(sockets, welcomes, strict=True) if w["connectionId"] != live
            ]
            told = deliveries(await received(loser))
            assert told[-1]["event"]["type"] == "participant-left", (n, told)
            assert told[-1]["event"]["connectionId"] == lost["connectionId"]
            assert told[-1]["event"]["reason"] == LeaveReason.DUPLICATE_PARTICIPANT
            assert loser.close_code == 1000
            await winner.send(json.dumps({"type": "ping", "requestId": n}))
            answered = await until(winner, lambda m: m["type"] == "pong")
            assert all(
                d["event"].get("connectionId") != live or d["event"]["type"] != "participant-left"
                for d in deliveries(answered)
            )
            await winner.send('{"type": "leave"}')
            await received(winner)
    records = await running.engine.store.read(room)
    replay = Replay(verify=True, recheck=True)  # what `meetcore replay --verify --recheck` does
    for record in records:
        replay.feed(record)
    replay.finish()
    assert (replay.records, replay.differences) == (len(records), 0)
    assert fold([r.event for r in records]) == await running.engine.state(room)


async def test_a_join_whose_replacement_closes_the_room_is_refused(running: Running) -> None:
    """Asking to join (ask_join) with the id of the room's only participant replaces it;
    its leave ends the session, which closes the room (auto_close): the join lets nobody
    in, and is refused (4052) rather than welcomed into a room it is not in."""
    room = await meeting_with(running, auto_close="session-end-and-deactivate")
    first, welcome = await raw_join(running, room, participantId="p1")
    raw = await websockets.connect(ws_url(running))
    hello = {"type": "join", "token": token(permissions=["ask_join"]), "meetingId": room}
    await raw.send(json.dumps({**hello, "participantId": "p1"}))
    await refused(raw, ErrorCode.MEETING_ID_DISABLED)
    told = deliveries(await received(first))
    assert told[-1]["event"]["connectionId"] == welcome["connectionId"]
    assert told[-1]["event"]["reason"] == LeaveReason.DUPLICATE_PARTICIPANT
    state = await running.engine.state(room)
    assert state is not None and not state.active and not state.participants


async def test_a_request_the_server_fails_on_is_answered_5000_logged_once_and_closed(
    running: Running, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """A bug while handling a request: logged once with its traceback, the request answered
    with 5000, the connection closed with 1011; the participant stays as after a drop, so
    the client resumes."""
    room = await meeting_with(running)
    alice, welcome = await raw_join(running, room, participantId="alice")

    def broken(self: Signaling, *args: object) -> None:
        raise RuntimeError("a bug in a handler")

    monkeypatch.setattr(Signaling, "_command", broken)
    await alice.send('{"type": "change-mode", "mode": "RECV_ONLY", "requestId": 7}')
    messages = await received(alice)
    assert [(m["type"], m.get("requestId"), m.get("code")) for m in messages] == [
        ("error", 7, ErrorCode.SOMETHING_WENT_WRONG)
    ]
    assert alice.close_code == 1011
    errors = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert len(errors) == 1 and errors[0].exc_info is not None
    assert "a bug in a handler" in str(errors[0].exc_info[1])
    state = await running.engine.state(room)
    assert (
        state is not None and state.participants["alice"].connection_id == welcome["connectionId"]
    )
    monkeypatch.undo()
    back = await raw_resume(running, welcome, welcome["seq"])
    assert json.loads(await back.recv())["resumed"]
    await back.send('{"type": "change-mode", "mode": "RECV_ONLY", "requestId": 8}')
    assert (await until(back, lambda m: m["type"] == "ok"))[-1] == {"type": "ok", "requestId": 8}
    await back.close()


async def test_a_join_the_server_fails_to_welcome_is_undone(
    running: Running, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """The join is in the log but its welcome cannot be made: the client, which never got
    a connection to resume, is answered 5000 and closed (1011), and the participant leaves
    (1001) rather than stay as a ghost until its lease runs out."""
    room = await meeting_with(running)

    def broken(self: Signaling, *args: object) -> str:
        raise RuntimeError("a bug before the welcome")

    monkeypatch.setattr(Signaling, "resume_token", broken)
    raw = await websockets.connect(ws_url(running))
    await raw.send(
        json.dumps({"type": "join", "token": token(), "meetingId": room, "participantId": "p1"})
    )
    messages = await received(raw)
    assert [(m["type"], m.get("code")) for m in messages] == [("error", 5000)]
    assert raw.close_code == 1011
    errors = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert len(errors) == 1 and "a bug before the welcome" in str(errors[0].exc_info[1])  # type: ignore[index]
    records = await running.engine.store.read(room)
    left = [r.event for r in records if isinstance(r.event, ParticipantLeft)]
    assert [(e.participant_id, e.reason) for e in left] == [("p1", 1001)]
    state = await running.engine.state(room)
    assert state is not None and state.participants == {}


async def test_an_offer_that_is_not_sdp_is_refused_with_3073(running: Running) -> None:
    room = await meeting_with(running)
    alice, _ = await raw_join(running, room, participantId="alice")
    for n, sdp in enumerate(["garbage", "", "v=0\r\n", "m=audio\r\n"]):
        await alice.send(json.dumps({"type": "offer", "sdp": sdp, "requestId": n}))
        reply = (await until(alice, lambda m: "requestId" in m))[-1]
        assert (reply["type"], reply["requestId"]) == ("error", n), reply
        assert reply["code"] == ErrorCode.INVALID_PARAMETER, reply
    await alice.send('{"type": "ping", "requestId": "after"}')
    assert (await until(alice, lambda m: m["type"] == "pong"))[-1]["requestId"] == "after"
    await alice.close()


async def test_a_participant_id_is_generated_when_absent_and_an_empty_one_is_4004(
    running: Running,
) -> None:
    room = await meeting_with(running)
    for fields in ({}, {"participantId": None}):
        raw, welcome = await raw_join(running, room, **fields)
        assert re.fullmatch("[a-z0-9]{8}", welcome["participantId"]), welcome
        await raw.close()
    raw = await websockets.connect(ws_url(running))
    await raw.send(
        json.dumps({"type": "join", "token": token(), "meetingId": room, "participantId": ""})
    )
    await refused(raw, ErrorCode.INVALID_PARTICIPANT_ID)
    # the Python client says the same
    empty = init_meeting(base_url=running.url, token=token(), meeting_id=room, participant_id="")
    with pytest.raises(Rejected) as error:
        await empty.join()
    assert error.value.code == ErrorCode.INVALID_PARTICIPANT_ID
    generated = init_meeting(base_url=running.url, token=token(), meeting_id=room)
    await generated.join()
    assert re.fullmatch("[a-z0-9]{8}", generated.participant_id)
    await generated.leave()


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


async def test_a_client_that_never_reads_its_replies_is_not_read_from(
    running: Running, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Requests whose answers are not read wait in the client's socket, not in the
    server's memory: at most `MAX_UNSENT_REPLIES` replies wait per connection."""
    import websockets
    from starlette.websockets import WebSocket

    from meetcore_server.signaling import MAX_UNSENT_REPLIES

    room = await meeting_with(running)
    send_text = WebSocket.send_text
    stuck = anyio.Event()  # set at the end: until then the peer reads nothing after its welcome

    async def send_nothing_after_welcome(self: WebSocket, data: str) -> None:
        if '"welcome"' in data or '"events"' in data:
            await send_text(self, data)
        else:
            await stuck.wait()

    monkeypatch.setattr(WebSocket, "send_text", send_nothing_after_welcome)
    async with websockets.connect(running.url.replace("http", "ws") + "/ws") as raw:
        await raw.send(json.dumps({"type": "join", "token": token(), "meetingId": room}))
        assert json.loads(await raw.recv())["type"] == "welcome"
        for n in range(5 * MAX_UNSENT_REPLIES):
            await raw.send(json.dumps({"type": "ping", "requestId": n}))
        (connection,) = running.server.signaling._connections.values()
        with anyio.fail_after(10):
            while len(connection.replies) < MAX_UNSENT_REPLIES - 1:
                await anyio.sleep(0.01)
        await anyio.sleep(0.5)  # time to read far more than the bound, were it not there
        assert len(connection.replies) <= MAX_UNSENT_REPLIES
        stuck.set()  # the peer reads again (replies are dropped): the server gets on
