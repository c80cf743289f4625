"""The context window document: JSON round trip, prompt hash, the ContextAssembled event."""

from __future__ import annotations

import dataclasses
import hashlib
import json
from datetime import UTC, datetime, timedelta, timezone

import pytest

from domain.context import (
    CONTEXT_PROTOCOL_VERSION,
    Budget,
    BudgetShares,
    ContextMessage,
    ContextWindow,
    ToolCallRef,
    assemble,
    assembled_event,
)
from domain.context.window import build_window, make_section, place_current, prompt_hash
from domain.errors import ValidationError
from domain.hashing import canonical_json, normalize_json
from tests.unit.test_context_sessions import candidate, inputs_for, make_turns, summary_to

NOW = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


def rich_window(built_at: datetime = NOW) -> ContextWindow:
    turns = make_turns(100)
    inputs = inputs_for(
        turns,
        system_prompt="be brief",
        system_tokens=3,
        state={"city": "Lisbon"},
        state_tokens=5,
        summary=summary_to(90),
        candidates=[candidate(turns[10], vector_rank=1, embedding=[1.0, 0.0])],
    )
    return assemble(
        inputs,
        Budget(limit_tokens=1500, reserve_output_tokens=500),
        BudgetShares(recent=0.5, summary=0.15, retrieved=0.35),
        built_at=built_at,
    )


def test_the_document_has_the_protocol_fields() -> None:
    window = rich_window()
    data = window.to_dict()
    assert data["version"] == CONTEXT_PROTOCOL_VERSION == "1"
    assert data["session_id"] == "s-1"
    assert data["model"] == "gpt-test"
    assert data["strategy"] == "hybrid"
    assert data["budget_tokens"] == 1000
    assert data["used_tokens"] == sum(s["tokens"] for s in data["sections"])
    assert data["built_at"] == "2026-03-01T12:00:00+00:00"
    assert [s["kind"] for s in data["sections"]] == [
        "system",
        "state",
        "summary",
        "retrieved",
        "recent",
        "current",
    ]
    summary = data["sections"][2]
    assert summary["covers"] == [1, 181]
    retrieved = data["sections"][3]
    assert retrieved["sources"] == [m["source"] for m in retrieved["messages"]]


def test_to_dict_round_trips_through_json() -> None:
    window = rich_window(NOW.astimezone(timezone(timedelta(hours=2))))
    data = window.to_dict()
    text = json.dumps(data)
    assert json.loads(text) == data
    again = ContextWindow.from_dict(json.loads(text))
    assert again == window
    assert again.built_at == window.built_at
    # It is also valid for the event log's canonical encoding.
    assert normalize_json(data) == data
    canonical_json(data)


def test_tool_calls_round_trip() -> None:
    message = ContextMessage(
        "assistant",
        "",
        4,
        "recent",
        source=7,
        stream_version=3,
        tool_calls=(ToolCallRef("call-1", "lookup", '{"q": 1}'),),
    )
    section = make_section("recent", [message])
    window = build_window(
        session_id="s",
        model="m",
        budget_tokens=10,
        strategy="full",
        sections=[section],
        built_at=NOW,
    )
    assert ContextWindow.from_dict(json.loads(json.dumps(window.to_dict()))) == window


def test_from_dict_refuses_another_protocol_version() -> None:
    data = rich_window().to_dict() | {"version": "2"}
    with pytest.raises(ValidationError, match="version"):
        ContextWindow.from_dict(data)
    data = rich_window().to_dict()
    data["sections"][0]["kind"] = "memories"
    with pytest.raises(ValidationError, match="memories"):
        ContextWindow.from_dict(data)


def test_prompt_hash_is_stable() -> None:
    first, second = rich_window(), rich_window(NOW + timedelta(hours=1))
    assert first.prompt_hash == second.prompt_hash
    assert len(first.prompt_hash) == 64
    assert first.prompt_hash == prompt_hash(list(first.messages))


