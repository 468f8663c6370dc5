"""VideoSDK's protoo WebSocket signaling at `SIGNALING_PATH`.

The Python SDK connects to `{signalingUrl}/?roomId=..&peerId=..&secret=<token>&mode=..
&peerType=..` offering the subprotocol `protoo`, then sends requests
`{"request": true, "id", "method", "data"}` and reads responses `{"response": true,
"id", "ok", "data"}` (or `"ok": false, "errorCode", "errorReason"`) and notifications
`{"notification": true, "method", "data"}`.

Served: `getRouterRtpCapabilities` (`meetcore_media.ortc.ROUTER_RTP_CAPABILITIES`),
`createWebRtcTransport` (a real ICE-lite transport, `meetcore_media.ice_lite`),
`connectWebRtcTransport` (connects in the background), `requestEntry`, `join` (the
engine's `Join`; with an ask_join token, answered once the request is let in, after
an `entryResponded`; then a `newPeer` for each participant already in, and the
participant's media connection, an `ortc.OrtcTransport` on the node's media server),
`produce` and `closeProducer` (the mic or webcam switched on and off in the log too),
`resumeConsumer`, `produceData` (answered, but data channels are not carried),
`closeRoom` (`End`), `removePeer` (`RemoveParticipant`) and a moderator's
`disablePeerMic`/`disablePeerWebcam` (`SetMedia` with a target) and
`enablePeerMic`/`enablePeerWebcam` (VideoSDK's `enabledMic`/`enableWebcam` request to
that participant, when it is a VideoSDK client of this node). The meeting's log is
followed: another participant's join is `newPeer`, its leave `peerClosed`, a mic or
webcam switched `participantMediaStateChanged`; this connection's own way out
(removed, ended, replaced) is the `close` request, on which the SDK leaves. The media
server's consumers are offered with the `newConsumer` request, once the client knows
their participant, and withdrawn with `consumerClosed`. The lease is renewed while the
socket is open; a close is a `Leave` (1000: 1101 manual leave, otherwise 1001).

Everything from outside is bounded: the query parameters, each frame's size, its JSON
and each request's data are checked; a bad one gets a protoo error response (when it
has an id) or a close with a reason, never a traceback.
"""

from __future__ import annotations

import contextlib
import logging
import math
import secrets
from collections.abc import Callable
from typing import Any, Final, Literal

import anyio
import msgspec
from anyio.abc import TaskGroup
from starlette.websockets import WebSocket, WebSocketDisconnect, WebSocketState

from meetcore import (
    Conflict,
    Engine,
    ErrorCode,
    LeaveReason,
    Principal,
    Rejected,
    StoreError,
    is_text,
    one_line,
)
from meetcore.auth import MAX_TOKEN_CHARS, authenticate
from meetcore.commands import End, Join, Leave, RemoveParticipant, SetMedia
from meetcore.events import (
    EntryRequested,
    EntryResponded,
    EntryWithdrawn,
    MediaChanged,
    ParticipantJoined,
    ParticipantLeft,
)
from meetcore_media.ice_lite import WebRtcTransport, default_address
from meetcore_media.ortc import ROUTER_RTP_CAPABILITIES, Consumer, OrtcTransport
from meetcore_media.sfu import MediaServer

__all__ = ["MAX_FRAME_BYTES", "ROUTER_RTP_CAPABILITIES", "ProtooSignaling"]

log = logging.getLogger("meetcore.videosdk")

#: The largest frame read (a `join` with its RTP capabilities is a few kilobytes).
MAX_FRAME_BYTES: Final = 64 * 1024
#: The longest room or peer id, display name, taken from a client.
MAX_ID_CHARS: Final = 128
MAX_NAME_CHARS: Final = 256
#: WebRTC transports a connection may open (a send and a receive one, with room to spare).
MAX_TRANSPORTS: Final = 4
#: Seconds a new connection has to send its `join`.
JOIN_TIMEOUT: Final = 60.0
#: Seconds a `join` with an ask_join token waits to be let in (the SDK waits 15).
ENTRY_TIMEOUT: Final = 14.0
_MODES: Final = ("SEND_AND_RECV", "SIGNALLING_ONLY", "RECV_ONLY", "CONFERENCE", "VIEWER")
#: VideoSDK's older names of two modes.
_LEGACY_MODES: Final = {"CONFERENCE": "SEND_AND_RECV", "VIEWER": "SIGNALLING_ONLY"}

