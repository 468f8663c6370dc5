"""docs/architecture.md's import rules hold: each package imports, at run time, exactly
the first-party packages its row lists, and only meetcore-media and the client's media
module import aiortc or av."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PAGE = ROOT / "docs" / "architecture.md"
#: Only these (packages or modules) may import the media stack.
MEDIA_STACK = {"aiortc", "aioice", "av"}
MAY_IMPORT_MEDIA = ("meetcore_media", "meetcore_client._media")


def _rules() -> dict[str, set[str]]:
    """The 'May import' table of the page: package or module -> first-party imports."""
    text = PAGE.read_text()
    section = text[text.index("## What each may import") :]
    rules: dict[str, set[str]] = {}
    for row in re.finditer(r"^\| `(meetcore[\w.]*)` \| (.+?) \|$", section, re.M):
        allowed = set(re.findall(r"`(meetcore\w*)`", row.group(2)))
        assert row.group(2) == "nothing" or allowed, row.group(0)
        rules[row.group(1)] = allowed
    return rules


def _packages() -> dict[str, Path]:
    found = {"meetcore": ROOT / "engine" / "src" / "meetcore"}
    for folder in sorted((ROOT / "plugins").glob("*/src/meetcore_*")):
        found[folder.name] = folder
    return found


def _module_name(package: str, folder: Path, path: Path) -> str:
    parts = [package, *path.relative_to(folder).with_suffix("").parts]
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _type_checking_only(node: ast.AST) -> bool:
    return isinstance(node, ast.If) and (
        (isinstance(node.test, ast.Name) and node.test.id == "TYPE_CHECKING")
        or (isinstance(node.test, ast.Attribute) and node.test.attr == "TYPE_CHECKING")
    )


def _runtime_imports(tree: ast.AST) -> set[str]:
    """The top-level names of what a module imports when it runs (every function's
    imports included, `if TYPE_CHECKING:` blocks left out)."""
    found: set[str] = set()

    def visit(node: ast.AST) -> None:
        if _type_checking_only(node):
            for child in getattr(node, "orelse", []):
                visit(child)
            return
        if isinstance(node, ast.Import):
            found.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.add(node.module.split(".")[0])
        for child in ast.iter_child_nodes(node):
            visit(child)

    visit(tree)
    return found


def _imports_by_module() -> dict[str, set[str]]:
    modules: dict[str, set[str]] = {}
    for package, folder in _packages().items():
        for path in sorted(folder.rglob("*.py")):
            name = _module_name(package, folder, path)
            modules[name] = _runtime_imports(ast.parse(path.read_text(), str(path)))
    return modules


def _rule_for(module: str, rules: dict[str, set[str]]) -> str:
    """The most specific row of the table that covers `module`."""
    candidates = [r for r in rules if module == r or module.startswith(r + ".")]
    assert candidates, f"docs/architecture.md has no row for {module}"
    return max(candidates, key=len)


RULES = _rules()
MODULES = _imports_by_module()


def test_the_table_is_read_and_covers_every_package() -> None:
    assert RULES["meetcore"] == set()
    assert RULES["meetcore_server"] == {"meetcore", "meetcore_protocol"}
    assert set(_packages()) <= set(RULES), "a package without a row in docs/architecture.md"


@pytest.mark.parametrize("row", sorted(RULES))
def test_each_row_lists_exactly_what_its_modules_import(row: str) -> None:
    first_party = set(_packages())
    used: set[str] = set()
    for module, imports in MODULES.items():
        if _rule_for(module, RULES) != row:
            continue
        own = module.split(".")[0]
        theirs = {name for name in imports if name in first_party and name != own}
        extra = theirs - RULES[row]
        assert not extra, f"{module} imports {sorted(extra)}, which docs/architecture.md forbids"
        used |= theirs
    unused = RULES[row] - used
    assert not unused, f"docs/architecture.md lets {row} import {sorted(unused)}; nothing does"


def test_only_the_media_package_and_the_client_s_media_import_aiortc() -> None:
    offenders = {
        module: sorted(imports & MEDIA_STACK)
        for module, imports in MODULES.items()
        if imports & MEDIA_STACK
        and not any(module == m or module.startswith(m + ".") for m in MAY_IMPORT_MEDIA)
    }
    assert not offenders, f"imports of the media stack outside meetcore-media: {offenders}"
    assert MODULES["meetcore_media.sdp"] & MEDIA_STACK  # the check sees them where they are


def test_a_forbidden_import_is_caught() -> None:
    """The parser sees imports inside functions and skips TYPE_CHECKING blocks."""
    code = (
        "from typing import TYPE_CHECKING\n"
        "if TYPE_CHECKING:\n    import meetcore_sqlite\n"
        "def f():\n    from meetcore_jwt import mint_token\n"
    )
    assert _runtime_imports(ast.parse(code)) == {"typing", "meetcore_jwt"}
