"""The REST rooms API, on VideoSDK's paths and JSON shapes (`docs/rest-api.md`).

    POST /v2/rooms                               create a room (or get it back by customRoomId)
    GET  /v2/rooms?page=&perPage=                rooms, newest first
    GET  /v2/rooms/{roomId}                      one room
    GET  /v2/rooms/validate/{roomId}             one room (by roomId or customRoomId)
    POST /v2/rooms/deactivate {roomId}           disable a room
    POST /v2/rooms/{roomId} {status}             enable or disable a room
    GET  /v2/sessions?roomId=|customRoomId=      a room's sessions, newest first
    GET  /v2/sessions/{sessionId}                one session, with its participants' time logs
    GET  /v2/sessions/{sessionId}/participants[/active]
    POST /v2/sessions/end {roomId, sessionId?}   end the open session (members leave, 1009)
    POST /v2/sessions/participants/remove {participantId, roomId, sessionId?}   (1010)
    GET  /openapi.json                           this API as OpenAPI 3.1

Every route authenticates the `Authorization` header (the token raw, as VideoSDK
sends it, or as `Bearer`) through the auth plugins. Writes go through
`Engine.execute`; reads come from `RoomsView`, the projection of the log, caught up
before each answer. Every refusal is VideoSDK's JSON error body
(`{statusCode, code, error, message}`); no input makes a 500.

The request and response bodies are the msgspec Structs below. One table of the
operations (`_OPERATIONS`: path, method, handler, bodies, refusals, text) makes both
the routes (`routes()`) and the OpenAPI document (`openapi()`).
"""

from __future__ import annotations

import functools
import inspect
import logging
import re
import secrets
import string
from collections.abc import Awaitable, Callable, Iterable, Mapping
from typing import TYPE_CHECKING, Annotated, Any, Final, Literal, TypeVar

import msgspec
from starlette.exceptions import HTTPException
from starlette.requests import ClientDisconnect, Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route, compile_path
from starlette.types import Receive, Scope, Send

from meetcore import Conflict, ErrorCode, Principal, Rejected, decide, iso_time, one_line
from meetcore.auth import authenticate, strip_bearer
from meetcore.commands import (
    Activate,
    AutoClose,
    Deactivate,
    End,
    InitMeeting,
    RemoveParticipant,
    Webhook,
)
from meetcore.events import SessionEnded
from meetcore_server._errors import error_response
from meetcore_server._logs import client_of
from meetcore_server.rooms import (
    ParticipantView,
    RoomView,
    SessionView,
    newest_first,
    page_of,
)

if TYPE_CHECKING:
    from meetcore_server.app import Server

__all__ = [
    "DEFAULT_PER_PAGE",
    "MAX_BODY_BYTES",
    "MAX_PAGE",
    "MAX_PER_PAGE",
    "AutoCloseConfig",
    "CreateRoom",
    "DeactivateRoom",
    "EndSession",
    "Error",
    "Links",
    "PageInfo",
    "ParticipantsPage",
    "RemoveSessionParticipant",
    "Room",
    "RoomsPage",
    "Session",
    "SessionParticipant",
    "SessionsPage",
    "SetRoomStatus",
    "TimeLogEntry",
    "WebhookConfig",
    "exception_handlers",
    "generate_room_id",
    "openapi",
    "routes",
]

log = logging.getLogger("meetcore.rest")

#: A request body is read up to this size; a larger one is answered 413 unread.
MAX_BODY_BYTES: Final = 64 * 1024
DEFAULT_PER_PAGE: Final = 20
MAX_PER_PAGE: Final = 100
MAX_PAGE: Final = 1_000_000_000
#: How many generated room ids are tried before giving up (there are 26**9 of them).
ID_ATTEMPTS: Final = 8
#: A valid id that stands in for the room's own while a new room's options are checked.
_PROBE_ID: Final = "aaa-aaa-aaa"
_DIGITS: Final = re.compile(r"[0-9]{1,12}")

ROOM_ID_SCHEMA: Final = msgspec.Meta(
    min_length=1,
    max_length=64,
    pattern="^[A-Za-z0-9_-]+$",
    description="1 to 64 letters, digits, `_` or `-`.",
)


# ---------------------------------------------------------------------------
# Request bodies


class WebhookConfig(msgspec.Struct, frozen=True, kw_only=True, rename="camel"):
    """Where the room's webhooks go, and for which event types."""

    end_point: Annotated[
        str,
        msgspec.Meta(max_length=2048, pattern="^https?://[!-~]+$", description="An http(s) URL."),
    ]
    events: Annotated[
        list[Annotated[str, msgspec.Meta(min_length=1, max_length=64)]],
        msgspec.Meta(max_length=32, description="Event types, e.g. `session-started`."),
    ] = []


class AutoCloseConfig(msgspec.Struct, frozen=True, kw_only=True, rename="camel"):
    """What happens when a session ends: nothing more (`session-ends`), or the room is
    deactivated too (`session-end-and-deactivate`). `duration` (minutes) is accepted
    for VideoSDK compatibility and not enforced."""

    type: AutoClose = "session-ends"
    duration: Annotated[int, msgspec.Meta(ge=1, le=525_600)] | None = None


