"""End to end: a real `meetcore serve` process, driven the way a user drives it.

REST through httpx with the token raw in `Authorization`, tokens from the dev
server's `/get-token` and from `meetcore token` run in the server's directory,
participants through the Python client (in this process, or in their own process
from `_client.py` when they must die), the server stopped with SIGTERM or SIGKILL
and started again on the same SQLite file. The in-process behaviour (refusals,
fuzzing, shutdown...) is tested in test_signaling.py; this file tests what only a
real process shows. Everything listens on 127.0.0.1.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
import signal
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import anyio
import httpx
import pytest
import websockets
from anyio.abc import Process
from anyio.streams.buffered import BufferedByteReceiveStream
from support import eventually

from meetcore import Rejected
from meetcore_client import Meeting, init_meeting
from meetcore_server.testing import ServeProcess, clean_env, free_port

pytestmark = [
    pytest.mark.anyio,
    pytest.mark.skipif(sys.platform == "win32", reason="needs POSIX signals"),
]

MEETCORE = [sys.executable, "-m", "meetcore.cli"]
CLIENT = Path(__file__).with_name("_client.py")
LEASE_TTL = 1.5
ROOM_ID = re.compile(r"[a-z]{3}-[a-z]{3}-[a-z]{3}")


@pytest.fixture(scope="module")
def anyio_backend() -> str:
    return "asyncio"  # the client runs on asyncio


# ---------------------------------------------------------------------------
# The server process


@pytest.fixture(scope="module")
def shared_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServeProcess]:
    """One server for the tests that do not stop it; each test uses its own rooms."""
    server = ServeProcess(tmp_path_factory.mktemp("serve"), lease_ttl=LEASE_TTL).wait_ready()
    try:
        yield server
    finally:
        died = server.process.poll()
        if died is None:  # Ctrl-C: the same graceful stop as SIGTERM
            code = anyio.run(server.stop, signal.SIGINT)
            assert code == 0, server.output
        assert "Traceback" not in server.output, server.output
        assert died is None, f"meetcore serve died (exit {died}):\n{server.output}"


@pytest.fixture
def server(shared_server: ServeProcess) -> Iterator[ServeProcess]:
    shared_server.check_alive()
    yield shared_server
    shared_server.check_alive()


# ---------------------------------------------------------------------------
# What a user does: tokens, rooms, participants


async def dev_token(server: ServeProcess) -> str:
    """The seeds' `fetch("http://localhost:3000/get-token")`."""
    async with httpx.AsyncClient(base_url=server.url, timeout=10) as http:
        response = await http.get("/get-token", headers={"Accept": "application/json"})
    assert response.status_code == 200, response.text
    token = response.json()["token"]
    assert isinstance(token, str) and token.count(".") == 2
    return token


async def cli_token(server: ServeProcess, *options: str) -> str:
    """`meetcore token ...` in the server's directory, where it finds the keys file."""
    done = await anyio.run_process(
        [*MEETCORE, "token", *options], cwd=server.cwd, env=server.env, check=False
    )
    assert done.returncode == 0, done.stderr.decode()
    lines = done.stdout.decode().splitlines()
    assert len(lines) == 1, lines  # the token and only it
    return lines[0]


async def rest(server: ServeProcess, method: str, path: str, token: str, body: Any = None) -> Any:
    """A REST call with the token raw in Authorization; the JSON answer of a 200."""
    async with httpx.AsyncClient(base_url=server.url, timeout=10) as http:
        response = await http.request(method, path, json=body, headers={"Authorization": token})
    assert response.status_code == 200, (method, path, response.status_code, response.text)
    return response.json()


async def create_room(server: ServeProcess, token: str, **body: Any) -> str:
    """The seeds' `fetch(".../v2/rooms", {method: "POST", headers: {Authorization: token}})`."""
    room = await rest(server, "POST", "/v2/rooms", token, body or None)
    assert ROOM_ID.fullmatch(room["roomId"]) or room["roomId"] == body.get("customRoomId")
    return str(room["roomId"])


class Recorder:
    """Every event a meeting emits, as comparable tuples, in order."""

    def __init__(self, meeting: Meeting) -> None:
        self.events: list[tuple[Any, ...]] = []
        add = self.events.append
        meeting.on("meeting-joined", lambda: add(("meeting-joined",)))
        meeting.on("meeting-left", lambda reason: add(("meeting-left", reason.code)))
        meeting.on("participant-joined", lambda p: add(("participant-joined", p.id)))
        meeting.on("participant-left", lambda p, r: add(("participant-left", p.id, r.code)))
        meeting.on("meeting-state-changed", lambda s: add(("state", s["state"])))
        meeting.on("error", lambda e: add(("error", e["code"])))
        meeting.on("entry-requested", lambda r: add(("entry-requested", r.participant_id)))
        meeting.on("entry-responded", lambda pid, d: add(("entry-responded", pid, d)))

    def of(self, *names: str) -> list[tuple[Any, ...]]:
        return [e for e in self.events if e[0] in names]

    @property
    def states(self) -> list[str]:
        return [e[1] for e in self.events if e[0] == "state"]


