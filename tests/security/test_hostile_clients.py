"""Hostile clients against a real `meetcore serve` (issue 19): a fixed, seeded set of
attacks, each with the exact answer it must get, then the server's health afterwards:
a legitimate client still gets in, memory and descriptors are back near where they were,
the log replays (`meetcore replay --verify`), and the refusals are in the server's log.

Loopback only, bounded in count and time (the slow ones, a bare TCP connection and
half-sent headers, run beside the rest while the server's 10 s header timeout runs).
What each limit is and why: docs/security.md.
"""

from __future__ import annotations

import contextlib
import json
import random
import socket
import string
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import anyio
import anyio.to_thread
import httpx
import pytest
import websockets
from websockets.asyncio.client import ClientConnection

from meetcore_jwt import ensure_dev_keys, mint_token
from meetcore_server.testing import ServeProcess

pytestmark = pytest.mark.anyio

SEED = 19
#: What the attacks may leave the server holding at most (RSS), beyond what a first
#: legitimate meeting made it load: the attacks send about 10 MB in all (floods, large
#: frames), and a server that kept what it was sent would pass this. Measured here:
#: 288 kB. Python's allocator returns little to the OS, so not zero.
RSS_GROWTH_BOUND_KB = 8_000
#: Descriptors the server may hold beyond its baseline once every attacker is gone
#: (SQLite's read connections open on demand, a pooled socket or two).
FD_SLACK = 12


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


