"""Files generated from the code must match it: `schemas/` and the table in docs/domain.md."""

from __future__ import annotations

import re
from pathlib import Path

import msgspec

from meetcore import _schemas
from meetcore._table import render_transitions

ROOT = Path(__file__).resolve().parents[2]


def test_schemas_are_up_to_date() -> None:
    stale = _schemas.check(ROOT / "schemas")
    assert not stale, f"regenerate with: uv run meetcore schemas ({stale})"


def test_a_stale_schema_is_noticed(tmp_path: Path) -> None:
    assert _schemas.write(tmp_path) == ["commands.json", "events.json", "record.json"]
    assert _schemas.check(tmp_path) == []
    (tmp_path / "events.json").write_text("{}")
    assert _schemas.check(tmp_path) == ["events.json"]


def test_the_schemas_describe_the_wire_names() -> None:
    events = msgspec.json.decode((ROOT / "schemas" / "events.json").read_bytes())
    joined = events["$defs"]["ParticipantJoined"]
    assert joined["properties"]["type"]["enum"] == ["participant-joined"]
    assert {"meetingId", "participantId", "micEnabled", "metaData"} <= set(joined["properties"])


def test_domain_doc_shows_the_table_the_code_runs() -> None:
    text = (ROOT / "docs" / "domain.md").read_text()
    found = re.search(r"do not edit -->\n(.*?)<!-- /transitions -->", text, re.S)
    assert found is not None, "docs/domain.md lost its generated table markers"
    assert found.group(1) == render_transitions()