#: What every transport answers for SCTP (mediasoup's defaults); data is not carried yet.
SCTP_PARAMETERS: Final = {"port": 5000, "OS": 1024, "MIS": 1024, "maxMessageSize": 262144}


class _Frame(msgspec.Struct, forbid_unknown_fields=False):
    """A protoo message: a request, a response (to a server request) or a notification."""

    request: bool = False
    response: bool = False
    notification: bool = False
    id: int | None = None
    method: str = ""
    # decoded apart: a request whose data is bad is answered an error, not closed
    data: msgspec.Raw = msgspec.field(default_factory=msgspec.Raw)


class _Fingerprint(msgspec.Struct, forbid_unknown_fields=False):
    algorithm: str
    value: str


class _Dtls(msgspec.Struct, forbid_unknown_fields=False):
    role: Literal["client", "server"]
    fingerprints: list[_Fingerprint]


class _Connect(msgspec.Struct, forbid_unknown_fields=False):
    transportId: str
    dtlsParameters: _Dtls


class _TransportData(msgspec.Struct, forbid_unknown_fields=False):
    producing: bool = False
    consuming: bool = False


class _Produce(msgspec.Struct, forbid_unknown_fields=False):
    transportId: str
    kind: Literal["audio", "video"]
    rtpParameters: dict[str, Any]


class _ProducerData(msgspec.Struct, forbid_unknown_fields=False):
    producerId: str


class _ConsumerData(msgspec.Struct, forbid_unknown_fields=False):
    consumerId: str


class _JoinData(msgspec.Struct, forbid_unknown_fields=False):
    displayName: str = ""
    metaData: dict[str, Any] | None = None


class _PeerData(msgspec.Struct, forbid_unknown_fields=False):
    peerId: str


#: A moderator's requests about another participant's media.
_PEER_MEDIA: Final = ("enablePeerMic", "disablePeerMic", "enablePeerWebcam", "disablePeerWebcam")

_frame_decoder = msgspec.json.Decoder(_Frame)
_encode = msgspec.json.Encoder().encode


class _Refused(Exception):
    """Close the socket with `code` and `reason` (at most 123 bytes)."""

    def __init__(self, code: int, reason: str) -> None:
        super().__init__(reason)
        self.code = code
        self.reason = one_line(reason, 120).encode()[:123].decode(errors="ignore")


def _close_code(code: int) -> int:
    return code if 3000 <= code <= 4999 else 1011


def _checked_id(value: str, what: str) -> str:
    if len(value) > MAX_ID_CHARS or not is_text(value) or not value.isprintable():
        raise _Refused(
            int(ErrorCode.INVALID_PARAMETER),
            f"{what}: at most {MAX_ID_CHARS} printable characters",
        )
    return value


