"""Several `meetcore serve` processes on one PostgreSQL database work as one service.

Two real server processes (nodes A and B) on free ports, in one directory so that they
share the API keys (meetcore-keys.json), on one fresh PostgreSQL schema. Participants
are the Python client, connected to either node; REST goes to either node with a token
from `/get-token` (--dev). A third node is started to be killed with SIGKILL.

The participants join SIGNALLING_ONLY, so that each stays on the node it connects to:
a participant with media is sent on to its meeting's media node (`redirect`), which
`test_cluster_media.py` tests.
"""

from __future__ import annotations

import asyncio
import functools
import secrets
import signal
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anyio
import httpx
import pytest
from support import eventually

from meetcore_client import Meeting, init_meeting
from meetcore_server.testing import ServeProcess

pytestmark = [
    pytest.mark.anyio,
    pytest.mark.skipif(sys.platform == "win32", reason="needs POSIX signals"),
]

LEASE_TTL = 1.5


@pytest.fixture(scope="module")
def anyio_backend() -> str:
    return "asyncio"  # the client runs on asyncio


def start_node(home: Path, store: str) -> ServeProcess:
    """`meetcore serve --dev --store postgresql://...` in `home`, where the keys are."""
    return ServeProcess(home, store=store, lease_ttl=LEASE_TTL).wait_ready()


@pytest.fixture(scope="module")
def home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("cluster")


@pytest.fixture(scope="module")
def store_url(database: str) -> str:
    return f"{database}?schema=cluster_{secrets.token_hex(3)}"


@pytest.fixture(scope="module")
def cluster(home: Path, store_url: str) -> Iterator[tuple[ServeProcess, ServeProcess]]:
    """Nodes A and B. A starts first: it creates the keys file that B then reads."""
    a = start_node(home, store_url)
    b = start_node(home, store_url)
    try:
        yield a, b
    finally:
        for node in (a, b):
            alive = node.process.poll() is None
            code = node.terminate()
            assert alive, f"a node died:\n{node.output}"
            assert code == 0, node.output
            assert "Traceback" not in node.output, node.output


async def dev_token(node: ServeProcess) -> str:
    async with httpx.AsyncClient(base_url=node.url, timeout=10) as http:
        response = await http.get("/get-token", headers={"Accept": "application/json"})
    assert response.status_code == 200, response.text
    return str(response.json()["token"])


async def rest(node: ServeProcess, method: str, path: str, token: str, body: Any = None) -> Any:
    async with httpx.AsyncClient(base_url=node.url, timeout=10) as http:
        response = await http.request(method, path, json=body, headers={"Authorization": token})
    assert response.status_code == 200, (method, path, response.status_code, response.text)
    return response.json()


async def create_room(node: ServeProcess, token: str) -> str:
    return str((await rest(node, "POST", "/v2/rooms", token))["roomId"])


def comparable(value: Any, node: ServeProcess) -> Any:
    """A REST answer without what differs by node or by moment: the node's own address in
    links, and `activeDuration`, which counts up to the moment asked."""
    if isinstance(value, dict):
        return {k: comparable(v, node) for k, v in value.items() if k != "activeDuration"}
    if isinstance(value, list):
        return [comparable(v, node) for v in value]
    if isinstance(value, str):
        return value.replace(node.url, "NODE")
    return value


def participant(
    clients: list[Meeting], node: ServeProcess, token: str, room: str, name: str, **options: Any
) -> Meeting:
    options.setdefault("mode", "SIGNALLING_ONLY")  # stays where it connects
    meeting = init_meeting(base_url=node.url, token=token, meeting_id=room, name=name, **options)
    meeting.reconnect_delays = (0.1, 0.2)  # a dead node: give up soon
    clients.append(meeting)
    return meeting


def left(outcomes: dict[str, int], key: str, reason: Any) -> None:
    outcomes[key] = reason.code


def shows(meeting: Meeting, participant_id: str, name: str) -> bool:
    there = meeting.participants.get(participant_id)
    return there is not None and there.display_name == name


# ---------------------------------------------------------------------------


async def test_a_participant_on_one_node_sees_the_other_nodes_join_leave_and_end(
    cluster: tuple[ServeProcess, ServeProcess], clients: list[Meeting]
) -> None:
    a, b = cluster
    token = await dev_token(a)
    room = await create_room(b, token)  # created on B, joined on both
    alice = participant(clients, a, token, room, "Alice on A")
    await alice.join()

    bob = participant(clients, b, token, room, "Bob on B")
    sees_bob = alice.wait_for("participant-joined")
    await bob.join()
    (newcomer,) = await sees_bob
    assert (newcomer.id, newcomer.display_name) == (bob.participant_id, "Bob on B")
    assert list(bob.participants) == [alice.participant_id]  # from the welcome
    assert (alice.url, bob.url) == (a.ws_url, b.ws_url)
    assert bob.session_id == alice.session_id

    left = alice.wait_for("participant-left")
    await bob.leave()
    gone, reason = await left
    assert (gone.id, reason.code) == (bob.participant_id, 1101)

    carol = participant(clients, b, token, room, "Carol on B")
    sees_carol = alice.wait_for("participant-joined")
    await carol.join()
    await sees_carol
    await carol.change_mode("RECV_ONLY")  # a request on B, seen on A
    await eventually(lambda: alice.participants[carol.participant_id].mode == "RECV_ONLY", 5)
    assert (alice.url, carol.url) == (a.ws_url, b.ws_url)  # nobody sends: nothing moved

    carol_out = carol.wait_for("meeting-left")
    await alice.end()  # on A: everyone on B is out too
    (reason,) = await carol_out
    assert reason.code == 1008
    await eventually(lambda: carol.state == "DISCONNECTED", 5)


