"""A refused token says what is wrong with it, in the same words and with the same code
over the REST API (`Authorization`) and the signaling's join, against a real server:
never a secret, never a hostile token echoed back, always one printable line."""

from __future__ import annotations

import re
import time
from collections.abc import AsyncIterator
from typing import Any

import anyio
import httpx
import jwt
import pytest
import uvicorn

from meetcore import Engine, ErrorCode, Principal, Rejected
from meetcore import hookimpl as meetcore_hookimpl
from meetcore.auth import MAX_MESSAGE_CHARS
from meetcore.commands import InitMeeting
from meetcore_client import init_meeting
from meetcore_jwt import JWTAuth, mint_token
from meetcore_server.app import Server

pytestmark = pytest.mark.anyio

SECRET = "test-secret-0123456789abcdef0123"
KEYS = {"test-key": SECRET}
ROOM = "abc-def-ghi"
NOW = int(time.time())
LATER = NOW + 3600
ISO = r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ"


def _iso(seconds: int) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(seconds))


def _signed(claims: dict[str, Any], secret: str = SECRET, algorithm: str = "HS256") -> str:
    payload = {"apikey": "test-key", "permissions": ["allow_join"], "exp": LATER, **claims}
    return jwt.encode({k: v for k, v in payload.items() if v is not ...}, secret, algorithm)


GOOD = mint_token(api_key="test-key", secret=SECRET)
OTHER_SECRETS = mint_token(api_key="test-key", secret="another-secret-0123456789abcdef-01")
HEAD, BODY, _ = GOOD.split(".")

#: (token, code, the whole message as a regular expression)
CASES: list[Any] = [
    pytest.param(
        "garbage",
        4002,
        re.escape(
            "no auth plugin recognizes the token 'garbage'; a VideoSDK token is a JWT, three "
            "base64url parts separated by dots, as 'meetcore token' prints"
        ),
        id="garbage",
    ),
    pytest.param(
        "not.a.jwt",
        4002,
        re.escape("malformed token: its header is not base64url-encoded JSON"),
        id="three-parts-not-a-jwt",
    ),
    pytest.param(
        f"{HEAD}.{BODY[:20]}",
        4002,
        re.escape(
            "malformed token: a JWT is three base64url parts separated by dots, this one "
            "has 2 (was it cut short when copied?)"
        ),
        id="cut-short",
    ),
    pytest.param(
        OTHER_SECRETS,
        4002,
        re.escape("bad signature: the token was not signed with the secret of apikey 'test-key'"),
        id="bad-signature",
    ),
    pytest.param(
        mint_token(api_key="test-key", secret=SECRET, expires_in=60, now=NOW - 7200),
        4002,
        rf"the token expired at {re.escape(_iso(NOW - 7140))} \(it is {ISO} now\)",
        id="expired",
    ),
    pytest.param(
        _signed({"nbf": LATER - 60}),
        4002,
        rf"the token is not valid before {re.escape(_iso(LATER - 60))} \(it is {ISO} now\)",
        id="not-yet-valid",
    ),
    pytest.param(
        mint_token(api_key="other-key", secret="other-secret-0123456789abcdef-0123"),
        4001,
        re.escape("unknown apikey 'other-key'"),
        id="unknown-apikey",
    ),
    pytest.param(
        _signed({"apikey": ...}),
        4001,
        re.escape("the token has no apikey (a non-empty string)"),
        id="no-apikey",
    ),
    pytest.param(
        _signed({"exp": ...}),
        4002,
        re.escape("the token has no exp: every token must expire"),
        id="no-exp",
    ),
    pytest.param(
        jwt.encode(
            {"apikey": "test-key", "permissions": ["allow_join"], "exp": LATER}, None, "none"
        ),
        4002,
        re.escape("the token's algorithm must be HS256, not 'none'"),
        id="alg-none",
    ),
    pytest.param(
        _signed({}, SECRET * 2, "HS512"),
        4002,
        re.escape("the token's algorithm must be HS256, not 'HS512'"),
        id="alg-HS512",
    ),
    pytest.param(
        "x" * 10_000,
        4002,
        re.escape("the token is 10,000 characters long: at most 8192 are read"),
        id="oversized",
    ),
    pytest.param(
        f"{HEAD}.{BODY}\xff.x",
        4002,
        re.escape(
            f"malformed token: character {len(HEAD) + len(BODY) + 2} is 'ÿ', which no JWT "
            "has (three base64url parts separated by dots)"
        ),
        id="not-base64url",
    ),
    pytest.param(
        "Basic dXNlcjpodW50ZXIy",
        4002,
        re.escape(
            "no auth plugin recognizes the token (22 characters, scheme 'Basic'); a VideoSDK "
            "token is a JWT, three base64url parts separated by dots, as 'meetcore token' prints"
        ),
        id="another-scheme-not-echoed",
    ),
]


class Running:
    def __init__(self, engine: Engine, url: str) -> None:
        self.engine = engine
        self.url = url


async def _serve(plugins: list[object]) -> AsyncIterator[Running]:
    async with Engine.open(store="memory://", plugins=plugins, autoload=False) as engine:
        await engine.execute(InitMeeting(meeting_id=ROOM))
        config = uvicorn.Config(
            Server(engine).app, host="127.0.0.1", port=0, lifespan="on", log_level="warning"
        )
        server = uvicorn.Server(config)
        async with anyio.create_task_group() as tasks:
            tasks.start_soon(server.serve)
            with anyio.fail_after(10):
                while not server.started:
                    await anyio.sleep(0.01)
            port = server.servers[0].sockets[0].getsockname()[1]
            yield Running(engine, f"http://127.0.0.1:{port}")
            server.should_exit = True


