"""The proxy with no config file, end to end (the real server process, the official
SDKs): with no provider key at all the local `echo` model answers every model name out
of the box (the README's first-run flow); with only OPENAI_API_KEY and OPENAI_BASE_URL
every model name passes through to that OpenAI-compatible server, and `echo` stays."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Iterator
from typing import Any

import anthropic
import httpx
import openai
import pytest

from tests.e2e.conftest import ADMIN_KEY, Server, start_server, stop_server
from tests.e2e.proxy_helpers import events
from tests.fakes.fake_upstream import FakeUpstream

OPENAI_KEY = "sk-fake-openai-only"


@pytest.fixture(scope="module")
def keyless_server(
    module_database_url: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Server]:
    """No config file, no provider key (server_env drops the ambient OPENAI_*/ANTHROPIC_*)."""
    srv = start_server(module_database_url, tmp_path_factory.mktemp("keyless") / "serve.log")
    yield srv
    stop_server(srv)


@pytest.fixture(scope="module")
def openai_only_server(
    module_database_url: str, tmp_path_factory: pytest.TempPathFactory, fake: FakeUpstream
) -> Iterator[Server]:
    srv = start_server(
        module_database_url,
        tmp_path_factory.mktemp("openai-only") / "serve.log",
        OPENAI_API_KEY=OPENAI_KEY,
        OPENAI_BASE_URL=fake.base_url + "/v1",
    )
    yield srv
    stop_server(srv)


def sdk(server: Server) -> openai.AsyncOpenAI:
    return openai.AsyncOpenAI(
        base_url=server.base_url + "/v1", api_key=ADMIN_KEY, max_retries=0, timeout=30
    )


@pytest.fixture
async def echo_oa(keyless_server: Server) -> AsyncIterator[openai.AsyncOpenAI]:
    async with sdk(keyless_server) as client:
        yield client


@pytest.fixture
async def fake_oa(
    openai_only_server: Server, fake: FakeUpstream
) -> AsyncIterator[openai.AsyncOpenAI]:
    fake.clear()
    async with sdk(openai_only_server) as client:
        yield client


@pytest.fixture
async def http(keyless_server: Server) -> AsyncIterator[httpx.AsyncClient]:
    """Reads the session log; both servers share one database."""
    headers = {"Authorization": f"Bearer {ADMIN_KEY}"}
    async with httpx.AsyncClient(
        base_url=keyless_server.base_url, headers=headers, timeout=30
    ) as client:
        yield client


def sid() -> str:
    return f"first-{uuid.uuid4().hex[:10]}"


def turns(recorded: list[dict[str, Any]]) -> list[tuple[str, str]]:
    kinds = ("UserMessage", "AssistantMessage")
    return [(e["type"], e["data"]["content"]) for e in recorded if e["type"] in kinds]


# --- no provider key: echo --------------------------------------------------------------


async def test_echo_answers_out_of_the_box(
    echo_oa: openai.AsyncOpenAI, http: httpx.AsyncClient
) -> None:
    raw = await echo_oa.chat.completions.with_raw_response.create(
        model="echo", messages=[{"role": "user", "content": "hello gateway"}]
    )
    answer = raw.parse()
    assert answer.choices[0].message.content == "Echo: hello gateway"
    assert answer.choices[0].finish_reason == "stop"
    assert answer.model == "echo"
    assert answer.usage is not None
    assert (answer.usage.prompt_tokens, answer.usage.completion_tokens) == (2, 3)
    recorded = await events(http, raw.headers["x-session-id"])
    assert turns(recorded) == [
        ("UserMessage", "hello gateway"),
        ("AssistantMessage", "Echo: hello gateway"),
    ]
    answer_event = recorded[-1]
    assert answer_event["data"]["provider"] == "echo"
    assert answer_event["data"].get("cost", 0) == 0
    assert answer_event["metadata"]["cost"] == "0"  # a local model costs nothing
    assert answer_event["metadata"]["deployment"]


@pytest.mark.parametrize("model", ["gpt-4o-mini", "claude-sonnet-4-6", "my-local-model"])
async def test_any_model_name_goes_to_echo_without_a_key(
    echo_oa: openai.AsyncOpenAI, http: httpx.AsyncClient, model: str
) -> None:
    raw = await echo_oa.chat.completions.with_raw_response.create(
        model=model, messages=[{"role": "user", "content": "who answers?"}]
    )
    answer = raw.parse()
    assert answer.choices[0].message.content == "Echo: who answers?"
    assert answer.model == model  # the name the caller used
    recorded = await events(http, raw.headers["x-session-id"])
    assert recorded[-1]["data"]["provider"] == "echo"
    assert recorded[-1]["metadata"]["alias"] == model


async def test_the_readme_first_run_conversation(
    echo_oa: openai.AsyncOpenAI, http: httpx.AsyncClient
) -> None:
    s = sid()
    chat = {"X-Session-Id": s}  # an unknown id opens a new session
    got = []
    for text in ("My name is Ada.", "What is my name?", "And where do I live?"):
        raw = await echo_oa.chat.completions.with_raw_response.create(
            model="echo", messages=[{"role": "user", "content": text}], extra_headers=chat
        )
        assert raw.headers["x-session-id"] == s
        got.append(raw.parse().choices[0].message.content)
    assert got == [
        "Echo: My name is Ada.",
        "Echo: What is my name? [3 messages in context]",
        "Echo: And where do I live? [5 messages in context]",
    ]
    recorded = await events(http, s)
    assert recorded[0]["type"] == "SessionOpened"
    assert turns(recorded) == [
        ("UserMessage", "My name is Ada."),
        ("AssistantMessage", got[0]),
        ("UserMessage", "What is my name?"),
        ("AssistantMessage", got[1]),
        ("UserMessage", "And where do I live?"),
        ("AssistantMessage", got[2]),
    ]
    assert [e["type"] for e in recorded].count("ContextAssembled") == 3
    session = (await http.get(f"/v1/sessions/{s}")).json()
    assert session["turn_count"] == 6


async def test_echo_streams_word_by_word_statefully(
    echo_oa: openai.AsyncOpenAI, http: httpx.AsyncClient
) -> None:
    s = sid()
    chat = {"X-Session-Id": s}
    texts: list[str] = []
    for text in ("stream these words", "and these"):
        stream = await echo_oa.chat.completions.create(
            model="any-model",
            messages=[{"role": "user", "content": text}],
            stream=True,
            stream_options={"include_usage": True},
            extra_headers=chat,
        )
        pieces: list[str] = []
        finish, usage = None, None
        async for chunk in stream:
            if chunk.choices:
                if chunk.choices[0].delta.content:
                    pieces.append(chunk.choices[0].delta.content)
                finish = chunk.choices[0].finish_reason or finish
            if chunk.usage:
                usage = chunk.usage
        assert len(pieces) > 2, "one delta per word"
        assert finish == "stop"
        assert usage is not None and usage.completion_tokens == len("".join(pieces).split())
        texts.append("".join(pieces))
    assert texts == ["Echo: stream these words", "Echo: and these [3 messages in context]"]
    assert turns(await events(http, s)) == [
        ("UserMessage", "stream these words"),
        ("AssistantMessage", texts[0]),
        ("UserMessage", "and these"),
        ("AssistantMessage", texts[1]),
    ]


async def test_the_anthropic_sdk_gets_echo_too(
    keyless_server: Server, http: httpx.AsyncClient
) -> None:
    s = sid()
    async with anthropic.AsyncAnthropic(
        base_url=keyless_server.base_url, api_key=ADMIN_KEY, max_retries=0, timeout=30
    ) as ant:
        first = await ant.messages.create(
            model="claude-sonnet-4-6",
            max_tokens=100,
            messages=[{"role": "user", "content": "hi from anthropic"}],
            extra_headers={"X-Session-Id": s},
        )
        async with ant.messages.stream(
            model="claude-sonnet-4-6",
            max_tokens=100,
            messages=[{"role": "user", "content": "and streamed"}],
            extra_headers={"X-Session-Id": s},
        ) as stream:
            second = await stream.get_final_message()
    assert first.content[0].type == "text"
    assert first.content[0].text == "Echo: hi from anthropic"
    assert first.stop_reason == "end_turn"
    assert second.content[0].type == "text"
    assert second.content[0].text == "Echo: and streamed [3 messages in context]"
    assert second.stop_reason == "end_turn" and second.usage.output_tokens == 7
    assert turns(await events(http, s))[-1] == ("AssistantMessage", second.content[0].text)


async def test_echo_honours_max_tokens(echo_oa: openai.AsyncOpenAI) -> None:
    answer = await echo_oa.chat.completions.create(
        model="echo",
        messages=[{"role": "user", "content": "one two three four five"}],
        max_completion_tokens=3,
    )
    assert answer.choices[0].message.content == "Echo: one two"
    assert answer.choices[0].finish_reason == "length"
    # An answer that fits exactly was not cut.
    whole = await echo_oa.chat.completions.create(
        model="echo",
        messages=[{"role": "user", "content": "one two"}],
        max_completion_tokens=3,
    )
    assert whole.choices[0].message.content == "Echo: one two"
    assert whole.choices[0].finish_reason == "stop"


async def test_echo_keeps_the_text_as_sent_under_max_tokens(keyless_server: Server) -> None:
    """Anthropic's max_tokens is always set: the echo must not reflow the text."""
    async with anthropic.AsyncAnthropic(
        base_url=keyless_server.base_url, api_key=ADMIN_KEY, max_retries=0, timeout=30
    ) as ant:
        message = await ant.messages.create(
            model="echo",
            max_tokens=1000,
            messages=[{"role": "user", "content": "line one\n\nline  two"}],
        )
        cut = await ant.messages.create(
            model="echo",
            max_tokens=3,
            messages=[{"role": "user", "content": "line one\nline two"}],
        )
    assert message.content[0].type == "text"
    assert message.content[0].text == "Echo: line one\n\nline  two"
    assert message.stop_reason == "end_turn"
    assert cut.content[0].type == "text"
    assert cut.content[0].text == "Echo: line one"
    assert cut.stop_reason == "max_tokens" and cut.usage.output_tokens == 3


