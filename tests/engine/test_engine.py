"""The engine as an embedder uses it: execute, state, subscribe, leases, idempotency, plugins."""

from __future__ import annotations

import gc
import logging
import tracemalloc
from collections.abc import AsyncIterator, Sequence
from pathlib import Path
from typing import Any

import anyio
import pluggy
import pytest
from support import eventually

import meetcore
import meetcore_sqlite
from meetcore import Engine, ErrorCode, LeaveReason, MemoryStore, Record, Rejected, hookimpl
from meetcore.commands import AnyCommand, End, InitMeeting, Join, Leave, SetMedia
from meetcore.events import AnyEvent, ParticipantJoined, ParticipantLeft, SessionEnded

pytestmark = pytest.mark.anyio
MID = "abc-def-ghi"


class Clock:
    """A clock the test moves by hand (unix ms)."""

    def __init__(self, now: int = 1_700_000_000_000) -> None:
        self.now = now

    def __call__(self) -> int:
        return self.now


def join(pid: str, cid: str | None = None, meeting_id: str = MID, **fields: object) -> Join:
    fields.setdefault("name", pid.title())
    return Join(
        meeting_id=meeting_id,
        participant_id=pid,
        connection_id=cid or f"conn-{pid}",
        session_id=f"session-of-{meeting_id}",
        **fields,  # type: ignore[arg-type]
    )


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
async def engine(clock: Clock) -> AsyncIterator[Engine]:
    async with Engine.open(autoload=False, clock=clock, sweep_leases=False) as engine:
        yield engine


async def test_execute_stamps_the_time_and_returns_the_records(
    engine: Engine, clock: Clock
) -> None:
    records = await engine.execute(InitMeeting(meeting_id=MID))
    assert [r.version for r in records] == [1]
    assert records[0].event.at == clock.now
    assert records[0].cause is not None
    assert records[0].cause.at == clock.now
    clock.now += 5_000
    records = await engine.execute(join("49151"))
    assert [r.version for r in records] == [2, 3]
    assert {r.event.at for r in records} == {clock.now}
    state = await engine.state(MID)
    assert state is not None
    assert state.participants["49151"].joined_at == clock.now
    assert await engine.state("no-such-meeting") is None


async def test_the_caller_changing_its_command_afterwards_changes_nothing_logged(
    engine: Engine,
) -> None:
    await engine.execute(InitMeeting(meeting_id=MID))
    meta: dict[str, object] = {"role": "host", "tags": ["a"]}
    command = join("49151", meta_data=meta)
    await engine.execute(command)
    meta["role"] = "changed"
    meta["tags"].append("b")  # type: ignore[attr-defined]

    records = await engine.store.read(MID)
    joined = records[-1]
    assert isinstance(joined.event, ParticipantJoined)
    assert joined.event.meta_data == {"role": "host", "tags": ["a"]}
    assert joined.cause is not None and joined.cause is not command
    assert joined.cause.meta_data == {"role": "host", "tags": ["a"]}  # type: ignore[union-attr]
    assert command.meta_data is meta and command.at == 0  # the caller's own is untouched
    state = await engine.state(MID)
    assert state is not None and state.participants["49151"].meta_data["role"] == "host"


async def test_a_rejected_command_appends_nothing(engine: Engine) -> None:
    await engine.execute(InitMeeting(meeting_id=MID))
    with pytest.raises(Rejected) as rejected:
        await engine.execute(Leave(meeting_id=MID, participant_id="x", connection_id="c"))
    assert rejected.value.code == ErrorCode.ACTION_BEFORE_JOINED
    assert len(await engine.store.read(MID)) == 1


async def test_the_state_is_a_snapshot(engine: Engine) -> None:
    await engine.execute(InitMeeting(meeting_id=MID))
    await engine.execute(join("a"))
    snapshot = await engine.state(MID)
    await engine.execute(join("b"))
    assert snapshot is not None
    assert list(snapshot.participants) == ["a"]


async def test_many_meetings_in_parallel(engine: Engine) -> None:
    meetings = [f"room-{n}" for n in range(50)]

    async def run_meeting(mid: str) -> None:
        await engine.execute(InitMeeting(meeting_id=mid))
        for n in range(10):
            await engine.execute(join(f"p{n}", meeting_id=mid))

    async with anyio.create_task_group() as tasks:
        for mid in meetings:
            tasks.start_soon(run_meeting, mid)
    for mid in meetings:
        records = await engine.store.read(mid)
        assert [r.version for r in records] == list(range(1, 13))
        state = await engine.state(mid)
        assert state is not None
        assert len(state.participants) == 10


