"""OpenAI Chat Completions on the wire <-> the canonical chat format (chat.py).

Inbound (a client calling `POST /v1/chat/completions`): `parse_chat_request` validates
the body the way OpenAI does and answers a 400 naming the field to fix;
`render_chat_response`, `ChatStreamRenderer` and `error_body` speak back.
Upstream (Contextgate calling OpenAI or a compatible server such as vLLM or Ollama):
`build_upstream_request`, `parse_upstream_response`, `UpstreamChunkParser` and
`parse_upstream_error`.

Plain dicts in and out, nothing copied that can be shared: this runs on every request.

Choices worth knowing:
- System and developer messages are joined, in order, with a blank line between, into
  `ChatRequest.system`; text content parts of one message are joined with a newline.
- Image, audio and file parts are refused (text only), as are the deprecated
  `functions`/`function_call` parameters and `function` role (use tools): a clear 400
  beats tools silently dropped.
- Tool messages are not checked against a preceding assistant `tool_calls` (OpenAI
  does): in stateful mode the call being answered lives in the stored history, not in
  the request.
- Finish reasons out: stop, length, tool_calls, content_filter as themselves; "error"
  (the provider failed mid-answer) and "client_disconnected" render as "stop", OpenAI
  having no word for either (a failed stream also gets an error chunk from the caller).
- Usage the provider did not report renders as zeros rather than null, so clients that
  read `usage.total_tokens` keep working.
"""

from __future__ import annotations

import json
from typing import Any

from domain.proxy.chat import (
    ChatRequest,
    ChatResponse,
    Delta,
    FinishReason,
    Message,
    ProxyError,
    Tool,
    ToolCall,
    ToolCallDelta,
    Usage,
    invalid,
)
from domain.proxy.sse import SSE_DONE, sse_data

__all__ = [
    "SSE_DONE",
    "ChatStreamRenderer",
    "UpstreamChunkParser",
    "build_upstream_request",
    "error_body",
    "parse_chat_request",
    "parse_upstream_error",
    "parse_upstream_response",
    "render_chat_response",
    "sse_chunk",
    "upstream_error",
]

sse_chunk = sse_data  # one stream chunk: b"data: {json}\n\n"

_ZERO_USAGE = Usage()
_NAME_CHARS = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_-"
_UNSUPPORTED_PARTS = {"image_url": "image", "input_audio": "audio", "file": "file"}
_TOOL_CHOICES = frozenset(("auto", "none", "required"))
_RESPONSE_FORMATS = frozenset(("text", "json_object", "json_schema"))
_compact = json.JSONEncoder(ensure_ascii=False, separators=(",", ":")).encode


# ---------------------------------------------------------------------------- inbound


