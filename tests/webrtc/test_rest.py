"""The REST rooms API (meetcore_server.rest), in process through httpx's ASGI transport,
against the OpenAPI document with schemathesis, and once over a real socket."""

from __future__ import annotations

import functools
import re
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import anyio
import anyio.from_thread
import httpx
import msgspec
import pytest
import schemathesis
import uvicorn
from hypothesis import HealthCheck, given, settings
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.core.result import Ok
from schemathesis.specs.openapi.checks import response_schema_conformance
from starlette.applications import Starlette
from starlette.routing import Route

import meetcore_sqlite
from meetcore import Engine, ErrorCode, LeaveReason, Rejected
from meetcore import hookimpl as meetcore_hookimpl
from meetcore import iso_time as iso
from meetcore.commands import InitMeeting, Join, Leave
from meetcore.events import ParticipantLeft
from meetcore_jwt import JWTAuth, mint_token
from meetcore_server import rest
from meetcore_server.app import Server

pytestmark = pytest.mark.anyio

KEYS = {"test-key": "test-secret-0123456789abcdef0123"}
GENERATED = re.compile(r"[a-z]{3}-[a-z]{3}-[a-z]{3}")
ISO = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z")
T0 = 1_700_000_000_000  # 2023-11-14T22:13:20.000Z


def token(**claims: Any) -> str:
    return mint_token(api_key="test-key", secret=KEYS["test-key"], **claims)


def auth(value: str | None = None, **claims: Any) -> dict[str, str]:
    return {"Authorization": value if value is not None else token(**claims)}


class Clock:
    """The engine's clock, moved by hand: event times in the answers are exact."""

    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> int:
        return self.now


class API:
    """An engine, its server, and an HTTP client on the server's ASGI app."""

    def __init__(self, engine: Engine, server: Server, client: httpx.AsyncClient, clock: Clock):
        self.engine = engine
        self.server = server
        self.client = client
        self.clock = clock

    async def log_length(self) -> int:
        return len(await self.engine.store.read_all(0, limit=1_000_000))

    async def request(
        self, method: str, path: str, body: Any = None, headers: dict[str, str] | None = None
    ) -> httpx.Response:
        return await self.client.request(
            method, path, json=body, headers=headers if headers is not None else auth()
        )

    async def create(self, **body: Any) -> dict[str, Any]:
        response = await self.request("POST", "/v2/rooms", body)
        assert response.status_code == 200, response.text
        room: dict[str, Any] = response.json()
        return room

    async def join(self, room: str, who: str, session: str = "s1", name: str = "") -> None:
        await self.engine.execute(
            Join(
                meeting_id=room,
                participant_id=who,
                connection_id=f"c-{who}",
                session_id=session,
                name=name or who.title(),
            )
        )

    async def leave(self, room: str, who: str) -> None:
        await self.engine.execute(
            Leave(meeting_id=room, participant_id=who, connection_id=f"c-{who}")
        )


@pytest.fixture
async def api() -> AsyncIterator[API]:
    clock = Clock()
    async with Engine.open(
        store="memory://",
        plugins=[JWTAuth(KEYS)],
        autoload=False,
        clock=clock,
        sweep_leases=False,
    ) as engine:
        server = Server(engine)
        transport = httpx.ASGITransport(app=server.app)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
            yield API(engine, server, client, clock)


# ---------------------------------------------------------------------------
# Rooms


async def test_create_room_with_the_token_raw_as_the_seeds_send_it(api: API) -> None:
    response = await api.client.post("/v2/rooms", headers={"Authorization": token()})
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/json"
    room = response.json()
    assert GENERATED.fullmatch(room["roomId"])
    assert room == {
        "roomId": room["roomId"],
        "customRoomId": None,
        "userId": "test-key",
        "disabled": False,
        "createdAt": "2023-11-14T22:13:20.000Z",
        "updatedAt": "2023-11-14T22:13:20.000Z",
        "id": room["roomId"],
        "links": {
            "get_room": f"http://test/v2/rooms/{room['roomId']}",
            "get_session": f"http://test/v2/sessions?roomId={room['roomId']}",
        },
        "autoCloseConfig": {"type": "session-ends"},
    }
    state = await api.engine.state(room["roomId"])
    assert state is not None and state.active


async def test_create_room_with_a_bearer_token_and_options(api: API) -> None:
    body = {
        "webhook": {"endPoint": "https://hooks.example/meetcore", "events": ["session-started"]},
        "autoCloseConfig": {"type": "session-end-and-deactivate", "duration": 30},
        "autoStartConfig": {"recording": {"enabled": True}},
    }
    response = await api.request("POST", "/v2/rooms", body, {"Authorization": f"Bearer {token()}"})
    assert response.status_code == 200
    room = response.json()
    assert room["webhook"] == body["webhook"]
    assert room["autoCloseConfig"] == {"type": "session-end-and-deactivate"}
    state = await api.engine.state(room["roomId"])
    assert state is not None and state.auto_close == "session-end-and-deactivate"
    assert state.webhook is not None and state.webhook.end_point.endswith("/meetcore")


async def test_generated_ids_are_fresh(api: API) -> None:
    ids = {(await api.create())["roomId"] for _ in range(20)}
    assert len(ids) == 20 and all(GENERATED.fullmatch(i) for i in ids)


async def test_custom_room_id_is_the_room_id_and_reusing_it_returns_the_room(api: API) -> None:
    first = await api.create(customRoomId="team-standup_1")
    assert first["roomId"] == first["customRoomId"] == "team-standup_1"
    api.clock.now += 60_000
    length = await api.log_length()
    again = await api.create(
        customRoomId="team-standup_1", autoCloseConfig={"type": "session-end-and-deactivate"}
    )
    assert again == first  # the existing room, unchanged: the first creation's options stand
    assert await api.log_length() == length


