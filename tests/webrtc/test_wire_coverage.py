"""Every command and event has its wire mapping in the server and in both SDKs, and
meetcore.js names the protocol's message types and codes as meetcore_protocol and
meetcore do (issue 21).

The checks are derived from `meetcore.EVENT_TYPES`, `meetcore.COMMAND_TYPES` and the
protocol's message unions: a new event or command nobody handles fails here until it is
handled, or listed below with the reason it needs no handling.

How each side is read:

- the Python client applies an event where `Meeting._apply` tests `isinstance(event, E)`,
  and sends a request where it builds `p.SomeRequest(...)` (both read from its source);
- meetcore.js keeps every wire name between its `BEGIN WIRE CONSTANTS` and
  `END WIRE CONSTANTS` lines (`ClientType`, `ServerType`, `EventType`, `LeaveReason`,
  `ErrorCode`); it applies an event where it has `case EventType.NAME:`, sends a request
  where it builds `{ type: ClientType.NAME, ... }`;
- the server maps a request to a command in `Signaling._command` (called here with one
  sample of each request), a `join` in the handshake (a function taking
  `hello: p.JoinRequest` that builds `Join(...)`), and REST routes in
  `RestAPI.routes()` to the handlers that build commands (read from rest.py's source).
"""

from __future__ import annotations

import ast
import inspect
import math
import re
import typing
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType

import pytest

import meetcore_client.meeting as client
import meetcore_protocol as p
from meetcore import ErrorCode, LeaveReason, Rejected
from meetcore.commands import COMMAND_TYPES, Activate, Command, Deactivate, InitMeeting, Join
from meetcore.events import (
    EVENT_TYPES,
    Event,
    MeetingActivated,
    MeetingDeactivated,
    MeetingInitialized,
)
from meetcore_server import rest, signaling

JS = Path(signaling.__file__).parent / "static" / "meetcore.js"

#: Events an SDK deliberately does not apply, and why. Both SDKs share the list: they
#: keep the same state (the roster, the session id, the local participant).
IGNORED_EVENTS: dict[type[Event], str] = {
    MeetingInitialized: (
        "the room's creation: it comes before any join, so a participant only ever sees it "
        "inside the welcome's snapshot, which holds nothing it sets"
    ),
    MeetingDeactivated: (
        "comes after every participant left with 1006 (ROOM_CLOSE) and every waiting "
        "request was withdrawn: the SDKs act on those, nobody is left to see this one"
    ),
    MeetingActivated: "only a deactivated room is activated, and a deactivated room is empty",
}

#: Commands no SDK sends: an application's backend issues them through the REST API with
#: its API key; a participant's connection has no request for them.
SERVER_API_ONLY: dict[type[Command], str] = {
    InitMeeting: "creating a room (POST /v2/rooms) comes before anyone can connect to it",
    Deactivate: "disabling a room (POST /v2/rooms/deactivate, /v2/rooms/{id}) is the API's",
    Activate: "enabling a room again (POST /v2/rooms/{id}) is the API's",
}

#: ErrorCode entries only meetcore.js has: the browser's own device errors.
JS_ONLY_ERRORS = {
    "ERROR_CAMERA_ACCESS_DENIED_OR_DISMISSED": 3017,
    "ERROR_MICROPHONE_ACCESS_DENIED_OR_DISMISSED": 3018,
}


def tag(kind: type) -> str:
    return kind.__struct_config__.tag  # type: ignore[attr-defined, no-any-return]


CLIENT_MESSAGES: tuple[type, ...] = typing.get_args(p.ClientMessage)
SERVER_MESSAGES: tuple[type, ...] = typing.get_args(p.ServerMessage)


# -- reading the Python client --------------------------------------------------------


def _function(module: ModuleType, qualname: str) -> ast.FunctionDef | ast.AsyncFunctionDef:
    tree = ast.parse(inspect.getsource(module))
    owner, name = qualname.split(".")
    for node in ast.walk(tree):
        if isinstance(node, ast.ClassDef) and node.name == owner:
            for item in node.body:
                if isinstance(item, ast.FunctionDef | ast.AsyncFunctionDef) and item.name == name:
                    return item
    raise AssertionError(f"no {qualname} in {module.__name__}: the test must learn its new shape")


def _resolve(module: ModuleType, node: ast.expr) -> object:
    """The object a name (`Foo`) or attribute (`p.Foo`) in `module`'s source stands for."""
    if isinstance(node, ast.Name):
        return getattr(module, node.id, None)
    if isinstance(node, ast.Attribute):
        owner = _resolve(module, node.value)
        return getattr(owner, node.attr, None) if owner is not None else None
    return None


