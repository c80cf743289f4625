"""OpenAI Chat Completions <-> canonical chat: validation, rendering (checked against the
official SDK's types), streams, the upstream direction and errors."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
from openai.lib.streaming.chat import ChatCompletionStreamState
from openai.types import ErrorObject
from openai.types.chat import ChatCompletion, ChatCompletionChunk, completion_create_params
from pydantic import TypeAdapter, ValidationError

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
from domain.proxy.openai_wire import (
    SSE_DONE,
    ChatStreamRenderer,
    UpstreamChunkParser,
    build_upstream_request,
    error_body,
    parse_chat_request,
    parse_upstream_error,
    parse_upstream_response,
    render_chat_response,
    sse_chunk,
    upstream_error,
)
from domain.proxy.sse import SSEDecoder

NON_STREAMING = TypeAdapter(completion_create_params.CompletionCreateParamsNonStreaming)
STREAMING = TypeAdapter(completion_create_params.CompletionCreateParamsStreaming)


def validate_params(adapter: TypeAdapter[Any], value: dict[str, Any]) -> None:
    """The SDK's request types, checked all the way down: pydantic validates `Iterable`
    fields (messages, tools) lazily, as they are consumed."""

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


WEATHER: dict[str, Any] = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Weather for a city",
        "parameters": {
            "type": "object",
            "properties": {"city": {"type": "string"}},
            "required": ["city"],
        },
    },
}


def body(**extra: Any) -> dict[str, Any]:
    return {"model": "chat", "messages": [{"role": "user", "content": "Hi"}], **extra}


def error_of(request: dict[str, Any]) -> ProxyError:
    with pytest.raises(ProxyError) as caught:
        parse_chat_request(request)
    assert caught.value.status == 400
    assert caught.value.kind == "invalid_request"
    return caught.value


# ---------------------------------------------------------------------------- parsing


def test_a_minimal_request() -> None:
    req = parse_chat_request(body())
    assert req == ChatRequest(model="chat", messages=(Message("user", "Hi"),))


def test_system_and_developer_messages_join_the_system_prompt_in_order() -> None:
    req = parse_chat_request(
        {
            "model": "chat",
            "messages": [
                {"role": "system", "content": "Be brief."},
                {"role": "user", "content": "Hi"},
                {"role": "developer", "content": [{"type": "text", "text": "Answer in French."}]},
                {"role": "assistant", "content": "Bonjour"},
            ],
        }
    )
    assert req.system == "Be brief.\n\nAnswer in French."
    assert [m.role for m in req.messages] == ["user", "assistant"]


def test_text_parts_are_joined_with_a_newline() -> None:
    req = parse_chat_request(
        body(
            messages=[
                {
                    "role": "user",
                    "content": [{"type": "text", "text": "One"}, {"type": "text", "text": "Two"}],
                    "name": "ann",
                }
            ]
        )
    )
    assert req.messages == (Message("user", "One\nTwo", name="ann"),)


def test_tool_calls_and_tool_results() -> None:
    req = parse_chat_request(
        body(
            messages=[
                {"role": "user", "content": "Weather in Paris?"},
                {
                    "role": "assistant",
                    "content": None,
                    "tool_calls": [
                        {
                            "id": "call_1",
                            "type": "function",
                            "function": {"name": "get_weather", "arguments": '{"city":"Paris"}'},
                        }
                    ],
                },
                {"role": "tool", "tool_call_id": "call_1", "content": "18C"},
            ],
            tools=[WEATHER],
            tool_choice={"type": "function", "function": {"name": "get_weather"}},
            parallel_tool_calls=False,
        )
    )
    assert req.messages[1] == Message(
        "assistant", "", tool_calls=(ToolCall("call_1", "get_weather", '{"city":"Paris"}'),)
    )
    assert req.messages[2] == Message("tool", "18C", tool_call_id="call_1")
    assert req.tools == (
        Tool("get_weather", "Weather for a city", WEATHER["function"]["parameters"]),
    )
    assert req.tool_choice == "get_weather"
    assert req.parallel_tool_calls is False


def test_every_supported_parameter() -> None:
    schema = {"type": "json_schema", "json_schema": {"name": "x", "schema": {"type": "object"}}}
    req = parse_chat_request(
        body(
            max_completion_tokens=100,
            max_tokens=50,
            temperature=1.5,
            top_p=0.9,
            stop="END",
            response_format=schema,
            stream=True,
            stream_options={"include_usage": True},
            n=1,
            user="u-1",
            metadata={"team": "search"},
            seed=7,
            frequency_penalty=0.5,  # unknown to the gateway: ignored
        )
    )
    assert req.max_tokens == 100  # max_completion_tokens wins
    assert (req.temperature, req.top_p, req.stop) == (1.5, 0.9, ("END",))
    assert req.response_format is schema
    assert req.stream and req.include_usage
    assert (req.user, req.metadata, req.seed) == ("u-1", {"team": "search"}, 7)


def test_nulls_mean_not_given_and_text_format_means_none() -> None:
    req = parse_chat_request(
        body(
            temperature=None,
            max_tokens=None,
            stop=None,
            tools=None,
            tool_choice=None,
            n=None,
            response_format={"type": "text"},
        )
    )
    assert req == ChatRequest(model="chat", messages=(Message("user", "Hi"),))
    assert parse_chat_request(body(max_tokens=5)).max_tokens == 5
    assert parse_chat_request(body(stop=["a", "b"])).stop == ("a", "b")


@pytest.mark.parametrize(
    ("request_body", "param", "words"),
    [
        ({"messages": [{"role": "user", "content": "x"}]}, "model", "model"),
        ({"model": "", "messages": [{"role": "user", "content": "x"}]}, "model", "non-empty"),
        ({"model": "m"}, "messages", "non-empty array"),
        ({"model": "m", "messages": []}, "messages", "non-empty array"),
        (body(messages=["hi"]), "messages[0]", "object"),
        (body(messages=[{"role": "robot", "content": "x"}]), "messages[0].role", "'robot'"),
        (body(messages=[{"role": "function", "content": "x"}]), "messages[0].role", "deprecated"),
        (body(messages=[{"role": "user"}]), "messages[0].content", "required"),
        (body(messages=[{"role": "user", "content": 3}]), "messages[0].content", "string"),
        (
            body(
                messages=[
                    {"role": "user", "content": "a"},
                    {
                        "role": "user",
                        "content": [
                            {"type": "text", "text": "look"},
                            {"type": "image_url", "image_url": {"url": "http://x/y.png"}},
                        ],
                    },
                ]
            ),
            "messages[1].content[1]",
            "image parts (image_url) are not supported",
        ),
        (
            body(messages=[{"role": "user", "content": [{"type": "input_audio"}]}]),
            "messages[0].content[0]",
            "audio",
        ),
        (
            body(messages=[{"role": "user", "content": [{"type": "file"}]}]),
            "messages[0].content[0]",
            "file",
        ),
        (
            body(messages=[{"role": "user", "content": [{"type": "video"}]}]),
            "messages[0].content[0].type",
            "'video'",
        ),
        (
            body(messages=[{"role": "user", "content": [{"type": "text", "text": 1}]}]),
            "messages[0].content[0].text",
            "string",
        ),
        (body(messages=[{"role": "tool", "content": "x"}]), "messages[0].tool_call_id", "id"),
        (
            body(messages=[{"role": "assistant", "tool_calls": [{"id": "c", "type": "custom"}]}]),
            "messages[0].tool_calls[0].type",
            "function",
        ),
        (
            body(
                messages=[
                    {
                        "role": "assistant",
                        "tool_calls": [{"id": "c", "type": "function", "function": {"name": "f"}}],
                    }
                ]
            ),
            "messages[0].tool_calls[0].function.arguments",
            "JSON",
        ),
        (body(messages=[{"role": "user", "content": "x", "name": 3}]), "messages[0].name", "str"),
        (body(tools=[{"type": "custom", "custom": {}}]), "tools[0].type", "'custom'"),
        (
            body(tools=[{"type": "function", "function": {"name": "bad name"}}]),
            "tools[0].function.name",
            "a-z",
        ),
        (
            body(tools=[{"type": "function", "function": {"name": "f", "parameters": "x"}}]),
            "tools[0].function.parameters",
            "JSON Schema",
        ),
        (body(tool_choice="sometimes"), "tool_choice", "'sometimes'"),
        (body(tool_choice="required"), "tool_choice", "needs `tools`"),
        (
            body(tools=[WEATHER], tool_choice={"type": "function", "function": {"name": "x"}}),
            "tool_choice",
            "not one of the request's tools",
        ),
        (body(parallel_tool_calls="yes"), "parallel_tool_calls", "true or false"),
        (body(max_tokens=0), "max_tokens", "positive integer"),
        (body(max_completion_tokens=1.5), "max_completion_tokens", "positive integer"),
        (body(max_tokens=True), "max_tokens", "positive integer"),
        (body(temperature=2.5), "temperature", "between 0 and 2"),
        (body(temperature="hot"), "temperature", "between 0 and 2"),
        (body(top_p=1.1), "top_p", "between 0 and 1"),
        (body(stop=["a", "b", "c", "d", "e"]), "stop", "at most 4"),
        (body(stop=3), "stop", "at most 4"),
        (body(response_format={"type": "yaml"}), "response_format.type", "json_object"),
        (
            body(response_format={"type": "json_schema"}),
            "response_format.json_schema",
            "name",
        ),
        (body(stream="yes"), "stream", "true or false"),
        (body(stream_options={"include_usage": True}), "stream_options", "stream is true"),
        (
            body(stream=True, stream_options={"include_usage": "y"}),
            "stream_options.include_usage",
            "true or false",
        ),
        (body(n=2), "n", "only one choice"),
        (body(user=5), "user", "string"),
        (body(metadata={"k": 1}), "metadata.k", "512"),
        (body(metadata={str(k): "v" for k in range(17)}), "metadata", "16"),
        (body(seed=1.5), "seed", "integer"),
        (body(functions=[{"name": "f"}]), "functions", "tools"),
        (body(function_call="auto"), "function_call", "tools"),
    ],
)
def test_invalid_requests_name_the_field(
    request_body: dict[str, Any], param: str, words: str
) -> None:
    err = error_of(request_body)
    assert err.param == param
    assert words in err.message
    assert err.message.startswith(param.split("[")[0])


def test_a_body_that_is_not_an_object() -> None:
    assert error_of([]).param is None  # type: ignore[arg-type]


def test_tool_choice_none_and_auto_are_accepted_without_tools() -> None:
    assert parse_chat_request(body(tool_choice="none")).tool_choice == "none"
    assert parse_chat_request(body(tool_choice="auto")).tool_choice == "auto"


# -------------------------------------------------------------------------- rendering


def test_render_a_text_answer() -> None:
    resp = ChatResponse(
        id="chatcmpl-1",
        model="gpt-4o-2024",
        content="Hello!",
        usage=Usage(input_tokens=10, output_tokens=3, cached_tokens=4),
        created=1700000000,
    )
    out = render_chat_response(resp, "chat")
    completion = ChatCompletion.model_validate(out)
    assert completion.model == "chat"
    assert completion.choices[0].message.content == "Hello!"
    assert completion.choices[0].message.tool_calls is None
    assert completion.choices[0].finish_reason == "stop"
    assert completion.usage is not None
    assert (completion.usage.prompt_tokens, completion.usage.completion_tokens) == (10, 3)
    assert completion.usage.total_tokens == 13
    assert completion.usage.prompt_tokens_details is not None
    assert completion.usage.prompt_tokens_details.cached_tokens == 4


def test_render_tool_calls_only_has_null_content() -> None:
    resp = ChatResponse(
        id="r",
        model="m",
        content="",
        tool_calls=(ToolCall("call_1", "get_weather", '{"city":"Paris"}'),),
        finish_reason="tool_calls",
    )
    completion = ChatCompletion.model_validate(render_chat_response(resp, "chat"))
    message = completion.choices[0].message
    assert message.content is None
    assert message.tool_calls is not None
    call = message.tool_calls[0]
    assert call.type == "function"
    assert (call.id, call.function.name, call.function.arguments) == (
        "call_1",
        "get_weather",
        '{"city":"Paris"}',
    )
    assert completion.choices[0].finish_reason == "tool_calls"
    assert completion.usage is not None and completion.usage.total_tokens == 0


def test_an_empty_answer_has_empty_content() -> None:
    out = render_chat_response(ChatResponse(id="r", model="m", content=""), "chat")
    assert out["choices"][0]["message"]["content"] == ""


@pytest.mark.parametrize(
    ("reason", "wire"),
    [
        ("stop", "stop"),
        ("length", "length"),
        ("tool_calls", "tool_calls"),
        ("content_filter", "content_filter"),
        ("error", "stop"),
        ("client_disconnected", "stop"),
    ],
)
def test_finish_reasons(reason: Any, wire: str) -> None:
    out = render_chat_response(ChatResponse("r", "m", "x", finish_reason=reason), "chat")
    assert ChatCompletion.model_validate(out).choices[0].finish_reason == wire


# ---------------------------------------------------------------------------- streams


def replay(chunks: list[dict[str, Any]], tools: list[Any] | None = None) -> Any:
    """The SDK's own accumulator over our chunks: what a client ends up with."""
    state: ChatCompletionStreamState[Any] = ChatCompletionStreamState(input_tools=tools or [])
    for chunk in chunks:
        state.handle_chunk(ChatCompletionChunk.model_validate(chunk))
    return state.get_final_completion()


