"""Anthropic Messages <-> canonical chat: validation, rendering and stream events (checked
against the official SDK's types and its own stream accumulator), the upstream
direction, errors, and round trips across the two dialects."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
from anthropic.lib.streaming._messages import accumulate_event
from anthropic.types import ErrorResponse, RawMessageStreamEvent, message_create_params
from anthropic.types import Message as SdkMessage
from openai.lib.streaming.chat import ChatCompletionStreamState
from openai.types.chat import ChatCompletionChunk
from pydantic import TypeAdapter

from domain.proxy import openai_wire
from domain.proxy.anthropic_wire import (
    DEFAULT_MAX_TOKENS,
    JSON_OBJECT_INSTRUCTION,
    MessageStreamRenderer,
    UpstreamEventParser,
    build_upstream_request,
    error_body,
    error_event,
    json_instruction,
    parse_messages_request,
    parse_upstream_error,
    parse_upstream_response,
    render_message_response,
    sse_event,
)
from domain.proxy.chat import (
    ChatRequest,
    ChatResponse,
    Delta,
    Message,
    ProxyError,
    StreamAccumulator,
    Tool,
    ToolCall,
    ToolCallDelta,
    Usage,
)
from domain.proxy.sse import SSEDecoder

EVENT = TypeAdapter(RawMessageStreamEvent)
NON_STREAMING = TypeAdapter(message_create_params.MessageCreateParamsNonStreaming)
STREAMING = TypeAdapter(message_create_params.MessageCreateParamsStreaming)

WEATHER: dict[str, Any] = {
    "name": "get_weather",
    "description": "Weather for a city",
    "input_schema": {
        "type": "object",
        "properties": {"city": {"type": "string"}},
        "required": ["city"],
    },
}


def validate_params(adapter: TypeAdapter[Any], value: dict[str, Any]) -> None:
    """The SDK's request types, checked all the way down: pydantic validates `Iterable`
    fields (messages, content blocks, tools) lazily, as they are consumed."""

    def walk(x: Any) -> None:
        if isinstance(x, dict):
            for v in x.values():
                walk(v)
        elif isinstance(x, list | tuple):
            for v in x:
                walk(v)
        elif isinstance(x, Iterator):
            walk(list(x))

    walk(adapter.validate_python(value))


def body(**extra: Any) -> dict[str, Any]:
    return {
        "model": "claude",
        "max_tokens": 256,
        "messages": [{"role": "user", "content": "Hi"}],
        **extra,
    }


def error_of(request: Any) -> ProxyError:
    with pytest.raises(ProxyError) as caught:
        parse_messages_request(request)
    assert (caught.value.status, caught.value.kind) == (400, "invalid_request")
    return caught.value


# ---------------------------------------------------------------------------- parsing


def test_a_minimal_request() -> None:
    assert parse_messages_request(body()) == ChatRequest(
        model="claude", messages=(Message("user", "Hi"),), max_tokens=256
    )


def test_blocks_tool_use_and_tool_results() -> None:
    req = parse_messages_request(
        body(
            system=[
                {"type": "text", "text": "Be brief.", "cache_control": {"type": "ephemeral"}},
                {"type": "text", "text": "Use metric units."},
            ],
            messages=[
                {"role": "user", "content": [{"type": "text", "text": "Weather in Paris?"}]},
                {
                    "role": "assistant",
                    "content": [
                        {"type": "thinking", "thinking": "hmm", "signature": "s"},
                        {"type": "text", "text": "Checking."},
                        {
                            "type": "tool_use",
                            "id": "toolu_1",
                            "name": "get_weather",
                            "input": {"city": "Paris"},
                        },
                        {"type": "tool_use", "id": "toolu_2", "name": "now", "input": {}},
                    ],
                },
                {
                    "role": "user",
                    "content": [
                        {"type": "tool_result", "tool_use_id": "toolu_1", "content": "18C"},
                        {
                            "type": "tool_result",
                            "tool_use_id": "toolu_2",
                            "content": [
                                {"type": "text", "text": "12:00"},
                                {"type": "text", "text": "UTC"},
                            ],
                            "is_error": False,
                        },
                        {"type": "text", "text": "And tomorrow?"},
                    ],
                },
                {
                    "role": "user",
                    "content": [{"type": "tool_result", "tool_use_id": "toolu_3"}],
                },
            ],
            tools=[WEATHER, {"name": "now", "input_schema": {"type": "object"}}],
            tool_choice={"type": "tool", "name": "get_weather", "disable_parallel_tool_use": True},
            stop_sequences=["END"],
            temperature=0.5,
            top_p=0.9,
            top_k=40,
            stream=True,
            metadata={"user_id": "u-1"},
        )
    )
    assert req.system == "Be brief.\n\nUse metric units."
    assert req.messages == (
        Message("user", "Weather in Paris?"),
        Message(
            "assistant",
            "Checking.",
            tool_calls=(
                ToolCall("toolu_1", "get_weather", '{"city":"Paris"}'),
                ToolCall("toolu_2", "now", "{}"),
            ),
        ),
        Message("tool", "18C", tool_call_id="toolu_1"),
        Message("tool", "12:00\nUTC", tool_call_id="toolu_2"),
        Message("user", "And tomorrow?"),
        Message("tool", "", tool_call_id="toolu_3"),
    )
    assert req.tools[0] == Tool("get_weather", "Weather for a city", WEATHER["input_schema"])
    assert (req.tool_choice, req.parallel_tool_calls) == ("get_weather", False)
    assert (req.stop, req.temperature, req.top_p) == (("END",), 0.5, 0.9)
    assert req.stream and req.user == "u-1"


@pytest.mark.parametrize(
    ("choice", "canonical"),
    [
        ({"type": "auto"}, ("auto", None)),
        ({"type": "any"}, ("required", None)),
        ({"type": "none"}, ("none", None)),
        ({"type": "auto", "disable_parallel_tool_use": False}, ("auto", True)),
    ],
)
def test_tool_choices(choice: dict[str, Any], canonical: tuple[str, bool | None]) -> None:
    req = parse_messages_request(body(tools=[WEATHER], tool_choice=choice))
    assert (req.tool_choice, req.parallel_tool_calls) == canonical


@pytest.mark.parametrize(
    ("request_body", "param", "words"),
    [
        ({"max_tokens": 5, "messages": []}, "model", "model"),
        (
            {"model": "claude", "messages": [{"role": "user", "content": "x"}]},
            "max_tokens",
            "required",
        ),
        (body(max_tokens=0), "max_tokens", "positive integer"),
        (body(max_tokens="9"), "max_tokens", "positive integer"),
        (body(messages=[]), "messages", "non-empty"),
        (body(messages=[1]), "messages.0", "object"),
        (body(messages=[{"role": "system", "content": "x"}]), "messages.0.role", "`system`"),
        (body(messages=[{"role": "user", "content": 5}]), "messages.0.content", "string"),
        (
            body(
                messages=[
                    {
                        "role": "user",
                        "content": [
                            {"type": "text", "text": "What is this?"},
                            {"type": "image", "source": {"type": "base64", "data": "..."}},
                        ],
                    }
                ]
            ),
            "messages.0.content.1",
            "image blocks are not supported",
        ),
        (
            body(messages=[{"role": "user", "content": [{"type": "document"}]}]),
            "messages.0.content.0",
            "document blocks",
        ),
        (
            body(
                messages=[
                    {
                        "role": "user",
                        "content": [
                            {
                                "type": "tool_result",
                                "tool_use_id": "t",
                                "content": [{"type": "image"}],
                            }
                        ],
                    }
                ]
            ),
            "messages.0.content.0.content.0",
            "image blocks",
        ),
        (
            body(messages=[{"role": "user", "content": [{"type": "tool_result"}]}]),
            "messages.0.content.0.tool_use_id",
            "tool_use",
        ),
        (
            body(messages=[{"role": "user", "content": [{"type": "tool_use"}]}]),
            "messages.0.content.0.type",
            "'tool_use'",
        ),
        (
            body(messages=[{"role": "assistant", "content": [{"type": "tool_result"}]}]),
            "messages.0.content.0.type",
            "'tool_result'",
        ),
        (
            body(messages=[{"role": "user", "content": [{"type": "text"}]}]),
            "messages.0.content.0.text",
            "string",
        ),
        (
            body(
                messages=[
                    {
                        "role": "assistant",
                        "content": [{"type": "tool_use", "id": "t", "name": "f", "input": "x"}],
                    }
                ]
            ),
            "messages.0.content.0.input",
            "object",
        ),
        (
            body(
                messages=[
                    {"role": "assistant", "content": [{"type": "tool_use", "id": "t", "input": {}}]}
                ]
            ),
            "messages.0.content.0.name",
            "non-empty",
        ),
        (body(system=5), "system", "string"),
        (body(system=[{"type": "image"}]), "system.0", "image"),
        (body(tools=[{"name": "f"}]), "tools.0.input_schema", "required"),
        (body(tools=[{"input_schema": {}}]), "tools.0.name", "non-empty"),
        (body(tools=[{"type": "web_search_20250305", "name": "w"}]), "tools.0.type", "server"),
        (body(tool_choice={"type": "maybe"}), "tool_choice.type", "'auto'"),
        (body(tool_choice="auto"), "tool_choice.type", "'auto'"),
        (body(tools=[WEATHER], tool_choice={"type": "tool"}), "tool_choice.name", "None"),
        (
            body(tool_choice={"type": "auto", "disable_parallel_tool_use": 1}),
            "tool_choice.disable_parallel_tool_use",
            "true or false",
        ),
        (body(temperature=1.5), "temperature", "between 0 and 1"),
        (body(top_p=-0.1), "top_p", "between 0 and 1"),
        (body(stop_sequences="END"), "stop_sequences", "array"),
        (body(stream=1), "stream", "true or false"),
        (body(metadata="u"), "metadata", "object"),
        (body(metadata={"user_id": 3}), "metadata.user_id", "string"),
    ],
)
def test_invalid_requests_name_the_field(
    request_body: dict[str, Any], param: str, words: str
) -> None:
    err = error_of(request_body)
    assert err.param == param
    assert words in err.message
    assert err.message.startswith(param.split(".")[0])


def test_a_body_that_is_not_an_object() -> None:
    assert error_of("hi").param is None


# -------------------------------------------------------------------------- rendering


def test_render_text_and_tool_use() -> None:
    resp = ChatResponse(
        id="msg_1",
        model="gpt-4o",
        content="Checking.",
        tool_calls=(
            ToolCall("call_1", "get_weather", '{"city": "Paris"}'),
            ToolCall("call_2", "now", ""),
            ToolCall("call_3", "broken", '{"city": "Par'),
            ToolCall("call_4", "listy", "[1, 2]"),
        ),
        finish_reason="tool_calls",
        usage=Usage(input_tokens=100, output_tokens=20, cached_tokens=60),
    )
    out = render_message_response(resp, "claude")
    message = SdkMessage.model_validate(out)
    assert message.model == "claude"
    assert message.stop_reason == "tool_use"
    assert [b.type for b in message.content] == [
        "text",
        "tool_use",
        "tool_use",
        "tool_use",
        "tool_use",
    ]
    inputs = [b.input for b in message.content if b.type == "tool_use"]
    assert inputs == [
        {"city": "Paris"},
        {},
        {"_raw_arguments": '{"city": "Par'},
        {"_raw_arguments": "[1, 2]"},
    ]
    assert (message.usage.input_tokens, message.usage.output_tokens) == (40, 20)
    assert message.usage.cache_read_input_tokens == 60


@pytest.mark.parametrize(
    ("reason", "sequence", "calls", "wire", "wire_sequence"),
    [
        ("stop", None, False, "end_turn", None),
        ("stop", "END", False, "stop_sequence", "END"),
        ("stop", None, True, "tool_use", None),
        ("length", None, False, "max_tokens", None),
        ("tool_calls", None, True, "tool_use", None),
        ("content_filter", None, False, "refusal", None),
        ("error", None, False, "end_turn", None),
        ("client_disconnected", None, False, "end_turn", None),
    ],
)
def test_stop_reasons(
    reason: Any, sequence: str | None, calls: bool, wire: str, wire_sequence: str | None
) -> None:
    resp = ChatResponse(
        "msg",
        "m",
        "x",
        tool_calls=(ToolCall("t", "f", "{}"),) if calls else (),
        finish_reason=reason,
        stop_sequence=sequence,
    )
    message = SdkMessage.model_validate(render_message_response(resp, "claude"))
    assert (message.stop_reason, message.stop_sequence) == (wire, wire_sequence)


def test_an_empty_answer_without_usage() -> None:
    message = SdkMessage.model_validate(
        render_message_response(ChatResponse("msg", "m", ""), "claude")
    )
    assert message.content == []
    assert message.usage.input_tokens == 0


# ---------------------------------------------------------------------------- streams


def replay(events: list[tuple[str, dict[str, Any]]]) -> Any:
    """Our events through the SDK's types and its own accumulator: what a client gets."""
    snapshot = None
    json_bufs: dict[int, bytes] = {}
    for name, data in events:
        if name == "ping":  # not one of the SDK's message events; clients skip it
            continue
        event = EVENT.validate_python(data)
        assert event.type == name
        snapshot = accumulate_event(event=event, current_snapshot=snapshot, json_bufs=json_bufs)
    return snapshot


