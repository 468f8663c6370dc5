"""What `meetcore serve` tells its operator: its start lines, a line per join, leave and
session end whatever caused it, a line per refusal, as text and as JSON, from a real
`meetcore serve` process; and `--log-level` / `--log-format` themselves."""

from __future__ import annotations

import io
import json
import logging
import re
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import anyio
import httpx
import pytest
import websockets

from meetcore import one_line
from meetcore_client import Meeting, init_meeting
from meetcore_jwt import ensure_dev_keys, mint_token
from meetcore_server import _logs
from meetcore_server.app import NO_GET_TOKEN
from meetcore_server.testing import ServeProcess, clean_env

pytestmark = [
    pytest.mark.anyio,
    pytest.mark.skipif(sys.platform == "win32", reason="needs POSIX signals"),
]

TIME = r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z"
DEPLOY = Path(__file__).resolve().parents[2] / "docs" / "deploy.md"
#: A log line in text: time, level, logger, message.
LOG_LINE = re.compile(rf"{TIME} INFO (meetcore\.[a-z.]+): (.*)")
LEASE_TTL = 0.5
#: A participant id the rules allow, with a C1 control character (CSI) in it.
HOSTILE_ID = "eve\x9b2J"


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"  # the client runs on asyncio


def start(tmp_path: Path, *options: str, dev: bool = False) -> ServeProcess:
    return ServeProcess(tmp_path, dev=dev, lease_ttl=LEASE_TTL, args=options).wait_ready()


def stop(server: ServeProcess) -> None:
    code = server.terminate()
    assert code == 0, server.output
    assert "Traceback" not in server.output, server.output


async def lines_until(server: ServeProcess, done: Callable[[list[str]], bool]) -> list[str]:
    """The server's lines (without their line ends), once `done` says they are complete."""
    with anyio.move_on_after(15):
        while not done(lines := [line.rstrip("\n") for line in server.lines]):
            server.check_alive()
            await anyio.sleep(0.02)
        return lines
    raise AssertionError(f"meetcore serve did not say what was expected:\n{server.output}")


class Scenario:
    """What the tests do to a server: every path that makes a participant leave."""

    def __init__(self, server: ServeProcess) -> None:
        self.server = server
        api_key, secret = ensure_dev_keys(server.cwd / "meetcore-keys.json")
        self.token = mint_token(api_key=api_key, secret=secret)
        self.room = ""
        self.ws = server.url.replace("http://", "ws://") + "/ws"

    async def rest(self, method: str, path: str, token: str, body: Any = None) -> httpx.Response:
        async with httpx.AsyncClient(base_url=self.server.url, timeout=10) as http:
            return await http.request(method, path, json=body, headers={"Authorization": token})

    def meeting(self, participant_id: str, token: str | None = None) -> Meeting:
        return init_meeting(
            base_url=self.server.url,
            token=token or self.token,
            meeting_id=self.room,
            participant_id=participant_id,
        )

    async def run(self) -> None:
        """A room; ada joins and leaves (1101); bob drops (1001 when his lease runs out);
        the hostile id joins and the REST API ends the session (1009); a bad token is
        refused by the REST API, then at a join."""
        created = await self.rest("POST", "/v2/rooms", self.token)
        assert created.status_code == 200, created.text
        self.room = created.json()["roomId"]
        ada = self.meeting("ada")
        await ada.join()
        await ada.leave()
        async with websockets.connect(self.ws) as bob:
            join = {"type": "join", "token": self.token, "meetingId": self.room}
            await bob.send(json.dumps({**join, "participantId": "bob"}))
            assert json.loads(await bob.recv())["type"] == "welcome"
        await lines_until(self.server, lambda lines: any("1001" in line for line in lines))
        eve = self.meeting(HOSTILE_ID)
        await eve.join()
        ended = await self.rest("POST", "/v2/sessions/end", self.token, {"roomId": self.room})
        assert ended.status_code == 200, ended.text
        refused = await self.rest("GET", "/v2/rooms", "garbage")
        assert refused.status_code == 401
        with pytest.raises(Exception, match="4002"):
            await self.meeting("mallory", "not.a.jwt").join()


