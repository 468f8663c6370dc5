"""Hostile media requests on VideoSDK's protoo signaling, in process (no SDK, no media
flowing): every refusal is an error response with meetcore's code and a reason, the
connection stays usable, and the server logs no error."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest
from starlette.testclient import TestClient

import meetcore_media.plugin
from meetcore_jwt import mint_token
from meetcore_media.ortc import receive_parameters

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

OPUS = {
    "mid": "1",
    "codecs": [{"mimeType": "audio/opus", "payloadType": 111, "clockRate": 48000, "channels": 2}],
    "headerExtensions": [{"uri": "urn:ietf:params:rtp-hdrext:sdes:mid", "id": 1}],
    "encodings": [{"ssrc": 3333}],
    "rtcp": {"cname": "abc"},
}


def with_(**changes: Any) -> dict[str, Any]:
    return {**VP8, **changes}


@pytest.fixture
def client(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture, in_process: Any
) -> Iterator[TestClient]:
    monkeypatch.setenv("MEETCORE_ICE_ADDRESSES", "127.0.0.1")
    with caplog.at_level(logging.INFO), in_process(KEYS, ROOM, meetcore_media.plugin) as test:
        yield test
    errors = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert not errors, caplog.text


class Peer:
    def __init__(self, ws: Any) -> None:
        self.ws = ws
        self.rid = 0
        self.seen: list[dict[str, Any]] = []  # the server's requests and notifications

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
            self.seen.append(message)

    def wait_for(self, method: str) -> dict[str, Any]:
        """The data of the server's next request or notification `method` (earlier ones
        of other methods are kept in `seen`)."""
        while True:
            for message in self.seen:
                if message.get("method") == method:
                    self.seen.remove(message)
                    return dict(message["data"])
            self.seen.append(json.loads(self.ws.receive_text()))

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


@contextmanager
def joined(
    client: TestClient, peer_id: str, name: str, mode: str = "SEND_AND_RECV"
) -> Iterator[tuple[Peer, str]]:
    """A peer with its two transports, joined as `name`; it and its send transport."""
    with connect(client, peer_id, mode) as ws:
        peer = Peer(ws)
        send, _ = transports(peer)
        assert peer.ask("join", {"displayName": name})["ok"]
        yield peer, send


def producing(send: str, kind: str = "video", parameters: Any = VP8) -> dict[str, Any]:
    """A `produce` request's data on transport `send`."""
    return {"transportId": send, "kind": kind, "rtpParameters": parameters}


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
    with_(encodings=[{"ssrc": 1111, "rtx": {"ssrc": 1111}}]),  # RTX on the media's SSRC
    with_(encodings=[{"ssrc": 10**30}]),
    with_(encodings=[{"ssrc": 1.5}]),
    with_(encodings=[{"ssrc": True}]),
    with_(codecs=[{**VP8["codecs"][0], "payloadType": -1}]),
    with_(codecs=[{**VP8["codecs"][0], "payloadType": True}]),
    with_(codecs=[{**VP8["codecs"][0], "mimeType": None}]),
    with_(codecs=[{"mimeType": "audio/opus", "payloadType": 111, "clockRate": 48000}]),
    with_(codecs=[{**VP8["codecs"][0], "parameters": []}]),
    with_(encodings=[{"ssrc": 1}] * 1000),
    with_(headerExtensions=[{"uri": "x", "id": 0}]),
    with_(headerExtensions="x"),
    with_(mid=""),
    with_(mid=5),
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
        peer.refused("produce", producing(send), 3035)
        peer.refused("closeProducer", {"producerId": "x"}, 3035)
        assert peer.ask("join", {"displayName": "P1"})["ok"]
        for data in [
            {"transportId": send, "kind": "video", "rtpParameters": "x"},
            {"transportId": send, "kind": "screen", "rtpParameters": VP8},
            {"transportId": send, "kind": "video"},
            producing(recv),
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
        first = peer.ask("produce", producing(send))
        second = peer.ask("produce", producing(send))
        assert first["ok"] and second["ok"], (first, second)
        peer.refused("closeProducer", {"producerId": first["data"]["id"]}, 3073)
        assert peer.ask("closeProducer", {"producerId": second["data"]["id"]})["ok"]
        for _ in range(10):  # at most 4 transports a connection
            peer.ask("createWebRtcTransport", {"producing": True})
        peer.refused("createWebRtcTransport", {"producing": True}, 3073)
        assert peer.ask("getRouterRtpCapabilities")["ok"]  # still usable


@pytest.mark.parametrize("mode", ["RECV_ONLY", "SIGNALLING_ONLY"])
def test_a_participant_that_sends_nothing_cannot_produce(client: TestClient, mode: str) -> None:
    with joined(client, "watcher", "Watcher", mode) as (peer, send):
        why = peer.refused("produce", producing(send), 3066)
        assert mode in why


def test_another_peer_s_producer_cannot_be_closed(client: TestClient) -> None:
    with connect(client, "owner") as first, connect(client, "other") as second:
        owner, other = Peer(first), Peer(second)
        send, _ = transports(owner)
        transports(other)
        assert owner.ask("join", {"displayName": "Owner"})["ok"]
        assert other.ask("join", {"displayName": "Other"})["ok"]
        produced = owner.ask("produce", producing(send))
        assert produced["ok"], produced
        other.refused("closeProducer", {"producerId": produced["data"]["id"]}, 3073)


@pytest.mark.parametrize(
    "rtx",
    [
        {"mimeType": "video/rtx", "payloadType": 97, "clockRate": 90000, "parameters": {"apt": 97}},
        {
            "mimeType": "video/rtx",
            "payloadType": 98,
            "clockRate": 90000,
            "parameters": {"apt": 97.0},
        },
        {
            "mimeType": "video/rtx",
            "payloadType": 98,
            "clockRate": 90000,
            "parameters": {"apt": "97"},
        },
        {"mimeType": "video/rtx", "payloadType": 98, "clockRate": 90000, "parameters": {}},
    ],
)
def test_an_rtx_codec_that_cannot_be_told_apart_is_not_received(rtx: dict[str, Any]) -> None:
    """An RTX on its media's own payload type, or whose apt is not that payload type as
    a number, is left out: the VP8 alone is received (no RTX decoding of VP8 packets)."""
    got = receive_parameters("video", with_(codecs=[VP8["codecs"][0], rtx]))
    assert [(c.mimeType, c.payloadType) for c in got.codecs] == [("video/VP8", 97)]
    assert got.encodings[0].rtx is None


def test_request_data_that_cannot_be_read_is_answered_not_closed(client: TestClient) -> None:
    with joined(client, "p1", "P1") as (peer, send):
        for rid, data in enumerate(
            ["[1]", '"x"', "5", "true", '{"transportId": "' + send + '", "x": 1e400}'], start=100
        ):
            peer.ws.send_text(
                f'{{"request": true, "id": {rid}, "method": "produce", "data": {data}}}'
            )
            while True:
                answer = json.loads(peer.ws.receive_text())
                if answer.get("response"):
                    break
            assert answer["id"] == rid and answer["ok"] is False, answer
            assert answer["errorCode"] == 3073 and "data" in answer["errorReason"], answer
        for method, data in [
            ("createWebRtcTransport", {"producing": "yes"}),
            ("connectWebRtcTransport", {"transportId": 5}),
            ("connectWebRtcTransport", {"transportId": send, "dtlsParameters": {"role": "x"}}),
            ("produce", producing(None)),
            ("produce", {"transportId": send, "kind": 7, "rtpParameters": VP8}),
            ("closeProducer", {"producerId": ["x"]}),
            ("resumeConsumer", {"consumerId": None}),
            # more codecs than allowed, within a frame
            (
                "produce",
                {
                    "transportId": send,
                    "kind": "video",
                    "rtpParameters": with_(codecs=[VP8["codecs"][0]] * 400),
                },
            ),
        ]:
            peer.refused(method, data, 3073)
        assert peer.ask("produce", producing(send))["ok"]


def test_producers_of_both_kinds_cannot_share_a_mid_or_an_ssrc(client: TestClient) -> None:
    with joined(client, "p1", "P1") as (peer, send):
        assert peer.ask("produce", producing(send, "video", VP8))["ok"]
        assert "mid" in peer.refused(
            "produce", producing(send, "audio", {**OPUS, "mid": "0"}), 3073
        )
        for ssrc in (1111, 2222):
            why = peer.refused(
                "produce", producing(send, "audio", {**OPUS, "encodings": [{"ssrc": ssrc}]}), 3073
            )
            assert "SSRC" in why
        assert peer.ask("produce", producing(send, "audio", OPUS))["ok"]
        # the video replaced on its own mid and SSRCs, not on the audio's
        assert peer.ask("produce", producing(send, "video", VP8))["ok"]
        peer.refused("produce", producing(send, "video", with_(encodings=[{"ssrc": 3333}])), 3073)
        peer.refused("produce", producing(send, "video", with_(mid="1")), 3073)


def test_a_transport_is_connected_once(client: TestClient) -> None:
    dtls = {"role": "client", "fingerprints": [{"algorithm": "sha-256", "value": "AB:CD"}]}
    with connect(client, "p1") as ws:
        peer = Peer(ws)
        send, recv = transports(peer)
        peer.refused(
            "connectWebRtcTransport", {"transportId": "nope", "dtlsParameters": dtls}, 3073
        )
        no_fingerprint = {"role": "client", "fingerprints": []}
        peer.refused(
            "connectWebRtcTransport", {"transportId": send, "dtlsParameters": no_fingerprint}, 3073
        )
        assert peer.ask("connectWebRtcTransport", {"transportId": send, "dtlsParameters": dtls})[
            "ok"
        ]
        for _ in range(3):  # each would have been one more task waiting for ICE
            peer.refused(
                "connectWebRtcTransport", {"transportId": send, "dtlsParameters": dtls}, 3054
            )
        assert peer.ask("connectWebRtcTransport", {"transportId": recv, "dtlsParameters": dtls})[
            "ok"
        ]


def test_another_peer_s_transport_cannot_be_produced_on(client: TestClient) -> None:
    with connect(client, "a") as first, connect(client, "b") as second:
        a, b = Peer(first), Peer(second)
        transports(a)
        b_send, _ = transports(b)
        assert a.ask("join", {"displayName": "A"})["ok"]
        a.refused("produce", producing(b_send), 3073)


def test_a_removed_participant_s_media_requests_are_refused(client: TestClient) -> None:
    with connect(client, "a") as first, connect(client, "b") as second:
        a, b = Peer(first), Peer(second)
        send, _ = transports(a)
        transports(b)
        assert a.ask("join", {"displayName": "A"})["ok"]
        assert b.ask("join", {"displayName": "B"})["ok"]
        produced = a.ask("produce", producing(send))
        assert produced["ok"], produced
        assert b.ask("removePeer", {"peerId": "a"})["ok"]
        a.refused("produce", {"transportId": send, "kind": "audio", "rtpParameters": OPUS}, 3035)
        a.refused("produce", producing(send), 3035)
        a.refused("resumeConsumer", {"consumerId": "x"}, 3073)
        a.refused("join", {"displayName": "again"}, 3054)
        assert b.ask("getRouterRtpCapabilities")["ok"]


def test_a_socket_closed_in_the_middle_of_produce_leaves_nothing_behind(
    client: TestClient,
) -> None:
    with joined(client, "a", "A") as (a, send):
        data = producing(send)
        a.ws.send_text(json.dumps({"request": True, "id": 99, "method": "produce", "data": data}))
    with connect(client, "b") as ws:  # the server goes on; A left
        b = Peer(ws)
        b_send, _ = transports(b)
        answer = b.ask("join", {"displayName": "B"})
        assert answer["ok"] and answer["data"]["peers"] == [], answer
        assert b.ask("produce", producing(b_send))["ok"]


def test_many_producers_of_one_kind_replace_each_other(client: TestClient) -> None:
    with joined(client, "p1", "P1") as (peer, send):
        ids = []
        for _ in range(30):
            answer = peer.ask("produce", producing(send))
            assert answer["ok"], answer
            ids.append(answer["data"]["id"])
        for old in ids[:-1]:
            peer.refused("closeProducer", {"producerId": old}, 3073)
        assert peer.ask("closeProducer", {"producerId": ids[-1]})["ok"]
        peer.refused("closeProducer", {"producerId": ids[-1]}, 3073)


def test_only_its_own_consumers_are_resumed(client: TestClient) -> None:
    with connect(client, "a") as first, connect(client, "b") as second:
        a, b = Peer(first), Peer(second)
        send, _ = transports(a)
        transports(b)
        assert a.ask("join", {"displayName": "A"})["ok"]
        assert b.ask("join", {"displayName": "B"})["ok"]
        produced = a.ask("produce", producing(send))
        assert produced["ok"], produced
        offer = b.wait_for("newConsumer")
        assert offer["producerId"] == produced["data"]["id"] and offer["peerId"] == "a"
        a.refused("resumeConsumer", {"consumerId": offer["id"]}, 3073)
        a.refused("closeProducer", {"producerId": offer["id"]}, 3073)
        assert b.ask("resumeConsumer", {"consumerId": offer["id"]})["ok"]
        b.refused("closeProducer", {"producerId": produced["data"]["id"]}, 3073)
        assert a.ask("closeProducer", {"producerId": produced["data"]["id"]})["ok"]
        assert b.wait_for("consumerClosed") == {"consumerId": offer["id"]}
        b.refused("resumeConsumer", {"consumerId": offer["id"]}, 3073)


def test_produce_before_a_send_transport_is_refused_then_served(client: TestClient) -> None:
    with connect(client, "p1") as ws:
        peer = Peer(ws)
        assert peer.ask("join", {"displayName": "P1"})["ok"]  # no transports yet
        peer.refused("produce", {"transportId": "x", "kind": "video", "rtpParameters": VP8}, 3073)
        recv = peer.ask("createWebRtcTransport", {"producing": False, "consuming": True})
        data = {"transportId": recv["data"]["id"], "kind": "video", "rtpParameters": VP8}
        peer.refused("produce", data, 3073)
        send = peer.ask("createWebRtcTransport", {"producing": True, "consuming": False})
        data = {"transportId": send["data"]["id"], "kind": "video", "rtpParameters": VP8}
        assert peer.ask("produce", data)["ok"]
