"""Media transports in mediasoup's model, from aiortc's ORTC objects: no SDP.

A `WebRtcTransport` is what mediasoup calls one: the server gathers a host candidate,
answers the client's ICE checks as an ICE-lite agent (RFC 8445 section 2.5), runs DTLS
in the role the client's own role leaves it, then SRTP. A client (VideoSDK's SDKs run
mediasoup-client) opens one transport to send on and one to receive on. On the send
transport the server receives each producer with an `RTCRtpReceiver` under the
client's own payload types, SSRCs and header-extension ids (`receive`); on the receive
transport it sends each consumer with an `RTCRtpSender` under the router's payload
types and a new SSRC (`send`): forwarding rewrites both, as mediasoup does.

The ICE-lite agent is a small subclass of aioice's `Connection`: it answers Binding
requests authenticated with its own credentials (the client never sends its own),
starts no checks, and selects the pair the client nominates (USE-CANDIDATE). It and the
rest rely on aiortc's and aioice's internals, which `check_internals` checks.

`ortc.OrtcTransport` makes a participant's `router.Transport` of two of them.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import time
from collections.abc import Callable
from typing import Any, Literal

import aioice
from aioice import Candidate, stun
from aioice.ice import CandidatePair, StunProtocol
from aioice.utils import random_string
from aiortc import (
    MediaStreamTrack,
    RTCCertificate,
    RTCDtlsParameters,
    RTCDtlsTransport,
    RTCIceGatherer,
    RTCIceParameters,
    RTCIceTransport,
    RTCRtpReceiver,
    RTCRtpSender,
)
from aiortc.rtcdtlstransport import RTCDtlsFingerprint
from aiortc.rtcrtpparameters import RTCRtpReceiveParameters, RTCRtpSendParameters
from aiortc.rtcrtpreceiver import RemoteStreamTrack

from meetcore_media import _ice
from meetcore_media._forward import source_checker

__all__ = [
    "IceLiteConnection",
    "LiteIceGatherer",
    "WebRtcTransport",
    "check_internals",
    "default_address",
]

DtlsRole = Literal["client", "server"]


def default_address() -> str:
    """The address a transport takes its candidate on: the first of
    `MEETCORE_ICE_ADDRESSES`, else the host's first IPv4 address that is not loopback
    (loopback when it has none)."""
    from aioice.ice import get_host_addresses

    from meetcore_media._config import MediaConfig

    addresses = MediaConfig.from_env().addresses
    if addresses:
        return addresses[0]
    found = get_host_addresses(use_ipv4=True, use_ipv6=False)
    return found[0] if found else "127.0.0.1"


class IceLiteConnection(aioice.Connection):
    """An aioice `Connection` that is an ICE-lite agent on one address."""

    def __init__(self, address: str) -> None:
        super().__init__(ice_controlling=False, components=1)
        self._address = address
        # Answer checks as they come, not parked until connect(): a lite agent needs no
        # remote credentials. With `remote_username` unset, any remote ufrag is taken.
        self._early_checks_done = True
        self._nominated_once = asyncio.Event()

    async def gather_candidates(self) -> None:
        """One host candidate, on the address given (no interfaces, no STUN or TURN)."""
        if not self._local_candidates_start:
            self._local_candidates_start = True
            self._local_candidates += await self.get_component_candidates(
                component=1, addresses=[self._address]
            )
            self._local_candidates_end = True

    async def connect(self) -> None:
        """Wait until the client nominates a pair; start no checks, no consent checks
        (the client checks consent against us; we answer)."""
        if not self._local_candidates_end:
            raise ConnectionError("gather the candidates first")
        await self._nominated_once.wait()
        if self._closing or not self._nominated:
            raise ConnectionError("closed before the client nominated a pair")

    async def close(self) -> None:
        await super().close()
        self._nominated_once.set()  # wake a connect() still waiting

    def check_incoming(
        self, message: stun.Message, addr: tuple[str, int], protocol: StunProtocol
    ) -> None:
        """A check from the client, already answered: select its pair if it nominates it
        (a later nomination from another address moves the selection, as in mediasoup)."""
        if "USE-CANDIDATE" not in message.attributes:
            return
        component = protocol.local_candidate.component
        current = self._nominated.get(component)
        if current is not None and current.protocol is protocol and current.remote_addr == addr:
            return
        remote = next(
            (c for c in self._remote_candidates if (c.host, c.port) == (addr[0], addr[1])),
            None,
        )
        if remote is None:
            remote = Candidate(
                foundation=random_string(10),
                component=component,
                transport="udp",
                priority=message.attributes.get("PRIORITY", 0),
                host=addr[0],
                port=addr[1],
                type="prflx",
            )
            self._remote_candidates.append(remote)
        pair = CandidatePair(protocol, remote)
        pair.state = CandidatePair.State.SUCCEEDED
        pair.nominated = pair.remote_nominated = True
        self._nominated[component] = pair
        self._nominated_once.set()


class LiteIceGatherer(RTCIceGatherer):
    """An `RTCIceGatherer` whose connection is an `IceLiteConnection` on `address`."""

    def __init__(self, address: str) -> None:
        super().__init__(iceServers=[])
        # before any RTCIceTransport is made on it: that binds the connection's methods
        self._connection = IceLiteConnection(address)

    def getLocalParameters(self) -> RTCIceParameters:
        parameters = super().getLocalParameters()
        parameters.iceLite = True
        return parameters


#: Seconds a DTLS certificate is used for new transports (aiortc makes them valid 30 days).
CERTIFICATE_LIFETIME = 24 * 3600.0
_certificate: tuple[float, RTCCertificate] | None = None


def _shared_certificate() -> RTCCertificate:
    """The DTLS certificate of this process's transports, as mediasoup's worker has one:
    making a key pair and a certificate took most of a transport's creation (1.2 of
    1.7 ms). A new one each `CERTIFICATE_LIFETIME`."""
    global _certificate
    now = time.monotonic()
    if _certificate is None or now - _certificate[0] > CERTIFICATE_LIFETIME:
        _certificate = (now, RTCCertificate.generateCertificate())
    return _certificate[1]


class WebRtcTransport:
    """One client transport on the server: ICE-lite, DTLS in the role the client's
    leaves, SRTP. `parameters()` is what mediasoup's `createWebRtcTransport` answers;
    `connect(role, fingerprints)` is its `connectWebRtcTransport`."""

    def __init__(self, address: str) -> None:
        self.id = random_string(16)
        self.gatherer = LiteIceGatherer(address)
        self.certificate = _shared_certificate()
        self.ice = RTCIceTransport(self.gatherer)
        self.dtls = RTCDtlsTransport(self.ice, [self.certificate])
        self.connected = asyncio.Event()
        self._ice_started: asyncio.Future[None] | None = None
        self.closed = False
        self._closing = asyncio.Event()
        self._senders: list[RTCRtpSender] = []
        self._receivers: list[RTCRtpReceiver] = []

    async def start(self) -> None:
        """Gather, and answer the client's checks from now on."""
        await self.gatherer.gather()
        _ice.read_gatherer_in_batches(self.gatherer)
        # no remote parameters or candidates: returns once the client nominates a pair
        self._ice_started = asyncio.ensure_future(self.ice.start(RTCIceParameters()))

    def parameters(self) -> dict[str, Any]:
        """`id`, `iceParameters`, `iceCandidates` and `dtlsParameters`, as mediasoup names
        them (what a client needs to connect)."""
        ice = self.gatherer.getLocalParameters()
        return {
            "id": self.id,
            "iceParameters": {
                "usernameFragment": ice.usernameFragment,
                "password": ice.password,
                "iceLite": True,
            },
            "iceCandidates": [
                {
                    "foundation": c.foundation,
                    "priority": c.priority,
                    "ip": c.ip,
                    "protocol": c.protocol,
                    "port": c.port,
                    "type": c.type,
                }
                for c in self.gatherer.getLocalCandidates()
            ],
            "dtlsParameters": {
                "role": "auto",
                "fingerprints": [
                    {"algorithm": f.algorithm, "value": f.value}
                    for f in self.certificate.getFingerprints()
                ],
            },
        }

    async def connect(self, client_role: DtlsRole, fingerprints: list[dict[str, str]]) -> None:
        """The client's DTLS role and certificate fingerprints: wait for its ICE
        nomination, then run DTLS in the other role (`ConnectionError` if either fails)."""
        if self._ice_started is None:
            raise RuntimeError("start() the transport first")
        if self.closed:
            raise ConnectionError("the transport is closed")
        try:
            await self._ice_started
        except asyncio.CancelledError:
            if self.closed and self._ice_started.cancelled():  # close() stopped it, not us
                raise ConnectionError("the transport closed before ICE completed") from None
            raise
        if self.ice.state != "completed":
            raise ConnectionError(f"ICE {self.ice.state}")
        self.dtls._set_role("client" if client_role == "server" else "server")
        remote = RTCDtlsParameters(
            fingerprints=[RTCDtlsFingerprint(f["algorithm"], f["value"]) for f in fingerprints]
        )
        await self.dtls.start(remote)
        if self.dtls.state != "connected":
            raise ConnectionError(f"DTLS {self.dtls.state}")
        self.connected.set()

    async def receive(
        self,
        kind: Literal["audio", "video"],
        parameters: RTCRtpReceiveParameters,
        tap: Callable[[RTCRtpReceiver], None] = lambda receiver: None,
    ) -> RTCRtpReceiver:
        """A producer: receive `kind` under the client's parameters. `tap(receiver)` runs
        before it starts (`_forward.install_tap`, to forward instead of decoding)."""
        receiver = RTCRtpReceiver(kind, self.dtls)
        receiver._track = RemoteStreamTrack(kind=kind)  # in ORTC nobody else makes it
        receiver._set_rtcp_ssrc(random.getrandbits(32))  # or it sends no RR, NACK or PLI
        tap(receiver)
        await receiver.receive(parameters)
        self._receivers.append(receiver)
        return receiver

    def sender(self, track: MediaStreamTrack, ssrc: int, rtx_ssrc: int | None) -> RTCRtpSender:
        """A consumer's sender of `track`, under a new `ssrc` (and `rtx_ssrc`)."""
        sender = RTCRtpSender(track, self.dtls)
        sender._ssrc = ssrc  # send() takes no SSRC from its parameters
        if rtx_ssrc is not None:
            sender._rtx_ssrc = rtx_ssrc
        self._senders.append(sender)
        return sender

    async def send(self, sender: RTCRtpSender, parameters: RTCRtpSendParameters) -> None:
        """Start a consumer's sender once DTLS is up: one started before sends nothing,
        ever (its first packet fails and its task ends). `ConnectionError` when the
        transport closes first."""
        waits = [asyncio.ensure_future(e.wait()) for e in (self.connected, self._closing)]
        try:
            await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for wait in waits:
                wait.cancel()
        if self.closed or not self.connected.is_set():
            raise ConnectionError("the transport closed before it connected")
        await sender.send(parameters)

    async def stop(self, part: RTCRtpReceiver | RTCRtpSender) -> None:
        """Stop one producer's receiver or consumer's sender of this transport."""
        if part in self._receivers:
            self._receivers.remove(part)
        if part in self._senders:
            self._senders.remove(part)
        await part.stop()

    async def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        self._closing.set()
        for sender in self._senders:
            await sender.stop()
        for receiver in self._receivers:
            await receiver.stop()
        if self._ice_started is not None and not self._ice_started.done():
            self._ice_started.cancel()  # else start() turns the stopped transport "failed"
            with contextlib.suppress(asyncio.CancelledError, ConnectionError):
                await self._ice_started
        await self.dtls.stop()
        await self.ice.stop()


