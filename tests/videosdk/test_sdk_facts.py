"""The facts of VideoSDK's protocol meetcore-videosdk relies on, read from the SDK
installed at the version the tests pin (conftest.py): a new version that changes one
fails here, naming it, before the meetings in test_media.py fail less clearly. Checked
by running the SDK's own code where it decides (the ICE servers' decryption), and by
finding the names it sends and handles in its source otherwise."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest
from support import VIDEOSDK

from meetcore_videosdk import INIT_CONFIG_PATH, encrypt_ice_servers

pytestmark = pytest.mark.slow  # installs the SDK (once a session)

#: Requests the SDK sends that meetcore answers.
CLIENT_REQUESTS = [
    "getRouterRtpCapabilities",
    "createWebRtcTransport",
    "connectWebRtcTransport",
    "requestEntry",
    "join",
    "produce",
    "produceData",
    "closeProducer",
    "resumeConsumer",
    "closeRoom",
    "removePeer",
]
#: Messages meetcore sends that the SDK handles.
SERVER_MESSAGES = [
    "newPeer",
    "peerClosed",
    "newConsumer",
    "consumerClosed",
    "participantMediaStateChanged",
    "close",
]


def sdk_source(python: Path, module: str) -> str:
    where = subprocess.run(
        [str(python), "-c", f"import {module} as m; print(m.__file__)"],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    ).stdout.strip()
    return Path(where).read_text()


def test_the_sdk_is_the_pinned_version(sdk_python: Path) -> None:
    version = subprocess.run(
        [str(sdk_python), "-c", "import importlib.metadata as m; print(m.version('videosdk'))"],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    ).stdout.strip()
    assert f"videosdk=={version}" == VIDEOSDK


def test_its_requests_and_the_messages_it_handles_are_the_ones_served(sdk_python: Path) -> None:
    source = sdk_source(sdk_python, "videosdk.room_client")
    for name in CLIENT_REQUESTS + SERVER_MESSAGES:
        assert f'"{name}"' in source, f"videosdk no longer sends or handles {name!r}"
    # a newConsumer must say whose stream it is where the SDK looks (appData.peerId)
    assert 'consumer.appData["peerId"]' in sdk_source(sdk_python, "videosdk.participant")


def test_init_config_is_where_we_serve_it_and_the_ice_servers_decrypt(sdk_python: Path) -> None:
    utils = sdk_source(sdk_python, "videosdk.utils")
    assert INIT_CONFIG_PATH in utils, "the SDK's init-config moved"
    servers = [{"urls": "stun:127.0.0.1:3478"}]
    decrypted = subprocess.run(
        [
            str(sdk_python),
            "-c",
            "import json, sys; from videosdk.utils import aes_decrypt; "
            "print(json.dumps(aes_decrypt(sys.argv[1])))",
            encrypt_ice_servers(servers),
        ],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    ).stdout
    assert json.loads(decrypted) == servers
