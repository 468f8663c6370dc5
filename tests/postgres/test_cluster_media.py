"""One URL for a cluster (issue 20): participants who come in through different nodes of
a PostgreSQL deployment get each other's media, and when the node carrying a meeting's
media dies, the meeting's media moves and the participants who come back get it again.

Real `meetcore serve` processes (nodes A and B) on one fresh PostgreSQL schema, every
ICE candidate on 127.0.0.1; the participants are the Python client with its own
synthetic camera, frames decoded. Each meeting's room is drawn so that the node to
kill carries its media (`media_node`, the rule the nodes use).
"""

from __future__ import annotations

import asyncio
import secrets
import signal
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest
from aiortc.mediastreams import MediaStreamError

from meetcore import ErrorCode, Rejected
from meetcore_client import Meeting, init_meeting
from meetcore_media.tracks import SyntheticVideoTrack
from meetcore_postgres import media_node
from meetcore_server.testing import ServeProcess

pytestmark = [
    pytest.mark.anyio,
    pytest.mark.skipif(sys.platform == "win32", reason="needs POSIX signals"),
]

#: Seconds: a node is then dead 2 s after its last announcement (a third of it).
LEASE_TTL = 6.0
LOOPBACK = {"MEETCORE_ICE_ADDRESSES": "127.0.0.1"}


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
def nodes(tmp_path: Path, database: str) -> Iterator[list[ServeProcess]]:
    """Nodes A and B on a fresh schema, in one folder (A creates the keys B reads)."""
    store = f"{database}?schema=media_{secrets.token_hex(3)}"
    started: list[ServeProcess] = []
    try:
        for _ in range(2):
            node = ServeProcess(tmp_path, store=store, lease_ttl=LEASE_TTL, env=LOOPBACK)
            started.append(node.wait_ready())
        yield started
    finally:
        for node in started:
            if node.process.poll() is None:
                assert node.terminate() == 0, node.output
                assert "Traceback" not in node.output, node.output


async def token_and_room(node: ServeProcess, carried_by: ServeProcess, nodes: list[str]) -> Any:
    """A token, and a new room whose media the rule puts on `carried_by`."""
    async with httpx.AsyncClient(base_url=node.url, timeout=10) as http:
        token = (await http.get("/get-token")).json()["token"]
        while True:
            created = await http.post("/v2/rooms", headers={"Authorization": token})
            room = created.json()["roomId"]
            if media_node(room, nodes) == carried_by.url:
                return token, room


def participant(
    clients: list[Meeting], node: ServeProcess, token: str, room: str, name: str
) -> Meeting:
    meeting = init_meeting(
        base_url=node.url,
        token=token,
        meeting_id=room,
        participant_id=name,
        webcam_enabled=True,
        custom_camera_video_track=SyntheticVideoTrack(width=160, height=120, fps=15),
        ice_addresses=["127.0.0.1"],
    )
    clients.append(meeting)
    return meeting


async def sees_video_of(meeting: Meeting, participant_id: str, within: float = 15.0) -> None:
    """`meeting` decodes frames of `participant_id`'s video (a stream that ends, as
    when the media connection moves, is waited out)."""
    async with asyncio.timeout(within):
        while True:
            there = meeting.participants.get(participant_id)
            stream = there.streams.get(f"{participant_id}:video") if there else None
            if stream is None or stream.ended:
                await asyncio.sleep(0.05)
                continue
            try:
                for _ in range(3):
                    await stream.track.recv()
            except MediaStreamError:
                continue
            return


async def test_participants_of_different_nodes_meet_on_the_media_node(
    nodes: list[ServeProcess], clients: list[Meeting]
) -> None:
    a, b = nodes
    for carrier, other in ((a, b), (b, a)):
        token, room = await token_and_room(other, carrier, [a.url, b.url])
        alice = participant(clients, other, token, room, "alice")  # sent on to the carrier
        bob = participant(clients, carrier, token, room, "bob")
        await alice.join()
        await bob.join()
        assert alice.url == bob.url == carrier.ws_url
        await sees_video_of(alice, "bob")
        await sees_video_of(bob, "alice")
        assert f"sent a join to meeting {room} to its media node {carrier.url}" in other.output
    for node in nodes:
        assert f"a cluster node at {node.url}: each join goes to its meeting's media node" in (
            node.output
        )


async def test_videosdk_s_init_config_sends_the_sdk_to_the_meeting_s_media_node(
    nodes: list[ServeProcess],
) -> None:
    """VideoSDK's SDK has no redirect: its `server-init-config` answer says where to
    connect, the node carrying the meeting's media, whichever node it asked."""
    a, b = nodes
    for carrier, other in ((a, b), (b, a)):
        token, room = await token_and_room(other, carrier, [a.url, b.url])
        for asked in (other, carrier):
            async with httpx.AsyncClient(base_url=asked.url, timeout=10) as http:
                answer = await http.post(
                    "/infra/v1/meetings/server-init-config",
                    headers={"Authorization": token},
                    json={"roomId": room},
                )
            assert answer.status_code == 200, answer.text
            host = carrier.url.removeprefix("http://")
            assert answer.json()["data"]["signalingUrl"] == f"ws://{host}/videosdk", asked.url


async def test_a_signalling_only_participant_stays_where_it_came_in(
    nodes: list[ServeProcess], clients: list[Meeting]
) -> None:
    """It needs no media node; when it turns media on, it is sent there and its media
    flows."""
    a, b = nodes
    token, room = await token_and_room(a, a, [a.url, b.url])
    bob = participant(clients, a, token, room, "bob")
    await bob.join()
    watcher = init_meeting(
        base_url=b.url,
        token=token,
        meeting_id=room,
        participant_id="watcher",
        mode="SIGNALLING_ONLY",
        ice_addresses=["127.0.0.1"],
    )
    clients.append(watcher)
    await watcher.join()
    assert watcher.url == b.ws_url
    assert "bob" in watcher.participants
    await watcher.change_mode("RECV_ONLY")
    await sees_video_of(watcher, "bob")
    assert watcher.url == a.ws_url
    assert watcher.joined


