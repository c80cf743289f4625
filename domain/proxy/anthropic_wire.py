"""Anthropic Messages on the wire <-> the canonical chat format (chat.py).

Inbound (a client calling `POST /v1/messages`): `parse_messages_request` validates the
body and answers a 400 naming the field (Anthropic's dotted paths: `messages.0.content.1`);
`render_message_response`, `MessageStreamRenderer` and `error_body` speak back.
Upstream (Contextgate calling Anthropic): `build_upstream_request`,
`parse_upstream_response`, `UpstreamEventParser` and `parse_upstream_error`.

Plain dicts in and out, nothing copied that can be shared: this runs on every request.

Choices worth knowing:
- A user turn holding tool_result blocks becomes one canonical `tool` message per block,
  then a user message with the turn's remaining text. Text blocks are joined with a
  newline (system blocks with a blank line); an assistant's text blocks (and those of a
  provider's answer) are joined with nothing, as a stream would have delivered them.
  Thinking blocks in the history are dropped; `is_error` on a tool result is not kept.
- Image, document and server-tool blocks are refused (text only), as are server tools.
- Tool call arguments are JSON text in the canonical format, `input` objects here.
  Arguments that are empty become `{}`; arguments that are not a JSON object (a model
  that wrote broken JSON) become `{"_raw_arguments": "<the text>"}`, so nothing is lost
  and the client's tool can report the mistake instead of running on made-up input.
  For the same reason the stream renderer holds a tool call's argument text until the
  call ends and sends it as one `input_json_delta`: the Anthropic SDK parses every
  fragment as it comes and fails the whole stream on invalid JSON.
- Stop reasons: stop -> end_turn (stop_sequence when the provider named the sequence),
  length -> max_tokens, tool_calls -> tool_use, content_filter -> refusal; "error" and
  "client_disconnected" -> end_turn. A stop with tool calls becomes tool_use.
- Usage: the canonical input counts every prompt token, cached or not; Anthropic's
  `input_tokens` excludes cache reads and writes. Upstream, input = input_tokens +
  cache_creation_input_tokens + cache_read_input_tokens and cached = cache reads;
  rendered, input_tokens = input - cached and cache_read_input_tokens = cached.
- Upstream, `max_tokens` (required by Anthropic) defaults to `default_max_tokens`
  (4096, a size every current Claude model accepts) when the caller gave none; a
  temperature above 1 (OpenAI allows 2) is capped at 1; when both temperature and top_p
  are set only temperature is sent (recent Claude models refuse both); seed has no
  Anthropic equivalent and is not sent.
- response_format (JSON mode) has no Anthropic equivalent either, but dropping it would
  let the model answer in prose to a caller that parses JSON: it becomes an instruction
  at the end of the system prompt (`json_instruction`), "Respond with a single JSON
  object only ...", with the schema (name, description, schema) for json_schema.
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
from domain.proxy.openai_wire import upstream_error
from domain.proxy.sse import sse_event

__all__ = [
    "DEFAULT_MAX_TOKENS",
    "JSON_OBJECT_INSTRUCTION",
    "MessageStreamRenderer",
    "UpstreamEventParser",
    "build_upstream_request",
    "error_body",
    "error_event",
    "json_instruction",
    "parse_messages_request",
    "parse_upstream_error",
    "parse_upstream_response",
    "render_message_response",
    "sse_event",
]

Event = tuple[str, dict[str, Any]]

DEFAULT_MAX_TOKENS = 4096

_ZERO_USAGE = Usage()
_UNSUPPORTED_BLOCKS = {
    "image": "image",
    "document": "document",
    "search_result": "search result",
    "container_upload": "file",
}
_TOOL_CHOICES = {"auto": "auto", "any": "required", "none": "none"}
_compact = json.JSONEncoder(ensure_ascii=False, separators=(",", ":")).encode
_loads = json.loads


# ---------------------------------------------------------------------------- inbound


def parse_messages_request(body: dict[str, Any]) -> ChatRequest:
    """A Messages request body as the canonical request; a 400 `ProxyError` naming the
    field (`param`) and what to fix when it is not valid."""
    if not isinstance(body, dict):
        raise invalid("The request body must be a JSON object.")
    model = body.get("model")
    if not isinstance(model, str) or not model:
        raise invalid("model: a non-empty string naming the model is required.", "model")
    max_tokens = body.get("max_tokens")
    if not isinstance(max_tokens, int) or isinstance(max_tokens, bool) or max_tokens < 1:
        raise invalid(
            f"max_tokens: required; a positive integer (got {max_tokens!r}).", "max_tokens"
        )
    raw = body.get("messages")
    if not isinstance(raw, list) or not raw:
        raise invalid("messages: a non-empty array of messages is required.", "messages")

    messages: list[Message] = []
    for i, m in enumerate(raw):
        if not isinstance(m, dict):
            raise invalid(f"messages.{i}: each message must be an object.", f"messages.{i}")
        role = m.get("role")
        content = m.get("content")
        if role == "user":
            if isinstance(content, str):
                messages.append(Message("user", content))
            else:
                _user_blocks(_blocks(content, i), i, messages)
        elif role == "assistant":
            if isinstance(content, str):
                messages.append(Message("assistant", content))
            else:
                messages.append(_assistant_blocks(_blocks(content, i), i))
        else:
            hint = " (the system prompt goes in the top-level `system`)" if role == "system" else ""
            raise invalid(
                f"messages.{i}.role: {role!r} is not valid; expected 'user' or 'assistant'{hint}.",
                f"messages.{i}.role",
            )

    tools = _tools(body.get("tools"))
    tool_choice, parallel = _tool_choice(body.get("tool_choice"), tools)
    stream = body.get("stream")
    if stream is not None and not isinstance(stream, bool):
        raise invalid("stream: must be true or false.", "stream")
    return ChatRequest(
        model=model,
        messages=tuple(messages),
        system=_system(body.get("system")),
        tools=tools,
        tool_choice=tool_choice,
        parallel_tool_calls=parallel,
        max_tokens=max_tokens,
        temperature=_number(body, "temperature"),
        top_p=_number(body, "top_p"),
        stop=_stop_sequences(body.get("stop_sequences")),
        stream=bool(stream),
        user=_user_id(body.get("metadata")),
    )


def _blocks(content: Any, i: int) -> list[Any]:
    if not isinstance(content, list):
        raise invalid(
            f"messages.{i}.content: must be a string or an array of content blocks.",
            f"messages.{i}.content",
        )
    return content


def _refuse_block(kind: Any, where: str) -> ProxyError:
    if kind in _UNSUPPORTED_BLOCKS:
        return invalid(
            f"{where}: {_UNSUPPORTED_BLOCKS[kind]} blocks are not supported; this gateway "
            'handles text only: send {"type": "text", "text": ...} blocks or a string.',
            where,
        )
    return invalid(f"{where}.type: {kind!r} blocks are not supported here.", f"{where}.type")


def _text_of(block: dict[str, Any], where: str) -> str:
    text = block.get("text")
    if not isinstance(text, str):
        raise invalid(f"{where}.text: must be a string.", f"{where}.text")
    return text


def _user_blocks(blocks: list[Any], i: int, out: list[Message]) -> None:
    texts: list[str] = []
    for j, block in enumerate(blocks):
        where = f"messages.{i}.content.{j}"
        kind = block.get("type") if isinstance(block, dict) else None
        if kind == "text":
            texts.append(_text_of(block, where))
        elif kind == "tool_result":
            call_id = block.get("tool_use_id")
            if not isinstance(call_id, str) or not call_id:
                raise invalid(
                    f"{where}.tool_use_id: the id of the tool_use this result answers is required.",
                    f"{where}.tool_use_id",
                )
            out.append(
                Message(
                    "tool", _tool_result_text(block.get("content"), where), tool_call_id=call_id
                )
            )
        else:
            raise _refuse_block(kind, where)
    if texts or not blocks:
        out.append(Message("user", texts[0] if len(texts) == 1 else "\n".join(texts)))


def _tool_result_text(content: Any, where: str) -> str:
    if content is None or isinstance(content, str):
        return content or ""
    if not isinstance(content, list):
        raise invalid(
            f"{where}.content: must be a string or an array of text blocks.", f"{where}.content"
        )
    texts: list[str] = []
    for k, block in enumerate(content):
        at = f"{where}.content.{k}"
        kind = block.get("type") if isinstance(block, dict) else None
        if kind != "text":
            raise _refuse_block(kind, at)
        texts.append(_text_of(block, at))
    return "\n".join(texts)


def _assistant_blocks(blocks: list[Any], i: int) -> Message:
    texts: list[str] = []
    calls: list[ToolCall] = []
    for j, block in enumerate(blocks):
        where = f"messages.{i}.content.{j}"
        kind = block.get("type") if isinstance(block, dict) else None
        if kind == "text":
            texts.append(_text_of(block, where))
        elif kind == "tool_use":
            call_id, name, args = block.get("id"), block.get("name"), block.get("input")
            if not isinstance(call_id, str) or not call_id:
                raise invalid(f"{where}.id: a non-empty string is required.", f"{where}.id")
            if not isinstance(name, str) or not name:
                raise invalid(f"{where}.name: a non-empty string is required.", f"{where}.name")
            if not isinstance(args, dict):
                raise invalid(f"{where}.input: must be an object.", f"{where}.input")
            calls.append(ToolCall(call_id, name, _compact(args)))
        elif kind == "thinking" or kind == "redacted_thinking":
            continue  # extended thinking is not carried through the canonical format
        else:
            raise _refuse_block(kind, where)
    return Message("assistant", "".join(texts), tool_calls=tuple(calls))


def _system(value: Any) -> str | None:
    if value is None or isinstance(value, str):
        return value or None
    if not isinstance(value, list):
        raise invalid("system: must be a string or an array of text blocks.", "system")
    texts: list[str] = []
    for k, block in enumerate(value):
        kind = block.get("type") if isinstance(block, dict) else None
        if kind != "text":
            raise _refuse_block(kind, f"system.{k}")
        texts.append(_text_of(block, f"system.{k}"))
    return "\n\n".join(texts) or None


def _tools(value: Any) -> tuple[Tool, ...]:
    if value is None:
        return ()
    if not isinstance(value, list):
        raise invalid("tools: must be an array of tools.", "tools")
    tools: list[Tool] = []
    for k, tool in enumerate(value):
        at = f"tools.{k}"
        if not isinstance(tool, dict):
            raise invalid(f"{at}: must be an object.", at)
        kind = tool.get("type")
        if kind is not None and kind != "custom":
            raise invalid(
                f"{at}.type: server tools ({kind!r}) are not supported; declare client tools "
                "with name, description and input_schema.",
                f"{at}.type",
            )
        name = tool.get("name")
        if not isinstance(name, str) or not name:
            raise invalid(f"{at}.name: a non-empty string is required.", f"{at}.name")
        description = tool.get("description")
        if description is not None and not isinstance(description, str):
            raise invalid(f"{at}.description: must be a string.", f"{at}.description")
        schema = tool.get("input_schema")
        if not isinstance(schema, dict):
            raise invalid(
                f"{at}.input_schema: required; a JSON Schema object.", f"{at}.input_schema"
            )
        tools.append(Tool(name, description, schema))
    return tuple(tools)


def _tool_choice(value: Any, tools: tuple[Tool, ...]) -> tuple[str | None, bool | None]:
    if value is None:
        return None, None
    kind = value.get("type") if isinstance(value, dict) else None
    choice: str | None = _TOOL_CHOICES.get(kind) if isinstance(kind, str) else None
    if kind == "tool":
        name = value.get("name")
        if not isinstance(name, str) or not any(t.name == name for t in tools):
            raise invalid(
                f"tool_choice.name: {name!r} is not one of the request's tools.",
                "tool_choice.name",
            )
        choice = name
    elif choice is None:
        raise invalid(
            "tool_choice: expected an object with type 'auto', 'any', 'tool' (with name) or "
            "'none'.",
            "tool_choice.type",
        )
    disable = value.get("disable_parallel_tool_use")
    if disable is not None and not isinstance(disable, bool):
        raise invalid(
            "tool_choice.disable_parallel_tool_use: must be true or false.",
            "tool_choice.disable_parallel_tool_use",
        )
    return choice, None if disable is None else not disable


def _number(body: dict[str, Any], key: str) -> float | None:
    value = body.get(key)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0 <= value <= 1:
        raise invalid(f"{key}: must be a number between 0 and 1 (got {value!r}).", key)
    return value


def _stop_sequences(value: Any) -> tuple[str, ...]:
    if value is None:
        return ()
    if not isinstance(value, list) or not all(isinstance(s, str) for s in value):
        raise invalid("stop_sequences: must be an array of strings.", "stop_sequences")
    return tuple(value)


def _user_id(metadata: Any) -> str | None:
    if metadata is None:
        return None
    if not isinstance(metadata, dict):
        raise invalid("metadata: must be an object.", "metadata")
    user = metadata.get("user_id")
    if user is not None and not isinstance(user, str):
        raise invalid("metadata.user_id: must be a string.", "metadata.user_id")
    return user


# --------------------------------------------------------------------------- rendering

_STOP_OUT: dict[str, str] = {
    "stop": "end_turn",
    "length": "max_tokens",
    "tool_calls": "tool_use",
    "content_filter": "refusal",
    "error": "end_turn",
    "client_disconnected": "end_turn",
}


def _stop_reason(
    reason: FinishReason, stop_sequence: str | None, has_tools: bool
) -> tuple[str, str | None]:
    if reason == "stop":
        if stop_sequence is not None:
            return "stop_sequence", stop_sequence
        if has_tools:
            return "tool_use", None
    return _STOP_OUT[reason], None


def _tool_input(arguments: str) -> dict[str, Any]:
    """Tool call arguments (JSON text) as Anthropic's `input` object: see the module
    notes for empty and broken arguments."""
    if not arguments or arguments.isspace():
        return {}
    try:
        value = _loads(arguments)
    except ValueError:
        return {"_raw_arguments": arguments}
    return value if isinstance(value, dict) else {"_raw_arguments": arguments}


def _usage_out(usage: Usage | None) -> dict[str, Any]:
    u = usage or _ZERO_USAGE
    return {
        "input_tokens": max(u.input_tokens - u.cached_tokens, 0),
        "output_tokens": u.output_tokens,
        "cache_read_input_tokens": u.cached_tokens,
        "cache_creation_input_tokens": 0,
    }


def render_message_response(resp: ChatResponse, model: str) -> dict[str, Any]:
    """A Messages `message` object; `model` is the name to show the caller."""
    content: list[dict[str, Any]] = []
    if resp.content:
        content.append({"type": "text", "text": resp.content})
    for c in resp.tool_calls:
        content.append(
            {"type": "tool_use", "id": c.id, "name": c.name, "input": _tool_input(c.arguments)}
        )
    reason, sequence = _stop_reason(resp.finish_reason, resp.stop_sequence, bool(resp.tool_calls))
    return {
        "id": resp.id,
        "type": "message",
        "role": "assistant",
        "model": model,
        "content": content,
        "stop_reason": reason,
        "stop_sequence": sequence,
        "usage": _usage_out(resp.usage),
    }


class MessageStreamRenderer:
    """Turns deltas into Anthropic's stream events, `(event name, data)` pairs to send
    with `sse_event`: message_start, then for each block content_block_start, its
    deltas and content_block_stop (text, tool calls, text again: each a new block with
    the next index), then message_delta (stop_reason, usage) and message_stop.

    `start()` sends message_start early (before the provider answers) and is implied by
    the first `delta()`. A tool call's argument text is held until its block closes
    (see the module notes); a fragment for a call whose block is already closed (a
    provider interleaving parallel calls) cannot be sent and is dropped here; the
    recorded answer (StreamAccumulator) still has it. `input_tokens` is the prompt size
    known before the call; the provider's own count, when it reports one, goes out in
    message_delta's usage."""

    __slots__ = (
        "_args",
        "_block",
        "_closed",
        "_finish",
        "_finished",
        "_had_tools",
        "_open",
        "_started",
        "_stop_sequence",
        "_usage",
        "id",
        "input_tokens",
        "model",
    )

    def __init__(self, id: str, model: str, input_tokens: int = 0) -> None:
        self.id = id
        self.model = model
        self.input_tokens = input_tokens
        self._started = False
        self._finished = False
        self._block = -1  # index of the last block opened
        self._open: int | None = None  # -1: a text block is open; n >= 0: tool call n
        self._args: list[str] = []
        self._closed: set[int] = set()
        self._had_tools = False
        self._finish: FinishReason | None = None
        self._stop_sequence: str | None = None
        self._usage: Usage | None = None

    def start(self) -> list[Event]:
        if self._started:
            return []
        self._started = True
        message: dict[str, Any] = {
            "id": self.id,
            "type": "message",
            "role": "assistant",
            "model": self.model,
            "content": [],
            "stop_reason": None,
            "stop_sequence": None,
            "usage": {"input_tokens": self.input_tokens, "output_tokens": 0},
        }
        return [("message_start", {"type": "message_start", "message": message})]

    def _close(self, out: list[Event]) -> None:
        if self._open is None:
            return
        index = self._block
        if self._open >= 0:
            self._closed.add(self._open)
            if self._args:
                text = "".join(self._args)
                self._args = []
                data = _tool_input(text)
                if "_raw_arguments" in data or not data:
                    text = _compact(data) if data else ""
                if text:
                    delta = {"type": "input_json_delta", "partial_json": text}
                    out.append(
                        (
                            "content_block_delta",
                            {"type": "content_block_delta", "index": index, "delta": delta},
                        )
                    )
        self._open = None
        out.append(("content_block_stop", {"type": "content_block_stop", "index": index}))

    def _begin(self, out: list[Event], block: dict[str, Any]) -> None:
        self._block += 1
        out.append(
            (
                "content_block_start",
                {"type": "content_block_start", "index": self._block, "content_block": block},
            )
        )

    def delta(self, d: Delta) -> list[Event]:
        if self._finished:
            return []
        out = self.start() if not self._started else []
        if d.usage is not None:
            self._usage = d.usage
        if d.finish_reason is not None:
            self._finish = d.finish_reason
            self._stop_sequence = d.stop_sequence
        if d.text:
            if self._open != -1:
                self._close(out)
                self._begin(out, {"type": "text", "text": ""})
                self._open = -1
            delta = {"type": "text_delta", "text": d.text}
            out.append(
                (
                    "content_block_delta",
                    {"type": "content_block_delta", "index": self._block, "delta": delta},
                )
            )
        call = d.tool_call
        if call is not None:
            if self._open == call.index:
                if call.arguments:
                    self._args.append(call.arguments)
            elif call.index not in self._closed:
                self._close(out)
                block = {
                    "type": "tool_use",
                    "id": call.id or f"call_{call.index}",
                    "name": call.name or "",
                    "input": {},
                }
                self._begin(out, block)
                self._open = call.index
                self._had_tools = True
                if call.arguments:
                    self._args.append(call.arguments)
        return out

    def finish(self, finish_reason: FinishReason | None = None) -> list[Event]:
        """The events that end the stream: the open block's stop, message_delta and
        message_stop. `finish_reason`, when given, overrides the one the deltas carried
        (the default is "stop")."""
        if self._finished:
            return []
        self._finished = True
        out = self.start()
        self._close(out)
        reason = finish_reason or self._finish or "stop"
        sequence = self._stop_sequence if finish_reason is None else None
        stop_reason, stop_sequence = _stop_reason(reason, sequence, self._had_tools)
        usage: dict[str, Any] = {"output_tokens": 0}
        if self._usage is not None:
            u = self._usage
            usage = {
                "input_tokens": max(u.input_tokens - u.cached_tokens, 0),
                "cache_read_input_tokens": u.cached_tokens,
                "output_tokens": u.output_tokens,
            }
        out.append(
            (
                "message_delta",
                {
                    "type": "message_delta",
                    "delta": {"stop_reason": stop_reason, "stop_sequence": stop_sequence},
                    "usage": usage,
                },
            )
        )
        out.append(("message_stop", {"type": "message_stop"}))
        return out


