"""WebSocket signaling: one connection per participant, the meeting's log streamed to it.

A connection's first message is `join` or `resume` (see `protocol`). The join
runs as a `Join` command; the server answers `welcome` with the meeting as of
version `seq`, and from then on the connection receives every later event of the
meeting's log, in order, as `events` frames. Requests (leave, end, set media...)
become commands run by the engine; their events reach every connection the same
way, so the log is the only truth about who is in the meeting.

Fan-out: each meeting with connections on this node has one `_Hub`, which follows
the meeting's log once and encodes each event once; every connection's sender
takes what it has not sent yet from the hub's window, several events to a frame
when it falls behind. A connection that falls behind the window (or resumes from
far back) reads the store instead.

A connection that drops without `leave` keeps its participant in the meeting for
the lease time: the client may `resume` with the last `seq` it saw and gets what
it missed, as long as the log still holds that connection (never what came before
its own join). Otherwise the lease runs out and the engine records the leave (1001).
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import logging
import secrets
import string
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from typing import Any

import anyio
import msgspec
from anyio.abc import TaskGroup
from starlette.websockets import WebSocket, WebSocketDisconnect, WebSocketState

import meetcore_protocol as p
from meetcore import (
    Conflict,
    Engine,
    ErrorCode,
    LeaveReason,
    MediaPlacement,
    MeetingState,
    Participant,
    Principal,
    Record,
    Rejected,
    StoreError,
    fold,
    one_line,
)
from meetcore.auth import authenticate
from meetcore.commands import (
    AnyCommand,
    ChangeMode,
    End,
    Join,
    Leave,
    RemoveParticipant,
    RespondEntry,
    SetMedia,
)
from meetcore.events import (
    EntryRequested,
    EntryResponded,
    EntryWithdrawn,
    ParticipantJoined,
    ParticipantLeft,
)
from meetcore_server import hookspecs
from meetcore_server._logs import client_of
from meetcore_server.hookspecs import MediaBackend, MediaFactory, MediaOffer

__all__ = ["Signaling", "new_participant_id"]

log = logging.getLogger("meetcore.signaling")

#: Seconds a new connection has to send its `join` or `resume`.
HELLO_TIMEOUT = 10.0
#: Replies (pongs, oks, errors) a connection may have waiting to be sent. A client that
#: sends requests without reading the answers is not read from beyond it, until it reads:
#: its own sends then wait, and the server's memory for it stays bounded.
MAX_UNSENT_REPLIES = 256
#: What a client hears when its request lost every race to other writers of the meeting
#: (other servers on the same store): `ErrorCode.OPERATION_IN_PROGRESS`, 3055.
LOST_RACE = (
    "the meeting kept changing while this request was applied (other servers wrote to "
    "it): try again"
)
#: What a client offering media hears when nothing answers `meetcore_media_backend`: 5000.
NO_MEDIA = (
    "this server has no media: install meetcore-media, or give its engine a media plugin "
    "(meetcore_media.Media) when the installed plugins are not loaded"
)
#: What a client hears when the store failed under its request (`StoreError`): 5000.
STORE_FAILED = (
    "the server's store failed on this request (see the server's log): if its events do "
    "not follow, try again"
)
#: Encoded events each hub keeps for its connections.
WINDOW = 4096
#: Seconds a busy meeting's events wait to be sent together (see `_Hub`), per
#: connection to wake, up to `LINGER`: a big meeting batches more.
LINGER_PER_CONNECTION = 0.0001
LINGER = 0.1
#: Seconds a connection that is out waits for the request in hand to be answered.
REPLY_GRACE = 10.0

#: Seconds `close()` waits for connections to see their leave before closing them anyway.
CLOSE_GRACE = 5.0
#: A node of a cluster is live while it announced itself within a third of the lease
#: time (at least this many seconds), so that the participants of a node that died are
#: sent to the next one before their leases run out. It announces itself 4 times as often.
MIN_NODE_TTL = 1.0

_ALPHABET = string.ascii_lowercase + string.digits
_encode = msgspec.json.Encoder().encode


class _Type(msgspec.Struct):
    type: str = ""


#: Reads only a message's type (an `answer` may exceed MAX_MESSAGE_BYTES).
_type_decoder = msgspec.json.Decoder(_Type)


def new_participant_id() -> str:
    """A participant id for a client that gave none: 8 of a-z0-9, as VideoSDK makes them."""
    return "".join(secrets.choice(_ALPHABET) for _ in range(8))


def _close_code(code: int) -> int:
    """The WebSocket close code for an error: VideoSDK's code itself (3000-4999 are ours)."""
    return code if 3000 <= code <= 4999 else 1011


class _Entry:
    """One encoded event in a hub's window, with what senders need to know of it."""

    __slots__ = ("about", "admits", "data", "left", "restricted")

    def __init__(self, record: Record) -> None:
        event = record.event
        self.data = b'{"seq":%d,"event":%s}' % (record.version, _encode(event))
        # the connection the event is about, if any
        self.about: str | None = getattr(event, "connection_id", None)
        # it takes that connection out of the meeting (a denied request ends it too)
        self.left = isinstance(event, ParticipantLeft | EntryWithdrawn) or (
            isinstance(event, EntryResponded) and not event.allowed
        )
        # it lets that connection in (when it was waiting)
        self.admits = isinstance(event, ParticipantJoined)
        # only for participants who may admit others
        self.restricted = isinstance(event, EntryRequested)