def test_prompt_hash_changes_with_content_role_and_order() -> None:
    a = ContextMessage("user", "hello", 5, "current")
    b = ContextMessage("assistant", "hi", 5, "recent")
    base = prompt_hash([b, a])
    assert prompt_hash([b, dataclasses.replace(a, content="hello!")]) != base
    assert prompt_hash([b, dataclasses.replace(a, role="system")]) != base
    assert prompt_hash([a, b]) != base
    # Token counts and sources are bookkeeping, not prompt.
    assert prompt_hash([dataclasses.replace(b, tokens=9, source=3), a]) == base


def test_build_window_orders_sections_and_drops_empty_ones() -> None:
    current = make_section("current", [ContextMessage("user", "q", 5, "current")])
    system = make_section("system", [ContextMessage("system", "s", 5, "system")])
    empty = make_section("retrieved", [], label_tokens=20)
    window = build_window(
        session_id="s",
        model="m",
        budget_tokens=100,
        strategy="hybrid",
        sections=[current, empty, system],
        built_at=NOW,
    )
    assert [s.kind for s in window.sections] == ["system", "current"]
    assert window.used_tokens == 10
    assert empty.tokens == 0  # no label without messages


def test_assembled_event_records_positions_and_counts_not_text() -> None:
    window = rich_window()
    event = assembled_event(window)
    assert event.model == "gpt-test"
    assert event.strategy == "hybrid"
    assert event.budget_tokens == window.budget_tokens
    assert event.used_tokens == window.used_tokens
    assert event.prompt_hash == window.prompt_hash
    assert [s["kind"] for s in event.sections] == [s.kind for s in window.sections]
    assert event.sections[2]["covers"] == [1, 181]
    assert "Lisbon" not in json.dumps(event.to_data())
    assert normalize_json(event.to_data()) == event.to_data()


def test_placing_the_current_turn_changes_its_place_and_nothing_else() -> None:
    window = rich_window()
    placed = place_current(window, stream_version=777, source=9_001)
    current = placed.section("current")
    assert current is not None and current.sources == (9_001,)
    assert [(m.stream_version, m.source) for m in current.messages] == [(777, 9_001)]
    assert placed.prompt_hash == window.prompt_hash == prompt_hash(placed.messages)
    assert placed.used_tokens == window.used_tokens
    others = [s for s in placed.sections if s.kind != "current"]
    assert others == [s for s in window.sections if s.kind != "current"]


def test_prompt_hash_is_the_sha256_of_the_canonical_json() -> None:
    """prompt_hash writes the JSON itself: byte for byte what canonical_json writes,
    whatever the text holds (quotes, escapes, control characters, non-ASCII, emoji)."""
    import hashlib
    import random

    from domain.hashing import canonical_json

    rng = random.Random(3)
    alphabet = ['"', "\\", "\n", "\t", "\x00", "\x1f", "\x7f", "é", "日本", "😀", "\u2028"]
    alphabet += ["a", " "]
    messages = [
        ContextMessage(
            rng.choice(["user", "assistant", "system", "tool"]),
            "".join(rng.choice(alphabet) for _ in range(rng.randrange(0, 30))),
            1,
            "recent",
        )
        for _ in range(200)
    ]
    for some in (messages, messages[:1], []):
        expected = canonical_json([{"role": m.role, "content": m.content} for m in some])
        assert prompt_hash(some) == hashlib.sha256(expected).hexdigest()


def test_prompt_hash_keeps_each_message_part_and_gives_the_same_hash() -> None:
    """Each message's part of the hash is kept on it (a recent turn's message recurs
    from window to window): hashing again, or an equal fresh message, gives the same."""
    a = ContextMessage("user", 'say "hi"\n', 5, "recent")
    b = ContextMessage("assistant", "héllo", 5, "recent")
    first = prompt_hash([a, b])
    assert "_hash_part" in a.__dict__
    assert prompt_hash([a, b]) == first
    assert prompt_hash([dataclasses.replace(a), dataclasses.replace(b)]) == first
    assert first == hashlib.sha256(canonical_json([
        {"content": 'say "hi"\n', "role": "user"}, {"content": "héllo", "role": "assistant"}
    ])).hexdigest()  # fmt: skip