async def test_concurrent_creations_of_one_custom_id_make_one_room(api: API) -> None:
    answers: list[dict[str, Any]] = []

    async def create() -> None:
        answers.append(await api.create(customRoomId="busy-room"))

    async with anyio.create_task_group() as tasks:
        for _ in range(10):
            tasks.start_soon(create)
    assert len({msgspec.json.encode(a) for a in answers}) == 1
    assert await api.log_length() == 1


async def test_list_rooms_pages_newest_first(api: API) -> None:
    created = []
    for _ in range(5):
        created.append((await api.create())["roomId"])
        api.clock.now += 1000
    newest_first = created[::-1]

    response = await api.request("GET", "/v2/rooms")
    assert response.status_code == 200
    body = response.json()
    assert body["pageInfo"] == {"currentPage": 1, "perPage": 20, "lastPage": 1, "total": 5}
    assert [r["roomId"] for r in body["data"]] == newest_first

    pages = []
    for page in (1, 2, 3):
        body = (await api.request("GET", f"/v2/rooms?page={page}&perPage=2")).json()
        assert body["pageInfo"] == {"currentPage": page, "perPage": 2, "lastPage": 3, "total": 5}
        pages += [r["roomId"] for r in body["data"]]
    assert pages == newest_first

    beyond = (await api.request("GET", "/v2/rooms?page=9&perPage=2")).json()
    assert beyond == {
        "pageInfo": {"currentPage": 9, "perPage": 2, "lastPage": 3, "total": 5},
        "data": [],
    }
    most = (await api.request("GET", "/v2/rooms?perPage=100")).json()
    assert most["pageInfo"]["perPage"] == 100 and len(most["data"]) == 5
    for bad in ("perPage=0", "perPage=101", "page=0"):
        response = await api.request("GET", f"/v2/rooms?{bad}")
        assert response.status_code == 400 and response.json()["code"] == 3073


async def test_empty_listing_has_one_empty_page(api: API) -> None:
    body = (await api.request("GET", "/v2/rooms")).json()
    assert body == {
        "pageInfo": {"currentPage": 1, "perPage": 20, "lastPage": 1, "total": 0},
        "data": [],
    }


async def test_get_and_validate_a_room(api: API) -> None:
    room = await api.create(customRoomId="daily")
    for path in ("/v2/rooms/daily", "/v2/rooms/validate/daily"):
        response = await api.request("GET", path)
        assert response.status_code == 200 and response.json() == room
    for path in ("/v2/rooms/nope-nope-nop", "/v2/rooms/validate/nope-nope-nop"):
        response = await api.request("GET", path)
        assert response.status_code == 404
        assert response.json() == {
            "statusCode": 404,
            "code": 4003,
            "error": "INVALID_MEETING_ID",
            "message": "no room 'nope-nope-nop'",
        }


async def test_deactivate_then_validate_shows_the_room_disabled(api: API) -> None:
    room_id = (await api.create())["roomId"]
    await api.join(room_id, "ann")
    api.clock.now += 5000
    response = await api.request("POST", "/v2/rooms/deactivate", {"roomId": room_id})
    assert response.status_code == 200
    room = response.json()
    assert room["disabled"] is True
    assert room["updatedAt"] == iso(T0 + 5000) and room["createdAt"] == iso(T0)
    validated = await api.request("GET", f"/v2/rooms/validate/{room_id}")
    assert validated.status_code == 200 and validated.json() == room
    # everyone left with ROOM_CLOSE, and joining now gives 4052
    left = [
        r.event
        for r in await api.engine.store.read(room_id)
        if isinstance(r.event, ParticipantLeft)
    ]
    assert [e.reason for e in left] == [LeaveReason.ROOM_CLOSE]
    with pytest.raises(Rejected) as refused:
        await api.join(room_id, "bob", session="s2")
    assert refused.value.code == ErrorCode.MEETING_ID_DISABLED
    # deactivating again answers with the room as it is, appending nothing
    length = await api.log_length()
    again = await api.request("POST", "/v2/rooms/deactivate", {"roomId": room_id})
    assert again.status_code == 200 and again.json() == room
    assert await api.log_length() == length


async def test_status_disables_and_enables_a_room(api: API) -> None:
    room_id = (await api.create())["roomId"]
    disabled = await api.request("POST", f"/v2/rooms/{room_id}", {"status": "disabled"})
    assert disabled.status_code == 200 and disabled.json()["disabled"] is True
    api.clock.now += 1000
    enabled = await api.request("POST", f"/v2/rooms/{room_id}", {"status": "enabled"})
    assert enabled.status_code == 200
    assert enabled.json()["disabled"] is False and enabled.json()["updatedAt"] == iso(T0 + 1000)
    await api.join(room_id, "ann")  # open again
    same = await api.request("POST", f"/v2/rooms/{room_id}", {"status": "enabled"})
    assert same.status_code == 200 and same.json() == enabled.json()
    unknown = await api.request("POST", "/v2/rooms/nope", {"status": "enabled"})
    assert unknown.status_code == 404 and unknown.json()["code"] == 4003
    unknown = await api.request("POST", "/v2/rooms/deactivate", {"roomId": "nope"})
    assert unknown.status_code == 404 and unknown.json()["code"] == 4003


# ---------------------------------------------------------------------------
# Sessions


