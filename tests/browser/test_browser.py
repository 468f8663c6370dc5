"""The browser SDK and the demo page, in a real Chromium, against a real `meetcore serve`.

Debian's `chromium` (installed by `.ci/run`) runs headless, driven by Playwright for
Python with `executable_path`, with fake camera and microphone devices. The page talks
to a `meetcore serve --dev` subprocess; Python clients (`meetcore_client`) join
the same meetings from this process; media stays on 127.0.0.1 (`MEETCORE_ICE_ADDRESSES`
for the server, `ice_addresses` for the clients). What the page sees is read from the
demo page's DOM or from the events a test page records (`window.seen`). A page must
print no console error and load nothing that fails (a favicon's 404 included).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
import shutil
import sys
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import anyio
import httpx
import pytest
from support import eventually

from meetcore_client import Meeting, init_meeting
from meetcore_server.static import FILES
from meetcore_server.testing import ServeProcess

CHROMIUM = Path("/usr/bin/chromium")

pytestmark = [
    pytest.mark.anyio,
    pytest.mark.skipif(not CHROMIUM.exists(), reason="needs Debian's chromium (/usr/bin/chromium)"),
    pytest.mark.skipif(sys.platform == "win32", reason="needs POSIX signals"),
]

playwright_api = pytest.importorskip("playwright.async_api")
Browser = playwright_api.Browser
Page = playwright_api.Page
expect = playwright_api.expect

ROOT = Path(__file__).resolve().parents[2]
ARTIFACTS = ROOT / "test-artifacts"
README_SCREENSHOT = ROOT / "docs" / "images" / "demo.png"
MEETCORE = [sys.executable, "-m", "meetcore.cli"]
LEASE_TTL = 3.0
LOOPBACK = "127.0.0.1"
CHROMIUM_ARGS = [
    "--no-sandbox",  # root in a container
    "--use-fake-ui-for-media-stream",  # grant camera and microphone without asking
    "--use-fake-device-for-media-stream",  # a synthetic camera and microphone
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",  # the network is closed: no calls home
    "--disable-component-update",
    "--disable-sync",
]


@pytest.fixture(scope="module")
def anyio_backend() -> str:
    return "asyncio"  # the Python client and Playwright run on asyncio


# ---------------------------------------------------------------------------
# The server and the browser


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServeProcess]:
    served = ServeProcess(
        tmp_path_factory.mktemp("serve"),
        lease_ttl=LEASE_TTL,
        env={"MEETCORE_ICE_ADDRESSES": LOOPBACK},
    ).wait_ready()
    try:
        yield served
    finally:
        try:
            code = served.terminate()
        finally:
            ARTIFACTS.mkdir(exist_ok=True)
            (ARTIFACTS / "browser-meetcore-serve.log").write_text(served.output)
        tracebacks = unexpected_tracebacks(served.output)
        assert not tracebacks, "\n".join(t[:4000] for t in tracebacks)
        assert code == 0, served.output


def unexpected_tracebacks(output: str) -> list[str]:
    """The server's tracebacks: there must be none (a page that closes right after its
    `leave` used to make the server log the failed send)."""
    blocks = re.split(r"^ERROR: +Exception in ASGI application$", output, flags=re.M)[1:]
    if blocks or "Traceback" not in output:
        return blocks
    return [output[max(0, output.index("Traceback") - 300) :]]  # a logged one, from its line


@pytest.fixture(scope="module")
async def browser() -> AsyncIterator[Any]:
    async with playwright_api.async_playwright() as playwright:
        launched = await playwright.chromium.launch(
            executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS
        )
        try:
            yield launched
        finally:
            await launched.close()


class Pages:
    """Opens pages, each in its own browser context (its own cookies and storage),
    and keeps what their consoles printed, for the failure report, and what they could
    not load."""

    def __init__(self, browser: Any) -> None:
        self.browser = browser
        self.contexts: list[Any] = []
        self.console: list[str] = []
        self.failed: list[str] = []
        #: Console errors a test causes on purpose (substrings of the message).
        self.expected_errors: list[str] = []

    def errors(self) -> list[str]:
        """Uncaught exceptions, console errors and failed loads, but the expected ones."""
        errors = [
            line for line in self.console if line.startswith(("pageerror:", "error:"))
        ] + self.failed
        return [e for e in errors if not any(x in e for x in self.expected_errors)]

    async def new(self, url: str) -> Any:
        context = await self.browser.new_context(viewport={"width": 1280, "height": 800})
        self.contexts.append(context)
        page = await context.new_page()
        page.on("console", lambda message: self.console.append(console_line(message)))
        page.on("pageerror", lambda error: self.console.append(f"pageerror: {error}"))
        page.on("requestfailed", lambda request: self.failed.append(f"failed: {request.url}"))
        page.on(
            "response",
            lambda response: (
                response.status >= 400 and self.failed.append(f"{response.status}: {response.url}")
            ),
        )
        page.set_default_timeout(10_000)
        await page.goto(url)
        return page

    async def close(self) -> None:
        for context in self.contexts:
            with contextlib.suppress(Exception):
                await context.close()


def console_line(message: Any) -> str:
    where = message.location.get("url")
    return f"{message.type}: {message.text}" + (f" ({where})" if where else "")


@pytest.fixture
async def pages(browser: Any) -> AsyncIterator[Pages]:
    made = Pages(browser)
    try:
        yield made
    finally:
        await made.close()
    assert not made.errors(), "\n".join(made.console + made.failed)


class Clients:
    """Python participants; whoever is still in a meeting at the end leaves it."""

    def __init__(self) -> None:
        self.meetings: list[Meeting] = []

    def new(self, server: ServeProcess, token: str, meeting_id: str, **options: Any) -> Meeting:
        options.setdefault("ice_addresses", [LOOPBACK])
        meeting = init_meeting(base_url=server.url, token=token, meeting_id=meeting_id, **options)
        self.meetings.append(meeting)
        return meeting

    async def close(self) -> None:
        for meeting in self.meetings:
            with contextlib.suppress(Exception), anyio.move_on_after(3):
                if meeting.joined and meeting.state == "CONNECTED":
                    await meeting.leave()
                await meeting.close()


@pytest.fixture
async def clients() -> AsyncIterator[Clients]:
    made = Clients()
    try:
        yield made
    finally:
        await made.close()


async def dev_token(server: ServeProcess) -> str:
    async with httpx.AsyncClient(base_url=server.url, timeout=10) as http:
        response = await http.get("/get-token")
    assert response.status_code == 200, response.text
    return str(response.json()["token"])


async def post(server: ServeProcess, token: str, path: str, body: Any = None) -> Any:
    """POST to the REST API; the answer's JSON, which must be a 200's."""
    async with httpx.AsyncClient(base_url=server.url, timeout=10) as http:
        response = await http.post(path, json=body, headers={"Authorization": token})
    assert response.status_code == 200, response.text
    return response.json()


async def create_room(server: ServeProcess, token: str) -> str:
    return str((await post(server, token, "/v2/rooms"))["roomId"])


# ---------------------------------------------------------------------------
# A page that uses the SDK directly, recording every event in `window.seen`

SDK_PAGE = """
async ([token, options]) => {
  const sdk = await import("/sdk/meetcore.js");
  window.sdk = sdk;
  window.seen = [];
  const add = (...entry) => window.seen.push(entry);
  sdk.MeetCore.config(token);
  const meeting = sdk.MeetCore.initMeeting(options);
  window.meeting = meeting;
  meeting.on("meeting-joined", () => add("meeting-joined"));
  meeting.on("meeting-left", (reason) => add("meeting-left", reason.code, reason.message));
  meeting.on("participant-joined", (p) => add("participant-joined", p.id, p.displayName));
  meeting.on("participant-left", (p, reason) => add("participant-left", p.id, reason.code));
  meeting.on("meeting-state-changed", ({ state }) => add("state", state));
  meeting.on("error", ({ code }) => add("error", code));
  meeting.on("participant-mode-changed", ({ participantId, mode }) =>
    add("participant-mode-changed", participantId, mode));
  return meeting.participantId;
}
"""


async def sdk_page(pages: Pages, server: ServeProcess, token: str, **options: Any) -> Any:
    """A page on the server's origin with a `window.meeting` made by `initMeeting(options)`."""
    page = await pages.new(server.url + "/?sdk-test")
    await page.evaluate(SDK_PAGE, [token, options])
    return page


