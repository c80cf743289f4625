"""The fake provider, driven by the official OpenAI and Anthropic SDKs: if their parsers
and stream helpers accept what it sends, the gateway's adapters are tested against the
real wire shapes. One server is shared by the module (starting one costs ~0.2 s);
every test starts from a cleared queue and capture."""

from __future__ import annotations

import asyncio
import json
import os
import select
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anthropic
import httpx
import openai
import pytest

from tests.fakes.fake_upstream import DEFAULT_MODELS, Behavior, FakeToolCall, FakeUpstream

ROOT = Path(__file__).resolve().parents[2]
WEATHER_TOOL: Any = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "The weather in a city.",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}},
    },
}
CLAUDE_TOOL: Any = {
    "name": "get_weather",
    "description": "The weather in a city.",
    "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}},
}
ANTHROPIC_HEADERS = {"x-api-key": "k", "anthropic-version": "2023-06-01"}


@pytest.fixture(scope="module")
def server() -> Iterator[FakeUpstream]:
    with FakeUpstream() as fake:
        yield fake


@pytest.fixture
def fake(server: FakeUpstream) -> Iterator[FakeUpstream]:
    server.clear()
    yield server
    server.clear()
    server.default = Behavior()
    server.latency = 0.0
    server.api_key = None


@pytest.fixture
def oai(fake: FakeUpstream) -> Iterator[openai.OpenAI]:
    with openai.OpenAI(
        api_key="sk-test", base_url=fake.base_url + "/v1", max_retries=0, timeout=5
    ) as client:
        yield client


@pytest.fixture
def claude(fake: FakeUpstream) -> Iterator[anthropic.Anthropic]:
    with anthropic.Anthropic(
        api_key="sk-ant-test", base_url=fake.base_url, max_retries=0, timeout=5
    ) as client:
        yield client


def sse_data(text: str) -> list[Any]:
    """The JSON payloads of an OpenAI stream, [DONE] as the string."""
    rows = [line.removeprefix("data: ") for line in text.split("\n") if line.startswith("data:")]
    return [row if row == "[DONE]" else json.loads(row) for row in rows]


def sse_events(text: str) -> list[tuple[str, Any]]:
    """(event name, JSON data) of an Anthropic stream."""
    out = []
    for block in text.strip().split("\n\n"):
        name, data = block.split("\n")
        out.append((name.removeprefix("event: "), json.loads(data.removeprefix("data: "))))
    return out


# --- OpenAI ------------------------------------------------------------------------------


def test_openai_completion_echoes_the_last_user_message_with_word_usage(oai):
    r = oai.chat.completions.create(
        model="gpt-4o",
        messages=[
            {"role": "system", "content": "Be brief."},
            {"role": "user", "content": "first question"},
            {"role": "assistant", "content": "an answer"},
            {"role": "user", "content": "hello there"},
        ],
    )
    assert r.object == "chat.completion"
    assert r.id.startswith("chatcmpl-")
    assert r.model == "gpt-4o"
    assert r.choices[0].message.role == "assistant"
    assert r.choices[0].message.content == "Echo: hello there"
    assert r.choices[0].finish_reason == "stop"
    assert r.usage is not None
    assert (r.usage.prompt_tokens, r.usage.completion_tokens, r.usage.total_tokens) == (8, 3, 11)
    assert r.usage.prompt_tokens_details is not None
    assert r.usage.prompt_tokens_details.cached_tokens == 0


def test_openai_stream_role_first_content_in_pieces_then_usage_chunk(oai):
    chunks = list(
        oai.chat.completions.create(
            model="gpt-4o",
            messages=[{"role": "user", "content": "one two three"}],
            stream=True,
            stream_options={"include_usage": True},
        )
    )
    assert chunks[0].choices[0].delta.role == "assistant"
    pieces = [
        c.choices[0].delta.content for c in chunks[1:] if c.choices and c.choices[0].delta.content
    ]
    assert len(pieces) == 4
    assert "".join(pieces) == "Echo: one two three"
    assert chunks[-2].choices[0].finish_reason == "stop"
    assert [c.usage for c in chunks[:-1]] == [None] * (len(chunks) - 1)
    assert chunks[-1].choices == []
    assert chunks[-1].usage is not None
    assert (chunks[-1].usage.prompt_tokens, chunks[-1].usage.completion_tokens) == (3, 4)
    assert len({c.id for c in chunks}) == 1


