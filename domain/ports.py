"""The ports: what the use cases need from the outside world, as typing.Protocol."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from domain.events import AppendResult, Checkpoint, NewEvent, RecordedEvent
from domain.read_models import SessionFilter, SessionPage, SessionView


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
        must_exist: bool = False,
        close: bool = False,
    ) -> AppendResult:
        """`must_exist` refuses to create the stream (StreamNotFound); `close` makes this
        the stream's last append: later ones raise StreamClosed."""
        ...

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

    def ratio(self, model: str | None) -> float:
        """How many of `model`'s tokens one stored token is (estimates for other families)."""
        ...


class SessionRepository(Protocol):
    """Sessions: their event store (appends project in the same transaction) and the
    read models for queries."""

    @property
    def events(self) -> EventStore: ...

    async def get(self, tenant_id: str, session_id: str) -> SessionView | None: ...

    async def list_page(
        self, tenant_id: str, filters: SessionFilter, cursor: str | None, limit: int
    ) -> SessionPage: ...

    async def read_events(
        self, tenant_id: str, session_id: str, after_version: int, limit: int
    ) -> list[RecordedEvent] | None:
        """The session's events after `after_version`, or None if the session is unknown."""
        ...
