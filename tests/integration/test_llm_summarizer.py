"""LLMSummarizer against a real local HTTP server speaking the chat completions format."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime

import httpx
import pytest

from adapters.summarizers import SYSTEM_PROMPT, LLMSummarizer
from domain.summaries import SummarizerError, SummaryItem
from tests.fakes.fake_openai import FakeOpenAI

KEY = "sk-test-secret-123"
AT = datetime(2023, 5, 8, 13, 56, tzinfo=UTC)
TURNS = [
    SummaryItem("user", "I adopted a dog on 7 May.", 3, AT, "Caroline"),
    SummaryItem("assistant", "  What is his   name? ", 4, None, None),
]


def words(text: str) -> int:
    return len(text.split())


@pytest.fixture
async def fake() -> AsyncIterator[FakeOpenAI]:
    async with FakeOpenAI(reply="Caroline adopted a dog on 2023-05-07.") as server:
        yield server


def summarizer(
    fake: FakeOpenAI, *, timeout: float = 5.0, client: httpx.AsyncClient | None = None
) -> LLMSummarizer:
    return LLMSummarizer(
        base_url=fake.base_url + "/",
        count_tokens=words,
        model="gpt-4o-mini",
        api_key=KEY,
        timeout=timeout,
        client=client,
    )


async def test_it_sends_the_model_messages_and_budget_and_parses_the_answer(
    fake: FakeOpenAI,
) -> None:
    async with summarizer(fake) as llm:
        result = await llm.summarize(TURNS, max_tokens=50, level=0)

    assert result.text == "Caroline adopted a dog on 2023-05-07."
    assert result.summarizer == "llm:gpt-4o-mini"
    [request] = fake.requests
    assert (request.method, request.path) == ("POST", "/v1/chat/completions")
    assert request.headers["authorization"] == f"Bearer {KEY}"
    assert request.headers["content-type"] == "application/json"
    body = request.json()
    assert body["model"] == "gpt-4o-mini"
    assert body["max_tokens"] == 50
    assert body["temperature"] == 0
    assert body["stream"] is False
    system, user = body["messages"]
    assert system == {"role": "system", "content": SYSTEM_PROMPT.format(max_tokens=50)}
    assert "every name, date" in system["content"]
    assert "under 50 tokens" in system["content"]
    assert user == {
        "role": "user",
        "content": "[2023-05-08] Caroline: I adopted a dog on 7 May.\n"
        "assistant: What is his   name?",
    }


async def test_level_one_asks_to_merge_the_summaries(fake: FakeOpenAI) -> None:
    summaries = [
        SummaryItem("summary", "Caroline adopted a dog.", 10),
        SummaryItem("summary", "The dog is called Oscar.", 20),
    ]
    async with summarizer(fake) as llm:
        await llm.summarize(summaries, max_tokens=30, level=1)
    content = fake.requests[0].json()["messages"][1]["content"]
    assert content.startswith("The text below is a series of earlier summaries")
    assert "Summary 1 (up to version 10):\nCaroline adopted a dog." in content
    assert content.endswith("Summary 2 (up to version 20):\nThe dog is called Oscar.")


async def test_an_answer_over_budget_is_cut_to_our_token_count(fake: FakeOpenAI) -> None:
    fake.reply = "Caroline adopted Oscar. He is a dog. " + "More words here. " * 20
    fake.finish_reason = "length"
    async with summarizer(fake) as llm:
        result = await llm.summarize(TURNS, max_tokens=8, level=0)
    assert words(result.text) <= 8
    assert result.text.startswith("Caroline adopted Oscar.")


async def test_a_given_client_is_used_and_left_open(fake: FakeOpenAI) -> None:
    async with httpx.AsyncClient() as client:
        llm = summarizer(fake, client=client)
        await llm.summarize(TURNS, max_tokens=20, level=0)
        await llm.aclose()
        assert not client.is_closed
        await llm.summarize(TURNS, max_tokens=20, level=0)
    assert len(fake.requests) == 2


async def test_nothing_to_summarize_sends_nothing(fake: FakeOpenAI) -> None:
    async with summarizer(fake) as llm:
        empty = await llm.summarize([], max_tokens=20, level=0)
        no_room = await llm.summarize(TURNS, max_tokens=0, level=0)
    assert empty.text == no_room.text == ""
    assert fake.requests == []


async def test_a_server_error_raises_a_clear_error_without_the_key(fake: FakeOpenAI) -> None:
    fake.status = 500
    llm = summarizer(fake)
    with pytest.raises(SummarizerError) as info:
        await llm.summarize(TURNS, max_tokens=20, level=0)
    await llm.aclose()
    message = str(info.value)
    assert "HTTP 500" in message
    assert "'gpt-4o-mini'" in message and fake.base_url in message
    assert "the fake was told to fail" in message
    assert KEY not in message and KEY not in repr(llm)


async def test_an_echoed_key_is_redacted(fake: FakeOpenAI) -> None:
    fake.status = 401
    fake.raw_body = f'{{"error": {{"message": "bad key {KEY}"}}}}'.encode()
    async with summarizer(fake) as llm:
        with pytest.raises(SummarizerError, match="HTTP 401") as info:
            await llm.summarize(TURNS, max_tokens=20, level=0)
    assert KEY not in str(info.value) and "[redacted]" in str(info.value)


@pytest.mark.parametrize(
    "body",
    [b"not json", b'{"choices": []}', b'{"choices": [{"message": {"content": null}}]}'],
)
async def test_a_malformed_answer_raises(fake: FakeOpenAI, body: bytes) -> None:
    fake.raw_body = body
    async with summarizer(fake) as llm:
        with pytest.raises(SummarizerError, match="gpt-4o-mini"):
            await llm.summarize(TURNS, max_tokens=20, level=0)


async def test_a_timeout_raises(fake: FakeOpenAI) -> None:
    fake.delay = 1.0
    async with summarizer(fake, timeout=0.1) as llm:
        with pytest.raises(SummarizerError, match=r"no answer within 0\.1s"):
            await llm.summarize(TURNS, max_tokens=20, level=0)


async def test_an_unreachable_server_raises() -> None:
    async with FakeOpenAI() as gone:
        url = gone.base_url
    llm = LLMSummarizer(base_url=url, count_tokens=words, timeout=2)
    with pytest.raises(SummarizerError, match="ConnectError"):
        await llm.summarize(TURNS, max_tokens=20, level=0)
    await llm.aclose()