def _isinstance_classes(module: ModuleType, function: ast.AST) -> set[type]:
    """The classes `isinstance(x, A | B)` / `isinstance(x, (A, B))` test in `function`."""
    found: set[type] = set()
    for node in ast.walk(function):
        if isinstance(node, ast.Call) and getattr(node.func, "id", None) == "isinstance":
            for part in ast.walk(node.args[1]):
                if isinstance(part, ast.Name | ast.Attribute):
                    resolved = _resolve(module, part)
                    if isinstance(resolved, type):
                        found.add(resolved)
    return found


def _built(module: ModuleType, tree: ast.AST) -> set[type]:
    """The classes `tree` calls (builds), as `module` names them."""
    found: set[type] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Call):
            resolved = _resolve(module, node.func)
            if isinstance(resolved, type):
                found.add(resolved)
    return found


def python_applies() -> set[type]:
    return _isinstance_classes(client, _function(client, "Meeting._apply"))


def python_receives() -> set[type]:
    return _isinstance_classes(client, _function(client, "Meeting._receive"))


def python_sends() -> set[type]:
    return _built(client, ast.parse(inspect.getsource(client))) & set(CLIENT_MESSAGES)


# -- reading meetcore.js --------------------------------------------------------------


@dataclass(frozen=True)
class Js:
    constants: dict[str, dict[str, str | int]]
    code: str  # everything outside the block

    def names(self, group: str, pattern: str) -> set[str]:
        """The `group` constants the code uses as `pattern` says (`{}` is the reference)."""
        ref = re.escape(group) + r"\.([A-Z0-9_]+)"
        return set(re.findall(pattern.format(ref), self.code))

    def values(self, group: str, names: set[str]) -> set[str | int]:
        return {self.constants[group][name] for name in names}


def read_js() -> Js:
    source = JS.read_text()
    begin, end = "// BEGIN WIRE CONSTANTS\n", "// END WIRE CONSTANTS\n"
    assert source.count(begin) == 1 and source.count(end) == 1, "meetcore.js: the block's markers"
    head, rest_ = source.split(begin)
    block, tail = rest_.split(end)
    constants: dict[str, dict[str, str | int]] = {}
    opening = re.compile(r"(?:export )?const (\w+) = (?:Object\.freeze\()?\{$")
    entry = re.compile(r'\s+(\w+): (?:"((?:[^"\\]|\\.)*)"|(\d+)),(?:\s*//.*)?$')
    current: dict[str, str | int] | None = None
    for line in block.splitlines():
        stripped = line.strip()
        if current is None:
            if match := opening.match(line):
                current = constants.setdefault(match[1], {})
            else:  # outside an object: only comments and blank lines
                assert not stripped or stripped.startswith(("//", "/*", "*")), line
        elif stripped in ("});", "};"):
            current = None
        else:
            match = entry.match(line)
            assert match, f"meetcore.js: not a `NAME: value,` line in the wire block: {line!r}"
            assert match[1] not in current, f"meetcore.js: {match[1]} twice"
            current[match[1]] = match[2] if match[2] is not None else int(match[3])
    assert current is None, "meetcore.js: an unclosed object in the wire block"
    return Js(constants, head + tail)


@pytest.fixture(scope="module")
def js() -> Js:
    return read_js()


def js_applies(js: Js) -> set[str | int]:
    return js.values("EventType", js.names("EventType", r"case {}:"))


def js_sends(js: Js) -> set[str | int]:
    return js.values("ClientType", js.names("ClientType", r"\btype: {}\b"))


def js_receives(js: Js) -> set[str | int]:
    handled = js.names("ServerType", r"case {}:") | js.names("ServerType", r"\.type [!=]== {}\b")
    return js.values("ServerType", handled)


# -- reading the server ---------------------------------------------------------------


class _Caller:
    meeting_id = "abc-def-ghi"
    participant_id = "caller"
    connection_id = "c-1"


#: One request of each type the client may send, for `Signaling._command`.
SAMPLE_REQUESTS: tuple[p.ClientMessage, ...] = (
    p.JoinRequest(token="t", meeting_id="abc-def-ghi"),
    p.ResumeRequest(
        token="t",
        meeting_id="abc-def-ghi",
        participant_id="caller",
        connection_id="c-1",
        resume_token="r",
        last_seq=1,
    ),
    p.LeaveRequest(),
    p.EndRequest(),
    p.RemoveRequest(participant_id="other"),
    p.SetMediaRequest(kind="mic", enabled=True),
    p.ChangeModeRequest(mode="RECV_ONLY"),
    p.RespondEntryRequest(participant_id="other", decision="allowed"),
    p.Ping(),
    p.OfferRequest(sdp="v=0"),
    p.AnswerRequest(sdp="v=0"),
)


