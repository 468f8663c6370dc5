"""VideoSDK's protoo signaling (meetcore-videosdk): hostile input in process, then the
real, unmodified SDK (in a virtual environment of its own) against `meetcore serve`,
with a meetcore client in the same meeting."""

from __future__ import annotations

import asyncio
import json
import ssl
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from starlette.testclient import TestClient
from starlette.websockets import WebSocketDisconnect

from meetcore_client import init_meeting
from meetcore_jwt import mint_token
from meetcore_server.testing import ServeProcess, clean_env
from meetcore_videosdk import _signaling as signaling_module
from meetcore_videosdk._signaling import MAX_FRAME_BYTES

KEYS = {"test-key": "test-secret-of-at-least-32-bytes!!"}
TOKEN = mint_token(api_key="test-key", secret=KEYS["test-key"])
ROOM = "abc-def-ghi"
SDK_SCRIPT = Path(__file__).with_name("sdk_join.py")


@pytest.fixture
def client(in_process: Any) -> Iterator[TestClient]:
    """The server in process, its engine opened in the test client's event loop."""
    with in_process(KEYS, ROOM) as test:
        yield test


def url(**query: str) -> str:
    base = {"roomId": ROOM, "peerId": "p1", "secret": TOKEN, "mode": "SEND_AND_RECV"}
    base.update(query)
    return "/videosdk/?" + "&".join(f"{k}={v}" for k, v in base.items() if v != "-")


def request(method: str, data: dict[str, Any] | None = None, rid: int = 1) -> str:
    return json.dumps({"request": True, "id": rid, "method": method, "data": data or {}})


@pytest.mark.parametrize(
    ("query", "code"),
    [
        ({"roomId": "-"}, 3073),
        ({"peerId": "-"}, 3073),
        ({"peerId": "x" * 500}, 3073),
        ({"peerId": "a%00b"}, 3073),
        ({"mode": "GOD"}, 3073),
        ({"secret": "-"}, 4002),
        ({"secret": "nope"}, 4002),
        ({"secret": "eyJ" + "x" * 9000}, 4002),
    ],
)
def test_bad_query_parameters_close_with_a_code_and_a_reason(
    client: TestClient, query: dict[str, str], code: int
) -> None:
    with (
        client.websocket_connect(url(**query), subprotocols=["protoo"]) as ws,
        pytest.raises(WebSocketDisconnect) as closed,
    ):
        ws.receive_text()
    assert closed.value.code == code
    assert closed.value.reason and "Traceback" not in closed.value.reason


def test_protoo_is_selected_and_bad_requests_get_error_responses(client: TestClient) -> None:
    with client.websocket_connect(url(), subprotocols=["protoo"]) as ws:
        assert ws.accepted_subprotocol == "protoo"
        ws.send_text(request("getRouterRtpCapabilities"))
        caps = json.loads(ws.receive_text())
        assert caps["ok"] and caps["data"]["codecs"][0]["mimeType"] == "audio/opus"
        for message, code in [
            (request("frobnicate", rid=2), 3073),
            (request("connectWebRtcTransport", {"transportId": 7}, rid=3), 3073),
            (
                request(
                    "connectWebRtcTransport",
                    {"transportId": "x", "dtlsParameters": {"role": "server", "fingerprints": []}},
                    rid=4,
                ),
                3073,
            ),
            (request("produceData", rid=5), 3035),
            (request("join", {"displayName": "x" * 1000}, rid=6), 3073),
            (request("join", {"displayName": 5}, rid=7), 3073),
        ]:
            ws.send_text(message)
            answer = json.loads(ws.receive_text())
            assert answer["ok"] is False and answer["errorCode"] == code, answer
            assert answer["id"] == json.loads(message)["id"]
        ws.send_text(json.dumps({"notification": True, "method": "whatever"}))  # ignored
        ws.send_text(request("requestEntry", rid=8))
        assert json.loads(ws.receive_text()) == {"response": True, "id": 8, "ok": True, "data": {}}


@pytest.mark.parametrize(
    ("frame", "code"),
    [
        ("{not json", 1007),
        ("[" * 5000, 1007),
        (json.dumps({"request": True, "method": "join"}), 1007),
        ("x" * (MAX_FRAME_BYTES + 1), 1009),
    ],
)
def test_unreadable_frames_close_with_a_reason(client: TestClient, frame: str, code: int) -> None:
    with client.websocket_connect(url(), subprotocols=["protoo"]) as ws:
        ws.send_text(frame)
        with pytest.raises(WebSocketDisconnect) as closed:
            ws.receive_text()
    assert closed.value.code == code and closed.value.reason


def test_join_answers_peers_and_announces_who_is_in(client: TestClient) -> None:
    with client.websocket_connect(url(peerId="first"), subprotocols=["protoo"]) as first:
        first.send_text(request("join", {"displayName": "First", "metaData": {"a": 1}}))
        assert json.loads(first.receive_text())["data"] == {"peers": [], "messages": []}
        first.send_text(request("join", {"displayName": "again"}, rid=2))
        assert json.loads(first.receive_text())["errorCode"] == 3054
        with client.websocket_connect(url(peerId="second"), subprotocols=["protoo"]) as second:
            second.send_text(request("join", {"displayName": "Second"}))
            answer = json.loads(second.receive_text())
            assert [p["id"] for p in answer["data"]["peers"]] == ["first"]
            announced = json.loads(second.receive_text())
            assert announced["method"] == "newPeer"
            assert announced["data"] == {
                "id": "first",
                "displayName": "First",
                "device": "Unknown",
                "mode": "SEND_AND_RECV",
                "metaData": {"a": 1},
                "peerType": "normal",
            }
            joined = json.loads(first.receive_text())
            assert (joined["method"], joined["data"]["id"]) == ("newPeer", "second")
        left = json.loads(first.receive_text())
        assert left == {"notification": True, "method": "peerClosed", "data": {"peerId": "second"}}


