"""meetcore-postgres: meetcore's event store for several nodes, on PostgreSQL.

Opened by URL through the `meetcore_open_store` hook: `postgresql://user@host:5432/db`
(or `postgres://`), with libpq's options and meetcore's `?schema=NAME` (default
`meetcore`) and `?pool_size=N` (read connections, default 8). Several `meetcore serve`
processes on one database work as one service: see docs/deploy.md. Read-only when the
hook is asked for it (the command line's reading commands). `media_node` is the rule
that keeps a meeting's media on one node.
"""

from __future__ import annotations

import meetcore
from meetcore_postgres._store import DEFAULT_SCHEMA, SCHEMA_VERSION, PostgresStore, parse_url
from meetcore_postgres.routing import media_node, ranked_nodes

__all__ = [
    "DEFAULT_SCHEMA",
    "SCHEMA_VERSION",
    "PostgresStore",
    "media_node",
    "meetcore_open_store",
    "open_url",
    "parse_url",
    "ranked_nodes",
]

SCHEMES = ("postgresql://", "postgres://")


def open_url(url: str, *, read_only: bool = False) -> PostgresStore:
    """The store a `postgresql://` URL names (`read_only`: an existing one, to be read
    only); `meetcore.StoreError` when it cannot be used."""
    return PostgresStore(url, read_only=read_only)


@meetcore.hookimpl
def meetcore_open_store(url: str, read_only: bool) -> meetcore.EventStore | None:
    """Open `postgresql://` and `postgres://` URLs (read-only if asked); None for every
    other scheme."""
    if not url.startswith(SCHEMES):
        return None
    return open_url(url, read_only=read_only)