def wire_commands() -> dict[type, set[type]]:
    """Command type -> the request types the server turns into it."""
    assert {type(r) for r in SAMPLE_REQUESTS} == set(CLIENT_MESSAGES), (
        "a request type without a sample here: add one to SAMPLE_REQUESTS"
    )
    found: dict[type, set[type]] = {}
    for request in SAMPLE_REQUESTS:
        try:
            command = signaling.Signaling._command(None, _Caller(), request)  # type: ignore[arg-type]
        except Rejected:
            continue  # not a command: the handshake, a ping or media
        found.setdefault(type(command), set()).add(type(request))
    # The handshake: a function taking `hello: p.SomeRequest` that builds a command.
    for node in ast.walk(ast.parse(inspect.getsource(signaling))):
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            for arg in node.args.args:
                kind = _resolve(signaling, arg.annotation) if arg.annotation else None
                if isinstance(kind, type) and kind in CLIENT_MESSAGES:
                    for built in _built(signaling, node) & set(COMMAND_TYPES):
                        found.setdefault(built, set()).add(kind)
    return found


def rest_commands() -> dict[type, set[str]]:
    """Command type -> the REST routes ("POST /v2/...") whose handlers build it."""
    api = next(
        node
        for node in ast.walk(ast.parse(inspect.getsource(rest)))
        if isinstance(node, ast.ClassDef) and node.name == "RestAPI"
    )
    methods = {
        item.name: item
        for item in api.body
        if isinstance(item, ast.FunctionDef | ast.AsyncFunctionDef)
    }

    def called(method: ast.AST) -> set[str]:  # self.<method>(...) and self.<method> handlers
        return {
            node.attr
            for node in ast.walk(method)
            if isinstance(node, ast.Attribute)
            and isinstance(node.value, ast.Name)
            and node.value.id == "self"
            and node.attr in methods
        }

    def commands(name: str) -> set[type]:
        seen: set[str] = set()
        todo, built = [name], set[type]()
        while todo:
            current = todo.pop()
            if current not in seen:
                seen.add(current)
                built |= _built(rest, methods[current]) & set(COMMAND_TYPES)
                todo += called(methods[current])
        return built

    found: dict[type, set[str]] = {}
    for operation in rest._OPERATIONS:  # the route table: routes and OpenAPI both
        for command in commands(operation.handler.__name__):
            found.setdefault(command, set()).add(f"{operation.method} {operation.path}")
    return found


# -- events ---------------------------------------------------------------------------


def _check_events(sdk: str, applied: set[type]) -> None:
    missing = [e.__name__ for e in EVENT_TYPES if e not in applied and e not in IGNORED_EVENTS]
    assert not missing, (
        f"{sdk} does not apply {missing}: handle them, or list them in IGNORED_EVENTS"
    )
    stale = [e.__name__ for e in IGNORED_EVENTS if e in applied]
    assert not stale, f"{sdk} applies {stale}, listed in IGNORED_EVENTS: take them off"


def test_the_python_client_applies_every_event() -> None:
    applied = python_applies()
    assert applied <= set(EVENT_TYPES)
    _check_events("the Python client (Meeting._apply)", applied)


def test_meetcore_js_applies_every_event(js: Js) -> None:
    by_tag = {tag(e): e for e in EVENT_TYPES}
    unknown = set(js.constants["EventType"].values()) - set(by_tag)
    assert not unknown, f"meetcore.js's EventType names events meetcore does not have: {unknown}"
    applied = {by_tag[t] for t in js_applies(js)}  # type: ignore[index]
    _check_events("meetcore.js (Meeting._apply)", applied)


# -- commands -------------------------------------------------------------------------


def test_every_command_has_a_request_or_a_rest_route() -> None:
    wire, api = wire_commands(), rest_commands()
    for command in COMMAND_TYPES:
        if command in SERVER_API_ONLY:
            assert command not in wire, f"{command.__name__} has a request now: the SDKs send it"
            assert command in api, f"{command.__name__}: no REST route builds it"
        else:
            assert command in wire, (
                f"{command.__name__}: no wire request maps to it in the server (signaling.py); "
                "add one, or list it in SERVER_API_ONLY with the reason"
            )
    # What the REST API does for participants' commands too: ending and removing.
    assert set(api) >= {InitMeeting, Deactivate, Activate}


