"""Forwarding encoded frames from a publisher to its subscribers, without decoding.

aiortc's `MediaRelay` hands every subscriber decoded frames, so each subscriber's
sender encodes them again: one decode per publisher and one encode per subscriber,
which costs a core for a handful of video streams. The server forwards the encoded
frames instead:

- A publisher's `RTCRtpReceiver` depacketizes RTP into whole encoded frames (its
  jitter buffer) and puts them on a queue that its decoder thread reads.
  `install_tap` replaces that queue with one that hands each frame to a
  `Publication` instead, on the event loop: nothing is decoded.
- The `Publication` gives each frame, as an `av.Packet`, to the `ForwardTrack` of
  every subscriber. A subscriber's `RTCRtpSender` reads its track; when `recv()`
  returns a packet rather than a frame, aiortc packetizes it (`encoder.pack`)
  without encoding.
- A subscriber's RTCP PLI or FIR makes its sender ask for a key frame, which it
  would force on its encoder; `hook_keyframe_requests` passes the request on to the
  publisher's receiver instead, which sends a PLI to the publisher. A new
  subscriber (or one attached to another publisher) drops frames until the next
  key frame and asks for one at once, so it gets a picture within a round trip,
  not at the publisher's next periodic key frame.
- Audio: in a meeting where more participants send audio than each may get
  (`MediaConfig.audio_streams`), a `Loudest` ranks a meeting's audio publications
  by the level (RFC 6464) their clients put in each RTP packet, which
  `watch_audio_levels` reads, and only the loudest are forwarded: a meeting's audio
  costs the server what that many streams cost, however many have their mic on.

This relies on aiortc internals, so the version is pinned (`AIORTC_VERSION`) and
`check_internals()` fails loudly when they change (a test calls it).
"""

from __future__ import annotations

import asyncio
import asyncio.selector_events
import copy
import fractions
import inspect
import logging
import math
import queue
import time
from collections.abc import Callable
from typing import Any

import aioice
import aiortc
import av
from aiortc import (
    MediaStreamTrack,
    RTCPeerConnection,
    RTCRtpReceiver,
    RTCRtpSender,
    RTCRtpTransceiver,
    rtcpeerconnection,
)
from aiortc.mediastreams import MediaStreamError
from aiortc.rtcdtlstransport import RTCDtlsTransport
from aiortc.rtcicetransport import RTCIceGatherer
from aiortc.rtcrtpparameters import RTCRtpCodecParameters
from aiortc.rtcrtpreceiver import RemoteStreamTrack

__all__ = [
    "AIORTC_VERSION",
    "FORWARDED_CODECS",
    "ForwardTrack",
    "Loudest",
    "Publication",
    "check_internals",
    "create_offer",
    "hook_keyframe_requests",
    "install_tap",
    "is_keyframe",
    "negotiated_codecs",
    "negotiated_extensions",
    "prefer_forwarded_codecs",
    "restrict_to_forwarded",
    "watch_audio_levels",
]

log = logging.getLogger("meetcore.media")

#: The aiortc release whose internals this module was written and tested against.
AIORTC_VERSION = "1.16.0"
#: The codecs that are forwarded: every participant sends these and no other.
FORWARDED_CODECS = {"audio": "audio/opus", "video": "video/VP8"}
#: RTP clock rates of the forwarded codecs.
CLOCK_RATES = {"audio": 48000, "video": 90000}
#: A frame's duration when there is nothing better to go by (20 ms audio, 30 fps video).
FRAME_TICKS = {"audio": 960, "video": 3000}
#: Frames a subscriber may fall behind before it drops them and waits for a key frame.
MAX_QUEUED = 60
#: Seconds between two key-frame requests to the same publisher.
KEYFRAME_INTERVAL = 0.25
#: Seconds between two rankings of a meeting's audio by loudness (`Loudest`).
RANK_INTERVAL = 0.3
#: Seconds without a packet after which a publication is not ranked (it sends nothing).
SILENT_AFTER = 0.5
#: Loudness (dB above -127 dBov) under which audio is silence: a muted microphone's
#: digital zeros, not a quiet room (about 50 dB above).
SILENCE_DB = 1.0
#: Decibels a stream that is forwarded is credited when ranked: two about as loud do
#: not take turns every ranking.
HYSTERESIS_DB = 3.0
#: The weight of each packet's level in a publication's loudness (a moving average:
#: about the last 10 packets, 0.2 s of 20 ms packets).
LEVEL_WEIGHT = 0.1