def _expected(room: str) -> list[str]:
    """The messages of the lines about the scenario's meeting, in order."""
    return [
        rf"session \w+ of meeting {room} started",
        rf"participant ada joined meeting {room} \(connection [0-9a-f]{{16}}\)",
        rf"participant ada left meeting {room}: 1101 MANUAL_LEAVE_CALLED \(connection \w+\)",
        rf"session \w+ of meeting {room} ended: its last participant left",
        rf"session \w+ of meeting {room} started",
        rf"participant bob joined meeting {room} \(connection \w+\)",
        rf"participant bob left meeting {room}: 1001 WEBSOCKET_DISCONNECTED \(connection \w+\)",
        rf"session \w+ of meeting {room} ended: its last participant left",
        rf"session \w+ of meeting {room} started",
        rf"participant eve\\x9b2J joined meeting {room} \(connection \w+\)",
        rf"participant eve\\x9b2J left meeting {room}: 1009 MEETING_END_API \(connection \w+\)",
        rf"session \w+ of meeting {room} ended: it was ended",
        r"refused GET /v2/rooms from 127\.0\.0\.1:\d+: 4002 INVALID_TOKEN: no auth plugin "
        r"recognizes the token 'garbage'; .*",
        rf"refused a join to meeting {room} from 127\.0\.0\.1:\d+: 4002 INVALID_TOKEN: "
        r"malformed token: its header is not base64url-encoded JSON",
    ]


def _deploy_block(lang: str) -> str:
    """The first ```lang block of docs/deploy.md's section on what meetcore serve prints."""
    section = DEPLOY.read_text().split("## What `meetcore serve` prints", 1)[1]
    return section.split(f"```{lang}\n", 1)[1].split("```", 1)[0]


def _parsed(text: str) -> tuple[str, str]:
    """The logger and the message of a text log line."""
    found = LOG_LINE.fullmatch(text)
    assert found is not None, text
    return found[1], found[2]


def _in_order(patterns: list[str], messages: list[str]) -> bool:
    """Each pattern matches a whole message, in this order (other messages between)."""
    found = iter(messages)
    return all(any(re.fullmatch(pattern, m) for m in found) for pattern in patterns)


async def test_text_lines_tell_of_joins_leaves_sessions_and_refusals(tmp_path: Path) -> None:
    server = start(tmp_path)
    try:
        url = server.url
        key = server.lines[0].split()[-3]
        assert [line.rstrip("\n") for line in server.lines] == [
            f"meetcore: created a development API key {key} in meetcore-keys.json",
            f"meetcore: store {server.store}",
            "meetcore: get a token with: uv run meetcore token "
            "(GET /get-token is off: it needs meetcore serve --dev)",
            "meetcore: new here? docs/quickstart.md walks through a first meeting step by step",
            f"meetcore: serving on {url}",
        ]
        scenario = Scenario(server)
        async with httpx.AsyncClient(base_url=url) as http:
            no_token = await http.get("/get-token")
        assert no_token.status_code == 404
        assert no_token.json() == {
            "statusCode": 404,
            "code": 404,
            "error": "NOT_FOUND",
            "message": NO_GET_TOKEN,
        }
        assert "meetcore serve --dev" in NO_GET_TOKEN
        await scenario.run()

        def messages(lines: list[str]) -> list[str]:
            return [m[2] for m in map(LOG_LINE.fullmatch, lines) if m]

        expected = _expected(scenario.room)
        lines = await lines_until(server, lambda lines: _in_order(expected, messages(lines)))
    finally:
        stop(server)
    # every line is a start line or a log line, one printable line each
    assert all(text.isprintable() for text in lines), lines
    loggers = {_parsed(text)[0] for text in lines[5:]}
    assert {"meetcore.meetings", "meetcore.signaling", "meetcore.rest"} <= loggers
    # at info, neither uvicorn's access log nor its own start lines
    assert not [text for text in lines if "HTTP/1.1" in text or "Uvicorn" in text], lines
    # docs/deploy.md shows these lines as they are
    shown = _deploy_block("text").splitlines()
    assert shown[:3] == [text.replace(server.store, "sqlite:///meetcore.db") for text in lines[1:4]]
    assert shown[3] == "meetcore: serving on http://127.0.0.1:8700"
    assert {_parsed(text)[0] for text in shown[4:]} == loggers
    assert re.fullmatch(_expected("abc-def-ghi")[2], _parsed(shown[6])[1])