def test_stream_text_then_tools_then_text() -> None:
    r = MessageStreamRenderer("msg_1", "claude", input_tokens=42)
    events = r.start()
    events += r.delta(Delta(text="Let me "))
    events += r.delta(Delta(text="check."))
    events += r.delta(Delta(tool_call=ToolCallDelta(0, id="call_a", name="get_weather")))
    events += r.delta(Delta(tool_call=ToolCallDelta(0, arguments='{"city":')))
    events += r.delta(Delta(tool_call=ToolCallDelta(0, arguments='"Paris"}')))
    events += r.delta(Delta(tool_call=ToolCallDelta(1, id="call_b", name="now", arguments="")))
    events += r.delta(Delta(tool_call=ToolCallDelta(0, arguments="late")))  # dropped
    events += r.delta(Delta(text="Done."))
    events += r.delta(Delta(finish_reason="tool_calls", usage=Usage(50, 9, 8)))
    events += r.finish()
    names = [name for name, _ in events]
    assert names == [
        "message_start",
        "content_block_start",
        "content_block_delta",
        "content_block_delta",
        "content_block_stop",
        "content_block_start",
        "content_block_delta",  # the tool call's whole input, once
        "content_block_stop",
        "content_block_start",
        "content_block_stop",
        "content_block_start",
        "content_block_delta",
        "content_block_stop",
        "message_delta",
        "message_stop",
    ]
    assert [d["index"] for n, d in events if n == "content_block_start"] == [0, 1, 2, 3]
    assert events[0][1]["message"]["usage"]["input_tokens"] == 42
    assert events[6][1]["delta"] == {"type": "input_json_delta", "partial_json": '{"city":"Paris"}'}
    message = replay(events)
    assert [b.type for b in message.content] == ["text", "tool_use", "tool_use", "text"]
    assert message.content[0].text == "Let me check."
    assert message.content[1].input == {"city": "Paris"}
    assert (message.content[2].id, message.content[2].input) == ("call_b", {})
    assert message.content[3].text == "Done."
    assert message.stop_reason == "tool_use"
    assert (message.usage.input_tokens, message.usage.output_tokens) == (42, 9)
    delta_usage = events[-2][1]["usage"]
    assert delta_usage == {"input_tokens": 42, "cache_read_input_tokens": 8, "output_tokens": 9}
    assert r.finish() == [] and r.delta(Delta(text="late")) == []


