"""One process serves a SQLite file (issue 19).

An engine that keeps leases takes every join in the log for a lease of its own and
expires what it does not see renewed: two `meetcore serve` on one file recorded
`participant-left` 1001 for each other's live participants. So the engine claims the
file's leases (`ExclusiveLeases`, an OS lock on `<file>-leases`) and a second serving
process is refused with one line; readers and engines that keep no leases still open it.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
from pathlib import Path

import anyio
import anyio.to_thread
import httpx
import pytest
import websockets

import meetcore_sqlite
from meetcore import Engine, ExclusiveLeases, MemoryStore, StoreBusy, StoreError
from meetcore.commands import InitMeeting, Join
from meetcore_jwt import ensure_dev_keys, mint_token
from meetcore_server.testing import ServeProcess
from meetcore_sqlite import SQLiteStore

pytestmark = pytest.mark.anyio

OPTIONS = {"plugins": [meetcore_sqlite], "autoload": False}


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


async def test_a_second_engine_keeping_leases_on_the_file_is_refused(tmp_path: Path) -> None:
    """In one process too: each store object is a claim of its own. The refusal names
    the holder; once it closes, the file can be claimed again."""
    url = f"sqlite:///{tmp_path / 'meetcore.db'}"
    async with Engine.open(url, **OPTIONS) as first:
        await first.execute(InitMeeting(meeting_id="room"))
        with pytest.raises(StoreBusy) as refused:
            async with Engine.open(url, **OPTIONS):
                pytest.fail("a second engine keeping leases opened the file")
        message = str(refused.value)
        assert f"pid {os.getpid()} on {socket.gethostname()}, since " in message
        assert "one process serves a SQLite file" in message
        assert "PostgreSQL" in message
        # an engine that keeps no leases, and a reader, still open it
        async with Engine.open(url, sweep_leases=False, **OPTIONS) as writer:
            join = Join(
                meeting_id="room", participant_id="p", connection_id="c", session_id="s", name="P"
            )
            await writer.execute(join)
        reader = SQLiteStore(tmp_path / "meetcore.db", read_only=True)
        assert [r.version for r in await reader.read("room")] == [1, 2, 3]
        await reader.close()
    async with Engine.open(url, **OPTIONS) as again:
        assert (await again.state("room")) is not None


async def test_the_same_file_by_another_name_is_the_same_claim(tmp_path: Path) -> None:
    """A relative path, a path through `..`, a symbolic link: one file, one claim."""
    (tmp_path / "sub").mkdir()
    path = tmp_path / "meetcore.db"
    (tmp_path / "link.db").symlink_to(path)
    first = SQLiteStore(path)
    await first.claim_leases("the first")
    try:
        for other in (tmp_path / "sub" / ".." / "meetcore.db", tmp_path / "link.db"):
            store = SQLiteStore(other)
            try:
                with pytest.raises(StoreBusy, match="already served by the first"):
                    await store.claim_leases("another")
            finally:
                await store.close()
        cwd = os.getcwd()
        os.chdir(tmp_path)
        try:
            store = SQLiteStore("meetcore.db")
            with pytest.raises(StoreBusy):
                await store.claim_leases("relative")
            await store.close()
        finally:
            os.chdir(cwd)
    finally:
        await first.close()


async def test_a_store_object_passed_in_is_claimed_and_released() -> None:
    """A store the caller keeps (here a memory store) is claimed while an engine keeping
    leases is open on it, and free again when it closes; a refused engine releases
    nothing of the holder's."""
    store = MemoryStore()
    assert isinstance(store, ExclusiveLeases)
    async with Engine.open(store, autoload=False):
        with pytest.raises(StoreBusy, match="leases are kept by pid"):
            async with Engine.open(store, autoload=False):
                pass
        with pytest.raises(StoreBusy):  # the refusal above did not free the holder's claim
            await store.claim_leases("a third one")
    await store.claim_leases("after the engine closed")


