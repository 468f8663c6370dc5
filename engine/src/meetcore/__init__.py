"""meetcore: an event-sourced meeting state engine, with VideoSDK's API shape.

The pure core: `decide(state, command)` gives the events a command causes (or
raises `Rejected`), `evolve(state, event)` applies one, `fold(events)` applies
many. Commands live in `meetcore.commands`, events in `meetcore.events`.
"""

from meetcore import commands, events
from meetcore._codes import ErrorCode, LeaveReason, Rejected
from meetcore._decider import TRANSITIONS, InvalidLog, Refusal, Rule, decide, evolve, fold
from meetcore._record import (
    Record,
    decode_msgpack,
    encode_msgpack,
    read_jsonl,
    to_json,
    write_jsonl,
)
from meetcore._state import MeetingState, Participant, Phase, phase_of
from meetcore.commands import Command
from meetcore.events import Event

__all__ = [
    "TRANSITIONS",
    "Command",
    "ErrorCode",
    "Event",
    "InvalidLog",
    "LeaveReason",
    "MeetingState",
    "Participant",
    "Phase",
    "Record",
    "Refusal",
    "Rejected",
    "Rule",
    "commands",
    "decide",
    "decode_msgpack",
    "encode_msgpack",
    "events",
    "evolve",
    "fold",
    "phase_of",
    "read_jsonl",
    "to_json",
    "write_jsonl",
]
