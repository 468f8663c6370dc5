"""A third-party plugin, installed for real, is found through its entry point.

`tests/plugins/example_plugin` is the distribution meetcore-example-plugin. Once per
session it is built into a wheel with `uv build` (hatchling, offline from uv's cache when
it can be) and installed with `uv pip install --target` into a temporary directory, never
into the workspace. A test puts that directory on sys.path (or PYTHONPATH, for a
process), which is all "installed" means to `importlib.metadata`, and so to pluggy's
`load_setuptools_entrypoints`: no test hands the plugin object to meetcore.
"""

from __future__ import annotations

import importlib.metadata
import json
import os
import shutil
import subprocess
import sys
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

import meetcore
from meetcore import Engine, ErrorCode, EventStore, Rejected
from meetcore._plugins import AUTOLOAD_ENV
from meetcore.commands import InitMeeting, Join
from meetcore.testing import EventStoreContract

EXAMPLE = Path(__file__).resolve().parent / "example_plugin"
DIST = "meetcore-example-plugin"
PACKAGE = "meetcore_example_plugin"
HOOKS = [
    "meetcore_check_command",
    "meetcore_open_store",
    "meetcore_records_appended",
    "meetcore_register_commands",
]


# -- installing the plugin -------------------------------------------------------------


def _uv(*args: str) -> None:
    """Run uv offline (its cache has hatchling once the workspace is synced), else online."""
    uv = os.environ.get("UV") or shutil.which("uv")
    if uv is None:
        pytest.fail("uv is needed to build and install meetcore-example-plugin")
    for offline in (["--offline"], []):
        done = subprocess.run(
            [uv, *args, *offline], capture_output=True, text=True, timeout=300, check=False
        )
        if done.returncode == 0:
            return
    pytest.fail(f"uv {' '.join(args)} failed:\n{done.stderr}")