class CreateRoom(msgspec.Struct, frozen=True, kw_only=True, rename="camel"):
    """`POST /v2/rooms`: every field optional. A `customRoomId` is the room's id; reusing
    one returns the existing room. A `webhook` needs a token with `allow_mod` (else 403,
    4025). `autoStartConfig` is accepted and ignored."""

    custom_room_id: Annotated[str, ROOM_ID_SCHEMA] | None = None
    webhook: WebhookConfig | None = None
    auto_close_config: AutoCloseConfig | None = None
    auto_start_config: dict[str, Any] | None = None


class DeactivateRoom(msgspec.Struct, frozen=True, kw_only=True, rename="camel"):
    """`POST /v2/rooms/deactivate`."""

    room_id: Annotated[str, msgspec.Meta(min_length=1, max_length=64)]


class SetRoomStatus(msgspec.Struct, frozen=True, kw_only=True, rename="camel"):
    """`POST /v2/rooms/{roomId}`."""

    status: Literal["enabled", "disabled"]


class EndSession(msgspec.Struct, frozen=True, kw_only=True, rename="camel"):
    """`POST /v2/sessions/end`: end the room's open session, which must be `sessionId`
    if given."""

    room_id: Annotated[str, msgspec.Meta(min_length=1, max_length=64)]
    session_id: Annotated[str, msgspec.Meta(min_length=1, max_length=128)] | None = None


class RemoveSessionParticipant(msgspec.Struct, frozen=True, kw_only=True, rename="camel"):
    """`POST /v2/sessions/participants/remove`."""

    participant_id: Annotated[str, msgspec.Meta(min_length=1, max_length=64)]
    room_id: Annotated[str, msgspec.Meta(min_length=1, max_length=64)]
    session_id: Annotated[str, msgspec.Meta(min_length=1, max_length=128)] | None = None


# ---------------------------------------------------------------------------
# Response bodies

Time = Annotated[
    str,
    msgspec.Meta(
        description="ISO 8601, UTC, milliseconds: 2024-05-01T09:30:00.000Z",
        pattern=r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$",
    ),
]


class Links(msgspec.Struct, frozen=True, kw_only=True):
    """Absolute URLs of the room and of its sessions (or of this session)."""

    get_room: str
    get_session: str


class WebhookOut(msgspec.Struct, frozen=True, kw_only=True, rename="camel"):
    """The room's webhook."""

    end_point: str
    events: list[str]


class AutoCloseOut(msgspec.Struct, frozen=True, kw_only=True, rename="camel"):
    """The room's auto-close type."""

    type: AutoClose


class Room(msgspec.Struct, frozen=True, kw_only=True, rename="camel", omit_defaults=True):
    """A room. `id` is the room id; `userId` is the caller's API key (one account per
    server); `webhook` appears when the room has one."""

    room_id: str
    custom_room_id: str | None
    user_id: str
    disabled: bool
    created_at: Time
    updated_at: Time
    id: str
    links: Links
    auto_close_config: AutoCloseOut
    webhook: WebhookOut | None = None


class PageInfo(msgspec.Struct, frozen=True, kw_only=True, rename="camel"):
    """Where a page is: `lastPage` is at least 1, `total` counts every item."""

    current_page: int
    per_page: int
    last_page: int
    total: int


class RoomsPage(msgspec.Struct, frozen=True, kw_only=True, rename="camel"):
    """A page of rooms, newest first."""

    page_info: PageInfo
    data: list[Room]


class TimeLogEntry(msgspec.Struct, frozen=True, kw_only=True):
    """One stay in the session; `end` is null while the participant is there."""

    start: Time
    end: Time | None


class SessionParticipant(msgspec.Struct, frozen=True, kw_only=True, rename="camel"):
    """A participant of a session (its latest name) and its stays."""

    participant_id: str
    name: str
    timelog: list[TimeLogEntry]


class Session(msgspec.Struct, frozen=True, kw_only=True, rename="camel"):
    """A session: from its first join to its end (null while ongoing).
    `activeDuration` is in whole seconds, up to now while ongoing."""

    id: str
    room_id: str
    custom_room_id: str | None
    start: Time
    end: Time | None
    participants: list[SessionParticipant]
    status: Literal["ongoing", "ended"]
    active_duration: int
    links: Links


class SessionsPage(msgspec.Struct, frozen=True, kw_only=True, rename="camel"):
    """A page of a room's sessions, newest first."""

    page_info: PageInfo
    data: list[Session]


class ParticipantsPage(msgspec.Struct, frozen=True, kw_only=True, rename="camel"):
    """A page of a session's participants, in the order they first joined
    (active participants: in the order of their latest join)."""

    page_info: PageInfo
    data: list[SessionParticipant]


class Error(msgspec.Struct, frozen=True, kw_only=True, rename="camel"):
    """Every refusal: the HTTP status, VideoSDK's code and its name, and what is wrong.
    For the errors VideoSDK has no code for (an unknown route, a wrong method), `code`
    is the HTTP status."""

    status_code: int
    code: int
    error: str
    message: str


# ---------------------------------------------------------------------------
# Helpers

