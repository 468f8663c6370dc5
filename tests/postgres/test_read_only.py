"""meetcore-postgres opened read-only (`read_only=True`, what `meetcore replay`, `export`
and `inspect` ask for): every session is read-only, nothing is created, and what a
writer appends meanwhile is read."""

from __future__ import annotations

from collections.abc import Callable
from urllib.parse import quote

import anyio
import psycopg
import pytest
from click.testing import CliRunner

import meetcore_postgres
from meetcore import StoreError, plugin_manager
from meetcore.cli import build_cli
from meetcore.testing import sample_events
from meetcore_postgres import PostgresStore

pytestmark = pytest.mark.anyio


async def schemas(database: str) -> set[str]:
    async with await psycopg.AsyncConnection.connect(database, autocommit=True) as connection:
        cursor = await connection.execute("SELECT schema_name FROM information_schema.schemata")
        return {str(name) for (name,) in await cursor.fetchall()}


def schema_of(url: str) -> str:
    return url.rpartition("schema=")[2]


async def test_a_missing_store_is_refused_and_not_created(url: str, database: str) -> None:
    with pytest.raises(StoreError) as raised:
        PostgresStore(url, read_only=True)
    assert str(raised.value) == (f"no such store: {url} has no meetcore schema {schema_of(url)!r}")
    assert schema_of(url) not in await schemas(database)


async def test_a_store_is_read_while_a_writer_appends(url: str) -> None:
    writer = PostgresStore(url)
    try:
        await writer.append("m-0", 0, sample_events("m-0"), None)
        reader = PostgresStore(url, read_only=True)
        try:
            assert [r.version for r in await reader.read("m-0")] == [1, 2, 3]
            await writer.append("m-1", 0, sample_events("m-1"), None)
            assert [r.meeting_id for r in await reader.read_all()] == ["m-0"] * 3 + ["m-1"] * 3
            with pytest.raises(StoreError, match="opened read-only"):
                await reader.append("m-2", 0, sample_events("m-2"), None)
            # the session itself refuses writes, whatever path they take
            with pytest.raises(StoreError, match="read-only transaction"):
                await reader.save_checkpoint("cursor", b"1")
            with pytest.raises(StoreError, match="read-only transaction"):
                await reader.drop_leases([("m-0", "c-1")])
        finally:
            await reader.close()
    finally:
        await writer.close()


async def test_the_urls_own_options_stay(url: str) -> None:
    await with_writer_and(url)
    timeout = quote("-c statement_timeout=4321")
    reader = PostgresStore(f"{url}&options={timeout}", read_only=True)
    try:
        settings = {
            name: (await reader._run(f"SHOW {name}", ()))[0][0]
            for name in ("statement_timeout", "default_transaction_read_only")
        }
        assert settings == {"statement_timeout": "4321ms", "default_transaction_read_only": "on"}
    finally:
        await reader.close()


def test_the_command_line_reads_without_creating(
    fresh_url: Callable[[], str], database: str
) -> None:
    cli = build_cli(plugin_manager([meetcore_postgres], autoload=False))
    missing = fresh_url()
    for args in (["replay", missing], ["export", "--store", missing]):
        result = CliRunner().invoke(cli, args)
        assert (result.exit_code, result.stderr) == (
            2,
            f"meetcore: error: no such store: {missing} has no meetcore schema "
            f"{schema_of(missing)!r}\n",
        )
    assert schema_of(missing) not in anyio.run(schemas, database)

    url = fresh_url()
    anyio.run(with_writer_and, url)
    for args in (["replay", url, "--verify"], ["replay", "--store", url, "--verify"]):
        result = CliRunner().invoke(cli, args)
        assert result.stdout == "verified 3 records of 1 meeting: OK\n", result.output
    result = CliRunner().invoke(cli, ["inspect", url, "--meeting", "m-0", "--json"])
    assert result.exit_code == 0, result.output
    assert len(CliRunner().invoke(cli, ["export", url]).stdout.splitlines()) == 3


async def with_writer_and(url: str) -> None:
    """Create the store at `url` with one meeting, m-0."""
    writer = PostgresStore(url)
    try:
        await writer.append("m-0", 0, sample_events("m-0"), None)
    finally:
        await writer.close()
