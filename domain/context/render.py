"""Render a context window into a provider's message format.

Both formats get the same preamble as their system text: the system prompt, then the
state, the summary and the retrieved turns, each under a label. Retrieved turns go there,
as a labelled transcript, rather than among the messages: they are not contiguous with
the conversation that follows, and must not read as if they came just before it (turns
from the user's other sessions are marked as such). The recent and current turns follow
as messages, in time order.

- OpenAI: one system message (the preamble), then the turns. An assistant turn's tool
  calls and the tool results are kept structured (`tool_calls`, role `tool`) when every
  call is answered by the tool turns right after it; otherwise (the window cut the
  exchange) they are written as text, since OpenAI rejects an unanswered call or an
  orphan tool message.
- Anthropic: `system` is the preamble; messages alternate user/assistant and start with
  user. Tool results and mid-conversation system turns become user text with a marker,
  tool calls become assistant text; consecutive messages of one role are merged with a
  blank line; a conversation that would start with the assistant gets a short user
  opening (ANTHROPIC_OPENING).

Labels are charged SECTION_LABEL_TOKENS each in the window's accounting, the marker of a
turn from another session OTHER_SESSION_TOKENS.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any, NamedTuple

from domain.context.window import ContextMessage, ContextWindow, ToolCallRef

STATE_LABEL = "Session state (JSON):"
SUMMARY_LABEL = "Summary of the earlier conversation:"
RETRIEVED_LABEL = "Earlier turns that may be relevant (verbatim, oldest first):"
LABELS = (STATE_LABEL, SUMMARY_LABEL, RETRIEVED_LABEL)
OTHER_SESSION = "[in another conversation]"  # marks a turn retrieved from another session
ANTHROPIC_OPENING = "(continuing our earlier conversation)"
EMPTY_TEXT = "(empty)"  # Anthropic refuses empty or blank text blocks

_OPENAI_NAME = re.compile(r"[A-Za-z0-9_-]{1,64}")


def preamble(window: ContextWindow) -> str | None:
    """The system text: system prompt, state, summary and retrieved turns; None if empty."""
    parts: list[str] = []
    for section in window.sections:
        messages = section.messages
        if section.kind == "system":
            parts.extend(m.content for m in messages)
        elif section.kind == "state":
            parts.extend(f"{STATE_LABEL}\n{m.content}" for m in messages)
        elif section.kind == "summary":
            parts.extend(f"{SUMMARY_LABEL}\n{m.content}" for m in messages)
        elif section.kind == "retrieved":
            lines = "\n\n".join(f"{_speaker(m, window.session_id)}: {_text(m)}" for m in messages)
            parts.append(f"{RETRIEVED_LABEL}\n\n{lines}")
    return "\n\n".join(parts) or None


def conversation(window: ContextWindow) -> list[ContextMessage]:
    """The recent and current turns, in time order."""
    return [m for s in window.sections if s.kind in ("recent", "current") for m in s.messages]


def plain_conversation(window: ContextWindow) -> list[ContextMessage] | None:
    """The conversation when every turn of it is user or assistant text without tool
    calls (each is then its own OpenAI message, as openai_turns gives it, named by
    openai_name), else None."""
    turns = conversation(window)
    for m in turns:
        if m.tool_calls or (m.role != "user" and m.role != "assistant"):
            return None
    return turns


def openai_name(name: str | None) -> str | None:
    """A message's `name` as OpenAI takes it: None when it does not match its pattern."""
    return name if name and _OPENAI_NAME.fullmatch(name) else None


def _speaker(m: ContextMessage, session_id: str) -> str:
    who = f"{m.role} ({m.name})" if m.name else m.role
    if m.session_id is not None and m.session_id != session_id:
        who += f" {OTHER_SESSION}"
    return who


def _text(m: ContextMessage) -> str:
    """A turn as plain text, its tool calls or tool result marked."""
    if m.role == "tool":
        return f"[result of tool {m.name or m.tool_call_id or '?'}]\n{m.content}"
    if m.role == "assistant" and m.tool_calls:
        calls = [f"[called tool {c.name}({c.arguments})]" for c in m.tool_calls]
        return "\n".join([m.content, *calls] if m.content else calls)
    return m.content