def test_openai_stream_without_include_usage_has_no_usage_chunk(oai):
    chunks = list(
        oai.chat.completions.create(
            model="gpt-4o", messages=[{"role": "user", "content": "hi"}], stream=True
        )
    )
    assert all(c.choices for c in chunks)
    assert all(c.usage is None for c in chunks)


def test_openai_streamed_tool_call_is_assembled_by_the_sdk_helper(oai):
    with oai.chat.completions.stream(
        model="gpt-4o",
        messages=[{"role": "user", "content": "What is the weather in Paris?"}],
        tools=[WEATHER_TOOL],
    ) as stream:
        chunks = [e.chunk for e in stream if e.type == "chunk"]
        final = stream.get_final_completion()
    choice = final.choices[0]
    assert choice.finish_reason == "tool_calls"
    assert choice.message.content is None
    calls = choice.message.tool_calls
    assert calls is not None
    assert len(calls) == 1
    assert calls[0].id.startswith("call_")
    assert calls[0].function.name == "get_weather"
    assert json.loads(calls[0].function.arguments) == {"city": "Paris"}
    # OpenAI's streaming shape: id, type and name first with empty arguments, then
    # argument fragments carrying only the index.
    deltas = [c.choices[0].delta.tool_calls for c in chunks if c.choices[0].delta.tool_calls]
    first, rest = deltas[0][0], [d[0] for d in deltas[1:]]
    assert (first.index, first.id, first.type) == (0, calls[0].id, "function")
    assert first.function is not None
    assert (first.function.name, first.function.arguments) == ("get_weather", "")
    assert len(rest) > 1
    assert all(d.id is None and d.index == 0 for d in rest)


def test_openai_tools_offered_but_no_weather_means_a_text_answer(oai):
    r = oai.chat.completions.create(
        model="gpt-4o", messages=[{"role": "user", "content": "just chat"}], tools=[WEATHER_TOOL]
    )
    assert r.choices[0].finish_reason == "stop"
    assert r.choices[0].message.tool_calls is None
    assert r.choices[0].message.content == "Echo: just chat"


def test_openai_scripted_parallel_tool_calls_and_tool_results_roundtrip(fake, oai):
    fake.enqueue(Behavior(tool_call=[FakeToolCall("a", {"x": 1}), FakeToolCall("b", '{"y": 2}')]))
    first = oai.chat.completions.create(
        model="gpt-4o", messages=[{"role": "user", "content": "go"}], tools=[WEATHER_TOOL]
    )
    calls = first.choices[0].message.tool_calls
    assert calls is not None
    assert [(c.function.name, c.function.arguments) for c in calls] == [
        ("a", '{"x":1}'),
        ("b", '{"y": 2}'),
    ]
    second = oai.chat.completions.create(
        model="gpt-4o",
        messages=[
            {"role": "user", "content": "go"},
            first.choices[0].message.model_dump(exclude_none=True),
            {"role": "tool", "tool_call_id": calls[0].id, "content": "one"},
            {"role": "tool", "tool_call_id": calls[1].id, "content": "two"},
        ],
        tools=[WEATHER_TOOL],
    )
    assert second.choices[0].message.content == "Echo: go"


def test_openai_max_tokens_truncates_with_finish_length(oai):
    r = oai.chat.completions.create(
        model="gpt-4o",
        messages=[{"role": "user", "content": "a b c d e"}],
        max_completion_tokens=3,
    )
    assert r.choices[0].message.content == "Echo: a b"
    assert r.choices[0].finish_reason == "length"
    assert r.usage is not None
    assert r.usage.completion_tokens == 3


def test_openai_stop_sequence_cuts_the_text(oai):
    r = oai.chat.completions.create(
        model="gpt-4o", messages=[{"role": "user", "content": "red STOP blue"}], stop=["STOP"]
    )
    assert r.choices[0].message.content == "Echo: red "
    assert r.choices[0].finish_reason == "stop"