def test_a_killed_holder_frees_the_file(tmp_path: Path) -> None:
    """The lock goes with the process, however it ends: after a SIGKILL the file is
    claimed again at once."""
    path = tmp_path / "meetcore.db"
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import anyio, sys\n"
            "from meetcore_sqlite import SQLiteStore\n"
            "async def main():\n"
            f"    store = SQLiteStore({str(path)!r})\n"
            "    await store.claim_leases('the holder')\n"
            "    print('claimed', flush=True)\n"
            "    await anyio.sleep(60)\n"
            "anyio.run(main)\n",
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline() == "claimed\n"

        async def claim() -> None:
            store = SQLiteStore(path)
            try:
                await store.claim_leases("the second")
            finally:
                await store.close()

        with pytest.raises(StoreBusy, match="already served by the holder"):
            anyio.run(claim)
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait()
    anyio.run(claim)


@pytest.mark.slow
async def test_a_second_meetcore_serve_on_the_file_says_why_and_the_first_serves_on(
    tmp_path: Path,
) -> None:
    """The second `meetcore serve` exits (2) with one line naming the first; the first
    keeps its participant (no 1001 from a second process that never saw its pings).
    After the first is killed (SIGKILL), a new one serves the file."""
    first = ServeProcess(tmp_path, dev=False, lease_ttl=1.0).wait_ready()
    try:
        api_key, secret = ensure_dev_keys(tmp_path / "meetcore-keys.json")
        token = mint_token(api_key=api_key, secret=secret)
        async with httpx.AsyncClient(base_url=first.url, timeout=10) as http:
            created = await http.post("/v2/rooms", headers={"Authorization": token})
            room = created.json()["roomId"]
            ws = first.url.replace("http://", "ws://") + "/ws"
            async with websockets.connect(ws) as ada:
                hello = {"type": "join", "token": token, "meetingId": room, "participantId": "ada"}
                await ada.send(json.dumps(hello))
                assert json.loads(await ada.recv())["type"] == "welcome"

                async def pings(seconds: float) -> None:
                    """Ada's pings, answered, and no leave of hers, for `seconds`."""
                    for n in range(int(seconds / 0.2)):
                        await ada.send(json.dumps({"type": "ping", "requestId": n}))
                        while (message := json.loads(await ada.recv()))["type"] == "events":
                            events = [e["event"] for e in message["events"]]
                            left = [e for e in events if e["type"] == "participant-left"]
                            assert left == [], "ada was made to leave"
                        assert message == {"type": "pong", "requestId": n}
                        await anyio.sleep(0.2)

                async with anyio.create_task_group() as tasks:
                    tasks.start_soon(pings, 3.0)  # meanwhile, three of her lease times
                    second = ServeProcess(tmp_path, dev=False)
                    try:  # a second server that serves (no claim) must not outlive the test
                        code = await anyio.to_thread.run_sync(second.process.wait, 30)
                    finally:
                        second.kill()
                    assert code == 2, second.output
                refusals = [line for line in second.lines if "already served" in line]
                assert len(refusals) == 1, second.output
                assert refusals[0].startswith("meetcore: error: ")
                assert f"pid {first.process.pid} on " in refusals[0]
                assert "serving on" not in second.output, "it said it served"
                await pings(2.0)
                auth = {"Authorization": token}
                sessions = (await http.get(f"/v2/sessions?roomId={room}", headers=auth)).json()
                session_id = sessions["data"][0]["id"]
                active = await http.get(
                    f"/v2/sessions/{session_id}/participants/active", headers=auth
                )
                assert [p["participantId"] for p in active.json()["data"]] == ["ada"]
        first.check_alive()
    finally:
        first.kill()
    with ServeProcess(tmp_path, dev=False) as third:
        third.check_alive()
        third.kill()


async def test_a_lock_file_that_cannot_be_opened_is_a_store_error(tmp_path: Path) -> None:
    """Said in words (a StoreError: `meetcore serve` prints one line), not a traceback."""
    (tmp_path / "meetcore.db-leases").mkdir()
    url = f"sqlite:///{tmp_path / 'meetcore.db'}"
    with pytest.raises(StoreError, match=r"cannot open meetcore\.db-leases to claim the leases"):
        async with Engine.open(url, **OPTIONS):
            pass
