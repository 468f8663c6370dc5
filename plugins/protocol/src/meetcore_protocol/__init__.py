"""The signaling protocol: the JSON messages a client and the server exchange on `/ws`.

One WebSocket per participant. Every message is a JSON object tagged by `type`
(kebab-case), with camelCase fields. The client's first message is `join` (or
`resume` after a lost connection); the server answers `welcome` (or `error` and
closes). From then on the server streams the meeting's log as `events` frames:
each event carries its sequence number `seq`, the meeting's log version, so a
client that reconnects with the last `seq` it saw gets exactly what it missed.

A request may carry `requestId`; the server answers it with `ok` or `error`
carrying the same id. `docs/protocol.md` describes the exchange; `schemas/`
holds the JSON Schema generated from these types.

Media (`docs/media.md`) is negotiated on the same socket: the client sends the
first `offer` (its own audio and video), the server `answer`s it; from then on
the server sends an `offer` whenever what the client receives changes, and the
client `answer`s. Each SDP carries its ICE candidates (no trickle).
"""

from __future__ import annotations

from typing import Any, Literal

import msgspec

from meetcore import Participant
from meetcore.commands import MediaKind, Mode
from meetcore.events import AnyEvent, EntryRequested

__all__ = [
    "MAX_ANSWER_BYTES",
    "MAX_MESSAGE_BYTES",
    "AnswerRequest",
    "ChangeModeRequest",
    "ClientMessage",
    "Delivery",
    "EndRequest",
    "ErrorReply",
    "EventsFrame",
    "JoinRequest",
    "LeaveRequest",
    "MediaAnswer",
    "MediaOffer",
    "OfferRequest",
    "OkReply",
    "Ping",
    "Pong",
    "Redirect",
    "RemoveRequest",
    "RespondEntryRequest",
    "ResumeRequest",
    "ServerMessage",
    "SetMediaRequest",
    "StreamSlot",
    "Welcome",
    "client_decoder",
    "server_decoder",
]

#: Largest client message the server reads; a larger one is answered with 3073.
MAX_MESSAGE_BYTES = 64 * 1024
#: Largest `answer` the server reads. An answer covers every section the server ever
#: offered the client (about 1.2 KB each with its candidates, two per remote publisher):
#: 512 KiB is some 200 participants publishing audio and video.
MAX_ANSWER_BYTES = 512 * 1024

RequestId = int | str | None


class _Message(
    msgspec.Struct, frozen=True, kw_only=True, tag_field="type", rename="camel", omit_defaults=True
):
    pass


# -- client to server ------------------------------------------------------------


class _Request(_Message, frozen=True, kw_only=True):
    request_id: RequestId = None


class JoinRequest(_Request, frozen=True, kw_only=True, tag="join"):
    """Join a meeting: the token and VideoSDK's `initMeeting` options.

    `participantId` is the token's, or generated, when absent or null; an empty one is
    refused (4004). `multistream` may also be spelled `multiStream`, as VideoSDK's
    typings do.
    """

    token: str
    meeting_id: str
    name: str = ""
    participant_id: str | None = None
    mic_enabled: bool = False
    webcam_enabled: bool = False
    meta_data: dict[str, Any] | None = None
    mode: Mode = "SEND_AND_RECV"
    multistream: bool | None = None
    multi_stream: bool | None = None
    debug_mode: bool = True


class ResumeRequest(_Request, frozen=True, kw_only=True, tag="resume"):
    """Take a lost connection back: the server sends every event after `lastSeq`."""

    token: str
    meeting_id: str
    participant_id: str
    connection_id: str
    resume_token: str
    last_seq: int


class LeaveRequest(_Request, frozen=True, kw_only=True, tag="leave"):
    """Leave the meeting (reason 1101, MANUAL_LEAVE_CALLED)."""


class EndRequest(_Request, frozen=True, kw_only=True, tag="end"):
    """End the session for everyone (1008, REMOVE_ALL)."""


class RemoveRequest(_Request, frozen=True, kw_only=True, tag="remove-participant"):
    """A moderator removes `participantId` (1002, REMOVE_PEER)."""

    participant_id: str


class SetMediaRequest(_Request, frozen=True, kw_only=True, tag="set-media"):
    """Switch the caller's mic or webcam; a moderator may switch another's off."""

    kind: MediaKind
    enabled: bool
    participant_id: str | None = None


class ChangeModeRequest(_Request, frozen=True, kw_only=True, tag="change-mode"):
    """Change the caller's mode."""

    mode: Mode


class RespondEntryRequest(_Request, frozen=True, kw_only=True, tag="respond-entry"):
    """Allow or deny a participant waiting to enter (`ask_join`)."""

    participant_id: str
    decision: Literal["allowed", "denied"]


