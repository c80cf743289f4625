"""The OpenAI Responses and Conversations wire formats, checked against the official SDK's
own types and, through an in-memory transport (httpx2, the SDK's HTTP client), its real
client and stream helper."""

from __future__ import annotations

import json
from typing import Any

import httpx2
import pytest
from openai import OpenAI
from openai.types.conversations import (
    Conversation,
    ConversationDeletedResource,
    ConversationItemList,
)
from openai.types.responses import Response, ResponseItemList, ResponseStreamEvent
from pydantic import TypeAdapter

from domain.proxy.chat import (
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
from domain.proxy.conversations_wire import (
    MAX_ITEMS_PER_CALL,
    conversation_items,
    item_base,
    message_items,
    parse_conversation_create,
    parse_conversation_items,
    parse_conversation_update,
    render_conversation,
    render_conversation_deleted,
    render_item_list,
)
from domain.proxy.responses_wire import (
    ResponsesRequest,
    ResponseStreamRenderer,
    parse_responses_request,
    render_response,
    sse_event,
)

EVENTS: TypeAdapter[Any] = TypeAdapter(ResponseStreamEvent)
WEATHER: dict[str, Any] = {
    "type": "function",
    "name": "get_weather",
    "description": "Weather in a city",
    "parameters": {"type": "object", "properties": {"city": {"type": "string"}}},
    "strict": False,
}


def parse(**body: Any) -> ResponsesRequest:
    return parse_responses_request({"model": "gpt-test", **body})


def refused(body: dict[str, Any]) -> ProxyError:
    with pytest.raises(ProxyError) as caught:
        parse_responses_request({"model": "gpt-test", **body})
    assert caught.value.status == 400
    assert caught.value.kind == "invalid_request"
    return caught.value


# ---------------------------------------------------------------------------- parsing


def test_a_string_input_is_one_user_message() -> None:
    request = parse(input="Hello")
    assert request.chat.model == "gpt-test"
    assert request.chat.messages == (Message(role="user", content="Hello"),)
    assert request.chat.system is None
    assert request.input_items == ({"type": "message", "role": "user", "content": "Hello"},)
    assert request.store is True
    assert request.previous_response_id is None
    assert request.conversation_id is None
    assert request.instructions is None
    assert request.chat.stream is False and request.chat.include_usage is False


def test_message_items_in_every_form() -> None:
    items = [
        {"role": "user", "content": "plain"},
        {"type": "message", "role": "user", "content": [{"type": "input_text", "text": "a"}]},
        {
            "type": "message",
            "role": "assistant",
            "id": "msg_1",
            "status": "completed",
            "content": [
                {"type": "output_text", "text": "b", "annotations": []},
                {"type": "output_text", "text": "c", "annotations": []},
            ],
        },
        {"role": "assistant", "content": [{"type": "refusal", "refusal": "no"}]},
        {"role": "user", "content": []},
    ]
    request = parse(input=items)
    assert request.chat.messages == (
        Message(role="user", content="plain"),
        Message(role="user", content="a"),
        Message(role="assistant", content="b\nc"),
        Message(role="assistant", content="no"),
        Message(role="user", content=""),
    )
    assert request.input_items == tuple(items)


def test_instructions_then_system_and_developer_messages_make_the_system_prompt() -> None:
    request = parse(
        instructions="Be brief.",
        input=[
            {"role": "system", "content": "Rule one."},
            {"role": "user", "content": "Hi"},
            {"role": "developer", "content": [{"type": "input_text", "text": "Rule two."}]},
        ],
    )
    assert request.chat.system == "Be brief.\n\nRule one.\n\nRule two."
    assert request.instructions == "Be brief."
    assert request.chat.messages == (Message(role="user", content="Hi"),)
    assert parse(input=[{"role": "developer", "content": "Only"}]).chat.system == "Only"


def test_function_calls_join_the_assistant_turn_and_outputs_become_tool_messages() -> None:
    request = parse(
        input=[
            {"role": "user", "content": "Weather in Paris and Rome?"},
            {"role": "assistant", "content": "Checking."},
            {
                "type": "function_call",
                "id": "fc_1",
                "call_id": "call_a",
                "name": "get_weather",
                "arguments": '{"city":"Paris"}',
                "status": "completed",
            },
            {
                "type": "function_call",
                "call_id": "call_b",
                "name": "get_weather",
                "arguments": '{"city":"Rome"}',
            },
            {"type": "function_call_output", "call_id": "call_a", "output": "sunny"},
            {
                "type": "function_call_output",
                "call_id": "call_b",
                "output": [{"type": "input_text", "text": "rain"}],
            },
            {"type": "reasoning", "id": "rs_1", "summary": []},
            {"type": "function_call", "call_id": "call_c", "name": "f", "arguments": "{}"},
            {"type": "function_call_output", "call_id": "call_x", "output": "orphan"},
        ]
    )
    assert request.chat.messages == (
        Message(role="user", content="Weather in Paris and Rome?"),
        Message(
            role="assistant",
            content="Checking.",
            tool_calls=(
                ToolCall(id="call_a", name="get_weather", arguments='{"city":"Paris"}'),
                ToolCall(id="call_b", name="get_weather", arguments='{"city":"Rome"}'),
            ),
        ),
        Message(role="tool", content="sunny", tool_call_id="call_a", name="get_weather"),
        Message(role="tool", content="rain", tool_call_id="call_b", name="get_weather"),
        Message(role="assistant", content="", tool_calls=(ToolCall("call_c", "f", "{}"),)),
        Message(role="tool", content="orphan", tool_call_id="call_x"),
    )


def test_no_input_is_allowed_when_the_state_carries_the_turn() -> None:
    request = parse(conversation="conv_1")
    assert request.chat.messages == ()
    assert request.input_items == ()
    assert request.conversation_id == "conv_1"


def test_settings_become_the_canonical_request() -> None:
    request = parse(
        input="Hi",
        tools=[WEATHER, {"type": "function", "name": "noop"}],
        tool_choice="required",
        parallel_tool_calls=False,
        max_output_tokens=64,
        temperature=0,
        top_p=0.5,
        stream=True,
        metadata={"team": "search"},
        user="u-1",
        store=False,
        previous_response_id="resp_prev",
        text={"format": {"type": "json_object"}},
        reasoning={"effort": "low"},  # not translatable: ignored
    )
    chat = request.chat
    assert chat.tools == (
        Tool(
            name="get_weather",
            description="Weather in a city",
            parameters=WEATHER["parameters"],
        ),
        Tool(name="noop"),
    )
    assert chat.tool_choice == "required"
    assert chat.parallel_tool_calls is False
    assert chat.max_tokens == 64
    assert chat.temperature == 0.0 and chat.top_p == 0.5
    assert chat.stream is True and chat.include_usage is True
    assert chat.metadata == {"team": "search"}
    assert chat.user == "u-1"
    assert chat.response_format == {"type": "json_object"}
    assert request.store is False
    assert request.previous_response_id == "resp_prev"


@pytest.mark.parametrize(
    ("choice", "canonical", "echo"),
    [
        (None, None, "auto"),
        ("auto", "auto", "auto"),
        ("none", "none", "none"),
        (
            {"type": "function", "name": "get_weather"},
            "get_weather",
            {"type": "function", "name": "get_weather"},
        ),
    ],
)
def test_tool_choice(choice: Any, canonical: str | None, echo: Any) -> None:
    request = parse(input="x", tools=[WEATHER], tool_choice=choice)
    assert request.chat.tool_choice == canonical
    assert request.echo["tool_choice"] == echo


def test_text_formats_become_response_formats() -> None:
    schema = {"type": "object", "properties": {"a": {"type": "integer"}}}
    request = parse(
        input="x",
        text={
            "format": {
                "type": "json_schema",
                "name": "thing",
                "schema": schema,
                "description": "A thing",
                "strict": True,
            },
            "verbosity": "low",
        },
    )
    assert request.chat.response_format == {
        "type": "json_schema",
        "json_schema": {
            "name": "thing",
            "schema": schema,
            "description": "A thing",
            "strict": True,
        },
    }
    assert parse(input="x", text={"format": {"type": "text"}}).chat.response_format is None
    assert parse(input="x", text={}).chat.response_format is None


@pytest.mark.parametrize("conversation", ["conv_9", {"id": "conv_9"}])
def test_conversation_as_an_id_or_an_object(conversation: Any) -> None:
    request = parse(input="x", conversation=conversation)
    assert request.conversation_id == "conv_9"
    assert request.echo["conversation"] == {"id": "conv_9"}


IMAGE = {"type": "input_image", "image_url": "https://example.com/a.png"}


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ({"model": None}, "model"),
        ({"model": ""}, "model"),
        ({"input": 3}, "input"),
        ({"input": ["hi"]}, "input[0]"),
        ({"input": [{"role": "user", "content": [IMAGE]}]}, "input[0].content[0].type"),
        (
            {
                "input": [
                    {"role": "user", "content": "ok"},
                    {
                        "role": "user",
                        "content": [
                            {"type": "input_text", "text": "see"},
                            {"type": "input_file", "file_id": "file_1"},
                        ],
                    },
                ]
            },
            "input[1].content[1].type",
        ),
        (
            {"input": [{"role": "user", "content": [{"type": "input_audio", "input_audio": {}}]}]},
            "input[0].content[0].type",
        ),
        ({"input": [{"role": "user", "content": ["x"]}]}, "input[0].content[0]"),
        (
            {"input": [{"role": "user", "content": [{"type": "input_text"}]}]},
            "input[0].content[0].text",
        ),
        ({"input": [{"role": "user", "content": 5}]}, "input[0].content"),
        ({"input": [{"role": "tool", "content": "x"}]}, "input[0].role"),
        ({"input": [{"content": "x"}]}, "input[0].role"),
        ({"input": [{"type": "item_reference", "id": "msg_1"}]}, "input[0]"),
        ({"input": [{"type": "computer_call_output", "call_id": "c"}]}, "input[0].type"),
        (
            {"input": [{"type": "function_call", "name": "f", "arguments": "{}"}]},
            "input[0].call_id",
        ),
        (
            {"input": [{"type": "function_call", "call_id": "c", "arguments": "{}"}]},
            "input[0].name",
        ),
        (
            {"input": [{"type": "function_call", "call_id": "c", "name": "f", "arguments": {}}]},
            "input[0].arguments",
        ),
        ({"input": [{"type": "function_call_output", "output": "x"}]}, "input[0].call_id"),
        (
            {"input": [{"type": "function_call_output", "call_id": "c", "output": [IMAGE]}]},
            "input[0].output[0].type",
        ),
        ({"tools": [{"type": "web_search"}]}, "tools[0].type"),
        ({"tools": [WEATHER, {"type": "file_search", "vector_store_ids": []}]}, "tools[1].type"),
        ({"tools": [{"type": "mcp", "server_label": "x"}]}, "tools[0].type"),
        ({"tools": [{"name": "f"}]}, "tools[0].type"),
        ({"tools": [{"type": "function"}]}, "tools[0].name"),
        ({"tools": [{"type": "function", "name": "f", "parameters": []}]}, "tools[0].parameters"),
        ({"tools": [{"type": "function", "name": "f", "strict": "yes"}]}, "tools[0].strict"),
        ({"tools": [{"type": "function", "name": "f", "description": 1}]}, "tools[0].description"),
        ({"tools": {"type": "function"}}, "tools"),
        ({"tool_choice": "any"}, "tool_choice"),
        ({"tool_choice": {"type": "file_search"}}, "tool_choice"),
        ({"tool_choice": {"type": "function"}}, "tool_choice.name"),
        ({"text": {"format": {"type": "xml"}}}, "text.format.type"),
        ({"text": {"format": {"type": "json_schema", "schema": {}}}}, "text.format.name"),
        ({"text": {"format": {"type": "json_schema", "name": "n"}}}, "text.format.schema"),
        (
            {"text": {"format": {"type": "json_schema", "name": "n", "schema": {}, "strict": 1}}},
            "text.format.strict",
        ),
        ({"text": "json"}, "text"),
        ({"text": {"format": "json"}}, "text.format"),
        ({"previous_response_id": "resp_1", "conversation": "conv_1"}, "conversation"),
        ({"previous_response_id": 5}, "previous_response_id"),
        ({"conversation": {}}, "conversation.id"),
        ({"conversation": 7}, "conversation"),
        ({"instructions": ["x"]}, "instructions"),
        ({"max_output_tokens": 0}, "max_output_tokens"),
        ({"max_output_tokens": True}, "max_output_tokens"),
        ({"max_output_tokens": "10"}, "max_output_tokens"),
        ({"temperature": 2.5}, "temperature"),
        ({"temperature": "hot"}, "temperature"),
        ({"top_p": -0.1}, "top_p"),
        ({"stream": "yes"}, "stream"),
        ({"store": 1}, "store"),
        ({"parallel_tool_calls": "no"}, "parallel_tool_calls"),
        ({"user": 1}, "user"),
        ({"metadata": ["a"]}, "metadata"),
        ({"metadata": {f"k{i}": "v" for i in range(17)}}, "metadata"),
        ({"metadata": {"k" * 65: "v"}}, "metadata"),
        ({"metadata": {"k": 1}}, "metadata.k"),
        ({"metadata": {"k": "v" * 513}}, "metadata.k"),
        ({"background": True}, "background"),
        ({"prompt": {"id": "pmpt_1"}}, "prompt"),
    ],
)
def test_refusals_name_the_field(body: dict[str, Any], param: str) -> None:
    error = refused({"input": "hi", **body})
    assert error.param == param, error.message


