"""`OrtcTransport`: a participant's media connection negotiated mediasoup's way, without
SDP: a `router.Transport` made of a send and a receive `ice_lite.WebRtcTransport`.

The client *produces* on its send transport: each producer's RTP parameters (its own
payload types, SSRCs and header-extension ids, mediasoup's `rtpParameters`) become an
`RTCRtpReceiver` whose encoded frames feed a `Publication` (`produce`). The server
*consumes* on the client's receive transport: for each stream `Router.wanted` gives
the participant, a `Consumer` forwards the publication's frames under the router's
payload types (`ROUTER_RTP_CAPABILITIES`), a new SSRC and a mid of its own, and
`added(consumer, version)` tells the front end to offer it to its client (VideoSDK's
`newConsumer`); a consumer whose stream ended is stopped and `removed(consumer)`
tells it (`consumerClosed`). Nothing is decoded: a key frame the client asks for
(PLI, FIR, or `resume`) is asked of the publisher.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import itertools
import logging
import random
import secrets
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Final

import msgspec
from aiortc import RTCRtpReceiver, RTCRtpSender
from aiortc.rtcrtpparameters import (
    RTCRtcpFeedback,
    RTCRtcpParameters,
    RTCRtpCodecParameters,
    RTCRtpDecodingParameters,
    RTCRtpEncodingParameters,
    RTCRtpHeaderExtensionParameters,
    RTCRtpReceiveParameters,
    RTCRtpRtxParameters,
    RTCRtpSendParameters,
)

from meetcore import ErrorCode, Rejected
from meetcore_media._forward import (
    FORWARDED_CODECS,
    ForwardTrack,
    Publication,
    hook_keyframe_requests,
    install_tap,
    watch_audio_levels,
)
from meetcore_media.ice_lite import WebRtcTransport
from meetcore_media.router import Kind, Member, Router, Stream

__all__ = [
    "ROUTER_RTP_CAPABILITIES",
    "Consumer",
    "OrtcTransport",
    "receive_parameters",
]

log = logging.getLogger("meetcore.media")

MID: Final = "urn:ietf:params:rtp-hdrext:sdes:mid"
AUDIO_LEVEL: Final = "urn:ietf:params:rtp-hdrext:ssrc-audio-level"
ABS_SEND_TIME: Final = "http://www.webrtc.org/experiments/rtp-hdrext/abs-send-time"
#: The router's numbering: what consumers are sent under.
OPUS_PT: Final = 100
VP8_PT: Final = 101
RTX_PT: Final = 102
_EXTENSION_IDS: Final = {MID: 1, ABS_SEND_TIME: 4, AUDIO_LEVEL: 10}
_VIDEO_FEEDBACK: Final = [("nack", None), ("nack", "pli"), ("ccm", "fir"), ("goog-remb", None)]
_EXTENSIONS: Final[dict[Kind, tuple[str, ...]]] = {
    "audio": (MID, AUDIO_LEVEL, ABS_SEND_TIME),
    "video": (MID, ABS_SEND_TIME),
}


def _feedback(kind: str) -> list[dict[str, str]]:
    if kind != "video":
        return []
    return [
        {"type": kind_} | ({"parameter": parameter} if parameter else {})
        for kind_, parameter in _VIDEO_FEEDBACK
    ]


#: The router's RTP capabilities, in mediasoup's shape (what `Device.load` reads):
#: Opus and VP8 with RTX, the only codecs forwarded.
ROUTER_RTP_CAPABILITIES: Final[dict[str, Any]] = {
    "codecs": [
        {
            "kind": "audio",
            "mimeType": "audio/opus",
            "clockRate": 48000,
            "channels": 2,
            "preferredPayloadType": OPUS_PT,
            "parameters": {},
            "rtcpFeedback": [],
        },
        {
            "kind": "video",
            "mimeType": "video/VP8",
            "clockRate": 90000,
            "preferredPayloadType": VP8_PT,
            "parameters": {},
            "rtcpFeedback": _feedback("video"),
        },
        {
            "kind": "video",
            "mimeType": "video/rtx",
            "clockRate": 90000,
            "preferredPayloadType": RTX_PT,
            "parameters": {"apt": VP8_PT},
            "rtcpFeedback": [],
        },
    ],
    "headerExtensions": [
        {
            "kind": kind,
            "uri": uri,
            "preferredId": _EXTENSION_IDS[uri],
            "preferredEncrypt": False,
            "direction": "sendrecv",
        }
        for kind in ("audio", "video")
        for uri in _EXTENSIONS[kind]
    ],
}

# -- a producer's parameters, as the client sends them -----------------------------------

_MAX_CODECS: Final = 16
_MAX_EXTENSIONS: Final = 16


class _Codec(msgspec.Struct, forbid_unknown_fields=False):
    mimeType: str
    payloadType: int
    clockRate: int
    channels: int | None = None
    parameters: dict[str, Any] = {}


class _Extension(msgspec.Struct, forbid_unknown_fields=False):
    uri: str
    id: int


class _Rtx(msgspec.Struct, forbid_unknown_fields=False):
    ssrc: int


class _Encoding(msgspec.Struct, forbid_unknown_fields=False):
    ssrc: int
    rtx: _Rtx | None = None


class _Rtcp(msgspec.Struct, forbid_unknown_fields=False):
    cname: str = ""


class _RtpParameters(msgspec.Struct, forbid_unknown_fields=False):
    codecs: list[_Codec]
    encodings: list[_Encoding]
    headerExtensions: list[_Extension] = []
    mid: str | None = None
    rtcp: _Rtcp = msgspec.field(default_factory=_Rtcp)


def _ssrc(value: int, what: str) -> int:
    if not 0 < value < 2**32:
        raise ValueError(f"rtpParameters: {what}: an SSRC is 1 to 2^32-1")
    return value


def receive_parameters(kind: Kind, data: Any) -> RTCRtpReceiveParameters:
    """A producer's mediasoup `rtpParameters` as aiortc's receive parameters: the
    forwarded codec (Opus, VP8) and its RTX under the client's payload types, its
    header extensions, one encoding. `ValueError` saying why when they cannot be used
    (malformed, oversized, no forwarded codec, simulcast)."""
    try:
        parameters = msgspec.convert(data, _RtpParameters)
    except msgspec.ValidationError as error:
        raise ValueError(f"rtpParameters: {error}") from None
    if not 1 <= len(parameters.codecs) <= _MAX_CODECS:
        raise ValueError(f"rtpParameters: 1 to {_MAX_CODECS} codecs")
    if len(parameters.headerExtensions) > _MAX_EXTENSIONS:
        raise ValueError(f"rtpParameters: at most {_MAX_EXTENSIONS} header extensions")
    if len(parameters.encodings) != 1:
        raise ValueError("rtpParameters: one encoding (simulcast is not forwarded)")
    if parameters.mid is not None and not (0 < len(parameters.mid) <= 16):
        raise ValueError("rtpParameters: a mid of 1 to 16 characters")
    wanted = FORWARDED_CODECS[kind].lower()
    codec = next((c for c in parameters.codecs if c.mimeType.lower() == wanted), None)
    if codec is None:
        raise ValueError(f"rtpParameters: {FORWARDED_CODECS[kind]} is the {kind} forwarded")
    rtx = next(
        (
            c
            for c in parameters.codecs
            if c.mimeType.lower() == "video/rtx"
            and type(c.parameters.get("apt")) is int
            and c.parameters["apt"] == codec.payloadType
            and c.payloadType != codec.payloadType
        ),
        None,
    )
    chosen = [codec] if rtx is None or kind != "video" else [codec, rtx]
    for c in chosen:
        if not 0 <= c.payloadType <= 127 or not 0 < c.clockRate <= 192000:
            raise ValueError("rtpParameters: a payload type is 0 to 127, a clock rate positive")
    for extension in parameters.headerExtensions:
        if not 1 <= extension.id <= 14:
            raise ValueError("rtpParameters: a header extension id is 1 to 14")
    (encoding,) = parameters.encodings
    ssrc = _ssrc(encoding.ssrc, "encodings.ssrc")
    rtx_ssrc = _ssrc(encoding.rtx.ssrc, "encodings.rtx.ssrc") if encoding.rtx else None
    if rtx_ssrc == ssrc:
        raise ValueError("rtpParameters: the RTX SSRC is the encoding's own")
    return RTCRtpReceiveParameters(
        codecs=[
            RTCRtpCodecParameters(
                mimeType=c.mimeType,
                clockRate=c.clockRate,
                channels=c.channels,
                payloadType=c.payloadType,
                parameters={k: v for k, v in c.parameters.items() if k == "apt"},
            )
            for c in chosen
        ],
        headerExtensions=[
            RTCRtpHeaderExtensionParameters(id=e.id, uri=e.uri[:256])
            for e in parameters.headerExtensions
        ],
        muxId=parameters.mid or "",
        rtcp=RTCRtcpParameters(cname=parameters.rtcp.cname[:64], mux=True),
        encodings=[
            RTCRtpDecodingParameters(
                ssrc=ssrc,
                payloadType=codec.payloadType,
                rtx=RTCRtpRtxParameters(ssrc=rtx_ssrc) if rtx_ssrc and len(chosen) > 1 else None,
            )
        ],
    )


def _ssrcs_of(parameters: RTCRtpReceiveParameters) -> set[int]:
    ssrcs: set[int] = set()
    for encoding in parameters.encodings:
        ssrcs.add(encoding.ssrc)
        if encoding.rtx is not None:
            ssrcs.add(encoding.rtx.ssrc)
    return ssrcs


# -- consumers ------------------------------------------------------------------------------


@dataclass(eq=False)
class Consumer:
    """A stream forwarded to a client: `participant_id`'s `kind`, from the producer
    `producer_id`, as mediasoup's consumer `rtp_parameters` describe it."""

    id: str
    producer_id: str
    participant_id: str
    kind: Kind
    rtp_parameters: dict[str, Any]
    publication: Publication
    track: ForwardTrack
    sender: RTCRtpSender
    started: asyncio.Future[None] | None = field(default=None, repr=False)


