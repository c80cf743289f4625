"""Event types, the envelopes they travel in, and the registry that reads old versions.

A domain event is a frozen dataclass holding only its payload. Its type name and schema
version are class attributes; the registry maps (type, version) back to the class and
upcasts payloads written by older schema versions before building the object.
"""

from __future__ import annotations

import dataclasses
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, ClassVar, TypeVar

JsonDict = dict[str, Any]


@dataclass(frozen=True)
class DomainEvent:
    """Base of every event payload class."""

    type_name: ClassVar[str] = ""
    schema_version: ClassVar[int] = 1

    def to_data(self) -> JsonDict:
        """The payload, without fields left at their defaults (decoding restores them):
        every byte stored is written to the WAL, the log and the hash, forever.
        Shallow: nested values are copied (and checked) by normalize_json on append."""
        data: JsonDict = {}
        for name, default, factory in _defaults(type(self)):
            value = getattr(self, name)
            if default is not dataclasses.MISSING:
                if value == default:
                    continue
            elif factory is not dataclasses.MISSING and value == factory():
                continue
            data[name] = value
        return data


_Defaults = tuple[tuple[str, Any, Any], ...]
_DEFAULTS: dict[type, _Defaults] = {}


def _defaults(cls: type) -> _Defaults:
    """Each field's name, default and default factory, read once a class
    (dataclasses.fields() builds its tuple at every call)."""
    known = _DEFAULTS.get(cls)
    if known is None:
        known = tuple((f.name, f.default, f.default_factory) for f in dataclasses.fields(cls))
        _DEFAULTS[cls] = known
    return known


@dataclass(frozen=True)
class NewEvent:
    """An event about to be appended: its payload already serialized, its id chosen."""

    event_id: uuid.UUID
    type: str
    schema_version: int
    data: JsonDict
    metadata: JsonDict = field(default_factory=dict)

    @classmethod
    def from_domain(
        cls, event: DomainEvent, event_id: uuid.UUID, metadata: Mapping[str, Any] | None = None
    ) -> NewEvent:
        return cls(
            event_id=event_id,
            type=event.type_name,
            schema_version=event.schema_version,
            data=event.to_data(),
            metadata=dict(metadata or {}),
        )


@dataclass(frozen=True)
class RecordedEvent:
    """An event as the log holds it: position, stream version, time and hash chain."""

    global_position: int
    transaction_id: int
    event_id: uuid.UUID
    tenant_id: str
    stream_id: str
    stream_version: int
    type: str
    schema_version: int
    data: JsonDict
    metadata: JsonDict
    recorded_at: datetime
    prev_hash: bytes
    hash: bytes


@dataclass(frozen=True)
class AppendResult:
    """What an append wrote (or, for a repeated idempotency key, what it wrote the first time)."""

    tenant_id: str
    stream_id: str
    first_version: int
    last_version: int
    events: tuple[RecordedEvent, ...]
    replayed: bool = False


@dataclass(frozen=True, order=True)
class Checkpoint:
    """A reader's place in the whole log: (transaction id, global position)."""

    transaction_id: int = 0
    global_position: int = 0


# --- the first set of event types -------------------------------------------------------


@dataclass(frozen=True)
class SessionOpened(DomainEvent):
    type_name: ClassVar[str] = "SessionOpened"
    session_id: str
    title: str | None = None
    user_id: str | None = None
    metadata: JsonDict = field(default_factory=dict)


@dataclass(frozen=True)
class UserMessage(DomainEvent):
    type_name: ClassVar[str] = "UserMessage"
    content: str
    tokens: int
    name: str | None = None
    occurred_at: str | None = None  # ISO 8601, when given: the turn's time (else recorded_at)


@dataclass(frozen=True)
class SystemMessage(DomainEvent):
    type_name: ClassVar[str] = "SystemMessage"
    content: str
    tokens: int
    occurred_at: str | None = None


@dataclass(frozen=True)
class AssistantMessage(DomainEvent):
    type_name: ClassVar[str] = "AssistantMessage"
    content: str
    tokens: int
    provider: str | None = None
    model: str | None = None
    usage: JsonDict = field(default_factory=dict)
    cost: float = 0.0
    latency_ms: float | None = None
    finish_reason: str | None = None
    cached: bool = False
    tool_calls: list[JsonDict] | None = None
    occurred_at: str | None = None


@dataclass(frozen=True)
class ToolCall(DomainEvent):
    type_name: ClassVar[str] = "ToolCall"
    tool_call_id: str
    name: str
    arguments: str


