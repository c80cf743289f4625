"""The two wire dialects of the fake upstream (tests/fakes/fake_upstream.py): request
validation, the deterministic answer, and the exact bytes OpenAI's and Anthropic's APIs
send for it (JSON bodies, SSE event sequences, error bodies).

Kept apart from the server so the byte shapes can be read in one place and checked
against the providers' documentation. Everything here is pure and synchronous; the hot
path encodes with msgspec and builds stream chunks from per-response byte templates.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from types import EllipsisType
from typing import Any

import msgspec

_encode = msgspec.json.encode
_decode = msgspec.json.decode

# What a model is asked to call when a request offers tools and the user talks about
# the weather, or a script asks for a call without arguments.
DEFAULT_ARGUMENTS: dict[str, Any] = {"city": "Paris"}
FINGERPRINT = "fp_fake_upstream"

_PIECES = re.compile(r"\s*\S+\s*|\s+")  # a word with the blanks around it: one "token"
_ARG_PIECES = re.compile(r"\w+|\W+")  # JSON split the way models stream it: {" city ":"


@dataclass(frozen=True, slots=True)
class FakeToolCall:
    """A tool call a script makes the fake emit. `name=None` calls the first tool the
    request offers; `arguments` is an object, or JSON text sent as is (even broken)."""

    name: str | None = None
    arguments: dict[str, Any] | str = field(default_factory=lambda: dict(DEFAULT_ARGUMENTS))


class WireError(Exception):
    """A request the real API would refuse: rendered in the dialect's error shape."""

    def __init__(
        self, status: int, message: str, *, param: str | None = None, code: str | None = None
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.param = param
        self.code = code


@dataclass(slots=True)
class Turn:
    """The essentials of a valid chat request, dialect-neutral."""

    model: str
    stream: bool
    last_user_text: str  # text of the last user message (tool results excluded)
    ends_with_user: bool  # the conversation ends on a fresh user question
    input_tokens: int  # whitespace words of every message and the system prompt
    tools: list[str]  # names of the offered tools, in order
    tool_choice: str  # "auto", "none", "required", or the one tool's name
    max_tokens: int | None = None
    stop: list[str] = field(default_factory=list)
    include_usage: bool = False
    json_mode: bool = False


@dataclass(slots=True)
class Answer:
    """What the fake model says. finish: "stop", "length", "tool_calls" or
    "stop_sequence" (a stop sequence matched; OpenAI calls that "stop")."""

    text: str
    calls: list[tuple[str, str, str]]  # (id, name, arguments as JSON text)
    finish: str
    stop_sequence: str | None
    output_tokens: int


def words(text: str) -> int:
    return len(text.split())


# --- answers ---------------------------------------------------------------------------


def _cut_words(text: str, limit: int) -> str:
    """The first `limit` whitespace words of `text`, spacing kept."""
    end = 0
    for n, match in enumerate(re.finditer(r"\S+", text)):
        if n == limit:
            break
        end = match.end()
    return text[:end]


def make_answer(
    turn: Turn,
    *,
    text: str | None,
    tool_calls: list[FakeToolCall] | None,
    prefix: str,
    call_id: Callable[[], str],
) -> Answer:
    """The deterministic answer: the scripted text and calls if any; else a call to the
    first offered tool when the user mentions the weather (or tool_choice forces one);
    else `prefix` + the last user message. max_tokens truncates (finish "length"); a stop
    sequence cuts the text before it. `call_id()` returns a fresh tool call id."""
    calls: list[tuple[str, str, str]] = []
    if tool_calls:
        for spec in tool_calls:
            name = spec.name or (turn.tools[0] if turn.tools else "get_weather")
            args = spec.arguments
            calls.append(
                (call_id(), name, args if isinstance(args, str) else _encode(args).decode())
            )
    elif turn.tools and turn.tool_choice != "none":
        choice = turn.tool_choice
        forced = choice not in ("auto", "required")
        if (
            forced
            or choice == "required"
            or (turn.ends_with_user and "weather" in turn.last_user_text.lower())
        ):
            name = choice if forced else turn.tools[0]
            calls.append((call_id(), name, _encode(DEFAULT_ARGUMENTS).decode()))
    if text is None:
        if calls:
            text = ""
        elif turn.json_mode:
            text = _encode({"echo": turn.last_user_text}).decode()
        else:
            text = prefix + turn.last_user_text
    finish = "tool_calls" if calls else "stop"
    stop_sequence = None
    if turn.stop and text:
        hits = [(i, s) for s in turn.stop if s and (i := text.find(s)) >= 0]
        if hits:
            index, stop_sequence = min(hits)
            text, calls, finish = text[:index], [], "stop_sequence"
    output_tokens = words(text) + sum(words(f"{name} {args}") for _, name, args in calls)
    if turn.max_tokens is not None and output_tokens > turn.max_tokens:
        text, calls, finish, stop_sequence = _cut_words(text, turn.max_tokens), [], "length", None
        output_tokens = words(text)
    return Answer(text, calls, finish, stop_sequence, output_tokens)


def _argument_pieces(arguments: str) -> list[str]:
    return _ARG_PIECES.findall(arguments) or [arguments]


def _int_field(body: dict[str, Any], name: str) -> int | None:
    value = body.get(name)
    if value is None:
        return None
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise WireError(
            400,
            f"Invalid '{name}': expected an integer greater than or equal to 1, got {value!r}.",
            param=name,
            code="invalid_value",
        )
    return value


# --- OpenAI Chat Completions -----------------------------------------------------------

OPENAI_ROLES = ("system", "developer", "user", "assistant", "tool", "function")


def _openai_text(content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "\n".join(
            p["text"] for p in content if isinstance(p, dict) and isinstance(p.get("text"), str)
        )
    return ""


def parse_openai(body: Any) -> Turn:
    """Validate a chat.completions request the way the API does for the essentials:
    model and messages present, roles known, tool messages answering the preceding
    assistant's tool_calls (and all of them), tool_choice only with tools."""
    if not isinstance(body, dict):
        raise WireError(400, "Invalid type for request body: expected an object.")
    model = body.get("model")
    if not model or not isinstance(model, str):
        raise WireError(400, "you must provide a model parameter")
    messages = body.get("messages")
    if messages is None:
        raise WireError(
            400,
            "Missing required parameter: 'messages'.",
            param="messages",
            code="missing_required_parameter",
        )
    if not isinstance(messages, list):
        raise WireError(
            400,
            "Invalid type for 'messages': expected an array of objects.",
            param="messages",
            code="invalid_type",
        )
    if not messages:
        raise WireError(
            400,
            "Invalid 'messages': empty array. Expected an array with minimum length 1, "
            "but got an empty array instead.",
            param="messages",
            code="empty_array",
        )
    input_tokens = 0
    last_user = ""
    pending: list[str] = []  # tool_call ids still waiting for their tool message
    role = ""
    for i, message in enumerate(messages):
        if not isinstance(message, dict):
            raise WireError(
                400,
                f"Invalid type for 'messages[{i}]': expected an object.",
                param=f"messages[{i}]",
                code="invalid_type",
            )
        role = message.get("role", "")
        if role not in OPENAI_ROLES:
            raise WireError(
                400,
                f"Invalid value: '{role}'. Supported values are: 'system', 'assistant', "
                "'user', 'function', 'tool', and 'developer'.",
                param=f"messages[{i}].role",
                code="invalid_value",
            )
        if role == "tool":
            call = message.get("tool_call_id")
            if call not in pending:
                raise WireError(
                    400,
                    "Invalid parameter: messages with role 'tool' must be a response to a "
                    "preceeding message with 'tool_calls'.",
                    param=f"messages.[{i}].role",
                )
            pending.remove(call)
        elif pending:
            raise WireError(
                400,
                "An assistant message with 'tool_calls' must be followed by tool messages "
                "responding to each 'tool_call_id'. The following tool_call_ids did not "
                f"have response messages: {', '.join(pending)}",
                param=f"messages.[{i}].role",
            )
        text = _openai_text(message.get("content"))
        input_tokens += words(text)
        if role == "user":
            last_user = text
        elif role == "assistant":
            for call in message.get("tool_calls") or ():
                pending.append(call.get("id"))
                input_tokens += words(str(call.get("function", {}).get("arguments", "")))
    if pending:
        raise WireError(
            400,
            "An assistant message with 'tool_calls' must be followed by tool messages "
            "responding to each 'tool_call_id'. The following tool_call_ids did not have "
            f"response messages: {', '.join(pending)}",
            param="messages",
        )
    tools = [
        t["function"]["name"]
        for t in body.get("tools") or ()
        if isinstance(t, dict) and isinstance(t.get("function"), dict) and "name" in t["function"]
    ]
    choice = body.get("tool_choice")
    if choice is not None and not tools:
        raise WireError(
            400,
            "Invalid value for 'tool_choice': 'tool_choice' is only allowed when 'tools' "
            "are specified.",
            param="tool_choice",
        )
    if isinstance(choice, dict):
        choice = (choice.get("function") or {}).get("name", "auto")
    stream = body.get("stream") is True
    options = body.get("stream_options")
    if options is not None and not stream:
        raise WireError(
            400,
            "The 'stream_options' parameter is only allowed when 'stream' is enabled.",
            param="stream_options",
        )
    stop = body.get("stop")
    json_mode = (body.get("response_format") or {}).get("type") in ("json_object", "json_schema")
    if (body.get("response_format") or {}).get("type") == "json_object" and not any(
        "json" in _openai_text(m.get("content")).lower() for m in messages
    ):
        raise WireError(
            400,
            "'messages' must contain the word 'json' in some form, to use 'response_format' "
            "of type 'json_object'.",
            param="messages",
        )
    max_tokens = _int_field(body, "max_completion_tokens") or _int_field(body, "max_tokens")
    return Turn(
        model=model,
        stream=stream,
        last_user_text=last_user,
        ends_with_user=role == "user",
        input_tokens=input_tokens,
        tools=tools,
        tool_choice=choice if isinstance(choice, str) else "auto",
        max_tokens=max_tokens,
        stop=[stop] if isinstance(stop, str) else list(stop or ()),
        include_usage=bool(isinstance(options, dict) and options.get("include_usage")),
        json_mode=json_mode,
    )


_OPENAI_FINISH = {"stop": "stop", "stop_sequence": "stop", "length": "length"}


def _openai_usage(turn: Turn, answer: Answer, cached: int) -> dict[str, Any]:
    return {
        "prompt_tokens": turn.input_tokens,
        "completion_tokens": answer.output_tokens,
        "total_tokens": turn.input_tokens + answer.output_tokens,
        "prompt_tokens_details": {
            "cached_tokens": min(cached, turn.input_tokens),
            "audio_tokens": 0,
        },
        "completion_tokens_details": {
            "reasoning_tokens": 0,
            "audio_tokens": 0,
            "accepted_prediction_tokens": 0,
            "rejected_prediction_tokens": 0,
        },
    }


def openai_completion(id: str, created: int, turn: Turn, answer: Answer, cached: int) -> bytes:
    """A `chat.completion` object, as the API returns it."""
    message: dict[str, Any] = {
        "role": "assistant",
        "content": answer.text if answer.text or not answer.calls else None,
        "refusal": None,
        "annotations": [],
    }
    if answer.calls:
        message["tool_calls"] = [
            {"id": cid, "type": "function", "function": {"name": name, "arguments": args}}
            for cid, name, args in answer.calls
        ]
    return _encode(
        {
            "id": id,
            "object": "chat.completion",
            "created": created,
            "model": turn.model,
            "choices": [
                {
                    "index": 0,
                    "message": message,
                    "logprobs": None,
                    "finish_reason": _OPENAI_FINISH.get(answer.finish, answer.finish),
                }
            ],
            "usage": _openai_usage(turn, answer, cached),
            "service_tier": "default",
            "system_fingerprint": FINGERPRINT,
        }
    )


def openai_stream(id: str, created: int, turn: Turn, answer: Answer, cached: int) -> list[bytes]:
    """The SSE events of a streamed completion, one `data:` line each: the role, the
    content a word at a time, each tool call (header, then argument fragments), the
    finish reason, the usage chunk if asked for, `[DONE]`."""
    head = (
        b'data: {"id":"%s","object":"chat.completion.chunk","created":%d,"model":%s,'
        b'"system_fingerprint":"%s","choices":[{"index":0,"delta":'
        % (id.encode(), created, _encode(turn.model), FINGERPRINT.encode())
    )
    usage_null = b',"usage":null' if turn.include_usage else b""
    tail = b',"logprobs":null,"finish_reason":null}]' + usage_null + b"}\n\n"
    events: list[bytes] = []
    calls = answer.calls
    if answer.text or not calls:
        events.append(head + b'{"role":"assistant","content":"","refusal":null}' + tail)
        events.extend(
            head + b'{"content":' + _encode(piece) + b"}" + tail
            for piece in _PIECES.findall(answer.text)
        )
    for index, (cid, name, args) in enumerate(calls):
        start = {
            "index": index,
            "id": cid,
            "type": "function",
            "function": {"name": name, "arguments": ""},
        }
        delta: dict[str, Any] = {"tool_calls": [start]}
        if not events:  # no text: the role comes with the first call, as OpenAI does
            delta = {"role": "assistant", "content": None, **delta, "refusal": None}
        events.append(head + _encode(delta) + tail)
        events.extend(
            head
            + _encode({"tool_calls": [{"index": index, "function": {"arguments": piece}}]})
            + tail
            for piece in _argument_pieces(args)
        )
    finish = _OPENAI_FINISH.get(answer.finish, answer.finish)
    events.append(
        head
        + b'{},"logprobs":null,"finish_reason":"%s"}]' % finish.encode()
        + usage_null
        + b"}\n\n"
    )
    if turn.include_usage:
        events.append(
            b"data: "
            + _encode(
                {
                    "id": id,
                    "object": "chat.completion.chunk",
                    "created": created,
                    "model": turn.model,
                    "system_fingerprint": FINGERPRINT,
                    "choices": [],
                    "usage": _openai_usage(turn, answer, cached),
                }
            )
            + b"\n\n"
        )
    events.append(b"data: [DONE]\n\n")
    return events


def _openai_error_fields(
    status: int, message: str | None, model: str | None
) -> tuple[str, str, str | None]:
    """(message, type, code) the API uses for a status."""
    if status == 401:
        return (
            message
            or "Incorrect API key provided. You can find your API key at "
            "https://platform.openai.com/account/api-keys.",
            "invalid_request_error",
            "invalid_api_key",
        )
    if status == 404:
        return (
            message or f"The model `{model}` does not exist or you do not have access to it.",
            "invalid_request_error",
            "model_not_found",
        )
    if status == 429:
        return (
            message
            or f"Rate limit reached for {model} in organization org-fake on requests "
            "per min (RPM): Limit 60, Used 60, Requested 1. Please try again in 1s.",
            "requests",
            "rate_limit_exceeded",
        )
    if status == 503:
        return (message or "The server is overloaded or not ready yet.", "server_error", None)
    if status >= 500:
        return (
            message or "The server had an error while processing your request. Sorry about that!",
            "server_error",
            None,
        )
    return (message or "Invalid request.", "invalid_request_error", None)


def openai_error(
    status: int,
    message: str | None = None,
    *,
    model: str | None = None,
    param: str | None = None,
    code: str | EllipsisType | None = ...,
) -> bytes:
    """`{"error": {"message", "type", "param", "code"}}`; `code` defaults to the one the
    API uses for the status."""
    text, kind, default_code = _openai_error_fields(status, message, model)
    if isinstance(code, EllipsisType):
        code = default_code
    return _encode({"error": {"message": text, "type": kind, "param": param, "code": code}})


def openai_stream_error(status: int, message: str | None, model: str) -> bytes:
    """An error met after the stream started: a `data:` line with the error object."""
    return b"data: " + openai_error(status, message, model=model) + b"\n\n"


def openai_models(models: list[str], created: int) -> bytes:
    return _encode(
        {
            "object": "list",
            "data": [
                {"id": m, "object": "model", "created": created, "owned_by": "system"}
                for m in models
            ],
        }
    )


def openai_model(model: str, created: int) -> bytes:
    return _encode({"id": model, "object": "model", "created": created, "owned_by": "system"})


# --- Anthropic Messages ----------------------------------------------------------------


def _blocks_text(content: Any, kind: str = "text") -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "\n".join(
            b["text"]
            for b in content
            if isinstance(b, dict) and b.get("type") == kind and isinstance(b.get("text"), str)
        )
    return ""


def _anthropic_message_words(content: Any) -> int:
    if isinstance(content, str):
        return words(content)
    count = 0
    for block in content:
        kind = block.get("type") if isinstance(block, dict) else None
        if kind == "text":
            count += words(str(block.get("text", "")))
        elif kind == "tool_use":
            count += words(_encode(block.get("input", {})).decode())
        elif kind == "tool_result":
            count += words(_blocks_text(block.get("content")))
    return count


def _missing(name: str) -> WireError:
    return WireError(400, f"{name}: Field required")


def parse_anthropic(body: Any) -> Turn:
    """Validate a Messages request the way the API does for the essentials: model,
    messages and max_tokens present; roles user/assistant only (system is top-level);
    non-empty content; every tool_use answered by a tool_result in the next message."""
    if not isinstance(body, dict):
        raise WireError(400, "Input should be a valid dictionary")
    model = body.get("model")
    if not model or not isinstance(model, str):
        raise _missing("model")
    messages = body.get("messages")
    if messages is None:
        raise _missing("messages")
    if body.get("max_tokens") is None:
        raise _missing("max_tokens")
    max_tokens = body["max_tokens"]
    if not isinstance(max_tokens, int) or isinstance(max_tokens, bool) or max_tokens < 1:
        raise WireError(400, "max_tokens: Input should be greater than or equal to 1")
    if not isinstance(messages, list):
        raise WireError(400, "messages: Input should be a valid list")
    system = body.get("system")
    input_tokens = words(_blocks_text(system))
    last_user = ""
    ends_with_user = False
    open_calls: list[str] = []  # tool_use ids of the previous assistant message
    for i, message in enumerate(messages):
        if not isinstance(message, dict):
            raise WireError(400, f"messages.{i}: Input should be a valid dictionary")
        role = message.get("role")
        if role not in ("user", "assistant"):
            if role == "system":
                raise WireError(
                    400,
                    'messages: Unexpected role "system". The Messages API accepts a top-level '
                    '`system` parameter, not "system" as an input message role.',
                )
            raise WireError(400, f"messages.{i}.role: Input should be 'user' or 'assistant'")
        content = message.get("content")
        last = i == len(messages) - 1
        if not content and not (last and role == "assistant"):
            raise WireError(
                400,
                f"messages.{i}: all messages must have non-empty content except for the "
                "optional final assistant message",
            )
        blocks = content if isinstance(content, list) else []
        answered = [
            (j, b.get("tool_use_id"))
            for j, b in enumerate(blocks)
            if isinstance(b, dict) and b.get("type") == "tool_result"
        ]
        for j, use_id in answered:
            if use_id not in open_calls:
                raise WireError(
                    400,
                    f"messages.{i}.content.{j}: unexpected `tool_use_id` found in "
                    f"`tool_result` blocks: {use_id}. Each `tool_result` block must have a "
                    "corresponding `tool_use` block in the previous message.",
                )
        unanswered = [c for c in open_calls if c not in {u for _, u in answered}]
        if unanswered:
            raise WireError(
                400,
                f"messages.{i}: `tool_use` ids were found without `tool_result` blocks "
                f"immediately after: {', '.join(unanswered)}. Each `tool_use` block must "
                "have a corresponding `tool_result` block in the next message.",
            )
        open_calls = [
            str(b.get("id"))
            for b in blocks
            if role == "assistant" and isinstance(b, dict) and b.get("type") == "tool_use"
        ]
        input_tokens += _anthropic_message_words(content or "")
        if role == "user":
            text = _blocks_text(content)
            if text or not answered:
                last_user = text
            ends_with_user = not answered
        else:
            ends_with_user = False
    if open_calls:
        raise WireError(
            400,
            f"messages.{len(messages) - 1}: `tool_use` ids were found without `tool_result` "
            f"blocks immediately after: {', '.join(open_calls)}. Each `tool_use` block must "
            "have a corresponding `tool_result` block in the next message.",
        )
    tools = [t["name"] for t in body.get("tools") or () if isinstance(t, dict) and "name" in t]
    choice = body.get("tool_choice") or {}
    kind = choice.get("type", "auto") if isinstance(choice, dict) else "auto"
    tool_choice = {"any": "required", "none": "none", "tool": choice.get("name", "auto")}.get(
        kind, "auto"
    )
    return Turn(
        model=model,
        stream=body.get("stream") is True,
        last_user_text=last_user,
        ends_with_user=ends_with_user,
        input_tokens=input_tokens,
        tools=tools,
        tool_choice=tool_choice,
        max_tokens=max_tokens,
        stop=[s for s in body.get("stop_sequences") or () if isinstance(s, str)],
    )


_ANTHROPIC_STOP = {
    "stop": "end_turn",
    "length": "max_tokens",
    "tool_calls": "tool_use",
    "stop_sequence": "stop_sequence",
}


def _anthropic_usage(turn: Turn, answer: Answer, cached: int) -> dict[str, Any]:
    cached = min(cached, turn.input_tokens)
    return {
        "input_tokens": turn.input_tokens - cached,  # Anthropic excludes cache reads
        "cache_creation_input_tokens": 0,
        "cache_read_input_tokens": cached,
        "output_tokens": answer.output_tokens,
        "service_tier": "standard",
    }


def _tool_input(arguments: str) -> Any:
    try:
        return _decode(arguments)
    except msgspec.DecodeError:
        return {}


def anthropic_message(id: str, turn: Turn, answer: Answer, cached: int) -> bytes:
    """A Messages API `message` object."""
    content: list[dict[str, Any]] = []
    if answer.text or not answer.calls:
        content.append({"type": "text", "text": answer.text})
    content.extend(
        {"type": "tool_use", "id": cid, "name": name, "input": _tool_input(args)}
        for cid, name, args in answer.calls
    )
    return _encode(
        {
            "id": id,
            "type": "message",
            "role": "assistant",
            "model": turn.model,
            "content": content,
            "stop_reason": _ANTHROPIC_STOP[answer.finish],
            "stop_sequence": answer.stop_sequence,
            "usage": _anthropic_usage(turn, answer, cached),
        }
    )


def _event(name: bytes, data: bytes) -> bytes:
    return b"event: " + name + b"\ndata: " + data + b"\n\n"


_PING = _event(b"ping", b'{"type":"ping"}')


def anthropic_stream(id: str, turn: Turn, answer: Answer, cached: int) -> list[bytes]:
    """The SSE event sequence of a streamed message: message_start, per content block
    content_block_start / _delta... / _stop (a ping after the first start),
    message_delta with the stop reason and output tokens, message_stop."""
    usage = _anthropic_usage(turn, answer, cached)
    start_usage = {**usage, "output_tokens": 1}
    events = [
        _event(
            b"message_start",
            _encode(
                {
                    "type": "message_start",
                    "message": {
                        "id": id,
                        "type": "message",
                        "role": "assistant",
                        "model": turn.model,
                        "content": [],
                        "stop_reason": None,
                        "stop_sequence": None,
                        "usage": start_usage,
                    },
                }
            ),
        )
    ]
    index = 0
    if answer.text or not answer.calls:
        events.append(
            _event(
                b"content_block_start",
                b'{"type":"content_block_start","index":0,'
                b'"content_block":{"type":"text","text":""}}',
            )
        )
        events.append(_PING)
        events.extend(
            _event(
                b"content_block_delta",
                b'{"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":'
                + _encode(piece)
                + b"}}",
            )
            for piece in _PIECES.findall(answer.text)
        )
        events.append(_event(b"content_block_stop", b'{"type":"content_block_stop","index":0}'))
        index = 1
    for cid, name, args in answer.calls:
        block = {"type": "tool_use", "id": cid, "name": name, "input": {}}
        events.append(
            _event(
                b"content_block_start",
                _encode({"type": "content_block_start", "index": index, "content_block": block}),
            )
        )
        if index == 0:
            events.append(_PING)
        prefix = b'{"type":"content_block_delta","index":%d,' % index
        events.extend(
            _event(
                b"content_block_delta",
                prefix
                + b'"delta":{"type":"input_json_delta","partial_json":'
                + _encode(piece)
                + b"}}",
            )
            for piece in ["", *_argument_pieces(args)]
        )
        events.append(
            _event(b"content_block_stop", b'{"type":"content_block_stop","index":%d}' % index)
        )
        index += 1
    events.append(
        _event(
            b"message_delta",
            _encode(
                {
                    "type": "message_delta",
                    "delta": {
                        "stop_reason": _ANTHROPIC_STOP[answer.finish],
                        "stop_sequence": answer.stop_sequence,
                    },
                    "usage": {"output_tokens": answer.output_tokens},
                }
            ),
        )
    )
    events.append(_event(b"message_stop", b'{"type":"message_stop"}'))
    return events


_ANTHROPIC_ERRORS = {
    400: ("invalid_request_error", "Invalid request."),
    401: ("authentication_error", "invalid x-api-key"),
    403: (
        "permission_error",
        "Your API key does not have permission to use the specified resource.",
    ),
    404: ("not_found_error", "The requested resource could not be found."),
    413: ("request_too_large", "Request exceeds the maximum allowed number of bytes."),
    429: (
        "rate_limit_error",
        "This request would exceed the rate limit for your organization of 50 requests per "
        "minute. Please try again later.",
    ),
    500: ("api_error", "Internal server error"),
    504: ("timeout_error", "Request timed out"),
    529: ("overloaded_error", "Overloaded"),
}


def anthropic_error_object(status: int, message: str | None, model: str | None) -> dict[str, Any]:
    kind, text = _ANTHROPIC_ERRORS.get(
        status, ("api_error", "Internal server error") if status >= 500 else _ANTHROPIC_ERRORS[400]
    )
    if status == 404 and model and not message:
        text = f"model: {model}"
    return {"type": "error", "error": {"type": kind, "message": message or text}}


def anthropic_error(
    status: int, message: str | None = None, *, model: str | None = None, request_id: str = ""
) -> bytes:
    """`{"type": "error", "error": {"type", "message"}, "request_id"}`."""
    error = anthropic_error_object(status, message, model)
    if request_id:
        error["request_id"] = request_id
    return _encode(error)


def anthropic_stream_error(status: int, message: str | None, model: str) -> bytes:
    """An error met after the stream started: an `error` event."""
    return _event(b"error", _encode(anthropic_error_object(status, message, model)))


def _anthropic_model_object(model: str) -> dict[str, Any]:
    return {
        "type": "model",
        "id": model,
        "display_name": model.replace("-", " ").title(),
        "created_at": "2025-01-01T00:00:00Z",
    }


def anthropic_model(model: str) -> bytes:
    return _encode(_anthropic_model_object(model))


def anthropic_models(models: list[str]) -> bytes:
    data = [_anthropic_model_object(m) for m in models]
    return _encode(
        {
            "data": data,
            "has_more": False,
            "first_id": models[0] if models else None,
            "last_id": models[-1] if models else None,
        }
    )
