"""`fold_jsonl` / `fold_msgpack`: replaying a whole log to states, checked line by line."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

import meetcore

EXAMPLE = Path(__file__).resolve().parents[2] / "docs" / "examples" / "meeting.jsonl"


def example_lines() -> list[bytes]:
    return EXAMPLE.read_bytes().splitlines()


RICH = b'"metaData":{"role":"host","device":{"os":"Linux","tags":["a",1,null]}}'


def test_fold_jsonl_equals_folding_every_record() -> None:
    records = list(meetcore.read_jsonl(example_lines()))
    expected = meetcore.fold(r.event for r in records)
    assert expected is not None
    assert meetcore.fold_jsonl(example_lines()) == {expected.meeting_id: expected}
    blobs = [meetcore.encode_msgpack(r) for r in records]
    assert meetcore.fold_msgpack(blobs) == {expected.meeting_id: expected}


@pytest.mark.parametrize("end", range(1, 24))
def test_every_prefix_folds_like_the_full_decode(end: int) -> None:
    # the prefixes end with participants in, one waiting, and the room empty; the
    # fast fold decodes their metaData at the end, and must give the same states
    lines = [line.replace(b'"metaData":{}', RICH) for line in example_lines()[:end]]
    records = list(meetcore.read_jsonl(lines))
    expected = meetcore.fold(r.event for r in records)
    assert expected is not None
    assert meetcore.fold_jsonl(lines) == {expected.meeting_id: expected}
    assert meetcore.fold_jsonl([line.decode() for line in lines]) == {expected.meeting_id: expected}
    blobs = [meetcore.encode_msgpack(r) for r in records]
    assert meetcore.fold_msgpack(blobs) == {expected.meeting_id: expected}


def test_the_prefixes_cover_participants_in_and_waiting() -> None:
    lines = [line.replace(b'"metaData":{}', RICH) for line in example_lines()]
    ends = [next(iter(meetcore.fold_jsonl(lines[:end]).values())) for end in range(1, 24)]
    assert any(s.participants and s.waiting for s in ends)
    assert {"role": "host", "device": {"os": "Linux", "tags": ["a", 1, None]}} in [
        p.meta_data for s in ends for p in s.participants.values()
    ]


def test_bad_metadata_of_a_participant_still_in_is_an_invalid_log() -> None:
    lines = example_lines()
    first_join = next(i for i, line in enumerate(lines) if b'"participant-joined"' in line)
    record = json.loads(lines[first_join])
    record["event"]["metaData"] = [1, 2]
    lines[first_join] = json.dumps(record).encode()
    with pytest.raises(meetcore.InvalidLog, match=r"^log: the metaData of '[^']+' .* not valid"):
        meetcore.fold_jsonl(lines[: first_join + 1])


def test_lines_in_a_reused_buffer_fold_like_bytes() -> None:
    lines = [line.replace(b'"metaData":{}', RICH) for line in example_lines()[:12]]
    expected = meetcore.fold_jsonl(lines)
    buffer = bytearray()

    def reused() -> Iterator[bytearray]:
        for line in lines:
            buffer[:] = line
            yield buffer

    assert meetcore.fold_jsonl(reused()) == expected  # type: ignore[arg-type]


def test_a_join_before_the_meeting_is_named_by_its_type() -> None:
    lines = example_lines()
    first_join = next(i for i, line in enumerate(lines) if b'"participant-joined"' in line)
    record = json.loads(lines[first_join])
    record["version"] = 1
    with pytest.raises(
        meetcore.InvalidLog, match=r"^log:1: ParticipantJoined before the meeting was initialized"
    ):
        meetcore.fold_jsonl([json.dumps(record).encode()])


def test_a_missing_record_is_named_by_line() -> None:
    lines = example_lines()
    del lines[4]
    with pytest.raises(
        meetcore.InvalidLog, match=r"^log:5: version 6 of 'abc-def-ghi' is out of order"
    ):
        meetcore.fold_jsonl(lines)


@pytest.mark.parametrize(
    "bad",
    [
        b"not json",
        b'{"meetingId": "x"}',
        b"\xff\xfe\x00",
        b"[1, 2]",
        b'{"meetingId":"abc-def-ghi","version":1,"event":{"type":"nope"}}',
    ],
)
def test_garbage_is_an_invalid_log(bad: bytes) -> None:
    lines = example_lines()
    lines.insert(3, bad)
    with pytest.raises(meetcore.InvalidLog, match=r"^example:4: "):
        meetcore.fold_jsonl(lines, source="example")


def test_an_event_filed_under_another_meeting_is_refused() -> None:
    lines = example_lines()
    lines[0] = lines[0].replace(
        b'"meetingId":"abc-def-ghi","version"', b'"meetingId":"other","version"', 1
    )
    with pytest.raises(meetcore.InvalidLog, match="filed under another meeting"):
        meetcore.fold_jsonl(lines)
