"""The Python client SDK, shaped like VideoSDK's: `init_meeting(...)`, `join()`, events.

    meeting = init_meeting(base_url="http://127.0.0.1:8700", token=token,
                           meeting_id=room_id, name="Ada")
    meeting.on("participant-joined", lambda participant: print(participant.display_name))
    await meeting.join()
    ...
    await meeting.leave()

Events (`meeting.on(name, handler)`; a handler may be a function or a coroutine
function): `meeting-joined` (), `meeting-left` (reason), `participant-joined`
(participant), `participant-left` (participant, reason), `meeting-state-changed`
({"state"}), `error` ({"code", "message"}), `entry-requested` (request),
`entry-responded` (participant_id, decision), `participant-mode-changed`
({"participantId", "mode"}). A participant emits `media-status-changed`
({"kind", "newStatus"}), `stream-enabled` (stream) and `stream-disabled` (stream) on
its own `on()`.

Media (`docs/media.md`): with `mic_enabled` / `webcam_enabled` the participant
publishes audio / video (a tone and a moving bar, or the custom tracks given), and
receives everyone else's: each remote participant's `stream-enabled` carries a
`Stream` whose `track` yields decoded frames. The media connection (aiortc, imported
only then) opens once there is something to send or receive.

A lost connection is taken back automatically: the client resumes with the last
sequence number it saw and gets what it missed, without gap or duplicate.
Runs on asyncio.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib.util
import inspect
import itertools
import logging
import math
import secrets
import string
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal
from urllib.parse import urlsplit, urlunsplit

import msgspec
import websockets
from websockets.asyncio.client import ClientConnection

import meetcore_protocol as p
from meetcore import ErrorCode, LeaveReason, Rejected
from meetcore import Participant as ParticipantState
from meetcore.commands import MediaKind, Mode
from meetcore.events import (
    AnyEvent,
    EntryRequested,
    EntryResponded,
    EntryWithdrawn,
    MediaChanged,
    ModeChanged,
    ParticipantJoined,
    ParticipantLeft,
    SessionEnded,
    SessionStarted,
)

if TYPE_CHECKING:
    from aiortc import MediaStreamTrack

    from meetcore_client._media import ClientMedia
    from meetcore_media._ice import IceServer

__all__ = [
    "CONNECT_TIMEOUT",
    "DEAD_NODE_RETRY",
    "MAX_REDIRECTS",
    "NO_MEDIA",
    "RECONNECT_DELAYS",
    "REQUEST_TIMEOUT",
    "EncodedFrame",
    "EntryRequest",
    "Meeting",
    "Participant",
    "Reason",
    "Stream",
    "init_meeting",
]

log = logging.getLogger("meetcore.client")

MeetingStateName = Literal["CONNECTING", "CONNECTED", "RECONNECTING", "FAILED", "DISCONNECTED"]

#: Why a client sends and receives no media without the [media] extra.
NO_MEDIA = "sending or receiving audio and video needs meetcore-client[media] (aiortc)"
#: Seconds a request waits for its answer before failing with 3079.
REQUEST_TIMEOUT = 15.0
#: Delays between reconnection attempts, in seconds; then the client gives up (1102).
RECONNECT_DELAYS = (0.1, 0.25, 0.5, 1.0, 1.0, 2.0, 2.0, 2.0, 2.0, 2.0)

#: Redirects (`protocol.Redirect`: a cluster's node sending the client to its meeting's
#: media node) a join or resume follows before it gives up.
MAX_REDIRECTS = 3
#: Seconds a join keeps going back to the node it came in by when the node that node
#: sent it to cannot be reached (it died: until its announcement lapses, a third of
#: the lease, its meetings are still sent there; then they are placed on a live node).
DEAD_NODE_RETRY = 15.0
#: Seconds a connection may take to open (websockets' own default).
CONNECT_TIMEOUT = 10.0

_ALPHABET = string.ascii_lowercase + string.digits
_CONNECT: dict[str, Any] = {"max_size": None, "ping_interval": None, "compression": None}
_encode = msgspec.json.Encoder().encode
_REASONS = {
    LeaveReason.WEBSOCKET_DISCONNECTED: "the connection was lost",
    LeaveReason.REMOVE_PEER: "removed by a moderator",
    LeaveReason.ROOM_CLOSE: "the room was closed",
    LeaveReason.REMOVE_ALL: "the meeting was ended",
    LeaveReason.MEETING_END_API: "the meeting was ended through the API",
    LeaveReason.REMOVE_PEER_API: "removed through the API",
    LeaveReason.DUPLICATE_PARTICIPANT: "this participantId joined from another device",
    LeaveReason.MANUAL_LEAVE_CALLED: "left",
    LeaveReason.WEBSOCKET_CONNECTION_ATTEMPTS_EXHAUSTED: "could not reconnect",
    LeaveReason.JOIN_ROOM_FAILED: "joining failed",
}


class Reason(msgspec.Struct, frozen=True):
    """Why someone left: VideoSDK's `{code, message}`."""

    code: int
    message: str

    @classmethod
    def of(cls, code: int) -> Reason:
        try:
            reason = LeaveReason(code)
        except ValueError:
            return cls(code, "unknown")
        return cls(code, _REASONS.get(reason, reason.name.lower().replace("_", " ")))


