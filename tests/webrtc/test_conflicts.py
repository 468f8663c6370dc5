"""Two writers on one meeting: what a signaling client hears when the server's command
loses the race to another writer of the same store (issue 19).

The conflicts are real: the server's engine and a second engine share one SQLite file
(or one PostgreSQL schema), and the store itself refuses the server's append because
the other engine wrote to the meeting first. `Interloper`, a policy plugin of the
server's engine, only chooses the moment: it has the other engine write between the
server's decision and its append, every time, so the server's `Engine.execute` gives
up (`retry_conflicts_for` is 0 or short) and raises `Conflict`. The race module at the
end makes the conflicts happen by themselves: two servers on one store, many clients
joining and leaving one meeting on both at once.

Every request must be answered (a result, or error 3055 that the client may retry),
never a silent close, and the log must stay one a replay verifies. The same goes when
the store itself fails under a meeting (`FailingStore`): the server says so (5000) and
closes (1011), the clients resume, and the node keeps serving.
"""

from __future__ import annotations

import json
import logging
import os
import secrets
from collections.abc import AsyncIterator, Iterator, Sequence
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import anyio
import psycopg
import pytest
import uvicorn
import websockets
from websockets.asyncio.client import ClientConnection

import meetcore_postgres
import meetcore_sqlite
from meetcore import Engine, ErrorCode, EventStore, Record, StoreError, fold, hookimpl
from meetcore.commands import (
    AnyCommand,
    ChangeMode,
    End,
    InitMeeting,
    Join,
    Leave,
    RemoveParticipant,
    RespondEntry,
    SetMedia,
)
from meetcore.events import AnyEvent, ParticipantJoined, ParticipantLeft
from meetcore.replay import Replay
from meetcore_jwt import JWTAuth, mint_token
from meetcore_server.app import Server

pytestmark = pytest.mark.anyio

KEYS = {"test-key": "test-secret-0123456789abcdef0123"}
ROOM = "abc-def-ghi"
OPERATION_IN_PROGRESS = ErrorCode.OPERATION_IN_PROGRESS
POSTGRES = os.environ.get("MEETCORE_TEST_POSTGRES", "postgresql://postgres@127.0.0.1:5432")


def token(**claims: object) -> str:
    return mint_token(api_key="test-key", secret=KEYS["test-key"], **claims)  # type: ignore[arg-type]


class Interloper:
    """A policy plugin that makes chosen commands lose the race to another engine.

    When the server's engine is about to append one of `commands` (the policy runs after
    it read the meeting, before it appends), `other`, a second engine on the same store,
    switches bob's mic: a real append to the same meeting, so the store refuses the
    server's append with `Conflict`. It does so on every try. `only`: just for the
    commands of these participants.
    """

    def __init__(self) -> None:
        self.other: Engine | None = None
        self.commands: tuple[type[AnyCommand], ...] = ()
        self.only: set[str] | None = None
        self.writes = 0

    @hookimpl
    async def meetcore_check_command(self, command: AnyCommand) -> None:
        if self.other is None or not isinstance(command, self.commands):
            return
        if self.only is not None and getattr(command, "participant_id", None) not in self.only:
            return
        state = await self.other.state(command.meeting_id)
        assert state is not None
        bob = state.participants["bob"]
        switch = SetMedia(
            meeting_id=command.meeting_id,
            participant_id="bob",
            connection_id=bob.connection_id,
            kind="mic",
            enabled=not bob.mic_enabled,
        )
        await self.other.execute(switch)
        self.writes += 1


class Running:
    def __init__(self, engine: Engine, server: Server, url: str) -> None:
        self.engine = engine
        self.server = server
        self.url = url
        self.ws = url.replace("http", "ws") + "/ws"


@asynccontextmanager
async def serving(
    store: str | EventStore, *plugins: object, **options: Any
) -> AsyncIterator[Running]:
    """A server on a real socket of 127.0.0.1, its engine on `store` with `options`."""
    plugins = (JWTAuth(KEYS), *plugins)
    async with Engine.open(store=store, plugins=plugins, autoload=False, **options) as engine:
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