class Clients:
    """Makes participants; whoever is still in a meeting at the end leaves it."""

    def __init__(self) -> None:
        self.meetings: list[Meeting] = []

    def new(
        self, server: ServeProcess | str, token: str, meeting_id: str, **options: Any
    ) -> Meeting:
        url = server if isinstance(server, str) else server.url
        meeting = init_meeting(base_url=url, token=token, meeting_id=meeting_id, **options)
        self.meetings.append(meeting)
        return meeting

    async def close(self) -> None:
        for meeting in self.meetings:
            with contextlib.suppress(Exception):
                with anyio.move_on_after(3):
                    if meeting.joined and meeting.state == "CONNECTED":
                        await meeting.leave()
                await meeting.close()


@pytest.fixture
async def clients() -> AsyncIterator[Clients]:
    made = Clients()
    try:
        yield made
    finally:
        await made.close()


class ClientProcess:
    """`_client.py` in its own process: a participant that can be killed."""

    def __init__(self, process: Process, log: Path) -> None:
        self.process = process
        self.log = log
        assert process.stdout is not None
        self._stdout = BufferedByteReceiveStream(process.stdout)

    @classmethod
    async def start(
        cls, server: ServeProcess, token: str, room: str, name: str, pid: str | None = None
    ) -> ClientProcess:
        log = server.cwd / f"client-{name}-{time.monotonic_ns()}.log"
        args = [sys.executable, str(CLIENT), server.url, token, room, name]
        with log.open("wb") as stderr:  # the child keeps its own copy
            process = await anyio.open_process(
                [*args, *([pid] if pid else [])],
                stdin=subprocess.DEVNULL,
                stderr=stderr,
                env=clean_env(),
            )
        return cls(process, log)

    async def line(self, timeout: float = 15.0) -> dict[str, Any]:
        try:
            with anyio.fail_after(timeout):
                data = await self._stdout.receive_until(b"\n", 65536)
        except (TimeoutError, anyio.EndOfStream, anyio.IncompleteRead):
            pytest.fail(f"no line from the client process; its stderr:\n{self.log.read_text()}")
        return dict(json.loads(data))

    async def wait(self, timeout: float = 10.0) -> int:
        with anyio.fail_after(timeout):
            return await self.process.wait()

    async def aclose(self) -> None:
        if self.process.returncode is None:
            self.process.kill()
        await self.process.aclose()


# ---------------------------------------------------------------------------
# The seeds' flow


async def test_the_seeds_flow_token_room_join_events_leave_end(
    server: ServeProcess, clients: Clients
) -> None:
    token = await dev_token(server)
    room = await create_room(server, token)
    assert (await rest(server, "GET", f"/v2/rooms/validate/{room}", token))["roomId"] == room

    kafka = clients.new(
        server,
        token,
        room,
        name="Franz Kafka",
        participant_id="49151",
        mic_enabled=True,
        webcam_enabled=False,
        meta_data={"avatar": "https://example.com/kafka.png"},
    )
    brod = clients.new(
        server, token, room, name="Max Brod", mic_enabled=False, meta_data={"role": "editor"}
    )
    k, b = Recorder(kafka), Recorder(brod)

    await kafka.join()
    assert k.events == [("state", "CONNECTING"), ("state", "CONNECTED"), ("meeting-joined",)]
    me = kafka.local_participant
    assert me is not None and me.local
    assert (me.id, me.display_name) == ("49151", "Franz Kafka")
    assert me.mic_on and not me.webcam_on
    assert me.meta_data == {"avatar": "https://example.com/kafka.png"}
    assert kafka.participants == {}

    seen = kafka.wait_for("participant-joined")
    await brod.join()
    (newcomer,) = await seen
    assert (newcomer.id, newcomer.display_name) == (brod.participant_id, "Max Brod")
    assert newcomer.meta_data == {"role": "editor"} and not newcomer.mic_on
    assert not newcomer.local
    assert list(brod.participants) == ["49151"]  # the ones already there, from the welcome
    there = brod.participants["49151"]
    assert (there.display_name, there.mic_on) == ("Franz Kafka", True)
    assert there.meta_data == {"avatar": "https://example.com/kafka.png"}
    assert kafka.session_id is not None and brod.session_id == kafka.session_id

    # leave(): the leaver gets meeting-left, the others participant-left, both 1101
    others_see = kafka.wait_for("participant-left")
    await brod.leave()
    gone, reason = await others_see
    assert (gone.id, reason.code) == (brod.participant_id, 1101)
    assert kafka.participants == {}
    assert b.events == [
        ("state", "CONNECTING"),
        ("state", "CONNECTED"),
        ("meeting-joined",),
        ("meeting-left", 1101),
        ("state", "DISCONNECTED"),
    ]
    assert not brod.joined
    with pytest.raises(Rejected) as again:  # VideoSDK: 3054 when already left
        await brod.leave()
    assert again.value.code == 3054

    # Brod comes back with a new Meeting object; then Kafka ends the meeting for everyone
    brod2 = clients.new(server, token, room, name="Max Brod", participant_id=brod.participant_id)
    b2 = Recorder(brod2)
    back = kafka.wait_for("participant-joined")
    await brod2.join()
    assert (await back)[0].id == brod.participant_id
    await kafka.end()
    await eventually(lambda: brod2.state == "DISCONNECTED", 5)
    assert k.of("meeting-left") == [("meeting-left", 1008)]
    assert b2.of("meeting-left") == [("meeting-left", 1008)]
    assert k.states == ["CONNECTING", "CONNECTED", "DISCONNECTED"]
    assert b2.states == ["CONNECTING", "CONNECTED", "DISCONNECTED"]
    assert k.of("error") == [] and b.of("error") == [] and b2.of("error") == []

    # the REST API shows the session as the log has it
    sessions = await rest(server, "GET", f"/v2/sessions?roomId={room}", token)
    assert sessions["pageInfo"]["total"] == 1
    (session,) = sessions["data"]
    assert session["id"] == kafka.session_id and session["status"] == "ended"
    stays = {p["participantId"]: p["timelog"] for p in session["participants"]}
    assert set(stays) == {"49151", brod.participant_id}
    assert len(stays["49151"]) == 1 and len(stays[brod.participant_id]) == 2
    assert all(stay["end"] is not None for timelog in stays.values() for stay in timelog)


