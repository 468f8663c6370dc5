"""`Engine`: the pure core run against a store, with plugins, subscriptions and leases.

    async with Engine.open(store="memory://") as engine:
        records = await engine.execute(InitMeeting(meeting_id="abc-def-ghi"))

`execute` stamps the command's `at`, loads the meeting (cached after the first
time), asks policy plugins, decides, appends with optimistic concurrency (on
`Conflict` it reloads and decides again, backing off, for a few seconds at most),
applies the events, and hands the records to subscribers and observers. Commands
for one meeting run one at a time; meetings run in parallel.

The cache is bounded: the least recently used meetings that nothing uses are
forgotten (`cached_meetings`), and a meeting that does not exist is never kept.
"""

from __future__ import annotations

import contextlib
import inspect
import logging
import math
import os
import random
import socket
import time
from collections import deque
from collections.abc import AsyncIterator, Callable, Iterable, Sequence
from contextlib import asynccontextmanager
from itertools import chain, islice
from typing import Any, NamedTuple

import anyio
import msgspec
import pluggy

from meetcore._codes import LeaveReason, Rejected
from meetcore._decider import _evolve, decide
from meetcore._plugins import open_store, plugin_manager
from meetcore._principal import Principal
from meetcore._record import Record
from meetcore._state import MeetingState, Participant
from meetcore._store import (
    Conflict,
    EventStore,
    ExclusiveLeases,
    SharedLeases,
    WatchableStore,
    wall_clock_ms,
)
from meetcore.commands import AnyCommand, Join, Leave
from meetcore.events import (
    AnyEvent,
    Entrant,
    EntryRequested,
    EntryWithdrawn,
    ParticipantJoined,
    ParticipantLeft,
)

__all__ = ["Engine"]

log = logging.getLogger("meetcore.engine")

#: After its first `Conflict` in a row `execute` decides again at once; before each next
#: try it waits a random time up to a ceiling that starts here and doubles (seconds)...
FIRST_PAUSE = 0.002
#: ...up to this one (jittered exponential backoff).
MAX_PAUSE = 0.25
#: Records kept in memory per subscribed meeting, so live subscribers need no store read.
RECENT = 256
#: Meetings `_evict` looks at in one call (those in use are moved to the back).
EVICTION_SCAN = 16


class _Gate:
    """One meeting's lock: commands go through one at a time, in arrival order.

    Free when nobody waits: no event, no checkpoint, no backend lookup (an anyio Lock
    costs about a microsecond a command), and no queue until someone has to wait.
    """

    __slots__ = ("_busy", "_waiters")

    def __init__(self) -> None:
        self._busy = False
        self._waiters: deque[anyio.Event] | None = None

    @property
    def held(self) -> bool:
        """Someone holds the gate (and maybe others wait for it)."""
        return self._busy

    async def __aenter__(self) -> None:
        if not self._busy:
            self._busy = True
            return
        if self._waiters is None:
            self._waiters = deque()
        ticket = anyio.Event()
        self._waiters.append(ticket)
        try:
            await ticket.wait()  # set by the holder as it hands the gate over
        except BaseException:
            if ticket.is_set():  # handed over just as this waiter was cancelled: pass it on
                self._release()
            else:
                self._waiters.remove(ticket)
            raise

    async def __aexit__(self, *exc_info: object) -> None:
        self._release()

    def _release(self) -> None:
        if self._waiters:
            self._waiters.popleft().set()  # still busy: the next one holds it now
        else:
            self._busy = False


class _Meeting:
    """What the engine keeps of one meeting while it uses it or has it cached."""

    __slots__ = ("command_ids", "loaded", "lock", "recent", "signal", "state", "subscribers")

    def __init__(self) -> None:
        self.lock = _Gate()
        self.state: MeetingState | None = None
        # `state` is the store's as far as this engine knows (False: read the store first)
        self.loaded = False
        # command_id -> (first version, last version) of the records it produced
        self.command_ids: dict[str, tuple[int, int]] | None = None  # made for the first one
        self.recent: deque[Record] | None = None
        self.subscribers = 0
        self.signal: anyio.Event | None = None  # set when records come: subscribers wait on it

    @property
    def idle(self) -> bool:
        """No command runs or waits, nobody subscribes: the engine may forget it."""
        return not self.lock.held and not self.subscribers

    def wake(self) -> None:
        """Wake the subscribers: there are records to read."""
        signal = self.signal
        if signal is not None:
            self.signal = None
            signal.set()