_RECEIVER_QUEUE = "_RTCRtpReceiver__decoder_queue"
_RECEIVER_STARTED = "_RTCRtpReceiver__started"


def source_checker(problems: list[str]) -> Callable[[Callable[..., Any] | type, str, str], None]:
    """`needs(where, fragment, what)`: note in `problems` that `what` is missing when the
    source of `where` (a library's function or class) lacks `fragment`."""

    def needs(where: Callable[..., Any] | type, fragment: str, what: str) -> None:
        try:
            source = inspect.getsource(where)
        except (OSError, TypeError):  # pragma: no cover - no source shipped
            problems.append(f"cannot read the source of {where!r} to check {what}")
            return
        if fragment not in source:
            problems.append(f"{what}: {fragment!r} not found in {where.__qualname__}")

    return needs


def check_internals() -> list[str]:
    """What forwarding relies on in aiortc that the installed version lacks (empty: all
    there). `media.MediaServer` refuses to start when something is missing."""
    problems: list[str] = []
    needs = source_checker(problems)

    needs(
        RTCRtpReceiver._handle_rtp_packet,
        "self.__decoder_queue.put((codec, encoded_frame))",
        "the receiver hands whole encoded frames to its decoder queue",
    )
    needs(RTCRtpReceiver.__init__, "self.__decoder_queue", "the receiver's decoder queue")
    needs(RTCRtpReceiver.__init__, "self.__started", "the receiver's started flag")
    needs(RTCRtpReceiver.receive, "self.__decoder_queue", "the decoder thread reads that queue")
    needs(RTCRtpReceiver, "async def _send_rtcp_pli(self, media_ssrc", "the receiver sends PLIs")
    needs(
        RTCDtlsTransport._handle_rtp_data,
        "await receiver._handle_rtp_packet(packet, arrival_time_ms=arrival_time_ms)",
        "the transport hands each parsed RTP packet to its receiver's _handle_rtp_packet",
    )
    needs(
        aiortc.rtp.HeaderExtensionsMap.get,
        "values.audio_level = (vad_level & 0x80 == 0x80, vad_level & 0x7F)",
        "a parsed packet's audio level is (voice activity, -dBov)",
    )
    needs(
        RTCRtpSender._next_encoded_frame,
        "self.__encoder.pack(data)",
        "the sender packs a packet without encoding it",
    )
    needs(
        RTCRtpSender._handle_rtcp_packet,
        "self._send_keyframe()",
        "the sender reacts to PLI and FIR through _send_keyframe",
    )
    needs(RTCRtpSender.__init__, "self._stream_id", "the sender's msid stream id")
    needs(RTCRtpSender.replaceTrack, "self._track_id", "the sender's msid track id")
    needs(RemoteStreamTrack.__init__, "self._queue", "a remote track's frame queue")
    needs(
        rtcpeerconnection.create_media_description_for_transceiver,
        "codecs=transceiver._codecs",
        "an answer offers the transceiver's negotiated codecs",
    )
    needs(
        rtcpeerconnection.RTCPeerConnection.createOffer,
        "transceiver._headerExtensions = HEADER_EXTENSIONS[transceiver.kind][:]",
        "an offer numbers header extensions from the module's table",
    )
    needs(
        rtcpeerconnection.RTCPeerConnection.createOffer,
        "CODECS[transceiver.kind][:], transceiver._preferred_codecs",
        "an offer numbers payload types from the module's codec table",
    )
    # _ice.read_in_batches: a peer connection's sockets, and asyncio's datagram reading
    needs(
        RTCIceGatherer.__init__, "self._connection = Connection(", "a gatherer's aioice connection"
    )
    needs(aioice.Connection.__init__, "self._protocols", "an aioice connection's sockets")
    needs(
        asyncio.selector_events._SelectorDatagramTransport._read_ready,  # type: ignore[attr-defined]
        "data, addr = self._sock.recvfrom(self.max_size)",
        "asyncio reads one datagram per readiness, as _ice._read_batch does in a loop",
    )
    needs(
        asyncio.selector_events._SelectorDatagramTransport.__init__,  # type: ignore[attr-defined]
        "self._add_reader,",
        "a datagram transport registers its _read_ready as its socket's reader",
    )
    needs(
        asyncio.selector_events._SelectorTransport._add_reader,  # type: ignore[attr-defined]
        "self._loop._add_reader(fd, callback, *args)",
        "through the loop's _add_reader, which _ice.read_in_batches calls too",
    )
    if "await" in inspect.getsource(rtcpeerconnection.RTCPeerConnection.createOffer):
        problems.append("createOffer awaits: swapping its codec and extension tables is not safe")
    if aiortc.__version__ != AIORTC_VERSION:
        problems.append(
            f"aiortc {aiortc.__version__} is installed; forwarding was tested against "
            f"{AIORTC_VERSION} (pinned in meetcore-media's dependencies)"
        )
    return problems