def test_refusals_say_what_is_unsupported() -> None:
    assert "input_image" in refused({"input": [{"role": "user", "content": [IMAGE]}]}).message
    assert "web_search" in refused({"input": "x", "tools": [{"type": "web_search"}]}).message
    both = refused({"input": "x", "previous_response_id": "resp_1", "conversation": "conv_1"})
    assert "previous_response_id" in both.message


# -------------------------------------------------------------------------- rendering


def answer(**fields: Any) -> ChatResponse:
    values: dict[str, Any] = {
        "id": "chatcmpl-1",
        "model": "gpt-test-2026",
        "content": "Hello there.",
        "usage": Usage(input_tokens=12, output_tokens=3, cached_tokens=4),
        "created": 1_770_000_000,
    }
    values.update(fields)
    return ChatResponse(**values)


def test_a_text_answer_renders_as_a_valid_response() -> None:
    request = parse(
        input="Hi",
        instructions="Be kind.",
        tools=[WEATHER],
        metadata={"a": "b"},
        temperature=0.2,
        conversation={"id": "conv_7"},
        text={"format": {"type": "json_schema", "name": "n", "schema": {"type": "object"}}},
    )
    body = render_response(answer(), request, response_id="resp_abc")
    parsed = Response.model_validate(body)
    assert parsed.id == "resp_abc"
    assert parsed.object == "response"
    assert parsed.status == "completed"
    assert parsed.created_at == 1_770_000_000
    assert parsed.model == "gpt-test-2026"
    assert parsed.output_text == "Hello there."
    assert parsed.instructions == "Be kind."
    assert parsed.conversation is not None and parsed.conversation.id == "conv_7"
    assert parsed.previous_response_id is None
    assert parsed.metadata == {"a": "b"}
    assert parsed.temperature == 0.2
    assert body["store"] is True
    assert parsed.incomplete_details is None and parsed.error is None
    assert parsed.text is not None and parsed.text.format is not None
    assert parsed.text.format.type == "json_schema"
    assert [tool.type for tool in parsed.tools] == ["function"]
    assert body["output"] == [
        {
            "type": "message",
            "id": "msg_abc",
            "status": "completed",
            "role": "assistant",
            "content": [{"type": "output_text", "text": "Hello there.", "annotations": []}],
        }
    ]
    assert body["usage"] == {
        "input_tokens": 12,
        "input_tokens_details": {"cached_tokens": 4, "cache_write_tokens": 0},
        "output_tokens": 3,
        "output_tokens_details": {"reasoning_tokens": 0},
        "total_tokens": 15,
    }
    json.dumps(body)  # plain JSON


