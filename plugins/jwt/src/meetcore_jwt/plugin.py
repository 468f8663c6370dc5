"""The meetcore plugin (entry point `jwt` in group `meetcore`).

`meetcore_authenticate` verifies VideoSDK tokens with the configured keys (the
environment and the keys file, read again when they change, so a rotated key takes
effect without a restart); `meetcore_dev_token` mints the development token of
`meetcore serve --dev`; `meetcore_register_commands` adds `meetcore token`.
"""

from __future__ import annotations

import click

import meetcore
from meetcore import Principal
from meetcore.keys import KeyRing
from meetcore_jwt._auth import bearer_token
from meetcore_jwt._cli import token
from meetcore_jwt._mint import mint_token
from meetcore_jwt._verify import verify_token

__all__ = ["meetcore_authenticate", "meetcore_dev_token", "meetcore_register_commands"]

_keys = KeyRing()


@meetcore.hookimpl
def meetcore_authenticate(credential: str, meeting_id: str | None) -> Principal | None:
    """A `Principal` for a VideoSDK token (raw or after `Bearer `); None if it is no JWT.

    Raises `meetcore.Rejected` for a bad token, `KeysError` when the keys file is
    malformed and no good keys were read before.
    """
    token = bearer_token(credential)
    if token is None:  # not ours: the keys are not even read
        return None
    return verify_token(token, keys=_keys.get(), meeting_id=meeting_id)


@meetcore.hookimpl
def meetcore_dev_token() -> str | None:
    """A 24 h token with allow_join and allow_mod, signed with the first configured key."""
    keys = _keys.get()
    if not keys:
        return None
    api_key, secret = next(iter(keys.items()))
    return mint_token(api_key=api_key, secret=secret)


@meetcore.hookimpl
def meetcore_register_commands(cli: click.Group) -> None:
    """Add `meetcore token`."""
    cli.add_command(token)