S = TypeVar("S", bound=msgspec.Struct)
_encoder = msgspec.json.Encoder()
_decoders: dict[type[Any], msgspec.json.Decoder[Any]] = {}


class _Refusal(Exception):
    """A refusal with a status that `error_response` does not give for its code."""

    def __init__(self, status: int, code: int, error: str, message: str) -> None:
        super().__init__(message)
        self.response = _error(status, code, error, message)


def _error(
    status: int, code: int, error: str, message: str, headers: Mapping[str, str] | None = None
) -> Response:
    body = Error(status_code=status, code=code, error=error, message=message)
    return Response(
        _encoder.encode(body), status_code=status, media_type="application/json", headers=headers
    )


def _json(body: msgspec.Struct, status: int = 200) -> Response:
    return Response(_encoder.encode(body), status_code=status, media_type="application/json")


def _invalid(message: str) -> Rejected:
    return Rejected(ErrorCode.INVALID_PARAMETER, message)


def generate_room_id() -> str:
    """A fresh room id: `xxx-yyy-zzz`, three groups of three random lowercase letters."""
    letters = string.ascii_lowercase
    return "-".join("".join(secrets.choice(letters) for _ in range(3)) for _ in range(3))


async def _read_body(request: Request) -> bytes:
    """The request body, or a 413 refusal once it passes `MAX_BODY_BYTES` (the rest
    is never read)."""
    too_large = _Refusal(
        413,
        ErrorCode.INVALID_PARAMETER,
        ErrorCode.INVALID_PARAMETER.name,
        f"the request body is larger than {MAX_BODY_BYTES} bytes",
    )
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > MAX_BODY_BYTES:
        raise too_large
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > MAX_BODY_BYTES:
            raise too_large
    return bytes(body)


async def _body(request: Request, kind: type[S], *, optional: bool = False) -> S:
    """The request body decoded as `kind`, or 400 / 3073 saying what is wrong."""
    raw = await _read_body(request)
    if optional and not raw.strip():
        return kind()
    decoder = _decoders.get(kind)
    if decoder is None:
        decoder = _decoders[kind] = msgspec.json.Decoder(kind)
    try:
        value: S = decoder.decode(raw)
    except msgspec.ValidationError as exc:
        raise _invalid(f"invalid request body: {str(exc)[:300]}") from None
    except (msgspec.DecodeError, UnicodeDecodeError, RecursionError):
        raise _invalid("the request body is not a JSON object (or is nested too deeply)") from None
    return value


def _int_param(request: Request, name: str, default: int, highest: int) -> int:
    raw = request.query_params.get(name)
    if raw is None or raw == "":
        return default
    value = int(raw) if _DIGITS.fullmatch(raw) else 0
    if not 1 <= value <= highest:
        raise _invalid(f"{name} must be a whole number from 1 to {highest}, not {raw[:20]!r}")
    return value


def _paging(request: Request) -> tuple[int, int]:
    """(page, perPage) from the query: 1-based page, perPage 1 to `MAX_PER_PAGE`."""
    page = _int_param(request, "page", 1, MAX_PAGE)
    per_page = _int_param(request, "perPage", DEFAULT_PER_PAGE, MAX_PER_PAGE)
    return page, per_page