def test_tool_calls_render_as_function_call_items_after_the_text() -> None:
    calls = (ToolCall("call_a", "get_weather", '{"city":"Paris"}'), ToolCall("call_b", "f", "{}"))
    request = parse(input="x", tools=[WEATHER], previous_response_id="resp_0")
    only_calls = render_response(
        answer(content="", tool_calls=calls, finish_reason="tool_calls"),
        request,
        response_id="resp_r1",
    )
    parsed = Response.model_validate(only_calls)
    assert parsed.status == "completed"
    assert parsed.previous_response_id == "resp_0"
    assert parsed.output_text == ""
    assert only_calls["output"] == [
        {
            "type": "function_call",
            "id": "fc_r1_0",
            "call_id": "call_a",
            "name": "get_weather",
            "arguments": '{"city":"Paris"}',
            "status": "completed",
        },
        {
            "type": "function_call",
            "id": "fc_r1_1",
            "call_id": "call_b",
            "name": "f",
            "arguments": "{}",
            "status": "completed",
        },
    ]
    both = render_response(
        answer(content="Let me check.", tool_calls=calls[:1], finish_reason="tool_calls"),
        request,
        response_id="resp_r2",
        item_base="base9",
    )
    Response.model_validate(both)
    assert [(o["type"], o["id"]) for o in both["output"]] == [
        ("message", "msg_base9"),
        ("function_call", "fc_base9_0"),
    ]


