"""The media routing rule: rendezvous hashing of the meeting id over the live nodes."""

from __future__ import annotations

import subprocess
import sys
from collections import Counter

import pytest

from meetcore_postgres import media_node, ranked_nodes

NODES = [f"http://10.0.0.{n}:8700" for n in range(1, 6)]
MEETINGS = [f"{a}{b}{c}-mtg-{n}" for n in range(400) for a, b, c in ("abc", "xyz", "klm")]
MEETINGS += [f"room-{n}" for n in range(8800)]  # 10,000 in all


def assignment(nodes: list[str]) -> dict[str, str]:
    return {meeting_id: media_node(meeting_id, nodes) for meeting_id in MEETINGS}


def test_every_router_picks_the_same_node_whatever_the_order() -> None:
    for meeting_id in MEETINGS[:500]:
        chosen = media_node(meeting_id, NODES)
        assert media_node(meeting_id, reversed(NODES)) == chosen
        assert media_node(meeting_id, [*NODES, *NODES]) == chosen
        assert ranked_nodes(meeting_id, NODES)[0] == chosen
        assert sorted(ranked_nodes(meeting_id, NODES)) == sorted(NODES)


def test_the_choice_is_the_same_in_every_process() -> None:
    """No salted `hash()`: another interpreter (another hash seed) agrees."""
    code = (
        "from meetcore_postgres import media_node; "
        f"print(','.join(media_node(m, {NODES!r}) for m in {MEETINGS[:50]!r}))"
    )
    for seed in ("1", "2"):
        done = subprocess.run(
            [sys.executable, "-c", code],
            capture_output=True,
            text=True,
            check=True,
            env={"PYTHONHASHSEED": seed, "PATH": ""},
        )
        assert done.stdout.strip().split(",") == [media_node(m, NODES) for m in MEETINGS[:50]]
    assert media_node("abc-def-ghi", NODES[:3]) == "http://10.0.0.3:8700"  # fixed for ever


def test_meetings_are_spread_evenly() -> None:
    counts = Counter(assignment(NODES).values())
    assert set(counts) == set(NODES)
    share = len(MEETINGS) / len(NODES)
    assert all(abs(count - share) < 0.1 * share for count in counts.values()), counts


def test_a_node_that_leaves_moves_only_its_own_meetings_to_their_second_choice() -> None:
    before = assignment(NODES)
    gone = NODES[2]
    after = assignment([n for n in NODES if n != gone])
    for meeting_id, node in before.items():
        if node != gone:
            assert after[meeting_id] == node  # nobody else moves
        else:
            assert after[meeting_id] == ranked_nodes(meeting_id, NODES)[1]


def test_a_node_that_joins_takes_its_share_and_nothing_else_moves() -> None:
    before = assignment(NODES)
    new = "http://10.0.0.6:8700"
    after = assignment([*NODES, new])
    moved = [m for m in MEETINGS if after[m] != before[m]]
    assert all(after[m] == new for m in moved)
    assert abs(len(moved) / len(MEETINGS) - 1 / 6) < 0.03, len(moved)


def test_one_node_takes_everything_and_none_is_an_error() -> None:
    assert {media_node(m, ["solo"]) for m in MEETINGS[:100]} == {"solo"}
    with pytest.raises(ValueError, match="no live node"):
        media_node("abc-def-ghi", [])
    assert ranked_nodes("abc-def-ghi", []) == []