async def test_concurrent_commands_to_one_meeting_lose_nothing(engine: Engine) -> None:
    await engine.execute(InitMeeting(meeting_id=MID))
    async with anyio.create_task_group() as tasks:
        for n in range(100):
            tasks.start_soon(engine.execute, join(f"p{n}"))
    records = await engine.store.read(MID)
    assert [r.version for r in records] == list(range(1, len(records) + 1))
    state = await engine.state(MID)
    assert state is not None
    assert len(state.participants) == 100
    assert meetcore.fold(r.event for r in records) == state


async def test_two_engines_on_one_store_re_decide_on_conflict(clock: Clock) -> None:
    """Each engine caches the meeting; when the other wrote first, append conflicts and the
    engine reloads and decides again, so the log is the same as from a single writer."""
    store = MemoryStore(clock=clock)
    async with (
        Engine.open(store, autoload=False, clock=clock, sweep_leases=False) as a,
        Engine.open(store, autoload=False, clock=clock, sweep_leases=False) as b,
    ):
        await a.execute(InitMeeting(meeting_id=MID))
        await a.execute(join("p0"))
        await b.execute(join("p1"))  # b loads fresh
        await a.execute(join("p2"))  # a's cache is behind: conflict, reload, re-decide
        async with anyio.create_task_group() as tasks:
            for n in range(3, 40):
                tasks.start_soon((a if n % 2 else b).execute, join(f"p{n}"))
        # the same participant joins through both engines: exactly one connection stays
        await a.execute(join("dup", "conn-a"))
        await b.execute(join("dup", "conn-b"))
        records = await store.read(MID)
        assert [r.version for r in records] == list(range(1, len(records) + 1))
        state = meetcore.fold(r.event for r in records)
        assert state is not None
        assert len(state.participants) == 41
        assert state.participants["dup"].connection_id == "conn-b"
        assert await a.state(MID) == state
        assert await b.state(MID) == state


async def test_a_repeated_command_id_returns_the_first_result(engine: Engine, clock: Clock) -> None:
    await engine.execute(InitMeeting(meeting_id=MID, command_id="init-1"))
    first = await engine.execute(join("a", command_id="join-a"))
    clock.now += 1000
    again = await engine.execute(join("a", command_id="join-a"))
    assert again == first
    again = await engine.execute(InitMeeting(meeting_id=MID, command_id="init-1"))
    assert [r.version for r in again] == [1]
    assert len(await engine.store.read(MID)) == 3


async def test_command_ids_survive_a_restart(clock: Clock) -> None:
    store = MemoryStore(clock=clock)
    async with Engine.open(store, autoload=False, clock=clock, sweep_leases=False) as engine:
        await engine.execute(InitMeeting(meeting_id=MID))
        first = await engine.execute(join("a", command_id="join-a"))
    async with Engine.open(store, autoload=False, clock=clock, sweep_leases=False) as engine:
        assert await engine.execute(join("a", command_id="join-a")) == first
    assert len(await store.read(MID)) == 3


# -- subscriptions -----------------------------------------------------------------


async def collect(engine: Engine, count: int, after: int = 0) -> list[Record]:
    seen: list[Record] = []
    with anyio.fail_after(5):
        async for record in engine.subscribe(MID, after):
            seen.append(record)
            if len(seen) == count:
                break
    return seen


async def test_subscribe_catches_up_then_follows_live(engine: Engine) -> None:
    await engine.execute(InitMeeting(meeting_id=MID))
    await engine.execute(join("a"))
    seen: list[Record] = []

    async def follow() -> None:
        with anyio.fail_after(5):
            async for record in engine.subscribe(MID):
                seen.append(record)
                if len(seen) == 9:
                    break

    async with anyio.create_task_group() as tasks:
        tasks.start_soon(follow)
        await eventually(lambda: len(seen) == 3)  # caught up: what follows comes live
        for pid in ("b", "c"):
            await engine.execute(join(pid))
            await anyio.sleep(0)
        await engine.execute(End(meeting_id=MID))
    assert [r.version for r in seen] == list(range(1, 10))
    assert seen == await engine.store.read(MID)
    assert isinstance(seen[-1].event, SessionEnded)


