"""The meetcore-webhooks plugin (entry point `webhooks` in group `meetcore`): adds
`meetcore webhooks status` and `meetcore webhooks retry`.

Delivery itself runs in an engine opened with a `meetcore_webhooks.Webhooks` plugin
object, which `meetcore serve` does when this distribution is installed: merely
installing it does not make every engine in every process send HTTP requests.
"""

from __future__ import annotations

import click

from meetcore import hookimpl
from meetcore_webhooks._cli import webhooks

__all__ = ["meetcore_register_commands"]


@hookimpl
def meetcore_register_commands(cli: click.Group) -> None:
    """Add `meetcore webhooks`."""
    cli.add_command(webhooks)