async def seen(page: Any, *names: str) -> list[list[Any]]:
    events: list[list[Any]] = await page.evaluate("window.seen")
    return [e for e in events if not names or e[0] in names]


async def until_true(page: Any, expression: str, timeout: float = 10.0) -> None:
    """Evaluate `expression` (a function, async or not) in the page until it is truthy.
    Not `page.wait_for_function`: it takes the Promise an async function returns for a
    truthy value at once, so `async () => (await stats()) > 5` passed whatever the stats."""
    last = None
    with anyio.move_on_after(timeout):
        while not (last := await page.evaluate(expression)):
            await anyio.sleep(0.1)
        return
    pytest.fail(f"never true within {timeout} s (last {last!r}): {expression[:300]}")


async def wait_seen(page: Any, entry: list[Any], timeout: float = 10.0) -> None:
    """Wait until the page has recorded `entry` (an event's name and first arguments)."""
    try:
        await page.wait_for_function(
            """(entry) => window.seen.some((e) =>
                   entry.every((value, i) => JSON.stringify(e[i]) === JSON.stringify(value)))""",
            arg=entry,
            timeout=timeout * 1000,
        )
    except playwright_api.Error:
        pytest.fail(f"the page never saw {entry}; it saw {await seen(page)}")


# ---------------------------------------------------------------------------
# Serving


async def test_the_server_serves_the_sdk_and_the_demo_page(server: ServeProcess) -> None:
    async with httpx.AsyncClient(base_url=server.url, timeout=10) as http:
        sdk = await http.get("/sdk/meetcore.js")
        page = await http.get("/")
        css = await http.get("/static/demo.css")
        hidden = await http.get("/static/__init__.py")
    assert sdk.status_code == 200
    assert sdk.headers["content-type"].startswith("text/javascript")
    assert "export const MeetCore" in sdk.text
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    assert '<script type="module" src="/static/demo.js">' in page.text
    assert css.status_code == 200 and css.headers["content-type"].startswith("text/css")
    assert hidden.status_code == 404  # only the page's own files
    async with httpx.AsyncClient(base_url=server.url, timeout=10) as http:
        for name, media_type in FILES.items():  # all in the package, so in the wheel
            response = await http.get(f"/static/{name}")
            assert response.status_code == 200, name
            assert response.headers["content-type"] == media_type


async def test_init_meeting_validates_like_videosdk(server: ServeProcess, pages: Pages) -> None:
    page = await pages.new(server.url + "/?sdk-test")
    errors = await page.evaluate(
        """async () => {
          const { MeetCore, VideoSDK, MeetCoreError } = await import("/sdk/meetcore.js");
          const attempt = (f) => {
            try { f(); return "no error"; }
            catch (e) { return e instanceof MeetCoreError ? e.code : String(e); }
          };
          const room = (options) => MeetCore.initMeeting({ meetingId: "abc-def-ghi", ...options });
          const before = attempt(() => room({}));
          MeetCore.config("a-token");
          const made = MeetCore.initMeeting({ meetingId: "abc-def-ghi", multiStream: false });
          const seeds = MeetCore.initMeeting({
            meetingId: "abc-def-ghi", name: "Franz Kafka", participantId: "49151",
            micEnabled: true, webcamEnabled: false, metaData: { a: 1 }, multistream: true,
            debugMode: false,
          });
          let leave;
          try { await seeds.leave(); leave = "no error"; } catch (e) { leave = e.code; }
          return {
            before,
            sameObject: VideoSDK === MeetCore,
            noMeetingId: attempt(() => MeetCore.initMeeting({ name: "x" })),
            emptyMeetingId: attempt(() => MeetCore.initMeeting({ meetingId: "" })),
            badMode: attempt(() => room({ mode: "X" })),
            oldMode: attempt(() => room({ mode: "VIEWER" })),
            badMeta: attempt(() => room({ metaData: [1] })),
            badId: attempt(() => room({ participantId: "a b" })),
            noOptions: attempt(() => MeetCore.initMeeting()),
            badToken: attempt(() => MeetCore.config("")),
            multiStream: made._hello.multistream,
            generatedId: /^[a-z0-9]{8}$/.test(made.participantId),
            seeds: [seeds.participantId, seeds.localParticipant.displayName, seeds.state],
            leave,
          };
        }"""
    )
    assert errors == {
        "before": 4002,  # no token configured yet
        "sameObject": True,
        "noMeetingId": 4003,
        "emptyMeetingId": 4003,
        "badMode": 3073,
        "oldMode": "no error",
        "badMeta": 3073,
        "badId": 4004,
        "noOptions": 3073,
        "badToken": 4002,
        "multiStream": False,
        "generatedId": True,
        "seeds": ["49151", "Franz Kafka", "DISCONNECTED"],
        "leave": 3035,  # leave before join
    }


async def test_a_refused_join_rejects_with_the_servers_code(
    server: ServeProcess, pages: Pages
) -> None:
    token = await dev_token(server)
    page = await sdk_page(pages, server, token, meetingId="zzz-zzz-zzz", debugMode=False)
    code = await page.evaluate("window.meeting.join().then(() => 'joined', (e) => e.code)")
    assert code == 4003
    assert await seen(page) == [["state", "CONNECTING"], ["state", "FAILED"], ["error", 4003]]