def test_stream_broken_tool_arguments_do_not_break_the_client() -> None:
    r = MessageStreamRenderer("msg", "claude")
    events = r.delta(Delta(tool_call=ToolCallDelta(0, id="t", name="f", arguments='{"a": ')))
    events += r.finish()
    message = replay(events)
    assert message.content[0].input == {"_raw_arguments": '{"a": '}
    assert message.stop_reason == "tool_use"


def test_stream_finish_overrides_and_stop_sequences() -> None:
    r = MessageStreamRenderer("msg", "claude")
    events = r.delta(Delta(text="a", finish_reason="stop", stop_sequence="END"))
    events += r.finish()
    assert events[-2][1]["delta"] == {"stop_reason": "stop_sequence", "stop_sequence": "END"}
    assert events[-2][1]["usage"] == {"output_tokens": 0}
    replay(events)
    r = MessageStreamRenderer("msg", "claude")
    events = r.delta(Delta(text="a", finish_reason="stop", stop_sequence="END"))
    events += r.finish("length")
    assert replay(events).stop_reason == "max_tokens"


def test_an_empty_stream_is_still_well_formed() -> None:
    r = MessageStreamRenderer("msg", "claude", 3)
    events = r.finish()
    assert [n for n, _ in events] == ["message_start", "message_delta", "message_stop"]
    assert replay(events).content == []