async def test_subscribe_from_the_middle(engine: Engine) -> None:
    await engine.execute(InitMeeting(meeting_id=MID))
    for pid in "abcd":
        await engine.execute(join(pid))
    seen = await collect(engine, 3, after=3)
    assert [r.version for r in seen] == [4, 5, 6]


async def test_a_slow_subscriber_gets_everything_in_order(engine: Engine) -> None:
    await engine.execute(InitMeeting(meeting_id=MID))
    received: list[int] = []
    written = anyio.Event()

    async def slow() -> None:
        with anyio.fail_after(10):
            async for record in engine.subscribe(MID):
                received.append(record.version)
                await anyio.sleep(0.0005)
                if written.is_set() and record.version == len(await engine.store.read(MID)):
                    return

    async with anyio.create_task_group() as tasks:
        tasks.start_soon(slow)
        for n in range(600):  # far more than the in-memory window
            await engine.execute(join(f"p{n}"))
            if n % 2:
                leave = Leave(meeting_id=MID, participant_id=f"p{n}", connection_id=f"conn-p{n}")
                await engine.execute(leave)
        written.set()
    total = len(await engine.store.read(MID))
    assert total == 1 + 1 + 600 + 300  # init, session start, joins, leaves
    assert received == list(range(1, total + 1))


async def test_cancelling_a_subscriber_releases_it(engine: Engine) -> None:
    await engine.execute(InitMeeting(meeting_id=MID))
    with anyio.move_on_after(0.05):
        async for _ in engine.subscribe(MID):
            pass
    await engine.execute(join("a"))  # nobody waits any more, and nothing breaks
    assert await collect(engine, 3) == await engine.store.read(MID)


# -- leases ------------------------------------------------------------------------


async def test_an_unrenewed_lease_leaves_with_1001(clock: Clock) -> None:
    async with Engine.open(autoload=False, clock=clock, lease_ttl=15, sweep_leases=False) as engine:
        await engine.execute(InitMeeting(meeting_id=MID))
        await engine.execute(join("alive"))
        await engine.execute(join("gone"))
        assert engine.lease(MID, "conn-gone") == clock.now + 15_000
        clock.now += 10_000
        assert engine.renew(MID, "conn-alive")
        assert not engine.renew(MID, "no-such-connection")
        assert await engine.expire_leases() == []
        clock.now += 6_000
        records = await engine.expire_leases()
        assert [type(r.event) for r in records] == [ParticipantLeft]
        left = records[0].event
        assert isinstance(left, ParticipantLeft)
        assert (left.participant_id, left.reason) == ("gone", LeaveReason.WEBSOCKET_DISCONNECTED)
        assert engine.lease(MID, "conn-gone") is None
        clock.now += 20_000
        records = await engine.expire_leases()
        assert [type(r.event).__name__ for r in records] == ["ParticipantLeft", "SessionEnded"]


async def test_the_sweeper_expires_leases_by_itself() -> None:
    async with Engine.open(autoload=False, lease_ttl=0.2) as engine:
        await engine.execute(InitMeeting(meeting_id=MID))
        await engine.execute(join("a"))
        with anyio.fail_after(3):
            while (state := await engine.state(MID)) is not None and state.participants:
                await anyio.sleep(0.02)
        records = await engine.store.read(MID)
        assert isinstance(records[-2].event, ParticipantLeft)
        assert records[-2].event.reason == LeaveReason.WEBSOCKET_DISCONNECTED


async def test_a_crashed_node_leaves_no_ghosts(clock: Clock) -> None:
    """Participants joined through an engine that died get a lease from the next one."""
    store = MemoryStore(clock=clock)
    async with Engine.open(store, autoload=False, clock=clock, sweep_leases=False) as engine:
        await engine.execute(InitMeeting(meeting_id=MID))
        await engine.execute(join("a"))
        await engine.execute(join("b"))
        await engine.execute(Leave(meeting_id=MID, participant_id="b", connection_id="conn-b"))
    clock.now += 3_600_000  # the node is down for an hour
    async with Engine.open(store, autoload=False, clock=clock, sweep_leases=False) as engine:
        assert engine.lease(MID, "conn-a") == clock.now + 15_000
        assert engine.lease(MID, "conn-b") is None
        clock.now += 15_000
        await engine.expire_leases()
        state = await engine.state(MID)
        assert state is not None
        assert state.participants == {}
        assert state.session_id is None