@pytest.mark.parametrize(
    ("target", "why"),
    [
        (None, "more than 3 redirects"),  # to itself, again and again
        ("javascript:alert(1)", "redirected to a URL that is not http(s)"),
        ("ws://127.0.0.1:1", "redirected to a URL that is not http(s)"),
        ("http://exa mple.com", "redirected to a URL that is not http(s)"),
    ],
)
async def test_the_sdk_follows_no_redirect_loop_and_no_redirect_elsewhere_than_http(
    server: ServeProcess, pages: Pages, target: str | None, why: str
) -> None:
    """A cluster node's `redirect` (docs/protocol.md), from a fake server: the SDK
    follows at most 3 in a row, and refuses one that is not http(s), with 3047
    (UNABLE_TO_JOIN)."""
    from websockets.asyncio.server import ServerConnection, serve

    joins = []

    async def redirect(socket: ServerConnection) -> None:
        joins.append(json.loads(await socket.recv())["type"])
        await socket.send(json.dumps({"type": "redirect", "baseUrl": target or fake_url}))

    async with serve(redirect, LOOPBACK, 0) as fake:
        fake_url = f"http://{LOOPBACK}:{next(iter(fake.sockets)).getsockname()[1]}"
        token = await dev_token(server)
        page = await sdk_page(pages, server, token, meetingId="abc-def-ghi", baseUrl=fake_url)
        refused = await page.evaluate(
            "window.meeting.join().then(() => 'joined', (e) => [e.code, e.message])"
        )
    assert refused[0] == 3047
    assert why in refused[1]
    assert joins == ["join"] * (4 if target is None else 1)
    assert await seen(page) == [["state", "CONNECTING"], ["state", "FAILED"], ["error", 3047]]


# ---------------------------------------------------------------------------
# The demo page with a Python participant


async def join_from_demo(page: Any, room: str, name: str, *, media: bool = True) -> None:
    """Fill the demo page's form and press Join."""
    await page.fill("#name", name)
    await page.fill("#meeting-id", room)
    await page.set_checked("#webcam", media)
    await page.set_checked("#mic", media)
    await page.click("#join")
    await page.wait_for_selector("#room:not([hidden])")


async def test_the_demo_page_and_a_python_client_see_each_other_join_and_leave(
    server: ServeProcess, pages: Pages, clients: Clients
) -> None:
    token = await dev_token(server)
    room = await create_room(server, token)
    max_brod = clients.new(server, token, room, name="Max Brod", participant_id="max")
    await max_brod.join()

    page = await pages.new(f"{server.url}/?meetingId={room}")
    assert await page.input_value("#meeting-id") == room  # the join link fills it in
    page_joins = max_brod.wait_for("participant-joined")
    await join_from_demo(page, room, "Franz Kafka", media=False)
    (kafka,) = await page_joins
    assert kafka.display_name == "Franz Kafka"
    kafka_id = kafka.id
    assert await page.evaluate("window.demo.meeting.participantId") == kafka_id

    # the page shows a tile for each, with the name; the Python one was there already
    await page.wait_for_selector('.tile[data-participant-id="max"] .name >> text=Max Brod')
    local_tile = page.locator(f'.tile[data-participant-id="{kafka_id}"] .name')
    assert "Franz Kafka (you)" in await local_tile.inner_text()
    assert page.url.endswith(f"/?meetingId={room}")
    await expect_people(page, [[kafka_id, "Franz Kafka (you)"], ["max", "Max Brod"]])
    for tile in await page.locator(".tile").all():  # nobody sends
        await expect(tile.locator(".placeholder")).to_have_text(re.compile("Camera off"))

    # someone joining later is an event on the page, then a tile
    felice = clients.new(server, token, room, name="Felice Bauer", participant_id="felice")
    await felice.join()
    await page.wait_for_selector('.tile[data-participant-id="felice"] >> text=Felice Bauer')
    assert await page.locator("#log >> text=participant-joined Felice Bauer").count() == 1
    await expect_people(
        page, [[kafka_id, "Franz Kafka (you)"], ["max", "Max Brod"], ["felice", "Felice Bauer"]]
    )

    # a Python client leaves: the page sees participant-left 1101 and drops the tile
    await felice.leave()
    await page.wait_for_selector('.tile[data-participant-id="felice"]', state="detached")
    assert await page.locator("#log >> text=participant-left Felice Bauer (felice): 1101").count()
    await expect_people(page, [[kafka_id, "Franz Kafka (you)"], ["max", "Max Brod"]])

    # the page leaves: Python sees participant-left 1101, the page meeting-left 1101
    page_leaves = max_brod.wait_for("participant-left")
    await page.click("#leave")
    gone, reason = await page_leaves
    assert (gone.id, reason.code) == (kafka_id, 1101)
    await page.wait_for_selector("#log >> text=meeting-left: 1101 left")
    await page.wait_for_selector("#setup:not([hidden])")
    await expect(page.get_by_role("status")).to_have_text("You left the meeting")
    assert await page.locator(".tile").count() == 0
    await expect(page.locator("#people")).to_be_hidden()
    assert await page.text_content("#state") == "DISCONNECTED"
    assert max_brod.participants == {}

    # the event list reads top to bottom, oldest first, numbered from 1
    entries = await page.locator("#log li").all_inner_texts()
    assert "token from /get-token" in entries[0] and "meeting-left: 1101" in entries[-1]
    log = "document.querySelector('#log')"
    assert await page.evaluate(f"[{log}.start, {log}.reversed]") == [1, False]
    # it keeps the last 100, numbered as they came
    await page.evaluate("for (let i = 1; i <= 100; i++) window.demo.log(`entry ${i}`)")
    kept = await page.locator("#log li").all_inner_texts()
    assert len(kept) == 100 and kept[0].endswith("entry 1") and kept[-1].endswith("entry 100")
    assert await page.evaluate(f"{log}.start") == len(entries) + 1


async def expect_people(page: Any, rows: list[list[str]]) -> None:
    """The page's participant list: these rows ([id, name]) in this order, and their count."""
    listed = page.locator("#people li")
    await expect(listed).to_have_count(len(rows))
    await expect(page.locator("#people-count")).to_have_text(str(len(rows)))
    for row, (participant_id, name) in zip(await listed.all(), rows, strict=True):
        await expect(row).to_have_attribute("data-participant-id", participant_id)
        await expect(row.locator(".who")).to_have_text(name)


async def expect_media(page: Any, participant_id: str, mic: str, camera: str) -> None:
    """A participant's row says the mic and the camera are `on` or `off`, in words."""
    row = page.locator(f'#people li[data-participant-id="{participant_id}"]')
    await expect(row).to_have_attribute("data-mic", mic)
    await expect(row).to_have_attribute("data-camera", camera)
    await expect(row.locator(".mic")).to_have_text(f"Mic {mic}")
    await expect(row.locator(".camera")).to_have_text(f"Camera {camera}")


async def test_without_dev_the_page_asks_for_a_token_creates_a_room_and_copies_the_link(
    server: ServeProcess, pages: Pages, clients: Clients
) -> None:
    token = await dev_token(server)
    pages.expected_errors.append(f"{server.url}/get-token")  # as a server without --dev answers
    page = await pages.new("about:blank")
    await page.context.grant_permissions(["clipboard-read", "clipboard-write"], origin=server.url)
    await page.route("**/get-token", lambda route: route.fulfill(status=404, body="Not Found"))
    await page.goto(server.url + "/")  # as served without --dev: no /get-token
    await page.wait_for_selector("#token-field:not([hidden])")
    await page.fill("#token", token)
    await page.click("#create")  # POST /v2/rooms with the pasted token
    await page.wait_for_function("document.querySelector('#meeting-id').value.length == 11")
    room = await page.input_value("#meeting-id")
    assert page.url.endswith(f"/?meetingId={room}")
    await page.fill("#name", "Franz Kafka")
    await page.set_checked("#webcam", False)
    await page.set_checked("#mic", False)
    await page.click("#join")
    await page.wait_for_selector("#room:not([hidden])")
    assert await page.text_content("#room-id") == room

    await page.click("#copy")
    await page.wait_for_selector("#copy >> text=Link copied")
    link = await page.evaluate("navigator.clipboard.readText()")
    assert link == f"{server.url}/?meetingId={room}"

    # the link is all another participant needs
    other = clients.new(server, token, room, name="Max Brod")
    await other.join()
    assert [p.display_name for p in other.participants.values()] == ["Franz Kafka"]


