"""Group commit for appends: concurrent appends share one call of `cg_append_batch`.

Each call carries what was queued while earlier calls were in flight, so under load
one round trip and one WAL flush serve many appends, and a lone append goes out at
once (no timer, no added latency). Every append keeps its own outcome: the database
runs each in a subtransaction and reports failures per append.
"""

from __future__ import annotations

import asyncio
from typing import Any

import asyncpg

from adapters.postgres.database import Database
from adapters.postgres.event_store import PreparedAppend, finish_append
from domain.events import AppendResult

APPEND_BATCH = """SELECT * FROM cg_append_batch($1, $2, $3, $4, $5, $6, $7, $8, $9, $10,
    $11, $12, $13, $14, $15, $16, $17)"""

# At most 32 appends a call: each is a subtransaction, and PostgreSQL caches only 64
# subtransaction ids per backend before every snapshot in the server gets slower.
MAX_BATCH = 32


class AppendBatcher:
    def __init__(self, db: Database, *, max_in_flight: int = 8) -> None:
        self.db = db
        self.max_in_flight = max_in_flight
        self._queue: list[tuple[PreparedAppend, asyncio.Future[AppendResult]]] = []
        self._in_flight = 0
        self._tasks: set[asyncio.Task[None]] = set()
        self.calls = 0  # database calls made, and appends they carried (for metrics)
        self.appends = 0

    async def append(self, prepared: PreparedAppend) -> AppendResult:
        future: asyncio.Future[AppendResult] = asyncio.get_running_loop().create_future()
        self._queue.append((prepared, future))
        if self._in_flight < self.max_in_flight:
            self._in_flight += 1
            task = asyncio.create_task(self._drain())
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
        # shield: a caller that goes away must not cancel the others' batch.
        return await asyncio.shield(future)

    async def _drain(self) -> None:
        try:
            while self._queue:
                batch = self._queue[:MAX_BATCH]
                del self._queue[:MAX_BATCH]
                await self._send(batch)
        finally:
            self._in_flight -= 1

    async def _send(self, batch: list[tuple[PreparedAppend, asyncio.Future[AppendResult]]]) -> None:
        columns: list[list[Any]] = [[] for _ in range(17)]
        first = 1
        for p, _ in batch:
            for column, value in zip(
                columns,
                (
                    p.tenant_id, p.stream_id, p.expected_version, p.must_exist, p.close,
                    p.idempotency_key, p.fingerprint, p.recorded_at, first, len(p.events),
                ),
                strict=False,
            ):  # fmt: skip
                column.append(value)
            per_event: tuple[list[Any], ...] = (
                p.ids, p.types, p.schema_versions, p.datas, p.metas, p.befores, p.afters,
            )  # fmt: skip
            for column, values in zip(columns[10:], per_event, strict=True):
                column.extend(values)
            first += len(p.events)
        self.calls += 1
        self.appends += len(batch)
        try:
            async with self.db.connection() as conn:
                rows = await conn.fetch(APPEND_BATCH, *columns)
                by_request: dict[int, list[Any]] = {}
                for row in rows:
                    by_request.setdefault(row["request"], []).append(row)
                for index, (p, future) in enumerate(batch, start=1):
                    mine = by_request.get(index, [])
                    try:
                        if mine and mine[0]["error_code"] is not None:
                            raise p.error(mine[0]["error_code"], mine[0]["error_detail"])
                        result = await finish_append(conn, p, mine)
                    except Exception as exc:  # this append's own failure
                        if not future.done():
                            future.set_exception(exc)
                        continue
                    if not future.done():
                        future.set_result(result)
        except (TimeoutError, asyncpg.PostgresError, OSError) as exc:
            for _, future in batch:
                if not future.done():
                    future.set_exception(exc)
        except BaseException as exc:
            for _, future in batch:
                if not future.done():
                    future.set_exception(exc)
            raise