class _Emitter:
    _handlers: dict[str, list[Callable[..., Any]]] | None = None
    _background: set[asyncio.Task[Any]] | None = None

    def on(self, event: str, handler: Callable[..., Any]) -> None:
        """Call `handler` each time `event` is emitted."""
        if self._handlers is None:
            self._handlers = {}
        self._handlers.setdefault(event, []).append(handler)

    def off(self, event: str, handler: Callable[..., Any]) -> None:
        """Stop calling `handler` for `event`."""
        if self._handlers is not None:
            with contextlib.suppress(ValueError):
                self._handlers.get(event, []).remove(handler)

    def _emit(self, event: str, *args: Any) -> None:
        if self._handlers is None:
            return
        handlers = self._handlers.get(event)
        if not handlers:
            return
        for handler in list(handlers):
            try:
                result = handler(*args)
                if result is not None and inspect.isawaitable(result):
                    task = asyncio.ensure_future(result)
                    if self._background is None:
                        self._background = set()
                    self._background.add(task)
                    task.add_done_callback(self._background.discard)
            except Exception:
                log.exception("a %r handler failed", event)

    def wait_for(
        self,
        event: str,
        predicate: Callable[..., bool] | None = None,
        *,
        timeout: float = 10.0,
    ) -> asyncio.Future[tuple[Any, ...]]:
        """A future of the arguments of the next `event` (that satisfies `predicate`).

        It listens from the moment it is called, so call it before doing what causes
        the event; it fails with `TimeoutError` after `timeout` seconds.
        """
        loop = asyncio.get_running_loop()
        future: asyncio.Future[tuple[Any, ...]] = loop.create_future()

        def handler(*args: Any) -> None:
            if not future.done() and (predicate is None or predicate(*args)):
                future.set_result(args)

        def expire() -> None:
            if not future.done():
                future.set_exception(TimeoutError(f"no {event!r} within {timeout} s"))

        timer = loop.call_later(timeout, expire)
        self.on(event, handler)

        def done(_: asyncio.Future[tuple[Any, ...]]) -> None:
            timer.cancel()
            self.off(event, handler)

        future.add_done_callback(done)
        return future


class Participant(_Emitter):
    """A participant as the client sees it (the local one has `local` true).

    `streams` holds its live `Stream`s by id; `stream-enabled` and `stream-disabled`
    (on `participant.on(...)`) tell when one starts and ends. `multistream` is what
    it asked for; the server sends one layer whatever it asked (`Stream.layers`).
    """

    def __init__(self, state: ParticipantState | ParticipantJoined, *, local: bool) -> None:
        self.id = state.participant_id
        self.connection_id = state.connection_id
        self.display_name = state.name
        self.meta_data = state.meta_data
        self.mic_on = state.mic_enabled
        self.webcam_on = state.webcam_enabled
        self.mode: str = state.mode
        self.permissions = state.permissions
        self.multistream = state.multistream
        self.local = local
        self.streams: dict[str, Stream] = {}

    def __repr__(self) -> str:
        return f"Participant({self.id!r}, {self.display_name!r}, local={self.local})"


@dataclass(frozen=True, slots=True)
class EncodedFrame:
    """A remote stream's frame as it arrived, not decoded (`init_meeting(decode=False)`):
    `data` is one VP8 or Opus frame, `timestamp` its RTP timestamp (90 kHz for video,
    48 kHz for audio), `keyframe` whether it decodes on its own (every audio frame does).
    """

    data: bytes
    timestamp: int
    keyframe: bool


