"""docs/quickstart.md runs as written, against the README's server.

The test does what the page says, in a temporary directory: it starts the page's
`uv run meetcore serve` (a real process), runs the page's bash blocks with bash and the
real `uv` and `curl`, saves the page's Python blocks, in order, as the `quickstart.py`
that one of those bash blocks runs, and compares what each command prints with the
output block the page shows after it.

How the page marks its blocks, in HTML comments that readers do not see:

- a ```bash block is run (each in its own `bash` with `set -euo pipefail`; the variables
  it exports stay for the next ones, as in the reader's terminal); after
  `<!-- server -->` it starts the server instead, and the server before it is stopped
  with SIGINT, as Ctrl-C stops it;
- every ```python block is a part of quickstart.py;
- a ```text or ```json block after a run block is what that block prints: compared line
  by line, or as JSON, once tokens, ids and times are made placeholders;
- `<!-- illustrative -->` marks a block that is not run (VideoSDK's JavaScript...).

Any other block fails the test, as does Python that no bash block runs.

The page is taken literally but for its port: 8700 becomes a free port, given to the
server as `--port`. The environment adds MEETCORE_ICE_ADDRESSES=127.0.0.1 (media stays on
loopback, docs/media.md), UV_PROJECT (uv finds the workspace from the temporary directory
as it does from the checkout) and UV_NO_SYNC (uv leaves the shared environment as it is).
"""

from __future__ import annotations

import functools
import json
import os
import re
import shlex
import shutil
import signal
import subprocess
from dataclasses import dataclass
from pathlib import Path

import pytest

from meetcore_server.testing import ServeProcess, clean_env, free_port

ROOT = Path(__file__).resolve().parents[2]
PAGE = ROOT / "docs" / "quickstart.md"
SCRIPT = "quickstart.py"  # the file the page's Python blocks go to
ADDRESS = "127.0.0.1:8700"  # the page's server, on a free port here
ENV = {
    "MEETCORE_ICE_ADDRESSES": "127.0.0.1",
    "UV_PROJECT": str(ROOT),
    "UV_NO_SYNC": "1",
}
STEP_TIMEOUT = 120.0  # seconds for one bash block, the Python script included
START_TIMEOUT = 60.0  # seconds for the server to serve

FENCE = re.compile(
    r"^(?:<!-- (?P<mark>[^\n]*?) -->\n)?```(?P<lang>\S*)[^\n]*\n(?P<body>.*?)^```[ \t]*$",
    re.M | re.S,
)
OUTPUTS = ("text", "json")

#: What differs from run to run: (name, pattern, numbered). A numbered value becomes
#: `<name N>`, N counting the values in order of their first appearance on the page, so
#: that the same id must come back where the page shows it come back.
VARIABLE = (
    ("token", re.compile(r"eyJ[\w-]+\.eyJ[\w-]+\.[\w-]+"), False),
    ("api key", re.compile(r"\b[0-9a-f]{8}-(?:[0-9a-f]{4}-){3}[0-9a-f]{12}\b"), True),
    ("room", re.compile(r"(?<![\w-])[a-z]{3}-[a-z]{3}-[a-z]{3}(?![\w-])"), True),
    ("time", re.compile(r"\b\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z"), False),
)


@dataclass(frozen=True)
class Block:
    line: int  # of the opening fence
    lang: str
    mark: str | None
    body: str


@dataclass
class Step:
    """A bash block the test runs (or a server it starts), and the output shown after it."""

    block: Block
    output: Block | None = None

    @property
    def server(self) -> bool:
        return self.block.mark == "server"


def blocks(text: str) -> list[Block]:
    return [
        Block(text[: found.start("lang")].count("\n") + 1, *found.group("lang", "mark", "body"))
        for found in FENCE.finditer(text)
    ]


def plan(text: str) -> tuple[list[Step], list[Block], list[str]]:
    """The steps to run, the Python script's blocks, and what is wrong with the page."""
    steps: list[Step] = []
    script: list[Block] = []
    problems: list[str] = []
    last: Step | None = None  # the run step an output block may follow
    for block in blocks(text):
        if block.mark == "illustrative":
            continue
        if block.lang == "bash" and block.mark in (None, "server"):
            last = Step(block)
            steps.append(last)
            if last.server and len(block.body.splitlines()) != 1:
                problems.append(f"line {block.line}: a server block is one command")
        elif block.lang == "python" and block.mark is None:
            script.append(block)
            last = None
        elif block.lang in OUTPUTS and not block.mark and last and not last.output:
            last.output = block
        else:
            marked = f" (marked {block.mark!r})" if block.mark else ""
            problems.append(
                f"line {block.line}: a ```{block.lang} block{marked} that is neither run nor "
                "marked <!-- illustrative -->"
            )
    if script and not any(SCRIPT in step.block.body for step in steps if not step.server):
        problems.append(f"the Python blocks go to {SCRIPT}, which no bash block runs")
    return steps, script, problems


