"""What may use a SQLite file while a `meetcore serve` serves it (issue 19).

One process keeps a file's leases (`tests/sqlite/test_one_server.py` shows the second
refused); the readers (`meetcore replay`, `inspect`, `export`), the `meetcore webhooks`
commands and engines that keep no leases still open it, and none of them expires the
server's participants. A store that can neither share nor claim leases (a third party's)
opens with a warning naming the danger.
"""

from __future__ import annotations

import json
import logging
import os
import re
import stat
import sys
from collections.abc import Sequence
from pathlib import Path

import anyio
import httpx
import pytest
import websockets

import meetcore_sqlite
from meetcore import (
    Engine,
    EventStore,
    ExclusiveLeases,
    LeaveReason,
    MemoryStore,
    Record,
    StoreBusy,
)
from meetcore.commands import AnyCommand, InitMeeting, Join
from meetcore.events import AnyEvent, ParticipantLeft
from meetcore_jwt import ensure_dev_keys, mint_token
from meetcore_server.testing import ServeProcess, clean_env
from meetcore_sqlite import SQLiteStore

pytestmark = pytest.mark.anyio

DOCS = Path(__file__).parents[2] / "docs"

WRITER = """\
import sys, anyio, meetcore_sqlite
from meetcore import Engine
from meetcore.commands import InitMeeting

async def main() -> None:
    async with Engine.open(
        sys.argv[1], plugins=[meetcore_sqlite], autoload=False, sweep_leases=False
    ) as engine:
        records = await engine.execute(InitMeeting(meeting_id="from-a-script"))
        print("appended", [r.version for r in records])

anyio.run(main)
"""


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


async def meetcore(*args: str, cwd: Path) -> tuple[int, str]:
    """Run the `meetcore` command line in another process: its exit code and output."""
    done = await anyio.run_process(
        [sys.executable, "-m", "meetcore.cli", *args],
        cwd=cwd,
        env=clean_env(None),
        check=False,
    )
    return done.returncode, (done.stdout + done.stderr).decode()


@pytest.mark.slow
async def test_readers_tools_and_lease_free_writers_use_a_served_file(tmp_path: Path) -> None:
    """While a server holds the file's leases and a participant pings it: replay
    (--verify), inspect, export, `meetcore webhooks status` and a script whose engine keeps
    no leases all work on the file, and the participant is never made to leave."""
    server = ServeProcess(tmp_path, dev=False, lease_ttl=1.0).wait_ready()
    url = server.store
    try:
        api_key, secret = ensure_dev_keys(tmp_path / "meetcore-keys.json")
        token = mint_token(api_key=api_key, secret=secret)
        auth = {"Authorization": token}
        async with httpx.AsyncClient(base_url=server.url, timeout=10) as http:
            room = (await http.post("/v2/rooms", headers=auth)).json()["roomId"]
            async with websockets.connect(server.url.replace("http://", "ws://") + "/ws") as ada:
                hello = {"type": "join", "token": token, "meetingId": room, "participantId": "ada"}
                await ada.send(json.dumps(hello))
                assert json.loads(await ada.recv())["type"] == "welcome"
                pinging = True

                async def pings() -> None:
                    """Ada's pings, answered, and no leave of hers, until told to stop."""
                    n = 0
                    while pinging:
                        await ada.send(json.dumps({"type": "ping", "requestId": n}))
                        while (message := json.loads(await ada.recv()))["type"] == "events":
                            events = [e["event"] for e in message["events"]]
                            left = [e for e in events if e["type"] == "participant-left"]
                            assert left == [], "ada was made to leave"
                        assert message == {"type": "pong", "requestId": n}
                        n += 1
                        await anyio.sleep(0.2)

                async with anyio.create_task_group() as tasks:
                    tasks.start_soon(pings)
                    code, output = await meetcore("replay", url, "--verify", cwd=tmp_path)
                    assert code == 0, output
                    code, output = await meetcore(
                        "inspect", "--store", url, "--meeting", room, "--json", cwd=tmp_path
                    )
                    assert code == 0, output
                    assert list(json.loads(output)["state"]["participants"]) == ["ada"], output
                    code, output = await meetcore(
                        "export", "--store", url, "--meeting", room, cwd=tmp_path
                    )
                    assert code == 0, output
                    types = [json.loads(line)["event"]["type"] for line in output.splitlines()]
                    assert types == ["meeting-initialized", "session-started", "participant-joined"]
                    code, output = await meetcore(
                        "webhooks", "status", "--store", url, cwd=tmp_path
                    )
                    assert code == 0, output
                    written = await anyio.run_process(
                        [sys.executable, "-c", WRITER, url], cwd=tmp_path, env=clean_env(None)
                    )
                    assert written.stdout.decode() == "appended [1]\n"
                    code, output = await meetcore(
                        "inspect", url, "--meeting", "from-a-script", "--json", cwd=tmp_path
                    )
                    assert code == 0, output
                    assert json.loads(output)["state"]["version"] == 1, output
                    # real time: past a lease time after the last of them, ada still in
                    await anyio.sleep(1.5)
                    pinging = False
                sessions = (await http.get(f"/v2/sessions?roomId={room}", headers=auth)).json()
                active = await http.get(
                    f"/v2/sessions/{sessions['data'][0]['id']}/participants/active", headers=auth
                )
                assert [p["participantId"] for p in active.json()["data"]] == ["ada"]
        server.check_alive()
        assert "Traceback" not in server.output, server.output
    finally:
        server.kill()
    code, output = await meetcore("replay", url, "--verify", cwd=tmp_path)
    assert code == 0, output