class Stream:
    """A participant's audio or video, as VideoSDK's stream: `id`, `kind` ("audio" or
    "video") and `track`.

    For a remote participant, `track` is an aiortc `MediaStreamTrack`: `await
    track.recv()` gives the next decoded frame (`av.AudioFrame`, `av.VideoFrame`) and
    raises `aiortc.mediastreams.MediaStreamError` once the stream has ended
    (`stream-disabled`). For the local participant it is the track being sent: leave
    its frames to the sender.

    `layers` is 1: the server forwards what the publisher sends, and aiortc sends one
    layer (no simulcast), so `multistream` is always False here.
    """

    multistream = False

    def __init__(
        self,
        *,
        kind: Literal["audio", "video"],
        track: MediaStreamTrack,
        participant: Participant,
        local: bool,
        layers: int = 1,
    ) -> None:
        self.id = f"{participant.id}:{kind}"
        self.kind = kind
        self.track = track
        self.participant = participant
        self.participant_id = participant.id
        self.local = local
        self.layers = layers
        self.ended = False

    def __repr__(self) -> str:
        return f"Stream({self.id!r}, layers={self.layers}, ended={self.ended})"


class EntryRequest:
    """Someone with `ask_join` waits to enter: `await allow()` or `await deny()`."""

    def __init__(self, meeting: Meeting, participant_id: str, name: str) -> None:
        self.participant_id = participant_id
        self.name = name
        self._meeting = meeting

    async def allow(self) -> None:
        await self._meeting.respond_entry(self.participant_id, "allowed")

    async def deny(self) -> None:
        await self._meeting.respond_entry(self.participant_id, "denied")


def _ws_url(base_url: str) -> str:
    parts = urlsplit(base_url)
    scheme = {"http": "ws", "https": "wss"}.get(parts.scheme, parts.scheme)
    return urlunsplit((scheme, parts.netloc, parts.path.rstrip("/") + "/ws", "", ""))


class _Redirected(Exception):
    """The server sent the join or resume to another node (its WebSocket URL)."""

    def __init__(self, url: str) -> None:
        super().__init__(url)
        self.url = url