def negotiated_codecs(pc: RTCPeerConnection) -> dict[str, list[RTCRtpCodecParameters]]:
    """The forwarded codec of each kind (and its RTX) under the payload types the client
    negotiated in its first offer, for the server's later offers (`create_offer`).

    A kind the client did not negotiate gets aiortc's numbering, moved off any payload
    type the other kind took (one BUNDLE: a payload type means one codec throughout).
    """
    found: dict[str, list[RTCRtpCodecParameters]] = {}
    for transceiver in pc.getTransceivers():
        if transceiver.kind in found or transceiver.mid is None:
            continue
        wanted = FORWARDED_CODECS[transceiver.kind].lower()
        main = next((c for c in transceiver._codecs if c.mimeType.lower() == wanted), None)
        if main is None:
            continue
        rtx = [
            c
            for c in transceiver._codecs
            if c.mimeType.lower() == "video/rtx" and c.parameters.get("apt") == main.payloadType
        ]
        found[transceiver.kind] = [main, *rtx[:1]]
    taken = {c.payloadType for codecs in found.values() for c in codecs}
    table: dict[str, list[RTCRtpCodecParameters]] = vars(rtcpeerconnection)["CODECS"]
    for kind, mime in FORWARDED_CODECS.items():
        if kind in found:
            continue
        main = copy.deepcopy(next(c for c in table[kind] if c.mimeType.lower() == mime.lower()))
        rtx = [
            copy.deepcopy(c)
            for c in table[kind]
            if c.mimeType.lower() == "video/rtx" and c.parameters.get("apt") == main.payloadType
        ][:1]
        if main.payloadType in taken:
            main.payloadType = min(set(range(96, 128)) - taken)
        taken.add(main.payloadType)
        for codec in rtx:
            codec.parameters["apt"] = main.payloadType
            if codec.payloadType in taken:
                codec.payloadType = min(set(range(96, 128)) - taken)
            taken.add(codec.payloadType)
        found[kind] = [main, *rtx]
    return found


def negotiated_extensions(pc: RTCPeerConnection) -> dict[str, list[Any]]:
    """The RTP header extensions each kind was negotiated with, under the client's ids
    (aiortc keeps the remote ids when it answers)."""
    found: dict[str, list[Any]] = {}
    for transceiver in pc.getTransceivers():
        found.setdefault(transceiver.kind, list(transceiver._headerExtensions))
    return found