async def test_sessions_show_participants_with_their_time_logs(api: API) -> None:
    room_id = (await api.create(customRoomId="weekly"))["roomId"]
    await api.join(room_id, "ann", session="s1", name="Ann")  # T0
    api.clock.now = T0 + 2000
    await api.join(room_id, "bob", session="s1", name="Bob")
    api.clock.now = T0 + 5000
    await api.leave(room_id, "ann")
    api.clock.now = T0 + 6000
    await api.join(room_id, "ann", session="s1", name="Ann B.")  # back, a new stay
    api.clock.now = T0 + 8500

    response = await api.request("GET", "/v2/sessions/s1")
    assert response.status_code == 200
    assert response.json() == {
        "id": "s1",
        "roomId": "weekly",
        "customRoomId": "weekly",
        "start": iso(T0),
        "end": None,
        "participants": [
            {
                "participantId": "ann",
                "name": "Ann B.",
                "timelog": [
                    {"start": iso(T0), "end": iso(T0 + 5000)},
                    {"start": iso(T0 + 6000), "end": None},
                ],
            },
            {
                "participantId": "bob",
                "name": "Bob",
                "timelog": [{"start": iso(T0 + 2000), "end": None}],
            },
        ],
        "status": "ongoing",
        "activeDuration": 8,
        "links": {
            "get_room": "http://test/v2/rooms/weekly",
            "get_session": "http://test/v2/sessions/s1",
        },
    }
    active = (await api.request("GET", "/v2/sessions/s1/participants/active")).json()
    assert [p["participantId"] for p in active["data"]] == ["bob", "ann"]  # latest join last

    await api.leave(room_id, "bob")
    api.clock.now = T0 + 9999
    await api.leave(room_id, "ann")  # the last one out ends the session
    api.clock.now = T0 + 60_000
    ended = (await api.request("GET", "/v2/sessions/s1")).json()
    assert ended["status"] == "ended" and ended["end"] == iso(T0 + 9999)
    assert ended["activeDuration"] == 9  # start to end, not to now
    active = (await api.request("GET", "/v2/sessions/s1/participants/active")).json()
    assert active == {
        "pageInfo": {"currentPage": 1, "perPage": 20, "lastPage": 1, "total": 0},
        "data": [],
    }

    await api.join(room_id, "cy", session="s2")  # the room is reusable: a new session
    listed = (await api.request("GET", "/v2/sessions?roomId=weekly")).json()
    assert [s["id"] for s in listed["data"]] == ["s2", "s1"]  # newest first
    assert listed["pageInfo"]["total"] == 2
    by_custom = (
        await api.request("GET", "/v2/sessions/?customRoomId=weekly&perPage=1&page=2")
    ).json()
    assert [s["id"] for s in by_custom["data"]] == ["s1"]
    assert by_custom["pageInfo"] == {"currentPage": 2, "perPage": 1, "lastPage": 2, "total": 2}


async def test_session_participants_are_paged_in_order_of_first_join(api: API) -> None:
    room_id = (await api.create())["roomId"]
    names = [f"p{i:02d}" for i in range(7)]
    for name in names:
        await api.join(room_id, name)
    await api.leave(room_id, "p01")
    seen = []
    for page in (1, 2, 3):
        body = (
            await api.request("GET", f"/v2/sessions/s1/participants?perPage=3&page={page}")
        ).json()
        assert body["pageInfo"] == {"currentPage": page, "perPage": 3, "lastPage": 3, "total": 7}
        seen += [p["participantId"] for p in body["data"]]
    assert seen == names
    active = (
        await api.request("GET", "/v2/sessions/s1/participants/active?perPage=5&page=2")
    ).json()
    assert active["pageInfo"]["total"] == 6 and [p["participantId"] for p in active["data"]] == [
        "p06"
    ]


async def test_sessions_need_a_room(api: API) -> None:
    response = await api.request("GET", "/v2/sessions")
    assert response.status_code == 400 and response.json()["code"] == 3073
    for query in ("roomId=nope", "customRoomId=nope"):
        response = await api.request("GET", f"/v2/sessions?{query}")
        assert response.status_code == 404 and response.json()["code"] == 4003
    generated = (await api.create())["roomId"]  # a room without a customRoomId
    response = await api.request("GET", f"/v2/sessions?customRoomId={generated}")
    assert response.status_code == 404
    for path in (
        "/v2/sessions/nope",
        "/v2/sessions/nope/participants",
        "/v2/sessions/nope/participants/active",
    ):
        response = await api.request("GET", path)
        assert response.status_code == 404 and response.json()["code"] == 4003


