"""The Session aggregate's rules, without a database."""

from __future__ import annotations

from typing import Any

import pytest

from domain import events as ev
from domain.errors import ValidationError
from domain.session import (
    MAX_TURNS_PER_APPEND,
    TurnInput,
    check_session_id,
    open_session,
    stream_id_for,
    turn_events,
)


def turn(role: str = "user", content: str = "hi", **kw: Any) -> TurnInput:
    return TurnInput(role=role, content=content, tokens=1, **kw)


def rejected(turns: list[TurnInput]) -> ValidationError:
    with pytest.raises(ValidationError) as info:
        turn_events(turns)
    return info.value


# --- turns --------------------------------------------------------------------------------


def test_each_role_becomes_its_event() -> None:
    out = turn_events(
        [
            turn("system", "be brief"),
            turn("user", "hello", name="alice"),
            turn("assistant", "hi!", model="m", provider="p", finish_reason="stop", cost=0.5),
            turn("tool", "42", tool_call_id="call-1", name="lookup"),
        ]
    )
    assert out == [
        ev.SystemMessage(content="be brief", tokens=1),
        ev.UserMessage(content="hello", tokens=1, name="alice"),
        ev.AssistantMessage(
            content="hi!", tokens=1, provider="p", model="m", cost=0.5, finish_reason="stop"
        ),
        ev.ToolResult(tool_call_id="call-1", content="42", tokens=1, name="lookup"),
    ]


@pytest.mark.parametrize("role", ["admin", "User", "", "function"])
def test_unknown_role_is_rejected_naming_the_turn(role: str) -> None:
    error = rejected([turn("user"), turn("user"), turn(role)])
    assert error.field == "turns[2].role"
    assert "turns[2].role" in str(error)
    assert "system, user, assistant, tool" in str(error)
    assert repr(role) in str(error)


def test_tool_turn_needs_tool_call_id() -> None:
    error = rejected([turn("tool", "result")])
    assert error.field == "turns[0].tool_call_id"
    assert "required" in str(error)
    error = rejected([turn("user"), turn("tool", "result", tool_call_id="")])
    assert error.field == "turns[1].tool_call_id"


@pytest.mark.parametrize("role", ["user", "system"])
def test_tool_call_id_only_on_tool_turns(role: str) -> None:
    error = rejected([turn(role, tool_call_id="call-1")])
    assert error.field == "turns[0].tool_call_id"
    assert "only allowed on tool turns" in str(error)


@pytest.mark.parametrize("role", ["user", "system", "tool"])
def test_tool_calls_only_on_assistant_turns(role: str) -> None:
    extra: dict[str, Any] = {"tool_call_id": "c"} if role == "tool" else {}
    error = rejected([turn(role, tool_calls=[{"id": "c1"}], **extra)])
    assert error.field == "turns[0].tool_calls"
    assert "only allowed on assistant turns" in str(error)


@pytest.mark.parametrize("field", ["model", "provider", "finish_reason"])
def test_assistant_only_fields_are_rejected_elsewhere(field: str) -> None:
    error = rejected([turn("user", **{field: "x"})])
    assert error.field == f"turns[0].{field}"


def test_assistant_turn_with_tool_calls_may_have_no_content() -> None:
    calls = [{"id": "c1", "type": "function", "function": {"name": "f", "arguments": "{}"}}]
    (event,) = turn_events([turn("assistant", "", tool_calls=calls)])
    assert isinstance(event, ev.AssistantMessage)
    assert event.tool_calls == calls and event.content == ""


@pytest.mark.parametrize("role", ["user", "system", "assistant"])
def test_empty_content_is_rejected(role: str) -> None:
    error = rejected([turn("user"), turn(role, "")])
    assert error.field == "turns[1].content"
    assert "empty" in str(error)


def test_negative_cost_is_rejected() -> None:
    error = rejected([turn("assistant", "x", cost=-0.01)])
    assert error.field == "turns[0].cost"


def test_no_turns_is_rejected() -> None:
    error = rejected([])
    assert error.field == "turns"


def test_too_many_turns_are_rejected() -> None:
    assert len(turn_events([turn()] * MAX_TURNS_PER_APPEND)) == MAX_TURNS_PER_APPEND
    error = rejected([turn()] * (MAX_TURNS_PER_APPEND + 1))
    assert error.field == "turns"
    assert str(MAX_TURNS_PER_APPEND) in str(error)


def test_open_session() -> None:
    event = open_session("s1", "title", "u1", {"k": 1})
    assert event == ev.SessionOpened(
        session_id="s1", title="title", user_id="u1", metadata={"k": 1}
    )
    assert open_session("s2", None, None, None).metadata == {}
    with pytest.raises(ValidationError) as info:
        open_session("s1", "x" * 501, None, None)
    assert info.value.field == "title"
    with pytest.raises(ValidationError):
        open_session("bad id", None, None, None)


@pytest.mark.parametrize(
    "session_id",
    ["a", "0", "ses_0190a1b2c3", "abc.def:ghi-jkl_mno", "A" * 128, "x-" * 20],
)
def test_check_session_id_accepts(session_id: str) -> None:
    assert check_session_id(session_id) == session_id
    assert stream_id_for(session_id) == f"session:{session_id}"


@pytest.mark.parametrize(
    "session_id",
    [
        "",
        "-leading-dash",
        ".dot",
        "_under",
        "has space",
        "slash/no",
        "A" * 129,
        "ü",
        "a\x00",
        "a\nb",
        "\nabc",
        pytest.param("abc\n", id="trailing-newline"),
        pytest.param("A" * 128 + "\n", id="129-with-newline"),
    ],
)
def test_check_session_id_rejects(session_id: str) -> None:
    with pytest.raises(ValidationError) as info:
        check_session_id(session_id)
    assert info.value.field == "id"
    assert "1-128 characters" in str(info.value)