def rss_kb(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError("no VmRSS")


def fds(pid: int) -> int:
    return len(list(Path(f"/proc/{pid}/fd").iterdir()))


class Target:
    """The server under attack, its tokens and a few helpers."""

    def __init__(self, server: ServeProcess) -> None:
        self.server = server
        self.url = server.url
        self.ws = server.url.replace("http://", "ws://") + "/ws"
        self.host, port = server.url.removeprefix("http://").split(":")
        self.port = int(port)
        api_key, secret = ensure_dev_keys(server.cwd / "meetcore-keys.json")
        self.api_key, self.secret = api_key, secret
        self.token = mint_token(api_key=api_key, secret=secret)
        self.room = ""

    def mint(self, **claims: Any) -> str:
        return mint_token(api_key=self.api_key, secret=self.secret, **claims)

    async def rest(
        self, method: str, path: str, token: str | None = None, **options: Any
    ) -> httpx.Response:
        headers = {"Authorization": self.token if token is None else token}
        headers.update(options.pop("headers", {}))
        async with httpx.AsyncClient(base_url=self.url, timeout=15) as http:
            return await http.request(method, path, headers=headers, **options)

    async def connect(self) -> ClientConnection:
        return await websockets.connect(self.ws, max_size=None, compression=None)

    async def join(self, participant_id: str, token: str | None = None) -> ClientConnection:
        raw = await self.connect()
        hello = {"type": "join", "token": token or self.token, "meetingId": self.room}
        await raw.send(json.dumps({**hello, "participantId": participant_id}))
        return raw


async def next_of(raw: ClientConnection, kind: str) -> dict[str, Any]:
    """The next message of type `kind` (events before it are skipped)."""
    with anyio.fail_after(10):
        while True:
            message = json.loads(await raw.recv())
            if message["type"] == kind:
                return message
            assert message["type"] in ("events", "media-offer"), message


async def closed(raw: ClientConnection) -> tuple[list[dict[str, Any]], int | None]:
    """Every message until the server closes the connection, and its close code."""
    messages = []
    with anyio.fail_after(15):
        try:
            while True:
                messages.append(json.loads(await raw.recv()))
        except websockets.ConnectionClosed:
            return messages, raw.close_code


def garbage_tokens(rng: random.Random) -> list[str]:
    """Tokens of every bad shape, from a seeded generator."""
    printable = string.ascii_letters + string.digits + "-_.=+/"
    tokens = ["x", "eyJ", "a.b.c", "eyJhbGciOiJub25lIn0.e30.", "Bearer x", "null"]
    tokens += ["".join(rng.choice(printable) for _ in range(rng.randint(1, 400))) for _ in range(8)]
    tokens += ["eyJ" + "".join(rng.choice(printable) for _ in range(rng.randint(10, 200)))]
    tokens.append("A" * 12_000)  # past MAX_TOKEN_CHARS (8192), within HTTP's header limit
    return tokens


# -- the attacks -----------------------------------------------------------------------


async def bad_tokens_over_rest(target: Target, rng: random.Random) -> None:
    for token in garbage_tokens(rng):
        answer = await target.rest("GET", "/v2/rooms", token)
        assert answer.status_code == 401, (token[:40], answer.text)
        assert answer.json()["code"] == 4002, answer.text
        assert len(answer.text) < 1000, "the refusal does not echo a long token"
    # Headers past 16 KiB (h11's limit) never reach the API: uvicorn answers 400 and
    # closes the connection, which the client may find closed while it still sends its
    # headers (then it sees no answer: 1 run in 3 here).
    try:
        answer = await target.rest("GET", "/v2/rooms", "A" * 100_000)
    except (httpx.ReadError, httpx.RemoteProtocolError, httpx.WriteError):
        pass
    else:
        assert answer.status_code in (400, 401, 431), answer.text


async def bad_tokens_at_join(target: Target, rng: random.Random) -> None:
    for token in [*garbage_tokens(rng)[:6], "A" * 9000]:
        raw = await target.join("mallory", token)
        messages, code = await closed(raw)
        assert [(m["type"], m["code"]) for m in messages] == [("error", 4002)], messages
        assert code == 4002


async def bad_rest_bodies(target: Target, rng: random.Random) -> None:
    post = {"headers": {"Content-Type": "application/json"}}
    for body, status in [
        (b"{", 400),
        (b"[]", 400),
        (b'{"customRoomId": 5}', 400),
        (b'{"webhook": "http://x"}', 400),
        (b"\xff\xfe\x00", 400),
        (b'{"a":' * 2000 + b"1" + b"}" * 2000, 400),
        (b"x" * (1 << 20), 413),
        (bytes(rng.randrange(256) for _ in range(3000)), 400),
    ]:
        answer = await target.rest("POST", "/v2/rooms", content=body, **post)
        assert answer.status_code == status, (body[:30], answer.text)
        assert answer.json()["code"] in (3073, 4000, 413, 400) or status == 413, answer.text
    rooms = (await target.rest("GET", "/v2/rooms?perPage=100")).json()["data"]
    assert [r["roomId"] for r in rooms] == [target.room], "no bad body made a room"


async def webhook_room_with_ask_join(target: Target, rng: random.Random) -> None:
    guest = target.mint(permissions=["ask_join"])
    body = {"webhook": {"endPoint": "http://127.0.0.1:1/hook", "events": []}}
    answer = await target.rest("POST", "/v2/rooms", guest, json=body)
    assert (answer.status_code, answer.json()["code"]) == (403, 4025), answer.text


async def bad_websocket_messages(target: Target, rng: random.Random) -> None:
    raw = await target.connect()
    garbage: list[str | bytes] = [
        "not json",
        "[]",
        "{}",
        '{"type": "no-such-type"}',
        '{"type": "join"}',
        '{"type": "join", "token": 5, "meetingId": []}',
        "[" * 100_000 + "]" * 100_000,  # past 64 KiB
        json.dumps({"type": "ping", "requestId": "x" * 70_000}),
        b"\x00\x01\x02binary",
        bytes(rng.randrange(256) for _ in range(500)),
        "{" * 2000,
    ]
    for message in garbage:
        await raw.send(message)
        error = await next_of(raw, "error")
        assert error["code"] == 3073, (str(message)[:40], error)
    # only an answer may be larger than 64 KiB, up to 512 KiB, and only a real one
    big = "x" * 200_000
    for message, why in [
        (json.dumps({"type": "ping", "requestId": "p", "pad": big}), "only an answer may"),
        (json.dumps({"type": "answer", "sdp": "x" * 600_000}), "larger than 65536"),
        ('{"type": "answer", "type": "ping", "pad": "' + big + '"}', "larger than 65536"),
        ('{"type": "answer", "sdp": ' + "[" * 70_000, "bad message"),
    ]:
        await raw.send(message)
        error = await next_of(raw, "error")
        assert (error["code"], why in error["message"]) == (3073, True), (message[:40], error)
    await raw.send(json.dumps({"type": "answer", "sdp": big}))  # read, but not joined
    assert (await next_of(raw, "error"))["code"] == 3035
    await raw.send('{"type": "leave", "requestId": 1}')  # before joining
    assert (await next_of(raw, "error"))["code"] == 3035
    await raw.send('{"type": "ping", "requestId": 2}')  # still open, still answering
    assert await next_of(raw, "pong") == {"type": "pong", "requestId": 2}
    # past the 1 MiB frame limit: closed, possibly before the frame is all sent (the
    # send then fails after the server's close frame came; seen in CI)
    with contextlib.suppress(websockets.ConnectionClosed):
        await raw.send("x" * (2 << 20))
    _, code = await closed(raw)
    assert code == 1009


async def resume_after_leaving(target: Target, rng: random.Random) -> None:
    raw = await target.join("leaver")
    welcome = await next_of(raw, "welcome")
    await raw.send('{"type": "leave", "requestId": 1}')
    await closed(raw)
    again = await target.connect()
    resume = {
        "type": "resume",
        "token": target.token,
        "meetingId": target.room,
        "participantId": "leaver",
        "connectionId": welcome["connectionId"],
        "resumeToken": welcome["resumeToken"],
        "lastSeq": 0,
    }
    await again.send(json.dumps(resume))
    messages, code = await closed(again)
    assert [(m["type"], m.get("code")) for m in messages] == [("error", 3035)], messages
    assert code == 3035


async def denied_guest_resumes_from_zero(target: Target, rng: random.Random) -> None:
    host = await target.join("host")
    await next_of(host, "welcome")
    guest = await target.join("guest", target.mint(permissions=["ask_join"]))
    welcome = await next_of(guest, "welcome")
    await next_of(host, "events")  # the entry request
    deny = {"type": "respond-entry", "participantId": "guest", "decision": "denied"}
    await host.send(json.dumps({**deny, "requestId": 1}))
    assert (await next_of(host, "ok"))["requestId"] == 1
    await closed(guest)
    again = await target.connect()
    resume = {
        "type": "resume",
        "token": target.mint(permissions=["ask_join"]),
        "meetingId": target.room,
        "participantId": "guest",
        "connectionId": welcome["connectionId"],
        "resumeToken": welcome["resumeToken"],
        "lastSeq": 0,
    }
    await again.send(json.dumps(resume))
    messages, code = await closed(again)
    assert [(m["type"], m.get("code")) for m in messages] == [("error", 3035)], messages
    assert not any(m["type"] == "events" for m in messages), "it read the meeting's history"
    assert code == 3035
    await host.send('{"type": "leave", "requestId": 2}')
    await closed(host)


async def forged_resume_tokens(target: Target, rng: random.Random) -> None:
    for _ in range(5):
        raw = await target.connect()
        resume = {
            "type": "resume",
            "token": target.token,
            "meetingId": target.room,
            "participantId": "ada",
            "connectionId": "".join(rng.choice("0123456789abcdef") for _ in range(16)),
            "resumeToken": "".join(rng.choice("0123456789abcdef") for _ in range(64)),
            "lastSeq": rng.randrange(1000),
        }
        await raw.send(json.dumps(resume))
        messages, code = await closed(raw)
        assert [(m["type"], m.get("code")) for m in messages] == [("error", 4002)], messages
        assert code == 4002


async def ping_flood_without_reading(target: Target, rng: random.Random) -> None:
    """5,000 pings, not one answer read: the server stops reading this client once 256
    answers wait; its memory for it stays bounded (checked at the end)."""
    raw = await target.join("flooder")
    await next_of(raw, "welcome")
    with anyio.move_on_after(5):  # the sends block once both sockets' buffers are full
        for n in range(5000):
            await raw.send(json.dumps({"type": "ping", "requestId": n}))
    await raw.close()


async def connections_opened_and_dropped(target: Target, rng: random.Random) -> None:
    for _ in range(100):
        raw = await target.connect()
        await raw.close()
    for _ in range(100):
        with socket.create_connection((target.host, target.port)):
            pass
    for _ in range(30):  # a join whose client is gone before its welcome
        raw = await target.join(f"ghost-{rng.randrange(10**6)}")
        raw.transport.abort()


async def large_sdp_when_joined(target: Target, rng: random.Random) -> None:
    """A joined client's SDP: an answer of 300 KiB to no offer, an offer of 100 KiB (an
    offer has one audio and one video section: 64 KiB is plenty), garbage SDP."""
    raw = await target.join("sdp")
    await next_of(raw, "welcome")
    lines = "".join(f"a=x-{rng.randrange(10**9)}\r\n" for _ in range(20_000))
    await raw.send(json.dumps({"type": "answer", "requestId": 1, "sdp": lines[:300_000]}))
    error = await next_of(raw, "error")
    assert (error["code"], error.get("requestId")) == (3073, 1), error
    assert "the server made no offer" in error["message"]
    await raw.send(json.dumps({"type": "offer", "requestId": 2, "sdp": lines[:100_000]}))
    error = await next_of(raw, "error")
    assert "only an answer may" in error["message"], error
    await raw.send(json.dumps({"type": "offer", "requestId": 3, "sdp": "v=0\r\n" + lines[:40_000]}))
    error = await next_of(raw, "error")
    assert (error["code"], error.get("requestId")) == (3073, 3), error
    await raw.send('{"type": "ping", "requestId": 4}')
    assert await next_of(raw, "pong") == {"type": "pong", "requestId": 4}
    await raw.send('{"type": "leave", "requestId": 5}')
    await closed(raw)


ATTACKS = [
    bad_tokens_over_rest,
    bad_tokens_at_join,
    bad_rest_bodies,
    webhook_room_with_ask_join,
    bad_websocket_messages,
    large_sdp_when_joined,
    resume_after_leaving,
    denied_guest_resumes_from_zero,
    forged_resume_tokens,
    ping_flood_without_reading,
    connections_opened_and_dropped,
]


def slow_sockets(target: Target) -> list[socket.socket]:
    """A bare TCP connection and one with half its headers sent."""
    bare = socket.create_connection((target.host, target.port))
    half = socket.create_connection((target.host, target.port))
    half.sendall(b"GET /v2/rooms HTTP/1.1\r\nHost: x\r\n")
    return [bare, half]


def closed_by_server(sock: socket.socket) -> bool:
    sock.settimeout(5)
    try:
        return sock.recv(1024) == b""
    except (ConnectionResetError, TimeoutError):
        return False
    finally:
        sock.close()


@pytest.mark.slow
async def test_a_seeded_set_of_attacks_leaves_the_server_well(tmp_path: Path) -> None:
    rng = random.Random(SEED)
    server = ServeProcess(tmp_path, dev=False, lease_ttl=2.0).wait_ready()
    try:
        target = Target(server)
        created = await target.rest("POST", "/v2/rooms")
        target.room = created.json()["roomId"]
        first = await target.join("warm-up")  # a first meeting: what serving loads
        await next_of(first, "welcome")
        await first.send('{"type": "offer", "requestId": 0, "sdp": "v=0"}')  # loads aiortc
        await next_of(first, "error")
        await first.send('{"type": "leave", "requestId": 1}')
        await closed(first)
        pid = server.process.pid
        rss, descriptors = rss_kb(pid), fds(pid)
        started = time.monotonic()
        slow = slow_sockets(target)

        for attack in ATTACKS:
            try:
                await attack(target, rng)
            except BaseException as error:
                raise AssertionError(f"{attack.__name__}: {error!r}") from error
            server.check_alive()

        await anyio.sleep(max(0.0, 11.0 - (time.monotonic() - started)))  # header timeout
        assert [closed_by_server(s) for s in slow] == [True, True], "slow sockets stayed open"

        legit = await target.join("ada")  # a legitimate client still gets in
        welcome = await next_of(legit, "welcome")
        assert welcome["participantId"] == "ada"
        await legit.send('{"type": "leave", "requestId": 1}')
        await closed(legit)

        with anyio.fail_after(10):  # the ghosts' and the flooder's leases run out (2 s)
            while True:
                sessions = (await target.rest("GET", f"/v2/sessions?roomId={target.room}")).json()
                if all(s["end"] is not None for s in sessions["data"]):
                    break
                await anyio.sleep(0.2)
        grown = rss_kb(pid) - rss
        assert grown < RSS_GROWTH_BOUND_KB, f"RSS grew by {grown} kB"
        assert fds(pid) <= descriptors + FD_SLACK, (descriptors, fds(pid))
    finally:
        code = await server.stop()
    assert code == 0, server.output
    assert "Traceback" not in server.output, server.output
    refusals = server.output
    assert "refused a join to meeting" in refusals and "4002" in refusals
    assert "refused a resume to meeting" in refusals and "3035" in refusals
    replay = await anyio.to_thread.run_sync(
        lambda: subprocess.run(
            [
                sys.executable,
                "-m",
                "meetcore.cli",
                "replay",
                str(tmp_path / "meetcore.db"),
                "--verify",
            ],
            capture_output=True,
            text=True,
            timeout=60,
        )
    )
    assert replay.returncode == 0, replay.stdout[-2000:] + replay.stderr[-2000:]