@pytest.mark.parametrize(
    ("finish", "status", "details"),
    [
        ("length", "incomplete", {"reason": "max_output_tokens"}),
        ("content_filter", "incomplete", {"reason": "content_filter"}),
        ("client_disconnected", "incomplete", None),
        ("stop", "completed", None),
    ],
)
def test_finish_reasons_set_the_status(finish: Any, status: str, details: Any) -> None:
    body = render_response(answer(finish_reason=finish), parse(input="x"), response_id="resp_1")
    parsed = Response.model_validate(body)
    assert parsed.status == status
    assert body["incomplete_details"] == details
    item_status = "completed" if status == "completed" else "incomplete"
    assert body["output"][0]["status"] == item_status


def test_failures_render_a_failed_response_with_the_error() -> None:
    request = parse(input="x")
    failed = render_response(
        answer(content="", finish_reason="error", usage=None), request, response_id="resp_1"
    )
    parsed = Response.model_validate(failed)
    assert parsed.status == "failed"
    assert parsed.error is not None and parsed.error.code == "server_error"
    assert failed["output"] == [] and failed["usage"] is None
    limited = render_response(
        answer(content="partial"),
        request,
        response_id="resp_2",
        error=ProxyError(429, "rate_limit", "Slow down", param=None),
    )
    parsed = Response.model_validate(limited)
    assert parsed.status == "failed"
    assert parsed.error is not None
    assert (parsed.error.code, parsed.error.message) == ("rate_limit_exceeded", "Slow down")
    assert parsed.output_text == "partial"


