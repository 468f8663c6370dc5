"""Every ```python block in docs/ runs: the blocks of one page in order, in one namespace.

quickstart.md is run as its reader runs it, against a real server, by test_quickstart.py.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

DOCS = Path(__file__).resolve().parents[2] / "docs"
BLOCK = re.compile(r"^```python\n(.*?)^```", re.S | re.M)
RUN_ELSEWHERE = {"quickstart.md"}
PAGES = sorted(
    p for p in DOCS.glob("*.md") if p.name not in RUN_ELSEWHERE and BLOCK.search(p.read_text())
)


def test_there_are_examples_to_run() -> None:
    assert DOCS / "domain.md" in PAGES


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.name)
def test_examples_run(page: Path, capsys: pytest.CaptureFixture[str]) -> None:
    namespace: dict[str, object] = {"__name__": f"docs.{page.stem}"}
    text = page.read_text()
    for number, block in enumerate(BLOCK.finditer(text), 1):
        line = text[: block.start()].count("\n") + 2
        code = compile(block.group(1), f"{page.name}:{line} (block {number})", "exec")
        exec(code, namespace)
