"""`Webhooks`: the delivering side, a plugin object an engine is opened with.

    async with Engine.open("sqlite:///meetcore.db", plugins=[Webhooks()]) as engine:
        ...  # webhooks are delivered while the engine is open

Driven by the log, not by callbacks: a scanner follows `store.read_all` from the
cursor kept in the store's checkpoints, folds each meeting (`Projector`) and queues
the deliveries in the meeting's lane; each lane has its own task, which sends its
head, retries it with exponential backoff and full jitter, and parks it after the
last attempt. The cursor and the lanes are saved together (`_state`), so after a
restart delivery resumes where it stopped, and nothing is lost. `meetcore_records_appended`
only wakes the scanner early; it also polls, for records other processes append.

Only one process delivers at a time: the one holding the lease (a compare-and-swap
checkpoint it renews); the others stand by and take over when it lapses.

`meetcore_startup` must return, and the engine gives plugins no task group, so the
delivery runs in a task of its own (an asyncio task, or a trio system task) inside a
cancel scope that `meetcore_shutdown` cancels and waits for: its lifetime is the
engine's, and shutting down saves the state and frees the lease.
"""

from __future__ import annotations

import asyncio
import importlib
import ipaddress
import logging
import math
import os
import random
import socket
import time
import uuid
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any, Final
from urllib.parse import urlsplit

import anyio
import anyio.abc
import httpcore
import httpx

from meetcore import Checkpoints, Engine, EventStore, hookimpl
from meetcore_webhooks._bodies import WEBHOOK_TYPES, Delivery, Projector, Route, check_url
from meetcore_webhooks._network import Refused, check_destination, parse_networks, transport
from meetcore_webhooks._signature import API_KEY_HEADER, ID_HEADER, SIGNATURE_HEADER, sign
from meetcore_webhooks._state import (
    LEASE,
    RETRY,
    STATE,
    Lane,
    Lease,
    State,
    decode_lease,
    decode_retries,
    decode_state,
    encode,
    matches,
)

__all__ = ["ConfigError", "Webhooks"]

log = logging.getLogger("meetcore_webhooks")

#: Where cloud hosts answer instance metadata (credentials among them): an allowed
#: network holding one is warned about (`0.0.0.0/0` does).
#: NAT64 (64:ff9b::/96) and 6to4 (2002::/16) addresses reach the IPv4 one inside them
#: (`_network._forms`), so their forms of 169.254.169.254 are metadata addresses too.
METADATA_NETWORKS = (
    ipaddress.ip_network("169.254.169.254/32"),
    ipaddress.ip_network("fd00:ec2::254/128"),
    ipaddress.ip_network("64:ff9b::a9fe:a9fe/128"),
    ipaddress.ip_network("2002:a9fe:a9fe::/48"),
)

URL_ENV: Final = "MEETCORE_WEBHOOK_URL"
EVENTS_ENV: Final = "MEETCORE_WEBHOOK_EVENTS"
API_KEY_ENV: Final = "MEETCORE_WEBHOOK_API_KEY"
ALLOW_NETWORKS_ENV: Final = "MEETCORE_WEBHOOK_ALLOW_NETWORKS"
#: Records the scanner reads at a time.
BATCH: Final = 500
#: Seconds between two saves of the state while it keeps changing.
SAVE_INTERVAL: Final = 0.1
#: Bytes of a response body read (then the connection is dropped).
MAX_RESPONSE: Final = 64 * 1024
USER_AGENT: Final = "meetcore-webhooks/0.1"


class ConfigError(ValueError):
    """The webhook configuration is wrong (one line, never a secret)."""


def _now_ms() -> int:
    return time.time_ns() // 1_000_000


async def _head(store: EventStore) -> int:
    """The position of the log's last record (0 if it is empty)."""
    head = 0
    while batch := await store.read_all(head, limit=10_000):
        head = batch[-1].position
    return head


