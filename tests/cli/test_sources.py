"""SOURCE, the log that `meetcore replay`, `export` and `inspect` read: given the same
way to all three (an argument, or `--store SOURCE`), an SQLite store recognized by its
file, stores opened read-only (nothing created, nothing changed), and malformed,
hostile and oversized SOURCE arguments answered with one clear line."""

from __future__ import annotations

import re
import sqlite3
from collections.abc import Callable
from pathlib import Path

import pluggy
import pytest
from click.testing import CliRunner, Result

import meetcore
import meetcore_sqlite
from meetcore.cli import build_cli

ROOT = Path(__file__).resolve().parents[2]
MEETING = ROOT / "docs" / "examples" / "meeting.jsonl"
MID = "abc-def-ghi"
#: Each command, and what it needs besides SOURCE.
COMMANDS = {"replay": [], "inspect": ["--meeting", MID], "export": []}
_SOURCES = "a JSON Lines file, - for stdin, or a store such as sqlite:///meetcore.db"


def manager(*plugins: object) -> pluggy.PluginManager:
    return meetcore.plugin_manager(plugins, autoload=False)


def run(
    *args: str | Path, input: bytes | None = None, pm: pluggy.PluginManager | None = None
) -> Result:
    cli = build_cli(pm if pm is not None else manager(meetcore_sqlite))
    return CliRunner().invoke(cli, [str(a) for a in args], input=input, prog_name="meetcore")


def failed(result: Result, code: int) -> str:
    """Check the command failed with `code` and one line on stderr; returns the line."""
    assert "Traceback" not in result.output
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    assert result.exit_code == code, result.output
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("meetcore: error: ")
    return lines[0].removeprefix("meetcore: error: ")


def files(directory: Path) -> dict[str, tuple[bytes, int]]:
    """Every file in `directory`: its bytes and its mtime."""
    return {f.name: (f.read_bytes(), f.stat().st_mtime_ns) for f in sorted(directory.iterdir())}


@pytest.fixture
def store(tmp_path: Path, make_store: Callable[[Path], Path]) -> Path:
    return make_store(tmp_path / "meetcore.db")


# ---------------------------------------------------------------------------
# One way to give SOURCE


def test_every_command_reads_every_kind_of_source_either_way(store: Path) -> None:
    sources = [MEETING, store, f"sqlite:///{store}"]
    for command, extra in COMMANDS.items():
        expected = run(command, MEETING, *extra)
        assert expected.exit_code == 0, expected.output
        if command == "export":
            assert expected.stdout_bytes == MEETING.read_bytes()
        for source in sources:
            for args in ([source], ["--store", source]):
                result = run(command, *args, *extra)
                assert (result.exit_code, result.stdout) == (0, expected.stdout), (args, result)
        from_stdin = run(command, "-", *extra, input=MEETING.read_bytes())
        assert (from_stdin.exit_code, from_stdin.stdout) == (0, expected.stdout)


def test_source_and_options_in_any_order(store: Path) -> None:
    result = run("inspect", "--meeting", MID, store, "--json")
    assert result.exit_code == 0, result.output
    assert result.stdout == run("inspect", f"sqlite:///{store}", "--meeting", MID, "--json").stdout
    out = store.with_name("out.jsonl")
    result = run("export", "-o", out, "--meeting", MID, "--store", store)
    assert result.exit_code == 0, result.output
    assert out.read_bytes() == MEETING.read_bytes()


def test_an_odd_file_name_is_an_odd_file_name(
    tmp_path: Path, make_store: Callable[[Path], Path]
) -> None:
    store = make_store(tmp_path / "odd ?name#%20.db")  # "?" "#" and "%" are URL syntax
    result = run("replay", store, "--verify")
    assert result.stdout == "verified 23 records of 1 meeting: OK\n", result.output
    assert sorted(p.name for p in tmp_path.iterdir()) == ["odd ?name#%20.db"]


