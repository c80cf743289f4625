"""JSON mode, usage reports and a few smaller proxy behaviours, end to end: the official
`openai` SDK (and httpx) calling the real `contextgate serve` process, served by the fake
upstream (tests/fakes/fake_upstream.py) as an OpenAI-compatible provider and as an
Anthropic one. What the SDK got, what the fake received and what `GET /v1/usage` reports
are checked each time.

The config file makes the two providers, both pointing at the fake (`claude-*` names go
to the Anthropic one, every other name to the OpenAI one), and turns the exact cache on.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import httpx
import openai
import pytest

from domain.proxy.anthropic_wire import JSON_OBJECT_INSTRUCTION
from tests.e2e.conftest import Server, start_server, stop_server
from tests.e2e.proxy_helpers import events
from tests.fakes.fake_upstream import Behavior, CapturedRequest, FakeUpstream

OPENAI_KEY = "sk-fake-openai-upstream"
ANTHROPIC_KEY = "sk-ant-fake-upstream"
GPT = "gpt-4o-mini"
CLAUDE = "claude-sonnet-4-6"

CONFIG = """
[providers.oai]
kind = "openai"
base_url = "{fake}/v1"
api_key_env = "FAKE_OPENAI_KEY"

[providers.ant]
kind = "anthropic"
base_url = "{fake}"
api_key_env = "FAKE_ANTHROPIC_KEY"

[routing]
default_provider = "oai"

[cache]
exact = true
"""

PERSON_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {"name": {"type": "string"}, "age": {"type": "integer"}},
    "required": ["name", "age"],
    "additionalProperties": False,
}
PERSON_FORMAT: Any = {  # typed loosely: the SDK's TypedDict takes no prebuilt dict
    "type": "json_schema",
    "json_schema": {
        "name": "person",
        "description": "A person and their age",
        "schema": PERSON_SCHEMA,
        "strict": True,
    },
}
WEATHER_TOOLS: list[Any] = [
    {
        "type": "function",
        "function": {
            "name": "get_weather",
            "description": "Weather in a city",
            "parameters": {
                "type": "object",
                "properties": {"city": {"type": "string"}},
                "required": ["city"],
            },
        },
    }
]


@pytest.fixture(scope="module")
def proxy_server(
    module_database_url: str, tmp_path_factory: pytest.TempPathFactory, fake: FakeUpstream
) -> Iterator[Server]:
    folder = tmp_path_factory.mktemp("proxy-json-usage")
    config = folder / "contextgate.toml"
    config.write_text(CONFIG.format(fake=fake.base_url))
    srv = start_server(
        module_database_url,
        folder / "serve.log",
        CONTEXTGATE_CONFIG=str(config),
        FAKE_OPENAI_KEY=OPENAI_KEY,
        FAKE_ANTHROPIC_KEY=ANTHROPIC_KEY,
    )
    yield srv
    stop_server(srv)


def unique(text: str) -> str:
    """A text no earlier call sent (the exact cache is on)."""
    return f"{text} ({uuid.uuid4().hex[:8]})"


def upstream(fake: FakeUpstream, path: str) -> list[CapturedRequest]:
    return [r for r in fake.requests if r.path == path]


def chat_bodies(fake: FakeUpstream) -> list[dict[str, Any]]:
    return [r.body for r in upstream(fake, "/v1/chat/completions")]


def message_bodies(fake: FakeUpstream) -> list[dict[str, Any]]:
    return [r.body for r in upstream(fake, "/v1/messages")]


# --- 1. JSON mode ----------------------------------------------------------------------


async def test_json_modes_reach_an_openai_provider_unchanged(
    oa: openai.AsyncOpenAI, fake: FakeUpstream
) -> None:
    ask = unique("Describe Ada as json")
    answer = await oa.chat.completions.create(
        model=GPT,
        messages=[{"role": "user", "content": ask}],
        response_format={"type": "json_object"},
    )
    # The fake answers JSON mode with {"echo": <last user message>}.
    assert json.loads(answer.choices[0].message.content or "") == {"echo": ask}
    assert answer.choices[0].finish_reason == "stop"
    [sent] = chat_bodies(fake)
    assert sent["response_format"] == {"type": "json_object"}
    assert sent["messages"] == [{"role": "user", "content": ask}]

    ask = unique("Ada, 36")
    answer = await oa.chat.completions.create(
        model=GPT,
        messages=[{"role": "user", "content": ask}],
        response_format=PERSON_FORMAT,
    )
    assert json.loads(answer.choices[0].message.content or "") == {"echo": ask}
    sent = chat_bodies(fake)[-1]
    assert sent["response_format"] == PERSON_FORMAT  # name, description, schema, strict
    assert len(chat_bodies(fake)) == 2 and message_bodies(fake) == []


async def test_json_modes_to_anthropic_become_a_system_instruction(
    oa: openai.AsyncOpenAI, fake: FakeUpstream
) -> None:
    """Anthropic's Messages API has no response_format: the gateway tells the model in
    the system prompt instead of dropping the caller's demand silently."""
    reply = '{"name": "Ada", "age": 36}'
    fake.enqueue(Behavior(text=reply, path="/v1/messages"))
    answer = await oa.chat.completions.create(
        model=CLAUDE,
        messages=[
            {"role": "system", "content": "Be brief."},
            {"role": "user", "content": unique("Describe Ada as json")},
        ],
        response_format={"type": "json_object"},
    )
    assert json.loads(answer.choices[0].message.content or "") == {"name": "Ada", "age": 36}
    [sent] = message_bodies(fake)
    assert chat_bodies(fake) == []
    assert "response_format" not in sent
    assert JSON_OBJECT_INSTRUCTION.startswith("Respond with a single JSON object only")
    assert sent["system"] == "Be brief.\n\n" + JSON_OBJECT_INSTRUCTION

    # json_schema: the instruction carries the schema, as compact JSON text.
    answer = await oa.chat.completions.create(
        model=CLAUDE,
        messages=[{"role": "user", "content": unique("Who is Ada?")}],
        response_format=PERSON_FORMAT,
    )
    sent = message_bodies(fake)[-1]
    assert "response_format" not in sent
    assert sent["system"] == (
        JSON_OBJECT_INSTRUCTION
        + "\nThe object must be valid against this JSON Schema, named 'person' "
        + "(A person and their age):\n"
        + json.dumps(PERSON_SCHEMA)
    )
    assert json.loads(sent["system"].rsplit("\n", 1)[1]) == PERSON_SCHEMA
    # A text response_format is no instruction at all.
    await oa.chat.completions.create(
        model=CLAUDE,
        messages=[{"role": "user", "content": unique("Plain text, please")}],
        response_format={"type": "text"},
    )
    assert "system" not in message_bodies(fake)[-1]


