"""Where webhooks may go (server-side request forgery): a room's endPoint is chosen by
whoever creates the room, so the server refuses to POST into its own networks.

Loopback, private, link-local... addresses are refused at delivery time, on the address
the name resolves to, in every spelling (decimal, hex, IPv4-mapped IPv6); the checked
address is the one connected to, with the Host header and TLS of the name; redirects are
not followed; a refused delivery is parked at once, visibly, and logged once; only the
networks the operator allows are exempt. Through the REST API, only tokens with
allow_mod choose where webhooks go."""

from __future__ import annotations

import ipaddress
import json
import logging
from pathlib import Path
from typing import Any

import anyio
import httpx
import pytest
import websockets
from webhooks_support import (
    API_KEY,
    FAST,
    SECRET,
    Receiver,
    engine_with,
    join,
    room,
    run_cli,
    tls_pair,
    wait_saved,
    wait_until,
    webhooks,
)

import meetcore_webhooks._network
from meetcore import Engine
from meetcore.commands import Webhook
from meetcore.events import MeetingInitialized
from meetcore_jwt import JWTAuth, mint_token
from meetcore_server.app import Server
from meetcore_server.testing import ServeProcess, serve_refuses
from meetcore_webhooks import ConfigError, Webhooks
from meetcore_webhooks._network import IPAddress, parse_networks, refusal
from meetcore_webhooks._state import Lane

pytestmark = pytest.mark.anyio


def parked(hooks: Webhooks, meeting_id: str) -> Lane | None:
    """The meeting's lane if it is parked."""
    lane = hooks._state.lanes.get(meeting_id)
    return lane if lane is not None and lane.parked_at is not None else None


def fake_dns(monkeypatch: pytest.MonkeyPatch, names: dict[str, list[str]]) -> list[str]:
    """Make `names` resolve to those addresses (others as usual); returns the names
    resolved, one entry per resolution."""
    resolved: list[str] = []
    real = meetcore_webhooks._network.resolve

    async def resolve(host: str, port: int) -> list[IPAddress]:
        resolved.append(host)
        if host in names:
            return [ipaddress.ip_address(a) for a in names[host]]
        return await real(host, port)

    monkeypatch.setattr(meetcore_webhooks._network, "resolve", resolve)
    return resolved


# -- which addresses ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("address", "kind"),
    [
        ("127.0.0.1", "loopback"),
        ("127.255.0.9", "loopback"),
        ("::1", "loopback"),
        ("::ffff:127.0.0.1", "loopback"),
        ("169.254.169.254", "link-local"),
        ("::ffff:169.254.169.254", "link-local"),
        ("fe80::1", "link-local"),
        ("10.1.2.3", "private"),
        ("172.16.0.1", "private"),
        ("172.31.255.255", "private"),
        ("192.168.1.1", "private"),
        ("100.64.0.1", "private"),
        ("fc00::1", "private"),
        ("fd12:3456::1", "private"),
        ("0.0.0.0", "unspecified"),
        ("0.1.2.3", "unspecified"),
        ("::", "unspecified"),
        ("224.0.0.1", "multicast"),
        ("239.255.255.250", "multicast"),
        ("ff02::1", "multicast"),
        ("240.0.0.1", "reserved"),
        ("255.255.255.255", "reserved"),
        ("64:ff9b::a9fe:a9fe", "link-local"),  # NAT64 of 169.254.169.254
        ("2002:7f00:1::", "loopback"),  # 6to4 of 127.0.0.1
        ("192.0.2.1", "non-public"),  # documentation
        ("2001:db8::1", "non-public"),
    ],
)
def test_internal_addresses_are_refused(address: str, kind: str) -> None:
    why = refusal(ipaddress.ip_address(address))
    assert why is not None and kind in why, why


@pytest.mark.parametrize(
    "address", ["93.184.216.34", "8.8.8.8", "2606:4700::1111", "172.32.0.1", "100.128.0.1"]
)
def test_public_addresses_are_not_refused(address: str) -> None:
    assert refusal(ipaddress.ip_address(address)) is None


def test_allowed_networks_are_exempt_in_every_spelling() -> None:
    allowed = [ipaddress.ip_network("127.0.0.0/8"), ipaddress.ip_network("10.0.0.0/24")]
    for address in ("127.0.0.1", "::ffff:127.0.0.1", "10.0.0.200", "64:ff9b::a00:1"):
        assert refusal(ipaddress.ip_address(address), allowed) is None, address
    for address in ("10.0.1.1", "::1", "169.254.169.254"):
        assert refusal(ipaddress.ip_address(address), allowed) is not None, address