@pytest.fixture(scope="module")
def postgres_database() -> Iterator[str]:
    """A fresh PostgreSQL database for this module (skipped without a server, but in CI)."""
    name = f"meetcore_conflicts_{secrets.token_hex(4)}"
    try:
        admin = psycopg.connect(f"{POSTGRES}/postgres", autocommit=True, connect_timeout=5)
    except psycopg.OperationalError as error:
        if os.environ.get("CI"):
            pytest.fail(f"no PostgreSQL server at {POSTGRES}: {error}")
        pytest.skip(f"no PostgreSQL server at {POSTGRES}: {error}")
    with admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    try:
        yield f"{POSTGRES}/{name}"
    finally:
        with psycopg.connect(f"{POSTGRES}/postgres", autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture(params=["sqlite", "postgresql"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> tuple[str, object]:
    """One store two engines share: its URL and the plugin that opens it."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'shared.db'}", meetcore_sqlite
    database = request.getfixturevalue("postgres_database")
    return f"{database}?schema=s{secrets.token_hex(4)}", meetcore_postgres


@asynccontextmanager
async def contested(
    store: tuple[str, object], retry_conflicts_for: float = 0.0
) -> AsyncIterator[tuple[Running, Engine, Interloper]]:
    """A server whose engine gives up after `retry_conflicts_for` seconds of conflicts,
    the other engine on its store, and the interloper that sets them racing (unarmed).
    The room exists and bob is in it, joined through the other engine."""
    url, plugin = store
    interloper = Interloper()
    async with (
        serving(url, plugin, interloper, retry_conflicts_for=retry_conflicts_for) as running,
        Engine.open(store=url, plugins=[plugin], autoload=False, sweep_leases=False) as other,
    ):
        await running.engine.execute(InitMeeting(meeting_id=ROOM))
        bob = Join(
            meeting_id=ROOM,
            participant_id="bob",
            connection_id="c-bob",
            session_id="s1",
            name="Bob",
        )
        await other.execute(bob)
        yield running, other, interloper
        interloper.other = None


async def raw_join(
    running: Running, *, credential: str | None = None, **fields: object
) -> tuple[ClientConnection, dict[str, Any]]:
    """A participant speaking the protocol itself: its socket and its welcome."""
    raw = await websockets.connect(running.ws)
    hello = {"type": "join", "token": credential or token(), "meetingId": ROOM, **fields}
    await raw.send(json.dumps(hello))
    welcome = json.loads(await raw.recv())
    assert welcome["type"] == "welcome", welcome
    return raw, welcome


async def answer(raw: ClientConnection, request_id: int) -> dict[str, Any]:
    """The answer to request `request_id` (events may come before it); a close before
    it fails the test: a request must never be left unanswered."""
    with anyio.fail_after(10):
        while True:
            try:
                message = json.loads(await raw.recv())
            except websockets.ConnectionClosed as closed:
                raise AssertionError(f"closed before answering {request_id}: {closed}") from None
            if message.get("requestId") == request_id and message["type"] != "events":
                return message


async def received(raw: ClientConnection) -> list[dict[str, Any]]:
    """Every message the server sends until it closes the connection (within 10 s)."""
    messages = []
    with anyio.fail_after(10):
        try:
            while True:
                messages.append(json.loads(await raw.recv()))
        except websockets.ConnectionClosed:
            return messages


def answers_in(messages: list[dict[str, Any]]) -> list[tuple[str, Any, Any]]:
    """What the messages say besides the log's events: type, requestId, code."""
    return [
        (m["type"], m.get("requestId"), m.get("code")) for m in messages if m["type"] != "events"
    ]


async def check_log(*engines: Engine) -> list[Any]:
    """The meeting's log passes `meetcore replay --verify --recheck`, and folds to what
    every engine on the store holds. Returns the records."""
    records = await engines[0].store.read(ROOM)
    replay = Replay(verify=True, recheck=True)
    for record in records:
        replay.feed(record)
    replay.finish()
    assert (replay.records, replay.differences) == (len(records), 0)
    folded = fold([r.event for r in records])
    for engine in engines:
        assert folded == await engine.state(ROOM)
    return records


REQUESTS: list[tuple[dict[str, Any], type[AnyCommand]]] = [
    ({"type": "set-media", "kind": "mic", "enabled": True}, SetMedia),
    ({"type": "change-mode", "mode": "RECV_ONLY"}, ChangeMode),
    ({"type": "respond-entry", "participantId": "guest", "decision": "allowed"}, RespondEntry),
    ({"type": "remove-participant", "participantId": "bob"}, RemoveParticipant),
    ({"type": "end"}, End),
    ({"type": "leave"}, Leave),
]


async def test_requests_that_lose_every_race_are_answered_3055_and_the_connection_stays(
    store: tuple[str, object], caplog: pytest.LogCaptureFixture
) -> None:
    """Each request whose command keeps losing to the other writer is answered with
    error 3055 and its requestId, logged in one line; the connection stays open and the
    same requests succeed once the race is over. (It was answered 5000, logged as a
    bug, and the connection closed with 1011.)"""
    async with contested(store) as (running, other, interloper):
        alice, _ = await raw_join(running, participantId="alice")
        guest, _ = await raw_join(
            running, credential=token(permissions=["ask_join"]), participantId="guest"
        )
        interloper.other = other
        interloper.commands = tuple(command for _, command in REQUESTS)
        for n, (request, _) in enumerate(REQUESTS):
            await alice.send(json.dumps({**request, "requestId": n}))
            error = await answer(alice, n)
            assert (error["type"], error["code"]) == ("error", OPERATION_IN_PROGRESS), error
            assert "try again" in error["message"]
        await alice.send('{"type": "ping", "requestId": "p"}')
        assert await answer(alice, "p") == {"type": "pong", "requestId": "p"}  # type: ignore[arg-type]
        assert interloper.writes == len(REQUESTS)
        lines = [r for r in caplog.records if r.name == "meetcore.signaling"]
        assert len(lines) == len(REQUESTS), [r.getMessage() for r in lines]
        assert all(r.levelno == logging.WARNING and not r.exc_info for r in lines)
        assert "lost to other writers" in lines[0].getMessage()

        interloper.other = None  # the race is over: the same requests go through
        for n, (request, _) in enumerate(REQUESTS[:-2], start=100):
            await alice.send(json.dumps({**request, "requestId": n}))
            assert await answer(alice, n) == {"type": "ok", "requestId": n}
        await alice.send('{"type": "end", "requestId": 200}')
        messages = await received(alice)
        assert messages[-1] == {"type": "ok", "requestId": 200}
        assert alice.close_code == 1000
        await received(guest)
        records = await check_log(running.engine, other)
        ended = await running.engine.state(ROOM)
        assert ended is not None and ended.participants == {} and ended.session_id is None
        assert sum(isinstance(r.cause, SetMedia) for r in records) == 1 + interloper.writes


async def test_a_request_retried_until_the_deadline_is_answered_3055(
    store: tuple[str, object],
) -> None:
    """With retries on (`retry_conflicts_for` 0.3 s), the engine decides again after each
    conflict, backing off, until the deadline: then the client hears 3055."""
    async with contested(store, retry_conflicts_for=0.3) as (running, other, interloper):
        alice, _ = await raw_join(running, participantId="alice")
        interloper.other, interloper.commands = other, (SetMedia,)
        started = anyio.current_time()
        await alice.send('{"type": "set-media", "kind": "webcam", "enabled": true, "requestId": 1}')
        error = await answer(alice, 1)
        assert (error["type"], error["code"]) == ("error", OPERATION_IN_PROGRESS)
        assert anyio.current_time() - started >= 0.3
        assert interloper.writes >= 3  # it tried again, more than once
        interloper.other = None
        await alice.send('{"type": "set-media", "kind": "webcam", "enabled": true, "requestId": 2}')
        assert await answer(alice, 2) == {"type": "ok", "requestId": 2}
        await alice.send('{"type": "leave", "requestId": 3}')
        assert (await received(alice))[-1] == {"type": "ok", "requestId": 3}
        await check_log(running.engine, other)


async def test_a_join_that_loses_every_race_is_refused_3055_and_closed_with_a_reason(
    store: tuple[str, object], caplog: pytest.LogCaptureFixture
) -> None:
    """The join is answered with error 3055, and the socket closed with 3055 and a reason
    that says to try again; nothing of it is in the log, and a second join succeeds."""
    async with contested(store) as (running, other, interloper):
        interloper.other, interloper.commands = other, (Join,)
        raw = await websockets.connect(running.ws)
        hello = {"type": "join", "token": token(), "meetingId": ROOM, "participantId": "alice"}
        await raw.send(json.dumps({**hello, "requestId": 9}))
        messages = await received(raw)
        assert [(m["type"], m.get("requestId"), m.get("code")) for m in messages] == [
            ("error", 9, OPERATION_IN_PROGRESS)
        ]
        assert raw.close_code == OPERATION_IN_PROGRESS
        assert "try again" in (raw.close_reason or "")
        assert not any(r.levelno >= logging.ERROR for r in caplog.records)
        state = await running.engine.state(ROOM)
        assert state is not None and "alice" not in state.participants
        interloper.other = None
        alice, welcome = await raw_join(running, participantId="alice")
        assert welcome["participants"]
        await alice.send('{"type": "leave", "requestId": 1}')
        assert (await received(alice))[-1] == {"type": "ok", "requestId": 1}
        await check_log(running.engine, other)


async def test_a_join_whose_undo_loses_the_race_still_answers_5000(
    store: tuple[str, object], monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """A join the server fails to welcome is undone with a leave; when that leave loses
    the race, the client is still answered 5000 and closed (1011), the bug is what is
    logged as an error, and the lost leave is a warning: the lease ends the participant."""
    async with contested(store) as (running, other, interloper):

        def broken(*args: object) -> str:
            raise RuntimeError("a bug before the welcome")

        monkeypatch.setattr(running.server.signaling, "resume_token", broken)
        interloper.other, interloper.commands = other, (Leave,)
        raw = await websockets.connect(running.ws)
        hello = {"type": "join", "token": token(), "meetingId": ROOM, "participantId": "alice"}
        await raw.send(json.dumps(hello))
        messages = await received(raw)
        assert [(m["type"], m.get("code")) for m in messages] == [("error", 5000)]
        assert raw.close_code == 1011
        errors = [r for r in caplog.records if r.levelno >= logging.ERROR]
        assert len(errors) == 1 and "a bug before the welcome" in str(errors[0].exc_info[1])  # type: ignore[index]
        warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
        assert ["alice" in r.getMessage() for r in warnings] == [True]
        state = await running.engine.state(ROOM)
        assert state is not None and "alice" in state.participants  # until its lease runs out
        assert running.engine.lease(ROOM, state.participants["alice"].connection_id)
        await check_log(running.engine, other)


async def test_shutdown_goes_on_when_a_leave_loses_the_race(
    store: tuple[str, object], caplog: pytest.LogCaptureFixture
) -> None:
    """At shutdown every connection's participant leaves (1001); a leave that loses the
    race is logged and the shutdown goes on: the other connections still leave, every
    socket is closed with 1001, and the lease ends the one whose leave was lost."""
    async with contested(store) as (running, other, interloper):
        alice, _ = await raw_join(running, participantId="alice")
        carol, _ = await raw_join(running, participantId="carol")
        interloper.other, interloper.commands, interloper.only = other, (Leave,), {"alice"}
        with anyio.fail_after(10):
            await running.server.close()
        for raw in (alice, carol):
            await received(raw)
            assert raw.close_code == 1001
        state = await other.state(ROOM)
        assert state is not None and set(state.participants) == {"alice", "bob"}
        lines = [r for r in caplog.records if r.name == "meetcore.signaling"]
        assert [r.levelno for r in lines] == [logging.WARNING], lines
        assert "alice" in lines[0].getMessage()
        await check_log(running.engine, other)


# -- the race module: conflicts that happen by themselves -------------------------------------


class Decisions:
    """A policy plugin that counts the decisions an engine takes per command: a command
    decided more than once lost a race to the other server and was decided again."""

    def __init__(self) -> None:
        self.per_command: dict[tuple[str, str, str], int] = {}

    @hookimpl
    def meetcore_check_command(self, command: AnyCommand) -> None:
        who = getattr(command, "participant_id", ""), getattr(command, "connection_id", "")
        key = (type(command).__name__, str(who[0]), str(who[1]))
        self.per_command[key] = self.per_command.get(key, 0) + 1


async def test_two_servers_racing_on_one_meeting_answer_every_request(
    store: tuple[str, object],
) -> None:
    """Two servers on one store (the second's engine sweeps no leases: on SQLite one
    process holds the leases), clients joining, switching their mic and leaving one
    meeting on both at once, 20 rounds. The first server retries lost races as usual;
    the second gives up at once (`retry_conflicts_for=0`), so that its clients hear
    3055. Every join is welcomed or refused with 3055, every request answered with ok or
    3055 (a leave answered 3055 is sent again), never a silent close; the races happened
    (commands decided again, requests answered 3055); and the log is one that replays:
    unique participants, no leave without its join, the same state on both servers."""
    url, plugin = store
    first, second = Decisions(), Decisions()
    async with (
        serving(url, plugin, first) as one,
        serving(url, plugin, second, sweep_leases=False, retry_conflicts_for=0.0) as two,
    ):
        await one.engine.execute(InitMeeting(meeting_id=ROOM))
        answers: list[tuple[str, Any]] = []

        async def client(running: Running, participant_id: str) -> None:
            raw = await websockets.connect(running.ws)
            hello = {"type": "join", "token": token(), "meetingId": ROOM}
            await raw.send(json.dumps({**hello, "participantId": participant_id, "requestId": 0}))
            welcome = await answer(raw, 0)
            answers.append(("join", welcome.get("code", welcome["type"])))
            if welcome["type"] != "welcome":
                assert welcome["code"] == OPERATION_IN_PROGRESS, welcome
                await received(raw)
                return
            await raw.send('{"type": "set-media", "kind": "mic", "enabled": true, "requestId": 1}')
            reply = await answer(raw, 1)
            answers.append(("set-media", reply.get("code", reply["type"])))
            for request_id in range(2, 50):  # the client may send a leave again after 3055
                await raw.send(json.dumps({"type": "leave", "requestId": request_id}))
                reply = await answer(raw, request_id)
                answers.append(("leave", reply.get("code", reply["type"])))
                if reply["type"] == "ok":
                    break
            assert reply["type"] == "ok", reply
            await received(raw)
            assert raw.close_code == 1000

        with anyio.fail_after(60):
            for round_ in range(20):
                async with anyio.create_task_group() as clients:
                    for n in range(6):
                        running = (one, two)[n % 2]
                        clients.start_soon(client, running, f"p{round_}-{n}")
        assert len(answers) >= 20 * 6
        assert {code for _, code in answers} <= {"welcome", "ok", OPERATION_IN_PROGRESS}
        again = [k for k, n in first.per_command.items() if n > 1]
        lost = [what for what, code in answers if code == OPERATION_IN_PROGRESS]
        assert again and lost, "the two servers never raced: the test proves nothing"
        records = await check_log(one.engine, two.engine)
        joined: set[str] = set()
        for record in records:
            event = record.event
            if isinstance(event, ParticipantJoined):
                assert event.participant_id not in joined, "a participant id joined twice"
                joined.add(event.participant_id)
            elif isinstance(event, ParticipantLeft):
                assert event.participant_id in joined, "a leave without its join"
        assert len(joined) == sum(
            1 for what, code in answers if (what, code) == ("join", "welcome")
        )


# -- a store that fails under a meeting -------------------------------------------------------


class FailingStore:
    """A real SQLite store whose appends, or reads too, fail with `StoreError` while told
    to: what a server sees when its database goes away for a moment."""

    def __init__(self, path: Path) -> None:
        self.inner = meetcore_sqlite.open_url(f"sqlite:///{path}")
        self.appends_fail = self.reads_fail = False

    async def append(
        self,
        meeting_id: str,
        expected_version: int,
        events: Sequence[AnyEvent],
        cause: AnyCommand | None = None,
    ) -> list[Record]:
        if self.appends_fail:
            raise StoreError("lost the database (a test)")
        return await self.inner.append(meeting_id, expected_version, events, cause)

    async def read(self, meeting_id: str, after_version: int = 0) -> list[Record]:
        if self.reads_fail:
            raise StoreError("lost the database (a test)")
        return await self.inner.read(meeting_id, after_version)

    async def read_all(self, after_position: int = 0, limit: int = 1000) -> list[Record]:
        return await self.inner.read_all(after_position, limit)

    async def close(self) -> None:
        await self.inner.close()


class EchoingStore(FailingStore):
    """A store that reports each append to its watchers before the append returns, as a
    PostgreSQL node can: another node's notification wakes the meeting's subscribers,
    who read the record from the log while the writer still waits for its group commit."""

    def __init__(self, path: Path) -> None:
        super().__init__(path)
        self.send, self.receive = anyio.create_memory_object_stream[str](100)

    async def append(
        self,
        meeting_id: str,
        expected_version: int,
        events: Sequence[AnyEvent],
        cause: AnyCommand | None = None,
    ) -> list[Record]:
        records = await super().append(meeting_id, expected_version, events, cause)
        self.send.send_nowait(meeting_id)
        await anyio.sleep(0.2)  # a slow group commit: the subscribers run meanwhile
        return records

    async def watch(self) -> AsyncIterator[str]:
        async for meeting_id in self.receive:
            yield meeting_id


async def test_a_leave_seen_in_the_log_before_it_returns_is_still_answered(
    tmp_path: Path,
) -> None:
    """A participant's leave reaches its connection's sender through the log before
    `execute` returns: the sender used to close the connection (1000) at once, the leave
    never answered (a client waits for that answer; on two PostgreSQL nodes 1 run in 6
    of the racing test). The answer now comes before the close."""
    store = EchoingStore(tmp_path / "echoing.db")
    try:
        async with serving(store) as running:
            await running.engine.execute(InitMeeting(meeting_id=ROOM))
            alice, _ = await raw_join(running, participantId="alice")
            await alice.send('{"type": "leave", "requestId": 1}')
            messages = await received(alice)
            assert messages[-1] == {"type": "ok", "requestId": 1}, messages
            assert alice.close_code == 1000
    finally:
        await store.close()


async def test_a_meeting_whose_log_cannot_be_read_closes_its_connections_with_5000(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """The store fails under a meeting: the request that met it is answered 5000, and
    every other connection of the meeting, which this node can no longer send the log,
    gets error 5000 and close 1011, the failure logged once. The node keeps serving:
    once the store is back, they resume, and new clients join. (The failure ended the
    node's signaling, and the other connections stayed open, silent.)"""
    store = FailingStore(tmp_path / "failing.db")
    try:
        async with serving(store) as running:
            await running.engine.execute(InitMeeting(meeting_id=ROOM))
            alice, _ = await raw_join(running, participantId="alice")
            bob, bob_welcome = await raw_join(running, participantId="bob")
            store.appends_fail = store.reads_fail = True
            await alice.send(
                '{"type": "set-media", "kind": "mic", "enabled": true, "requestId": 1}'
            )
            told = answers_in(await received(alice))
            assert told == [("error", 1, 5000), ("error", None, 5000)]  # its request, its log
            assert alice.close_code == 1011
            assert answers_in(await received(bob)) == [("error", None, 5000)]
            assert bob.close_code == 1011
            followed = [r for r in caplog.records if "following meeting" in r.getMessage()]
            assert len(followed) == 1 and "lost the database" in followed[0].getMessage()
            store.appends_fail = store.reads_fail = False
            back = await websockets.connect(running.ws)
            resume = {
                "type": "resume",
                "token": token(),
                "meetingId": ROOM,
                "participantId": "bob",
                "connectionId": bob_welcome["connectionId"],
                "resumeToken": bob_welcome["resumeToken"],
                "lastSeq": bob_welcome["seq"],
            }
            await back.send(json.dumps(resume))
            assert json.loads(await back.recv())["resumed"]
            carol, _ = await raw_join(running, participantId="carol")
            await carol.send('{"type": "leave", "requestId": 2}')
            assert (await received(carol))[-1] == {"type": "ok", "requestId": 2}
            await back.send('{"type": "leave", "requestId": 3}')
            assert (await received(back))[-1] == {"type": "ok", "requestId": 3}
            await check_log(running.engine)
    finally:
        await store.close()


async def test_requests_the_store_fails_on_are_answered_5000_and_the_connection_stays(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """The store refuses appends for a moment: each request is answered 5000 with its
    requestId, logged in one line without a traceback, and the connection stays open (it
    was closed with 1011 and logged as a bug); a join is answered 5000 and closed (1011)
    with a reason. Once the store is back, the same requests and the join go through."""
    store = FailingStore(tmp_path / "failing.db")
    try:
        async with serving(store) as running:
            await running.engine.execute(InitMeeting(meeting_id=ROOM))
            alice, _ = await raw_join(running, participantId="alice")
            store.appends_fail = True
            await alice.send(
                '{"type": "set-media", "kind": "mic", "enabled": true, "requestId": 1}'
            )
            error = await answer(alice, 1)
            assert (error["type"], error["code"]) == ("error", 5000), error
            assert "try again" in error["message"]
            await alice.send('{"type": "change-mode", "mode": "RECV_ONLY", "requestId": 2}')
            assert (await answer(alice, 2))["code"] == 5000
            await alice.send('{"type": "ping", "requestId": 3}')
            assert await answer(alice, 3) == {"type": "pong", "requestId": 3}
            bob = await websockets.connect(running.ws)
            hello = {"type": "join", "token": token(), "meetingId": ROOM, "participantId": "bob"}
            await bob.send(json.dumps({**hello, "requestId": 4}))
            assert answers_in(await received(bob)) == [("error", 4, 5000)]
            assert bob.close_code == 1011 and "try again" in (bob.close_reason or "")
            lines = [r for r in caplog.records if r.name == "meetcore.signaling"]
            assert [r.levelno for r in lines] == [logging.ERROR] * 3, lines
            assert not any(r.exc_info for r in lines)
            assert all("lost the database" in r.getMessage() for r in lines)

            store.appends_fail = False
            await alice.send(
                '{"type": "set-media", "kind": "mic", "enabled": true, "requestId": 5}'
            )
            assert await answer(alice, 5) == {"type": "ok", "requestId": 5}
            bob, _ = await raw_join(running, participantId="bob")
            for raw, request_id in ((alice, 6), (bob, 7)):
                await raw.send(json.dumps({"type": "leave", "requestId": request_id}))
                assert (await received(raw))[-1] == {"type": "ok", "requestId": request_id}
                assert raw.close_code == 1000
            records = await check_log(running.engine)
            causes = [type(r.cause).__name__ for r in records]
            assert causes.count("SetMedia") == 1 and "ChangeMode" not in causes  # nothing written
    finally:
        await store.close()


async def test_shutdown_goes_on_when_the_store_refuses_the_leaves(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """At shutdown the store refuses every append: each leave is a warning, the
    shutdown goes on and every socket is closed with 1001; the participants are still
    in the log, for their leases (or a resume elsewhere) to end."""
    store = FailingStore(tmp_path / "failing.db")
    try:
        async with serving(store) as running:
            await running.engine.execute(InitMeeting(meeting_id=ROOM))
            alice, _ = await raw_join(running, participantId="alice")
            bob, _ = await raw_join(running, participantId="bob")
            store.appends_fail = True
            with anyio.fail_after(10):
                await running.server.close()
            for raw in (alice, bob):
                await received(raw)
                assert raw.close_code == 1001
            lines = [r for r in caplog.records if r.name == "meetcore.signaling"]
            assert [r.levelno for r in lines] == [logging.WARNING] * 2, lines
            assert all("could not be written" in r.getMessage() for r in lines)
            state = await running.engine.state(ROOM)
            assert state is not None and set(state.participants) == {"alice", "bob"}
    finally:
        await store.close()
