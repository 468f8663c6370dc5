"""meetcore-jwt: VideoSDK's tokens for meetcore, HS256 JWTs signed with an API secret.

`verify_token` turns a token into a `meetcore.Principal` (or `meetcore.Rejected` with
VideoSDK's code), `require_role` enforces its `crawler` / `rtc` role, `mint_token` makes
one as VideoSDK's server SDK does, `load_keys` reads the configured keys. Installed, the
plugin (`meetcore_jwt.plugin`) implements `meetcore_authenticate` and adds
`meetcore token`; `JWTAuth(keys)` is the same hook with keys given in code. See docs/auth.md.
"""

from __future__ import annotations

from meetcore.keys import DEFAULT_KEYS_FILE, KeysError, ensure_dev_keys, load_keys
from meetcore_jwt._auth import JWTAuth
from meetcore_jwt._mint import mint_token, parse_duration
from meetcore_jwt._verify import (
    ALGORITHM,
    LEEWAY,
    MAX_TOKEN_BYTES,
    PERMISSIONS,
    ROLES,
    require_role,
    verify_token,
)

__all__ = [
    "ALGORITHM",
    "DEFAULT_KEYS_FILE",
    "LEEWAY",
    "MAX_TOKEN_BYTES",
    "PERMISSIONS",
    "ROLES",
    "JWTAuth",
    "KeysError",
    "ensure_dev_keys",
    "load_keys",
    "mint_token",
    "parse_duration",
    "require_role",
    "verify_token",
]
