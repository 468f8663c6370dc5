"""mediasoup-style transports on the server (`meetcore_media.ice_lite`): a client with
full ICE connects to the server's ICE-lite transport with the DTLS roles VideoSDK's SDK
uses, sends VP8 under its own payload types and SSRCs, and a second client receives it
forwarded without re-encoding, under the router's payload types and a new SSRC.

The clients stand in for mediasoup-client: aiortc's ORTC objects, controlling, told the
server's ICE parameters and candidates; the server is never told theirs. Everything is
on 127.0.0.1."""

from __future__ import annotations

import asyncio
import random
from collections.abc import AsyncIterator
from typing import Any, Literal

import pytest
from aioice import stun
from aiortc import (
    RTCCertificate,
    RTCDtlsParameters,
    RTCDtlsTransport,
    RTCIceCandidate,
    RTCIceGatherer,
    RTCIceParameters,
    RTCIceTransport,
    RTCRtpReceiver,
    RTCRtpSender,
)
from aiortc.rtcdtlstransport import RTCDtlsFingerprint
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
from aiortc.rtcrtpreceiver import RemoteStreamTrack

from meetcore_media import _ice, ice_lite
from meetcore_media._forward import ForwardTrack, Publication, hook_keyframe_requests, install_tap
from meetcore_media.tracks import SyntheticVideoTrack

pytestmark = pytest.mark.anyio

LOOPBACK = "127.0.0.1"
MID = "urn:ietf:params:rtp-hdrext:sdes:mid"
ABS_SEND_TIME = "http://www.webrtc.org/experiments/rtp-hdrext/abs-send-time"
FEEDBACK = [RTCRtcpFeedback(type="nack"), RTCRtcpFeedback(type="nack", parameter="pli")]
#: The client's own numbering (as VideoSDK's aiortc fork numbers), and the router's.
CLIENT = {"vp8": 97, "rtx": 98, "mid": 1, "abs": 3}
ROUTER = {"vp8": 101, "rtx": 102, "mid": 1, "abs": 4}


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


def video_parameters(
    kind: type[RTCRtpSendParameters] | type[RTCRtpReceiveParameters],
    numbers: dict[str, int],
    ssrc: int,
    rtx_ssrc: int,
) -> Any:
    """VP8 (and its RTX) under `numbers`, as mediasoup's rtpParameters say them."""
    codecs = [
        RTCRtpCodecParameters(
            "video/VP8", 90000, payloadType=numbers["vp8"], rtcpFeedback=FEEDBACK
        ),
        RTCRtpCodecParameters(
            "video/rtx", 90000, payloadType=numbers["rtx"], parameters={"apt": numbers["vp8"]}
        ),
    ]
    extensions = [
        RTCRtpHeaderExtensionParameters(numbers["mid"], MID),
        RTCRtpHeaderExtensionParameters(numbers["abs"], ABS_SEND_TIME),
    ]
    encoding = (
        RTCRtpEncodingParameters if kind is RTCRtpSendParameters else RTCRtpDecodingParameters
    )
    return kind(
        codecs=codecs,
        headerExtensions=extensions,
        muxId="0",
        rtcp=RTCRtcpParameters(cname="test", ssrc=ssrc, mux=True),
        encodings=[
            encoding(ssrc=ssrc, payloadType=numbers["vp8"], rtx=RTCRtpRtxParameters(rtx_ssrc))
        ],
    )