async def test_end_from_the_page_and_from_python(
    server: ServeProcess, pages: Pages, clients: Clients
) -> None:
    token = await dev_token(server)
    room = await create_room(server, token)
    max_brod = clients.new(server, token, room, name="Max Brod")
    await max_brod.join()
    page = await pages.new(server.url + "/")
    joined = max_brod.wait_for("participant-joined")
    await join_from_demo(page, room, "Franz Kafka", media=False)
    await joined

    # the page ends the meeting: everyone, the page included, leaves with 1008
    python_left = max_brod.wait_for("meeting-left")
    await page.click("#end")
    (reason,) = await python_left
    assert reason.code == 1008
    await page.wait_for_selector("#log >> text=meeting-left: 1008 the meeting was ended")
    await expect(page.get_by_role("status")).to_have_text("You ended the meeting for everyone")

    # the room is reusable: a new session, ended from Python this time
    again = clients.new(server, token, room, name="Max Brod")
    await again.join()
    page2 = await sdk_page(pages, server, token, meetingId=room, name="Felice Bauer")
    await page2.evaluate("window.meeting.join()")
    await again.end()
    await wait_seen(page2, ["meeting-left", 1008])
    assert await seen(page2, "meeting-left", "state") == [
        ["state", "CONNECTING"],
        ["state", "CONNECTED"],
        ["meeting-left", 1008, "the meeting was ended"],
        ["state", "DISCONNECTED"],
    ]


BANNERS = {
    "rest-end": ("alert", "The meeting was ended via the REST API (1009)"),
    "rest-remove": ("alert", "You were removed via the REST API (1010)"),
    "moderator-end": ("alert", "The meeting was ended by a moderator (1008)"),
    "moderator-remove": ("alert", "You were removed by a moderator (1002)"),
    "same-id": ("alert", "Another tab or device joined as you (1011)"),
}


@pytest.mark.parametrize("how", BANNERS)
async def test_the_banner_says_why_the_page_is_out(
    server: ServeProcess, pages: Pages, clients: Clients, how: str
) -> None:
    token = await dev_token(server)
    room = await create_room(server, token)
    max_brod = clients.new(server, token, room, name="Max Brod")
    await max_brod.join()
    page = await pages.new(server.url + "/")
    joined = max_brod.wait_for("participant-joined")
    await join_from_demo(page, room, "Franz Kafka", media=False)
    (kafka,) = await joined
    await expect(page.locator("#banner")).to_be_hidden()  # nothing to say yet

    if how == "rest-end":
        await post(server, token, "/v2/sessions/end", {"roomId": room})
    elif how == "rest-remove":
        body = {"roomId": room, "participantId": kafka.id}
        await post(server, token, "/v2/sessions/participants/remove", body)
    elif how == "moderator-end":
        await max_brod.end()
    elif how == "moderator-remove":
        await max_brod.remove_participant(kafka.id)
    else:
        await clients.new(server, token, room, name="Franz Kafka", participant_id=kafka.id).join()

    role, text = BANNERS[how]
    banner = page.get_by_role(role)
    await expect(banner).to_have_text(text)
    await expect(banner).to_be_visible()
    await expect(page.locator("#banner")).to_have_attribute("data-kind", "warning")
    await page.wait_for_selector("#setup:not([hidden])")

    # joining again clears it
    await page.fill("#meeting-id", room)
    await page.click("#join")
    await page.wait_for_selector("#room:not([hidden])")
    await expect(page.locator("#banner")).to_be_hidden()


async def test_the_banner_tells_a_guest_who_waits_to_be_let_in(
    server: ServeProcess, pages: Pages, clients: Clients
) -> None:
    token = await dev_token(server)
    room = await create_room(server, token)
    max_brod = clients.new(server, token, room, name="Max Brod")
    await max_brod.join()
    minted = await anyio.run_process(
        [*MEETCORE, "token", "--permissions", "ask_join"], cwd=server.cwd, env=server.env
    )
    asking = minted.stdout.decode().strip()
    page = await pages.new("about:blank")
    await page.route("**/get-token", lambda route: route.fulfill(json={"token": asking}))
    await page.goto(f"{server.url}/?meetingId={room}&name=Felice%20Bauer")
    await page.set_checked("#webcam", False)
    await page.set_checked("#mic", False)

    # denied: the page says so and is back at its form
    requested = max_brod.wait_for("entry-requested")
    await page.click("#join")
    await expect(page.get_by_role("status")).to_have_text("Waiting for a moderator to let you in…")
    (request,) = await requested
    await request.deny()
    await expect(page.get_by_role("alert")).to_have_text("A moderator did not let you in")
    await expect(page.locator("#join")).to_be_enabled()

    # let in: the note goes
    requested = max_brod.wait_for("entry-requested")
    await page.click("#join")
    (request,) = await requested
    await request.allow()
    await page.wait_for_selector("#room:not([hidden])")
    await expect(page.locator("#banner")).to_be_hidden()
    await expect(page.locator("#people-count")).to_have_text("2")


async def test_the_banner_shows_an_error_with_its_code(server: ServeProcess, pages: Pages) -> None:
    page = await pages.new(server.url + "/")
    await page.fill("#name", "Franz Kafka")
    await page.fill("#meeting-id", "zzz-zzz-zzz")
    await page.set_checked("#webcam", False)
    await page.set_checked("#mic", False)
    await page.click("#join")
    alert = page.get_by_role("alert")
    await expect(alert).to_have_text("Could not join. Error 4003: the meeting does not exist")
    await expect(page.locator("#banner")).to_have_attribute("data-kind", "error")
    await expect(page.locator("#join")).to_be_enabled()

    # it can be dismissed
    await page.get_by_role("button", name="Dismiss").click()
    await expect(page.locator("#banner")).to_be_hidden()