# -- plugins -------------------------------------------------------------------------


class Recorder:
    def __init__(self) -> None:
        self.seen: list[int] = []
        self.started = 0
        self.stopped = 0

    @hookimpl
    def meetcore_records_appended(self, records: Sequence[Record]) -> None:
        self.seen += [r.version for r in records]

    @hookimpl
    async def meetcore_startup(self, engine: Engine) -> None:
        self.started += 1

    @hookimpl
    def meetcore_shutdown(self, engine: Engine) -> None:
        self.stopped += 1


class AsyncRecorder:
    def __init__(self) -> None:
        self.seen: list[int] = []

    @hookimpl
    async def meetcore_records_appended(self, records: Sequence[Record]) -> None:
        await anyio.sleep(0.001)
        self.seen += [r.version for r in records]


class Broken:
    @hookimpl
    def meetcore_records_appended(self, records: Sequence[Record]) -> None:
        raise RuntimeError("observer bug")


class BrokenAsync:
    @hookimpl
    async def meetcore_records_appended(self, records: Sequence[Record]) -> None:
        raise RuntimeError("async observer bug")


class NoWebcams:
    @hookimpl
    def meetcore_check_command(self, command: object, state: object, principal: object) -> None:
        if isinstance(command, SetMedia) and command.kind == "webcam" and command.enabled:
            raise Rejected(ErrorCode.UNAUTHORIZED_REQUEST, "webcams are off in this deployment")


async def test_observers_see_every_record_and_a_failing_one_is_isolated(
    caplog: pytest.LogCaptureFixture,
) -> None:
    sync, asynchronous = Recorder(), AsyncRecorder()
    plugins = [Broken(), sync, BrokenAsync(), asynchronous]
    with caplog.at_level(logging.ERROR, logger="meetcore.engine"):
        async with Engine.open(plugins=plugins, autoload=False) as engine:
            assert sync.started == 1
            await engine.execute(InitMeeting(meeting_id=MID))
            for pid in "abc":
                await engine.execute(join(pid))
            await engine.flush()
            assert sync.seen == asynchronous.seen == list(range(1, 6))
        assert sync.stopped == 1
    messages = [r.getMessage() for r in caplog.records]
    assert sum("failed in meetcore_records_appended" in m for m in messages) == 2 * 4


async def test_a_policy_plugin_can_refuse_a_command() -> None:
    async with Engine.open(plugins=[NoWebcams()], autoload=False) as engine:
        await engine.execute(InitMeeting(meeting_id=MID))
        await engine.execute(join("a"))
        with pytest.raises(Rejected, match="webcams are off"):
            await engine.execute(
                SetMedia(
                    meeting_id=MID,
                    participant_id="a",
                    connection_id="conn-a",
                    kind="webcam",
                    enabled=True,
                )
            )
        await engine.execute(
            SetMedia(
                meeting_id=MID, participant_id="a", connection_id="conn-a", kind="mic", enabled=True
            )
        )
        assert len(await engine.store.read(MID)) == 4


async def test_a_misspelled_hook_fails_loudly() -> None:
    class Typo:
        @hookimpl
        def meetcore_record_appended(self, records: Sequence[Record]) -> None: ...

    with pytest.raises(pluggy.PluginValidationError, match="meetcore_record_appended"):
        async with Engine.open(plugins=[Typo()], autoload=False):
            pass


async def test_an_unknown_store_scheme_is_a_clear_error() -> None:
    with pytest.raises(meetcore.StoreError, match="no plugin opens nosuch:// store URLs"):
        async with Engine.open("nosuch://x", autoload=False):
            pass
    with pytest.raises(meetcore.StoreError, match="has no scheme"):
        async with Engine.open("meetcore.db", autoload=False):
            pass


