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

The tests run on anyio's pytest plugin (shipped with anyio), on asyncio.
Requires pytest; importing this module does nothing else.
"""

from __future__ import annotations

from collections.abc import Sequence

import anyio
import pytest

from meetcore._codes import LeaveReason
from meetcore._record import Record
from meetcore._store import Conflict, EventStore
from meetcore.commands import InitMeeting, Join, Leave
from meetcore.events import (
    AnyEvent,
    MeetingInitialized,
    ParticipantJoined,
    ParticipantLeft,
    SessionStarted,
)

__all__ = ["EventStoreContract", "sample_events"]


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