def test_sse_event_framing() -> None:
    assert sse_event("ping", {"type": "ping"}) == b'event: ping\ndata: {"type":"ping"}\n\n'


# --------------------------------------------------------------------------- upstream


def canonical_request(**changes: Any) -> ChatRequest:
    base = dict(
        model="chat",
        system="Be brief.",
        messages=(
            Message("user", "Weather in Paris and London?"),
            Message(
                "assistant",
                "Checking.",
                tool_calls=(
                    ToolCall("call_1", "get_weather", '{"city":"Paris"}'),
                    ToolCall("call_2", "get_weather", '{"city":"London"}'),
                ),
            ),
            Message("tool", "18C", tool_call_id="call_1"),
            Message("tool", "15C", tool_call_id="call_2"),
            Message("user", "Thanks. Tomorrow?"),
        ),
        tools=(Tool("get_weather", "Weather", WEATHER["input_schema"]),),
        tool_choice="auto",
        max_tokens=300,
        temperature=0.4,
        stop=("END",),
        user="u-1",
    )
    base.update(changes)
    return ChatRequest(**base)  # type: ignore[arg-type]


def test_build_upstream_request() -> None:
    out = build_upstream_request(canonical_request(), "claude-sonnet")
    validate_params(NON_STREAMING, out)
    assert out["model"] == "claude-sonnet"
    assert out["system"] == "Be brief."
    assert [t["role"] for t in out["messages"]] == ["user", "assistant", "user"]
    assert out["messages"][1]["content"] == [
        {"type": "text", "text": "Checking."},
        {"type": "tool_use", "id": "call_1", "name": "get_weather", "input": {"city": "Paris"}},
        {"type": "tool_use", "id": "call_2", "name": "get_weather", "input": {"city": "London"}},
    ]
    assert out["messages"][2]["content"] == [
        {"type": "tool_result", "tool_use_id": "call_1", "content": "18C"},
        {"type": "tool_result", "tool_use_id": "call_2", "content": "15C"},
        {"type": "text", "text": "Thanks. Tomorrow?"},
    ]
    assert out["tools"] == [
        {"name": "get_weather", "input_schema": WEATHER["input_schema"], "description": "Weather"}
    ]
    assert out["tool_choice"] == {"type": "auto"}
    assert (out["max_tokens"], out["stop_sequences"], out["temperature"]) == (300, ["END"], 0.4)
    assert out["metadata"] == {"user_id": "u-1"}
    assert "stream" not in out


