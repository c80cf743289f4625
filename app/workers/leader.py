"""Leader election among replicas: the holder of a PostgreSQL advisory lock runs the jobs.

The lock is session-level, held on a connection of its own (never a pooled one). When
the leader's process dies or its connection drops, PostgreSQL frees the lock, and the
next replica to try takes it over. A leader checks its connection before each job, so
a leader that lost its connection stops acting as one.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
from typing import Any

import asyncpg

from adapters.postgres.database import driver_url

log = logging.getLogger("contextgate.leader")

JOBS_LOCK_ID = 0x43475F4A4F4253  # "CG_JOBS"


class LeaderLock:
    def __init__(self, url: str, lock_id: int = JOBS_LOCK_ID, name: str = "") -> None:
        self.url = driver_url(url)
        self.lock_id = lock_id
        self.name = name
        self._conn: Any = None
        self._leader = False
        self._lock = asyncio.Lock()

    @property
    def is_leader(self) -> bool:
        return self._leader

    async def try_lead(self) -> bool:
        """Take (or confirm) leadership; False if another replica holds it."""
        async with self._lock:
            try:
                if self._conn is None or self._conn.is_closed():
                    self._leader = False
                    # The pid in the name tells operators (and tests) which replica leads.
                    name = f"contextgate-leader-{os.getpid()}"
                    self._conn = await asyncpg.connect(
                        self.url, server_settings={"application_name": name}
                    )
                if self._leader:
                    await self._conn.fetchval("SELECT 1")  # still connected, still ours
                    return True
                self._leader = bool(
                    await self._conn.fetchval("SELECT pg_try_advisory_lock($1)", self.lock_id)
                )
                if self._leader:
                    log.info("this replica%s now runs the scheduled jobs", self._label())
                return self._leader
            except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
                if self._leader:
                    log.warning("lost the jobs lock%s: %s", self._label(), exc)
                self._leader = False
                await self._drop()
                return False

    async def release(self) -> None:
        async with self._lock:
            if self._leader and self._conn is not None and not self._conn.is_closed():
                with contextlib.suppress(OSError, asyncpg.PostgresError, asyncpg.InterfaceError):
                    await self._conn.fetchval("SELECT pg_advisory_unlock($1)", self.lock_id)
            self._leader = False
            await self._drop()

    async def _drop(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None and not conn.is_closed():
            conn.terminate()

    def _label(self) -> str:
        return f" ({self.name})" if self.name else ""