async def create_offer(
    pc: RTCPeerConnection,
    extensions: dict[str, list[Any]],
    codecs: dict[str, list[RTCRtpCodecParameters]] | None = None,
) -> Any:
    """`pc.createOffer()`, numbering header extensions and payload types as they were
    negotiated (`negotiated_extensions`, `negotiated_codecs`).

    aiortc numbers both afresh from its own tables in every offer. A browser refuses a
    renegotiation that gives a negotiated extension id another meaning, and it accepts
    one that renumbers payload types: it then sends with the new numbers, which the
    server's receivers, registered once with the first ones, drop (a browser that
    published before anyone else sent nothing more the server could forward once it was
    offered someone's stream: issue 20). `createOffer` never awaits (checked by
    `check_internals`), so swapping the tables around it cannot leak into another
    connection's offer.
    """
    module = vars(rtcpeerconnection)  # the tables are not in aiortc's typed API
    extension_table = module["HEADER_EXTENSIONS"]
    codec_table = module["CODECS"]
    module["HEADER_EXTENSIONS"] = {**extension_table, **extensions}
    if codecs is not None:
        module["CODECS"] = {**codec_table, **codecs}
    try:
        return await pc.createOffer()
    finally:
        module["HEADER_EXTENSIONS"] = extension_table
        module["CODECS"] = codec_table


def is_keyframe(kind: str, data: bytes) -> bool:
    """Whether an encoded frame can be decoded on its own (every audio frame can).

    VP8 (RFC 6386, 9.1): bit 0 of the frame tag is 0 for a key frame.
    """
    if kind != "video":
        return True
    return len(data) > 0 and not data[0] & 0x01


def prefer_forwarded_codecs(transceiver: RTCRtpTransceiver) -> None:
    """Offer or accept only the forwarded codec of the transceiver's kind (and RTX)."""
    wanted = {FORWARDED_CODECS[transceiver.kind], "video/rtx"}
    capabilities = RTCRtpSender.getCapabilities(transceiver.kind).codecs
    transceiver.setCodecPreferences([c for c in capabilities if c.mimeType in wanted])


def restrict_to_forwarded(transceiver: RTCRtpTransceiver) -> bool:
    """Keep only the forwarded codec (and its RTX) among those negotiated from a remote
    offer, before answering it; False when the offer lacks it (the section is refused)."""
    wanted = FORWARDED_CODECS[transceiver.kind].lower()
    codecs = transceiver._codecs
    main = next((c for c in codecs if c.mimeType.lower() == wanted), None)
    if main is None:
        return False
    rtx = [
        c
        for c in codecs
        if c.mimeType.lower() == "video/rtx" and c.parameters.get("apt") == main.payloadType
    ]
    transceiver._codecs = [main, *rtx[:1]]
    return True


class _EncodedTap(queue.Queue[Any]):
    """Stands in for a receiver's decoder queue: frames go to `deliver`, not a decoder.

    `put` is called on the event loop by the receiver's RTP handler. The receiver's
    decoder thread still starts, finds nothing to decode, and ends when the receiver
    stops (it puts None, which goes on the queue as before).
    """

    def __init__(self, deliver: Callable[[RTCRtpCodecParameters, Any], None]) -> None:
        super().__init__()
        self._deliver = deliver

    def put(self, item: Any, block: bool = True, timeout: float | None = None) -> None:
        if item is None:
            super().put(item, block, timeout)
            return
        codec, frame = item
        try:
            self._deliver(codec, frame)
        except Exception:  # never break the receiver's RTP handling
            log.exception("forwarding a frame failed")


def install_tap(
    receiver: RTCRtpReceiver, deliver: Callable[[RTCRtpCodecParameters, Any], None]
) -> None:
    """Send the receiver's encoded frames to `deliver(codec, frame)` instead of decoding
    them; `frame.data` is the encoded frame, `frame.timestamp` its RTP timestamp from 0.

    Must be called before the receiver starts (before the answer is applied).
    """
    if getattr(receiver, _RECEIVER_STARTED):
        raise RuntimeError("install_tap() on a receiver that has started")
    setattr(receiver, _RECEIVER_QUEUE, _EncodedTap(deliver))


