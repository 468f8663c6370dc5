"""meetcore: an event-sourced meeting state engine, with VideoSDK's API shape.

The pure core: `decide(state, command)` gives the events a command causes (or
raises `Rejected`), `evolve(state, event)` applies one, `fold(events)` applies
many. Commands live in `meetcore.commands`, events in `meetcore.events`.
"""

from meetcore import commands, events
from meetcore._codes import ErrorCode, LeaveReason, Rejected
from meetcore._decider import TRANSITIONS, InvalidLog, Refusal, Rule, decide, evolve, fold
from meetcore._engine import Engine
from meetcore._plugins import plugin_manager
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
)
from meetcore.commands import Command
from meetcore.events import Event
from meetcore.hookspecs import hookimpl

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
    "Participant",
    "Phase",
    "Principal",
    "Record",
    "Refusal",
    "Rejected",
    "Rule",
    "SharedLeases",
    "StoreBusy",
    "StoreError",
    "WatchableStore",
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
    "phase_of",
    "plugin_manager",
    "read_jsonl",
    "to_json",
    "write_jsonl",
]