def test_openai_json_mode_answers_json_and_needs_the_word(oai):
    r = oai.chat.completions.create(
        model="gpt-4o",
        messages=[{"role": "user", "content": "answer in json please"}],
        response_format={"type": "json_object"},
    )
    assert json.loads(r.choices[0].message.content or "") == {"echo": "answer in json please"}
    with pytest.raises(openai.BadRequestError, match="must contain the word 'json'"):
        oai.chat.completions.create(
            model="gpt-4o",
            messages=[{"role": "user", "content": "hi"}],
            response_format={"type": "json_object"},
        )


def test_openai_models_list(oai):
    assert [m.id for m in oai.models.list()] == list(DEFAULT_MODELS)
    assert oai.models.retrieve("gpt-4o").owned_by == "system"
    with pytest.raises(openai.NotFoundError):
        oai.models.retrieve("no-such-model")


# --- Anthropic ---------------------------------------------------------------------------


def test_anthropic_message_echo_with_usage(claude):
    m = claude.messages.create(
        model="claude-sonnet-4-6",
        max_tokens=100,
        system="Be brief.",
        messages=[{"role": "user", "content": [{"type": "text", "text": "hello there"}]}],
    )
    assert m.id.startswith("msg_")
    assert (m.type, m.role, m.model) == ("message", "assistant", "claude-sonnet-4-6")
    assert [b.type for b in m.content] == ["text"]
    assert m.content[0].type == "text"
    assert m.content[0].text == "Echo: hello there"
    assert (m.stop_reason, m.stop_sequence) == ("end_turn", None)
    assert (m.usage.input_tokens, m.usage.output_tokens) == (4, 3)
    assert m.usage.cache_read_input_tokens == 0


def test_anthropic_stream_sends_the_documented_event_sequence(fake):
    r = httpx.post(
        fake.base_url + "/v1/messages",
        headers=ANTHROPIC_HEADERS,
        json={
            "model": "claude-sonnet-4-6",
            "max_tokens": 50,
            "stream": True,
            "messages": [{"role": "user", "content": "hi you"}],
        },
    )
    assert r.headers["content-type"].startswith("text/event-stream")
    events = sse_events(r.text)
    assert [name for name, _ in events] == [
        "message_start",
        "content_block_start",
        "ping",
        "content_block_delta",
        "content_block_delta",
        "content_block_delta",
        "content_block_stop",
        "message_delta",
        "message_stop",
    ]
    assert all(data["type"] == name for name, data in events)
    assert events[0][1]["message"]["usage"]["input_tokens"] == 2
    assert "".join(d["delta"]["text"] for n, d in events if n == "content_block_delta") == (
        "Echo: hi you"
    )
    assert events[-2][1]["delta"] == {"stop_reason": "end_turn", "stop_sequence": None}
    assert events[-2][1]["usage"] == {"output_tokens": 3}


def test_anthropic_stream_helper_assembles_text_and_tool_use(fake, claude):
    fake.enqueue(Behavior(text="Let me check.", tool_call=FakeToolCall()))
    with claude.messages.stream(
        model="claude-sonnet-4-6",
        max_tokens=100,
        messages=[{"role": "user", "content": "Is it raining?"}],
        tools=[CLAUDE_TOOL],
    ) as stream:
        text = "".join(stream.text_stream)
        final = stream.get_final_message()
    assert text == "Let me check."
    assert [b.type for b in final.content] == ["text", "tool_use"]
    block = final.content[1]
    assert block.type == "tool_use"
    assert block.id.startswith("toolu_")
    assert (block.name, block.input) == ("get_weather", {"city": "Paris"})
    assert final.stop_reason == "tool_use"