class Meeting(_Emitter):
    """One participant's view of a meeting; made by `init_meeting`."""

    def __init__(
        self,
        *,
        base_url: str,
        token: str,
        meeting_id: str,
        name: str = "",
        participant_id: str | None = None,
        mic_enabled: bool = False,
        webcam_enabled: bool = False,
        meta_data: dict[str, Any] | None = None,
        mode: Mode = "SEND_AND_RECV",
        multistream: bool = True,
        debug_mode: bool = False,
        reconnect_delays: tuple[float, ...] = RECONNECT_DELAYS,
        custom_camera_video_track: MediaStreamTrack | None = None,
        custom_microphone_audio_track: MediaStreamTrack | None = None,
        ice_servers: Sequence[IceServer] | None = None,
        ice_addresses: Sequence[str] | None = None,
        decode: bool = True,
    ) -> None:
        super().__init__()
        if not isinstance(meeting_id, str) or not meeting_id:
            raise Rejected(ErrorCode.INVALID_MEETING_ID, "meeting_id must be a non-empty string")
        if mode not in ("SEND_AND_RECV", "SIGNALLING_ONLY", "RECV_ONLY", "CONFERENCE", "VIEWER"):
            raise Rejected(ErrorCode.INVALID_PARAMETER, f"unknown mode {mode!r}")
        if meta_data is not None and not isinstance(meta_data, dict):
            raise Rejected(ErrorCode.INVALID_PARAMETER, "meta_data must be a dict")
        self.id = meeting_id
        #: The WebSocket URL the client is connected to: `base_url`'s, or the node a
        #: cluster sent it to (its meeting's media node).
        self.url = _ws_url(base_url)
        self._entry_url = self.url
        self._moved_to: str | None = None  # where a `redirect` said to resume
        self._trying = self.url  # the URL being connected to
        self.token = token
        if participant_id is None:  # "" is sent as it is, and refused (4004)
            participant_id = "".join(secrets.choice(_ALPHABET) for _ in range(8))
        self.participant_id = participant_id
        self._join = p.JoinRequest(
            token=token,
            meeting_id=meeting_id,
            name=name,
            participant_id=self.participant_id,
            mic_enabled=mic_enabled,
            webcam_enabled=webcam_enabled,
            meta_data=meta_data,
            mode=mode,
            multistream=multistream,
            debug_mode=debug_mode,
        )
        self.reconnect_delays = reconnect_delays
        self._roster: dict[str, Participant] = {}  # the remote ones, as in VideoSDK
        self.local_participant: Participant | None = None
        self.session_id: str | None = None
        self.state: MeetingStateName = "DISCONNECTED"
        self.joined = False
        self.waiting = False
        self.seq = 0
        self._connection_id = ""
        self._resume_token = ""
        self._lease_ttl = 15_000
        self._socket: ClientConnection | None = None
        self._phase: Literal["new", "joining", "in", "out"] = "new"
        self._requests = itertools.count(1)
        self._pending: dict[int, asyncio.Future[Any]] = {}
        self._run_task: asyncio.Task[None] | None = None
        self._left = asyncio.Event()
        self._connected = asyncio.Event()
        self._camera = custom_camera_video_track
        self._microphone = custom_microphone_audio_track
        self.ice_servers: Sequence[IceServer] = ice_servers or ()
        self.ice_addresses = ice_addresses  # None: MEETCORE_ICE_ADDRESSES, read with media
        self.decode = decode
        if (mic_enabled or webcam_enabled) and importlib.util.find_spec("aiortc") is None:
            raise RuntimeError(NO_MEDIA)  # asked for media that cannot be sent
        self._media: ClientMedia | None = None
        self._told_no_media = False
        self._media_closing: asyncio.Future[None] | None = None

    @property
    def participants(self) -> dict[str, Participant]:
        """The other participants in the meeting (none while waiting to be let in)."""
        return self._roster if self.joined else {}

    # -- joining -------------------------------------------------------------------------

    async def join(self) -> None:
        """Join the meeting; `meeting-joined` fires once in (at once, or when admitted).

        Raises `Rejected` (and emits `error`) when the server refuses.
        """
        if self._phase == "joining":
            raise Rejected(ErrorCode.OPERATION_IN_PROGRESS, "join is already in progress")
        if self._phase == "in":
            raise Rejected(ErrorCode.ALREADY_IN_REQUESTED_STATE, "already joined")
        self._phase = "joining"
        self._set_state("CONNECTING")
        try:
            socket, welcome = await self._open(self._join, self.url)
        except (OSError, websockets.InvalidHandshake) as error:
            self._phase = "new"
            self._set_state("FAILED")
            message = f"cannot reach {self._trying}: {error}"
            raise self._error(ErrorCode.UNABLE_TO_JOIN, message) from None
        except Rejected as error:
            self._phase = "new"
            self._set_state("FAILED")
            raise self._error(error.code, error.message) from None
        self._phase = "in"
        self._socket = socket
        self._welcome(welcome)
        self._set_state("CONNECTED")
        self._run_task = asyncio.ensure_future(self._run())
        if not self.waiting:
            self.joined = True
            self._emit("meeting-joined")
            self._sync_media()

    async def _open(
        self, hello: p.JoinRequest | p.ResumeRequest, url: str
    ) -> tuple[ClientConnection, p.Welcome]:
        """Connect to `url` and send `hello`, following a cluster's redirects; the socket
        and its welcome (`self.url` is where it is). A node it is sent to that cannot be
        reached (dead) makes it ask `url` again, for up to `DEAD_NODE_RETRY` seconds.
        Raises OSError or InvalidHandshake when a server cannot be reached, `Rejected`
        when one refuses."""
        entry, redirects, tries = url, 0, 0
        loop = asyncio.get_running_loop()
        deadline = math.inf  # from the first redirect: how long a dead node may cost
        while True:
            self._trying = url  # for the message when it cannot be reached
            # a node sent to may accept and never answer: its wait ends at the deadline
            left = min(CONNECT_TIMEOUT, max(0.1, deadline - loop.time()))
            try:
                socket = await websockets.connect(url, **_CONNECT, open_timeout=left)
            except (websockets.InvalidURI, UnicodeError):  # a URL that names no server
                raise Rejected(
                    ErrorCode.UNABLE_TO_JOIN, f"cannot connect to {url[:200]!r}"
                ) from None
            except (OSError, websockets.InvalidHandshake):
                if url == entry or loop.time() >= deadline:
                    raise
                # the node it was sent to is gone: ask the entry node again, which places
                # the meeting on a live node once the dead one's announcement lapses
                delay = RECONNECT_DELAYS[min(tries, len(RECONNECT_DELAYS) - 1)]
                await asyncio.sleep(min(delay, max(0.0, deadline - loop.time())))
                tries += 1
                url, redirects = entry, 0
                continue
            try:
                welcome = await self._hello(socket, hello)
            except _Redirected as redirect:
                await socket.close()
                if url.startswith("wss:") and not redirect.url.startswith("wss:"):
                    why = f"refused a redirect from TLS to plain text: {redirect.url[:200]}"
                    raise Rejected(ErrorCode.UNABLE_TO_JOIN, why) from None
                redirects += 1
                deadline = min(deadline, loop.time() + DEAD_NODE_RETRY)
                if redirects > MAX_REDIRECTS:
                    why = (
                        f"more than {MAX_REDIRECTS} redirects from one node to another, "
                        f"the last to {redirect.url[:200]}"
                    )
                    raise Rejected(ErrorCode.UNABLE_TO_JOIN, why) from None
                url = redirect.url
                continue
            except BaseException:
                await socket.close()
                raise
            self.url = url
            return socket, welcome

    async def _hello(
        self, socket: ClientConnection, hello: p.JoinRequest | p.ResumeRequest
    ) -> p.Welcome:
        await socket.send(_encode(hello).decode())
        try:
            async with asyncio.timeout(REQUEST_TIMEOUT):
                while True:
                    message = p.server_decoder.decode(await socket.recv())
                    if isinstance(message, p.Welcome):
                        return message
                    if isinstance(message, p.ErrorReply):
                        raise Rejected(ErrorCode(message.code), message.message)
                    if isinstance(message, p.Redirect):
                        base = message.base_url
                        parts = urlsplit(base)
                        if (
                            parts.scheme not in ("http", "https")
                            or not parts.hostname
                            or any(c.isspace() or ord(c) < 32 for c in base)
                        ):
                            why = f"redirected to a URL that is not http(s): {base!r}"
                            raise Rejected(ErrorCode.UNABLE_TO_JOIN, why[:300])
                        raise _Redirected(_ws_url(message.base_url))
        except (TimeoutError, websockets.ConnectionClosed) as error:
            why = f"no welcome from the server: {error!r}"
            raise Rejected(ErrorCode.UNABLE_TO_JOIN, why) from None

    def _welcome(self, welcome: p.Welcome) -> None:
        self.participant_id = welcome.participant_id
        self._connection_id = welcome.connection_id
        self._resume_token = welcome.resume_token
        self._lease_ttl = welcome.lease_ttl
        if welcome.resumed:
            return
        self.seq = welcome.seq
        self.session_id = welcome.session_id
        self.waiting = welcome.waiting
        self._roster = {}
        for state in welcome.participants:
            if state.connection_id == welcome.connection_id:
                self.local_participant = Participant(state, local=True)
            else:
                self._roster[state.participant_id] = Participant(state, local=False)
        for request in welcome.pending:
            self._emit("entry-requested", EntryRequest(self, request.participant_id, request.name))

    # -- the connection ------------------------------------------------------------------

    async def _run(self) -> None:
        while True:
            socket = self._socket
            assert socket is not None
            async with asyncio.TaskGroup() as tasks:
                beat = tasks.create_task(self._heartbeat(socket))
                try:
                    await self._pump(socket)
                finally:
                    beat.cancel()
            if self._phase == "out":
                break
            if not await self._reconnect():
                break
        self._socket = None

    async def _pump(self, socket: ClientConnection) -> None:
        with contextlib.suppress(websockets.ConnectionClosed):
            async for data in socket:
                try:
                    message = p.server_decoder.decode(data)
                except msgspec.DecodeError as error:
                    self._emit("error", {"code": 5000, "message": f"unreadable message: {error}"})
                    continue
                self._receive(message)
                if self._phase == "out":
                    await socket.close()
                    return

    async def _heartbeat(self, socket: ClientConnection) -> None:
        with contextlib.suppress(websockets.ConnectionClosed):
            while True:
                await asyncio.sleep(self._lease_ttl / 3000)
                await socket.send('{"type":"ping"}')

    async def _reconnect(self) -> bool:
        self._set_state("RECONNECTING")
        was = self.url
        for delay in self.reconnect_delays:
            await asyncio.sleep(delay)
            if self._phase == "out":
                return False
            resume = p.ResumeRequest(
                token=self.token,
                meeting_id=self.id,
                participant_id=self.participant_id,
                connection_id=self._connection_id,
                resume_token=self._resume_token,
                last_seq=self.seq,
            )
            first = self._moved_to or self.url
            try:
                try:
                    socket, welcome = await self._open(resume, first)
                except (OSError, websockets.InvalidHandshake):
                    if first == self._entry_url:
                        continue
                    # the node it was sent to is gone: back to where it came in, which
                    # sends it on to the meeting's new media node
                    socket, welcome = await self._open(resume, self._entry_url)
            except (OSError, websockets.InvalidHandshake):
                continue
            except Rejected as error:
                if error.code == ErrorCode.UNABLE_TO_JOIN:
                    continue  # the server went away again: keep trying
                self._emit("error", {"code": int(error.code), "message": error.message})
                break
            self._socket = socket
            self._moved_to = None
            self._welcome(welcome)
            self._set_state("CONNECTED")
            if self.url != was:  # another node: its media connection is there
                self._stop_media()
                self._sync_media()
            return True
        self._out(Reason.of(LeaveReason.WEBSOCKET_CONNECTION_ATTEMPTS_EXHAUSTED))
        return False

    # -- what the server sends -------------------------------------------------------------

    def _receive(self, message: p.ServerMessage) -> None:
        if isinstance(message, p.EventsFrame):
            for delivery in message.events:
                if delivery.seq <= self.seq:
                    continue  # seen before a reconnect
                self.seq = delivery.seq
                self._apply(delivery.event)
                if self._phase == "out":
                    return
            self._sync_media()
        elif isinstance(message, p.Welcome):  # let in after waiting: the meeting as it is
            self._welcome(message)
            if not self.waiting and not self.joined:
                self.joined = True
                self._emit("meeting-joined")
            self._sync_media()
        elif isinstance(message, p.MediaOffer):
            if self._media is not None:
                self._media.offered(message)
        elif isinstance(message, p.MediaAnswer):
            if self._media is not None:
                self._media.answered()
            future = self._pending.pop(message.request_id, None)  # type: ignore[arg-type]
            if future is not None and not future.done():
                future.set_result(message)
        elif isinstance(message, p.Redirect):  # media is on another node: resume there
            if urlsplit(message.base_url).scheme in ("http", "https"):
                self._moved_to = _ws_url(message.base_url)
            future = self._pending.pop(message.request_id, None)  # type: ignore[arg-type]
            if future is not None and not future.done():
                why = "moving to the node of the meeting's media"
                future.set_exception(Rejected(ErrorCode.MEETING_RECONNECTING, why))
        elif isinstance(message, p.OkReply | p.ErrorReply | p.Pong):
            future = self._pending.pop(message.request_id, None)  # type: ignore[arg-type]
            if isinstance(message, p.ErrorReply):
                error = Rejected(ErrorCode(message.code), message.message)
                if future is not None and not future.done():
                    future.set_exception(error)
                else:
                    self._emit("error", {"code": message.code, "message": message.message})
            elif future is not None and not future.done():
                future.set_result(None)

    def _apply(self, event: AnyEvent) -> None:
        own = getattr(event, "connection_id", None) == self._connection_id
        if isinstance(event, ParticipantJoined):
            if own:
                self.local_participant = Participant(event, local=True)
                self.waiting = False
                self.joined = True
                self._emit("meeting-joined")
            else:
                participant = Participant(event, local=False)
                self._roster[event.participant_id] = participant
                if self.joined:  # a waiting participant learns of them when admitted
                    self._emit("participant-joined", participant)
        elif isinstance(event, ParticipantLeft | EntryWithdrawn):
            if own:
                self._out(Reason.of(event.reason))
                return
            gone = self._roster.get(event.participant_id)
            if gone is not None and gone.connection_id == event.connection_id:
                if self._media is not None:
                    self._media.end_streams(gone.id)
                del self._roster[event.participant_id]
                if isinstance(event, ParticipantLeft) and self.joined:
                    self._emit("participant-left", gone, Reason.of(event.reason))
        elif isinstance(event, MediaChanged):
            who = self._participant(event.participant_id)
            if who is not None:
                if event.kind == "mic":
                    who.mic_on = event.enabled
                else:
                    who.webcam_on = event.enabled
                kind: Literal["audio", "video"] = "audio" if event.kind == "mic" else "video"
                status = {"kind": kind, "newStatus": "enabled" if event.enabled else "disabled"}
                who._emit("media-status-changed", status)
                if not event.enabled and not who.local and self._media is not None:
                    self._media.end_streams(who.id, kind)
        elif isinstance(event, ModeChanged):
            who = self._participant(event.participant_id)
            if who is not None:
                who.mode = event.mode
            change = {"participantId": event.participant_id, "mode": event.mode}
            self._emit("participant-mode-changed", change)
        elif isinstance(event, EntryRequested):
            self._emit("entry-requested", EntryRequest(self, event.participant_id, event.name))
        elif isinstance(event, EntryResponded):
            decision = "allowed" if event.allowed else "denied"
            self._emit("entry-responded", event.participant_id, decision)
            if own and not event.allowed:
                self._phase = "out"
                self._finish()
        elif isinstance(event, SessionStarted):
            self.session_id = event.session_id
        elif isinstance(event, SessionEnded):
            self.session_id = None

    def _sync_media(self) -> None:
        """Open the media connection once there is something to send or receive (close it
        in SIGNALLING_ONLY), and publish what the log says the local participant sends."""
        me = self.local_participant
        if me is None or not self.joined or self._phase != "in":
            return
        if me.mode == "SIGNALLING_ONLY":
            self._stop_media()
            return
        if self._media is None:
            others = (p for p in self._roster.values() if p.mode == "SEND_AND_RECV")
            if not (me.mic_on or me.webcam_on or any(p.mic_on or p.webcam_on for p in others)):
                return
            try:
                from meetcore_client._media import ClientMedia
            except ImportError:  # no aiortc: installed without the extra
                if not self._told_no_media:
                    self._told_no_media = True
                    log.warning("no media for %s: %s", me.id, NO_MEDIA)
                return

            self._media = ClientMedia(
                self,
                ice_servers=self.ice_servers,
                addresses=self.ice_addresses,
                camera=self._camera,
                microphone=self._microphone,
                decode=self.decode,
            )
            self._media.start()
        self._media.publish("audio", me.mic_on)
        self._media.publish("video", me.webcam_on)

    def _stop_media(self) -> asyncio.Future[None] | None:
        """Close the media connection (in the background); the future of its closing."""
        media, self._media = self._media, None
        if media is not None:
            self._media_closing = asyncio.ensure_future(media.close())
        return self._media_closing

    async def _media_closed(self) -> None:
        closing = self._stop_media()
        if closing is not None:
            with contextlib.suppress(Exception):
                await closing

    def _participant(self, participant_id: str) -> Participant | None:
        local = self.local_participant
        if local is not None and local.id == participant_id:
            return local
        return self._roster.get(participant_id)

    def _out(self, reason: Reason) -> None:
        """The local participant is out of the meeting."""
        if self._phase == "out":
            return
        self._phase = "out"
        self.joined = False
        self._emit("meeting-left", reason)
        self._finish()

    def _finish(self) -> None:
        for future in self._pending.values():
            if not future.done():
                future.set_result(None)  # a leave, end... is done: the participant is out
        self._pending.clear()
        self._stop_media()
        self._left.set()
        self._set_state("DISCONNECTED")

    def _set_state(self, state: MeetingStateName) -> None:
        if state == "CONNECTED":
            self._connected.set()
        else:
            self._connected.clear()
        if state != self.state:
            self.state = state
            self._emit("meeting-state-changed", {"state": state})

    def _error(self, code: int, message: str) -> Rejected:
        self._emit("error", {"code": code, "message": message})
        return Rejected(ErrorCode(code), message)

    # -- requests ----------------------------------------------------------------------------

    async def _request(self, message: p.ClientMessage) -> Any:
        if self._phase != "in":
            raise Rejected(ErrorCode.ACTION_BEFORE_JOINED, "join the meeting first")
        if self.state == "RECONNECTING" and isinstance(message, p.LeaveRequest):
            await self._back_or_out()  # leave once reconnected (or out anyway)
            if self._left.is_set():
                return
        if self.state == "RECONNECTING" or self._socket is None:
            raise Rejected(ErrorCode.MEETING_RECONNECTING, "the meeting is reconnecting")
        request_id = next(self._requests)
        message = msgspec.structs.replace(message, request_id=request_id)
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._pending[request_id] = future
        try:
            await self._socket.send(_encode(message).decode())
            async with asyncio.timeout(REQUEST_TIMEOUT):
                return await future
        except TimeoutError:
            raise Rejected(ErrorCode.OPERATION_TIMED_OUT, "no answer from the server") from None
        except websockets.ConnectionClosed:
            raise Rejected(ErrorCode.MEETING_RECONNECTING, "the connection dropped") from None
        finally:
            self._pending.pop(request_id, None)

    async def _back_or_out(self) -> None:
        waiters = [asyncio.ensure_future(e.wait()) for e in (self._connected, self._left)]
        try:
            await asyncio.wait(
                waiters, timeout=REQUEST_TIMEOUT, return_when=asyncio.FIRST_COMPLETED
            )
        finally:
            for waiter in waiters:
                waiter.cancel()

    async def leave(self) -> None:
        """Leave the meeting (others see `participant-left` with 1101)."""
        if self._phase == "out":
            raise Rejected(ErrorCode.ALREADY_IN_REQUESTED_STATE, "already left the meeting")
        await self._request(p.LeaveRequest())
        await self._closed()

    async def end(self) -> None:
        """End the meeting for everyone (needs `allow_mod`, or being alone)."""
        await self._request(p.EndRequest())
        await self._closed()

    async def _closed(self) -> None:
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(REQUEST_TIMEOUT):
                await self._left.wait()
        if self._run_task is not None:
            with contextlib.suppress(Exception):
                await self._run_task
        await self._media_closed()

    async def remove_participant(self, participant_id: str) -> None:
        """Remove another participant (needs `allow_mod`); it leaves with 1002."""
        await self._request(p.RemoveRequest(participant_id=participant_id))

    async def _set_media(self, kind: MediaKind, enabled: bool) -> None:
        await self._request(p.SetMediaRequest(kind=kind, enabled=enabled))

    async def enable_webcam(self) -> None:
        await self._set_media("webcam", True)

    async def disable_webcam(self) -> None:
        await self._set_media("webcam", False)

    async def unmute_mic(self) -> None:
        await self._set_media("mic", True)

    async def mute_mic(self) -> None:
        await self._set_media("mic", False)

    async def change_mode(self, mode: Mode) -> None:
        await self._request(p.ChangeModeRequest(mode=mode))

    async def respond_entry(
        self, participant_id: str, decision: Literal["allowed", "denied"]
    ) -> None:
        await self._request(p.RespondEntryRequest(participant_id=participant_id, decision=decision))

    # -- waiting for things ------------------------------------------------------------------

    async def close(self) -> None:
        """Drop the connection without leaving (the server lets the lease run out)."""
        self._phase = "out"
        if self._socket is not None:
            await self._socket.close()
        if self._run_task is not None:
            with contextlib.suppress(Exception):
                await self._run_task
        await self._media_closed()


