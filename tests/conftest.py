"""The suite's markers, and `support.py` on sys.path (the tests run with
--import-mode=importlib, so a test module says `from support import ...`).

A test is marked by where it lives (`MARKERS_BY_PATH`) or by its own `@pytest.mark.slow`;
`uv run pytest -m "not slow and not postgres and not media"` is the quick loop
(docs/development.md), while `uv run pytest` runs everything.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

TESTS = Path(__file__).parent
sys.path.insert(0, str(TESTS))

#: Markers of the tests whose path (below tests/) starts so.
MARKERS_BY_PATH: dict[str, tuple[str, ...]] = {
    "browser/": ("browser", "slow"),  # Chromium
    "postgres/": ("postgres",),
    "benchmarks/": ("bench", "slow"),
    "postgres/test_benchmark.py": ("bench",),
    "postgres/test_cluster_media.py": ("media",),
    "webrtc/test_media": ("media",),
    "webrtc/test_media_bench.py": ("bench", "slow"),
    "webrtc/test_media_large.py": ("bench", "slow"),
}


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        where = item.path.relative_to(TESTS).as_posix()
        for prefix, names in MARKERS_BY_PATH.items():
            if where.startswith(prefix):
                for name in names:
                    item.add_marker(name)