def _page_info(page: int, per_page: int, total: int) -> PageInfo:
    return PageInfo(
        current_page=page,
        per_page=per_page,
        last_page=max(1, -(-total // per_page)),
        total=total,
    )


def _require_mod(principal: Principal, what: str) -> None:
    if "allow_mod" not in principal.permissions:
        raise Rejected(ErrorCode.UNAUTHORIZED_REQUEST, f"{what} needs a token with allow_mod")


def _no_room(room_id: str) -> Rejected:
    return Rejected(ErrorCode.INVALID_MEETING_ID, f"no room {room_id[:64]!r}")


def _no_session(session_id: str) -> Rejected:
    return Rejected(ErrorCode.INVALID_MEETING_ID, f"no session {session_id[:128]!r}")


Handler = Callable[[Request], Awaitable[Response]]


def _named(handler: Handler, **params: str) -> Handler:
    """`handler` for a fixed path that its template would also match, e.g. GET
    /v2/rooms/deactivate for a room named "deactivate"."""

    async def named(request: Request) -> Response:
        request.scope["path_params"] = {**request.path_params, **params}
        return await handler(request)

    return named


class _Endpoint:
    """The ASGI app of one path: dispatches on the method (a JSON 405 for others; `*`
    takes any method) and turns every refusal into VideoSDK's error body, and any
    failure into a logged 500 without details."""

    def __init__(self, path: str, methods: Mapping[str, Handler]) -> None:
        self.path = path
        self.methods = dict(methods)
        self.allowed = ", ".join(m for m in methods if m != "*")

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        request = Request(scope, receive, send)
        response = await self.handle(request)
        await response(scope, receive, send)

    async def handle(self, request: Request) -> Response:
        method = "GET" if request.method == "HEAD" else request.method
        handler = self.methods.get(method) or self.methods.get("*")
        if handler is None:
            return _error(
                405,
                405,
                "METHOD_NOT_ALLOWED",
                f"{request.method[:16]} is not allowed on {self.path} (allowed: {self.allowed})",
                headers={"Allow": self.allowed},
            )
        try:
            return await handler(request)
        except Rejected as refused:
            self._log_refusal(request, refused)
            return error_response(refused)
        except _Refusal as refused:
            return refused.response
        except Conflict:
            return _error(
                409,
                ErrorCode.OPERATION_IN_PROGRESS,
                ErrorCode.OPERATION_IN_PROGRESS.name,
                "the room kept changing while this request was applied: try again",
            )
        except ClientDisconnect:
            return Response(status_code=400)  # nobody is listening
        except Exception:
            log.exception("%s %s failed", request.method, self.path)
            return error_response(
                Rejected(ErrorCode.SOMETHING_WENT_WRONG, "internal error (see the server log)")
            )

    def _log_refusal(self, request: Request, refused: Rejected) -> None:
        """One line (info) per refused request: who, what, the code and why."""
        client = client_of(request.client)
        method, path = request.method[:16], one_line(request.url.path, 200)
        fields = {
            "code": int(refused.code),
            "error": refused.code.name,
            "client": client,
            "method": method,
            "path": path,
        }
        log.info(f"refused {method} {path} from {client}: {refused}", extra=fields)


# ---------------------------------------------------------------------------
# The API


class RestAPI:
    """The route handlers, on one `Server` (its engine, plugins and rooms view)."""

    def __init__(self, server: Server) -> None:
        self.server = server
        self.engine = server.engine
        self.rooms = server.rooms

    # -- auth ----------------------------------------------------------------------

    def _auth(self, request: Request, room_id: str | None = None) -> Principal:
        """The caller, for a request about `room_id` (or about no room in particular)."""
        token = strip_bearer(request.headers.get("authorization"))
        return authenticate(self.engine.plugins, token, meeting_id=room_id, action="rest")

    # -- views ---------------------------------------------------------------------

    def _base(self, request: Request) -> str:
        return str(request.base_url).rstrip("/")

    def _room(self, request: Request, room: RoomView, principal: Principal) -> Room:
        base = self._base(request)
        webhook = room.webhook
        return Room(
            room_id=room.room_id,
            custom_room_id=room.custom_room_id,
            user_id=principal.api_key,
            disabled=room.disabled,
            created_at=iso_time(room.created_at),
            updated_at=iso_time(room.updated_at),
            id=room.room_id,
            links=Links(
                get_room=f"{base}/v2/rooms/{room.room_id}",
                get_session=f"{base}/v2/sessions?roomId={room.room_id}",
            ),
            auto_close_config=AutoCloseOut(type=room.auto_close),
            webhook=None
            if webhook is None
            else WebhookOut(end_point=webhook.end_point, events=list(webhook.events)),
        )

    @staticmethod
    def _participant(participant: ParticipantView) -> SessionParticipant:
        return SessionParticipant(
            participant_id=participant.participant_id,
            name=participant.name,
            timelog=[
                TimeLogEntry(
                    start=iso_time(t.start), end=None if t.end is None else iso_time(t.end)
                )
                for t in participant.timelog
            ],
        )

    def _session(self, request: Request, session: SessionView) -> Session:
        base = self._base(request)
        return Session(
            id=session.session_id,
            room_id=session.room_id,
            custom_room_id=session.custom_room_id,
            start=iso_time(session.start),
            end=None if session.end is None else iso_time(session.end),
            participants=[self._participant(p) for p in session.participants],
            status="ongoing" if session.ongoing else "ended",
            active_duration=session.active_duration(self.engine.clock()),
            links=Links(
                get_room=f"{base}/v2/rooms/{session.room_id}",
                get_session=f"{base}/v2/sessions/{session.session_id}",
            ),
        )

    async def _existing_room(self, room_id: str) -> RoomView:
        await self.rooms.catch_up()
        room = self.rooms.room(room_id)
        if room is None:
            raise _no_room(room_id)
        return room

    async def _existing_session(self, request: Request) -> SessionView:
        """The session the path names, for a caller allowed to see its room."""
        self._auth(request)
        session_id: str = request.path_params["session_id"]
        await self.rooms.catch_up()
        session = self.rooms.session(session_id)
        if session is None:
            raise _no_session(session_id)
        self._auth(request, session.room_id)
        return session

    def _open_session(self, room: RoomView, session_id: str | None) -> SessionView | None:
        """The room's open session, checked against the `sessionId` the caller named."""
        if session_id is None:
            return room.open_session
        session = self.rooms.session(session_id)
        if session is None or session.room_id != room.room_id:
            raise Rejected(
                ErrorCode.INVALID_MEETING_ID,
                f"no session {session_id[:128]!r} in room {room.room_id!r}",
            )
        if not session.ongoing:
            raise Rejected(
                ErrorCode.ALREADY_IN_REQUESTED_STATE,
                f"session {session_id[:128]!r} has already ended",
            )
        return session

    # -- rooms ---------------------------------------------------------------------

    async def create_room(self, request: Request) -> Response:
        self._auth(request)
        body = await _body(request, CreateRoom, optional=True)
        custom = body.custom_room_id
        webhook = (
            None
            if body.webhook is None
            else Webhook(end_point=body.webhook.end_point, events=tuple(body.webhook.events))
        )
        auto_close: AutoClose = (
            "session-ends" if body.auto_close_config is None else body.auto_close_config.type
        )
        # The rules judge the options as for a new room, whether or not it exists.
        decide(
            None,
            InitMeeting(
                meeting_id=_PROBE_ID,
                custom_room_id=custom,
                auto_close=auto_close,
                webhook=webhook,
            ),
        )
        principal = self._auth(request, custom if custom is not None else generate_room_id())
        if webhook is not None:  # where the server sends requests: not for every participant
            _require_mod(principal, "setting a room's webhook")
        for _ in range(ID_ATTEMPTS):
            room_id = custom if custom is not None else generate_room_id()
            command = InitMeeting(
                meeting_id=room_id, custom_room_id=custom, auto_close=auto_close, webhook=webhook
            )
            try:
                await self.engine.execute(command, principal)
            except Rejected as refused:
                if refused.code != ErrorCode.INVALID_MEETING_ID:
                    raise
                await self.rooms.catch_up()
                existing = self.rooms.room(room_id)
                if existing is None:
                    raise
                if custom is None:
                    continue  # a generated id that is taken: draw another
                return _json(self._room(request, existing, principal))
            room = await self._existing_room(room_id)
            return _json(self._room(request, room, principal))
        raise Rejected(ErrorCode.SOMETHING_WENT_WRONG, "no free room id found; try again")

    async def list_rooms(self, request: Request) -> Response:
        principal = self._auth(request)
        page, per_page = _paging(request)
        await self.rooms.catch_up()
        offset = (page - 1) * per_page
        if principal.room_id is not None:  # a token for one room sees that room only
            own = self.rooms.room(principal.room_id)
            matching = [own] if own is not None else []
            total, rooms = len(matching), matching[offset : offset + per_page]
        else:
            total, rooms = self.rooms.room_count, self.rooms.rooms(offset, per_page)
        return _json(
            RoomsPage(
                page_info=_page_info(page, per_page, total),
                data=[self._room(request, room, principal) for room in rooms],
            )
        )

    async def get_room(self, request: Request) -> Response:
        room_id: str = request.path_params["room_id"]
        principal = self._auth(request, room_id)
        room = await self._existing_room(room_id)
        return _json(self._room(request, room, principal))

    async def deactivate_room(self, request: Request) -> Response:
        self._auth(request)
        body = await _body(request, DeactivateRoom)
        principal = self._auth(request, body.room_id)
        _require_mod(principal, "deactivating a room")
        return await self._set_status(request, body.room_id, "disabled", principal)

    async def set_room_status(self, request: Request) -> Response:
        room_id: str = request.path_params["room_id"]
        principal = self._auth(request, room_id)
        body = await _body(request, SetRoomStatus)
        _require_mod(principal, "changing a room's status")
        return await self._set_status(request, room_id, body.status, principal)

    async def _set_status(
        self,
        request: Request,
        room_id: str,
        status: Literal["enabled", "disabled"],
        principal: Principal,
    ) -> Response:
        await self._existing_room(room_id)
        command = (
            Deactivate(meeting_id=room_id) if status == "disabled" else Activate(meeting_id=room_id)
        )
        try:
            await self.engine.execute(command, principal)
        except Rejected as refused:  # already in that state: answer with the room as it is
            if refused.code != ErrorCode.ALREADY_IN_REQUESTED_STATE:
                raise
        room = await self._existing_room(room_id)
        return _json(self._room(request, room, principal))

    # -- sessions ------------------------------------------------------------------

    async def list_sessions(self, request: Request) -> Response:
        self._auth(request)
        room_id = request.query_params.get("roomId") or None
        custom = request.query_params.get("customRoomId") or None
        if room_id is None and custom is None:
            raise _invalid("roomId or customRoomId is required")
        name = room_id if room_id is not None else custom
        assert name is not None
        self._auth(request, name)
        page, per_page = _paging(request)
        room = await self._existing_room(name)
        if custom is not None and room.custom_room_id != custom:
            raise Rejected(
                ErrorCode.INVALID_MEETING_ID, f"no room with customRoomId {custom[:64]!r}"
            )
        sessions = newest_first(room.sessions, (page - 1) * per_page, per_page)
        return _json(
            SessionsPage(
                page_info=_page_info(page, per_page, len(room.sessions)),
                data=[self._session(request, s) for s in sessions],
            )
        )

    async def session_get(self, request: Request) -> Response:
        session = await self._existing_session(request)
        return _json(self._session(request, session))

    async def participants(self, request: Request) -> Response:
        session = await self._existing_session(request)
        return self._participants_page(request, session.participants, len(session.participants))

    async def active_participants(self, request: Request) -> Response:
        session = await self._existing_session(request)
        return self._participants_page(request, session.active.values(), len(session.active))

    def _participants_page(
        self, request: Request, participants: Iterable[ParticipantView], total: int
    ) -> Response:
        page, per_page = _paging(request)
        items = participants if isinstance(participants, list) else iter(participants)
        chosen = page_of(items, (page - 1) * per_page, per_page)
        return _json(
            ParticipantsPage(
                page_info=_page_info(page, per_page, total),
                data=[self._participant(p) for p in chosen],
            )
        )

    async def end_session(self, request: Request) -> Response:
        self._auth(request)
        body = await _body(request, EndSession)
        principal = self._auth(request, body.room_id)
        _require_mod(principal, "ending a session")
        room = await self._existing_room(body.room_id)
        self._open_session(room, body.session_id)
        records = await self.engine.execute(End(meeting_id=room.room_id), principal)
        await self.rooms.catch_up()
        ended = next(r.event for r in records if isinstance(r.event, SessionEnded))
        assert isinstance(ended, SessionEnded)
        session = self.rooms.session(ended.session_id)
        assert session is not None
        return _json(self._session(request, session))

    async def remove_participant(self, request: Request) -> Response:
        self._auth(request)
        body = await _body(request, RemoveSessionParticipant)
        principal = self._auth(request, body.room_id)
        _require_mod(principal, "removing a participant")
        room = await self._existing_room(body.room_id)
        session = self._open_session(room, body.session_id)
        command = RemoveParticipant(meeting_id=room.room_id, target_id=body.participant_id)
        await self.engine.execute(command, principal)
        await self.rooms.catch_up()
        if session is None:  # the engine found one after all (it moved on meanwhile)
            session = room.sessions[-1]
        return _json(self._session(request, session))

    # -- meta ----------------------------------------------------------------------

    async def openapi_json(self, request: Request) -> Response:
        return Response(_openapi_bytes(), media_type="application/json")

    async def not_found(self, request: Request) -> Response:
        return _error(404, 404, "NOT_FOUND", f"no route {request.url.path[:200]!r}")

    def routes(self) -> list[BaseRoute]:
        paths: dict[str, dict[str, Handler]] = {}  # in table order: fixed paths first
        for operation in _OPERATIONS:
            handler = functools.partial(operation.handler, self)
            route = _route_path(operation.path)
            for path in (route, f"{route}/") if operation.slash else (route,):
                paths.setdefault(path, {})[operation.method] = handler
        # A fixed path that a template also matches answers the template's other methods
        # as the template would: GET /v2/rooms/deactivate is the room named "deactivate".
        for fixed, methods in paths.items():
            for template, others in paths.items():
                if "{" in fixed or "{" not in template:
                    continue
                if match := compile_path(template)[0].fullmatch(fixed):
                    for method, other in others.items():
                        methods.setdefault(method, _named(other, **match.groupdict()))
        found: list[BaseRoute] = [
            Route(path, _Endpoint(path, dict(sorted(methods.items()))))
            for path, methods in paths.items()
        ]
        # Anything else under /v2 is VideoSDK's API that meetcore does not have: a JSON 404.
        found.append(Route("/v2/{rest:path}", _Endpoint("/v2/...", {"*": self.not_found})))
        return found


def routes(server: Server) -> list[BaseRoute]:
    """The REST API's Starlette routes, on `server`'s engine and rooms view."""
    return RestAPI(server).routes()


async def _http_exception(request: Request, exc: Exception) -> Response:
    """Starlette's own 404 and 405 (routes outside this API) as VideoSDK's JSON error."""
    status = exc.status_code if isinstance(exc, HTTPException) else 500
    name = {404: "NOT_FOUND", 405: "METHOD_NOT_ALLOWED"}.get(status, "HTTP_ERROR")
    detail = exc.detail if isinstance(exc, HTTPException) else "internal error"
    headers = exc.headers if isinstance(exc, HTTPException) else None
    return _error(status, status, name, str(detail), headers=headers)


def exception_handlers() -> dict[Any, Callable[[Request, Exception], Awaitable[Response]]]:
    """For `Starlette(exception_handlers=...)`: JSON errors for the app's other routes too."""
    return {HTTPException: _http_exception}


# ---------------------------------------------------------------------------
# The route table, and the OpenAPI document made from it

_ERRORS: Final = {
    400: "Invalid parameter (3073) or a refusal by the meeting's rules",
    401: "Missing or invalid token (4002), unknown API key (4001)",
    403: "The token may not do this: another room (4022), rtc role (4024), no allow_mod (4025)",
    404: "No such room or session (4003)",
    405: "Method not allowed on this path",
    409: "Already in that state, or no session open (3054)",
    413: "Request body larger than 64 KiB (3073)",
}


_OK: Final[dict[type[msgspec.Struct] | None, str]] = {
    Room: "The room",
    RoomsPage: "A page of rooms",
    Session: "The session",
    SessionsPage: "A page of the room's sessions",
    ParticipantsPage: "A page of the session's participants",
    None: "The OpenAPI 3.1 document of this API",
}


def _ref(kind: type[msgspec.Struct]) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{kind.__name__}"}


def _param(
    name: str, where: str, description: str, schema: dict[str, Any], *, required: bool = False
) -> dict[str, Any]:
    return {
        "name": name,
        "in": where,
        "required": required or where == "path",
        "description": description,
        "schema": schema,
    }


_ROOM_ID_PATH = _param(
    "roomId",
    "path",
    "The room id (generated, or the customRoomId it was created with).",
    {"type": "string", "minLength": 1, "maxLength": 64, "pattern": "^[A-Za-z0-9_-]+$"},
)
_SESSION_ID_PATH = _param(
    "sessionId",
    "path",
    "The session id.",
    {"type": "string", "minLength": 1, "maxLength": 128, "pattern": "^[A-Za-z0-9_.:-]+$"},
)
_PAGING = (
    _param(
        "page",
        "query",
        "Page number, from 1 (default 1). A page past the last is empty.",
        {"type": "integer", "minimum": 1, "maximum": MAX_PAGE, "default": 1},
    ),
    _param(
        "perPage",
        "query",
        f"Items per page, 1 to {MAX_PER_PAGE} (default {DEFAULT_PER_PAGE}).",
        {
            "type": "integer",
            "minimum": 1,
            "maximum": MAX_PER_PAGE,
            "default": DEFAULT_PER_PAGE,
        },
    ),
)


class _Operation(msgspec.Struct, frozen=True, kw_only=True):
    """One route of the API, as served and as documented. `path` is the documented one
    (`/v2/rooms/{roomId}`); the route's parameters are snake_case (`room_id`)."""

    method: Literal["GET", "POST"]
    path: str
    handler: Callable[[RestAPI, Request], Awaitable[Response]]
    operation_id: str
    summary: str
    #: The 200 answer; None: a JSON object (this document).
    response: type[msgspec.Struct] | None
    #: The refusals besides 401 and 403 (which every authenticated route may give).
    errors: tuple[int, ...] = ()
    description: str = ""
    body: type[msgspec.Struct] | None = None
    body_required: bool = True
    parameters: tuple[dict[str, Any], ...] = ()
    #: No token needed (and none looked at).
    public: bool = False
    #: Also served (not documented) with a trailing slash, as some VideoSDK examples write it.
    slash: bool = False


# In routing order: fixed paths before the templates that would also match them (POST
# /v2/rooms/deactivate is not a status change of a room named "deactivate").
_OPERATIONS: Final = (
    _Operation(
        method="GET",
        path="/v2/rooms",
        handler=RestAPI.list_rooms,
        operation_id="listRooms",
        summary="List rooms, newest first",
        response=RoomsPage,
        errors=(400,),
        description="A token bound to one room (`roomId` claim) lists that room only.",
        parameters=_PAGING,
        slash=True,
    ),
    _Operation(
        method="POST",
        path="/v2/rooms",
        handler=RestAPI.create_room,
        operation_id="createRoom",
        summary="Create a room",
        response=Room,
        errors=(400, 413),
        description=(
            "Without `customRoomId` the room gets a generated id `xxx-yyy-zzz`. With one, "
            "the custom id is the room id, and reusing it returns the existing room "
            "unchanged (200 either way). `autoStartConfig` is accepted and ignored."
        ),
        body=CreateRoom,
        body_required=False,
        slash=True,
    ),
    _Operation(
        method="GET",
        path="/v2/rooms/validate/{roomId}",
        handler=RestAPI.get_room,
        operation_id="validateRoom",
        summary="Validate a room id",
        response=Room,
        errors=(404,),
        description="The room (also when it is deactivated: see `disabled`), or 404 / 4003.",
        parameters=(_ROOM_ID_PATH,),
    ),
    _Operation(
        method="POST",
        path="/v2/rooms/deactivate",
        handler=RestAPI.deactivate_room,
        operation_id="deactivateRoom",
        summary="Deactivate a room",
        response=Room,
        errors=(400, 404, 413),
        description=(
            "Everyone in the room leaves (1006) and joining gives 4052 until the room is "
            "enabled again. Needs `allow_mod`. Deactivating a disabled room returns it as is."
        ),
        body=DeactivateRoom,
    ),
    _Operation(
        method="GET",
        path="/v2/rooms/{roomId}",
        handler=RestAPI.get_room,
        operation_id="getRoom",
        summary="Get a room",
        response=Room,
        errors=(404,),
        parameters=(_ROOM_ID_PATH,),
    ),
    _Operation(
        method="POST",
        path="/v2/rooms/{roomId}",
        handler=RestAPI.set_room_status,
        operation_id="setRoomStatus",
        summary="Enable or disable a room",
        response=Room,
        errors=(400, 404, 413),
        description="`disabled` is `deactivateRoom`; `enabled` lets people join again. "
        "Needs `allow_mod`. Setting the status a room already has returns it as is.",
        body=SetRoomStatus,
        parameters=(_ROOM_ID_PATH,),
    ),
    _Operation(
        method="GET",
        path="/v2/sessions",
        handler=RestAPI.list_sessions,
        operation_id="listSessions",
        summary="List a room's sessions, newest first",
        response=SessionsPage,
        errors=(400, 404),
        description="`roomId` or `customRoomId` is required (400 / 3073 without).",
        parameters=(
            _param("roomId", "query", "The room id.", {"type": "string", "maxLength": 64}),
            _param(
                "customRoomId",
                "query",
                "The room's customRoomId.",
                {"type": "string", "maxLength": 64},
            ),
            *_PAGING,
        ),
        slash=True,
    ),
    _Operation(
        method="POST",
        path="/v2/sessions/end",
        handler=RestAPI.end_session,
        operation_id="endSession",
        summary="End a room's open session",
        response=Session,
        errors=(400, 404, 409, 413),
        description=(
            "Everyone in the session leaves with reason 1009 (MEETING_END_API). With "
            "`sessionId`, that must be the room's open session. Needs `allow_mod`. "
            "Returns the ended session."
        ),
        body=EndSession,
    ),
    _Operation(
        method="POST",
        path="/v2/sessions/participants/remove",
        handler=RestAPI.remove_participant,
        operation_id="removeSessionParticipant",
        summary="Remove a participant from a room's open session",
        response=Session,
        errors=(400, 404, 409, 413),
        description=(
            "The participant leaves with reason 1010 (REMOVE_PEER_API). Not joined: 400 / "
            "4066. Needs `allow_mod`. Returns the session."
        ),
        body=RemoveSessionParticipant,
    ),
    _Operation(
        method="GET",
        path="/v2/sessions/{sessionId}",
        handler=RestAPI.session_get,
        operation_id="getSession",
        summary="Get a session",
        response=Session,
        errors=(404,),
        parameters=(_SESSION_ID_PATH,),
    ),
    _Operation(
        method="GET",
        path="/v2/sessions/{sessionId}/participants",
        handler=RestAPI.participants,
        operation_id="listSessionParticipants",
        summary="List a session's participants, in the order they first joined",
        response=ParticipantsPage,
        errors=(400, 404),
        parameters=(_SESSION_ID_PATH, *_PAGING),
    ),
    _Operation(
        method="GET",
        path="/v2/sessions/{sessionId}/participants/active",
        handler=RestAPI.active_participants,
        operation_id="listActiveSessionParticipants",
        summary="List the participants in a session now",
        response=ParticipantsPage,
        errors=(400, 404),
        parameters=(_SESSION_ID_PATH, *_PAGING),
    ),
    _Operation(
        method="GET",
        path="/openapi.json",
        handler=RestAPI.openapi_json,
        operation_id="openapi",
        summary="This document",
        response=None,
        public=True,
    ),
)

_PATH_PARAM: Final = re.compile(r"\{(\w+)\}")


def _route_path(path: str) -> str:
    """A documented path as its route writes it: `/v2/rooms/{roomId}` -> `{room_id}`."""
    return _PATH_PARAM.sub(lambda m: "{" + re.sub("([A-Z])", r"_\1", m[1]).lower() + "}", path)


def _operation(operation: _Operation) -> dict[str, Any]:
    """The OpenAPI operation object of one route."""
    document: dict[str, Any] = {
        "operationId": operation.operation_id,
        "summary": operation.summary,
    }
    if operation.path.startswith("/v2/"):
        document["tags"] = [operation.path.split("/")[2]]
    if operation.public:
        document["security"] = []
    if operation.description:
        document["description"] = operation.description
    if operation.parameters:
        document["parameters"] = list(operation.parameters)
    if operation.body is not None:
        document["requestBody"] = {
            "required": operation.body_required,
            "content": {"application/json": {"schema": _ref(operation.body)}},
        }
    response = operation.response
    responses: dict[str, Any] = {
        "200": {
            "description": _OK[response],
            "content": {
                "application/json": {
                    "schema": {"type": "object"} if response is None else _ref(response)
                }
            },
        }
    }
    for status in sorted({*operation.errors, *(() if operation.public else (401, 403))}):
        responses[str(status)] = {
            "description": _ERRORS[status],
            "content": {"application/json": {"schema": _ref(Error)}},
        }
    document["responses"] = responses
    return document


def _build_openapi() -> dict[str, Any]:
    kinds = [o.body for o in _OPERATIONS] + [o.response for o in _OPERATIONS] + [Error]
    _, components = msgspec.json.schema_components(
        [k for k in dict.fromkeys(kinds) if k is not None],
        ref_template="#/components/schemas/{name}",
    )
    for component in components.values():  # docstrings as one paragraph each
        if "description" in component:
            component["description"] = " ".join(inspect.cleandoc(component["description"]).split())
    paths: dict[str, dict[str, Any]] = {}
    for operation in _OPERATIONS:
        paths.setdefault(operation.path, {})[operation.method.lower()] = _operation(operation)
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "meetcore rooms REST API",
            "version": "2",
            "description": (
                "VideoSDK's rooms and sessions REST API (v2), served by meetcore from its "
                "event log. The token goes in the Authorization header, as is or as "
                "`Bearer <token>`."
            ),
        },
        "paths": paths,
        "components": {
            "schemas": components,
            "securitySchemes": {
                "token": {
                    "type": "apiKey",
                    "in": "header",
                    "name": "Authorization",
                    "description": "A VideoSDK token (HS256 JWT), raw or as `Bearer <token>`.",
                }
            },
        },
        "security": [{"token": []}],
    }


@functools.cache
def _openapi_bytes() -> bytes:
    return _encoder.encode(_build_openapi())


def openapi() -> dict[str, Any]:
    """The OpenAPI 3.1 document of the REST API (a fresh dict: yours to change)."""
    document: dict[str, Any] = msgspec.json.decode(_openapi_bytes())
    return document
