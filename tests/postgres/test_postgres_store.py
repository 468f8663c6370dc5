"""meetcore-postgres beyond the contract: group commit, a gapless global position under
interleaved commits, several writers, the schema and its version, clear errors, lost
connections and notifications, and engines on one database working as one."""

from __future__ import annotations

import subprocess
import sys
import threading
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import anyio
import msgspec
import psycopg
import pytest
from click.testing import CliRunner
from support import eventually

import meetcore
import meetcore_postgres
from meetcore import Conflict, Engine, Record, StoreError, fold, plugin_manager
from meetcore.cli import build_cli
from meetcore.commands import InitMeeting, Join, Leave
from meetcore.events import ParticipantJoined, ParticipantLeft
from meetcore.testing import race_engines, sample_events
from meetcore_postgres import SCHEMA_VERSION, PostgresStore, open_url

pytestmark = pytest.mark.anyio

MEETING = "abc-def-ghi"
PLUGINS = [meetcore_postgres]  # opens postgresql:// URLs with entry points off


@asynccontextmanager
async def opened(url: str, **options: Any) -> AsyncIterator[PostgresStore]:
    store = PostgresStore(url, **options)
    try:
        yield store
    finally:
        await store.close()


async def sql(database: str, statement: str, *parameters: object) -> list[tuple[Any, ...]]:
    """One statement on a connection of our own (not the store's)."""
    async with await psycopg.AsyncConnection.connect(database, autocommit=True) as connection:
        cursor = await connection.execute(statement, parameters)  # type: ignore[arg-type]
        return await cursor.fetchall() if cursor.description else []


async def head_waiters(database: str, store: PostgresStore) -> int:
    """How many sessions wait for a lock in a statement on the store's tables (the
    head row, which another transaction holds)."""
    rows = await sql(
        database,
        "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' "
        "AND strpos(query, %s) > 0",
        f'"{store.schema}".',
    )
    return int(rows[0][0])


async def listening(database: str, store: PostgresStore) -> bool:
    """The store's watcher has LISTENed and read the head (what it reports starts there),
    and waits for notifications: its session is idle after the head's query."""
    if len(store._watchers) != 1:
        return False
    (watcher,) = store._watchers
    rows = await sql(
        database,
        "SELECT count(*) FROM pg_stat_activity WHERE pid = %s AND state = 'idle' AND query = %s",
        watcher.info.backend_pid,
        store._sql.head,
    )
    return rows[0][0] == 1


def join(n: int, meeting_id: str = MEETING, prefix: str = "p") -> Join:
    return Join(
        meeting_id=meeting_id,
        participant_id=f"{prefix}{n}",
        connection_id=f"{prefix}c{n}",
        session_id="s-1",
        name=f"P {n}",
    )


# -- group commit ------------------------------------------------------------------


async def test_appends_that_arrive_together_share_a_transaction(url: str) -> None:
    async with opened(url) as store:
        meetings = [f"m-{n}" for n in range(200)]
        async with anyio.create_task_group() as tasks:
            for meeting_id in meetings:
                tasks.start_soon(store.append, meeting_id, 0, sample_events(meeting_id), None)
        assert store.appends == 200
        assert store.transactions < 100, "concurrent appends should be committed in groups"
        for meeting_id in meetings:
            assert [r.version for r in await store.read(meeting_id)] == [1, 2, 3]
        everything = await store.read_all(limit=10_000)
        assert [r.position for r in everything] == list(range(1, 601))


