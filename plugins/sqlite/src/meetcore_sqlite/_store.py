"""`SQLiteStore`: the event log in one SQLite file, with group commit.

One table, `records`: `position` (INTEGER PRIMARY KEY, the global order), `meeting_id`,
`version` (UNIQUE with `meeting_id`: the optimistic concurrency key), `recorded_at`, and
`record`, the whole `meetcore.Record` (event and cause) encoded as msgpack. A second,
`checkpoints` (`name`, `value`), keeps the `meetcore.Checkpoints` values (schema 2).

Writes go through one writer thread that owns the write connection. Appends queue up
while it commits; it takes the queued appends as one group (all of them, or about half
the appends in flight at NORMAL: see `_gather`), checks each one's expected version,
inserts those that fit, commits once and then tells every caller its own outcome: in one
INSERT statement when its cache vouches for the whole group, else in a `BEGIN IMMEDIATE`
transaction (see `_commit`); either way other processes on the file wait their turn.
Reads use a small pool of read connections in anyio's worker threads (WAL: readers
never wait for the writer). A third thread checkpoints the WAL into the database file
(SQLite would do it in the middle of a commit, fsync included, while every caller of
that commit waits), and makes the WAL start again under steady load.

Read-only (`read_only=True`, what the command line's reading commands ask for): no
writer, no checkpointer, connections opened with SQLite's `mode=ro`, so the file is
never created nor changed. A WAL database needs its `-wal` and `-shm` files to be read
that way, and SQLite creates them when they are missing (a store closed cleanly has
neither): then the connections are `immutable` instead, which reads the file alone,
and a read that finds the file changed meanwhile (a writer opened it) is done again the
usual way. See docs/storage.md.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import importlib
import logging
import os
import queue
import sqlite3
import stat
import threading
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path
from typing import Any, Final, Literal, NamedTuple, Protocol
from urllib.parse import quote

import anyio
import anyio.to_thread

from meetcore import (
    InvalidLog,
    NumberedGroup,
    QueuedAppend,
    Record,
    StoreBusy,
    StoreError,
    check_append,
    decode_msgpack,
    encode_msgpack,
    is_text,
    wall_clock_ms,
)
from meetcore.commands import AnyCommand
from meetcore.events import AnyEvent

__all__ = ["APPLICATION_ID", "SCHEMA_VERSION", "SQLiteStore", "Synchronous"]

#: The schema this version of meetcore-sqlite writes and reads (`PRAGMA user_version`).
SCHEMA_VERSION: Final = 2
#: `PRAGMA application_id` of a meetcore file: "mtcr".
APPLICATION_ID: Final = 0x6D746372
#: Most appends one transaction takes.
MAX_GROUP: Final = 1000
#: Most rows one INSERT statement takes (a prepared statement for 1,024 rows is ~150 KB;
#: the connection caches 128 statements), fewer if SQLite allows fewer variables (five
#: a row; before SQLite 3.32, 999 in all).
MAX_ROWS: Final = 1024
#: Least time between two checkpoints (seconds): each one copies what the commits since
#: the last one wrote, pages written several times once.
CHECKPOINT_INTERVAL: Final = 0.05
#: WAL frames (pages) past which the checkpointer holds the writer back for one pass, so
#: that the WAL is copied whole and the next commit starts it again from the beginning.
RESTART_FRAMES: Final = 4096
#: Most meetings whose versions the writer remembers; past that it forgets them all
#: (about 100 bytes a meeting; a forgotten one costs its next append a transaction).
MAX_REMEMBERED: Final = 100_000
#: Most times a read-only store reads again because a writer changed the file under
#: an immutable read.
MAX_REREADS: Final = 10

Synchronous = Literal["FULL", "NORMAL", "EXTRA"]

log = logging.getLogger(__name__)

#: Runs a callback in the caller's event loop, from any thread, without blocking.
_Wake = Callable[[Callable[[], None]], object]

_HEADER = b"SQLite format 3\x00"
_SCHEMA = """
CREATE TABLE records (
    position INTEGER PRIMARY KEY,
    meeting_id TEXT NOT NULL,
    version INTEGER NOT NULL,
    recorded_at INTEGER NOT NULL,
    record BLOB NOT NULL,
    UNIQUE (meeting_id, version)
)
"""
_CHECKPOINTS = """
CREATE TABLE checkpoints (
    name TEXT PRIMARY KEY,
    value BLOB NOT NULL
)
"""
#: What takes a file from schema N to N + 1 (a new file runs them all).
_MIGRATIONS: Final = (_SCHEMA, _CHECKPOINTS)
_LOAD = "SELECT value FROM checkpoints WHERE name = ?"
_SAVE = "INSERT OR REPLACE INTO checkpoints (name, value) VALUES (?, ?)"
_INSERT = (
    "INSERT INTO records (position, meeting_id, version, recorded_at, record) VALUES (?,?,?,?,?)"
)
_POSITION = "SELECT coalesce(max(position), 0) FROM records"
_VERSION = "SELECT coalesce(max(version), 0) FROM records WHERE meeting_id = ?"
_READ = "SELECT record, position FROM records WHERE meeting_id = ? AND version > ? ORDER BY version"
_READ_ALL = "SELECT record, position FROM records WHERE position > ? ORDER BY position LIMIT ?"
#: The largest integer SQLite takes: larger versions, positions and limits mean "all".
_MAX_INTEGER: Final = 2**63 - 1


#: The main file as an immutable connection found it: inode, size, mtime (ns).
_Snapshot = tuple[int, int, int]


class _Connection(sqlite3.Connection):
    """A connection that remembers, when it is immutable, the file it trusts."""

    snapshot: _Snapshot | None = None


#: Rows of `records`, one after the other, five values each: position, meeting_id,
#: version, recorded_at, record (flat, as one INSERT of many rows binds them).
_Rows = list[int | str | bytes]


class _Plan(NamedTuple):
    """A group numbered, and the rows to insert."""

    numbered: NumberedGroup
    rows: _Rows


@functools.lru_cache(maxsize=128)
def _insert_many(rows: int) -> str:
    return _INSERT + ",(?,?,?,?,?)" * (rows - 1)


def _max_rows(connection: sqlite3.Connection) -> int:
    """The most rows `_insert` puts in one statement on `connection`."""
    return min(MAX_ROWS, connection.getlimit(sqlite3.SQLITE_LIMIT_VARIABLE_NUMBER) // 5)


def _insert(connection: sqlite3.Connection, rows: _Rows, max_rows: int) -> None:
    """Insert `rows` with one statement (one call into SQLite) if there are at most
    `max_rows` of them."""
    count = len(rows) // 5
    if count > max_rows:
        values = iter(rows)
        connection.executemany(_INSERT, zip(values, values, values, values, values, strict=True))
    elif count:
        connection.execute(_insert_many(count), rows)


class _Append(QueuedAppend):
    """One queued append, with what its caller waits on until the writer is done."""

    __slots__ = ("done", "wake")

    def __init__(
        self,
        meeting_id: str,
        expected: int,
        events: Sequence[AnyEvent],
        cause: AnyCommand | None,
        done: _Done,
        wake: _Wake,
    ) -> None:
        super().__init__(meeting_id, expected, events, cause)
        self.done = done
        self.wake = wake


class _Checkpoint:
    """One queued checkpoint write (a compare-and-swap when `conditional`) and its outcome."""

    __slots__ = ("conditional", "done", "error", "expected", "name", "swapped", "value", "wake")

    def __init__(
        self,
        name: str,
        expected: bytes | None,
        value: bytes,
        *,
        conditional: bool,
        done: _Done,
        wake: _Wake,
    ) -> None:
        self.name = name
        self.expected = expected
        self.value = value
        self.conditional = conditional
        self.done = done
        self.wake = wake
        self.swapped = False
        self.error: Exception | None = None


_STOP: Final = object()


class _Done(Protocol):
    """What a caller waits on until the writer thread has settled its item: `set` runs
    in the caller's event loop; `wait` may be awaited again after a cancelled wait."""

    def set(self) -> None: ...

    def wait(self) -> Awaitable[object]: ...