# -- deliveries --------------------------------------------------------------------------


async def test_loopback_in_any_spelling_is_refused_parked_at_once_and_logged_once(
    receiver: Receiver,
    db: str,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Without an allowed network, none of these reach the receiver listening on
    127.0.0.1 (before the fix, most of them did)."""
    fake_dns(monkeypatch, {"hooks.test": ["127.0.0.1"], "localhost.": ["127.0.0.1"]})
    port = receiver.port
    endpoints = {
        "plain": f"http://127.0.0.1:{port}/hook",
        "decimal": f"http://2130706433:{port}/hook",
        "hex": f"http://0x7f.1:{port}/hook",
        "short": f"http://127.1:{port}/hook",
        "octal": f"http://0177.0.0.1:{port}/hook",
        "mapped": f"http://[::ffff:127.0.0.1]:{port}/hook",
        "localhost": f"http://localhost:{port}/hook",
        "localhost-dot": f"http://localhost.:{port}/hook",
        "name": f"http://hooks.test:{port}/hook",
        "zero": f"http://0.0.0.0:{port}/hook",
        "metadata": "http://169.254.169.254/latest/meta-data/",
        "user-info": f"http://user:secret@example.com:{port}/hook",
    }
    hooks = Webhooks(api_key=API_KEY, secret=SECRET, attempts=50, **FAST)
    with caplog.at_level(logging.WARNING, logger="meetcore_webhooks"):
        async with engine_with(db, hooks) as engine:
            for name, url in endpoints.items():
                await room(engine, name, url)
                await join(engine, name, "ada")
            await wait_until(lambda: all(parked(hooks, name) for name in endpoints))
            assert receiver.received == []
            errors: dict[str, str] = {}
            for name in endpoints:
                lane = parked(hooks, name)
                assert lane is not None and lane.attempts == 1, (name, lane)
                assert lane.last_error is not None and lane.last_error.startswith("refused: ")
                errors[name] = lane.last_error
            for name in endpoints.keys() - {"metadata", "octal", "user-info", "zero"}:
                assert " a loopback address" in errors[name], errors[name]
            assert errors["zero"] == "refused: 0.0.0.0 is an unspecified address"
            assert errors["decimal"] == "refused: 2130706433 is 127.0.0.1, a loopback address"
            assert errors["mapped"] == "refused: ::ffff:127.0.0.1 is a loopback address (127.0.0.1)"
            assert errors["name"] == "refused: hooks.test is 127.0.0.1, a loopback address"
            assert errors["metadata"] == "refused: 169.254.169.254 is a link-local address"
            assert "not a valid URL" in errors["octal"]
            assert "user info" in errors["user-info"]
            await wait_saved(
                db,
                lambda s: (
                    sum(lane.parked_at is not None for lane in s.lanes.values()) == len(endpoints)
                ),
            )
            status = await run_cli("webhooks", "status", "--store", db)
            report = json.loads(
                (await run_cli("webhooks", "status", "--store", db, "--json")).output
            )
    assert "parked     24 deliveries of 12 meetings" in status.output, status.output
    assert "refused: hooks.test is 127.0.0.1, a loopback address" in status.output
    assert {lane["lastError"] for lane in report["lanes"]} == set(errors.values())
    refusals = [r for r in caplog.records if "refused" in r.getMessage()]
    assert len(refusals) == len(endpoints), [r.getMessage() for r in refusals]


async def test_an_allowed_network_is_delivered_to_and_the_rest_still_refused(
    receiver: Receiver, db: str
) -> None:
    other = Receiver(host="127.0.0.2")
    await other.start()
    try:
        hooks = webhooks(allow_networks=("127.0.0.1/32",))
        async with engine_with(db, hooks) as engine:
            await room(engine, "allowed", receiver.url())
            await room(engine, "other", other.url())
            await join(engine, "allowed", "ada")
            await join(engine, "other", "ada")
            await wait_until(lambda: parked(hooks, "other") is not None)
            await wait_until(lambda: len(receiver.bodies()) == 2)
        assert other.received == []
        lane = parked(hooks, "other")
        assert lane is not None
        assert lane.last_error == "refused: 127.0.0.2 is a loopback address"
    finally:
        await other.stop()


async def test_a_name_is_resolved_once_and_the_checked_address_is_the_one_connected_to(
    receiver: Receiver, db: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """hooks.test exists only in the fake resolver: delivery to it works only if the
    connection goes to the address that was checked, and the request still names it."""
    resolved = fake_dns(monkeypatch, {"hooks.test": ["127.0.0.1"]})
    hooks = webhooks()
    async with engine_with(db, hooks) as engine:
        await room(engine, "room-1", receiver.url(host="hooks.test"))
        await join(engine, "room-1", "ada")
        await wait_until(lambda: len(receiver.bodies()) == 2)
    assert {r.headers["host"] for r in receiver.received} == {f"hooks.test:{receiver.port}"}
    assert resolved == ["hooks.test"], "one connection, resolved once"


async def test_a_name_with_one_internal_address_among_public_ones_is_refused(
    receiver: Receiver, db: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    fake_dns(monkeypatch, {"rebind.test": ["93.184.216.34", "10.0.0.1"]})
    hooks = webhooks()
    async with engine_with(db, hooks) as engine:
        await room(engine, "room-1", f"http://rebind.test:{receiver.port}/hook")
        await join(engine, "room-1", "ada")
        await wait_until(lambda: parked(hooks, "room-1") is not None)
    lane = parked(hooks, "room-1")
    assert lane is not None
    assert lane.last_error == "refused: rebind.test is 10.0.0.1, a private address"


async def test_https_to_a_name_keeps_its_sni_and_certificate_check(
    db: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The certificate names hooks.test only (no address): the TLS handshake verifies
    it against the name, with the name as SNI, although the connection goes to the
    address the guard checked. A certificate for another name fails."""
    context, ca_file = tls_pair("hooks.test", str(tmp_path))
    monkeypatch.setenv("SSL_CERT_FILE", ca_file)
    fake_dns(monkeypatch, {"hooks.test": ["127.0.0.1"], "other.test": ["127.0.0.1"]})
    secure = Receiver(tls=context)
    await secure.start()
    try:
        hooks = webhooks(attempts=2)
        async with engine_with(db, hooks) as engine:
            await room(engine, "good", secure.url("/good", host="hooks.test"))
            await room(engine, "wrong", secure.url("/wrong", host="other.test"))
            await join(engine, "good", "ada")
            await join(engine, "wrong", "ada")
            await wait_until(lambda: len(secure.bodies("/good")) == 2)
            await wait_until(lambda: parked(hooks, "wrong") is not None)
        assert secure.bodies("/wrong") == []
        assert {r.headers["host"] for r in secure.received} == {f"hooks.test:{secure.port}"}
        assert "hooks.test" in secure.server_names and "other.test" in secure.server_names
        lane = parked(hooks, "wrong")
        assert lane is not None and "certificate" in str(lane.last_error).lower(), lane
    finally:
        await secure.stop()


async def test_redirects_are_not_followed_even_to_an_allowed_address(
    receiver: Receiver, db: str
) -> None:
    inside = Receiver(host="127.0.0.2")
    await inside.start()
    try:
        receiver.redirect["/hook"] = inside.url("/internal")
        receiver.redirect["/to-allowed"] = receiver.url("/final")
        hooks = webhooks(allow_networks=("127.0.0.1/32",), attempts=2)
        async with engine_with(db, hooks) as engine:
            await room(engine, "room-1", receiver.url())
            await room(engine, "room-2", receiver.url("/to-allowed"))
            await join(engine, "room-1", "ada")
            await join(engine, "room-2", "ada")
            await wait_until(lambda: bool(parked(hooks, "room-1") and parked(hooks, "room-2")))
        assert inside.received == []
        assert receiver.accepted() == [], "not /final either: no redirect is followed"
        lane = parked(hooks, "room-1")
        assert lane is not None
        assert lane.last_error == "HTTP 302 (redirects are not followed)"
        assert lane.attempts == 2, "a redirect is a failed attempt, retried as usual"
    finally:
        await inside.stop()


# -- configuration -------------------------------------------------------------------


def test_allowed_networks_from_options_and_the_environment() -> None:
    hooks = Webhooks(allow_networks=("10.0.0.0/8", "fd00::/8", "192.168.1.7"))
    assert [str(n) for n in hooks.allowed] == ["10.0.0.0/8", "fd00::/8", "192.168.1.7/32"]
    hooks = Webhooks.from_env({"MEETCORE_WEBHOOK_ALLOW_NETWORKS": "127.0.0.0/8, 10.1.0.0/16,"})
    assert [str(n) for n in hooks.allowed] == ["127.0.0.0/8", "10.1.0.0/16"]
    assert Webhooks.from_env({}).allowed == ()
    for bad in ("nope", "10.0.0.1/8", "10.0.0.0/33"):
        with pytest.raises(ConfigError) as raised:
            Webhooks.from_env({"MEETCORE_WEBHOOK_ALLOW_NETWORKS": bad})
        message = str(raised.value)
        assert "\n" not in message and repr(bad) in message
        assert "MEETCORE_WEBHOOK_ALLOW_NETWORKS" in message
    with pytest.raises(ConfigError, match="user info"):
        Webhooks(url="https://user:pw@hooks.example.com/")


def test_allowing_every_address_is_warned_about(caplog: pytest.LogCaptureFixture) -> None:
    """0.0.0.0/0 (or ::/0, 169.254.0.0/16, fd00::/8) lets a room's webhook URL reach a
    cloud metadata address (169.254.169.254, fd00:ec2::254): allowed, as the operator
    asked, but said at start."""
    with caplog.at_level(logging.WARNING, logger="meetcore_webhooks"):
        Webhooks(allow_networks=("10.0.0.0/8", "192.168.1.7", "fd01::/16"))
        assert caplog.records == []
        Webhooks(allow_networks=("0.0.0.0/0", "::/0", "169.254.0.0/16", "fd00::/8"))
    warned = [r.getMessage() for r in caplog.records]
    assert all("cloud metadata address" in line for line in warned), warned
    assert [line.split()[4].rstrip(",") for line in warned] == [
        "0.0.0.0/0",
        "::/0",
        "169.254.0.0/16",
        "fd00::/8",
    ]


def test_allowing_nat64_or_6to4_of_the_metadata_address_is_warned_about(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """64:ff9b::/96 (NAT64, common on IPv6-only hosts) and 2002::/16 (6to4) allowed let
    64:ff9b::a9fe:a9fe and 2002:a9fe:a9fe:: through, and these reach 169.254.169.254
    (`refusal` says so itself): warned about as 169.254.0.0/16 is."""
    for network, address in (
        ("64:ff9b::/96", "64:ff9b::a9fe:a9fe"),
        ("2002::/16", "2002:a9fe:a9fe::1"),
        ("2002:a9fe:a9fe:1::/64", "2002:a9fe:a9fe:1::1"),
    ):
        allowed = parse_networks([network])
        assert refusal(ipaddress.ip_address(address), allowed) is None  # it is allowed
        caplog.clear()
        with caplog.at_level(logging.WARNING, logger="meetcore_webhooks"):
            Webhooks(allow_networks=(network,))
        assert [r.getMessage().split()[4].rstrip(",") for r in caplog.records] == [network]
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="meetcore_webhooks"):  # no false alarm
        Webhooks(allow_networks=("64:ff9b::a00:0/104", "2002:a00::/24", "::ffff:0:0/96"))
    assert caplog.records == []


# -- through the rooms API -----------------------------------------------------------

KEYS = {API_KEY: SECRET}


async def test_only_allow_mod_tokens_choose_where_webhooks_go() -> None:
    async with Engine.open("memory://", plugins=[JWTAuth(KEYS)], autoload=False) as engine:
        transport = httpx.ASGITransport(app=Server(engine).app)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as api:

            def auth(*permissions: str) -> dict[str, str]:
                token = mint_token(api_key=API_KEY, secret=SECRET, permissions=permissions)
                return {"Authorization": token}

            plain = await api.post("/v2/rooms", json={}, headers=auth("ask_join"))
            assert plain.status_code == 200, "creating a room needs only a valid token"
            before = await engine.store.read_all()
            hook = {"webhook": {"endPoint": "http://169.254.169.254/latest/meta-data/"}}
            for permissions in (("ask_join",), ("allow_join",)):
                for body in (hook, {"customRoomId": "probe", **hook}):
                    refused = await api.post("/v2/rooms", json=body, headers=auth(*permissions))
                    assert refused.status_code == 403, refused.text
                    assert refused.json() == {
                        "statusCode": 403,
                        "code": 4025,
                        "error": "UNAUTHORIZED_REQUEST",
                        "message": "setting a room's webhook needs a token with allow_mod",
                    }
            assert await engine.store.read_all() == before, "nothing reached the log"
            made = await api.post(
                "/v2/rooms",
                json={"customRoomId": "hooked", **hook},
                headers=auth("allow_join", "allow_mod"),
            )
            assert made.status_code == 200, made.text
            assert made.json()["webhook"] == {**hook["webhook"], "events": []}
        (record,) = await engine.store.read("hooked")
        assert isinstance(record.event, MeetingInitialized)
        assert record.event.webhook == Webhook(end_point=hook["webhook"]["endPoint"])


# -- a real meetcore serve -----------------------------------------------------------


def test_meetcore_serve_takes_allowed_networks_and_refuses_bad_ones(tmp_path: Path) -> None:
    from meetcore_webhooks import plugin

    (hooks,) = plugin.meetcore_serve_plugins(
        options={"webhook_networks": ("127.0.0.0/8", "10.0.0.0/8")}
    )
    assert isinstance(hooks, Webhooks)
    assert [str(n) for n in hooks.allowed] == ["127.0.0.0/8", "10.0.0.0/8"]
    networks = ["--webhook-allow-network", "127.0.0.0/8", "--webhook-allow-network", "10.0.0.1/8"]
    line = serve_refuses(tmp_path, "--port", "0", "--store", "memory://", *networks)
    assert line.startswith("meetcore: error: allowed webhook network '10.0.0.1/8'"), line


def test_meetcore_serve_logs_the_metadata_warning_as_it_logs(tmp_path: Path) -> None:
    """Through the server's logging, in its format (a JSON line here): it was printed
    bare on stderr, before logging was set up, where a JSON log pipeline missed it."""
    args = ["--webhook-allow-network", "0.0.0.0/0", "--log-format", "json"]
    with ServeProcess(tmp_path, store="memory://", args=args) as server:
        pass  # started: its plugins are made
    lines = [line for line in server.output.splitlines() if "cloud metadata address" in line]
    assert len(lines) == 1, server.output
    record = json.loads(lines[0])
    assert (record["level"], record["logger"]) == ("warning", "meetcore_webhooks"), record


async def test_meetcore_serve_refuses_loopback_until_the_operator_allows_it(
    receiver: Receiver, tmp_path: Path
) -> None:
    """The probe that found it, on a real server: a room whose webhook points at the
    server's own loopback gets nothing sent there (parked, visible in `meetcore webhooks
    status`, logged once); started again with --webhook-allow-network 127.0.0.0/8,
    `meetcore webhooks retry --all` delivers it."""
    store = f"sqlite:///{tmp_path / 'meetcore.db'}"

    def token(*permissions: str) -> str:
        keys = json.loads((tmp_path / "meetcore-keys.json").read_text())
        ((api_key, secret),) = keys.items()
        return mint_token(api_key=api_key, secret=secret, permissions=permissions)

    async def lane_of(meeting_id: str) -> dict[str, Any] | None:
        done = await run_cli("webhooks", "status", "--store", store, "--json")
        lanes = json.loads(done.output)["lanes"]
        return next((lane for lane in lanes if lane["meetingId"] == meeting_id), None)

    with ServeProcess(tmp_path, store=store) as server:
        hook = {"customRoomId": "probe", "webhook": {"endPoint": receiver.url()}}
        async with httpx.AsyncClient(base_url=server.url, timeout=10) as http:
            asked = await http.post(
                "/v2/rooms", json=hook, headers={"Authorization": token("ask_join")}
            )
            assert asked.status_code == 403 and asked.json()["code"] == 4025, asked.text
            made = await http.post(
                "/v2/rooms", json=hook, headers={"Authorization": token("allow_mod", "allow_join")}
            )
            assert made.status_code == 200, made.text
        async with websockets.connect(server.url.replace("http://", "ws://") + "/ws") as ws:
            join = {
                "type": "join",
                "token": token("allow_join"),
                "meetingId": "probe",
                "name": "Ada",
            }
            await ws.send(json.dumps(join))
            assert json.loads(await ws.recv())["type"] == "welcome"
        with anyio.fail_after(10):
            while (lane := await lane_of("probe")) is None or lane["status"] != "parked":
                await anyio.sleep(0.05)
        assert lane["lastError"] == "refused: 127.0.0.1 is a loopback address"
        assert lane["attempts"] == 1
        assert receiver.received == []
        assert await server.stop() == 0
    assert server.output.count("webhook probe:") == 1, server.output
    assert "parked at once, refused: 127.0.0.1 is a loopback address" in server.output

    allowed = ["--webhook-allow-network", "127.0.0.0/8"]
    with ServeProcess(tmp_path, store=store, args=allowed) as server:
        retried = await run_cli("webhooks", "retry", "--store", store, "--all")
        assert retried.exit_code == 0, retried.output
        await wait_until(lambda: len(receiver.bodies()) == 2, timeout=10)
        assert await server.stop() == 0
    assert [b.webhook_type for b in receiver.bodies()] == ["session-started", "participant-joined"]