def test_both_sdks_send_every_participant_command(js: Js) -> None:
    wire = wire_commands()
    python, javascript = python_sends(), js_sends(js)
    for command in COMMAND_TYPES:
        if command in SERVER_API_ONLY:
            continue
        requests = wire.get(command, set())
        assert requests, f"{command.__name__}: no wire request maps to it"
        assert requests & python, (
            f"{command.__name__}: the Python client builds none of {[r.__name__ for r in requests]}"
        )
        assert {tag(r) for r in requests} & javascript, (
            f"{command.__name__}: meetcore.js sends none of {sorted(tag(r) for r in requests)}"
        )
    assert Join in wire and wire[Join] == {p.JoinRequest}


# -- the protocol's names in meetcore.js ----------------------------------------------


def test_meetcore_js_message_types_are_the_protocols(js: Js) -> None:
    client_tags = {tag(k) for k in CLIENT_MESSAGES}
    server_tags = {tag(k) for k in SERVER_MESSAGES}
    sent = set(js.constants["ClientType"].values())
    assert sent <= client_tags, (
        f"meetcore.js sends types the server does not read: {sent - client_tags}"
    )
    assert set(js.constants["ServerType"].values()) == server_tags
    # every name in the block is used, the way its direction says
    assert js_sends(js) == sent, "ClientType entries meetcore.js never sends"
    assert js_receives(js) == server_tags, "server message types meetcore.js does not handle"
    assert js_applies(js) == set(js.constants["EventType"].values())


def test_meetcore_js_uses_no_wire_string_outside_the_block(js: Js) -> None:
    # An SDP description's type ("offer", "answer") is the browser's, not the wire's.
    code = "\n".join(line for line in js.code.splitlines() if "setRemoteDescription(" not in line)
    literal = r'"[a-z-]+"'
    stray = re.findall(
        rf'(?:case {literal}:|\btype: {literal}|\.type [!=]== {literal}|"type":\s*")',
        code,
    )
    assert not stray, f"meetcore.js: wire names outside the WIRE CONSTANTS block: {stray}"


def test_the_python_client_handles_every_server_message() -> None:
    assert python_receives() >= set(SERVER_MESSAGES)


def test_meetcore_js_codes_are_meetcores(js: Js) -> None:
    assert js.constants["LeaveReason"] == {r.name: r.value for r in LeaveReason}
    assert set(js.constants["REASON_MESSAGES"]) == {str(r.value) for r in LeaveReason}
    errors = dict(js.constants["ErrorCode"])
    for name, value in JS_ONLY_ERRORS.items():
        assert errors.pop(name, None) == value, name
    assert errors == {e.name: e.value for e in ErrorCode}
    assert not set(JS_ONLY_ERRORS.values()) & {e.value for e in ErrorCode}


def test_meetcore_js_timing_is_the_python_clients(js: Js) -> None:
    def constant(name: str) -> str:
        found = re.findall(rf"^(?:export )?const {name} = (.+);$", js.code, re.MULTILINE)
        assert len(found) == 1, name
        return str(found[0]).replace("_", "")

    assert int(constant("REQUEST_TIMEOUT")) == client.REQUEST_TIMEOUT * 1000
    assert int(constant("DEAD_NODE_RETRY")) == client.DEAD_NODE_RETRY * 1000
    assert int(constant("MAX_REDIRECTS")) == client.MAX_REDIRECTS
    delays = re.fullmatch(r"Object\.freeze\(\[([\d, ]+)\]\)", constant("RECONNECT_DELAYS"))
    assert delays, "RECONNECT_DELAYS: not a frozen list of numbers"
    assert [int(d) for d in delays[1].split(",")] == [
        round(d * 1000) for d in client.RECONNECT_DELAYS
    ]
    # meetcore.js hard-codes no size limit (MAX_MESSAGE_BYTES, MAX_ANSWER_BYTES): the
    # server enforces them. Should one appear, it must be the protocol's.
    for name in ("MAX_MESSAGE_BYTES", "MAX_ANSWER_BYTES"):
        for value in re.findall(rf"\b{name} = ([\d_* ]+);", js.code):
            factors = [int(f) for f in value.replace("_", "").split("*")]
            assert math.prod(factors) == getattr(p, name), name