async def test_a_conflict_in_a_group_spoils_nothing_else(url: str, database: str) -> None:
    async with opened(url) as store:
        await store.append("busy", 0, sample_events("busy", count=2), None)
        before = store.transactions
        outcomes: dict[str, object] = {}

        async def append(name: str, meeting_id: str, expected: int) -> None:
            events = sample_events(meeting_id, start=expected, count=2)
            try:
                outcomes[name] = await store.append(meeting_id, expected, events, None)
            except Conflict as exc:
                outcomes[name] = exc

        # Another node holds the head: the appends queue up, then go in together.
        async with await psycopg.AsyncConnection.connect(database) as blocker:
            await blocker.execute(f'SELECT position FROM "{store.schema}".head FOR UPDATE')
            async with anyio.create_task_group() as tasks:
                tasks.start_soon(append, "first", "m-first", 0)
                await eventually(lambda: head_waiters(database, store))  # it waits for the head
                for n in range(10):
                    tasks.start_soon(append, f"good-{n}", f"m-{n}", 0)
                tasks.start_soon(append, "stale", "busy", 1)
                tasks.start_soon(append, "next", "busy", 2)
                tasks.start_soon(append, "late", "busy", 2)  # the same version, after "next"
                await eventually(lambda: len(store._queue) == 13)  # all queued behind it
                assert outcomes == {}
                await blocker.rollback()

        # 14 appends in two transactions: the first alone, then the 13 queued behind it
        assert store.transactions - before == 2
        stale, late = outcomes.pop("stale"), outcomes.pop("late")
        assert isinstance(stale, Conflict) and stale.actual_version == 2
        assert isinstance(late, Conflict) and late.actual_version == 4
        assert all(isinstance(o, list) and len(o) == 2 for o in outcomes.values()), outcomes
        assert [r.version for r in await store.read("busy")] == [1, 2, 3, 4]
        everything = await store.read_all()
        assert [r.position for r in everything] == list(range(1, len(everything) + 1))


async def test_an_append_that_cannot_be_stored_fails_alone(url: str, database: str) -> None:
    async with opened(url) as store:
        outcomes: dict[str, object] = {}
        joined = sample_events("bad")
        joined[-1] = msgspec.structs.replace(joined[-1], meta_data={"n": 2**70})

        async def append(name: str, meeting_id: str, events: list[Any]) -> None:
            try:
                outcomes[name] = await store.append(meeting_id, 0, events, None)
            except StoreError as exc:
                outcomes[name] = exc

        async with await psycopg.AsyncConnection.connect(database) as blocker:
            await blocker.execute(f'SELECT position FROM "{store.schema}".head FOR UPDATE')
            async with anyio.create_task_group() as tasks:
                tasks.start_soon(append, "first", "first", sample_events("first"))
                await eventually(lambda: head_waiters(database, store))
                tasks.start_soon(append, "good", "good", sample_events("good"))
                tasks.start_soon(append, "huge int", "bad", joined)
                tasks.start_soon(append, "good too", "good-2", sample_events("good-2"))
                await eventually(lambda: len(store._queue) == 3)  # one group, with "bad"
                await blocker.rollback()

        with pytest.raises(StoreError, match=r"cannot store the append to 'bad': .*ints"):
            raise outcomes.pop("huge int")  # type: ignore[misc]
        assert all(isinstance(o, list) and len(o) == 3 for o in outcomes.values()), outcomes
        assert await store.read("bad") == []
        everything = await store.read_all()
        assert [r.position for r in everything] == list(range(1, 10))
        # ids that are not text, numbers past the database's integers
        with pytest.raises(ValueError, match="not valid text"):
            await store.append("\ud800", 0, sample_events("\ud800"), None)
        assert await store.read("\ud800") == []
        assert await store.read("good", 2**70) == []
        assert await store.read_all(2**70) == []
        assert len(await store.read_all(0, 2**70)) == 9


# -- the global position: a tailing reader never passes a late commit ---------------


async def test_a_tailing_reader_never_passes_a_transaction_that_commits_late(
    url: str, database: str
) -> None:
    """Node A's append is held up after it took its positions (its lease insert waits on
    a row lock), while node B appends to another meeting and a reader tails `read_all`.
    With positions handed out under the head lock, B cannot commit a higher position
    before A's lower one: B waits for A, and the reader sees A's records, then B's,
    with no hole it could have skipped."""
    async with opened(url) as slow, opened(url) as fast, opened(url) as reader_store:
        await slow.append("early", 0, sample_events("early", count=2), None)
        schema = slow.schema
        seen: list[Record] = []
        done = anyio.Event()

        async def tail() -> None:
            after = 0
            while True:
                finished = done.is_set()
                batch = await reader_store.read_all(after, limit=5)
                seen.extend(batch)
                if batch:
                    after = batch[-1].position
                elif finished:
                    return
                else:
                    await anyio.sleep(0.002)

        finished: dict[str, list[Record]] = {}

        async def append(store: PostgresStore, meeting_id: str) -> None:
            finished[meeting_id] = await store.append(
                meeting_id, 0, sample_events(meeting_id, count=3), None
            )

        async with await psycopg.AsyncConnection.connect(database) as blocker:
            # an uncommitted lease of the connection that A's append grants: A waits on it
            await blocker.execute(
                f'INSERT INTO "{schema}".leases VALUES (%s, %s, %s, 0)', ("slow", "c1", "p1")
            )
            async with anyio.create_task_group() as tasks:
                tasks.start_soon(tail)
                tasks.start_soon(append, slow, "slow")
                await eventually(lambda: head_waiters(database, slow))  # A holds 3-5, waits
                tasks.start_soon(append, fast, "fast")

                async def both_wait() -> bool:
                    return await head_waiters(database, slow) == 2  # B waits for the head

                await eventually(both_wait)
                assert finished == {}, "B must not commit before A"
                assert [r.meeting_id for r in seen] == ["early", "early"]
                await blocker.rollback()  # A goes on and commits, then B
                await eventually(lambda: len(finished) == 2)
                done.set()
        assert [r.position for r in finished["slow"]] == [3, 4, 5]
        assert [r.position for r in finished["fast"]] == [6, 7, 8]
        assert seen == await reader_store.read_all()
        assert [r.position for r in seen] == list(range(1, 9))


