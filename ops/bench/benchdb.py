"""What every benchmark here shares: a fresh, migrated database on the embedded server
(or on --database-url), dropped afterwards, and percentiles."""

from __future__ import annotations

import asyncio
import math
import secrets
import sys
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import asyncpg

from adapters import embedded_pg
from adapters.postgres import migrate
from adapters.postgres.database import redact_url

ROOT = Path(__file__).resolve().parents[2]
BENCH_DATA_DIR = ROOT / ".contextgate" / "bench"


def with_database(url: str, name: str) -> str:
    return urlunsplit(urlsplit(url)._replace(path=f"/{name}"))


def libpq_url(url: str) -> str:
    """A URL asyncpg.connect accepts (no SQLAlchemy driver suffix)."""
    parts = urlsplit(url)
    return urlunsplit(parts._replace(scheme=parts.scheme.split("+", 1)[0]))


async def admin(url: str, statement: str) -> None:
    conn = await asyncpg.connect(libpq_url(with_database(url, "postgres")))
    try:
        await conn.execute(statement)
    finally:
        await conn.close()


@contextmanager
def fresh_database(server_url: str | None, prefix: str = "bench") -> Iterator[str]:
    """A new migrated database (on `server_url`, else the embedded server under
    .contextgate/bench), dropped on exit, also on failure."""
    if not server_url:
        print(f"starting the embedded PostgreSQL in {BENCH_DATA_DIR}", file=sys.stderr)
        server_url = embedded_pg.start(BENCH_DATA_DIR, stop_at_exit=True)
    name = f"{prefix}_{secrets.token_hex(6)}"
    asyncio.run(admin(server_url, f'CREATE DATABASE "{name}"'))
    try:
        url = with_database(server_url, name)
        print(f"database {redact_url(url)}; migrating", file=sys.stderr, flush=True)
        migrate.upgrade(url)  # runs its own event loop
        yield url
    finally:
        asyncio.run(admin(server_url, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


def percentile(sorted_values: Sequence[float], q: float) -> float:
    """Nearest-rank percentile of an ascending sequence."""
    if not sorted_values:
        return math.nan
    rank = max(1, math.ceil(q * len(sorted_values)))
    return sorted_values[rank - 1]