class _Hub:
    """One meeting's log on this node, followed once, encoded once, read by every sender.

    Senders are woken at once when the meeting is quiet; when it is busy, at most
    every 0.1 ms per connection (10 ms for 100, 100 ms for 1,000 and more), so that a
    burst of joins reaches each connection in a few frames rather than one frame per
    event per connection: the fan-out's cost stays bounded as meetings grow.
    """

    def __init__(self, meeting_id: str, after: int) -> None:
        self.meeting_id = meeting_id
        self.first = after + 1  # the seq of entries[0]
        self.entries: list[_Entry] = []
        self.connections: set[_Connection] = set()
        self.scope = anyio.CancelScope()
        self._dirty = anyio.Event()

    @property
    def last(self) -> int:
        return self.first + len(self.entries) - 1

    async def run(self, engine: Engine) -> None:
        with self.scope:
            async with anyio.create_task_group() as tasks:
                tasks.start_soon(self._wake)
                await self._follow(engine)

    async def _follow(self, engine: Engine) -> None:
        async for record in engine.subscribe(self.meeting_id, after_version=self.last):
            self.entries.append(_Entry(record))
            if len(self.entries) > 2 * WINDOW:
                del self.entries[:WINDOW]
                self.first += WINDOW
            self._dirty.set()

    async def _wake(self) -> None:
        while True:
            await self._dirty.wait()
            self._dirty = anyio.Event()
            for connection in self.connections:
                connection.wake.set()
            await anyio.sleep(min(LINGER, LINGER_PER_CONNECTION * len(self.connections)))


class _Connection:
    """A participant's WebSocket: who it is, how far it has been sent, what it awaits."""

    def __init__(
        self, websocket: WebSocket, principal: Principal, meeting_id: str, participant_id: str
    ) -> None:
        self.websocket = websocket
        self.hub: _Hub | None = None  # the meeting's, from `_attach`
        self.principal = principal
        self.meeting_id = meeting_id
        self.participant_id = participant_id
        self.connection_id = ""
        self.seq = 0
        self.wake = anyio.Event()
        self.replies: list[tuple[int, bytes]] = []  # (send after seq, encoded reply)
        self.replies_sent = anyio.Event()  # set each time the sender takes replies
        self.handled = anyio.Event()  # set when no request is being handled
        self.handled.set()
        self.moderator = _moderates(principal.permissions)
        self.waiting = False  # an ask_join request not answered yet: it sees only its own
        self.admitted = False  # its request was just allowed: send it a snapshot
        self.gone = False  # its participant left the meeting: close once sent
        self.closing: int | None = None  # close code the server asked for

    def reply(self, message: Any, after: int = 0) -> None:
        self.replies.append((after, _encode(message)))
        self.wake.set()


def _moderates(permissions: Sequence[str]) -> bool:
    """Whether these permissions let a participant see and answer entry requests."""
    return bool({"allow_join", "allow_mod"} & set(permissions))


def _entrant(state: MeetingState, connection: _Connection) -> Participant | EntryRequested | None:
    """The connection's participant in the meeting, or its request in the waiting room;
    None when the log no longer holds the connection (it left or was replaced)."""
    pid = connection.participant_id
    for entrant in (state.participants.get(pid), state.waiting.get(pid)):
        if entrant is not None and entrant.connection_id == connection.connection_id:
            return entrant
    return None


def _is_waiting(state: MeetingState, connection: _Connection) -> bool:
    return isinstance(_entrant(state, connection), EntryRequested)