# ----------------------------------------------------------------------------- errors

_ERROR_TYPES = {
    "invalid_request": "invalid_request_error",
    "authentication": "authentication_error",
    "permission": "permission_error",
    "not_found": "not_found_error",
    "conflict": "invalid_request_error",
    "rate_limit": "rate_limit_error",
    "upstream": "api_error",
    "timeout": "timeout_error",
    "overloaded": "overloaded_error",
    "internal": "api_error",
}


def error_body(err: ProxyError) -> dict[str, Any]:
    """Anthropic's error object: `{"type": "error", "error": {"type", "message"}}`."""
    kind = _ERROR_TYPES.get(err.kind, "api_error")
    return {"type": "error", "error": {"type": kind, "message": err.message}}


def error_event(err: ProxyError) -> Event:
    """The `error` event for a stream that fails after its first byte."""
    return ("error", error_body(err))


# --------------------------------------------------------------------------- upstream


def _input_schema(parameters: dict[str, Any]) -> dict[str, Any]:
    if "type" in parameters:
        return parameters
    if not parameters:
        return {"type": "object", "properties": {}}
    return {"type": "object", **parameters}


JSON_OBJECT_INSTRUCTION = (
    "Respond with a single JSON object only: no prose, no Markdown code fences, nothing "
    "before or after the object."
)


