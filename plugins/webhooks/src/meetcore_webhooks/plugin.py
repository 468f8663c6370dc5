"""The meetcore-webhooks plugin (entry point `webhooks` in group `meetcore`): adds
`meetcore webhooks status` and `meetcore webhooks retry`, the webhook body's JSON
Schema to `schemas/` (`meetcore schemas`), and `--webhook-allow-network` to
`meetcore serve`.

Delivery itself runs in an engine opened with a `meetcore_webhooks.Webhooks` plugin
object, which `meetcore serve` does when this distribution is installed (through
`meetcore_serve_plugins`): merely installing it does not make every engine in every
process send HTTP requests.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

import click
import msgspec

from meetcore import hookimpl
from meetcore_webhooks._cli import webhooks

__all__ = [
    "meetcore_register_commands",
    "meetcore_schemas",
    "meetcore_serve_options",
    "meetcore_serve_plugins",
]


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


# -- meetcore serve (meetcore-server's hooks: optional, the server may not be installed)


@hookimpl(optionalhook=True)
def meetcore_serve_options() -> Sequence[click.Parameter]:
    return [
        click.Option(
            ["--webhook-allow-network", "webhook_networks"],
            multiple=True,
            metavar="CIDR",
            help="A network webhooks may be sent to although it is not public, e.g. "
            "10.0.0.0/8 (repeatable; default: public addresses only; "
            "MEETCORE_WEBHOOK_ALLOW_NETWORKS).",
        )
    ]


@hookimpl(optionalhook=True)
def meetcore_serve_plugins(options: Mapping[str, Any]) -> Sequence[object]:
    """Delivery as the environment configures it, to the networks `--webhook-allow-network`
    allows (over the environment's, when given). A bad setting is a `ValueError`."""
    from meetcore_webhooks import Webhooks

    networks = tuple(options.get("webhook_networks", ()))
    if networks:
        return [Webhooks.from_env(allow_networks=networks)]
    return [Webhooks.from_env()]
