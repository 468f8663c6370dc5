"""The meetcore-webhooks plugin (entry point `webhooks` in group `meetcore`): adds
`meetcore webhooks status` and `meetcore webhooks retry`, and the webhook body's JSON
Schema to `schemas/` (`meetcore schemas`).

Delivery itself runs in an engine opened with a `meetcore_webhooks.Webhooks` plugin
object, which `meetcore serve` does when this distribution is installed: merely
installing it does not make every engine in every process send HTTP requests.
"""

from __future__ import annotations

import json
from collections.abc import Mapping

import click
import msgspec

from meetcore import hookimpl
from meetcore_webhooks._cli import webhooks

__all__ = ["meetcore_register_commands", "meetcore_schemas"]


@hookimpl
def meetcore_register_commands(cli: click.Group) -> None:
    """Add `meetcore webhooks`."""
    cli.add_command(webhooks)


@hookimpl
def meetcore_schemas() -> Mapping[str, bytes]:
    """`webhook.json`: the body of every webhook, generated from its type."""
    from meetcore_webhooks._bodies import WebhookBody

    schema = {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "title": "meetcore webhook body (POSTed to the room's endPoint)",
        **msgspec.json.schema(WebhookBody),
    }
    return {"webhook.json": (json.dumps(schema, indent=2, sort_keys=True) + "\n").encode()}