async def test_rest_end_session_1009_and_remove_participant_1010(
    server: ServeProcess, clients: Clients
) -> None:
    token = await cli_token(server)  # `meetcore token`: allow_join + allow_mod by default
    room = await create_room(server, token)
    a, b, c = (clients.new(server, token, room, name=n) for n in "ABC")
    for meeting in (a, b, c):
        await meeting.join()
    await eventually(lambda: len(a.participants) == 2)

    c_left = c.wait_for("meeting-left")
    a_sees = a.wait_for("participant-left")
    body = {"participantId": c.participant_id, "roomId": room}
    session = await rest(server, "POST", "/v2/sessions/participants/remove", token, body)
    assert session["id"] == a.session_id and session["status"] == "ongoing"
    assert (await c_left)[0].code == 1010
    gone, reason = await a_sees
    assert (gone.id, reason.code) == (c.participant_id, 1010)
    active = await rest(server, "GET", f"/v2/sessions/{a.session_id}/participants/active", token)
    assert {p["participantId"] for p in active["data"]} == {a.participant_id, b.participant_id}

    a_left, b_left = a.wait_for("meeting-left"), b.wait_for("meeting-left")
    ended = await rest(server, "POST", "/v2/sessions/end", token, {"roomId": room})
    assert ended["id"] == a.session_id and ended["status"] == "ended" and ended["end"]
    assert (await a_left)[0].code == 1009
    assert (await b_left)[0].code == 1009
    assert a.state == b.state == "DISCONNECTED"
    active = await rest(server, "GET", f"/v2/sessions/{ended['id']}/participants/active", token)
    assert active["data"] == [] and active["pageInfo"]["total"] == 0


async def test_leave_and_end_before_join_raise_3035_and_an_id_is_generated(
    server: ServeProcess, clients: Clients
) -> None:
    token = await dev_token(server)
    room = await create_room(server, token)
    meeting = clients.new(server, token, room, name="Early")
    for action in (meeting.leave, meeting.end):
        with pytest.raises(Rejected) as refused:
            await action()
        assert refused.value.code == 3035
    generated = meeting.participant_id
    assert re.fullmatch(r"[a-z0-9]{8}", generated)
    another = init_meeting(base_url=server.url, token=token, meeting_id=room)
    assert another.participant_id != generated

    watcher = clients.new(server, token, room, name="W")
    await watcher.join()
    seen = watcher.wait_for("participant-joined")
    await meeting.join()  # nothing was sent before join: it still works
    assert meeting.local_participant is not None and meeting.local_participant.id == generated
    assert (await seen)[0].id == generated
    with pytest.raises(Rejected) as twice:
        await meeting.join()
    assert twice.value.code == 3054


# ---------------------------------------------------------------------------
# Participants in other processes