async def test_many_writers_on_two_stores_keep_positions_gapless(url: str) -> None:
    async with opened(url) as a, opened(url) as b:
        meetings = [f"m-{n}" for n in range(5)]
        wins: list[tuple[str, int]] = []

        async def writer(store: PostgresStore, meeting_id: str) -> None:
            for _ in range(10):
                while True:
                    version = len(await store.read(meeting_id))
                    events = sample_events(meeting_id, start=version, count=1)
                    try:
                        records = await store.append(meeting_id, version, events, None)
                    except Conflict:
                        continue
                    wins.append((meeting_id, records[0].version))
                    break

        async with anyio.create_task_group() as tasks:
            for meeting_id in meetings:
                for store in (a, b, a, b):
                    tasks.start_soon(writer, store, meeting_id)
        assert len(wins) == len(set(wins)) == 200, "a version won twice"
        for meeting_id in meetings:
            assert [r.version for r in await b.read(meeting_id)] == list(range(1, 41))
        assert [r.position for r in await a.read_all()] == list(range(1, 201))


def test_two_engine_processes_never_both_win_a_version(url: str) -> None:
    meetings, joins = 3, 60

    async def init() -> None:
        async with Engine.open(url, sweep_leases=False) as engine:
            for m in range(meetings):
                await engine.execute(InitMeeting(meeting_id=f"m-{m}"))

    anyio.run(init)
    results = race_engines(url, meetings=meetings, joins=joins)
    assert all(r["commands"] == meetings * joins for r in results)
    retries = sum(r["attempts"] - r["commands"] for r in results)
    assert retries > 0, "the two processes should have conflicted at least once"
    assert [r["gave_up"] for r in results] == [0, 0], "a command gave up with Conflict"

    async def check() -> None:
        async with opened(url) as store:
            for m in range(meetings):
                records = await store.read(f"m-{m}")
                assert [r.version for r in records] == list(range(1, len(records) + 1))
                state = fold(r.event for r in records)
                assert state is not None
                assert len(state.participants) == 2 * joins
            everything = await store.read_all(limit=10_000)
            assert [r.position for r in everything] == list(range(1, len(everything) + 1))

    anyio.run(check)
    result = CliRunner().invoke(build_cli(plugin_manager()), ["replay", url, "--verify"])
    assert result.exit_code == 0, result.output


# -- the schema --------------------------------------------------------------------


