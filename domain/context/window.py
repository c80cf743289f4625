"""The context window: the versioned document of what a model call was shown.

A window is a list of sections in a fixed order (system, state, summary, retrieved,
recent, current); each holds messages, their token cost and the global positions of the
events they came from. Only non-empty sections are listed. The document is what
`GET /v1/sessions/{id}/context` returns, what the renderers turn into a provider's
format, and (without the text, which the log already holds) what ContextAssembled records.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any, Literal, get_args

from domain.errors import ValidationError
from domain.events import ContextAssembled, JsonDict
from domain.hashing import json_text
from domain.quick_init import quick_init

CONTEXT_PROTOCOL_VERSION = "1"

SectionKind = Literal["system", "state", "summary", "retrieved", "recent", "current"]
# The order sections (and so their messages) take in the window.
SECTION_ORDER: tuple[SectionKind, ...] = get_args(SectionKind)


@quick_init
@dataclass(frozen=True)
class ToolCallRef:
    """A tool call an assistant turn made (OpenAI's `tool_calls[i]`, flattened)."""

    id: str
    name: str
    arguments: str = ""


@quick_init
@dataclass(frozen=True)
class ContextMessage:
    """One message of the window. `tokens` is what it costs in the window: its stored
    count scaled to the model, plus the per-message overhead."""

    role: str
    content: str
    tokens: int
    kind: SectionKind
    source: int | None = None  # global_position of the event it came from
    stream_version: int | None = None
    name: str | None = None
    tool_call_id: str | None = None
    tool_calls: tuple[ToolCallRef, ...] = ()
    # Set when the turn comes from another session (cross-session retrieval).
    session_id: str | None = None

    def to_dict(self) -> JsonDict:
        return {
            "role": self.role,
            "content": self.content,
            "tokens": self.tokens,
            "kind": self.kind,
            "source": self.source,
            "stream_version": self.stream_version,
            "name": self.name,
            "tool_call_id": self.tool_call_id,
            "tool_calls": [
                {"id": c.id, "name": c.name, "arguments": c.arguments} for c in self.tool_calls
            ],
            "session_id": self.session_id,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ContextMessage:
        return cls(
            role=data["role"],
            content=data["content"],
            tokens=data["tokens"],
            kind=section_kind(data["kind"]),
            source=data.get("source"),
            stream_version=data.get("stream_version"),
            name=data.get("name"),
            tool_call_id=data.get("tool_call_id"),
            tool_calls=tuple(
                ToolCallRef(c["id"], c["name"], c.get("arguments", ""))
                for c in data.get("tool_calls") or ()
            ),
            session_id=data.get("session_id"),
        )


@quick_init
@dataclass(frozen=True)
class Section:
    """`tokens` is the sum of the messages' tokens, plus, for state, summary and
    retrieved, the fixed cost of the label the renderers put before them."""

    kind: SectionKind
    messages: tuple[ContextMessage, ...]
    tokens: int
    sources: tuple[int, ...]
    # For a summary: the first and last stream versions it covers.
    covers: tuple[int, int] | None = None

    def to_dict(self) -> JsonDict:
        return {
            "kind": self.kind,
            "tokens": self.tokens,
            "sources": list(self.sources),
            "covers": list(self.covers) if self.covers else None,
            "messages": [m.to_dict() for m in self.messages],
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Section:
        return cls(
            kind=section_kind(data["kind"]),
            messages=tuple(ContextMessage.from_dict(m) for m in data["messages"]),
            tokens=data["tokens"],
            sources=tuple(data["sources"]),
            covers=(covers[0], covers[1]) if (covers := data.get("covers")) else None,
        )


@dataclass(frozen=True)
class ContextWindow:
    version: str
    session_id: str
    model: str
    budget_tokens: int  # the model's context limit minus the tokens reserved for output
    used_tokens: int
    strategy: str
    sections: tuple[Section, ...]
    built_at: datetime
    prompt_hash: str
    # Why the strategy left something out (e.g. a summary that would leave a gap).
    notes: tuple[str, ...] = ()

    @property
    def messages(self) -> tuple[ContextMessage, ...]:
        """Every message, in window order."""
        return tuple(m for s in self.sections for m in s.messages)

    def section(self, kind: SectionKind) -> Section | None:
        return next((s for s in self.sections if s.kind == kind), None)

    def to_dict(self) -> JsonDict:
        return {
            "version": self.version,
            "session_id": self.session_id,
            "model": self.model,
            "budget_tokens": self.budget_tokens,
            "used_tokens": self.used_tokens,
            "strategy": self.strategy,
            "sections": [s.to_dict() for s in self.sections],
            "built_at": self.built_at.isoformat(),
            "prompt_hash": self.prompt_hash,
            "notes": list(self.notes),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ContextWindow:
        if data.get("version") != CONTEXT_PROTOCOL_VERSION:
            raise ValidationError(
                f"context protocol version {data.get('version')!r} is not supported "
                f"(this code reads {CONTEXT_PROTOCOL_VERSION!r})",
                "version",
            )
        return cls(
            version=data["version"],
            session_id=data["session_id"],
            model=data["model"],
            budget_tokens=data["budget_tokens"],
            used_tokens=data["used_tokens"],
            strategy=data["strategy"],
            sections=tuple(Section.from_dict(s) for s in data["sections"]),
            built_at=datetime.fromisoformat(data["built_at"]),
            prompt_hash=data["prompt_hash"],
            notes=tuple(data.get("notes") or ()),
        )


def section_kind(value: str) -> SectionKind:
    if value not in SECTION_ORDER:
        raise ValidationError(f"unknown section kind {value!r}", "kind")
    return value


def make_section(
    kind: SectionKind,
    messages: Sequence[ContextMessage],
    label_tokens: int = 0,
    covers: tuple[int, int] | None = None,
) -> Section:
    return Section(
        kind=kind,
        messages=tuple(messages),
        tokens=sum(m.tokens for m in messages) + (label_tokens if messages else 0),
        sources=tuple(m.source for m in messages if m.source is not None),
        covers=covers,
    )


def prompt_hash(messages: Iterable[ContextMessage]) -> str:
    """sha256 (hex) of the canonical JSON of [{role, content}, ...] in window order: the
    same prompt gives the same hash whatever the provider format it is rendered to.

    The JSON is written here the way canonical_json writes it (keys sorted, no spaces,
    strings by json's own C escaper), without a dict a message: ~3x faster for the
    hundreds of messages of a window (tests/unit/test_context_window.py compares)."""
    text = ",".join([m.__dict__.get(_HASH_PART) or _hash_part(m) for m in messages])
    return hashlib.sha256(f"[{text}]".encode()).hexdigest()


_HASH_PART = "_hash_part"


def _hash_part(m: ContextMessage) -> str:
    """A message's part of prompt_hash's JSON, kept on the message: a recent turn's
    message is the same object from window to window (strategies.recent_message)."""
    part = f'{{"content":{json_text(m.content)},"role":{json_text(m.role)}}}'
    m.__dict__[_HASH_PART] = part
    return part


def build_window(
    *,
    session_id: str,
    model: str,
    budget_tokens: int,
    strategy: str,
    sections: Sequence[Section],
    built_at: datetime,
    notes: Sequence[str] = (),
) -> ContextWindow:
    """The document for `sections`: empty ones dropped, the rest in SECTION_ORDER."""
    rank = {kind: i for i, kind in enumerate(SECTION_ORDER)}
    kept = tuple(sorted((s for s in sections if s.messages), key=lambda s: rank[s.kind]))
    return ContextWindow(
        version=CONTEXT_PROTOCOL_VERSION,
        session_id=session_id,
        model=model,
        budget_tokens=budget_tokens,
        used_tokens=sum(s.tokens for s in kept),
        strategy=strategy,
        sections=kept,
        built_at=built_at,
        prompt_hash=prompt_hash([m for s in kept for m in s.messages]),
        notes=tuple(notes),
    )


def place_current(window: ContextWindow, stream_version: int, source: int) -> ContextWindow:
    """`window` with its current turn's place in the log, for a window built while that
    turn was being stored (its text, tokens and the prompt hash do not change)."""
    sections = []
    for s in window.sections:
        if s.kind == "current":
            messages = tuple(
                replace(m, stream_version=stream_version, source=source) for m in s.messages
            )
            s = replace(s, messages=messages, sources=(source,) * len(messages))
        sections.append(s)
    return replace(window, sections=tuple(sections))


def assembled_event(window: ContextWindow) -> ContextAssembled:
    """The ContextAssembled event for `window`: positions and token counts, not the text
    (the events it points to hold that), and the prompt hash to check a rendering against."""
    return ContextAssembled(
        model=window.model,
        strategy=window.strategy,
        budget_tokens=window.budget_tokens,
        used_tokens=window.used_tokens,
        sections=[
            {"kind": s.kind, "tokens": s.tokens, "sources": list(s.sources)}
            | ({"covers": list(s.covers)} if s.covers else {})
            for s in window.sections
        ],
        prompt_hash=window.prompt_hash,
    )