async def test_the_same_participant_id_on_both_nodes_at_once_leaves_one_connection(
    cluster: tuple[ServeProcess, ServeProcess], clients: list[Meeting]
) -> None:
    a, b = cluster
    token = await dev_token(a)
    for _ in range(3):
        room = await create_room(a, token)
        watcher = participant(clients, a, token, room, "Watcher")
        await watcher.join()
        on_a = participant(clients, a, token, room, "laptop", participant_id="49151")
        on_b = participant(clients, b, token, room, "phone", participant_id="49151")
        outcomes: dict[str, int] = {}
        for key, meeting in (("a", on_a), ("b", on_b)):
            meeting.on("meeting-left", functools.partial(left, outcomes, key))
        await asyncio.gather(on_a.join(), on_b.join())  # at the same moment
        await eventually(functools.partial(lambda o: len(o) == 1, outcomes), 10)
        await anyio.sleep(0.5)  # and it stays that way
        assert list(outcomes.values()) == [1011], outcomes
        winner, name = (on_b, "phone") if "a" in outcomes else (on_a, "laptop")
        assert winner.joined and winner.state == "CONNECTED"
        await eventually(functools.partial(shows, watcher, "49151", name))
        active = await rest(
            b, "GET", f"/v2/sessions/{watcher.session_id}/participants/active", token
        )
        ids = sorted(p["participantId"] for p in active["data"])
        assert ids == sorted(["49151", watcher.participant_id])


async def test_a_killed_node_leaves_no_ghosts(
    cluster: tuple[ServeProcess, ServeProcess], clients: list[Meeting], home: Path, store_url: str
) -> None:
    a, _ = cluster
    c = start_node(home, store_url)
    try:
        token = await dev_token(a)
        room = await create_room(a, token)
        alice = participant(clients, a, token, room, "Alice on A")
        await alice.join()
        doomed = [participant(clients, c, token, room, f"P{n} on C") for n in range(2)]
        for meeting in doomed:
            await meeting.join()
        await eventually(lambda: len(alice.participants) == 2)
        gone: list[tuple[str, int]] = []
        alice.on("participant-left", lambda p, reason: gone.append((p.id, reason.code)))

        killed = time.monotonic()
        c.process.send_signal(signal.SIGKILL)
        assert c.process.wait(10) == -signal.SIGKILL
        await eventually(lambda: len(gone) == 2, LEASE_TTL * 2 + 5)
        waited = time.monotonic() - killed
    finally:
        c.kill()
    assert sorted(gone) == sorted((m.participant_id, 1001) for m in doomed)
    # by the lease, not at once: the last renewal that reached the database is at most
    # ttl/3 (client pings) + ttl/4 (the node's renewal batches) old when the node dies
    assert 0.35 * LEASE_TTL <= waited <= 2 * LEASE_TTL + 3, waited
    assert alice.participants == {} and alice.joined
    active = await rest(a, "GET", f"/v2/sessions/{alice.session_id}/participants/active", token)
    assert [p["participantId"] for p in active["data"]] == [alice.participant_id]


async def test_rooms_and_sessions_listed_from_any_node_agree(
    cluster: tuple[ServeProcess, ServeProcess], clients: list[Meeting]
) -> None:
    a, b = cluster
    token = await dev_token(a)
    rooms = [await create_room(node, token) for node in (a, b, a, b)]
    joined = []
    for n, room in enumerate(rooms[:2]):
        meeting = participant(clients, (a, b)[n], token, room, f"P{n}")
        await meeting.join()
        joined.append(meeting)
    other = participant(clients, a, token, rooms[1], "on A, in B's room")
    await other.join()
    await other.leave()
    session = joined[1].session_id
    await rest(b, "POST", "/v2/rooms/deactivate", token, {"roomId": rooms[3]})
    for path in (
        "/v2/rooms?perPage=100",
        f"/v2/rooms/{rooms[3]}",
        f"/v2/sessions?roomId={rooms[0]}",
        f"/v2/sessions?roomId={rooms[1]}&perPage=100",
        f"/v2/sessions/{session}",
        f"/v2/sessions/{session}/participants",
        f"/v2/sessions/{session}/participants/active",
    ):
        from_a = comparable(await rest(a, "GET", path, token), a)
        from_b = comparable(await rest(b, "GET", path, token), b)
        assert from_a == from_b, path
    listed = {r["roomId"] for r in (await rest(a, "GET", "/v2/rooms?perPage=100", token))["data"]}
    assert set(rooms) <= listed
