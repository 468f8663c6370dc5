"""`meetcore webhooks status` and `meetcore webhooks retry`.

Both read the store's checkpoints; neither writes the delivering server's state. A
retry is a request (`meetcore-webhooks.retry`, compare-and-swap) that the server
applies within a poll interval, or when it next starts: so the command is safe while
a server runs on the same store, which is the usual case.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, Literal, TypeVar

import anyio
import click
import msgspec
import pluggy

from meetcore import Checkpoints, EventStore, StoreError, iso_time
from meetcore.cli import CliError, UsageProblem
from meetcore_webhooks._state import (
    LEASE,
    RETRY,
    STATE,
    Lease,
    Store,
    decode_lease,
    decode_retries,
    decode_state,
    matches,
    request_retry,
)

__all__ = ["webhooks"]

T = TypeVar("T")
#: Records counted past the cursor by `status` (more shows as "1000+").
COUNT_LIMIT = 1000


def _run(pm: pluggy.PluginManager, url: str, function: Callable[[Store], Awaitable[T]]) -> T:
    """Open the store `url` names, run `function(store)` on it, close it."""

    async def run() -> T:
        if "://" not in url:
            raise UsageProblem(f"store URL {url!r} has no scheme (try sqlite:///path)")
        try:
            # In the event loop: a store may bind itself to the loop it opens in.
            store: EventStore | None = pm.hook.meetcore_open_store(url=url, read_only=False)
        except StoreError as error:
            raise UsageProblem(str(error)) from None
        except Exception as error:
            raise UsageProblem(
                f"cannot open store {url}: {type(error).__name__}: {error}"
            ) from None
        if store is None:
            scheme = url.split("://", 1)[0]
            raise UsageProblem(f"no plugin opens {scheme}:// store URLs (is its plugin installed?)")
        try:
            if not isinstance(store, Checkpoints):
                raise UsageProblem(
                    f"store {url} keeps no checkpoints, so no webhooks are sent from it"
                )
            return await function(store)
        except StoreError as error:
            raise CliError(f"store {url}: {error}") from None
        except msgspec.DecodeError as error:
            raise CliError(f"store {url}: the webhook state is unreadable: {error}") from None
        finally:
            with anyio.CancelScope(shield=True):
                await store.close()

    return anyio.run(run)


def _store_option(function: Callable[..., Any]) -> Callable[..., Any]:
    return click.option(
        "--store",
        "url",
        default="sqlite:///meetcore.db",
        show_default=True,
        metavar="URL",
        help="The store the server delivers from.",
    )(function)


@click.group()
def webhooks() -> None:
    """Webhook delivery (meetcore-webhooks): what is pending or parked; send parked
    ones again."""


# -- status --------------------------------------------------------------------------


class DeliveryReport(msgspec.Struct, kw_only=True, rename="camel"):
    """One delivery waiting in a lane."""

    id: str
    webhook_type: str
    position: int


class LaneReport(msgspec.Struct, kw_only=True, rename="camel"):
    """A meeting's deliveries not yet done; times are ISO 8601."""

    meeting_id: str
    status: Literal["pending", "parked"]
    endpoint: str
    attempts: int
    next_at: str | None
    last_error: str | None
    parked_at: str | None
    deliveries: list[DeliveryReport]


class Deliverer(msgspec.Struct, kw_only=True, rename="camel"):
    """The server holding the lease, and until when."""

    owner: str
    expires_at: str


class StatusReport(msgspec.Struct, kw_only=True, rename="camel"):
    """`meetcore webhooks status --json`. `unscanned` counts the records past the cursor
    up to 1001 (more than 1000: "1000+"); `retryRequests` are those not applied yet
    (null: all)."""

    started: bool
    cursor: int
    unscanned: int
    delivered: int
    deliverer: Deliverer | None
    lanes: list[LaneReport]
    retry_requests: list[str | None]


async def _status(store: Store) -> StatusReport:
    raw = await store.load_checkpoint(STATE)
    state = decode_state(raw)
    lease = decode_lease(await store.load_checkpoint(LEASE))
    waiting = [
        r for r in decode_retries(await store.load_checkpoint(RETRY)) if r.seq > state.retried
    ]
    ahead = await store.read_all(state.cursor, limit=COUNT_LIMIT + 1) if raw is not None else []
    lanes = [
        LaneReport(
            meeting_id=meeting_id,
            status="parked" if lane.parked_at is not None else "pending",
            endpoint=lane.deliveries[0].url if lane.deliveries else "",
            attempts=lane.attempts,
            next_at=iso_time(lane.next_at) if lane.next_at and lane.parked_at is None else None,
            last_error=lane.last_error,
            parked_at=iso_time(lane.parked_at) if lane.parked_at is not None else None,
            deliveries=[
                DeliveryReport(id=d.id, webhook_type=d.webhook_type, position=d.position)
                for d in lane.deliveries
            ],
        )
        for meeting_id, lane in state.lanes.items()
        if lane.deliveries
    ]
    return StatusReport(
        started=raw is not None,
        cursor=state.cursor,
        unscanned=len(ahead),
        delivered=state.delivered,
        deliverer=(
            Deliverer(owner=lease.owner, expires_at=iso_time(lease.expires_at))
            if lease is not None and _held(lease)
            else None
        ),
        lanes=lanes,
        retry_requests=[r.target for r in waiting],
    )