async def test_the_same_participant_id_from_another_process_replaces_the_older_1011(
    server: ServeProcess, clients: Clients
) -> None:
    token = await dev_token(server)
    room = await create_room(server, token)
    watcher = clients.new(server, token, room, name="Max Brod")
    w = Recorder(watcher)
    await watcher.join()
    laptop = await ClientProcess.start(server, token, room, "laptop", "49151")
    try:
        assert await laptop.line() == {"event": "meeting-joined", "participantId": "49151"}
        await eventually(lambda: "49151" in watcher.participants, 5)

        phone = clients.new(server, token, room, name="phone", participant_id="49151")
        await phone.join()
        assert await laptop.line() == {"event": "meeting-left", "code": 1011}
        assert await laptop.wait() == 0  # the older one is out of the meeting and says so
        await eventually(lambda: watcher.participants["49151"].display_name == "phone", 5)
        assert w.of("participant-joined", "participant-left") == [
            ("participant-joined", "49151"),
            ("participant-left", "49151", 1011),
            ("participant-joined", "49151"),
        ]
        assert phone.joined and set(phone.participants) == {watcher.participant_id}
    finally:
        await laptop.aclose()


async def test_a_killed_client_process_leaves_with_1001_once_its_lease_runs_out(
    server: ServeProcess, clients: Clients
) -> None:
    token = await dev_token(server)
    room = await create_room(server, token)
    watcher = clients.new(server, token, room, name="W")
    await watcher.join()
    ghost = await ClientProcess.start(server, token, room, "ghost")
    try:
        joined = await ghost.line()
        assert joined["event"] == "meeting-joined"
        pid = joined["participantId"]
        await eventually(lambda: pid in watcher.participants, 5)

        left = watcher.wait_for("participant-left", timeout=10)
        killed = time.monotonic()
        ghost.process.send_signal(signal.SIGKILL)
        assert await ghost.wait() == -signal.SIGKILL
        who, reason = await left
        waited = time.monotonic() - killed
    finally:
        await ghost.aclose()
    assert (who.id, reason.code) == (pid, 1001)
    # kept for a possible resume for (about) the lease, then out: not at once, not never
    assert 0.8 <= waited <= LEASE_TTL + 3, waited
    assert watcher.participants == {} and watcher.joined


# ---------------------------------------------------------------------------
# Waiting rooms


async def test_ask_join_a_moderator_admits_one_and_denies_another(
    server: ServeProcess, clients: Clients
) -> None:
    host_token = await dev_token(server)
    ask = await cli_token(server, "--permissions", "ask_join")
    room = await create_room(server, host_token)
    host = clients.new(server, host_token, room, name="Max Brod")
    await host.join()

    asked = host.wait_for("entry-requested")
    felice = clients.new(server, ask, room, name="Felice Bauer")
    f = Recorder(felice)
    in_ = felice.wait_for("meeting-joined")
    await felice.join()
    assert felice.waiting and not felice.joined and felice.state == "CONNECTED"
    (request,) = await asked
    assert (request.participant_id, request.name) == (felice.participant_id, "Felice Bauer")
    host_sees = host.wait_for("participant-joined")
    await request.allow()
    await in_
    assert (await host_sees)[0].id == felice.participant_id
    assert felice.joined and set(felice.participants) == {host.participant_id}
    assert ("entry-responded", felice.participant_id, "allowed") in f.events

    asked = host.wait_for("entry-requested")
    grete = clients.new(server, ask, room, name="Grete")
    g = Recorder(grete)
    await grete.join()
    (request,) = await asked
    assert request.participant_id == grete.participant_id
    await request.deny()
    await eventually(lambda: grete.state == "DISCONNECTED", 5)
    assert ("entry-responded", grete.participant_id, "denied") in g.events
    assert ("meeting-joined",) not in g.events and not grete.joined
    assert grete.participant_id not in host.participants

    # someone waiting when a moderator arrives: the welcome brings the request
    ottla = clients.new(server, ask, room, name="Ottla")
    asked_felice = felice.wait_for("entry-requested", timeout=1)
    asked_host = host.wait_for("entry-requested")
    await ottla.join()
    await asked_host
    late = clients.new(server, host_token, room, name="Late moderator")
    late_asked = late.wait_for("entry-requested")
    await late.join()
    (request,) = await late_asked
    assert request.participant_id == ottla.participant_id
    await request.allow()
    await eventually(lambda: ottla.joined, 5)
    with pytest.raises(TimeoutError):  # ask_join may not admit anyone: it is not asked
        await asked_felice
    assert f.of("entry-requested") == []
    admitted = {felice.participant_id, ottla.participant_id, late.participant_id}
    assert set(host.participants) == admitted


async def test_a_waiting_participant_sees_nobody_until_admitted(
    server: ServeProcess, clients: Clients
) -> None:
    token = await dev_token(server)
    ask = await cli_token(server, "--permissions", "ask_join")
    room = await create_room(server, token)
    host = clients.new(server, token, room, name="Max Brod", meta_data={"phone": "+43 1 234"})
    await host.join()
    asked = host.wait_for("entry-requested")
    stranger = clients.new(server, ask, room, name="Stranger")
    s = Recorder(stranger)
    await stranger.join()
    (request,) = await asked
    late = clients.new(server, token, room, name="Late")
    await late.join()  # the meeting goes on while the stranger waits
    await request.deny()
    await eventually(lambda: stranger.state == "DISCONNECTED", 5)
    # denied: it never was in the meeting, so it learnt nothing of who was
    assert stranger.participants == {}, stranger.participants
    assert s.of("participant-joined", "participant-left") == []


