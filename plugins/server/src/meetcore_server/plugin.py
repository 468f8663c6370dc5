"""The meetcore-server plugin (entry point `server` in group `meetcore`): `meetcore serve`,
the wire protocol's and REST API's schemas for `meetcore schemas`, and the server's hooks
(`meetcore_server.hookspecs`: serve's options and plugins, the media backend)."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

import click
import msgspec
import pluggy

from meetcore import hookimpl

__all__ = ["meetcore_addhooks", "meetcore_register_commands", "meetcore_schemas"]


@hookimpl
def meetcore_addhooks(pluginmanager: pluggy.PluginManager) -> None:
    from meetcore_server import hookspecs

    hookspecs.add_to(pluginmanager)


@hookimpl
def meetcore_register_commands(cli: click.Group, pluginmanager: pluggy.PluginManager) -> None:
    """Add `meetcore serve`, with the options the installed plugins add to it."""
    from meetcore_server.serve import serve_command

    cli.add_command(serve_command(pluginmanager))


def _json(document: Mapping[str, Any]) -> bytes:
    return (json.dumps(document, indent=2, sort_keys=True, ensure_ascii=False) + "\n").encode()


@hookimpl
def meetcore_schemas() -> Mapping[str, bytes]:
    import meetcore_protocol as protocol
    from meetcore_server import rest

    draft = "https://json-schema.org/draft/2020-12/schema"
    return {
        "protocol-client.json": _json(
            {
                "$schema": draft,
                "title": "meetcore signaling: client to server",
                **msgspec.json.schema(protocol.ClientMessage),
            }
        ),
        "protocol-server.json": _json(
            {
                "$schema": draft,
                "title": "meetcore signaling: server to client",
                **msgspec.json.schema(protocol.ServerMessage),
            }
        ),
        "openapi.json": _json(rest.openapi()),
    }
