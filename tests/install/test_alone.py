"""Each new distribution installs and works alone, in a fresh virtual environment with
only what it declares: meetcore-client without media joins a meeting; meetcore-server
without meetcore-media serves one (and says media needs it); meetcore-media runs its
checks of aiortc. Installed from the checkout, dependencies at the tested pins."""

from __future__ import annotations

import json
import shutil
import subprocess
import tomllib
from collections.abc import Iterator
from pathlib import Path

import pytest
from support import eventually, fresh_venv

from meetcore_client import init_meeting
from meetcore_server.testing import ServeProcess, clean_env

pytestmark = [pytest.mark.slow, pytest.mark.anyio]


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"  # the client runs on asyncio


ROOT = Path(__file__).resolve().parents[2]
UV = shutil.which("uv")
#: What each distribution is installed with: itself and the first-party ones it needs.
FOLDERS = {
    "meetcore-client": ["engine", "plugins/protocol", "plugins/client"],
    "meetcore-server": [
        "engine",
        "plugins/protocol",
        "plugins/sqlite",
        "plugins/jwt",
        "plugins/server",
    ],
    "meetcore-media": ["engine", "plugins/media"],
}

CLIENT_SCRIPT = """
import asyncio, json, sys
from meetcore_client import init_meeting

async def main(url, token, room):
    seen = []
    meeting = init_meeting(base_url=url, token=token, meeting_id=room, name="Alone",
                           participant_id="alone")
    meeting.on("participant-joined", lambda p: seen.append(p.display_name))
    await meeting.join()
    print(json.dumps({"joined": meeting.local_participant.id}), flush=True)
    for _ in range(300):
        if seen:
            break
        await asyncio.sleep(0.05)
    await meeting.leave()
    media = [m for m in ("aiortc", "av") if m in sys.modules]
    print(json.dumps({"seen": seen, "media": media}), flush=True)

asyncio.run(main(*sys.argv[1:4]))
"""


def _venv(tmp_path: Path, distribution: str) -> Path:
    """A new virtual environment with `distribution` installed alone; its python."""
    pins = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["uv"]
    constraints = tmp_path / "constraints.txt"
    constraints.write_text("\n".join(pins["constraint-dependencies"]) + "\n")
    folders = [str(ROOT / folder) for folder in FOLDERS[distribution]]
    return fresh_venv(tmp_path, *folders, constraints=constraints)


def _has(python: Path, module: str) -> bool:
    code = f"import importlib.util, sys; sys.exit(importlib.util.find_spec({module!r}) is None)"
    return subprocess.run([python, "-c", code], check=False, timeout=60).returncode == 0


@pytest.fixture
def server(tmp_path: Path) -> Iterator[ServeProcess]:
    """`meetcore serve` of this checkout's environment, with a development key."""
    with ServeProcess(tmp_path, store="memory://") as running:
        yield running


def _token_and_room(server: ServeProcess) -> tuple[str, str]:
    import httpx

    token = httpx.get(f"{server.url}/get-token", timeout=10).json()["token"]
    headers = {"Authorization": token}
    room = httpx.post(f"{server.url}/v2/rooms", headers=headers, timeout=10).json()["roomId"]
    return token, room


async def test_the_client_alone_joins_a_meeting(tmp_path: Path, server: ServeProcess) -> None:
    python = _venv(tmp_path, "meetcore-client")
    assert _has(python, "meetcore_client") and _has(python, "websockets")
    for absent in ("aiortc", "av", "meetcore_media", "meetcore_server", "starlette"):
        assert not _has(python, absent), f"meetcore-client installed {absent}"
    token, room = _token_and_room(server)
    script = tmp_path / "join.py"
    script.write_text(CLIENT_SCRIPT)
    alone = subprocess.Popen(
        [python, str(script), server.url, token, room],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=clean_env(),
    )
    assert alone.stdout is not None
    first = json.loads(alone.stdout.readline() or "{}")
    assert first == {"joined": "alone"}, alone.stderr.read() if alone.stderr else ""
    other = init_meeting(base_url=server.url, token=token, meeting_id=room, name="Other")
    await other.join()
    assert "alone" in other.participants
    out, err = alone.communicate(timeout=60)
    assert alone.returncode == 0, err
    assert json.loads(out) == {"seen": ["Other"], "media": []}, err
    await eventually(lambda: "alone" not in other.participants)
    await other.leave()


async def test_the_server_alone_serves_a_meeting(tmp_path: Path) -> None:
    python = _venv(tmp_path, "meetcore-server")
    for absent in ("aiortc", "av", "meetcore_media", "meetcore_client"):
        assert not _has(python, absent), f"meetcore-server installed {absent}"
    command = [str(python), "-m", "meetcore.cli", "serve", "--port", "0", "--dev"]
    command += ["--store", f"sqlite:///{tmp_path / 'alone.db'}"]
    with ServeProcess(tmp_path, command=command) as alone:
        token, room = _token_and_room(alone)
        ada = init_meeting(base_url=alone.url, token=token, meeting_id=room, name="Ada")
        bob = init_meeting(base_url=alone.url, token=token, meeting_id=room, name="Bob")
        await ada.join()
        await bob.join()
        await eventually(lambda: {p.display_name for p in ada.participants.values()} == {"Bob"})
        await bob.leave()
        await eventually(lambda: not ada.participants)
        await ada.leave()
        help_text = subprocess.run(
            [python, "-m", "meetcore.cli", "serve", "--help"],
            capture_output=True,
            text=True,
            check=True,
            timeout=60,
            env=clean_env(),
        ).stdout
        assert "--plugin" in help_text
        assert "--audio-streams" not in help_text  # meetcore-media's option
        assert "--webhook-allow-network" not in help_text  # meetcore-webhooks'
    assert "Traceback" not in alone.output, alone.output


async def test_the_server_alone_refuses_media_offers_saying_why(tmp_path: Path) -> None:
    import websockets

    python = _venv(tmp_path, "meetcore-server")
    command = [str(python), "-m", "meetcore.cli", "serve", "--port", "0", "--dev"]
    command += ["--store", "memory://"]
    with ServeProcess(tmp_path, command=command) as alone:
        token, room = _token_and_room(alone)
        async with websockets.connect(alone.ws_url) as ws:
            hello = {"type": "join", "token": token, "meetingId": room, "name": "A"}
            await ws.send(json.dumps(hello))
            assert json.loads(await ws.recv())["type"] == "welcome"
            await ws.send(json.dumps({"type": "offer", "sdp": "v=0\r\n", "requestId": 1}))
            while (reply := json.loads(await ws.recv())).get("requestId") != 1:
                pass
    assert reply["type"] == "error" and "install meetcore-media" in reply["message"], reply
    assert "no media: audio and video need meetcore-media installed" in alone.output
    assert "a client offered media: this server has no media" in alone.output


def test_the_media_package_alone_checks_aiortc_and_loads_as_a_plugin(tmp_path: Path) -> None:
    python = _venv(tmp_path, "meetcore-media")
    for absent in ("meetcore_server", "meetcore_client", "starlette"):
        assert not _has(python, absent), f"meetcore-media installed {absent}"
    code = (
        "from meetcore_media._forward import check_internals;"
        "import meetcore, json;"
        "pm = meetcore.plugin_manager();"
        "print(json.dumps({'problems': check_internals(),"
        " 'media': pm.get_plugin('media') is not None}))"
    )
    out = subprocess.run(
        [python, "-c", code], capture_output=True, text=True, check=True, timeout=120
    ).stdout
    assert json.loads(out) == {"problems": [], "media": True}
