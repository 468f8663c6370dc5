"""Which node carries a meeting's media: rendezvous hashing of the meeting id.

A meeting's participants must meet on one node, since media is forwarded between the
WebSockets and peer connections of one process. Signaling and the log work from any
node (they share PostgreSQL); media does not. So whatever hands a client its server
(the application's backend, or a proxy routing on the meeting id in the path) picks
`media_node(meeting_id, live_nodes)`: every router that knows the same live nodes picks
the same node, with no shared state and no coordination.

Rendezvous (highest random weight) hashing: each node scores `hash(node, meeting)`, the
highest score wins. When a node leaves, only its own meetings move, each to the node
that ranked second for it; when a node joins, it takes about 1/n of the meetings and no
other meeting moves. Pure and deterministic (blake2b, not Python's salted `hash`).
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable

__all__ = ["media_node", "ranked_nodes"]


def _score(node: str, meeting_id: str) -> int:
    digest = hashlib.blake2b(
        node.encode() + b"\x00" + meeting_id.encode(), digest_size=8, person=b"meetcore-media"
    ).digest()
    return int.from_bytes(digest, "big")


def ranked_nodes(meeting_id: str, nodes: Iterable[str]) -> list[str]:
    """`nodes` (duplicates dropped) in the meeting's order of preference: the first is its
    media node, the next one takes over if the first goes away, and so on."""
    return sorted(set(nodes), key=lambda node: (-_score(node, meeting_id), node))


def media_node(meeting_id: str, nodes: Iterable[str]) -> str:
    """The node, of the live `nodes` (any names: URLs, host names), that carries the
    meeting's media. Raises `ValueError` when there is no node."""
    best: str | None = None
    best_score = -1
    for node in nodes:
        score = _score(node, meeting_id)
        if score > best_score or (score == best_score and best is not None and node < best):
            best, best_score = node, score
    if best is None:
        raise ValueError("no live node to carry the meeting's media")
    return best
