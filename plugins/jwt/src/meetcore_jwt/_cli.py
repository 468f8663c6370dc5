"""`meetcore token`: mint a token from the configured key and print it, and only it."""

from __future__ import annotations

import os
from collections.abc import Iterable

import click

from meetcore import Rejected
from meetcore.keys import DEFAULT_KEYS_FILE, KEY_ENV, SECRET_ENV, KeysError, load_keys
from meetcore_jwt._mint import mint_token, parse_duration
from meetcore_jwt._verify import PERMISSIONS, ROLES, check_permissions, check_roles

__all__ = ["token"]


class ConfigProblem(click.ClickException):
    """No usable key is configured: one line on stderr, exit 2 (as for a bad option)."""

    exit_code = 2


def _names(values: Iterable[str]) -> list[str]:
    """Names from repeated and/or comma-separated option values."""
    return [name.strip() for value in values for name in value.split(",") if name.strip()]


def _duration(ctx: click.Context, param: click.Parameter, value: str) -> int:
    try:
        return parse_duration(value)
    except ValueError as exc:
        raise click.BadParameter(str(exc), ctx, param) from None


def _credentials(api_key: str | None, secret: str | None) -> tuple[str, str]:
    """The key and secret to sign with: the flags, else the environment, else the file."""
    if secret is not None:
        api_key = api_key or os.environ.get(KEY_ENV)
        if not api_key:
            raise click.UsageError(f"--secret needs --api-key (or {KEY_ENV})")
        return api_key, secret
    try:
        keys = load_keys()
    except KeysError as exc:
        raise ConfigProblem(str(exc)) from None
    if api_key is None:
        if not keys:
            raise ConfigProblem(
                f"no API key is configured: set {KEY_ENV} and {SECRET_ENV}, or write "
                f"{DEFAULT_KEYS_FILE} (meetcore serve creates one on its first start)"
            )
        api_key = next(iter(keys))
    elif api_key not in keys:
        raise ConfigProblem(
            f"no secret for API key {api_key!r}: set {SECRET_ENV}, add it to the keys file, "
            "or pass --secret"
        )
    return api_key, keys[api_key]


@click.command(short_help="Mint a VideoSDK-style token and print it.")
@click.option(
    "--api-key",
    metavar="KEY",
    help=f"The API key [default: ${KEY_ENV}, else the first key of the keys file].",
)
@click.option(
    "--secret",
    metavar="SECRET",
    help=f"Its secret [default: ${SECRET_ENV} or the keys file; prefer those, "
    "as a flag shows in the process list].",
)
@click.option(
    "--permissions",
    "-p",
    multiple=True,
    metavar="LIST",
    help=f"Of {', '.join(PERMISSIONS)}; comma-separated or repeated "
    "[default: allow_join,allow_mod].",
)
@click.option("--room-id", metavar="ID", help="Valid for this room only.")
@click.option("--participant-id", metavar="ID", help="Valid for this participant only.")
@click.option(
    "--roles",
    multiple=True,
    metavar="LIST",
    help=f"What the token is for, of {', '.join(ROLES)}: crawler the REST API, rtc "
    "joining meetings [default: both].",
)
@click.option(
    "--expires-in",
    default="24h",
    show_default=True,
    callback=_duration,
    metavar="DURATION",
    help="30s, 120m, 24h, 7d, or a number of seconds.",
)
def token(
    api_key: str | None,
    secret: str | None,
    permissions: tuple[str, ...],
    room_id: str | None,
    participant_id: str | None,
    roles: tuple[str, ...],
    expires_in: int,
) -> None:
    """Mint a token (an HS256 JWT with VideoSDK's payload) and print it, and only it:

    \b
        curl -H "Authorization: $(meetcore token)" http://localhost:8700/v2/rooms

    The key comes from --api-key/--secret, MEETCORE_API_KEY/MEETCORE_API_SECRET, or the
    keys file (MEETCORE_KEYS_FILE, default meetcore-keys.json). See docs/auth.md.
    """
    names = _names(permissions) or ["allow_join", "allow_mod"]
    try:
        check_permissions(names)
    except Rejected as refused:
        raise click.BadParameter(str(refused), param_hint="'--permissions'") from None
    try:
        check_roles(_names(roles))
    except Rejected as refused:
        raise click.BadParameter(refused.message, param_hint="'--roles'") from None
    key, signing_secret = _credentials(api_key, secret)
    try:
        minted = mint_token(
            api_key=key,
            secret=signing_secret,
            permissions=names,
            expires_in=expires_in,
            room_id=room_id,
            participant_id=participant_id,
            roles=_names(roles),
        )
    except ValueError as exc:
        raise click.UsageError(str(exc)) from None
    click.echo(minted)