async def test_the_sdk_resumes_after_a_dropped_socket(
    server: ServeProcess, pages: Pages, clients: Clients
) -> None:
    token = await dev_token(server)
    room = await create_room(server, token)
    max_brod = clients.new(server, token, room, name="Max Brod", participant_id="max")
    await max_brod.join()
    page = await sdk_page(
        pages,
        server,
        token,
        meetingId=room,
        name="Franz Kafka",
        participantId="kafka",
        reconnectDelays=[800, 250, 500],
    )
    await page.evaluate("window.meeting.join()")
    assert await page.evaluate("[...window.meeting.participants.keys()]") == ["max"]

    # the socket drops; a request made before its close event is 3065, not a send on
    # a closing socket (which the browser reports as an error); while the page is away,
    # Max leaves and Felice joins
    code = await page.evaluate(
        """() => { window.meeting._socket.close();
                   return window.meeting._request({ type: "ping" })
                     .then(() => 0, (e) => e.code); }"""
    )
    assert code == 3065
    await wait_seen(page, ["state", "RECONNECTING"])
    max_left = max_brod.wait_for("meeting-left")
    await max_brod.leave()
    await max_left
    felice = clients.new(server, token, room, name="Felice Bauer", participant_id="felice")
    await felice.join()
    assert "kafka" in felice.participants  # the page is still in, for its lease

    # back within the lease: the page gets exactly what it missed, then live events
    await wait_seen(page, ["participant-joined", "felice"])
    assert await seen(page, "state", "participant-joined", "participant-left") == [
        ["state", "CONNECTING"],
        ["state", "CONNECTED"],
        ["state", "RECONNECTING"],
        ["state", "CONNECTED"],
        ["participant-left", "max", 1101],
        ["participant-joined", "felice", "Felice Bauer"],
    ]
    assert await page.evaluate("[...window.meeting.participants.keys()]") == ["felice"]
    page_left = felice.wait_for("participant-left")
    await page.evaluate("window.meeting.leave()")
    gone, reason = await page_left
    assert (gone.id, reason.code) == ("kafka", 1101)
    assert await seen(page, "error") == []


async def test_the_waiting_room_and_a_mode_change(
    server: ServeProcess, pages: Pages, clients: Clients
) -> None:
    token = await dev_token(server)
    room = await create_room(server, token)
    max_brod = clients.new(server, token, room, name="Max Brod", participant_id="max")
    await max_brod.join()
    minted = await anyio.run_process(
        [*MEETCORE, "token", "--permissions", "ask_join"], cwd=server.cwd, env=server.env
    )
    asking = minted.stdout.decode().strip()

    # an ask_join token waits until a participant with allow_join lets it in
    requested = max_brod.wait_for("entry-requested")
    page = await sdk_page(
        pages, server, asking, meetingId=room, name="Felice Bauer", participantId="felice"
    )
    await page.evaluate("window.meeting.join()")
    assert await page.evaluate("[window.meeting.waiting, window.meeting.joined]") == [True, False]
    (request,) = await requested
    assert (request.participant_id, request.name) == ("felice", "Felice Bauer")
    admitted = max_brod.wait_for("participant-joined")
    await request.allow()
    await admitted
    await wait_seen(page, ["meeting-joined"])
    assert await page.evaluate("[...window.meeting.participants.keys()]") == ["max"]

    # changeMode: everyone sees participant-mode-changed; the same mode again is 3054
    changed = max_brod.wait_for("participant-mode-changed")
    await page.evaluate("window.meeting.changeMode('RECV_ONLY')")
    assert await changed == ({"participantId": "felice", "mode": "RECV_ONLY"},)
    await wait_seen(page, ["participant-mode-changed", "felice", "RECV_ONLY"])
    again = await page.evaluate(
        "window.meeting.changeMode('RECV_ONLY').then(() => 0, (e) => e.code)"
    )
    assert again == 3054
    assert await seen(page, "error") == [["error", 3054]]


async def test_closing_the_page_leaves_the_meeting(
    server: ServeProcess, pages: Pages, clients: Clients
) -> None:
    token = await dev_token(server)
    room = await create_room(server, token)
    max_brod = clients.new(server, token, room, name="Max Brod")
    await max_brod.join()
    page = await sdk_page(pages, server, token, meetingId=room, name="Franz Kafka")
    joined = max_brod.wait_for("participant-joined")
    await page.evaluate("window.meeting.join()")
    (kafka,) = await joined

    left = max_brod.wait_for("participant-left", timeout=LEASE_TTL / 2)
    await page.goto("about:blank")  # pagehide: leave on the open socket, not a lease timeout
    gone, reason = await left
    assert (gone.id, reason.code) == (kafka.id, 1101)


# ---------------------------------------------------------------------------
# Media: the page's camera to Python, Python's synthetic video to the page

# What the page got of a participant's stream: video frames decoded, audio packets
# received (null while the participant has no such stream).
INBOUND = """
async (participantId, kind) => {
  const meeting = window.demo.meeting;
  const stream = meeting.participants.get(participantId)?.streamOf(kind);
  if (!stream || !meeting.peerConnection) return null;
  let count = null;
  (await meeting.peerConnection.getStats()).forEach((report) => {
    if (report.type === "inbound-rtp" && report.kind === kind && report.mid === stream.mid) {
      count = kind === "video" ? report.framesDecoded : report.packetsReceived;
    }
  });
  return count;
}
"""
INBOUND_VIDEO = f'(participantId) => ({INBOUND})(participantId, "video")'
INBOUND_AUDIO_OF = f'(participantId) => ({INBOUND})(participantId, "audio")'

PAGE_VIDEO = """
(participantId) => {
  const video = document.querySelector(`.tile[data-participant-id="${participantId}"] video`);
  return video ? [video.videoWidth, video.videoHeight, video.currentTime > 0] : null;
}
"""


async def stream_of(participant: Any, kind: str, timeout: float = 15.0) -> Any:
    """The participant's `kind` stream, once it is enabled."""
    found: asyncio.Future[Any] = asyncio.get_running_loop().create_future()

    def enabled(stream: Any) -> None:
        if stream.kind == kind and not found.done():
            found.set_result(stream)

    participant.on("stream-enabled", enabled)
    try:
        for stream in participant.streams.values():
            enabled(stream)
        with anyio.fail_after(timeout):
            return await found
    finally:
        participant.off("stream-enabled", enabled)