async def test_joined_events_reach_a_subscriber_and_the_state(engine: Engine) -> None:
    await engine.execute(InitMeeting(meeting_id=MID))
    await engine.execute(join("49151", name="Franz Kafka", meta_data={"role": "author"}))
    records = await collect(engine, 3)
    joined = records[-1].event
    assert isinstance(joined, ParticipantJoined)
    assert (joined.name, joined.meta_data) == ("Franz Kafka", {"role": "author"})


class AsyncVeto:
    @hookimpl
    async def meetcore_check_command(self, command: object) -> None:
        await anyio.sleep(0)
        if isinstance(command, Join) and command.participant_id == "banned":
            raise Rejected(ErrorCode.UNAUTHORIZED_REQUEST, "banned")


async def test_an_async_policy_is_awaited_and_can_refuse() -> None:
    """Regression: an `async def` policy's coroutine used to be dropped, letting it through."""
    async with Engine.open(plugins=[AsyncVeto()], autoload=False) as engine:
        await engine.execute(InitMeeting(meeting_id=MID))
        with pytest.raises(Rejected, match="banned"):
            await engine.execute(join("banned"))
        await engine.execute(join("welcome"))
        assert len(await engine.store.read(MID)) == 3


async def test_an_exception_from_the_block_is_not_wrapped() -> None:
    with pytest.raises(Rejected) as raised:
        async with Engine.open(autoload=False) as engine:
            await engine.execute(Leave(meeting_id=MID, participant_id="p", connection_id="c"))
    assert raised.value.code == ErrorCode.INVALID_MEETING_ID


class FailingStartup:
    def __init__(self) -> None:
        self.stopped = False

    @hookimpl
    def meetcore_startup(self) -> None:
        raise RuntimeError("cannot warm up")

    @hookimpl
    def meetcore_shutdown(self) -> None:
        self.stopped = True


async def test_a_failing_lifecycle_hook_is_logged_with_its_plugin(
    caplog: pytest.LogCaptureFixture,
) -> None:
    failing, recorder = FailingStartup(), Recorder()
    with caplog.at_level(logging.ERROR, logger="meetcore.engine"):
        async with Engine.open(plugins=[recorder, failing], autoload=False) as engine:
            await engine.execute(InitMeeting(meeting_id=MID))
    assert recorder.started == 1
    assert failing.stopped
    assert any("failed in meetcore_startup" in r.getMessage() for r in caplog.records)


async def test_an_observer_wrapper_is_refused() -> None:
    class Wrapper:
        @hookimpl(wrapper=True)
        def meetcore_records_appended(self, records: Sequence[Record]) -> object:
            return (yield)

    with pytest.raises(pluggy.PluginValidationError, match="cannot be a wrapper"):
        async with Engine.open(plugins=[Wrapper()], autoload=False):
            pass


class SlowStore(MemoryStore):
    """A memory store whose appends take a while, after writing: a cancellation can
    arrive when the records are stored but the caller has not seen them."""

    def __init__(self) -> None:
        super().__init__()
        self.delay = 0.0

    async def append(self, meeting_id, expected_version, events, cause):  # type: ignore[no-untyped-def]
        records = await super().append(meeting_id, expected_version, events, cause)
        await anyio.sleep(self.delay)
        return records


async def test_a_join_cancelled_mid_append_still_counts(clock: Clock) -> None:
    seen: list[str] = []

    class Observer:
        @hookimpl
        def meetcore_records_appended(self, records: Sequence[Record]) -> None:
            seen.extend(type(r.event).__name__ for r in records)

    store = SlowStore()
    async with Engine.open(store, [Observer()], autoload=False, clock=clock) as engine:
        await engine.execute(InitMeeting(meeting_id=MID))
        store.delay = 1.0
        with anyio.move_on_after(0.05) as scope:  # the client went away during its join
            await engine.execute(join("ada", command_id="join-ada-1"))
        assert scope.cancelled_caught
        store.delay = 0.0
        await engine.flush()
        # The join was written: the engine knows it, its lease runs, observers saw it.
        state = await engine.state(MID)
        assert state is not None and list(state.participants) == ["ada"]
        assert engine.lease(MID, "conn-ada") is not None
        assert seen == ["MeetingInitialized", "SessionStarted", "ParticipantJoined"]
        # Retrying with the same command id tells the outcome and appends nothing.
        again = await engine.execute(join("ada", command_id="join-ada-1"))
        assert [r.version for r in again] == [2, 3]
        assert len(await store.read(MID)) == 3
        records = await engine.execute(
            Leave(meeting_id=MID, participant_id="ada", connection_id="conn-ada")
        )
        assert [type(r.event).__name__ for r in records] == ["ParticipantLeft", "SessionEnded"]