async def test_the_server_tells_a_waiting_connection_nothing_of_the_meeting(
    server: ServeProcess, clients: Clients
) -> None:
    """The waiting room is access control: until admitted, a connection is told of itself
    only, whatever client it runs (here raw JSON, not the Python client, which hides it)."""
    token = await dev_token(server)
    ask = await cli_token(server, "--permissions", "ask_join")
    room = await create_room(server, token)
    host = clients.new(server, token, room, name="Max Brod", meta_data={"phone": "+43 1 234"})
    await host.join()
    asked = host.wait_for("entry-requested")
    async with websockets.connect(server.url.replace("http://", "ws://") + "/ws") as raw:
        await raw.send(json.dumps({"type": "join", "token": ask, "meetingId": room}))
        welcome = json.loads(await raw.recv())
        assert welcome["type"] == "welcome" and welcome["waiting"] is True
        me = welcome["participantId"]
        (request,) = await asked
        late = clients.new(server, token, room, name="Late")
        await late.join()  # the meeting goes on while the stranger waits
        await request.deny()
        frames = await until_closed(raw)
    others = {p["participantId"] for p in welcome.get("participants", [])} - {me}
    assert others == set(), f"a waiting connection was shown {others}"
    events = [d["event"] for f in frames if f["type"] == "events" for d in f["events"]]
    about_others = [e for e in events if e.get("participantId", me) != me]
    assert about_others == [], about_others
    assert events[-1]["type"] == "entry-responded" and events[-1]["allowed"] is False


# ---------------------------------------------------------------------------
# Network drops, through a TCP proxy that can be cut


class Proxy:
    """A TCP proxy on 127.0.0.1 in front of the server; `cut()` drops every connection
    through it without a close frame and refuses new ones until `restore()`."""

    def __init__(self, target: str) -> None:
        self.target_port = int(target.rsplit(":", 1)[1])
        self.up = True
        self.accepted = 0
        self.refused = 0  # connections reset while the network was down
        self.links: set[tuple[asyncio.StreamWriter, asyncio.StreamWriter]] = set()
        self._server: asyncio.Server | None = None

    @property
    def url(self) -> str:
        assert self._server is not None
        return f"http://127.0.0.1:{self._server.sockets[0].getsockname()[1]}"

    async def __aenter__(self) -> Proxy:
        self._server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._server is not None
        self._server.close()
        self.cut()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if not self.up:
            self.refused += 1
            writer.transport.abort()  # the network is down: the connection resets
            return
        try:
            upstream_reader, upstream = await asyncio.open_connection("127.0.0.1", self.target_port)
        except OSError:
            writer.transport.abort()
            return
        self.accepted += 1
        link = (writer, upstream)
        self.links.add(link)
        try:
            await asyncio.gather(self._pipe(reader, upstream), self._pipe(upstream_reader, writer))
        finally:
            self.links.discard(link)

    @staticmethod
    async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while data := await reader.read(65536):
                writer.write(data)
                await writer.drain()
            if writer.can_write_eof():
                writer.write_eof()
        except (OSError, RuntimeError):
            writer.transport.abort()

    def cut(self) -> None:
        self.up = False
        for client, upstream in list(self.links):
            client.transport.abort()
            upstream.transport.abort()

    def restore(self) -> None:
        self.up = True