def parse_chat_request(body: dict[str, Any]) -> ChatRequest:
    """A Chat Completions request body as the canonical request; a 400 `ProxyError`
    naming the field (`param`) and what to fix when it is not valid."""
    if not isinstance(body, dict):
        raise invalid("The request body must be a JSON object.")
    model = body.get("model")
    if not isinstance(model, str) or not model:
        raise invalid("model: a non-empty string naming the model is required.", "model")
    raw = body.get("messages")
    if not isinstance(raw, list) or not raw:
        raise invalid("messages: a non-empty array of messages is required.", "messages")
    if body.get("functions") is not None or body.get("function_call") is not None:
        param = "functions" if body.get("functions") is not None else "function_call"
        raise invalid(
            f"{param}: the deprecated functions API is not supported; "
            "send `tools` and `tool_choice` instead.",
            param,
        )

    system: list[str] = []
    messages: list[Message] = []
    for i, m in enumerate(raw):
        if not isinstance(m, dict):
            raise invalid(f"messages[{i}]: each message must be an object.", f"messages[{i}]")
        role = m.get("role")
        if role == "user":
            messages.append(Message("user", _content(m, i, False), name=_msg_name(m, i)))
        elif role == "assistant":
            calls = _tool_calls(m.get("tool_calls"), i)
            text = _content(m, i, True)
            messages.append(Message("assistant", text, tool_calls=calls, name=_msg_name(m, i)))
        elif role == "tool":
            call_id = m.get("tool_call_id")
            if not isinstance(call_id, str) or not call_id:
                raise invalid(
                    f"messages[{i}].tool_call_id: a tool message needs the id of the tool "
                    "call it answers.",
                    f"messages[{i}].tool_call_id",
                )
            messages.append(Message("tool", _content(m, i, True), tool_call_id=call_id))
        elif role == "system" or role == "developer":
            system.append(_content(m, i, False))
            _msg_name(m, i)
        elif role == "function":
            raise invalid(
                f"messages[{i}].role: 'function' messages are deprecated and not supported; "
                "answer tool calls with 'tool' messages.",
                f"messages[{i}].role",
            )
        else:
            raise invalid(
                f"messages[{i}].role: {role!r} is not a role; expected one of 'system', "
                "'developer', 'user', 'assistant', 'tool'.",
                f"messages[{i}].role",
            )

    tools = _tools(body.get("tools"))
    tool_choice = _tool_choice(body.get("tool_choice"), tools)
    parallel = body.get("parallel_tool_calls")
    if parallel is not None and not isinstance(parallel, bool):
        raise invalid("parallel_tool_calls: must be true or false.", "parallel_tool_calls")

    max_tokens = _positive_int(body, "max_completion_tokens")
    if max_tokens is None:
        max_tokens = _positive_int(body, "max_tokens")
    elif body.get("max_tokens") is not None:
        _positive_int(body, "max_tokens")  # still validated; max_completion_tokens wins

    stream = body.get("stream")
    if stream is not None and not isinstance(stream, bool):
        raise invalid("stream: must be true or false.", "stream")
    include_usage = False
    options = body.get("stream_options")
    if options is not None:
        if not stream:
            raise invalid("stream_options: only allowed when stream is true.", "stream_options")
        if not isinstance(options, dict):
            raise invalid("stream_options: must be an object.", "stream_options")
        flag = options.get("include_usage")
        if flag is not None and not isinstance(flag, bool):
            raise invalid(
                "stream_options.include_usage: must be true or false.",
                "stream_options.include_usage",
            )
        include_usage = bool(flag)

    n = body.get("n")
    if n is not None and n != 1:
        raise invalid("n: only one choice per request is supported; send n=1.", "n")
    user = body.get("user")
    if user is not None and not isinstance(user, str):
        raise invalid("user: must be a string.", "user")
    seed = body.get("seed")
    if seed is not None and (not isinstance(seed, int) or isinstance(seed, bool)):
        raise invalid("seed: must be an integer.", "seed")

    return ChatRequest(
        model=model,
        messages=tuple(messages),
        system="\n\n".join(system) or None,
        tools=tools,
        tool_choice=tool_choice,
        parallel_tool_calls=parallel,
        max_tokens=max_tokens,
        temperature=_number(body, "temperature", 2.0),
        top_p=_number(body, "top_p", 1.0),
        stop=_stop(body.get("stop")),
        response_format=_response_format(body.get("response_format")),
        stream=bool(stream),
        include_usage=include_usage,
        user=user,
        metadata=_metadata(body.get("metadata")),
        seed=seed,
    )


def _content(m: dict[str, Any], i: int, nullable: bool) -> str:
    """A message's text: a string, or text parts joined with a newline. `nullable`:
    null or absent content is "" (assistant with tool calls, tool); else a 400."""
    content = m.get("content")
    if isinstance(content, str):
        return content
    if content is None:
        if nullable:
            return ""
        raise invalid(
            f"messages[{i}].content: required; a string or an array of text parts.",
            f"messages[{i}].content",
        )
    if not isinstance(content, list):
        raise invalid(
            f"messages[{i}].content: must be a string or an array of text parts.",
            f"messages[{i}].content",
        )
    texts: list[str] = []
    for j, part in enumerate(content):
        kind = part.get("type") if isinstance(part, dict) else None
        if kind == "text" or kind == "refusal":
            text = part.get(kind)
            if isinstance(text, str):
                texts.append(text)
                continue
            raise invalid(
                f"messages[{i}].content[{j}].{kind}: must be a string.",
                f"messages[{i}].content[{j}].{kind}",
            )
        if kind in _UNSUPPORTED_PARTS:
            raise invalid(
                f"messages[{i}].content[{j}]: {_UNSUPPORTED_PARTS[kind]} parts ({kind}) are "
                "not supported; this gateway handles text only: send "
                '{"type": "text", "text": ...} parts or a string.',
                f"messages[{i}].content[{j}]",
            )
        raise invalid(
            f"messages[{i}].content[{j}].type: {kind!r} is not a supported content part; "
            "expected 'text'.",
            f"messages[{i}].content[{j}].type",
        )
    return texts[0] if len(texts) == 1 else "\n".join(texts)


