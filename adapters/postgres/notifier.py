"""Wakes the catch-up workers after appends: `pg_notify` on a channel, debounced.

Not a NOTIFY inside the append's transaction: PostgreSQL serializes the commits of
transactions that have notified (a global lock on the notification queue), which would
undo the group commit of appends. Instead `notify()` only sets a flag, and one
background task sends at most one notification every `interval` seconds while flagged.
The workers poll as well, so a lost notification (or a replica without a notifier)
delays them by one poll interval, no more.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

import asyncpg

from adapters.postgres.database import Database

log = logging.getLogger("contextgate.notifier")

CHANNEL = "contextgate_events"
NOTIFY = "SELECT pg_notify($1, '')"


class Notifier:
    def __init__(self, db: Database, *, channel: str = CHANNEL, interval: float = 0.05) -> None:
        self.db = db
        self.channel = channel
        self.interval = interval
        self.sent = 0  # notifications sent (for metrics and tests)
        self._flag = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    def notify(self) -> None:
        """Ask for a notification soon. Synchronous and cheap: call it after each append."""
        self._flag.set()

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name="contextgate-notifier")

    async def stop(self) -> None:
        """Stop; a pending notification is sent first, so the last appends wake workers."""
        task, self._task = self._task, None
        if task is None:
            return
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        if self._flag.is_set():
            await self._send()

    async def _run(self) -> None:
        while True:
            await self._flag.wait()
            await self._send()
            # Appends in the next `interval` share the next notification.
            await asyncio.sleep(self.interval)

    async def _send(self) -> None:
        self._flag.clear()  # before sending: an append during the send flags again
        try:
            async with self.db.connection() as conn:
                await conn.execute(NOTIFY, self.channel)
            self.sent += 1
        except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
            # The workers' polling covers a lost notification.
            log.warning("could not notify %s: %s", self.channel, exc)