async def test_commands_to_one_meeting_run_in_arrival_order_even_when_waiters_cancel(
    engine: Engine,
) -> None:
    await engine.execute(InitMeeting(meeting_id=MID))
    order: list[str] = []

    async def joiner(pid: str) -> None:
        await engine.execute(join(pid))
        order.append(pid)

    async with anyio.create_task_group() as tasks, engine._meeting(MID).lock:
        # The meeting is held: everyone queues.
        for pid in ("a", "b", "c", "d"):
            tasks.start_soon(joiner, pid)
        await eventually(lambda: len(engine._meeting(MID).lock._waiters or ()) == 4)
        with anyio.CancelScope() as doomed:  # one more gives up while queued
            doomed.cancel()
            await engine.execute(join("x"))
    assert order == ["a", "b", "c", "d"]
    state = await engine.state(MID)
    assert state is not None and list(state.participants) == ["a", "b", "c", "d"]


async def test_a_waiter_cancelled_as_it_is_handed_the_gate_passes_it_on() -> None:
    from meetcore._engine import _Gate

    gate = _Gate()
    got: list[str] = []

    async def waiter(name: str, scope: anyio.CancelScope) -> None:
        with scope:
            async with gate:
                got.append(name)

    first, second = anyio.CancelScope(), anyio.CancelScope()
    with anyio.fail_after(5):  # a gate lost to the cancelled waiter would hang here
        async with anyio.create_task_group() as tasks:
            await gate.__aenter__()
            tasks.start_soon(waiter, "first", first)
            tasks.start_soon(waiter, "second", second)
            await eventually(lambda: len(gate._waiters or ()) == 2)  # both queued
            first.cancel()  # "first" is cancelled while queued...
            await gate.__aexit__(None, None, None)  # ...and handed the gate before it runs
    assert got == ["second"]
    async with gate:  # and the gate is free again
        pass


# -- other writers on the same store: conflicts ----------------------------------------


class TurnTakingStore(MemoryStore):
    """A memory store whose reads and appends let other tasks run first, as a store that
    does I/O does: engines sharing it interleave and lose races to each other."""

    async def read(self, meeting_id: str, after_version: int = 0) -> list[Record]:
        await anyio.sleep(0)
        return await super().read(meeting_id, after_version)

    async def append(
        self,
        meeting_id: str,
        expected_version: int,
        events: Sequence[AnyEvent],
        cause: AnyCommand | None,
    ) -> list[Record]:
        await anyio.sleep(0)
        return await super().append(meeting_id, expected_version, events, cause)


@pytest.fixture(params=["memory", "sqlite"])
async def two_engines(
    request: pytest.FixtureRequest, tmp_path: Path, clock: Clock
) -> AsyncIterator[tuple[Engine, Engine]]:
    """Two engines on one store: a memory store that takes turns, or one SQLite file
    (each engine with its own store object on it, as two servers would have)."""
    store: str | MemoryStore = TurnTakingStore(clock=clock)
    if request.param == "sqlite":
        store = f"sqlite:///{tmp_path / 'shared.db'}"
    options: dict[str, Any] = {"autoload": False, "clock": clock, "sweep_leases": False}
    async with (
        Engine.open(store, [meetcore_sqlite], **options) as a,
        Engine.open(store, [meetcore_sqlite], **options) as b,
    ):
        yield a, b


async def test_two_engines_hammering_one_meeting_all_get_through(
    two_engines: tuple[Engine, Engine],
) -> None:
    """Each engine sends 50 joins at once into the same meeting: the loser of each race
    backs off and tries again, and no command gives up."""
    a, b = two_engines
    await a.execute(InitMeeting(meeting_id=MID))
    conflicts: list[meetcore.Conflict] = []

    async def send(engine: Engine, command: Join) -> None:
        try:
            await engine.execute(command)
        except meetcore.Conflict as conflict:
            conflicts.append(conflict)

    with anyio.fail_after(30):
        async with anyio.create_task_group() as tasks:
            for n in range(50):
                tasks.start_soon(send, a, join(f"a{n}"))
                tasks.start_soon(send, b, join(f"b{n}"))
    assert conflicts == []
    records = await a.store.read(MID)
    assert [r.version for r in records] == list(range(1, len(records) + 1))
    state = meetcore.fold(r.event for r in records)
    assert state is not None and len(state.participants) == 100
    assert await a.state(MID) == state
    assert await b.state(MID) == state


