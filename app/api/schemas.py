"""Request and response bodies of the HTTP API, as msgspec structs (validated at the edge)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

import msgspec
from msgspec import Meta

from domain.events import RecordedEvent
from domain.read_models import SessionView
from domain.session import MAX_TURNS_PER_APPEND, SESSION_ID_RE

SessionId = Annotated[
    str, Meta(min_length=1, max_length=128, pattern=rf"^{SESSION_ID_RE.pattern}$")
]
Role = Literal["system", "user", "assistant", "tool"]
ShortText = Annotated[str, Meta(max_length=200)]


class CreateSession(msgspec.Struct, forbid_unknown_fields=True):
    id: SessionId | None = None
    title: Annotated[str, Meta(max_length=500)] | None = None
    user_id: Annotated[str, Meta(min_length=1, max_length=200)] | None = None
    metadata: dict[str, Any] = msgspec.field(default_factory=dict)


class Usage(msgspec.Struct, forbid_unknown_fields=False):
    input_tokens: Annotated[int, Meta(ge=0)] | None = None
    output_tokens: Annotated[int, Meta(ge=0)] | None = None
    cached_tokens: Annotated[int, Meta(ge=0)] | None = None


class Turn(msgspec.Struct, forbid_unknown_fields=True):
    role: Role
    content: Annotated[str, Meta(max_length=1_000_000)] = ""
    name: ShortText | None = None
    tool_call_id: ShortText | None = None
    tool_calls: list[dict[str, Any]] | None = None
    # What an application may record about an assistant turn it got elsewhere.
    model: ShortText | None = None
    provider: ShortText | None = None
    usage: Usage | None = None
    cost: Annotated[float, Meta(ge=0)] = 0.0
    latency_ms: Annotated[float, Meta(ge=0)] | None = None
    finish_reason: ShortText | None = None
    # When the turn was said (RFC 3339 with a time zone), for imported conversations;
    # default: when it is appended.
    occurred_at: datetime | None = None


class AppendTurns(msgspec.Struct, forbid_unknown_fields=True):
    turns: Annotated[list[Turn], Meta(min_length=1, max_length=MAX_TURNS_PER_APPEND)]
    expected_version: Annotated[int, Meta(ge=0)] | None = None


class CloseSession(msgspec.Struct, forbid_unknown_fields=True):
    reason: Annotated[str, Meta(max_length=500)] | None = None


class SessionOut(msgspec.Struct):
    id: str
    tenant_id: str
    title: str | None
    user_id: str | None
    status: str
    metadata: dict[str, Any]
    created_at: datetime
    last_activity_at: datetime
    closed_at: datetime | None
    turn_count: int
    tokens_total: int
    cost_total: str  # decimal as a string: exact, unlike a float
    version: int

    @classmethod
    def of(cls, v: SessionView) -> SessionOut:
        return cls(
            id=v.session_id,
            tenant_id=v.tenant_id,
            title=v.title,
            user_id=v.user_id,
            status=v.status,
            metadata=v.metadata,
            created_at=v.created_at,
            last_activity_at=v.last_activity_at,
            closed_at=v.closed_at,
            turn_count=v.turn_count,
            tokens_total=v.tokens_total,
            cost_total=format(v.cost_total.normalize(), "f"),
            version=v.version,
        )


class SessionList(msgspec.Struct):
    data: list[SessionOut]
    next_cursor: str | None
    has_more: bool


class EventOut(msgspec.Struct):
    global_position: int
    event_id: str
    stream_id: str
    stream_version: int
    type: str
    schema_version: int
    data: dict[str, Any]
    metadata: dict[str, Any]
    recorded_at: datetime
    prev_hash: str
    hash: str

    @classmethod
    def of(cls, e: RecordedEvent) -> EventOut:
        return cls(
            global_position=e.global_position,
            event_id=str(e.event_id),
            stream_id=e.stream_id,
            stream_version=e.stream_version,
            type=e.type,
            schema_version=e.schema_version,
            data=e.data,
            metadata=e.metadata,
            recorded_at=e.recorded_at,
            prev_hash=e.prev_hash.hex(),
            hash=e.hash.hex(),
        )


class EventPage(msgspec.Struct):
    data: list[EventOut]
    next_after: int | None
    has_more: bool


class AppendedEvent(msgspec.Struct):
    event_id: str
    stream_version: int
    global_position: int
    type: str
    tokens: int | None


class AppendResultOut(msgspec.Struct):
    session_id: str
    first_version: int
    last_version: int
    replayed: bool
    events: list[AppendedEvent]


class Health(msgspec.Struct):
    status: str
    checks: dict[str, str] = msgspec.field(default_factory=dict)
