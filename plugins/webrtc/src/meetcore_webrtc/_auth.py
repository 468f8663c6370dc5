"""Who is calling: the token from a request, turned into a `Principal` by the auth plugins."""

from __future__ import annotations

from typing import Literal

import pluggy

from meetcore import ErrorCode, Principal, Rejected

__all__ = ["MAX_TOKEN_CHARS", "authenticate", "strip_bearer"]

#: Longer credentials are refused before any plugin sees them.
MAX_TOKEN_CHARS = 8192


def strip_bearer(value: str | None) -> str:
    """The token from an `Authorization` value, given raw (as VideoSDK does) or as Bearer."""
    if value is None:
        return ""
    value = value.strip()
    scheme, _, rest = value.partition(" ")
    if scheme.lower() == "bearer" and rest:
        return rest.strip()
    return value


def authenticate(
    plugins: pluggy.PluginManager,
    token: str,
    *,
    meeting_id: str | None = None,
    participant_id: str | None = None,
    action: Literal["join", "rest"],
) -> Principal:
    """The principal for `token`, or `Rejected` with VideoSDK's code.

    The auth plugins (`meetcore_authenticate`) judge the token and its room
    binding; this adds what holds for any plugin's principal: the participant
    binding (4023) and the roles: a token for `crawler` only may not join, one for
    `rtc` only may not use the REST API (4024); both roles, or none, may do both.
    """
    if not token:
        raise Rejected(ErrorCode.INVALID_TOKEN, "no token: send it in the Authorization header")
    if len(token) > MAX_TOKEN_CHARS:
        raise Rejected(ErrorCode.INVALID_TOKEN, f"token longer than {MAX_TOKEN_CHARS} characters")
    principal = plugins.hook.meetcore_authenticate(credential=token, meeting_id=meeting_id)
    if principal is None:
        raise Rejected(ErrorCode.INVALID_TOKEN, "no auth plugin accepts this token")
    if not isinstance(principal, Principal):  # a plugin's bug, not the caller's mistake
        raise TypeError(f"meetcore_authenticate returned {type(principal).__name__}")
    if meeting_id is not None and principal.room_id not in (None, meeting_id):
        raise Rejected(ErrorCode.UNAUTHORIZED_MEETING_ID, "the token is bound to another room")
    if participant_id is not None and principal.participant_id not in (None, participant_id):
        raise Rejected(
            ErrorCode.UNAUTHORIZED_PARTICIPANT_ID, "the token is bound to another participant"
        )
    roles = {role.lower() for role in principal.roles}
    if action == "join" and roles == {"crawler"}:
        raise Rejected(ErrorCode.UNAUTHORIZED_ROLE, "a crawler token may not join a meeting")
    if action == "rest" and roles == {"rtc"}:
        raise Rejected(ErrorCode.UNAUTHORIZED_ROLE, "an rtc token may not call the REST API")
    return principal
