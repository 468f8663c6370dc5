"""API keys and their secrets, from the environment and from a JSON keys file.

`MEETCORE_API_KEY` and `MEETCORE_API_SECRET` give one key; the keys file
(`MEETCORE_KEYS_FILE`, else `meetcore-keys.json` in the current directory if it
exists) is a JSON object `{"<api key>": "<secret>", ...}`: several keys verify side
by side, which is how a secret is rotated. Nothing here prints, logs or puts a secret
in an error message.
"""

from __future__ import annotations

import json
import logging
import os
import secrets
import uuid
from collections.abc import Mapping
from pathlib import Path
from typing import Final

__all__ = [
    "DEFAULT_KEYS_FILE",
    "FILE_ENV",
    "KEY_ENV",
    "SECRET_ENV",
    "KeyRing",
    "KeysError",
    "ensure_dev_keys",
    "keys_file",
    "load_keys",
]

DEFAULT_KEYS_FILE: Final = "meetcore-keys.json"
KEY_ENV: Final = "MEETCORE_API_KEY"
SECRET_ENV: Final = "MEETCORE_API_SECRET"
FILE_ENV: Final = "MEETCORE_KEYS_FILE"

log = logging.getLogger("meetcore.keys")


class KeysError(ValueError):
    """The key configuration is wrong. The message is one line and holds no secret."""


def keys_file(environ: Mapping[str, str] | None = None) -> Path:
    """The keys file: `MEETCORE_KEYS_FILE`, else `meetcore-keys.json` (current directory)."""
    env = os.environ if environ is None else environ
    return Path(env.get(FILE_ENV) or DEFAULT_KEYS_FILE)


def _read(path: Path) -> dict[str, str] | None:
    """The keys in the file, None when there is no such file."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise KeysError(f"cannot read keys file {path}: {exc.strerror or exc}") from None
    except UnicodeDecodeError:
        raise KeysError(f"keys file {path} is not UTF-8 text") from None
    if not text.strip():
        return {}
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:  # its message is a position, never the text
        raise KeysError(
            f"keys file {path} is not valid JSON ({exc.msg}, line {exc.lineno} column {exc.colno})"
        ) from None
    except RecursionError:
        raise KeysError(f"keys file {path} is not valid JSON (nested too deeply)") from None
    shape = '{"<api key>": "<secret>", ...}'
    if not isinstance(value, dict):
        raise KeysError(f"keys file {path} must hold a JSON object {shape}")
    for api_key, secret in value.items():
        if not api_key:
            raise KeysError(f"keys file {path} has an empty API key: it must be {shape}")
        if not isinstance(secret, str) or not secret:
            raise KeysError(
                f"keys file {path}: the secret of API key {api_key!r} must be a non-empty string"
            )
    return value


def load_keys(environ: Mapping[str, str] | None = None) -> dict[str, str]:
    """Every configured API key and its secret: the environment's key first, then the file's.

    `environ` defaults to `os.environ`. A keys file named by `MEETCORE_KEYS_FILE` must
    exist; `meetcore-keys.json` is read only if it does. Raises `KeysError` for a
    malformed file, a key without its secret, or one key with two different secrets.
    """
    env = os.environ if environ is None else environ
    keys: dict[str, str] = {}
    api_key, secret = env.get(KEY_ENV) or "", env.get(SECRET_ENV) or ""
    if bool(api_key) != bool(secret):
        present, missing = (KEY_ENV, SECRET_ENV) if api_key else (SECRET_ENV, KEY_ENV)
        raise KeysError(f"{present} is set but {missing} is not: set both or neither")
    if api_key:
        keys[api_key] = secret
    path = keys_file(env)
    found = _read(path)
    if found is None and env.get(FILE_ENV):
        raise KeysError(f"keys file {path} ({FILE_ENV}) does not exist")
    for name, value in (found or {}).items():
        if keys.setdefault(name, value) != value:
            raise KeysError(f"API key {name!r} has one secret in {SECRET_ENV}, another in {path}")
    return keys


def _publish(target: Path, text: str, *, replace: bool) -> bool:
    """Put `text` at `target` in one step, in a file that is mode 0o600 from its creation.

    Without `replace`, False when `target` appeared meanwhile (it is left as it is).
    """
    temporary = target.with_name(f".{target.name}.{uuid.uuid4().hex}.tmp")
    descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        if hasattr(os, "fchmod"):  # whatever the umask: exactly owner read and write
            os.fchmod(descriptor, 0o600)
        with os.fdopen(descriptor, "w", encoding="utf-8") as file:
            file.write(text)
            file.flush()
            os.fsync(file.fileno())
        if replace:
            os.replace(temporary, target)
            return True
        try:
            os.link(temporary, target)  # fails if someone else made it: no file is overwritten
        except FileExistsError:
            return False
        return True
    finally:
        temporary.unlink(missing_ok=True)


def ensure_dev_keys(path: str | os.PathLike[str] | None = None) -> tuple[str, str]:
    """The first key of the keys file, `(api_key, secret)`; if the file has none, a new
    random key written to it first (the file is created with mode 0o600).

    `path` defaults to `keys_file()`. So `meetcore serve` works, and `meetcore token`
    after it in the same directory, with no configuration. A malformed file is never
    overwritten: it raises `KeysError`, as does a file that cannot be written.
    """
    target = keys_file() if path is None else Path(path)
    for _ in range(3):
        found = _read(target)
        if found:
            return next(iter(found.items()))
        api_key, secret = str(uuid.uuid4()), secrets.token_urlsafe(32)
        text = json.dumps({api_key: secret}, indent=2) + "\n"
        try:
            if _publish(target, text, replace=found is not None):
                log.debug("created API key %s in %s", api_key, target)  # callers say it
                return api_key, secret
        except OSError as exc:
            raise KeysError(f"cannot write keys file {target}: {exc.strerror or exc}") from None
    raise KeysError(f"keys file {target} keeps changing: cannot add a key to it")


class KeyRing:
    """`load_keys()`, read again only when the environment or the keys file changed.

    So a server notices a key added to or removed from the file (rotation) at the next
    request, without a restart, at the cost of one `stat` per call. When the same file
    breaks after a good read (a half-saved edit), the keys read before stay, with a
    warning; otherwise a bad configuration raises `KeysError`.
    """

    def __init__(self, environ: Mapping[str, str] | None = None) -> None:
        self._environ = environ
        self._source: tuple[object, ...] | None = None  # where the keys were read from
        self._stamp: tuple[int, ...] | None = None  # the file's version then
        self._keys: dict[str, str] = {}

    def get(self) -> dict[str, str]:
        """The keys as they are configured now."""
        env = os.environ if self._environ is None else self._environ
        path = keys_file(env)
        source = (env.get(KEY_ENV), env.get(SECRET_ENV), os.path.abspath(path))
        try:
            stat = os.stat(path)
            stamp: tuple[int, ...] | None = (stat.st_mtime_ns, stat.st_size, stat.st_ino)
        except OSError:
            stamp = None
        if (source, stamp) == (self._source, self._stamp):
            return self._keys
        try:
            keys = load_keys(env)
        except KeysError as error:
            if source != self._source:
                raise
            log.warning("%s; keeping the keys loaded before", error)
            self._stamp = stamp  # warn once per change of the file
            return self._keys
        self._keys, self._source, self._stamp = keys, source, stamp
        return self._keys