def _cname(participant_id: str) -> str:
    """A participant's CNAME for its consumers (their SDP's stream id): one per
    participant, so that its audio and video are one stream, in SDP's token characters."""
    return hashlib.blake2s(participant_id.encode(), digest_size=8).hexdigest()


def _send_parameters(
    kind: Kind, mid: str, ssrc: int, rtx_ssrc: int | None, cname: str
) -> tuple[RTCRtpSendParameters, dict[str, Any]]:
    """A consumer's parameters under the router's numbering: aiortc's and mediasoup's."""
    if kind == "audio":
        codecs = [RTCRtpCodecParameters("audio/opus", 48000, channels=2, payloadType=OPUS_PT)]
    else:
        feedback = [RTCRtcpFeedback(type=t, parameter=p) for t, p in _VIDEO_FEEDBACK]
        codecs = [
            RTCRtpCodecParameters("video/VP8", 90000, payloadType=VP8_PT, rtcpFeedback=feedback),
            RTCRtpCodecParameters(
                "video/rtx", 90000, payloadType=RTX_PT, parameters={"apt": VP8_PT}
            ),
        ]
    uris = _EXTENSIONS[kind]
    ours = RTCRtpSendParameters(
        codecs=codecs,
        headerExtensions=[RTCRtpHeaderExtensionParameters(_EXTENSION_IDS[u], u) for u in uris],
        muxId=mid,
        rtcp=RTCRtcpParameters(cname=cname, ssrc=ssrc, mux=True),
        encodings=[
            RTCRtpEncodingParameters(ssrc=ssrc, payloadType=OPUS_PT if kind == "audio" else VP8_PT)
        ],
    )
    theirs = {
        "mid": mid,
        "codecs": [
            {
                "mimeType": c.mimeType,
                "payloadType": c.payloadType,
                "clockRate": c.clockRate,
                **({"channels": c.channels} if c.channels else {}),
                "parameters": dict(c.parameters),
                "rtcpFeedback": _feedback(kind) if c.mimeType == "video/VP8" else [],
            }
            for c in codecs
        ],
        "headerExtensions": [
            {"uri": u, "id": _EXTENSION_IDS[u], "encrypt": False, "parameters": {}} for u in uris
        ],
        "encodings": [{"ssrc": ssrc} | ({"rtx": {"ssrc": rtx_ssrc}} if rtx_ssrc else {})],
        "rtcp": {"cname": cname, "reducedSize": True, "mux": True},
    }
    return ours, theirs


