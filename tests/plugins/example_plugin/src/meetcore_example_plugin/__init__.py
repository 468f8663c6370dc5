"""meetcore-example-plugin: a third-party plugin, packaged as one, for meetcore's tests.

It implements one hook of each kind a plugin usually needs: a store for
`example://` URLs, a policy that refuses meetings named "forbidden-...", an
observer that remembers every record it sees, and a `meetcore hello` command.
"""

from __future__ import annotations

from collections.abc import Sequence

import click

from meetcore import ErrorCode, MemoryStore, Record, Rejected, hookimpl
from meetcore.commands import Command, InitMeeting

__all__ = ["SEEN", "ExampleStore"]

#: (meeting_id, version) of every record the observer saw, in the order it saw them.
SEEN: list[tuple[str, int]] = []


class ExampleStore(MemoryStore):
    """The `example://` store: a memory store that remembers its URL."""

    def __init__(self, url: str) -> None:
        super().__init__()
        self.url = url


@hookimpl
def meetcore_open_store(url: str) -> ExampleStore | None:
    if not url.startswith("example://"):
        return None
    return ExampleStore(url)


@hookimpl
def meetcore_check_command(command: Command) -> None:
    if isinstance(command, InitMeeting) and command.meeting_id.startswith("forbidden-"):
        raise Rejected(
            ErrorCode.INVALID_MEETING_ID,
            f"meeting {command.meeting_id!r} is forbidden by meetcore-example-plugin",
        )


@hookimpl
def meetcore_records_appended(records: Sequence[Record]) -> None:
    SEEN.extend((r.meeting_id, r.version) for r in records)


@click.command()
@click.argument("name", default="world")
def hello(name: str) -> None:
    """Say hello (from meetcore-example-plugin)."""
    click.echo(f"hello, {name}, from meetcore-example-plugin")


@hookimpl
def meetcore_register_commands(cli: click.Group) -> None:
    cli.add_command(hello)