def json_instruction(response_format: dict[str, Any]) -> str | None:
    """The system instruction standing for OpenAI's `response_format` (Anthropic has no
    such field): None for text; for json_schema, the schema the object must follow."""
    kind = response_format.get("type")
    if kind == "json_object":
        return JSON_OBJECT_INSTRUCTION
    if kind != "json_schema":
        return None
    spec = response_format.get("json_schema")
    spec = spec if isinstance(spec, dict) else {}
    name = spec.get("name")
    lines = [JSON_OBJECT_INSTRUCTION]
    described = f" ({spec['description']})" if isinstance(spec.get("description"), str) else ""
    schema = spec.get("schema")
    if isinstance(schema, dict):
        named = f", named {name!r}" if isinstance(name, str) else ""
        lines.append(f"The object must be valid against this JSON Schema{named}{described}:")
        lines.append(json.dumps(schema, ensure_ascii=False))
    elif isinstance(name, str):
        lines.append(f"The object is a {name!r}{described}.")
    return "\n".join(lines)


def build_upstream_request(
    req: ChatRequest, model: str, *, default_max_tokens: int = DEFAULT_MAX_TOKENS
) -> dict[str, Any]:
    """The body for Anthropic's Messages API: `model` is the provider's model name.
    System messages found among the turns join the system prompt (Anthropic has no
    system role); tool messages become tool_result blocks in a user turn (before any
    text of that turn, as Anthropic requires); consecutive same-role turns are merged;
    assistant tool calls become tool_use blocks; empty or blank text is left out (the
    API refuses empty text blocks) and a turn left with nothing is skipped; a JSON
    response_format ends the system prompt with `json_instruction`."""
    system = [req.system] if req.system else []
    turns: list[dict[str, Any]] = []
    last: dict[str, Any] | None = None
    for m in req.messages:
        role = m.role
        text = m.content if m.content and not m.content.isspace() else ""
        if role == "system":
            if text:
                system.append(text)
            continue
        if role == "tool":
            result: dict[str, Any] = {"type": "tool_result", "tool_use_id": m.tool_call_id or ""}
            if text:
                result["content"] = text
            if last is not None and last["role"] == "user":
                blocks = last["content"]
                k = 0
                while k < len(blocks) and blocks[k]["type"] == "tool_result":
                    k += 1
                blocks.insert(k, result)
            else:
                last = {"role": "user", "content": [result]}
                turns.append(last)
            continue
        blocks = [{"type": "text", "text": text}] if text else []
        if role == "assistant":
            for c in m.tool_calls:
                blocks.append(
                    {
                        "type": "tool_use",
                        "id": c.id,
                        "name": c.name,
                        "input": _tool_input(c.arguments),
                    }
                )
        if not blocks:
            continue
        if last is not None and last["role"] == role:
            last["content"].extend(blocks)
        else:
            last = {"role": role, "content": blocks}
            turns.append(last)
    if not turns:
        raise invalid(
            "messages: at least one user or assistant message with content is required.",
            "messages",
        )

    body: dict[str, Any] = {
        "model": model,
        "max_tokens": req.max_tokens or default_max_tokens,
        "messages": turns,
    }
    if req.response_format is not None:
        instruction = json_instruction(req.response_format)
        if instruction:
            system.append(instruction)
    if system:
        body["system"] = "\n\n".join(system)
    if req.tools:
        tools: list[dict[str, Any]] = []
        for t in req.tools:
            tool: dict[str, Any] = {"name": t.name, "input_schema": _input_schema(t.parameters)}
            if t.description is not None:
                tool["description"] = t.description
            tools.append(tool)
        body["tools"] = tools
        choice = req.tool_choice
        tc: dict[str, Any] | None = None
        if choice == "auto":
            tc = {"type": "auto"}
        elif choice == "required":
            tc = {"type": "any"}
        elif choice == "none":
            tc = {"type": "none"}
        elif choice is not None:
            tc = {"type": "tool", "name": choice}
        if req.parallel_tool_calls is False and choice != "none":
            tc = tc or {"type": "auto"}
            tc["disable_parallel_tool_use"] = True
        if tc is not None:
            body["tool_choice"] = tc
    if req.stop:
        body["stop_sequences"] = list(req.stop)
    if req.temperature is not None:
        body["temperature"] = min(req.temperature, 1.0)
    elif req.top_p is not None:
        body["top_p"] = req.top_p
    if req.user is not None:
        body["metadata"] = {"user_id": req.user}
    if req.stream:
        body["stream"] = True
    return body