def test_stream_of_text() -> None:
    r = ChatStreamRenderer("chatcmpl-1", "chat", 1700000000, include_usage=True)
    chunks = r.delta(Delta(text="Hel"))
    chunks += r.delta(Delta(text="lo"))
    chunks += r.delta(Delta())  # nothing to send
    chunks += r.delta(Delta(finish_reason="stop"))
    chunks += r.delta(Delta(usage=Usage(5, 2, 1)))
    chunks += r.finish()
    assert len(chunks) == 4
    assert chunks[0]["choices"][0]["delta"] == {"content": "Hel", "role": "assistant"}
    assert "role" not in chunks[1]["choices"][0]["delta"]
    assert chunks[2]["choices"][0]["finish_reason"] == "stop"
    assert all(c["usage"] is None for c in chunks[:3])
    assert chunks[3]["choices"] == []
    assert chunks[3]["usage"]["total_tokens"] == 7
    completion = replay(chunks)
    assert completion.choices[0].message.content == "Hello"
    assert completion.choices[0].finish_reason == "stop"
    assert completion.usage.prompt_tokens_details.cached_tokens == 1
    assert r.finish() == [] and r.delta(Delta(text="late")) == []


def test_stream_of_tool_calls() -> None:
    r = ChatStreamRenderer("c", "chat", 1, include_usage=False)
    chunks = r.delta(Delta(text="Let me check."))
    chunks += r.delta(Delta(tool_call=ToolCallDelta(0, id="call_a", name="get_weather")))
    chunks += r.delta(Delta(tool_call=ToolCallDelta(0, arguments='{"city":')))
    chunks += r.delta(Delta(tool_call=ToolCallDelta(0, arguments='"Paris"}')))
    chunks += r.delta(
        Delta(tool_call=ToolCallDelta(1, id="call_b", name="get_weather", arguments="{}"))
    )
    chunks += r.finish("tool_calls")
    first_call = chunks[1]["choices"][0]["delta"]["tool_calls"][0]
    assert first_call == {
        "index": 0,
        "id": "call_a",
        "type": "function",
        "function": {"arguments": "", "name": "get_weather"},
    }
    assert chunks[2]["choices"][0]["delta"]["tool_calls"][0] == {
        "index": 0,
        "function": {"arguments": '{"city":'},
    }
    assert all("usage" not in c for c in chunks)
    completion = replay(chunks, [WEATHER])
    message = completion.choices[0].message
    assert message.content == "Let me check."
    assert [(c.id, c.function.arguments) for c in message.tool_calls] == [
        ("call_a", '{"city":"Paris"}'),
        ("call_b", "{}"),
    ]
    assert completion.choices[0].finish_reason == "tool_calls"


