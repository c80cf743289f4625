"""The connection pool for the request path: asyncpg's own pool.

Schema lives in Alembic (which runs on SQLAlchemy's async engine, see migrate.py). The
request path talks to asyncpg directly: a checkout from SQLAlchemy's async pool went
through a greenlet switch and its reset hooks (~0.12 ms of CPU per checkout here, as
much as the whole append statement costs us in Python), and a text() round trip through
SQLAlchemy measured ~200 us against ~80 us on the driver.
"""

from __future__ import annotations

import array
import asyncio
import contextlib
import json
import struct
import sys
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import asyncpg

Connection = Any  # asyncpg.Connection; asyncpg ships no type hints
# Session settings that a pool's connections carry from their start (see
# Database.connection): name and value pairs.
SessionSettings = tuple[tuple[str, str], ...]


def async_url(url: str) -> str:
    """Normalize a libpq-style URL to SQLAlchemy's asyncpg form (for Alembic)."""
    parts = urlsplit(url)
    scheme = parts.scheme
    if scheme in ("postgres", "postgresql", "postgresql+psycopg", "postgresql+psycopg2"):
        scheme = "postgresql+asyncpg"
    if scheme != "postgresql+asyncpg":
        raise ValueError(f"DATABASE_URL must be a postgresql:// URL, not {parts.scheme}://")
    query = []
    for key, value in parse_qsl(parts.query, keep_blank_values=True):
        # asyncpg takes `ssl`, not libpq's `sslmode`.
        query.append(("ssl", value) if key == "sslmode" else (key, value))
    return urlunsplit((scheme, parts.netloc, parts.path, urlencode(query), parts.fragment))


def driver_url(url: str) -> str:
    """The URL as asyncpg.connect takes it."""
    return async_url(url).replace("postgresql+asyncpg://", "postgresql://", 1)


def redact_url(url: str) -> str:
    """The URL with any password replaced, for logs and banners."""
    parts = urlsplit(url)
    if parts.password:
        netloc = parts.netloc.replace(f":{parts.password}@", ":***@")
        return urlunsplit(parts._replace(netloc=netloc))
    return url


def encode_vector(values: Sequence[float]) -> bytes:
    """pgvector's binary form (vector_recv): dimensions, an unused int16, float4s."""
    n = len(values)
    return struct.pack(f">HH{n}f", n, 0, *values)


def decode_vector(data: bytes) -> tuple[float, ...]:
    """pgvector's binary form back to floats (also for `vector_send(...)` columns: 40
    vectors fetched and decoded in 0.46 ms, 1.07 ms as real[])."""
    (dims,) = struct.unpack_from(">H", data)
    return struct.unpack_from(f">{dims}f", data, 4)


def decode_vector_array(data: bytes) -> array.array[float]:
    """pgvector's binary form as an array of float32 in native order: no Python float per
    element (struct's 384 floats a vector were ~5% of a stateful call's event loop for
    the 60 candidates, most of which MMR never compares). Values equal decode_vector's."""
    values = array.array("f")
    values.frombytes(memoryview(data)[4:])
    if sys.byteorder == "little":
        values.byteswap()  # the wire is big-endian
    return values


async def _init_connection(conn: Connection) -> None:
    for name in ("json", "jsonb"):
        await conn.set_type_codec(
            name, encoder=str, decoder=json.loads, schema="pg_catalog", format="text"
        )
    # Query vectors go as binary: formatting 384 floats as text cost ~1 ms a request.
    with contextlib.suppress(ValueError):  # pgvector not installed yet (before migrating)
        await conn.set_type_codec(
            "vector",
            schema="public",
            encoder=encode_vector,
            decoder=decode_vector,
            format="binary",
        )


async def _keep_session(conn: Connection) -> None:
    """Released connections skip asyncpg's reset query (RESET ALL; UNLISTEN *; ...), a
    round trip per checkout. Safe because the request path never changes session state:
    no SET, no LISTEN, no session advisory locks on pooled connections (listeners and
    leader locks use connections of their own). An open transaction is still rolled back
    by asyncpg before this runs."""


class Database:
    """A lazily created asyncpg pool. `connection()` and `transaction()` lend from it.

    `connection(settings)` lends from a second pool, created on first use, whose
    connections start with those session settings: a statement that needs settings of its
    own (the HNSW search's plan) then runs in one round trip, where SET LOCAL took a
    transaction around it (BEGIN, SET, the statement, COMMIT: four). Nothing else runs
    on such a connection, so the settings reach no other statement."""

    def __init__(
        self, url: str, *, pool_size: int = 10, max_overflow: int = 10, role: str | None = None
    ) -> None:
        self.url = driver_url(url)
        # SET ROLE at connect: the server then holds only the application role's rights.
        self.role = role
        self.min_size = min(2, pool_size)
        self.max_size = pool_size + max_overflow
        self._pool: Any = None
        self._scoped: dict[SessionSettings, Any] = {}  # the pools of connection(settings)
        self._lock = asyncio.Lock()

    def _existing(self, settings: SessionSettings) -> Any:
        return self._scoped.get(settings) if settings else self._pool

    async def pool(self, settings: SessionSettings = ()) -> Any:
        pool = self._existing(settings)
        if pool is None:
            async with self._lock:
                pool = self._existing(settings)
                if pool is None:
                    pool = await asyncpg.create_pool(
                        self.url,
                        # A settings pool serves one kind of statement: it starts empty.
                        min_size=0 if settings else self.min_size,
                        max_size=self.max_size,
                        init=_init_connection,
                        reset=_keep_session,
                        server_settings={**self._server_settings(), **dict(settings)},
                    )
                    if settings:
                        self._scoped[settings] = pool
                    else:
                        self._pool = pool
        return pool

    def _server_settings(self) -> dict[str, str]:
        settings = {"application_name": "contextgate", "jit": "off"}
        if self.role:
            settings["role"] = self.role
        return settings

    @asynccontextmanager
    async def connection(self, settings: SessionSettings = ()) -> AsyncIterator[Connection]:
        """A pooled connection, outside any transaction; with `settings`, one of the pool
        whose connections carry them (see the class's docstring)."""
        pool = self._existing(settings) or await self.pool(settings)
        async with pool.acquire() as conn:
            yield conn

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[Connection]:
        """A pooled connection inside a transaction that commits on success."""
        async with self.connection() as conn, conn.transaction():
            yield conn

    async def dispose(self) -> None:
        pools = [*self._scoped.values(), *([self._pool] if self._pool is not None else [])]
        self._pool = None
        self._scoped = {}
        for pool in pools:
            await pool.close()
