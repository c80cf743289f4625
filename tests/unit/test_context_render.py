"""Rendering a window into OpenAI chat messages and Anthropic Messages."""

from __future__ import annotations

import itertools
import random
from datetime import UTC, datetime

from domain.context import (
    Budget,
    BudgetShares,
    ContextMessage,
    ContextWindow,
    ToolCallRef,
    anthropic_messages,
    assemble,
    openai_messages,
)
from domain.context.render import (
    ANTHROPIC_OPENING,
    EMPTY_TEXT,
    OTHER_SESSION,
    RETRIEVED_LABEL,
    STATE_LABEL,
    SUMMARY_LABEL,
    preamble,
)
from domain.context.window import SectionKind, build_window, make_section
from tests.unit.test_context_sessions import (
    candidate,
    inputs_for,
    make_turns,
    random_session,
    summary_to,
)

NOW = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


def window_of(*sections: tuple[SectionKind, list[ContextMessage]]) -> ContextWindow:
    return build_window(
        session_id="s",
        model="m",
        budget_tokens=10_000,
        strategy="hybrid",
        sections=[make_section(kind, messages) for kind, messages in sections],
        built_at=NOW,
    )


def msg(role: str, content: str, kind: SectionKind = "recent", **kw: object) -> ContextMessage:
    return ContextMessage(role, content, 5, kind, **kw)  # type: ignore[arg-type]


def full_window() -> ContextWindow:
    turns = make_turns(100)
    inputs = inputs_for(
        turns,
        system_prompt="You are a travel agent.",
        system_tokens=6,
        state={"city": "Lisbon"},
        state_tokens=5,
        summary=summary_to(90),
        candidates=[candidate(turns[10], vector_rank=1)],
    )
    return assemble(
        inputs,
        Budget(limit_tokens=1500, reserve_output_tokens=500),
        BudgetShares(recent=0.5, summary=0.15, retrieved=0.35),
        built_at=NOW,
    )


# --- OpenAI -----------------------------------------------------------------------------------


def test_openai_puts_one_system_message_first_then_the_turns_in_order() -> None:
    window = full_window()
    out = openai_messages(window)
    assert out[0]["role"] == "system"
    system = out[0]["content"]
    assert system.startswith("You are a travel agent.\n\n")
    assert f'{STATE_LABEL}\n{{"city": "Lisbon"}}' in system
    assert f"{SUMMARY_LABEL}\nsummary of turns 1-90" in system
    assert f"{RETRIEVED_LABEL}\n\nuser: turn 11\n\nassistant: turn 12" in system
    assert system.index(STATE_LABEL) < system.index(SUMMARY_LABEL) < system.index(RETRIEVED_LABEL)
    rest = out[1:]
    assert [m["content"] for m in rest] == [f"turn {s}" for s in range(91, 101)]
    assert [m["role"] for m in rest] == ["user", "assistant"] * 5
    assert all(m["role"] != "system" for m in rest)


def test_openai_without_preamble_has_no_system_message() -> None:
    window = window_of(("current", [msg("user", "hello", "current")]))
    assert openai_messages(window) == [{"role": "user", "content": "hello"}]
    assert preamble(window) is None


def test_openai_keeps_a_complete_tool_exchange_structured() -> None:
    calls = (ToolCallRef("c1", "weather", '{"city":"Lisbon"}'), ToolCallRef("c2", "time", "{}"))
    window = window_of(
        (
            "recent",
            [
                msg("user", "weather and time?"),
                msg("assistant", "", tool_calls=calls),
                msg("tool", "sunny", tool_call_id="c1", name="weather"),
                msg("tool", "noon", tool_call_id="c2", name="time"),
            ],
        ),
        ("current", [msg("assistant", "Sunny, noon.", "current")]),
    )
    out = openai_messages(window)
    assert out[1] == {
        "role": "assistant",
        "content": None,
        "tool_calls": [
            {
                "id": "c1",
                "type": "function",
                "function": {"name": "weather", "arguments": '{"city":"Lisbon"}'},
            },
            {"id": "c2", "type": "function", "function": {"name": "time", "arguments": "{}"}},
        ],
    }
    assert out[2] == {"role": "tool", "tool_call_id": "c1", "content": "sunny"}
    assert out[3] == {"role": "tool", "tool_call_id": "c2", "content": "noon"}


def test_openai_writes_a_cut_tool_exchange_as_text() -> None:
    calls = (ToolCallRef("c1", "weather", "{}"), ToolCallRef("c2", "time", "{}"))
    window = window_of(
        (
            "recent",
            [
                msg("tool", "orphan result", tool_call_id="c0", name="search"),
                msg("assistant", "checking", tool_calls=calls),
                msg("tool", "sunny", tool_call_id="c1", name="weather"),  # c2 unanswered
            ],
        ),
        ("current", [msg("user", "well?", "current")]),
    )
    out = openai_messages(window)
    assert out == [
        {"role": "user", "content": "[result of tool search]\norphan result"},
        {
            "role": "assistant",
            "content": "checking\n[called tool weather({})]\n[called tool time({})]",
        },
        {"role": "user", "content": "[result of tool weather]\nsunny"},
        {"role": "user", "content": "well?"},
    ]
    assert all(m["role"] != "tool" and "tool_calls" not in m for m in out)


def test_openai_passes_valid_names_only() -> None:
    window = window_of(
        ("recent", [msg("user", "a", name="ada_l"), msg("user", "b", name="Ada Lovelace")]),
        ("current", [msg("user", "c", "current")]),
    )
    out = openai_messages(window)
    assert out[0] == {"role": "user", "content": "a", "name": "ada_l"}
    assert "name" not in out[1]


