"""JSON Schema for commands, events and records, generated from the msgspec types.

`uv run meetcore schemas` rewrites `schemas/` (the engine's and the plugins'); with
`--check` it exits 1 when the files there differ from what the types say.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import msgspec
import pluggy

from meetcore._record import Record
from meetcore.commands import AnyCommand
from meetcore.events import AnyEvent

__all__ = ["check", "generate", "write"]


def _document(kind: Any, title: str) -> bytes:
    schema = msgspec.json.schema(kind)
    schema = {"$schema": "https://json-schema.org/draft/2020-12/schema", "title": title, **schema}
    return (json.dumps(schema, indent=2, sort_keys=True, ensure_ascii=False) + "\n").encode()


def generate(plugins: pluggy.PluginManager | None = None) -> dict[str, bytes]:
    """File name -> contents of every schema the engine defines, and those `plugins`
    add through `meetcore_schemas` (the wire protocol, openapi.json...)."""
    files = {
        "commands.json": _document(AnyCommand, "meetcore command"),
        "events.json": _document(AnyEvent, "meetcore event"),
        "record.json": _document(Record, "meetcore log record (one JSON Lines line)"),
    }
    if plugins is not None:
        for extra in reversed(plugins.hook.meetcore_schemas()):
            for name, content in extra.items():
                if name in files:
                    raise ValueError(f"two sources generate schemas/{name}")
                files[name] = content
    return files


def write(directory: Path, plugins: pluggy.PluginManager | None = None) -> list[str]:
    """Write the schemas into `directory`; returns the names of files that changed."""
    directory.mkdir(parents=True, exist_ok=True)
    changed = []
    for name, content in generate(plugins).items():
        path = directory / name
        if not path.exists() or path.read_bytes() != content:
            path.write_bytes(content)
            changed.append(name)
    return changed


def check(directory: Path, plugins: pluggy.PluginManager | None = None) -> list[str]:
    """Names of schema files in `directory` that are missing or stale."""
    return [
        name
        for name, content in generate(plugins).items()
        if not (directory / name).exists() or (directory / name).read_bytes() != content
    ]