class Ping(_Request, frozen=True, kw_only=True, tag="ping"):
    """A heartbeat: renews the connection's lease. Any message does too."""


class OfferRequest(_Request, frozen=True, kw_only=True, tag="offer"):
    """Start media: the client's SDP offer, with one audio and one video section to
    publish on (sendonly) and its ICE candidates. Answered with `answer` (or `error`).

    Sent once the participant is in the meeting (not in SIGNALLING_ONLY mode); a new
    `offer` replaces the media connection the client had.
    """

    sdp: str


class AnswerRequest(_Request, frozen=True, kw_only=True, tag="answer"):
    """The client's SDP answer to the server's last `offer`; answered with `ok`."""

    sdp: str


ClientMessage = (
    JoinRequest
    | ResumeRequest
    | LeaveRequest
    | EndRequest
    | RemoveRequest
    | SetMediaRequest
    | ChangeModeRequest
    | RespondEntryRequest
    | Ping
    | OfferRequest
    | AnswerRequest
)


# -- server to client ------------------------------------------------------------


class Welcome(_Message, frozen=True, kw_only=True, tag="welcome"):
    """The join (or resume) worked: who the client is and the meeting as of `seq`.

    Events with a higher `seq` follow. `waiting` is true while an `ask_join`
    participant waits to be let in. `leaseTtl` (ms) is how long the connection
    may stay silent before the participant leaves with 1001: send a `ping` well
    within it. `resumeToken` lets this connection be taken back after a drop.
    `pending` lists waiting entry requests (only for `allow_join`). After a
    `resume` (`resumed` true) there is no snapshot: the missed events follow.
    """

    request_id: RequestId = None
    meeting_id: str
    participant_id: str
    connection_id: str
    session_id: str | None
    seq: int
    lease_ttl: int
    resume_token: str
    resumed: bool = False
    waiting: bool = False
    participants: list[Participant] = msgspec.field(default_factory=list)
    pending: list[EntryRequested] = msgspec.field(default_factory=list)


class Delivery(msgspec.Struct, frozen=True, kw_only=True):
    """One event of the meeting's log and its sequence number."""

    seq: int
    event: AnyEvent


class EventsFrame(_Message, frozen=True, kw_only=True, tag="events"):
    """Events in log order, without gap or duplicate, several to a frame under load."""

    events: list[Delivery]


class OkReply(_Message, frozen=True, kw_only=True, tag="ok"):
    """The request with `requestId` was carried out; its events follow in `events`."""

    request_id: RequestId = None


class ErrorReply(_Message, frozen=True, kw_only=True, tag="error"):
    """A request was refused (or a message could not be read), with VideoSDK's code."""

    request_id: RequestId = None
    code: int
    message: str


class Pong(_Message, frozen=True, kw_only=True, tag="pong"):
    """The answer to `ping`."""

    request_id: RequestId = None


class Redirect(_Message, frozen=True, kw_only=True, tag="redirect"):
    """The reply to a `join` or `resume` on a node that does not carry the meeting's
    media (a cluster, `docs/deploy.md`): connect to `baseUrl` (its `/ws`) and send the
    same `join` or `resume` there. The server closes the socket after it (1000).
    Nothing was recorded."""

    request_id: RequestId = None
    base_url: str


class StreamSlot(msgspec.Struct, frozen=True, kw_only=True, rename="camel"):
    """What a media section of the server's SDP carries: `participantId`'s `kind`.

    The SDP says it too, as the section's msid (stream id: the participant id,
    track id: `participantId:kind`). Sections not listed carry nothing (inactive).
    """

    mid: str
    participant_id: str
    kind: Literal["audio", "video"]
    layers: int = 1


class MediaAnswer(_Message, frozen=True, kw_only=True, tag="answer"):
    """The server's SDP answer to the client's `offer`, with the server's ICE candidates."""

    request_id: RequestId = None
    sdp: str
    streams: list[StreamSlot] = msgspec.field(default_factory=list)


class MediaOffer(_Message, frozen=True, kw_only=True, tag="offer"):
    """The server renegotiates: what the client receives changed. Answer with `answer`.

    `streams` maps the SDP's media sections to the participants and kinds they
    carry. Sent after the events that caused it (`seq`), so the client already
    knows the participants it names. A client whose own `offer` is outstanding
    ignores it: the server sends a new one once it has answered.
    """

    sdp: str
    streams: list[StreamSlot] = msgspec.field(default_factory=list)
    seq: int = 0


ServerMessage = (
    Welcome | EventsFrame | OkReply | ErrorReply | Pong | MediaAnswer | MediaOffer | Redirect
)

client_decoder: msgspec.json.Decoder[ClientMessage] = msgspec.json.Decoder(ClientMessage)
server_decoder: msgspec.json.Decoder[ServerMessage] = msgspec.json.Decoder(ServerMessage)