class Normalizer:
    """Replaces tokens, ids and times with placeholders (see VARIABLE)."""

    def __init__(self) -> None:
        self.seen: dict[str, dict[str, int]] = {}

    def _number(self, name: str, found: re.Match[str]) -> str:
        seen = self.seen.setdefault(name, {})
        return f"<{name} {seen.setdefault(found.group(), len(seen) + 1)}>"

    def __call__(self, text: str) -> str:
        for name, pattern, numbered in VARIABLE:
            replace = functools.partial(self._number, name) if numbered else f"<{name}>"
            text = pattern.sub(replace, text)
        return text


def test_every_block_is_run_or_illustrative() -> None:
    steps, script, problems = plan(PAGE.read_text())
    assert problems == []
    assert steps[0].server and script


def test_a_block_neither_run_nor_illustrative_fails() -> None:
    page = "```sh\nls\n```\n\n```python\nprint(1)\n```\n\n```js\nx()\n```\n"
    assert plan(page)[2] == [
        "line 1: a ```sh block that is neither run nor marked <!-- illustrative -->",
        "line 9: a ```js block that is neither run nor marked <!-- illustrative -->",
        f"the Python blocks go to {SCRIPT}, which no bash block runs",
    ]
    fixed = page.replace("```sh\nls", f"```bash\nuv run python {SCRIPT}")
    assert plan(fixed.replace("```js", "<!-- illustrative -->\n```js"))[2] == []


def test_the_server_is_the_readmes() -> None:
    steps, _, _ = plan(PAGE.read_text())
    command = steps[0].block.body.strip()
    assert f"\n    {command}\n" in (ROOT / "README.md").read_text()


def run_bash(block: Block, port: int, env: dict[str, str], cwd: Path, saved: Path) -> str:
    """Run `block` in `cwd`; what it printed on stdout. `env` becomes what it exported."""
    script = f"{on_port(block.body, port)}\nenv -0 > {shlex.quote(str(saved))}\n"
    process = subprocess.Popen(
        ["bash", "-euo", "pipefail", "-c", script],
        cwd=cwd,
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,  # so that a block that hangs is killed with its children
    )
    try:
        out, err = process.communicate(timeout=STEP_TIMEOUT)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        out, err = process.communicate()
        pytest.fail(f"{where(block)} ran over {STEP_TIMEOUT} s:\n{out}\n{err}")
    assert process.returncode == 0, f"{where(block)} failed:\n{out}\n{err}"
    assert "Traceback" not in err, f"{where(block)}:\n{err}"
    pairs = (item.partition("=") for item in saved.read_text().split("\0") if item)
    env.clear()
    env.update({name: value for name, _, value in pairs})
    return out


def start(block: Block, port: int, cwd: Path) -> tuple[ServeProcess, str]:
    """The server of `block`, serving on `port`; what it printed up to its `serving on`."""
    server = ServeProcess(cwd, command=[*shlex.split(block.body), "--port", str(port)], env=ENV)
    server.wait_ready(START_TIMEOUT)
    serving = next(n for n, line in enumerate(server.lines) if "serving on" in line)
    return server, "".join(server.lines[: serving + 1])


def stop(server: ServeProcess) -> None:
    """Ctrl-C: SIGINT; the server stops cleanly."""
    code = server.terminate(signal.SIGINT)
    assert code == 0, server.output
    assert "Traceback" not in server.output, server.output


def on_port(text: str, port: int) -> str:
    return text.replace(ADDRESS, f"127.0.0.1:{port}")


def as_json(printed: str, block: Block) -> object:
    try:
        return json.loads(printed)
    except json.JSONDecodeError:
        pytest.fail(f"{where(block)} printed no JSON:\n{printed}")


def where(block: Block) -> str:
    return f"docs/quickstart.md:{block.line} ({block.body.strip().splitlines()[0]!r})"


def test_the_page_runs_as_written(tmp_path: Path) -> None:
    for tool in ("bash", "uv", "curl"):
        assert shutil.which(tool), f"the page needs {tool}, which is not on PATH"
    steps, script, problems = plan(PAGE.read_text())
    assert problems == []
    port = free_port()
    home = tmp_path / "home"  # the reader's directory: the server's files, quickstart.py
    home.mkdir()
    (home / SCRIPT).write_text("\n\n".join(on_port(block.body, port) for block in script))
    env = clean_env(ENV)
    expected, printed = Normalizer(), Normalizer()
    server: ServeProcess | None = None
    try:
        for step in steps:
            if step.server:
                if server is not None:
                    stop(server)
                server, out = start(step.block, port, home)
            else:
                out = run_bash(step.block, port, env, home, tmp_path / "exported")
                if server is not None:
                    server.check_alive()
            if step.output is not None:
                want, got = expected(on_port(step.output.body, port)), printed(out)
                if step.output.lang == "json":
                    assert as_json(got, step.block) == json.loads(want), where(step.block)
                else:
                    assert got.splitlines() == want.splitlines(), where(step.block)
        assert server is not None
        stop(server)
    finally:
        if server is not None:
            server.kill()
