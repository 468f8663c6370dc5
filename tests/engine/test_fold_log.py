"""`fold_jsonl` / `fold_msgpack`: replaying a whole log to states, checked line by line."""

from __future__ import annotations

from pathlib import Path

import pytest

import meetcore

EXAMPLE = Path(__file__).resolve().parents[2] / "docs" / "examples" / "meeting.jsonl"


def example_lines() -> list[bytes]:
    return EXAMPLE.read_bytes().splitlines()


def test_fold_jsonl_equals_folding_every_record() -> None:
    records = list(meetcore.read_jsonl(example_lines()))
    expected = meetcore.fold(r.event for r in records)
    assert expected is not None
    assert meetcore.fold_jsonl(example_lines()) == {expected.meeting_id: expected}
    blobs = [meetcore.encode_msgpack(r) for r in records]
    assert meetcore.fold_msgpack(blobs) == {expected.meeting_id: expected}


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