class _Settled:
    """`_Done` on asyncio: a bare future (an `asyncio.Event` costs about 2 us more an
    append, a tenth of the event loop's share of it)."""

    __slots__ = ("_future", "_loop", "_set")

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self._future: asyncio.Future[None] = loop.create_future()
        self._set = False

    def set(self) -> None:
        self._set = True
        if not self._future.done():  # a cancelled wait cancelled it
            self._future.set_result(None)

    def wait(self) -> asyncio.Future[None]:
        if self._future.cancelled():  # waiting again after a cancelled wait
            self._future = self._loop.create_future()
            if self._set:
                self._future.set_result(None)
        return self._future


def _setter(events: list[_Done]) -> Callable[[], None]:
    def set_all() -> None:
        for event in events:
            event.set()

    return set_all


def _waiter() -> tuple[_Done, _Wake]:
    """Something to wait on in the current event loop, and a thread-safe, non-blocking
    way to run a callback there (to set it from the writer thread)."""
    try:
        loop = asyncio.get_running_loop()
    except RuntimeError:  # not asyncio: anyio's other backend
        trio: Any = importlib.import_module("trio")
        run_sync_soon: _Wake = trio.lowlevel.current_trio_token().run_sync_soon
        return anyio.Event(), run_sync_soon
    # The wake is a bound method: equal for one loop, so `_report` wakes each loop once.
    return _Settled(loop), loop.call_soon_threadsafe


