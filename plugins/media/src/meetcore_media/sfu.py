"""Media on the server: one aiortc peer connection per participant, frames forwarded encoded.

The log decides who sends and who receives. For each meeting with media on this
node, a `_Room` follows the meeting's log and calls the `meetcore_media_event` hook
with every `ParticipantJoined`, `MediaChanged`, `ModeChanged` and
`ParticipantLeft`; `MediaServer`, which implements it, keeps the room's members
(mode, mic, webcam) from those events and reconciles:

- a participant *publishes* `audio` (`video`) when its mode is SEND_AND_RECV, its
  mic (webcam) is on in the log and its media connection is here;
- a participant in SEND_AND_RECV or RECV_ONLY *receives* every other member's
  audio and video that the log says is on; SIGNALLING_ONLY has no media connection.

Negotiation (`docs/protocol.md`): the client offers first, one audio and one video
section to publish on; the server answers, gathering its candidates first (no
trickle). From then on only the server offers: whenever what a client receives
changes, it adds (or reuses) a sendonly section per stream, sets the sections of
streams that ended inactive, and sends `offer` with the SDP and `streams`, which
maps sections to participants; the client answers. One offer at a time per client:
changes made meanwhile go into the next one, so there is no glare.

Frames are forwarded without decoding (`_forward`): each publisher's receivers hand
their encoded frames to a `Publication`; each subscriber's section has a
`ForwardTrack` attached to the publication it carries.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from typing import Any, Literal

from aiortc import RTCPeerConnection, RTCRtpTransceiver, RTCSessionDescription

from meetcore import Engine, ErrorCode, Record, Rejected, hookimpl
from meetcore.events import (
    AnyEvent,
    MediaChanged,
    ModeChanged,
    ParticipantJoined,
    ParticipantLeft,
)
from meetcore_media import _ice, hookspecs
from meetcore_media._config import MediaConfig
from meetcore_media._forward import (
    AIORTC_VERSION,
    ForwardTrack,
    Loudest,
    Publication,
    check_internals,
    create_offer,
    hook_keyframe_requests,
    install_tap,
    negotiated_codecs,
    negotiated_extensions,
    prefer_forwarded_codecs,
    restrict_to_forwarded,
    watch_audio_levels,
)

__all__ = ["MEDIA_EVENTS", "MediaConfig", "MediaServer", "Offer", "Section", "Send"]

log = logging.getLogger("meetcore.media")

#: The events that change who sends or receives media.
MEDIA_EVENTS = (ParticipantJoined, MediaChanged, ModeChanged, ParticipantLeft)
#: Seconds an offer waits for the meeting's log to show its participant.
CATCH_UP = 5.0

Kind = Literal["audio", "video"]
KINDS: tuple[Kind, ...] = ("audio", "video")


@dataclass(frozen=True)
class Section:
    """What a media section of the server's SDP carries: `participant_id`'s `kind`.
    Sections not listed in an `Offer` carry nothing (inactive)."""

    mid: str
    participant_id: str
    kind: Kind


@dataclass(frozen=True)
class Offer:
    """The server renegotiates with a client: what it receives changed. `version` is
    the meeting's log version it reflects: the client should have been sent the
    events up to it first, so that it knows the participants the sections name."""

    sdp: str
    sections: tuple[Section, ...]
    version: int


#: Sends the server's offer to a connection (`send(connection_id, offer, after)`), once it
#: has been sent the events up to `after`; False when the connection is not on this
#: node (any more). The signaling front end turns it into its own wire message.
Send = Callable[[str, Offer, int], bool]


class _Member:
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


class _Slot:
    """A sendonly media section of a subscriber's connection: the stream it carries.

    `confirmed`: the client answered an offer that showed this stream here (only then
    are frames forwarded). `reusable`: free, and the client saw it inactive.
    """

    def __init__(self, transceiver: RTCRtpTransceiver, track: ForwardTrack) -> None:
        self.transceiver = transceiver
        self.track = track
        self.kind: Kind = "audio" if track.kind == "audio" else "video"
        self.stream: tuple[str, Kind] | None = None
        # The connection of the participant whose stream it carries: a participant who
        # joins again (a second join replacing the first, 1011) sends a new stream, which
        # the client must be offered although its (participant, kind) is the same.
        self.source = ""
        self.confirmed = False
        self.reusable = False
        # The msid aiortc gave the section, which it shows while it carries nothing: a
        # freed section must not keep its stream's, or an offer that carries the stream
        # again in another section (the client had not yet seen this one freed) has
        # the same msid twice, which browsers refuse.
        self.own_msid = (transceiver.sender._stream_id, transceiver.sender._track_id)


class _Peer:
    """One participant's media connection on this node."""

    def __init__(self, room: _Room, member: _Member, pc: RTCPeerConnection) -> None:
        self.room = room
        self.participant_id = member.participant_id
        self.connection_id = member.connection_id
        self.pc = pc
        self.publications: dict[Kind, Publication] = {}
        self.slots: list[_Slot] = []
        self.negotiating = False  # an offer of ours waits for its answer
        self.dirty = False  # something changed that the next offer must carry
        self.offered: list[tuple[_Slot, tuple[str, Kind] | None]] = []
        self.pending: Offer | None = None
        self.closed = False
        # The header extensions as the client numbered them, kept in our offers.
        self.extensions: dict[str, list[Any]] = {}
        # The forwarded codecs under the client's payload types, kept in our offers.
        self.codecs: dict[str, list[Any]] | None = None


