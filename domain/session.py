"""The Session aggregate's rules: its identity, how it opens, what a valid turn is.

The rules that depend on the session's state (it exists, it is open, it is at the
version the client expected) are enforced by the event store in the append itself, under
the stream's lock: `must_exist`, `close` and `expected_version` of EventStore.append. So
deciding never loads or replays the session.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from domain.errors import ValidationError
from domain.events import (
    AssistantMessage,
    DomainEvent,
    JsonDict,
    SessionOpened,
    SystemMessage,
    ToolResult,
    UserMessage,
)

ROLES = ("system", "user", "assistant", "tool")
SESSION_ID_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:\-]{0,127}")
MAX_TURNS_PER_APPEND = 100


def stream_id_for(session_id: str) -> str:
    return f"session:{session_id}"


def check_session_id(session_id: str) -> str:
    if not SESSION_ID_RE.fullmatch(session_id):
        raise ValidationError(
            "session id must be 1-128 characters of letters, digits, '.', '_', ':' or '-', "
            "starting with a letter or digit",
            "id",
        )
    return session_id


@dataclass(frozen=True)
class TurnInput:
    """One turn as a client gives it, with its token count already computed."""

    role: str
    content: str
    tokens: int
    name: str | None = None
    tool_call_id: str | None = None
    tool_calls: list[JsonDict] | None = None
    model: str | None = None
    provider: str | None = None
    usage: JsonDict = field(default_factory=dict)
    cost: float = 0.0
    latency_ms: float | None = None
    finish_reason: str | None = None
    # When the turn was said, if not now: an imported conversation keeps its own times.
    occurred_at: datetime | None = None


# A client clock a little ahead of ours is tolerated; a turn from the future is not.
MAX_CLOCK_SKEW = timedelta(minutes=5)


def open_session(
    session_id: str, title: str | None, user_id: str | None, metadata: JsonDict | None
) -> SessionOpened:
    check_session_id(session_id)
    if title is not None and len(title) > 500:
        raise ValidationError("title is longer than 500 characters", "title")
    return SessionOpened(
        session_id=session_id, title=title, user_id=user_id, metadata=dict(metadata or {})
    )


def _occurred_at(where: str, turn: TurnInput, now: datetime | None) -> str | None:
    at = turn.occurred_at
    if at is None:
        return None
    if at.tzinfo is None or at.utcoffset() is None:
        raise ValidationError(
            f"{where}.occurred_at needs a time zone (e.g. 2023-05-08T13:56:00Z)",
            f"{where}.occurred_at",
        )
    if now is not None and at > now + MAX_CLOCK_SKEW:
        raise ValidationError(
            f"{where}.occurred_at is in the future ({at.isoformat()})", f"{where}.occurred_at"
        )
    return at.astimezone(UTC).isoformat()


def _turn_event(i: int, turn: TurnInput, now: datetime | None) -> DomainEvent:
    where = f"turns[{i}]"
    at = _occurred_at(where, turn, now)
    if turn.role not in ROLES:
        raise ValidationError(
            f"{where}.role must be one of {', '.join(ROLES)}, not {turn.role!r}", f"{where}.role"
        )
    if turn.role != "assistant":
        extras = {
            "tool_calls": turn.tool_calls,
            "model": turn.model,
            "provider": turn.provider,
            "finish_reason": turn.finish_reason,
        }
        given = [k for k, v in extras.items() if v is not None]
        if given:
            raise ValidationError(
                f"{where}.{given[0]} is only allowed on assistant turns", f"{where}.{given[0]}"
            )
    if turn.role == "tool":
        if not turn.tool_call_id:
            raise ValidationError(
                f"{where}.tool_call_id is required on tool turns", f"{where}.tool_call_id"
            )
        return ToolResult(
            tool_call_id=turn.tool_call_id,
            content=turn.content,
            tokens=turn.tokens,
            name=turn.name,
            occurred_at=at,
        )
    if turn.tool_call_id is not None:
        raise ValidationError(
            f"{where}.tool_call_id is only allowed on tool turns", f"{where}.tool_call_id"
        )
    if turn.role == "assistant":
        if not turn.content and not turn.tool_calls:
            raise ValidationError(
                f"{where}.content is empty and there are no tool_calls", f"{where}.content"
            )
        if turn.cost < 0:
            raise ValidationError(f"{where}.cost must not be negative", f"{where}.cost")
        return AssistantMessage(
            content=turn.content,
            tokens=turn.tokens,
            provider=turn.provider,
            model=turn.model,
            usage=dict(turn.usage),
            cost=turn.cost,
            latency_ms=turn.latency_ms,
            finish_reason=turn.finish_reason,
            tool_calls=turn.tool_calls,
            occurred_at=at,
        )
    if not turn.content:
        raise ValidationError(f"{where}.content must not be empty", f"{where}.content")
    if turn.role == "system":
        return SystemMessage(content=turn.content, tokens=turn.tokens, occurred_at=at)
    return UserMessage(content=turn.content, tokens=turn.tokens, name=turn.name, occurred_at=at)


def turn_events(turns: Sequence[TurnInput], now: datetime | None = None) -> list[DomainEvent]:
    """Validate `turns` and return their events. That the session exists and is open is
    checked by the event store under the stream's lock (a closed session's stream is
    closed), so no state has to be loaded to decide."""
    if not turns:
        raise ValidationError("turns must hold at least one turn", "turns")
    if len(turns) > MAX_TURNS_PER_APPEND:
        raise ValidationError(
            f"at most {MAX_TURNS_PER_APPEND} turns can be appended at once", "turns"
        )
    return [_turn_event(i, t, now) for i, t in enumerate(turns)]
