"""meetcore-sqlite: meetcore's embedded default event store, one SQLite file.

Opened by URL through the `meetcore_open_store` hook: `sqlite:///relative/path.db`,
`sqlite:////absolute/path.db`, with options `?synchronous=NORMAL` (default FULL) and
`?busy_timeout=SECONDS` (default 10); read-only when the hook is asked for it (the
command line's reading commands). See docs/storage.md.
"""

from __future__ import annotations

from typing import get_args
from urllib.parse import parse_qsl, unquote

import meetcore
from meetcore_sqlite._store import APPLICATION_ID, SCHEMA_VERSION, SQLiteStore, Synchronous

__all__ = ["APPLICATION_ID", "SCHEMA_VERSION", "SQLiteStore", "meetcore_open_store", "open_url"]

SCHEME = "sqlite://"


def open_url(url: str, *, read_only: bool = False) -> SQLiteStore:
    """The store a `sqlite:///path?option=value` URL names; `StoreError` for a bad URL.
    With `read_only`, an existing store opened to be read only (see `SQLiteStore`)."""
    if not url.startswith(SCHEME):
        raise meetcore.StoreError(f"{url!r} is not a sqlite:// URL")
    rest, _, query = url[len(SCHEME) :].partition("?")
    if rest in (":memory:", "/:memory:"):
        raise meetcore.StoreError(
            "sqlite:// needs a file (sqlite:///meetcore.db); for a store in memory use memory://"
        )
    if not rest.startswith("/") or len(rest) < 2:
        raise meetcore.StoreError(
            f"store URL {url!r} names no file: write sqlite:///relative/path.db "
            "or sqlite:////absolute/path.db"
        )
    path = unquote(rest[1:])
    synchronous: Synchronous = "FULL"
    busy_timeout = 10.0
    for name, value in parse_qsl(query, keep_blank_values=True):
        if name == "synchronous":
            choice = value.upper()
            if choice not in get_args(Synchronous):
                raise meetcore.StoreError(
                    f"store URL {url!r}: synchronous must be FULL, NORMAL or EXTRA, not {value!r}"
                )
            synchronous = choice  # type: ignore[assignment]
        elif name == "busy_timeout":
            try:
                busy_timeout = float(value)
            except ValueError:
                busy_timeout = -1
            if not 0 <= busy_timeout < 1e9:  # nan and inf too
                raise meetcore.StoreError(
                    f"store URL {url!r}: busy_timeout must be a number of seconds, not {value!r}"
                )
        else:
            raise meetcore.StoreError(
                f"store URL {url!r}: unknown option {name!r} (known: synchronous, busy_timeout)"
            )
    return SQLiteStore(
        path, synchronous=synchronous, busy_timeout=busy_timeout, read_only=read_only
    )


@meetcore.hookimpl
def meetcore_open_store(url: str, read_only: bool) -> meetcore.EventStore | None:
    """Open `sqlite://` URLs (read-only if asked); None for every other scheme."""
    if not url.startswith(SCHEME):
        return None
    return open_url(url, read_only=read_only)
