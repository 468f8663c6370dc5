"""Configuration: the server-wide default, the signing key, stores without checkpoints,
hostile room webhooks through `POST /v2/rooms`, and `meetcore serve`'s wiring."""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import httpx
import pytest
from webhooks_support import FAST, LOOPBACK, Receiver, engine_with, join, room, wait_until, webhooks

from meetcore import Engine, MemoryStore, Record
from meetcore.commands import AnyCommand
from meetcore.events import AnyEvent
from meetcore_jwt import JWTAuth, mint_token
from meetcore_server.app import Server
from meetcore_webhooks import ConfigError, Webhooks, verify

pytestmark = pytest.mark.anyio


@pytest.mark.parametrize(
    ("options", "reason"),
    [
        ({"url": "ftp://example.com/hook"}, "http(s)"),
        ({"url": "example.com/hook"}, "http(s)"),
        ({"url": "https://example.com/" + "x" * 3000}, "2048"),
        ({"url": "https://exa mple.com/"}, "http(s)"),
        ({"events": ("participant-joined", "meeting-ended")}, "unknown webhook event"),
        ({"attempts": 0}, "attempts"),
        ({"base_delay": 0}, "base_delay"),
        ({"timeout": float("nan")}, "timeout"),
        ({"lease_ttl": float("inf")}, "lease_ttl"),
        ({"concurrency": 0}, "concurrency"),
        ({"events": ("session-started",)}, "no URL"),
    ],
)
def test_bad_options_are_one_line_config_errors(options: dict[str, Any], reason: str) -> None:
    with pytest.raises(ConfigError) as raised:
        Webhooks(**options)
    assert reason in str(raised.value)
    assert "\n" not in str(raised.value)
    assert isinstance(raised.value, ValueError)


def test_from_env() -> None:
    hooks = Webhooks.from_env(
        {
            "MEETCORE_WEBHOOK_URL": " https://hooks.example.com/meetcore ",
            "MEETCORE_WEBHOOK_EVENTS": "session-started, session-ended,",
            "MEETCORE_WEBHOOK_API_KEY": "key-2",
        },
        attempts=3,
    )
    assert hooks.default is not None
    assert hooks.default.url == "https://hooks.example.com/meetcore"
    assert hooks.default.events == {"session-started", "session-ended"}
    assert hooks.api_key == "key-2"
    assert hooks.attempts == 3
    assert Webhooks.from_env({}).default is None
    with pytest.raises(ConfigError, match="MEETCORE_WEBHOOK_URL"):
        Webhooks.from_env({"MEETCORE_WEBHOOK_URL": "hooks.example.com"})
    with pytest.raises(ConfigError, match="unknown webhook event 'joined'"):
        Webhooks.from_env({"MEETCORE_WEBHOOK_EVENTS": "joined"})


