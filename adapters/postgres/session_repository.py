"""SessionRepository on PostgreSQL: the event store and the read-model queries."""

from __future__ import annotations

from collections.abc import Callable

from adapters.postgres import sessions
from adapters.postgres.database import Database
from adapters.postgres.event_store import PgEventStore
from adapters.postgres.pooled_event_store import PostgresEventStore
from domain.events import RecordedEvent
from domain.read_models import SessionFilter, SessionPage, SessionView
from domain.session import stream_id_for


class PostgresSessions:
    def __init__(self, db: Database, on_append: Callable[[], None] | None = None) -> None:
        self.db = db
        self._events = PostgresEventStore(db, on_append)

    @property
    def events(self) -> PostgresEventStore:
        return self._events

    async def get(self, tenant_id: str, session_id: str) -> SessionView | None:
        async with self.db.connection() as conn:
            return await sessions.get(conn, tenant_id, session_id)

    async def list_page(
        self, tenant_id: str, filters: SessionFilter, cursor: str | None, limit: int
    ) -> SessionPage:
        async with self.db.connection() as conn:
            return await sessions.list_page(conn, tenant_id, filters, cursor, limit)

    async def read_events(
        self, tenant_id: str, session_id: str, after_version: int, limit: int
    ) -> list[RecordedEvent] | None:
        async with self.db.connection() as conn:
            events = await PgEventStore(conn).read_stream(
                tenant_id, stream_id_for(session_id), after_version=after_version, limit=limit
            )
            if not events and not await sessions.exists(conn, tenant_id, session_id):
                return None
            return events