def test_anthropic_weather_question_gets_a_tool_use_and_the_result_is_accepted(claude):
    m = claude.messages.create(
        model="claude-sonnet-4-6",
        max_tokens=100,
        messages=[{"role": "user", "content": "weather in Paris?"}],
        tools=[CLAUDE_TOOL],
    )
    assert m.stop_reason == "tool_use"
    use = m.content[0]
    assert use.type == "tool_use"
    follow_up = claude.messages.create(
        model="claude-sonnet-4-6",
        max_tokens=100,
        messages=[
            {"role": "user", "content": "weather in Paris?"},
            {"role": "assistant", "content": [use.model_dump()]},
            {
                "role": "user",
                "content": [{"type": "tool_result", "tool_use_id": use.id, "content": "sunny"}],
            },
        ],
        tools=[CLAUDE_TOOL],
    )
    assert follow_up.stop_reason == "end_turn"
    assert follow_up.content[0].type == "text"
    assert follow_up.content[0].text == "Echo: weather in Paris?"


def test_anthropic_max_tokens_and_stop_sequences(claude):
    cut = claude.messages.create(
        model="claude-sonnet-4-6",
        max_tokens=2,
        messages=[{"role": "user", "content": "a b c"}],
    )
    assert cut.content[0].type == "text"
    assert (cut.content[0].text, cut.stop_reason) == ("Echo: a", "max_tokens")
    stopped = claude.messages.create(
        model="claude-sonnet-4-6",
        max_tokens=100,
        stop_sequences=["##"],
        messages=[{"role": "user", "content": "left ## right"}],
    )
    assert stopped.content[0].type == "text"
    assert stopped.content[0].text == "Echo: left "
    assert (stopped.stop_reason, stopped.stop_sequence) == ("stop_sequence", "##")


def test_anthropic_cached_tokens_are_split_out_of_input_tokens(fake, claude, oai):
    prompt = "one two three four five"
    fake.enqueue(Behavior(cached_tokens=3), Behavior(cached_tokens=3))
    m = claude.messages.create(
        model="claude-sonnet-4-6", max_tokens=100, messages=[{"role": "user", "content": prompt}]
    )
    assert (m.usage.input_tokens, m.usage.cache_read_input_tokens) == (2, 3)
    r = oai.chat.completions.create(model="gpt-4o", messages=[{"role": "user", "content": prompt}])
    assert r.usage is not None
    assert r.usage.prompt_tokens == 5
    assert r.usage.prompt_tokens_details is not None
    assert r.usage.prompt_tokens_details.cached_tokens == 3


# --- failures ------------------------------------------------------------------------------


def test_429_with_retry_after_reaches_both_sdks(fake, oai, claude):
    fake.enqueue(Behavior(status=429, retry_after=2), Behavior(status=429, retry_after=2))
    with pytest.raises(openai.RateLimitError) as oe:
        oai.chat.completions.create(model="gpt-4o", messages=[{"role": "user", "content": "x"}])
    assert oe.value.response.headers["retry-after"] == "2"
    assert oe.value.code == "rate_limit_exceeded"
    assert oe.value.type == "requests"
    with pytest.raises(anthropic.RateLimitError) as ae:
        claude.messages.create(
            model="claude-sonnet-4-6", max_tokens=10, messages=[{"role": "user", "content": "x"}]
        )
    assert ae.value.response.headers["retry-after"] == "2"
    body = ae.value.body
    assert isinstance(body, dict)
    assert body["type"] == "error"
    assert body["error"]["type"] == "rate_limit_error"


def test_500_fails_one_request_then_the_queue_is_empty(fake, oai):
    fake.enqueue(Behavior(status=500))
    with pytest.raises(openai.InternalServerError) as e:
        oai.chat.completions.create(model="gpt-4o", messages=[{"role": "user", "content": "x"}])
    assert e.value.status_code == 500
    assert set(e.value.response.json()["error"]) == {"message", "type", "param", "code"}
    assert e.value.type == "server_error"
    assert fake.pending == 0
    ok = oai.chat.completions.create(model="gpt-4o", messages=[{"role": "user", "content": "x"}])
    assert ok.choices[0].message.content == "Echo: x"