class RivalStore(MemoryStore):
    """Another writer always gets in first: before each of the engine's appends to a
    meeting, once `rival` is set, it appends a join of its own (decided on the log)."""

    def __init__(self, clock: Clock) -> None:
        super().__init__(clock=clock)
        self.rival = False
        self.appends = 0

    async def append(
        self,
        meeting_id: str,
        expected_version: int,
        events: Sequence[AnyEvent],
        cause: AnyCommand | None,
    ) -> list[Record]:
        if self.rival:
            self.appends += 1
            current = await self.read(meeting_id)
            state = meetcore.fold(r.event for r in current)
            theirs = join(f"rival-{self.appends}", meeting_id=meeting_id, at=1)
            await super().append(meeting_id, len(current), meetcore.decide(state, theirs), None)
        return await super().append(meeting_id, expected_version, events, cause)


async def test_a_command_that_keeps_losing_gives_up_in_time_with_the_real_versions(
    clock: Clock,
) -> None:
    store = RivalStore(clock)
    async with Engine.open(
        store, autoload=False, clock=clock, sweep_leases=False, retry_conflicts_for=0.3
    ) as engine:
        await engine.execute(InitMeeting(meeting_id=MID))
        await engine.execute(join("a"))
        store.rival = True
        started = anyio.current_time()
        with anyio.fail_after(10), pytest.raises(meetcore.Conflict) as raised:
            await engine.execute(join("b"))
        waited = anyio.current_time() - started
    conflict = raised.value
    log_length = len(await store.read(MID))
    # The engine read the rival's last append, decided again, and lost to it once more.
    assert conflict.expected_version == log_length - 1
    assert conflict.actual_version == log_length
    assert str(conflict) == (f"meeting {MID!r} is at version {log_length}, not {log_length - 1}")
    assert store.appends >= 3, "it tried again after backing off"
    assert 0.3 <= waited < 5, "it kept trying for the time given, and not much longer"
    state = meetcore.fold(r.event for r in await store.read(MID))
    assert state is not None and "b" not in state.participants


# -- memory: what the engine keeps of each meeting -------------------------------------------


def table_sizes(engine: Engine) -> dict[str, int]:
    """The size of every dict and set the engine holds: its tables keyed by meeting."""
    return {name: len(v) for name, v in vars(engine).items() if isinstance(v, dict | set)}


async def test_refused_joins_to_unknown_meetings_leave_nothing_behind(engine: Engine) -> None:
    """Anyone may send a join for a meeting that does not exist (with a 20 KB id, say):
    the engine refuses it and keeps nothing of it."""
    await engine.execute(InitMeeting(meeting_id=MID))
    await engine.execute(join("a"))

    def unknown(n: int) -> str:
        return f"{n:05d}-" + "x" * 20_000

    async def refused(n: int) -> None:
        with pytest.raises(Rejected) as raised:
            await engine.execute(join("intruder", meeting_id=unknown(n)))
        assert raised.value.code == ErrorCode.INVALID_MEETING_ID

    for n in range(20):  # first-use allocations happen before the measurement
        await refused(n)
    before = table_sizes(engine)
    gc.collect()
    tracemalloc.start()
    try:
        baseline, _ = tracemalloc.get_traced_memory()
        for n in range(2_000):
            await refused(n)
        assert await engine.state(unknown(-1)) is None
        with anyio.move_on_after(0.05):  # a subscriber that gives up on a meeting never made
            async for _ in engine.subscribe(unknown(-2)):
                pass
        gc.collect()
        retained = tracemalloc.get_traced_memory()[0] - baseline
    finally:
        tracemalloc.stop()
    assert table_sizes(engine) == before
    assert retained < 2 * 1024 * 1024, f"{retained:,} bytes kept after 2,000 refused joins"
    assert await engine.execute(join("b")) != []  # the real meeting is untouched


