"""The auth hook's logic: find a JWT in a credential and verify it against some keys."""

from __future__ import annotations

from collections.abc import Mapping

import meetcore
from meetcore import Principal
from meetcore_jwt._verify import verify_token

__all__ = ["JWT_START", "JWTAuth", "authenticate", "bearer_token"]

#: How every JWT starts: its header, a JSON object, base64url-encoded.
JWT_START = "eyJ"


def bearer_token(credential: object) -> str | None:
    """The JWT in a credential (raw, as VideoSDK sends it, or after `Bearer `), or None
    when it does not look like one: another auth plugin may take it then.

    It looks like one when it is one word of three dot-separated parts, or when it starts
    as every JWT does, `eyJ` (`{"` in base64url): a JWT cut short or garbled on its way is
    still this plugin's to refuse, and to say what is wrong with it.
    """
    if not isinstance(credential, str):
        return None
    token = credential.strip()
    scheme, _, rest = token.partition(" ")
    if scheme.lower() == "bearer":
        token = rest.strip()
    if any(space.isspace() for space in token):
        return None
    if token.count(".") != 2 and not token.startswith(JWT_START):
        return None
    return token


def authenticate(
    credential: str, meeting_id: str | None, keys: Mapping[str, str]
) -> Principal | None:
    """`meetcore_authenticate` with these keys: None for a credential that is no JWT."""
    token = bearer_token(credential)
    if token is None:
        return None
    return verify_token(token, keys=keys, meeting_id=meeting_id)


class JWTAuth:
    """The auth hook with keys given in code, for embedders and tests:
    `Engine.open(plugins=[JWTAuth({"my-api-key": "its secret"})], autoload=False)`."""

    def __init__(self, keys: Mapping[str, str]) -> None:
        for api_key, secret in keys.items():
            if not isinstance(api_key, str) or not api_key:
                raise ValueError("every API key must be a non-empty string")
            if not isinstance(secret, str) or not secret:
                raise ValueError(f"the secret of API key {api_key!r} must be a non-empty string")
        self.keys = dict(keys)

    def __repr__(self) -> str:  # the API keys, never their secrets
        return f"JWTAuth(api_keys={sorted(self.keys)!r})"

    @meetcore.hookimpl
    def meetcore_authenticate(self, credential: str, meeting_id: str | None) -> Principal | None:
        """Verify a JWT credential with this object's keys; None if it is no JWT."""
        return authenticate(credential, meeting_id, self.keys)
