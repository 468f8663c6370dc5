"""meetcore-webhooks: signed webhooks from meetcore's log, in order, at least once.

`Webhooks` is the plugin object that delivers, while the engine it is given to is open
(`Engine.open(..., plugins=[Webhooks()])`; `meetcore serve` does it): VideoSDK's
`session-started`, `session-ended`, `participant-joined` and `participant-left`, as
`{webhookType, webhookId, data}`, to the room's `webhook.endPoint` or the server's
default, at public addresses only (unless the operator allows a network). Each body
is signed (HMAC-SHA256 with the API secret, in the `meetcore-signature` header);
receivers check it with `verify`. See docs/webhooks.md.
"""

from __future__ import annotations

from meetcore_webhooks._bodies import WEBHOOK_TYPES, WebhookBody, WebhookData, WebhookType
from meetcore_webhooks._signature import (
    API_KEY_HEADER,
    ID_HEADER,
    SIGNATURE_HEADER,
    TOLERANCE,
    InvalidSignature,
    sign,
    verify,
)
from meetcore_webhooks._worker import ConfigError, Webhooks

__all__ = [
    "API_KEY_HEADER",
    "ID_HEADER",
    "SIGNATURE_HEADER",
    "TOLERANCE",
    "WEBHOOK_TYPES",
    "ConfigError",
    "InvalidSignature",
    "WebhookBody",
    "WebhookData",
    "WebhookType",
    "Webhooks",
    "sign",
    "verify",
]