class ProtooSignaling:
    """The endpoint, on `engine`; transports gather on `address()` (the first of
    `MEETCORE_ICE_ADDRESSES`, else the first non-loopback address of the host)."""

    def __init__(
        self,
        engine: Engine,
        address: Callable[[], str] | None = None,
        media: Callable[[], Any] | None = None,
    ) -> None:
        self.engine = engine
        self._address = address or default_address
        # the node's media server, shared with meetcore's own signaling (one SFU)
        self._media_factory = media
        self._told_no_data = False
        #: The joined connections, by (room, participant id): where a moderator's
        #: request for someone's mic or webcam goes.
        self.connections: dict[tuple[str, str], _Connection] = {}

    def media(self) -> MediaServer:
        """The node's media server (`Rejected` when it has none that serves transports)."""
        server = self._media_factory() if self._media_factory is not None else None
        if not isinstance(server, MediaServer):
            why = "this server has no media server for VideoSDK's transports (meetcore-media)"
            raise Rejected(ErrorCode.SOMETHING_WENT_WRONG, why)
        return server

    async def endpoint(self, websocket: WebSocket) -> None:
        offered = websocket.scope.get("subprotocols") or []
        await websocket.accept(subprotocol="protoo" if "protoo" in offered else None)
        connection: _Connection | None = None
        try:
            query = websocket.query_params
            room_id = _query_id(query.get("roomId"), "roomId")
            peer_id = _query_id(query.get("peerId"), "peerId")
            mode = query.get("mode") or "SEND_AND_RECV"
            if mode not in _MODES:
                raise _Refused(
                    int(ErrorCode.INVALID_PARAMETER), f"mode: one of {', '.join(_MODES)}"
                )
            token = query.get("secret") or ""
            try:
                principal = authenticate(
                    self.engine.plugins,
                    token[: MAX_TOKEN_CHARS + 1],
                    meeting_id=room_id,
                    participant_id=peer_id,
                    action="join",
                )
            except Rejected as refused:
                raise _Refused(_close_code(refused.code), refused.message) from None
            connection = _Connection(self, websocket, principal, room_id, peer_id, mode)
            await connection.run()
        except _Refused as refused:
            log.info("refused a VideoSDK connection: %s", refused.reason)
            with contextlib.suppress(Exception):
                await websocket.close(refused.code, refused.reason)
        except WebSocketDisconnect:
            pass
        except Exception:
            log.exception("a VideoSDK connection failed")
            with contextlib.suppress(Exception):
                await websocket.close(1011, "the server failed (see its log)")
        finally:
            if connection is not None:
                with anyio.CancelScope(shield=True):
                    await connection.finish()
            if websocket.client_state is WebSocketState.CONNECTED:
                with contextlib.suppress(Exception):
                    await websocket.close(1000)


def _query_id(value: str | None, what: str) -> str:
    if not value:
        raise _Refused(int(ErrorCode.INVALID_PARAMETER), f"{what} is missing from the URL")
    return _checked_id(value, what)


