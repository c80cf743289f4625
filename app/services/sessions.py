"""Use cases over sessions: open, append turns, close, read. Each receives its ports."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

from domain.errors import (
    AlreadyExists,
    NotFound,
    SessionClosed,
    StreamClosed,
    StreamNotFound,
    WrongExpectedVersion,
)
from domain.events import JsonDict, NewEvent, RecordedEvent
from domain.events import SessionClosed as SessionClosedEvent
from domain.ids import new_session_id, uuid7
from domain.ports import SessionRepository, TokenCounter
from domain.read_models import SessionFilter, SessionPage, SessionView
from domain.session import (
    TurnInput,
    check_session_id,
    open_session,
    stream_id_for,
    turn_events,
)


@dataclass(frozen=True)
class RequestContext:
    """Who asked, for the events' metadata."""

    tenant_id: str
    actor: str
    request_id: str | None = None

    def metadata(self, idempotency_key: str | None) -> JsonDict:
        meta: JsonDict = {"actor": self.actor}
        if self.request_id:
            meta["request_id"] = self.request_id
        if idempotency_key:
            meta["idempotency_key"] = idempotency_key
        return meta


@dataclass(frozen=True)
class TurnSpec:
    """A turn as the API received it, before its tokens are counted."""

    role: str
    content: str
    name: str | None = None
    tool_call_id: str | None = None
    tool_calls: list[JsonDict] | None = None
    model: str | None = None
    provider: str | None = None
    usage: JsonDict | None = None
    cost: float = 0.0
    latency_ms: float | None = None
    finish_reason: str | None = None
    occurred_at: datetime | None = None


@dataclass(frozen=True)
class AppendOutcome:
    session_id: str
    first_version: int
    last_version: int
    events: tuple[RecordedEvent, ...]
    replayed: bool


async def create_session(
    repo: SessionRepository,
    ctx: RequestContext,
    *,
    session_id: str | None = None,
    title: str | None = None,
    user_id: str | None = None,
    metadata: JsonDict | None = None,
    idempotency_key: str | None = None,
) -> tuple[SessionView, bool]:
    """Open a session; returns its view and whether this was a replay of an earlier call."""
    sid = check_session_id(session_id) if session_id is not None else new_session_id()
    event = open_session(sid, title, user_id, metadata)
    new = [NewEvent.from_domain(event, uuid7(), ctx.metadata(idempotency_key))]
    try:
        result = await repo.events.append(
            ctx.tenant_id,
            stream_id_for(sid),
            new,
            expected_version=0,
            idempotency_key=idempotency_key,
        )
    except WrongExpectedVersion:
        raise AlreadyExists(
            f"session {sid!r} already exists; choose another id or append to it"
        ) from None
    view = await repo.get(ctx.tenant_id, sid)
    assert view is not None  # projected in the append's transaction
    return view, result.replayed


def count_turns(turns: Sequence[TurnSpec], counter: TokenCounter) -> list[TurnInput]:
    return [
        TurnInput(
            role=t.role,
            content=t.content,
            tokens=counter.count(t.content, t.model),
            name=t.name,
            tool_call_id=t.tool_call_id,
            tool_calls=t.tool_calls,
            model=t.model,
            provider=t.provider,
            usage=dict(t.usage or {}),
            cost=t.cost,
            latency_ms=t.latency_ms,
            finish_reason=t.finish_reason,
            occurred_at=t.occurred_at,
        )
        for t in turns
    ]


async def append_turns(
    repo: SessionRepository,
    counter: TokenCounter,
    ctx: RequestContext,
    session_id: str,
    turns: Sequence[TurnSpec],
    *,
    expected_version: int | None = None,
    idempotency_key: str | None = None,
) -> AppendOutcome:
    """Append turns as one transaction: all are stored, in order, exactly once, or none.

    The store checks, under the stream's lock, that the session exists and is open (a
    closed session's stream is closed), the expected version, and the idempotency key
    first, so a retry gets the first answer even if the session moved on since."""
    # Validation fails before any I/O.
    events = turn_events(count_turns(turns, counter), now=datetime.now(UTC))
    meta = ctx.metadata(idempotency_key)
    new = [NewEvent.from_domain(e, uuid7(), meta) for e in events]
    try:
        result = await repo.events.append(
            ctx.tenant_id,
            stream_id_for(session_id),
            new,
            expected_version=expected_version,
            idempotency_key=idempotency_key,
            must_exist=True,
        )
    except StreamNotFound:
        raise NotFound(f"session {session_id!r} does not exist; create it first") from None
    except StreamClosed:
        raise SessionClosed(f"session {session_id!r} is closed; open a new session") from None
    return _outcome(session_id, result.events, replayed=result.replayed)


async def close_session(
    repo: SessionRepository,
    ctx: RequestContext,
    session_id: str,
    reason: str | None = None,
) -> SessionView:
    event = SessionClosedEvent(reason=reason)
    try:
        await repo.events.append(
            ctx.tenant_id,
            stream_id_for(session_id),
            [NewEvent.from_domain(event, uuid7(), ctx.metadata(None))],
            must_exist=True,
            close=True,
        )
    except StreamNotFound:
        raise NotFound(f"session {session_id!r} does not exist") from None
    except StreamClosed:
        raise SessionClosed(f"session {session_id!r} is already closed") from None
    view = await repo.get(ctx.tenant_id, session_id)
    assert view is not None
    return view


def _outcome(session_id: str, events: Sequence[RecordedEvent], replayed: bool) -> AppendOutcome:
    return AppendOutcome(
        session_id=session_id,
        first_version=events[0].stream_version,
        last_version=events[-1].stream_version,
        events=tuple(events),
        replayed=replayed,
    )


async def get_session(repo: SessionRepository, tenant_id: str, session_id: str) -> SessionView:
    view = await repo.get(tenant_id, session_id)
    if view is None:
        raise NotFound(f"session {session_id!r} does not exist")
    return view


async def list_sessions(
    repo: SessionRepository,
    tenant_id: str,
    filters: SessionFilter,
    cursor: str | None,
    limit: int,
) -> SessionPage:
    return await repo.list_page(tenant_id, filters, cursor, limit)


async def read_events(
    repo: SessionRepository, tenant_id: str, session_id: str, after: int, limit: int
) -> list[RecordedEvent]:
    events = await repo.read_events(tenant_id, session_id, after, limit)
    if events is None:
        raise NotFound(f"session {session_id!r} does not exist")
    return events