def _msg_name(m: dict[str, Any], i: int) -> str | None:
    name = m.get("name")
    if name is None or isinstance(name, str):
        return name
    raise invalid(f"messages[{i}].name: must be a string.", f"messages[{i}].name")


def _tool_calls(value: Any, i: int) -> tuple[ToolCall, ...]:
    if value is None:
        return ()
    where = f"messages[{i}].tool_calls"
    if not isinstance(value, list):
        raise invalid(f"{where}: must be an array of tool calls.", where)
    calls: list[ToolCall] = []
    for k, call in enumerate(value):
        at = f"{where}[{k}]"
        if not isinstance(call, dict):
            raise invalid(f"{at}: must be an object.", at)
        if call.get("type", "function") != "function":
            raise invalid(f"{at}.type: only 'function' tool calls are supported.", f"{at}.type")
        call_id = call.get("id")
        if not isinstance(call_id, str) or not call_id:
            raise invalid(f"{at}.id: a non-empty string is required.", f"{at}.id")
        fn = call.get("function")
        if not isinstance(fn, dict):
            raise invalid(f"{at}.function: an object with name and arguments is required.", at)
        name = fn.get("name")
        if not isinstance(name, str) or not name:
            raise invalid(f"{at}.function.name: a non-empty string is required.", at)
        arguments = fn.get("arguments")
        if not isinstance(arguments, str):
            raise invalid(
                f"{at}.function.arguments: must be a string of JSON.", f"{at}.function.arguments"
            )
        calls.append(ToolCall(call_id, name, arguments))
    return tuple(calls)


def _tools(value: Any) -> tuple[Tool, ...]:
    if value is None:
        return ()
    if not isinstance(value, list):
        raise invalid("tools: must be an array of function tools.", "tools")
    tools: list[Tool] = []
    for k, tool in enumerate(value):
        at = f"tools[{k}]"
        if not isinstance(tool, dict):
            raise invalid(f"{at}: must be an object.", at)
        if tool.get("type") != "function":
            raise invalid(
                f"{at}.type: {tool.get('type')!r} tools are not supported; expected 'function'.",
                f"{at}.type",
            )
        fn = tool.get("function")
        if not isinstance(fn, dict):
            raise invalid(f"{at}.function: an object with the function's name is required.", at)
        name = fn.get("name")
        if (
            not isinstance(name, str)
            or not name
            or len(name) > 64
            or name.strip(_NAME_CHARS)  # anything left is a character not allowed
        ):
            raise invalid(
                f"{at}.function.name: required; 1 to 64 characters among a-z, A-Z, 0-9, "
                f"underscores and dashes (got {name!r}).",
                f"{at}.function.name",
            )
        description = fn.get("description")
        if description is not None and not isinstance(description, str):
            raise invalid(f"{at}.function.description: must be a string.", at)
        parameters = fn.get("parameters")
        if parameters is None:
            parameters = {}
        elif not isinstance(parameters, dict):
            raise invalid(
                f"{at}.function.parameters: must be a JSON Schema object.",
                f"{at}.function.parameters",
            )
        tools.append(Tool(name, description, parameters))
    return tuple(tools)


def _tool_choice(value: Any, tools: tuple[Tool, ...]) -> str | None:
    if value is None:
        return None
    if isinstance(value, str):
        if value not in _TOOL_CHOICES:
            raise invalid(
                f"tool_choice: {value!r} is not valid; expected 'auto', 'none', 'required' or "
                '{"type": "function", "function": {"name": ...}}.',
                "tool_choice",
            )
        if value == "required" and not tools:
            raise invalid("tool_choice: 'required' needs `tools`.", "tool_choice")
        return value
    name = None
    if isinstance(value, dict) and value.get("type") == "function":
        fn = value.get("function")
        name = fn.get("name") if isinstance(fn, dict) else None
    if not isinstance(name, str) or not name:
        raise invalid(
            'tool_choice: expected "auto", "none", "required" or '
            '{"type": "function", "function": {"name": ...}}.',
            "tool_choice",
        )
    if not any(t.name == name for t in tools):
        raise invalid(
            f"tool_choice.function.name: {name!r} is not one of the request's tools.",
            "tool_choice",
        )
    return name