async def test_end_session(api: API) -> None:
    room_id = (await api.create())["roomId"]
    await api.join(room_id, "ann")
    await api.join(room_id, "bob")
    api.clock.now += 3000
    wrong = await api.request("POST", "/v2/sessions/end", {"roomId": room_id, "sessionId": "s9"})
    assert wrong.status_code == 404 and "s9" in wrong.json()["message"]
    response = await api.request("POST", "/v2/sessions/end", {"roomId": room_id, "sessionId": "s1"})
    assert response.status_code == 200, response.text
    session = response.json()
    assert (
        session["id"] == "s1" and session["status"] == "ended" and session["end"] == iso(T0 + 3000)
    )
    assert session["activeDuration"] == 3
    left = [
        r.event
        for r in await api.engine.store.read(room_id)
        if isinstance(r.event, ParticipantLeft)
    ]
    assert [(e.participant_id, e.reason) for e in left] == [
        ("ann", LeaveReason.MEETING_END_API),
        ("bob", LeaveReason.MEETING_END_API),
    ]
    length = await api.log_length()
    again = await api.request("POST", "/v2/sessions/end", {"roomId": room_id, "sessionId": "s1"})
    assert again.status_code == 409 and again.json()["code"] == 3054
    assert "already ended" in again.json()["message"]
    idle = await api.request("POST", "/v2/sessions/end", {"roomId": room_id})
    assert idle.status_code == 409 and idle.json()["code"] == 3054
    assert "no session is open" in idle.json()["message"]
    other = (await api.create())["roomId"]
    await api.join(other, "cy", session="s-other")
    foreign = await api.request(
        "POST", "/v2/sessions/end", {"roomId": room_id, "sessionId": "s-other"}
    )
    assert foreign.status_code == 404
    unknown = await api.request("POST", "/v2/sessions/end", {"roomId": "nope"})
    assert unknown.status_code == 404 and unknown.json()["code"] == 4003
    assert await api.log_length() == length + 3  # only the other room and its session


async def test_remove_participant(api: API) -> None:
    room_id = (await api.create())["roomId"]
    await api.join(room_id, "ann")
    await api.join(room_id, "bob")
    body = {"roomId": room_id, "participantId": "bob", "sessionId": "s1"}
    response = await api.request("POST", "/v2/sessions/participants/remove", body)
    assert response.status_code == 200, response.text
    session = response.json()
    assert session["status"] == "ongoing"
    assert session["participants"][1]["timelog"][-1]["end"] is not None
    records = await api.engine.store.read(room_id)
    assert isinstance(records[-1].event, ParticipantLeft)
    assert records[-1].event.participant_id == "bob"
    assert records[-1].event.reason == LeaveReason.REMOVE_PEER_API
    again = await api.request("POST", "/v2/sessions/participants/remove", body)
    assert again.status_code == 400 and again.json()["code"] == 4066
    last = await api.request(
        "POST", "/v2/sessions/participants/remove", {"roomId": room_id, "participantId": "ann"}
    )
    assert last.status_code == 200 and last.json()["status"] == "ended"


# ---------------------------------------------------------------------------
# Tokens


@pytest.mark.parametrize(
    ("headers", "code"),
    [
        ({}, 4002),
        ({"Authorization": ""}, 4002),
        ({"Authorization": "garbage"}, 4002),
        ({"Authorization": "Bearer "}, 4002),
        ({"Authorization": "a.b.c"}, 4002),
        ({"Authorization": "x" * 10_000}, 4002),
        (
            {
                "Authorization": mint_token(
                    api_key="test-key", secret="wrong-secret-0123456789abcdef-0123"
                )
            },
            4002,
        ),
        ({"Authorization": mint_token(api_key="other", secret="s" * 32)}, 4001),
        (
            {
                "Authorization": mint_token(
                    api_key="test-key", secret=KEYS["test-key"], now=1_000_000
                )
            },
            4002,
        ),
    ],
    ids=[
        "missing",
        "empty",
        "garbage",
        "bearer-only",
        "not-base64",
        "huge",
        "bad-signature",
        "unknown-key",
        "expired",
    ],
)
async def test_bad_tokens_are_401(api: API, headers: dict[str, str], code: int) -> None:
    for method, path in (("GET", "/v2/rooms"), ("POST", "/v2/rooms"), ("GET", "/v2/sessions/s1")):
        response = await api.client.request(method, path, headers=headers)
        assert response.status_code == 401
        body = response.json()
        assert body["statusCode"] == 401 and body["code"] == code
        assert body["error"] == ErrorCode(code).name and body["message"]
    assert await api.log_length() == 0


async def test_an_rtc_token_may_not_use_the_rest_api(api: API) -> None:
    response = await api.request("POST", "/v2/rooms", headers=auth(roles=["rtc"]))
    assert response.status_code == 403 and response.json()["code"] == 4024
    crawler = await api.request("POST", "/v2/rooms", headers=auth(roles=["crawler"]))
    assert crawler.status_code == 200


async def test_a_room_bound_token_sees_and_acts_on_its_room_only(api: API) -> None:
    mine = (await api.create(customRoomId="mine"))["roomId"]
    theirs = (await api.create())["roomId"]
    await api.join(theirs, "ann", session="s-theirs")
    bound = auth(room_id=mine)
    listed = (await api.request("GET", "/v2/rooms", headers=bound)).json()
    assert [r["roomId"] for r in listed["data"]] == ["mine"] and listed["pageInfo"]["total"] == 1
    assert (await api.request("GET", "/v2/rooms/mine", headers=bound)).status_code == 200
    refusals = [
        ("GET", f"/v2/rooms/{theirs}", None),
        ("GET", f"/v2/rooms/validate/{theirs}", None),
        ("POST", f"/v2/rooms/{theirs}", {"status": "disabled"}),
        ("POST", "/v2/rooms/deactivate", {"roomId": theirs}),
        ("POST", "/v2/rooms", {}),  # a new room with a generated id is another room
        ("POST", "/v2/rooms", {"customRoomId": "yours"}),
        ("GET", f"/v2/sessions?roomId={theirs}", None),
        ("GET", "/v2/sessions/s-theirs", None),
        ("GET", "/v2/sessions/s-theirs/participants", None),
        ("POST", "/v2/sessions/end", {"roomId": theirs}),
        ("POST", "/v2/sessions/participants/remove", {"roomId": theirs, "participantId": "ann"}),
    ]
    length = await api.log_length()
    for method, path, body in refusals:
        response = await api.request(method, path, body, bound)
        assert (response.status_code, response.json()["code"]) == (403, 4022), (method, path)
    assert await api.log_length() == length
    reuse = await api.request("POST", "/v2/rooms", {"customRoomId": "mine"}, bound)
    assert reuse.status_code == 200 and reuse.json()["roomId"] == "mine"


