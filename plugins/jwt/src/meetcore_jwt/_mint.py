"""Minting VideoSDK's tokens, as its guides do with
`jwt.sign(payload, SECRET, {expiresIn: '120m', algorithm: 'HS256'})`."""

from __future__ import annotations

import re
import time
from collections.abc import Sequence
from typing import Any, Final

import jwt

from meetcore import Rejected
from meetcore_jwt._verify import ALGORITHM, MAX_TIME, check_permissions, check_roles

__all__ = ["mint_token", "parse_duration"]

_UNITS: Final = {"s": 1, "m": 60, "h": 3600, "d": 86400}
_DURATION: Final = re.compile(r"([0-9]{1,12})\s*([smhd]?)")


def parse_duration(value: int | str) -> int:
    """Seconds in a duration: an int, or a string such as "30s", "120m", "24h", "7d".

    Digits without a unit are seconds ("3600"; jsonwebtoken would read milliseconds).
    Raises `ValueError` for anything else, or a duration that is not positive.
    """
    if isinstance(value, bool) or not isinstance(value, int | str):
        raise ValueError(f"a duration is a number of seconds or a string like 24h, not {value!r}")
    if isinstance(value, str):
        match = _DURATION.fullmatch(value.strip())
        if match is None:
            raise ValueError(
                f"invalid duration {value!r}: write a number and a unit, "
                "s, m, h or d (30s, 120m, 24h, 7d)"
            )
        number, unit = match.groups()
        value = int(number) * _UNITS[unit or "s"]
    if value <= 0:
        raise ValueError("a duration must be positive")
    return value


def _text(value: object, what: str) -> None:
    if not isinstance(value, str) or not value:
        raise ValueError(f"{what} must be a non-empty string")


def mint_token(
    *,
    api_key: str,
    secret: str,
    permissions: Sequence[str] = ("allow_join", "allow_mod"),
    expires_in: int | str = "24h",
    room_id: str | None = None,
    participant_id: str | None = None,
    roles: Sequence[str] = (),
    now: int | None = None,
) -> str:
    """A token as VideoSDK's server SDK makes it: HS256, payload `apikey`, `permissions`,
    `version: 2`, `roomId` / `participantId` / `roles` when given, `iat` and `exp`.

    The defaults are VideoSDK's (allow_join and allow_mod, 24 hours). `now` (unix
    seconds) replaces the clock. Raises `ValueError` for arguments that would make a
    token `verify_token` refuses, with the message it would give.
    """
    _text(api_key, "api_key")
    _text(secret, "secret")
    for what, names in (("permissions", permissions), ("roles", roles)):
        if isinstance(names, str):
            raise ValueError(f"{what} is a sequence of names, not the string {names!r}")
    try:
        checked_permissions = check_permissions(list(permissions))
    except Rejected as refused:  # VideoSDK's code for it: "4008 INVALID_PERMISSIONS: ..."
        raise ValueError(str(refused)) from None
    try:
        checked_roles = check_roles(list(roles))
    except Rejected as refused:
        raise ValueError(refused.message) from None
    issued = int(time.time()) if now is None else now
    expires = issued + parse_duration(expires_in)
    if expires > MAX_TIME:
        raise ValueError("expires_in is too long: the token would outlive the year 9999")
    payload: dict[str, Any] = {
        "apikey": api_key,
        "permissions": list(checked_permissions),
        "version": 2,
    }
    if room_id is not None:
        _text(room_id, "room_id")
        payload["roomId"] = room_id
    if participant_id is not None:
        _text(participant_id, "participant_id")
        payload["participantId"] = participant_id
    if checked_roles:
        payload["roles"] = list(checked_roles)
    payload["iat"] = issued
    payload["exp"] = expires
    return jwt.encode(payload, secret, algorithm=ALGORITHM)
