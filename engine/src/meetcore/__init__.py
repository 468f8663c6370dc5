"""meetcore: an event-sourced meeting state engine, with VideoSDK's API shape.

The pure core: `decide(state, command)` gives the events a command causes (or
raises `Rejected`), `evolve(state, event)` applies one, `fold(events)` applies
many. Commands live in `meetcore.commands`, events in `meetcore.events`.

`import meetcore` loads the pure core only (and msgspec): `Engine`, `plugin_manager`
and `hookimpl`, which need anyio, pluggy and click, are imported on first use.
"""

import importlib
from typing import TYPE_CHECKING, Any

from meetcore import commands, events
from meetcore._codes import ErrorCode, LeaveReason, Rejected
from meetcore._decider import TRANSITIONS, InvalidLog, Refusal, Rule, decide, evolve, fold
from meetcore._group import NumberedGroup, QueuedAppend, check_append
from meetcore._principal import Principal
from meetcore._record import (
    Record,
    decode_msgpack,
    encode_msgpack,
    fold_jsonl,
    fold_msgpack,
    read_jsonl,
    to_json,
    write_jsonl,
)
from meetcore._state import MeetingState, Participant, Phase, phase_of
from meetcore._store import (
    Checkpoints,
    Conflict,
    EventStore,
    ExclusiveLeases,
    MediaPlacement,
    MemoryStore,
    SharedLeases,
    StoreBusy,
    StoreError,
    WatchableStore,
    wall_clock_ms,
    without_password,
)
from meetcore._text import is_text, one_line
from meetcore._time import iso_time
from meetcore.commands import Command
from meetcore.events import Event

if TYPE_CHECKING:
    from meetcore._engine import Engine
    from meetcore._plugins import plugin_manager
    from meetcore.hookspecs import hookimpl

#: What is imported on first use, and from where.
_LAZY = {
    "Engine": "meetcore._engine",
    "plugin_manager": "meetcore._plugins",
    "hookimpl": "meetcore.hookspecs",
}


def __getattr__(name: str) -> Any:
    where = _LAZY.get(name)
    if where is None:
        raise AttributeError(f"module 'meetcore' has no attribute {name!r}")
    value = getattr(importlib.import_module(where), name)
    globals()[name] = value
    return value


__all__ = [
    "TRANSITIONS",
    "Checkpoints",
    "Command",
    "Conflict",
    "Engine",
    "ErrorCode",
    "Event",
    "EventStore",
    "ExclusiveLeases",
    "InvalidLog",
    "LeaveReason",
    "MediaPlacement",
    "MeetingState",
    "MemoryStore",
    "NumberedGroup",
    "Participant",
    "Phase",
    "Principal",
    "QueuedAppend",
    "Record",
    "Refusal",
    "Rejected",
    "Rule",
    "SharedLeases",
    "StoreBusy",
    "StoreError",
    "WatchableStore",
    "check_append",
    "commands",
    "decide",
    "decode_msgpack",
    "encode_msgpack",
    "events",
    "evolve",
    "fold",
    "fold_jsonl",
    "fold_msgpack",
    "hookimpl",
    "is_text",
    "iso_time",
    "one_line",
    "phase_of",
    "plugin_manager",
    "read_jsonl",
    "to_json",
    "wall_clock_ms",
    "without_password",
    "write_jsonl",
]
