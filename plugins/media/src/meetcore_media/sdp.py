"""`SdpTransport`: a participant's media connection negotiated with SDP offers and answers
(meetcore's protocol, `docs/protocol.md`), on one aiortc peer connection.

The client offers first, one audio and one video section to publish on; the server
answers, gathering its candidates first (no trickle). From then on only the server
offers: whenever what the client receives changes (`update`), it adds (or reuses) a
sendonly section per stream, sets the sections of streams that ended inactive, and sends
an `Offer` with the SDP and the `Section`s, which map sections to participants; the
client answers (`answer`). One offer at a time: changes made meanwhile go into the next
one, so there is no glare.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from aiortc import RTCPeerConnection, RTCRtpTransceiver, RTCSessionDescription

from meetcore import ErrorCode, Rejected
from meetcore_media import _ice
from meetcore_media._config import MediaConfig
from meetcore_media._forward import (
    ForwardTrack,
    Publication,
    create_offer,
    hook_keyframe_requests,
    install_tap,
    negotiated_codecs,
    negotiated_extensions,
    prefer_forwarded_codecs,
    restrict_to_forwarded,
    watch_audio_levels,
)
from meetcore_media.router import Kind, Member, Router, Stream

__all__ = ["Offer", "SdpTransport", "Section", "Send"]

log = logging.getLogger("meetcore.media")


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
    events up to it first, so that it knows the participants the sections name.
    (meetcore's signaling sends it as `protocol.MediaOffer`: `sections` as `streams`,
    `version` as `seq`.)"""

    sdp: str
    sections: tuple[Section, ...]
    version: int


#: Sends the server's offer to a connection (`send(connection_id, offer, after)`), once it
#: has been sent the events up to `after`; False when the connection is not on this
#: node (any more). The signaling front end turns it into its own wire message.
Send = Callable[[str, Offer, int], bool]


class _Slot:
    """A sendonly media section of a subscriber's connection: the stream it carries.

    `confirmed`: the client answered an offer that showed this stream here (only then
    are frames forwarded). `reusable`: free, and the client saw it inactive.
    """

    def __init__(self, transceiver: RTCRtpTransceiver, track: ForwardTrack) -> None:
        self.transceiver = transceiver
        self.track = track
        self.kind: Kind = "audio" if track.kind == "audio" else "video"
        self.stream: Stream | None = None
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