async def test_video_flows_both_ways_between_the_page_and_a_python_client(
    server: ServeProcess, pages: Pages, clients: Clients
) -> None:
    token = await dev_token(server)
    room = await create_room(server, token)
    max_brod = clients.new(
        server, token, room, name="Max Brod", participant_id="max", webcam_enabled=True
    )
    await max_brod.join()

    page = await pages.new(f"{server.url}/?meetingId={room}")
    joined = max_brod.wait_for("participant-joined")
    await join_from_demo(page, room, "Franz Kafka", media=True)  # the fake camera and mic
    (kafka,) = await joined
    assert kafka.webcam_on and kafka.mic_on

    # Python decodes the browser's camera
    video = await stream_of(kafka, "video")
    assert video.id == f"{kafka.id}:video"
    for _ in range(3):
        with anyio.fail_after(10):
            frame = await video.track.recv()
        assert (frame.width, frame.height) == (640, 360)  # what the SDK asks the camera for
    audio = await stream_of(kafka, "audio")
    with anyio.fail_after(10):
        assert (await audio.track.recv()).sample_rate == 48000

    # the page decodes Python's synthetic video and shows it in Max's tile
    await page.wait_for_selector('.tile[data-participant-id="max"][data-video="on"]')
    await until_true(page, f"async () => (await ({INBOUND_VIDEO})('max')) > 5")
    await page.wait_for_function(f"() => ({PAGE_VIDEO})('max')?.[2]")
    width, height, playing = await page.evaluate(PAGE_VIDEO, "max")
    assert width > 0 and height > 0 and playing
    local = await page.evaluate(PAGE_VIDEO, kafka.id)  # the page's own camera, in its tile
    assert local is not None and local[0] == 640
    await expect(page.locator("#people li")).to_have_count(2)
    await screenshot(page)  # before the drop below: no "Reconnected" banner in the picture

    # the signaling socket drops and resumes; the media connection goes on meanwhile
    decoded = await page.evaluate(INBOUND_VIDEO, "max")
    states = await page.evaluate(
        """() => new Promise((resolve) => {
             const states = [];
             window.demo.meeting.on("meeting-state-changed", ({ state }) => {
               states.push(state);
               if (state === "CONNECTED") resolve(states);
             });
             window.demo.meeting._socket.close();
           })"""
    )
    assert states == ["RECONNECTING", "CONNECTED"]
    await until_true(page, f"async () => (await ({INBOUND_VIDEO})('max')) > {decoded + 10}")
    assert kafka.id in max_brod.participants

    # the page stops its camera: Python's stream ends; Python stops its own: the tile empties
    disabled: asyncio.Future[str] = asyncio.get_running_loop().create_future()

    def stream_disabled(stream: Any) -> None:
        if not disabled.done():
            disabled.set_result(stream.kind)

    kafka.on("stream-disabled", stream_disabled)
    await page.click("#toggle-webcam")
    with anyio.fail_after(10):
        assert await disabled == "video"
    await eventually(lambda: not kafka.webcam_on)
    await max_brod.disable_webcam()
    await page.wait_for_selector('.tile[data-participant-id="max"][data-video="off"]')
    assert await page.evaluate(INBOUND_VIDEO, "max") is None  # the stream is gone

    # and ends the meeting for everyone
    left = max_brod.wait_for("meeting-left")
    await page.click("#end")
    (reason,) = await left
    assert reason.code == 1008
    await page.wait_for_selector("#log >> text=meeting-left: 1008 the meeting was ended")


RECORD_VIDEO_STATES = """
(participantId) => {
  const tile = document.querySelector(`.tile[data-participant-id="${participantId}"]`);
  const states = [tile.dataset.video];
  new MutationObserver(() => {
    if (states.at(-1) !== tile.dataset.video) states.push(tile.dataset.video);
  }).observe(tile, { attributes: true, attributeFilter: ["data-video"] });
  window.videoStates = states;
}
"""

RECORD_BANNERS = """
() => {
  const banner = document.querySelector("#banner");
  const texts = [];
  new MutationObserver(() => {
    const text = banner.hidden ? "" : banner.querySelector("[role]:not(:empty)")?.textContent;
    if (text && texts.at(-1) !== text) texts.push(text);
  }).observe(banner, { attributes: true, childList: true, subtree: true, characterData: true });
  window.banners = texts;
}
"""

RENDERED = """
(participantId) => {
  const video = document.querySelector(`.tile[data-participant-id="${participantId}"] video`);
  return video.videoWidth > 0 && video.readyState >= HTMLMediaElement.HAVE_CURRENT_DATA;
}
"""


async def test_the_demo_page_shows_who_is_in_their_media_and_a_placeholder_until_video_renders(
    server: ServeProcess, pages: Pages, clients: Clients
) -> None:
    token = await dev_token(server)
    room = await create_room(server, token)
    max_brod = clients.new(server, token, room, name="Max Brod", participant_id="max")
    await max_brod.join()
    page = await pages.new(f"{server.url}/?meetingId={room}")
    await join_from_demo(page, room, "Franz Kafka", media=False)
    kafka_id = await page.evaluate("window.demo.meeting.participantId")

    # two participants, nobody sends: two rows with everything off, "Camera off" tiles
    await expect_people(page, [[kafka_id, "Franz Kafka (you)"], ["max", "Max Brod"]])
    await expect_media(page, kafka_id, "off", "off")
    await expect_media(page, "max", "off", "off")
    max_tile = page.locator('.tile[data-participant-id="max"]')
    kafka_tile = page.locator(f'.tile[data-participant-id="{kafka_id}"]')
    for tile in (max_tile, kafka_tile):
        await expect(tile.locator(".placeholder")).to_be_visible()
        await expect(tile.locator(".placeholder .caption")).to_have_text("Camera off")

    # Max starts his camera: his row says so at once, his tile waits for video, then shows it
    await page.evaluate(RECORD_VIDEO_STATES, "max")
    await max_brod.enable_webcam()
    await expect_media(page, "max", "off", "on")
    await expect(max_tile).to_have_attribute("data-video", "on", timeout=15_000)
    await expect(max_tile.locator(".placeholder")).to_be_hidden()
    assert await page.evaluate(RENDERED, "max")  # a frame, not a timer, took it away
    assert await page.evaluate("window.videoStates") == ["off", "waiting", "on"]
    await expect(kafka_tile.locator(".placeholder .caption")).to_have_text("Camera off")

    # the page starts its own camera and microphone: its row and its tile follow
    await page.evaluate(RECORD_VIDEO_STATES, kafka_id)
    await page.click("#toggle-webcam")
    await page.click("#toggle-mic")
    await expect_media(page, kafka_id, "on", "on")
    await expect(kafka_tile).to_have_attribute("data-video", "on")
    await expect(kafka_tile.locator(".placeholder")).to_be_hidden()
    assert await page.evaluate(RENDERED, kafka_id)
    assert await page.evaluate("window.videoStates") == ["off", "waiting", "on"]

    # Max's mode changes, then his camera stops: the placeholder is back
    await max_brod.change_mode("RECV_ONLY")
    await expect(page.locator('#people li[data-participant-id="max"] .mode')).to_have_text(
        "receive only"
    )
    await expect_media(page, "max", "off", "off")
    await expect(max_tile.locator(".placeholder .caption")).to_have_text("Camera off")
    await expect(max_tile.locator(".placeholder")).to_be_visible()

    # the connection drops and comes back: the banner says so
    await page.evaluate(RECORD_BANNERS)
    await page.evaluate("window.demo.meeting._socket.close()")
    await expect(page.get_by_role("status")).to_have_text("Reconnected")
    assert await page.evaluate("window.banners") == [
        "Connection lost: reconnecting…",
        "Reconnected",
    ]
    await expect(page.locator("#banner")).to_have_attribute("data-kind", "success")

    # the page leaves
    await page.click("#leave")
    await expect(page.get_by_role("status")).to_have_text("You left the meeting")
    await expect(page.locator("#people")).to_be_hidden()
    assert pages.errors() == [], pages.console


async def screenshot(page: Any) -> None:
    """The demo page with two participants: a test artifact, and with
    MEETCORE_UPDATE_SCREENSHOT=1 the README's picture (docs/images/demo.png)."""
    await page.set_viewport_size({"width": 960, "height": 560})
    ARTIFACTS.mkdir(exist_ok=True)
    await page.screenshot(path=str(ARTIFACTS / "demo.png"))
    if os.environ.get("MEETCORE_UPDATE_SCREENSHOT") == "1":
        README_SCREENSHOT.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(ARTIFACTS / "demo.png", README_SCREENSHOT)


