"""The ports: what the use cases need from the outside world, as typing.Protocol."""

from __future__ import annotations

from collections.abc import Sequence
from contextlib import AbstractAsyncContextManager
from typing import Protocol

from domain.events import AppendResult, Checkpoint, NewEvent, RecordedEvent
from domain.read_models import SessionFilter, SessionPage, SessionView
from domain.session import SessionState


class EventStore(Protocol):
    """The narrow event-store interface (after pyeventsourcing and Message DB).

    `expected_version`: None appends whatever the version; 0 requires a new stream;
    n requires the stream to be at version n. A mismatch raises WrongExpectedVersion.
    An `idempotency_key` already used by this tenant returns the first append's result
    (with `replayed=True`) and writes nothing; used for a different request it raises
    IdempotencyKeyReused.
    """

    async def append(
        self,
        tenant_id: str,
        stream_id: str,
        events: Sequence[NewEvent],
        *,
        expected_version: int | None = None,
        idempotency_key: str | None = None,
    ) -> AppendResult: ...

    async def read_stream(
        self, tenant_id: str, stream_id: str, *, after_version: int = 0, limit: int = 1000
    ) -> list[RecordedEvent]: ...

    async def read_all(
        self, after: Checkpoint, *, limit: int = 1000, tenant_id: str | None = None
    ) -> list[RecordedEvent]:
        """Events after `after` in (transaction_id, global_position) order, never skipping
        one that commits late: events of transactions still in flight are held back."""
        ...

    async def stream_version(self, tenant_id: str, stream_id: str) -> int: ...


class TokenCounter(Protocol):
    def count(self, text: str, model: str | None = None) -> int: ...


class SessionUnitOfWork(Protocol):
    """One transaction over a session: lock its state, append, project."""

    @property
    def events(self) -> TransactionalEventStore: ...

    async def lock_session(self, tenant_id: str, session_id: str) -> SessionState | None: ...

    async def project(self, events: Sequence[RecordedEvent]) -> None: ...

    async def get_session(self, tenant_id: str, session_id: str) -> SessionView | None: ...


class TransactionalEventStore(EventStore, Protocol):
    async def find_idempotent(
        self, tenant_id: str, key: str, stream_id: str, events: Sequence[NewEvent]
    ) -> AppendResult | None: ...


class SessionRepository(Protocol):
    """Sessions: units of work for writes, and the read models for queries."""

    def unit_of_work(self) -> AbstractAsyncContextManager[SessionUnitOfWork]: ...

    async def get(self, tenant_id: str, session_id: str) -> SessionView | None: ...

    async def list_page(
        self, tenant_id: str, filters: SessionFilter, cursor: str | None, limit: int
    ) -> SessionPage: ...

    async def read_events(
        self, tenant_id: str, session_id: str, after_version: int, limit: int
    ) -> list[RecordedEvent] | None:
        """The session's events after `after_version`, or None if the session is unknown."""
        ...