# -- the real SDK ------------------------------------------------------------------------


async def _line(stream: asyncio.StreamReader, timeout: float = 30) -> dict[str, Any]:
    while True:
        raw = await asyncio.wait_for(stream.readline(), timeout)
        if not raw:
            raise EOFError("the SDK's script ended")
        try:
            return dict(json.loads(raw))
        except ValueError:
            continue


@pytest.mark.slow
def test_the_real_sdk_joins_and_sees_meetcore_participants(
    tmp_path: Path,
    sdk_python: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    command = [sys.executable, "-m", "meetcore.cli", "serve", "--port", "0", "--dev"]
    command += ["--dev-tls", "--store", "memory://"]
    env = {"MEETCORE_ICE_ADDRESSES": "127.0.0.1"}
    with ServeProcess(tmp_path, command=command, env=env) as server:
        ca = str(tmp_path / "meetcore-dev-ca.pem")
        monkeypatch.setenv("SSL_CERT_FILE", ca)
        trust = ssl.create_default_context(cafile=ca)
        token = httpx.get(f"{server.url}/get-token", verify=trust, timeout=10).json()["token"]
        made = httpx.post(
            f"{server.url}/v2/rooms",
            headers={"Authorization": token},
            json={"customRoomId": ROOM},
            verify=trust,
            timeout=10,
        )
        assert made.status_code == 200, made.text
        base = server.url.removeprefix("https://")
        asyncio.run(_with_the_sdk(sdk_python, token, base, server.url, ca, server))


async def _with_the_sdk(
    python: Path, token: str, base: str, server_url: str, ca: str, server: ServeProcess
) -> None:
    sdk_env = clean_env({"REQUESTS_CA_BUNDLE": ca, "SSL_CERT_FILE": ca})
    process = await asyncio.create_subprocess_exec(
        str(python),
        str(SDK_SCRIPT),
        ROOM,
        token,
        base,
        "From the SDK",
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env=sdk_env,
    )
    assert process.stdout is not None and process.stdin is not None
    try:
        assert await _line(process.stdout) == {"event": "meeting-joined"}
        meeting = init_meeting(base_url=server_url, token=token, meeting_id=ROOM, name="Native")
        seen: list[tuple[str, str]] = []
        meeting.on("participant-joined", lambda p: seen.append(("joined", p.id)))
        meeting.on("participant-left", lambda p, *_: seen.append(("left", p.id)))
        await meeting.join()
        assert "sdk-peer" in meeting.participants, meeting.participants
        assert meeting.participants["sdk-peer"].display_name == "From the SDK"
        joined = await _line(process.stdout)
        assert joined["event"] == "participant-joined", joined
        assert joined["name"] == "Native" and joined["id"] == meeting.local_participant.id
        await meeting.leave()
        left = await _line(process.stdout)
        assert left == {"event": "participant-left", "id": joined["id"]}

        again = init_meeting(base_url=server_url, token=token, meeting_id=ROOM, name="Watcher")
        gone: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        again.on(
            "participant-left",
            lambda p, reason=None: gone.done() or gone.set_result((p.id, reason)),
        )
        await again.join()
        assert "sdk-peer" in again.participants
        process.stdin.write(b"leave\n")
        await process.stdin.drain()
        who, reason = await asyncio.wait_for(gone, 20)
        assert who == "sdk-peer"
        assert reason is None or getattr(reason, "code", 1101) == 1101, reason
        await again.leave()
    finally:
        if process.returncode is None:
            process.kill()
        _, err = await process.communicate()
        if sys.exc_info()[0] is not None:
            print(err.decode(errors="replace")[-4000:])
            print("\n".join(server.lines[-40:]))


def test_a_socket_that_never_joins_is_closed_saying_so(
    client: TestClient, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setattr(signaling_module, "JOIN_TIMEOUT", 0.3)
    with (
        client.websocket_connect(url(), subprotocols=["protoo"]) as ws,
        pytest.raises(WebSocketDisconnect) as closed,
    ):
        ws.receive_text()
    assert (closed.value.code, closed.value.reason) == (3073, "no join in time")
    assert "Traceback" not in caplog.text and "failed" not in caplog.text


def test_videosdk_s_older_mode_names_are_meetcore_s(client: TestClient) -> None:
    with client.websocket_connect(url(mode="VIEWER"), subprotocols=["protoo"]) as ws:
        ws.send_text(request("join", {"displayName": "Old"}))
        answer = json.loads(ws.receive_text())
        assert answer["ok"] is True, answer
        ws.send_text(request("join", {"displayName": "Again"}, rid=2))
        again = json.loads(ws.receive_text())
        assert (again["ok"], again["errorCode"]) == (False, 3054), again


def test_an_ask_join_token_waits_and_unanswered_is_refused_and_withdrawn(
    client: TestClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(signaling_module, "ENTRY_TIMEOUT", 0.5)
    asking = mint_token(api_key="test-key", secret=KEYS["test-key"], permissions=["ask_join"])
    with client.websocket_connect(url(secret=asking), subprotocols=["protoo"]) as ws:
        ws.send_text(request("join", {"displayName": "Waiting"}))
        answer = json.loads(ws.receive_text())
    assert (answer["ok"], answer["errorCode"]) == (False, 3079), answer
    assert "nobody let" in answer["errorReason"]
    # the request was withdrawn: the same participant asks again and waits again
    with client.websocket_connect(url(secret=asking), subprotocols=["protoo"]) as ws:
        ws.send_text(request("join", {"displayName": "Waiting"}))
        assert json.loads(ws.receive_text())["errorCode"] == 3079