INBOUND_AUDIO = """
async () => {
  let packets = 0;
  (await window.demo.meeting.peerConnection.getStats()).forEach((report) => {
    if (report.type === "inbound-rtp" && report.kind === "audio") packets += report.packetsReceived;
  });
  return packets;
}
"""


async def test_a_page_that_joins_late_gets_the_first_pages_camera_and_mic(
    server: ServeProcess, pages: Pages
) -> None:
    """Two browsers, the second (receiving only) joining 10 s after the first published:
    the second decodes the first's video and receives its audio within 5 s of joining
    (its first frame needs a key frame that the server asks the first page for). The
    first page also stays in, idle: the browser SDK pinged at the pace of the default
    15 s lease until the welcome, whatever the server's, and a page that did nothing
    for 3 s (the lease here) lost its connection."""
    token = await dev_token(server)
    room = await create_room(server, token)
    first = await pages.new(f"{server.url}/?meetingId={room}")
    await join_from_demo(first, room, "Franz Kafka", media=True)
    kafka = await first.evaluate("() => window.demo.meeting.localParticipant.id")
    await anyio.sleep(10)  # the first page's encoder is well past its first key frame
    late = await pages.new(f"{server.url}/?meetingId={room}")
    await join_from_demo(late, room, "Felice Bauer", media=False)
    await until_true(late, f"async () => (await ({INBOUND_VIDEO})({json.dumps(kafka)})) > 5", 5)
    await late.wait_for_selector(f'.tile[data-participant-id="{kafka}"][data-video="on"]')
    await late.wait_for_function(f"() => ({RENDERED})({json.dumps(kafka)})", timeout=5_000)
    await until_true(late, f"async () => (await ({INBOUND_AUDIO})()) > 10", 5)


async def test_a_page_that_joins_late_and_publishes_gets_the_first_pages_camera_and_mic(
    server: ServeProcess, pages: Pages
) -> None:
    """Issue 20: two browsers that both publish, the second joining after the first.
    The second decodes and renders the first's video and receives its audio within 5 s
    of joining, and the first gets the second's. The server's offer to the first page
    (a section for each of the second's streams) renumbered payload types from aiortc's
    table (Opus 111 -> 96, VP8 96 -> 97); Chromium accepted it and sent with the new
    numbers, which the server's receivers, registered with the first ones, dropped: the
    second page got nothing of the first's."""
    token = await dev_token(server)
    room = await create_room(server, token)
    first = await pages.new(f"{server.url}/?meetingId={room}")
    await join_from_demo(first, room, "Franz Kafka", media=True)
    kafka = await first.evaluate("() => window.demo.meeting.localParticipant.id")
    await anyio.sleep(3)  # the first page is sending
    late = await pages.new(f"{server.url}/?meetingId={room}")
    await join_from_demo(late, room, "Felice Bauer", media=True)
    felice = await late.evaluate("() => window.demo.meeting.localParticipant.id")
    await until_true(late, f"async () => (await ({INBOUND_VIDEO})({json.dumps(kafka)})) > 5", 5)
    await late.wait_for_function(f"() => ({RENDERED})({json.dumps(kafka)})", timeout=5_000)
    await until_true(late, f"async () => (await ({INBOUND_AUDIO})()) > 10", 5)
    await until_true(first, f"async () => (await ({INBOUND_VIDEO})({json.dumps(felice)})) > 5", 5)
    await until_true(first, f"async () => (await ({INBOUND_AUDIO})()) > 10", 5)


# ---------------------------------------------------------------------------
# Issue 20's matrix: publisher Chromium or Python, subscriber Chromium or Python,
# subscriber joining before the publishers or well after them

LATE = 10.0  # seconds between the publishers joining and the late subscribers
WITHIN = 5.0  # seconds a subscriber may take to get every publisher's media

OUTBOUND_PACKETS = """
async () => {
  let packets = 0;
  (await window.demo.meeting.peerConnection?.getStats())?.forEach((report) => {
    if (report.type === "outbound-rtp") packets += report.packetsSent;
  });
  return packets;
}
"""


async def page_gets(page: Any, publisher: str, deadline: float) -> None:
    """The page decodes and renders `publisher`'s video and receives its audio by
    `deadline` (the event loop's clock)."""
    who = json.dumps(publisher)

    def left() -> float:
        return max(0.1, deadline - asyncio.get_running_loop().time())

    await until_true(page, f"async () => (await ({INBOUND_VIDEO})({who})) > 0", left())
    await page.wait_for_function(f"() => ({RENDERED})({who})", timeout=left() * 1000)
    await until_true(page, f"async () => (await ({INBOUND_AUDIO_OF})({who})) > 0", left())


async def python_gets(meeting: Meeting, publisher: str, deadline: float) -> None:
    """The Python client decodes a video frame and an audio frame of `publisher` by
    `deadline` (the event loop's clock)."""
    loop = asyncio.get_running_loop()
    with anyio.fail_after(max(0.1, deadline - loop.time())):
        while publisher not in meeting.participants:
            await anyio.sleep(0.05)
        participant = meeting.participants[publisher]
        video = await stream_of(participant, "video")
        frame = await video.track.recv()
        assert frame.width > 0 and frame.height > 0
        audio = await stream_of(participant, "audio")
        assert (await audio.track.recv()).sample_rate == 48000


@pytest.mark.parametrize("subscribers", ["before", "after"])
async def test_every_subscriber_gets_every_publishers_media_whoever_joins_first(
    server: ServeProcess, pages: Pages, clients: Clients, subscribers: str
) -> None:
    """Publishers: a page and a Python client, camera and microphone on. Subscribers:
    a page and a Python client, joining before the publishers (receiving only) or 10 s
    after them (publishing too, so the server offers their streams to the publishers as
    well). Every subscriber decodes every publisher's video and gets its audio within
    5 s of the later of its own joining and the publisher's; a page also renders it."""
    token = await dev_token(server)
    room = await create_room(server, token)
    loop = asyncio.get_running_loop()

    async def join_subscribers(media: bool) -> tuple[Any, Meeting]:
        page = await pages.new(f"{server.url}/?meetingId={room}")
        await join_from_demo(page, room, "Felice Bauer", media=media)
        python = clients.new(
            server,
            token,
            room,
            name="Max Brod",
            participant_id="max",
            mic_enabled=media,
            webcam_enabled=media,
        )
        await python.join()
        return page, python

    if subscribers == "before":
        page_sub, python_sub = await join_subscribers(media=False)
    page_pub = await pages.new(f"{server.url}/?meetingId={room}")
    await join_from_demo(page_pub, room, "Franz Kafka", media=True)
    kafka = await page_pub.evaluate("() => window.demo.meeting.localParticipant.id")
    # the page sends before the server first offers it a stream (Milena's): the offer
    # that renumbered payload types did harm only once the page's media was flowing
    await until_true(page_pub, f"async () => (await ({OUTBOUND_PACKETS})()) > 0")
    python_pub = clients.new(
        server,
        token,
        room,
        name="Milena Jesenská",
        participant_id="milena",
        mic_enabled=True,
        webcam_enabled=True,
    )
    await python_pub.join()
    if subscribers == "after":
        await anyio.sleep(LATE)
        page_sub, python_sub = await join_subscribers(media=True)
    deadline = loop.time() + WITHIN
    for publisher in (kafka, "milena"):
        await page_gets(page_sub, publisher, deadline)
        await python_gets(python_sub, publisher, deadline)
    if subscribers == "after":  # the publishers get the late subscribers' media too
        felice = await page_sub.evaluate("() => window.demo.meeting.localParticipant.id")
        for subscriber in (felice, "max"):
            await page_gets(page_pub, subscriber, deadline + WITHIN)
            await python_gets(python_pub, subscriber, deadline + WITHIN)


