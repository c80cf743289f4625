"""The event store over the connection pool, with appends batched (group commit)."""

from __future__ import annotations

from collections.abc import Callable, Sequence

from adapters.postgres.append_batcher import AppendBatcher
from adapters.postgres.database import Database
from adapters.postgres.event_store import PgEventStore, prepare_append
from domain.events import AppendResult, Checkpoint, NewEvent, RecordedEvent


class PostgresEventStore:
    """The event store with pooled connections. Appends go through the group-commit
    batcher (adapters/postgres/append_batcher.py)."""

    def __init__(self, db: Database, on_append: Callable[[], None] | None = None) -> None:
        self.db = db
        self.batcher = AppendBatcher(db)
        # Called after each append that wrote (e.g. Notifier.notify, to wake workers).
        self.on_append = on_append

    async def append(
        self,
        tenant_id: str,
        stream_id: str,
        events: Sequence[NewEvent],
        *,
        expected_version: int | None = None,
        idempotency_key: str | None = None,
        must_exist: bool = False,
        close: bool = False,
    ) -> AppendResult:
        prepared = prepare_append(
            tenant_id,
            stream_id,
            events,
            expected_version=expected_version,
            idempotency_key=idempotency_key,
            must_exist=must_exist,
            close=close,
        )
        result = await self.batcher.append(prepared)
        if self.on_append is not None and not result.replayed:
            self.on_append()
        return result

    async def read_stream(
        self, tenant_id: str, stream_id: str, *, after_version: int = 0, limit: int = 1000
    ) -> list[RecordedEvent]:
        async with self.db.connection() as conn:
            return await PgEventStore(conn).read_stream(
                tenant_id, stream_id, after_version=after_version, limit=limit
            )

    async def read_all(
        self, after: Checkpoint, *, limit: int = 1000, tenant_id: str | None = None
    ) -> list[RecordedEvent]:
        async with self.db.connection() as conn:
            return await PgEventStore(conn).read_all(after, limit=limit, tenant_id=tenant_id)

    async def stream_version(self, tenant_id: str, stream_id: str) -> int:
        async with self.db.connection() as conn:
            return await PgEventStore(conn).stream_version(tenant_id, stream_id)