def _positive_int(body: dict[str, Any], key: str) -> int | None:
    value = body.get(key)
    if value is None:
        return None
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise invalid(f"{key}: must be a positive integer (got {value!r}).", key)
    return value


def _number(body: dict[str, Any], key: str, high: float) -> float | None:
    value = body.get(key)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0 <= value <= high:
        raise invalid(f"{key}: must be a number between 0 and {high:g} (got {value!r}).", key)
    return value


def _stop(value: Any) -> tuple[str, ...]:
    if value is None:
        return ()
    if isinstance(value, str):
        return (value,) if value else ()
    if not isinstance(value, list) or len(value) > 4 or not all(isinstance(s, str) for s in value):
        raise invalid("stop: a string or an array of at most 4 strings.", "stop")
    return tuple(s for s in value if s)


def _response_format(value: Any) -> dict[str, Any] | None:
    if value is None:
        return None
    kind = value.get("type") if isinstance(value, dict) else None
    if kind not in _RESPONSE_FORMATS:
        raise invalid(
            f"response_format.type: {kind!r} is not valid; expected 'text', 'json_object' or "
            "'json_schema'.",
            "response_format.type",
        )
    if kind == "text":
        return None
    if kind == "json_schema":
        schema = value.get("json_schema")
        if not isinstance(schema, dict) or not isinstance(schema.get("name"), str):
            raise invalid(
                "response_format.json_schema: an object with at least a name (and the schema) "
                "is required.",
                "response_format.json_schema",
            )
    return value  # type: ignore[no-any-return]


def _metadata(value: Any) -> dict[str, str]:
    if value is None:
        return {}
    if not isinstance(value, dict) or len(value) > 16:
        raise invalid("metadata: an object of at most 16 string pairs.", "metadata")
    for key, item in value.items():
        if not isinstance(item, str) or len(key) > 64 or len(item) > 512:
            raise invalid(
                f"metadata.{key}: keys are strings of at most 64 characters, values strings "
                "of at most 512.",
                f"metadata.{key}",
            )
    return value


def _finish_out(reason: FinishReason) -> str:
    # "error" and "client_disconnected" have no OpenAI name: the answer ended, so "stop".
    return reason if reason in ("length", "tool_calls", "content_filter") else "stop"


def _usage_out(usage: Usage | None) -> dict[str, Any]:
    u = usage or _ZERO_USAGE
    return {
        "prompt_tokens": u.input_tokens,
        "completion_tokens": u.output_tokens,
        "total_tokens": u.input_tokens + u.output_tokens,
        "prompt_tokens_details": {"cached_tokens": u.cached_tokens},
    }


def _tool_call_out(call: ToolCall) -> dict[str, Any]:
    return {
        "id": call.id,
        "type": "function",
        "function": {"name": call.name, "arguments": call.arguments},
    }


def render_chat_response(resp: ChatResponse, model: str) -> dict[str, Any]:
    """A `chat.completion` object; `model` is the name to show the caller (usually the
    alias it asked for). `content` is null when the answer is only tool calls."""
    message: dict[str, Any] = {
        "role": "assistant",
        "content": resp.content if resp.content or not resp.tool_calls else None,
        "refusal": None,
    }
    if resp.tool_calls:
        message["tool_calls"] = [_tool_call_out(c) for c in resp.tool_calls]
    return {
        "id": resp.id,
        "object": "chat.completion",
        "created": resp.created,
        "model": model,
        "choices": [
            {
                "index": 0,
                "message": message,
                "finish_reason": _finish_out(resp.finish_reason),
                "logprobs": None,
            }
        ],
        "usage": _usage_out(resp.usage),
    }