def test_a_queued_behavior_waits_for_its_model(fake, oai):
    fake.enqueue(Behavior(status=503, model="b"))
    a = oai.chat.completions.create(model="a", messages=[{"role": "user", "content": "x"}])
    assert a.choices[0].finish_reason == "stop"
    assert fake.pending == 1
    with pytest.raises(openai.InternalServerError) as e:
        oai.chat.completions.create(model="b", messages=[{"role": "user", "content": "x"}])
    assert e.value.status_code == 503
    assert fake.pending == 0


def test_a_cut_stream_raises_in_both_sdks_after_the_events_sent(fake, oai, claude):
    fake.enqueue(Behavior(cut_after=3), Behavior(cut_after=4))
    received = []
    with pytest.raises(openai.APIConnectionError) as e:
        for chunk in oai.chat.completions.create(
            model="gpt-4o", messages=[{"role": "user", "content": "a b c d e"}], stream=True
        ):
            received.append(chunk)
    assert "incomplete chunked read" in str(e.value.__cause__)
    assert len(received) == 3
    events = []
    # The anthropic SDK lets its transport's error through while a stream is iterated.
    with pytest.raises(Exception, match="incomplete chunked read"):
        for event in claude.messages.create(
            model="claude-sonnet-4-6",
            max_tokens=100,
            messages=[{"role": "user", "content": "a b c d e"}],
            stream=True,
        ):
            events.append(event.type)
    # The SDK drops the ping (the third event sent).
    assert events == ["message_start", "content_block_start", "content_block_delta"]


def test_a_connection_dropped_before_any_response(fake, oai):
    fake.enqueue(Behavior(cut_after=0))
    with pytest.raises(openai.APIConnectionError) as e:
        oai.chat.completions.create(model="gpt-4o", messages=[{"role": "user", "content": "x"}])
    assert "without sending a response" in str(e.value.__cause__)


def test_a_non_streaming_body_cut_halfway(fake):
    fake.enqueue(Behavior(cut_after=1))
    with pytest.raises(httpx.RemoteProtocolError):
        httpx.post(
            fake.base_url + "/v1/chat/completions",
            headers={"authorization": "Bearer k"},
            json={"model": "m", "messages": [{"role": "user", "content": "x"}]},
        )


def test_a_stream_error_event_after_some_chunks(fake, oai, claude):
    fake.enqueue(Behavior(error_after=2), Behavior(error_after=2))
    with pytest.raises(openai.APIError, match="The server had an error"):
        list(
            oai.chat.completions.create(
                model="gpt-4o", messages=[{"role": "user", "content": "x"}], stream=True
            )
        )
    with pytest.raises(anthropic.APIStatusError) as e:
        list(
            claude.messages.create(
                model="claude-sonnet-4-6",
                max_tokens=10,
                messages=[{"role": "user", "content": "x"}],
                stream=True,
            )
        )
    assert isinstance(e.value.body, dict)
    assert e.value.body["error"]["type"] == "overloaded_error"


def test_a_delay_longer_than_the_client_timeout(fake):
    fake.enqueue(Behavior(delay=3))
    client = openai.OpenAI(api_key="k", base_url=fake.base_url + "/v1", max_retries=0, timeout=0.3)
    start = time.monotonic()
    with pytest.raises(openai.APITimeoutError):
        client.chat.completions.create(model="m", messages=[{"role": "user", "content": "x"}])
    assert time.monotonic() - start < 2
    start = time.monotonic()
    ok = client.chat.completions.create(model="m", messages=[{"role": "user", "content": "x"}])
    assert ok.choices[0].message.content == "Echo: x"
    assert time.monotonic() - start < 0.3
    client.close()


def test_chunk_delay_spaces_the_stream_out(fake):
    fake.enqueue(Behavior(chunk_delay=0.05))
    arrivals = []
    with httpx.stream(
        "POST",
        fake.base_url + "/v1/chat/completions",
        headers={"authorization": "Bearer k"},
        json={"model": "m", "stream": True, "messages": [{"role": "user", "content": "a b"}]},
    ) as r:
        for line in r.iter_lines():
            if line.startswith("data:"):
                arrivals.append(time.monotonic())
    assert len(arrivals) == 6  # role, 3 words, finish, [DONE]
    assert arrivals[-1] - arrivals[0] >= 0.2