def test_an_empty_answer_is_one_empty_message() -> None:
    body = render_response(answer(content=""), parse(input="x"), response_id="resp_1")
    assert Response.model_validate(body).output_text == ""
    assert len(body["output"]) == 1


def test_the_recorded_echo_renders_the_same_response_as_the_request() -> None:
    request = parse(input="x", tools=[WEATHER], tool_choice="auto", metadata={"k": "v"})
    recorded = json.loads(json.dumps(request.echo))
    from_request = render_response(answer(), request, response_id="resp_1")
    assert render_response(answer(), recorded, response_id="resp_1") == from_request
    assert render_response(answer(model=""), recorded, response_id="resp_1")["model"] == "gpt-test"


# -------------------------------------------------------------------------- streaming


def text_then_call() -> list[Delta]:
    return [
        Delta(text="Let me "),
        Delta(text="check."),
        Delta(tool_call=ToolCallDelta(index=0, id="call_a", name="get_weather")),
        Delta(tool_call=ToolCallDelta(index=0, arguments='{"city":')),
        Delta(tool_call=ToolCallDelta(index=0, arguments='"Paris"}')),
        Delta(finish_reason="tool_calls"),
        Delta(usage=Usage(input_tokens=20, output_tokens=9)),
    ]


def run_stream(
    deltas: list[Delta], request: ResponsesRequest | None = None, **finish: Any
) -> tuple[list[tuple[str, dict[str, Any]]], ResponseStreamRenderer]:
    renderer = ResponseStreamRenderer(
        request or parse(input="x", tools=[WEATHER], stream=True),
        response_id="resp_s1",
        created_at=1_770_000_000,
    )
    events = renderer.start()
    for delta in deltas:
        events += renderer.feed(delta)
    events += renderer.finish(**finish)
    return events, renderer


def check_events(events: list[tuple[str, dict[str, Any]]]) -> list[Any]:
    """Every event validates as the SDK's union, under the type it is framed with, and
    the sequence numbers count up from 0."""
    parsed = []
    for number, (event_type, data) in enumerate(events):
        event = EVENTS.validate_python(data)
        assert event.type == event_type == data["type"]
        assert event.sequence_number == number
        parsed.append(event)
    return parsed


def test_a_stream_of_text_then_a_tool_call() -> None:
    events, renderer = run_stream(text_then_call(), model="gpt-test-2026")
    parsed = check_events(events)
    assert [t for t, _ in events] == [
        "response.created",
        "response.in_progress",
        "response.output_item.added",
        "response.content_part.added",
        "response.output_text.delta",
        "response.output_text.delta",
        "response.output_text.done",
        "response.content_part.done",
        "response.output_item.done",
        "response.output_item.added",
        "response.function_call_arguments.delta",
        "response.function_call_arguments.delta",
        "response.function_call_arguments.done",
        "response.output_item.done",
        "response.completed",
    ]
    created = parsed[0].response
    assert created.status == "in_progress" and created.output == [] and created.usage is None
    assert created.model == "gpt-test"
    assert [e.delta for e in parsed if e.type == "response.output_text.delta"] == [
        "Let me ",
        "check.",
    ]
    text_done = parsed[6]
    assert (text_done.text, text_done.item_id, text_done.output_index) == (
        "Let me check.",
        "msg_s1",
        0,
    )
    call_added = parsed[9]
    assert call_added.output_index == 1
    assert call_added.item.type == "function_call"
    assert (call_added.item.call_id, call_added.item.name, call_added.item.status) == (
        "call_a",
        "get_weather",
        "in_progress",
    )
    assert parsed[12].arguments == '{"city":"Paris"}' and parsed[12].item_id == "fc_s1_0"
    final = parsed[-1].response
    assert final.status == "completed" and final.model == "gpt-test-2026"
    assert final.output_text == "Let me check."
    assert final.usage is not None and final.usage.total_tokens == 29
    assert renderer.response() == events[-1][1]["response"]

    # The streamed response is the one render_response gives for the same answer.
    accumulator = StreamAccumulator("x", "gpt-test-2026", created=1_770_000_000)
    for delta in text_then_call():
        accumulator.add(delta)
    whole = render_response(
        accumulator.response(),
        parse(input="x", tools=[WEATHER], stream=True),
        response_id="resp_s1",
    )
    assert whole == renderer.response()