def test_build_upstream_request_merges_and_orders_turns() -> None:
    req = canonical_request(
        system=None,
        messages=(
            Message("system", "Summary of earlier turns."),
            Message("user", "One"),
            Message("user", "   "),  # blank: left out
            Message("user", "Two"),
            Message("assistant", "", tool_calls=(ToolCall("c", "now", ""),)),
            Message("user", "While you look:"),
            Message("tool", "", tool_call_id="c"),  # a result goes before the text
            Message("assistant", "Noon."),
            Message("assistant", "Anything else?"),
        ),
        tools=(Tool("now"),),
        tool_choice=None,
        parallel_tool_calls=False,
        max_tokens=None,
        temperature=1.7,
        top_p=0.5,
        stream=True,
    )
    out = build_upstream_request(req, "claude", default_max_tokens=1024)
    validate_params(STREAMING, out)
    assert out["system"] == "Summary of earlier turns."
    assert out["messages"] == [
        {
            "role": "user",
            "content": [{"type": "text", "text": "One"}, {"type": "text", "text": "Two"}],
        },
        {
            "role": "assistant",
            "content": [{"type": "tool_use", "id": "c", "name": "now", "input": {}}],
        },
        {
            "role": "user",
            "content": [
                {"type": "tool_result", "tool_use_id": "c"},
                {"type": "text", "text": "While you look:"},
            ],
        },
        {
            "role": "assistant",
            "content": [
                {"type": "text", "text": "Noon."},
                {"type": "text", "text": "Anything else?"},
            ],
        },
    ]
    assert out["tools"] == [{"name": "now", "input_schema": {"type": "object", "properties": {}}}]
    assert out["tool_choice"] == {"type": "auto", "disable_parallel_tool_use": True}
    assert out["max_tokens"] == 1024
    assert out["temperature"] == 1.0 and "top_p" not in out
    assert out["stream"] is True
    assert build_upstream_request(canonical_request(max_tokens=None), "c")["max_tokens"] == (
        DEFAULT_MAX_TOKENS
    )


@pytest.mark.parametrize(
    ("choice", "wire"),
    [
        ("required", {"type": "any"}),
        ("none", {"type": "none"}),
        ("get_weather", {"type": "tool", "name": "get_weather"}),
    ],
)
def test_build_upstream_tool_choice(choice: str, wire: dict[str, Any]) -> None:
    out = build_upstream_request(canonical_request(tool_choice=choice), "c")
    validate_params(NON_STREAMING, out)
    assert out["tool_choice"] == wire
    no_tools = build_upstream_request(canonical_request(tools=(), tool_choice=choice), "c")
    assert "tool_choice" not in no_tools and "tools" not in no_tools


def test_build_upstream_request_needs_a_turn() -> None:
    with pytest.raises(ProxyError) as caught:
        build_upstream_request(ChatRequest("m", (Message("system", "x"),)), "c")
    assert caught.value.param == "messages"


def test_openai_request_to_anthropic_and_back() -> None:
    """OpenAI body -> canonical -> Anthropic upstream body -> canonical again."""
    openai_body = {
        "model": "chat",
        "messages": [
            {"role": "system", "content": "Be brief."},
            {"role": "user", "content": "Weather in Paris?"},
            {
                "role": "assistant",
                "content": "Checking.",
                "tool_calls": [
                    {
                        "id": "call_1",
                        "type": "function",
                        "function": {"name": "get_weather", "arguments": '{"city":"Paris"}'},
                    }
                ],
            },
            {"role": "tool", "tool_call_id": "call_1", "content": "18C"},
            {"role": "user", "content": "Thanks"},
        ],
        "tools": [
            {
                "type": "function",
                "function": {
                    "name": "get_weather",
                    "description": "Weather",
                    "parameters": WEATHER["input_schema"],
                },
            }
        ],
        "tool_choice": "required",
        "parallel_tool_calls": False,
        "max_tokens": 200,
        "temperature": 0.2,
        "stop": ["END"],
        "user": "u-1",
        "stream": True,
    }
    canonical = openai_wire.parse_chat_request(openai_body)
    upstream = build_upstream_request(canonical, "claude-sonnet")
    validate_params(STREAMING, upstream)
    again = parse_messages_request(upstream)
    assert again.messages == canonical.messages
    assert again.system == canonical.system
    assert again.tools == canonical.tools
    assert (again.tool_choice, again.parallel_tool_calls) == ("required", False)
    assert (again.max_tokens, again.temperature, again.stop) == (200, 0.2, ("END",))
    assert (again.user, again.stream) == ("u-1", True)


