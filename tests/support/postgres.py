"""PostgreSQL for the tests: a database per run (or per test), emptied
between tests, and the `store_url` fixture that runs a test on each store."""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import os
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest

from support.harness import Part, skip_without

#: The server the PostgreSQL tests make their database on (any database there will do).
PG_SERVER_URL = os.environ.get("BITMAIL_TEST_PG", "postgresql://postgres@127.0.0.1:5432/test")


def run_aside(make: Callable[[], Awaitable[Any]]) -> Any:
    """Run a coroutine to the end on its own loop in another thread: sync
    session fixtures must not touch the loop pytest-asyncio gives the tests."""

    async def main() -> Any:
        return await make()

    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        return pool.submit(asyncio.run, main()).result()


async def pg_admin(sql: str, url: str = PG_SERVER_URL) -> None:
    """Run one statement on its own short connection."""
    import asyncpg  # only the PostgreSQL tests need the driver loaded

    conn = await asyncpg.connect(url, timeout=5)
    try:
        await conn.execute(sql)
    finally:
        await conn.close()


def pg_database_url(name: str) -> str:
    """PG_SERVER_URL pointing at database `name` instead."""
    return urlsplit(PG_SERVER_URL)._replace(path="/" + name).geturl()


@contextlib.contextmanager
def fresh_database(prefix: str = "bitmail_test") -> Iterator[str]:
    """A new, empty database, dropped afterwards; skipped when no server
    answers (a failure under BITMAIL_REQUIRE_ALL=1, as every skip is). A server that answers but
    refuses (credentials, a missing database, no right to create one) fails
    the test: that is a setup to mend, not a missing part."""
    import asyncpg

    name = f"{prefix}_{os.urandom(5).hex()}"
    try:
        run_aside(lambda: pg_admin(f'CREATE DATABASE "{name}"'))
    except (OSError, TimeoutError, asyncpg.CannotConnectNowError) as exc:
        # Refused, unknown host, nothing answering in time, still starting.
        skip_without(Part.POSTGRESQL, f"{PG_SERVER_URL} is not reachable "
                     f"({type(exc).__name__}: {exc}); set BITMAIL_TEST_PG to another server")
    try:
        yield pg_database_url(name)
    finally:
        # FORCE: a test that failed half-way, or a killed process, may have
        # left connections open.
        run_aside(lambda: pg_admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


@pytest.fixture(scope="session")
def pg_url() -> Iterator[str]:
    """A PostgreSQL database made for this test run and dropped after it.

    Tests share it: reset it with `pg_reset` first (the `store_url` fixture does).
    """
    with fresh_database() as url:
        yield url


def pg_reset(url: str) -> None:
    """Empty the store's tables in the run's database (if a store made them already)."""
    run_aside(lambda: pg_admin(
        "DO $$ BEGIN IF to_regclass('docs') IS NOT NULL THEN "
        "TRUNCATE docs, notices RESTART IDENTITY; END IF; END $$", url))


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """Each store in turn: a new SQLite file, then the run's PostgreSQL database, emptied."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'store.db'}"
    url = request.getfixturevalue("pg_url")
    pg_reset(url)
    return url
