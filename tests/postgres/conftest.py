"""The PostgreSQL server of this machine (127.0.0.1:5432, user postgres, trust auth; see
.ci/run), with a fresh database for the test run, dropped at the end. Each test gets its
own PostgreSQL schema in it (`?schema=`), so every store starts empty.

Set MEETCORE_TEST_POSTGRES to another server's base URL to test against it. Without a
server these tests are skipped, except in CI (CI=true), where they fail.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import secrets
from collections.abc import AsyncIterator, Callable, Iterator

import anyio
import psycopg
import pytest

from meetcore_client import Meeting

SERVER = os.environ.get("MEETCORE_TEST_POSTGRES", "postgresql://postgres@127.0.0.1:5432")
_schemas = itertools.count(1)


@pytest.fixture(scope="session")
def database() -> Iterator[str]:
    """The URL of a fresh database, for this test run only."""
    name = f"meetcore_test_{secrets.token_hex(4)}"
    try:
        admin = psycopg.connect(f"{SERVER}/postgres", autocommit=True, connect_timeout=5)
    except psycopg.OperationalError as error:
        message = f"no PostgreSQL server at {SERVER}: {error}"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    with admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    try:
        yield f"{SERVER}/{name}"
    finally:
        with psycopg.connect(f"{SERVER}/postgres", autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture
def fresh_url(database: str) -> Callable[[], str]:
    """Makes URLs of new, empty stores: a new PostgreSQL schema each time."""

    def make() -> str:
        return f"{database}?schema=t{next(_schemas)}_{secrets.token_hex(3)}"

    return make


@pytest.fixture
def url(fresh_url: Callable[[], str]) -> str:
    """The URL of a new, empty store for this test."""
    return fresh_url()


@pytest.fixture
async def clients() -> AsyncIterator[list[Meeting]]:
    """Python clients a test makes; each still in its meeting leaves it (3 s at most),
    then is closed."""
    made: list[Meeting] = []
    try:
        yield made
    finally:
        for meeting in made:
            with contextlib.suppress(Exception):
                with anyio.move_on_after(3):
                    if meeting.joined and meeting.state == "CONNECTED":
                        await meeting.leave()
                await meeting.close()