_STOP_IN: dict[Any, FinishReason] = {
    "end_turn": "stop",
    "stop_sequence": "stop",
    "pause_turn": "stop",
    "max_tokens": "length",
    "model_context_window_exceeded": "length",
    "tool_use": "tool_calls",
    "refusal": "content_filter",
}


def _int(value: Any) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) else 0


def _usage_in(u: Any) -> Usage | None:
    if not isinstance(u, dict):
        return None
    read = _int(u.get("cache_read_input_tokens"))
    written = _int(u.get("cache_creation_input_tokens"))
    return Usage(_int(u.get("input_tokens")) + read + written, _int(u.get("output_tokens")), read)


def parse_upstream_response(body: dict[str, Any]) -> ChatResponse:
    """Anthropic's `message` as the canonical response: text blocks joined, tool_use
    blocks as tool calls (input serialized to JSON text), thinking blocks dropped."""
    if not isinstance(body, dict) or not isinstance(body.get("content"), list):
        raise ProxyError(502, "upstream", "The provider's response has no content.")
    texts: list[str] = []
    calls: list[ToolCall] = []
    for block in body["content"]:
        kind = block.get("type") if isinstance(block, dict) else None
        if kind == "text":
            text = block.get("text")
            if isinstance(text, str):
                texts.append(text)
        elif kind == "tool_use":
            args = block.get("input")
            calls.append(
                ToolCall(
                    id=block.get("id") or f"call_{len(calls)}",
                    name=block.get("name") or "",
                    arguments=_compact(args) if isinstance(args, dict) else "{}",
                )
            )
    raw_reason = body.get("stop_reason")
    sequence = body.get("stop_sequence") if raw_reason == "stop_sequence" else None
    resp_id, model = body.get("id"), body.get("model")
    return ChatResponse(
        id=resp_id if isinstance(resp_id, str) else "",
        model=model if isinstance(model, str) else "",
        content="".join(texts),
        tool_calls=tuple(calls),
        finish_reason=_STOP_IN.get(raw_reason, "stop"),
        usage=_usage_in(body.get("usage")),
        stop_sequence=sequence if isinstance(sequence, str) else None,
    )