def test_a_stream_with_no_delta_still_says_who_speaks_and_why_it_ended() -> None:
    r = ChatStreamRenderer("c", "chat", 1, include_usage=True)
    chunks = r.finish("length")
    assert chunks[0]["choices"][0]["delta"] == {"role": "assistant"}
    assert chunks[0]["choices"][0]["finish_reason"] == "length"
    assert chunks[1]["usage"]["total_tokens"] == 0
    for chunk in chunks:
        ChatCompletionChunk.model_validate(chunk)


def test_the_finish_reason_is_sent_once() -> None:
    r = ChatStreamRenderer("c", "chat", 1)
    chunks = r.delta(Delta(text="a", finish_reason="length"))
    chunks += r.delta(Delta(finish_reason="stop"))
    chunks += r.finish("error")
    assert len(chunks) == 1
    assert chunks[0]["choices"][0]["finish_reason"] == "length"


def test_sse_framing() -> None:
    assert sse_chunk({"a": "é"}) == 'data: {"a":"é"}\n\n'.encode()
    assert SSE_DONE == b"data: [DONE]\n\n"
    half_an_emoji = json.loads('"\\ud83d"')
    assert sse_chunk({"t": half_an_emoji}) == b'data: {"t":"\\ud83d"}\n\n'


# --------------------------------------------------------------------------- upstream