def test_sse_framing() -> None:
    events, _ = run_stream([Delta(text="é")])
    frame = sse_event(*events[4])
    head, data, end = frame.split(b"\n", 2)
    assert head == b"event: response.output_text.delta"
    assert json.loads(data.removeprefix(b"data: ")) == events[4][1]
    assert end == b"\n"
    assert "é".encode() in data


def test_a_stream_cut_by_the_token_limit_is_incomplete() -> None:
    events, _ = run_stream([Delta(text="Once upon"), Delta(finish_reason="length")])
    parsed = check_events(events)
    assert events[-1][0] == "response.incomplete"
    final = parsed[-1].response
    assert final.status == "incomplete"
    assert final.incomplete_details is not None
    assert final.incomplete_details.reason == "max_output_tokens"
    assert parsed[-2].item.status == "incomplete"
    assert final.output_text == "Once upon"


def test_a_failed_stream_keeps_what_was_said_and_reports_the_error() -> None:
    error = ProxyError(502, "upstream", "The provider failed")
    events, _ = run_stream(
        [Delta(text="Half"), Delta(tool_call=ToolCallDelta(0, "call_a", "f", '{"a'))],
        error=error,
    )
    parsed = check_events(events)
    assert events[-1][0] == "response.failed"
    final = parsed[-1].response
    assert final.status == "failed"
    assert final.error is not None
    assert (final.error.code, final.error.message) == ("server_error", "The provider failed")
    assert final.output_text == "Half"
    assert final.output[1].arguments == '{"a' and final.output[1].status == "incomplete"

    events, _ = run_stream([], finish_reason="error")
    check_events(events)
    assert [t for t, _ in events] == [
        "response.created",
        "response.in_progress",
        "response.failed",
    ]
    assert events[-1][1]["response"]["output"] == []


def test_an_empty_stream_still_answers_one_empty_message() -> None:
    events, renderer = run_stream([])
    check_events(events)
    assert [t for t, _ in events][2:] == [
        "response.output_item.added",
        "response.content_part.added",
        "response.output_text.done",
        "response.content_part.done",
        "response.output_item.done",
        "response.completed",
    ]
    empty = render_response(
        ChatResponse(id="x", model="gpt-test", content="", created=1_770_000_000),
        parse(input="x", tools=[WEATHER], stream=True),
        response_id="resp_s1",
    )
    assert renderer.response() == empty


def test_parallel_calls_and_text_after_a_call() -> None:
    deltas = [
        Delta(tool_call=ToolCallDelta(0, "call_a", "f", "{")),
        Delta(tool_call=ToolCallDelta(0, arguments="}")),
        Delta(tool_call=ToolCallDelta(1, "call_b", "g", "[")),
        Delta(tool_call=ToolCallDelta(0, arguments=" ")),  # a late piece of a closed call
        Delta(tool_call=ToolCallDelta(1, arguments="]")),
        Delta(text="Done."),
        Delta(finish_reason="stop"),
    ]
    events, renderer = run_stream(deltas)
    parsed = check_events(events)
    added = [(e.output_index, e.item.id) for e in parsed if e.type == "response.output_item.added"]
    assert added == [(0, "fc_s1_0"), (1, "fc_s1_1"), (2, "msg_s1_2")]
    done = [e.output_index for e in parsed if e.type == "response.output_item.done"]
    assert done == [0, 1, 2]
    output = renderer.response()["output"]
    assert [o.get("arguments") for o in output] == ["{} ", "[]", None]
    assert output[2]["content"][0]["text"] == "Done."


def test_a_call_without_an_id_gets_one() -> None:
    events, renderer = run_stream([Delta(tool_call=ToolCallDelta(0, name="f", arguments="{}"))])
    check_events(events)
    assert renderer.response()["output"][0]["call_id"] == "call_s1_0"


def test_the_response_so_far_before_the_end() -> None:
    renderer = ResponseStreamRenderer(parse(input="x"), response_id="resp_1", created_at=5)
    renderer.start()
    renderer.feed(Delta(tool_call=ToolCallDelta(0, "call_a", "f", "{}")))
    so_far = renderer.response()
    assert so_far["status"] == "in_progress"
    assert Response.model_validate(so_far).output[0].type == "function_call"