class _Connection:
    """One SDK's socket: its transports, its participant once joined, its log follower."""

    def __init__(
        self,
        owner: ProtooSignaling,
        websocket: WebSocket,
        principal: Principal,
        room_id: str,
        peer_id: str,
        mode: str,
    ) -> None:
        self.owner = owner
        self.engine = owner.engine
        self.websocket = websocket
        self.principal = principal
        self.room_id = room_id
        self.peer_id = peer_id
        self.mode = mode
        self.connection_id = secrets.token_hex(8)
        self.joined = False
        self.joined_now = anyio.Event()  # set as `joined` becomes true
        self.out = False  # its participant is out of the meeting (left, removed, ended)
        self.close_code: int | None = None
        self.transports: dict[str, Any] = {}
        self.connected: set[str] = set()  # the transports connectWebRtcTransport was for
        self.send_transport: Any = None  # the WebRtcTransports the client produces on
        self.recv_transport: Any = None  # and consumes on
        self.media: OrtcTransport | None = None
        # the log version up to which the client has been told the meeting's events
        self.told = -1
        self._told_more = anyio.Event()
        self._consumers_in, self._consumers_out = anyio.create_memory_object_stream[
            tuple[str, Consumer, int]
        ](math.inf)
        self._send_lock = anyio.Lock()
        self.gone = False  # the socket closed under a send
        self.refused: _Refused | None = None  # why the server ends the connection
        self._tasks: TaskGroup | None = None
        self._server_request_id = 0

    async def send(self, message: dict[str, Any]) -> None:
        """Send a message; nothing once the socket is gone (the receiving side sees the
        close and ends the connection)."""
        if self.gone:
            return
        async with self._send_lock:
            try:
                await self.websocket.send_text(_encode(message).decode())
            except (WebSocketDisconnect, RuntimeError, OSError):
                self.gone = True

    async def respond(self, request_id: int, data: dict[str, Any]) -> None:
        await self.send({"response": True, "id": request_id, "ok": True, "data": data})

    async def error(self, request_id: int, code: int, reason: str) -> None:
        await self.send(
            {
                "response": True,
                "id": request_id,
                "ok": False,
                "errorCode": code,
                "errorReason": one_line(reason, 300),
            }
        )

    async def notify(self, method: str, data: dict[str, Any]) -> None:
        await self.send({"notification": True, "method": method, "data": data})

    async def request(self, method: str, data: dict[str, Any]) -> None:
        """A request of the server's; its response is not awaited (nor needed)."""
        self._server_request_id += 1
        request = {"request": True, "id": self._server_request_id, "method": method}
        await self.send(request | {"data": data})

    async def run(self) -> None:
        async with anyio.create_task_group() as tasks:
            self._tasks = tasks
            tasks.start_soon(self._renew)
            tasks.start_soon(self._deliver_consumers)
            try:
                await self._receive()
            except _Refused as error:  # raised outside the task group, not in a group
                self.refused = error
            finally:
                tasks.cancel_scope.cancel()
        if self.refused is not None:
            raise self.refused

    async def _renew(self) -> None:
        with anyio.move_on_after(JOIN_TIMEOUT):
            await self.joined_now.wait()
        if not self.joined:  # a socket that never joins is closed, saying why
            self.refused = _Refused(int(ErrorCode.INVALID_PARAMETER), "no join in time")
            assert self._tasks is not None
            self._tasks.cancel_scope.cancel()
            return
        await self._keep_lease()

    async def _keep_lease(self) -> None:
        every = max(0.5, self.engine.lease_ttl_ms / 3000)
        while True:
            self.engine.renew(self.room_id, self.connection_id)
            await anyio.sleep(every)

    async def _receive(self) -> None:
        while True:
            frame = await self.websocket.receive()
            if frame["type"] == "websocket.disconnect":
                self.close_code = int(frame.get("code") or 1005)
                return
            raw = frame.get("text")
            if raw is None:
                raw = frame.get("bytes") or b""
            if len(raw) > MAX_FRAME_BYTES:
                raise _Refused(1009, f"a frame larger than {MAX_FRAME_BYTES} bytes")
            try:
                message = _frame_decoder.decode(raw)
            except (msgspec.DecodeError, RecursionError) as error:
                raise _Refused(1007, f"not a protoo message: {error}") from None
            if self.joined:
                self.engine.renew(self.room_id, self.connection_id)
            if not message.request:
                continue  # a notification, or a response to a request of ours: none needed
            if message.id is None:
                raise _Refused(1007, "a protoo request without an id")
            try:
                request = msgspec.json.decode(message.data) if message.data else None
            except (msgspec.DecodeError, RecursionError) as error:
                request = error
            if request is not None and not isinstance(request, dict):
                problem = request if isinstance(request, Exception) else "not an object"
                why = f"{one_line(message.method, 60)}: data: {problem}"
                await self.error(message.id, int(ErrorCode.INVALID_PARAMETER), why)
                continue
            try:
                data = await self._handle(message.method, request or {})
            except Rejected as refused:
                log.info(
                    "refused %s of %s in %s: %d %s",
                    one_line(message.method, 60),
                    self.peer_id,
                    self.room_id,
                    int(refused.code),
                    refused.message,
                )
                await self.error(message.id, int(refused.code), refused.message)
            except msgspec.ValidationError as error:
                why = f"{one_line(message.method, 60)}: {error}"
                await self.error(message.id, int(ErrorCode.INVALID_PARAMETER), why)
            except Conflict:
                why = "the meeting kept changing while this request was applied: try again"
                await self.error(message.id, int(ErrorCode.OPERATION_IN_PROGRESS), why)
            except StoreError as failure:
                log.error("a VideoSDK request failed: the store failed (%s)", failure)
                why = "the server's store failed on this request: try again"
                await self.error(message.id, int(ErrorCode.SOMETHING_WENT_WRONG), why)
            else:
                await self.respond(message.id, data)

    async def _handle(self, method: str, data: dict[str, Any]) -> dict[str, Any]:
        if method == "getRouterRtpCapabilities":
            return ROUTER_RTP_CAPABILITIES
        if method == "createWebRtcTransport":
            return await self._create_transport(msgspec.convert(data, _TransportData))
        if method == "connectWebRtcTransport":
            connect = msgspec.convert(data, _Connect)
            return self._connect_transport(connect)
        if method == "requestEntry":
            return {}
        if method == "join":
            return await self._join(msgspec.convert(data, _JoinData))
        joined_only = (
            *_PEER_MEDIA,
            "produceData",
            "resumeConsumer",
            "produce",
            "closeProducer",
            "closeRoom",
            "removePeer",
        )
        if method in joined_only and not self.joined:
            raise Rejected(ErrorCode.ACTION_BEFORE_JOINED, f"{method} before join")
        if method == "produceData":
            if not self.owner._told_no_data:
                self.owner._told_no_data = True
                # INFO: the SDK opens two at every join, whether the app sends data or not
                log.info("a VideoSDK client opened a data channel: data is not carried yet")
            return {"id": secrets.token_hex(8)}
        if method == "resumeConsumer":
            consumer_id = msgspec.convert(data, _ConsumerData).consumerId
            if self.media is None:
                raise Rejected(ErrorCode.INVALID_PARAMETER, "resumeConsumer: no such consumer")
            self.media.resume(consumer_id)
            return {}
        if method == "produce":
            return await self._produce(msgspec.convert(data, _Produce))
        if method == "closeProducer":
            await self._close_producer(msgspec.convert(data, _ProducerData).producerId)
            return {}
        if method in _PEER_MEDIA:
            await self._peer_media(method, msgspec.convert(data, _PeerData).peerId)
            return {}
        if method == "closeRoom":
            await self._execute(End(**self._ids()))
            return {}
        if method == "removePeer":
            target = msgspec.convert(data, _PeerData).peerId
            await self._execute(RemoveParticipant(**self._ids(), target_id=target))
            return {}
        raise Rejected(ErrorCode.INVALID_PARAMETER, f"unknown method {one_line(method, 60)!r}")

    async def _peer_media(self, method: str, target: str) -> None:
        """A moderator's request about another participant's mic or webcam: switched off
        in the log (the engine checks allow_mod), or the participant asked to switch it
        on (only it can: VideoSDK's `enabledMic` / `enableWebcam`, to a VideoSDK
        client of this node)."""
        kind: Literal["mic", "webcam"] = "mic" if method.endswith("Mic") else "webcam"
        if method.startswith("disable"):
            await self._execute(SetMedia(**self._ids(), kind=kind, enabled=False, target_id=target))
            return
        if "allow_mod" not in self.principal.permissions:
            why = f"asking another to switch the {kind} on needs allow_mod"
            raise Rejected(ErrorCode.UNAUTHORIZED_REQUEST, why)
        other = self.owner.connections.get((self.room_id, target))
        if other is None or other.out:
            why = f"{one_line(target, 64)!r} is not in the meeting through VideoSDK's protocol here"
            raise Rejected(ErrorCode.INVALID_PARAMETER, why)
        await other.request(
            "enabledMic" if kind == "mic" else "enableWebcam", {"peerId": self.peer_id}
        )

    def _ids(self) -> dict[str, Any]:
        return {
            "meeting_id": self.room_id,
            "participant_id": self.peer_id,
            "connection_id": self.connection_id,
        }

    async def _execute(self, command: Any) -> None:
        await self.engine.execute(command, self.principal)

    async def _create_transport(self, data: _TransportData) -> dict[str, Any]:
        if len(self.transports) >= MAX_TRANSPORTS:
            raise Rejected(
                ErrorCode.INVALID_PARAMETER, f"at most {MAX_TRANSPORTS} transports per connection"
            )
        transport = WebRtcTransport(self.owner._address())
        self.transports[transport.id] = transport
        await transport.start()
        # the latest of each kind is the one used (an SDK makes one of each)
        if data.producing:
            self.send_transport = transport
        if data.consuming:
            self.recv_transport = transport
        if self.media is not None and not self.media.closed:
            self.media.send = self.media.send or self.send_transport
            self.media.recv = self.media.recv or self.recv_transport
            self.owner.media().changed(self.media)
        return transport.parameters() | {"sctpParameters": SCTP_PARAMETERS}

    def _connect_transport(self, connect: _Connect) -> dict[str, Any]:
        transport = self.transports.get(connect.transportId)
        if transport is None:
            raise Rejected(ErrorCode.INVALID_PARAMETER, "no such transport")
        if connect.transportId in self.connected:  # one connect a transport, as mediasoup
            why = "connectWebRtcTransport: this transport is connected already"
            raise Rejected(ErrorCode.ALREADY_IN_REQUESTED_STATE, why)
        if not 1 <= len(connect.dtlsParameters.fingerprints) <= 8:
            raise Rejected(ErrorCode.INVALID_PARAMETER, "dtlsParameters: 1 to 8 fingerprints")
        fingerprints = [
            {"algorithm": f.algorithm[:16], "value": f.value[:256]}
            for f in connect.dtlsParameters.fingerprints
        ]
        self.connected.add(connect.transportId)
        assert self._tasks is not None
        self._tasks.start_soon(
            self._connect_in_background, transport, connect.dtlsParameters.role, fingerprints
        )
        return {}

    async def _connect_in_background(
        self, transport: Any, role: Literal["client", "server"], fingerprints: list[dict[str, str]]
    ) -> None:
        try:
            await transport.connect(role, fingerprints)
        except Exception as failure:  # the client's problem or a network's: logged
            log.info("a VideoSDK transport did not connect: %s", one_line(str(failure), 200))

    async def _join(self, data: _JoinData) -> dict[str, Any]:
        if self.joined:
            raise Rejected(ErrorCode.ALREADY_IN_REQUESTED_STATE, "this connection has joined")
        name = data.displayName
        if len(name) > MAX_NAME_CHARS or not is_text(name):
            raise Rejected(ErrorCode.INVALID_PARAMETER, f"displayName: at most {MAX_NAME_CHARS}")
        join = Join(
            **self._ids(),
            session_id=secrets.token_hex(12),
            name=name,
            permissions=self.principal.permissions,
            meta_data=data.metaData or {},
            mode=_LEGACY_MODES.get(self.mode, self.mode),  # type: ignore[arg-type]
        )
        records = await self.engine.execute(join, self.principal)
        if any(isinstance(r.event, EntryRequested) for r in records):
            await self._wait_to_be_let_in(records[-1].version)
        self.joined = True
        self.joined_now.set()
        self.owner.connections[self.room_id, self.peer_id] = self  # a later one replaces it
        state = await self.engine.state(self.room_id)
        assert state is not None
        if join.mode != "SIGNALLING_ONLY" and self.transports:
            try:
                await self._open_media()
            except Rejected as refused:  # joined all the same, without media
                log.warning("no media for %s in %s: %s", self.peer_id, self.room_id, refused)
        others = [p for p in state.participants.values() if p.connection_id != self.connection_id]
        assert self._tasks is not None
        self._tasks.start_soon(self._announce_then_follow, others, state.version)
        peers = [_peer(p.participant_id, p.name, p.mode, p.meta_data) for p in others]
        return {"peers": peers, "messages": []}

    async def _wait_to_be_let_in(self, after: int) -> None:
        """An ask_join token's join waits in the waiting room until someone answers its
        request (`ENTRY_TIMEOUT`: the SDK gives up on its `join` after 15 s); let in, it
        is told `entryResponded`. `Rejected` when denied or unanswered (the request
        is then withdrawn)."""
        answer: bool | None = None
        with anyio.move_on_after(ENTRY_TIMEOUT):
            async with anyio.create_task_group() as leasing:
                leasing.start_soon(self._keep_lease)  # a waiting request has a lease too
                answer = await self._entry_answer(after)
                leasing.cancel_scope.cancel()
        if answer:
            state = await self.engine.state(self.room_id)
            session = state.session_id if state is not None else None
            await self.notify("entryResponded", {"peerId": self.peer_id, "sessionId": session})
            return
        self.out = True
        if answer is None:
            with contextlib.suppress(Rejected, Conflict, StoreError):
                await self.engine.execute(Leave(**self._ids()))  # withdraws the request
            why = f"nobody let this participant in within {ENTRY_TIMEOUT:g} s"
            raise Rejected(ErrorCode.OPERATION_TIMED_OUT, why)
        raise Rejected(ErrorCode.INVALID_PERMISSIONS, "the request to join was denied")

    async def _entry_answer(self, after: int) -> bool:
        """Whether the request to join was let in (the log's answer to it)."""
        async for record in self.engine.subscribe(self.room_id, after_version=after):
            event = record.event
            if getattr(event, "connection_id", None) != self.connection_id:
                continue
            if isinstance(event, EntryResponded) and not event.allowed:
                return False
            if isinstance(event, ParticipantJoined):
                return True
            if isinstance(event, EntryWithdrawn | ParticipantLeft):
                return False
        return False

    async def _announce_then_follow(self, others: list[Any], version: int) -> None:
        await anyio.sleep(0)  # after the join's response
        for other in others:
            peer = _peer(other.participant_id, other.name, other.mode, other.meta_data)
            await self.notify("newPeer", peer)
        self._tell(version)
        async for record in self.engine.subscribe(self.room_id, after_version=version):
            event = record.event
            if isinstance(event, ParticipantJoined) and event.connection_id != self.connection_id:
                peer = _peer(event.participant_id, event.name, event.mode, event.meta_data)
                await self.notify("newPeer", peer)
            elif isinstance(event, ParticipantLeft):
                if event.connection_id == self.connection_id:
                    self.out = True  # removed, ended, replaced: the SDK leaves on `close`
                    await self.request("close", {})
                    return
                await self.notify("peerClosed", {"peerId": event.participant_id})
            elif isinstance(event, MediaChanged):
                kind = "audio" if event.kind == "mic" else "video"
                change = {"peerId": event.participant_id, "kind": kind, "newState": event.enabled}
                await self.notify("participantMediaStateChanged", change)
            self._tell(record.version)

    def _tell(self, version: int) -> None:
        """The client has been told the meeting's events up to `version`."""
        self.told = version
        self._told_more.set()
        self._told_more = anyio.Event()

    # -- media ------------------------------------------------------------------------------

    async def _open_media(self) -> None:
        """The participant's media connection on the node's media server: its producers
        and the consumers the router gives it."""
        server = self.owner.media()
        self.media = await server.open(
            self.room_id,
            self.peer_id,
            self.connection_id,
            lambda router, member: _connect(
                router, member, self.send_transport, self.recv_transport, self
            ),
        )  # type: ignore[assignment]

    async def _media_connection(self) -> OrtcTransport:
        if self.media is None or self.media.closed:
            if self.mode in ("SIGNALLING_ONLY", "VIEWER"):
                raise Rejected(ErrorCode.NOT_SUPPORTED_IN_MODE, "no media in SIGNALLING_ONLY")
            await self._open_media()
        assert self.media is not None
        return self.media

    async def _produce(self, data: _Produce) -> dict[str, Any]:
        mode = _LEGACY_MODES.get(self.mode, self.mode)
        if mode != "SEND_AND_RECV":
            raise Rejected(ErrorCode.NOT_SUPPORTED_IN_MODE, f"produce: nothing is sent in {mode}")
        media = await self._media_connection()
        if media.send is None or data.transportId != media.send.id:
            raise Rejected(ErrorCode.INVALID_PARAMETER, "produce: not a send transport")
        producer_id = await media.produce(data.kind, data.rtpParameters)
        await self._set_media(data.kind, True)
        self.owner.media().changed(media)
        return {"id": producer_id}

    async def _close_producer(self, producer_id: str) -> None:
        if self.media is None:
            raise Rejected(ErrorCode.INVALID_PARAMETER, "closeProducer: no such producer")
        kind = await self.media.close_producer(producer_id)
        await self._set_media(kind, False)
        self.owner.media().changed(self.media)

    async def _set_media(self, kind: str, enabled: bool) -> None:
        """The log says the mic (webcam) is on or off, as the client's producers are."""
        command = SetMedia(
            **self._ids(), kind="mic" if kind == "audio" else "webcam", enabled=enabled
        )
        try:
            await self._execute(command)
        except Rejected as refused:
            if refused.code != ErrorCode.ALREADY_IN_REQUESTED_STATE:
                raise

    def consumer_added(self, consumer: Consumer, version: int) -> None:
        with contextlib.suppress(anyio.ClosedResourceError, anyio.BrokenResourceError):
            self._consumers_in.send_nowait(("new", consumer, version))

    def consumer_removed(self, consumer: Consumer) -> None:
        with contextlib.suppress(anyio.ClosedResourceError, anyio.BrokenResourceError):
            self._consumers_in.send_nowait(("closed", consumer, 0))

    async def _deliver_consumers(self) -> None:
        """`newConsumer` and `consumerClosed`, in the order the media server made them;
        a new one once the client knows its participant (its `newPeer` was sent)."""
        async for change, consumer, version in self._consumers_out:
            if change == "closed":
                await self.notify("consumerClosed", {"consumerId": consumer.id})
                continue
            while self.told < version:
                await self._told_more.wait()
            offer = {
                "id": consumer.id,
                "producerId": consumer.producer_id,
                "kind": consumer.kind,
                "rtpParameters": consumer.rtp_parameters,
                "type": "simple",
                "producerPaused": False,
                "peerId": consumer.participant_id,
                "appData": {"peerId": consumer.participant_id},
            }
            await self.request("newConsumer", offer)

    async def finish(self) -> None:
        """The socket is closed: the participant leaves (unless out already), the
        transports close."""
        if self.owner.connections.get((self.room_id, self.peer_id)) is self:
            del self.owner.connections[self.room_id, self.peer_id]
        self._consumers_in.close()
        self._consumers_out.close()
        if self.media is not None:
            with contextlib.suppress(Exception):
                await self.owner.media().close_connection(self.connection_id)
        for transport in self.transports.values():
            with contextlib.suppress(Exception):
                await transport.close()
        if not self.joined or self.out:
            return
        reason = (
            LeaveReason.MANUAL_LEAVE_CALLED
            if self.close_code == 1000
            else LeaveReason.WEBSOCKET_DISCONNECTED
        )
        try:
            await self.engine.execute(Leave(**self._ids(), reason=reason))
        except Rejected:
            pass
        except (Conflict, StoreError) as failure:  # its lease ends it
            log.warning("a VideoSDK leave could not be written: %s", one_line(str(failure), 200))


async def _connect(
    router: Any, member: Any, send: Any, recv: Any, connection: _Connection
) -> OrtcTransport:
    return OrtcTransport(
        router,
        member,
        send,
        recv,
        added=connection.consumer_added,
        removed=connection.consumer_removed,
    )


def _peer(participant_id: str, name: str, mode: str, meta_data: dict[str, Any]) -> dict[str, Any]:
    return {
        "id": participant_id,
        "displayName": name,
        "device": "Unknown",
        "mode": mode,
        "metaData": meta_data,
        "peerType": "normal",
    }
