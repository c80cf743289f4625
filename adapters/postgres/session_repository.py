"""SessionRepository on PostgreSQL: units of work and read-model queries."""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager

from adapters.postgres import projections, sessions
from adapters.postgres.database import Connection, Database
from adapters.postgres.event_store import PgEventStore
from domain.events import RecordedEvent
from domain.read_models import SessionFilter, SessionPage, SessionView
from domain.session import SessionState, stream_id_for


class PgSessionUnitOfWork:
    def __init__(self, conn: Connection) -> None:
        self.conn = conn
        self._events = PgEventStore(conn)

    @property
    def events(self) -> PgEventStore:
        return self._events

    async def lock_session(self, tenant_id: str, session_id: str) -> SessionState | None:
        return await sessions.lock_state(self.conn, tenant_id, session_id)

    async def project(self, events: Sequence[RecordedEvent]) -> None:
        await projections.apply(self.conn, events)

    async def get_session(self, tenant_id: str, session_id: str) -> SessionView | None:
        return await sessions.get(self.conn, tenant_id, session_id)


class PostgresSessions:
    def __init__(self, db: Database) -> None:
        self.db = db

    @asynccontextmanager
    async def unit_of_work(self) -> AsyncIterator[PgSessionUnitOfWork]:
        async with self.db.transaction() as conn:
            yield PgSessionUnitOfWork(conn)

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
