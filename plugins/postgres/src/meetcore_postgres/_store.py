"""`PostgresStore`: the event log in PostgreSQL, shared by every node of a cluster.

Tables, in their own PostgreSQL schema (`meetcore` unless the URL says `?schema=`):

- `meta`: `schema_version` (this plugin refuses a database of a newer one).
- `records`: `position` (the global order), `meeting_id`, `version` (UNIQUE with
  `meeting_id`: the optimistic concurrency key), `recorded_at`, and `record`, the whole
  `meetcore.Record` (event and cause) encoded as msgpack.
- `head`: one row, the last position handed out. Each append transaction locks it
  first (`SELECT ... FOR UPDATE`) and keeps the lock until it commits, so appends
  commit one after the other, in position order, and positions have no holes: a
  reader tailing `read_all` can never pass a position that a slower transaction
  commits later. The price is that appends are serialized across the cluster; group
  commit (below) pays it once for many appends. See docs/deploy.md.
- `leases`: one row per connection in a meeting, granted and dropped in the append
  transactions themselves (the `SharedLeases` store capability).
- `checkpoints`: small named values (the `meetcore.Checkpoints` capability).
- `nodes` and `placements` (schema 2): the URL of each node and when it last said it
  was live; the node each meeting's media was placed on (the `MediaPlacement`
  capability: `routing.media_node` over the live nodes, kept while its node lives and
  someone is in the meeting).

Writing: appends queue up; whichever caller finds no commit running takes every queued
append into one transaction (group commit), checks versions, inserts, updates `head`,
and sends one `NOTIFY` per append ("writer first last meeting_id") before it commits.
Two round trips per group: the lock plus the version check, then everything else
pipelined with the COMMIT.

Watching (the `WatchableStore` capability): a dedicated connection `LISTEN`s; notifications
only say which meeting to read again: the log is the truth. Notifications carry
positions, which have no holes, so a missed one shows as a gap and is made up for by
reading the positions in between; a check of `head` every second catches a lost last
one, and a reconnect catches up from the last position seen.
"""

from __future__ import annotations

import contextlib
import logging
import re
import secrets
from collections.abc import (
    AsyncGenerator,
    AsyncIterator,
    Callable,
    Collection,
    Mapping,
    Sequence,
)
from contextlib import asynccontextmanager
from typing import Any, Final
from urllib.parse import parse_qsl, quote, urlencode, urlsplit, urlunsplit

import anyio
import psycopg
import psycopg.errors
from psycopg.conninfo import conninfo_to_dict, make_conninfo
from psycopg.pq import TransactionStatus

from meetcore import (
    NumberedGroup,
    QueuedAppend,
    Record,
    StoreError,
    check_append,
    decode_msgpack,
    is_text,
    wall_clock_ms,
    without_password,
)
from meetcore.commands import AnyCommand
from meetcore.events import (
    AnyEvent,
    EntryRequested,
    EntryWithdrawn,
    ParticipantJoined,
    ParticipantLeft,
)
from meetcore_postgres.routing import media_node

__all__ = ["DEFAULT_SCHEMA", "SCHEMA_VERSION", "PostgresStore", "parse_url"]

log = logging.getLogger("meetcore.postgres")


def _not_an_aborted_pipeline(record: logging.LogRecord) -> bool:
    """psycopg warns "error ignored terminating <pipeline>: pipeline aborted" whenever a
    pipelined block raises. An append's block raises on a unique-key violation (another
    writer took the version: `Conflict`), and the aborted pipeline is only the echo of
    that error, which is raised and handled: not worth a warning in every server's log."""
    args = record.args
    echo = isinstance(args, tuple) and len(args) == 2
    return not (echo and isinstance(args[1], psycopg.errors.PipelineAborted))  # type: ignore[index]


logging.getLogger("psycopg").addFilter(_not_an_aborted_pipeline)

#: The schema this version of meetcore-postgres writes and reads (`meta.schema_version`).
SCHEMA_VERSION: Final = 2
#: The PostgreSQL schema that holds the tables unless the URL names another.
DEFAULT_SCHEMA: Final = "meetcore"
#: Most appends one transaction takes.
MAX_GROUP: Final = 1000
#: Read connections kept per store unless the URL says `?pool_size=`.
DEFAULT_POOL_SIZE: Final = 8
#: Seconds between the watcher's checks of `head` (a lost last notification, a dead
#: connection).
WATCH_CHECK: Final = 1.0
#: Longest meeting id sent in a notification; longer ones make the watcher read the log.
_NOTIFY_ID_BYTES: Final = 1000