class Client:
    """One client transport: full ICE (controlling) and a fixed DTLS role."""

    def __init__(self, server: dict[str, Any], role: Literal["client", "server"]) -> None:
        self.server = server
        self.role = role
        self.gatherer = RTCIceGatherer(iceServers=[])
        self.certificate = RTCCertificate.generateCertificate()
        self.ice = RTCIceTransport(self.gatherer)
        self.dtls = RTCDtlsTransport(self.ice, [self.certificate])

    async def prepare(self) -> list[dict[str, str]]:
        """Gather on loopback and learn the server's candidates; the fingerprints
        `connectWebRtcTransport` would carry."""
        with _ice.gathering_on([LOOPBACK]):
            await self.gatherer.gather()
        self.ice._connection.ice_controlling = True  # ORTC has no public setter
        self.ice._role_set = True
        for c in self.server["iceCandidates"]:
            candidate = RTCIceCandidate(
                component=1,
                foundation=c["foundation"],
                ip=c["ip"],
                port=c["port"],
                priority=c["priority"],
                protocol=c["protocol"],
                type=c["type"],
            )
            await self.ice.addRemoteCandidate(candidate)
        await self.ice.addRemoteCandidate(None)
        self.dtls._set_role(self.role)
        return [
            {"algorithm": f.algorithm, "value": f.value} for f in self.certificate.getFingerprints()
        ]

    async def connect(self) -> None:
        ice = self.server["iceParameters"]
        await self.ice.start(
            RTCIceParameters(ice["usernameFragment"], ice["password"], iceLite=True)
        )
        prints = self.server["dtlsParameters"]["fingerprints"]
        await self.dtls.start(
            RTCDtlsParameters([RTCDtlsFingerprint(f["algorithm"], f["value"]) for f in prints])
        )

    async def close(self) -> None:
        await self.dtls.stop()
        await self.ice.stop()


@pytest.fixture
async def transports() -> AsyncIterator[list[ice_lite.WebRtcTransport]]:
    made: list[ice_lite.WebRtcTransport] = []
    yield made
    for transport in made:
        await transport.close()


async def open_transport(made: list[ice_lite.WebRtcTransport]) -> ice_lite.WebRtcTransport:
    transport = ice_lite.WebRtcTransport(LOOPBACK)
    made.append(transport)
    await transport.start()
    return transport


def test_the_internals_it_relies_on_are_there() -> None:
    assert ice_lite.check_internals() == []


async def test_checks_are_answered_with_the_server_s_credentials_alone(
    transports: list[ice_lite.WebRtcTransport],
) -> None:
    parameters = (await open_transport(transports)).parameters()
    (candidate,) = parameters["iceCandidates"]
    assert candidate["ip"] == LOOPBACK
    ufrag = parameters["iceParameters"]["usernameFragment"]
    password = parameters["iceParameters"]["password"]
    answers: asyncio.Queue[stun.Message] = asyncio.Queue()

    class Probe(asyncio.DatagramProtocol):
        def datagram_received(self, data: bytes, addr: Any) -> None:
            answers.put_nowait(stun.parse_message(data))

    loop = asyncio.get_running_loop()
    udp, _ = await loop.create_datagram_endpoint(Probe, local_addr=(LOOPBACK, 0))
    try:
        for username, key, answered in [
            (f"{ufrag}:any-remote-ufrag", password, True),
            (f"{ufrag}:x", "a wrong password, 22+ch", False),
            (f"not-ours:{ufrag}", password, False),
        ]:
            request = stun.Message(stun.Method.BINDING, stun.Class.REQUEST)
            request.attributes["USERNAME"] = username
            request.attributes["PRIORITY"] = 1
            request.attributes["ICE-CONTROLLING"] = 1
            request.add_message_integrity(key.encode())
            udp.sendto(bytes(request), (candidate["ip"], candidate["port"]))
            answer = await asyncio.wait_for(answers.get(), 5)
            if answered:
                assert answer.message_class == stun.Class.RESPONSE
                assert answer.attributes["XOR-MAPPED-ADDRESS"][0] == LOOPBACK
            else:
                assert answer.message_class == stun.Class.ERROR, username
                assert answer.attributes["ERROR-CODE"][0] == 401
    finally:
        udp.close()