def _table(rows: Sequence[Sequence[str]]) -> list[str]:
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    return [
        "  " + "  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip()
        for row in rows
    ]


def _plural(count: int, word: str, words: str | None = None) -> str:
    return f"{count} {word if count == 1 else words or word + 's'}"


def _held(lease: Lease) -> bool:
    """Whether a server holds the lease now (wall clock, as the servers use)."""
    return bool(lease.owner) and lease.expires_at > time.time_ns() // 1_000_000


def _print_status(url: str, report: StatusReport) -> None:
    echo = click.echo
    echo(f"webhooks of {url}")
    if not report.started:
        echo("  none yet: no server with meetcore-webhooks has delivered from this store")
        return
    behind = (
        "up to date"
        if report.unscanned == 0
        else f"{'1000+' if report.unscanned > COUNT_LIMIT else report.unscanned} "
        "records still to scan"
    )
    echo(f"cursor     position {report.cursor}, {behind}")
    echo(f"delivered  {report.delivered}")
    deliverer = report.deliverer
    echo(
        f"deliverer  {deliverer.owner}, lease until {deliverer.expires_at}"
        if deliverer is not None
        else "deliverer  none (no server is delivering now)"
    )
    for status in ("pending", "parked"):
        lanes = [lane for lane in report.lanes if lane.status == status]
        count = sum(len(lane.deliveries) for lane in lanes)
        line = f"{status:<10} {_plural(count, 'delivery', 'deliveries')}"
        if lanes:
            line += f" of {_plural(len(lanes), 'meeting')}"
        if status == "parked" and lanes:
            line += " ('meetcore webhooks retry ID' or '--all' sends them again)"
        echo(line)
        if not lanes:
            continue
        header = ["meeting", "deliveries", "attempts", "first id"]
        header += ["next try" if status == "pending" else "parked at", "endpoint", "last error"]
        rows = [header]
        for lane in lanes:
            when = lane.next_at if status == "pending" else lane.parked_at
            rows.append(
                [
                    lane.meeting_id,
                    str(len(lane.deliveries)),
                    str(lane.attempts),
                    lane.deliveries[0].id,
                    when or "now",
                    lane.endpoint,
                    lane.last_error or "-",
                ]
            )
        for text in _table(rows):
            echo(text)
    if report.retry_requests:
        targets = ", ".join("all" if t is None else t for t in report.retry_requests)
        echo(f"retry      asked for, not picked up yet: {targets}")


@webhooks.command()
@_store_option
@click.option("--json", "as_json", is_flag=True, help="Write the status as JSON.")
@click.pass_obj
def status(pm: pluggy.PluginManager, url: str, as_json: bool) -> None:
    """Show the delivery cursor, the deliveries pending per meeting, and the parked ones."""
    report = _run(pm, url, _status)
    if as_json:
        click.echo(msgspec.json.encode(report).decode())
    else:
        _print_status(url, report)


# -- retry ---------------------------------------------------------------------------


@webhooks.command()
@_store_option
@click.argument("ids", nargs=-1, metavar="[ID]...")
@click.option("--all", "everything", is_flag=True, help="Every parked delivery.")
@click.pass_obj
def retry(pm: pluggy.PluginManager, url: str, ids: tuple[str, ...], everything: bool) -> None:
    """Send parked deliveries again: each ID is a delivery id or a meeting id (see
    'meetcore webhooks status'). A meeting's parked deliveries go again in order, with
    a fresh set of attempts."""
    if not ids and not everything:
        raise click.UsageError("name the parked deliveries to send again (ID...), or --all")
    if ids and everything:
        raise click.UsageError("give IDs or --all, not both")

    async def ask(store: Store) -> tuple[int, int, bool]:
        state = decode_state(await store.load_checkpoint(STATE))
        targets: list[str | None] = [None] if everything else list(ids)
        for target in targets:
            if target is not None and not any(
                matches(target, meeting_id, lane) for meeting_id, lane in state.lanes.items()
            ):
                raise CliError(
                    f"nothing parked matches {target[:80]!r} in {url} "
                    "(see 'meetcore webhooks status')"
                )
        chosen = [
            lane
            for meeting_id, lane in state.lanes.items()
            if any(matches(t, meeting_id, lane) for t in targets)
        ]
        if not chosen:
            return 0, 0, False
        for target in targets:
            await request_retry(store, target, time.time_ns() // 1_000_000)
        lease = decode_lease(await store.load_checkpoint(LEASE))
        live = lease is not None and _held(lease)
        return len(chosen), sum(len(lane.deliveries) for lane in chosen), live

    meetings, deliveries, live = _run(pm, url, ask)
    if not meetings:
        click.echo("nothing is parked")
        return
    when = (
        "the server sends them within seconds"
        if live
        else "no server is delivering now: they go when one starts"
    )
    what = _plural(deliveries, "delivery", "deliveries")
    click.echo(f"asked to send {what} of {_plural(meetings, 'meeting')} again; {when}")