def check_internals() -> list[str]:
    """What the ICE-lite transport relies on in aioice and aiortc that the installed
    versions lack (empty: all there)."""
    problems: list[str] = []
    needs = source_checker(problems)

    connection = aioice.Connection
    needs(connection.__init__, "self._early_checks_done", "checks answered before connect()")
    needs(connection.__init__, "self._nominated", "the nominated pairs send and recv use")
    needs(connection.__init__, "self._local_candidates_start", "the gathering flags")
    needs(connection.request_received, "self.check_incoming(", "answered checks reach us")
    needs(connection, "def _valid_username", "the remote ufrag is checked only when known")
    needs(RTCIceGatherer.__init__, "self._connection", "the gatherer's aioice connection")
    needs(RTCIceTransport.__init__, "gatherer._connection", "the transport uses that one")
    needs(RTCDtlsTransport, "def _set_role(self, role", "the DTLS role is set explicitly")
    needs(RTCRtpReceiver.__init__, "self._track", "the receiver's track")
    needs(RTCRtpReceiver, "def _set_rtcp_ssrc(self", "the receiver's RTCP SSRC")
    needs(RTCRtpSender.__init__, "self._ssrc", "the sender's SSRC")
    needs(RTCRtpSender.__init__, "self._rtx_ssrc", "the sender's RTX SSRC")
    return problems