# A shallow copy of a command (the one `copy.copy` finds, without its dispatch).
_copy: Callable[[AnyCommand], AnyCommand] = msgspec.Struct.__copy__  # type: ignore[attr-defined]


def _share_with_events(cause: AnyCommand, events: Sequence[AnyEvent]) -> None:
    """Make the cause hold the very objects its events hold where the values are equal:
    the meeting id (the events of a meeting carry its state's), and for a join the
    metaData that `decide` JSON round-tripped and the permission set shared by all who
    hold it. The log then keeps one copy of each, and no dict the caller can change."""
    if not events:
        return
    msgspec.structs.force_setattr(cause, "meeting_id", events[0].meeting_id)
    if type(cause) is Join:
        for event in events:
            if isinstance(event, Entrant):
                msgspec.structs.force_setattr(cause, "meta_data", event.meta_data)
                msgspec.structs.force_setattr(cause, "permissions", event.permissions)


async def _claim_leases(store: EventStore) -> None:
    """Claim the leases of a store that cannot share them (see `ExclusiveLeases`); a store
    that can do neither is warned about."""
    if isinstance(store, ExclusiveLeases):
        since = time.strftime("%Y-%m-%d %H:%M:%S %Z")
        await store.claim_leases(f"pid {os.getpid()} on {socket.gethostname()}, since {since}")
    else:
        log.warning(
            "%r keeps no leases of its own (neither ExclusiveLeases nor SharedLeases): a "
            "second engine keeping leases on it would expire this one's participants",
            store,
        )


async def _back_off(conflict: Conflict, tries: int, deadline: float) -> None:
    """Before deciding again after the `tries`-th `Conflict` in a row: nothing after the
    first, then a random pause up to FIRST_PAUSE, doubling each time up to MAX_PAUSE,
    never past `deadline` (anyio time). Once it has passed, `conflict` is raised."""
    now = anyio.current_time()
    if now >= deadline:
        conflict.add_note(f"Engine.execute tried {tries} times, losing to other writers")
        raise conflict
    if tries > 1:
        ceiling = min(MAX_PAUSE, FIRST_PAUSE * 2 ** (tries - 2))
        await anyio.sleep(min(random.uniform(0, ceiling), deadline - now))


class _Unsettled(NamedTuple):
    """An append that was interrupted: `events` events after `version`, maybe written."""

    meeting_id: str
    version: int
    events: int


