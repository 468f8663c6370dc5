"""The delivery state kept in the store's checkpoints (`meetcore.Checkpoints`), msgpack.

Three checkpoints, each with one writer, so that no two processes overwrite each
other's work:

- `meetcore-webhooks.state` (the delivering server only): the cursor, the position in
  the log up to which every record's webhook is delivered or queued, and the queues
  ("lanes", one per meeting) of deliveries not yet done, parked ones included. Cursor
  and queues are saved together, in one value, so a saved cursor never runs ahead of
  the queues: that is what makes delivery at-least-once across crashes.
- `meetcore-webhooks.lease`: which process delivers, until when (compare-and-swap), so
  several servers on one store never deliver twice over or write each other's state.
- `meetcore-webhooks.retry` (`meetcore webhooks retry` only, compare-and-swap): requests
  to send parked deliveries again, numbered; the server applies each once and records
  the last number it applied in its state.
"""

from __future__ import annotations

from typing import Final, Protocol

import msgspec

from meetcore import Checkpoints, EventStore
from meetcore_webhooks._bodies import Delivery

__all__ = [
    "LEASE",
    "RETRY",
    "STATE",
    "Lane",
    "Lease",
    "RetryRequest",
    "State",
    "Store",
    "decode_lease",
    "decode_retries",
    "decode_state",
    "encode",
    "matches",
    "request_retry",
]


class Store(EventStore, Checkpoints, Protocol):
    """An event store that keeps checkpoints: what webhooks are delivered from."""


STATE: Final = "meetcore-webhooks.state"
LEASE: Final = "meetcore-webhooks.lease"
RETRY: Final = "meetcore-webhooks.retry"


class Lane(msgspec.Struct, kw_only=True, rename="camel"):
    """One meeting's deliveries not yet done, in log order; the head is tried first.

    `attempts` and `last_error` are the head's; `next_at` (unix ms) is when it may be
    tried again. A parked lane (`parked_at` set) waits for `meetcore webhooks retry`,
    and keeps the meeting's later webhooks behind its head, so order is never broken.
    """

    deliveries: list[Delivery]
    attempts: int = 0
    next_at: int = 0
    last_error: str | None = None
    parked_at: int | None = None


class State(msgspec.Struct, kw_only=True, rename="camel"):
    """The delivering server's state (see the module docstring)."""

    cursor: int = 0
    lanes: dict[str, Lane] = msgspec.field(default_factory=dict)
    #: The number of the last retry request applied.
    retried: int = 0
    #: Deliveries done so far, for `meetcore webhooks status`.
    delivered: int = 0


class Lease(msgspec.Struct, kw_only=True, rename="camel"):
    """Who delivers (`owner`), until when (unix ms); an expired lease is free to take."""

    owner: str
    expires_at: int


class RetryRequest(msgspec.Struct, kw_only=True, rename="camel"):
    """`meetcore webhooks retry`: send the parked deliveries `target` names again (a
    delivery id or a meeting id; None: every parked one)."""

    seq: int
    target: str | None
    at: int


_encoder = msgspec.msgpack.Encoder()
_state = msgspec.msgpack.Decoder(State)
_lease = msgspec.msgpack.Decoder(Lease)
_retries = msgspec.msgpack.Decoder(list[RetryRequest])


def encode(value: State | Lease | list[RetryRequest]) -> bytes:
    return _encoder.encode(value)


def decode_state(raw: bytes | None) -> State:
    return State() if raw is None else _state.decode(raw)


def decode_lease(raw: bytes | None) -> Lease | None:
    return None if raw is None else _lease.decode(raw)


def decode_retries(raw: bytes | None) -> list[RetryRequest]:
    return [] if raw is None else _retries.decode(raw)


def matches(target: str | None, meeting_id: str, lane: Lane) -> bool:
    """Whether a retry of `target` (None: all) concerns this parked lane."""
    if lane.parked_at is None:
        return False
    return target is None or target == meeting_id or any(d.id == target for d in lane.deliveries)


async def request_retry(store: Store, target: str | None, at: int) -> RetryRequest:
    """Add a retry request for the server to apply (safe against concurrent callers:
    a compare-and-swap, tried again when another request got in first)."""
    while True:
        raw = await store.load_checkpoint(RETRY)
        applied = decode_state(await store.load_checkpoint(STATE)).retried
        waiting = [r for r in decode_retries(raw) if r.seq > applied]  # the rest is done
        seq = max([applied, *(r.seq for r in waiting)]) + 1
        request = RetryRequest(seq=seq, target=target, at=at)
        if await store.swap_checkpoint(RETRY, raw, encode([*waiting, request])):
            return request