class Signaling:
    """The `/ws` endpoint and every connection on this node.

    Run inside `lifespan()` (the app's lifespan does it), which holds the hubs' tasks.
    """

    def __init__(
        self,
        engine: Engine,
        *,
        secret: bytes | None = None,
        media: MediaFactory | None = None,
        public_url: str | None = None,
    ) -> None:
        self.engine = engine
        hookspecs.add_to(engine.plugins)
        # In a cluster (a store with `MediaPlacement`), the URL clients reach this node
        # at: the node announces it, and sends each join to its meeting's media node.
        store = engine.store
        self._cluster: tuple[MediaPlacement, str] | None = None
        if public_url is not None and isinstance(store, MediaPlacement):
            self._cluster = (store, public_url)
        self.public_url = public_url
        self.node_ttl = max(MIN_NODE_TTL, engine.lease_ttl_ms / 3000)
        self._hubs: dict[str, _Hub] = {}
        self._connections: dict[str, _Connection] = {}
        self._tasks: TaskGroup | None = None
        # Signs resume tokens. Servers that share it (every node of a deployment, or the
        # same server after a restart) accept each other's; by default it is per process.
        self._secret = secret if secret is not None else secrets.token_bytes(32)
        self._closing = False
        # Media (meetcore-media's `MediaServer`, from `media` or the
        # `meetcore_media_backend` hook), started by the first `offer`: aiortc is
        # imported only then, so a server whose clients never offer media never loads it.
        self._media_factory = media
        self._media: MediaBackend | None = None
        self._told_no_media = False

    @asynccontextmanager
    async def lifespan(self, app: object = None) -> AsyncIterator[None]:
        async with anyio.create_task_group() as tasks:
            self._tasks = tasks
            announcing = anyio.CancelScope()
            if self._cluster is not None:
                await self._announce()  # before the first join
                tasks.start_soon(self._keep_announcing, announcing)
            try:
                yield
            finally:
                if self._cluster is not None:
                    announcing.cancel()  # no announcement after the node has gone
                    placement, url = self._cluster
                    with (
                        anyio.move_on_after(CLOSE_GRACE, shield=True),
                        contextlib.suppress(StoreError),
                    ):  # otherwise it is gone once its announcements are old
                        await placement.drop_node(url)
                await self.close()
                if self._media is not None:
                    await self._media.close()
                    self._media = None
                tasks.cancel_scope.cancel()
                self._tasks = None

    @property
    def clustered(self) -> bool:
        """Whether this node sends joins to their meeting's media node (see `Server`)."""
        return self._cluster is not None

    @property
    def connections(self) -> int:
        """How many participants are connected to this node."""
        return len(self._connections)

    def resume_token(self, meeting_id: str, connection_id: str) -> str:
        """The secret a client shows to take its connection back after a drop."""
        message = f"{meeting_id}\n{connection_id}".encode()
        return hmac.new(self._secret, message, hashlib.sha256).hexdigest()

    # -- the cluster -------------------------------------------------------------------

    async def _announce(self) -> None:
        if self._cluster is not None:
            placement, url = self._cluster
            await placement.announce_node(url)

    async def _keep_announcing(self, scope: anyio.CancelScope) -> None:
        with scope:
            while True:
                await anyio.sleep(self.node_ttl / 4)
                try:
                    await self._announce()
                    await self._send_away_moved_meetings()
                except StoreError as failure:  # the next one may work; the store says why
                    log.warning("announcing this node failed: %s", one_line(str(failure), 300))

    async def _send_away_moved_meetings(self) -> None:
        """Send the connections here of each meeting with media here that is now placed
        on another node there (`redirect`; they resume on it). A node that could not announce
        itself for a while (a stall, the database unreachable) counted as gone, and its
        meetings were placed again: without this, their media would stay split."""
        if self._media is None:
            return
        for meeting_id in list(self._media.rooms):
            home = await self.media_node(meeting_id)
            if home is None:
                continue
            log.warning(
                "meeting %s has moved to %s: sending its participants there",
                one_line(meeting_id, 80),
                home,
            )
            for connection in list(self._connections.values()):
                if connection.meeting_id == meeting_id and not connection.gone:
                    self._send_away(connection, home)

    def _send_away(
        self, connection: _Connection, home: str, request_id: p.RequestId = None
    ) -> None:
        """Tell the connection to resume on `home`, and close it once that is sent."""
        connection.reply(p.Redirect(request_id=request_id, base_url=home))
        connection.closing = 1000
        connection.gone = True
        connection.wake.set()

    async def media_node(self, meeting_id: str) -> str | None:
        """The node this meeting's participants must connect to, when it is not this one."""
        if self._cluster is None or await self.engine.state(meeting_id) is None:
            return None  # no such meeting: this node refuses the join, nothing is placed
        placement, url = self._cluster
        home = await placement.place_meeting(meeting_id, int(self.node_ttl * 1000))
        return home if home not in (None, url) else None

    # -- the endpoint ------------------------------------------------------------------

    async def endpoint(self, websocket: WebSocket) -> None:
        await websocket.accept()
        if self._closing or self._tasks is None:
            await websocket.close(1012)  # service restart: try again
            return
        connection: _Connection | None = None
        try:
            with anyio.fail_after(HELLO_TIMEOUT):
                hello = await self._hello(websocket)
            if hello is None:
                return
            connection = await self._start(websocket, hello)
            if connection is None:
                return
            async with anyio.create_task_group() as tasks:
                tasks.start_soon(self._receive, connection, tasks.cancel_scope)
                # The peer may go away while it is being sent to (a page closing right
                # after its leave): that ends the connection, it is not an error.
                with contextlib.suppress(WebSocketDisconnect):
                    await self._send(connection)
                tasks.cancel_scope.cancel()
        except TimeoutError:
            refused = Rejected(ErrorCode.INVALID_PARAMETER, "no join in time")
            self._log_refusal(websocket, "connection", refused)
            await self._refuse(websocket, None, refused.code, refused.message)
        except WebSocketDisconnect:
            pass
        except Exception:  # a bug: say so, close (1011); a join not welcomed has left
            if connection is None:
                log.exception("a connection failed before its welcome")
            else:
                log.exception("the connection of %s failed", connection.participant_id)
            why = "the server failed (see its log)"
            await self._refuse(websocket, None, ErrorCode.SOMETHING_WENT_WRONG, why)
        finally:
            if connection is not None:
                self._detach(connection)
            if websocket.client_state is WebSocketState.CONNECTED:
                code = connection.closing if connection is not None else None
                with contextlib.suppress(Exception):  # the peer may be gone already
                    await websocket.close(code or 1000)

    async def _hello(self, websocket: WebSocket) -> p.JoinRequest | p.ResumeRequest | None:
        while True:
            message = await self._read(websocket)
            if isinstance(message, p.ErrorReply):  # unreadable: say so, wait for a good one
                await websocket.send_text(_encode(message).decode())
                continue
            if isinstance(message, p.JoinRequest | p.ResumeRequest):
                return message
            if isinstance(message, p.Ping):
                await websocket.send_text(_encode(p.Pong(request_id=message.request_id)).decode())
                continue
            await self._refuse(
                websocket,
                message.request_id,
                ErrorCode.ACTION_BEFORE_JOINED,
                f"{message.__struct_config__.tag} before join: send join first",
                close=False,
            )

    async def _read(self, websocket: WebSocket) -> p.ClientMessage | p.ErrorReply:
        """The next message, or the error (3073) that answers an unreadable one."""
        frame = await websocket.receive()
        if frame["type"] == "websocket.disconnect":
            raise WebSocketDisconnect(frame.get("code", 1000))
        data = frame.get("text")
        if data is None:
            data = frame.get("bytes") or b""
        try:
            if len(data) <= p.MAX_MESSAGE_BYTES:
                return p.client_decoder.decode(data)
            if len(data) > p.MAX_ANSWER_BYTES or _type_decoder.decode(data).type != "answer":
                why = f"message larger than {p.MAX_MESSAGE_BYTES} bytes"
                if len(data) <= p.MAX_ANSWER_BYTES:
                    why += f" (only an answer may have up to {p.MAX_ANSWER_BYTES})"
            elif isinstance(message := p.client_decoder.decode(data), p.AnswerRequest):
                return message
            else:  # a second "type" in the same object
                why = f"message larger than {p.MAX_MESSAGE_BYTES} bytes"
        except msgspec.DecodeError as error:  # ValidationError is a DecodeError
            why = f"bad message: {error}"
        except RecursionError:  # msgspec's nesting limit: arrays or objects too deep
            why = "bad message: nested too deeply"
        return p.ErrorReply(code=ErrorCode.INVALID_PARAMETER, message=why)

    async def _refuse(
        self,
        websocket: WebSocket,
        request_id: p.RequestId,
        code: int,
        message: str,
        *,
        close: bool = True,
        reason: str = "",
    ) -> None:
        reply = p.ErrorReply(request_id=request_id, code=code, message=message)
        try:
            await websocket.send_text(_encode(reply).decode())
            if close:
                await websocket.close(_close_code(code), reason)
        except Exception:  # the peer is already gone
            pass

    # -- joining and resuming ------------------------------------------------------------

    async def _start(
        self, websocket: WebSocket, hello: p.JoinRequest | p.ResumeRequest
    ) -> _Connection | None:
        cause: str | None = None  # the store's failure, if that is what refused it
        try:
            principal = authenticate(
                self.engine.plugins,
                hello.token,
                meeting_id=hello.meeting_id,
                participant_id=hello.participant_id,
                action="join",
            )
            signalling_only = isinstance(hello, p.JoinRequest) and hello.mode in (
                "SIGNALLING_ONLY",
                "VIEWER",
            )
            home = None if signalling_only else await self.media_node(hello.meeting_id)
            if home is not None:  # no media here: served anywhere
                await self._redirect(websocket, hello, home)
                return None
            if isinstance(hello, p.JoinRequest):
                return await self._join(websocket, hello, principal)
            return await self._resume(websocket, hello, principal)
        except Rejected as error:
            refused, reason = error, ""
        except Conflict:  # other writers kept winning: the client may simply try again
            refused = Rejected(ErrorCode.OPERATION_IN_PROGRESS, LOST_RACE)
            reason = "other servers kept writing the meeting: try again"
        except StoreError as failure:  # not a bug of ours: one line, no traceback
            refused = Rejected(ErrorCode.SOMETHING_WENT_WRONG, STORE_FAILED)
            reason = "the server's store failed: try again"
            cause = one_line(str(failure), 300)
        what = "join" if isinstance(hello, p.JoinRequest) else "resume"
        if cause is not None:
            log.error(
                "a %s to meeting %s from %s failed: the store failed (%s)",
                what,
                one_line(hello.meeting_id, 80),
                client_of(websocket.client),
                cause,
                extra={"meetingId": one_line(hello.meeting_id, 80), "code": 5000},
            )
        else:
            self._log_refusal(websocket, what, refused, hello.meeting_id)
        await self._refuse(
            websocket, hello.request_id, refused.code, refused.message, reason=reason
        )
        return None

    async def _redirect(
        self, websocket: WebSocket, hello: p.JoinRequest | p.ResumeRequest, home: str
    ) -> None:
        what = "join" if isinstance(hello, p.JoinRequest) else "resume"
        meeting_id = one_line(hello.meeting_id, 80)
        log.info(
            "sent a %s to meeting %s to its media node %s",
            what,
            meeting_id,
            home,
            extra={"meetingId": meeting_id, "client": client_of(websocket.client)},
        )
        reply = p.Redirect(request_id=hello.request_id, base_url=home)
        with contextlib.suppress(Exception):  # the peer may be gone already
            await websocket.send_text(_encode(reply).decode())
            await websocket.close(1000)

    def _log_refusal(
        self, websocket: WebSocket, what: str, error: Rejected, meeting_id: str | None = None
    ) -> None:
        """One line (info) for a connection, join or resume refused, with its code."""
        client = client_of(websocket.client)
        fields: dict[str, Any] = {
            "code": int(error.code),
            "error": error.code.name,
            "client": client,
        }
        where = ""
        if meeting_id is not None:
            fields["meetingId"] = one_line(meeting_id, 80)
            where = f" to meeting {fields['meetingId']}"
        log.info(f"refused a {what}{where} from {client}: {error}", extra=fields)

    async def _join(
        self, websocket: WebSocket, hello: p.JoinRequest, principal: Principal
    ) -> _Connection:
        participant_id = hello.participant_id  # "" is refused by the engine (4004)
        if participant_id is None:
            participant_id = principal.participant_id or new_participant_id()
        connection = _Connection(websocket, principal, hello.meeting_id, participant_id)
        connection.connection_id = secrets.token_hex(8)
        multistream = hello.multistream if hello.multistream is not None else hello.multi_stream
        join = Join(
            meeting_id=hello.meeting_id,
            participant_id=participant_id,
            connection_id=connection.connection_id,
            session_id=secrets.token_hex(12),
            name=hello.name,
            permissions=principal.permissions,
            mic_enabled=hello.mic_enabled,
            webcam_enabled=hello.webcam_enabled,
            meta_data=hello.meta_data if hello.meta_data is not None else {},
            mode=hello.mode,
            multistream=True if multistream is None else multistream,
            debug_mode=hello.debug_mode,
        )
        records = await self.engine.execute(join, principal)
        own = connection.connection_id
        if all(getattr(r.event, "connection_id", None) != own for r in records):
            # its older connection's leave ended the session, which closed the room
            why = "the room closed as this participant's older connection left"
            raise Rejected(ErrorCode.MEETING_ID_DISABLED, why)
        try:
            state = await self._state_for_welcome(connection, records[-1].version)
            await self._welcome(connection, hello.request_id, state)
        except BaseException:  # the peer went away, or a bug: nobody can resume it
            with anyio.CancelScope(shield=True):
                await self._leave(connection, LeaveReason.WEBSOCKET_DISCONNECTED)
            raise
        await self._attach(connection, state.version)
        return connection

    async def _state_for_welcome(self, connection: _Connection, joined: int) -> MeetingState:
        """The meeting to show a connection whose `Join` ended at version `joined`.

        The meeting as it is now while the connection is still in it (or waiting): it
        lost nothing since its join. When a later command took it out (the same
        participant id joining again, a removal, a denial), the meeting as of its own
        join: the events after it then end with its own way out, and the connection
        is told and closed like any other that leaves.
        """
        state = await self.engine.state(connection.meeting_id)
        assert state is not None  # it was just joined
        if state.version > joined and _entrant(state, connection) is None:
            records = await self.engine.store.read(connection.meeting_id)
            state = fold(r.event for r in records if r.version <= joined)
            assert state is not None
        return state

    async def _resume(
        self, websocket: WebSocket, hello: p.ResumeRequest, principal: Principal
    ) -> _Connection:
        expected = self.resume_token(hello.meeting_id, hello.connection_id)
        if not hmac.compare_digest(hello.resume_token, expected):
            raise Rejected(ErrorCode.INVALID_TOKEN, "this connection cannot be resumed: join again")
        connection = _Connection(websocket, principal, hello.meeting_id, hello.participant_id)
        connection.connection_id = hello.connection_id
        state = await self.engine.state(hello.meeting_id)
        entrant = _entrant(state, connection) if state is not None else None
        if state is None or entrant is None:  # it left, was removed, denied, replaced...
            why = "this connection is no longer in the meeting: join again"
            raise Rejected(ErrorCode.ACTION_BEFORE_JOINED, why)
        if not 0 <= hello.last_seq <= state.version:
            raise Rejected(ErrorCode.INVALID_PARAMETER, "lastSeq is not a seq of this meeting")
        let_in = await self._let_in_since(connection, hello.last_seq)
        connection.waiting = let_in or isinstance(entrant, EntryRequested)
        connection.moderator = _moderates(entrant.permissions)  # as it joined, whatever token
        self.engine.renew(hello.meeting_id, hello.connection_id)
        welcome = p.Welcome(
            request_id=hello.request_id,
            meeting_id=hello.meeting_id,
            participant_id=hello.participant_id,
            connection_id=hello.connection_id,
            session_id=state.session_id,
            seq=hello.last_seq,
            lease_ttl=self.engine.lease_ttl_ms,
            resume_token=expected,
            resumed=True,
        )
        await websocket.send_text(_encode(welcome).decode())
        old = self._connections.get(hello.connection_id)
        if old is not None:  # the dropped socket is still open on our side: retire it
            old.closing = 1000
            old.gone = True
            old.wake.set()
        await self._attach(connection, hello.last_seq)
        if self._media is not None:
            self._media.resumed(hello.connection_id)
        return connection

    async def _let_in_since(self, connection: _Connection, last_seq: int) -> bool:
        """Whether the connection was let in from the waiting room after `last_seq` (it
        is then sent what a waiting connection is, then a snapshot). Refused (3073) when
        `last_seq` is before its own join: it was never sent those events."""
        for record in await self.engine.store.read(connection.meeting_id, last_seq):
            event = record.event
            if (
                isinstance(event, ParticipantJoined | EntryRequested)
                and event.connection_id == connection.connection_id
            ):
                if isinstance(record.cause, RespondEntry):
                    return True
                why = "lastSeq is before this connection joined: resume from its welcome's seq"
                raise Rejected(ErrorCode.INVALID_PARAMETER, why)
        return False

    async def _welcome(
        self, connection: _Connection, request_id: p.RequestId, state: MeetingState
    ) -> None:
        connection.waiting = _is_waiting(state, connection)
        # A waiting participant learns nothing of the meeting until it is let in.
        shown = not connection.waiting
        welcome = p.Welcome(
            request_id=request_id,
            meeting_id=state.meeting_id,
            participant_id=connection.participant_id,
            connection_id=connection.connection_id,
            session_id=state.session_id,
            seq=state.version,
            lease_ttl=self.engine.lease_ttl_ms,
            resume_token=self.resume_token(state.meeting_id, connection.connection_id),
            waiting=connection.waiting,
            participants=list(state.participants.values()) if shown else [],
            pending=list(state.waiting.values()) if shown and connection.moderator else [],
        )
        await connection.websocket.send_text(_encode(welcome).decode())

    async def _attach(self, connection: _Connection, seq: int) -> None:
        assert self._tasks is not None
        hub = self._hubs.get(connection.meeting_id)
        if hub is None:
            hub = self._hubs[connection.meeting_id] = _Hub(connection.meeting_id, seq)
            self._tasks.start_soon(self._run_hub, hub)
        connection.hub = hub
        connection.seq = seq
        hub.connections.add(connection)
        self._connections[connection.connection_id] = connection

    def _detach(self, connection: _Connection) -> None:
        if self._connections.get(connection.connection_id) is connection:
            del self._connections[connection.connection_id]
        hub = connection.hub
        if hub is not None:
            hub.connections.discard(connection)
            if not hub.connections:
                hub.scope.cancel()
                if self._hubs.get(connection.meeting_id) is hub:
                    del self._hubs[connection.meeting_id]

    async def _run_hub(self, hub: _Hub) -> None:
        """Follow a meeting's log for its connections on this node. When that fails (the
        store cannot be read, a bug), each of them is told (5000) and closed (1011), as
        after a request the server failed on: the participants stay, their clients resume
        (on a new hub). Never raises: that would end the whole node's signaling."""
        try:
            await hub.run(self.engine)
        except Exception as error:
            failure: Exception = error
            while isinstance(failure, ExceptionGroup) and len(failure.exceptions) == 1:
                failure = failure.exceptions[0]  # the hub's task group wraps it
            log.error(
                "following meeting %s failed, closing its %d connections (1011): %s",
                one_line(hub.meeting_id, 80),
                len(hub.connections),
                one_line(str(failure), 300),
                exc_info=not isinstance(failure, StoreError),  # a store's says it all
                extra={"meetingId": one_line(hub.meeting_id, 80), "code": 5000},
            )
            if self._hubs.get(hub.meeting_id) is hub:
                del self._hubs[hub.meeting_id]
            why = "the server could not read the meeting's log (see its log): resume the connection"
            for connection in hub.connections:
                code = ErrorCode.SOMETHING_WENT_WRONG
                connection.reply(p.ErrorReply(code=code, message=why))
                connection.closing = 1011
                connection.gone = True
                connection.wake.set()

    # -- sending ---------------------------------------------------------------------------

    async def _send(self, connection: _Connection) -> None:
        """Send the connection its events and replies, in order, until its participant is out."""
        hub = connection.hub
        assert hub is not None  # attached
        websocket = connection.websocket
        while True:
            connection.wake = anyio.Event()
            if connection.seq < hub.last and not connection.gone:
                parts = await self._pending(connection, hub)
                if parts:
                    frame = b'{"type":"events","events":[' + b",".join(parts) + b"]}"
                    await websocket.send_text(frame.decode())
                if connection.admitted:  # the meeting as it is now, then its events
                    connection.waiting = connection.admitted = False
                    state = await self.engine.state(connection.meeting_id)
                    assert state is not None
                    connection.seq = state.version
                    await self._welcome(connection, None, state)
                    continue
            if connection.gone and not connection.handled.is_set():
                # out (its leave, say, reached the hub before `execute` returned): the
                # request in hand is answered before the close
                with anyio.move_on_after(REPLY_GRACE):
                    await connection.handled.wait()
            if connection.replies:
                # a reply follows the events its request caused; all go once it is out
                ready = [r for r in connection.replies if r[0] <= connection.seq or connection.gone]
                connection.replies = [r for r in connection.replies if r not in ready]
                connection.replies_sent.set()
                for _, data in ready:
                    await websocket.send_text(data.decode())
            if connection.gone:
                return
            if connection.seq >= hub.last:
                await connection.wake.wait()

    async def _pending(self, connection: _Connection, hub: _Hub) -> list[bytes]:
        """The encoded events after the connection's seq that it may see; marks it gone
        when one of them takes it out of the meeting (it is the last one sent)."""
        if connection.seq + 1 < hub.first:  # behind the window: from the store
            records = await self.engine.store.read(connection.meeting_id, connection.seq)
            entries = [_Entry(r) for r in records if r.version < hub.first]
            start = connection.seq + 1
        else:
            start = connection.seq + 1
            entries = hub.entries[start - hub.first :]
        parts: list[bytes] = []
        own = connection.connection_id
        for offset, entry in enumerate(entries):
            mine = entry.about == own
            if mine and entry.left:
                parts.append(entry.data)
                connection.seq = start + offset
                connection.gone = True
                return parts
            if connection.waiting:
                if mine and entry.admits:  # let in: a snapshot follows instead
                    connection.seq = start + offset - 1
                    connection.admitted = True
                    return parts
                if mine:  # while waiting, only what is about its own request
                    parts.append(entry.data)
            elif not entry.restricted or connection.moderator:
                parts.append(entry.data)
        connection.seq = start + len(entries) - 1 if entries else connection.seq
        return parts

    # -- receiving ---------------------------------------------------------------------------

    async def _receive(self, connection: _Connection, scope: anyio.CancelScope) -> None:
        try:
            while True:
                while len(connection.replies) >= MAX_UNSENT_REPLIES:
                    connection.replies_sent = anyio.Event()
                    await connection.replies_sent.wait()
                message = await self._read(connection.websocket)
                self.engine.renew(connection.meeting_id, connection.connection_id)
                if isinstance(message, p.ErrorReply):
                    connection.reply(message)
                    continue
                connection.handled = anyio.Event()
                try:
                    await self._handle(connection, message)
                except Exception:
                    self._failed(connection, message)
                    return
                finally:
                    connection.handled.set()
        except WebSocketDisconnect:
            scope.cancel()

    def _failed(self, connection: _Connection, message: p.ClientMessage) -> None:
        """A request the server failed on (a bug): log it, answer 5000 and close the
        connection (1011) once the answer is out. The participant stays, as after a
        drop: the client resumes, which makes a new connection from the log."""
        tag = message.__struct_config__.tag
        log.exception("%s from %s failed", tag, connection.participant_id)
        why = f"{tag} failed on the server (see its log): resume the connection"
        code = ErrorCode.SOMETHING_WENT_WRONG
        connection.reply(p.ErrorReply(request_id=message.request_id, code=code, message=why))
        connection.closing = 1011
        connection.gone = True
        connection.wake.set()

    async def _handle(self, connection: _Connection, message: p.ClientMessage) -> None:
        if isinstance(message, p.Ping):
            connection.reply(p.Pong(request_id=message.request_id))
            return
        if isinstance(message, p.OfferRequest | p.AnswerRequest):
            await self._negotiate(connection, message)
            return
        try:
            command = self._command(connection, message)
            records = await self.engine.execute(command, connection.principal)
        except Rejected as error:
            reply = p.ErrorReply(
                request_id=message.request_id, code=error.code, message=error.message
            )
            connection.reply(reply)
            return
        except Conflict as conflict:  # other writers kept winning: the client may retry
            tag = message.__struct_config__.tag
            log.warning(
                "%s from %s lost to other writers of the meeting (%s): answered 3055",
                tag,
                connection.participant_id,
                conflict,
                extra={"meetingId": connection.meeting_id, "code": 3055},
            )
            code = ErrorCode.OPERATION_IN_PROGRESS
            reply = p.ErrorReply(request_id=message.request_id, code=code, message=LOST_RACE)
            connection.reply(reply)
            return
        except StoreError as failure:  # not a bug of ours: the connection is fine, it stays
            tag = message.__struct_config__.tag
            log.error(
                "%s from %s failed: the store failed (%s): answered 5000",
                tag,
                connection.participant_id,
                one_line(str(failure), 300),
                extra={"meetingId": connection.meeting_id, "code": 5000},
            )
            code = ErrorCode.SOMETHING_WENT_WRONG
            reply = p.ErrorReply(request_id=message.request_id, code=code, message=STORE_FAILED)
            connection.reply(reply)
            return
        after = records[-1].version if records else 0
        connection.reply(p.OkReply(request_id=message.request_id), after)

    # -- media ---------------------------------------------------------------------------------

    def media(self) -> MediaBackend:
        """The node's media server, started on first use (`Rejected` when there is none)."""
        if self._media is None:
            if self._media_factory is not None:
                self._media = self._media_factory(self.engine, self._send_media)
            else:
                hook = self.engine.plugins.hook.meetcore_media_backend
                self._media = hook(engine=self.engine, send=self._send_media)
            if self._media is None:
                if not self._told_no_media:
                    self._told_no_media = True
                    log.warning("a client offered media: %s", NO_MEDIA)
                raise Rejected(ErrorCode.SOMETHING_WENT_WRONG, NO_MEDIA)
        return self._media

    async def _negotiate(
        self, connection: _Connection, message: p.OfferRequest | p.AnswerRequest
    ) -> None:
        try:
            if connection.waiting:
                raise Rejected(ErrorCode.ACTION_BEFORE_JOINED, "no media before being let in")
            if isinstance(message, p.OfferRequest):
                home = await self.media_node(connection.meeting_id)
                if home is not None:  # it joined without media, the media is elsewhere
                    self._send_away(connection, home, message.request_id)
                    return
                sdp = await self.media().offer(
                    connection.meeting_id,
                    connection.participant_id,
                    connection.connection_id,
                    message.sdp,
                )
                connection.reply(p.MediaAnswer(request_id=message.request_id, sdp=sdp))
            else:
                await self.media().answer(connection.connection_id, message.sdp)
                connection.reply(p.OkReply(request_id=message.request_id))
        except Rejected as error:
            reply = p.ErrorReply(
                request_id=message.request_id, code=error.code, message=error.message
            )
            connection.reply(reply)
        except Exception:  # a bug, or aiortc missing what media needs: say so, keep going
            log.exception("media negotiation with %s failed", connection.participant_id)
            why = "media negotiation failed on the server (see its log)"
            code = ErrorCode.SOMETHING_WENT_WRONG
            connection.reply(p.ErrorReply(request_id=message.request_id, code=code, message=why))

    def _send_media(self, connection_id: str, offer: MediaOffer, after: int) -> bool:
        """The media server's offer for a connection, sent once it has been sent the
        events up to `after`; False when the connection is not here (it is resent on
        resume)."""
        connection = self._connections.get(connection_id)
        if connection is None or connection.gone:
            return False
        streams = [
            p.StreamSlot(mid=section.mid, participant_id=section.participant_id, kind=section.kind)
            for section in offer.sections
        ]
        connection.reply(p.MediaOffer(sdp=offer.sdp, streams=streams, seq=offer.version), after)
        return True

    def _command(self, connection: _Connection, message: p.ClientMessage) -> AnyCommand:
        ids: dict[str, Any] = {
            "meeting_id": connection.meeting_id,
            "participant_id": connection.participant_id,
            "connection_id": connection.connection_id,
        }
        if isinstance(message, p.LeaveRequest):
            return Leave(**ids, reason=LeaveReason.MANUAL_LEAVE_CALLED)
        if isinstance(message, p.EndRequest):
            return End(**ids)
        if isinstance(message, p.RemoveRequest):
            return RemoveParticipant(**ids, target_id=message.participant_id)
        if isinstance(message, p.SetMediaRequest):
            target = message.participant_id
            if target == connection.participant_id:
                target = None
            return SetMedia(**ids, kind=message.kind, enabled=message.enabled, target_id=target)
        if isinstance(message, p.ChangeModeRequest):
            return ChangeMode(**ids, mode=message.mode)
        if isinstance(message, p.RespondEntryRequest):
            allowed = message.decision == "allowed"
            return RespondEntry(**ids, requester_id=message.participant_id, allowed=allowed)
        raise Rejected(
            ErrorCode.ALREADY_IN_REQUESTED_STATE,
            f"{message.__struct_config__.tag}: this connection has already joined",
        )

    async def _leave(self, connection: _Connection, reason: LeaveReason) -> bool:
        """The connection's participant leaves (or stops waiting); False if it was out
        already (left, replaced, removed), or if its leave could not be written (logged:
        its lease ends it, 1001). Never raises but for cancellation: the callers (a join
        being undone, shutdown) go on."""
        leave = Leave(
            meeting_id=connection.meeting_id,
            participant_id=connection.participant_id,
            connection_id=connection.connection_id,
            reason=reason,
        )
        try:
            await self.engine.execute(leave)
        except Rejected:
            return False
        except (Conflict, StoreError) as failure:  # lost races, or the store: the lease ends it
            how = (
                "lost to other writers of the meeting"
                if isinstance(failure, Conflict)
                else "could not be written"
            )
            log.warning(
                "the leave of %s %s (%s): its lease will end it",
                connection.participant_id,
                how,
                one_line(str(failure), 300),
                extra={
                    "meetingId": connection.meeting_id,
                    "participantId": connection.participant_id,
                },
            )
            return False
        except Exception:  # a bug: logged; whoever asked for the leave goes on
            log.exception("the leave of %s failed", connection.participant_id)
            return False
        return True

    # -- shutting down ---------------------------------------------------------------------

    async def close(self) -> None:
        """Server shutdown: every connected participant leaves (1001) and sees it first.

        A node of a cluster closes the connections without a leave (1012, service
        restart): the participants resume on another node within their lease."""
        self._closing = True
        for connection in list(self._connections.values()):
            if self._cluster is not None:
                connection.closing = 1012
            else:
                connection.closing = 1001
                if await self._leave(connection, LeaveReason.WEBSOCKET_DISCONNECTED):
                    continue  # closed once it has seen its leave
            connection.gone = True
            connection.wake.set()
        with anyio.move_on_after(CLOSE_GRACE):
            while self._connections:
                await anyio.sleep(0.02)