@pytest.mark.parametrize("how", [signal.SIGKILL, signal.SIGTERM])
async def test_when_the_media_node_dies_the_meeting_moves_and_media_comes_back(
    nodes: list[ServeProcess], clients: list[Meeting], how: signal.Signals
) -> None:
    """Killed, or stopped (a rolling restart: it leaves nobody's leave in the log, so
    that the participants resume elsewhere)."""
    a, b = nodes
    token, room = await token_and_room(b, a, [a.url, b.url])  # its media on A
    alice = participant(clients, b, token, room, "alice")  # comes in through B
    bob = participant(clients, a, token, room, "bob")  # through A itself
    await alice.join()
    await bob.join()
    await sees_video_of(alice, "bob")
    await sees_video_of(bob, "alice")
    left: list[int] = []
    alice.on("meeting-left", lambda reason: left.append(reason.code))

    a.process.send_signal(how)
    assert a.process.wait(10) in (-signal.SIGKILL, 0)
    # Alice resumes through B, which now carries the meeting; Bob, who came in
    # through the dead node, has nowhere to go: he leaves (1001, by his lease) and joins
    # again through B.
    async with asyncio.timeout(LEASE_TTL * 2 + 10):
        while alice.state != "CONNECTED" or alice.url != b.ws_url:
            await asyncio.sleep(0.05)
    bob_back = participant(clients, b, token, room, "bob")
    await bob_back.join()
    assert bob_back.url == b.ws_url
    await sees_video_of(alice, "bob")
    await sees_video_of(bob_back, "alice")
    assert left == []  # Alice never left: she resumed
    assert alice.joined


async def test_a_join_sent_to_a_media_node_that_just_died_comes_back_and_gets_in(
    nodes: list[ServeProcess], clients: list[Meeting]
) -> None:
    """Until its announcement lapses (a third of the lease), the other nodes still send
    the dead node's meetings' joins there: the client asks the node it came in by
    again until that one places the meeting on a live node (it used to fail, 3047)."""
    a, b = nodes
    token, room = await token_and_room(b, a, [a.url, b.url])  # its media on A
    bob = participant(clients, a, token, room, "bob")
    await bob.join()
    a.process.kill()
    assert a.process.wait(10) == -signal.SIGKILL
    carol = participant(clients, b, token, room, "carol")
    await carol.join()  # first sent to A, which is gone
    assert carol.url == b.ws_url
    assert f"sent a join to meeting {room} to its media node {a.url}" in b.output
    dave = participant(clients, b, token, room, "dave")
    await dave.join()
    await sees_video_of(carol, "dave")
    await sees_video_of(dave, "carol")


async def test_a_join_to_no_meeting_is_refused_where_it_arrives_and_places_nothing(
    nodes: list[ServeProcess], clients: list[Meeting], database: str
) -> None:
    a, b = nodes
    async with httpx.AsyncClient(base_url=a.url, timeout=10) as http:
        token = (await http.get("/get-token")).json()["token"]
    for node in (a, b):
        for meeting_id in ("zzz-zzz-zzz", "x" * 2000, "ünïcödé"):
            stray = init_meeting(base_url=node.url, token=token, meeting_id=meeting_id)
            clients.append(stray)
            with pytest.raises(Rejected) as refused:
                await stray.join()
            assert refused.value.code == ErrorCode.INVALID_MEETING_ID, refused.value
            assert stray.url == node.ws_url  # refused where it arrived, not sent anywhere
    schema = nodes[0].store.split("schema=")[1]
    with psycopg.connect(database) as connection:
        rows = connection.execute(f'SELECT count(*) FROM "{schema}".placements').fetchone()
    assert rows == (0,)


async def test_a_media_node_that_stalled_sends_its_participants_to_where_the_meeting_moved(
    nodes: list[ServeProcess], clients: list[Meeting]
) -> None:
    """A stops for longer than a node may stay silent (2 s here) but less than the lease:
    a join meanwhile places the meeting on B. A, back, sends its participants to B, so
    the meeting's media is not split between the two nodes."""
    a, b = nodes
    token, room = await token_and_room(b, a, [a.url, b.url])
    bob = participant(clients, a, token, room, "bob")
    await bob.join()
    async with asyncio.timeout(10):  # his media connection to A is up
        while not (bob._media and bob._media.pc and bob._media.pc.connectionState == "connected"):
            await asyncio.sleep(0.05)
    a.process.send_signal(signal.SIGSTOP)
    try:
        await asyncio.sleep(3)
        eve = participant(clients, b, token, room, "eve")
        await eve.join()
        assert eve.url == b.ws_url
    finally:
        a.process.send_signal(signal.SIGCONT)
    await sees_video_of(eve, "bob", 20)
    await sees_video_of(bob, "eve")
    assert bob.url == b.ws_url
    assert bob.joined
    assert f"meeting {room} has moved to {b.url}" in a.output


def test_a_node_on_every_interface_is_no_cluster_node_without_a_public_url(
    tmp_path: Path, database: str
) -> None:
    store = f"{database}?schema=wild_{secrets.token_hex(3)}"
    with ServeProcess(tmp_path, store=store, host="0.0.0.0").wait_ready() as node:
        assert node.process.poll() is None
    assert "not a cluster node: it listens on every interface" in node.output
    assert "a cluster node at" not in node.output