async def test_a_publishing_page_that_turns_its_camera_off_and_on_reaches_everyone_again(
    server: ServeProcess, pages: Pages, clients: Clients
) -> None:
    """A page publishes; a page and a Python client receive. The publisher turns its
    camera off and on again: both subscribers get the new video within 5 s (decoded,
    and rendered on the page). Then the receiving page's signaling socket drops and
    resumes while the camera goes off and on once more: it gets the video again too."""
    token = await dev_token(server)
    room = await create_room(server, token)
    publisher = await pages.new(f"{server.url}/?meetingId={room}")
    await join_from_demo(publisher, room, "Franz Kafka", media=True)
    kafka = await publisher.evaluate("() => window.demo.meeting.localParticipant.id")
    subscriber = await pages.new(f"{server.url}/?meetingId={room}")
    await join_from_demo(subscriber, room, "Felice Bauer", media=False)
    python = clients.new(server, token, room, name="Max Brod", participant_id="max")
    await python.join()
    loop = asyncio.get_running_loop()
    await page_gets(subscriber, kafka, loop.time() + WITHIN)
    await python_gets(python, kafka, loop.time() + WITHIN)

    async def off_and_on(resume: bool) -> None:
        franz = python.participants[kafka]
        old = await stream_of(franz, "video")
        await publisher.click("#toggle-webcam")
        with anyio.fail_after(10):
            while not old.ended:
                await anyio.sleep(0.05)
        await until_true(
            subscriber, f"async () => (await ({INBOUND_VIDEO})({json.dumps(kafka)})) === null"
        )
        if resume:
            await subscriber.evaluate("window.demo.meeting._socket.close()")
        await publisher.click("#toggle-webcam")
        deadline = loop.time() + WITHIN
        new = await stream_of(franz, "video")
        assert new is not old
        with anyio.fail_after(max(0.1, deadline - loop.time())):
            frame = await new.track.recv()
        assert frame.width > 0
        who = json.dumps(kafka)
        await until_true(
            subscriber,
            f"async () => (await ({INBOUND_VIDEO})({who})) !== null",
            deadline - loop.time(),
        )
        first = await subscriber.evaluate(INBOUND_VIDEO, kafka)
        await until_true(
            subscriber,
            f"async () => (await ({INBOUND_VIDEO})({who})) > {first + 5}",
            max(0.1, deadline - loop.time()),
        )
        await subscriber.wait_for_function(f"() => ({RENDERED})({who})", timeout=5000)

    await off_and_on(resume=False)
    await off_and_on(resume=True)
    await until_true(subscriber, "async () => window.demo.meeting.state === 'CONNECTED'")
    assert pages.errors() == [], pages.console


# ---------------------------------------------------------------------------
# One URL for a cluster (issue 20): the page comes in through one node of a PostgreSQL
# cluster and is sent on to its meeting's media node; when that node dies, it resumes
# through the node it came in by, which carries the meeting from then on.


@pytest.fixture
def two_nodes(tmp_path: Path) -> Iterator[list[ServeProcess]]:
    """Nodes A and B of a cluster on a new schema of this machine's PostgreSQL (the
    `postgres` database; the schema is dropped at the end)."""
    psycopg = pytest.importorskip("psycopg")
    server = os.environ.get("MEETCORE_TEST_POSTGRES", "postgresql://postgres@127.0.0.1:5432")
    schema = f"browser_{os.getpid()}_{id(tmp_path):x}"
    store = f"{server}/postgres?schema={schema}"
    started: list[ServeProcess] = []
    try:
        for _ in range(2):
            node = ServeProcess(
                tmp_path, store=store, lease_ttl=6.0, env={"MEETCORE_ICE_ADDRESSES": LOOPBACK}
            )
            started.append(node.wait_ready())
        yield started
    finally:
        for node in started:
            if node.process.poll() is None:
                node.terminate()
            tracebacks = unexpected_tracebacks(node.output)
            assert not tracebacks, "\n".join(t[:4000] for t in tracebacks)
        with psycopg.connect(f"{server}/postgres", autocommit=True) as admin:
            admin.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')


async def test_a_page_in_through_another_node_gets_media_and_follows_a_failover(
    two_nodes: list[ServeProcess], pages: Pages, clients: Clients
) -> None:
    from meetcore_postgres import media_node

    a, b = two_nodes
    token = await dev_token(b)
    room = await create_room(b, token)
    while media_node(room, [a.url, b.url]) != a.url:  # a room whose media A carries
        room = await create_room(b, token)
    max_brod = clients.new(a, token, room, participant_id="max", webcam_enabled=True)
    await max_brod.join()
    page = await pages.new(f"{b.url}/?meetingId={room}")  # the page and its SDK from B
    await join_from_demo(page, room, "Franz Kafka", media=True)
    assert await page.evaluate("() => window.demo.meeting.url") == a.ws_url
    kafka = await page.evaluate("() => window.demo.meeting.localParticipant.id")
    await until_true(page, f"async () => (await ({INBOUND_VIDEO})('max')) > 5")
    video = await stream_of(max_brod.participants[kafka], "video")
    with anyio.fail_after(10):
        await video.track.recv()

    # A dies: the page resumes through B, which carries the meeting from then on; Max,
    # who came in through A, joins again through B
    pages.expected_errors.append("WebSocket connection to")  # Chromium's word on A's death
    a.process.kill()
    assert a.process.wait(10) != 0
    # a page joining through B at once is sent to A first (B counts A alive for a third
    # of the lease): the SDK asks B again until B carries the meeting, and gets in there
    late = await pages.new(f"{b.url}/?meetingId={room}")
    await join_from_demo(late, room, "Late Comer", media=False)
    assert await late.evaluate("() => window.demo.meeting.url") == b.ws_url
    await until_true(
        page,
        f"() => window.demo.meeting.url === {json.dumps(b.ws_url)}"
        " && window.demo.meeting.state === 'CONNECTED'",
        20,
    )
    max_back = clients.new(b, token, room, participant_id="max", webcam_enabled=True)
    await max_back.join()
    await until_true(page, f"async () => (await ({INBOUND_VIDEO})('max')) > 5", 15)
    await page.wait_for_function(f"() => ({RENDERED})('max')", timeout=10_000)
    video = await stream_of(max_back.participants[kafka], "video")
    with anyio.fail_after(10):
        await video.track.recv()
    assert await page.locator("#log >> text=meeting-left").count() == 0  # it resumed