class _Room:
    """A meeting with media on this node: its members as the log has them, its peers."""

    def __init__(self, meeting_id: str, audio_streams: int) -> None:
        self.meeting_id = meeting_id
        # which audio is forwarded when more participants send it than each may get
        self.loudest = Loudest(audio_streams) if audio_streams else None
        self.members: dict[str, _Member] = {}
        self.version = 0
        self.peers: dict[str, _Peer] = {}
        self.connecting = 0  # offers being answered: peers to be
        self.live: dict[tuple[str, Kind], Publication] = {}
        self.loaded = asyncio.Event()
        self.follower: asyncio.Future[None] | None = None
        self.reconciler: asyncio.Future[None] | None = None
        self.dirty = False
        self._advanced = asyncio.Event()

    def apply(self, event: AnyEvent) -> list[str]:
        """Apply a media event; the connections whose media must close."""
        if isinstance(event, ParticipantJoined):
            self.members[event.participant_id] = _Member(
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
        """Wait until the room has followed the log up to `version`."""
        async with asyncio.timeout(CATCH_UP):
            while self.version < version:
                await self._advanced.wait()

    def publication(self, participant_id: str, kind: Kind) -> Publication | None:
        """The publication the log says `participant_id` sends, if it reaches this node."""
        member = self.members.get(participant_id)
        if member is None or not member.sends(kind):
            return None
        peer = self.peers.get(member.connection_id)
        if peer is None or peer.closed:
            return None
        return peer.publications.get(kind)


class MediaServer:
    """The built-in media backend: forwards encoded frames between the participants
    connected to this node. Registered with the engine's plugin manager (for
    `meetcore_media_event`) until `close()`.

    `send(connection_id, message, after_seq)` delivers the server's offers through the
    signaling connection.
    """

    def __init__(self, engine: Engine, send: Send, config: MediaConfig | None = None) -> None:
        problems = check_internals()
        fatal = [problem for problem in problems if AIORTC_VERSION not in problem]
        if fatal:
            raise RuntimeError("aiortc changed; media forwarding cannot work: " + "; ".join(fatal))
        for problem in problems:
            log.warning("%s", problem)
        self.engine = engine
        self.config = config if config is not None else MediaConfig.from_env()
        self.rooms: dict[str, _Room] = {}
        self.peers: dict[str, _Peer] = {}
        self._send = send
        self._tasks: set[asyncio.Future[Any]] = set()
        hookspecs.add_to(engine.plugins)
        self._name = f"meetcore.media-{id(self):x}"
        engine.plugins.register(self, name=self._name)

    # -- negotiation, from the signaling ---------------------------------------------

    async def offer(
        self, meeting_id: str, participant_id: str, connection_id: str, sdp: str
    ) -> str:
        """The client's offer: (re)start its media connection; the answer's SDP."""
        old = self.peers.get(connection_id)
        if old is not None:  # a new connection replaces it
            await self._close_peer(old)
        room = await self._room(meeting_id)
        room.connecting += 1
        try:
            try:
                pc = await self._connect(room, participant_id, connection_id, sdp)
            finally:
                room.connecting -= 1
        except Rejected:
            await self._forget_room(room)  # a refused offer leaves nothing behind
            raise
        return str(pc.localDescription.sdp)

    async def _connect(
        self, room: _Room, participant_id: str, connection_id: str, sdp: str
    ) -> RTCPeerConnection:
        """The participant's media connection in `room`, answering its offer (`Rejected`
        when it cannot have one, or the offer cannot be used)."""
        meeting_id = room.meeting_id
        state = await self.engine.state(meeting_id)
        try:
            await room.caught_up(state.version if state is not None else 0)
        except TimeoutError:
            raise Rejected(ErrorCode.OPERATION_TIMED_OUT, "the meeting's log is late") from None
        member = room.members.get(participant_id)
        if member is None or member.connection_id != connection_id:
            raise Rejected(ErrorCode.ACTION_BEFORE_JOINED, "offer: join the meeting first")
        if member.mode == "SIGNALLING_ONLY":
            raise Rejected(ErrorCode.NOT_SUPPORTED_IN_MODE, "offer: no media in SIGNALLING_ONLY")
        _ice.quiet_closed_connects()
        pc = RTCPeerConnection(_ice.configuration(self.config.ice_servers))
        peer = _Peer(room, member, pc)
        try:
            await pc.setRemoteDescription(RTCSessionDescription(sdp=sdp, type="offer"))
            if not pc.getTransceivers():  # aiortc reads any text, garbage too, as no media
                raise ValueError("no audio or video section")
            for transceiver in pc.getTransceivers():
                kind: Kind = "audio" if transceiver.kind == "audio" else "video"
                if kind in peer.publications or not restrict_to_forwarded(transceiver):
                    transceiver.direction = "inactive"
                    continue
                transceiver.direction = "recvonly"
                publication = Publication(participant_id, kind, transceiver.receiver)
                install_tap(transceiver.receiver, publication.feed)
                if kind == "audio" and room.loudest is not None:
                    watch_audio_levels(transceiver.receiver, publication)
                peer.publications[kind] = publication
            answer = await pc.createAnswer()
            with _ice.gathering_on(self.config.addresses):
                await pc.setLocalDescription(answer)
            _ice.read_in_batches(pc)
            peer.extensions = negotiated_extensions(pc)
            peer.codecs = negotiated_codecs(pc)
        except Exception as error:
            await pc.close()
            why = f"offer: cannot use this SDP: {error}"
            raise Rejected(ErrorCode.INVALID_PARAMETER, why) from None
        if member is not room.members.get(participant_id) or self.rooms.get(meeting_id) is not room:
            await pc.close()  # it left meanwhile
            raise Rejected(ErrorCode.ACTION_BEFORE_JOINED, "offer: no longer in the meeting")

        @pc.on("connectionstatechange")
        def changed() -> None:
            if pc.connectionState in ("failed", "closed") and not peer.closed:
                log.info("media connection of %s: %s", peer.participant_id, pc.connectionState)
                self._spawn(self._close_peer(peer))

        room.peers[connection_id] = peer
        self.peers[connection_id] = peer
        self._schedule(room)
        return pc

    async def answer(self, connection_id: str, sdp: str) -> None:
        """The client's answer to our last offer."""
        peer = self.peers.get(connection_id)
        if peer is None or not peer.negotiating:
            raise Rejected(ErrorCode.INVALID_PARAMETER, "answer: the server made no offer")
        try:
            await peer.pc.setRemoteDescription(RTCSessionDescription(sdp=sdp, type="answer"))
        except Exception as error:
            await self._close_peer(peer)
            why = f"answer: cannot use this SDP ({error}); offer again"
            raise Rejected(ErrorCode.INVALID_PARAMETER, why) from None
        peer.negotiating = False
        peer.pending = None
        for slot, stream in peer.offered:
            if stream is not None and slot.stream == stream:
                slot.confirmed = True
            elif stream is None and slot.stream is None:
                slot.reusable = True
        self._schedule(peer.room)

    def resumed(self, connection_id: str) -> None:
        """A connection came back after a drop: send it the offer it may have missed."""
        peer = self.peers.get(connection_id)
        if peer is not None and peer.pending is not None:
            self._send(connection_id, peer.pending, 0)

    async def close(self) -> None:
        """Close every media connection and stop following the logs."""
        for peer in list(self.peers.values()):
            await self._close_peer(peer)
        for task in list(self._tasks):
            task.cancel()
        if self._tasks:
            await asyncio.wait(self._tasks, timeout=5)
        if self.engine.plugins.is_registered(self):
            self.engine.plugins.unregister(self)

    # -- following the log ------------------------------------------------------------

    async def _room(self, meeting_id: str) -> _Room:
        room = self.rooms.get(meeting_id)
        if room is None:
            room = self.rooms[meeting_id] = _Room(meeting_id, self.config.audio_streams)
            try:
                state = await self.engine.state(meeting_id)
            except BaseException:
                del self.rooms[meeting_id]
                raise
            if state is not None:
                for member in state.participants.values():
                    room.members[member.participant_id] = _Member(
                        member.participant_id,
                        member.connection_id,
                        member.mode,
                        member.mic_enabled,
                        member.webcam_enabled,
                    )
                room.version = state.version
            room.follower = self._spawn(self._follow(room))
            room.loaded.set()
        await room.loaded.wait()
        return room

    async def _follow(self, room: _Room) -> None:
        async for record in self.engine.subscribe(room.meeting_id, after_version=room.version):
            if isinstance(record.event, MEDIA_EVENTS):
                await self._call("meetcore_media_event", meeting_id=room.meeting_id, record=record)
            room.advance(record.version)

    @hookimpl
    def meetcore_media_event(self, meeting_id: str, record: Record) -> None:
        room = self.rooms.get(meeting_id)
        if room is None or record.version <= room.version:
            return
        for connection_id in room.apply(record.event):
            peer = room.peers.get(connection_id)
            if peer is not None:
                self._spawn(self._close_peer(peer))
        self._schedule(room)

    async def _call(self, hook: str, **kwargs: Any) -> None:
        """Call every implementation of a media hook, awaiting what it returns; one that
        fails is logged and the others still run."""
        caller = getattr(self.engine.plugins.hook, hook)
        for impl in reversed(caller.get_hookimpls()):
            try:
                result = impl.function(*[kwargs[name] for name in impl.argnames])
                if inspect.isawaitable(result):
                    await result
            except Exception:
                log.exception("%s of plugin %s failed", hook, impl.plugin_name)

    # -- reconciling: who receives what ----------------------------------------------------

    def _schedule(self, room: _Room) -> None:
        room.dirty = True
        if room.reconciler is None or room.reconciler.done():
            room.reconciler = self._spawn(self._reconcile(room))

    async def _reconcile(self, room: _Room) -> None:
        while room.dirty:
            room.dirty = False
            await self._publish(room)
            for peer in list(room.peers.values()):
                if peer.closed:
                    continue
                if self._assign(room, peer) or peer.dirty:
                    await self._renegotiate(peer)
                for slot in peer.slots:
                    if slot.stream is not None and slot.confirmed:
                        slot.track.attach(room.publication(*slot.stream))

    async def _publish(self, room: _Room) -> None:
        """Tell plugins which tracks started or stopped reaching this node."""
        live: dict[tuple[str, Kind], Publication] = {}
        for member in room.members.values():
            for kind in KINDS:
                publication = room.publication(member.participant_id, kind)
                if publication is not None:
                    live[member.participant_id, kind] = publication
        gone = [key for key, was in room.live.items() if live.get(key) is not was]
        new = [key for key, now in live.items() if room.live.get(key) is not now]
        if room.loudest is not None:  # only the voices the log says are on are ranked
            for key in gone:
                if key[1] == "audio":
                    room.loudest.discard(room.live[key])
            for key in new:
                if key[1] == "audio":
                    room.loudest.add(live[key])
        room.live = live
        for participant_id, kind in gone:
            await self._call(
                "meetcore_media_unpublished",
                meeting_id=room.meeting_id,
                participant_id=participant_id,
                kind=kind,
            )
        for participant_id, kind in new:
            await self._call(
                "meetcore_media_published",
                meeting_id=room.meeting_id,
                participant_id=participant_id,
                kind=kind,
                publication=live[participant_id, kind],
            )

    def _assign(self, room: _Room, peer: _Peer) -> bool:
        """Give the peer a section per stream it should receive; free the others.
        True when the client must be sent a new offer."""
        me = room.members.get(peer.participant_id)
        wanted: list[tuple[str, Kind]] = []
        if me is not None and me.receives:
            for member in room.members.values():
                if member.participant_id != peer.participant_id:
                    wanted += [(member.participant_id, k) for k in KINDS if member.sends(k)]
        changed = False
        for slot in peer.slots:
            if slot.stream is not None and slot.stream in wanted:
                source = room.members[slot.stream[0]].connection_id
                changed |= source != slot.source
                slot.source = source
            elif slot.stream is not None:
                slot.stream = None
                slot.confirmed = slot.reusable = False
                slot.track.attach(None)  # at once: the log said so
                slot.transceiver.direction = "inactive"
                sender = slot.transceiver.sender
                sender._stream_id, sender._track_id = slot.own_msid
                changed = True
        carried = {slot.stream for slot in peer.slots}
        for stream in wanted:
            if stream in carried:
                continue
            participant_id, kind = stream
            free = (s for s in peer.slots if s.kind == kind and s.stream is None and s.reusable)
            slot = next(free, None) or self._new_slot(peer, kind)
            slot.stream = stream
            slot.source = room.members[participant_id].connection_id
            slot.reusable = False
            slot.transceiver.direction = "sendonly"
            sender = slot.transceiver.sender
            sender._stream_id = participant_id  # the msid: stream = participant
            sender._track_id = f"{participant_id}:{kind}"
            changed = True
        return changed

    def _new_slot(self, peer: _Peer, kind: Kind) -> _Slot:
        track = ForwardTrack(kind, owner=peer.participant_id)
        transceiver = peer.pc.addTransceiver(track, direction="sendonly")
        prefer_forwarded_codecs(transceiver)
        hook_keyframe_requests(transceiver.sender, track)
        slot = _Slot(transceiver, track)
        peer.slots.append(slot)
        return slot

    async def _renegotiate(self, peer: _Peer) -> None:
        if peer.negotiating or peer.closed:
            peer.dirty = True
            return
        peer.negotiating = True
        peer.dirty = False
        try:
            offer = await create_offer(peer.pc, peer.extensions, peer.codecs)
            with _ice.gathering_on(self.config.addresses):
                await peer.pc.setLocalDescription(offer)
        except Exception:
            if peer.closed:
                return
            if peer.pc.signalingState == "closed":  # aiortc closed it: the client's DTLS ended
                log.info("media connection of %s: closed by the client", peer.participant_id)
            else:
                log.exception("renegotiating with %s failed", peer.participant_id)
            await self._close_peer(peer)
            return
        peer.offered = [(slot, slot.stream) for slot in peer.slots]
        sections = tuple(
            Section(mid=slot.transceiver.mid or "", participant_id=stream[0], kind=stream[1])
            for slot, stream in peer.offered
            if stream is not None
        )
        version = peer.room.version
        peer.pending = Offer(sdp=peer.pc.localDescription.sdp, sections=sections, version=version)
        self._send(peer.connection_id, peer.pending, version)

    async def _close_peer(self, peer: _Peer) -> None:
        if peer.closed:
            return
        peer.closed = True
        room = peer.room
        if room.peers.get(peer.connection_id) is peer:
            del room.peers[peer.connection_id]
        if self.peers.get(peer.connection_id) is peer:
            del self.peers[peer.connection_id]
        for publication in peer.publications.values():
            publication.close()
            if room.loudest is not None:
                room.loudest.discard(publication)  # at once, not at the next _publish
        for slot in peer.slots:
            slot.track.stop()
        try:
            await peer.pc.close()
        except Exception:
            log.exception("closing the media connection of %s failed", peer.participant_id)
        if room.peers:
            self._schedule(room)
        else:
            await self._forget_room(room)

    async def _forget_room(self, room: _Room) -> None:
        """A room without media connections: stop following its log, and tell plugins
        its tracks are gone (`_room` makes it again on the next offer)."""
        if room.peers or room.connecting or self.rooms.get(room.meeting_id) is not room:
            return
        del self.rooms[room.meeting_id]
        if room.follower is not None:
            room.follower.cancel()
        room.members.clear()
        await self._publish(room)

    def _spawn(self, coroutine: Coroutine[Any, Any, Any]) -> asyncio.Future[Any]:
        task = asyncio.ensure_future(coroutine)
        self._tasks.add(task)
        task.add_done_callback(self._done)
        return task

    def _done(self, task: asyncio.Future[Any]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("media task failed", exc_info=task.exception())