# --- 2. usage --------------------------------------------------------------------------


def _usage_row(report: dict[str, Any], day: str, model: str) -> dict[str, Any]:
    rows = [r for r in report["data"] if r["day"] == day and r["model"] == model]
    assert len(rows) <= 1, rows
    zero = {"calls": 0, "input_tokens": 0, "output_tokens": 0, "cache_hits": 0, "cost": "0"}
    return rows[0] if rows else {"day": day, "model": model, **zero}


async def test_usage_by_day_counts_streamed_calls_with_their_tokens_and_cost(
    oa: openai.AsyncOpenAI, http: httpx.AsyncClient
) -> None:
    model = "gpt-4o"  # in the price table; no other test of this module uses it
    today = datetime.now(UTC).date().isoformat()
    params = {"group_by": "day,model", "start": today, "end": today}
    r = await http.get("/v1/usage", params=params)
    assert r.status_code == 200, r.text
    before = _usage_row(r.json(), today, model)

    sessions, streamed_usage = [], []
    # Streamed with and without include_usage (the gateway asks the provider for usage
    # either way), then one plain call.
    for options in ({"stream_options": {"include_usage": True}}, {}):
        kwargs: dict[str, Any] = {
            "model": model,
            "messages": [{"role": "user", "content": unique("stream a few words")}],
            "stream": True,
            **options,
        }
        raw = await oa.chat.completions.with_raw_response.create(**kwargs)
        sessions.append(raw.headers["x-session-id"])
        chunks = [c async for c in raw.parse()]
        streamed_usage.append([c.usage for c in chunks if c.usage])
    raw_plain = await oa.chat.completions.with_raw_response.create(
        model=model, messages=[{"role": "user", "content": unique("and a plain one")}]
    )
    sessions.append(raw_plain.headers["x-session-id"])
    assert len(streamed_usage[0]) == 1 and streamed_usage[1] == []

    answers = []
    for s in sessions:
        recorded = await events(http, s)
        answers.append(next(e for e in recorded if e["type"] == "AssistantMessage"))
    # The usage the client saw is the one recorded.
    usage0 = streamed_usage[0][0]
    assert answers[0]["data"]["usage"]["input_tokens"] == usage0.prompt_tokens
    assert answers[0]["data"]["usage"]["output_tokens"] == usage0.completion_tokens
    for a in answers:
        assert a["data"]["usage"]["input_tokens"] > 0 and a["data"]["usage"]["output_tokens"] > 0
        assert Decimal(a["metadata"]["cost"]) > 0  # gpt-4o has a price
    r = await http.get("/v1/usage", params=params)
    assert r.status_code == 200, r.text
    report = r.json()
    assert report["group_by"] == ["day", "model"]
    assert report["start"] == report["end"] == today
    after = _usage_row(report, today, model)
    assert after["calls"] - before["calls"] == 3
    assert after["input_tokens"] - before["input_tokens"] == sum(
        a["data"]["usage"]["input_tokens"] for a in answers
    )
    assert after["output_tokens"] - before["output_tokens"] == sum(
        a["data"]["usage"]["output_tokens"] for a in answers
    )
    assert after["cache_hits"] == before["cache_hits"]
    assert Decimal(after["cost"]) - Decimal(before["cost"]) == sum(
        (Decimal(a["metadata"]["cost"]) for a in answers), start=Decimal(0)
    )
    # Grouped by day alone: one row for today, holding every model's calls.
    r = await http.get("/v1/usage", params={"group_by": "day", "start": today, "end": today})
    [day_row] = r.json()["data"]
    assert set(day_row) == {
        "day",
        "calls",
        "input_tokens",
        "output_tokens",
        "cached_tokens",
        "cache_hits",
        "cost",
    }
    assert day_row["day"] == today and day_row["calls"] == r.json()["totals"]["calls"]
    assert day_row["calls"] >= after["calls"]