class SdpTransport:
    """One participant's media connection on this node, negotiated with SDP.

    Made by `connect` from the client's offer. `lost(transport)` is called when the
    connection can no longer be used (the client closed it, it failed, or a
    renegotiation failed): the server then closes it.
    """

    def __init__(
        self,
        router: Router,
        member: Member,
        pc: RTCPeerConnection,
        *,
        config: MediaConfig,
        send: Send,
        lost: Callable[[SdpTransport], object],
    ) -> None:
        self.router = router
        self.participant_id = member.participant_id
        self.connection_id = member.connection_id
        self.pc = pc
        self.publications: dict[Kind, Publication] = {}
        self.slots: list[_Slot] = []
        self.negotiating = False  # an offer of ours waits for its answer
        self.dirty = False  # something changed that the next offer must carry
        self.offered: list[tuple[_Slot, Stream | None]] = []
        self.pending: Offer | None = None
        self.closed = False
        # The header extensions as the client numbered them, kept in our offers.
        self.extensions: dict[str, list[Any]] = {}
        # The forwarded codecs under the client's payload types, kept in our offers.
        self.codecs: dict[str, list[Any]] | None = None
        self._config = config
        self._send = send
        self._lost = lost

    @classmethod
    async def connect(
        cls,
        router: Router,
        member: Member,
        sdp: str,
        *,
        config: MediaConfig,
        send: Send,
        lost: Callable[[SdpTransport], object],
    ) -> SdpTransport:
        """The member's transport, answering its offer (`answer_sdp`); `Rejected` (3073)
        when the offer cannot be used."""
        _ice.quiet_closed_connects()
        pc = RTCPeerConnection(_ice.configuration(config.ice_servers))
        transport = cls(router, member, pc, config=config, send=send, lost=lost)
        try:
            await pc.setRemoteDescription(RTCSessionDescription(sdp=sdp, type="offer"))
            if not pc.getTransceivers():  # aiortc reads any text, garbage too, as no media
                raise ValueError("no audio or video section")
            for transceiver in pc.getTransceivers():
                kind: Kind = "audio" if transceiver.kind == "audio" else "video"
                if kind in transport.publications or not restrict_to_forwarded(transceiver):
                    transceiver.direction = "inactive"
                    continue
                transceiver.direction = "recvonly"
                publication = Publication(member.participant_id, kind, transceiver.receiver)
                install_tap(transceiver.receiver, publication.feed)
                if kind == "audio" and router.loudest is not None:
                    watch_audio_levels(transceiver.receiver, publication)
                transport.publications[kind] = publication
            answer = await pc.createAnswer()
            with _ice.gathering_on(config.addresses):
                await pc.setLocalDescription(answer)
            _ice.read_in_batches(pc)
            transport.extensions = negotiated_extensions(pc)
            transport.codecs = negotiated_codecs(pc)
        except Exception as error:
            await pc.close()
            why = f"offer: cannot use this SDP: {error}"
            raise Rejected(ErrorCode.INVALID_PARAMETER, why) from None

        @pc.on("connectionstatechange")
        def changed() -> None:
            if pc.connectionState in ("failed", "closed") and not transport.closed:
                log.info("media connection of %s: %s", member.participant_id, pc.connectionState)
                lost(transport)

        return transport

    @property
    def answer_sdp(self) -> str:
        """The server's answer to the client's offer, with its ICE candidates."""
        return str(self.pc.localDescription.sdp)

    async def answer(self, sdp: str) -> None:
        """The client's answer to our last offer (`Rejected` (3073) when there was none,
        or it cannot be used: the transport is then lost)."""
        if not self.negotiating:
            raise Rejected(ErrorCode.INVALID_PARAMETER, "answer: the server made no offer")
        try:
            await self.pc.setRemoteDescription(RTCSessionDescription(sdp=sdp, type="answer"))
        except Exception as error:
            self._lost(self)
            why = f"answer: cannot use this SDP ({error}); offer again"
            raise Rejected(ErrorCode.INVALID_PARAMETER, why) from None
        self.negotiating = False
        self.pending = None
        for slot, stream in self.offered:
            if stream is not None and slot.stream == stream:
                slot.confirmed = True
            elif stream is None and slot.stream is None:
                slot.reusable = True

    def resend(self) -> None:
        """Send again the offer the client has not answered (it resumed after a drop)."""
        if self.pending is not None:
            self._send(self.connection_id, self.pending, 0)

    async def update(self, router: Router) -> None:
        """Carry what the router says this participant gets: assign sections, offer
        the change, and forward into the sections the client confirmed (nothing once
        the connection is closed, or lost and about to be)."""
        if self.closed or self.pc.signalingState == "closed":
            return
        if self._assign(router) or self.dirty:
            await self._renegotiate(router)
        for slot in self.slots:
            if slot.stream is not None and slot.confirmed:
                slot.track.attach(router.publication(*slot.stream))

    async def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        for publication in self.publications.values():
            publication.close()
        for slot in self.slots:
            slot.track.stop()
        try:
            await self.pc.close()
        except Exception:
            log.exception("closing the media connection of %s failed", self.participant_id)

    def _assign(self, router: Router) -> bool:
        """Give the transport a section per stream it should receive; free the others.
        True when the client must be sent a new offer."""
        wanted = router.wanted(self.participant_id)
        changed = False
        for slot in self.slots:
            if slot.stream is not None and slot.stream in wanted:
                source = router.source(slot.stream[0])
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
        carried = {slot.stream for slot in self.slots}
        for stream in wanted:
            if stream in carried:
                continue
            participant_id, kind = stream
            free = (s for s in self.slots if s.kind == kind and s.stream is None and s.reusable)
            slot = next(free, None) or self._new_slot(kind)
            slot.stream = stream
            slot.source = router.source(participant_id)
            slot.reusable = False
            slot.transceiver.direction = "sendonly"
            sender = slot.transceiver.sender
            sender._stream_id = participant_id  # the msid: stream = participant
            sender._track_id = f"{participant_id}:{kind}"
            changed = True
        return changed

    def _new_slot(self, kind: Kind) -> _Slot:
        track = ForwardTrack(kind, owner=self.participant_id)
        transceiver = self.pc.addTransceiver(track, direction="sendonly")
        prefer_forwarded_codecs(transceiver)
        hook_keyframe_requests(transceiver.sender, track)
        slot = _Slot(transceiver, track)
        self.slots.append(slot)
        return slot

    async def _renegotiate(self, router: Router) -> None:
        if self.negotiating or self.closed:
            self.dirty = True
            return
        self.negotiating = True
        self.dirty = False
        try:
            offer = await create_offer(self.pc, self.extensions, self.codecs)
            with _ice.gathering_on(self._config.addresses):
                await self.pc.setLocalDescription(offer)
        except Exception:
            if self.closed:
                return
            if self.pc.signalingState == "closed":  # aiortc closed it: the client's DTLS ended
                log.info("media connection of %s: closed by the client", self.participant_id)
            else:
                log.exception("renegotiating with %s failed", self.participant_id)
            self._lost(self)
            return
        self.offered = [(slot, slot.stream) for slot in self.slots]
        sections = tuple(
            Section(mid=slot.transceiver.mid or "", participant_id=stream[0], kind=stream[1])
            for slot, stream in self.offered
            if stream is not None
        )
        version = router.version  # now: the events applied while the offer was made too
        self.pending = Offer(sdp=self.pc.localDescription.sdp, sections=sections, version=version)
        self._send(self.connection_id, self.pending, version)