async def test_a_network_drop_resumes_through_the_proxy_without_gap_or_duplicate(
    server: ServeProcess, clients: Clients
) -> None:
    token = await dev_token(server)
    room = await create_room(server, token)
    async with Proxy(server.url) as proxy:
        alice = clients.new(proxy.url, token, room, name="Alice")
        rec = Recorder(alice)
        await alice.join()
        assert proxy.accepted == 1
        witness = clients.new(server, token, room, name="Witness")
        await witness.join()
        await eventually(lambda: len(alice.participants) == 1, 5)
        seq_before = alice.seq
        w = Recorder(witness)

        reconnecting = alice.wait_for("meeting-state-changed", lambda s: s["state"] != "CONNECTED")
        cut = time.monotonic()
        proxy.cut()
        assert (await reconnecting)[0]["state"] == "RECONNECTING"
        others = [clients.new(server, token, room, name=f"O{n}") for n in range(3)]
        for other in others:  # the meeting goes on while Alice is away
            await other.join()
        await others[0].leave()

        # stay down, well within the lease (1.5 s) so that Alice is kept, until she has
        # tried to come back and been refused, and the witness has seen what she missed
        def away() -> list[tuple[Any, ...]]:
            return [e for e in w.events if e[0].startswith("participant")]

        await eventually(lambda: proxy.refused >= 1 and len(away()) == 4, 5)
        missed = away()
        proxy.restore()
        await eventually(lambda: alice.state == "CONNECTED", 5)
        assert time.monotonic() - cut < LEASE_TTL, "the test was too slow to prove a resume"

        ids = [o.participant_id for o in others]
        await eventually(lambda: alice.seq == others[2].seq and alice.seq > seq_before, 5)
        assert rec.of("participant-joined", "participant-left") == [
            ("participant-joined", witness.participant_id),
            ("participant-joined", ids[0]),
            ("participant-joined", ids[1]),
            ("participant-joined", ids[2]),
            ("participant-left", ids[0], 1101),
        ]
        assert missed, "nothing happened while Alice was away"
        assert rec.states == ["CONNECTING", "CONNECTED", "RECONNECTING", "CONNECTED"]
        assert set(alice.participants) == {witness.participant_id, ids[1], ids[2]}
        assert proxy.accepted >= 2  # the resume went through the proxy
        assert alice.joined and rec.of("error", "meeting-left") == []
        # the server never let Alice go: one stay, still open, and nobody saw her leave
        session = await rest(server, "GET", f"/v2/sessions/{alice.session_id}", token)
        timelogs = {p["participantId"]: p["timelog"] for p in session["participants"]}
        (stay,) = timelogs[alice.participant_id]
        assert stay["end"] is None
        assert alice.participant_id not in {e[1] for e in w.of("participant-left")}

        # and she is fully back: her requests work through the new connection
        seen = witness.wait_for("participant-left")
        await alice.leave()
        gone, reason = await seen
        assert (gone.id, reason.code) == (alice.participant_id, 1101)


async def test_a_drop_longer_than_the_lease_ends_in_a_refused_resume(
    server: ServeProcess, clients: Clients
) -> None:
    token = await dev_token(server)
    room = await create_room(server, token)
    async with Proxy(server.url) as proxy:
        alice = clients.new(proxy.url, token, room, name="Alice")
        rec = Recorder(alice)
        await alice.join()
        witness = clients.new(server, token, room, name="Witness")
        await witness.join()
        await eventually(lambda: len(alice.participants) == 1, 5)
        seen = witness.wait_for("participant-left")
        proxy.cut()
        gone, reason = await seen  # the lease ran out while she was away
        assert (gone.id, reason.code) == (alice.participant_id, 1001)
        assert rec.states[-1] == "RECONNECTING"
        proxy.restore()
        await eventually(lambda: alice.state == "DISCONNECTED", 10)
        # her connection is out of the log: the resume is refused (3035), nothing is sent
        assert proxy.accepted >= 2
        assert rec.of("error", "meeting-left") == [("error", 3035), ("meeting-left", 1102)]
        assert rec.states[-2:] == ["RECONNECTING", "DISCONNECTED"]
        assert not alice.joined


async def test_leave_while_reconnecting_takes_the_participant_out(
    server: ServeProcess, clients: Clients
) -> None:
    token = await dev_token(server)
    room = await create_room(server, token)
    async with Proxy(server.url) as proxy:
        alice = clients.new(proxy.url, token, room, name="Alice")
        rec = Recorder(alice)
        await alice.join()
        witness = clients.new(server, token, room, name="Witness")
        await witness.join()
        await eventually(lambda: len(alice.participants) == 1, 5)
        proxy.cut()
        await eventually(lambda: alice.state == "RECONNECTING", 5)
        seen = witness.wait_for("participant-left")
        # VideoSDK: leave() may be called at any time (3035 before join, 3054 after leaving
        # are its only errors): the leave waits for the connection to come back
        async with anyio.create_task_group() as tasks:
            refused = proxy.refused
            tasks.start_soon(alice.leave)
            await eventually(lambda: proxy.refused > refused, 5)  # she tried again meanwhile
            assert alice.state == "RECONNECTING" and alice.joined
            proxy.restore()
        gone, reason = await seen
        assert (gone.id, reason.code) == (alice.participant_id, 1101)
        assert rec.of("meeting-left") == [("meeting-left", 1101)]
        assert rec.states[-3:] == ["RECONNECTING", "CONNECTED", "DISCONNECTED"]
        await anyio.sleep(0.3)  # real time: she must not reconnect within it
        assert alice.state == "DISCONNECTED", "alice reconnected after leaving"
        assert alice.participant_id not in witness.participants


# ---------------------------------------------------------------------------
# The raw protocol (docs/protocol.md)


async def until_closed(raw: websockets.ClientConnection) -> list[dict[str, Any]]:
    """The messages the server sends until it closes the connection."""
    messages = []
    with anyio.fail_after(10), contextlib.suppress(websockets.ConnectionClosed):
        while True:
            messages.append(json.loads(await raw.recv()))
    return messages