def test_raw_body_is_sent_as_is(fake):
    fake.enqueue(Behavior(status=502, body=b"<html>bad gateway</html>", content_type="text/html"))
    r = httpx.post(
        fake.base_url + "/v1/chat/completions",
        headers={"authorization": "Bearer k"},
        json={"model": "m", "messages": [{"role": "user", "content": "x"}]},
    )
    assert (r.status_code, r.headers["content-type"], r.content) == (
        502,
        "text/html",
        b"<html>bad gateway</html>",
    )


def test_model_name_conventions(fake, oai):
    def ask(model: str) -> Any:
        return oai.chat.completions.create(model=model, messages=[{"role": "user", "content": "x"}])

    with pytest.raises(openai.RateLimitError) as e:
        ask("fail-429")
    assert e.value.response.headers["retry-after"] == "1"
    with pytest.raises(openai.InternalServerError):
        ask("gpt-4o+flaky-500-1")
    assert ask("gpt-4o+flaky-500-1").model == "gpt-4o+flaky-500-1"
    start = time.monotonic()
    ask("gpt-4o+slow-150")
    assert time.monotonic() - start >= 0.15
    assert ask("gpt-4o+cached-1").usage.prompt_tokens_details.cached_tokens == 1
    with pytest.raises(openai.APIConnectionError):
        ask("gpt-4o+cut-0")
    with pytest.raises(json.JSONDecodeError):
        ask("garbage")


# --- auth and validation -----------------------------------------------------------------


def test_openai_auth_errors_in_openais_shape(fake):
    url = fake.base_url + "/v1/chat/completions"
    body = {"model": "m", "messages": [{"role": "user", "content": "x"}]}
    missing = httpx.post(url, json=body)
    assert missing.status_code == 401
    error = missing.json()["error"]
    assert set(error) == {"message", "type", "param", "code"}
    assert error["type"] == "invalid_request_error"
    assert "didn't provide an API key" in error["message"]
    fake.api_key = "sk-right"
    wrong = openai.OpenAI(api_key="sk-wrong", base_url=fake.base_url + "/v1", max_retries=0)
    with pytest.raises(openai.AuthenticationError) as e:
        wrong.chat.completions.create(model="m", messages=[{"role": "user", "content": "x"}])
    assert e.value.code == "invalid_api_key"
    right = httpx.post(url, json=body, headers={"authorization": "Bearer sk-right"})
    assert right.status_code == 200


def test_anthropic_auth_and_version_errors_in_anthropics_shape(fake):
    url = fake.base_url + "/v1/messages"
    body = {"model": "m", "max_tokens": 5, "messages": [{"role": "user", "content": "x"}]}
    missing = httpx.post(url, json=body, headers={"anthropic-version": "2023-06-01"})
    assert missing.status_code == 401
    assert missing.json() == {
        "type": "error",
        "error": {"type": "authentication_error", "message": "x-api-key header is required"},
        "request_id": missing.headers["request-id"],
    }
    no_version = httpx.post(url, json=body, headers={"x-api-key": "k"})
    assert no_version.status_code == 400
    assert no_version.json()["error"] == {
        "type": "invalid_request_error",
        "message": "anthropic-version: header is required",
    }
    assert httpx.post(url, json=body, headers=ANTHROPIC_HEADERS).status_code == 200