class ChatStreamRenderer:
    """Turns deltas into `chat.completion.chunk` objects (send each with `sse_chunk`,
    then `SSE_DONE`). The first chunk carries `delta.role = "assistant"`; a tool call's
    first chunk carries its id, type and name, the later ones only argument text. The
    finish chunk goes out when a delta carries the finish reason; usage is held back
    for the final `choices: []` chunk, sent by `finish()` when `include_usage`."""

    __slots__ = (
        "_finished",
        "_sent_finish",
        "_started",
        "_usage",
        "created",
        "id",
        "include_usage",
        "model",
    )

    def __init__(self, id: str, model: str, created: int, include_usage: bool = False) -> None:
        self.id = id
        self.model = model
        self.created = created
        self.include_usage = include_usage
        self._started = False
        self._sent_finish = False
        self._finished = False
        self._usage: Usage | None = None

    def _chunk(self, delta: dict[str, Any], finish_reason: str | None) -> dict[str, Any]:
        if not self._started:
            self._started = True
            delta["role"] = "assistant"
        chunk: dict[str, Any] = {
            "id": self.id,
            "object": "chat.completion.chunk",
            "created": self.created,
            "model": self.model,
            "choices": [
                {"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish_reason}
            ],
        }
        if self.include_usage:
            chunk["usage"] = None
        return chunk

    def delta(self, d: Delta) -> list[dict[str, Any]]:
        if self._finished:
            return []
        if d.usage is not None:
            self._usage = d.usage
        out: dict[str, Any] = {}
        if d.text:
            out["content"] = d.text
        call = d.tool_call
        if call is not None:
            piece: dict[str, Any] = {"index": call.index}
            fn: dict[str, Any] = {"arguments": call.arguments}
            if call.id is not None:
                piece["id"] = call.id
                piece["type"] = "function"
            if call.name is not None:
                fn["name"] = call.name
            piece["function"] = fn
            out["tool_calls"] = [piece]
        finish = None
        if d.finish_reason is not None and not self._sent_finish:
            self._sent_finish = True
            finish = _finish_out(d.finish_reason)
        if not out and finish is None:
            return []
        return [self._chunk(out, finish)]

    def finish(self, finish_reason: FinishReason | None = None) -> list[dict[str, Any]]:
        """The chunks that end the stream: the finish chunk if no delta carried one
        (`finish_reason`, default "stop"), then the usage chunk when asked for."""
        if self._finished:
            return []
        self._finished = True
        out: list[dict[str, Any]] = []
        if not self._sent_finish:
            self._sent_finish = True
            out.append(self._chunk({}, _finish_out(finish_reason or "stop")))
        if self.include_usage:
            out.append(
                {
                    "id": self.id,
                    "object": "chat.completion.chunk",
                    "created": self.created,
                    "model": self.model,
                    "choices": [],
                    "usage": _usage_out(self._usage),
                }
            )
        return out


# ----------------------------------------------------------------------------- errors

_ERROR_TYPES = {
    "invalid_request": ("invalid_request_error", None),
    "authentication": ("authentication_error", "invalid_api_key"),
    "permission": ("permission_error", None),
    "not_found": ("not_found_error", None),
    "conflict": ("invalid_request_error", "conflict"),
    "rate_limit": ("rate_limit_error", "rate_limit_exceeded"),
    "upstream": ("api_error", "upstream_error"),
    "timeout": ("api_error", "timeout"),
    "overloaded": ("api_error", "overloaded"),
    "internal": ("api_error", None),
}


def error_body(err: ProxyError) -> dict[str, Any]:
    """OpenAI's error object: `{"error": {"message", "type", "param", "code"}}`. Also
    what to send as the last chunk of a stream that fails after its first byte."""
    kind, code = _ERROR_TYPES.get(err.kind, ("api_error", None))
    return {"error": {"message": err.message, "type": kind, "param": err.param, "code": code}}


def upstream_error(status: int, message: str, retry_after: float | None = None) -> ProxyError:
    """The error to report for a provider's failed HTTP status. A 400 is the request's
    fault (often its size) and stays a 400; the provider refusing the gateway's own
    credentials or model name is a 502 (the caller's key was fine); 429 stays 429 with
    its Retry-After; 408/504 are timeouts; 503/529 overloaded; other failures 502."""
    text = (
        f"The provider answered {status}: {message}"
        if message
        else f"The provider answered {status}."
    )
    if status in (400, 413, 422):
        return ProxyError(400, "invalid_request", text, upstream_status=status)
    if status == 429:
        return ProxyError(429, "rate_limit", text, retry_after=retry_after, upstream_status=status)
    if status in (408, 504):
        return ProxyError(504, "timeout", text, upstream_status=status)
    if status in (503, 529):
        return ProxyError(503, "overloaded", text, retry_after=retry_after, upstream_status=status)
    return ProxyError(502, "upstream", text, upstream_status=status)


def parse_upstream_error(status: int, body: Any, retry_after: float | None = None) -> ProxyError:
    """`upstream_error` for an OpenAI-style error body (`{"error": {"message": ...}}`,
    or whatever a compatible server sent: a string, `{"detail": ...}`, nothing)."""
    message = ""
    if isinstance(body, dict):
        err = body.get("error", body)
        if isinstance(err, dict):
            message = str(err.get("message") or err.get("detail") or "")
        elif err is not None:
            message = str(err)
    elif isinstance(body, str | bytes):
        message = body if isinstance(body, str) else body.decode(errors="replace")
    return upstream_error(status, message[:1000], retry_after)


# --------------------------------------------------------------------------- upstream


def build_upstream_request(
    req: ChatRequest,
    model: str,
    *,
    max_tokens_key: str = "max_completion_tokens",
) -> dict[str, Any]:
    """The body for an OpenAI-compatible provider: `model` is the provider's model
    name; the system prompt becomes the first message; when streaming,
    `stream_options.include_usage` is always set so the usage can be recorded.
    `max_tokens_key`: "max_completion_tokens" (OpenAI's current name, required by its
    reasoning models) or "max_tokens" for servers that only know the old one. The
    caller's metadata stays with the gateway (OpenAI accepts it only with `store`)."""
    messages: list[dict[str, Any]] = []
    if req.system:
        messages.append({"role": "system", "content": req.system})
    for m in req.messages:
        if m.role == "tool":
            messages.append(
                {"role": "tool", "tool_call_id": m.tool_call_id or "", "content": m.content}
            )
        elif m.role == "assistant" and m.tool_calls:
            out: dict[str, Any] = {
                "role": "assistant",
                "content": m.content or None,
                "tool_calls": [_tool_call_out(c) for c in m.tool_calls],
            }
            if m.name:
                out["name"] = m.name
            messages.append(out)
        elif m.name:
            messages.append({"role": m.role, "content": m.content, "name": m.name})
        else:
            messages.append({"role": m.role, "content": m.content})
    body: dict[str, Any] = {"model": model, "messages": messages}
    if req.tools:
        tools: list[dict[str, Any]] = []
        for t in req.tools:
            fn: dict[str, Any] = {"name": t.name}
            if t.description is not None:
                fn["description"] = t.description
            if t.parameters:
                fn["parameters"] = t.parameters
            tools.append({"type": "function", "function": fn})
        body["tools"] = tools
        if req.tool_choice is not None:
            body["tool_choice"] = (
                req.tool_choice
                if req.tool_choice in _TOOL_CHOICES
                else {"type": "function", "function": {"name": req.tool_choice}}
            )
        if req.parallel_tool_calls is not None:
            body["parallel_tool_calls"] = req.parallel_tool_calls
    if req.max_tokens is not None:
        body[max_tokens_key] = req.max_tokens
    if req.temperature is not None:
        body["temperature"] = req.temperature
    if req.top_p is not None:
        body["top_p"] = req.top_p
    if req.stop:
        body["stop"] = list(req.stop)
    if req.response_format is not None:
        body["response_format"] = req.response_format
    if req.seed is not None:
        body["seed"] = req.seed
    if req.user is not None:
        body["user"] = req.user
    if req.stream:
        body["stream"] = True
        body["stream_options"] = {"include_usage": True}
    return body


_FINISH_IN: dict[Any, FinishReason] = {
    "stop": "stop",
    "length": "length",
    "tool_calls": "tool_calls",
    "function_call": "tool_calls",
    "content_filter": "content_filter",
}


def _int(value: Any) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) else 0