async def test_the_raw_protocol_close_codes_and_message_limits(
    server: ServeProcess, clients: Clients
) -> None:
    """What docs/protocol.md promises a client in another language, on the real server."""
    token = await dev_token(server)
    room = await create_room(server, token)
    ws = server.url.replace("http://", "ws://") + "/ws"
    watcher = clients.new(server, token, room, name="W")
    await watcher.join()

    async with websockets.connect(ws) as raw:  # a refused join: the error, then its code
        await raw.send(json.dumps({"type": "join", "token": "nope", "meetingId": room}))
        (error,) = await until_closed(raw)
        assert (error["type"], error["code"]) == ("error", 4002)
        assert raw.close_code == 4002

    async with websockets.connect(ws, max_size=None) as raw:
        join = {"type": "join", "token": token, "meetingId": room, "name": "Raw", "requestId": 1}
        await raw.send(json.dumps(join))
        welcome = json.loads(await raw.recv())
        assert welcome["type"] == "welcome" and welcome["requestId"] == 1
        assert welcome["leaseTtl"] == int(LEASE_TTL * 1000)
        me = welcome["participantId"]
        await raw.send(json.dumps({"type": "ping", "requestId": "p", "pad": "x" * 70_000}))
        assert json.loads(await raw.recv()) == {
            "type": "error",
            "code": 3073,
            "message": "message larger than 65536 bytes (only an answer may have up to 524288)",
        }  # too large for the signaling: answered, the connection stays
        await raw.send(json.dumps({"type": "ping", "requestId": "p"}))
        assert json.loads(await raw.recv()) == {"type": "pong", "requestId": "p"}
        await eventually(lambda: me in watcher.participants, 5)

        left = watcher.wait_for("participant-left", timeout=10)
        # over 1 MiB: the server closes the connection, possibly before the frame is all
        # sent (the send then fails, after the close frame came: 1 run in 2 here)
        with contextlib.suppress(websockets.ConnectionClosed):
            await raw.send("x" * ((1 << 20) + 1))
        assert await until_closed(raw) == []
        assert raw.close_code == 1009
    gone, reason = await left  # a dropped connection: out when its lease runs out
    assert (gone.id, reason.code) == (me, 1001)

    async with websockets.connect(ws) as raw:  # its own leave: events, the ok, close 1000
        await raw.send(json.dumps({"type": "join", "token": token, "meetingId": room}))
        welcome = json.loads(await raw.recv())
        await raw.send(json.dumps({"type": "leave", "requestId": 9}))
        frames = await until_closed(raw)
        assert raw.close_code == 1000
    assert frames[-1] == {"type": "ok", "requestId": 9}
    events = [d for f in frames if f["type"] == "events" for d in f["events"]]
    assert events[-1]["event"]["type"] == "participant-left"
    assert events[-1]["event"]["participantId"] == welcome["participantId"]
    assert events[-1]["event"]["reason"] == 1101
    assert [d["seq"] for d in events] == list(range(welcome["seq"] + 1, events[-1]["seq"] + 1))


# ---------------------------------------------------------------------------
# Stopping and restarting the server