_ERROR_STATUS: dict[Any, int] = {
    "invalid_request_error": 400,
    "authentication_error": 401,
    "permission_error": 403,
    "not_found_error": 404,
    "request_too_large": 413,
    "rate_limit_error": 429,
    "api_error": 500,
    "timeout_error": 504,
    "overloaded_error": 529,
}


def _error_message(err: Any) -> str:
    if isinstance(err, dict):
        return str(err.get("message") or err.get("type") or "")
    return "" if err is None else str(err)


def parse_upstream_error(status: int, body: Any, retry_after: float | None = None) -> ProxyError:
    """The error to report for Anthropic's failed HTTP status and its error body
    (`{"type": "error", "error": {"type", "message"}}`); see `upstream_error`."""
    message = ""
    if isinstance(body, dict):
        message = _error_message(body.get("error", body))
    elif isinstance(body, str | bytes):
        message = body if isinstance(body, str) else body.decode(errors="replace")
    return upstream_error(status, message[:1000], retry_after)


class UpstreamEventParser:
    """Turns Anthropic's stream events into deltas. Tool calls are numbered 0, 1, ...
    in the order their blocks start; a tool call whose input stays empty gets "{}" as
    its arguments when its block stops (OpenAI clients parse the text). The usage comes
    with message_delta (input counted from message_start unless message_delta has its
    own). An `error` event raises ProxyError (overloaded_error: 503, ...). `id` and
    `model` hold what message_start said."""

    __slots__ = ("_args_seen", "_calls", "_start_usage", "id", "model")

    def __init__(self) -> None:
        self.id = ""
        self.model = ""
        self._calls: dict[Any, int] = {}  # Anthropic block index -> canonical call index
        self._args_seen: set[int] = set()
        self._start_usage: dict[str, Any] = {}

    def feed(self, event_name: str, data: dict[str, Any]) -> list[Delta]:
        kind = data.get("type") or event_name
        if kind == "content_block_delta":
            delta = data.get("delta") or {}
            dtype = delta.get("type")
            if dtype == "text_delta":
                text = delta.get("text")
                return [Delta(text=text)] if text else []
            if dtype == "input_json_delta":
                partial = delta.get("partial_json")
                index = self._calls.get(data.get("index"))
                if index is None or not partial:
                    return []
                self._args_seen.add(index)
                return [Delta(tool_call=ToolCallDelta(index, arguments=partial))]
            return []  # thinking, signature, citations
        if kind == "content_block_start":
            block = data.get("content_block") or {}
            btype = block.get("type")
            if btype == "text":
                text = block.get("text")
                return [Delta(text=text)] if text else []
            if btype == "tool_use":
                index = len(self._calls)
                self._calls[data.get("index")] = index
                given = block.get("input")
                arguments = ""
                if given and isinstance(given, dict):  # the whole input at once
                    arguments = _compact(given)
                    self._args_seen.add(index)
                call = ToolCallDelta(
                    index,
                    id=block.get("id") or f"call_{index}",
                    name=block.get("name") or "",
                    arguments=arguments,
                )
                return [Delta(tool_call=call)]
            return []
        if kind == "content_block_stop":
            index = self._calls.get(data.get("index"))
            if index is None or index in self._args_seen:
                return []
            self._args_seen.add(index)
            return [Delta(tool_call=ToolCallDelta(index, arguments="{}"))]
        if kind == "message_start":
            message = data.get("message") or {}
            self.id = message.get("id") or ""
            self.model = message.get("model") or ""
            usage = message.get("usage")
            if isinstance(usage, dict):
                self._start_usage = usage
            return []
        if kind == "message_delta":
            delta = data.get("delta") or {}
            raw_reason = delta.get("stop_reason")
            usage = data.get("usage")
            merged: dict[str, Any] | None = None
            if isinstance(usage, dict):  # its counts are cumulative; it may leave input out
                merged = dict(self._start_usage)
                for key, value in usage.items():
                    if value is not None:
                        merged[key] = value
            sequence = delta.get("stop_sequence") if raw_reason == "stop_sequence" else None
            return [
                Delta(
                    finish_reason=_STOP_IN.get(raw_reason, "stop") if raw_reason else None,
                    usage=_usage_in(merged),
                    stop_sequence=sequence if isinstance(sequence, str) else None,
                )
            ]
        if kind == "error":
            err = data.get("error")
            kind_name = err.get("type") if isinstance(err, dict) else None
            status = _ERROR_STATUS.get(kind_name, 500)
            raise upstream_error(status, _error_message(err))
        return []  # ping, message_stop, events added later