async def test_models_lists_echo(echo_oa: openai.AsyncOpenAI) -> None:
    models = [m async for m in echo_oa.models.list()]
    assert [m.id for m in models] == ["echo"]
    assert models[0].object == "model"


# --- only OPENAI_API_KEY and OPENAI_BASE_URL ----------------------------------------------


@pytest.mark.parametrize("model", ["gpt-4o-mini", "my-vllm/llama-3-8b", "claude-sonnet-4-6"])
async def test_any_model_name_passes_through_to_the_openai_server(
    fake_oa: openai.AsyncOpenAI, fake: FakeUpstream, http: httpx.AsyncClient, model: str
) -> None:
    raw = await fake_oa.chat.completions.with_raw_response.create(
        model=model, messages=[{"role": "user", "content": "pass me through"}]
    )
    answer = raw.parse()
    assert answer.choices[0].message.content == "Echo: pass me through"
    assert answer.model == model
    [sent] = fake.requests
    assert sent.path == "/v1/chat/completions"
    assert sent.headers["authorization"] == f"Bearer {OPENAI_KEY}"
    assert sent.body["model"] == model  # as is: no provider of that name, no anthropic
    recorded = await events(http, raw.headers["x-session-id"])
    assert recorded[-1]["data"]["provider"] == "openai"


