"""The Anthropic dialect and cross-dialect translation, end to end: the official
`anthropic` SDK calling `POST /v1/messages` of the real server process, served by an
OpenAI-compatible provider (the fake upstream's chat completions); and the other way
round, the `openai` SDK calling chat completions served by an Anthropic provider (the
fake upstream's `/v1/messages`). What the SDK got, what the fake received and what the
session log holds are checked each time.

The server has no config file: OPENAI_API_KEY/OPENAI_BASE_URL and ANTHROPIC_API_KEY/
ANTHROPIC_BASE_URL make the two providers, both pointing at the fake; `claude-*` names
go to the Anthropic one, every other name to the OpenAI one.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import Iterator
from typing import Any, cast

import anthropic
import httpx
import openai
import pytest

from tests.e2e.conftest import ADMIN_KEY, MAX_BODY, Server, start_server, stop_server
from tests.e2e.proxy_helpers import events
from tests.fakes.fake_upstream import Behavior, CapturedRequest, FakeToolCall, FakeUpstream

OPENAI_KEY = "sk-fake-openai-upstream"
ANTHROPIC_KEY = "sk-ant-fake-upstream"
GPT = "gpt-4o-mini"
CLAUDE = "claude-sonnet-4-6"

WEATHER_TOOL: dict[str, Any] = {
    "name": "get_weather",
    "description": "Weather in a city",
    "input_schema": {
        "type": "object",
        "properties": {"city": {"type": "string"}},
        "required": ["city"],
    },
}
OPENAI_WEATHER_TOOL: dict[str, Any] = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Weather in a city",
        "parameters": WEATHER_TOOL["input_schema"],
    },
}

# Typed loosely: the SDKs' TypedDicts do not take a dict built ahead of the call.
TOOLS: list[Any] = [WEATHER_TOOL]
OPENAI_TOOLS: list[Any] = [OPENAI_WEATHER_TOOL]


@pytest.fixture(scope="module")
def proxy_server(
    module_database_url: str, tmp_path_factory: pytest.TempPathFactory, fake: FakeUpstream
) -> Iterator[Server]:
    folder = tmp_path_factory.mktemp("proxy-anthropic")
    srv = start_server(
        module_database_url,
        folder / "serve.log",
        OPENAI_API_KEY=OPENAI_KEY,
        OPENAI_BASE_URL=fake.base_url + "/v1",
        ANTHROPIC_API_KEY=ANTHROPIC_KEY,
        ANTHROPIC_BASE_URL=fake.base_url,
    )
    yield srv
    stop_server(srv)


def sid() -> str:
    return f"ant-{uuid.uuid4().hex[:10]}"


def upstream(fake: FakeUpstream, path: str) -> list[CapturedRequest]:
    return [r for r in fake.requests if r.path == path]


def chat_bodies(fake: FakeUpstream) -> list[dict[str, Any]]:
    return [r.body for r in upstream(fake, "/v1/chat/completions")]


def message_bodies(fake: FakeUpstream) -> list[dict[str, Any]]:
    return [r.body for r in upstream(fake, "/v1/messages")]


def turns(recorded: list[dict[str, Any]]) -> list[tuple[str, str]]:
    kinds = ("UserMessage", "AssistantMessage", "ToolResult")
    return [(e["type"], e["data"].get("content", "")) for e in recorded if e["type"] in kinds]


def text_of(message: anthropic.types.Message) -> str:
    return "".join(b.text for b in message.content if b.type == "text")


# --- 1. Anthropic SDK, stateless, an OpenAI-compatible provider --------------------------


async def test_stateless_message_is_translated_to_openai_and_recorded(
    ant: anthropic.AsyncAnthropic, fake: FakeUpstream, http: httpx.AsyncClient
) -> None:
    raw = await ant.messages.with_raw_response.create(
        model=GPT,
        max_tokens=300,
        system="Be brief.",
        messages=[{"role": "user", "content": "Hello there"}],
    )
    message = await raw.parse()
    assert message.type == "message" and message.role == "assistant"
    assert message.model == GPT
    assert [b.type for b in message.content] == ["text"]
    assert text_of(message) == "Echo: Hello there"
    assert message.stop_reason == "end_turn" and message.stop_sequence is None
    # The fake counts words: "Be brief." + "Hello there" in, "Echo: Hello there" out.
    assert message.usage.input_tokens == 4
    assert message.usage.output_tokens == 3
    # The provider got OpenAI's shape, with the provider's key, not the caller's.
    [sent] = upstream(fake, "/v1/chat/completions")
    assert upstream(fake, "/v1/messages") == []
    assert sent.headers["authorization"] == f"Bearer {OPENAI_KEY}"
    assert "x-api-key" not in sent.headers and "anthropic-version" not in sent.headers
    assert sent.body["model"] == GPT
    assert sent.body["messages"] == [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "Hello there"},
    ]
    assert sent.body["max_completion_tokens"] == 300
    assert "system" not in sent.body and "max_tokens" not in sent.body
    # Recorded as a one-call session.
    call_id = raw.headers["x-session-id"]
    assert call_id.startswith("call_")
    recorded = await events(http, call_id)
    assert [e["type"] for e in recorded] == [
        "SessionOpened",
        "SystemMessage",
        "UserMessage",
        "AssistantMessage",
    ]
    assert recorded[1]["data"]["content"] == "Be brief."
    answer = recorded[-1]
    assert answer["data"]["content"] == "Echo: Hello there"
    assert answer["data"]["finish_reason"] == "stop"
    assert answer["data"]["provider"] == "openai"
    assert answer["data"]["usage"] == {"input_tokens": 4, "output_tokens": 3, "cached_tokens": 0}
    assert answer["metadata"]["via"] == "anthropic"
    assert answer["metadata"]["attempts"][0]["outcome"] == "ok"


async def test_a_stateless_history_with_text_blocks_is_passed_on(
    ant: anthropic.AsyncAnthropic, fake: FakeUpstream
) -> None:
    message = await ant.messages.create(
        model=GPT,
        max_tokens=100,
        system=[{"type": "text", "text": "Rule one."}, {"type": "text", "text": "Rule two."}],
        messages=[
            {"role": "user", "content": [{"type": "text", "text": "Hi"}]},
            {"role": "assistant", "content": [{"type": "text", "text": "Hello!"}]},
            {
                "role": "user",
                "content": [{"type": "text", "text": "Line one"}, {"type": "text", "text": "two"}],
            },
        ],
        stop_sequences=["###"],
        extra_body={"temperature": 0.2},  # not in this SDK's signature, still on the wire
    )
    assert text_of(message) == "Echo: Line one\ntwo"
    sent = chat_bodies(fake)[-1]
    assert sent["messages"] == [
        {"role": "system", "content": "Rule one.\n\nRule two."},
        {"role": "user", "content": "Hi"},
        {"role": "assistant", "content": "Hello!"},
        {"role": "user", "content": "Line one\ntwo"},
    ]
    assert sent["stop"] == ["###"] and sent["temperature"] == 0.2


async def test_max_tokens_cuts_the_answer(
    ant: anthropic.AsyncAnthropic, fake: FakeUpstream
) -> None:
    message = await ant.messages.create(
        model=GPT,
        max_tokens=2,
        messages=[{"role": "user", "content": "one two three four"}],
    )
    assert text_of(message) == "Echo: one"
    assert message.stop_reason == "max_tokens"
    assert message.usage.output_tokens == 2


async def test_a_stop_sequence_ends_the_answer(ant: anthropic.AsyncAnthropic) -> None:
    message = await ant.messages.create(
        model=GPT,
        max_tokens=100,
        messages=[{"role": "user", "content": "alpha STOP beta"}],
        stop_sequences=["STOP"],
    )
    assert text_of(message) == "Echo: alpha "
    # OpenAI does not say which sequence matched: Anthropic's caller sees end_turn.
    assert message.stop_reason == "end_turn"


# --- 2. Anthropic SDK, stateful ---------------------------------------------------------


async def test_stateful_conversation_one_message_at_a_time(
    ant: anthropic.AsyncAnthropic, fake: FakeUpstream, http: httpx.AsyncClient
) -> None:
    s = sid()
    texts = ("My name is Ada.", "I live in Lisbon.", "What is my name?")
    for text in texts:
        raw = await ant.messages.with_raw_response.create(
            model=GPT,
            max_tokens=200,
            system="You are a helpful assistant.",
            messages=[{"role": "user", "content": text}],
            extra_headers={"X-Session-Id": s},
        )
        assert raw.headers["x-session-id"] == s
        message = await raw.parse()
        assert text_of(message) == f"Echo: {text}"
        assert message.stop_reason == "end_turn"
    bodies = chat_bodies(fake)
    assert len(bodies) == 3
    # Each call carried the whole history, the system prompt first.
    sent = [(m["role"], m["content"]) for m in bodies[-1]["messages"]]
    assert sent[0][0] == "system" and "You are a helpful assistant." in sent[0][1]
    assert sent[1:] == [
        ("user", "My name is Ada."),
        ("assistant", "Echo: My name is Ada."),
        ("user", "I live in Lisbon."),
        ("assistant", "Echo: I live in Lisbon."),
        ("user", "What is my name?"),
    ]
    assert [m["role"] for m in bodies[0]["messages"]] == ["system", "user"]
    recorded = await events(http, s)
    kinds = [e["type"] for e in recorded]
    assert kinds[0] == "SessionOpened"
    assert kinds.count("ContextAssembled") == 3
    assert turns(recorded) == [
        ("UserMessage", "My name is Ada."),
        ("AssistantMessage", "Echo: My name is Ada."),
        ("UserMessage", "I live in Lisbon."),
        ("AssistantMessage", "Echo: I live in Lisbon."),
        ("UserMessage", "What is my name?"),
        ("AssistantMessage", "Echo: What is my name?"),
    ]
    users = [e for e in recorded if e["type"] == "UserMessage"]
    assert all(e["metadata"]["via"] == "anthropic" for e in users)
    session = (await http.get(f"/v1/sessions/{s}")).json()
    assert session["turn_count"] == 6


async def test_session_named_in_metadata_is_stateful(
    ant: anthropic.AsyncAnthropic, fake: FakeUpstream, http: httpx.AsyncClient
) -> None:
    s = sid()
    for text in ("first", "second"):
        await ant.messages.create(
            model=GPT,
            max_tokens=50,
            messages=[{"role": "user", "content": text}],
            metadata=cast(Any, {"user_id": "user-7", "session_id": s}),
        )
    sent = chat_bodies(fake)[-1]
    assert [m["content"] for m in sent["messages"]] == ["first", "Echo: first", "second"]
    assert sent["user"] == "user-7"
    assert turns(await events(http, s))[-1] == ("AssistantMessage", "Echo: second")


# --- 3. Anthropic SDK, streaming ---------------------------------------------------------


async def test_stream_helper_is_stateful_and_recorded(
    ant: anthropic.AsyncAnthropic, fake: FakeUpstream, http: httpx.AsyncClient
) -> None:
    s = sid()
    async with ant.messages.stream(
        model=GPT,
        max_tokens=200,
        messages=[{"role": "user", "content": "stream me a few words please"}],
        extra_headers={"X-Session-Id": s},
    ) as stream:
        pieces = [text async for text in stream.text_stream]
        final = await stream.get_final_message()
    assert len(pieces) > 1, "the text came in several deltas"
    assert "".join(pieces) == "Echo: stream me a few words please"
    assert text_of(final) == "Echo: stream me a few words please"
    assert final.stop_reason == "end_turn"
    assert final.model == GPT
    assert final.usage.output_tokens == 7
    assert final.usage.input_tokens == 6
    sent = chat_bodies(fake)[-1]
    assert sent["stream"] is True and sent["stream_options"] == {"include_usage": True}
    # The second turn of the same session, streamed too, sees the first.
    async with ant.messages.stream(
        model=GPT,
        max_tokens=200,
        messages=[{"role": "user", "content": "and again"}],
        extra_headers={"X-Session-Id": s},
    ) as stream:
        second = await stream.get_final_message()
    assert text_of(second) == "Echo: and again"
    assert [m["content"] for m in chat_bodies(fake)[-1]["messages"]] == [
        "stream me a few words please",
        "Echo: stream me a few words please",
        "and again",
    ]
    recorded = await events(http, s)
    assert turns(recorded) == [
        ("UserMessage", "stream me a few words please"),
        ("AssistantMessage", "Echo: stream me a few words please"),
        ("UserMessage", "and again"),
        ("AssistantMessage", "Echo: and again"),
    ]
    answer = next(e for e in recorded if e["type"] == "AssistantMessage")
    assert answer["data"]["finish_reason"] == "stop"
    assert answer["data"]["usage"]["output_tokens"] == 7


async def test_create_with_stream_true_yields_the_event_sequence(
    ant: anthropic.AsyncAnthropic, http: httpx.AsyncClient
) -> None:
    s = sid()
    stream = await ant.messages.create(
        model=GPT,
        max_tokens=200,
        messages=[{"role": "user", "content": "raw events please"}],
        stream=True,
        extra_headers={"X-Session-Id": s},
    )
    kinds: list[str] = []
    text = ""
    stop_reason = None
    output_tokens = None
    async for event in stream:
        kinds.append(event.type)
        if event.type == "message_start":
            assert event.message.id and event.message.model == GPT
            assert event.message.content == []
        elif event.type == "content_block_start":
            assert event.index == 0 and event.content_block.type == "text"
        elif event.type == "content_block_delta":
            assert event.delta.type == "text_delta"
            text += event.delta.text
        elif event.type == "message_delta":
            stop_reason = event.delta.stop_reason
            output_tokens = event.usage.output_tokens
    assert kinds[0] == "message_start" and kinds[1] == "content_block_start"
    assert kinds[-3:] == ["content_block_stop", "message_delta", "message_stop"]
    assert set(kinds[2:-3]) == {"content_block_delta"}
    assert text == "Echo: raw events please"
    assert stop_reason == "end_turn" and output_tokens == 4
    answers = [e for e in await events(http, s) if e["type"] == "AssistantMessage"]
    assert [a["data"]["content"] for a in answers] == [text]


# --- 4. Anthropic SDK, tool use ----------------------------------------------------------


async def test_tool_use_then_tool_result_stateful(
    ant: anthropic.AsyncAnthropic, fake: FakeUpstream, http: httpx.AsyncClient
) -> None:
    s = sid()
    headers = {"X-Session-Id": s}
    first = await ant.messages.create(
        model=GPT,
        max_tokens=200,
        tools=TOOLS,
        messages=[{"role": "user", "content": "What is the weather in Paris?"}],
        extra_headers=headers,
    )
    assert first.stop_reason == "tool_use"
    [use] = [b for b in first.content if b.type == "tool_use"]
    assert use.name == "get_weather" and use.input == {"city": "Paris"}
    assert use.id
    offered = chat_bodies(fake)[-1]
    assert offered["tools"] == [
        {
            "type": "function",
            "function": {
                "name": "get_weather",
                "description": "Weather in a city",
                "parameters": WEATHER_TOOL["input_schema"],
            },
        }
    ]
    # The client runs the tool and sends only its result.
    second = await ant.messages.create(
        model=GPT,
        max_tokens=200,
        tools=TOOLS,
        messages=[
            {
                "role": "user",
                "content": [{"type": "tool_result", "tool_use_id": use.id, "content": "18 C"}],
            }
        ],
        extra_headers=headers,
    )
    assert second.stop_reason == "end_turn"
    assert text_of(second) == "Echo: What is the weather in Paris?"
    sent = chat_bodies(fake)[-1]["messages"]
    assert sent[-3] == {"role": "user", "content": "What is the weather in Paris?"}
    assistant = sent[-2]
    assert assistant["role"] == "assistant" and not assistant.get("content")
    assert assistant["tool_calls"] == [
        {
            "id": use.id,
            "type": "function",
            "function": {"name": "get_weather", "arguments": '{"city":"Paris"}'},
        }
    ]
    assert sent[-1] == {"role": "tool", "tool_call_id": use.id, "content": "18 C"}
    recorded = await events(http, s)
    calls = [e for e in recorded if e["type"] == "AssistantMessage" and e["data"].get("tool_calls")]
    assert calls[0]["data"]["tool_calls"] == [
        {"id": use.id, "name": "get_weather", "arguments": '{"city":"Paris"}'}
    ]
    [result] = [e for e in recorded if e["type"] == "ToolResult"]
    assert result["data"]["tool_call_id"] == use.id and result["data"]["content"] == "18 C"


async def test_tool_use_stateless_history_with_a_tool_result(
    ant: anthropic.AsyncAnthropic, fake: FakeUpstream
) -> None:
    question: anthropic.types.MessageParam = {
        "role": "user",
        "content": "What is the weather in Paris?",
    }
    first = await ant.messages.create(
        model=GPT,
        max_tokens=200,
        tools=TOOLS,
        messages=[question],
    )
    [use] = [b for b in first.content if b.type == "tool_use"]
    final = await ant.messages.create(
        model=GPT,
        max_tokens=200,
        tools=TOOLS,
        messages=[
            question,
            {"role": "assistant", "content": first.content},
            {
                "role": "user",
                "content": [
                    {
                        "type": "tool_result",
                        "tool_use_id": use.id,
                        "content": [{"type": "text", "text": "18 C, sunny"}],
                    },
                    {"type": "text", "text": "Thanks, in one word?"},
                ],
            },
        ],
    )
    assert text_of(final) == "Echo: Thanks, in one word?"
    sent = chat_bodies(fake)[-1]["messages"]
    assert [m["role"] for m in sent] == ["user", "assistant", "tool", "user"]
    assert sent[1]["tool_calls"][0]["id"] == use.id
    assert sent[2] == {"role": "tool", "tool_call_id": use.id, "content": "18 C, sunny"}
    assert sent[3] == {"role": "user", "content": "Thanks, in one word?"}


async def test_streamed_tool_use(ant: anthropic.AsyncAnthropic, fake: FakeUpstream) -> None:
    async with ant.messages.stream(
        model=GPT,
        max_tokens=200,
        tools=TOOLS,
        tool_choice={"type": "any"},
        messages=[{"role": "user", "content": "Use the tool for Paris"}],
    ) as stream:
        final = await stream.get_final_message()
    assert final.stop_reason == "tool_use"
    [use] = final.content
    assert use.type == "tool_use"
    assert use.name == "get_weather" and use.input == {"city": "Paris"}
    sent = chat_bodies(fake)[-1]
    assert sent["tool_choice"] == "required" and sent["stream"] is True


# --- 5. Errors in Anthropic's shape ------------------------------------------------------


async def test_a_bad_key_is_an_authentication_error(
    proxy_server: Server, fake: FakeUpstream
) -> None:
    fake.clear()
    async with anthropic.AsyncAnthropic(
        base_url=proxy_server.base_url, api_key="not-a-key", max_retries=0
    ) as wrong:
        # The SDK's Authorization: Bearer, then Anthropic's own x-api-key header.
        variants: list[dict[str, str | anthropic.Omit]] = [
            {},
            {"Authorization": anthropic.omit, "X-Api-Key": "not-a-key"},
        ]
        for headers in variants:
            with pytest.raises(anthropic.AuthenticationError) as refused:
                await wrong.messages.create(
                    model=GPT,
                    max_tokens=10,
                    messages=[{"role": "user", "content": "x"}],
                    extra_headers=headers,
                )
            body = refused.value.body
            assert isinstance(body, dict) and body["type"] == "error"
            assert body["error"]["type"] == "authentication_error"
            sent = refused.value.response.request.headers
            assert ("x-api-key" in sent) == bool(headers)
    assert fake.requests == []


async def test_the_key_in_x_api_key_is_accepted(proxy_server: Server) -> None:
    async with httpx.AsyncClient(base_url=proxy_server.base_url, timeout=30) as c:
        r = await c.post(
            "/v1/messages",
            headers={"x-api-key": ADMIN_KEY, "anthropic-version": "2023-06-01"},
            json={
                "model": GPT,
                "max_tokens": 20,
                "messages": [{"role": "user", "content": "by header"}],
            },
        )
    assert r.status_code == 200, r.text
    assert r.json()["content"] == [{"type": "text", "text": "Echo: by header"}]


async def test_a_request_without_max_tokens_is_a_bad_request(
    ant: anthropic.AsyncAnthropic, fake: FakeUpstream
) -> None:
    with pytest.raises(anthropic.BadRequestError) as refused:
        await ant.post(
            "/v1/messages",
            body={"model": GPT, "messages": [{"role": "user", "content": "x"}]},
            cast_to=httpx.Response,
        )
    body = refused.value.body
    assert isinstance(body, dict) and body["type"] == "error"
    assert body["error"]["type"] == "invalid_request_error"
    assert "max_tokens" in body["error"]["message"]
    assert fake.requests == []


async def test_invalid_requests_are_refused_in_anthropic_shape(
    ant: anthropic.AsyncAnthropic,
) -> None:
    bad: list[dict[str, Any]] = [
        {"model": GPT, "max_tokens": 10, "messages": []},
        {"model": GPT, "max_tokens": 10, "messages": [{"role": "system", "content": "x"}]},
        {
            "model": GPT,
            "max_tokens": 10,
            "messages": [
                {
                    "role": "user",
                    "content": [
                        {
                            "type": "image",
                            "source": {"type": "base64", "media_type": "image/png", "data": ""},
                        }
                    ],
                }
            ],
        },
    ]
    for body in bad:
        with pytest.raises(anthropic.BadRequestError) as refused:
            await ant.post("/v1/messages", body=body, cast_to=httpx.Response)
        error = refused.value.body
        assert isinstance(error, dict) and error["error"]["type"] == "invalid_request_error"
    with pytest.raises(anthropic.BadRequestError):
        await ant.messages.create(
            model=GPT,
            max_tokens=10,
            messages=[{"role": "user", "content": "x"}],
            extra_headers={"X-Session-Id": "bad id with spaces"},
        )


async def test_provider_failures_surface_with_their_status_class(
    ant: anthropic.AsyncAnthropic, fake: FakeUpstream, http: httpx.AsyncClient
) -> None:
    with pytest.raises(anthropic.RateLimitError) as limited:
        await ant.messages.create(
            model=f"{GPT}+fail-429",
            max_tokens=10,
            messages=[{"role": "user", "content": "x"}],
        )
    assert limited.value.status_code == 429
    assert limited.value.response.headers.get("retry-after") == "1"
    body = limited.value.body
    assert isinstance(body, dict) and body["type"] == "error"
    assert body["error"]["type"] == "rate_limit_error"
    assert len(chat_bodies(fake)) == 3, "tried three times (two retries)"
    s = sid()
    with pytest.raises(anthropic.InternalServerError) as failed:
        await ant.messages.create(
            model=f"{GPT}+fail-500",
            max_tokens=10,
            messages=[{"role": "user", "content": "will fail"}],
            extra_headers={"X-Session-Id": s},
        )
    assert failed.value.status_code == 502
    body = failed.value.body
    assert isinstance(body, dict) and body["type"] == "error"
    assert body["error"]["type"] == "api_error"
    # The user turn stays, marked as not answered.
    recorded = await events(http, s)
    assert turns(recorded) == [("UserMessage", "will fail")]
    assert recorded[-1]["type"] == "PolicyApplied"
    assert recorded[-1]["data"]["decision"] == "failed"
    # A provider that refuses the request itself: the caller's fault, a 400, not retried.
    fake.clear()
    with pytest.raises(anthropic.BadRequestError):
        await ant.messages.create(
            model=f"{GPT}+fail-400", max_tokens=10, messages=[{"role": "user", "content": "x"}]
        )
    assert len(chat_bodies(fake)) == 1


async def test_a_second_concurrent_call_on_a_session_is_a_conflict(
    ant: anthropic.AsyncAnthropic, http: httpx.AsyncClient
) -> None:
    s = sid()
    slow = asyncio.create_task(
        ant.messages.create(
            model=f"{GPT}+slow-800",
            max_tokens=50,
            messages=[{"role": "user", "content": "take your time"}],
            extra_headers={"X-Session-Id": s},
        )
    )
    await asyncio.sleep(0.3)
    with pytest.raises(anthropic.ConflictError) as refused:
        await ant.messages.create(
            model=GPT,
            max_tokens=50,
            messages=[{"role": "user", "content": "me too"}],
            extra_headers={"X-Session-Id": s},
        )
    body = refused.value.body
    assert isinstance(body, dict) and body["type"] == "error"
    assert body["error"]["type"] == "invalid_request_error"
    assert text_of(await slow) == "Echo: take your time"
    assert turns(await events(http, s)) == [
        ("UserMessage", "take your time"),
        ("AssistantMessage", "Echo: take your time"),
    ]


async def test_a_body_over_the_limit_is_refused_in_anthropic_shape(
    ant: anthropic.AsyncAnthropic, fake: FakeUpstream
) -> None:
    with pytest.raises(anthropic.ContentTooLargeError) as refused:
        await ant.messages.create(
            model=GPT,
            max_tokens=10,
            messages=[{"role": "user", "content": "x " * MAX_BODY}],
        )
    assert fake.requests == []
    body = refused.value.body
    assert isinstance(body, dict) and body["type"] == "error"
    assert body["error"]["type"] == "invalid_request_error"
    assert str(MAX_BODY) in body["error"]["message"]


async def test_a_stream_that_fails_before_its_first_delta_is_an_http_error(
    ant: anthropic.AsyncAnthropic,
) -> None:
    with pytest.raises(anthropic.InternalServerError):
        async with ant.messages.stream(
            model=f"{GPT}+fail-500",
            max_tokens=10,
            messages=[{"role": "user", "content": "x"}],
        ) as stream:
            await stream.get_final_message()


async def test_a_stream_that_fails_midway_ends_with_an_error_event(
    ant: anthropic.AsyncAnthropic, http: httpx.AsyncClient
) -> None:
    s = sid()
    with pytest.raises(anthropic.APIStatusError) as failed:
        async with ant.messages.stream(
            model=f"{GPT}+stream-error-3",
            max_tokens=50,
            messages=[{"role": "user", "content": "one two three four five"}],
            extra_headers={"X-Session-Id": s},
        ) as stream:
            async for _ in stream.text_stream:
                pass
    assert "provider" in str(failed.value.message).lower()
    answers = [e for e in await events(http, s) if e["type"] == "AssistantMessage"]
    assert answers and answers[-1]["data"]["finish_reason"] == "error"


# --- 6. The openai SDK served by an Anthropic provider -----------------------------------


def _anthropic_headers_ok(request: CapturedRequest) -> None:
    assert request.headers["x-api-key"] == ANTHROPIC_KEY
    assert request.headers["anthropic-version"] == "2023-06-01"
    assert "authorization" not in request.headers


async def test_openai_sdk_served_by_anthropic(
    oa: openai.AsyncOpenAI, fake: FakeUpstream, http: httpx.AsyncClient
) -> None:
    raw = await oa.chat.completions.with_raw_response.create(
        model=CLAUDE,
        messages=[
            {"role": "system", "content": "Be brief."},
            {"role": "user", "content": "Hello Claude"},
        ],
        temperature=1.5,
    )
    answer = raw.parse()
    assert answer.object == "chat.completion"
    assert answer.model == CLAUDE
    assert answer.choices[0].message.role == "assistant"
    assert answer.choices[0].message.content == "Echo: Hello Claude"
    assert answer.choices[0].finish_reason == "stop"
    assert answer.usage is not None
    assert (answer.usage.prompt_tokens, answer.usage.completion_tokens) == (4, 3)
    assert answer.usage.total_tokens == 7
    assert upstream(fake, "/v1/chat/completions") == []
    [sent] = upstream(fake, "/v1/messages")
    _anthropic_headers_ok(sent)
    assert sent.body == {
        "model": CLAUDE,
        "max_tokens": 4096,  # Anthropic requires one; the caller gave none
        "system": "Be brief.",
        "messages": [{"role": "user", "content": [{"type": "text", "text": "Hello Claude"}]}],
        "temperature": 1.0,  # OpenAI allows up to 2, Anthropic 1
    }
    recorded = await events(http, raw.headers["x-session-id"])
    answer_event = recorded[-1]
    assert answer_event["type"] == "AssistantMessage"
    assert answer_event["data"]["provider"] == "anthropic"
    assert answer_event["data"]["content"] == "Echo: Hello Claude"
    assert answer_event["metadata"]["via"] == "openai"


async def test_openai_sdk_stateful_stream_served_by_anthropic(
    oa: openai.AsyncOpenAI, fake: FakeUpstream, http: httpx.AsyncClient
) -> None:
    s = sid()
    for text in ("first words here", "second words"):
        stream = await oa.chat.completions.create(
            model=CLAUDE,
            messages=[
                {"role": "system", "content": "Answer in French."},
                {"role": "user", "content": text},
            ],
            max_tokens=100,
            stream=True,
            stream_options={"include_usage": True},
            extra_headers={"X-Session-Id": s},
        )
        got, finish, usage, deltas = "", None, None, 0
        async for chunk in stream:
            if chunk.choices:
                piece = chunk.choices[0].delta.content
                if piece:
                    deltas += 1
                    got += piece
                finish = chunk.choices[0].finish_reason or finish
            if chunk.usage:
                usage = chunk.usage
        assert got == f"Echo: {text}" and deltas > 1
        assert finish == "stop"
        assert usage is not None and usage.completion_tokens == len(got.split())
    sent = message_bodies(fake)[-1]
    _anthropic_headers_ok(upstream(fake, "/v1/messages")[-1])
    assert sent["stream"] is True and sent["max_tokens"] == 100
    assert "Answer in French." in sent["system"]
    assert [(m["role"], m["content"][0]["text"]) for m in sent["messages"]] == [
        ("user", "first words here"),
        ("assistant", "Echo: first words here"),
        ("user", "second words"),
    ]
    assert turns(await events(http, s)) == [
        ("UserMessage", "first words here"),
        ("AssistantMessage", "Echo: first words here"),
        ("UserMessage", "second words"),
        ("AssistantMessage", "Echo: second words"),
    ]


async def test_openai_sdk_tool_call_served_by_anthropic(
    oa: openai.AsyncOpenAI, fake: FakeUpstream, http: httpx.AsyncClient
) -> None:
    s = sid()
    headers = {"X-Session-Id": s}
    first = await oa.chat.completions.create(
        model=CLAUDE,
        messages=[{"role": "user", "content": "What is the weather in Paris?"}],
        tools=OPENAI_TOOLS,
        extra_headers=headers,
    )
    assert first.choices[0].finish_reason == "tool_calls"
    [call] = first.choices[0].message.tool_calls or []
    assert call.type == "function"
    assert call.function.name == "get_weather"
    assert json.loads(call.function.arguments) == {"city": "Paris"}
    offered = message_bodies(fake)[-1]
    assert offered["tools"] == [WEATHER_TOOL]
    assert offered.get("tool_choice") in (None, {"type": "auto"})
    answer = await oa.chat.completions.create(
        model=CLAUDE,
        messages=[{"role": "tool", "tool_call_id": call.id, "content": "18 C, sunny"}],
        tools=OPENAI_TOOLS,
        extra_headers=headers,
    )
    assert answer.choices[0].finish_reason == "stop"
    assert answer.choices[0].message.content == "Echo: What is the weather in Paris?"
    sent = message_bodies(fake)[-1]["messages"]
    assert sent == [
        {"role": "user", "content": [{"type": "text", "text": "What is the weather in Paris?"}]},
        {
            "role": "assistant",
            "content": [
                {
                    "type": "tool_use",
                    "id": call.id,
                    "name": "get_weather",
                    "input": {"city": "Paris"},
                }
            ],
        },
        {
            "role": "user",
            "content": [{"type": "tool_result", "tool_use_id": call.id, "content": "18 C, sunny"}],
        },
    ]
    kinds = [e["type"] for e in await events(http, s)]
    assert kinds.count("ToolResult") == 1


async def test_openai_history_with_parallel_tool_results_becomes_anthropic_turns(
    oa: openai.AsyncOpenAI, fake: FakeUpstream
) -> None:
    calls: list[Any] = [
        {
            "id": f"call_{city}",
            "type": "function",
            "function": {"name": "get_weather", "arguments": f'{{"city":"{city}"}}'},
        }
        for city in ("Paris", "Rome")
    ]
    history: list[Any] = [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": [{"type": "text", "text": "Paris and Rome?"}]},
        {"role": "assistant", "content": None, "tool_calls": calls},
        {"role": "tool", "tool_call_id": "call_Paris", "content": "18 C"},
        {"role": "tool", "tool_call_id": "call_Rome", "content": "21 C"},
        {"role": "user", "content": "Which is warmer?"},
    ]
    answer = await oa.chat.completions.create(model=CLAUDE, messages=history, tools=OPENAI_TOOLS)
    assert answer.choices[0].message.content == "Echo: Which is warmer?"
    sent = message_bodies(fake)[-1]
    assert sent["system"] == "Be brief."
    assert sent["messages"] == [
        {"role": "user", "content": [{"type": "text", "text": "Paris and Rome?"}]},
        {
            "role": "assistant",
            "content": [
                {
                    "type": "tool_use",
                    "id": "call_Paris",
                    "name": "get_weather",
                    "input": {"city": "Paris"},
                },
                {
                    "type": "tool_use",
                    "id": "call_Rome",
                    "name": "get_weather",
                    "input": {"city": "Rome"},
                },
            ],
        },
        {
            "role": "user",
            "content": [
                {"type": "tool_result", "tool_use_id": "call_Paris", "content": "18 C"},
                {"type": "tool_result", "tool_use_id": "call_Rome", "content": "21 C"},
                {"type": "text", "text": "Which is warmer?"},
            ],
        },
    ]


async def test_text_and_tool_use_from_anthropic_reach_the_openai_sdk(
    oa: openai.AsyncOpenAI, fake: FakeUpstream
) -> None:
    behavior = Behavior(text="Let me check.", tool_call=FakeToolCall(name="get_weather"))
    fake.enqueue(behavior, behavior)
    kwargs: dict[str, Any] = {
        "model": CLAUDE,
        "messages": [{"role": "user", "content": "check"}],
        "tools": OPENAI_TOOLS,
    }
    plain = await oa.chat.completions.create(**kwargs)
    async with oa.chat.completions.stream(**kwargs) as stream:
        streamed = await stream.get_final_completion()
    for answer in (plain, streamed):
        choice = answer.choices[0]
        assert choice.finish_reason == "tool_calls"
        assert choice.message.content == "Let me check."
        [call] = choice.message.tool_calls or []
        assert call.type == "function" and call.function.name == "get_weather"
        assert json.loads(call.function.arguments) == {"city": "Paris"}


async def test_max_tokens_from_an_anthropic_provider_is_length(
    oa: openai.AsyncOpenAI, fake: FakeUpstream
) -> None:
    answer = await oa.chat.completions.create(
        model=CLAUDE,
        messages=[{"role": "user", "content": "one two three four"}],
        max_completion_tokens=2,
    )
    assert answer.choices[0].message.content == "Echo: one"
    assert answer.choices[0].finish_reason == "length"
    assert message_bodies(fake)[-1]["max_tokens"] == 2


async def test_openai_sdk_streamed_tool_call_served_by_anthropic(
    oa: openai.AsyncOpenAI, fake: FakeUpstream
) -> None:
    async with oa.chat.completions.stream(
        model=CLAUDE,
        messages=[{"role": "user", "content": "What is the weather in Paris?"}],
        tools=OPENAI_TOOLS,
    ) as stream:
        final = await stream.get_final_completion()
    assert final.choices[0].finish_reason == "tool_calls"
    [call] = final.choices[0].message.tool_calls or []
    assert call.function.name == "get_weather"
    assert json.loads(call.function.arguments) == {"city": "Paris"}
    assert call.id.startswith("toolu_")
    assert message_bodies(fake)[-1]["stream"] is True


async def test_anthropic_sdk_served_by_anthropic(
    ant: anthropic.AsyncAnthropic, fake: FakeUpstream
) -> None:
    message = await ant.messages.create(
        model=CLAUDE,
        max_tokens=64,
        system="Be brief.",
        messages=[{"role": "user", "content": "same dialect"}],
    )
    assert text_of(message) == "Echo: same dialect"
    assert message.usage.input_tokens == 4 and message.usage.output_tokens == 3
    [sent] = upstream(fake, "/v1/messages")
    _anthropic_headers_ok(sent)
    assert sent.body["max_tokens"] == 64 and sent.body["system"] == "Be brief."


async def test_anthropic_provider_errors_reach_the_anthropic_sdk(
    ant: anthropic.AsyncAnthropic,
) -> None:
    with pytest.raises(anthropic.ServiceUnavailableError) as overloaded:
        await ant.messages.create(
            model=f"{CLAUDE}+fail-529", max_tokens=10, messages=[{"role": "user", "content": "x"}]
        )
    body = overloaded.value.body
    assert isinstance(body, dict) and body["error"]["type"] == "overloaded_error"
    assert "Overloaded" in body["error"]["message"]


async def test_anthropic_provider_errors_reach_the_openai_sdk(
    oa: openai.AsyncOpenAI, fake: FakeUpstream
) -> None:
    with pytest.raises(openai.InternalServerError) as overloaded:
        await oa.chat.completions.create(
            model=f"{CLAUDE}+fail-529", messages=[{"role": "user", "content": "x"}]
        )
    assert overloaded.value.status_code == 503
    assert "Overloaded" in str(overloaded.value.message)
    with pytest.raises(openai.RateLimitError):
        await oa.chat.completions.create(
            model=f"{CLAUDE}+fail-429", messages=[{"role": "user", "content": "x"}]
        )
    assert all(r.path == "/v1/messages" for r in fake.requests)


# --- probes ---------------------------------------------------------------------------


async def test_cached_tokens_both_ways(
    ant: anthropic.AsyncAnthropic, oa: openai.AsyncOpenAI
) -> None:
    # OpenAI upstream reports 2 cached prompt tokens of 4: Anthropic's caller sees them
    # as cache reads, outside input_tokens.
    message = await ant.messages.create(
        model=f"{GPT}+cached-2",
        max_tokens=50,
        messages=[{"role": "user", "content": "one two three four"}],
    )
    assert message.usage.input_tokens == 2
    assert message.usage.cache_read_input_tokens == 2
    async with ant.messages.stream(
        model=f"{GPT}+cached-2",
        max_tokens=50,
        messages=[{"role": "user", "content": "one two three four"}],
    ) as stream:
        final = await stream.get_final_message()
    assert final.usage.input_tokens == 2
    assert final.usage.cache_read_input_tokens == 2
    # Anthropic upstream: input_tokens 2 + cache reads 2 = OpenAI's prompt_tokens 4.
    answer = await oa.chat.completions.create(
        model=f"{CLAUDE}+cached-2",
        messages=[{"role": "user", "content": "one two three four"}],
    )
    assert answer.usage is not None and answer.usage.prompt_tokens == 4
    assert answer.usage.prompt_tokens_details is not None
    assert answer.usage.prompt_tokens_details.cached_tokens == 2
    stream2 = await oa.chat.completions.create(
        model=f"{CLAUDE}+cached-2",
        messages=[{"role": "user", "content": "one two three four"}],
        stream=True,
        stream_options={"include_usage": True},
    )
    usage = None
    async for chunk in stream2:
        usage = chunk.usage or usage
    assert usage is not None and usage.prompt_tokens == 4
    assert usage.prompt_tokens_details is not None
    assert usage.prompt_tokens_details.cached_tokens == 2


async def test_unicode_streams_both_ways(
    ant: anthropic.AsyncAnthropic, oa: openai.AsyncOpenAI
) -> None:
    text = "héllo wörld 😀 日本語 ok"
    async with ant.messages.stream(
        model=GPT, max_tokens=50, messages=[{"role": "user", "content": text}]
    ) as stream:
        final = await stream.get_final_message()
    assert text_of(final) == f"Echo: {text}"
    chunks = await oa.chat.completions.create(
        model=CLAUDE, messages=[{"role": "user", "content": text}], stream=True
    )
    got = "".join([c.choices[0].delta.content or "" async for c in chunks if c.choices])
    assert got == f"Echo: {text}"


async def test_parallel_tool_calls_reach_the_anthropic_sdk(
    ant: anthropic.AsyncAnthropic, fake: FakeUpstream
) -> None:
    calls = (
        FakeToolCall(name="get_weather", arguments={"city": "Paris"}),
        FakeToolCall(name="get_weather", arguments={"city": "Rome"}),
    )
    fake.enqueue(Behavior(tool_call=calls), Behavior(tool_call=calls))
    plain = await ant.messages.create(
        model=GPT,
        max_tokens=200,
        tools=TOOLS,
        messages=[{"role": "user", "content": "Paris and Rome?"}],
    )
    async with ant.messages.stream(
        model=GPT,
        max_tokens=200,
        tools=TOOLS,
        messages=[{"role": "user", "content": "Paris and Rome?"}],
    ) as stream:
        streamed = await stream.get_final_message()
    for message in (plain, streamed):
        assert message.stop_reason == "tool_use"
        uses = [b for b in message.content if b.type == "tool_use"]
        assert [u.input for u in uses] == [{"city": "Paris"}, {"city": "Rome"}]
        assert len({u.id for u in uses}) == 2
    uses = [b for b in plain.content if b.type == "tool_use"]
    answer = await ant.messages.create(
        model=GPT,
        max_tokens=200,
        tools=TOOLS,
        messages=[
            {"role": "user", "content": "Paris and Rome?"},
            {"role": "assistant", "content": plain.content},
            {
                "role": "user",
                "content": [
                    {"type": "tool_result", "tool_use_id": uses[0].id, "content": "18 C"},
                    {
                        "type": "tool_result",
                        "tool_use_id": uses[1].id,
                        "content": "rain",
                        "is_error": True,
                    },
                ],
            },
        ],
    )
    assert answer.stop_reason == "end_turn"
    sent = chat_bodies(fake)[-1]["messages"]
    assert [m["role"] for m in sent] == ["user", "assistant", "tool", "tool"]
    assert [c["id"] for c in sent[1]["tool_calls"]] == [uses[0].id, uses[1].id]
    assert [(m["tool_call_id"], m["content"]) for m in sent[2:]] == [
        (uses[0].id, "18 C"),
        (uses[1].id, "rain"),
    ]


async def test_text_and_tool_use_in_one_answer(
    ant: anthropic.AsyncAnthropic, fake: FakeUpstream
) -> None:
    behavior = Behavior(text="Let me check.", tool_call=FakeToolCall(name="get_weather"))
    fake.enqueue(behavior, behavior)
    plain = await ant.messages.create(
        model=GPT,
        max_tokens=200,
        tools=TOOLS,
        messages=[{"role": "user", "content": "check"}],
    )
    async with ant.messages.stream(
        model=GPT,
        max_tokens=200,
        tools=TOOLS,
        messages=[{"role": "user", "content": "check"}],
    ) as stream:
        streamed = await stream.get_final_message()
    for message in (plain, streamed):
        assert [b.type for b in message.content] == ["text", "tool_use"]
        assert text_of(message) == "Let me check."
        assert message.stop_reason == "tool_use"


async def test_a_stop_sequence_named_by_an_anthropic_provider(
    ant: anthropic.AsyncAnthropic, oa: openai.AsyncOpenAI
) -> None:
    message = await ant.messages.create(
        model=CLAUDE,
        max_tokens=100,
        messages=[{"role": "user", "content": "alpha STOP beta"}],
        stop_sequences=["STOP"],
    )
    assert text_of(message) == "Echo: alpha "
    assert (message.stop_reason, message.stop_sequence) == ("stop_sequence", "STOP")
    async with ant.messages.stream(
        model=CLAUDE,
        max_tokens=100,
        messages=[{"role": "user", "content": "alpha STOP beta"}],
        stop_sequences=["STOP"],
    ) as stream:
        final = await stream.get_final_message()
    assert (final.stop_reason, final.stop_sequence) == ("stop_sequence", "STOP")
    answer = await oa.chat.completions.create(
        model=CLAUDE, messages=[{"role": "user", "content": "alpha STOP beta"}], stop="STOP"
    )
    assert answer.choices[0].message.content == "Echo: alpha "
    assert answer.choices[0].finish_reason == "stop"


async def test_openai_options_reach_an_anthropic_provider(
    oa: openai.AsyncOpenAI, fake: FakeUpstream
) -> None:
    answer = await oa.chat.completions.create(
        model=CLAUDE,
        messages=[
            {"role": "system", "content": "Sys A"},
            {"role": "user", "content": "weather please"},
            {"role": "system", "content": "Sys B"},
        ],
        tools=OPENAI_TOOLS,
        tool_choice="required",
        parallel_tool_calls=False,
        max_completion_tokens=77,
        stop=["END"],
        top_p=0.5,
        user="u-1",
    )
    assert answer.choices[0].finish_reason == "tool_calls"
    sent = message_bodies(fake)[-1]
    assert sent["system"] == "Sys A\n\nSys B"
    assert sent["max_tokens"] == 77
    assert sent["tool_choice"] == {"type": "any", "disable_parallel_tool_use": True}
    assert sent["stop_sequences"] == ["END"]
    assert sent["top_p"] == 0.5
    assert sent["metadata"] == {"user_id": "u-1"}


async def test_anthropic_tool_choice_reaches_an_openai_provider(
    ant: anthropic.AsyncAnthropic, fake: FakeUpstream
) -> None:
    message = await ant.messages.create(
        model=GPT,
        max_tokens=100,
        tools=TOOLS,
        tool_choice={"type": "tool", "name": "get_weather", "disable_parallel_tool_use": True},
        messages=[{"role": "user", "content": "hello"}],
    )
    assert message.stop_reason == "tool_use"
    sent = chat_bodies(fake)[-1]
    assert sent["tool_choice"] == {"type": "function", "function": {"name": "get_weather"}}
    assert sent["parallel_tool_calls"] is False


async def test_an_anthropic_stream_error_reaches_the_openai_sdk(
    oa: openai.AsyncOpenAI, http: httpx.AsyncClient
) -> None:
    s = sid()
    stream = await oa.chat.completions.create(
        model=f"{CLAUDE}+stream-error-5",
        messages=[{"role": "user", "content": "one two three four five six"}],
        stream=True,
        extra_headers={"X-Session-Id": s},
    )
    got = ""
    with pytest.raises(openai.APIError) as failed:
        async for chunk in stream:
            if chunk.choices:
                got += chunk.choices[0].delta.content or ""
    assert "Overloaded" in str(failed.value.message)
    assert got and "Echo: one two three four five six".startswith(got)
    answers = [e for e in await events(http, s) if e["type"] == "AssistantMessage"]
    assert answers[-1]["data"]["finish_reason"] == "error"


async def test_an_anthropic_stream_cut_short(oa: openai.AsyncOpenAI) -> None:
    stream = await oa.chat.completions.create(
        model=f"{CLAUDE}+cut-5",
        messages=[{"role": "user", "content": "one two three four five six"}],
        stream=True,
    )
    with pytest.raises(openai.APIError) as failed:
        async for _ in stream:
            pass
    # It was reached, and answered: the connection broke while streaming.
    assert "broke mid-stream" in str(failed.value.message)
    assert "anthropic" in str(failed.value.message)


async def test_anthropic_stateful_client_resending_history_with_tools(
    ant: anthropic.AsyncAnthropic, fake: FakeUpstream, http: httpx.AsyncClient
) -> None:
    s = sid()
    headers = {"X-Session-Id": s}
    history: list[Any] = [{"role": "user", "content": "What is the weather in Paris?"}]
    first = await ant.messages.create(
        model=GPT,
        max_tokens=200,
        tools=TOOLS,
        messages=history,
        extra_headers=headers,
    )
    [use] = [b for b in first.content if b.type == "tool_use"]
    history.append({"role": "assistant", "content": [b.model_dump() for b in first.content]})
    history.append(
        {
            "role": "user",
            "content": [{"type": "tool_result", "tool_use_id": use.id, "content": "18 C"}],
        }
    )
    second = await ant.messages.create(
        model=GPT,
        max_tokens=200,
        tools=TOOLS,
        messages=history,
        extra_headers=headers,
    )
    history.append({"role": "assistant", "content": text_of(second)})
    history.append({"role": "user", "content": "thanks"})
    third = await ant.messages.create(
        model=GPT, max_tokens=200, messages=history, extra_headers=headers
    )
    assert text_of(third).startswith("Echo: thanks")
    recorded = await events(http, s)
    assert [t for t, _ in turns(recorded)] == [
        "UserMessage",
        "AssistantMessage",
        "ToolResult",
        "AssistantMessage",
        "UserMessage",
        "AssistantMessage",
    ]


async def test_an_idempotent_stream_replay_in_anthropic_dialect(
    ant: anthropic.AsyncAnthropic, fake: FakeUpstream
) -> None:
    s = sid()
    headers = {"X-Session-Id": s, "Idempotency-Key": uuid.uuid4().hex}
    finals = []
    for _ in range(2):
        async with ant.messages.stream(
            model=GPT,
            max_tokens=100,
            messages=[{"role": "user", "content": "only once please"}],
            extra_headers=headers,
        ) as stream:
            finals.append(await stream.get_final_message())
    assert len(chat_bodies(fake)) == 1
    assert text_of(finals[0]) == text_of(finals[1]) == "Echo: only once please"
    assert finals[1].stop_reason == "end_turn"
    assert finals[1].model == finals[0].model == GPT
    assert finals[1].usage.output_tokens == finals[0].usage.output_tokens


async def test_a_replayed_stream_names_the_model_that_was_asked_for(
    ant: anthropic.AsyncAnthropic, fake: FakeUpstream
) -> None:
    headers = {"X-Session-Id": sid(), "Idempotency-Key": uuid.uuid4().hex}
    finals = []
    for _ in range(2):
        async with ant.messages.stream(
            model=f"openai/{GPT}",  # the provider is named: it is sent the model GPT
            max_tokens=100,
            messages=[{"role": "user", "content": "replay me"}],
            extra_headers=headers,
        ) as stream:
            finals.append(await stream.get_final_message())
    assert [b["model"] for b in chat_bodies(fake)] == [GPT]
    assert finals[0].model == f"openai/{GPT}"
    assert finals[1].model == finals[0].model