# --- Anthropic --------------------------------------------------------------------------------


def test_anthropic_puts_the_preamble_in_system_and_alternates() -> None:
    window = full_window()
    system, messages = anthropic_messages(window)
    assert system == preamble(window)
    assert system is not None and system.startswith("You are a travel agent.")
    assert [m["content"] for m in messages] == [f"turn {s}" for s in range(91, 101)]
    assert [m["role"] for m in messages] == ["user", "assistant"] * 5


def test_anthropic_merges_same_role_messages_and_maps_tools_and_system_turns() -> None:
    window = window_of(
        (
            "recent",
            [
                msg("user", "first"),
                msg("user", "second"),
                msg("assistant", "let me look", tool_calls=(ToolCallRef("c1", "find", "{}"),)),
                msg("tool", "found it", tool_call_id="c1", name="find"),
                msg("system", "be brief from now on"),
            ],
        ),
        ("current", [msg("user", "so?", "current")]),
    )
    system, messages = anthropic_messages(window)
    assert system is None
    assert messages == [
        {"role": "user", "content": "first\n\nsecond"},
        {"role": "assistant", "content": "let me look\n[called tool find({})]"},
        {
            "role": "user",
            "content": "[result of tool find]\nfound it\n\n[system note]\nbe brief from now on"
            "\n\nso?",
        },
    ]


def test_anthropic_opens_with_a_user_turn_and_has_no_blank_text() -> None:
    window = window_of(
        ("recent", [msg("assistant", "earlier answer"), msg("user", "   ")]),
        ("current", [msg("assistant", "prefill  \n", "current")]),
    )
    _, messages = anthropic_messages(window)
    assert messages == [
        {"role": "user", "content": ANTHROPIC_OPENING},
        {"role": "assistant", "content": "earlier answer"},
        {"role": "user", "content": EMPTY_TEXT},
        {"role": "assistant", "content": "prefill"},
    ]


def random_message(rng: random.Random, kind: SectionKind) -> ContextMessage:
    role = rng.choice(["user", "user", "assistant", "assistant", "tool", "system"])
    content = rng.choice(["", " ", "text", "more text\n", "x" * 20])
    calls: tuple[ToolCallRef, ...] = ()
    if role == "assistant" and rng.random() < 0.3:
        calls = tuple(ToolCallRef(f"c{i}", "fn", "{}") for i in range(rng.randint(1, 2)))
    tool_call_id = f"c{rng.randint(0, 2)}" if role == "tool" else None
    return ContextMessage(role, content, 5, kind, tool_calls=calls, tool_call_id=tool_call_id)


def test_anthropic_alternation_holds_for_any_input() -> None:
    rng = random.Random(5)
    for _ in range(500):
        recent = [random_message(rng, "recent") for _ in range(rng.randint(0, 12))]
        window = window_of(("recent", recent), ("current", [random_message(rng, "current")]))
        _, messages = anthropic_messages(window)
        assert messages and messages[0]["role"] == "user"
        roles = [m["role"] for m in messages]
        assert set(roles) <= {"user", "assistant"}
        assert all(a != b for a, b in itertools.pairwise(roles))
        assert all(m["content"].strip() for m in messages)
        if roles[-1] == "assistant":
            assert messages[-1]["content"] == messages[-1]["content"].rstrip()


def test_openai_tool_messages_always_answer_a_preceding_call() -> None:
    rng = random.Random(6)
    for _ in range(500):
        recent = [random_message(rng, "recent") for _ in range(rng.randint(0, 12))]
        window = window_of(("recent", recent), ("current", [random_message(rng, "current")]))
        out = openai_messages(window)
        open_calls: set[str] = set()
        for m in out:
            if m["role"] == "tool":
                assert m["tool_call_id"] in open_calls
                open_calls.discard(m["tool_call_id"])
            else:
                assert not open_calls, "a tool call left unanswered"
                open_calls = {c["id"] for c in m.get("tool_calls", [])}
        assert not open_calls


def test_rendering_keeps_time_order_for_random_sessions() -> None:
    rng = random.Random(8)
    for _ in range(100):
        inputs = random_session(rng)
        budget = Budget(limit_tokens=rng.randint(2000, 20_000))
        window = assemble(inputs, budget, built_at=NOW)
        turns = [m for s in window.sections if s.kind in ("recent", "current") for m in s.messages]
        rendered = [m for m in openai_messages(window) if m["role"] != "system"]
        assert [m["content"] for m in rendered] == [t.content for t in turns]
        system, _ = anthropic_messages(window)
        retrieved = window.section("retrieved")
        if retrieved is not None:
            assert system is not None
            positions = [system.index(f": {m.content}\n") for m in retrieved.messages[:-1]]
            assert positions == sorted(positions)


def test_a_tool_turn_in_retrieved_is_marked_in_the_transcript() -> None:
    window = window_of(
        ("retrieved", [msg("tool", "42", "retrieved", name="calc", stream_version=11)]),
        ("current", [msg("user", "and?", "current")]),
    )
    text = preamble(window)
    assert text == f"{RETRIEVED_LABEL}\n\ntool (calc): [result of tool calc]\n42"


def test_a_turn_from_another_session_is_marked() -> None:
    window = window_of(
        (
            "retrieved",
            [
                msg("user", "Porto in March?", "retrieved", session_id="trip-1"),
                msg("user", "and Lisbon?", "retrieved", session_id="s"),  # this session
            ],
        ),
        ("current", [msg("user", "remind me", "current")]),
    )
    assert preamble(window) == (
        f"{RETRIEVED_LABEL}\n\nuser {OTHER_SESSION}: Porto in March?\n\nuser: and Lisbon?"
    )