async def test_a_restarted_server_has_the_same_rooms_and_sessions(
    tmp_path: Path, clients: Clients
) -> None:
    port = free_port()  # the same port after the restart, so the links are the same too
    first = ServeProcess(tmp_path, port=port, lease_ttl=LEASE_TTL).wait_ready()
    try:
        assert "created a development API key" in first.output
        assert (tmp_path / "meetcore-keys.json").exists()
        token = await dev_token(first)
        weekly = await create_room(first, token, customRoomId="weekly-sync")
        other = await create_room(first, token)

        a, b, c = (clients.new(first, token, weekly, name=n) for n in ("A", "B", "C"))
        await a.join()
        await b.join()
        await b.leave()
        await c.join()
        d = clients.new(first, token, other, name="D")
        await d.join()
        await d.leave()

        rooms_before = await rest(first, "GET", "/v2/rooms", token)
        sessions_before = {
            room: await rest(first, "GET", f"/v2/sessions?roomId={room}", token)
            for room in (weekly, other)
        }
        a_left, c_left = a.wait_for("meeting-left"), c.wait_for("meeting-left")
        code = await first.stop(signal.SIGTERM)
        assert (await a_left)[0].code == 1001  # told before the socket closed
        assert (await c_left)[0].code == 1001
        assert code == 0, first.output
        assert "Traceback" not in first.output, first.output
    finally:
        first.kill()

    second = ServeProcess(tmp_path, port=port, lease_ttl=LEASE_TTL).wait_ready()
    try:
        assert "created a development API key" not in second.output  # the same keys file
        assert await rest(second, "GET", "/v2/rooms", token) == rooms_before  # the old token works
        assert rooms_before["pageInfo"]["total"] == 2
        assert (
            await rest(second, "GET", f"/v2/sessions?roomId={other}", token)
            == (sessions_before[other])
        )
        (before,) = sessions_before[weekly]["data"]
        (after,) = (await rest(second, "GET", f"/v2/sessions?roomId={weekly}", token))["data"]
        assert before["status"] == "ongoing" and after["status"] == "ended"
        assert after["id"] == before["id"] == a.session_id and after["end"] is not None
        timelogs = {p["participantId"]: p["timelog"] for p in after["participants"]}
        assert list(timelogs) == [p["participantId"] for p in before["participants"]]
        assert [len(t) for t in timelogs.values()] == [1, 1, 1]
        for participant in before["participants"]:
            (was,) = participant["timelog"]
            (now,) = timelogs[participant["participantId"]]
            assert now["start"] == was["start"]
            if was["end"] is not None:
                assert now["end"] == was["end"]
            else:  # the shutdown closed it: each leaves in turn, the last one ends the session
                assert now["start"] < now["end"] <= after["end"]

        # the room is still usable: a new session
        e = clients.new(second, token, weekly, name="E")
        await e.join()
        assert e.session_id not in (None, before["id"])
        await e.leave()
        sessions = await rest(second, "GET", f"/v2/sessions?roomId={weekly}", token)
        assert [s["id"] for s in sessions["data"]] == [e.session_id, before["id"]]

        verify = await anyio.run_process(
            [*MEETCORE, "replay", second.store, "--verify"],
            cwd=tmp_path,
            env=second.env,
            check=False,
        )
        out = verify.stdout.decode() + verify.stderr.decode()
        assert verify.returncode == 0, out
        assert re.search(r"verified \d+ records of 2 meetings: OK", out), out
        assert await second.stop() == 0
        assert "Traceback" not in second.output, second.output
    finally:
        second.kill()


async def test_after_a_server_crash_clients_resume_and_ghosts_leave(
    tmp_path: Path, clients: Clients
) -> None:
    port = free_port()
    first = ServeProcess(tmp_path, port=port, lease_ttl=LEASE_TTL).wait_ready()
    try:
        token = await dev_token(first)
        room = await create_room(first, token)
        a = clients.new(first, token, room, name="A", participant_id="alpha")
        b = clients.new(first, token, room, name="B", participant_id="beta")
        rec = Recorder(a)
        await a.join()
        await b.join()
        b.reconnect_delays = ()  # B's device is gone with the server: it never comes back
        assert await first.stop(signal.SIGKILL) == -signal.SIGKILL
    finally:
        first.kill()
    second = ServeProcess(tmp_path, port=port, lease_ttl=LEASE_TTL).wait_ready()
    try:
        # The new server shares the API keys, so it honours A's resume token: A comes
        # back into the meeting it never left; B, gone for good, leaves with 1001 once
        # its lease (given afresh when the log was reopened) runs out.
        await eventually(lambda: ("participant-left", "beta", 1001) in rec.events, 15)
        assert a.state == "CONNECTED" and a.joined
        assert rec.of("meeting-left", "error") == []
        assert rec.states[-2:] == ["RECONNECTING", "CONNECTED"]

        async def only_alpha_is_active() -> bool:
            session = await rest(second, "GET", f"/v2/sessions?roomId={room}", token)
            latest = session["data"][0]
            active = [p for p in latest["participants"] if p["timelog"][-1]["end"] is None]
            return [p["participantId"] for p in active] == ["alpha"]

        await eventually(only_alpha_is_active, 10)
        assert a.participants == {}
        await a.leave()
        assert await second.stop() == 0
    finally:
        second.kill()


# ---------------------------------------------------------------------------
# Usage errors


def _serve(tmp_path: Path, *options: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*MEETCORE, "serve", *options],
        cwd=tmp_path,
        env=clean_env(),
        capture_output=True,
        text=True,
        timeout=30,
    )


def test_serve_with_a_bad_store_url_says_so_in_one_line(tmp_path: Path) -> None:
    done = _serve(tmp_path, "--port", "0", "--store", "nope://x")
    assert done.returncode == 2  # the command line is wrong (meetcore.cli's convention)
    assert "Traceback" not in done.stderr
    errors = [line for line in done.stderr.splitlines() if "error" in line.lower()]
    assert len(errors) == 1 and errors[0].startswith("meetcore: error: "), done.stderr
    assert "nope://" in errors[0]


def test_serve_on_a_port_in_use_says_so_in_one_line(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        done = _serve(tmp_path, "--port", str(port), "--store", "memory://")
    assert done.returncode == 2
    assert "Traceback" not in done.stderr
    errors = [line for line in done.stderr.splitlines() if "error" in line.lower()]
    assert len(errors) == 1 and errors[0].startswith("meetcore: error: "), done.stderr
    assert str(port) in errors[0] and "in use" in errors[0]