def watch_audio_levels(receiver: RTCRtpReceiver, publication: Publication) -> None:
    """Tell `publication` the audio level of each RTP packet the receiver gets (the
    ssrc-audio-level header extension, when the client sends it)."""
    original = receiver._handle_rtp_packet

    async def handle(packet: Any, arrival_time_ms: int) -> None:
        level = packet.extensions.audio_level
        if level is not None:
            publication.heard(level[1])
        await original(packet, arrival_time_ms)

    receiver._handle_rtp_packet = handle  # type: ignore[method-assign]


def hook_keyframe_requests(sender: RTCRtpSender, track: ForwardTrack) -> None:
    """Pass the PLI and FIR the sender's peer sends on to the track's publisher."""
    original = sender._send_keyframe

    def send_keyframe() -> None:
        original()
        track.request_keyframe()

    sender._send_keyframe = send_keyframe  # type: ignore[method-assign]


def drain(track: MediaStreamTrack) -> None:
    """Drop the decoded frames a remote track holds (a reused media section)."""
    frames = getattr(track, "_queue", None)
    if isinstance(frames, asyncio.Queue):
        while not frames.empty():
            if frames.get_nowait() is None:  # the end of the track: keep it
                frames.put_nowait(None)
                return


class Publication:
    """A participant's audio or video as it reaches the server: encoded frames, handed to
    every subscribed `ForwardTrack` as they come."""

    def __init__(
        self,
        participant_id: str,
        kind: str,
        receiver: RTCRtpReceiver | None = None,
    ) -> None:
        self.participant_id = participant_id
        self.kind = kind
        self.subscribers: set[ForwardTrack] = set()
        #: Frames and key frames received, and key frames asked for.
        self.frames = 0
        self.keyframes = 0
        self.keyframe_requests = 0
        #: Frames not forwarded to anyone: too quiet among the meeting's audio.
        self.held = 0
        #: Audio: how loud it is (dB above -127 dBov, a moving average of the packets'
        #: levels), whether its packets carry levels at all, when one last came, and its
        #: place among the meeting's audio (0: the loudest), from its `Loudest`.
        self.loudness = 0.0
        self.levels = False
        self.heard_at = -math.inf
        self.rank = 0
        self.loudest: Loudest | None = None
        self._receiver = receiver
        self._last_request = -KEYFRAME_INTERVAL
        self._warned = False
        self._tasks: set[asyncio.Future[None]] = set()

    def __repr__(self) -> str:
        return f"Publication({self.participant_id!r}, {self.kind!r})"

    def feed(self, codec: RTCRtpCodecParameters, frame: Any) -> None:
        """An encoded frame from the publisher (called by the receiver's tap)."""
        if codec.mimeType.lower() != FORWARDED_CODECS[self.kind].lower():
            if not self._warned:
                self._warned = True
                log.warning(
                    "%r sends %s: only %s is forwarded",
                    self,
                    codec.mimeType,
                    FORWARDED_CODECS[self.kind],
                )
            return
        self.push(bytes(frame.data), int(frame.timestamp))

    def heard(self, level: int) -> None:
        """A packet's audio level: 0 (0 dBov, the loudest) to 127 (-127 dBov, silence)."""
        now = time.monotonic()
        loudness = 127 - level
        if self.loudness < SILENCE_DB or now - self.heard_at > SILENT_AFTER:
            self.loudness = loudness  # it speaks (again): from its first packet
        else:
            self.loudness += (loudness - self.loudness) * LEVEL_WEIGHT
        self.levels = True
        self.heard_at = now
        loudest = self.loudest
        if loudest is not None and loudest.passes(self):
            loudest.stale()  # louder than one forwarded: ranked at once, not 0.3 s later

    def push(self, data: bytes, timestamp: int) -> None:
        """Forward one encoded frame, with its RTP timestamp, to every subscriber (audio
        too quiet among the meeting's to the participants it is held from)."""
        keyframe = is_keyframe(self.kind, data)
        self.frames += 1
        self.keyframes += keyframe and self.kind == "video"
        loudest = self.loudest
        if loudest is not None and loudest.ranks(self) >= loudest.limit:
            if self.rank > loudest.limit:
                self.held += 1
            for track in list(self.subscribers):
                # participants get the `limit` loudest of the others: the next one too
                # when they are among the loudest themselves; a plugin's track, all
                if track.owner is None or (
                    self.rank == loudest.limit and track.owner in loudest.speakers
                ):
                    track.push(data, timestamp, keyframe)
            return
        for track in list(self.subscribers):
            track.push(data, timestamp, keyframe)

    def subscribe(self) -> ForwardTrack:
        """A new track of this publication's encoded frames (as `av.Packet`), for a plugin
        that records or relays them (all of them: no audio is held from it); `stop()` it
        when done."""
        track = ForwardTrack(self.kind)
        track.attach(self)
        return track

    def request_keyframe(self) -> None:
        """Ask the publisher for a key frame (a PLI), at most every 250 ms."""
        if self.kind != "video" or self._receiver is None:
            return
        now = time.monotonic()
        if now - self._last_request < KEYFRAME_INTERVAL:
            return
        sources = self._receiver.getSynchronizationSources()
        if not sources:
            return  # nothing received yet: the first frame is a key frame anyway
        self._last_request = now
        self.keyframe_requests += 1
        ssrc = max(sources, key=lambda s: s.timestamp).source
        task = asyncio.ensure_future(self._receiver._send_rtcp_pli(ssrc))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def close(self) -> None:
        """The publisher is gone: its subscribers get nothing until attached elsewhere."""
        for track in list(self.subscribers):
            track.attach(None)
        self._receiver = None