_SCHEMA_NAME = re.compile(r"[a-z_][a-z0-9_]{0,47}")
_SCHEMES = ("postgresql://", "postgres://")
_OPTIONS = ("schema", "pool_size")
#: The database's clock in unix milliseconds: every node reads the same one.
_NOW_MS = "(extract(epoch from clock_timestamp()) * 1000)::bigint"


def parse_url(url: str) -> tuple[str, str, int, str]:
    """Split a `postgresql://` URL into (libpq URL without meetcore's options, schema,
    pool size, the URL without its password for messages). `StoreError` when bad."""
    if not url.startswith(_SCHEMES):
        raise StoreError(f"{url!r} is not a postgresql:// URL")
    parts = urlsplit(url)
    shown = without_password(url)
    schema, pool_size = DEFAULT_SCHEMA, DEFAULT_POOL_SIZE
    libpq: list[tuple[str, str]] = []
    for name, value in parse_qsl(parts.query, keep_blank_values=True):
        if name == "schema":
            if not _SCHEMA_NAME.fullmatch(value):
                raise StoreError(
                    f"store URL {shown}: schema must be 1-48 of a-z, 0-9 and _ "
                    f"(not starting with a digit), not {value!r}"
                )
            schema = value
        elif name == "pool_size":
            try:
                pool_size = int(value)
            except ValueError:
                pool_size = 0
            if not 1 <= pool_size <= 100:
                raise StoreError(f"store URL {shown}: pool_size must be 1-100, not {value!r}")
        else:
            libpq.append((name, value))
    names = {name for name, _ in libpq}
    if "connect_timeout" not in names:
        libpq.append(("connect_timeout", "10"))
    if "application_name" not in names:
        libpq.append(("application_name", "meetcore"))
    conninfo = urlunsplit(parts._replace(query=urlencode(libpq, quote_via=quote)))
    return conninfo, schema, pool_size, shown


def _read_only(conninfo: str) -> str:
    """`conninfo` with every session read-only (`default_transaction_read_only`, after
    whatever `options` the URL gives)."""
    options = str(conninfo_to_dict(conninfo).get("options") or "")
    return make_conninfo(conninfo, options=f"{options} -c default_transaction_read_only=on")


def _one_line(error: BaseException) -> str:
    text = " ".join(line.strip() for line in str(error).splitlines() if line.strip())
    return text or type(error).__name__


#: The largest bigint: larger versions, positions and limits mean "all".
_MAX_BIGINT: Final = 2**63 - 1


class _Progress:
    """How far a watcher has accounted for the log, across its reconnections."""

    __slots__ = ("seen",)

    def __init__(self) -> None:
        self.seen: int | None = None


def _parse_note(payload: str) -> tuple[str, int, int, str] | None:
    """A notification's (writer, first position, last position, meeting id)."""
    parts = payload.split(" ", 3)
    if len(parts) != 4 or not (parts[1].isdigit() and parts[2].isdigit()):
        return None
    return parts[0], int(parts[1]), int(parts[2]), parts[3]


