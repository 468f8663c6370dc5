"""schemas/ holds the wire protocol and the OpenAPI document as the code generates them."""

from __future__ import annotations

from pathlib import Path

import msgspec

import meetcore_protocol as protocol
from meetcore import LeaveReason, Record, _schemas, plugin_manager
from meetcore.events import ParticipantLeft
from meetcore_server import signaling

ROOT = Path(__file__).resolve().parents[2]


def test_the_plugin_schemas_are_up_to_date() -> None:
    pm = plugin_manager()
    files = _schemas.generate(pm)
    assert {"protocol-client.json", "protocol-server.json", "openapi.json"} <= set(files)
    stale = _schemas.check(ROOT / "schemas", pm)
    assert not stale, f"regenerate with: uv run meetcore schemas ({stale})"


def test_the_protocol_schema_names_every_message_type() -> None:
    client = msgspec.json.decode((ROOT / "schemas" / "protocol-client.json").read_bytes())
    server = msgspec.json.decode((ROOT / "schemas" / "protocol-server.json").read_bytes())
    tags = {
        definition["properties"]["type"]["enum"][0]
        for schema in (client, server)
        for definition in schema["$defs"].values()
        if "type" in definition.get("properties", {})
    }
    for kind in (*protocol.ClientMessage.__args__, *protocol.ServerMessage.__args__):  # type: ignore[attr-defined]
        assert kind.__struct_config__.tag in tags


def test_hand_built_event_frames_decode_as_the_schema_says() -> None:
    # The server encodes each event once and splices the bytes into `events` frames;
    # what it builds must decode with the protocol's own types.
    left = ParticipantLeft(
        meeting_id="abc-def-ghi",
        at=1,
        participant_id="p",
        connection_id="c",
        reason=LeaveReason.WEBSOCKET_DISCONNECTED,
    )
    record = Record(
        meeting_id="abc-def-ghi", version=3, position=9, recorded_at=1, event=left, cause=None
    )
    entry = signaling._Entry(record)
    assert (entry.about, entry.left, entry.admits) == ("c", True, False)
    frame = b'{"type":"events","events":[' + entry.data + b"]}"
    decoded = protocol.server_decoder.decode(frame)
    assert isinstance(decoded, protocol.EventsFrame)
    assert [(d.seq, d.event) for d in decoded.events] == [(3, left)]
