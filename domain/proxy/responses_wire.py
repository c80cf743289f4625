"""OpenAI Responses API <-> the canonical chat format (domain/proxy/chat.py).

Pure translation: `parse_responses_request` turns a `POST /v1/responses` body into a
canonical ChatRequest plus the Responses-only fields (previous_response_id, conversation,
store, the input items); `render_response` and `ResponseStreamRenderer` turn a canonical
answer into a `response` object and its SSE events. The gateway keeps the state.

Item ids are derived from a base the caller chooses (by default the response id without
its `resp_` prefix): `msg_<base>` for the assistant message, `fc_<base>_<k>` for its k-th
tool call, `fco_<base>` for a tool result (see conversations_wire.py). The same base
gives the same ids in a response and, later, in a conversation's item list.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from domain.proxy.chat import (
    ChatRequest,
    ChatResponse,
    Delta,
    FinishReason,
    Message,
    ProxyError,
    Role,
    Tool,
    ToolCall,
    Usage,
    invalid,
)

ResponseStatus = Literal["completed", "incomplete", "failed", "in_progress"]
Event = tuple[str, dict[str, Any]]

METADATA_MAX_KEYS = 16
METADATA_KEY_MAX = 64
METADATA_VALUE_MAX = 512
TOOL_CHOICES = frozenset(("auto", "none", "required"))
TEXT_PARTS = frozenset(("input_text", "output_text", "text"))
MESSAGE_ROLES: dict[str, Role] = {
    "user": "user",
    "assistant": "assistant",
    "system": "system",
    "developer": "system",
}
# Ignored in input: reasoning items are a model's private state, which another model
# (or the same one, without the encrypted content) cannot use; dropping them changes
# nothing the caller wrote.
SKIPPED_ITEMS = frozenset(("reasoning",))
# Request fields that would change the meaning of the answer and cannot be honoured.
UNSUPPORTED_FIELDS = ("background", "prompt")

_INCOMPLETE_REASONS: dict[str, str | None] = {
    "length": "max_output_tokens",
    "content_filter": "content_filter",
    "client_disconnected": None,
}
_ERROR_CODES = {"rate_limit": "rate_limit_exceeded", "invalid_request": "invalid_prompt"}


@dataclass(frozen=True, slots=True)
class ResponsesRequest:
    """A parsed `POST /v1/responses`. `chat.messages` are the new input only (the
    gateway prepends the state named by previous_response_id / conversation);
    `chat.system` is `instructions` followed by the input's system/developer messages.
    `input_items` is the input as given (a string input becomes one user message
    item). `echo` holds the request settings a `response` object repeats (instructions,
    tools, tool_choice, text, temperature, ...): JSON, ready to record and to render
    from later (`render_response` accepts it in place of the request)."""

    chat: ChatRequest
    previous_response_id: str | None = None
    conversation_id: str | None = None
    store: bool = True
    instructions: str | None = None
    input_items: tuple[dict[str, Any], ...] = ()
    echo: dict[str, Any] = field(default_factory=dict)


# ---------------------------------------------------------------------------- parsing


def parse_responses_request(body: Mapping[str, Any]) -> ResponsesRequest:
    """Validate and translate a Responses request body; a ProxyError (400) names the
    field at fault, as OpenAI does (`input[2].content[0].type`, `tools[1].type`...)."""
    model = body.get("model")
    if not isinstance(model, str) or not model:
        raise invalid("model is required and must be a string", "model")
    for name in UNSUPPORTED_FIELDS:
        if body.get(name):
            raise invalid(f"'{name}' is not supported by this gateway", name)

    previous = _opt_str(body, "previous_response_id")
    conversation_id = _conversation_id(body.get("conversation"))
    if previous is not None and conversation_id is not None:
        raise invalid(
            "previous_response_id and conversation cannot be used together", "conversation"
        )
    instructions = _opt_str(body, "instructions")

    raw_input = body.get("input")
    if raw_input is None:
        items: list[Any] = []
    elif isinstance(raw_input, str):
        items = [{"type": "message", "role": "user", "content": raw_input}]
    elif isinstance(raw_input, list):
        items = raw_input
    else:
        raise invalid("input must be a string or a list of items", "input")
    messages = parse_input_items(items, "input")
    system_parts = [instructions] if instructions else []
    system_parts.extend(m.content for m in messages if m.role == "system")
    if system_parts:
        messages = [m for m in messages if m.role != "system"]

    tools, tools_echo = _tools(body.get("tools"))
    tool_choice, tool_choice_echo = _tool_choice(body.get("tool_choice"))
    response_format, text_echo = _text_format(body.get("text"))
    parallel = body.get("parallel_tool_calls")
    if parallel is not None and not isinstance(parallel, bool):
        raise invalid("parallel_tool_calls must be a boolean", "parallel_tool_calls")
    max_tokens = body.get("max_output_tokens")
    if max_tokens is not None and (
        not isinstance(max_tokens, int) or isinstance(max_tokens, bool) or max_tokens < 1
    ):
        raise invalid("max_output_tokens must be a positive integer", "max_output_tokens")
    temperature = _number(body, "temperature", 2.0)
    top_p = _number(body, "top_p", 1.0)
    stream = body.get("stream", False)
    if not isinstance(stream, bool):
        raise invalid("stream must be a boolean", "stream")
    store = body.get("store")
    if store is None:
        store = True
    elif not isinstance(store, bool):
        raise invalid("store must be a boolean", "store")
    metadata = parse_metadata(body.get("metadata"))
    user = _opt_str(body, "user")

    chat = ChatRequest(
        model=model,
        messages=tuple(messages),
        system="\n\n".join(system_parts) if system_parts else None,
        tools=tools,
        tool_choice=tool_choice,
        parallel_tool_calls=parallel,
        max_tokens=max_tokens,
        temperature=temperature,
        top_p=top_p,
        response_format=response_format,
        stream=stream,
        include_usage=stream,  # the final streamed event carries the usage
        user=user,
        metadata=metadata,
    )
    echo: dict[str, Any] = {
        "model": model,
        "instructions": instructions,
        "max_output_tokens": max_tokens,
        "metadata": metadata,
        "parallel_tool_calls": True if parallel is None else parallel,
        "previous_response_id": previous,
        "conversation": None if conversation_id is None else {"id": conversation_id},
        "store": store,
        "temperature": temperature,
        "top_p": top_p,
        "tool_choice": tool_choice_echo,
        "tools": tools_echo,
        "text": text_echo,
        "truncation": "disabled",
        "user": user,
    }
    return ResponsesRequest(
        chat=chat,
        previous_response_id=previous,
        conversation_id=conversation_id,
        store=store,
        instructions=instructions,
        input_items=tuple(items),
        echo=echo,
    )


def parse_input_items(items: list[Any], param: str) -> list[Message]:
    """Responses input items (`input`, or a conversation's `items`) as canonical
    messages, in order. System and developer messages become role "system" (the caller
    decides where they go). Function calls following an assistant message (or each
    other) join that assistant turn; a function call output becomes a tool message."""
    messages: list[Message] = []
    names: dict[str, str] = {}  # call_id -> function name, for the tool messages
    for i, item in enumerate(items):
        where = f"{param}[{i}]"
        if not isinstance(item, dict):
            raise invalid("each input item must be an object", where)
        kind = item.get("type", "message")
        if kind == "message":
            messages.append(_message_item(item, where))
        elif kind == "function_call":
            call = ToolCall(
                id=_req_str(item, "call_id", where),
                name=_req_str(item, "name", where),
                arguments=_req_str(item, "arguments", where),
            )
            names[call.id] = call.name
            last = messages[-1] if messages else None
            if last is not None and last.role == "assistant":
                messages[-1] = Message(
                    role="assistant", content=last.content, tool_calls=(*last.tool_calls, call)
                )
            else:
                messages.append(Message(role="assistant", content="", tool_calls=(call,)))
        elif kind == "function_call_output":
            call_id = _req_str(item, "call_id", where)
            output = item.get("output")
            text = output if isinstance(output, str) else _text_parts(output, f"{where}.output")
            messages.append(
                Message(role="tool", content=text, tool_call_id=call_id, name=names.get(call_id))
            )
        elif kind in SKIPPED_ITEMS:
            continue
        elif kind == "item_reference":
            raise invalid("item_reference inputs are not supported; send the item itself", where)
        else:
            raise invalid(f"input items of type '{kind}' are not supported", f"{where}.type")
    return messages


def parse_metadata(value: Any, param: str = "metadata") -> dict[str, str]:
    """OpenAI's metadata: at most 16 string pairs, keys up to 64 and values up to 512
    characters."""
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise invalid("metadata must be an object of strings", param)
    if len(value) > METADATA_MAX_KEYS:
        raise invalid(f"metadata may hold at most {METADATA_MAX_KEYS} keys", param)
    for key, item in value.items():
        if len(key) > METADATA_KEY_MAX:
            raise invalid(f"metadata keys may be at most {METADATA_KEY_MAX} characters", param)
        if not isinstance(item, str):
            raise invalid("metadata values must be strings", f"{param}.{key}")
        if len(item) > METADATA_VALUE_MAX:
            raise invalid(
                f"metadata values may be at most {METADATA_VALUE_MAX} characters",
                f"{param}.{key}",
            )
    return dict(value)


def _message_item(item: dict[str, Any], where: str) -> Message:
    role = item.get("role")
    role = MESSAGE_ROLES.get(role) if isinstance(role, str) else None
    if role is None:
        raise invalid("role must be one of user, assistant, system, developer", f"{where}.role")
    content = item.get("content")
    text = content if isinstance(content, str) else _text_parts(content, f"{where}.content")
    return Message(role=role, content=text)


def _text_parts(parts: Any, where: str) -> str:
    """A list of text content parts as one string (parts joined by a newline); image,
    file and audio parts are refused."""
    if not isinstance(parts, list):
        raise invalid("must be a string or a list of text parts", where)
    texts: list[str] = []
    for j, part in enumerate(parts):
        if not isinstance(part, dict):
            raise invalid("each content part must be an object", f"{where}[{j}]")
        kind = part.get("type")
        key = "refusal" if kind == "refusal" else "text"
        if kind not in TEXT_PARTS and kind != "refusal":
            raise invalid(
                f"content parts of type '{kind}' are not supported (text only)",
                f"{where}[{j}].type",
            )
        text = part.get(key)
        if not isinstance(text, str):
            raise invalid(f"{key} must be a string", f"{where}[{j}].{key}")
        texts.append(text)
    return "\n".join(texts)


def _tools(value: Any) -> tuple[tuple[Tool, ...], list[dict[str, Any]]]:
    if value is None:
        return (), []
    if not isinstance(value, list):
        raise invalid("tools must be a list", "tools")
    tools: list[Tool] = []
    echo: list[dict[str, Any]] = []
    for i, spec in enumerate(value):
        where = f"tools[{i}]"
        if not isinstance(spec, dict):
            raise invalid("each tool must be an object", where)
        kind = spec.get("type")
        if kind != "function":
            raise invalid(
                f"tools of type '{kind}' are not supported; only function tools",
                f"{where}.type",
            )
        name = _req_str(spec, "name", where)
        description = _opt_str(spec, "description", where)
        parameters = spec.get("parameters")
        if parameters is None:
            parameters = {}
        elif not isinstance(parameters, dict):
            raise invalid("parameters must be a JSON Schema object", f"{where}.parameters")
        strict = spec.get("strict")
        if strict is not None and not isinstance(strict, bool):
            raise invalid("strict must be a boolean", f"{where}.strict")
        tools.append(Tool(name=name, description=description, parameters=parameters))
        echo.append(
            {
                "type": "function",
                "name": name,
                "description": description,
                "parameters": parameters,
                "strict": strict,
            }
        )
    return tuple(tools), echo


def _tool_choice(value: Any) -> tuple[str | None, str | dict[str, Any]]:
    if value is None:
        return None, "auto"
    if isinstance(value, str):
        if value not in TOOL_CHOICES:
            raise invalid("tool_choice must be auto, none, required or a function", "tool_choice")
        return value, value
    if isinstance(value, dict) and value.get("type") == "function":
        name = value.get("name")
        if not isinstance(name, str) or not name:
            raise invalid("tool_choice.name must name a function", "tool_choice.name")
        return name, {"type": "function", "name": name}
    raise invalid("only auto, none, required or a function tool_choice is supported", "tool_choice")


def _text_format(value: Any) -> tuple[dict[str, Any] | None, dict[str, Any]]:
    if value is None:
        return None, {"format": {"type": "text"}}
    if not isinstance(value, dict):
        raise invalid("text must be an object", "text")
    fmt = value.get("format")
    if fmt is None:
        return None, {"format": {"type": "text"}}
    if not isinstance(fmt, dict):
        raise invalid("text.format must be an object", "text.format")
    kind = fmt.get("type")
    if kind == "text":
        return None, {"format": {"type": "text"}}
    if kind == "json_object":
        return {"type": "json_object"}, {"format": {"type": "json_object"}}
    if kind != "json_schema":
        raise invalid(
            "text.format.type must be text, json_object or json_schema", "text.format.type"
        )
    name = _req_str(fmt, "name", "text.format")
    schema = fmt.get("schema")
    if not isinstance(schema, dict):
        raise invalid("text.format.schema must be a JSON Schema object", "text.format.schema")
    spec: dict[str, Any] = {"name": name, "schema": schema}
    description = _opt_str(fmt, "description", "text.format")
    if description is not None:
        spec["description"] = description
    strict = fmt.get("strict")
    if strict is not None:
        if not isinstance(strict, bool):
            raise invalid("strict must be a boolean", "text.format.strict")
        spec["strict"] = strict
    return {"type": "json_schema", "json_schema": spec}, {"format": {"type": "json_schema", **spec}}


def _conversation_id(value: Any) -> str | None:
    if value is None:
        return None
    if isinstance(value, dict):
        value = value.get("id")
        if not isinstance(value, str) or not value:
            raise invalid("conversation.id must be a string", "conversation.id")
    if not isinstance(value, str) or not value:
        raise invalid("conversation must be an id or an object with an id", "conversation")
    return value


def _opt_str(obj: Mapping[str, Any], key: str, where: str | None = None) -> str | None:
    value = obj.get(key)
    if value is not None and not isinstance(value, str):
        raise invalid(f"{key} must be a string", f"{where}.{key}" if where else key)
    return value


def _req_str(obj: Mapping[str, Any], key: str, where: str) -> str:
    value = obj.get(key)
    if not isinstance(value, str):
        raise invalid(f"{key} is required and must be a string", f"{where}.{key}")
    return value


def _number(body: Mapping[str, Any], key: str, high: float) -> float | None:
    value = body.get(key)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0 <= value <= high:
        raise invalid(f"{key} must be a number between 0 and {high:g}", key)
    return float(value)


# -------------------------------------------------------------------------- rendering


def item_ids(base: str) -> tuple[str, str]:
    """(message item id, function call id prefix) for an assistant turn's `base`."""
    return f"msg_{base}", f"fc_{base}_"


def message_item(item_id: str, text: str, status: str = "completed") -> dict[str, Any]:
    return {
        "type": "message",
        "id": item_id,
        "status": status,
        "role": "assistant",
        "content": [{"type": "output_text", "text": text, "annotations": []}],
    }


def function_call_item(item_id: str, call: ToolCall, status: str = "completed") -> dict[str, Any]:
    return {
        "type": "function_call",
        "id": item_id,
        "call_id": call.id,
        "name": call.name,
        "arguments": call.arguments,
        "status": status,
    }


def render_usage(usage: Usage | None) -> dict[str, Any] | None:
    if usage is None:
        return None
    return {
        "input_tokens": usage.input_tokens,
        "input_tokens_details": {"cached_tokens": usage.cached_tokens, "cache_write_tokens": 0},
        "output_tokens": usage.output_tokens,
        "output_tokens_details": {"reasoning_tokens": 0},
        "total_tokens": usage.total_tokens,
    }


def render_error(error: ProxyError | None) -> dict[str, Any]:
    """A response's `error` object: OpenAI's fixed codes, the message and the field."""
    if error is None:
        return {"code": "server_error", "message": "The model failed to answer", "param": None}
    return {
        "code": _ERROR_CODES.get(error.kind, "server_error"),
        "message": error.message,
        "param": error.param,
    }


def status_of(finish_reason: FinishReason) -> tuple[ResponseStatus, dict[str, Any] | None]:
    """A finish reason as a response status and its incomplete_details."""
    if finish_reason == "error":
        return "failed", None
    if finish_reason in _INCOMPLETE_REASONS:
        reason = _INCOMPLETE_REASONS[finish_reason]
        return "incomplete", None if reason is None else {"reason": reason}
    return "completed", None


def _echo_of(request: ResponsesRequest | Mapping[str, Any]) -> Mapping[str, Any]:
    return request.echo if isinstance(request, ResponsesRequest) else request


def _response_object(
    echo: Mapping[str, Any],
    *,
    response_id: str,
    created_at: int,
    model: str,
    status: ResponseStatus,
    output: list[dict[str, Any]],
    usage: Usage | None = None,
    incomplete_details: dict[str, Any] | None = None,
    error: dict[str, Any] | None = None,
) -> dict[str, Any]:
    response = {
        "id": response_id,
        "object": "response",
        "created_at": created_at,
        "status": status,
        "error": error,
        "incomplete_details": incomplete_details,
        "output": output,
        "usage": render_usage(usage),
        "background": False,
        "reasoning": None,
        "service_tier": "default",
    }
    response.update(echo)
    response["model"] = model or echo.get("model") or ""
    return response


def render_response(
    answer: ChatResponse,
    request: ResponsesRequest | Mapping[str, Any],
    *,
    response_id: str,
    created_at: int | None = None,
    item_base: str | None = None,
    error: ProxyError | None = None,
) -> dict[str, Any]:
    """The `response` object for a complete (or cut short) answer. `request` is the
    parsed request or its recorded `echo`; `created_at` defaults to `answer.created`;
    `error` (or the finish reason "error") makes it a failed response. The output is
    the assistant message (when there is text, or nothing else) then the tool calls."""
    base = item_base if item_base is not None else response_id.removeprefix("resp_")
    status, incomplete = status_of(answer.finish_reason)
    if error is not None:
        status, incomplete = "failed", None
    item_status = "completed" if status == "completed" else "incomplete"
    message_id, call_prefix = item_ids(base)
    output: list[dict[str, Any]] = []
    if answer.content or (not answer.tool_calls and status != "failed"):
        output.append(message_item(message_id, answer.content, item_status))
    output.extend(
        function_call_item(f"{call_prefix}{k}", call) for k, call in enumerate(answer.tool_calls)
    )
    return _response_object(
        _echo_of(request),
        response_id=response_id,
        created_at=answer.created if created_at is None else created_at,
        model=answer.model,
        status=status,
        output=output,
        usage=answer.usage,
        incomplete_details=incomplete,
        error=render_error(error) if status == "failed" else None,
    )


# -------------------------------------------------------------------------- streaming


def sse_event(event_type: str, data: Mapping[str, Any]) -> bytes:
    """One server-sent event as the Responses API frames it."""
    payload = json.dumps(data, ensure_ascii=False, separators=(",", ":"))
    return f"event: {event_type}\ndata: {payload}\n\n".encode()


class _Call:
    __slots__ = ("args", "call_id", "item_id", "name", "open", "output_index", "status")

    def __init__(self, item_id: str, call_id: str, name: str, output_index: int) -> None:
        self.item_id = item_id
        self.call_id = call_id
        self.name = name
        self.output_index = output_index
        self.args: list[str] = []
        self.open = True
        self.status = "in_progress"

    def item(self) -> dict[str, Any]:
        return function_call_item(
            self.item_id, ToolCall(self.call_id, self.name, "".join(self.args)), self.status
        )


class ResponseStreamRenderer:
    """Turns canonical stream deltas into Responses SSE events, as `(type, data)` pairs
    with increasing sequence numbers: `start()` once (response.created,
    response.in_progress), `feed(delta)` for each delta, `finish()` once at the end
    (closes the open items, then response.completed, .incomplete or .failed carrying
    the whole response, which `response()` returns again afterwards).

    Text opens a message item (output_item.added, content_part.added, then
    output_text.delta events); the first piece of a tool call closes the open item and
    opens a function_call item (then function_call_arguments.delta events). Pieces of a
    call that was already closed (a provider interleaving parallel calls) still reach
    the final response, without delta events of their own."""

    __slots__ = (
        "_call_prefix",
        "_calls",
        "_echo",
        "_finish_reason",
        "_message_id",
        "_output",
        "_response",
        "_seq",
        "_text",
        "_text_index",
        "_text_item",
        "_usage",
        "created_at",
        "model",
        "response_id",
    )

    def __init__(
        self,
        request: ResponsesRequest | Mapping[str, Any],
        *,
        response_id: str,
        created_at: int,
        model: str | None = None,
        item_base: str | None = None,
    ) -> None:
        self._echo = _echo_of(request)
        self.response_id = response_id
        self.created_at = created_at
        self.model = model or self._echo.get("model") or ""
        base = item_base if item_base is not None else response_id.removeprefix("resp_")
        self._message_id, self._call_prefix = item_ids(base)
        self._seq = 0
        self._output: list[dict[str, Any] | _Call] = []  # done items, or open calls
        self._calls: dict[int, _Call] = {}
        self._text: list[str] = []  # of the open message item
        self._text_item: str | None = None  # id of the open message item
        self._text_index = 0
        self._finish_reason: FinishReason | None = None
        self._usage: Usage | None = None
        self._response: dict[str, Any] | None = None

    def _event(self, out: list[Event], event_type: str, data: dict[str, Any]) -> None:
        data["type"] = event_type
        data["sequence_number"] = self._seq
        self._seq += 1
        out.append((event_type, data))

    def _snapshot(self, status: ResponseStatus, **extra: Any) -> dict[str, Any]:
        output = [o.item() if isinstance(o, _Call) else o for o in self._output]
        return _response_object(
            self._echo,
            response_id=self.response_id,
            created_at=self.created_at,
            model=self.model,
            status=status,
            output=output,
            **extra,
        )

    def start(self) -> list[Event]:
        out: list[Event] = []
        self._event(out, "response.created", {"response": self._snapshot("in_progress")})
        self._event(out, "response.in_progress", {"response": self._snapshot("in_progress")})
        return out

    def feed(self, delta: Delta) -> list[Event]:
        out: list[Event] = []
        if delta.text:
            if self._text_item is None:
                self._close_calls(out, "completed")
                self._open_text(out)
            self._text.append(delta.text)
            self._event(
                out,
                "response.output_text.delta",
                {
                    "item_id": self._text_item,
                    "output_index": self._text_index,
                    "content_index": 0,
                    "delta": delta.text,
                    "logprobs": [],
                },
            )
        piece = delta.tool_call
        if piece is not None:
            call = self._calls.get(piece.index)
            if call is None:
                self._close_text(out, "completed")
                self._close_calls(out, "completed")
                k = len(self._calls)
                call = _Call(
                    f"{self._call_prefix}{k}",
                    piece.id or f"call_{self.response_id.removeprefix('resp_')}_{k}",
                    piece.name or "",
                    len(self._output),
                )
                self._calls[piece.index] = call
                self._output.append(call)
                self._event(
                    out,
                    "response.output_item.added",
                    {"output_index": call.output_index, "item": call.item()},
                )
            elif piece.name and not call.name:
                call.name = piece.name
            if piece.arguments:
                call.args.append(piece.arguments)
                if call.open:
                    self._event(
                        out,
                        "response.function_call_arguments.delta",
                        {
                            "item_id": call.item_id,
                            "output_index": call.output_index,
                            "delta": piece.arguments,
                        },
                    )
        if delta.finish_reason is not None:
            self._finish_reason = delta.finish_reason
        if delta.usage is not None:
            self._usage = delta.usage
        return out

    def finish(
        self,
        finish_reason: FinishReason | None = None,
        *,
        usage: Usage | None = None,
        error: ProxyError | None = None,
        model: str | None = None,
    ) -> list[Event]:
        """The closing events. The finish reason and usage default to those the deltas
        carried; `error` (or the finish reason "error") ends with response.failed."""
        if model:
            self.model = model
        if usage is not None:
            self._usage = usage
        reason = finish_reason or self._finish_reason or "stop"
        status, incomplete = status_of(reason)
        if error is not None:
            status, incomplete = "failed", None
        item_status = "completed" if status == "completed" else "incomplete"
        out: list[Event] = []
        if not self._output and self._text_item is None and status != "failed":
            self._open_text(out)  # an empty answer is still one (empty) message
        self._close_text(out, item_status)
        self._close_calls(out, item_status)
        self._response = self._snapshot(
            status,
            usage=self._usage,
            incomplete_details=incomplete,
            error=render_error(error) if status == "failed" else None,
        )
        event_type = {
            "completed": "response.completed",
            "incomplete": "response.incomplete",
        }.get(status, "response.failed")
        self._event(out, event_type, {"response": self._response})
        return out

    def response(self) -> dict[str, Any]:
        """The final response object (after `finish`), or the response so far."""
        return self._response if self._response is not None else self._snapshot("in_progress")

    def _open_text(self, out: list[Event]) -> None:
        self._text_index = len(self._output)
        self._text_item = (
            self._message_id if self._text_index == 0 else f"{self._message_id}_{self._text_index}"
        )
        self._text = []
        self._event(
            out,
            "response.output_item.added",
            {
                "output_index": self._text_index,
                "item": {**message_item(self._text_item, "", "in_progress"), "content": []},
            },
        )
        self._event(
            out,
            "response.content_part.added",
            {
                "item_id": self._text_item,
                "output_index": self._text_index,
                "content_index": 0,
                "part": {"type": "output_text", "text": "", "annotations": []},
            },
        )

    def _close_text(self, out: list[Event], status: str) -> None:
        item_id = self._text_item
        if item_id is None:
            return
        text = "".join(self._text)
        where = {"item_id": item_id, "output_index": self._text_index, "content_index": 0}
        self._event(out, "response.output_text.done", {**where, "text": text, "logprobs": []})
        part = {"type": "output_text", "text": text, "annotations": []}
        self._event(out, "response.content_part.done", {**where, "part": part})
        item = message_item(item_id, text, status)
        self._output.append(item)
        self._event(
            out, "response.output_item.done", {"output_index": self._text_index, "item": item}
        )
        self._text_item = None

    def _close_calls(self, out: list[Event], status: str) -> None:
        for call in self._calls.values():
            if not call.open:
                continue
            call.open = False
            call.status = status
            arguments = "".join(call.args)
            self._event(
                out,
                "response.function_call_arguments.done",
                {
                    "item_id": call.item_id,
                    "output_index": call.output_index,
                    "arguments": arguments,
                },
            )
            self._event(
                out,
                "response.output_item.done",
                {"output_index": call.output_index, "item": call.item()},
            )