async def test_changing_rooms_and_sessions_needs_allow_mod(api: API) -> None:
    room_id = (await api.create())["roomId"]
    await api.join(room_id, "ann")
    joiner = auth(permissions=["allow_join"])
    assert (await api.request("POST", "/v2/rooms", {}, joiner)).status_code == 200
    assert (await api.request("GET", f"/v2/rooms/{room_id}", None, joiner)).status_code == 200
    assert (await api.request("GET", "/v2/sessions/s1", None, joiner)).status_code == 200
    length = await api.log_length()
    for method, path, body in [
        ("POST", "/v2/sessions/end", {"roomId": room_id}),
        ("POST", "/v2/sessions/participants/remove", {"roomId": room_id, "participantId": "ann"}),
        ("POST", "/v2/rooms/deactivate", {"roomId": room_id}),
        ("POST", f"/v2/rooms/{room_id}", {"status": "disabled"}),
    ]:
        response = await api.request(method, path, body, joiner)
        assert response.status_code == 403, path
        assert response.json()["code"] == 4025 and "allow_mod" in response.json()["message"]
    assert await api.log_length() == length


# ---------------------------------------------------------------------------
# Hostile input

DEEP = b'{"autoStartConfig": ' + b"[" * 200_000 + b"]" * 200_000 + b"}"
HOSTILE: list[tuple[str, str, bytes | None, int, int]] = [
    # (method, path, raw body, status, code); {room} is an existing room
    ("POST", "/v2/rooms", b"not json", 400, 3073),
    ("POST", "/v2/rooms", b"[]", 400, 3073),
    ("POST", "/v2/rooms", b"null", 400, 3073),
    ("POST", "/v2/rooms", b'"a string"', 400, 3073),
    ("POST", "/v2/rooms", b"\xff\xfe{}", 400, 3073),
    ("POST", "/v2/rooms", b'{"customRoomId": "x"' + b" " * (1 << 20) + b"}", 413, 3073),
    ("POST", "/v2/rooms", DEEP, 413, 3073),
    (
        "POST",
        "/v2/rooms",
        b'{"autoStartConfig": ' + b"[" * 20_000 + b"]" * 20_000 + b"}",
        400,
        3073,
    ),
    ("POST", "/v2/rooms", b'{"customRoomId": 5}', 400, 3073),
    ("POST", "/v2/rooms", b'{"customRoomId": ["a"]}', 400, 3073),
    ("POST", "/v2/rooms", '{"customRoomId": "café"}'.encode(), 400, 3073),
    ("POST", "/v2/rooms", '{"customRoomId": "😀"}'.encode(), 400, 3073),
    ("POST", "/v2/rooms", b'{"customRoomId": "\\ud800"}', 400, 3073),
    ("POST", "/v2/rooms", b'{"customRoomId": "a b"}', 400, 3073),
    ("POST", "/v2/rooms", b'{"customRoomId": "a/b"}', 400, 3073),
    ("POST", "/v2/rooms", b'{"customRoomId": "' + b"a" * 65 + b'"}', 400, 3073),
    ("POST", "/v2/rooms", b'{"customRoomId": ""}', 400, 3073),
    ("POST", "/v2/rooms", b'{"webhook": {"endPoint": "ftp://x"}}', 400, 3073),
    ("POST", "/v2/rooms", b'{"webhook": {"endPoint": ""}}', 400, 3073),
    ("POST", "/v2/rooms", b'{"webhook": {"events": []}}', 400, 3073),
    ("POST", "/v2/rooms", b'{"webhook": "https://x.example"}', 400, 3073),
    ("POST", "/v2/rooms", b'{"autoCloseConfig": {"type": "never"}}', 400, 3073),
    ("POST", "/v2/rooms", b'{"autoCloseConfig": {"duration": -5}}', 400, 3073),
    ("POST", "/v2/rooms", b'{"autoCloseConfig": {"duration": 1e3}}', 400, 3073),
    (
        "POST",
        "/v2/rooms",
        b'{"autoCloseConfig": {"duration": 100000000000000000000000}}',
        400,
        3073,
    ),
    ("POST", "/v2/rooms/deactivate", b"", 400, 3073),
    ("POST", "/v2/rooms/deactivate", b"{}", 400, 3073),
    ("POST", "/v2/rooms/deactivate", b'{"roomId": 5}', 400, 3073),
    ("POST", "/v2/rooms/deactivate", b'{"roomId": ""}', 400, 3073),
    ("POST", "/v2/rooms/deactivate", b'{"roomId": null}', 400, 3073),
    ("POST", "/v2/rooms/{room}", b'{"status": "paused"}', 400, 3073),
    ("POST", "/v2/rooms/{room}", b'{"status": true}', 400, 3073),
    ("POST", "/v2/rooms/{room}", b"{}", 400, 3073),
    ("POST", "/v2/sessions/end", b'{"roomId": ["{room}"]}', 400, 3073),
    ("POST", "/v2/sessions/end", b'{"roomId": "{room}", "sessionId": ""}', 400, 3073),
    ("POST", "/v2/sessions/end", b'{"roomId": "{room}", "sessionId": 7}', 400, 3073),
    ("POST", "/v2/sessions/participants/remove", b'{"roomId": "{room}"}', 400, 3073),
    (
        "POST",
        "/v2/sessions/participants/remove",
        b'{"roomId": "{room}", "participantId": ""}',
        400,
        3073,
    ),
    ("GET", "/v2/rooms?page=0", None, 400, 3073),
    ("GET", "/v2/rooms?page=-1", None, 400, 3073),
    ("GET", "/v2/rooms?page=abc", None, 400, 3073),
    ("GET", "/v2/rooms?page=1.5", None, 400, 3073),
    ("GET", "/v2/rooms?page=%EF%BC%91", None, 400, 3073),  # a full-width digit one
    ("GET", "/v2/rooms?page=99999999999999999999999", None, 400, 3073),
    ("GET", "/v2/rooms?page=1000000001", None, 400, 3073),
    ("GET", "/v2/rooms?perPage=0", None, 400, 3073),
    ("GET", "/v2/rooms?perPage=101", None, 400, 3073),
    ("GET", "/v2/rooms?perPage=-20", None, 400, 3073),
    ("GET", "/v2/sessions?roomId={room}&page=x", None, 400, 3073),
    ("GET", "/v2/sessions/s1/participants?perPage=1e2", None, 400, 3073),
    ("GET", "/v2/rooms/" + "a" * 300, None, 404, 4003),
    ("GET", "/v2/rooms/%00", None, 404, 4003),
    ("GET", "/v2/nothing/here", None, 404, 404),
    ("DELETE", "/v2/rooms", None, 405, 405),
    ("PUT", "/v2/rooms/{room}", None, 405, 405),
    ("GET", "/v2/sessions/end", None, 404, 4003),
    ("GET", "/v2/sessions/participants/remove", None, 405, 405),
    ("POST", "/v2/sessions/s1", b"{}", 405, 405),
    ("GET", "/v2/rooms/deactivate", None, 404, 4003),
    ("PATCH", "/v2/rooms/deactivate", None, 405, 405),
    ("GET", "/v2/rooms/a/b", None, 404, 404),
]


