"""`meetcore serve --public-url`: the URL a cluster's nodes give each other's clients
(docs/deploy.md). A value that clients could not connect to is a usage error (exit 2,
one line), before anything starts."""

from __future__ import annotations

from pathlib import Path

import pytest

from meetcore_server.testing import ServeProcess, serve_refuses


@pytest.mark.parametrize(
    ("value", "why"),
    [
        ("ftp://example.com", "not an http(s) URL"),
        ("example.com:8700", "not an http(s) URL"),
        ("", "not an http(s) URL"),
        ("http://", "not an http(s) URL"),
        ("http://" + "x" * 3000, "not an http(s) URL"),
        ("http://example.com/?room=1", "no query, fragment"),
        ("http://example.com/?", "no query, fragment"),
        ("http://example.com/#top", "no query, fragment"),
        ("http://example.com#", "no query, fragment"),
        ("http://exa mple.com", "no query, fragment"),
        ("http://user:secret@example.com", "no query, fragment"),  # sent to every client
        ("http://example.com\\x", "no query, fragment"),
        ("http://%00", "no query, fragment"),
        ("http://example.com:abc", "not a port"),
        ("http://example.com:99999", "not a port"),
        ("http://0.0.0.0:8700", "clients cannot connect to 0.0.0.0"),
        ("http://[::]:8700", "clients cannot connect to ::"),
        ("http://[::ffff:0.0.0.0]:1", "clients cannot connect to ::ffff:0.0.0.0"),
    ],
)
def test_a_public_url_clients_cannot_use_is_refused(tmp_path: Path, value: str, why: str) -> None:
    line = serve_refuses(tmp_path, "--port", "0", "--store", "memory://", "--public-url", value)
    assert line.startswith("meetcore: error: --public-url: "), line
    assert why in line
    assert len(line) < 400


def test_a_node_without_a_shared_store_is_no_cluster_node(tmp_path: Path) -> None:
    """On SQLite (one node) the public URL changes nothing: no redirects, no line."""
    args = ["--public-url", "https://meet.example.com/"]
    with ServeProcess(tmp_path, args=args).wait_ready() as server:
        assert server.process.poll() is None
    assert "cluster node" not in server.output
