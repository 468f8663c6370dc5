"""`Principal`: who is asking, as an auth plugin vouches for it."""

from __future__ import annotations

import msgspec

__all__ = ["Principal"]


class Principal(msgspec.Struct, frozen=True, kw_only=True, rename="camel"):
    """An authenticated caller: its API key, permissions and what its token binds it to.

    `room_id` and `participant_id` are set when the token is valid for one room or
    one participant only; `roles` may hold "crawler" (REST API only) and "rtc"
    (join only).
    """

    api_key: str
    permissions: tuple[str, ...] = ()
    room_id: str | None = None
    participant_id: str | None = None
    roles: tuple[str, ...] = ()
    expires_at: int | None = None