# --- 3. smaller ones -------------------------------------------------------------------


async def test_metadata_session_id_makes_a_call_stateful(
    oa: openai.AsyncOpenAI, fake: FakeUpstream, http: httpx.AsyncClient
) -> None:
    s = f"meta-{uuid.uuid4().hex[:10]}"
    first = await oa.chat.completions.with_raw_response.create(
        model=GPT,
        messages=[{"role": "user", "content": "My name is Ada."}],
        metadata={"session_id": s},
    )
    assert first.headers["x-session-id"] == s
    second = await oa.chat.completions.with_raw_response.create(
        model=GPT,
        messages=[{"role": "user", "content": "What is my name?"}],
        metadata={"session_id": s},
    )
    assert second.headers["x-session-id"] == s
    assert second.parse().choices[0].message.content == "Echo: What is my name?"
    bodies = chat_bodies(fake)
    assert [m["content"] for m in bodies[0]["messages"]] == ["My name is Ada."]
    assert bodies[1]["messages"] == [
        {"role": "user", "content": "My name is Ada."},
        {"role": "assistant", "content": "Echo: My name is Ada."},
        {"role": "user", "content": "What is my name?"},
    ]
    assert all("metadata" not in b for b in bodies)  # the caller's metadata stays here
    recorded = await events(http, s)
    assert [(e["type"], e["data"].get("content")) for e in recorded if "Message" in e["type"]] == [
        ("UserMessage", "My name is Ada."),
        ("AssistantMessage", "Echo: My name is Ada."),
        ("UserMessage", "What is my name?"),
        ("AssistantMessage", "Echo: What is my name?"),
    ]