def full_request(**changes: Any) -> ChatRequest:
    req = ChatRequest(
        model="chat",
        system="Be brief.",
        messages=(
            Message("user", "Weather in Paris?", name="ann"),
            Message(
                "assistant",
                "",
                tool_calls=(ToolCall("call_1", "get_weather", '{"city":"Paris"}'),),
            ),
            Message("tool", "18C", tool_call_id="call_1"),
            Message("assistant", "It is 18C."),
            Message("user", "Thanks"),
        ),
        tools=(Tool("get_weather", "Weather", {"type": "object"}), Tool("now")),
        tool_choice="get_weather",
        parallel_tool_calls=False,
        max_tokens=100,
        temperature=0.3,
        top_p=0.9,
        stop=("END",),
        response_format={"type": "json_object"},
        user="u-1",
        metadata={"team": "x"},
        seed=3,
    )
    return ChatRequest(**{**{f: getattr(req, f) for f in req.__slots__}, **changes})


def test_build_upstream_request() -> None:
    out = build_upstream_request(full_request(), "gpt-4o")
    validate_params(NON_STREAMING, out)
    assert out["model"] == "gpt-4o"
    assert out["messages"][0] == {"role": "system", "content": "Be brief."}
    assert out["messages"][1] == {"role": "user", "content": "Weather in Paris?", "name": "ann"}
    assert out["messages"][2]["content"] is None
    assert out["messages"][2]["tool_calls"][0]["function"]["name"] == "get_weather"
    assert out["messages"][3] == {"role": "tool", "tool_call_id": "call_1", "content": "18C"}
    assert out["tools"][1] == {"type": "function", "function": {"name": "now"}}
    assert out["tool_choice"] == {"type": "function", "function": {"name": "get_weather"}}
    assert out["parallel_tool_calls"] is False
    assert out["max_completion_tokens"] == 100
    assert out["stop"] == ["END"]
    assert "metadata" not in out  # kept by the gateway
    assert "stream" not in out