class Loudest:
    """A meeting's audio publications on this node, ranked by loudness, so that each
    participant gets the audio of the `limit` loudest others only.

    Ranked at most every `RANK_INTERVAL` seconds, as frames come: a publication's rank
    is its place by loudness (0: the loudest), with `HYSTERESIS_DB` more for those
    forwarded already; silence (under `SILENCE_DB`, or nothing heard for
    `SILENT_AFTER` seconds) ranks past `limit`, held from everyone: it would take the
    place of someone speaking for nothing. A publication that becomes louder than the
    one ranked above it (`bars`) has them ranked at once, at its packet. With
    `limit` publications or fewer, everyone gets every one: all rank 0. Those whose
    packets carry no audio level cannot be ranked: they rank 0, always forwarded.
    """

    def __init__(self, limit: int) -> None:
        if limit < 1:
            raise ValueError(f"Loudest(limit={limit}): at least one stream")
        self.limit = limit
        self.publications: set[Publication] = set()
        #: The participants whose audio ranks under `limit`.
        self.speakers: frozenset[str] = frozenset()
        #: The loudness a voice must pass to be forwarded to everyone (from rank `limit`,
        #: forwarded to the loudest only) and to the loudest (from past it).
        self.bars = (math.inf, math.inf)
        self._ranked_at = -math.inf

    def add(self, publication: Publication) -> None:
        publication.loudest = self
        self.publications.add(publication)
        self.stale()

    def discard(self, publication: Publication) -> None:
        if publication.loudest is self:
            publication.loudest = None
        self.publications.discard(publication)
        self.stale()

    def stale(self) -> None:
        """Rank them again before the next frame is forwarded."""
        self._ranked_at = -math.inf

    def passes(self, publication: Publication) -> bool:
        """Whether a voice not forwarded to everyone is now louder than the one it must
        pass (as of the last ranking)."""
        rank, limit = publication.rank, self.limit
        return rank >= limit and publication.loudness > self.bars[rank > limit]

    def ranks(self, publication: Publication) -> int:
        """The publication's rank, ranking them all again when it is time."""
        now = time.monotonic()
        if now - self._ranked_at >= RANK_INTERVAL:
            self.rank(now)
        return publication.rank

    def rank(self, now: float) -> None:
        self._ranked_at = now
        ranked: list[Publication] = []
        for publication in self.publications:
            if publication.levels:
                ranked.append(publication)
            else:  # sends nothing yet, or no levels: cannot be ranked, always forwarded
                publication.rank = 0
        if len(ranked) > self.limit:

            def silent(publication: Publication) -> bool:
                # not sending (its microphone off, or gone) is as silent as zeros
                stale = now - publication.heard_at > SILENT_AFTER
                return stale or publication.loudness < SILENCE_DB

            def loudness(publication: Publication) -> float:
                credit = HYSTERESIS_DB if publication.rank < self.limit else 0.0
                return -1.0 if silent(publication) else publication.loudness + credit

            ranked.sort(key=loudness, reverse=True)
            for place, publication in enumerate(ranked):
                publication.rank = self.limit + 1 + place if silent(publication) else place
            # a voice louder than the one it must pass (with that one's credit; silence
            # is passed by any sound) is ranked at once
            bars = []
            for last in (ranked[self.limit - 1], ranked[self.limit]):
                credit = HYSTERESIS_DB if last.rank < self.limit else 0.0
                bars.append(SILENCE_DB if silent(last) else last.loudness + credit)
            self.bars = (bars[0], bars[1])
        else:
            for publication in ranked:
                publication.rank = 0
            self.bars = (math.inf, math.inf)  # everyone forwarded: nothing to pass
        self.speakers = frozenset(p.participant_id for p in ranked if p.rank < self.limit)