def test_anthropic_request_to_canonical_and_back() -> None:
    req = parse_messages_request(
        body(
            system="S",
            messages=[
                {"role": "user", "content": "Hi"},
                {
                    "role": "assistant",
                    "content": [
                        {"type": "text", "text": "Checking."},
                        {
                            "type": "tool_use",
                            "id": "t1",
                            "name": "get_weather",
                            "input": {"city": "Oslo"},
                        },
                    ],
                },
                {
                    "role": "user",
                    "content": [
                        {"type": "tool_result", "tool_use_id": "t1", "content": "2C"},
                        {"type": "text", "text": "Warm?"},
                    ],
                },
            ],
            tools=[WEATHER],
        )
    )
    assert parse_messages_request(build_upstream_request(req, "claude")) == req


def test_parse_upstream_response() -> None:
    resp = parse_upstream_response(
        {
            "id": "msg_1",
            "type": "message",
            "role": "assistant",
            "model": "claude-sonnet-4",
            "content": [
                {"type": "thinking", "thinking": "...", "signature": "x"},
                {"type": "text", "text": "Checking "},
                {"type": "text", "text": "now."},
                {"type": "tool_use", "id": "toolu_1", "name": "f", "input": {"a": "é"}},
            ],
            "stop_reason": "tool_use",
            "stop_sequence": None,
            "usage": {
                "input_tokens": 10,
                "output_tokens": 7,
                "cache_read_input_tokens": 30,
                "cache_creation_input_tokens": 5,
            },
        }
    )
    assert resp == ChatResponse(
        id="msg_1",
        model="claude-sonnet-4",
        content="Checking now.",
        tool_calls=(ToolCall("toolu_1", "f", '{"a":"é"}'),),
        finish_reason="tool_calls",
        usage=Usage(45, 7, 30),
    )


@pytest.mark.parametrize(
    ("stop_reason", "canonical"),
    [
        ("end_turn", "stop"),
        ("stop_sequence", "stop"),
        ("max_tokens", "length"),
        ("tool_use", "tool_calls"),
        ("refusal", "content_filter"),
        ("pause_turn", "stop"),
        ("model_context_window_exceeded", "length"),
        (None, "stop"),
    ],
)
def test_parse_upstream_stop_reasons(stop_reason: str | None, canonical: str) -> None:
    resp = parse_upstream_response(
        {"content": [], "stop_reason": stop_reason, "stop_sequence": "END"}
    )
    assert resp.finish_reason == canonical
    assert resp.stop_sequence == ("END" if stop_reason == "stop_sequence" else None)
    assert resp.usage is None


def test_parse_upstream_response_without_content_is_a_502() -> None:
    with pytest.raises(ProxyError) as caught:
        parse_upstream_response({"type": "message"})
    assert caught.value.status == 502


def anthropic_stream() -> list[tuple[str, dict[str, Any]]]:
    """A real-shaped Anthropic stream: text, two tool calls (one without input), usage."""

    def block_delta(index: int, delta: dict[str, Any]) -> tuple[str, dict[str, Any]]:
        return (
            "content_block_delta",
            {"type": "content_block_delta", "index": index, "delta": delta},
        )

    def start(index: int, block: dict[str, Any]) -> tuple[str, dict[str, Any]]:
        return (
            "content_block_start",
            {"type": "content_block_start", "index": index, "content_block": block},
        )

    def stop(index: int) -> tuple[str, dict[str, Any]]:
        return ("content_block_stop", {"type": "content_block_stop", "index": index})

    message: dict[str, Any] = {
        "id": "msg_up",
        "type": "message",
        "role": "assistant",
        "model": "claude-sonnet-4",
        "content": [],
        "stop_reason": None,
        "stop_sequence": None,
        "usage": {"input_tokens": 12, "output_tokens": 1, "cache_read_input_tokens": 100},
    }
    return [
        ("message_start", {"type": "message_start", "message": message}),
        start(0, {"type": "text", "text": ""}),
        ("ping", {"type": "ping"}),
        block_delta(0, {"type": "text_delta", "text": "Checking"}),
        block_delta(0, {"type": "text_delta", "text": " now."}),
        stop(0),
        start(1, {"type": "tool_use", "id": "toolu_1", "name": "get_weather", "input": {}}),
        block_delta(1, {"type": "input_json_delta", "partial_json": ""}),
        block_delta(1, {"type": "input_json_delta", "partial_json": '{"city": '}),
        block_delta(1, {"type": "input_json_delta", "partial_json": '"Paris"}'}),
        stop(1),
        start(2, {"type": "tool_use", "id": "toolu_2", "name": "now", "input": {}}),
        stop(2),
        (
            "message_delta",
            {
                "type": "message_delta",
                "delta": {"stop_reason": "tool_use", "stop_sequence": None},
                "usage": {"output_tokens": 40},
            },
        ),
        ("message_stop", {"type": "message_stop"}),
    ]


