"""The hooks a meetcore plugin may implement (pluggy project "meetcore").

Mark implementations with `meetcore.hookimpl` and publish the plugin under the
entry point group "meetcore". Hooks are called with keyword arguments; a plugin
may implement any subset and may take any subset of a hook's arguments.
`docs/plugins.md` documents each hook (a test fails when one is missing there).
"""

from __future__ import annotations

from collections.abc import Awaitable, Mapping, Sequence
from typing import TYPE_CHECKING

import click
import pluggy

from meetcore._principal import Principal
from meetcore._record import Record
from meetcore._state import MeetingState
from meetcore._store import EventStore
from meetcore.commands import Command

if TYPE_CHECKING:
    from meetcore._engine import Engine

__all__ = ["hookimpl", "hookspec"]

hookspec = pluggy.HookspecMarker("meetcore")
hookimpl = pluggy.HookimplMarker("meetcore")


# -- extending the hooks ------------------------------------------------------


@hookspec(historic=True)
def meetcore_addhooks(pluginmanager: pluggy.PluginManager) -> None:
    """Add a plugin's own hookspecs: `pluginmanager.add_hookspecs(my_hookspecs)`.

    Called once for each plugin as it is registered (historic), before the manager
    checks that every implemented hook is known, so one plugin may implement the
    hooks another one adds (the webrtc server's media hooks, for example).
    """


# -- storage ------------------------------------------------------------------


@hookspec(firstresult=True)
def meetcore_open_store(url: str, read_only: bool) -> EventStore | None:
    """Open the event store for `url` if this plugin handles its scheme, else None.

    Called by `Engine.open(store=url)` (`read_only=False`) and by the CLI's reading
    commands (`read_only=True`); the first non-None result wins. With `read_only`, the
    store must change nothing: no file or schema is created (a store that does not
    exist is a `StoreError`), and writes are refused. An implementation may leave
    `read_only` out of its parameters (pluggy passes only those it names): it is then
    opened as usual, which a store that writes nothing on open can afford.
    """


# -- auth ---------------------------------------------------------------------


@hookspec(firstresult=True)
def meetcore_authenticate(credential: str, meeting_id: str | None) -> Principal | None:
    """Turn a credential (a token) into a `Principal`, or None if it is not this
    plugin's kind. Raise `meetcore.Rejected` (4001, 4002, 4022...) for a bad one.

    `meeting_id` is the meeting the caller wants, if any. First result wins.
    """


@hookspec(firstresult=True)
def meetcore_dev_token() -> str | None:
    """A token with every permission, for development only: what `meetcore serve
    --dev` answers on `GET /get-token`. None when this plugin makes none (or has no
    key to sign it with). First result wins.
    """


# -- policy -------------------------------------------------------------------


@hookspec
def meetcore_check_command(
    command: Command, state: MeetingState | None, principal: Principal | None
) -> None:
    """Veto a command before it is decided: raise `meetcore.Rejected` to refuse it.

    Called by `Engine.execute` for every command, with the meeting's current state
    (None before it exists) and the principal the command was executed for. Every
    implementation runs; a return value is ignored. Must not block.
    """


# -- observers ----------------------------------------------------------------


@hookspec
def meetcore_records_appended(records: Sequence[Record]) -> Awaitable[None] | None:
    """Records were appended to the log (one command's worth, in order).

    Called after every successful append. May return an awaitable, which the
    engine awaits. An observer that raises is logged and skipped: it never loses
    or blocks the log, nor the other observers.
    """


# -- command line -------------------------------------------------------------


@hookspec
def meetcore_register_commands(cli: click.Group, pluginmanager: pluggy.PluginManager) -> None:
    """Add subcommands to the `meetcore` command line (`cli.add_command(...)`).
    `pluginmanager` is the command line's, for a command that asks other plugins
    (`meetcore serve` asks them for its options)."""


@hookspec
def meetcore_schemas() -> Mapping[str, bytes]:
    """JSON documents this plugin generates for `schemas/`: file name -> contents.

    `meetcore schemas` writes them beside the engine's own (commands, events,
    record), and `meetcore schemas --check` fails when one is stale. Every
    implementation runs; names must not collide with another plugin's.
    """
    return {}


# -- lifecycle ----------------------------------------------------------------


@hookspec
def meetcore_startup(engine: Engine) -> Awaitable[None] | None:
    """The engine is open and about to serve; may return an awaitable."""


@hookspec
def meetcore_shutdown(engine: Engine) -> Awaitable[None] | None:
    """The engine is closing; may return an awaitable. Runs before the store closes."""