def test_build_upstream_request_when_streaming_always_asks_for_usage() -> None:
    out = build_upstream_request(
        full_request(stream=True, include_usage=False, tool_choice="required"),
        "llama3",
        max_tokens_key="max_tokens",
    )
    validate_params(STREAMING, out)
    assert out["stream"] is True
    assert out["stream_options"] == {"include_usage": True}
    assert out["max_tokens"] == 100 and "max_completion_tokens" not in out
    assert out["tool_choice"] == "required"


def test_the_sdk_types_do_catch_a_broken_body() -> None:
    with pytest.raises(ValidationError):
        validate_params(NON_STREAMING, {"model": "m", "messages": [{"role": "user"}]})


def test_a_round_trip_through_the_upstream_body() -> None:
    req = full_request(metadata={})
    again = parse_chat_request(build_upstream_request(req, "chat"))
    assert again == req


def test_parse_upstream_response() -> None:
    resp = parse_upstream_response(
        {
            "id": "chatcmpl-9",
            "object": "chat.completion",
            "created": 1700000001,
            "model": "gpt-4o-2024-08-06",
            "choices": [
                {
                    "index": 0,
                    "message": {
                        "role": "assistant",
                        "content": None,
                        "tool_calls": [
                            {
                                "id": "call_1",
                                "type": "function",
                                "function": {"name": "f", "arguments": '{"a":1}'},
                            }
                        ],
                    },
                    "finish_reason": "tool_calls",
                }
            ],
            "usage": {
                "prompt_tokens": 20,
                "completion_tokens": 5,
                "total_tokens": 25,
                "prompt_tokens_details": {"cached_tokens": 8},
            },
        }
    )
    assert resp == ChatResponse(
        id="chatcmpl-9",
        model="gpt-4o-2024-08-06",
        content="",
        tool_calls=(ToolCall("call_1", "f", '{"a":1}'),),
        finish_reason="tool_calls",
        usage=Usage(20, 5, 8),
        created=1700000001,
    )