async def test_the_refusal_reads_as_the_docs_show_it(tmp_path: Path) -> None:
    """The line in docs/storage.md is the one a second engine gets, word for word but
    for the path, the process, the host and the time."""
    block = re.search(r"```text\n(meetcore: error: .*already served.*)\n```", _read("storage.md"))
    assert block is not None, "docs/storage.md shows no refusal"
    shown = block.group(1).removeprefix("meetcore: error: ")
    pattern = re.escape(shown)
    for example, what in (
        (re.escape("meetcore.db"), r".+meetcore\.db"),
        (re.escape("pid 4242"), r"pid \d+"),
        (re.escape("node-1"), r"\S+"),
        (re.escape("2026-12-03 17:20:00 UTC"), r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d \S+"),
    ):
        assert example in pattern, f"{example} is not in the documented line"
        pattern = pattern.replace(example, what, 1)
    url = f"sqlite:///{tmp_path / 'meetcore.db'}"
    async with Engine.open(url, plugins=[meetcore_sqlite], autoload=False):
        with pytest.raises(StoreBusy) as refused:
            async with Engine.open(url, plugins=[meetcore_sqlite], autoload=False):
                pass
    assert re.fullmatch(pattern, str(refused.value)), (pattern, str(refused.value))
    assert shown in _read("embedding.md")


def _read(name: str) -> str:
    return (DOCS / name).read_text()


class NoLeases:
    """A third party's store: the log only, neither `SharedLeases` nor `ExclusiveLeases`."""

    def __init__(self) -> None:
        self._inner = MemoryStore()

    async def append(
        self,
        meeting_id: str,
        expected_version: int,
        events: Sequence[AnyEvent],
        cause: AnyCommand | None,
    ) -> list[Record]:
        return await self._inner.append(meeting_id, expected_version, events, cause)

    async def read(self, meeting_id: str, after_version: int = 0) -> list[Record]:
        return await self._inner.read(meeting_id, after_version)

    async def read_all(self, after_position: int = 0, limit: int = 1000) -> list[Record]:
        return await self._inner.read_all(after_position, limit)

    async def close(self) -> None:
        await self._inner.close()


async def test_a_store_that_cannot_claim_leases_opens_with_a_warning(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Nothing can refuse the second engine on such a store, so each engine that keeps
    leases on it says, once, what two of them would do; one that keeps none says
    nothing."""
    store = NoLeases()
    assert isinstance(store, EventStore) and not isinstance(store, ExclusiveLeases)
    with caplog.at_level(logging.WARNING, logger="meetcore.engine"):
        async with Engine.open(store, autoload=False) as engine:
            await engine.execute(InitMeeting(meeting_id="room"))
            join = Join(
                meeting_id="room", participant_id="p", connection_id="c", session_id="s", name="P"
            )
            await engine.execute(join)
        warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
        assert len(warnings) == 1, [r.getMessage() for r in warnings]
        said = warnings[0].getMessage()
        assert "neither ExclusiveLeases nor SharedLeases" in said
        assert "would expire this one's participants" in said
        caplog.clear()
        async with Engine.open(store, autoload=False, sweep_leases=False):
            pass
        async with Engine.open("memory://", autoload=False):
            pass
        assert [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING] == []


def _join(participant: str) -> Join:
    return Join(
        meeting_id="room",
        participant_id=participant,
        connection_id=f"c-{participant}",
        session_id="s",
        name=participant,
    )


async def test_what_a_lease_free_engine_writes_reaches_the_server_late_and_is_its_lease(
    tmp_path: Path,
) -> None:
    """As docs/storage.md says: the serving engine hands on another process's records at
    its own next command in the meeting (SQLite wakes nobody), and takes that process's
    join for a lease of its own, which nobody renews: 1001 a lease time later."""
    url = f"sqlite:///{tmp_path / 'meetcore.db'}"
    plugins = [meetcore_sqlite]
    async with (
        Engine.open(url, plugins=plugins, autoload=False, lease_ttl=0.5) as server,
        Engine.open(url, plugins=plugins, autoload=False, sweep_leases=False) as script,
    ):
        await server.execute(InitMeeting(meeting_id="room"))
        seen: list[tuple[int, str | None]] = []

        async def follow() -> None:
            async for record in server.subscribe("room", 0):
                seen.append((record.version, getattr(record.event, "participant_id", None)))

        async with anyio.create_task_group() as tasks:
            tasks.start_soon(follow)
            with anyio.fail_after(5):  # the subscription has read the log: live from here
                while seen != [(1, None)]:
                    await anyio.sleep(0.01)
            await script.execute(_join("bob"))
            await anyio.sleep(1.0)  # real time: two of the server's lease times, told nothing
            assert seen == [(1, None)], "the server was told of bob's join"
            await server.execute(_join("ada"))
            with anyio.fail_after(5):
                while len(seen) < 4:
                    await anyio.sleep(0.02)
            assert seen == [(1, None), (2, None), (3, "bob"), (4, "ada")]
            with anyio.fail_after(5):  # ada is renewed, bob is not
                while len(seen) < 5:
                    assert server.renew("room", "c-ada")
                    await anyio.sleep(0.1)
            for _ in range(6):  # and past another lease time, nothing more
                assert server.renew("room", "c-ada")
                await anyio.sleep(0.1)
            tasks.cancel_scope.cancel()
        records = await server.store.read("room")
        left = [r.event for r in records if r.version > 4]
        assert left == [
            ParticipantLeft(
                meeting_id="room",
                at=left[0].at,
                participant_id="bob",
                connection_id="c-bob",
                reason=LeaveReason.WEBSOCKET_DISCONNECTED,
            )
        ]
        state = await server.state("room")
        assert state is not None and list(state.participants) == ["ada"]


@pytest.mark.parametrize("mode", [0o600, 0o640, 0o660, 0o666])
async def test_the_lock_file_has_the_database_s_permissions(tmp_path: Path, mode: int) -> None:
    """As SQLite gives its -wal and -shm files, whatever the umask: a user who may write
    the database may claim it after another user served it (a -leases file only its
    creator could open kept every other user's server out for good)."""
    path = tmp_path / "meetcore.db"
    store = SQLiteStore(path)
    await store.close()
    path.chmod(mode)
    umask = os.umask(0o077)
    try:
        store = SQLiteStore(path)
        try:
            await store.claim_leases("a server")
        finally:
            await store.close()
    finally:
        os.umask(umask)
    assert stat.S_IMODE((tmp_path / "meetcore.db-leases").stat().st_mode) == mode


@pytest.mark.skipif(os.geteuid() != 0, reason="only root gives a file to another user")
async def test_a_lock_file_root_makes_is_the_database_owner_s(tmp_path: Path) -> None:
    """As SQLite does for its -wal file: a server run once as root on a user's database
    leaves a -leases file that user can still open (root's own would lock them out)."""
    path = tmp_path / "meetcore.db"
    store = SQLiteStore(path)
    await store.close()
    os.chown(path, 65534, 65533)
    store = SQLiteStore(path)
    try:
        await store.claim_leases("root's server")
    finally:
        await store.close()
    made = (tmp_path / "meetcore.db-leases").stat()
    assert (made.st_uid, made.st_gid) == (65534, 65533)
