"""What is sent: the webhook bodies, made from the log by folding each meeting.

`Projector.project(record)` folds the record into its meeting (with `meetcore.evolve`,
so names, sessions and counts are exactly the engine's) and, for the four event types
VideoSDK notifies, returns the `Delivery` to make: its endpoint, its stable id and its
JSON body `{webhookType, webhookId, data}`. A meeting seen for the first time is
folded from the store up to the record first (after a restart, say).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Final, Literal, get_args

import msgspec

from meetcore import EventStore, InvalidLog, MeetingState, Record, evolve, fold, iso_time
from meetcore.events import ParticipantJoined, ParticipantLeft, SessionEnded, SessionStarted

__all__ = [
    "WEBHOOK_TYPES",
    "Delivery",
    "Projector",
    "Route",
    "WebhookBody",
    "WebhookData",
    "WebhookType",
    "check_url",
]

log = logging.getLogger("meetcore_webhooks")

WebhookType = Literal["session-started", "session-ended", "participant-joined", "participant-left"]
#: The event types a webhook can be sent for, as VideoSDK names them.
WEBHOOK_TYPES: Final[tuple[WebhookType, ...]] = get_args(WebhookType)
MAX_URL: Final = 2048


class WebhookData(msgspec.Struct, frozen=True, kw_only=True, rename="camel", omit_defaults=True):
    """VideoSDK's `data`, plus `participantCount`: who is in the session right after
    the event (joins minus leaves). Participant fields only in participant webhooks,
    `start` and `end` (ISO 8601, UTC, milliseconds) only in session webhooks."""

    meeting_id: str
    session_id: str
    participant_id: str | None = None
    participant_name: str | None = None
    start: str | None = None
    end: str | None = None
    participant_count: int


class WebhookBody(msgspec.Struct, frozen=True, kw_only=True, rename="camel"):
    """A webhook's JSON body. `webhookId` is stable across retries: deduplicate on it."""

    webhook_type: WebhookType
    webhook_id: str
    data: WebhookData


class Delivery(msgspec.Struct, frozen=True, kw_only=True, rename="camel"):
    """One webhook to send: to `url`, this `body`, for the record at `position`."""

    id: str
    meeting_id: str
    position: int
    webhook_type: str
    url: str
    body: bytes


@dataclass(frozen=True, slots=True)
class Route:
    """Where a meeting's webhooks go and which types; no `events` means all four."""

    url: str
    events: frozenset[str] = frozenset()

    def wants(self, webhook_type: str) -> bool:
        return not self.events or webhook_type in self.events


def check_url(url: str) -> str:
    """`url` if it is an http(s) URL as the rooms API accepts them; else ValueError."""
    if (
        not url.startswith(("http://", "https://"))
        or len(url) > MAX_URL
        or not (url.isascii() and url.isprintable())
        or " " in url
    ):
        raise ValueError(f"a webhook URL must be http(s)://... of at most {MAX_URL} characters")
    return url


_encoder = msgspec.json.Encoder()


class _Skip:
    """A meeting whose webhooks go nowhere: not folded any further."""


_SKIP: Final = _Skip()


class Projector:
    """Folds meetings from the log and makes their deliveries (see the module docstring).

    `default` is the route of meetings whose room has no webhook of its own. Records
    must come in log order, each once (as `read_all` gives them).
    """

    def __init__(self, store: EventStore, default: Route | None) -> None:
        self._store = store
        self._default = default
        self._meetings: dict[str, MeetingState | _Skip] = {}

    def route(self, state: MeetingState) -> Route | None:
        """The room's own webhook if it has one, else the default (None: no webhooks)."""
        if state.webhook is not None:
            return Route(state.webhook.end_point, frozenset(state.webhook.events))
        return self._default

    async def project(self, record: Record) -> Delivery | None:
        """Fold `record` into its meeting; the webhook it causes, if any."""
        known = self._meetings.get(record.meeting_id)
        if isinstance(known, _Skip):
            return None
        try:
            if known is None or known.version != record.version - 1:
                known = await self._catch_up(record)
            return self._apply(known, record)
        except InvalidLog as error:
            log.error(
                "meeting %s, version %d: %s; its webhooks stop here",
                record.meeting_id,
                record.version,
                error,
            )
            self._meetings[record.meeting_id] = _SKIP
            return None

    async def _catch_up(self, record: Record) -> MeetingState | None:
        """The meeting as it was just before `record`, folded from the store."""
        earlier = await self._store.read(record.meeting_id)
        return fold(r.event for r in earlier if r.version < record.version)

    def _apply(self, state: MeetingState | None, record: Record) -> Delivery | None:
        event = record.event
        # What the webhook needs from before the event: who leaves, when the session began.
        leaving = (
            state.participants.get(event.participant_id)
            if (state is not None and isinstance(event, ParticipantLeft))
            else None
        )
        left_session = state.session_id if state is not None else None
        started = state.session_started_at if state is not None else None
        state = evolve(state, event)
        route = self.route(state)
        if route is None:
            self._meetings[record.meeting_id] = _SKIP
            return None
        self._meetings[record.meeting_id] = state
        count = len(state.participants)
        meeting_id = record.meeting_id
        webhook_type: WebhookType
        if isinstance(event, SessionStarted):
            webhook_type = "session-started"
            data = WebhookData(
                meeting_id=meeting_id,
                session_id=event.session_id,
                start=iso_time(event.at),
                participant_count=count,
            )
        elif isinstance(event, SessionEnded):
            webhook_type = "session-ended"
            data = WebhookData(
                meeting_id=meeting_id,
                session_id=event.session_id,
                start=iso_time(started if started is not None else event.at),
                end=iso_time(event.at),
                participant_count=count,
            )
        elif isinstance(event, ParticipantJoined):
            webhook_type = "participant-joined"
            data = WebhookData(
                meeting_id=meeting_id,
                session_id=state.session_id or "",
                participant_id=event.participant_id,
                participant_name=event.name,
                participant_count=count,
            )
        elif isinstance(event, ParticipantLeft):
            webhook_type = "participant-left"
            data = WebhookData(
                meeting_id=meeting_id,
                session_id=left_session or "",
                participant_id=event.participant_id,
                participant_name=leaving.name if leaving is not None else "",
                participant_count=count,
            )
        else:
            return None
        if not route.wants(webhook_type):
            return None
        webhook_id = f"{meeting_id}:{record.version}:{webhook_type}"
        body = WebhookBody(webhook_type=webhook_type, webhook_id=webhook_id, data=data)
        return Delivery(
            id=webhook_id,
            meeting_id=meeting_id,
            position=record.position,
            webhook_type=webhook_type,
            url=route.url,
            body=_encoder.encode(body),
        )