def _usage_in(u: Any) -> Usage | None:
    if not isinstance(u, dict):
        return None
    details = u.get("prompt_tokens_details")
    cached = details.get("cached_tokens") if isinstance(details, dict) else 0
    return Usage(_int(u.get("prompt_tokens")), _int(u.get("completion_tokens")), _int(cached))


def _arguments(value: Any) -> str:
    """Tool call arguments as JSON text (some servers send an object)."""
    if isinstance(value, str):
        return value
    return "" if value is None else _compact(value)


def _text_in(value: Any) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, list):  # some servers answer with content parts
        return "".join(
            p["text"] for p in value if isinstance(p, dict) and isinstance(p.get("text"), str)
        )
    return ""


def parse_upstream_response(body: dict[str, Any]) -> ChatResponse:
    """A provider's `chat.completion` as the canonical response. Tolerant: usage may be
    missing, content null (a refusal's text is taken instead), tool call ids missing
    (made up from the response id and position), arguments an object. A finish reason
    of "stop" with tool calls (some servers) becomes "tool_calls"."""
    choices = body.get("choices") if isinstance(body, dict) else None
    if not isinstance(choices, list) or not choices or not isinstance(choices[0], dict):
        raise ProxyError(502, "upstream", "The provider's response has no choices.")
    choice = choices[0]
    message = choice.get("message")
    if not isinstance(message, dict):
        message = {}
    resp_id = body.get("id")
    resp_id = resp_id if isinstance(resp_id, str) else ""
    content = _text_in(message.get("content")) or _text_in(message.get("refusal"))
    calls: list[ToolCall] = []
    raw_calls = message.get("tool_calls")
    if isinstance(raw_calls, list):
        for k, tc in enumerate(raw_calls):
            if not isinstance(tc, dict):
                continue
            fn = tc.get("function")
            fn = fn if isinstance(fn, dict) else {}
            calls.append(
                ToolCall(
                    id=tc.get("id") or _made_up_id(resp_id, k),
                    name=fn.get("name") or "",
                    arguments=_arguments(fn.get("arguments")),
                )
            )
    finish = _FINISH_IN.get(choice.get("finish_reason"), "stop")
    if calls and finish == "stop":
        finish = "tool_calls"
    model = body.get("model")
    return ChatResponse(
        id=resp_id,
        model=model if isinstance(model, str) else "",
        content=content,
        tool_calls=tuple(calls),
        finish_reason=finish,
        usage=_usage_in(body.get("usage")),
        created=_int(body.get("created")),
    )