def _origin(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}"


class _LeaseLost(Exception):
    """Another process took over delivering (our lease lapsed, or its state moved)."""


class Webhooks:
    """Delivers the log's `session-started`, `session-ended`, `participant-joined` and
    `participant-left` webhooks while the engine it is a plugin of is open.

    `url` and `events` are the default endpoint, for rooms without a webhook of their
    own (a room's `webhook: {endPoint, events}` wins); no `url`: only those rooms get
    webhooks. Bodies are signed with `secret` (default: the secret of `api_key`, or of
    the first key, from `meetcore.keys.load_keys()`). A delivery that fails is tried
    again after a random delay of up to `base_delay * 2 ** n` seconds (at most
    `max_delay`), `attempts` times in all, then parked. `timeout` bounds each request;
    `concurrency` bounds requests in flight per endpoint origin. `poll_interval` is how
    often the log is read when no append woke the scanner; `lease_ttl` how long another
    process waits before taking over from one that stopped without a word.

    Webhooks go to public addresses only: an endpoint whose host is, or resolves to, a
    loopback, private, link-local, unspecified, multicast or reserved address is
    refused when it is delivered to, unless the address is in one of `allow_networks`
    (CIDR blocks, e.g. `10.0.0.0/8`); a refused delivery is parked at once, and
    redirects are never followed (`_network`).
    """

    def __init__(
        self,
        *,
        url: str | None = None,
        events: tuple[str, ...] = (),
        api_key: str | None = None,
        secret: str | None = None,
        attempts: int = 12,
        base_delay: float = 1.0,
        max_delay: float = 300.0,
        timeout: float = 10.0,
        concurrency: int = 8,
        poll_interval: float = 1.0,
        lease_ttl: float = 15.0,
        allow_networks: Sequence[str] = (),
    ) -> None:
        if url is not None:
            try:
                check_destination(check_url(url))
            except (ValueError, Refused) as error:
                raise ConfigError(str(error)) from None
        if isinstance(allow_networks, str):
            raise ConfigError("allow_networks is a sequence of CIDR blocks, not one string")
        try:
            self.allowed = parse_networks(allow_networks)
        except ValueError as error:
            raise ConfigError(f"allowed webhook network {error}") from None
        for network in self.allowed:
            if any(network.overlaps(metadata) for metadata in METADATA_NETWORKS):
                log.warning(
                    "webhooks may go to %s, which holds the cloud metadata address: "
                    "a room's webhook URL could read the host's credentials",
                    network,
                )
        unknown = sorted(set(events) - set(WEBHOOK_TYPES))
        if unknown:
            raise ConfigError(
                f"unknown webhook event {unknown[0]!r} (known: {', '.join(WEBHOOK_TYPES)})"
            )
        if attempts < 1:
            raise ConfigError("attempts must be at least 1")
        for name, value in (
            ("base_delay", base_delay),
            ("max_delay", max_delay),
            ("timeout", timeout),
            ("poll_interval", poll_interval),
            ("lease_ttl", lease_ttl),
        ):
            if not (value > 0 and math.isfinite(value)):
                raise ConfigError(f"{name} must be a positive number of seconds, not {value!r}")
        if concurrency < 1:
            raise ConfigError("concurrency must be at least 1")
        if events and url is None:
            raise ConfigError("webhook events are named for the default endpoint, but no URL")
        self.default = None if url is None else Route(url, frozenset(events))
        self.api_key = api_key
        self.attempts = attempts
        self.base_delay = base_delay
        self.max_delay = max_delay
        self.timeout = timeout
        self.concurrency = concurrency
        self.poll_interval = poll_interval
        self.lease_ttl = lease_ttl
        self.secret = secret
        #: The key and secret that sign, once delivery started.
        self._signing: tuple[str | None, str] | None = None
        self.owner = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        self._scope: anyio.CancelScope | None = None
        self._stopped: anyio.Event | None = None
        self._task: asyncio.Task[None] | None = None  # a strong reference, on asyncio
        self._wakeup: anyio.Event | None = None
        # While delivering:
        self._store: Checkpoints | None = None
        self._state = State()
        self._saved: bytes | None = None
        self._lease: bytes | None = None
        self._retries_seen: bytes | None = None
        self._dirty: anyio.Event | None = None
        self._lanes: set[str] = set()  # meetings whose lane task runs
        self._limits: dict[str, anyio.Semaphore] = {}
        self._client: httpx.AsyncClient | None = None
        self._tasks: anyio.abc.TaskGroup | None = None
        #: Whether this process holds the lease and delivers now.
        self.delivering = False

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None, **options: Any) -> Webhooks:
        """Configured from `MEETCORE_WEBHOOK_URL` (the default endpoint),
        `MEETCORE_WEBHOOK_EVENTS` (comma-separated; default all four),
        `MEETCORE_WEBHOOK_API_KEY` (which configured key signs) and
        `MEETCORE_WEBHOOK_ALLOW_NETWORKS` (comma-separated CIDR blocks that may be sent
        to although not public); `options` override."""
        env = os.environ if environ is None else environ
        settings: dict[str, Any] = {}
        if env.get(URL_ENV):
            settings["url"] = env[URL_ENV].strip()
        if env.get(EVENTS_ENV):
            settings["events"] = tuple(e.strip() for e in env[EVENTS_ENV].split(",") if e.strip())
        if env.get(API_KEY_ENV):
            settings["api_key"] = env[API_KEY_ENV].strip()
        if env.get(ALLOW_NETWORKS_ENV):
            networks = (n.strip() for n in env[ALLOW_NETWORKS_ENV].split(","))
            settings["allow_networks"] = tuple(n for n in networks if n)
        try:
            return cls(**(settings | options))
        except ConfigError as error:
            if not settings:
                raise
            names = (URL_ENV, EVENTS_ENV, API_KEY_ENV, ALLOW_NETWORKS_ENV)
            used = " / ".join(name for name in names if env.get(name))
            raise ConfigError(f"{error} (from {used})") from None

    # -- the hooks -----------------------------------------------------------------

    @hookimpl
    def meetcore_records_appended(self) -> None:
        """Wake the scanner: new records are in the log."""
        if self._wakeup is not None:
            self._wakeup.set()

    @hookimpl
    async def meetcore_startup(self, engine: Engine) -> None:
        """Start delivering from `engine.store` (see the module docstring)."""
        await self.start(engine.store)

    @hookimpl
    async def meetcore_shutdown(self) -> None:
        """Stop delivering: save the state, free the lease."""
        await self.stop()

    # -- starting and stopping -------------------------------------------------------

    async def start(self, store: EventStore) -> None:
        """Deliver from `store` in a background task until `stop()`; logs and does
        nothing when the store keeps no checkpoints or no secret is configured.

        The first time on a store, delivery starts at the end of the log as it is now:
        webhooks are for what happens from then on, not for the log's past.
        """
        if self._scope is not None:
            raise RuntimeError("these Webhooks already deliver for an engine")
        if not isinstance(store, Checkpoints):
            log.error(
                "store %r keeps no checkpoints (meetcore.Checkpoints), so webhooks cannot be "
                "delivered from it",
                store,
            )
            return
        self._signing = self._signing_key()
        if self._signing is None:
            return
        if await store.load_checkpoint(STATE) is None:
            # Before the engine serves, so that no record appended from now on is skipped.
            first = encode(State(cursor=await _head(store)))
            await store.swap_checkpoint(STATE, None, first)  # another process may be first
        self._scope = anyio.CancelScope()
        self._stopped = anyio.Event()
        self._spawn(lambda: self._main(store))

    async def stop(self) -> None:
        """Stop delivering and wait until the state is saved. Safe to call twice."""
        if self._scope is None or self._stopped is None:
            return
        self._scope.cancel()
        with anyio.CancelScope(shield=True):
            await self._stopped.wait()
        self._scope = self._stopped = None
        self._task = None

    def _spawn(self, function: Callable[[], Awaitable[None]]) -> None:
        async def run() -> None:
            await function()

        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:  # not asyncio: anyio's other backend
            trio: Any = importlib.import_module("trio")
            trio.lowlevel.spawn_system_task(run)
        else:
            self._task = loop.create_task(run(), name="meetcore-webhooks")

    def _signing_key(self) -> tuple[str | None, str] | None:
        """(API key, secret) to sign with; None (logged) when there is none."""
        if self.secret is not None:
            return self.api_key, self.secret
        from meetcore.keys import KeysError, load_keys

        try:
            keys = load_keys()
        except KeysError as error:
            log.error("webhooks are not delivered: %s", error)
            return None
        if self.api_key is not None:
            secret = keys.get(self.api_key)
            if secret is None:
                log.error(
                    "webhooks are not delivered: API key %r (%s) is not configured",
                    self.api_key,
                    API_KEY_ENV,
                )
                return None
            return self.api_key, secret
        if not keys:
            log.error("webhooks are not delivered: no API key is configured to sign them")
            return None
        return next(iter(keys.items()))

    # -- the lease -----------------------------------------------------------------

    async def _acquire(self, store: Checkpoints) -> bool:
        raw = await store.load_checkpoint(LEASE)
        lease = decode_lease(raw)
        now = _now_ms()
        if lease is not None and lease.owner != self.owner and lease.expires_at > now:
            return False
        mine = encode(Lease(owner=self.owner, expires_at=now + int(self.lease_ttl * 1000)))
        with anyio.CancelScope(shield=True):  # so that we know whether we hold it
            if not await store.swap_checkpoint(LEASE, raw, mine):
                return False
            self._lease = mine
        return True

    async def _renew(self, store: Checkpoints) -> None:
        while True:
            await anyio.sleep(self.lease_ttl / 3)
            lease = Lease(owner=self.owner, expires_at=_now_ms() + int(self.lease_ttl * 1000))
            mine = encode(lease)
            with anyio.CancelScope(shield=True):
                if not await store.swap_checkpoint(LEASE, self._lease, mine):
                    raise _LeaseLost
                self._lease = mine

    async def _release(self, store: Checkpoints) -> None:
        if self._lease is not None:
            await store.swap_checkpoint(LEASE, self._lease, encode(Lease(owner="", expires_at=0)))
            self._lease = None

    # -- the main loop ---------------------------------------------------------------

    async def _main(self, store: EventStore) -> None:
        assert self._scope is not None
        assert self._stopped is not None
        assert isinstance(store, Checkpoints)
        try:
            with self._scope:
                while True:
                    try:
                        if await self._acquire(store):
                            await self._deliver(store)
                    except _LeaseLost:
                        log.warning("another process took over delivering webhooks")
                    except Exception:
                        log.exception("webhook delivery failed; starting again")
                    await anyio.sleep(min(self.poll_interval, self.lease_ttl / 3))
        finally:
            self._stopped.set()

    async def _deliver(self, store: EventStore) -> None:
        """Deliver while holding the lease: raises `_LeaseLost` when it is lost."""
        assert isinstance(store, Checkpoints)
        self._store = store
        self._saved = await store.load_checkpoint(STATE)
        self._state = decode_state(self._saved)
        if self._saved is None:  # deleted since `start`: from the end of the log again
            self._state.cursor = await _head(store)
            await self._save()
        self._retries_seen = None
        self._lanes.clear()
        self._wakeup = anyio.Event()
        self._dirty = anyio.Event()
        self.delivering = True
        lost = False
        limits = httpx.Limits(max_connections=None, max_keepalive_connections=64)
        try:
            async with (
                httpx.AsyncClient(
                    timeout=self.timeout, transport=transport(self.allowed, limits)
                ) as client,
                anyio.create_task_group() as tasks,
            ):
                self._client, self._tasks = client, tasks
                for meeting_id, lane in self._state.lanes.items():
                    if lane.parked_at is None:
                        self._start_lane(meeting_id)
                tasks.start_soon(self._renew, store)
                tasks.start_soon(self._saver)
                await self._scan(store)
        except BaseException as error:
            lost = isinstance(error, _LeaseLost) or (
                isinstance(error, BaseExceptionGroup) and error.subgroup(_LeaseLost) is not None
            )
            if lost:
                raise _LeaseLost from None
            raise
        finally:
            self.delivering = False
            self._client = self._tasks = None
            if not lost:
                with anyio.CancelScope(shield=True):
                    try:
                        await self._save()
                        await self._release(store)
                    except Exception:
                        log.exception("could not save the webhook state on the way out")

    async def _scan(self, store: EventStore) -> None:
        projector = Projector(store, self.default)
        next_retry_check = 0.0
        while True:
            wakeup = self._wakeup = anyio.Event()
            if time.monotonic() >= next_retry_check:
                await self._apply_retries()
                next_retry_check = time.monotonic() + self.poll_interval
            cursor = self._state.cursor
            batch = [r for r in await store.read_all(cursor, limit=BATCH) if r.position > cursor]
            for record in batch:
                delivery = await projector.project(record)
                if delivery is not None:
                    self._enqueue(delivery)
            if batch:
                self._state.cursor = batch[-1].position
                self._changed()
                continue
            with anyio.move_on_after(self.poll_interval):
                await wakeup.wait()

    # -- saving --------------------------------------------------------------------

    def _changed(self) -> None:
        if self._dirty is not None:
            self._dirty.set()

    async def _saver(self) -> None:
        while True:
            assert self._dirty is not None
            await self._dirty.wait()
            self._dirty = anyio.Event()
            with anyio.CancelScope(shield=True):  # written means `_saved` knows it
                await self._save()
            await anyio.sleep(SAVE_INTERVAL)

    async def _save(self) -> None:
        """Save the state, unless another process wrote it since (then `_LeaseLost`)."""
        assert self._store is not None
        raw = encode(self._state)
        if raw == self._saved:
            return
        if not await self._store.swap_checkpoint(STATE, self._saved, raw):
            raise _LeaseLost
        self._saved = raw

    # -- retries the command line asked for ----------------------------------------

    async def _apply_retries(self) -> None:
        assert self._store is not None
        raw = await self._store.load_checkpoint(RETRY)
        if raw is None or raw == self._retries_seen:
            return
        self._retries_seen = raw
        for request in sorted(decode_retries(raw), key=lambda r: r.seq):
            if request.seq <= self._state.retried:
                continue
            for meeting_id, lane in self._state.lanes.items():
                if matches(request.target, meeting_id, lane):
                    log.info("sending the parked webhooks of meeting %s again", meeting_id)
                    lane.parked_at = None
                    lane.attempts = lane.next_at = 0
                    self._start_lane(meeting_id)
            self._state.retried = request.seq
            self._changed()

    # -- lanes ---------------------------------------------------------------------

    def _enqueue(self, delivery: Delivery) -> None:
        lane = self._state.lanes.get(delivery.meeting_id)
        if lane is None:
            lane = self._state.lanes[delivery.meeting_id] = Lane(deliveries=[])
        elif lane.deliveries and lane.deliveries[-1].position >= delivery.position:
            return  # queued already
        lane.deliveries.append(delivery)
        if lane.parked_at is None:
            self._start_lane(delivery.meeting_id)

    def _start_lane(self, meeting_id: str) -> None:
        if meeting_id not in self._lanes and self._tasks is not None:
            self._lanes.add(meeting_id)
            self._tasks.start_soon(self._lane, meeting_id)

    async def _lane(self, meeting_id: str) -> None:
        """Send the meeting's deliveries one at a time, in order, until none is left
        or the head is parked."""
        try:
            while True:
                lane = self._state.lanes.get(meeting_id)
                if lane is None or lane.parked_at is not None:
                    return
                if not lane.deliveries:
                    del self._state.lanes[meeting_id]
                    self._changed()
                    return
                wait = lane.next_at - _now_ms()
                if wait > 0:
                    await anyio.sleep(wait / 1000)
                delivery = lane.deliveries[0]
                refused = False
                try:
                    error = await self._send(delivery)
                except Refused as refusal:
                    error, refused = f"refused: {refusal}", True
                if error is None:
                    lane.deliveries.pop(0)
                    lane.attempts = lane.next_at = 0
                    lane.last_error = None
                    self._state.delivered += 1
                else:
                    lane.attempts += 1
                    lane.last_error = error
                    if refused:  # the same answer every time: no retries
                        lane.parked_at = _now_ms()
                        log.warning(
                            "webhook %s parked at once, %s ('meetcore webhooks retry' sends "
                            "it again once it may go there: see 'Where webhooks may go' in "
                            "docs/webhooks.md)",
                            delivery.id,
                            error,
                        )
                    elif lane.attempts >= self.attempts:
                        lane.parked_at = _now_ms()
                        log.warning(
                            "webhook %s parked after %d attempts (%s); "
                            "'meetcore webhooks retry' sends it again",
                            delivery.id,
                            lane.attempts,
                            error,
                        )
                    else:
                        lane.next_at = _now_ms() + int(self._backoff(lane.attempts) * 1000)
                self._changed()
        finally:
            self._lanes.discard(meeting_id)

    def _backoff(self, attempts: int) -> float:
        """Full jitter: a random delay up to the exponential bound."""
        bound = min(self.max_delay, self.base_delay * 2 ** min(attempts - 1, 62))
        return random.uniform(0, bound)

    async def _send(self, delivery: Delivery) -> str | None:
        """POST one delivery; None if the endpoint took it (2xx), else why not.
        Raises `Refused` for a destination never sent to (see `_network`)."""
        assert self._client is not None
        assert self._signing is not None
        api_key, secret = self._signing
        headers = {
            "content-type": "application/json",
            "user-agent": USER_AGENT,
            ID_HEADER: delivery.id,
            SIGNATURE_HEADER: sign(delivery.body, secret=secret, timestamp=int(time.time())),
        }
        if api_key is not None:
            headers[API_KEY_HEADER] = api_key
        origin = _origin(delivery.url)
        limit = self._limits.get(origin)
        if limit is None:
            limit = self._limits[origin] = anyio.Semaphore(self.concurrency)
        try:
            async with limit:
                with anyio.fail_after(self.timeout):
                    request = self._client.build_request(
                        "POST",
                        check_destination(delivery.url),
                        content=delivery.body,
                        headers=headers,
                    )
                    response = await self._client.send(request, stream=True)
                    try:
                        read = 0
                        async for chunk in response.aiter_raw():
                            read += len(chunk)
                            if read >= MAX_RESPONSE:
                                break
                    finally:
                        await response.aclose()
        except (TimeoutError, httpx.TimeoutException, httpcore.TimeoutException):
            return f"no answer within {self.timeout:g} s"
        except Refused:
            raise
        except Exception as error:  # connection refused or reset, bad TLS...: try again
            reason = " ".join(str(error).split())
            return f"{type(error).__name__}: {reason}"[:200] if reason else type(error).__name__
        if 200 <= response.status_code < 300:
            return None
        if 300 <= response.status_code < 400:
            return f"HTTP {response.status_code} (redirects are not followed)"
        return f"HTTP {response.status_code}"