class OrtcTransport:
    """One participant's media connection: producers on `send`, consumers on `recv`
    (either None for a client that only receives or only sends).

    `added(consumer, version)`: a consumer to offer the client, once it has been told
    the meeting's events up to `version` (it knows the participant then);
    `removed(consumer)`: one that ended.
    """

    def __init__(
        self,
        router: Router,
        member: Member,
        send: WebRtcTransport | None,
        recv: WebRtcTransport | None,
        *,
        added: Callable[[Consumer, int], object],
        removed: Callable[[Consumer], object],
    ) -> None:
        self.router = router
        self.participant_id = member.participant_id
        self.connection_id = member.connection_id
        self.send = send
        self.recv = recv
        self.publications: dict[Kind, Publication] = {}
        self.producers: dict[str, Publication] = {}
        self.consumers: dict[Stream, Consumer] = {}
        self.closed = False
        self._receivers: dict[str, RTCRtpReceiver] = {}
        self._parameters: dict[str, RTCRtpReceiveParameters] = {}
        self._added = added
        self._removed = removed
        self._mids = itertools.count()
        self._ssrcs: set[int] = set()

    async def produce(self, kind: Kind, rtp_parameters: Any) -> str:
        """A producer: receive `kind` under the client's `rtp_parameters` (mediasoup's),
        replacing the one it had; its id (`Rejected` (3073) when the parameters cannot be
        used, or there is no send transport)."""
        if self.closed:
            raise Rejected(ErrorCode.ACTION_BEFORE_JOINED, "produce: the media connection closed")
        if self.send is None:
            raise Rejected(ErrorCode.INVALID_PARAMETER, "produce: no send transport")
        try:
            parameters = receive_parameters(kind, rtp_parameters)
        except ValueError as error:
            raise Rejected(ErrorCode.INVALID_PARAMETER, f"produce: {error}") from None
        self._check_unshared(kind, parameters)
        old = self.publications.get(kind)
        if old is not None:
            await self.close_producer(self._producer_id(old))
        publication = Publication(self.participant_id, kind)
        loudest = self.router.loudest

        def tap(receiver: RTCRtpReceiver) -> None:
            install_tap(receiver, publication.feed)
            if kind == "audio" and loudest is not None:
                watch_audio_levels(receiver, publication)

        try:
            receiver = await self.send.receive(kind, parameters, tap=tap)
        except Exception as error:  # aiortc refused them (a payload type it cannot route)
            raise Rejected(ErrorCode.INVALID_PARAMETER, f"produce: {error}") from None
        publication._receiver = receiver  # key frames are asked of it
        producer_id = secrets.token_hex(8)
        self.producers[producer_id] = publication
        self._receivers[producer_id] = receiver
        self._parameters[producer_id] = parameters
        self.publications[kind] = publication
        return producer_id

    def _check_unshared(self, kind: Kind, parameters: RTCRtpReceiveParameters) -> None:
        """`Rejected` when a producer of the other kind has the same mid or an SSRC of
        these (the transport could not tell their packets apart; mediasoup refuses too);
        the one of the same kind is replaced."""
        ssrcs = _ssrcs_of(parameters)
        for producer_id, publication in self.producers.items():
            if publication.kind == kind:
                continue
            theirs = self._parameters[producer_id]
            if parameters.muxId and parameters.muxId == theirs.muxId:
                why = "produce: rtpParameters: its mid is another producer's"
                raise Rejected(ErrorCode.INVALID_PARAMETER, why)
            if ssrcs & _ssrcs_of(theirs):
                why = "produce: rtpParameters: an SSRC of it is another producer's"
                raise Rejected(ErrorCode.INVALID_PARAMETER, why)

    async def close_producer(self, producer_id: str) -> Kind:
        """The client closed a producer (its mic or webcam went off); its kind."""
        publication = self.producers.pop(producer_id, None)
        if publication is None:
            raise Rejected(ErrorCode.INVALID_PARAMETER, "closeProducer: no such producer")
        kind: Kind = "audio" if publication.kind == "audio" else "video"
        if self.publications.get(kind) is publication:
            del self.publications[kind]
        if self.router.loudest is not None:
            self.router.loudest.discard(publication)
        publication.close()
        receiver = self._receivers.pop(producer_id)
        self._parameters.pop(producer_id, None)
        if self.send is not None:
            with contextlib.suppress(Exception):
                await self.send.stop(receiver)
        return kind

    def resume(self, consumer_id: str) -> None:
        """The client is ready for a consumer's media: start it from a key frame."""
        for consumer in self.consumers.values():
            if consumer.id == consumer_id:
                consumer.track.request_keyframe()
                return
        raise Rejected(ErrorCode.INVALID_PARAMETER, "resumeConsumer: no such consumer")

    def _producer_id(self, publication: Publication) -> str:
        return next(i for i, p in self.producers.items() if p is publication)

    async def update(self, router: Router) -> None:
        """Consume what `router.wanted` says this participant gets, of the streams that
        reach this node; stop the consumers of streams that ended or changed source."""
        if self.closed:
            return
        wanted: dict[Stream, Publication] = {}
        for stream in router.wanted(self.participant_id):
            publication = router.publication(*stream)
            if publication is not None:
                wanted[stream] = publication
        for stream, consumer in list(self.consumers.items()):
            if wanted.get(stream) is not consumer.publication:
                self._stop(consumer)
        if self.recv is None:
            return
        for stream, publication in wanted.items():
            if stream not in self.consumers:
                self._consume(stream, publication, router.version)

    def _consume(self, stream: Stream, publication: Publication, version: int) -> None:
        assert self.recv is not None
        participant_id, kind = stream
        ssrc = self._new_ssrc()
        rtx_ssrc = self._new_ssrc() if kind == "video" else None
        ours, theirs = _send_parameters(
            kind, str(next(self._mids)), ssrc, rtx_ssrc, _cname(participant_id)
        )
        track = ForwardTrack(kind, owner=self.participant_id)
        sender = self.recv.sender(track, ssrc, rtx_ssrc)
        hook_keyframe_requests(sender, track)
        producer = next(
            (
                i
                for t in self.router.transports.values()
                for i, p in getattr(t, "producers", {}).items()
                if p is publication
            ),
            f"{participant_id}:{kind}",  # a publication meetcore's own protocol brought
        )
        consumer = Consumer(
            id=secrets.token_hex(8),
            producer_id=producer,
            participant_id=participant_id,
            kind=kind,
            rtp_parameters=theirs,
            publication=publication,
            track=track,
            sender=sender,
        )
        consumer.started = asyncio.ensure_future(self._start(consumer, ours))
        track.attach(publication)
        self.consumers[stream] = consumer
        self._added(consumer, version)

    async def _start(self, consumer: Consumer, parameters: RTCRtpSendParameters) -> None:
        assert self.recv is not None
        try:
            await self.recv.send(consumer.sender, parameters)
        except ConnectionError:  # the transport closed before it connected: nothing to send
            return
        except Exception:
            log.exception("starting a consumer of %s failed", self.participant_id)

    def _stop(self, consumer: Consumer) -> None:
        stream: Stream = (consumer.participant_id, consumer.kind)
        if self.consumers.get(stream) is consumer:
            del self.consumers[stream]
        consumer.track.stop()
        if consumer.started is not None and not consumer.started.done():
            consumer.started.cancel()
        if self.recv is not None:
            task = asyncio.ensure_future(self.recv.stop(consumer.sender))
            task.add_done_callback(lambda t: t.cancelled() or t.exception())
        self._ssrcs.discard(consumer.sender._ssrc)
        self._removed(consumer)

    def _new_ssrc(self) -> int:
        while True:
            ssrc = random.randint(1, 2**32 - 1)
            if ssrc not in self._ssrcs:
                self._ssrcs.add(ssrc)
                return ssrc

    async def close(self) -> None:
        """Stop every producer and consumer, and both transports."""
        if self.closed:
            return
        self.closed = True
        for publication in self.producers.values():
            publication.close()
        for consumer in self.consumers.values():
            consumer.track.stop()
            if consumer.started is not None:
                consumer.started.cancel()
        self.consumers.clear()
        for transport in (self.send, self.recv):
            if transport is not None:
                with contextlib.suppress(Exception):
                    await transport.close()