def test_parse_upstream_response_is_tolerant() -> None:
    resp = parse_upstream_response(
        {
            "id": "x",
            "model": "llama",
            "choices": [
                {
                    "message": {
                        "content": None,
                        "tool_calls": [{"function": {"name": "f", "arguments": {"a": 1}}}],
                    },
                    "finish_reason": "stop",
                }
            ],
            "usage": {"prompt_tokens": 3, "completion_tokens": 1, "prompt_tokens_details": None},
        }
    )
    assert resp.content == ""
    assert resp.tool_calls == (ToolCall("call_x_0", "f", '{"a":1}'),)
    assert resp.finish_reason == "tool_calls"  # a stop with tool calls
    assert resp.usage == Usage(3, 1, 0)
    refusal = parse_upstream_response(
        {"choices": [{"message": {"content": None, "refusal": "No."}, "finish_reason": None}]}
    )
    assert (refusal.content, refusal.finish_reason, refusal.usage) == ("No.", "stop", None)
    length = parse_upstream_response({"choices": [{"message": {}, "finish_reason": "length"}]})
    assert length.finish_reason == "length"


def test_parse_upstream_response_without_choices_is_a_502() -> None:
    with pytest.raises(ProxyError) as caught:
        parse_upstream_response({"id": "x"})
    assert (caught.value.status, caught.value.kind) == (502, "upstream")