async def test_a_producer_reaches_a_consumer_under_the_router_s_numbers_and_a_new_ssrc(
    transports: list[ice_lite.WebRtcTransport],
) -> None:
    # the publisher's send transport: its DTLS role is "server", so the server's is "client"
    send = await open_transport(transports)
    publisher = Client(send.parameters(), role="server")
    prints = await publisher.prepare()
    await asyncio.wait_for(asyncio.gather(publisher.connect(), send.connect("server", prints)), 20)
    assert send.dtls._role == "client" and send.ice.role == "controlled"
    assert send.ice._connection._check_list == []  # lite: the server checked nothing

    camera = RTCRtpSender(SyntheticVideoTrack(width=160, height=120), publisher.dtls)
    ssrc, rtx_ssrc = camera._ssrc, camera._rtx_ssrc
    publication = Publication("alice", "video")
    receiver = await send.receive(
        "video",
        video_parameters(RTCRtpReceiveParameters, CLIENT, ssrc, rtx_ssrc),
        tap=lambda r: install_tap(r, publication.feed),
    )
    publication._receiver = receiver  # key frame requests go back to the publisher
    await camera.send(video_parameters(RTCRtpSendParameters, CLIENT, ssrc, rtx_ssrc))

    # the subscriber's receive transport: its DTLS role is "client", the server's "server"
    recv = await open_transport(transports)
    subscriber = Client(recv.parameters(), role="client")
    prints = await subscriber.prepare()
    forwarded = ForwardTrack("video", owner="bob")
    forwarded.attach(publication)
    new_ssrc, new_rtx = random.getrandbits(32), random.getrandbits(32)
    sender = recv.sender(forwarded, new_ssrc, new_rtx)
    hook_keyframe_requests(sender, forwarded)
    screen = RTCRtpReceiver("video", subscriber.dtls)
    screen._track = RemoteStreamTrack(kind="video")
    screen._set_rtcp_ssrc(random.getrandbits(32))
    await screen.receive(video_parameters(RTCRtpReceiveParameters, ROUTER, new_ssrc, new_rtx))
    # the consumer is started before the transport connects: it waits for DTLS
    started = asyncio.ensure_future(
        recv.send(sender, video_parameters(RTCRtpSendParameters, ROUTER, new_ssrc, new_rtx))
    )
    await asyncio.wait_for(asyncio.gather(subscriber.connect(), recv.connect("client", prints)), 20)
    await asyncio.wait_for(started, 5)
    assert recv.dtls._role == "server"

    frames = [await asyncio.wait_for(screen.track.recv(), 10) for _ in range(10)]
    assert {(f.width, f.height) for f in frames} == {(160, 120)}
    assert publication.frames >= 10 and publication.keyframes >= 1
    assert [s.source for s in screen.getSynchronizationSources()] == [new_ssrc]
    assert forwarded.packets >= 10  # forwarded encoded: the publication was never decoded
    for closing in (camera, screen):
        await closing.stop()
    await publisher.close()
    await subscriber.close()


async def test_a_transport_the_client_never_connects_closes_cleanly(
    caplog: pytest.LogCaptureFixture,
) -> None:
    transport = ice_lite.WebRtcTransport(LOOPBACK)
    await transport.start()
    (candidate,) = transport.parameters()["iceCandidates"]
    sender = transport.sender(ForwardTrack("video", owner="bob"), 1234, None)
    pending = asyncio.ensure_future(
        transport.send(sender, video_parameters(RTCRtpSendParameters, ROUTER, 1234, 1235))
    )
    await transport.close()
    with pytest.raises(ConnectionError, match="closed before it connected"):
        await asyncio.wait_for(pending, 5)
    assert transport.ice.state == "closed"
    assert not transport.connected.is_set()
    with pytest.raises(ConnectionError):
        await transport.connect("client", [])
    assert not [r for r in caplog.records if r.levelname == "ERROR"], caplog.text
    assert candidate["port"] > 0


async def test_closing_a_transport_while_it_waits_for_the_client_is_a_connection_error() -> None:
    transport = ice_lite.WebRtcTransport(LOOPBACK)
    await transport.start()
    waiting = asyncio.ensure_future(transport.connect("client", []))
    await asyncio.sleep(0)  # it waits for ICE, which nobody will complete
    await transport.close()
    with pytest.raises(ConnectionError, match="closed before ICE completed"):
        await asyncio.wait_for(waiting, 5)
    assert not waiting.cancelled()
