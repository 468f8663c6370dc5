"""Who is calling: a token turned into a `Principal` by the auth plugins, with the rules
that hold for any plugin's principal (room and participant binding, roles). Every front
end that takes a token uses it: meetcore-server's REST API and signaling, meetcore-videosdk."""

from __future__ import annotations

import re
from typing import Final, Literal

import pluggy

from meetcore import ErrorCode, Principal, Rejected, one_line

__all__ = ["MAX_MESSAGE_CHARS", "MAX_TOKEN_CHARS", "authenticate", "strip_bearer"]

#: Longer credentials are refused before any plugin sees them.
MAX_TOKEN_CHARS: Final = 8192
#: An auth plugin's refusal reaches the caller (and the server's log) cut to this length.
MAX_MESSAGE_CHARS: Final = 300
#: A credential no plugin recognizes is quoted back only when it is a short plain word
#: (`undefined`, `null`, `$TOKEN`: a client's mistake, not a secret); otherwise described.
_QUOTABLE: Final = re.compile(r"[A-Za-z0-9$_{}-]{1,12}")
_SCHEME: Final = re.compile(r"([A-Za-z][A-Za-z0-9-]{0,19}) \S")
_NO_TOKEN: Final = {
    "rest": "no token: send it in the Authorization header, as is or after Bearer",
    "join": "no token: the join message needs one in its token field",
}


def strip_bearer(value: str | None) -> str:
    """The token from an `Authorization` value, given raw (as VideoSDK does) or as Bearer
    ("Bearer" alone is no token)."""
    if value is None:
        return ""
    value = value.strip()
    scheme, _, rest = value.partition(" ")
    if scheme.lower() == "bearer":
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
    binding: a plugin that recognizes the token and finds it bad raises `Rejected`,
    whose code and message reach the caller (the message as one printable line of at
    most `MAX_MESSAGE_CHARS`); when none recognizes it, the refusal is 4002 and says so.
    This adds what holds for any plugin's principal: the participant binding (4023)
    and the roles: a token for `crawler` only may not join, one for `rtc` only may not
    use the REST API (4024); both roles, or none, may do both.
    """
    if not token:
        raise Rejected(ErrorCode.INVALID_TOKEN, _NO_TOKEN[action])
    if len(token) > MAX_TOKEN_CHARS:
        raise Rejected(
            ErrorCode.INVALID_TOKEN,
            f"the token is {len(token):,} characters long: at most {MAX_TOKEN_CHARS} are read",
        )
    try:
        principal = plugins.hook.meetcore_authenticate(credential=token, meeting_id=meeting_id)
    except Rejected as refused:
        message = one_line(refused.message, MAX_MESSAGE_CHARS)
        if message == refused.message:
            raise
        raise Rejected(refused.code, message) from None
    if principal is None:
        raise Rejected(ErrorCode.INVALID_TOKEN, _unrecognized(plugins, token))
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


def _unrecognized(plugins: pluggy.PluginManager, token: str) -> str:
    """What to say of a token no auth plugin recognized, without echoing a credential."""
    if not plugins.hook.meetcore_authenticate.get_hookimpls():
        return "no auth plugin is installed, so no token is accepted (install meetcore-jwt)"
    if _QUOTABLE.fullmatch(token):
        what = repr(token)
    else:
        scheme = _SCHEME.match(token)
        shown = f", scheme {scheme.group(1)!r}" if scheme else ""
        what = f"({len(token):,} characters{shown})"
    return (
        f"no auth plugin recognizes the token {what}; a VideoSDK token is a JWT, three "
        "base64url parts separated by dots, as 'meetcore token' prints"
    )