def openai_stream() -> list[dict[str, Any]]:
    base = {"id": "chatcmpl-7", "object": "chat.completion.chunk", "created": 5, "model": "gpt"}

    def chunk(delta: dict[str, Any], finish: str | None = None) -> dict[str, Any]:
        return {**base, "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]}

    def call(index: int, **fields: Any) -> dict[str, Any]:
        return {"tool_calls": [{"index": index, **fields}]}

    return [
        chunk({"role": "assistant", "content": ""}),
        chunk({"content": "Checking"}),
        chunk(call(0, id="call_a", type="function", function={"name": "f", "arguments": ""})),
        chunk(call(0, function={"arguments": '{"x":'})),
        chunk(call(0, function={"arguments": "1}"})),
        chunk(call(1, id="call_b", type="function", function={"name": "g", "arguments": "{}"})),
        chunk({}, "tool_calls"),
        {**base, "choices": [], "usage": {"prompt_tokens": 9, "completion_tokens": 4}},
    ]


def test_upstream_chunks_become_deltas() -> None:
    parser = UpstreamChunkParser()
    deltas = [d for c in openai_stream() for d in parser.feed(c)]
    assert deltas == [
        Delta(text="Checking"),
        Delta(tool_call=ToolCallDelta(0, id="call_a", name="f")),
        Delta(tool_call=ToolCallDelta(0, arguments='{"x":')),
        Delta(tool_call=ToolCallDelta(0, arguments="1}")),
        Delta(tool_call=ToolCallDelta(1, id="call_b", name="g", arguments="{}")),
        Delta(finish_reason="tool_calls"),
        Delta(usage=Usage(9, 4)),
    ]
    assert (parser.id, parser.model, parser.created) == ("chatcmpl-7", "gpt", 5)
    acc = StreamAccumulator(parser.id, parser.model)
    for d in deltas:
        acc.add(d)
    resp = acc.response()
    assert resp.tool_calls == (ToolCall("call_a", "f", '{"x":1}'), ToolCall("call_b", "g", "{}"))
    assert resp.usage == Usage(9, 4)


def test_upstream_chunks_through_the_renderer_reach_the_sdk_intact() -> None:
    parser = UpstreamChunkParser()
    renderer = ChatStreamRenderer("chatcmpl-out", "chat", 10, include_usage=True)
    chunks = [c for raw in openai_stream() for d in parser.feed(raw) for c in renderer.delta(d)]
    chunks += renderer.finish()
    completion = replay(chunks)
    assert completion.choices[0].message.content == "Checking"
    assert [c.function.arguments for c in completion.choices[0].message.tool_calls] == [
        '{"x":1}',
        "{}",
    ]
    assert completion.usage.total_tokens == 13


def test_upstream_chunks_from_lax_servers() -> None:
    parser = UpstreamChunkParser()

    def feed(delta: dict[str, Any], finish: str | None = None) -> list[Delta]:
        return parser.feed({"id": "x", "choices": [{"delta": delta, "finish_reason": finish}]})

    # no index, the id and name repeated on every fragment
    call = {"id": "c1", "function": {"name": "f", "arguments": '{"a"'}}
    assert feed({"tool_calls": [call]}) == [
        Delta(tool_call=ToolCallDelta(0, id="c1", name="f", arguments='{"a"'))
    ]
    call = {"id": "c1", "function": {"name": "f", "arguments": ":1}"}}
    assert feed({"tool_calls": [call]}) == [Delta(tool_call=ToolCallDelta(0, arguments=":1}"))]
    call = {"id": "c2", "function": {"name": "g", "arguments": {}}}
    assert feed({"tool_calls": [call]}) == [
        Delta(tool_call=ToolCallDelta(1, id="c2", name="g", arguments="{}"))
    ]
    # a stop after tool calls is a tool_calls finish; usage on the last choice chunk
    last = parser.feed(
        {
            "choices": [{"delta": {"content": "!"}, "finish_reason": "stop"}],
            "usage": {"prompt_tokens": 1, "completion_tokens": 2},
        }
    )
    assert last == [Delta(text="!"), Delta(finish_reason="tool_calls", usage=Usage(1, 2))]


def test_an_error_in_the_upstream_stream_raises() -> None:
    with pytest.raises(ProxyError) as caught:
        UpstreamChunkParser().feed({"error": {"message": "overloaded"}})
    assert caught.value.status == 502 and "overloaded" in caught.value.message
    parser = UpstreamChunkParser()
    parser.feed({"id": "x", "choices": [{"delta": {"content": "a"}}]})
    with pytest.raises(ProxyError):
        parser.feed({"error": {"message": "boom"}})


def test_sse_decoder_splits_a_provider_stream_at_any_border() -> None:
    raw = b"".join(sse_chunk(c) for c in openai_stream()) + b": keep-alive\r\n\r\n" + SSE_DONE
    raw = raw.replace(b"\n", b"\r\n")
    for size in (1, 2, 7, len(raw)):
        decoder = SSEDecoder()
        events = [e for k in range(0, len(raw), size) for e in decoder.feed(raw[k : k + size])]
        events += decoder.close()
        assert [name for name, _ in events] == ["message"] * 9
        assert [json.loads(d) for _, d in events[:-1]] == openai_stream()
        assert events[-1][1] == "[DONE]"


def test_sse_decoder_multiline_data_names_and_an_unterminated_tail() -> None:
    decoder = SSEDecoder()
    assert decoder.feed(b"event: ping\ndata: a\ndata: b\nid: 3\n\ndata: tail") == [("ping", "a\nb")]
    assert decoder.close() == [("message", "tail")]
    assert decoder.close() == []


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
        ("timeout", "api_error"),
        ("overloaded", "api_error"),
        ("internal", "api_error"),
        ("something_new", "api_error"),
    ],
)
def test_error_body(kind: str, wire_type: str) -> None:
    out = error_body(ProxyError(400, kind, "Nope.", param="x"))
    assert out["error"]["type"] == wire_type
    assert (out["error"]["message"], out["error"]["param"]) == ("Nope.", "x")
    assert set(out["error"]) == {"message", "type", "param", "code"}
    assert ErrorObject.model_validate(out["error"]).type == wire_type


@pytest.mark.parametrize(
    ("status", "ours", "kind"),
    [
        (400, 400, "invalid_request"),
        (401, 502, "upstream"),
        (403, 502, "upstream"),
        (404, 502, "upstream"),
        (408, 504, "timeout"),
        (413, 400, "invalid_request"),
        (429, 429, "rate_limit"),
        (500, 502, "upstream"),
        (503, 503, "overloaded"),
        (504, 504, "timeout"),
        (529, 503, "overloaded"),
    ],
)
def test_upstream_error_statuses(status: int, ours: int, kind: str) -> None:
    err = upstream_error(status, "why", retry_after=2.0)
    assert (err.status, err.kind) == (ours, kind)
    assert "why" in err.message


def test_parse_upstream_error_bodies() -> None:
    err = parse_upstream_error(429, {"error": {"message": "Slow down"}}, retry_after=3.0)
    assert (err.status, err.retry_after) == (429, 3.0)
    assert "Slow down" in err.message
    assert "bad gateway" in parse_upstream_error(502, b"bad gateway").message
    assert "gone" in parse_upstream_error(500, {"detail": "gone"}).message
    assert parse_upstream_error(500, None).message == "The provider answered 500."