async def test_the_secret_is_the_first_configured_api_key_s(
    receiver: Receiver, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    keys = tmp_path / "keys.json"
    keys.write_text(json.dumps({"first": "secret-one", "second": "secret-two"}))
    monkeypatch.setenv("MEETCORE_KEYS_FILE", str(keys))
    monkeypatch.delenv("MEETCORE_API_KEY", raising=False)
    monkeypatch.delenv("MEETCORE_API_SECRET", raising=False)
    for api_key, secret in ((None, "secret-one"), ("second", "secret-two")):
        receiver.received.clear()
        store = f"sqlite:///{tmp_path / secret}.db"  # one each: nothing left to send again
        hooks = Webhooks(api_key=api_key, allow_networks=LOOPBACK, **FAST)
        async with engine_with(store, hooks) as engine:
            await room(engine, f"room-{secret}", receiver.url())
            await join(engine, f"room-{secret}", "ada")
            await wait_until(lambda: len(receiver.bodies()) == 2)
        for request in receiver.accepted():
            verify(request.body, request.headers["meetcore-signature"], secret=secret)
            assert request.headers["meetcore-api-key"] == (api_key or "first")


async def test_without_a_key_nothing_is_sent_and_the_engine_still_runs(
    receiver: Receiver,
    db: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    for name in ("MEETCORE_API_KEY", "MEETCORE_API_SECRET", "MEETCORE_KEYS_FILE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.chdir(tmp_path)  # no meetcore-keys.json here
    with caplog.at_level(logging.ERROR, logger="meetcore_webhooks"):
        async with engine_with(db, Webhooks(**FAST)) as engine:
            await room(engine, "room-1", receiver.url())
            await join(engine, "room-1", "ada")
    assert "no API key is configured to sign them" in caplog.text
    assert receiver.received == []
    with caplog.at_level(logging.ERROR, logger="meetcore_webhooks"):
        async with engine_with(db, Webhooks(api_key="nobody", **FAST)):
            pass
    assert "API key 'nobody' (MEETCORE_WEBHOOK_API_KEY) is not configured" in caplog.text


class LogOnly:
    """An `EventStore` without the `Checkpoints` capability."""

    def __init__(self) -> None:
        self._inner = MemoryStore()

    async def append(
        self,
        meeting_id: str,
        expected_version: int,
        events: Sequence[AnyEvent],
        cause: AnyCommand | None,
    ) -> list[Record]:
        return await self._inner.append(meeting_id, expected_version, events, cause)

    async def read(self, meeting_id: str, after_version: int = 0) -> list[Record]:
        return await self._inner.read(meeting_id, after_version)

    async def read_all(self, after_position: int = 0, limit: int = 1000) -> list[Record]:
        return await self._inner.read_all(after_position, limit)

    async def close(self) -> None:
        await self._inner.close()


async def test_a_store_without_checkpoints_is_refused_with_a_log_line(
    caplog: pytest.LogCaptureFixture,
) -> None:
    with caplog.at_level(logging.ERROR, logger="meetcore_webhooks"):
        async with Engine.open(LogOnly(), plugins=[webhooks()], autoload=False) as engine:
            await room(engine, "room-1", "http://127.0.0.1:9/never")
    assert "keeps no checkpoints" in caplog.text


async def test_one_webhooks_object_serves_one_engine_at_a_time() -> None:
    hooks = webhooks()
    async with Engine.open("memory://", plugins=[hooks], autoload=False):
        with pytest.raises(RuntimeError, match="already deliver"):
            await hooks.start(MemoryStore())
    async with Engine.open("memory://", plugins=[hooks], autoload=False):
        pass  # stopped, so usable again


# -- through the rooms API -------------------------------------------------------------

KEYS = {"test-key": "test-secret-0123456789abcdef0123"}


async def test_rooms_api_webhooks_hostile_ones_refused_others_delivered(
    receiver: Receiver,
) -> None:
    hooks = webhooks()
    async with Engine.open(
        "memory://", plugins=[JWTAuth(KEYS), hooks], autoload=False, sweep_leases=False
    ) as engine:
        transport = httpx.ASGITransport(app=Server(engine).app)
        headers = {"Authorization": mint_token(api_key="test-key", secret=KEYS["test-key"])}
        async with httpx.AsyncClient(
            transport=transport, base_url="http://test", headers=headers
        ) as api:
            for webhook in (
                {"endPoint": "ftp://example.com/hook"},
                {"endPoint": "javascript:alert(1)"},
                {"endPoint": "https://example.com/" + "x" * 3000},
                {"endPoint": "https://example.com/\u00e9"},
                {"endPoint": "https://example.com/", "events": ["participant-joined"] * 33},
                {"endPoint": "https://example.com/", "events": ["x" * 65]},
                {"endPoint": "https://example.com/", "events": "participant-joined"},
                {"events": ["participant-joined"]},
            ):
                refused = await api.post("/v2/rooms", json={"webhook": webhook})
                assert refused.status_code == 400, (webhook, refused.text)
                assert refused.json()["code"] == 3073, refused.text
            assert await engine.store.read_all() == [], "nothing of them reached the log"
            # Unknown event names are accepted by the API, and never match anything.
            made = await api.post(
                "/v2/rooms",
                json={
                    "customRoomId": "hooked",
                    "webhook": {
                        "endPoint": receiver.url("/rooms"),
                        "events": ["participant-joined", "not-an-event"],
                    },
                },
            )
            assert made.status_code == 200, made.text
            await join(engine, "hooked", "ada")
            await wait_until(lambda: len(receiver.bodies()) == 1)
    (body,) = receiver.bodies("/rooms")
    assert body.webhook_type == "participant-joined"
    assert body.data.meeting_id == "hooked"
    assert body.data.participant_count == 1


# -- meetcore serve --------------------------------------------------------------------


def test_meetcore_serve_delivers_with_the_environment_s_settings(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from meetcore_webhooks import plugin

    monkeypatch.setenv("MEETCORE_WEBHOOK_URL", "https://hooks.example.com/x")
    (hooks,) = plugin.meetcore_serve_plugins(options={})
    assert isinstance(hooks, Webhooks)
    assert hooks.default is not None
    assert hooks.default.url == "https://hooks.example.com/x"
    monkeypatch.setenv("MEETCORE_WEBHOOK_URL", "nope")
    with pytest.raises(ValueError, match="MEETCORE_WEBHOOK_URL"):
        plugin.meetcore_serve_plugins(options={})


def test_the_webhook_body_schema_is_in_schemas_and_up_to_date() -> None:
    from pathlib import Path

    import msgspec

    from meetcore import _schemas, plugin_manager

    schemas = Path(__file__).resolve().parents[2] / "schemas"
    pm = plugin_manager()
    assert "webhook.json" in _schemas.generate(pm)
    assert "webhook.json" not in _schemas.check(schemas, pm), (
        "regenerate with: uv run meetcore schemas"
    )
    schema = msgspec.json.decode((schemas / "webhook.json").read_bytes())
    body = schema["$defs"]["WebhookBody"]
    assert set(body["required"]) >= {"webhookType", "data", "webhookId"}
    assert "participantCount" in schema["$defs"]["WebhookData"]["properties"]