class SQLiteStore:
    """A durable `meetcore.EventStore` in one SQLite file (see the module docstring).

    `synchronous="FULL"` (default) makes every acknowledged append survive a power
    cut; `"NORMAL"` only a crash of the process (much faster; see docs/storage.md).
    `busy_timeout` is how long (seconds) to wait for another process's write lock.
    `read_only` opens an existing store to read it and change nothing (appends and
    checkpoint writes are refused; see the module docstring).
    Raises `meetcore.StoreError` when the file is not a usable meetcore store.
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        synchronous: Synchronous = "FULL",
        busy_timeout: float = 10.0,
        clock: Callable[[], int] = wall_clock_ms,
        read_only: bool = False,
    ) -> None:
        if not 0 <= busy_timeout < 1e9:  # no NaN, no inf: SQLite takes milliseconds
            raise ValueError(f"busy_timeout must be a number of seconds, not {busy_timeout!r}")
        self.path = Path(path)
        self.synchronous = synchronous
        self.busy_timeout = busy_timeout
        self.read_only = read_only
        self._clock = clock
        #: Transactions committed by this store's writer (appends share them).
        self.transactions = 0
        #: Appends committed by this store's writer.
        self.appends = 0
        self._closed = False
        self._leases_file: int | None = None  # `claim_leases`: the locked file's descriptor
        # meeting_id -> version as this store's writer last committed it (writer thread only)
        self._versions: dict[str, int] = {}
        self._position: int | None = None  # the last position it committed (same thread)
        self._check_file()
        self._readers: list[sqlite3.Connection] = []
        # Guards `_closed` (so that nothing is queued or read after close() let go),
        # the pool of read connections and the count of reads running.
        self._lock = threading.Lock()
        self._reads = 0  # reads running in worker threads (under the lock)
        self._reads_done = threading.Condition(self._lock)
        writer = self._connect()
        self._max_rows = _max_rows(writer)
        # The largest record a row holds (SQLite's length limit, less room for the rest)
        self._max_record = writer.getlimit(sqlite3.SQLITE_LIMIT_LENGTH) - 1024
        try:
            self._prepare(writer)
        except BaseException:
            writer.close()
            raise
        self._queue: queue.SimpleQueue[_Append | object] = queue.SimpleQueue()
        self._committed = threading.Event()  # set by the writer: there is something to copy
        self._transaction = threading.Lock()  # held by the writer for each transaction
        self._closing = threading.Event()
        if read_only:  # no writer, no checkpointer: the connection reads
            self._readers.append(writer)
            return
        self._thread = threading.Thread(
            target=self._write_loop,
            args=(writer,),
            name=f"meetcore-sqlite {self.path}",
            daemon=True,
        )
        self._thread.start()
        self._checkpointer = threading.Thread(
            target=self._checkpoint_loop,
            name=f"meetcore-sqlite checkpoints {self.path}",
            daemon=True,
        )
        self._checkpointer.start()

    def __repr__(self) -> str:
        return f"SQLiteStore({str(self.path)!r}, synchronous={self.synchronous!r})"

    # -- opening -------------------------------------------------------------------

    def _fail(self, reason: str) -> StoreError:
        return StoreError(f"{self.path}: {reason}")

    def _check_file(self) -> None:
        """Refuse, with one clear line, what SQLite would only report later or cryptically."""
        path = self.path
        if "\0" in str(path):  # the OS takes none: every call below would raise ValueError
            raise self._fail("cannot use this path: embedded null byte")
        try:
            if path.is_dir():
                raise self._fail("is a directory, not a database file")
            if not path.parent.is_dir():
                raise self._fail(f"directory {path.parent} does not exist")
        except OSError as exc:  # too long, no permission
            raise self._fail(f"cannot use this path: {exc.strerror or exc}") from None
        try:
            size = path.stat().st_size
        except FileNotFoundError:
            if self.read_only:
                raise StoreError(f"no such store: {path} does not exist") from None
            return  # a new store
        except OSError as exc:
            raise self._fail(f"cannot read it: {exc.strerror or exc}") from None
        if size == 0:
            return
        try:
            with path.open("rb") as file:
                header = file.read(100)
        except OSError as exc:
            raise self._fail(f"cannot read it: {exc.strerror or exc}") from None
        if not header.startswith(_HEADER):
            raise self._fail("not an SQLite database, so not a meetcore store")
        if len(header) < 100:
            raise self._fail("the SQLite file is truncated (shorter than its header)")
        page_size = int.from_bytes(header[16:18], "big")
        page_size = 65536 if page_size == 1 else page_size
        pages = int.from_bytes(header[28:32], "big")
        counter_valid = header[24:28] == header[92:96]
        wal = path.with_name(path.name + "-wal")
        # With a WAL file, a checkpoint may be growing the file right now: trust SQLite.
        if counter_valid and not wal.exists() and size < pages * page_size:
            raise self._fail(
                f"the SQLite file is truncated ({size} bytes, its header says {pages * page_size})"
            )

    def _snapshot(self) -> _Snapshot | None:
        """The main file, if an immutable connection may read it: None when it has a
        `-wal` or `-shm` file (a writer has it open, or left them), or is gone."""
        if any(self.path.with_name(self.path.name + end).exists() for end in ("-wal", "-shm")):
            return None
        try:
            status = self.path.stat()
        except OSError:
            return None
        return status.st_ino, status.st_size, status.st_mtime_ns

    def _trusted(self, connection: sqlite3.Connection) -> bool:
        """Whether what `connection` read holds: an immutable one trusts the file as it
        was when it was opened."""
        snapshot = getattr(connection, "snapshot", None)
        return snapshot is None or self._snapshot() == snapshot

    def _connect(self) -> sqlite3.Connection:
        snapshot = self._snapshot() if self.read_only else None
        target: str | Path = self.path
        if self.read_only:  # never created, never written; immutable when it has no WAL
            target = f"file://{quote(str(self.path.absolute()))}?mode=ro"
            target += "&immutable=1" if snapshot is not None else ""
        try:
            connection = sqlite3.connect(
                target,
                timeout=self.busy_timeout,
                isolation_level=None,  # we issue BEGIN / COMMIT ourselves
                check_same_thread=False,
                uri=self.read_only,
                factory=_Connection,
            )
        except sqlite3.Error as exc:
            raise self._fail(f"cannot open it: {exc}") from None
        connection.snapshot = snapshot
        try:
            connection.execute(f"PRAGMA busy_timeout = {int(self.busy_timeout * 1000)}")
            connection.execute(f"PRAGMA synchronous = {self.synchronous}")
        except sqlite3.Error as exc:
            connection.close()
            raise self._sqlite_error(exc) from None
        return connection

    def _sqlite_error(self, exc: sqlite3.Error) -> StoreError:
        if isinstance(exc, sqlite3.DatabaseError) and "not a database" in str(exc):
            return self._fail("not an SQLite database, so not a meetcore store")
        if isinstance(exc, sqlite3.DatabaseError) and "malformed" in str(exc):
            return self._fail(f"the database is corrupt ({exc}); restore it from a backup")
        return self._fail(str(exc))

    def _prepare(self, connection: sqlite3.Connection) -> None:
        """Check the file's schema version and create the schema in a new file (read-only:
        refuse a file that has none)."""
        try:
            # A file that is not ours (or from a newer meetcore) is refused as it is,
            # before WAL mode changes its header.
            version = self._schema(connection)
            if self.read_only:
                if version == 0:
                    raise self._fail("an empty SQLite database, not a meetcore store")
                connection.execute("SELECT count(*) FROM records WHERE position = 0").fetchone()
                return
            mode = connection.execute("PRAGMA journal_mode = WAL").fetchone()[0]
            if str(mode).lower() != "wal":
                raise self._fail(f"cannot use WAL mode (journal mode is {mode})")
            if version < SCHEMA_VERSION:
                connection.execute("BEGIN IMMEDIATE")
                try:
                    version = self._schema(connection)  # again, holding the write lock
                    if version == 0:
                        connection.execute(f"PRAGMA application_id = {APPLICATION_ID}")
                    for step in _MIGRATIONS[version:]:  # a new file, or an older schema
                        connection.execute(step)
                    connection.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
                    connection.execute("COMMIT")
                except BaseException:
                    connection.execute("ROLLBACK")
                    raise
            connection.execute("SELECT count(*) FROM records WHERE position = 0").fetchone()
            connection.execute("PRAGMA wal_autocheckpoint = 0")  # the checkpointer's job
        except sqlite3.Error as exc:
            raise self._sqlite_error(exc) from None

    def _schema(self, connection: sqlite3.Connection) -> int:
        """The file's schema version: 0 for a new file; refuses a file that is not ours
        or that a newer meetcore wrote."""
        version = int(connection.execute("PRAGMA user_version").fetchone()[0])
        application = int(connection.execute("PRAGMA application_id").fetchone()[0])
        if version == 0 and application == 0:
            if connection.execute("SELECT count(*) FROM sqlite_master").fetchone()[0]:
                raise self._fail("an SQLite database of another application, not a meetcore store")
            return 0
        if application != APPLICATION_ID:
            raise self._fail("an SQLite database of another application, not a meetcore store")
        if version > SCHEMA_VERSION:
            raise self._fail(
                f"was written by a newer meetcore (schema {version}, this one reads up to "
                f"{SCHEMA_VERSION}): upgrade meetcore-sqlite"
            )
        return version

    # -- writing -------------------------------------------------------------------

    async def append(
        self,
        meeting_id: str,
        expected_version: int,
        events: Sequence[AnyEvent],
        cause: AnyCommand | None,
    ) -> list[Record]:
        check_append(meeting_id, events)
        done, wake = _waiter()
        item = _Append(meeting_id, expected_version, events, cause, done, wake)
        self._enqueue(item)
        try:
            await done.wait()
        except BaseException:
            # Cancelled: once queued, the append happens or not whatever the caller
            # does, so wait (one commit) until it is settled before giving up.
            with anyio.CancelScope(shield=True):
                await done.wait()
            raise
        return item.result()

    def _enqueue(self, item: _Append | _Checkpoint) -> None:
        """Hand `item` to the writer thread, unless the store is closed (checked under
        the lock that close() takes: an item queued after the writer stopped would wait
        for ever) or read-only."""
        if self.read_only:
            raise self._fail("opened read-only: it takes no appends nor checkpoints")
        with self._lock:
            if self._closed:
                raise self._fail("the store is closed")
            self._queue.put(item)

    def _write_loop(self, connection: sqlite3.Connection) -> None:
        try:
            last = 0  # appends in the last group
            item = self._queue.get()
            while item is not _STOP:
                if isinstance(item, _Checkpoint):
                    with self._transaction:
                        self._save(connection, item)
                    self._report([item])
                    item = self._queue.get()
                    continue
                assert isinstance(item, _Append)
                group, after = self._gather(item, last)
                last = len(group)
                with self._transaction:
                    self._commit(connection, group)
                self._report(group)
                item = self._queue.get() if after is None else after
        finally:
            connection.close()
            # If the writer stops before the stop item (a BaseException), what is still
            # queued must not wait for ever: nothing is queued once close() began.
            leftover: list[_Append | _Checkpoint] = []
            while True:
                try:
                    item = self._queue.get_nowait()
                except queue.Empty:
                    break
                if isinstance(item, _Append | _Checkpoint):
                    item.error = self._fail("the store is closed")
                    leftover.append(item)
            self._report(leftover)

    def _gather(self, first: _Append, last: int) -> tuple[list[_Append], object | None]:
        """The group that starts with `first`: the appends queued after it, up to a
        checkpoint write or the stop, which comes back second (None if neither came).

        At FULL and EXTRA a commit waits for an fsync, 0.1 to 10 ms or more by the
        disk, so every append queued goes in (up to MAX_GROUP) to share one. At NORMAL
        a commit costs by the row: the group is about half the appends in flight (those
        queued, and the last group's, whose callers queue their next ones once woken),
        so that the event loop wakes one half while SQLite commits the other instead of
        each thread waiting for the other (docs/storage.md). Appends that come on
        their own, not in answer to a commit, are soon taken whole all the same: the
        limit grows toward the queue.
        """
        limit = MAX_GROUP
        if self.synchronous == "NORMAL":
            limit = min(MAX_GROUP, (self._queue.qsize() + 1 + last + 1) // 2)
        group = [first]
        while len(group) < limit:
            try:
                item = self._queue.get_nowait()
            except queue.Empty:
                break
            if not isinstance(item, _Append):  # a checkpoint write, or the stop
                return group, item
            group.append(item)
        return group, None

    def _commit(self, connection: sqlite3.Connection, group: list[_Append]) -> None:
        """Write the group's appends that fit, all or none; set each one's outcome.

        Fast path: when this writer's cache (the versions it last committed, the last
        position) vouches for every append, all the rows go in one INSERT statement
        outside any explicit transaction, so SQLite inserts and commits them in one
        call, which runs without the GIL (the event loop goes on meanwhile). If another
        process wrote since, a row collides with its position or (meeting_id, version)
        and the statement writes nothing.

        Otherwise, and after such a collision, in a transaction: each append the cache
        cannot vouch for is checked against the database. If the cache was stale, the
        unique key refuses a row: then the whole group is done again, each append
        checked against the database.
        """
        try:
            plan = self._plan(group, None)
            if plan is not None:
                try:
                    _insert(connection, plan.rows, self._max_rows)
                except sqlite3.IntegrityError:  # another process wrote: the careful way
                    self._versions.clear()
                    plan = None
            if plan is None:
                self._careful(connection, group)
            else:
                self._settle(group, plan)
        except Exception as exc:  # busy past busy_timeout, disk full, I/O, corrupt; a bug
            if connection.in_transaction:
                with contextlib.suppress(sqlite3.Error):
                    connection.execute("ROLLBACK")
            self._versions.clear()
            self._position = None
            if isinstance(exc, sqlite3.Error):
                error = self._sqlite_error(exc)
            else:  # the writer goes on: every caller of the group hears of it
                log.exception("meetcore-sqlite: a group of %d appends failed", len(group))
                error = self._fail(f"the append failed: {exc!r}")
            for item in group:
                item.error = error

    def _careful(self, connection: sqlite3.Connection, group: list[_Append]) -> None:
        """Commit the group in a transaction, asking the database what the cache cannot
        vouch for (about every append, if the cache proves stale)."""
        try:
            self._begin(connection)
            plan = self._plan(group, connection)
            assert plan is not None
            _insert(connection, plan.rows, self._max_rows)
        except sqlite3.IntegrityError:  # the cache was stale: another process wrote
            connection.execute("ROLLBACK")
            self._versions.clear()
            self._begin(connection)
            plan = self._plan(group, connection, careful=True)
            assert plan is not None
        connection.execute("COMMIT")
        self._settle(group, plan)

    def _settle(self, group: list[_Append], plan: _Plan) -> None:
        """The group's plan is committed: remember it, and give each append its outcome."""
        if len(self._versions) >= MAX_REMEMBERED:
            self._versions.clear()
        self._versions.update(plan.numbered.versions)
        self._position = plan.numbered.position
        self.appends += plan.numbered.settle(group)
        self.transactions += 1
        self._committed.set()

    @staticmethod
    def _begin(connection: sqlite3.Connection) -> None:
        # IMMEDIATE: take the file's write lock now (waiting up to busy_timeout for
        # another process), so positions are handed out in commit order.
        connection.execute("BEGIN IMMEDIATE")

    def _plan(
        self, group: list[_Append], connection: sqlite3.Connection | None, *, careful: bool = False
    ) -> _Plan | None:
        """Number the records of the group's appends that fit; conflicts for the others,
        and a `StoreError` for one the log cannot hold (not encodable, too big).

        Without a connection, from this writer's cache alone: None when an append needs
        the database (a meeting the cache does not know, unless the append expects a
        new one; a meeting that looks like a conflict; an append of no events) or the
        rows are too many for one statement. With one, in a transaction, the database
        is asked what the cache cannot vouch for; when `careful`, about every append,
        and each one is inserted at once so that the next check sees it (the caller
        inserts the rows otherwise).
        """
        now = self._clock()
        if connection is not None:
            position = int(connection.execute(_POSITION).fetchone()[0])
        elif self._position is not None:
            position = self._position
        else:
            return None
        numbered = NumberedGroup(position, now, self._fail, self._encode)
        versions = numbered.versions  # as this group leaves them
        rows: _Rows = []
        for item in group:
            meeting_id = item.meeting_id
            actual = versions.get(meeting_id)
            if actual is None:
                actual = None if careful or not item.events else self._versions.get(meeting_id)
                if actual is None and connection is None and item.expected == 0 and item.events:
                    # A new meeting, as far as this writer knows. If it is not, its
                    # version 1 is in the file and the statement collides with it.
                    actual = 0
                if actual != item.expected:
                    if connection is None:
                        return None
                    actual = int(connection.execute(_VERSION, (meeting_id,)).fetchone()[0])
            for r, record in numbered.number(item, actual):
                rows += (r.position, meeting_id, r.version, now, record)
            if careful:
                assert connection is not None
                _insert(connection, rows, self._max_rows)
                rows.clear()
        if connection is None and len(rows) > 5 * self._max_rows:
            return None
        # No savepoints needed: versions have no gaps, so a stale check fails on an
        # append's first row, and any other error abandons the whole transaction.
        return _Plan(numbered, rows)

    def _encode(self, record: Record) -> bytes:
        """`record` as a row holds it; `ValueError` past SQLite's length limit."""
        encoded = encode_msgpack(record)
        if len(encoded) > self._max_record:
            raise ValueError(
                f"a record of {len(encoded):,} bytes is over SQLite's limit ({self._max_record:,})"
            )
        return encoded

    def _save(self, connection: sqlite3.Connection, item: _Checkpoint) -> None:
        """Write one checkpoint in its own transaction (compared first if conditional)."""
        try:
            self._begin(connection)
            current = connection.execute(_LOAD, (item.name,)).fetchone()
            item.swapped = not item.conditional or (
                (None if current is None else bytes(current[0])) == item.expected
            )
            if item.swapped:
                connection.execute(_SAVE, (item.name, item.value))
            connection.execute("COMMIT")
        except sqlite3.Error as exc:
            if connection.in_transaction:
                with contextlib.suppress(sqlite3.Error):
                    connection.execute("ROLLBACK")
            item.swapped = False
            item.error = self._sqlite_error(exc)

    @staticmethod
    def _report(group: Sequence[_Append | _Checkpoint]) -> None:
        """Wake the callers: one callback per event loop, not one per append."""
        by_loop: dict[_Wake, list[_Done]] = {}
        wake: _Wake | None = None
        events: list[_Done] = []
        for item in group:
            if item.wake != wake:  # seldom: one event loop is the rule
                wake = item.wake
                events = by_loop.setdefault(wake, [])
            events.append(item.done)
        for wake, events in by_loop.items():
            with contextlib.suppress(RuntimeError):  # that event loop is gone
                wake(_setter(events))

    def _checkpoint_loop(self) -> None:
        """Copy the WAL into the database file as commits come, at most every
        CHECKPOINT_INTERVAL, without holding up the writer (PASSIVE: it copies what no
        reader still needs, and the next checkpoint does the rest).

        SQLite starts the WAL again from its beginning only at a commit that finds it
        copied whole, which never happens while commits keep coming during checkpoints:
        under steady load the file would grow without end (hundreds of MB a minute), and
        every commit would pay the file system for extending it. So when a pass finds
        the WAL holding RESTART_FRAMES pages or more, a second pass follows at once,
        between two of the writer's transactions: it copies what was committed during
        the first (little), and the next commit starts the WAL again.
        """
        connection: sqlite3.Connection | None = None
        try:
            while True:
                self._committed.wait()
                if self._closed:
                    return
                self._committed.clear()
                try:
                    if connection is None:
                        connection = self._connect()
                    busy, frames = self._checkpoint_pass(connection)
                    if frames >= RESTART_FRAMES and not busy:
                        with self._transaction:
                            self._checkpoint_pass(connection)
                except sqlite3.Error as exc:  # busy (another process checkpoints), or worse
                    log.debug("checkpoint of %s skipped: %s", self.path, exc)
                if self._closing.wait(CHECKPOINT_INTERVAL):
                    return
        finally:
            if connection is not None:
                connection.close()

    @staticmethod
    def _checkpoint_pass(connection: sqlite3.Connection) -> tuple[bool, int]:
        """One PASSIVE checkpoint: whether another one was running, and how many frames
        the WAL held."""
        busy, frames, _copied = connection.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
        return bool(busy), int(frames)

    # -- reading -------------------------------------------------------------------

    async def read(self, meeting_id: str, after_version: int = 0) -> list[Record]:
        if not is_text(meeting_id):  # no such meeting can be stored
            return []
        return await self._read(_READ, (meeting_id, min(max(after_version, 0), _MAX_INTEGER)))

    async def read_all(self, after_position: int = 0, limit: int = 1000) -> list[Record]:
        if limit <= 0:
            return []
        after = min(max(after_position, 0), _MAX_INTEGER)
        return await self._read(_READ_ALL, (after, min(limit, _MAX_INTEGER)))

    async def _read(self, sql: str, parameters: tuple[object, ...]) -> list[Record]:
        if self._closed:
            raise self._fail("the store is closed")
        return await anyio.to_thread.run_sync(self._read_sync, sql, parameters)

    def _read_sync(self, sql: str, parameters: tuple[object, ...]) -> list[Record]:
        rows = self._rows_sync(sql, parameters)
        try:
            return [decode_msgpack(row[0]) for row in rows]
        except InvalidLog:  # say which record
            for record, position in rows:
                try:
                    decode_msgpack(record)
                except InvalidLog as exc:
                    where = f"{self.path}: the record at position {position}"
                    raise InvalidLog(f"{where}: {exc}") from None
            raise

    def _rows_sync(self, sql: str, parameters: tuple[object, ...]) -> list[Any]:
        with self._lock:
            if self._closed:  # close() came while this read waited for a worker thread
                raise self._fail("the store is closed")
            self._reads += 1  # close() waits for it
            connection = self._readers.pop() if self._readers else None
        try:
            for _ in range(MAX_REREADS):
                if connection is None:
                    connection = self._connect()
                try:
                    rows = connection.execute(sql, parameters).fetchall()
                except sqlite3.Error:
                    if self._trusted(connection):
                        raise
                else:
                    if self._trusted(connection):
                        break
                # An immutable read while a writer changed the file: read it again
                # (with a new connection: the old one trusts what it cached).
                connection.close()
                connection = None
            else:
                raise self._fail("the file kept changing while it was read")
        except sqlite3.Error as exc:
            if connection is not None:
                connection.close()
                connection = None
            raise self._sqlite_error(exc) from None
        finally:
            with self._lock:
                if connection is not None:
                    if self._closed:
                        connection.close()
                    else:
                        self._readers.append(connection)
                self._reads -= 1
                self._reads_done.notify_all()
        return rows

    def _wait_for_reads(self) -> None:
        with self._reads_done:
            self._reads_done.wait_for(lambda: self._reads == 0)

    # -- checkpoints (`meetcore.Checkpoints`) ------------------------------------------

    async def load_checkpoint(self, name: str) -> bytes | None:
        if self._closed:
            raise self._fail("the store is closed")
        rows = await anyio.to_thread.run_sync(self._rows_sync, _LOAD, (name,))
        return bytes(rows[0][0]) if rows else None

    async def save_checkpoint(self, name: str, value: bytes) -> None:
        await self._checkpoint(name, None, value, conditional=False)

    async def swap_checkpoint(self, name: str, expected: bytes | None, value: bytes) -> bool:
        return await self._checkpoint(name, expected, value, conditional=True)

    async def _checkpoint(
        self, name: str, expected: bytes | None, value: bytes, *, conditional: bool
    ) -> bool:
        """Queue a checkpoint write for the writer thread; True if it was written."""
        done, wake = _waiter()
        item = _Checkpoint(
            name, expected, bytes(value), conditional=conditional, done=done, wake=wake
        )
        self._enqueue(item)
        try:
            await done.wait()
        except BaseException:
            with anyio.CancelScope(shield=True):  # queued: it happens, or not, regardless
                await done.wait()
            raise
        if item.error is not None:
            raise item.error
        return item.swapped

    # -- leases --------------------------------------------------------------------

    @property
    def leases_path(self) -> Path:
        """The file whose lock says which process keeps the store's leases: beside the
        database's real path, as SQLite names its -wal file (a symbolic link to the
        database leads to the same lock)."""
        real = self.path.resolve()
        return real.with_name(real.name + "-leases")

    async def claim_leases(self, holder: str) -> None:
        """`meetcore.ExclusiveLeases`: lock `leases_path` (an OS lock, gone with the
        process however it ends) and write `holder` in it; `meetcore.StoreBusy`, naming
        the holder written there, when another store object or process has it. A
        read-only store keeps no leases: nothing to claim."""
        if self.read_only or self._leases_file is not None:
            return
        import fcntl  # POSIX: meetcore serves on Linux and macOS

        try:
            descriptor = self._open_leases_file()
        except OSError as error:
            why = error.strerror or str(error)
            raise self._fail(
                f"cannot open {self.leases_path.name} to claim the leases: {why}"
            ) from None
        try:
            fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            other = os.read(descriptor, 500).decode(errors="replace").strip()
            os.close(descriptor)
            raise StoreBusy(
                f"{self.path} is already served by {other or 'another process'}: one "
                "process serves a SQLite file (stop it first, or use PostgreSQL for "
                "several nodes: docs/deploy.md)"
            ) from None
        except BaseException:
            os.close(descriptor)
            raise
        os.ftruncate(descriptor, 0)
        os.write(descriptor, f"{holder}\n".encode())
        self._leases_file = descriptor

    def _open_leases_file(self) -> int:
        """Open `leases_path` for reading and writing, creating it with the database's
        own permissions (and, made by root, its owner), as SQLite creates the -wal and
        -shm files: whoever may write the database may claim it, whichever user served
        it last."""
        try:
            descriptor = os.open(self.leases_path, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:
            return os.open(self.leases_path, os.O_RDWR)
        try:
            database = os.stat(self.path)
            os.fchmod(descriptor, stat.S_IMODE(database.st_mode) & 0o666)
            if os.geteuid() == 0:
                os.fchown(descriptor, database.st_uid, database.st_gid)
        except OSError:
            pass  # the file stays the creator's alone: no worse than before
        return descriptor

    async def release_leases(self) -> None:
        """End this store's claim (`claim_leases`): closing the file unlocks it."""
        descriptor, self._leases_file = self._leases_file, None
        if descriptor is not None:
            os.ftruncate(descriptor, 0)
            os.close(descriptor)

    # -- closing -------------------------------------------------------------------

    async def close(self) -> None:
        """Finish the queued appends, then close every connection. Safe to call twice."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
        self._closing.set()
        self._committed.set()  # wakes the checkpointer, which sees the store closed
        # One connection after the other: the last to close copies the WAL into the
        # file and deletes it, which two closing at once would each leave to the other.
        # Reads already running finish first (they close their connections themselves).
        with anyio.CancelScope(shield=True):
            await anyio.to_thread.run_sync(self._wait_for_reads)
            if not self.read_only:
                await anyio.to_thread.run_sync(self._checkpointer.join)
                self._queue.put(_STOP)
                await anyio.to_thread.run_sync(self._thread.join)
        with self._lock:
            readers, self._readers = self._readers, []
        for connection in readers:
            connection.close()
        await self.release_leases()