@pytest.mark.parametrize("command", COMMANDS)
def test_source_twice_or_not_at_all_is_a_usage_error(command: str, store: Path) -> None:
    extra = COMMANDS[command]
    assert failed(run(command, MEETING, "--store", store, *extra), 2) == (
        f"SOURCE is given twice ({str(MEETING)!r} and --store {str(store)!r}): give one "
        f"(see 'meetcore {command} --help')"
    )
    assert failed(run(command, *extra), 2) == (
        f"Missing argument 'SOURCE': {_SOURCES} (see 'meetcore {command} --help')"
    )
    assert failed(run(command, "", *extra), 2) == (
        f"SOURCE is empty: name {_SOURCES} (see 'meetcore {command} --help')"
    )


def test_inspect_still_needs_a_meeting(store: Path) -> None:
    assert failed(run("inspect", store), 2).startswith("Missing option '--meeting'")


# ---------------------------------------------------------------------------
# SQLite files and read-only stores


def test_an_sqlite_file_of_another_application_says_so(tmp_path: Path) -> None:
    path = tmp_path / "invoices.db"
    with sqlite3.connect(path) as connection:
        connection.execute("CREATE TABLE invoices (id INTEGER PRIMARY KEY)")
    connection.close()
    before = files(tmp_path)
    for command, extra in COMMANDS.items():
        for source in (path, f"sqlite:///{path}"):
            assert failed(run(command, source, *extra), 2) == (
                f"{path}: an SQLite database of another application, not a meetcore store"
            )
    assert files(tmp_path) == before


def test_an_sqlite_store_without_its_plugin_names_the_url_form(store: Path) -> None:
    for command, extra in COMMANDS.items():
        assert failed(run(command, store, *extra, pm=manager()), 2) == (
            f"{store} is an SQLite database, and no plugin opens sqlite:// store URLs "
            "(is its plugin installed?)"
        )


@pytest.mark.parametrize("command", COMMANDS)
def test_a_missing_store_is_an_error_and_is_not_created(command: str, tmp_path: Path) -> None:
    missing = tmp_path / "missing.db"
    for args in ([f"sqlite:///{missing}"], ["--store", f"sqlite:///{missing}"]):
        assert failed(run(command, *args, *COMMANDS[command]), 2) == (
            f"no such store: {missing} does not exist"
        )
    assert list(tmp_path.iterdir()) == []


def test_reading_a_closed_store_changes_no_file(store: Path, tmp_path: Path) -> None:
    before = files(tmp_path)
    assert list(before) == ["meetcore.db"]
    out = tmp_path.parent / f"{tmp_path.name}-export.jsonl"
    for source in (store, f"sqlite:///{store}"):
        assert run("replay", source, "--verify", "--recheck").exit_code == 0
        assert run("replay", source, "--meeting", MID, "--until", 3).exit_code == 0
        assert run("inspect", source, "--meeting", MID, "--json").exit_code == 0
        assert run("export", source).exit_code == 0
        assert run("export", "--store", source, "--meeting", MID, "-o", out).exit_code == 0
        assert files(tmp_path) == before, "reading the store created or changed a file"
    out.unlink()


def test_export_never_overwrites_a_store(store: Path, tmp_path: Path) -> None:
    before = files(tmp_path)
    for source in (store, f"sqlite:///{store}", MEETING):
        assert failed(run("export", source, "-o", store), 2) == (
            f"{store} is an SQLite database: export does not overwrite it"
        )
    assert files(tmp_path) == before


def test_a_url_cannot_ask_for_writing(store: Path) -> None:
    assert "unknown option 'mode'" in failed(run("replay", f"sqlite:///{store}?mode=rwc"), 2)


# ---------------------------------------------------------------------------
# Malformed, hostile and oversized SOURCE arguments: one line, never a traceback