def open_at_once(url: str, nodes: int) -> list[BaseException]:
    """Open and close a store on `url` from `nodes` threads at once; what they raised."""
    errors: list[BaseException] = []

    def open_and_close() -> None:
        try:
            anyio.run(PostgresStore(url).close)
        except BaseException as error:
            errors.append(error)

    threads = [threading.Thread(target=open_and_close) for _ in range(nodes)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return errors


async def test_the_schema_is_created_once_and_versioned(url: str, database: str) -> None:
    assert open_at_once(url, 4) == []  # nodes starting together
    async with opened(url) as store:
        rows = await sql(database, f'SELECT key, value FROM "{store.schema}".meta')
        assert dict(rows)["schema_version"] == str(SCHEMA_VERSION)
        tables = await sql(
            database,
            "SELECT table_name FROM information_schema.tables WHERE table_schema = %s",
            store.schema,
        )
        assert sorted(t for (t,) in tables) == [
            "checkpoints",
            "head",
            "leases",
            "meta",
            "nodes",
            "placements",
            "records",
        ]


async def test_a_schema_1_database_is_upgraded_and_keeps_its_log(url: str, database: str) -> None:
    """Schema 1 (before nodes and placements): a node of this version adds the two
    tables, once, however many start together, and the log is as it was."""
    async with opened(url) as store:
        await store.append("m-1", 0, sample_events("m-1"), None)
        schema = store.schema
    await sql(database, f'DROP TABLE "{schema}".nodes, "{schema}".placements')
    await sql(database, f"UPDATE \"{schema}\".meta SET value = '1' WHERE key = 'schema_version'")
    assert open_at_once(url, 3) == []
    async with opened(url) as store:
        rows = await sql(database, f'SELECT key, value FROM "{schema}".meta')
        assert dict(rows)["schema_version"] == "2"
        assert [r.event for r in await store.read("m-1")] == sample_events("m-1")
        await store.announce_node("http://n1")
        assert await store.place_meeting("m-1", 60_000) == "http://n1"


async def test_a_newer_schema_is_refused(url: str, database: str) -> None:
    async with opened(url) as store:
        await store.append("m-1", 0, sample_events("m-1"), None)
        schema = store.schema
    await sql(database, f"UPDATE \"{schema}\".meta SET value = '7' WHERE key = 'schema_version'")
    with pytest.raises(StoreError) as refused:
        PostgresStore(url)
    message = str(refused.value)
    assert message.endswith(
        f"was written by a newer meetcore (schema 7, this one reads up to {SCHEMA_VERSION}): "
        "upgrade meetcore-postgres"
    )
    assert "\n" not in message


async def test_tables_of_another_application_are_refused(database: str) -> None:
    await sql(database, "CREATE SCHEMA IF NOT EXISTS someone_else")
    await sql(database, "CREATE TABLE IF NOT EXISTS someone_else.records (id int)")
    with pytest.raises(StoreError, match="schema 'someone_else' holds tables that are not"):
        PostgresStore(f"{database}?schema=someone_else")


# -- errors: one clear line --------------------------------------------------------


def test_bad_urls_and_unreachable_servers_give_one_clear_line(database: str) -> None:
    server = database.rpartition("/")[0]
    for bad, message in [
        ("mysql://localhost/x", "is not a postgresql:// URL"),
        ("postgresql://postgres@127.0.0.1:1/x", "cannot connect: .*Connection refused"),
        (f"{server}/no_such_database_here", 'cannot connect: .*"no_such_database_here" does not'),
        (f"{database}?schema=Has-Caps", "schema must be 1-48 of a-z"),
        (f"{database}?pool_size=0", "pool_size must be 1-100"),
        (f"{database}?flavour=mint", 'bad URL: invalid URI query parameter: "flavour"'),
    ]:
        with pytest.raises(StoreError, match=message) as raised:
            open_url(bad)
        assert "\n" not in str(raised.value), str(raised.value)
    with pytest.raises(StoreError) as raised:
        open_url("postgresql://postgres:s3cret@127.0.0.1:1/x")
    assert "s3cret" not in str(raised.value) and "postgres:***@" in str(raised.value)


async def test_a_closed_store_refuses_politely(url: str) -> None:
    store = PostgresStore(url)
    await store.close()
    with pytest.raises(StoreError, match="closed"):
        await store.append("m-1", 0, sample_events("m-1"), None)
    with pytest.raises(StoreError, match="closed"):
        await store.read("m-1")


def test_serve_on_an_unreachable_store_exits_with_one_line(tmp_path: Path) -> None:
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "meetcore.cli",
            "serve",
            "--port",
            "0",
            "--store",
            "postgresql://postgres:s3cret@127.0.0.1:1/meetcore",
        ],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 2, done.stderr
    assert "Traceback" not in done.stderr
    errors = [line for line in done.stderr.splitlines() if "error" in line.lower()]
    assert len(errors) == 1, done.stderr
    assert "cannot connect" in errors[0] and "s3cret" not in errors[0], errors


