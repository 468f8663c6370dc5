"""Verifying VideoSDK's tokens: an HS256 JWT signed with the secret of its `apikey`.

Every refusal is a `meetcore.Rejected` with VideoSDK's code and one line that says
what is wrong. Messages may name the token's API key (it is not a secret, and it says
which key to look at) but never a secret, nor anything else of the token verbatim
beyond a short quoted excerpt.
"""

from __future__ import annotations

import base64
import binascii
import json
import math
import re
import time
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any, Final, Literal

import jwt

from meetcore import ErrorCode, Principal, Rejected, one_line

__all__ = [
    "ALGORITHM",
    "LEEWAY",
    "MAX_TOKEN_BYTES",
    "PERMISSIONS",
    "ROLES",
    "check_permissions",
    "check_roles",
    "require_role",
    "verify_token",
]

#: The only algorithm accepted, as VideoSDK's examples sign: `algorithm: 'HS256'`.
ALGORITHM: Final = "HS256"
#: Seconds of clock skew forgiven on `exp` and `nbf`.
LEEWAY: Final = 10
#: A longer token is refused before anything of it is parsed.
MAX_TOKEN_BYTES: Final = 8192
#: VideoSDK's permissions: join directly, moderate, or ask to be let in.
PERMISSIONS: Final = ("allow_join", "allow_mod", "ask_join")
#: VideoSDK's roles, what a token is for: `crawler` the REST API, `rtc` joining meetings.
ROLES: Final = ("crawler", "rtc")
#: The latest time a token may name: 9999-12-31T23:59:59Z.
MAX_TIME: Final = 253_402_300_799

#: Three base64url segments; the signature may be empty (alg none), refused later.
_SHAPE: Final = re.compile(r"[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]*")
#: The claims that `version: 2` unlocks.
_V2_CLAIMS: Final = ("roomId", "participantId", "roles")


def _bad(message: str) -> Rejected:
    return Rejected(ErrorCode.INVALID_TOKEN, message)


def _quote(value: object, limit: int = 40) -> str:
    """A short, one-line repr of an untrusted value, for a message."""
    text = repr(value)
    return text if len(text) <= limit else f"{text[: limit - 3]}..."


def _segment(part: str, what: str) -> dict[str, Any]:
    """A base64url segment of the token, decoded as a JSON object."""
    try:
        raw = base64.urlsafe_b64decode(part + "=" * (-len(part) % 4))
        value = json.loads(raw)
    except (binascii.Error, ValueError, RecursionError):
        raise _bad(f"malformed token: its {what} is not base64url-encoded JSON") from None
    if not isinstance(value, dict):
        raise _bad(f"malformed token: its {what} is not a JSON object")
    return value


def _misshapen(token: str) -> str:
    """What is wrong with a token that is not three base64url parts separated by dots."""
    for index, char in enumerate(token):
        if char != "." and not (char.isascii() and (char.isalnum() or char in "-_")):
            return (
                f"malformed token: character {index + 1} is {_quote(char)}, which no JWT "
                "has (three base64url parts separated by dots)"
            )
    parts = token.count(".") + 1
    if parts == 3:
        return "malformed token: its header or payload is empty"
    hint = " (was it cut short when copied?)" if parts < 3 and token.startswith("eyJ") else ""
    return (
        "malformed token: a JWT is three base64url parts separated by dots, "
        f"this one has {parts}{hint}"
    )


def _pyjwt_refusal(error: jwt.PyJWTError) -> str:
    """A refusal by PyJWT other than a bad signature, as one bounded line."""
    if isinstance(error, jwt.InvalidAudienceError):
        return "the token has an aud claim: it is meant for another audience"
    if isinstance(error, jwt.DecodeError):
        return (
            f"malformed token: {one_line(str(error), 100)} (a part of it is not base64url "
            "as a JWT encoder writes it: cut short or changed?)"
        )
    return f"invalid token: {one_line(str(error), 100)}"