@pytest.mark.parametrize(
    ("body", "message", "param"),
    [
        ({"messages": [{"role": "user", "content": "x"}]}, "you must provide a model", None),
        ({"model": "m"}, "Missing required parameter: 'messages'.", "messages"),
        ({"model": "m", "messages": []}, "empty array", "messages"),
        (
            {"model": "m", "messages": [{"role": "tool", "tool_call_id": "c", "content": "x"}]},
            "must be a response to a preceeding message with 'tool_calls'",
            "messages.[0].role",
        ),
        (
            {"model": "m", "messages": [{"role": "user", "content": "x"}], "tool_choice": "auto"},
            "only allowed when 'tools' are specified",
            "tool_choice",
        ),
    ],
)
def test_openai_validation(fake, body, message, param):
    r = httpx.post(
        fake.base_url + "/v1/chat/completions", json=body, headers={"authorization": "Bearer k"}
    )
    assert r.status_code == 400
    error = r.json()["error"]
    assert message in error["message"]
    assert error["param"] == param
    assert error["type"] == "invalid_request_error"


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({"max_tokens": 5, "messages": [{"role": "user", "content": "x"}]}, "model: Field"),
        ({"model": "m", "messages": [{"role": "user", "content": "x"}]}, "max_tokens: Field"),
        ({"model": "m", "max_tokens": 5}, "messages: Field required"),
        (
            {"model": "m", "max_tokens": 5, "messages": [{"role": "system", "content": "x"}]},
            'Unexpected role "system"',
        ),
        (
            {
                "model": "m",
                "max_tokens": 5,
                "messages": [
                    {"role": "user", "content": "x"},
                    {
                        "role": "assistant",
                        "content": [{"type": "tool_use", "id": "t1", "name": "f", "input": {}}],
                    },
                    {"role": "user", "content": "no result"},
                ],
            },
            "`tool_use` ids were found without `tool_result` blocks immediately after: t1",
        ),
    ],
)
def test_anthropic_validation(fake, body, message):
    r = httpx.post(fake.base_url + "/v1/messages", json=body, headers=ANTHROPIC_HEADERS)
    assert r.status_code == 400
    assert r.json()["type"] == "error"
    assert r.json()["error"]["type"] == "invalid_request_error"
    assert message in r.json()["error"]["message"]


def test_fields_of_the_wrong_shape_are_a_400_not_a_crash(fake):
    openai_body = {"model": "m", "messages": [{"role": "assistant", "tool_calls": ["x"]}]}
    r = httpx.post(
        fake.base_url + "/v1/chat/completions",
        json=openai_body,
        headers={"authorization": "Bearer k"},
    )
    assert (r.status_code, r.json()["error"]["type"]) == (400, "invalid_request_error")
    anthropic_body = {"model": "m", "max_tokens": 5, "messages": [{"role": "user", "content": 5}]}
    r = httpx.post(fake.base_url + "/v1/messages", json=anthropic_body, headers=ANTHROPIC_HEADERS)
    assert (r.status_code, r.json()["error"]["type"]) == (400, "invalid_request_error")


def test_validation_does_not_consume_a_queued_behavior(fake):
    fake.enqueue(Behavior(status=500))
    r = httpx.post(
        fake.base_url + "/v1/chat/completions", json={}, headers={"authorization": "Bearer k"}
    )
    assert r.status_code == 400
    assert fake.pending == 1


# --- capture, concurrency, async, the process -------------------------------------------


def test_capture_records_exactly_what_the_sdk_sent(fake, oai):
    oai.chat.completions.create(
        model="gpt-4o",
        messages=[{"role": "user", "content": "hi"}],
        temperature=0.5,
        extra_headers={"X-Trace": "abc"},
    )
    [request] = fake.requests
    assert (request.method, request.path) == ("POST", "/v1/chat/completions")
    assert request.body == {
        "messages": [{"role": "user", "content": "hi"}],
        "model": "gpt-4o",
        "temperature": 0.5,
    }
    assert json.loads(request.raw) == request.body
    assert request.headers["authorization"] == "Bearer sk-test"
    assert request.headers["x-trace"] == "abc"
    assert request.time <= time.time()
    fake.clear()
    assert fake.requests == []


async def call_app(fake: FakeUpstream, path: str, body: bytes) -> int:
    """One request straight through the ASGI app, no server: the status sent."""
    scope = {
        "type": "http",
        "method": "POST",
        "path": path,
        "query_string": b"",
        "headers": [(b"authorization", b"Bearer k")],
    }
    sent: list[Any] = []

    async def receive() -> Any:
        return {"type": "http.request", "body": body, "more_body": False}

    async def send(message: Any) -> None:
        sent.append(message)

    await fake(scope, receive, send)
    return int(sent[0]["status"])