@pytest.mark.parametrize(
    ("method", "path", "body", "status", "code"),
    HOSTILE,
    ids=[f"{m} {p[:40]} {(b or b'')[:30]!r}" for m, p, b, _, _ in HOSTILE],
)
async def test_hostile_requests_are_refused_and_change_nothing(
    api: API, method: str, path: str, body: bytes | None, status: int, code: int
) -> None:
    room_id = (await api.create(customRoomId="the-room"))["roomId"]
    await api.join(room_id, "ann")
    before = await api.log_length()
    path = path.replace("{room}", room_id)
    body = body.replace(b"{room}", room_id.encode()) if body is not None else None
    headers = auth() | {"Content-Type": "application/json"}
    response = await api.client.request(method, path, content=body, headers=headers)
    assert response.status_code == status, response.text
    answer = response.json()
    assert answer["statusCode"] == status and answer["code"] == code
    assert set(answer) == {"statusCode", "code", "error", "message"}
    assert "Traceback" not in response.text
    assert await api.log_length() == before


async def test_a_declared_oversized_body_is_refused_unread(api: API) -> None:
    reads = 0

    async def endless() -> AsyncIterator[bytes]:
        nonlocal reads
        while reads < 1000:
            reads += 1
            yield b" " * 16_384

    response = await api.client.post("/v2/rooms", content=endless(), headers=auth())
    assert response.status_code == 413 and response.json()["code"] == 3073
    assert reads <= 6  # it stopped reading just past 64 KiB
    declared = await api.client.post(
        "/v2/rooms", content=b"{}", headers=auth() | {"Content-Length": str(10**9)}
    )
    assert declared.status_code == 413


async def test_a_failing_plugin_gives_a_500_without_details(api: API) -> None:
    class Broken:
        @meetcore_hookimpl
        def meetcore_authenticate(self, credential: str, meeting_id: str | None) -> None:
            raise RuntimeError("secret internals")

    api.engine.plugins.register(Broken(), name="broken")
    try:
        response = await api.request("GET", "/v2/rooms", headers=auth("not-a-jwt"))
    finally:
        api.engine.plugins.unregister(name="broken")
    assert response.status_code == 500
    assert response.json()["code"] == 5000 and "secret" not in response.text


# ---------------------------------------------------------------------------
# The projection


async def test_the_projection_reads_what_other_writers_append(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'shared.db'}"
    plugins = [meetcore_sqlite, JWTAuth(KEYS)]
    async with (
        Engine.open(store=url, plugins=plugins, autoload=False) as here,
        Engine.open(store=url, plugins=plugins, autoload=False, sweep_leases=False) as elsewhere,
    ):
        server = Server(here)
        transport = httpx.ASGITransport(app=server.app)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
            created = (await client.post("/v2/rooms", headers=auth())).json()["roomId"]
            # another node creates a room and runs a session in the same database
            await elsewhere.execute(InitMeeting(meeting_id="from-elsewhere"))
            await elsewhere.execute(
                Join(
                    meeting_id="from-elsewhere",
                    participant_id="ann",
                    connection_id="c1",
                    session_id="s-else",
                    name="Ann",
                )
            )
            listed = (await client.get("/v2/rooms", headers=auth())).json()
            assert [r["roomId"] for r in listed["data"]] == ["from-elsewhere", created]
            session = (await client.get("/v2/sessions/s-else", headers=auth())).json()
            assert session["status"] == "ongoing"
            # and this node ends it: the other node's engine sees the same log
            ended = await client.post(
                "/v2/sessions/end", json={"roomId": "from-elsewhere"}, headers=auth()
            )
            assert ended.status_code == 200 and ended.json()["status"] == "ended"
            state = await elsewhere.state("from-elsewhere")
            assert state is not None and state.session_id is None

        # a fresh view of the same log, built from position 0, is the same
        fresh = Server(here).rooms
        await fresh.catch_up()
        assert fresh.position == server.rooms.position
        assert fresh.room_count == server.rooms.room_count == 2


