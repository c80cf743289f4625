"""The proxy with the official `openai` SDK against the real server process and the fake
upstream: stateless and stateful calls, streaming, tool calls, fallbacks, retries, the
circuit breaker, idempotent retries, concurrent calls on one session, recording."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import openai
import pytest

from tests.e2e.conftest import ADMIN_KEY, Server, start_server, stop_server
from tests.e2e.proxy_helpers import events
from tests.fakes.fake_upstream import Behavior, FakeUpstream

CONFIG = """
[providers.fake]
kind = "openai"
base_url = "{fake}/v1"
api_key_env = "FAKE_KEY"

[models.resilient]
[[models.resilient.deployments]]
id = "resilient/broken"
provider = "fake"
model = "fail-500"
max_retries = 0
context_limit = 16000
max_output = 2048
[[models.resilient.deployments]]
id = "resilient/good"
provider = "fake"
model = "gpt-4o-mini"

[models.fragile]
[[models.fragile.deployments]]
id = "fragile/only"
provider = "fake"
model = "fragile-model"
max_retries = 0
context_limit = 16000
max_output = 2048

[routing]
default_provider = "fake"
backoff_base_s = 0.05
backoff_cap_s = 0.2

[routing.breaker]
failures = 2
cooldown_s = 1.0

[cache]
exact = true
semantic = true
# The paraphrase below scores 0.956-0.97 with fp32 query vectors, 0.944-0.97 with the
# int8 ones serve uses (by the random suffix): 0.95 made the test fail 1 time in ~13.
similarity_threshold = 0.92
semantic_max_temperature = 0.3
"""


@pytest.fixture(scope="module")
def proxy_server(
    module_database_url: str, tmp_path_factory: pytest.TempPathFactory, fake: FakeUpstream
) -> Iterator[Server]:
    folder = tmp_path_factory.mktemp("proxy")
    config = folder / "contextgate.toml"
    config.write_text(CONFIG.format(fake=fake.base_url))
    srv = start_server(
        module_database_url,
        folder / "serve.log",
        CONTEXTGATE_CONFIG=str(config),
        FAKE_KEY="sk-fake-upstream",
    )
    yield srv
    stop_server(srv)


def sid() -> str:
    return f"chat-{uuid.uuid4().hex[:10]}"


def chat_bodies(fake: FakeUpstream) -> list[dict]:
    return [r.body for r in fake.requests if r.path == "/v1/chat/completions"]


async def test_stateless_call_is_passed_on_and_recorded(
    oa: openai.AsyncOpenAI, fake: FakeUpstream, http: httpx.AsyncClient
) -> None:
    raw = await oa.chat.completions.with_raw_response.create(
        model="gpt-4o-mini",
        messages=[
            {"role": "system", "content": "Be brief."},
            {"role": "user", "content": "Hello there"},
        ],
    )
    answer = raw.parse()
    assert answer.choices[0].message.content == "Echo: Hello there"
    assert answer.choices[0].finish_reason == "stop"
    assert answer.usage is not None and answer.usage.total_tokens > 0
    sent = chat_bodies(fake)[-1]
    assert sent["model"] == "gpt-4o-mini"
    assert sent["messages"] == [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "Hello there"},
    ]
    assert fake.requests[-1].headers["authorization"] == "Bearer sk-fake-upstream"
    call_id = raw.headers["x-session-id"]
    assert call_id.startswith("call_") and raw.headers["x-cache"] == "miss"
    recorded = await events(http, call_id)
    assert [e["type"] for e in recorded] == [
        "SessionOpened",
        "SystemMessage",
        "UserMessage",
        "AssistantMessage",
    ]
    answer_event = recorded[-1]
    assert answer_event["data"]["content"] == "Echo: Hello there"
    assert answer_event["data"]["model"] == "gpt-4o-mini"
    assert answer_event["data"]["usage"]["input_tokens"] > 0
    assert answer_event["data"]["cost"] > 0  # gpt-4o-mini is in the price table
    assert answer_event["metadata"]["deployment"]
    assert answer_event["metadata"]["attempts"][0]["outcome"] == "ok"


async def test_stateful_conversation_sends_one_turn_at_a_time(
    oa: openai.AsyncOpenAI, fake: FakeUpstream, http: httpx.AsyncClient
) -> None:
    s = sid()
    headers = {"X-Session-Id": s}
    for text in ("My name is Ada.", "I live in Lisbon.", "What is my name?"):
        answer = await oa.chat.completions.create(
            model="gpt-4o-mini",
            messages=[{"role": "user", "content": text}],
            extra_headers=headers,
        )
        assert answer.choices[0].message.content == f"Echo: {text}"
    sent = chat_bodies(fake)[-1]["messages"]
    assert [(m["role"], m["content"]) for m in sent] == [
        ("user", "My name is Ada."),
        ("assistant", "Echo: My name is Ada."),
        ("user", "I live in Lisbon."),
        ("assistant", "Echo: I live in Lisbon."),
        ("user", "What is my name?"),
    ]
    recorded = await events(http, s)
    kinds = [e["type"] for e in recorded]
    assert kinds[0] == "SessionOpened"
    assert kinds.count("UserMessage") == 3 and kinds.count("AssistantMessage") == 3
    assert kinds.count("ContextAssembled") == 3
    # Each user turn is committed before its answer; each answer follows its window.
    assert kinds[1:4] == ["UserMessage", "ContextAssembled", "AssistantMessage"]
    # Each window (built while its turn was being stored) points at that stored turn as
    # its current message, and at the turns before it as recent ones.
    turns = [e for e in recorded if e["type"] in ("UserMessage", "AssistantMessage")]
    windows = [e for e in recorded if e["type"] == "ContextAssembled"]
    for n, window in enumerate(windows):
        sources = {sec["kind"]: sec["sources"] for sec in window["data"]["sections"]}
        asked = turns[2 * n]
        assert asked["type"] == "UserMessage" and asked["global_position"] > 0
        assert sources["current"] == [asked["global_position"]]
        assert sources.get("recent", []) == [t["global_position"] for t in turns[: 2 * n]]
    session = (await http.get(f"/v1/sessions/{s}")).json()
    assert session["turn_count"] == 6
    assert float(session["cost_total"]) > 0


async def test_server_timing_says_where_a_call_spent_its_time(
    oa: openai.AsyncOpenAI, fake: FakeUpstream
) -> None:
    await oa.chat.completions.create(  # a fresh server's first call opens its connections
        model="gpt-4o-mini", messages=[{"role": "user", "content": "hi"}]
    )
    fake.enqueue(Behavior(delay=0.3))  # the provider's share is visible as such
    raw = await oa.chat.completions.with_raw_response.create(
        model="gpt-4o-mini",
        messages=[{"role": "user", "content": "how long did this take?"}],
        extra_headers={"X-Session-Id": sid()},
    )
    stages = {
        name: float(dur.removeprefix("dur="))
        for name, _, dur in (
            p.strip().partition(";") for p in raw.headers["server-timing"].split(",")
        )
    }
    assert list(stages) == ["prepare", "window", "provider", "record"]
    assert stages["provider"] >= 300 > stages["prepare"] >= stages["window"] > 0
    assert stages["record"] > 0
    stateless = await oa.chat.completions.with_raw_response.create(
        model="gpt-4o-mini", messages=[{"role": "user", "content": "and this one?"}]
    )  # recorded after the answer: no record stage
    assert [p.split(";")[0].strip() for p in stateless.headers["server-timing"].split(",")] == [
        "prepare",
        "provider",
    ]


async def test_a_client_resending_its_history_appends_only_the_new_turns(
    oa: openai.AsyncOpenAI, http: httpx.AsyncClient
) -> None:
    s = sid()
    history: list[Any] = []
    for text in ("first", "second"):
        history.append({"role": "user", "content": text})
        answer = await oa.chat.completions.create(
            model="gpt-4o-mini", messages=history, extra_headers={"X-Session-Id": s}
        )
        history.append({"role": "assistant", "content": answer.choices[0].message.content})
    users = [e for e in await events(http, s) if e["type"] == "UserMessage"]
    assert [e["data"]["content"] for e in users] == ["first", "second"]


async def test_streaming_with_usage_is_recorded(
    oa: openai.AsyncOpenAI, http: httpx.AsyncClient
) -> None:
    s = sid()
    stream = await oa.chat.completions.create(
        model="gpt-4o-mini",
        messages=[{"role": "user", "content": "stream me a few words please"}],
        stream=True,
        stream_options={"include_usage": True},
        extra_headers={"X-Session-Id": s},
    )
    text, usage, finish = "", None, None
    async for chunk in stream:
        if chunk.choices:
            text += chunk.choices[0].delta.content or ""
            finish = chunk.choices[0].finish_reason or finish
        if chunk.usage:
            usage = chunk.usage
    assert text == "Echo: stream me a few words please"
    assert finish == "stop" and usage is not None and usage.completion_tokens > 0
    # The answer is in the log before the stream's last bytes: the next call sees it.
    answers = [e for e in await events(http, s) if e["type"] == "AssistantMessage"]
    assert answers[-1]["data"]["content"] == text
    assert answers[-1]["data"]["finish_reason"] == "stop"


async def test_streamed_tool_calls_then_the_tool_result(
    oa: openai.AsyncOpenAI, fake: FakeUpstream, http: httpx.AsyncClient
) -> None:
    s = sid()
    tools = [
        {
            "type": "function",
            "function": {
                "name": "get_weather",
                "description": "Weather in a city",
                "parameters": {"type": "object", "properties": {"city": {"type": "string"}}},
            },
        }
    ]
    async with oa.chat.completions.stream(
        model="gpt-4o-mini",
        messages=[{"role": "user", "content": "What is the weather in Paris?"}],
        tools=tools,  # type: ignore[arg-type]
        extra_headers={"X-Session-Id": s},
    ) as stream:
        final = await stream.get_final_completion()
    message = final.choices[0].message
    assert final.choices[0].finish_reason == "tool_calls"
    assert message.tool_calls and message.tool_calls[0].function.name == "get_weather"
    call_id = message.tool_calls[0].id
    # The client runs the tool and sends only its result.
    answer = await oa.chat.completions.create(
        model="gpt-4o-mini",
        messages=[{"role": "tool", "tool_call_id": call_id, "content": "18 C, sunny"}],
        tools=tools,  # type: ignore[arg-type]
        extra_headers={"X-Session-Id": s},
    )
    assert answer.choices[0].finish_reason == "stop"
    sent = chat_bodies(fake)[-1]["messages"]
    assert sent[-2]["role"] == "assistant" and sent[-2]["tool_calls"][0]["id"] == call_id
    assert sent[-1] == {"role": "tool", "tool_call_id": call_id, "content": "18 C, sunny"}
    kinds = [e["type"] for e in await events(http, s)]
    assert "ToolResult" in kinds


async def test_falls_back_when_the_first_deployment_fails(
    oa: openai.AsyncOpenAI, fake: FakeUpstream, http: httpx.AsyncClient
) -> None:
    raw = await oa.chat.completions.with_raw_response.create(
        model="resilient", messages=[{"role": "user", "content": "are you there?"}]
    )
    assert raw.parse().choices[0].message.content == "Echo: are you there?"
    assert [b["model"] for b in chat_bodies(fake)] == ["fail-500", "gpt-4o-mini"]
    recorded = await events(http, raw.headers["x-session-id"])
    attempts = recorded[-1]["metadata"]["attempts"]
    assert [(a["deployment"], a["outcome"]) for a in attempts] == [
        ("resilient/broken", "500"),
        ("resilient/good", "ok"),
    ]
    assert recorded[-1]["metadata"]["deployment"] == "resilient/good"


async def test_a_429_is_retried_after_its_retry_after(
    oa: openai.AsyncOpenAI, fake: FakeUpstream
) -> None:
    fake.enqueue(Behavior(status=429, retry_after=1.0, model="gpt-4o"))
    started = time.monotonic()
    answer = await oa.chat.completions.create(
        model="gpt-4o", messages=[{"role": "user", "content": "patience"}]
    )
    assert answer.choices[0].message.content == "Echo: patience"
    assert time.monotonic() - started >= 0.95  # waited as the provider asked
    times = [r.time for r in fake.requests if r.path == "/v1/chat/completions"]
    assert len(times) == 2 and times[1] - times[0] >= 0.95


async def test_the_circuit_opens_and_closes(oa: openai.AsyncOpenAI, fake: FakeUpstream) -> None:
    fake.enqueue(
        Behavior(status=503, model="fragile-model"), Behavior(status=503, model="fragile-model")
    )
    for _ in range(2):
        with pytest.raises(openai.InternalServerError):
            await oa.chat.completions.create(
                model="fragile", messages=[{"role": "user", "content": "x"}]
            )
    calls = len(chat_bodies(fake))
    # Open: refused without calling the provider.
    with pytest.raises(openai.APIStatusError) as refused:
        await oa.chat.completions.create(
            model="fragile", messages=[{"role": "user", "content": "x"}]
        )
    assert refused.value.status_code == 503 and "circuit" in str(refused.value.message).lower()
    assert len(chat_bodies(fake)) == calls
    await asyncio.sleep(1.1)  # the cool-down: one probe goes through, succeeds, closes it
    answer = await oa.chat.completions.create(
        model="fragile", messages=[{"role": "user", "content": "back?"}]
    )
    assert answer.choices[0].message.content == "Echo: back?"
    answer = await oa.chat.completions.create(
        model="fragile", messages=[{"role": "user", "content": "still?"}]
    )
    assert answer.choices[0].message.content == "Echo: still?"


async def test_an_idempotent_retry_returns_the_stored_answer(
    oa: openai.AsyncOpenAI, fake: FakeUpstream, http: httpx.AsyncClient
) -> None:
    s = sid()
    key = uuid.uuid4().hex
    kwargs = {
        "model": "gpt-4o-mini",
        "messages": [{"role": "user", "content": "charge my card once"}],
        "extra_headers": {"X-Session-Id": s, "Idempotency-Key": key},
    }
    first = await oa.chat.completions.with_raw_response.create(**kwargs)  # type: ignore[call-overload]
    again = await oa.chat.completions.with_raw_response.create(**kwargs)  # type: ignore[call-overload]
    assert len(chat_bodies(fake)) == 1, "the provider was called once"
    assert again.headers.get("idempotent-replayed") == "true"
    assert again.parse().choices[0].message.content == first.parse().choices[0].message.content
    kinds = [e["type"] for e in await events(http, s)]
    assert kinds.count("UserMessage") == 1 and kinds.count("AssistantMessage") == 1


async def test_a_second_concurrent_call_on_a_session_is_refused(
    oa: openai.AsyncOpenAI, http: httpx.AsyncClient
) -> None:
    s = sid()
    slow = asyncio.create_task(
        oa.chat.completions.create(
            model="gpt-4o-mini+slow-1500",
            messages=[{"role": "user", "content": "take your time"}],
            extra_headers={"X-Session-Id": s},
        )
    )
    for _ in range(100):  # until the first call's turn is in the log (its call in flight)
        r = await http.get(f"/v1/sessions/{s}")
        if r.status_code == 200 and r.json()["turn_count"] == 1:
            break
        await asyncio.sleep(0.02)
    with pytest.raises(openai.ConflictError) as refused:
        await oa.chat.completions.create(
            model="gpt-4o-mini",
            messages=[{"role": "user", "content": "me too"}],
            extra_headers={"X-Session-Id": s},
        )
    assert "in flight" in str(refused.value.message) or "waiting" in str(refused.value.message)
    await slow
    kinds = [(e["type"], e["data"].get("content")) for e in await events(http, s)]
    turns = [k for k in kinds if k[0] in ("UserMessage", "AssistantMessage")]
    assert turns == [
        ("UserMessage", "take your time"),
        ("AssistantMessage", "Echo: take your time"),
    ]


async def test_a_client_that_disconnects_mid_stream(
    proxy_server: Server, http: httpx.AsyncClient
) -> None:
    s = sid()
    body = {
        "model": "gpt-4o-mini+drip-100",
        "messages": [{"role": "user", "content": "one two three four five six seven eight"}],
        "stream": True,
    }
    headers = {"Authorization": f"Bearer {ADMIN_KEY}", "X-Session-Id": s}
    async with (
        httpx.AsyncClient(base_url=proxy_server.base_url, timeout=30) as c,
        c.stream("POST", "/v1/chat/completions", json=body, headers=headers) as r,
    ):
        assert r.status_code == 200
        async for _ in r.aiter_bytes():
            break  # the first bytes came: hang up
    answer = None
    for _ in range(60):
        answers = [e for e in await events(http, s) if e["type"] == "AssistantMessage"]
        if answers:
            answer = answers[0]
            break
        await asyncio.sleep(0.1)
    assert answer is not None, "the answer was completed and recorded"
    assert answer["data"]["finish_reason"] == "client_disconnected"
    assert answer["data"]["content"] == "Echo: one two three four five six seven eight"


async def test_errors_come_back_in_openai_shape(
    proxy_server: Server, oa: openai.AsyncOpenAI
) -> None:
    async with openai.AsyncOpenAI(
        base_url=proxy_server.base_url + "/v1", api_key="not-a-key", max_retries=0
    ) as wrong:
        with pytest.raises(openai.AuthenticationError):
            await wrong.chat.completions.create(
                model="gpt-4o-mini", messages=[{"role": "user", "content": "x"}]
            )
    with pytest.raises(openai.BadRequestError) as bad:
        await oa.chat.completions.create(model="gpt-4o-mini", messages=[])
    assert bad.value.body and "messages" in str(bad.value.body)
    with pytest.raises(openai.BadRequestError):
        await oa.chat.completions.create(
            model="gpt-4o-mini",
            messages=[{"role": "user", "content": "x"}],
            extra_headers={"X-Session-Id": "bad id with spaces"},
        )


async def test_models_lists_the_aliases(oa: openai.AsyncOpenAI) -> None:
    names = [m.id async for m in oa.models.list()]
    assert {"resilient", "fragile", "echo"} <= set(names)


async def test_usage_reports_calls_tokens_and_cost(
    oa: openai.AsyncOpenAI, http: httpx.AsyncClient
) -> None:
    before = (await http.get("/v1/usage", params={"group_by": "model"})).json()
    mini = {r["model"]: r for r in before["data"]}.get("gpt-4o-mini", {"calls": 0, "cost": "0"})
    for text in ("count me", "and me"):
        await oa.chat.completions.create(
            model="gpt-4o-mini", messages=[{"role": "user", "content": text}]
        )
    r = await http.get("/v1/usage", params={"group_by": "model,key"})
    assert r.status_code == 200, r.text
    report = r.json()
    rows = [row for row in report["data"] if row["model"] == "gpt-4o-mini"]
    assert sum(row["calls"] for row in rows) == mini["calls"] + 2  # counted at once
    assert all(row["key_id"] for row in rows)
    assert float(sum(float(row["cost"]) for row in rows)) > float(mini["cost"])
    assert report["totals"]["calls"] >= 2 and report["totals"]["input_tokens"] > 0
    bad = await http.get("/v1/usage", params={"group_by": "color"})
    assert bad.status_code == 422 and "group_by" in bad.text
    bad = await http.get("/v1/usage", params={"start": "yesterday"})
    assert bad.status_code == 422 and "start" in bad.text


async def test_exact_and_semantic_cache_hits(
    oa: openai.AsyncOpenAI, fake: FakeUpstream, http: httpx.AsyncClient
) -> None:
    ask = f"What is the capital of France? ({uuid.uuid4().hex[:6]})"
    kwargs: dict[str, Any] = {
        "model": "gpt-4o-mini",
        "temperature": 0,
        "messages": [
            {"role": "system", "content": "Answer briefly."},
            {"role": "user", "content": ask},
        ],
    }
    first = await oa.chat.completions.with_raw_response.create(**kwargs)
    assert first.headers["x-cache"] == "miss"
    hit = None
    for _ in range(50):  # the entry is written just after the answer
        calls = len(chat_bodies(fake))
        again = await oa.chat.completions.with_raw_response.create(**kwargs)
        if again.headers["x-cache"] == "hit-exact":
            hit = again
            assert len(chat_bodies(fake)) == calls, "a hit does not call the provider"
            break
        await asyncio.sleep(0.05)
    assert hit is not None, "an identical request is answered from the cache"
    assert hit.parse().choices[0].message.content == first.parse().choices[0].message.content
    recorded = (await events(http, hit.headers["x-session-id"]))[-1]
    assert recorded["data"]["cached"] is True and recorded["data"].get("cost", 0) == 0
    assert recorded["metadata"]["cache"] == "hit-exact"
    # A cached answer can be streamed.
    stream = await oa.chat.completions.create(**kwargs, stream=True)
    text = "".join([c.choices[0].delta.content or "" async for c in stream if c.choices])
    assert text == first.parse().choices[0].message.content
    # The same question in other words: a semantic hit (temperature 0, no tools).
    paraphrase = dict(kwargs)
    paraphrase["messages"] = [
        {"role": "system", "content": "Answer briefly."},
        {"role": "user", "content": ask.replace("What is", "Tell me")},
    ]
    seen = None
    for _ in range(50):
        r = await oa.chat.completions.with_raw_response.create(**paraphrase)
        seen = r.headers["x-cache"]
        if seen == "hit-semantic":
            break
        await asyncio.sleep(0.05)
    assert seen == "hit-semantic"
    # Not for another system prompt.
    other = dict(paraphrase)
    other["messages"] = [{"role": "system", "content": "Be verbose."}, paraphrase["messages"][1]]
    r = await oa.chat.completions.with_raw_response.create(**other)
    assert r.headers["x-cache"] == "miss"


async def test_a_session_can_carry_its_own_context_strategy_and_budget(
    oa: openai.AsyncOpenAI, fake: FakeUpstream, http: httpx.AsyncClient
) -> None:
    s = sid()
    r = await http.post(
        "/v1/sessions",
        json={"id": s, "metadata": {"context_strategy": "sliding_window", "context_budget": 60}},
    )
    assert r.status_code == 201, r.text
    for i in range(6):
        await oa.chat.completions.create(
            model="gpt-4o-mini",
            messages=[{"role": "user", "content": f"turn number {i} of a longer chat"}],
            extra_headers={"X-Session-Id": s},
        )
    sent = chat_bodies(fake)[-1]["messages"]
    assert sent[-1]["content"] == "turn number 5 of a longer chat"
    assert len(sent) < 11, "a 60-token window holds only the newest turns"
    windows = [e for e in await events(http, s) if e["type"] == "ContextAssembled"]
    assert windows[-1]["data"]["strategy"] == "sliding_window"
    assert windows[-1]["data"]["budget_tokens"] == 60
    # A request's header still wins over the session's default.
    await oa.chat.completions.create(
        model="gpt-4o-mini",
        messages=[{"role": "user", "content": "and now everything"}],
        extra_headers={"X-Session-Id": s, "X-Context-Strategy": "full", "X-Context-Budget": "4000"},
    )
    assert len(chat_bodies(fake)[-1]["messages"]) == 13
