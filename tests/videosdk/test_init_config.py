"""`POST /infra/v1/meetings/server-init-config` (meetcore-videosdk): what VideoSDK's
Python SDK asks first. In process for the answers and refusals; then the real,
unmodified SDK (videosdk 0.4.1, in a virtual environment of its own: its pins clash
with ours) against a real `meetcore serve --dev-tls`."""

from __future__ import annotations

import base64
import json
import logging
import ssl
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

import meetcore_videosdk.plugin
from meetcore import Engine
from meetcore_jwt import JWTAuth, mint_token
from meetcore_server.app import Server
from meetcore_server.testing import ServeProcess, clean_env
from meetcore_videosdk import INIT_CONFIG_PATH, encrypt_ice_servers

pytestmark = pytest.mark.anyio

KEYS = {"test-key": "test-secret-of-at-least-32-bytes!!"}
TOKEN = mint_token(api_key="test-key", secret=KEYS["test-key"])


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
async def http() -> AsyncIterator[httpx.AsyncClient]:
    plugins = [JWTAuth(KEYS), meetcore_videosdk.plugin]
    async with Engine.open("memory://", plugins=plugins, autoload=False) as engine:
        app = Server(engine).app
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
            yield client


def test_the_ice_servers_are_encrypted_as_the_sdk_decrypts_them() -> None:
    assert encrypt_ice_servers([]) == "DGO2b2NTLB3rcWF9q/O+Pg=="  # observed from the SDK's side
    one = base64.b64decode(encrypt_ice_servers(["stun:stun.example.com:3478"]))
    assert len(one) % 16 == 0 and len(one) > 16


async def test_a_good_token_gets_the_signaling_url_and_the_ice_servers(
    http: httpx.AsyncClient,
) -> None:
    answer = await http.post(
        INIT_CONFIG_PATH, headers={"Authorization": TOKEN}, json={"roomId": "abc-def-ghi"}
    )
    assert answer.status_code == 200, answer.text
    assert answer.json() == {
        "data": {
            "baseUrl": "testserver",
            "signalingUrl": "ws://testserver/videosdk",
            "iceServers": "DGO2b2NTLB3rcWF9q/O+Pg==",
        }
    }


@pytest.mark.parametrize(
    ("headers", "body", "status", "code"),
    [
        ({}, b'{"roomId": "r"}', 401, 4002),
        ({"Authorization": "nope"}, b'{"roomId": "r"}', 401, 4002),
        ({"Authorization": "eyJ" + "x" * 9000}, b'{"roomId": "r"}', 401, 4002),
        ({"Authorization": TOKEN[:-4]}, b'{"roomId": "r"}', 401, 4002),
        ({"Authorization": "TOKEN"}, b"not json", 400, 3073),
        ({"Authorization": "TOKEN"}, b"{}", 400, 3073),
        ({"Authorization": "TOKEN"}, b'{"roomId": 7}', 400, 3073),
        ({"Authorization": "TOKEN"}, b"[" * 70_000, 413, 3073),
        ({"Authorization": "TOKEN", "Host": "evil.example/x?"}, b'{"roomId": "r"}', 400, 3073),
    ],
)
async def test_every_refusal_is_a_4xx_with_its_code_never_a_2xx_without_data(
    http: httpx.AsyncClient,
    caplog: pytest.LogCaptureFixture,
    headers: dict[str, str],
    body: bytes,
    status: int,
    code: int,
) -> None:
    headers = {k: TOKEN if v == "TOKEN" else v for k, v in headers.items()}
    with caplog.at_level(logging.INFO, logger="meetcore.videosdk"):
        answer = await http.post(INIT_CONFIG_PATH, headers=headers, content=body)
    assert answer.status_code == status, answer.text
    assert answer.json()["code"] == code
    assert "data" not in answer.json()
    # the app sees only "Failed to Join in the Meeting": the server's log says why, in
    # one line
    (line,) = [r.getMessage() for r in caplog.records]
    assert line.startswith("refused server-init-config for ") and "\n" not in line
    assert f": {code} {answer.json()['error']}" in line