@dataclass(frozen=True)
class ToolResult(DomainEvent):
    type_name: ClassVar[str] = "ToolResult"
    tool_call_id: str
    content: str
    tokens: int
    name: str | None = None
    occurred_at: str | None = None


@dataclass(frozen=True)
class ContextAssembled(DomainEvent):
    type_name: ClassVar[str] = "ContextAssembled"
    model: str
    strategy: str
    budget_tokens: int
    used_tokens: int
    sections: list[JsonDict]
    prompt_hash: str


@dataclass(frozen=True)
class SummaryRecorded(DomainEvent):
    type_name: ClassVar[str] = "SummaryRecorded"
    level: int
    from_version: int
    to_version: int
    text: str
    tokens: int
    summarizer: str


@dataclass(frozen=True)
class StateUpdated(DomainEvent):
    type_name: ClassVar[str] = "StateUpdated"
    state: JsonDict


@dataclass(frozen=True)
class PolicyApplied(DomainEvent):
    type_name: ClassVar[str] = "PolicyApplied"
    policy: str
    decision: str
    reason: str
    details: JsonDict = field(default_factory=dict)


@dataclass(frozen=True)
class SessionCompacted(DomainEvent):
    type_name: ClassVar[str] = "SessionCompacted"
    up_to_version: int
    summary_version: int


@dataclass(frozen=True)
class SessionClosed(DomainEvent):
    type_name: ClassVar[str] = "SessionClosed"
    reason: str | None = None


@dataclass(frozen=True)
class SubjectErased(DomainEvent):
    type_name: ClassVar[str] = "SubjectErased"
    subject: str
    reason: str


# Events that are turns of the conversation, with the role each one plays.
MESSAGE_ROLES: dict[str, str] = {
    UserMessage.type_name: "user",
    AssistantMessage.type_name: "assistant",
    SystemMessage.type_name: "system",
    ToolResult.type_name: "tool",
}


# --- registry and upcasting -------------------------------------------------------------

E = TypeVar("E", bound=type[DomainEvent])
Upcaster = Callable[[JsonDict], JsonDict]


class UnknownEventType(LookupError):
    pass


class EventRegistry:
    """Maps a stored (type, schema_version) to its class, upcasting older payloads first."""

    def __init__(self) -> None:
        self._classes: dict[str, type[DomainEvent]] = {}
        self._upcasters: dict[tuple[str, int], Upcaster] = {}

    def register(self, cls: E) -> E:
        if not cls.type_name:
            raise ValueError(f"{cls.__name__} has no type_name")
        if cls.type_name in self._classes:
            raise ValueError(f"event type {cls.type_name!r} is registered twice")
        self._classes[cls.type_name] = cls
        return cls

    def upcaster(self, type_name: str, from_version: int) -> Callable[[Upcaster], Upcaster]:
        """Register a function that turns a payload of `from_version` into `from_version + 1`."""

        def decorate(fn: Upcaster) -> Upcaster:
            self._upcasters[(type_name, from_version)] = fn
            return fn

        return decorate

    def class_for(self, type_name: str) -> type[DomainEvent]:
        try:
            return self._classes[type_name]
        except KeyError:
            raise UnknownEventType(type_name) from None

    def upcast(self, type_name: str, schema_version: int, data: JsonDict) -> JsonDict:
        current = self.class_for(type_name).schema_version
        if schema_version > current:
            raise ValueError(
                f"{type_name} v{schema_version} is newer than this code knows (v{current})"
            )
        version = schema_version
        while version < current:
            step = self._upcasters.get((type_name, version))
            if step is None:
                raise ValueError(f"no upcaster for {type_name} v{version} -> v{version + 1}")
            data = step(dict(data))
            version += 1
        return data

    def decode(self, type_name: str, schema_version: int, data: JsonDict) -> DomainEvent:
        cls = self.class_for(type_name)
        payload = self.upcast(type_name, schema_version, data)
        names = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in payload.items() if k in names})

    def decode_recorded(self, event: RecordedEvent) -> DomainEvent:
        return self.decode(event.type, event.schema_version, event.data)


registry = EventRegistry()
for _cls in (
    SessionOpened,
    UserMessage,
    SystemMessage,
    AssistantMessage,
    ToolCall,
    ToolResult,
    ContextAssembled,
    SummaryRecorded,
    StateUpdated,
    PolicyApplied,
    SessionCompacted,
    SessionClosed,
    SubjectErased,
):
    registry.register(_cls)