async def test_a_plain_tool_call_comes_back_in_openai_shape(
    oa: openai.AsyncOpenAI, fake: FakeUpstream
) -> None:
    answer = await oa.chat.completions.create(
        model=GPT,
        messages=[{"role": "user", "content": unique("What is the weather in Paris?")}],
        tools=WEATHER_TOOLS,
    )
    choice = answer.choices[0]
    assert choice.finish_reason == "tool_calls"
    assert choice.message.role == "assistant"
    assert not choice.message.content
    [call] = choice.message.tool_calls or []
    assert call.type == "function"
    assert call.id and call.id.startswith("call_")
    assert call.function.name == "get_weather"
    assert json.loads(call.function.arguments) == {"city": "Paris"}
    [sent] = chat_bodies(fake)
    assert sent["tools"] == WEATHER_TOOLS and "stream" not in sent


async def test_a_streamed_cache_hit_does_not_call_the_provider(
    oa: openai.AsyncOpenAI, fake: FakeUpstream
) -> None:
    kwargs: dict[str, Any] = {
        "model": GPT,
        "temperature": 0,
        "messages": [{"role": "user", "content": unique("What is the capital of France?")}],
        "stream": True,
    }
    first = await oa.chat.completions.with_raw_response.create(**kwargs)
    assert first.headers["x-cache"] == "miss"
    text = "".join([c.choices[0].delta.content or "" async for c in first.parse() if c.choices])
    assert text.startswith("Echo: What is the capital of France?")
    hit = None
    for _ in range(50):  # the entry is written just after the stream's last bytes
        calls = len(chat_bodies(fake))
        again = await oa.chat.completions.with_raw_response.create(**kwargs)
        chunks = [c async for c in again.parse()]
        if again.headers["x-cache"] == "hit-exact":
            hit = again
            assert len(chat_bodies(fake)) == calls, "a hit does not call the provider"
            break
        assert again.headers["x-cache"] == "miss"
        await asyncio.sleep(0.05)
    assert hit is not None, "an identical streamed request is answered from the cache"
    assert hit.headers["content-type"].startswith("text/event-stream")
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == text
    finishes = [c.choices[0].finish_reason for c in chunks if c.choices]
    assert finishes[-1] == "stop"
    assert [c.usage for c in chunks if c.usage] == []  # not asked for: none, as live
    # The same request asking for usage hits the same entry (the key leaves the
    # option out) and gets exactly one usage chunk, the last, with no choices.
    kwargs["stream_options"] = {"include_usage": True}
    counted = await oa.chat.completions.with_raw_response.create(**kwargs)
    assert counted.headers["x-cache"] == "hit-exact"
    chunks = [c async for c in counted.parse()]
    usage = [c for c in chunks if c.usage]
    assert len(usage) == 1 and usage[0] is chunks[-1] and not usage[0].choices
    assert usage[0].usage is not None and usage[0].usage.completion_tokens > 0
    await asyncio.sleep(0.2)
    assert len(chat_bodies(fake)) == calls  # nor afterwards


async def test_a_stream_has_a_usage_chunk_only_when_asked(
    oa: openai.AsyncOpenAI, fake: FakeUpstream
) -> None:
    ask = unique("count these words")
    plain = await oa.chat.completions.create(
        model=GPT, messages=[{"role": "user", "content": ask}], stream=True
    )
    chunks = [c async for c in plain]
    assert chunks and all(c.usage is None for c in chunks)
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == "stop"

    ask = unique("count these words too")
    with_usage = await oa.chat.completions.create(
        model=GPT,
        messages=[{"role": "user", "content": ask}],
        stream=True,
        stream_options={"include_usage": True},
    )
    chunks = [c async for c in with_usage]
    usage_chunks = [c for c in chunks if c.usage is not None]
    assert len(usage_chunks) == 1
    [last] = usage_chunks
    assert last is chunks[-1] and last.choices == []  # the last chunk, no choices
    assert last.usage is not None
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == f"Echo: {ask}"
    # The fake counts whitespace words: the message in, the answer out.
    assert last.usage.prompt_tokens == len(ask.split())
    assert last.usage.completion_tokens == len(text.split())
    assert last.usage.total_tokens == last.usage.prompt_tokens + last.usage.completion_tokens
    # The gateway asks the provider for usage either way (it records every call's).
    assert [b["stream_options"] for b in chat_bodies(fake)] == [{"include_usage": True}] * 2