async def test_capture_can_be_bounded_or_off_for_benchmarks():
    bounded, off = FakeUpstream(capture=2), FakeUpstream(capture=False)
    for n in range(3):
        body = json.dumps({"model": f"m{n}", "messages": [{"role": "user", "content": "x"}]})
        for fake in (bounded, off):
            assert await call_app(fake, "/v1/chat/completions", body.encode()) == 200
    assert [r.body["model"] for r in bounded.requests] == ["m1", "m2"]
    assert off.requests == []


async def test_usable_from_async_tests_under_concurrency(fake):
    fake.enqueue(*[Behavior(status=500)] * 5)
    async with openai.AsyncOpenAI(
        api_key="k", base_url=fake.base_url + "/v1", max_retries=0
    ) as client:

        async def ask(n: int) -> tuple[int, str]:
            try:
                r = await client.chat.completions.create(
                    model="m", messages=[{"role": "user", "content": str(n)}]
                )
            except openai.InternalServerError:
                return n, "failed"
            return n, r.choices[0].message.content or ""

        results = await asyncio.gather(*(ask(n) for n in range(20)))
    assert [answer for _, answer in results].count("failed") == 5
    assert all(answer in ("failed", f"Echo: {n}") for n, answer in results)
    assert len(fake.requests) == 20
    assert fake.pending == 0


async def test_async_context_manager_serves_then_frees_the_port():
    async with FakeUpstream() as fake, httpx.AsyncClient() as client:
        url = fake.base_url + "/v1/models"
        r = await client.get(url, headers={"authorization": "Bearer k"})
        assert r.json()["object"] == "list"
    with pytest.raises(RuntimeError, match="not running"):
        _ = fake.base_url
    async with httpx.AsyncClient() as client:
        with pytest.raises(httpx.ConnectError):
            await client.get(url, headers={"authorization": "Bearer k"})


def test_large_request_bodies_arrive_whole(fake, oai):
    text = "word " * 200_000
    r = oai.chat.completions.create(model="m", messages=[{"role": "user", "content": text}])
    assert r.usage is not None
    assert r.usage.prompt_tokens == 200_000
    assert fake.requests[0].body["messages"][0]["content"] == text


def test_control_endpoints_script_and_read_from_another_process(fake):
    queued = httpx.post(
        fake.base_url + "/_fake/behaviors",
        json=[{"status": 529, "message": "busy"}, {"text": "scripted"}],
    )
    assert queued.json() == {"queued": 2}
    url = fake.base_url + "/v1/messages"
    body = {"model": "m", "max_tokens": 5, "messages": [{"role": "user", "content": "x"}]}
    busy = httpx.post(url, json=body, headers=ANTHROPIC_HEADERS)
    assert busy.status_code == 529
    assert busy.json()["error"] == {"type": "overloaded_error", "message": "busy"}
    assert httpx.post(url, json=body, headers=ANTHROPIC_HEADERS).json()["content"] == [
        {"type": "text", "text": "scripted"}
    ]
    captured = httpx.get(fake.base_url + "/_fake/requests").json()
    assert [r["path"] for r in captured] == ["/v1/messages", "/v1/messages"]
    assert captured[0]["body"] == body


def test_cli_process_starts_and_answers():
    proc = subprocess.Popen(
        [
            *(sys.executable, "-m", "tests.fakes.fake_upstream", "--port", "0"),
            *("--no-capture", "--reply", "pong", "--latency-ms", "1"),
        ],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    try:
        assert proc.stdout is not None
        ready, _, _ = select.select([proc.stdout], [], [], 20)
        assert ready, "no ready line"
        line = proc.stdout.readline().strip()
        assert line.startswith("listening on http://127.0.0.1:")
        base_url = line.removeprefix("listening on ")
        with openai.OpenAI(api_key="k", base_url=base_url + "/v1", max_retries=0) as client:
            r = client.chat.completions.create(
                model="m", messages=[{"role": "user", "content": "ping"}]
            )
        assert r.choices[0].message.content == "pong"
    finally:
        proc.terminate()
        proc.wait(timeout=10)
    assert proc.returncode is not None
