"""Hostile media requests on VideoSDK's protoo signaling, in process (no SDK, no media
flowing): every refusal is an error response with meetcore's code and a reason, the
connection stays usable, and the server logs no error."""

from __future__ import annotations

import json
import logging
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from typing import Any

import pytest
from starlette.applications import Starlette
from starlette.routing import Mount
from starlette.testclient import TestClient

import meetcore_media.plugin
import meetcore_videosdk.plugin
from meetcore import Engine
from meetcore.commands import InitMeeting
from meetcore_jwt import JWTAuth, mint_token
from meetcore_media.ortc import receive_parameters
from meetcore_server.app import Server

KEYS = {"test-key": "test-secret-of-at-least-32-bytes!!"}
TOKEN = mint_token(api_key="test-key", secret=KEYS["test-key"])
ROOM = "abc-def-ghi"

#: A producer's parameters as VideoSDK's SDK sends them (its own numbering).
VP8 = {
    "mid": "0",
    "codecs": [
        {"mimeType": "video/VP8", "payloadType": 97, "clockRate": 90000, "parameters": {}},
        {
            "mimeType": "video/rtx",
            "payloadType": 98,
            "clockRate": 90000,
            "parameters": {"apt": 97},
        },
    ],
    "headerExtensions": [
        {"uri": "urn:ietf:params:rtp-hdrext:sdes:mid", "id": 1},
        {"uri": "http://www.webrtc.org/experiments/rtp-hdrext/abs-send-time", "id": 3},
    ],
    "encodings": [{"ssrc": 1111, "rtx": {"ssrc": 2222}}],
    "rtcp": {"cname": "abc"},
}


def with_(**changes: Any) -> dict[str, Any]:
    return {**VP8, **changes}