def test_the_sample_stream_is_what_the_sdk_accepts() -> None:
    message = replay(anthropic_stream())
    assert message.content[1].input == {"city": "Paris"}


def test_upstream_events_become_deltas() -> None:
    parser = UpstreamEventParser()
    deltas = [d for name, data in anthropic_stream() for d in parser.feed(name, data)]
    assert deltas == [
        Delta(text="Checking"),
        Delta(text=" now."),
        Delta(tool_call=ToolCallDelta(0, id="toolu_1", name="get_weather")),
        Delta(tool_call=ToolCallDelta(0, arguments='{"city": ')),
        Delta(tool_call=ToolCallDelta(0, arguments='"Paris"}')),
        Delta(tool_call=ToolCallDelta(1, id="toolu_2", name="now")),
        Delta(tool_call=ToolCallDelta(1, arguments="{}")),
        Delta(finish_reason="tool_calls", usage=Usage(112, 40, 100)),
    ]
    assert (parser.id, parser.model) == ("msg_up", "claude-sonnet-4")


def test_anthropic_stream_to_openai_chunks() -> None:
    """Anthropic events -> deltas -> OpenAI chunks, as the OpenAI SDK assembles them."""
    parser = UpstreamEventParser()
    renderer = openai_wire.ChatStreamRenderer("chatcmpl-1", "chat", 1700000000, True)
    acc = StreamAccumulator("chatcmpl-1", "claude-sonnet-4")
    chunks: list[dict[str, Any]] = []
    for name, data in anthropic_stream():
        for delta in parser.feed(name, data):
            acc.add(delta)
            chunks += renderer.delta(delta)
    chunks += renderer.finish()
    state: ChatCompletionStreamState[Any] = ChatCompletionStreamState()
    for chunk in chunks:
        state.handle_chunk(ChatCompletionChunk.model_validate(chunk))
    completion = state.get_final_completion()
    message = completion.choices[0].message
    assert message.content == "Checking now."
    assert message.tool_calls is not None
    assert [
        (c.id, c.function.name, json.loads(c.function.arguments)) for c in message.tool_calls
    ] == [
        ("toolu_1", "get_weather", {"city": "Paris"}),
        ("toolu_2", "now", {}),
    ]
    assert completion.choices[0].finish_reason == "tool_calls"
    assert completion.usage is not None
    assert (completion.usage.prompt_tokens, completion.usage.completion_tokens) == (112, 40)
    assert acc.response().tool_calls[1] == ToolCall("toolu_2", "now", "{}")


def test_anthropic_stream_through_our_anthropic_renderer() -> None:
    """Anthropic in, Anthropic out: the client sees what the provider said."""
    parser = UpstreamEventParser()
    renderer = MessageStreamRenderer("msg_out", "claude", input_tokens=112)
    events = [
        e for n, d in anthropic_stream() for x in parser.feed(n, d) for e in renderer.delta(x)
    ]
    events += renderer.finish()
    message = replay(events)
    assert [b.type for b in message.content] == ["text", "tool_use", "tool_use"]
    assert message.content[1].input == {"city": "Paris"}
    assert message.stop_reason == "tool_use"
    assert message.usage.cache_read_input_tokens == 100
    assert message.usage.input_tokens == 12


def test_openai_stream_to_anthropic_events() -> None:
    parser = openai_wire.UpstreamChunkParser()
    renderer = MessageStreamRenderer("msg", "claude")
    base = {"id": "c", "object": "chat.completion.chunk", "created": 1, "model": "gpt"}
    raw = [
        {**base, "choices": [{"index": 0, "delta": {"role": "assistant", "content": "Hi"}}]},
        {
            **base,
            "choices": [
                {
                    "index": 0,
                    "delta": {
                        "tool_calls": [
                            {
                                "index": 0,
                                "id": "call_1",
                                "function": {"name": "f", "arguments": '{"q"'},
                            }
                        ]
                    },
                }
            ],
        },
        {
            **base,
            "choices": [
                {
                    "index": 0,
                    "delta": {"tool_calls": [{"index": 0, "function": {"arguments": ':"x"}'}}]},
                }
            ],
        },
        {**base, "choices": [{"index": 0, "delta": {}, "finish_reason": "tool_calls"}]},
        {**base, "choices": [], "usage": {"prompt_tokens": 5, "completion_tokens": 6}},
    ]
    events = [e for chunk in raw for d in parser.feed(chunk) for e in renderer.delta(d)]
    events += renderer.finish()
    message = replay(events)
    assert message.content[0].text == "Hi"
    assert message.content[1].input == {"q": "x"}
    assert message.stop_reason == "tool_use"
    assert message.usage.output_tokens == 6


