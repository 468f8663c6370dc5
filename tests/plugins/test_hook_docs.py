"""docs/plugins.md documents every hook in `meetcore.hookspecs` and in meetcore-server's
(`meetcore_server.hookspecs`), and no hook that is not there."""

from __future__ import annotations

import inspect
import re
from pathlib import Path

import pytest

from meetcore import hookspecs
from meetcore_server import hookspecs as server_hookspecs

PAGE = Path(__file__).resolve().parents[2] / "docs" / "plugins.md"
HEADING = re.compile(r"^### (meetcore_\w+)[ \t]*$", re.M)
SPEC_MARK = f"{hookspecs.hookspec.project_name}_spec"  # what @hookspec sets on a function


def _hooks() -> dict[str, object]:
    return {
        name: function
        for module in (hookspecs, server_hookspecs)
        for name, function in vars(module).items()
        if name.startswith("meetcore_") and getattr(function, SPEC_MARK, None) is not None
    }


def _sections() -> dict[str, str]:
    """Each `### meetcore_...` section of the page: hook name -> its text."""
    text = PAGE.read_text()
    headings = list(HEADING.finditer(text))
    sections: dict[str, str] = {}
    for this, after in zip(headings, [*headings[1:], None], strict=True):
        end = after.start() if after is not None else len(text)
        next_heading = re.compile(r"^#{1,3} ", re.M).search(text, this.end(), end)
        name = this.group(1)
        assert name not in sections, f"docs/plugins.md documents {name} twice"
        sections[name] = text[this.end() : next_heading.start() if next_heading else end]
    return sections


HOOKS = _hooks()


def test_the_hooks_are_found() -> None:
    assert "meetcore_open_store" in HOOKS
    assert "meetcore_records_appended" in HOOKS
    assert "hookimpl" not in HOOKS  # only functions the hookspec marker carries


@pytest.mark.parametrize("hook", sorted(HOOKS))
def test_every_hook_is_documented(hook: str) -> None:
    sections = _sections()
    documented = sorted(sections)
    assert hook in documented, f"docs/plugins.md has no '### {hook}' section"
    parameters = inspect.signature(HOOKS[hook]).parameters  # type: ignore[arg-type]
    for parameter in parameters:
        assert f"{parameter}:" in sections[hook], (
            f"the '### {hook}' section of docs/plugins.md does not show its argument {parameter}"
        )


def test_no_documented_hook_is_unknown() -> None:
    unknown = sorted(set(_sections()) - set(HOOKS))
    assert not unknown, f"docs/plugins.md documents hooks meetcore.hookspecs lacks: {unknown}"


def test_every_hook_heading_is_well_formed() -> None:
    """A heading such as '### meetcore_open_store(url)' would escape the checks above."""
    loose = [
        line
        for line in PAGE.read_text().splitlines()
        if line.startswith("### meetcore_") and not HEADING.fullmatch(line)
    ]
    assert not loose, f"hook headings must be '### hook_name' alone: {loose}"