@pytest.fixture
def client(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> Iterator[TestClient]:
    monkeypatch.setenv("MEETCORE_ICE_ADDRESSES", "127.0.0.1")
    holder: dict[str, Any] = {}

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        plugins = [JWTAuth(KEYS), meetcore_videosdk.plugin, meetcore_media.plugin]
        async with Engine.open("memory://", plugins=plugins, autoload=False) as engine:
            await engine.execute(InitMeeting(meeting_id=ROOM, custom_room_id=ROOM))
            server = Server(engine)
            holder["app"] = server.app
            async with server.signaling.lifespan():
                yield

    async def inner(scope: Any, receive: Any, send: Any) -> None:
        await holder["app"](scope, receive, send)

    with (
        caplog.at_level(logging.INFO),
        TestClient(Starlette(lifespan=lifespan, routes=[Mount("/", app=inner)])) as test,
    ):
        yield test
    errors = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert not errors, caplog.text


class Peer:
    def __init__(self, ws: Any) -> None:
        self.ws = ws
        self.rid = 0

    def ask(self, method: str, data: Any = None) -> dict[str, Any]:
        """A request's response (server requests and notifications are skipped)."""
        self.rid += 1
        self.ws.send_text(
            json.dumps({"request": True, "id": self.rid, "method": method, "data": data or {}})
        )
        while True:
            message = json.loads(self.ws.receive_text())
            if message.get("response") and message["id"] == self.rid:
                return dict(message)

    def refused(self, method: str, data: Any, code: int) -> str:
        answer = self.ask(method, data)
        assert answer["ok"] is False and answer["errorCode"] == code, answer
        assert answer["errorReason"] and "Traceback" not in answer["errorReason"]
        return str(answer["errorReason"])


def connect(client: TestClient, peer_id: str, mode: str = "SEND_AND_RECV") -> Any:
    query = f"roomId={ROOM}&peerId={peer_id}&secret={TOKEN}&mode={mode}"
    return client.websocket_connect(f"/videosdk/?{query}", subprotocols=["protoo"])


def transports(peer: Peer) -> tuple[str, str]:
    send = peer.ask("createWebRtcTransport", {"producing": True, "consuming": False})
    recv = peer.ask("createWebRtcTransport", {"producing": False, "consuming": True})
    return send["data"]["id"], recv["data"]["id"]


BAD_PARAMETERS = [
    "not an object",
    {},
    with_(codecs="VP8"),
    with_(codecs=[]),
    with_(codecs=[VP8["codecs"][0]] * 100),
    with_(codecs=[{"mimeType": "video/H264", "payloadType": 99, "clockRate": 90000}]),
    with_(codecs=[{**VP8["codecs"][0], "payloadType": 300}]),
    with_(codecs=[{**VP8["codecs"][0], "clockRate": -1}]),
    with_(encodings=[]),
    with_(encodings=[{"ssrc": 1}, {"ssrc": 2}, {"ssrc": 3}]),  # simulcast
    with_(encodings=[{"ssrc": -5}]),
    with_(encodings=[{"ssrc": 2**40}]),
    with_(encodings=[{"ssrc": "1111"}]),
    with_(encodings=[{"ssrc": 1111, "rtx": {"ssrc": 0}}]),
    with_(headerExtensions=[{"uri": "x", "id": 99}]),
    with_(headerExtensions=[{"uri": "x", "id": 1}] * 100),
    with_(mid="m" * 1000),
    with_(rtcp=[]),
]


@pytest.mark.parametrize("parameters", BAD_PARAMETERS, ids=range(len(BAD_PARAMETERS)))
def test_bad_producer_parameters_are_refused_saying_why(parameters: Any) -> None:
    with pytest.raises(ValueError, match="rtpParameters"):
        receive_parameters("video", parameters)


def test_good_parameters_keep_the_client_s_numbering() -> None:
    got = receive_parameters("video", VP8)
    assert [(c.mimeType, c.payloadType) for c in got.codecs] == [
        ("video/VP8", 97),
        ("video/rtx", 98),
    ]
    (encoding,) = got.encodings
    assert encoding.ssrc == 1111 and encoding.rtx is not None and encoding.rtx.ssrc == 2222
    assert got.muxId == "0"


def test_hostile_media_requests_are_refused_and_the_connection_goes_on(
    client: TestClient,
) -> None:
    with connect(client, "p1") as ws:
        peer = Peer(ws)
        send, recv = transports(peer)
        # before join
        peer.refused("produce", {"transportId": send, "kind": "video", "rtpParameters": VP8}, 3035)
        peer.refused("closeProducer", {"producerId": "x"}, 3035)
        assert peer.ask("join", {"displayName": "P1"})["ok"]
        for data in [
            {"transportId": send, "kind": "video", "rtpParameters": "x"},
            {"transportId": send, "kind": "screen", "rtpParameters": VP8},
            {"transportId": send, "kind": "video"},
            {"transportId": recv, "kind": "video", "rtpParameters": VP8},
            {"transportId": "nope", "kind": "video", "rtpParameters": VP8},
            {"transportId": send, "kind": "audio", "rtpParameters": VP8},  # no Opus in it
            {"transportId": send, "kind": "video", "rtpParameters": with_(encodings=[])},
        ]:
            peer.refused("produce", data, 3073)
        peer.refused("closeProducer", {"producerId": "not-one-of-mine"}, 3073)
        peer.refused("closeProducer", {}, 3073)
        peer.refused("resumeConsumer", {"consumerId": "nope"}, 3073)
        peer.refused("resumeConsumer", {"consumerId": 5}, 3073)
        # a good producer, then the same kind again (it replaces the first), then closed
        first = peer.ask("produce", {"transportId": send, "kind": "video", "rtpParameters": VP8})
        second = peer.ask("produce", {"transportId": send, "kind": "video", "rtpParameters": VP8})
        assert first["ok"] and second["ok"], (first, second)
        peer.refused("closeProducer", {"producerId": first["data"]["id"]}, 3073)
        assert peer.ask("closeProducer", {"producerId": second["data"]["id"]})["ok"]
        for _ in range(10):  # at most 4 transports a connection
            peer.ask("createWebRtcTransport", {"producing": True})
        peer.refused("createWebRtcTransport", {"producing": True}, 3073)
        assert peer.ask("getRouterRtpCapabilities")["ok"]  # still usable


@pytest.mark.parametrize("mode", ["RECV_ONLY", "SIGNALLING_ONLY"])
def test_a_participant_that_sends_nothing_cannot_produce(client: TestClient, mode: str) -> None:
    with connect(client, "watcher", mode) as ws:
        peer = Peer(ws)
        send, _ = transports(peer)
        assert peer.ask("join", {"displayName": "Watcher"})["ok"]
        why = peer.refused(
            "produce", {"transportId": send, "kind": "video", "rtpParameters": VP8}, 3066
        )
        assert mode in why


def test_another_peer_s_producer_cannot_be_closed(client: TestClient) -> None:
    with connect(client, "owner") as first, connect(client, "other") as second:
        owner, other = Peer(first), Peer(second)
        send, _ = transports(owner)
        transports(other)
        assert owner.ask("join", {"displayName": "Owner"})["ok"]
        assert other.ask("join", {"displayName": "Other"})["ok"]
        produced = owner.ask(
            "produce", {"transportId": send, "kind": "video", "rtpParameters": VP8}
        )
        assert produced["ok"], produced
        other.refused("closeProducer", {"producerId": produced["data"]["id"]}, 3073)