async def test_meetings_past_the_cache_bound_are_read_again_from_the_store(clock: Clock) -> None:
    """With room for 5 meetings, 40 take turns: each command finds its meeting evicted,
    reads it back from the store, and decides as an engine that kept everything does;
    command ids and leases still work."""
    meetings = [f"room-{n}" for n in range(40)]
    commands: list[InitMeeting | Join] = [InitMeeting(meeting_id=mid) for mid in meetings]
    for turn in range(6):
        for mid in meetings:
            pid = "p0" if turn == 5 else f"p{turn}"  # turn 5: p0 again, which replaces p0
            commands.append(join(pid, f"c{turn}", mid, command_id=f"{mid}-{turn}"))
    small, roomy = MemoryStore(clock=clock), MemoryStore(clock=clock)
    options: dict[str, Any] = {"autoload": False, "clock": clock, "sweep_leases": False}
    async with (
        Engine.open(small, cached_meetings=5, **options) as evicting,
        Engine.open(roomy, **options) as keeping,
    ):
        for command in commands:
            assert await evicting.execute(command) == await keeping.execute(command)
            assert table_sizes(evicting)["_meetings"] <= 5
        assert await small.read_all(limit=10_000) == await roomy.read_all(limit=10_000)
        for mid in meetings:
            state = await evicting.state(mid)
            assert state == meetcore.fold(r.event for r in await small.read(mid))
            assert state is not None and sorted(state.participants) == [f"p{n}" for n in range(5)]
        # A retried command of an evicted meeting returns its first records again.
        logged = len(await small.read_all(limit=10_000))
        for mid in meetings[:10]:
            first = [r for r in await small.read(mid) if r.cause and r.cause.command_id]
            again = await evicting.execute(join("p1", "c1", mid, command_id=f"{mid}-1"))
            assert again == [r for r in first if r.cause.command_id == f"{mid}-1"]  # type: ignore[union-attr]
        assert len(await small.read_all(limit=10_000)) == logged
        # Every participant's lease runs, evicted or not: they all leave with 1001.
        clock.now += 16_000
        left = await evicting.expire_leases()
        assert len([r for r in left if isinstance(r.event, ParticipantLeft)]) == 40 * 5
        for mid in meetings:
            state = await evicting.state(mid)
            assert state is not None and state.participants == {}


async def test_a_subscribed_meeting_stays_cached_past_the_bound(clock: Clock) -> None:
    async with Engine.open(
        autoload=False, clock=clock, sweep_leases=False, cached_meetings=2
    ) as engine:
        await engine.execute(InitMeeting(meeting_id=MID))
        seen: list[Record] = []

        async def follow() -> None:
            async for record in engine.subscribe(MID):
                seen.append(record)
                if len(seen) == 3:
                    return

        with anyio.fail_after(5):
            async with anyio.create_task_group() as tasks:
                tasks.start_soon(follow)
                while not seen:
                    await anyio.sleep(0.001)
                cached = engine._meetings[MID]
                for n in range(20):
                    await engine.execute(InitMeeting(meeting_id=f"other-{n}"))
                    await engine.execute(join("x", meeting_id=f"other-{n}"))
                assert engine._meetings.get(MID) is cached, "evicted while subscribed"
                await engine.execute(join("a"))
        assert [r.version for r in seen] == [1, 2, 3]
        assert len(engine._meetings) <= 2


async def test_reading_an_evicted_meeting_again_renews_no_lease(clock: Clock) -> None:
    """The leases of a meeting read back from the store keep their times: a client that
    vanished still leaves one lease time after it was last heard of."""
    async with Engine.open(
        autoload=False, clock=clock, sweep_leases=False, cached_meetings=1
    ) as engine:
        await engine.execute(InitMeeting(meeting_id=MID))
        await engine.execute(join("ghost"))
        clock.now += 10_000
        await engine.execute(InitMeeting(meeting_id="other"))  # MID is evicted
        assert MID not in engine._meetings
        await engine.execute(join("b"))  # MID read again from the store
        assert engine.lease(MID, "conn-ghost") == clock.now - 10_000 + 15_000
        clock.now += 6_000
        left = [r.event for r in await engine.expire_leases()]
        assert [(e.participant_id, type(e)) for e in left] == [("ghost", ParticipantLeft)]  # type: ignore[union-attr]