def _made_up_id(resp_id: str, index: int) -> str:
    return f"call_{resp_id}_{index}" if resp_id else f"call_{index}"


class UpstreamChunkParser:
    """Turns a provider's stream chunks (each `data:` line's JSON, `[DONE]` excluded)
    into deltas. Only choice 0 is read. A tool call's id and name are passed on once,
    with its first fragment, even when a server repeats them; a server that leaves out
    `index` gets one per new call id. A chunk carrying an `error` raises ProxyError.
    `id`, `model` and `created` hold what the first chunk said."""

    __slots__ = ("_last_call", "_last_id", "_seen", "_tools", "created", "id", "model")

    def __init__(self) -> None:
        self.id = ""
        self.model = ""
        self.created = 0
        self._seen: set[int] = set()
        self._tools = False
        self._last_call = -1
        self._last_id: str | None = None

    def feed(self, obj: dict[str, Any]) -> list[Delta]:
        if not self.id:
            err = obj.get("error")
            if err:
                raise _stream_error(err)
            chunk_id = obj.get("id")
            self.id = chunk_id if isinstance(chunk_id, str) else ""
            model = obj.get("model")
            self.model = model if isinstance(model, str) else ""
            self.created = _int(obj.get("created"))
        out: list[Delta] = []
        finish: FinishReason | None = None
        choices = obj.get("choices")
        if choices:
            choice = choices[0]
            d = choice.get("delta")
            if d:
                text = d.get("content") or d.get("refusal")
                if text:
                    out.append(Delta(text=text))
                calls = d.get("tool_calls")
                if calls:
                    for tc in calls:
                        out.append(Delta(tool_call=self._call(tc)))
            reason = choice.get("finish_reason")
            if reason:
                finish = _FINISH_IN.get(reason, "stop")
                if finish == "stop" and self._tools:
                    finish = "tool_calls"
        elif obj.get("error"):
            raise _stream_error(obj["error"])
        usage = obj.get("usage")
        if finish is not None or usage:
            out.append(Delta(finish_reason=finish, usage=_usage_in(usage)))
        return out

    def _call(self, tc: dict[str, Any]) -> ToolCallDelta:
        self._tools = True
        call_id = tc.get("id")
        index = tc.get("index")
        if not isinstance(index, int):
            new = call_id and call_id != self._last_id
            index = (
                max(self._seen, default=-1) + 1 if new or self._last_call < 0 else self._last_call
            )
        self._last_call = index
        fn = tc.get("function") or {}
        arguments = _arguments(fn.get("arguments"))
        if index in self._seen:
            return ToolCallDelta(index, arguments=arguments)
        self._seen.add(index)
        self._last_id = call_id
        return ToolCallDelta(
            index,
            id=call_id or _made_up_id(self.id, index),
            name=fn.get("name") or "",
            arguments=arguments,
        )


def _stream_error(err: Any) -> ProxyError:
    message = err.get("message") if isinstance(err, dict) else err
    return ProxyError(502, "upstream", f"The provider's stream failed: {message}")
