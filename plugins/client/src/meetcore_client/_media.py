"""The client's media connection: publish the local tracks, receive everyone else's.

`client.Meeting` imports this module (and so aiortc) only once the meeting has media
to send or receive. One `RTCPeerConnection` to the server: the client offers one
audio and one video section to publish on (sendonly, with a track attached while the
log says its mic or webcam is on); the server answers, then sends an `offer` each
time what the client receives changes, with `streams` saying which section carries
whose audio or video; the client answers it. All of it runs in one task, in order.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Sequence
from typing import TYPE_CHECKING, Any, Literal

from aiortc import MediaStreamTrack, RTCPeerConnection, RTCRtpTransceiver, RTCSessionDescription
from aiortc.mediastreams import MediaStreamError
from aiortc.rtcrtpparameters import RTCRtpCodecParameters

import meetcore_protocol as p
from meetcore_media import _ice
from meetcore_media._forward import drain, install_tap, is_keyframe, prefer_forwarded_codecs
from meetcore_media.tracks import SyntheticVideoTrack, ToneAudioTrack

if TYPE_CHECKING:
    from meetcore_client import EncodedFrame, Meeting, Participant, Stream

__all__ = ["ClientMedia", "RemoteTrack"]

log = logging.getLogger("meetcore.client.media")

Kind = Literal["audio", "video"]
KINDS: tuple[Kind, ...] = ("audio", "video")
#: Times the connection is made again after a failure, before the client gives up media.
RESTARTS = 3


#: Encoded frames a track of a client with decode=False keeps for `recv()`; older ones
#: are dropped (and counted) when nobody reads them.
MAX_ENCODED = 100


class RemoteTrack(MediaStreamTrack):
    """A remote stream's track: the decoded frames of the section that carries it, until
    the stream ends (then `recv()` raises `MediaStreamError`).

    A section may carry another stream later; each stream gets its own track, so a
    consumer never sees someone else's frames after `stream-disabled`.

    With no `source` (a client with decode=False), the track is fed the section's
    encoded frames (`feed`) and `recv()` gives `EncodedFrame`s; `received`, `bytes`,
    `keyframes` and `dropped` count them as they arrive, whether read or not.
    """

    def __init__(self, source: MediaStreamTrack | None, kind: str, track_id: str) -> None:
        super().__init__()
        self.kind = kind
        self._id = track_id
        self._source = source
        self._ended: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._encoded: asyncio.Queue[EncodedFrame] = asyncio.Queue()
        #: Frames handed out by `recv()`.
        self.frames = 0
        #: Encoded frames and bytes that arrived, key frames among them, and frames
        #: dropped unread (decode=False only).
        self.received = 0
        self.bytes = 0
        self.keyframes = 0
        self.dropped = 0

    def feed(self, frame: EncodedFrame) -> None:
        """An encoded frame of this stream arrived (decode=False)."""
        if self.readyState != "live":
            return
        self.received += 1
        self.bytes += len(frame.data)
        self.keyframes += frame.keyframe and self.kind == "video"
        if self._encoded.qsize() >= MAX_ENCODED:
            self._encoded.get_nowait()
            self.dropped += 1
        self._encoded.put_nowait(frame)

    async def recv(self) -> Any:
        if self.readyState != "live":
            raise MediaStreamError
        source = self._source
        next_frame = source.recv() if source is not None else self._encoded.get()
        frame: asyncio.Future[Any] = asyncio.ensure_future(next_frame)
        waiting: set[asyncio.Future[Any]] = {frame, self._ended}
        arrived = False
        try:
            await asyncio.wait(waiting, return_when=asyncio.FIRST_COMPLETED)
            arrived = frame.done()
        finally:  # ended, or the caller cancelled: the frame's wait goes too
            if not frame.done():
                frame.cancel()
            # a source that ends as it is cancelled raises MediaStreamError, as does one
            # that ended as the caller cancelled us (its read done, unread): retrieved
            frame.add_done_callback(lambda f: f.cancelled() or f.exception())
        if not arrived:
            raise MediaStreamError
        self.frames += 1
        return frame.result()

    def stop(self) -> None:
        if not self._ended.done():
            self._ended.set_result(None)
        super().stop()


class _Lent(MediaStreamTrack):
    """A local source as one sender reads it. aiortc stops a sender's track when the
    sender stops (its connection closes): that must not end the source, which the next
    connection sends (after a restart, or on another node) and the application may hold
    (a custom camera)."""

    def __init__(self, source: MediaStreamTrack) -> None:
        super().__init__()
        self.kind = source.kind
        self._source = source

    async def recv(self) -> Any:
        if self.readyState != "live":
            raise MediaStreamError
        return await self._source.recv()


class ClientMedia:
    """One participant's media connection to the server; made and driven by `Meeting`."""

    def __init__(
        self,
        meeting: Meeting,
        *,
        ice_servers: Sequence[_ice.IceServer],
        addresses: Sequence[str] | None,
        camera: MediaStreamTrack | None,
        microphone: MediaStreamTrack | None,
        decode: bool = True,
    ) -> None:
        self._meeting = meeting
        self._decode = decode
        self._ice_servers = ice_servers
        self._addresses = addresses if addresses is not None else _ice.addresses_from_env()
        self._custom: dict[Kind, MediaStreamTrack | None] = {
            "audio": microphone,
            "video": camera,
        }
        self._sources: dict[Kind, MediaStreamTrack] = {}
        self.pc: RTCPeerConnection | None = None
        self._transceivers: dict[Kind, RTCRtpTransceiver] = {}
        self._publishing: dict[Kind, bool] = {"audio": False, "video": False}
        self._local: dict[Kind, Stream] = {}
        self._remote: dict[str, Stream] = {}  # by the section (mid) that carries it
        self._jobs: asyncio.Queue[Callable[[], Awaitable[None]]] = asyncio.Queue()
        self._worker = asyncio.ensure_future(self._work())
        self._tapped: set[RTCRtpTransceiver] = set()  # sections whose frames we take encoded
        self._answers = 0  # answers to our offers so far: older server offers are stale
        self._restarts = 0
        self.closed = False

    # -- what Meeting calls ---------------------------------------------------------------

    def start(self) -> None:
        """Open the connection: offer our sections, apply the server's answer."""
        self._jobs.put_nowait(self._start)

    def publish(self, kind: Kind, enabled: bool) -> None:
        """Send (or stop sending) our `kind` track, as the log now says."""
        if self.closed or self._publishing[kind] == enabled:
            return
        self._publishing[kind] = enabled
        transceiver = self._transceivers.get(kind)
        if transceiver is not None:
            transceiver.sender.replaceTrack(_Lent(self._source(kind)) if enabled else None)
        self._local_stream(kind, enabled)

    def answered(self) -> None:
        """The server answered one of our offers (called as the answer arrives)."""
        self._answers += 1

    def offered(self, message: p.MediaOffer) -> None:
        """The server renegotiates."""
        generation = self._answers
        self._jobs.put_nowait(lambda: self._answer(message, generation))

    def end_streams(self, participant_id: str, kind: Kind | None = None) -> None:
        """`participant_id` left or switched `kind` off (None: both): its streams end now,
        before the server's next offer frees their sections."""
        for stream in list(self._remote.values()):
            if stream.participant_id == participant_id and kind in (None, stream.kind):
                self._end(stream)

    async def close(self) -> None:
        """Close the connection; every stream ends."""
        if self.closed:
            return
        self.closed = True
        self._worker.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._worker
        for stream in list(self._remote.values()):
            self._end(stream)
        for kind in KINDS:
            self._local_stream(kind, False)
        if self.pc is not None:
            await self.pc.close()
        for kind, source in self._sources.items():
            if self._custom[kind] is None:
                source.stop()

    # -- the work, in order -------------------------------------------------------------

    async def _work(self) -> None:
        while True:
            job = await self._jobs.get()
            try:
                await job()
            except asyncio.CancelledError:
                raise
            except Exception as error:
                if self.closed or self._meeting._phase != "in":
                    log.debug("media negotiation cut short by leaving: %r", error)
                    continue  # left meanwhile: the request was refused, nothing failed
                log.warning("media negotiation failed: %r", error)
                self._failed()

    def _failed(self) -> None:
        """The connection is unusable (a negotiation failed, ICE failed): make a new one,
        a few times; the server replaces its side when it gets the new offer."""
        if self.closed or self._restarts >= RESTARTS or self._meeting._phase != "in":
            return
        self._restarts += 1
        self._jobs.put_nowait(self._restart)

    async def _restart(self) -> None:
        pc, self.pc = self.pc, None
        for stream in list(self._remote.values()):
            self._end(stream)
        self._remote.clear()
        self._transceivers.clear()
        self._tapped.clear()
        if pc is not None:
            await pc.close()
        await asyncio.sleep(0.1 * self._restarts)
        await self._start()

    def _source(self, kind: Kind) -> MediaStreamTrack:
        source = self._sources.get(kind)
        if source is None:
            custom = self._custom[kind]
            if custom is not None:
                source = custom
            elif kind == "audio":
                source = ToneAudioTrack()
            else:
                source = SyntheticVideoTrack()
            self._sources[kind] = source
        return source

    async def _start(self) -> None:
        _ice.quiet_closed_connects()
        pc = self.pc = RTCPeerConnection(_ice.configuration(self._ice_servers))

        @pc.on("connectionstatechange")
        def changed() -> None:
            if pc.connectionState == "failed" and pc is self.pc:
                log.warning("the media connection failed")
                self._failed()

        for kind in KINDS:
            transceiver = pc.addTransceiver(kind, direction="sendonly")
            prefer_forwarded_codecs(transceiver)
            self._transceivers[kind] = transceiver
            if self._publishing[kind]:
                transceiver.sender.replaceTrack(_Lent(self._source(kind)))
        offer = await pc.createOffer()
        with _ice.gathering_on(self._addresses):
            await pc.setLocalDescription(offer)
        _ice.read_in_batches(pc)
        answer = await self._meeting._request(p.OfferRequest(sdp=pc.localDescription.sdp))
        if not isinstance(answer, p.MediaAnswer):
            return  # the meeting ended meanwhile
        await pc.setRemoteDescription(RTCSessionDescription(sdp=answer.sdp, type="answer"))

    async def _answer(self, message: p.MediaOffer, generation: int) -> None:
        pc = self.pc
        if pc is None or generation != self._answers or pc.signalingState != "stable":
            return  # made for a connection we replaced, or our own offer is out: a new one comes
        await pc.setRemoteDescription(RTCSessionDescription(sdp=message.sdp, type="offer"))
        if not self._decode:
            for transceiver in pc.getTransceivers():
                if transceiver not in self._tapped and transceiver not in self._own():
                    install_tap(transceiver.receiver, self._deliver_to(transceiver))
                    self._tapped.add(transceiver)
        answer = await pc.createAnswer()
        with _ice.gathering_on(self._addresses):
            await pc.setLocalDescription(answer)
        self._streams(pc, message.streams)
        await self._meeting._request(p.AnswerRequest(sdp=pc.localDescription.sdp))

    # -- streams ------------------------------------------------------------------------

    def _own(self) -> list[RTCRtpTransceiver]:
        return list(self._transceivers.values())

    def _deliver_to(
        self, transceiver: RTCRtpTransceiver
    ) -> Callable[[RTCRtpCodecParameters, Any], None]:
        """Hands a section's encoded frames to the stream it carries now (decode=False)."""
        from meetcore_client import EncodedFrame

        kind = transceiver.kind

        def deliver(codec: RTCRtpCodecParameters, frame: Any) -> None:
            stream = self._remote.get(transceiver.mid or "")
            if stream is None or not isinstance(stream.track, RemoteTrack):
                return
            data = bytes(frame.data)
            stream.track.feed(EncodedFrame(data, int(frame.timestamp), is_keyframe(kind, data)))

        return deliver

    def _streams(self, pc: RTCPeerConnection, slots: list[p.StreamSlot]) -> None:
        """Start and end remote streams as the server's offer maps its sections."""
        from meetcore_client import Stream

        wanted = {slot.mid: slot for slot in slots}
        for mid, stream in list(self._remote.items()):
            slot = wanted.get(mid)
            same = slot is not None and (slot.participant_id, slot.kind) == (
                stream.participant_id,
                stream.kind,
            )
            if not same or stream.ended:
                self._end(stream)
                del self._remote[mid]
        sections = {t.mid: t for t in pc.getTransceivers() if t.mid is not None}
        for mid, slot in wanted.items():
            transceiver = sections.get(mid)
            owner = self._meeting.participants.get(slot.participant_id)
            if mid in self._remote or transceiver is None or owner is None:
                continue
            source: MediaStreamTrack | None = None
            if self._decode:
                source = transceiver.receiver.track
                drain(source)  # what the section carried before
            track_id = f"{slot.participant_id}:{slot.kind}"
            track = RemoteTrack(source, slot.kind, track_id)
            stream = Stream(
                kind=slot.kind, track=track, participant=owner, layers=slot.layers, local=False
            )
            self._remote[mid] = stream
            owner.streams[stream.id] = stream
            owner._emit("stream-enabled", stream)

    def _end(self, stream: Stream) -> None:
        if stream.ended:
            return
        stream.ended = True
        stream.track.stop()
        owner: Participant = stream.participant
        if owner.streams.get(stream.id) is stream:
            del owner.streams[stream.id]
        owner._emit("stream-disabled", stream)

    def _local_stream(self, kind: Kind, enabled: bool) -> None:
        from meetcore_client import Stream

        me = self._meeting.local_participant
        current = self._local.pop(kind, None)
        if current is not None and not enabled:
            current.ended = True
            if current.participant.streams.get(current.id) is current:
                del current.participant.streams[current.id]
            current.participant._emit("stream-disabled", current)
        elif current is not None:
            self._local[kind] = current
        elif enabled and me is not None:
            stream = Stream(kind=kind, track=self._source(kind), participant=me, local=True)
            self._local[kind] = stream
            me.streams[stream.id] = stream
            me._emit("stream-enabled", stream)