def _answered_by_next(messages: Sequence[ContextMessage], i: int) -> int:
    """If every tool call of messages[i] is answered, once, by the tool turns right after
    it, the index after those answers; else 0."""
    ids = [c.id for c in messages[i].tool_calls]
    wanted = set(ids)
    if len(wanted) != len(ids):
        return 0
    j = i + 1
    while j < len(messages) and messages[j].role == "tool" and messages[j].tool_call_id in wanted:
        wanted.discard(messages[j].tool_call_id)
        j += 1
    return j if not wanted else 0


class OpenAITurn(NamedTuple):
    """One message of the OpenAI rendering of a window's conversation (see openai_turns).
    `content` is None only for an assistant message that carries tool calls alone."""

    role: str  # system | user | assistant | tool
    content: str | None
    tool_calls: tuple[ToolCallRef, ...] = ()
    tool_call_id: str | None = None
    name: str | None = None


def openai_turns(window: ContextWindow) -> list[OpenAITurn]:
    """The recent and current turns as OpenAI messages, in time order: an assistant turn
    whose tool calls are all answered right after keeps them (and its answers stay tool
    messages); any other tool turn is told as user text. The system text (preamble)
    is not among them."""
    out: list[OpenAITurn] = []
    turns = conversation(window)
    i = 0
    while i < len(turns):
        m = turns[i]
        if m.role == "assistant" and m.tool_calls and (end := _answered_by_next(turns, i)):
            out.append(OpenAITurn("assistant", m.content or None, m.tool_calls))
            out.extend(
                OpenAITurn("tool", t.content, tool_call_id=t.tool_call_id)
                for t in turns[i + 1 : end]
            )
            i = end
            continue
        if m.role in ("system", "user", "assistant"):
            out.append(OpenAITurn(m.role, _text(m), name=openai_name(m.name)))
        else:  # an orphan tool result (its call is not in the window), or an unknown role
            out.append(OpenAITurn("user", _text(m)))
        i += 1
    return out


def openai_messages(window: ContextWindow) -> list[dict[str, Any]]:
    """OpenAI chat messages: [{"role", "content", ...}], system first."""
    out: list[dict[str, Any]] = []
    system = preamble(window)
    if system is not None:
        out.append({"role": "system", "content": system})
    for t in openai_turns(window):
        message: dict[str, Any] = {"role": t.role, "content": t.content}
        if t.tool_calls:
            message["tool_calls"] = [
                {
                    "id": c.id,
                    "type": "function",
                    "function": {"name": c.name, "arguments": c.arguments},
                }
                for c in t.tool_calls
            ]
        if t.tool_call_id is not None:
            message["tool_call_id"] = t.tool_call_id
        if t.name is not None:
            message["name"] = t.name
        out.append(message)
    return out


def anthropic_messages(window: ContextWindow) -> tuple[str | None, list[dict[str, str]]]:
    """Anthropic Messages: (system, [{"role": "user" | "assistant", "content": str}]),
    alternating and starting with user."""
    merged: list[list[str]] = []  # [role, text]
    for m in conversation(window):
        if m.role == "assistant":
            role, text = "assistant", _text(m)
        elif m.role == "system":
            role, text = "user", f"[system note]\n{m.content}"
        else:
            role, text = "user", _text(m)
        if not text.strip():
            text = EMPTY_TEXT
        if merged and merged[-1][0] == role:
            merged[-1][1] += "\n\n" + text
        else:
            merged.append([role, text])
    if not merged or merged[0][0] != "user":
        merged.insert(0, ["user", ANTHROPIC_OPENING])
    if merged[-1][0] == "assistant":  # a final assistant turn is a prefill: no trailing blank
        merged[-1][1] = merged[-1][1].rstrip() or EMPTY_TEXT
    return preamble(window), [{"role": role, "content": text} for role, text in merged]