async def test_a_provider_prefix_names_the_provider(
    fake_oa: openai.AsyncOpenAI, fake: FakeUpstream
) -> None:
    answer = await fake_oa.chat.completions.create(
        model="openai/gpt-4o", messages=[{"role": "user", "content": "prefixed"}]
    )
    assert answer.choices[0].message.content == "Echo: prefixed"
    assert fake.requests[-1].body["model"] == "gpt-4o"


async def test_echo_stays_available_with_a_key(
    fake_oa: openai.AsyncOpenAI, fake: FakeUpstream
) -> None:
    answer = await fake_oa.chat.completions.create(
        model="echo", messages=[{"role": "user", "content": "still local"}]
    )
    assert answer.choices[0].message.content == "Echo: still local"
    assert fake.requests == []
    assert "echo" in [m.id async for m in fake_oa.models.list()]


async def test_openai_only_stateful_stream(
    fake_oa: openai.AsyncOpenAI, fake: FakeUpstream, http: httpx.AsyncClient
) -> None:
    s = sid()
    for text in ("first turn", "second turn"):
        stream = await fake_oa.chat.completions.create(
            model="my-own-model",
            messages=[{"role": "user", "content": text}],
            stream=True,
            extra_headers={"X-Session-Id": s},
        )
        got = "".join([c.choices[0].delta.content or "" async for c in stream if c.choices])
        assert got == f"Echo: {text}"
    bodies = [r.body for r in fake.requests]
    assert [b["model"] for b in bodies] == ["my-own-model", "my-own-model"]
    assert [m["content"] for m in bodies[-1]["messages"]] == [
        "first turn",
        "Echo: first turn",
        "second turn",
    ]
    assert turns(await events(http, s))[-1] == ("AssistantMessage", "Echo: second turn")