def test_upstream_stop_sequence_and_usage_in_message_delta() -> None:
    parser = UpstreamEventParser()
    parser.feed(
        "message_start",
        {"type": "message_start", "message": {"id": "m", "usage": {"input_tokens": 3}}},
    )
    out = parser.feed(
        "message_delta",
        {
            "type": "message_delta",
            "delta": {"stop_reason": "stop_sequence", "stop_sequence": "END"},
            "usage": {"output_tokens": 4, "input_tokens": 9, "cache_read_input_tokens": None},
        },
    )
    assert out == [Delta(finish_reason="stop", usage=Usage(9, 4), stop_sequence="END")]
    acc = StreamAccumulator("m", "x")
    for d in out:
        acc.add(d)
    assert acc.response().stop_sequence == "END"
    assert (
        parser.feed(
            "content_block_delta",
            {
                "type": "content_block_delta",
                "index": 5,
                "delta": {"type": "thinking_delta", "thinking": "x"},
            },
        )
        == []
    )
    assert parser.feed("future_event", {"type": "future_event"}) == []


@pytest.mark.parametrize(
    ("error_type", "status", "kind"),
    [
        ("overloaded_error", 503, "overloaded"),
        ("rate_limit_error", 429, "rate_limit"),
        ("api_error", 502, "upstream"),
        ("invalid_request_error", 400, "invalid_request"),
        ("something_new", 502, "upstream"),
    ],
)
def test_an_error_event_raises(error_type: str, status: int, kind: str) -> None:
    with pytest.raises(ProxyError) as caught:
        UpstreamEventParser().feed(
            "error", {"type": "error", "error": {"type": error_type, "message": "Overloaded"}}
        )
    assert (caught.value.status, caught.value.kind) == (status, kind)
    assert "Overloaded" in caught.value.message


def test_sse_decoder_reads_an_anthropic_stream() -> None:
    raw = b"".join(sse_event(name, data) for name, data in anthropic_stream())
    decoder = SSEDecoder()
    events = [e for k in range(0, len(raw), 5) for e in decoder.feed(raw[k : k + 5])]
    assert [(name, json.loads(data)) for name, data in events] == anthropic_stream()


# ----------------------------------------------------------------------------- errors


@pytest.mark.parametrize(
    ("kind", "wire_type"),
    [
        ("invalid_request", "invalid_request_error"),
        ("authentication", "authentication_error"),
        ("permission", "permission_error"),
        ("not_found", "not_found_error"),
        ("rate_limit", "rate_limit_error"),
        ("upstream", "api_error"),
        ("timeout", "timeout_error"),
        ("overloaded", "overloaded_error"),
        ("internal", "api_error"),
        ("conflict", "invalid_request_error"),
        ("unknown", "api_error"),
    ],
)
def test_error_body(kind: str, wire_type: str) -> None:
    err = ProxyError(400, kind, "Nope.")
    assert error_body(err) == {"type": "error", "error": {"type": wire_type, "message": "Nope."}}
    assert error_event(err) == ("error", error_body(err))
    assert ErrorResponse.model_validate(error_body(err)).error.type == wire_type


def test_parse_upstream_error() -> None:
    err = parse_upstream_error(
        529, {"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}}, 1.5
    )
    assert (err.status, err.kind, err.retry_after) == (503, "overloaded", 1.5)
    assert "Overloaded" in err.message
    assert parse_upstream_error(400, "bad").status == 400
    assert parse_upstream_error(401, {"error": {"type": "authentication_error"}}).status == 502


def test_json_instruction_for_each_response_format() -> None:
    assert json_instruction({"type": "text"}) is None
    assert json_instruction({"type": "json_object"}) == JSON_OBJECT_INSTRUCTION
    schema = {"type": "object", "properties": {"n": {"type": "integer"}}}
    named = json_instruction(
        {"type": "json_schema", "json_schema": {"name": "count", "schema": schema}}
    )
    assert named is not None
    first, rule, body = named.split("\n")
    assert first == JSON_OBJECT_INSTRUCTION
    assert rule == "The object must be valid against this JSON Schema, named 'count':"
    assert json.loads(body) == schema
    bare = json_instruction({"type": "json_schema", "json_schema": {"schema": schema}})
    assert bare is not None and "named" not in bare and "None" not in bare
    only_name = json_instruction({"type": "json_schema", "json_schema": {"name": "count"}})
    assert only_name == JSON_OBJECT_INSTRUCTION + "\nThe object is a 'count'."
