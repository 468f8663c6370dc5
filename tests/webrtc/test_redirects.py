"""The Python client and a cluster's `redirect` (docs/protocol.md), against fake servers
on 127.0.0.1 that answer a join with what a test wants: it follows a redirect to the
node that welcomes it, at most 3 in a row, and refuses one that is not http(s) or
names no server, with 3047 (UNABLE_TO_JOIN) and without connecting anywhere else."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

import pytest
from websockets.asyncio.server import ServerConnection, serve

from meetcore import ErrorCode, Rejected
from meetcore_client import MAX_REDIRECTS, init_meeting
from meetcore_client import meeting as client

pytestmark = pytest.mark.anyio

WELCOME = {
    "type": "welcome",
    "meetingId": "m",
    "participantId": "p",
    "connectionId": "c",
    "sessionId": None,
    "seq": 1,
    "leaseTtl": 15000,
    "resumeToken": "r",
    "participants": [],
}


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


class Fake:
    """A server that answers every join with `answer(self)`, counting the joins."""

    def __init__(self, answer: Callable[[Fake], dict[str, Any]]) -> None:
        self.answer = answer
        self.joins = 0
        self.url = ""

    async def handle(self, socket: ServerConnection) -> None:
        hello = json.loads(await socket.recv())
        assert hello["type"] == "join"
        self.joins += 1
        await socket.send(json.dumps(self.answer(self)))
        if self.answer(self)["type"] == "welcome":
            await socket.wait_closed()


@asynccontextmanager
async def fake(answer: Callable[[Fake], dict[str, Any]]) -> AsyncIterator[Fake]:
    server = Fake(answer)
    async with serve(server.handle, "127.0.0.1", 0) as running:
        port = next(iter(running.sockets)).getsockname()[1]
        server.url = f"http://127.0.0.1:{port}"
        yield server


def redirect(to: str) -> Callable[[Fake], dict[str, Any]]:
    return lambda _: {"type": "redirect", "requestId": None, "baseUrl": to}


async def test_a_redirect_is_followed_to_the_node_that_welcomes() -> None:
    async with fake(lambda _: WELCOME) as home, fake(redirect("")) as entry:
        entry.answer = redirect(home.url)
        meeting = init_meeting(base_url=entry.url, token="t", meeting_id="m")
        await meeting.join()
        try:
            assert meeting.url == home.url.replace("http://", "ws://") + "/ws"
            assert (entry.joins, home.joins) == (1, 1)
        finally:
            await meeting.close()


async def test_a_redirect_loop_ends_after_three() -> None:
    async with fake(lambda server: redirect(server.url)(server)) as looping:
        meeting = init_meeting(base_url=looping.url, token="t", meeting_id="m")
        with pytest.raises(Rejected) as refused:
            await meeting.join()
        assert refused.value.code == ErrorCode.UNABLE_TO_JOIN
        assert f"more than {MAX_REDIRECTS} redirects" in refused.value.message
        assert looping.joins == MAX_REDIRECTS + 1
        assert meeting.state == "FAILED"


@pytest.mark.parametrize(
    "target",
    [
        "javascript:alert(1)",
        "file:///etc/passwd",
        "ws://127.0.0.1:1",  # a base URL is http(s); the client makes its /ws
        "",
        "http://",  # no server
        "http://exa mple.com",
        "http://" + "x" * 100_000,
    ],
)
async def test_a_redirect_that_names_no_http_server_is_refused(target: str) -> None:
    async with fake(redirect(target)) as entry:
        meeting = init_meeting(base_url=entry.url, token="t", meeting_id="m")
        with pytest.raises(Rejected) as refused:
            await meeting.join()
        assert refused.value.code == ErrorCode.UNABLE_TO_JOIN, refused.value
        assert len(refused.value.message) < 400
        assert entry.joins == 1
        assert meeting.state == "FAILED"


async def test_a_redirect_to_a_node_that_cannot_be_reached_names_that_node(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """As when the meeting's media node has just died and the node the client came in by
    keeps sending it there: the client asks that node again for `DEAD_NODE_RETRY`
    seconds (1 here), then gives up with a message naming the dead node."""
    monkeypatch.setattr(client, "DEAD_NODE_RETRY", 1.0)
    async with fake(redirect("http://127.0.0.1:1")) as entry:
        meeting = init_meeting(base_url=entry.url, token="t", meeting_id="m")
        with pytest.raises(Rejected) as refused:
            await meeting.join()
        assert refused.value.code == ErrorCode.UNABLE_TO_JOIN
        assert refused.value.message.startswith("cannot reach ws://127.0.0.1:1/ws"), refused.value
        assert entry.joins > 2  # asked again