# ------------------------------------------------------------ the SDK, end to end


def sdk_client(handler: Any) -> OpenAI:
    return OpenAI(
        api_key="test",
        base_url="http://gateway.test/v1",
        http_client=httpx2.Client(transport=httpx2.MockTransport(handler)),
        max_retries=0,
    )


def test_the_sdk_reads_a_response_and_a_stream() -> None:
    seen: list[ResponsesRequest] = []

    def handler(http: httpx2.Request) -> httpx2.Response:
        request = parse_responses_request(json.loads(http.content))
        seen.append(request)
        if not request.chat.stream:
            return httpx2.Response(
                200, json=render_response(answer(), request, response_id="resp_sdk")
            )
        renderer = ResponseStreamRenderer(request, response_id="resp_sdk", created_at=1)
        events = renderer.start()
        for delta in text_then_call():
            events += renderer.feed(delta)
        events += renderer.finish()
        body = b"".join(sse_event(t, d) for t, d in events)
        return httpx2.Response(200, content=body, headers={"content-type": "text/event-stream"})

    client = sdk_client(handler)
    response = client.responses.create(
        model="gpt-test", input="Hi", previous_response_id="resp_0", instructions="Be kind."
    )
    assert response.output_text == "Hello there."
    assert seen[0].previous_response_id == "resp_0" and seen[0].chat.system == "Be kind."

    tool: Any = WEATHER
    with client.responses.stream(model="gpt-test", input="Hi", tools=[tool]) as stream:
        kinds = [event.type for event in stream]
        final = stream.get_final_response()
    assert kinds[0] == "response.created" and kinds[-1] == "response.completed"
    assert final.output_text == "Let me check."
    call = final.output[1]
    assert call.type == "function_call" and call.arguments == '{"city":"Paris"}'


def test_the_sdk_pages_through_conversation_items() -> None:
    entries = [(f"{n:02d}", Message(role="user", content=f"turn {n}")) for n in range(5)]
    items = conversation_items(entries)

    def handler(http: httpx2.Request) -> httpx2.Response:
        assert http.url.path == "/v1/conversations/conv_1/items"
        after = http.url.params.get("after")
        limit = int(http.url.params.get("limit", "20"))
        start = 0
        if after is not None:
            base = item_base(after)
            start = next(i for i, (b, _) in enumerate(entries) if b == base) + 1
        page = items[start : start + limit]
        return httpx2.Response(
            200, json=render_item_list(page, has_more=start + limit < len(items))
        )

    client = sdk_client(handler)
    listed = list(client.conversations.items.list("conv_1", limit=2, order="asc"))
    assert [item.id for item in listed] == [f"msg_{n:02d}" for n in range(5)]


# ----------------------------------------------------------------------- conversations


def test_a_conversation_object() -> None:
    body = render_conversation("conv_1", 1_770_000_000, {"topic": "demo"})
    parsed = Conversation.model_validate(body)
    assert (parsed.id, parsed.object, parsed.created_at) == (
        "conv_1",
        "conversation",
        1_770_000_000,
    )
    assert parsed.metadata == {"topic": "demo"}
    assert render_conversation("conv_2", 1)["metadata"] == {}
    deleted = ConversationDeletedResource.model_validate(render_conversation_deleted("conv_1"))
    assert deleted.deleted is True


def test_creating_a_conversation() -> None:
    assert parse_conversation_create({}).metadata == {}
    assert parse_conversation_create({}).items.messages == ()
    items = [
        {"type": "message", "role": "developer", "content": "Be terse."},
        {"role": "user", "content": [{"type": "input_text", "text": "Hi"}]},
        {"role": "assistant", "content": "Hello."},
    ]
    created = parse_conversation_create({"metadata": {"k": "v"}, "items": items})
    assert created.metadata == {"k": "v"}
    assert created.items.items == tuple(items)
    assert created.items.messages == (
        Message(role="system", content="Be terse."),
        Message(role="user", content="Hi"),
        Message(role="assistant", content="Hello."),
    )


def test_adding_items_and_updating_metadata() -> None:
    added = parse_conversation_items({"items": [{"role": "user", "content": "more"}]})
    assert added.messages == (Message(role="user", content="more"),)
    assert parse_conversation_update({"metadata": {"a": "b"}}) == {"a": "b"}
    assert parse_conversation_update({"metadata": None}) == {}


