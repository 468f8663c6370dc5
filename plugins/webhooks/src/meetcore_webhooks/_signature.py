"""Signing a webhook's body, and `verify` for the receivers.

The `meetcore-signature` header reads `t=<unix seconds>,v1=<hex HMAC-SHA256>`: the HMAC
of `f"{t}."` followed by the raw body, keyed with the API secret. The timestamp is part
of what is signed, so a receiver that refuses old timestamps refuses replays too.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import time
from typing import Final

__all__ = [
    "API_KEY_HEADER",
    "ID_HEADER",
    "SIGNATURE_HEADER",
    "TOLERANCE",
    "InvalidSignature",
    "sign",
    "verify",
]

#: The header with the signature: `t=<unix seconds>,v1=<hex HMAC-SHA256>`.
SIGNATURE_HEADER: Final = "meetcore-signature"
#: The header naming the API key whose secret signed the body.
API_KEY_HEADER: Final = "meetcore-api-key"
#: The header with the delivery's stable id (also in the body, `webhookId`).
ID_HEADER: Final = "meetcore-webhook-id"
#: Seconds a signature stays acceptable by default (either way: clocks drift).
TOLERANCE: Final = 300

_MAX_HEADER: Final = 4096
_HEX_DIGEST: Final = re.compile(r"[0-9a-f]{64}")


class InvalidSignature(ValueError):
    """A webhook failed `verify`: no or a malformed signature header, a signature that
    does not match the body, or a timestamp outside the tolerance (a replay?)."""


def _digest(body: bytes, secret: str, timestamp: int) -> str:
    message = f"{timestamp}.".encode() + body
    return hmac.new(secret.encode(), message, hashlib.sha256).hexdigest()


def sign(body: bytes, *, secret: str, timestamp: int) -> str:
    """The `meetcore-signature` header value for `body`, signed at `timestamp` (unix s)."""
    return f"t={timestamp},v1={_digest(body, secret, timestamp)}"


def verify(
    body: bytes,
    header: str | None,
    *,
    secret: str,
    tolerance: int = TOLERANCE,
    now: float | None = None,
) -> None:
    """Check that `body` (the raw bytes received, before any JSON parsing) was signed
    with `secret` less than `tolerance` seconds from `now` (default: the clock).

    `header` is the `meetcore-signature` header's value. Raises `InvalidSignature`
    with a one-line reason; returns None when the webhook is genuine.
    """
    if not isinstance(body, bytes | bytearray | memoryview):
        raise TypeError(f"verify() needs the raw body as bytes, not {type(body).__name__}")
    if not header or not header.strip():
        raise InvalidSignature(f"no {SIGNATURE_HEADER} header")
    if len(header) > _MAX_HEADER:
        raise InvalidSignature(f"malformed {SIGNATURE_HEADER} header: too long")
    timestamp: int | None = None
    signatures: list[str] = []
    for part in header.split(","):
        key, equals, value = part.strip().partition("=")
        if not equals:
            raise InvalidSignature(
                f"malformed {SIGNATURE_HEADER} header: {part.strip()[:40]!r} is not key=value"
            )
        if key == "t":
            well_formed = value.isascii() and value.isdigit() and len(value) <= 12
            if timestamp is not None or not well_formed:
                raise InvalidSignature(
                    f"malformed {SIGNATURE_HEADER} header: t must be one unix time in seconds"
                )
            timestamp = int(value)
        elif key == "v1":
            signatures.append(value)
        # Other keys are other schemes, for later versions: ignored.
    if timestamp is None:
        raise InvalidSignature(f"malformed {SIGNATURE_HEADER} header: no t=<timestamp>")
    if not signatures:
        raise InvalidSignature(f"malformed {SIGNATURE_HEADER} header: no v1=<signature>")
    expected = _digest(bytes(body), secret, timestamp)
    # Only well-formed candidates are compared (compare_digest refuses non-ASCII text).
    if not any(
        _HEX_DIGEST.fullmatch(candidate) and hmac.compare_digest(candidate, expected)
        for candidate in signatures
    ):
        raise InvalidSignature(
            "the signature does not match the body (another secret, or the body was changed)"
        )
    age = (time.time() if now is None else now) - timestamp
    if age > tolerance:
        raise InvalidSignature(
            f"the signature is {int(age)} s old, more than the {tolerance} s tolerated (a replay?)"
        )
    if -age > tolerance:
        raise InvalidSignature(
            f"the signature is dated {int(-age)} s in the future, more than the "
            f"{tolerance} s tolerated (check the clocks)"
        )