async def test_json_lines_carry_the_fields(tmp_path: Path) -> None:
    server = start(tmp_path, "--log-format", "json", dev=True)
    try:
        scenario = Scenario(server)
        await scenario.run()
        expected = _expected(scenario.room)

        def messages(lines: list[str]) -> list[str]:  # as text shows them, escaped
            return [one_line(json.loads(text)["message"]) for text in lines]

        lines = await lines_until(server, lambda lines: _in_order(expected, messages(lines)))
    finally:
        stop(server)
    entries = [json.loads(text) for text in lines]  # every line is one JSON object
    assert all(text.isascii() and text.isprintable() for text in lines), lines
    for entry in entries:
        assert list(entry)[:4] == ["time", "level", "logger", "message"], entry
        assert re.fullmatch(TIME, entry["time"]) and entry["level"] == "info", entry
    start_lines = [e for e in entries if e["logger"] == "meetcore.serve"]
    url = server.url
    assert [e["message"] for e in start_lines] == [
        start_lines[0]["message"],  # the development key it created
        f"store {server.store}",
        f"get a token with: uv run meetcore token, or GET {url}/get-token",
        "development mode: /get-token gives anyone a moderator's token; never in production",
        f"demo page: {url}/",
        "new here? docs/quickstart.md walks through a first meeting step by step",
        f"serving on {url}",
    ]
    assert start_lines[-1]["url"] == url and start_lines[4]["demo"] == f"{url}/"

    def about(event: str, participant: str) -> dict[str, Any]:
        (found,) = [
            e for e in entries if e.get("event") == event and e.get("participantId") == participant
        ]
        return found

    joined = about("participant-joined", "ada")
    assert joined["logger"] == "meetcore.meetings"
    assert joined["meetingId"] == scenario.room and re.fullmatch(
        r"[0-9a-f]{16}", joined["connectionId"]
    )
    left = about("participant-left", "ada")
    assert (left["reason"], left["reasonName"]) == (1101, "MANUAL_LEAVE_CALLED")
    assert left["connectionId"] == joined["connectionId"] and left["seq"] == joined["seq"] + 1
    assert about("participant-left", "bob")["reason"] == 1001
    shown = json.loads(_deploy_block("json"))  # docs/deploy.md's example has the same keys
    assert list(shown) == list(left) and shown["message"].startswith("participant ada left")
    assert about("participant-left", HOSTILE_ID)["reasonName"] == "MEETING_END_API"
    ends = [e for e in entries if e.get("event") == "session-ended"]
    assert [e["endReason"] for e in ends] == ["empty", "empty", "ended"]
    (rest,) = [e for e in entries if e["logger"] == "meetcore.rest"]
    assert (rest["code"], rest["error"], rest["method"], rest["path"]) == (
        4002,
        "INVALID_TOKEN",
        "GET",
        "/v2/rooms",
    )
    (join,) = [e for e in entries if e["logger"] == "meetcore.signaling"]
    assert (join["code"], join["meetingId"]) == (4002, scenario.room)
    assert re.fullmatch(r"127\.0\.0\.1:\d+", join["client"])


async def test_debug_shows_every_event_and_uvicorns_access_log(tmp_path: Path) -> None:
    server = start(tmp_path, "--log-level", "DEBUG")
    try:
        scenario = Scenario(server)
        await scenario.run()
        lines = await lines_until(
            server,
            lambda lines: (
                any("meeting-initialized" in text for text in lines)
                and any('"POST /v2/sessions/end HTTP/1.1" 200' in text for text in lines)
            ),
        )
    finally:
        stop(server)
    assert any(re.fullmatch(rf"{TIME} INFO uvicorn\.access: .*", text) for text in lines), lines