def _hostile(tmp_path: Path, make_store: Callable[[Path], Path]) -> dict[str, tuple[str, int, str]]:
    """name -> (SOURCE, exit code, the error line as a pattern)."""
    store = make_store(tmp_path / "whole.db")
    data = store.read_bytes()
    assert len(data) >= 4 * 4096
    truncated = tmp_path / "truncated.db"
    truncated.write_bytes(data[: len(data) // 2])
    header_only = tmp_path / "header.db"
    header_only.write_bytes(data[:60])
    empty = tmp_path / "empty.jsonl"
    empty.touch()
    long = str(tmp_path / ("x" * 10_240))
    cut = r"[^ ]{120}\.\.\.\([0-9,]+ characters\)\.\.\.x+"  # a word cut in the middle
    return {
        "directory": (str(tmp_path), 2, f"cannot read {re.escape(str(tmp_path))}: Is a directory"),
        "directory as a store": (
            f"sqlite:///{tmp_path}",
            2,
            f"{re.escape(str(tmp_path))}: is a directory, not a database file",
        ),
        "NUL in the path": (
            f"{tmp_path}/a\0b.db",
            2,
            rf"cannot read {re.escape(str(tmp_path))}/a\\x00b.db: embedded null byte",
        ),
        "NUL in a store's path": (
            f"sqlite:///{tmp_path}/a\0b.db",
            2,
            rf"{re.escape(str(tmp_path))}/a\\x00b.db: cannot use this path: embedded null byte",
        ),
        "10 KB path": (long, 2, f"cannot read {cut}: File name too long"),
        "10 KB store path": (
            f"sqlite:///{long}",
            2,
            f"{cut}: cannot use this path: File name too long",
        ),
        "10 KB scheme": ("x" * 10_240 + "://db", 2, f"no plugin opens {cut}:// store URLs .*"),
        "unknown scheme": (
            "nosuch://db/meetcore",
            2,
            r"no plugin opens nosuch:// store URLs \(is its plugin installed\?\)",
        ),
        "scheme without a path": ("sqlite://", 2, "store URL 'sqlite://' names no file: .*"),
        "empty file": (str(empty), 1, f"(.*{re.escape(str(empty))} holds no records|meeting .*)"),
        "truncated SQLite file": (
            str(truncated),
            2,
            rf"{re.escape(str(truncated))}: the SQLite file is truncated "
            rf"\({len(data) // 2} bytes, its header says {len(data)}\)",
        ),
        "SQLite header alone": (
            str(header_only),
            2,
            rf"{re.escape(str(header_only))}: the SQLite file is truncated "
            r"\(shorter than its header\)",
        ),
    }


HOSTILE = [
    "directory",
    "directory as a store",
    "NUL in the path",
    "NUL in a store's path",
    "10 KB path",
    "10 KB store path",
    "10 KB scheme",
    "unknown scheme",
    "scheme without a path",
    "empty file",
    "truncated SQLite file",
    "SQLite header alone",
]


def test_hostile_cases_are_all_tested(tmp_path: Path, make_store: Callable[[Path], Path]) -> None:
    assert sorted(_hostile(tmp_path, make_store)) == sorted(HOSTILE)


@pytest.mark.parametrize("case", HOSTILE)
def test_a_hostile_source_is_one_clear_line(
    tmp_path: Path, make_store: Callable[[Path], Path], case: str
) -> None:
    source, code, pattern = _hostile(tmp_path, make_store)[case]
    before = files(tmp_path)
    for command, extra in COMMANDS.items():
        if command == "export":
            extra = ["--meeting", MID]  # an empty log exports as an empty log (exit 0)
        for args in ([source], ["--store", source]):
            line = failed(run(command, *args, *extra), code)
            assert re.fullmatch(pattern, line), (command, line)
            assert len(line) < 400, line
    assert files(tmp_path) == before


def test_an_empty_log_exports_as_an_empty_log(tmp_path: Path) -> None:
    empty = tmp_path / "empty.jsonl"
    empty.touch()
    result = run("export", empty)
    assert (result.exit_code, result.stdout_bytes, result.stderr) == (0, b"", "")
