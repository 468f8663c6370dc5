"""The SFU's model, apart from any negotiation: a `Router` per meeting with media on this
node, and the `Transport`s of its participants.

The log decides who sends and who receives. A router keeps the meeting's members
(mode, mic, webcam, connection) from the log's events (`apply`), knows the
`Publication` each participant's transport brings in (`publication`: a producer, in
mediasoup's words) and, for each participant, the streams it should get (`wanted`).
A transport is one participant's media connection. It brings that participant's
publications in, and makes what it carries out match `wanted` (`update`): it attaches
a `ForwardTrack` (a consumer: `Publication.subscribe()`) per stream and tells its
client through its own negotiation. `sdp.SdpTransport` negotiates with SDP offers and
answers (meetcore's protocol); another front end brings its own transport and drives
the same router (`sfu.MediaServer` reconciles every transport of a router whenever
the log or a publication changes).
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Literal, Protocol

from meetcore.events import (
    AnyEvent,
    MediaChanged,
    ModeChanged,
    ParticipantJoined,
    ParticipantLeft,
)
from meetcore_media._forward import Loudest

if TYPE_CHECKING:
    from meetcore_media._forward import Publication

__all__ = ["CATCH_UP", "KINDS", "MEDIA_EVENTS", "Kind", "Member", "Router", "Stream", "Transport"]

Kind = Literal["audio", "video"]
KINDS: tuple[Kind, ...] = ("audio", "video")
#: A participant's audio or video: (participant id, kind).
Stream = tuple[str, Kind]
#: The events that change who sends or receives media.
MEDIA_EVENTS = (ParticipantJoined, MediaChanged, ModeChanged, ParticipantLeft)
#: Seconds an offer waits for the meeting's log to show its participant.
CATCH_UP = 5.0


class Transport(Protocol):
    """One participant's media connection, as the router and the server use it."""

    participant_id: str
    connection_id: str
    router: Router
    #: What it brings in: the participant's audio and video, once its client sends them.
    publications: dict[Kind, Publication]
    closed: bool

    async def update(self, router: Router) -> None:
        """Make what it carries out match `router.wanted(participant_id)`: add, free
        and attach consumers, and tell the client (a renegotiation)."""
        ...

    async def close(self) -> None:
        """Stop it: close its publications and consumers and its connection."""
        ...


class Member:
    """A participant as media sees it: where it is connected, what it sends."""

    __slots__ = ("connection_id", "mic", "mode", "participant_id", "webcam")

    def __init__(
        self, participant_id: str, connection_id: str, mode: str, mic: bool, webcam: bool
    ) -> None:
        self.participant_id = participant_id
        self.connection_id = connection_id
        self.mode = mode
        self.mic = mic
        self.webcam = webcam

    def sends(self, kind: Kind) -> bool:
        on = self.mic if kind == "audio" else self.webcam
        return on and self.mode == "SEND_AND_RECV"

    @property
    def receives(self) -> bool:
        return self.mode in ("SEND_AND_RECV", "RECV_ONLY")


class Router:
    """A meeting with media on this node: its members as the log has them, and the
    transports of those connected here."""

    def __init__(self, meeting_id: str, audio_streams: int) -> None:
        self.meeting_id = meeting_id
        # which audio is forwarded when more participants send it than each may get
        self.loudest = Loudest(audio_streams) if audio_streams else None
        self.members: dict[str, Member] = {}
        self.version = 0
        self.transports: dict[str, Transport] = {}
        self.connecting = 0  # offers being answered: transports to be
        self.live: dict[Stream, Publication] = {}
        self.loaded = asyncio.Event()
        self.follower: asyncio.Future[None] | None = None
        self.reconciler: asyncio.Future[None] | None = None
        self.dirty = False
        self._advanced = asyncio.Event()

    def apply(self, event: AnyEvent) -> list[str]:
        """Apply a media event; the connections whose media must close."""
        if isinstance(event, ParticipantJoined):
            self.members[event.participant_id] = Member(
                event.participant_id,
                event.connection_id,
                event.mode,
                event.mic_enabled,
                event.webcam_enabled,
            )
        elif isinstance(event, ParticipantLeft):
            member = self.members.get(event.participant_id)
            if member is not None and member.connection_id == event.connection_id:
                del self.members[event.participant_id]
            return [event.connection_id]
        elif isinstance(event, MediaChanged):
            member = self.members.get(event.participant_id)
            if member is not None:
                if event.kind == "mic":
                    member.mic = event.enabled
                else:
                    member.webcam = event.enabled
        elif isinstance(event, ModeChanged):
            member = self.members.get(event.participant_id)
            if member is not None:
                member.mode = event.mode
                if member.mode == "SIGNALLING_ONLY":
                    return [member.connection_id]
        return []

    def advance(self, version: int) -> None:
        self.version = version
        self._advanced.set()
        self._advanced = asyncio.Event()

    async def caught_up(self, version: int) -> None:
        """Wait until the router has followed the log up to `version`."""
        async with asyncio.timeout(CATCH_UP):
            while self.version < version:
                await self._advanced.wait()

    def publication(self, participant_id: str, kind: Kind) -> Publication | None:
        """The publication the log says `participant_id` sends, if it reaches this node."""
        member = self.members.get(participant_id)
        if member is None or not member.sends(kind):
            return None
        transport = self.transports.get(member.connection_id)
        if transport is None or transport.closed:
            return None
        return transport.publications.get(kind)

    def wanted(self, participant_id: str) -> list[Stream]:
        """The streams the log says `participant_id` gets: every other member's audio
        and video that is on, unless it does not receive (SIGNALLING_ONLY, gone)."""
        me = self.members.get(participant_id)
        if me is None or not me.receives:
            return []
        return [
            (member.participant_id, kind)
            for member in self.members.values()
            if member.participant_id != participant_id
            for kind in KINDS
            if member.sends(kind)
        ]

    def source(self, participant_id: str) -> str:
        """The connection a member sends from (a new one after it joined again)."""
        return self.members[participant_id].connection_id