async def test_a_token_for_another_room_is_refused(
    http: httpx.AsyncClient, caplog: pytest.LogCaptureFixture
) -> None:
    bound = mint_token(api_key="test-key", secret=KEYS["test-key"], room_id="other-room")
    with caplog.at_level(logging.INFO, logger="meetcore.videosdk"):
        answer = await http.post(
            INIT_CONFIG_PATH, headers={"Authorization": bound}, json={"roomId": "abc-def-ghi"}
        )
    assert answer.status_code == 403, answer.text
    assert answer.json()["code"] == 4022
    assert caplog.messages == [
        f"refused server-init-config for abc-def-ghi: 4022 {answer.json()['error']}"
    ]


async def test_the_rules_of_every_front_end_apply(http: httpx.AsyncClient) -> None:
    """meetcore.auth's: a crawler-only token may not join, Bearer is taken too."""
    crawler = mint_token(api_key="test-key", secret=KEYS["test-key"], roles=["crawler"])
    answer = await http.post(
        INIT_CONFIG_PATH, headers={"Authorization": crawler}, json={"roomId": "abc-def-ghi"}
    )
    assert (answer.status_code, answer.json()["code"]) == (403, 4024), answer.text
    answer = await http.post(
        INIT_CONFIG_PATH, headers={"Authorization": f"Bearer {TOKEN}"}, json={"roomId": "r"}
    )
    assert answer.status_code == 200, answer.text


async def test_a_node_with_a_public_url_sends_the_sdk_there() -> None:
    plugins = [JWTAuth(KEYS), meetcore_videosdk.plugin]
    async with Engine.open("memory://", plugins=plugins, autoload=False) as engine:
        app = Server(engine, public_url="https://meet.example.com:8443").app
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://10.0.0.5") as http:
            answer = await http.post(
                INIT_CONFIG_PATH, headers={"Authorization": TOKEN}, json={"roomId": "r"}
            )
    data = answer.json()["data"]
    assert data["signalingUrl"] == "wss://meet.example.com:8443/videosdk", data
    assert data["baseUrl"] == "meet.example.com:8443"


# -- the real SDK ------------------------------------------------------------------------

SDK_SCRIPT = """
import json, sys
from videosdk.exceptions import MeetingInitializationError
from videosdk.utils import get_server_config
try:
    config = get_server_config(sys.argv[1], sys.argv[2], sys.argv[3])
except MeetingInitializationError as error:
    print(json.dumps({"refused": str(error)[:300]}))
else:
    servers = [{"urls": s.urls, "username": s.username} for s in config["ice_servers"]]
    print(json.dumps({"signaling_url": config["signaling_url"], "base_url": config["base_url"],
                      "ice_servers": servers}))
"""


@pytest.mark.slow
@pytest.mark.parametrize("ice", ["", "stun:stun.example.com:3478,turn:127.0.0.1:3478"])
def test_the_sdk_reads_its_configuration_from_meetcore(
    tmp_path: Path, sdk_python: Path, ice: str
) -> None:
    command = [sys.executable, "-m", "meetcore.cli", "serve", "--port", "0", "--dev"]
    command += ["--dev-tls", "--store", "memory://"]
    env = {"MEETCORE_ICE_SERVERS": ice} if ice else {}
    with ServeProcess(tmp_path, command=command, env=env) as server:
        ca = str(tmp_path / "meetcore-dev-ca.pem")
        trust = ssl.create_default_context(cafile=ca)
        token = httpx.get(f"{server.url}/get-token", verify=trust, timeout=10).json()["token"]
        base = server.url.removeprefix("https://")
        script = tmp_path / "config.py"
        script.write_text(SDK_SCRIPT)

        def sdk(token: str) -> dict[str, object]:
            done = subprocess.run(
                [sdk_python, str(script), "abc-def-ghi", token, base],
                capture_output=True,
                text=True,
                timeout=120,
                env=clean_env({"REQUESTS_CA_BUNDLE": ca}),
                check=True,
            )
            return dict(json.loads(done.stdout))

        config = sdk(token)
        assert config["signaling_url"] == f"wss://{base}/videosdk", config
        assert config["base_url"] == base
        urls = [s["urls"] for s in config["ice_servers"]]  # type: ignore[attr-defined]
        assert urls == (ice.split(",") if ice else []), config
        refused = sdk("not-a-token")
        assert "401" in str(refused.get("refused")), refused  # no fallback to VideoSDK's cloud
