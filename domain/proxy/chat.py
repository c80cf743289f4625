"""The canonical chat format: what an inbound request (OpenAI chat, Responses, Anthropic
messages) becomes, what a provider adapter sends and receives, and what is recorded.

Each wire dialect has its own module of pure translation functions to and from these
types (domain/proxy/openai_wire.py, anthropic_wire.py, responses_wire.py), so any
dialect can be served by any provider. Text only: image and audio parts are refused at
the edge with a clear error rather than silently dropped.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

from domain.quick_init import quick_init

Role = Literal["system", "user", "assistant", "tool"]
ROLES: frozenset[str] = frozenset(("system", "user", "assistant", "tool"))

# Why an answer ended. "error": the provider failed after the first streamed byte (the
# partial answer is kept); "client_disconnected": the caller went away mid-stream (the
# answer is still completed and stored when it can be, else stored as far as it got).
FinishReason = Literal[
    "stop", "length", "tool_calls", "content_filter", "error", "client_disconnected"
]
FINISH_REASONS: frozenset[str] = frozenset(
    ("stop", "length", "tool_calls", "content_filter", "error", "client_disconnected")
)


@quick_init  # built for each tool call of every window sent
@dataclass(frozen=True, slots=True)
class ToolCall:
    """A call the model asks for. `arguments` is JSON text exactly as the model wrote it
    (OpenAI's convention; Anthropic's `input` object is serialized to it)."""

    id: str
    name: str
    arguments: str


@dataclass(frozen=True, slots=True)
class Tool:
    """A function the model may call; `parameters` is a JSON Schema object."""

    name: str
    description: str | None = None
    parameters: dict[str, Any] = field(default_factory=dict)


# "auto", "none", "required" (OpenAI's names; Anthropic's "any" is "required"), or the
# name of the one tool the model must call.
ToolChoice = str


@quick_init  # a stateful call builds one per message of its window (~240)
@dataclass(frozen=True, slots=True)
class Message:
    """One turn. A user/assistant/system turn carries text; an assistant turn may carry
    tool calls (and then often no text); a tool turn answers `tool_call_id`."""

    role: Role
    content: str
    tool_calls: tuple[ToolCall, ...] = ()
    tool_call_id: str | None = None
    name: str | None = None


@dataclass(frozen=True, slots=True)
class ChatRequest:
    """A call to a model. The system prompt is kept apart (Anthropic's shape; OpenAI's
    system messages are joined into it, in order). `model` is what the caller asked
    for: an alias the router resolves, or a provider's model name."""

    model: str
    messages: tuple[Message, ...]
    system: str | None = None
    tools: tuple[Tool, ...] = ()
    tool_choice: ToolChoice | None = None
    parallel_tool_calls: bool | None = None
    max_tokens: int | None = None
    temperature: float | None = None
    top_p: float | None = None
    stop: tuple[str, ...] = ()
    # None: text; {"type": "json_object"} or {"type": "json_schema", "json_schema": {...}}
    response_format: dict[str, Any] | None = None
    stream: bool = False
    include_usage: bool = False  # OpenAI stream_options.include_usage
    user: str | None = None
    metadata: dict[str, str] = field(default_factory=dict)
    seed: int | None = None


@dataclass(frozen=True, slots=True)
class Usage:
    input_tokens: int = 0
    output_tokens: int = 0
    cached_tokens: int = 0  # of input_tokens, read from the provider's prompt cache

    @property
    def total_tokens(self) -> int:
        return self.input_tokens + self.output_tokens


@dataclass(frozen=True, slots=True)
class ChatResponse:
    """A complete answer. `model` is the provider's model name as it reported it."""

    id: str
    model: str
    content: str
    tool_calls: tuple[ToolCall, ...] = ()
    finish_reason: FinishReason = "stop"
    usage: Usage | None = None
    created: int = 0  # unix seconds
    stop_sequence: str | None = None  # which of the request's stop sequences ended it, if known


@dataclass(frozen=True, slots=True)
class ToolCallDelta:
    """A piece of a streamed tool call: the first piece of call `index` has its id and
    name, later pieces append to its arguments."""

    index: int
    id: str | None = None
    name: str | None = None
    arguments: str = ""


@dataclass(frozen=True, slots=True)
class Delta:
    """One increment of a streamed answer: text, a tool call piece, the finish reason
    (once, at the end) or the usage (once, at the end). Any may be empty."""

    text: str = ""
    tool_call: ToolCallDelta | None = None
    finish_reason: FinishReason | None = None
    usage: Usage | None = None
    stop_sequence: str | None = None  # with finish_reason "stop", when the provider says which


class StreamAccumulator:
    """Builds the ChatResponse that a stream of deltas amounts to (for recording and for
    the cache), also from a stream cut short: `response()` may be called at any time."""

    __slots__ = (
        "_calls",
        "_text",
        "created",
        "finish_reason",
        "id",
        "model",
        "stop_sequence",
        "usage",
    )

    def __init__(self, id: str, model: str, created: int = 0) -> None:
        self.id = id
        self.model = model
        self.created = created
        self._text: list[str] = []
        self._calls: dict[int, list[str]] = {}  # index -> [id, name, arguments...]
        self.finish_reason: FinishReason | None = None
        self.usage: Usage | None = None
        self.stop_sequence: str | None = None

    def add(self, delta: Delta) -> None:
        if delta.text:
            self._text.append(delta.text)
        call = delta.tool_call
        if call is not None:
            parts = self._calls.setdefault(call.index, ["", ""])
            if call.id:
                parts[0] = call.id
            if call.name:
                parts[1] = call.name
            if call.arguments:
                parts.append(call.arguments)
        if delta.finish_reason is not None:
            self.finish_reason = delta.finish_reason
        if delta.usage is not None:
            self.usage = delta.usage
        if delta.stop_sequence is not None:
            self.stop_sequence = delta.stop_sequence

    @property
    def text(self) -> str:
        return "".join(self._text)

    def response(self, finish_reason: FinishReason | None = None) -> ChatResponse:
        calls = tuple(
            ToolCall(id=p[0], name=p[1], arguments="".join(p[2:]))
            for _, p in sorted(self._calls.items())
        )
        return ChatResponse(
            id=self.id,
            model=self.model,
            content=self.text,
            tool_calls=calls,
            finish_reason=finish_reason or self.finish_reason or "stop",
            usage=self.usage,
            created=self.created,
            stop_sequence=self.stop_sequence,
        )


class ProxyError(Exception):
    """A failure to report to the caller in its own dialect (OpenAI's or Anthropic's
    error body) with an HTTP status. `kind` is dialect-neutral: invalid_request,
    authentication, permission, not_found, conflict, rate_limit, upstream, timeout,
    overloaded, internal. `param` names the offending field when there is one."""

    def __init__(
        self,
        status: int,
        kind: str,
        message: str,
        *,
        param: str | None = None,
        retry_after: float | None = None,
        upstream_status: int | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.kind = kind
        self.message = message
        self.param = param
        self.retry_after = retry_after
        # The provider's own HTTP status, when this reports a provider's failure: the
        # router decides on it (a provider's 401 is another deployment's chance).
        self.upstream_status = upstream_status


def invalid(message: str, param: str | None = None) -> ProxyError:
    """A 400 naming the field to fix (OpenAI and Anthropic both answer 400 here)."""
    return ProxyError(400, "invalid_request", message, param=param)
