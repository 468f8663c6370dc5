"""The media hooks meetcore-media adds to meetcore's (through `meetcore_addhooks`).

The meeting's log decides who sends and who receives media: the server's media
layer follows the log of every meeting with media on this node and calls
`meetcore_media_event` with each record that changes it. The built-in forwarder
(`meetcore_media.sfu.MediaServer`) is one implementation, registered with the
engine's plugin manager while the server runs; another plugin may implement the same
hook to act on the same events (a recorder, a bridge to another media server).
`meetcore_media_published` and `meetcore_media_unpublished` tell plugins when the
forwarder has a participant's track and when it stops having it.

`docs/media.md` documents each hook. Implementations are called with keyword
arguments, may take any subset of them, and may return an awaitable, which is
awaited; one that raises is logged and the others still run.
"""

from __future__ import annotations

import sys
from collections.abc import Awaitable
from typing import TYPE_CHECKING, Literal

import pluggy

from meetcore import Record
from meetcore.hookspecs import hookspec

if TYPE_CHECKING:
    from meetcore_media._forward import Publication

__all__ = [
    "add_to",
    "meetcore_media_event",
    "meetcore_media_published",
    "meetcore_media_unpublished",
]


@hookspec
def meetcore_media_event(meeting_id: str, record: Record) -> Awaitable[None] | None:
    """A record of a meeting with media on this node changed who sends or receives:
    its event is `ParticipantJoined`, `MediaChanged`, `ModeChanged` or
    `ParticipantLeft`.

    Called in log order, once per record, by the node's media layer, from the first
    media connection of the meeting on this node to the last. The built-in forwarder
    starts and stops forwarding from it and renegotiates with the clients whose
    subscriptions changed. May return an awaitable; the next record waits for it.
    """


@hookspec
def meetcore_media_published(
    meeting_id: str,
    participant_id: str,
    kind: Literal["audio", "video"],
    publication: Publication,
) -> Awaitable[None] | None:
    """The forwarder has `participant_id`'s `kind` track: the log says it is on and the
    participant's media connection carries it.

    `publication.subscribe()` gives a track of its encoded frames (`av.Packet`, VP8
    or Opus), for a plugin that records or relays them without decoding.
    """


@hookspec
def meetcore_media_unpublished(
    meeting_id: str, participant_id: str, kind: Literal["audio", "video"]
) -> Awaitable[None] | None:
    """The forwarder no longer has that track: switched off, mode changed, left, or its
    media connection closed. Tracks from `publication.subscribe()` get nothing more."""


def add_to(pm: pluggy.PluginManager) -> None:
    """Add these hookspecs to `pm` unless it has them (the plugin's `meetcore_addhooks`
    does it; a server on an engine opened without autoload does it itself)."""
    caller = getattr(pm.hook, "meetcore_media_event", None)
    if caller is None or not caller.has_spec():
        pm.add_hookspecs(sys.modules[__name__])
