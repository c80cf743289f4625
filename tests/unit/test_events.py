"""The event registry: every registered type survives a round trip through the log's
JSON, and payloads written by older schema versions are upcast before decoding."""

from __future__ import annotations

import dataclasses
import json
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import ClassVar

import pytest

from domain import events as ev
from domain.events import (
    DomainEvent,
    EventRegistry,
    NewEvent,
    RecordedEvent,
    UnknownEventType,
    registry,
)
from domain.hashing import GENESIS_HASH, canonical_json, normalize_json

SAMPLES: list[DomainEvent] = [
    ev.SessionOpened(session_id="s1", title="Title ü", user_id="u1", metadata={"k": [1, 2]}),
    ev.UserMessage(content="hello", tokens=2, name="alice"),
    ev.SystemMessage(content="be brief", tokens=2),
    ev.AssistantMessage(
        content="hi",
        tokens=1,
        provider="openai",
        model="gpt-4o",
        usage={"prompt_tokens": 10, "completion_tokens": 1},
        cost=0.000123,
        latency_ms=12.5,
        finish_reason="stop",
        cached=True,
        tool_calls=[{"id": "c1", "type": "function", "function": {"name": "f"}}],
    ),
    ev.ToolCall(tool_call_id="c1", name="lookup", arguments='{"q": 1}'),
    ev.ToolResult(tool_call_id="c1", content="42", tokens=1, name="lookup"),
    ev.ContextAssembled(
        model="gpt-4o",
        strategy="hybrid",
        budget_tokens=1000,
        used_tokens=900,
        sections=[{"kind": "recent", "tokens": 900, "sources": [1, 2]}],
        prompt_hash="ab" * 32,
    ),
    ev.SummaryRecorded(
        level=0, from_version=1, to_version=9, text="summary", tokens=3, summarizer="extractive"
    ),
    ev.StateUpdated(state={"step": 2, "done": False, "nested": {"a": None}}),
    ev.PolicyApplied(policy="redaction", decision="redacted", reason="email", details={"n": 1}),
    ev.SessionCompacted(up_to_version=9, summary_version=10),
    ev.SessionClosed(reason="done"),
    ev.SubjectErased(subject="user:u1", reason="gdpr"),
]


def test_samples_cover_every_event_type_of_the_module() -> None:
    defined = {
        cls
        for cls in DomainEvent.__subclasses__()
        if cls.__module__ == ev.__name__ and cls.type_name
    }
    assert {type(s) for s in SAMPLES} == defined
    for cls in defined:
        assert registry.class_for(cls.type_name) is cls


@pytest.mark.parametrize("event", SAMPLES, ids=lambda e: type(e).__name__)
def test_registry_round_trip(event: DomainEvent) -> None:
    new = NewEvent.from_domain(event, uuid.uuid4(), {"actor": "t"})
    assert new.type == type(event).type_name
    assert new.schema_version == type(event).schema_version
    assert new.metadata == {"actor": "t"}
    # What the log would give back: normalized, canonical JSON, parsed again.
    stored = json.loads(canonical_json(normalize_json(new.data)))
    decoded = registry.decode(new.type, new.schema_version, stored)
    assert type(decoded) is type(event)
    assert decoded == event

    recorded = RecordedEvent(
        global_position=1,
        transaction_id=1,
        event_id=new.event_id,
        tenant_id="t",
        stream_id="session:s1",
        stream_version=1,
        type=new.type,
        schema_version=new.schema_version,
        data=stored,
        metadata=new.metadata,
        recorded_at=datetime.now(UTC),
        prev_hash=GENESIS_HASH,
        hash=GENESIS_HASH,
    )
    assert registry.decode_recorded(recorded) == event


def test_decode_ignores_fields_the_class_does_not_know() -> None:
    decoded = registry.decode("UserMessage", 1, {"content": "x", "tokens": 1, "extra": True})
    assert decoded == ev.UserMessage(content="x", tokens=1)


def test_unknown_type_raises() -> None:
    with pytest.raises(UnknownEventType):
        registry.decode("NoSuchEvent", 1, {})


# --- upcasting ----------------------------------------------------------------------------


@dataclass(frozen=True)
class NoteTaken(DomainEvent):
    """v1 stored {"body": ...}; v2 calls the field `text` and adds `words`."""

    type_name: ClassVar[str] = "TestNoteTaken"
    schema_version: ClassVar[int] = 2
    text: str
    words: int = 0


@pytest.fixture
def fresh() -> EventRegistry:
    reg = EventRegistry()
    reg.register(NoteTaken)

    @reg.upcaster("TestNoteTaken", 1)
    def rename_body(data: dict[str, object]) -> dict[str, object]:
        data["text"] = data.pop("body")
        return data

    return reg


def test_v1_payload_is_upcast_to_v2(fresh: EventRegistry) -> None:
    v1 = {"body": "remember the milk"}
    decoded = fresh.decode("TestNoteTaken", 1, v1)
    assert decoded == NoteTaken(text="remember the milk")
    assert v1 == {"body": "remember the milk"}  # the stored payload is not mutated


def test_current_version_is_decoded_as_is(fresh: EventRegistry) -> None:
    assert fresh.decode("TestNoteTaken", 2, {"text": "t", "words": 1}) == NoteTaken("t", 1)


def test_upcasting_chains_versions() -> None:
    @dataclass(frozen=True)
    class Chained(DomainEvent):
        type_name: ClassVar[str] = "TestChained"
        schema_version: ClassVar[int] = 3
        text: str
        words: int

    reg = EventRegistry()
    reg.register(Chained)
    reg.upcaster("TestChained", 1)(lambda d: {"text": d["body"]})
    reg.upcaster("TestChained", 2)(lambda d: {**d, "words": len(d["text"].split())})
    assert reg.decode("TestChained", 1, {"body": "a b c"}) == Chained("a b c", 3)
    assert reg.decode("TestChained", 2, {"text": "a b"}) == Chained("a b", 2)


def test_missing_upcaster_is_a_clear_error() -> None:
    reg = EventRegistry()
    reg.register(NoteTaken)
    with pytest.raises(ValueError, match=r"no upcaster for TestNoteTaken v1 -> v2"):
        reg.decode("TestNoteTaken", 1, {"body": "x"})


def test_too_new_version_is_a_clear_error(fresh: EventRegistry) -> None:
    with pytest.raises(ValueError, match=r"TestNoteTaken v3 is newer than this code knows \(v2\)"):
        fresh.decode("TestNoteTaken", 3, {"text": "x"})


def test_registering_twice_or_without_a_type_name_fails() -> None:
    reg = EventRegistry()
    reg.register(NoteTaken)
    with pytest.raises(ValueError, match="registered twice"):
        reg.register(NoteTaken)

    @dataclass(frozen=True)
    class Nameless(DomainEvent):
        x: int = 0

    with pytest.raises(ValueError, match="no type_name"):
        reg.register(Nameless)


def test_to_data_is_a_plain_dict_of_the_fields() -> None:
    event = ev.StateUpdated(state={"a": [1, {"b": 2}]})
    data = event.to_data()
    assert data == {"state": {"a": [1, {"b": 2}]}}
    assert set(data) == {f.name for f in dataclasses.fields(event)}
