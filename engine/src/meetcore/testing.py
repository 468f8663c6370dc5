"""The contract every `EventStore` must keep, as a pytest class to subclass.

A store plugin's test module (first-party or third-party) does this::

    import pytest
    from meetcore.testing import EventStoreContract

    class TestMyStore(EventStoreContract):
        @pytest.fixture
        async def store(self, tmp_path):
            store = MyStore(tmp_path / "log")
            yield store
            await store.close()

A store that also keeps checkpoints (the optional `meetcore.Checkpoints`
capability) subclasses `CheckpointsContract` too, with the same fixture. So does one
that keeps connection leases for several engines (`SharedLeasesContract`); one that
reports other writers' appends (`WatchableStoreContract`) also provides `other`, a
second store object on the same storage (another node).

A store that several store objects or processes may open on the same storage passes
`SharedStorageContract` (fixtures `store` and `other`), and `race_engines(url,
meetings=..., joins=...)` races whole engine processes on it: no two may win the same
version.

The tests run on anyio's pytest plugin (shipped with anyio), on asyncio.
Requires pytest; importing this module does nothing else.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import anyio
import pytest

from meetcore._codes import LeaveReason
from meetcore._race import race_engines
from meetcore._record import Record
from meetcore._store import (
    Checkpoints,
    Conflict,
    EventStore,
    MediaPlacement,
    SharedLeases,
    WatchableStore,
)
from meetcore.commands import InitMeeting, Join, Leave
from meetcore.events import (
    AnyEvent,
    EntryRequested,
    EntryWithdrawn,
    MeetingInitialized,
    ParticipantJoined,
    ParticipantLeft,
    SessionStarted,
)

__all__ = [
    "CheckpointsContract",
    "EventStoreContract",
    "MediaPlacementContract",
    "SharedLeasesContract",
    "SharedStorageContract",
    "WatchableStoreContract",
    "race_engines",
    "sample_events",
]


def sample_events(meeting_id: str, start: int = 0, count: int = 3) -> list[AnyEvent]:
    """`count` plausible events for `meeting_id`; with `start=0` they begin the meeting."""
    events: list[AnyEvent] = []
    if start == 0:
        events.append(
            MeetingInitialized(
                meeting_id=meeting_id,
                at=1,
                custom_room_id=None,
                max_participants=None,
                auto_close="session-ends",
                duplicate_policy="replace",
                webhook=None,
            )
        )
        events.append(SessionStarted(meeting_id=meeting_id, at=2, session_id="s-1"))
    n = start
    while len(events) < count:
        n += 1
        pid, cid = f"p{n}", f"c{n}"
        events.append(
            ParticipantJoined(
                meeting_id=meeting_id,
                at=10 + n,
                participant_id=pid,
                connection_id=cid,
                name=f"Zoë «{n}» 参加者",
                meta_data={"n": n, "nested": {"list": [1, 2.5, None, "x"]}},
                mic_enabled=True,
                webcam_enabled=False,
                mode="SEND_AND_RECV",
                permissions=("allow_join",),
                multistream=True,
                debug_mode=False,
            )
        )
        if len(events) < count:
            events.append(
                ParticipantLeft(
                    meeting_id=meeting_id,
                    at=11 + n,
                    participant_id=pid,
                    connection_id=cid,
                    reason=LeaveReason.MANUAL_LEAVE_CALLED,
                )
            )
    return events[:count]


def _join(meeting_id: str) -> Join:
    return Join(
        meeting_id=meeting_id,
        at=5,
        participant_id="p1",
        connection_id="c1",
        session_id="s-1",
        name="Franz Kafka",
        command_id="cmd-1",
        meta_data={"k": "v"},
    )


def _check_records(records: Sequence[Record], meeting_id: str, first_version: int) -> None:
    assert [r.version for r in records] == list(range(first_version, first_version + len(records)))
    assert all(r.meeting_id == meeting_id for r in records)
    positions = [r.position for r in records]
    assert positions == sorted(set(positions)), "positions must strictly increase"
    assert all(p > 0 for p in positions)


@pytest.mark.anyio
class EventStoreContract:
    """Tests every `EventStore` passes. Subclass it and provide a `store` fixture."""

    async def test_implements_the_protocol(self, store: EventStore) -> None:
        assert isinstance(store, EventStore)

    async def test_append_to_a_new_meeting(self, store: EventStore) -> None:
        events = sample_events("m-1", count=4)
        cause = InitMeeting(meeting_id="m-1", at=1, command_id="init-1")
        records = await store.append("m-1", 0, events, cause)
        _check_records(records, "m-1", 1)
        assert [r.event for r in records] == events
        assert all(r.cause == cause for r in records)
        assert await store.read("m-1") == records

    async def test_read_after_a_version(self, store: EventStore) -> None:
        records = await store.append("m-1", 0, sample_events("m-1", count=5), None)
        assert await store.read("m-1", after_version=2) == records[2:]
        assert await store.read("m-1", after_version=5) == []
        assert await store.read("m-1", after_version=99) == []

    async def test_an_unknown_meeting_reads_empty(self, store: EventStore) -> None:
        assert await store.read("nobody") == []

    async def test_appends_continue_the_versions(self, store: EventStore) -> None:
        first = await store.append("m-1", 0, sample_events("m-1", count=3), None)
        second = await store.append("m-1", 3, sample_events("m-1", start=3, count=2), _join("m-1"))
        _check_records(first + second, "m-1", 1)
        assert second[0].cause == _join("m-1")
        assert first[0].cause is None
        assert await store.read("m-1") == first + second

    @pytest.mark.parametrize("expected", [0, 2, 4, 10])
    async def test_conflict_when_the_meeting_moved_on(
        self, store: EventStore, expected: int
    ) -> None:
        records = await store.append("m-1", 0, sample_events("m-1", count=3), None)
        with pytest.raises(Conflict) as raised:
            await store.append("m-1", expected, sample_events("m-1", start=3, count=2), None)
        assert raised.value.actual_version == 3
        assert raised.value.expected_version == expected
        assert await store.read("m-1") == records, "a conflicting append must write nothing"

    async def test_conflict_on_a_meeting_that_does_not_exist(self, store: EventStore) -> None:
        with pytest.raises(Conflict):
            await store.append("m-new", 1, sample_events("m-new", start=1, count=1), None)
        assert await store.read("m-new") == []

    async def test_cause_and_event_round_trip(self, store: EventStore) -> None:
        cause = _join("m-1")
        events = sample_events("m-1", count=3)
        await store.append("m-1", 0, events, cause)
        again = await store.read("m-1")
        assert [r.event for r in again] == events
        assert again[0].cause == cause
        assert isinstance(again[0].recorded_at, int)

    async def test_read_all_in_position_order(self, store: EventStore) -> None:
        a = await store.append("m-a", 0, sample_events("m-a", count=2), None)
        b = await store.append("m-b", 0, sample_events("m-b", count=3), None)
        c = await store.append("m-a", 2, sample_events("m-a", start=2, count=1), None)
        everything = await store.read_all()
        assert everything == a + b + c
        positions = [r.position for r in everything]
        assert positions == sorted(set(positions))
        assert await store.read_all(after_position=a[-1].position) == b + c
        assert await store.read_all(after_position=positions[-1]) == []

    async def test_read_all_respects_the_limit(self, store: EventStore) -> None:
        records = await store.append("m-1", 0, sample_events("m-1", count=7), None)
        page = await store.read_all(limit=3)
        assert page == records[:3]
        rest = await store.read_all(after_position=page[-1].position, limit=100)
        assert rest == records[3:]

    async def test_concurrent_appends_to_one_meeting_have_one_winner(
        self, store: EventStore
    ) -> None:
        await store.append("m-1", 0, sample_events("m-1", count=2), None)
        outcomes: list[str] = []

        async def contender(n: int) -> None:
            try:
                await store.append("m-1", 2, sample_events("m-1", start=2 + n, count=1), None)
                outcomes.append("won")
            except Conflict:
                outcomes.append("conflict")

        async with anyio.create_task_group() as tasks:
            for n in range(8):
                tasks.start_soon(contender, n)
        assert sorted(outcomes) == ["conflict"] * 7 + ["won"]
        _check_records(await store.read("m-1"), "m-1", 1)
        assert len(await store.read("m-1")) == 3

    async def test_concurrent_appenders_keep_every_meeting_contiguous(
        self, store: EventStore
    ) -> None:
        meetings = [f"m-{n}" for n in range(10)]

        async def writer(meeting_id: str) -> None:
            version = 0
            for _ in range(5):
                events = sample_events(meeting_id, start=version, count=2)
                records = await store.append(meeting_id, version, events, None)
                version = records[-1].version

        async with anyio.create_task_group() as tasks:
            for meeting_id in meetings:
                tasks.start_soon(writer, meeting_id)
        for meeting_id in meetings:
            records = await store.read(meeting_id)
            assert len(records) == 10
            _check_records(records, meeting_id, 1)
        everything = await store.read_all(limit=1000)
        assert len(everything) == 100
        assert [r.position for r in everything] == sorted({r.position for r in everything})

    async def test_a_tailing_reader_misses_nothing(self, store: EventStore) -> None:
        """A reader following read_all while writers append sees every record once, in order."""
        meetings = [f"m-{n}" for n in range(6)]
        done = anyio.Event()
        seen: list[Record] = []

        async def writer(meeting_id: str) -> None:
            version = 0
            for _ in range(8):
                records = await store.append(
                    meeting_id, version, sample_events(meeting_id, start=version, count=1), None
                )
                version = records[-1].version
                await anyio.sleep(0)

        async def reader() -> None:
            after = 0
            while True:
                finished = done.is_set()
                batch = await store.read_all(after_position=after, limit=7)
                seen.extend(batch)
                if batch:
                    after = batch[-1].position
                elif finished:
                    return
                else:
                    await anyio.sleep(0.001)

        async with anyio.create_task_group() as tasks:
            tasks.start_soon(reader)
            async with anyio.create_task_group() as writers:
                for meeting_id in meetings:
                    writers.start_soon(writer, meeting_id)
            done.set()
        assert seen == await store.read_all(limit=10_000)
        assert len(seen) == 48

    async def test_large_and_unicode_payloads_survive(self, store: EventStore) -> None:
        event = sample_events("m-1", count=3)[2]
        assert isinstance(event, ParticipantJoined)
        big = ParticipantJoined(
            meeting_id="m-1",
            at=event.at,
            participant_id="ü-😀-\u200b",
            connection_id="c-ü",
            name="名前 " * 50,
            meta_data={"blob": "x" * 3000, "emoji": "😀", "zero": "\u0000"},
            mic_enabled=False,
            webcam_enabled=True,
            mode="RECV_ONLY",
            permissions=("allow_join", "allow_mod"),
            multistream=False,
            debug_mode=True,
        )
        events = [*sample_events("m-1", count=2), big]
        leave = Leave(meeting_id="m-1", at=9, participant_id="ü-😀-\u200b", connection_id="c-ü")
        await store.append("m-1", 0, events, leave)
        records = await store.read("m-1")
        assert records[2].event == big
        assert records[2].cause == leave

    async def test_close_twice_is_safe(self, store: EventStore) -> None:
        await store.close()
        await store.close()


@pytest.mark.anyio
class CheckpointsContract:
    """Tests every store with the `Checkpoints` capability passes; subclass it with a
    `store` fixture, like `EventStoreContract`."""

    async def test_implements_checkpoints(self, store: EventStore) -> None:
        assert isinstance(store, Checkpoints)

    async def test_an_unknown_name_loads_none(self, store: Checkpoints) -> None:
        assert await store.load_checkpoint("nobody") is None

    async def test_save_then_load(self, store: Checkpoints) -> None:
        await store.save_checkpoint("cursor", b"\x00\x01 binary \xff")
        assert await store.load_checkpoint("cursor") == b"\x00\x01 binary \xff"

    async def test_save_replaces(self, store: Checkpoints) -> None:
        await store.save_checkpoint("cursor", b"one")
        await store.save_checkpoint("cursor", b"two")
        assert await store.load_checkpoint("cursor") == b"two"

    async def test_an_empty_value_is_not_none(self, store: Checkpoints) -> None:
        await store.save_checkpoint("empty", b"")
        assert await store.load_checkpoint("empty") == b""

    async def test_names_are_independent(self, store: Checkpoints) -> None:
        await store.save_checkpoint("a", b"1")
        await store.save_checkpoint("a.b", b"2")
        await store.save_checkpoint("ü 😀", b"3")
        assert await store.load_checkpoint("a") == b"1"
        assert await store.load_checkpoint("a.b") == b"2"
        assert await store.load_checkpoint("ü 😀") == b"3"

    async def test_a_large_value_round_trips(self, store: Checkpoints) -> None:
        value = bytes(range(256)) * 8192  # 2 MiB
        await store.save_checkpoint("big", value)
        assert await store.load_checkpoint("big") == value

    async def test_swap_creates_only_when_absent(self, store: Checkpoints) -> None:
        assert await store.swap_checkpoint("lock", None, b"mine")
        assert not await store.swap_checkpoint("lock", None, b"theirs")
        assert await store.load_checkpoint("lock") == b"mine"

    async def test_swap_replaces_only_the_expected_value(self, store: Checkpoints) -> None:
        await store.save_checkpoint("lock", b"v1")
        assert not await store.swap_checkpoint("lock", b"v0", b"stale")
        assert await store.load_checkpoint("lock") == b"v1"
        assert await store.swap_checkpoint("lock", b"v1", b"v2")
        assert await store.load_checkpoint("lock") == b"v2"

    async def test_concurrent_swaps_have_one_winner(self, store: Checkpoints) -> None:
        await store.save_checkpoint("lock", b"free")
        winners: list[int] = []

        async def contender(n: int) -> None:
            if await store.swap_checkpoint("lock", b"free", f"taken by {n}".encode()):
                winners.append(n)

        async with anyio.create_task_group() as tasks:
            for n in range(8):
                tasks.start_soon(contender, n)
        assert len(winners) == 1
        assert await store.load_checkpoint("lock") == f"taken by {winners[0]}".encode()

    async def test_checkpoints_are_not_in_the_log(self, store: EventStore) -> None:
        assert isinstance(store, Checkpoints)
        records = await store.append("m-1", 0, sample_events("m-1", count=3), None)
        await store.save_checkpoint("cursor", b"3")
        more = await store.append("m-1", 3, sample_events("m-1", start=3, count=1), None)
        assert await store.read_all() == records + more
        assert await store.read("m-1") == records + more


def _entrant(
    kind: type[ParticipantJoined | EntryRequested],
    meeting_id: str,
    participant_id: str,
    connection_id: str,
) -> AnyEvent:
    return kind(
        meeting_id=meeting_id,
        at=20,
        participant_id=participant_id,
        connection_id=connection_id,
        name=participant_id,
        meta_data={},
        mic_enabled=False,
        webcam_enabled=False,
        mode="SEND_AND_RECV",
        permissions=("allow_join",),
        multistream=True,
        debug_mode=False,
    )


def _left(meeting_id: str, participant_id: str, connection_id: str, reason: int) -> AnyEvent:
    return ParticipantLeft(
        meeting_id=meeting_id,
        at=21,
        participant_id=participant_id,
        connection_id=connection_id,
        reason=LeaveReason(reason),
    )


@pytest.mark.anyio
class SharedLeasesContract:
    """Tests every store with the `SharedLeases` capability passes; subclass it with a
    `store` fixture, like `EventStoreContract`. Lease times are short real times."""

    async def test_implements_shared_leases(self, store: EventStore) -> None:
        assert isinstance(store, SharedLeases)

    async def test_a_join_grants_a_lease_and_a_leave_drops_it(self, store: EventStore) -> None:
        assert isinstance(store, SharedLeases)
        await store.append("m-1", 0, sample_events("m-1", count=3), None)  # p1 joins on c1
        assert await store.claim_expired_leases(3_600_000) == []  # just granted
        assert await store.claim_expired_leases(0) == [("m-1", "c1", "p1")]
        await store.append("m-1", 3, [_left("m-1", "p1", "c1", 1101)], None)
        assert await store.claim_expired_leases(0) == []

    async def test_a_waiting_entrant_has_a_lease_until_withdrawn(self, store: EventStore) -> None:
        assert isinstance(store, SharedLeases)
        await store.append("m-1", 0, sample_events("m-1", count=2), None)
        await store.append("m-1", 2, [_entrant(EntryRequested, "m-1", "p9", "c9")], None)
        assert await store.claim_expired_leases(0) == [("m-1", "c9", "p9")]
        withdrawn = EntryWithdrawn(
            meeting_id="m-1",
            at=22,
            participant_id="p9",
            connection_id="c9",
            reason=LeaveReason.WEBSOCKET_DISCONNECTED,
        )
        await store.append("m-1", 3, [withdrawn], None)
        assert await store.claim_expired_leases(0) == []

    async def test_a_replaced_connection_loses_its_lease(self, store: EventStore) -> None:
        assert isinstance(store, SharedLeases)
        await store.append("m-1", 0, sample_events("m-1", count=3), None)
        replaced = [
            _left("m-1", "p1", "c1", LeaveReason.DUPLICATE_PARTICIPANT),
            _entrant(ParticipantJoined, "m-1", "p1", "c1-new"),
        ]
        await store.append("m-1", 3, replaced, None)
        assert await store.claim_expired_leases(0) == [("m-1", "c1-new", "p1")]

    async def test_a_claimed_lease_is_left_to_its_claimer_for_a_ttl(
        self, store: EventStore
    ) -> None:
        assert isinstance(store, SharedLeases)
        await store.append("m-1", 0, sample_events("m-1", count=3), None)
        await anyio.sleep(0.45)
        assert await store.claim_expired_leases(300) == [("m-1", "c1", "p1")]
        assert await store.claim_expired_leases(300) == []  # claimed: someone records the leave
        await anyio.sleep(0.45)  # ... or died: then someone else claims it
        assert await store.claim_expired_leases(300) == [("m-1", "c1", "p1")]

    async def test_a_renewed_lease_does_not_expire(self, store: EventStore) -> None:
        assert isinstance(store, SharedLeases)
        for meeting_id in ("m-1", "m-2"):
            await store.append(meeting_id, 0, sample_events(meeting_id, count=3), None)
        await anyio.sleep(0.5)
        await store.renew_leases([("m-1", "c1"), ("m-1", "no-such-connection")])
        await store.renew_leases([])
        await anyio.sleep(0.5)
        assert await store.claim_expired_leases(800) == [("m-2", "c1", "p1")]

    async def test_dropped_leases_are_gone(self, store: EventStore) -> None:
        assert isinstance(store, SharedLeases)
        for meeting_id in ("m-1", "m-2"):
            await store.append(meeting_id, 0, sample_events(meeting_id, count=3), None)
        await store.drop_leases([("m-1", "c1"), ("m-3", "c1")])
        await store.drop_leases([])
        assert await store.claim_expired_leases(0) == [("m-2", "c1", "p1")]

    async def test_concurrent_claimers_never_share_a_lease(self, store: EventStore) -> None:
        assert isinstance(store, SharedLeases)
        meetings = [f"m-{n}" for n in range(20)]
        for meeting_id in meetings:
            await store.append(meeting_id, 0, sample_events(meeting_id, count=3), None)
        await anyio.sleep(0.55)
        claimed: list[tuple[str, str, str]] = []

        async def claimer() -> None:
            while batch := await store.claim_expired_leases(500, limit=3):
                claimed.extend(batch)

        async with anyio.create_task_group() as tasks:
            for _ in range(4):
                tasks.start_soon(claimer)
        assert sorted(claimed) == sorted((m, "c1", "p1") for m in meetings)


@pytest.mark.anyio
class WatchableStoreContract:
    """Tests every store with the `WatchableStore` capability passes; subclass it with
    fixtures `store` and `other`: two store objects on the same storage, as two nodes
    would have them."""

    async def _watch_until(
        self, store: WatchableStore, other: EventStore, meetings: Sequence[str]
    ) -> set[str]:
        """Append to each of `meetings` through `other` (again, until `store`'s watch has
        started) and return the ids the watch reports, once it reported them all."""
        seen: set[str] = set()
        everything = anyio.Event()
        versions = dict.fromkeys(meetings, 0)

        async def watch() -> None:
            async for meeting_id in store.watch():
                seen.add(meeting_id)
                if seen.issuperset(meetings):
                    everything.set()

        with anyio.fail_after(10):
            async with anyio.create_task_group() as tasks:
                tasks.start_soon(watch)
                while not everything.is_set():
                    for meeting_id in meetings:
                        if meeting_id in seen:
                            continue
                        events = sample_events(meeting_id, start=versions[meeting_id], count=1)
                        records = await other.append(meeting_id, versions[meeting_id], events, None)
                        versions[meeting_id] = records[-1].version
                    with anyio.move_on_after(0.2):
                        await everything.wait()
                tasks.cancel_scope.cancel()
        return seen

    async def test_implements_watch(self, store: EventStore) -> None:
        assert isinstance(store, WatchableStore)

    async def test_other_writers_appends_are_reported(
        self, store: EventStore, other: EventStore
    ) -> None:
        assert isinstance(store, WatchableStore)
        meetings = [f"w-{n}" for n in range(5)]
        assert set(meetings) <= await self._watch_until(store, other, meetings)
        for meeting_id in meetings:  # the log is the truth: the store reads what was reported
            assert await store.read(meeting_id) == await other.read(meeting_id)


@pytest.mark.anyio
class SharedStorageContract:
    """Tests every store that several store objects (nodes, processes) may open on the
    same storage passes; subclass it with fixtures `store` and `other`, two such objects.
    (`race_engines` checks the same with whole engines in separate processes.)"""

    async def test_a_stale_writer_gets_a_conflict_and_its_group_still_commits(
        self, store: EventStore, other: EventStore
    ) -> None:
        """A writer that caches versions goes stale when the other one writes: that
        append is a Conflict, and the appends sharing its transaction still commit."""
        await store.append("m-1", 0, sample_events("m-1", count=3), None)
        with pytest.raises(Conflict):
            await other.append("m-1", 0, sample_events("m-1", count=1), None)
        await other.append("m-1", 3, sample_events("m-1", start=3, count=1), None)
        outcomes: list[object] = []

        async def append(meeting_id: str, expected: int) -> None:
            events = sample_events(meeting_id, start=expected, count=2)
            try:
                outcomes.append(await store.append(meeting_id, expected, events, None))
            except Conflict as exc:
                outcomes.append(exc)

        async with anyio.create_task_group() as tasks:
            tasks.start_soon(append, "m-1", 3)  # `store` still thinks m-1 is at 3
            for n in range(5):
                tasks.start_soon(append, f"m-other-{n}", 0)
        conflicts = [o for o in outcomes if isinstance(o, Conflict)]
        assert len(conflicts) == 1
        assert conflicts[0].actual_version == 4
        assert sum(isinstance(o, list) for o in outcomes) == 5
        await store.append("m-1", 4, sample_events("m-1", start=4, count=1), None)
        assert [r.version for r in await other.read("m-1")] == [1, 2, 3, 4, 5]
        assert [r.position for r in await other.read_all()] == list(range(1, 16))


async def _someone_joins(store: EventStore, meetings: Iterable[str]) -> None:
    """A participant joins each meeting (its connection holds a lease)."""
    for meeting_id in meetings:
        await store.append(meeting_id, 0, sample_events(meeting_id, count=3), None)


class MediaPlacementContract:
    """Tests every store with the `MediaPlacement` capability passes; subclass it with
    `store` and `other` fixtures (two nodes' store objects on the same storage)."""

    async def test_implements_media_placement(self, store: EventStore) -> None:
        assert isinstance(store, MediaPlacement)

    async def test_no_live_node_places_nothing(self, store: EventStore) -> None:
        assert isinstance(store, MediaPlacement)
        assert await store.place_meeting("m-1", 60_000) is None

    async def test_a_meeting_stays_on_its_node_while_it_lives(
        self, store: EventStore, other: EventStore
    ) -> None:
        assert isinstance(store, MediaPlacement)
        assert isinstance(other, MediaPlacement)
        await store.announce_node("http://n1")
        await other.announce_node("http://n2")
        placed = {m: await store.place_meeting(m, 60_000) for m in ("m-1", "m-2", "m-3", "m-4")}
        await _someone_joins(store, placed)
        assert set(placed.values()) <= {"http://n1", "http://n2"}
        for meeting_id, node in placed.items():  # any node asking gets the same answer
            assert await other.place_meeting(meeting_id, 60_000) == node
        await store.announce_node("http://n3")  # a node that starts later takes none of them
        for meeting_id, node in placed.items():
            assert await other.place_meeting(meeting_id, 60_000) == node

    async def test_the_meetings_of_a_node_that_goes_move_and_only_those(
        self, store: EventStore, other: EventStore
    ) -> None:
        assert isinstance(store, MediaPlacement)
        assert isinstance(other, MediaPlacement)
        await store.announce_node("http://n1")
        await other.announce_node("http://n2")
        meetings = [f"m-{n}" for n in range(20)]
        placed = {m: await store.place_meeting(m, 60_000) for m in meetings}
        assert set(placed.values()) == {"http://n1", "http://n2"}  # 20 meetings: both used
        await _someone_joins(store, meetings)
        await store.drop_node("http://n1")
        for meeting_id in meetings:
            assert await other.place_meeting(meeting_id, 60_000) == "http://n2"
        await store.announce_node("http://n1")  # back: it gets new meetings, not old ones
        for meeting_id in meetings:
            assert await store.place_meeting(meeting_id, 60_000) == "http://n2"

    async def test_a_node_that_stops_announcing_itself_is_gone_after_the_ttl(
        self, store: EventStore, other: EventStore
    ) -> None:
        assert isinstance(store, MediaPlacement)
        assert isinstance(other, MediaPlacement)
        await store.announce_node("http://n1")
        await store.announce_node("http://n2")
        placed = {m: await store.place_meeting(m, 60_000) for m in (f"m-{n}" for n in range(8))}
        for _ in range(3):  # n2 keeps announcing itself, n1 has stopped
            await anyio.sleep(0.2)
            await other.announce_node("http://n2")
        for meeting_id, node in placed.items():
            assert await other.place_meeting(meeting_id, 60_000) == node  # within the ttl
            assert await other.place_meeting(meeting_id, 500) == "http://n2"

    async def test_nodes_placing_a_meeting_at_once_agree(
        self, store: EventStore, other: EventStore
    ) -> None:
        assert isinstance(store, MediaPlacement)
        assert isinstance(other, MediaPlacement)
        for node in ("http://n1", "http://n2", "http://n3"):
            await store.announce_node(node)

        async def placed_at_once(meeting_id: str) -> list[str | None]:
            answers: list[str | None] = []

            async def place(on: MediaPlacement) -> None:
                answers.append(await on.place_meeting(meeting_id, 60_000))

            async with anyio.create_task_group() as tasks:
                for on in (store, other) * 4:
                    tasks.start_soon(place, on)
            return answers

        meetings = [f"m-{n}" for n in range(5)]
        for meeting_id in meetings:
            answers = await placed_at_once(meeting_id)
            assert len(answers) == 8
            assert len(set(answers)) == 1
            assert answers[0] is not None
        await store.drop_node("http://n1")
        await store.drop_node("http://n2")
        for meeting_id in meetings:  # moved at once, all to the same one
            assert await placed_at_once(meeting_id) == ["http://n3"] * 8

    async def test_a_meeting_nobody_is_in_is_placed_again_by_the_rule(
        self, store: EventStore, other: EventStore
    ) -> None:
        """A room used again later is spread over the nodes live then, like a new one;
        one with participants stays where it is."""
        assert isinstance(store, MediaPlacement)
        assert isinstance(other, MediaPlacement)
        await store.announce_node("http://n1")
        empty = [f"e-{n}" for n in range(20)]
        attended = [f"a-{n}" for n in range(20)]
        for meeting_id in empty + attended:
            assert await store.place_meeting(meeting_id, 60_000) == "http://n1"
        await _someone_joins(store, attended)
        await other.announce_node("http://n2")
        again = {await other.place_meeting(m, 60_000) for m in empty}
        assert again == {"http://n1", "http://n2"}
        for meeting_id in attended:
            assert await other.place_meeting(meeting_id, 60_000) == "http://n1"

    async def test_dropping_an_unknown_node_does_nothing(self, store: EventStore) -> None:
        assert isinstance(store, MediaPlacement)
        await store.drop_node("http://nowhere")
        await store.announce_node("http://n1")
        await store.announce_node("http://n1")  # twice: still one node
        assert await store.place_meeting("m-1", 60_000) == "http://n1"