@pytest.fixture(scope="session")
def site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A directory where meetcore-example-plugin is installed, from a wheel built here."""
    root = tmp_path_factory.mktemp("example-plugin")
    wheels, site = root / "wheels", root / "site"
    _uv("build", "--wheel", "--python", sys.executable, "--out-dir", str(wheels), str(EXAMPLE))
    (wheel,) = wheels.glob("meetcore_example_plugin-*.whl")
    _uv(
        "pip", "install", "--no-deps", "--python", sys.executable, "--target", str(site), str(wheel)
    )
    return site


@pytest.fixture
def installed(site: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """The plugin installed for this test (autoload on); forgotten, module and all, after it."""
    monkeypatch.delenv(AUTOLOAD_ENV, raising=False)
    monkeypatch.syspath_prepend(str(site))
    yield site
    for name in [m for m in sys.modules if m == PACKAGE or m.startswith(f"{PACKAGE}.")]:
        del sys.modules[name]


def _example(pm: Any) -> ModuleType:
    plugin = pm.get_plugin("example")
    assert isinstance(plugin, ModuleType), "the example plugin is not loaded"
    return plugin


def join(meeting_id: str, pid: str) -> Join:
    return Join(
        meeting_id=meeting_id,
        participant_id=pid,
        connection_id=f"conn-{pid}",
        session_id="s-1",
        name=pid.title(),
    )


# -- the distribution ------------------------------------------------------------------


def test_the_wheel_declares_the_entry_point(site: Path) -> None:
    (dist,) = importlib.metadata.distributions(path=[str(site)])
    assert dist.metadata["Name"] == DIST
    assert dist.version == "0.1.0"
    points = dist.entry_points.select(group="meetcore")
    assert [(p.name, p.value) for p in points] == [("example", PACKAGE)]
    assert (site / PACKAGE / "__init__.py").is_file()


def test_the_plugin_is_not_installed_in_the_environment() -> None:
    """Otherwise the tests below would prove nothing about the temporary install."""
    with pytest.raises(importlib.metadata.PackageNotFoundError):
        importlib.metadata.distribution(DIST)
    assert PACKAGE not in sys.modules


# -- loading it --------------------------------------------------------------------------


def test_autoload_loads_it_from_its_entry_point(installed: Path) -> None:
    pm = meetcore.plugin_manager()
    plugin = _example(pm)
    assert plugin.__name__ == PACKAGE
    assert Path(plugin.__file__ or "").is_relative_to(installed)
    dists = {dist.project_name: (loaded, dist) for loaded, dist in pm.list_plugin_distinfo()}
    assert DIST in dists, f"plugins from distributions: {sorted(dists)}"
    loaded, dist = dists[DIST]
    assert loaded is plugin
    assert dist.version == "0.1.0"
    assert sorted(caller.name for caller in pm.get_hookcallers(plugin) or ()) == HOOKS
    assert pm.get_plugin("meetcore.memory") is not None  # the built-ins are still there


@pytest.mark.anyio
async def test_the_engine_uses_its_store_policy_and_observer(installed: Path) -> None:
    async with Engine.open("example://x", sweep_leases=False) as engine:
        plugin = _example(engine.plugins)
        assert type(engine.store) is plugin.ExampleStore
        assert engine.store.url == "example://x"
        with pytest.raises(Rejected) as refused:
            await engine.execute(InitMeeting(meeting_id="forbidden-1"))
        assert refused.value.code == ErrorCode.INVALID_MEETING_ID
        assert "meetcore-example-plugin" in refused.value.message
        assert await engine.store.read("forbidden-1") == []
        await engine.execute(InitMeeting(meeting_id="room-1"))
        await engine.execute(join("room-1", "ada"))
        await engine.flush()
        assert plugin.SEEN == [("room-1", 1), ("room-1", 2), ("room-1", 3)]


@pytest.mark.anyio
@pytest.mark.parametrize("off_by", ["environment", "argument"])
async def test_without_autoload_it_is_not_loaded(
    installed: Path, monkeypatch: pytest.MonkeyPatch, off_by: str
) -> None:
    options: dict[str, Any] = {}
    if off_by == "environment":
        monkeypatch.setenv(AUTOLOAD_ENV, "1")
    else:
        options["autoload"] = False
    pm = meetcore.plugin_manager(**options)
    assert pm.get_plugin("example") is None
    assert [dist.project_name for _, dist in pm.list_plugin_distinfo()] == []
    with pytest.raises(meetcore.StoreError, match="no plugin opens example:// store URLs"):
        async with Engine.open("example://x", **options):
            pass
    async with Engine.open(**options) as engine:
        await engine.execute(InitMeeting(meeting_id="forbidden-1"))  # no policy refuses it
    assert PACKAGE not in sys.modules, "the plugin must not even be imported"


# -- its store passes the contract every store keeps -------------------------------------


class TestExampleStore(EventStoreContract):
    @pytest.fixture
    async def store(self, installed: Path) -> AsyncIterator[EventStore]:
        pm = meetcore.plugin_manager()
        store = pm.hook.meetcore_open_store(url="example://contract", read_only=False)
        assert type(store) is _example(pm).ExampleStore
        yield store
        await store.close()


# -- the command line, as a process ------------------------------------------------------


def _meetcore(
    site: Path, cwd: Path, *args: str, autoload: bool = True
) -> subprocess.CompletedProcess[str]:
    script = Path(sys.executable).parent / "meetcore"
    command = [str(script)] if script.exists() else [sys.executable, "-m", "meetcore.cli"]
    env = {k: v for k, v in os.environ.items() if k != AUTOLOAD_ENV}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(site), env.get("PYTHONPATH")]))
    if not autoload:
        env[AUTOLOAD_ENV] = "1"
    return subprocess.run(
        [*command, *args], capture_output=True, text=True, cwd=cwd, env=env, timeout=60
    )


def test_meetcore_plugins_lists_it_and_its_hooks(site: Path, tmp_path: Path) -> None:
    done = _meetcore(site, tmp_path, "plugins", "--json")
    assert done.returncode == 0, done.stderr
    rows = {row["name"]: row for row in json.loads(done.stdout)}
    assert rows["example"] == {
        "name": "example",
        "builtin": False,
        "distribution": {"name": DIST, "version": "0.1.0"},
        "hooks": HOOKS,
    }
    done = _meetcore(site, tmp_path, "plugins")
    assert done.returncode == 0, done.stderr
    (line,) = [line for line in done.stdout.splitlines() if line.startswith("example ")]
    assert line.split() == [
        "example",
        DIST,
        "0.1.0",
        *(f"{hook}," for hook in HOOKS[:-1]),
        HOOKS[-1],
    ]


def test_meetcore_runs_its_command_and_opens_its_store(site: Path, tmp_path: Path) -> None:
    done = _meetcore(site, tmp_path, "hello", "Franz")
    assert (done.returncode, done.stdout, done.stderr) == (
        0,
        "hello, Franz, from meetcore-example-plugin\n",
        "",
    )
    assert "hello" in _meetcore(site, tmp_path, "--help").stdout
    # The store opens (a missing meeting is exit 1; a URL no plugin opens would be exit 2).
    done = _meetcore(site, tmp_path, "inspect", "--store", "example://x", "--meeting", "m")
    assert (done.returncode, done.stderr) == (
        1,
        "meetcore: error: meeting 'm' is not in example://x\n",
    )


def test_meetcore_without_autoload_has_none_of_it(site: Path, tmp_path: Path) -> None:
    done = _meetcore(site, tmp_path, "plugins", "--json", autoload=False)
    assert done.returncode == 0, done.stderr
    assert [row["name"] for row in json.loads(done.stdout)] == ["meetcore.memory"]
    done = _meetcore(site, tmp_path, "hello", autoload=False)
    assert done.returncode == 2
    assert "No such command 'hello'" in done.stderr
    done = _meetcore(
        site, tmp_path, "inspect", "--store", "example://x", "--meeting", "m", autoload=False
    )
    assert (done.returncode, done.stderr) == (
        2,
        "meetcore: error: no plugin opens example:// store URLs (is its plugin installed?)\n",
    )