class _Sql:
    """The statements, for one PostgreSQL schema."""

    def __init__(self, schema: str) -> None:
        s = f'"{schema}"'
        self.schema = s
        self.channel = f"meetcore_{schema}"
        self.create = [
            f"CREATE SCHEMA IF NOT EXISTS {s}",
            f"CREATE TABLE {s}.meta (key text PRIMARY KEY, value text NOT NULL)",
            f"""CREATE TABLE {s}.head (
                id boolean PRIMARY KEY DEFAULT true CHECK (id),
                position bigint NOT NULL)""",
            f"INSERT INTO {s}.head (position) VALUES (0)",
            f"""CREATE TABLE {s}.records (
                position bigint PRIMARY KEY,
                meeting_id text NOT NULL,
                version integer NOT NULL,
                recorded_at bigint NOT NULL,
                record bytea NOT NULL,
                UNIQUE (meeting_id, version))""",
            f"""CREATE TABLE {s}.leases (
                meeting_id text NOT NULL,
                connection_id text NOT NULL,
                participant_id text NOT NULL,
                renewed_at bigint NOT NULL,
                PRIMARY KEY (meeting_id, connection_id))""",
            f"CREATE INDEX leases_renewed_at ON {s}.leases (renewed_at)",
            f"CREATE TABLE {s}.checkpoints (name text PRIMARY KEY, value bytea NOT NULL)",
            *self._version_2(s),
            f"""INSERT INTO {s}.meta (key, value) VALUES
                ('schema_version', '{SCHEMA_VERSION}'), ('created_by', 'meetcore-postgres')""",
        ]
        # from each older schema version to the next
        self.upgrade = {
            1: [
                *self._version_2(s),
                f"UPDATE {s}.meta SET value = '2' WHERE key = 'schema_version'",
            ],
        }
        self.schema_version = f"SELECT value FROM {s}.meta WHERE key = 'schema_version'"
        self.lock_head = f"SELECT position FROM {s}.head FOR UPDATE"
        self.head = f"SELECT position FROM {s}.head"
        self.versions = f"""SELECT m, coalesce(
                (SELECT max(version) FROM {s}.records WHERE meeting_id = m), 0)
            FROM unnest(%s::text[]) AS m"""
        self.insert = f"""INSERT INTO {s}.records
                (position, meeting_id, version, recorded_at, record)
            SELECT * FROM unnest(%s::bigint[], %s::text[], %s::integer[], %s::bigint[],
                %s::bytea[])"""
        self.set_head = f"UPDATE {s}.head SET position = %s"
        self.notify = "SELECT pg_notify(%s, p) FROM unnest(%s::text[]) AS p"
        self.read = (
            f"SELECT record FROM {s}.records WHERE meeting_id = %s AND version > %s "
            "ORDER BY version"
        )
        self.read_all = (
            f"SELECT record FROM {s}.records WHERE position > %s ORDER BY position LIMIT %s"
        )
        self.changed = (
            f"SELECT DISTINCT meeting_id FROM {s}.records WHERE position > %s AND position <= %s"
        )
        self.grant = f"""INSERT INTO {s}.leases
                (meeting_id, connection_id, participant_id, renewed_at)
            SELECT m, c, p, {_NOW_MS} FROM unnest(%s::text[], %s::text[], %s::text[]) AS k(m, c, p)
            ON CONFLICT (meeting_id, connection_id) DO UPDATE
            SET participant_id = excluded.participant_id, renewed_at = excluded.renewed_at"""
        self.drop = f"""DELETE FROM {s}.leases USING unnest(%s::text[], %s::text[]) AS k(m, c)
            WHERE meeting_id = k.m AND connection_id = k.c"""
        # SKIP LOCKED: a renewal never waits (nor deadlocks) on a row an append or a
        # claim holds: the append grants or drops that lease anyway, the claim took it.
        self.renew = f"""UPDATE {s}.leases AS l SET renewed_at = {_NOW_MS}
            WHERE (l.meeting_id, l.connection_id) IN (
                SELECT meeting_id, connection_id FROM {s}.leases
                JOIN unnest(%s::text[], %s::text[]) AS k(m, c)
                    ON meeting_id = k.m AND connection_id = k.c
                FOR UPDATE SKIP LOCKED)"""
        self.claim = f"""UPDATE {s}.leases AS l SET renewed_at = {_NOW_MS}
            WHERE (l.meeting_id, l.connection_id) IN (
                SELECT meeting_id, connection_id FROM {s}.leases
                WHERE renewed_at <= {_NOW_MS} - %s
                ORDER BY renewed_at LIMIT %s
                FOR UPDATE SKIP LOCKED)
            RETURNING l.meeting_id, l.connection_id, l.participant_id"""
        self.announce = f"""INSERT INTO {s}.nodes (url, renewed_at) VALUES (%s, {_NOW_MS})
            ON CONFLICT (url) DO UPDATE SET renewed_at = excluded.renewed_at"""
        self.drop_node = f"DELETE FROM {s}.nodes WHERE url = %s"
        self.placement = f"""SELECT
            (SELECT url FROM {s}.placements WHERE meeting_id = %(m)s),
            ARRAY(SELECT url FROM {s}.nodes WHERE renewed_at > {_NOW_MS} - %(ttl)s),
            EXISTS (SELECT 1 FROM {s}.leases WHERE meeting_id = %(m)s)"""
        # compare and set: only if nobody placed it meanwhile
        self.place = f"""INSERT INTO {s}.placements AS p (meeting_id, url) VALUES (%s, %s)
            ON CONFLICT (meeting_id) DO UPDATE SET url = excluded.url
            WHERE p.url = %s
            RETURNING p.url"""
        self.load_checkpoint = f"SELECT value FROM {s}.checkpoints WHERE name = %s"
        self.save_checkpoint = f"""INSERT INTO {s}.checkpoints (name, value) VALUES (%s, %s)
            ON CONFLICT (name) DO UPDATE SET value = excluded.value"""
        self.create_checkpoint = f"""INSERT INTO {s}.checkpoints (name, value) VALUES (%s, %s)
            ON CONFLICT (name) DO NOTHING"""
        self.swap_checkpoint = (
            f"UPDATE {s}.checkpoints SET value = %s WHERE name = %s AND value = %s"
        )

    @staticmethod
    def _version_2(s: str) -> list[str]:
        """The nodes of the cluster, and the node each meeting's media is placed on."""
        return [
            f"""CREATE TABLE {s}.nodes (
                url text PRIMARY KEY,
                renewed_at bigint NOT NULL)""",
            f"""CREATE TABLE {s}.placements (
                meeting_id text PRIMARY KEY,
                url text NOT NULL)""",
        ]