def init_meeting(
    *,
    base_url: str,
    token: str,
    meeting_id: str,
    name: str = "",
    participant_id: str | None = None,
    mic_enabled: bool = False,
    webcam_enabled: bool = False,
    meta_data: dict[str, Any] | None = None,
    mode: Mode = "SEND_AND_RECV",
    multistream: bool = True,
    debug_mode: bool = False,
    custom_camera_video_track: MediaStreamTrack | None = None,
    custom_microphone_audio_track: MediaStreamTrack | None = None,
    ice_servers: Sequence[IceServer] | None = None,
    ice_addresses: Sequence[str] | None = None,
    decode: bool = True,
) -> Meeting:
    """A `Meeting` for VideoSDK's `initMeeting` options; nothing is sent before `join()`.

    Media: `custom_camera_video_track` / `custom_microphone_audio_track` are published
    instead of the synthetic sources (`meetcore_media.tracks`) while the webcam / mic
    is on. `ice_servers`: STUN/TURN servers, as URLs or `{"urls", "username",
    "credential"}` dicts (none by default: host candidates only). `ice_addresses`: the
    local addresses to gather candidates on (default: `MEETCORE_ICE_ADDRESSES`, else
    every interface). `decode=False`: remote streams are not decoded; their tracks give
    `EncodedFrame`s and count what arrives (for bots, recorders and load tests).
    """
    return Meeting(
        base_url=base_url,
        token=token,
        meeting_id=meeting_id,
        name=name,
        participant_id=participant_id,
        mic_enabled=mic_enabled,
        webcam_enabled=webcam_enabled,
        meta_data=meta_data,
        mode=mode,
        multistream=multistream,
        debug_mode=debug_mode,
        custom_camera_video_track=custom_camera_video_track,
        custom_microphone_audio_track=custom_microphone_audio_track,
        ice_servers=ice_servers,
        ice_addresses=ice_addresses,
        decode=decode,
    )
