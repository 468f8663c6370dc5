"""`meetcore serve` builds its plugin set from the installed plugins' hooks and from
`--plugin module:object`: a third party's plugin runs in the server's engine; a bad
`--plugin` is a usage error (exit 2, one line)."""

from __future__ import annotations

import sys
from pathlib import Path

import httpx
import pytest
from support import eventually

from meetcore_server.testing import ServeProcess, serve_refuses

pytestmark = pytest.mark.anyio

PLUGIN = '''
import json, pathlib
from meetcore import hookimpl

class Recorder:
    """Writes the type of each record the server appends, one per line."""

    def __init__(self, path):
        self.path = pathlib.Path(path)

    @hookimpl
    def meetcore_records_appended(self, records):
        with self.path.open("a") as out:
            for record in records:
                out.write(type(record.event).__name__ + "\\n")

recorder = Recorder("seen.txt")
'''


ODD = """
from meetcore import hookimpl

class Recorder:
    @hookimpl
    def meetcore_records_appended(self, records):
        pass

class ExtendsServe:
    @hookimpl
    def meetcore_serve_plugins(self, options):
        return []

class Touchy:
    def __getattr__(self, name):
        raise RuntimeError("no")
    def __dir__(self):
        raise RuntimeError("no")

answer = 42
nothing = None
extends_serve = ExtendsServe()
touchy = Touchy()
"""


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


async def test_a_plugin_named_on_the_command_line_runs_in_the_server(tmp_path: Path) -> None:
    """Through the `meetcore` console script, which does not put the current directory
    on the path as `python -m` does: `--plugin` finds a module there all the same."""
    (tmp_path / "my_recorder.py").write_text(PLUGIN)
    script = str(Path(sys.executable).parent / "meetcore")
    command = [script, "serve", "--port", "0", "--dev", "--store", "memory://"]
    command += ["--plugin", "my_recorder:recorder"]
    with ServeProcess(tmp_path, command=command) as server:
        async with httpx.AsyncClient(base_url=server.url, timeout=10) as http:
            token = (await http.get("/get-token")).json()["token"]
            created = await http.post("/v2/rooms", headers={"Authorization": token})
            assert created.status_code == 200, created.text
        seen = tmp_path / "seen.txt"
        await eventually(lambda: seen.exists() and "MeetingInitialized" in seen.read_text())


@pytest.mark.parametrize(
    ("spec", "says"),
    [
        ("no_such_module_here", "cannot import no_such_module_here"),
        ("json:no_such_object", "json has no no_such_object"),
        ("", "not module:object"),
        (":recorder", "not module:object"),
        ("a b:c", "not module:object"),
        ("x" * 10_000, "not module:object"),
        ("broken_plugin", "cannot import broken_plugin: RuntimeError: boom"),
        ("exiting_plugin", "cannot import exiting_plugin: SystemExit: 0"),
        ("odd:Recorder", "is a class: name an instance of it"),
        ("odd:answer", "implements no meetcore hook"),
        ("odd:nothing", "implements no meetcore hook"),
        ("json", "implements no meetcore hook"),
        ("odd:extends_serve", "implements meetcore_serve_plugins: only installed plugins"),
        ("odd:touchy", "cannot read it: RuntimeError: no"),
    ],
)
def test_a_bad_plugin_is_refused_in_one_line(tmp_path: Path, spec: str, says: str) -> None:
    (tmp_path / "broken_plugin.py").write_text("raise RuntimeError('boom')\n")
    (tmp_path / "exiting_plugin.py").write_text("raise SystemExit(0)\n")
    (tmp_path / "odd.py").write_text(ODD)
    line = serve_refuses(tmp_path, "--port", "0", "--store", "memory://", "--plugin", spec)
    assert line.startswith("meetcore: error: --plugin"), line
    assert says in line, line
    assert len(line) < 500


def test_an_object_that_is_no_plugin_is_refused(tmp_path: Path) -> None:
    """pluggy refuses an implementation of an unknown hook: the engine cannot open."""
    (tmp_path / "odd_plugin.py").write_text(
        "from meetcore import hookimpl\n"
        "class Odd:\n"
        "    @hookimpl\n"
        "    def meetcore_no_such_hook(self):\n"
        "        pass\n"
        "odd = Odd()\n"
    )
    line = serve_refuses(
        tmp_path, "--port", "0", "--store", "memory://", "--plugin", "odd_plugin:odd"
    )
    assert line.startswith("meetcore: error: a plugin cannot be used: unknown hook"), line
    assert "meetcore_no_such_hook" in line, line