def _iso(seconds: float) -> str:
    return datetime.fromtimestamp(seconds, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _time_claim(payload: Mapping[str, Any], name: str) -> float | None:
    """A NumericDate claim (seconds since the epoch), None when absent."""
    value = payload.get(name)
    if value is None:
        return None
    if (
        isinstance(value, bool)
        or not isinstance(value, int | float)
        or not math.isfinite(value)
        or not 0 <= value <= MAX_TIME
    ):
        raise _bad(f"{name} must be a time in seconds since 1970, not {_quote(value)}")
    return value


def check_permissions(value: object) -> tuple[str, ...]:
    """VideoSDK's `permissions`: a non-empty list of known names, `ask_join` alone.

    Raises `Rejected(4008)`. Duplicates are dropped, the order kept.
    """
    if not isinstance(value, list | tuple) or not value:
        raise Rejected(
            ErrorCode.INVALID_PERMISSIONS,
            f"permissions must be a non-empty list of {', '.join(PERMISSIONS)}",
        )
    for name in value:
        if not isinstance(name, str) or name not in PERMISSIONS:
            raise Rejected(
                ErrorCode.INVALID_PERMISSIONS,
                f"unknown permission {_quote(name)} (known: {', '.join(PERMISSIONS)})",
            )
    permissions = tuple(dict.fromkeys(value))
    if "ask_join" in permissions and len(permissions) > 1:
        raise Rejected(
            ErrorCode.INVALID_PERMISSIONS,
            "ask_join cannot be combined with allow_join or allow_mod: "
            "a participant either asks to join or is allowed to",
        )
    return permissions


def check_roles(value: object) -> tuple[str, ...]:
    """VideoSDK's `roles`: a list of `crawler` and/or `rtc`, any case (older guides write
    "CRAWLER"); raises `Rejected(4002)`. Lower-cased, duplicates dropped, order kept."""
    if not isinstance(value, list | tuple):
        raise _bad(f"roles must be a list of {' and/or '.join(ROLES)}, not {_quote(value)}")
    for name in value:
        if not isinstance(name, str) or name.lower() not in ROLES:
            raise _bad(f"unknown role {_quote(name)} (known: {', '.join(ROLES)})")
    return tuple(dict.fromkeys(name.lower() for name in value))


def _binding(payload: Mapping[str, Any], name: str) -> str | None:
    value = payload.get(name)
    if value is None:
        return None
    if not isinstance(value, str) or not value:
        raise _bad(f"{name} must be a non-empty string, not {_quote(value)}")
    return value


def verify_token(
    token: str,
    *,
    keys: Mapping[str, str],
    meeting_id: str | None = None,
    participant_id: str | None = None,
    now: int | None = None,
) -> Principal:
    """The `Principal` a VideoSDK token vouches for, or `Rejected` with VideoSDK's code.

    `keys` maps each API key to its secret; the token's `apikey` picks the secret
    (4001 when missing or unknown). The token must be an HS256 JWT (any other `alg`,
    `none` included, is 4002) with a valid signature and an `exp` not past (4002, with
    `LEEWAY` seconds of skew forgiven; `nbf` too when present). `permissions` must be
    valid (4008); `roomId`, `participantId` and `roles` need `version: 2` (4002). With
    `meeting_id` or `participant_id`, a token bound to another room is 4022, to another
    participant 4023. `now` (unix seconds) replaces the clock, for tests.
    """
    if not isinstance(token, str):
        raise _bad("the token must be a string")
    if len(token) > MAX_TOKEN_BYTES:
        raise _bad(f"the token is longer than {MAX_TOKEN_BYTES} bytes")
    token = token.strip()
    if not token:
        raise _bad("the token is empty")
    if _SHAPE.fullmatch(token) is None:
        raise _bad(_misshapen(token))
    head, body, _ = token.split(".")

    header = _segment(head, "header")
    alg = header.get("alg")
    if alg is None:
        raise _bad(f"the token's header names no algorithm (alg): it must be {ALGORITHM}")
    if alg != ALGORITHM:
        raise _bad(f"the token's algorithm must be {ALGORITHM}, not {_quote(alg)}")

    claimed = _segment(body, "payload")
    api_key = claimed.get("apikey")
    if not isinstance(api_key, str) or not api_key:
        raise Rejected(ErrorCode.INVALID_API_KEY, "the token has no apikey (a non-empty string)")
    secret = keys.get(api_key)
    if not secret:  # an empty secret would make every signature easy: never use one
        hint = "" if keys else " (no API keys are configured)"
        raise Rejected(ErrorCode.INVALID_API_KEY, f"unknown apikey {_quote(api_key)}{hint}")

    try:
        payload: dict[str, Any] = jwt.decode(
            token,
            secret,
            algorithms=[ALGORITHM],
            # Times are checked below, against `now`.
            options={"verify_exp": False, "verify_nbf": False, "verify_iat": False},
        )
    except jwt.InvalidSignatureError:
        raise _bad(
            f"bad signature: the token was not signed with the secret of apikey {_quote(api_key)}"
        ) from None
    except jwt.PyJWTError as exc:
        raise _bad(_pyjwt_refusal(exc)) from None
    if payload.get("apikey") != api_key:  # the same bytes, parsed twice: a safeguard
        raise _bad("malformed token: its payload does not parse the same twice")

    clock = time.time() if now is None else now
    exp = _time_claim(payload, "exp")
    if exp is None:
        raise _bad("the token has no exp: every token must expire")
    if exp <= clock - LEEWAY:
        raise _bad(f"the token expired at {_iso(exp)} (it is {_iso(clock)} now)")
    nbf = _time_claim(payload, "nbf")
    if nbf is not None and nbf > clock + LEEWAY:
        raise _bad(f"the token is not valid before {_iso(nbf)} (it is {_iso(clock)} now)")
    _time_claim(payload, "iat")  # checked for its type only: exp and nbf say when it is valid

    permissions = check_permissions(payload.get("permissions"))

    version = payload.get("version")
    if version is not None and (type(version) is not int or version != 2):
        raise _bad(f"version must be 2, not {_quote(version)}")
    if version is None:
        unlocked = [name for name in _V2_CLAIMS if payload.get(name) is not None]
        if unlocked:
            raise _bad(
                f'{", ".join(unlocked)} need "version": 2 in the token '
                "(meetcore refuses a binding it would otherwise ignore)"
            )
    room_id = _binding(payload, "roomId")
    bound_participant = _binding(payload, "participantId")
    roles = () if payload.get("roles") is None else check_roles(payload["roles"])

    if meeting_id is not None and room_id is not None and room_id != meeting_id:
        raise Rejected(
            ErrorCode.UNAUTHORIZED_MEETING_ID,
            f"the token is valid for room {_quote(room_id)} only, not {_quote(meeting_id)}",
        )
    if (
        participant_id is not None
        and bound_participant is not None
        and bound_participant != participant_id
    ):
        raise Rejected(
            ErrorCode.UNAUTHORIZED_PARTICIPANT_ID,
            f"the token is valid for participant {_quote(bound_participant)} only, "
            f"not {_quote(participant_id)}",
        )
    return Principal(
        api_key=api_key,
        permissions=permissions,
        room_id=room_id,
        participant_id=bound_participant,
        roles=roles,
        expires_at=round(exp * 1000),
    )


def require_role(principal: Principal, action: Literal["join", "rest"]) -> None:
    """Refuse (4024) what the token's roles are not for.

    Roles say what a token is for: `rtc` to join meetings, `crawler` to call the REST
    API. A token without roles may do both, and so may one with both (as VideoSDK's
    example writes it, `roles: ['crawler', 'rtc']`). So a `crawler` token cannot join
    and an `rtc` token cannot call the REST API.
    """
    if action not in ("join", "rest"):
        raise ValueError(f"action must be 'join' or 'rest', not {action!r}")
    if not principal.roles:
        return
    if action == "join" and "rtc" not in principal.roles:
        raise Rejected(
            ErrorCode.UNAUTHORIZED_ROLE,
            "a crawler token may call the REST API but not join a meeting (that needs role rtc)",
        )
    if action == "rest" and "crawler" not in principal.roles:
        raise Rejected(
            ErrorCode.UNAUTHORIZED_ROLE,
            "an rtc token may join a meeting but not call the REST API (that needs role crawler)",
        )