def test_the_plugin_opens_postgresql_urls_only(url: str) -> None:
    for read_only in (False, True):
        assert (
            meetcore_postgres.meetcore_open_store(url="sqlite:///x.db", read_only=read_only) is None
        )
        assert meetcore_postgres.meetcore_open_store(url="memory://", read_only=read_only) is None
    pm = plugin_manager()  # through the entry point, as `meetcore serve` finds it
    for scheme_url in (url, url.replace("postgresql://", "postgres://", 1)):
        for read_only in (False, True):  # the store exists once opened to write
            store = pm.hook.meetcore_open_store(url=scheme_url, read_only=read_only)
            assert isinstance(store, PostgresStore)
            assert isinstance(store, meetcore.EventStore)
            assert store.read_only == read_only
            anyio.run(store.close)


# -- lost connections and notifications --------------------------------------------


async def test_reads_and_appends_survive_a_lost_connection(url: str, database: str) -> None:
    """Connections killed on the server (a restart, a failover) are replaced: reads retry
    once, and an append that lost its connection before committing anything is retried."""
    async with opened(url) as store:
        await store.append("m-1", 0, sample_events("m-1", count=2), None)
        async with anyio.create_task_group() as tasks:  # several idle pool connections
            for _ in range(4):
                tasks.start_soon(store.read, "m-1")
        assert len(store._idle) > 1
        await sql(
            database,
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
            "WHERE datname = current_database() AND application_name = 'meetcore'",
        )
        assert len(await store.read("m-1")) == 2
        records = await store.append("m-1", 2, sample_events("m-1", start=2, count=1), None)
        assert records[0].version == 3


async def _watching(store: PostgresStore, seen: list[str]) -> None:
    async for meeting_id in store.watch():
        seen.append(meeting_id)


async def test_watch_reconnects_and_reads_what_it_missed(url: str, database: str) -> None:
    async with opened(url) as store, opened(url) as other:
        seen: list[str] = []
        async with anyio.create_task_group() as tasks:
            tasks.start_soon(_watching, store, seen)
            await eventually(lambda: listening(database, store))
            (watcher,) = store._watchers
            pid = watcher.info.backend_pid
            await sql(database, "SELECT pg_terminate_backend(%s)", pid)
            await other.append("while-away", 0, sample_events("while-away"), None)
            await eventually(lambda: "while-away" in seen)
            await other.append("after", 0, sample_events("after"), None)
            await eventually(lambda: "after" in seen)
            tasks.cancel_scope.cancel()


async def test_a_lost_notification_is_made_up_for_by_the_log(url: str, database: str) -> None:
    """A writer whose notifications never arrive: the next notification shows a gap in
    positions, and a quiet second shows the head moved; both times the log is read."""
    async with opened(url) as store, opened(url) as other, opened(url) as silent:
        silent._sql.notify = "SELECT %s, %s"  # its notifications are lost
        seen: list[str] = []
        async with anyio.create_task_group() as tasks:
            tasks.start_soon(_watching, store, seen)
            await eventually(lambda: listening(database, store))
            await silent.append("lost-1", 0, sample_events("lost-1"), None)
            await other.append("heard", 0, sample_events("heard"), None)
            await eventually(lambda: {"lost-1", "heard"} <= set(seen))
            await silent.append("lost-2", 0, sample_events("lost-2"), None)
            began = time.monotonic()
            await eventually(lambda: "lost-2" in seen, timeout=5)
            assert time.monotonic() - began < 3.5
            tasks.cancel_scope.cancel()


# -- engines on one database: nodes ------------------------------------------------


class Decisions:
    """Counts decisions: the policy hook runs once per attempt of a command."""

    def __init__(self) -> None:
        self.count = 0

    @meetcore.hookimpl
    def meetcore_check_command(self) -> None:
        self.count += 1


async def test_an_engine_sees_another_engines_appends_live(url: str) -> None:
    decisions = Decisions()
    async with (
        Engine.open(url, plugins=PLUGINS, autoload=False, sweep_leases=False) as a,
        Engine.open(url, plugins=[*PLUGINS, decisions], autoload=False, sweep_leases=False) as b,
    ):
        await a.execute(InitMeeting(meeting_id=MEETING))
        received: list[Record] = []

        async def follow() -> None:
            async for record in b.subscribe(MEETING):
                received.append(record)

        async with anyio.create_task_group() as tasks:
            tasks.start_soon(follow)
            await eventually(lambda: len(received) == 1)
            for n in range(3):
                await a.execute(join(n))
            await eventually(lambda: len(received) == 5)  # SessionStarted + 3 joins
            await b.execute(join(9))  # b's cache was refreshed: decided once, no conflict
            assert decisions.count == 1
            await a.execute(Leave(meeting_id=MEETING, participant_id="p0", connection_id="pc0"))
            await eventually(lambda: len(received) == 7)
            tasks.cancel_scope.cancel()
        assert [r.version for r in received] == list(range(1, 8))
        assert received == await a.store.read(MEETING)