class PostgresStore:
    """A `meetcore.EventStore` on PostgreSQL that several processes share (see the module
    docstring), with the optional store capabilities `WatchableStore`, `SharedLeases`
    and `meetcore.Checkpoints`.

    `url` is a libpq URL (`postgresql://user:password@host:port/database`, with libpq's
    options such as `?sslmode=require`) plus meetcore's `schema` (the PostgreSQL schema
    of the tables, default `meetcore`) and `pool_size` (read connections, default 8).
    The constructor connects once, synchronously: it creates the schema in a new
    database and checks its version in an existing one. `read_only` opens an existing
    store to read it and change nothing: every session is read-only
    (`default_transaction_read_only`), nothing is created (a database without the
    schema is a `StoreError`), and appends are refused. Raises `meetcore.StoreError`
    (one line, no password) when the URL is bad, the server cannot be reached, or the
    database was written by a newer meetcore-postgres. asyncio only (psycopg's async).
    """

    def __init__(
        self, url: str, *, clock: Callable[[], int] = wall_clock_ms, read_only: bool = False
    ) -> None:
        self._conninfo, self.schema, self.pool_size, self.url = parse_url(url)
        self.read_only = read_only
        if read_only:
            try:
                self._conninfo = _read_only(self._conninfo)
            except psycopg.Error as error:  # a URL libpq cannot read
                raise self._fail(f"bad URL: {_one_line(error)}") from None
        self._sql = _Sql(self.schema)
        self._clock = clock
        #: This store object's name in notifications, so that it skips its own.
        self.writer_id = secrets.token_hex(6)
        #: Transactions committed by this store object (appends share them).
        self.transactions = 0
        #: Appends committed by this store object.
        self.appends = 0
        self._closed = False
        self._queue: list[QueuedAppend] = []
        self._write_lock = anyio.Lock()
        self._writer: psycopg.AsyncConnection[Any] | None = None
        # meeting_id -> version as this store object last committed it
        self._versions: dict[str, int] = {}
        self._committing = False  # the current group's COMMIT may have been sent
        self._idle: list[psycopg.AsyncConnection[Any]] = []
        self._slots = anyio.Semaphore(self.pool_size)
        self._watchers: set[psycopg.AsyncConnection[Any]] = set()
        self._prepare()

    def __repr__(self) -> str:
        return f"PostgresStore({self.url!r}, schema={self.schema!r})"

    # -- opening -------------------------------------------------------------------

    def _fail(self, reason: str) -> StoreError:
        return StoreError(f"{self.url}: {reason}")

    def _prepare(self) -> None:
        """Create the schema in a new database; check its version in an existing one
        (read-only: refuse a database without it)."""
        try:
            with (
                psycopg.connect(self._conninfo, autocommit=True) as connection,
                connection.transaction(),
            ):
                if self.read_only:
                    if self._schema_version(connection) == 0:
                        raise StoreError(
                            f"no such store: {self.url} has no meetcore schema {self.schema!r}"
                        )
                    return
                # Nodes starting together: one creates, the others wait and see it.
                connection.execute(
                    "SELECT pg_advisory_xact_lock(hashtext(%s))", (f"meetcore {self.schema}",)
                )
                version = self._schema_version(connection)
                if version == 0:
                    for statement in self._sql.create:
                        connection.execute(statement)
                    version = SCHEMA_VERSION
                for older in range(version, SCHEMA_VERSION):
                    for statement in self._sql.upgrade[older]:
                        connection.execute(statement)
        except psycopg.OperationalError as error:
            raise self._fail(f"cannot connect: {_one_line(error)}") from None
        except psycopg.ProgrammingError as error:  # a URL libpq cannot read
            raise self._fail(f"bad URL: {_one_line(error)}") from None
        except psycopg.Error as error:
            raise self._fail(_one_line(error)) from None

    def _schema_version(self, connection: psycopg.Connection[Any]) -> int:
        s = self.schema.strip('"')
        row = connection.execute(
            "SELECT to_regclass(%s), to_regclass(%s)", (f'"{s}".meta', f'"{s}".records')
        ).fetchone()
        assert row is not None
        meta, records = row
        if meta is None:
            if records is not None:
                raise self._fail(f"schema {s!r} holds tables that are not meetcore's")
            return 0
        found = connection.execute(self._sql.schema_version).fetchone()
        if found is None or not str(found[0]).isdigit():
            raise self._fail(f"schema {s!r} has no meetcore schema version")
        version = int(found[0])
        if version > SCHEMA_VERSION:
            raise self._fail(
                f"was written by a newer meetcore (schema {version}, this one reads up to "
                f"{SCHEMA_VERSION}): upgrade meetcore-postgres"
            )
        return version

    async def _connect(self) -> psycopg.AsyncConnection[Any]:
        try:
            return await psycopg.AsyncConnection.connect(self._conninfo, autocommit=True)
        except psycopg.Error as error:
            raise self._fail(f"cannot connect: {_one_line(error)}") from None

    @asynccontextmanager
    async def _connection(self) -> AsyncIterator[psycopg.AsyncConnection[Any]]:
        """A connection of the read pool (autocommit), given back when it is fine."""
        if self._closed:
            raise self._fail("the store is closed")
        async with self._slots:
            connection = self._idle.pop() if self._idle else await self._connect()
            healthy = False
            try:
                yield connection
                healthy = True
            finally:
                if (
                    healthy
                    and not self._closed
                    and not connection.broken
                    and connection.info.transaction_status == TransactionStatus.IDLE
                ):
                    self._idle.append(connection)
                else:
                    with anyio.CancelScope(shield=True):
                        await connection.close()

    async def _run(
        self, sql: str, parameters: Sequence[object] | Mapping[str, object]
    ) -> list[tuple[Any, ...]]:
        """Run one statement on a pool connection; its rows. A connection lost meanwhile
        (a server restart) is replaced once; then `StoreError`."""
        for attempt in (1, 2):
            try:
                async with self._connection() as connection:
                    cursor = await connection.execute(sql, parameters)
                    return await cursor.fetchall() if cursor.description else []
            except psycopg.OperationalError as error:
                if attempt == 2 or self._closed:
                    raise self._fail(_one_line(error)) from None
                # the server went away (a restart, a failover): so did the idle ones
                idle, self._idle = self._idle, []
                with anyio.CancelScope(shield=True):
                    for connection in idle:
                        await connection.close()
            except psycopg.Error as error:
                raise self._fail(_one_line(error)) from None
        raise AssertionError("unreachable")

    # -- writing -------------------------------------------------------------------

    async def append(
        self,
        meeting_id: str,
        expected_version: int,
        events: Sequence[AnyEvent],
        cause: AnyCommand | None,
    ) -> list[Record]:
        check_append(meeting_id, events)
        if self._closed:
            raise self._fail("the store is closed")
        if self.read_only:
            raise self._fail("opened read-only: it takes no appends")
        item = QueuedAppend(meeting_id, expected_version, events, cause)
        self._queue.append(item)
        # Once queued, the append happens or not whatever the caller does: see it through.
        with anyio.CancelScope(shield=True):
            while not item.settled:
                async with self._write_lock:
                    if item.settled:  # committed in the group of the previous lock holder
                        break
                    group = self._queue[:MAX_GROUP]
                    del self._queue[:MAX_GROUP]
                    await self._commit(group)
        return item.result()

    async def _commit(self, group: list[QueuedAppend]) -> None:
        """Write the group's appends in one transaction; set each one's outcome.

        Fast path: versions are checked against what this store last committed, and
        only meetings it does not know (or that look like a conflict) are asked for.
        If another node wrote meanwhile, the unique (meeting_id, version) key refuses
        a row: then the group is done again with every version read under the lock.
        """
        numbered: NumberedGroup | None = None
        error: Exception | None = None
        try:
            if self._closed:
                raise self._fail("the store is closed")
            careful = reconnected = False
            while numbered is None:
                if self._writer is None or self._writer.closed:
                    self._writer = await self._connect()
                try:
                    numbered = await self._transaction(self._writer, group, careful=careful)
                except psycopg.errors.UniqueViolation:
                    if careful:  # versions read under the lock cannot be stale: a bug
                        raise
                    self._versions.clear()
                    careful = True
                except psycopg.OperationalError:
                    # A connection that died while idle (a server restart) fails at the
                    # first round trip, before COMMIT was sent: nothing was written,
                    # so try once more on a new connection.
                    if reconnected or self._committing or not self._writer.broken:
                        raise
                    with anyio.CancelScope(shield=True):
                        await self._writer.close()
                    self._writer, reconnected = None, True
        except StoreError as failure:
            error = failure
        except psycopg.Error as failure:
            if isinstance(failure, psycopg.OperationalError):
                failure_text = f"lost the database while appending: {_one_line(failure)}"
            else:
                failure_text = _one_line(failure)
            error = self._fail(failure_text)
            self._versions.clear()
            if self._writer is not None and (
                self._writer.broken
                or self._writer.info.transaction_status != TransactionStatus.IDLE
            ):
                with anyio.CancelScope(shield=True):
                    await self._writer.close()
                self._writer = None
        except Exception as failure:  # a bug: every caller of the group hears of it
            error = failure
        if numbered is None:
            for item in group:
                item.error = error
        else:
            self.appends += numbered.settle(group)
            self.transactions += 1

    def _needs_check(self, item: QueuedAppend) -> bool:
        """Whether the meeting's version must be read before trusting `item.expected`."""
        known = self._versions.get(item.meeting_id)
        if not item.events:
            return True
        if known is None:
            return item.expected != 0  # a new meeting: the unique key checks it
        return known != item.expected

    async def _transaction(
        self,
        connection: psycopg.AsyncConnection[Any],
        group: list[QueuedAppend],
        *,
        careful: bool,
    ) -> NumberedGroup:
        sql = self._sql
        firsts: dict[str, QueuedAppend] = {}
        for item in group:
            firsts.setdefault(item.meeting_id, item)
        ask = [m for m, item in firsts.items() if careful or self._needs_check(item)]
        self._committing = False
        async with connection.pipeline(), connection.transaction():
            head = await connection.execute(sql.lock_head)
            asked = await connection.execute(sql.versions, (ask,)) if ask else None
            row = await head.fetchone()  # the first round trip: the lock is ours
            self._committing = True
            assert row is not None
            actual: dict[str, int] = {}
            if asked is not None:
                actual = {str(m): int(v) for m, v in await asked.fetchall()}
            numbered = NumberedGroup(int(row[0]), self._clock(), self._fail)
            versions = numbered.versions  # as this group leaves them
            positions: list[int] = []
            meeting_ids: list[str] = []
            numbers: list[int] = []
            blobs: list[bytes] = []
            notes: list[str] = []
            leases: dict[tuple[str, str], str | None] = {}  # key -> participant, or None: drop
            for item in group:
                meeting_id = item.meeting_id
                current = versions.get(meeting_id)
                if current is None:
                    current = actual.get(meeting_id)
                if current is None:
                    current = item.expected  # trusted: see _needs_check
                encoded = numbered.number(item, current)
                for record, blob in encoded:
                    positions.append(record.position)
                    meeting_ids.append(meeting_id)
                    numbers.append(record.version)
                    blobs.append(blob)
                    event = record.event
                    if isinstance(event, ParticipantJoined | EntryRequested):
                        leases[(meeting_id, event.connection_id)] = event.participant_id
                    elif isinstance(event, ParticipantLeft | EntryWithdrawn):
                        leases[(meeting_id, event.connection_id)] = None
                if encoded:
                    named = meeting_id if len(meeting_id.encode()) <= _NOTIFY_ID_BYTES else ""
                    first, last = encoded[0][0].position, encoded[-1][0].position
                    notes.append(f"{self.writer_id} {first} {last} {named}")
            if positions:
                stamps = [numbered.now] * len(positions)
                await connection.execute(
                    sql.insert, (positions, meeting_ids, numbers, stamps, blobs)
                )
                grants = [(k, p) for k, p in leases.items() if p is not None]
                drops = [k for k, p in leases.items() if p is None]
                if grants:
                    await connection.execute(
                        sql.grant,
                        (
                            [k[0] for k, _ in grants],
                            [k[1] for k, _ in grants],
                            [p for _, p in grants],
                        ),
                    )
                if drops:
                    await connection.execute(
                        sql.drop, ([k[0] for k in drops], [k[1] for k in drops])
                    )
                await connection.execute(sql.set_head, (numbered.position,))
                await connection.execute(sql.notify, (sql.channel, notes))
        self._versions.update(versions)
        return numbered

    # -- reading -------------------------------------------------------------------

    async def read(self, meeting_id: str, after_version: int = 0) -> list[Record]:
        if not is_text(meeting_id):  # no such meeting can be stored
            return []
        after = min(max(after_version, 0), _MAX_BIGINT)
        rows = await self._run(self._sql.read, (meeting_id, after))
        return [decode_msgpack(row[0]) for row in rows]

    async def read_all(self, after_position: int = 0, limit: int = 1000) -> list[Record]:
        if limit <= 0:
            return []
        after = min(max(after_position, 0), _MAX_BIGINT)
        rows = await self._run(self._sql.read_all, (after, min(limit, _MAX_BIGINT)))
        return [decode_msgpack(row[0]) for row in rows]

    # -- watching other writers ------------------------------------------------------

    async def watch(self) -> AsyncIterator[str]:
        """The ids of meetings other writers (other store objects, other nodes) append
        to, as they commit; runs until cancelled or the store closes. Reconnects by
        itself, and reads the log for whatever it may have missed meanwhile."""
        progress = _Progress()
        delay = 0.1
        while not self._closed:
            try:
                connection = await self._connect()
            except StoreError as error:
                log.warning("watching: %s; again in %.1f s", error, delay)
                await anyio.sleep(delay)
                delay = min(delay * 2, 5.0)
                continue
            self._watchers.add(connection)
            try:
                async with contextlib.aclosing(self._listen(connection, progress)) as changes:
                    async for meeting_id in changes:
                        delay = 0.1
                        yield meeting_id
            except (psycopg.Error, StoreError) as error:
                if self._closed:
                    return
                log.warning("watching %s: %s; reconnecting", self.url, _one_line(error))
            finally:
                self._watchers.discard(connection)
                with anyio.CancelScope(shield=True):
                    await connection.close()

    async def _listen(
        self, connection: psycopg.AsyncConnection[Any], progress: _Progress
    ) -> AsyncGenerator[str]:
        """`watch` on one connection; `progress.seen` is the last position accounted for."""
        await connection.execute(f"LISTEN {self._sql.channel}")
        head = await self._head(connection)
        if progress.seen is not None and head > progress.seen:  # a reconnection
            for meeting_id in await self._changed(connection, progress.seen, head):
                yield meeting_id
        seen = progress.seen = head if progress.seen is None else max(progress.seen, head)
        suspect: int | None = None  # a head that notifications have not reached yet
        while not self._closed:
            gap: tuple[int, int] | None = None
            async with contextlib.aclosing(connection.notifies(timeout=WATCH_CHECK)) as notes:
                async for note in notes:
                    parsed = _parse_note(note.payload)
                    if parsed is None:
                        continue
                    writer, first, last, meeting_id = parsed
                    if first > seen + 1:
                        gap = (seen, first - 1)  # notifications were lost: read the log
                    if writer != self.writer_id:
                        if meeting_id:
                            yield meeting_id
                        else:  # an id too long for a notification
                            for changed in await self._changed_later(first - 1, last):
                                yield changed
                    seen = progress.seen = max(seen, last)
                    if gap is not None:
                        break
            if gap is None:  # every second: did a notification go missing?
                head = await self._head(connection)
                if suspect is not None and seen < suspect:
                    gap = (seen, suspect)
                suspect = head if head > seen else None
            if gap is not None:
                for meeting_id in await self._changed(connection, *gap):
                    yield meeting_id
                seen = progress.seen = max(seen, gap[1])

    async def _head(self, connection: psycopg.AsyncConnection[Any]) -> int:
        cursor = await connection.execute(self._sql.head)
        row = await cursor.fetchone()
        return int(row[0]) if row is not None else 0

    async def _changed(
        self, connection: psycopg.AsyncConnection[Any], after: int, until: int
    ) -> list[str]:
        cursor = await connection.execute(self._sql.changed, (after, until))
        return [str(row[0]) for row in await cursor.fetchall()]

    async def _changed_later(self, after: int, until: int) -> list[str]:
        rows = await self._run(self._sql.changed, (after, until))
        return [str(row[0]) for row in rows]

    # -- leases (the SharedLeases capability) ----------------------------------------

    async def renew_leases(self, connections: Collection[tuple[str, str]]) -> None:
        if connections:
            keys = list(connections)
            await self._run(self._sql.renew, ([m for m, _ in keys], [c for _, c in keys]))

    async def claim_expired_leases(
        self, ttl_ms: int, limit: int = 100
    ) -> list[tuple[str, str, str]]:
        rows = await self._run(self._sql.claim, (max(ttl_ms, 0), max(limit, 0)))
        return [(str(m), str(c), str(p)) for m, c, p in rows]

    async def drop_leases(self, connections: Collection[tuple[str, str]]) -> None:
        if connections:
            keys = list(connections)
            await self._run(self._sql.drop, ([m for m, _ in keys], [c for _, c in keys]))

    # -- nodes and where meetings' media is (the MediaPlacement capability) -------------

    async def announce_node(self, url: str) -> None:
        await self._run(self._sql.announce, (url,))

    async def drop_node(self, url: str) -> None:
        await self._run(self._sql.drop_node, (url,))

    async def place_meeting(self, meeting_id: str, ttl_ms: int) -> str | None:
        for _ in range(3):  # another node may place it between our read and our write
            found = await self._run(self._sql.placement, {"m": meeting_id, "ttl": max(ttl_ms, 0)})
            ((placed, live, attended),) = found
            if not live:
                return None
            if placed in live and attended:  # in progress on a live node: it stays
                return str(placed)
            chosen = media_node(meeting_id, live)  # new, its node gone, or nobody in it
            if chosen == placed or await self._run(self._sql.place, (meeting_id, chosen, placed)):
                return chosen
        raise self._fail(f"could not place meeting {meeting_id!r}: other nodes kept moving it")

    # -- checkpoints (meetcore.Checkpoints) ----------------------------------------

    async def load_checkpoint(self, name: str) -> bytes | None:
        rows = await self._run(self._sql.load_checkpoint, (name,))
        return bytes(rows[0][0]) if rows else None

    async def save_checkpoint(self, name: str, value: bytes) -> None:
        await self._run(self._sql.save_checkpoint, (name, value))

    async def swap_checkpoint(self, name: str, expected: bytes | None, value: bytes) -> bool:
        async with self._connection() as connection:
            try:
                if expected is None:
                    cursor = await connection.execute(
                        self._sql.create_checkpoint,
                        (name, value),
                    )
                else:
                    cursor = await connection.execute(
                        self._sql.swap_checkpoint,
                        (value, name, expected),
                    )
            except psycopg.Error as error:
                raise self._fail(_one_line(error)) from None
            return cursor.rowcount == 1

    # -- closing -------------------------------------------------------------------

    async def close(self) -> None:
        """Finish the append being committed, then close every connection. Safe twice."""
        if self._closed:
            return
        self._closed = True
        with anyio.CancelScope(shield=True):
            async with self._write_lock:  # the group being committed finishes first
                for item in self._queue:
                    item.error = self._fail("the store is closed")
                self._queue.clear()
                if self._writer is not None:
                    await self._writer.close()
                    self._writer = None
            idle, self._idle = self._idle, []
            for connection in [*idle, *self._watchers]:
                await connection.close()