@pytest.fixture
async def running() -> AsyncIterator[Running]:
    async for running in _serve([JWTAuth(KEYS)]):
        yield running


async def refusals(running: Running, token: str) -> tuple[Rejected, Rejected]:
    """How the REST API and the signaling's join refuse `token`."""
    async with httpx.AsyncClient(base_url=running.url) as http:
        # as HTTP carries it: bytes, which the server reads as Latin-1
        response = await http.get("/v2/rooms", headers={"Authorization": token.encode("latin-1")})
    body = response.json()
    assert response.status_code == body["statusCode"]
    assert body["error"] == ErrorCode(body["code"]).name
    rest = Rejected(ErrorCode(body["code"]), body["message"])
    meeting = init_meeting(base_url=running.url, token=token, meeting_id=ROOM)
    with pytest.raises(Rejected) as joined:
        await meeting.join()
    return rest, joined.value


@pytest.mark.parametrize(("token", "code", "message"), CASES)
async def test_a_bad_token_is_refused_in_words_over_rest_and_join(
    running: Running, token: str, code: int, message: str
) -> None:
    rest, join = await refusals(running, token)
    assert (rest.code, join.code) == (code, code), (rest, join)
    assert re.fullmatch(message, rest.message), rest.message
    # the same words, but the server's time, which may tick between the two refusals
    now = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ now")
    assert now.sub("NOW", join.message) == now.sub("NOW", rest.message)
    assert rest.message.isprintable() and len(rest.message) <= MAX_MESSAGE_CHARS
    assert SECRET not in rest.message
    if len(token) > 12:  # a short plain word may be quoted back; a credential never
        assert token not in rest.message
        assert token[-12:] not in rest.message
    state = await running.engine.state(ROOM)
    assert state is not None and state.participants == {}


def test_every_case_the_issue_names_is_here() -> None:
    ids = {case.id for case in CASES}
    named = {"garbage", "three-parts-not-a-jwt", "bad-signature", "expired", "unknown-apikey"}
    assert named | {"alg-none", "oversized"} <= ids


class Hostile:
    """An auth plugin whose refusals are long and full of control characters."""

    @meetcore_hookimpl
    def meetcore_authenticate(self, credential: str, meeting_id: str | None) -> Principal | None:
        if not credential.startswith("hostile"):
            return None
        raise Rejected(ErrorCode.INVALID_TOKEN, "bad\n\x1b[31mtoken\r\n" * 1000)


class NotMine:
    """An auth plugin that recognizes nothing."""

    @meetcore_hookimpl
    def meetcore_authenticate(self, credential: str, meeting_id: str | None) -> Principal | None:
        return None


async def test_a_plugins_refusal_reaches_the_caller_as_one_bounded_line() -> None:
    async for running in _serve([JWTAuth(KEYS), Hostile()]):
        rest, join = await refusals(running, "hostile-token")
        assert rest.code == join.code == ErrorCode.INVALID_TOKEN
        assert rest.message == join.message
        assert rest.message.startswith(r"bad \x1b[31mtoken bad \x1b[31mtoken")
        assert rest.message.isprintable() and len(rest.message) == MAX_MESSAGE_CHARS
        assert rest.message.endswith("...")
        # the other plugins still judge their own credentials
        rest, _ = await refusals(running, OTHER_SECRETS)
        assert rest.message.startswith("bad signature")


async def test_a_token_no_plugin_recognizes_and_no_plugin_at_all() -> None:
    async for running in _serve([NotMine()]):
        rest, join = await refusals(running, GOOD)
        assert rest.code == join.code == ErrorCode.INVALID_TOKEN
        assert rest.message.startswith("no auth plugin recognizes the token (")
        assert rest.message == join.message
    async for running in _serve([]):
        rest, join = await refusals(running, GOOD)
        assert rest.code == join.code == ErrorCode.INVALID_TOKEN
        assert rest.message == (
            "no auth plugin is installed, so no token is accepted (install meetcore-jwt)"
        )


async def test_control_characters_in_a_token_come_back_escaped(running: Running) -> None:
    """Over the signaling only: HTTP headers cannot carry them."""
    meeting = init_meeting(
        base_url=running.url, token=f"{HEAD}.{BODY}\x1b[2J\u202e.x", meeting_id=ROOM
    )
    with pytest.raises(Rejected) as joined:
        await meeting.join()
    assert joined.value.code == ErrorCode.INVALID_TOKEN
    assert joined.value.message == (
        f"malformed token: character {len(HEAD) + len(BODY) + 2} is '\\x1b', which no JWT "
        "has (three base64url parts separated by dots)"
    )


@pytest.mark.parametrize("header", ["", "Bearer", "bearer"])
async def test_no_token_says_where_it_goes(running: Running, header: str) -> None:
    async with httpx.AsyncClient(base_url=running.url) as http:
        response = await http.get("/v2/rooms", headers={"Authorization": header})
    assert response.json()["message"] == (
        "no token: send it in the Authorization header, as is or after Bearer"
    )
    meeting = init_meeting(base_url=running.url, token="", meeting_id=ROOM)
    with pytest.raises(Rejected) as joined:
        await meeting.join()
    assert joined.value.message == "no token: the join message needs one in its token field"