@pytest.fixture
def restore_logging() -> Iterator[None]:
    """`_logs.configure` sets up the whole process: put back what it changes."""
    names = ["", *_logs.MEETCORE_LOGGERS, _logs.BANNER, *_logs.UVICORN_LOGGERS]
    loggers = [logging.getLogger(name) for name in names]
    saved = [(lg, lg.level, lg.handlers[:], lg.propagate) for lg in loggers]
    try:
        yield
    finally:
        for logger, level, handlers, propagate in saved:
            logger.setLevel(level)
            logger.handlers = handlers
            logger.propagate = propagate


@pytest.mark.usefixtures("restore_logging")
@pytest.mark.parametrize(
    ("level", "shown"),
    [
        ("debug", {"banner", "meetings-debug", "meetings", "jwt", "access", "other-warning"}),
        ("info", {"banner", "meetings", "jwt", "other-warning"}),
        ("warning", {"banner", "jwt", "other-warning"}),
        ("error", {"banner"}),
    ],
)
def test_the_level_decides_what_is_shown(level: str, shown: set[str]) -> None:
    stream = io.StringIO()
    _logs.configure(level, "text", stream)
    logging.getLogger(_logs.BANNER).info("banner")
    logging.getLogger("meetcore.meetings").debug("meetings-debug")
    logging.getLogger("meetcore.meetings").info("meetings")
    logging.getLogger("meetcore_jwt").log(
        logging.INFO if level in ("debug", "info") else logging.WARNING, "jwt"
    )
    logging.getLogger("uvicorn.access").info("access")
    logging.getLogger("aioice").info("other-info")
    logging.getLogger("aioice").warning("other-warning")
    printed = {text.rsplit(" ", 1)[-1] for text in stream.getvalue().splitlines()}
    assert printed == shown
    # below info, meetcore serve does not even register the observer
    assert _logs.MeetingLog.wanted() == ("meetings" in shown)


@pytest.mark.usefixtures("restore_logging")
def test_a_traceback_stays_with_its_line_and_json_escapes_everything() -> None:
    stream = io.StringIO()
    _logs.configure("info", "json", stream)
    try:
        raise ValueError("boom")
    except ValueError:
        logging.getLogger("meetcore.signaling").exception(
            "it\nfailed\x1b[2J", extra={"meetingId": 1}
        )
    (text,) = stream.getvalue().splitlines()
    entry = json.loads(text)
    assert entry["message"] == "it\nfailed\x1b[2J" and entry["meetingId"] == 1
    assert entry["level"] == "error" and "ValueError: boom" in entry["exception"]
    assert text.isascii() and text.isprintable()
    stream = io.StringIO()
    _logs.configure("info", "text", stream)
    logging.getLogger("meetcore.signaling").warning("it\nfailed\x1b[2J")
    assert stream.getvalue().endswith(r" WARNING meetcore.signaling: it failed\x1b[2J" + "\n")


@pytest.mark.parametrize(
    ("option", "value"),
    [
        ("--log-level", "loud"),
        ("--log-level", "\x1b[2J\ninfo"),
        ("--log-level", "x" * 5000),
        ("--log-format", "xml"),
        ("--log-format", "json\x1b]0;pwned\x07"),
    ],
)
def test_a_bad_log_option_is_one_clear_line(tmp_path: Path, option: str, value: str) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "meetcore.cli", "serve", option, value, "--store", "memory://"],
        cwd=tmp_path,
        env=clean_env(),
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert done.returncode == 2, done.stderr
    (line,) = done.stderr.splitlines()
    assert line.startswith(f"meetcore: error: Invalid value for '{option}': "), line
    choices = "'debug', 'info', 'warning', 'error'" if option == "--log-level" else "'text', 'json'"
    assert line.endswith(f"is not one of {choices}. (see 'meetcore serve --help')"), line
    assert line.isprintable() and len(line) < 500, line
    assert not (tmp_path / "meetcore-keys.json").exists()  # refused before anything happened