async def test_concurrent_catch_ups_apply_each_record_once(api: API) -> None:
    room_id = (await api.create())["roomId"]
    for i in range(30):
        await api.join(room_id, f"p{i}")
    view = Server(api.engine).rooms
    async with anyio.create_task_group() as tasks:
        for _ in range(10):
            tasks.start_soon(view.catch_up)
    session = view.session("s1")
    assert session is not None and len(session.participants) == 30
    assert all(len(p.timelog) == 1 for p in session.participants)
    assert view.position == await api.log_length()
    assert await view.catch_up() == 0


async def test_catch_up_reads_only_new_records(api: API) -> None:
    room_id = (await api.create())["roomId"]
    reads: list[int] = []
    store = api.engine.store
    original = store.read_all

    async def counting(after_position: int = 0, limit: int = 1000) -> list[Any]:
        batch = await original(after_position, limit)
        reads.append(len(batch))
        return batch

    store.read_all = counting  # type: ignore[method-assign]
    try:
        await api.join(room_id, "ann")
        await api.request("GET", f"/v2/rooms/{room_id}")
        await api.request("GET", f"/v2/rooms/{room_id}")
    finally:
        store.read_all = original  # type: ignore[method-assign]
    assert reads == [2, 0]  # SessionStarted + ParticipantJoined, then nothing new


# ---------------------------------------------------------------------------
# OpenAPI


async def test_openapi_document(api: API) -> None:
    response = await api.client.get("/openapi.json")  # no token needed
    assert response.status_code == 200
    document = response.json()
    assert document == rest.openapi()
    assert document["openapi"].startswith("3.1")
    assert set(document["paths"]) == {
        "/v2/rooms",
        "/v2/rooms/validate/{roomId}",
        "/v2/rooms/deactivate",
        "/v2/rooms/{roomId}",
        "/v2/sessions",
        "/v2/sessions/end",
        "/v2/sessions/participants/remove",
        "/v2/sessions/{sessionId}",
        "/v2/sessions/{sessionId}/participants",
        "/v2/sessions/{sessionId}/participants/active",
        "/openapi.json",
    }
    schemas = document["components"]["schemas"]
    assert {"CreateRoom", "Room", "RoomsPage", "Session", "Error"} <= set(schemas)
    assert schemas["Room"]["required"] == [
        "roomId",
        "customRoomId",
        "userId",
        "disabled",
        "createdAt",
        "updatedAt",
        "id",
        "links",
        "autoCloseConfig",
    ]
    assert document["components"]["securitySchemes"]["token"] == {
        "type": "apiKey",
        "in": "header",
        "name": "Authorization",
        "description": "A VideoSDK token (HS256 JWT), raw or as `Bearer <token>`.",
    }
    described = {(m.upper(), p) for p, methods in document["paths"].items() for m in methods}
    assert {(o.method.upper(), o.path) for o in OPERATIONS} == described  # schemathesis reads all
    rest.openapi()["paths"].clear()  # a fresh copy each time
    assert rest.openapi()["paths"]


async def test_the_app_serves_what_the_document_describes(api: API) -> None:
    """Every REST route of the app is in the OpenAPI document and every documented
    operation is a route of the app, but for the undocumented aliases below."""

    def documented(path: str) -> str:  # /v2/rooms/{room_id} -> /v2/rooms/{roomId}
        return re.sub(r"_([a-z])", lambda m: m[1].upper(), path)

    served = {
        (method, documented(route.path))
        for route in api.server.app.routes
        if isinstance(route, Route) and isinstance(route.endpoint, rest._Endpoint)
        for method in route.endpoint.methods
    }
    described = {(m.upper(), p) for p, methods in rest.openapi()["paths"].items() for m in methods}
    aliases = {
        ("GET", "/v2/rooms/"),  # the trailing slashes of some VideoSDK examples
        ("POST", "/v2/rooms/"),
        ("GET", "/v2/sessions/"),
        ("GET", "/v2/rooms/deactivate"),  # the room named "deactivate" (GET /v2/rooms/{roomId})
        ("GET", "/v2/sessions/end"),  # the session named "end"
        ("*", "/v2/{rest:path}"),  # the rest of VideoSDK's API: a JSON 404
    }
    assert aliases <= served
    assert served - aliases == described


class SyncAPI:
    """The server on an event loop in another thread, for schemathesis' sync API."""

    def __init__(self, portal: anyio.from_thread.BlockingPortal, server: Server) -> None:
        self.portal = portal
        self.server = server
        self.sent = 0
        self.client = httpx.AsyncClient(
            transport=httpx.ASGITransport(app=server.app), base_url="http://test"
        )

    def send(self, kwargs: dict[str, Any]) -> httpx.Response:
        kwargs = dict(kwargs)
        kwargs.pop("cookies", None)  # schemathesis makes none; httpx deprecates them per request
        self.sent += 1
        if "data" in kwargs:
            kwargs["content"] = kwargs.pop("data")
        request = functools.partial(self.client.request, **kwargs)
        return self.portal.call(request)


