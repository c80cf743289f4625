"""Keeps the usage projection caught up, every `interval` seconds, off the request path.
Every replica may run it: the projection function takes turns on its checkpoint row."""

from __future__ import annotations

import asyncio
import contextlib
import logging

from adapters.postgres.database import Database
from adapters.postgres.usage import catch_up

log = logging.getLogger("contextgate.usage")


class UsageWorker:
    def __init__(self, db: Database, interval: float = 1.0) -> None:
        self.db = db
        self.interval = interval
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name="usage-projection")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    async def _run(self) -> None:
        while True:
            try:
                await catch_up(self.db)
            except asyncio.CancelledError:
                raise
            except Exception:  # a database restart: try again at the next tick
                log.exception("usage projection failed; retrying")
            await asyncio.sleep(self.interval)