class ForwardTrack(MediaStreamTrack):
    """A subscriber's outgoing track: the encoded frames of whichever publication it is
    attached to, as `av.Packet`s, which its sender packetizes without encoding.

    Timestamps are rebased so that they keep increasing across attachments: the
    subscriber's decoder sees one stream on one SSRC. Detached, `recv()` waits.
    `owner`: the participant it is sent to (None: a plugin's).
    """

    def __init__(self, kind: str, owner: str | None = None) -> None:
        super().__init__()
        self.kind = kind
        self.owner = owner
        self.source: Publication | None = None
        #: Packets handed to the sender.
        self.packets = 0
        self._time_base = fractions.Fraction(1, CLOCK_RATES[kind])
        self._queue: asyncio.Queue[av.Packet[Any]] = asyncio.Queue()
        self._keyless = kind == "video"  # for a key frame
        self._offset: int | None = None
        self._last_in = 0
        self._last_out = -FRAME_TICKS[kind]

    def attach(self, publication: Publication | None) -> None:
        """Forward `publication` from now on (None: nothing), from its next key frame."""
        if publication is self.source:
            return
        if self.source is not None:
            self.source.subscribers.discard(self)
        self.source = publication
        if publication is not None:
            publication.subscribers.add(self)
        self.resync()

    def resync(self) -> None:
        """Start again from the next key frame (and ask for one)."""
        while not self._queue.empty():
            self._queue.get_nowait()
        self._keyless = self.kind == "video"
        self._offset = None
        if self.source is not None:
            self.source.request_keyframe()

    def request_keyframe(self) -> None:
        """The subscriber lost the picture (PLI/FIR): ask the publisher for a key frame."""
        if self.source is not None:
            self.source.request_keyframe()

    def push(self, data: bytes, timestamp: int, keyframe: bool) -> None:
        if self.readyState != "live":
            return
        if self._keyless:
            if not keyframe:
                self.request_keyframe()
                return
            self._keyless = False
        if self._offset is None or timestamp < self._last_in:  # attached, or restarted
            self._offset = self._last_out + FRAME_TICKS[self.kind] - timestamp
        self._last_in = timestamp
        pts = max(timestamp + self._offset, self._last_out + 1)
        self._last_out = pts
        if self._queue.qsize() >= MAX_QUEUED:  # the sender cannot keep up
            self.resync()
            return
        packet = av.Packet(data)
        packet.pts = pts
        packet.time_base = self._time_base
        self._queue.put_nowait(packet)

    async def recv(self) -> av.Packet[Any]:
        if self.readyState != "live":
            raise MediaStreamError
        packet = await self._queue.get()
        self.packets += 1
        return packet

    def stop(self) -> None:
        self.attach(None)
        super().stop()