@pytest.fixture
def sync_api() -> Iterator[SyncAPI]:
    with anyio.from_thread.start_blocking_portal() as portal:
        opened = Engine.open(
            store="memory://", plugins=[JWTAuth(KEYS)], autoload=False, sweep_leases=False
        )
        with portal.wrap_async_context_manager(opened) as engine:
            portal.call(
                engine.execute, InitMeeting(meeting_id="known-room", custom_room_id="known-room")
            )
            for who in ("ann", "bob"):
                join = Join(
                    meeting_id="known-room",
                    participant_id=who,
                    connection_id=f"c-{who}",
                    session_id="known-session",
                    name=who,
                )
                portal.call(engine.execute, join)
            api = SyncAPI(portal, Server(engine))
            yield api
            portal.call(api.client.aclose)


SCHEMA = schemathesis.openapi.from_dict(rest.openapi())
OPERATIONS = [result.ok() for result in SCHEMA.get_all_operations() if isinstance(result, Ok)]


def _aim_at_known(case: Any) -> Any:
    """Point a generated body at the room, session and participants that exist."""
    if isinstance(case.body, dict):
        for name, value in (("roomId", "known-room"), ("sessionId", "known-session")):
            if name in case.body:
                case.body[name] = value
        if "participantId" in case.body:
            case.body["participantId"] = "bob"
    return case


@pytest.mark.parametrize("operation", OPERATIONS, ids=lambda o: f"{o.method.upper()} {o.path}")
def test_schemathesis(sync_api: SyncAPI, operation: Any) -> None:
    """Generated requests, valid and invalid, at unknown ids and at a room and a session
    that exist, never make a 500, and every answer matches the document."""
    headers = auth()
    strategies = [
        operation.as_strategy(headers=headers),
        operation.as_strategy(headers=headers).map(_aim_at_known),
    ]
    described = rest.openapi()["paths"][operation.path][operation.method.lower()]
    if "parameters" in described or "requestBody" in described:  # something to get wrong
        strategies.append(
            operation.as_strategy(generation_mode=GenerationMode.NEGATIVE, headers=headers)
        )
    if "{roomId}" in operation.path:
        strategies.append(
            operation.as_strategy(headers=headers, path_parameters={"roomId": "known-room"})
        )
    if "{sessionId}" in operation.path:
        strategies.append(
            operation.as_strategy(headers=headers, path_parameters={"sessionId": "known-session"})
        )
    if operation.path == "/v2/sessions":
        strategies.append(operation.as_strategy(headers=headers, query={"roomId": "known-room"}))
    statuses: list[int] = []
    for strategy in strategies:

        @settings(
            max_examples=20,
            deadline=None,
            database=None,
            derandomize=True,
            suppress_health_check=list(HealthCheck),
        )
        @given(case=strategy)
        def check(case: Any) -> None:
            response = sync_api.send(case.as_transport_kwargs(base_url="http://test"))
            statuses.append(response.status_code)
            case.validate_response(
                response, checks=[not_a_server_error, response_schema_conformance]
            )

        check()
    assert 200 in statuses  # not all refusals: the known ids reached the handlers


# ---------------------------------------------------------------------------
# A real socket


async def test_over_a_real_socket() -> None:
    async with Engine.open(store="memory://", plugins=[JWTAuth(KEYS)], autoload=False) as engine:
        server = Server(engine)
        config = uvicorn.Config(
            server.app, host="127.0.0.1", port=0, log_level="warning", lifespan="off"
        )
        running = uvicorn.Server(config)
        async with anyio.create_task_group() as tasks:
            tasks.start_soon(running.serve)
            with anyio.fail_after(5):
                while not running.started:
                    await anyio.sleep(0.01)
            port = running.servers[0].sockets[0].getsockname()[1]
            try:
                async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as client:
                    created = await client.post(
                        "/v2/rooms", json={"customRoomId": "on-the-wire"}, headers=auth()
                    )
                    assert created.status_code == 200
                    assert ISO.fullmatch(created.json()["createdAt"])
                    assert created.json()["links"]["get_room"] == (
                        f"http://127.0.0.1:{port}/v2/rooms/on-the-wire"
                    )
                    got = await client.get("/v2/rooms/validate/on-the-wire", headers=auth())
                    assert got.json() == created.json()
                    big = await client.post("/v2/rooms", content=b" " * (1 << 20), headers=auth())
                    assert big.status_code == 413 and big.json()["code"] == 3073
                    after = await client.get("/v2/rooms", headers=auth())
                    assert after.json()["pageInfo"]["total"] == 1
                    head = await client.head("/v2/rooms", headers=auth())
                    assert head.status_code == 200 and head.content == b""
            finally:
                running.should_exit = True


async def test_rooms_and_sessions_named_like_fixed_paths(api: API) -> None:
    await api.create(customRoomId="deactivate")
    got = await api.request("GET", "/v2/rooms/deactivate")
    assert got.status_code == 200 and got.json()["roomId"] == "deactivate"
    off = await api.request("POST", "/v2/rooms/deactivate", {"roomId": "deactivate"})
    assert off.status_code == 200 and off.json()["disabled"] is True
    await api.create(customRoomId="r")
    await api.join("r", "ann", session="end")
    session = await api.request("GET", "/v2/sessions/end")
    assert session.status_code == 200 and session.json()["id"] == "end"


async def test_exception_handlers_make_the_apps_other_errors_json(api: API) -> None:
    app = Starlette(routes=rest.routes(api.server), exception_handlers=rest.exception_handlers())
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
        response = await client.get("/nowhere")
    assert response.status_code == 404
    assert response.json() == {
        "statusCode": 404,
        "code": 404,
        "error": "NOT_FOUND",
        "message": "Not Found",
    }
