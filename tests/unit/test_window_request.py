"""window_request builds the provider request straight from the window: the same request
as rendering the window to OpenAI messages and parsing them back (the old path)."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime

import pytest

from app.services.proxy import window_request
from domain.context.render import openai_messages
from domain.context.window import ContextMessage, ContextWindow, ToolCallRef, build_window
from domain.context.window import make_section as section
from domain.proxy.chat import ChatRequest, Message
from domain.proxy.openai_wire import parse_chat_request

NOW = datetime(2026, 11, 26, tzinfo=UTC)
CALL = ToolCallRef("call_1", "lookup", '{"q": "x"}')
CALL2 = ToolCallRef("call_2", "weather", "{}")


def m(role: str, content: str, kind: str = "recent", **kw: object) -> ContextMessage:
    return ContextMessage(role, content, 5, kind, **kw)  # type: ignore[arg-type]


def window(*sections: tuple[str, list[ContextMessage]]) -> ContextWindow:
    return build_window(
        session_id="s", model="gpt-4o-mini", budget_tokens=1000, strategy="hybrid",
        sections=[section(kind, msgs) for kind, msgs in sections],  # type: ignore[arg-type]
        built_at=NOW,
    )  # fmt: skip


def parsed(request: ChatRequest, w: ContextWindow) -> ChatRequest:
    rendered = parse_chat_request({"model": request.model, "messages": openai_messages(w)})
    return replace(request, system=rendered.system, messages=rendered.messages)


CURRENT = ("current", [m("user", "and now?", "current")])
WINDOWS = {
    "current only": window(CURRENT),
    "system prompt, summary, retrieved": window(
        ("system", [m("system", "Be brief.", "system")]),
        ("summary", [m("system", "They talked about trains.", "summary")]),
        ("retrieved", [m("user", "old q", "retrieved"), m("assistant", "old a", "retrieved")]),
        ("recent", [m("user", "hi", name="ada"), m("assistant", "hello")]),
        CURRENT,
    ),
    "answered tool calls, orphan tool, system turn, names": window(
        (
            "recent",
            [
                m("user", "look it up", name="not a valid name!"),
                m("assistant", "", tool_calls=(CALL, CALL2)),
                m("tool", "found", tool_call_id="call_1", name="lookup"),
                m("tool", "sunny", tool_call_id="call_2"),
                m("assistant", "with text", tool_calls=(CALL,)),  # never answered
                m("tool", "late", tool_call_id="call_9", name="other"),  # an orphan
                m("system", "a system turn in the history"),
                m("assistant", "done", name="bot_1"),
            ],
        ),
        CURRENT,
    ),
    "plain turns, one name refused": window(
        ("recent", [m("user", "hi", name="not valid!"), m("assistant", ""), m("user", "x")]),
        CURRENT,
    ),
    "another session's turn": window(
        ("retrieved", [m("user", "elsewhere", "retrieved", session_id="other")]),
        CURRENT,
    ),
}


@pytest.mark.parametrize("name", list(WINDOWS))
def test_the_direct_request_equals_the_parsed_rendering(name: str) -> None:
    request = ChatRequest("gpt-4o-mini", (Message("user", "and now?"),), temperature=0.2)
    w = WINDOWS[name]
    direct = window_request(request, w)
    assert direct == parsed(request, w)
    assert direct.temperature == 0.2 and direct.messages[-1] == Message("user", "and now?")


def test_a_plain_turn_is_rendered_once_and_reused_by_the_next_window() -> None:
    """A recent turn's message is the same object in the next call's window
    (strategies.recent_message): its Message is kept on it, not built again."""
    request = ChatRequest("gpt-4o-mini", (Message("user", "and now?"),))
    shared = m("user", "hi", name="ada")
    first = window_request(request, window(("recent", [shared]), CURRENT))
    second = window_request(request, window(("recent", [shared, m("assistant", "hello")]), CURRENT))
    assert first.messages[0] == Message("user", "hi", name="ada")
    assert second.messages[0] is first.messages[0]
    assert second == parsed(request, window(("recent", [shared, m("assistant", "hello")]), CURRENT))