async def test_two_engines_hammering_one_meeting_all_get_through(url: str) -> None:
    """Two nodes each send 50 joins at once into one meeting: every loser of a race backs
    off and decides again, and no command gives up with `Conflict`."""
    async with (
        Engine.open(url, plugins=PLUGINS, autoload=False, sweep_leases=False) as a,
        Engine.open(url, plugins=PLUGINS, autoload=False, sweep_leases=False) as b,
    ):
        await a.execute(InitMeeting(meeting_id=MEETING))
        conflicts: list[Conflict] = []

        async def send(engine: Engine, command: Join) -> None:
            try:
                await engine.execute(command)
            except Conflict as conflict:
                conflicts.append(conflict)

        with anyio.fail_after(60):
            async with anyio.create_task_group() as tasks:
                for n in range(50):
                    tasks.start_soon(send, a, join(n, prefix="a"))
                    tasks.start_soon(send, b, join(n, prefix="b"))
        assert conflicts == []
        records = await a.store.read(MEETING)
        assert [r.version for r in records] == list(range(1, len(records) + 1))
        state = fold(r.event for r in records)
        assert state is not None and len(state.participants) == 100
        assert await b.state(MEETING) == state


async def test_a_dead_engines_connections_leave_once_and_live_ones_stay(url: str) -> None:
    """Engine A holds two connections and dies (closes without leaving); engines B and C
    sweep. A connection A kept renewing stays while A lives; after A is gone both leave
    with 1001, each recorded once, by B or C."""
    ttl = 0.4
    async with (
        Engine.open(url, plugins=PLUGINS, autoload=False, lease_ttl=ttl) as b,
        Engine.open(url, plugins=PLUGINS, autoload=False, lease_ttl=ttl) as c,
    ):
        async with Engine.open(url, plugins=PLUGINS, autoload=False, lease_ttl=ttl) as a:
            await a.execute(InitMeeting(meeting_id=MEETING))
            await a.execute(join(1))
            await a.execute(join(2))
            await b.execute(join(3))  # b's own: b never renews it, so it leaves first
            until = time.monotonic() + 3 * ttl
            while time.monotonic() < until:  # a's client pings
                assert a.renew(MEETING, "pc1") and a.renew(MEETING, "pc2")
                await anyio.sleep(ttl / 8)
            state = await b.state(MEETING)
            assert state is not None and sorted(state.participants) == ["p1", "p2"]

        # a is gone: its connections' leases run out and b or c records the leaves
        async def both_gone() -> bool:
            state = await c.state(MEETING)
            return state is not None and not state.participants

        with anyio.fail_after(5):
            while not await both_gone():
                await anyio.sleep(0.05)
        await anyio.sleep(3 * ttl)  # and nobody records them again
        records = await b.store.read(MEETING)
        leaves = [r.event for r in records if isinstance(r.event, ParticipantLeft)]
        assert sorted((e.participant_id, e.reason) for e in leaves) == [
            ("p1", 1001),
            ("p2", 1001),
            ("p3", 1001),
        ]
        assert sum(isinstance(r.event, ParticipantJoined) for r in records) == 3


class CountingStore(PostgresStore):
    renewals = 0

    async def renew_leases(self, connections: Any) -> None:
        self.renewals += 1
        await super().renew_leases(connections)


async def test_renewals_reach_the_store_in_batches(url: str) -> None:
    """1,000 connections pinging: one store call per sweep interval, not one per ping."""
    store = CountingStore(url)
    try:
        async with Engine.open(store, autoload=False, lease_ttl=1.0, sweep_leases=False) as engine:
            await engine.execute(InitMeeting(meeting_id=MEETING))
            for n in range(1000):
                await engine.execute(join(n))
            began = time.monotonic()
            for _ in range(3):
                for n in range(1000):
                    assert engine.renew(MEETING, f"pc{n}")
                await anyio.sleep(0.1)
            await eventually(lambda: store.renewals >= 1)
            await anyio.sleep(0.3)  # real time: sweeps that each called the store would show
            elapsed = time.monotonic() - began
            assert store.renewals <= elapsed / 0.25 + 1, store.renewals
    finally:
        await store.close()