@pytest.mark.parametrize(
    ("call", "body", "param"),
    [
        (parse_conversation_create, {"metadata": {"k": 5}}, "metadata.k"),
        (parse_conversation_create, {"items": "hi"}, "items"),
        (
            parse_conversation_create,
            {"items": [{"role": "user", "content": "x"}] * (MAX_ITEMS_PER_CALL + 1)},
            "items",
        ),
        (
            parse_conversation_create,
            {"items": [{"role": "user", "content": [IMAGE]}]},
            "items[0].content[0].type",
        ),
        (parse_conversation_items, {}, "items"),
        (parse_conversation_items, {"items": []}, "items"),
        (parse_conversation_items, {"items": [{"type": "web_search_call"}]}, "items[0].type"),
        (parse_conversation_update, {}, "metadata"),
        (parse_conversation_update, {"metadata": "x"}, "metadata"),
    ],
)
def test_conversation_refusals_name_the_field(call: Any, body: Any, param: str) -> None:
    with pytest.raises(ProxyError) as caught:
        call(body)
    assert caught.value.status == 400
    assert caught.value.param == param


HISTORY = [
    ("e1", Message(role="system", content="Be terse.")),
    ("e2", Message(role="user", content="Weather in Paris?")),
    (
        "e3",
        Message(
            role="assistant",
            content="Checking.",
            tool_calls=(ToolCall("call_a", "get_weather", '{"city":"Paris"}'),),
        ),
    ),
    ("e4", Message(role="tool", content="sunny", tool_call_id="call_a", name="get_weather")),
    ("e5", Message(role="assistant", content="", tool_calls=(ToolCall("call_b", "f", "{}"),))),
    ("e6", Message(role="assistant", content="Sunny.")),
]


def test_conversation_items_from_canonical_messages() -> None:
    items = conversation_items(HISTORY)
    assert items == [
        {
            "type": "message",
            "id": "msg_e1",
            "status": "completed",
            "role": "system",
            "content": [{"type": "input_text", "text": "Be terse."}],
        },
        {
            "type": "message",
            "id": "msg_e2",
            "status": "completed",
            "role": "user",
            "content": [{"type": "input_text", "text": "Weather in Paris?"}],
        },
        {
            "type": "message",
            "id": "msg_e3",
            "status": "completed",
            "role": "assistant",
            "content": [{"type": "output_text", "text": "Checking.", "annotations": []}],
        },
        {
            "type": "function_call",
            "id": "fc_e3_0",
            "call_id": "call_a",
            "name": "get_weather",
            "arguments": '{"city":"Paris"}',
            "status": "completed",
        },
        {
            "type": "function_call_output",
            "id": "fco_e4",
            "call_id": "call_a",
            "output": "sunny",
            "status": "completed",
        },
        {
            "type": "function_call",
            "id": "fc_e5_0",
            "call_id": "call_b",
            "name": "f",
            "arguments": "{}",
            "status": "completed",
        },
        {
            "type": "message",
            "id": "msg_e6",
            "status": "completed",
            "role": "assistant",
            "content": [{"type": "output_text", "text": "Sunny.", "annotations": []}],
        },
    ]
    page = render_item_list(items, has_more=True)
    parsed = ConversationItemList.model_validate(page)
    assert (parsed.first_id, parsed.last_id, parsed.has_more) == ("msg_e1", "msg_e6", True)
    assert [item.type for item in parsed.data] == [
        "message",
        "message",
        "message",
        "function_call",
        "function_call_output",
        "function_call",
        "message",
    ]
    # the same page serves GET /v1/responses/{id}/input_items
    ResponseItemList.model_validate(page)


def test_an_empty_page_and_an_empty_assistant_turn() -> None:
    assert render_item_list([]) == {
        "object": "list",
        "data": [],
        "first_id": None,
        "last_id": None,
        "has_more": False,
    }
    (item,) = message_items("e9", Message(role="assistant", content=""))
    assert item["id"] == "msg_e9" and item["content"][0]["text"] == ""


def test_a_response_and_its_conversation_items_share_ids() -> None:
    calls = (ToolCall("call_a", "f", "{}"),)
    response = render_response(
        answer(content="Checking.", tool_calls=calls, finish_reason="tool_calls"),
        parse(input="x"),
        response_id="resp_77",
    )
    recorded = Message(role="assistant", content="Checking.", tool_calls=calls)
    assert [o["id"] for o in response["output"]] == [i["id"] for i in message_items("77", recorded)]


def test_item_ids_map_back_to_their_base() -> None:
    for item in conversation_items(HISTORY):
        assert item_base(item["id"]) == item["id"].split("_")[1]
    assert item_base("fc_a_b_12") == "a_b"
    assert item_base("msg_x_y") == "x_y"
    for foreign in ("item_1", "fc_", "fc_abc", "fc_abc_x", "msg_", "fco_", ""):
        assert item_base(foreign) is None
