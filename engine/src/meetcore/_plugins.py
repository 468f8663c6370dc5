"""The plugin manager: built-ins first, then entry points in group "meetcore"."""

from __future__ import annotations

import os
from collections.abc import Iterable

import pluggy

from meetcore import hookspecs
from meetcore._store import EventStore, MemoryStore, StoreError
from meetcore.hookspecs import hookimpl

__all__ = ["AUTOLOAD_ENV", "BUILTIN_PLUGINS", "UnknownScheme", "open_store", "plugin_manager"]

AUTOLOAD_ENV = "MEETCORE_DISABLE_PLUGIN_AUTOLOAD"


class UnknownScheme(StoreError):
    """No installed plugin opens the store URL's scheme."""


class MemoryStorePlugin:
    """The built-in `memory://` store."""

    @hookimpl  # no read_only: a new store in memory changes nothing anyway
    def meetcore_open_store(self, url: str) -> EventStore | None:
        if url.split("://", 1)[0] != "memory":
            return None
        return MemoryStore()


#: Built-in plugins, registered exactly as a third-party plugin would be.
BUILTIN_PLUGINS: tuple[tuple[str, object], ...] = (("meetcore.memory", MemoryStorePlugin()),)


def plugin_manager(
    plugins: Iterable[object] = (), *, autoload: bool | None = None
) -> pluggy.PluginManager:
    """A plugin manager with the built-ins, the entry points (unless autoload is off,
    by argument or by `MEETCORE_DISABLE_PLUGIN_AUTOLOAD=1`) and `plugins`.

    Raises `pluggy.PluginValidationError` for an implementation of an unknown hook.
    """
    pm = pluggy.PluginManager("meetcore")
    pm.add_hookspecs(hookspecs)
    pm.hook.meetcore_addhooks.call_historic(kwargs={"pluginmanager": pm})
    for name, plugin in BUILTIN_PLUGINS:
        pm.register(plugin, name=name)
    if autoload is None:
        autoload = os.environ.get(AUTOLOAD_ENV, "") in ("", "0", "false", "no")
    if autoload:
        pm.load_setuptools_entrypoints("meetcore")
    for plugin in plugins:
        if not pm.is_registered(plugin):
            pm.register(plugin)
    pm.check_pending()
    return pm


def open_store(pm: pluggy.PluginManager, url: str, *, read_only: bool = False) -> EventStore:
    """The store for `url`, from whichever plugin handles its scheme (`read_only`: one
    that changes nothing, see `meetcore_open_store`)."""
    if "://" not in url:
        raise StoreError(f"store URL {url!r} has no scheme (try sqlite:///path or memory://)")
    store: EventStore | None = pm.hook.meetcore_open_store(url=url, read_only=read_only)
    if store is None:
        scheme = url.split("://", 1)[0]
        raise UnknownScheme(f"no plugin opens {scheme}:// store URLs (is its plugin installed?)")
    return store