class Engine:
    """Runs commands against an `EventStore`; see the module docstring."""

    def __init__(
        self,
        store: EventStore,
        plugins: pluggy.PluginManager,
        *,
        clock: Callable[[], int] = wall_clock_ms,
        lease_ttl: float = 15.0,
        retry_conflicts_for: float = 5.0,
        cached_meetings: int = 10_000,
    ) -> None:
        if not 0 <= retry_conflicts_for < math.inf:
            raise ValueError(f"retry_conflicts_for must be seconds >= 0, not {retry_conflicts_for}")
        if cached_meetings < 0:
            raise ValueError(f"cached_meetings must be 0 or more, not {cached_meetings}")
        self.store = store
        self.plugins = plugins
        self.clock = clock
        self.lease_ttl_ms = int(lease_ttl * 1000)
        self.retry_conflicts_for = retry_conflicts_for
        self.cached_meetings = cached_meetings
        # The meetings in use or cached, least recently used first: `_meeting` moves a
        # meeting to the end, `_done` forgets what does not exist, `_evict` the oldest.
        self._meetings: dict[str, _Meeting] = {}
        # meeting_id -> connection_id -> when its lease was last renewed (clock ms); who
        # holds it is looked up in the meeting when it expires
        self._leases: dict[str, dict[str, int]] = {}
        # With a store that keeps the leases for every engine on it (several nodes), the
        # store decides what expired; renewals are sent to it in batches.
        self._shared_leases = store if isinstance(store, SharedLeases) else None
        self._renewals: set[tuple[str, str]] = set()
        self._observer_send, self._observer_receive = anyio.create_memory_object_stream[
            Sequence[Record] | _Unsettled
        ](math.inf)
        self._pending_observations = 0
        self._observed = anyio.Event()
        for name in ("meetcore_records_appended", "meetcore_startup", "meetcore_shutdown"):
            for impl in getattr(plugins.hook, name).get_hookimpls():
                if impl.wrapper or impl.hookwrapper:
                    raise pluggy.PluginValidationError(
                        impl.plugin, f"{impl.plugin_name}: {name} cannot be a wrapper"
                    )
        # The plugins are fixed when the engine opens: skip hooks nobody implements.
        self._has_observers = bool(plugins.hook.meetcore_records_appended.get_hookimpls())
        self._has_policies = bool(plugins.hook.meetcore_check_command.get_hookimpls())

    # -- opening and closing -----------------------------------------------------

    @classmethod
    @asynccontextmanager
    async def open(
        cls,
        store: str | EventStore = "memory://",
        plugins: Iterable[object] = (),
        *,
        autoload: bool | None = None,
        clock: Callable[[], int] = wall_clock_ms,
        lease_ttl: float = 15.0,
        sweep_leases: bool = True,
        retry_conflicts_for: float = 5.0,
        cached_meetings: int = 10_000,
    ) -> AsyncIterator[Engine]:
        """Open an engine on `store` (a URL such as "sqlite:///meetcore.db", or a store
        object, which the caller keeps and closes) with the installed plugins and `plugins`.

        Connections still joined in the log get a fresh lease, so that a participant
        whose node crashed leaves (1001) unless its client comes back and renews. A store
        with the `SharedLeases` capability keeps the leases itself, for every engine on
        it; a `WatchableStore` tells the engine what other writers appended. Any other
        store's leases are this engine's alone: with `sweep_leases` it claims them
        (`ExclusiveLeases`; `StoreBusy` when another engine has, naming it) and keeps
        the claim until it closes.

        `retry_conflicts_for`: how long (seconds) `execute` keeps trying a command that
        loses races to other writers before it raises `Conflict`. `cached_meetings`: how
        many meetings nothing uses the engine keeps in memory (the least recently used
        go first; meetings in use always stay).
        """
        pm = plugin_manager(plugins, autoload=autoload)
        owned = isinstance(store, str)
        claimed = False
        opened = open_store(pm, store) if isinstance(store, str) else store
        try:
            engine = cls(
                opened,
                pm,
                clock=clock,
                lease_ttl=lease_ttl,
                retry_conflicts_for=retry_conflicts_for,
                cached_meetings=cached_meetings,
            )
            if sweep_leases and engine._shared_leases is None:
                await _claim_leases(opened)
                claimed = True
            async with anyio.create_task_group() as tasks:
                tasks.start_soon(engine._observe)
                if isinstance(opened, WatchableStore):
                    tasks.start_soon(engine._watch_store, opened)
                await engine._recover_leases()
                if sweep_leases or engine._shared_leases is not None:
                    tasks.start_soon(engine._sweep_leases, sweep_leases)
                await engine._call_each("meetcore_startup", engine=engine)
                try:
                    yield engine
                finally:
                    with anyio.CancelScope(shield=True):
                        await engine.flush()
                        await engine._call_each("meetcore_shutdown", engine=engine)
                        engine._observer_send.close()
                    tasks.cancel_scope.cancel()
        except BaseExceptionGroup as group:
            # The background tasks never raise, so a group holds the caller's one
            # exception: give it back as raised, not wrapped by our task group.
            if len(group.exceptions) == 1:
                raise group.exceptions[0] from None
            raise
        finally:
            with anyio.CancelScope(shield=True):
                if claimed and isinstance(opened, ExclusiveLeases):
                    await opened.release_leases()
                if owned:
                    await opened.close()

    # -- commands ----------------------------------------------------------------

    async def execute(
        self, command: AnyCommand, principal: Principal | None = None
    ) -> list[Record]:
        """Run `command`; returns the records it appended.

        Raises `Rejected` when the rules or a policy plugin refuse it (nothing is
        appended), `Conflict` when other writers kept winning for `retry_conflicts_for`
        seconds (the last one the store raised, with its versions). A command whose
        `command_id` was seen before returns the first execution's records again.
        """
        stamped = _copy(command)
        msgspec.structs.force_setattr(stamped, "at", self.clock())
        meeting_id = command.meeting_id
        meeting = self._meeting(meeting_id)
        try:
            async with meeting.lock:
                tries = 0
                deadline = math.inf
                while True:
                    state = await self._load(meeting_id, meeting)
                    seen = meeting.command_ids
                    if command.command_id is not None and seen and command.command_id in seen:
                        first, last = seen[command.command_id]
                        earlier = await self.store.read(meeting_id, first - 1)
                        return [r for r in earlier if r.version <= last]
                    if self._has_policies:
                        vetoes = self.plugins.hook.meetcore_check_command(
                            command=stamped, state=state, principal=principal
                        )
                        for veto in vetoes:  # an async policy's coroutine: run it, it may refuse
                            if inspect.isawaitable(veto):
                                await veto
                    events = decide(state, stamped)
                    _share_with_events(stamped, events)
                    version = state.version if state is not None else 0
                    try:
                        records = await self.store.append(meeting_id, version, events, stamped)
                    except Conflict as conflict:
                        meeting.loaded = False  # someone else wrote: reload, decide again
                        tries += 1
                        if tries == 1:
                            deadline = anyio.current_time() + self.retry_conflicts_for
                        await _back_off(conflict, tries, deadline)
                        continue
                    except BaseException:
                        # Cancelled (or failed) mid-append: the store may have written.
                        self._interrupted(meeting_id, meeting, version, len(events))
                        raise
                    for event in events:
                        state = _evolve(state, event)
                    meeting.state = state
                    self._appended(meeting, records)
                    return records
        finally:
            self._done(meeting_id, meeting)

    async def state(self, meeting_id: str) -> MeetingState | None:
        """A snapshot of the meeting as the store has it now (None if it does not exist)."""
        state = await self._fresh_state(meeting_id)
        return state.copy() if state is not None else None

    async def _fresh_state(self, meeting_id: str) -> MeetingState | None:
        """The meeting's cached state, caught up with the store (not a copy)."""
        meeting = self._meeting(meeting_id)
        try:
            async with meeting.lock:
                return await self._load(meeting_id, meeting, fresh=True)
        finally:
            self._done(meeting_id, meeting)

    def _meeting(self, meeting_id: str) -> _Meeting:
        """The meeting's entry, made if need be, moved to the back (the most recently used).
        Each use ends with `_done`, after the meeting's lock is released."""
        meetings = self._meetings
        meeting = meetings.pop(meeting_id, None)
        if meeting is None:
            meeting = _Meeting()
        meetings[meeting_id] = meeting
        return meeting

    def _done(self, meeting_id: str, meeting: _Meeting) -> None:
        """A use of the meeting ended: forget it if it does not exist and nothing else
        uses it (a refused join to a made-up id leaves nothing), else keep the table
        within `cached_meetings`."""
        if meeting.state is None:
            if meeting.idle and self._meetings.get(meeting_id) is meeting:
                del self._meetings[meeting_id]
        elif len(self._meetings) > self.cached_meetings:
            self._evict()

    def _evict(self) -> None:
        """Forget the least recently used idle meetings, until `cached_meetings` remain:
        their state, command ids and lock (the next command reads the meeting from the
        store again, command ids included). Meetings in use stay, however many; those
        met are moved to the back, so that each call looks at a few meetings only."""
        meetings = self._meetings
        excess = len(meetings) - self.cached_meetings
        for meeting_id, meeting in list(islice(meetings.items(), EVICTION_SCAN)):
            if excess <= 0:
                return
            del meetings[meeting_id]
            if meeting.idle:
                excess -= 1
            else:
                meetings[meeting_id] = meeting

    async def _load(
        self, meeting_id: str, meeting: _Meeting, *, fresh: bool = False
    ) -> MeetingState | None:
        """The meeting's state: the cache, caught up with the store when it may be behind
        (never loaded, a conflict seen) or when `fresh` (other writers may share the store)."""
        if meeting.loaded and not fresh:
            return meeting.state
        state = meeting.state
        after = state.version if state is not None else 0
        records = await self.store.read(meeting_id, after)
        for record in records:
            state = _evolve(state, record.event)
            self._index_command(meeting, record)
            self._track_lease(record)
        meeting.state = state
        if state is not None:  # an absent meeting is read again next time
            meeting.loaded = True
        return state

    def _index_command(self, meeting: _Meeting, record: Record) -> None:
        cause = record.cause
        if cause is not None and cause.command_id is not None:
            if meeting.command_ids is None:
                meeting.command_ids = {}
            first, _ = meeting.command_ids.get(cause.command_id, (record.version, 0))
            meeting.command_ids[cause.command_id] = (first, record.version)

    def _appended(self, meeting: _Meeting, records: list[Record]) -> None:
        for record in records:
            self._index_command(meeting, record)
            self._track_lease(record)
        if meeting.recent is not None:
            if meeting.recent and meeting.recent[-1].version + 1 != records[0].version:
                meeting.recent.clear()  # another writer's records are missing: don't serve a gap
            meeting.recent.extend(records)
        meeting.wake()
        if self._has_observers:
            self._pending_observations += 1
            self._observer_send.send_nowait(records)

    def _interrupted(self, meeting_id: str, meeting: _Meeting, version: int, count: int) -> None:
        """An append was cancelled or failed: whether the store wrote it is unknown.

        Forget the cached state (the next command reloads it), let subscribers read
        the store, and have the observer task settle it: it reloads the meeting (which
        tracks the leases of what was written) and shows observers the records, if any.
        """
        meeting.loaded = False
        if meeting.recent is not None:
            meeting.recent.clear()
        meeting.wake()
        self._pending_observations += 1
        self._observer_send.send_nowait(_Unsettled(meeting_id, version, count))

    async def _settle(self, unsettled: _Unsettled) -> None:
        meeting = self._meeting(unsettled.meeting_id)
        try:
            async with meeting.lock:
                await self._load(unsettled.meeting_id, meeting)
        finally:
            self._done(unsettled.meeting_id, meeting)
        last = unsettled.version + unsettled.events
        written = await self.store.read(unsettled.meeting_id, unsettled.version)
        records = [r for r in written if r.version <= last]
        if records and self._has_observers:
            await self._call_each("meetcore_records_appended", records=records)

    # -- subscriptions -------------------------------------------------------------

    async def subscribe(self, meeting_id: str, after_version: int = 0) -> AsyncIterator[Record]:
        """The meeting's records after `after_version`: what the store has, then live
        ones as they are appended, with no gap and no duplicate. Runs until cancelled."""
        meeting = self._meeting(meeting_id)
        meeting.subscribers += 1
        if meeting.recent is None:
            meeting.recent = deque(maxlen=RECENT)
        last = after_version
        try:
            while True:
                signal = meeting.signal
                if signal is None:
                    signal = meeting.signal = anyio.Event()
                recent = meeting.recent
                if recent and recent[0].version <= last + 1:
                    batch = [r for r in recent if r.version > last]
                else:
                    batch = await self.store.read(meeting_id, last)
                for record in batch:
                    last = record.version
                    yield record
                if not batch:
                    await signal.wait()
        finally:
            meeting.subscribers -= 1
            if meeting.subscribers == 0:
                meeting.recent = None
                meeting.signal = None
            self._done(meeting_id, meeting)

    async def _watch_store(self, store: WatchableStore) -> None:
        """Follow what other writers of the store append (other nodes), for ever."""
        while True:
            changes = store.watch()
            try:
                async for meeting_id in changes:
                    self._changed(meeting_id)
            except Exception:
                log.exception("watching the store for other writers failed; again in 1 s")
            finally:
                aclose = getattr(changes, "aclose", None)  # an async generator: end it now
                if aclose is not None:
                    with anyio.CancelScope(shield=True), contextlib.suppress(Exception):
                        await aclose()
            await anyio.sleep(1)

    def _changed(self, meeting_id: str) -> None:
        """Another writer appended to the meeting: read it again before the next decision,
        and wake its subscribers, who read the new records from the store (the `recent`
        window lacks them), from their last version: no gap. (A meeting the engine does not
        hold needs nothing: it is read from the store when used.)"""
        meeting = self._meetings.get(meeting_id)
        if meeting is not None:
            meeting.loaded = False
            if meeting.recent is not None:
                meeting.recent.clear()
            meeting.wake()

    # -- observers -----------------------------------------------------------------

    async def _observe(self) -> None:
        async with self._observer_receive:
            async for records in self._observer_receive:
                if isinstance(records, _Unsettled):
                    try:
                        await self._settle(records)
                    except Exception:
                        log.exception("settling an interrupted append to %s failed", records)
                else:
                    await self._call_each("meetcore_records_appended", records=records)
                self._pending_observations -= 1
                if self._pending_observations == 0:
                    self._observed.set()
                    self._observed = anyio.Event()
            if self._pending_observations == 0:
                self._observed.set()
                self._observed = anyio.Event()

    async def flush(self) -> None:
        """Wait until observers have seen every record appended so far."""
        while self._pending_observations:
            await self._observed.wait()

    async def _call_each(self, hook_name: str, **kwargs: Any) -> None:
        """Call every implementation of an observer or lifecycle hook, awaiting what it
        returns; one that fails is logged with its plugin's name and the others still run.

        Not through pluggy's call loop, which stops at the first error.
        """
        for impl in reversed(getattr(self.plugins.hook, hook_name).get_hookimpls()):
            try:
                result = impl.function(*[kwargs[name] for name in impl.argnames])
                if inspect.isawaitable(result):
                    await result
            except Exception:
                log.exception("plugin %s failed in %s", impl.plugin_name, hook_name)

    # -- leases --------------------------------------------------------------------

    def renew(self, meeting_id: str, connection_id: str) -> bool:
        """Extend a connection's lease by the lease time; False if it has none."""
        leases = self._leases.get(meeting_id)
        if leases is None or connection_id not in leases:
            return False
        leases[connection_id] = self.clock()
        if self._shared_leases is not None:
            self._renewals.add((meeting_id, connection_id))  # sent with the next batch
        return True

    def lease(self, meeting_id: str, connection_id: str) -> int | None:
        """When the connection's lease expires (clock ms), or None if it has none."""
        renewed_at = self._leases.get(meeting_id, {}).get(connection_id)
        return renewed_at + self.lease_ttl_ms if renewed_at is not None else None

    def _track_lease(self, record: Record) -> None:
        """A connection that joins (or waits) gets a lease; one it holds already keeps its
        time: reading a meeting's log again (evicted, reloaded) renews nothing."""
        event = record.event
        if isinstance(event, ParticipantJoined | EntryRequested):
            leases = self._leases.get(event.meeting_id)
            if leases is None:
                leases = self._leases[event.meeting_id] = {}
            if event.connection_id not in leases:
                leases[event.connection_id] = self.clock()
        elif isinstance(event, ParticipantLeft | EntryWithdrawn):
            self._drop_lease(event.meeting_id, event.connection_id)

    def _drop_lease(self, meeting_id: str, connection_id: str) -> None:
        leases = self._leases.get(meeting_id)
        if leases is not None and leases.pop(connection_id, None) is not None and not leases:
            del self._leases[meeting_id]

    async def _lease_holder(self, meeting_id: str, connection_id: str) -> str | None:
        """Who is in the meeting, or waiting, on the connection, as the store has it now."""
        state = await self._fresh_state(meeting_id)
        if state is not None:
            entrants: Iterable[Participant | EntryRequested] = chain(
                state.participants.values(), state.waiting.values()
            )
            for entrant in entrants:
                if entrant.connection_id == connection_id:
                    return entrant.participant_id
        return None

    async def expire_leases(self) -> list[Record]:
        """Make every connection whose lease ran out leave with 1001; returns the records."""
        if self._shared_leases is not None:
            return await self._expire_shared_leases(self._shared_leases)
        renewed_before = self.clock() - self.lease_ttl_ms
        expired = [
            (meeting_id, connection_id)
            for meeting_id, leases in self._leases.items()
            for connection_id, renewed_at in leases.items()
            if renewed_at <= renewed_before
        ]
        records: list[Record] = []
        for meeting_id, connection_id in expired:
            participant_id = await self._lease_holder(meeting_id, connection_id)
            if participant_id is None:  # already gone (left, replaced, room closed)
                self._drop_lease(meeting_id, connection_id)
                continue
            leave = Leave(
                meeting_id=meeting_id,
                participant_id=participant_id,
                connection_id=connection_id,
                reason=LeaveReason.WEBSOCKET_DISCONNECTED,
            )
            try:
                records += await self.execute(leave)
            except Rejected:  # gone since the lookup
                self._drop_lease(meeting_id, connection_id)
        return records

    async def _sweep_leases(self, expire: bool = True) -> None:
        interval = max(self.lease_ttl_ms / 4000, 0.05)
        while True:
            await anyio.sleep(interval)
            try:
                await self._flush_renewals()
                if expire:
                    await self.expire_leases()
            except Exception:
                log.exception("expiring leases failed; trying again in %.1f s", interval)

    async def _flush_renewals(self) -> None:
        """Send the renewals since the last batch to a `SharedLeases` store, in one call."""
        if self._shared_leases is None or not self._renewals:
            return
        batch, self._renewals = self._renewals, set()
        try:
            await self._shared_leases.renew_leases(batch)
        except BaseException:
            self._renewals |= batch  # try again with the next batch
            raise

    async def _expire_shared_leases(self, leases: SharedLeases) -> list[Record]:
        """Record the leave (1001) of every connection whose lease no engine on the store
        renewed in time: this node's renewals go first, then the store hands out the
        expired leases, each to one engine."""
        await self._flush_renewals()
        records: list[Record] = []
        while True:
            claimed = await leases.claim_expired_leases(self.lease_ttl_ms, limit=100)
            for meeting_id, connection_id, participant_id in claimed:
                leave = Leave(
                    meeting_id=meeting_id,
                    participant_id=participant_id,
                    connection_id=connection_id,
                    reason=LeaveReason.WEBSOCKET_DISCONNECTED,
                )
                cached = self._meetings.get(meeting_id)
                if cached is not None:
                    cached.loaded = False  # decide on the log, not on a cache
                try:
                    records += await self.execute(leave)
                except Rejected:  # not in the meeting any more: the lease is stale
                    await leases.drop_leases([(meeting_id, connection_id)])
                    self._drop_lease(meeting_id, connection_id)
            if len(claimed) < 100:
                return records

    async def _recover_leases(self) -> None:
        """Give every connection the log still shows as joined or waiting a fresh lease
        (unless the store keeps the leases: then they are there already)."""
        if self._shared_leases is not None:
            return
        after = 0
        while True:
            batch = await self.store.read_all(after, limit=10_000)
            if not batch:
                return
            for record in batch:
                self._track_lease(record)
            after = batch[-1].position
