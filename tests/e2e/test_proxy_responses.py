"""The Responses and Conversations APIs with the official `openai` SDK against the real
server process and the fake upstream: stored responses and their chains on the event
log, retrieval, input items, streaming, conversations and their items, `store: false`,
branches (forks), function tools, idempotent retries, concurrency and errors."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterator
from datetime import datetime
from typing import Any

import httpx
import openai
import pytest

from tests.e2e.conftest import Server, start_server, stop_server
from tests.e2e.proxy_helpers import events
from tests.fakes.fake_upstream import FakeUpstream

CONFIG = """
[providers.fake]
kind = "openai"
base_url = "{fake}/v1"
api_key_env = "FAKE_KEY"

[routing]
default_provider = "fake"
backoff_base_s = 0.05
backoff_cap_s = 0.2
"""

MODEL = "gpt-4o-mini"
TOOLS: list[Any] = [
    {
        "type": "function",
        "name": "get_weather",
        "description": "Weather in a city",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}},
    }
]


@pytest.fixture(scope="module")
def proxy_server(
    module_database_url: str, tmp_path_factory: pytest.TempPathFactory, fake: FakeUpstream
) -> Iterator[Server]:
    folder = tmp_path_factory.mktemp("responses")
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


def sent_messages(fake: FakeUpstream) -> list[tuple[str, str]]:
    """(role, content) of the messages of the last call the provider received."""
    bodies = [r.body for r in fake.requests if r.path == "/v1/chat/completions"]
    return [(m["role"], m.get("content") or "") for m in bodies[-1]["messages"]]


def calls(fake: FakeUpstream) -> int:
    return sum(1 for r in fake.requests if r.path == "/v1/chat/completions")


def out_id(response: Any) -> str:
    """The id of a response's first output item."""
    return str(response.output[0].id)


def texts(items: list[Any]) -> list[tuple[str, str]]:
    """(role, text) of message items."""
    return [(i.role, i.content[0].text) for i in items]


async def test_create_retrieve_and_input_items(
    oa: openai.AsyncOpenAI, fake: FakeUpstream, http: httpx.AsyncClient
) -> None:
    raw = await oa.responses.with_raw_response.create(
        model=MODEL, input="Hello there", instructions="Be brief.", metadata={"app": "demo"}
    )
    response = raw.parse()
    assert response.id.startswith("resp_")
    assert response.status == "completed"
    assert response.output_text == "Echo: Hello there"
    assert response.output[0].type == "message" and response.output[0].role == "assistant"
    assert response.usage is not None and response.usage.output_tokens > 0
    assert response.instructions == "Be brief." and response.metadata == {"app": "demo"}
    assert sent_messages(fake) == [("system", "Be brief."), ("user", "Hello there")]

    again = await oa.responses.retrieve(response.id)
    assert again.id == response.id and again.status == "completed"
    assert again.output_text == "Echo: Hello there"
    assert again.output[0].id == response.output[0].id
    assert again.instructions == "Be brief." and again.metadata == {"app": "demo"}
    assert again.created_at == response.created_at
    assert again.usage is not None and again.usage.output_tokens == response.usage.output_tokens

    items = [i async for i in oa.responses.input_items.list(response.id)]
    assert len(items) == 1 and items[0].type == "message"
    assert items[0].role == "user" and items[0].content[0].text == "Hello there"  # type: ignore[union-attr]

    # Recorded in the chain's own session: the input, then the answer with this id.
    recorded = await events(http, raw.headers["x-session-id"])
    kinds = [e["type"] for e in recorded]
    assert kinds == ["SessionOpened", "UserMessage", "ContextAssembled", "AssistantMessage"]
    assert recorded[-1]["metadata"]["response_id"] == response.id
    assert recorded[-1]["metadata"]["via"] == "responses"
    assert recorded[1]["metadata"]["input_of"] == response.id


async def test_a_chain_with_previous_response_id(
    oa: openai.AsyncOpenAI, fake: FakeUpstream
) -> None:
    first = await oa.responses.with_raw_response.create(
        model=MODEL, input="My name is Ada.", instructions="Answer in French."
    )
    r1 = first.parse()
    second = await oa.responses.with_raw_response.create(
        model=MODEL, input="What is my name?", previous_response_id=r1.id
    )
    r2 = second.parse()
    assert r2.output_text == "Echo: What is my name?"
    assert r2.previous_response_id == r1.id
    # The earlier turns come from the log; the instructions were for the first call only.
    assert sent_messages(fake) == [
        ("user", "My name is Ada."),
        ("assistant", "Echo: My name is Ada."),
        ("user", "What is my name?"),
    ]
    assert first.headers["x-session-id"] == second.headers["x-session-id"]
    r3 = await oa.responses.create(
        model=MODEL, input="And again?", previous_response_id=r2.id, instructions="Be terse."
    )
    assert sent_messages(fake)[0] == ("system", "Be terse.")
    assert [m for _, m in sent_messages(fake)[1:]] == [
        "My name is Ada.",
        "Echo: My name is Ada.",
        "What is my name?",
        "Echo: What is my name?",
        "And again?",
    ]
    items = [i async for i in oa.responses.input_items.list(r3.id, order="asc")]
    assert texts(items) == [("user", "And again?")]  # only this response's input


async def test_streaming_events_and_the_final_response(
    oa: openai.AsyncOpenAI, fake: FakeUpstream
) -> None:
    first = await oa.responses.create(model=MODEL, input="Remember the number 7.")
    kinds: list[str] = []
    text = ""
    async with oa.responses.stream(
        model=MODEL, input="stream me a few words please", previous_response_id=first.id
    ) as stream:
        async for event in stream:
            kinds.append(event.type)
            if event.type == "response.output_text.delta":
                text += event.delta
        final = await stream.get_final_response()
    assert kinds[:2] == ["response.created", "response.in_progress"]
    assert kinds[-1] == "response.completed"
    assert "response.output_item.added" in kinds and "response.output_item.done" in kinds
    assert kinds.count("response.output_text.delta") >= 2
    assert text == final.output_text == "Echo: stream me a few words please"
    assert final.status == "completed" and final.usage is not None
    assert sent_messages(fake)[:2] == [
        ("user", "Remember the number 7."),
        ("assistant", "Echo: Remember the number 7."),
    ]
    # Recorded before the stream's last bytes: at once retrievable and chainable.
    stored = await oa.responses.retrieve(final.id)
    assert stored.output_text == final.output_text
    assert out_id(stored) == out_id(final)
    nxt = await oa.responses.create(model=MODEL, input="next", previous_response_id=final.id)
    assert nxt.output_text == "Echo: next"
    assert ("assistant", "Echo: stream me a few words please") in sent_messages(fake)

    # create(stream=True): the raw events, ending with the completed response.
    stream2 = await oa.responses.create(model=MODEL, input="raw events", stream=True)
    events_seen: list[Any] = [raw_event async for raw_event in stream2]
    assert [e.sequence_number for e in events_seen] == list(range(len(events_seen)))
    done = events_seen[-1]
    assert done.type == "response.completed"
    assert done.response.output_text == "Echo: raw events"
    created = events_seen[0]
    assert created.type == "response.created" and created.response.id == done.response.id


async def test_a_response_is_visible_while_it_streams_and_when_it_fails(
    oa: openai.AsyncOpenAI,
) -> None:
    async with oa.responses.stream(
        model=MODEL + "+drip-100", input="one two three four five six"
    ) as stream:
        first = await stream.__anext__()
        assert first.type == "response.created"
        rid = first.response.id
        during = await oa.responses.retrieve(rid)
        assert during.status == "in_progress" and during.output == []
        final = await stream.get_final_response()
    assert final.id == rid and final.status == "completed"
    assert (await oa.responses.retrieve(rid)).status == "completed"

    # A provider failing mid-stream: response.failed, and the stored response says so.
    kinds: list[str] = []
    failed_id = ""
    stream2 = await oa.responses.create(
        model=MODEL + "+stream-error-3", input="this will break", stream=True
    )
    async for event in stream2:
        kinds.append(event.type)
        if event.type == "response.created":
            failed_id = event.response.id
    assert kinds[-1] == "response.failed"
    stored = await oa.responses.retrieve(failed_id)
    assert stored.status == "failed" and stored.error is not None


async def test_x_session_id_names_the_session(
    oa: openai.AsyncOpenAI, fake: FakeUpstream, http: httpx.AsyncClient
) -> None:
    session = f"resp-{uuid.uuid4().hex[:10]}"
    headers = {"X-Session-Id": session}
    raw = await oa.responses.with_raw_response.create(
        model=MODEL, input="I am in Oslo.", extra_headers=headers
    )
    assert raw.headers["x-session-id"] == session
    await oa.responses.create(model=MODEL, input="Where am I?", extra_headers=headers)
    assert sent_messages(fake)[:2] == [
        ("user", "I am in Oslo."),
        ("assistant", "Echo: I am in Oslo."),
    ]
    kinds = [e["type"] for e in await events(http, session)]
    assert kinds.count("UserMessage") == 2 and kinds.count("AssistantMessage") == 2
    # The session reads as a conversation too.
    items = [i async for i in oa.conversations.items.list(session, order="asc")]
    assert texts(items)[0] == ("user", "I am in Oslo.")
    assert items[1].id == raw.parse().output[0].id


async def test_a_conversation_and_its_items(oa: openai.AsyncOpenAI, fake: FakeUpstream) -> None:
    conversation = await oa.conversations.create(metadata={"topic": "demo"})
    assert conversation.id.startswith("conv_")
    assert conversation.metadata == {"topic": "demo"}
    r1 = await oa.responses.create(model=MODEL, input="I like tea.", conversation=conversation.id)
    r2 = await oa.responses.create(
        model=MODEL, input="What do I like?", conversation={"id": conversation.id}
    )
    assert r2.conversation is not None and r2.conversation.id == conversation.id
    assert sent_messages(fake) == [
        ("user", "I like tea."),
        ("assistant", "Echo: I like tea."),
        ("user", "What do I like?"),
    ]
    fetched = await oa.conversations.retrieve(conversation.id)
    assert fetched.id == conversation.id and fetched.metadata == {"topic": "demo"}
    assert fetched.created_at == conversation.created_at

    ascending: list[Any] = [
        i async for i in oa.conversations.items.list(conversation.id, order="asc")
    ]
    assert texts(ascending) == [
        ("user", "I like tea."),
        ("assistant", "Echo: I like tea."),
        ("user", "What do I like?"),
        ("assistant", "Echo: What do I like?"),
    ]
    # The answers' items keep the ids the responses showed.
    assert ascending[1].id == r1.output[0].id and ascending[3].id == r2.output[0].id
    newest_first = [i async for i in oa.conversations.items.list(conversation.id)]
    assert [i.id for i in newest_first] == [i.id for i in reversed(ascending)]
    # Pages of one, following `after` cursors through user and answer items.
    paged = [i async for i in oa.conversations.items.list(conversation.id, limit=1, order="asc")]
    assert [i.id for i in paged] == [i.id for i in ascending]
    page = await oa.conversations.items.list(conversation.id, limit=2, after=ascending[3].id)
    assert [i.id for i in page.data] == [ascending[2].id, ascending[1].id]
    assert page.has_more is True

    item = await oa.conversations.items.retrieve(ascending[3].id, conversation_id=conversation.id)
    assert item.id == ascending[3].id and item.type == "message"
    assert item.content[0].text == "Echo: What do I like?"  # type: ignore[union-attr]
    # The same ids in the response's input items.
    inputs = [i async for i in oa.responses.input_items.list(r2.id)]
    assert [i.id for i in inputs] == [ascending[2].id]

    added = await oa.conversations.items.create(
        conversation.id,
        items=[{"type": "message", "role": "user", "content": "Also coffee."}],
    )
    assert texts(added.data) == [("user", "Also coffee.")]
    r3 = await oa.responses.create(
        model=MODEL, input="Anything else?", conversation=conversation.id
    )
    assert ("user", "Also coffee.") in sent_messages(fake)
    assert r3.output_text == "Echo: Anything else?"

    deleted = await oa.conversations.delete(conversation.id)
    assert deleted.deleted is True and deleted.id == conversation.id
    with pytest.raises(openai.NotFoundError):
        await oa.conversations.retrieve(conversation.id)
    with pytest.raises(openai.NotFoundError):
        await oa.responses.create(model=MODEL, input="hello?", conversation=conversation.id)
    # Events are never deleted: its responses stay retrievable.
    assert (await oa.responses.retrieve(r2.id)).output_text == "Echo: What do I like?"


async def test_a_conversation_created_with_items(
    oa: openai.AsyncOpenAI, fake: FakeUpstream
) -> None:
    conversation = await oa.conversations.create(
        items=[
            {"type": "message", "role": "user", "content": "My dog is Rex."},
            {"type": "message", "role": "assistant", "content": "Nice name!"},
        ]
    )
    await oa.responses.create(model=MODEL, input="Name my dog.", conversation=conversation.id)
    assert sent_messages(fake) == [
        ("user", "My dog is Rex."),
        ("assistant", "Nice name!"),
        ("user", "Name my dog."),
    ]
    items = [i async for i in oa.conversations.items.list(conversation.id, order="asc")]
    assert [role for role, _ in texts(items)] == ["user", "assistant", "user", "assistant"]


async def test_store_false_is_stateless_and_not_retrievable(
    oa: openai.AsyncOpenAI, fake: FakeUpstream, http: httpx.AsyncClient
) -> None:
    stored = await oa.responses.create(model=MODEL, input="Keep this.")
    raw = await oa.responses.with_raw_response.create(
        model=MODEL, input="Off the record.", store=False, previous_response_id=stored.id
    )
    response = raw.parse()
    assert response.output_text == "Echo: Off the record."
    assert raw.http_response.json()["store"] is False
    # The previous response's turns were sent along.
    assert sent_messages(fake) == [
        ("user", "Keep this."),
        ("assistant", "Echo: Keep this."),
        ("user", "Off the record."),
    ]
    with pytest.raises(openai.NotFoundError):
        await oa.responses.retrieve(response.id)
    with pytest.raises(openai.NotFoundError):
        await oa.responses.create(model=MODEL, input="x", previous_response_id=response.id)
    # Recorded as a stateless call; the stored chain did not move.
    assert raw.headers["x-session-id"].startswith("call_")
    kinds = [e["type"] for e in await events(http, raw.headers["x-session-id"])]
    assert kinds == ["SessionOpened", "UserMessage", "AssistantMessage", "UserMessage",
                     "AssistantMessage"]  # fmt: skip
    nxt = await oa.responses.create(
        model=MODEL, input="Still here?", previous_response_id=stored.id
    )
    assert "Off the record." not in [m for _, m in sent_messages(fake)]
    assert nxt.output_text == "Echo: Still here?"


async def test_an_older_previous_response_forks_the_chain(
    oa: openai.AsyncOpenAI, fake: FakeUpstream, http: httpx.AsyncClient
) -> None:
    a = await oa.responses.with_raw_response.create(model=MODEL, input="Topic A.")
    r1 = a.parse()
    r2 = await oa.responses.create(model=MODEL, input="Branch one.", previous_response_id=r1.id)
    c = await oa.responses.with_raw_response.create(
        model=MODEL, input="Branch two.", previous_response_id=r1.id
    )
    r3 = c.parse()
    assert sent_messages(fake) == [
        ("user", "Topic A."),
        ("assistant", "Echo: Topic A."),
        ("user", "Branch two."),
    ]
    original, fork = a.headers["x-session-id"], c.headers["x-session-id"]
    assert fork != original
    # Both branches go on, each in its own session.
    await oa.responses.create(model=MODEL, input="More one.", previous_response_id=r2.id)
    assert [m for _, m in sent_messages(fake)] == [
        "Topic A.", "Echo: Topic A.", "Branch one.", "Echo: Branch one.", "More one.",
    ]  # fmt: skip
    await oa.responses.create(model=MODEL, input="More two.", previous_response_id=r3.id)
    assert [m for _, m in sent_messages(fake)] == [
        "Topic A.", "Echo: Topic A.", "Branch two.", "Echo: Branch two.", "More two.",
    ]  # fmt: skip
    # The fork was opened with copies of the turns up to r1, keeping their times.
    old = await events(http, original)
    new = await events(http, fork)
    assert new[0]["type"] == "SessionOpened"
    assert new[0]["data"]["metadata"]["forked_from"]["response_id"] == r1.id
    copies = [e for e in new if e["metadata"].get("copied_from")]
    assert [(e["type"], e["data"]["content"]) for e in copies] == [
        ("UserMessage", "Topic A."),
        ("AssistantMessage", "Echo: Topic A."),
    ]
    assert datetime.fromisoformat(copies[0]["data"]["occurred_at"]) == datetime.fromisoformat(
        old[1]["recorded_at"]
    )
    assert {e["stream_version"] for e in copies} == {2, 3}  # one append with SessionOpened
    assert "cost" not in copies[1]["data"] and old[3]["data"]["cost"] > 0  # counted once
    # The older response itself is unchanged.
    assert (await oa.responses.retrieve(r1.id)).output_text == "Echo: Topic A."


async def test_function_tools_then_the_output(oa: openai.AsyncOpenAI, fake: FakeUpstream) -> None:
    r1 = await oa.responses.create(model=MODEL, input="What is the weather in Paris?", tools=TOOLS)
    call = r1.output[0]
    assert call.type == "function_call" and call.name == "get_weather"
    assert call.arguments == '{"city":"Paris"}' and call.status == "completed"
    r2 = await oa.responses.create(
        model=MODEL,
        previous_response_id=r1.id,
        input=[{"type": "function_call_output", "call_id": call.call_id, "output": "18 C, sunny"}],
        tools=TOOLS,
    )
    assert r2.status == "completed" and r2.output[0].type == "message"
    bodies = [r.body for r in fake.requests if r.path == "/v1/chat/completions"]
    sent = bodies[-1]["messages"]
    assert sent[-2]["role"] == "assistant" and sent[-2]["tool_calls"][0]["id"] == call.call_id
    assert sent[-1] == {"role": "tool", "tool_call_id": call.call_id, "content": "18 C, sunny"}
    assert bodies[-1]["tools"][0]["function"]["name"] == "get_weather"
    stored = await oa.responses.retrieve(r1.id)
    assert stored.output[0].type == "function_call" and stored.output[0].id == call.id
    items = [i async for i in oa.responses.input_items.list(r2.id)]
    assert items[0].type == "function_call_output"
    assert items[0].model_dump()["output"] == "18 C, sunny"

    # Streamed: the call's arguments come as deltas, the final response holds the call.
    async with oa.responses.stream(
        model=MODEL, input="And the weather in Rome?", tools=TOOLS
    ) as stream:
        kinds = [event.type async for event in stream]
        final = await stream.get_final_response()
    assert "response.function_call_arguments.delta" in kinds
    assert "response.function_call_arguments.done" in kinds
    assert final.output[0].type == "function_call" and final.output[0].name == "get_weather"
    assert (await oa.responses.retrieve(final.id)).output[0].type == "function_call"


async def test_an_idempotent_retry_returns_the_same_response(
    oa: openai.AsyncOpenAI, fake: FakeUpstream
) -> None:
    first = await oa.responses.create(model=MODEL, input="Start.")
    key = uuid.uuid4().hex
    kwargs: dict[str, Any] = {
        "model": MODEL,
        "input": "Charge my card once.",
        "previous_response_id": first.id,
        "extra_headers": {"Idempotency-Key": key},
    }
    one = await oa.responses.with_raw_response.create(**kwargs)
    two = await oa.responses.with_raw_response.create(**kwargs)
    assert calls(fake) == 2, "the provider answered the retry's request once"
    assert two.headers.get("idempotent-replayed") == "true"
    assert two.parse().id == one.parse().id
    assert two.headers["x-session-id"] == one.headers["x-session-id"]
    streamed: list[Any] = [e async for e in await oa.responses.create(stream=True, **kwargs)]
    assert streamed[-1].type == "response.completed"
    assert streamed[-1].response.id == one.parse().id
    assert streamed[-1].response.output_text == "Echo: Charge my card once."
    assert calls(fake) == 2
    nxt = await oa.responses.create(model=MODEL, input="Next.", previous_response_id=one.parse().id)
    assert [m for _, m in sent_messages(fake)].count("Charge my card once.") == 1
    assert nxt.output_text == "Echo: Next."


async def test_concurrent_calls(oa: openai.AsyncOpenAI, fake: FakeUpstream) -> None:
    conversation = await oa.conversations.create()
    slow = asyncio.create_task(
        oa.responses.create(
            model=MODEL + "+slow-800", input="take your time", conversation=conversation.id
        )
    )
    await asyncio.sleep(0.3)
    with pytest.raises(openai.ConflictError):
        await oa.responses.create(model=MODEL, input="me too", conversation=conversation.id)
    await slow
    items = [i async for i in oa.conversations.items.list(conversation.id, order="asc")]
    assert texts(items) == [("user", "take your time"), ("assistant", "Echo: take your time")]

    # Two continuations of one response at once: one continues, the other branches.
    root = await oa.responses.create(model=MODEL, input="Root.")
    both = await asyncio.gather(
        *(
            oa.responses.with_raw_response.create(
                model=MODEL + "+slow-300", input=text, previous_response_id=root.id
            )
            for text in ("left", "right")
        )
    )
    assert {r.parse().output_text for r in both} == {"Echo: left", "Echo: right"}
    assert len({r.headers["x-session-id"] for r in both}) == 2
    for raw in both:
        kept = await oa.responses.retrieve(raw.parse().id)
        assert kept.output_text == raw.parse().output_text


async def test_errors_in_openai_shape(proxy_server: Server, oa: openai.AsyncOpenAI) -> None:
    stored = await oa.responses.create(model=MODEL, input="hi")
    with pytest.raises(openai.NotFoundError) as unknown:
        await oa.responses.create(model=MODEL, input="x", previous_response_id="resp_nope")
    body = unknown.value.body
    assert isinstance(body, dict) and body["type"] == "not_found_error"
    assert body["param"] == "previous_response_id"
    conversation = await oa.conversations.create()
    with pytest.raises(openai.BadRequestError) as both:
        await oa.responses.create(
            model=MODEL, input="x", previous_response_id=stored.id, conversation=conversation.id
        )
    assert isinstance(both.value.body, dict) and both.value.body["param"] == "conversation"
    with pytest.raises(openai.NotFoundError):
        await oa.responses.create(model=MODEL, input="x", conversation="conv_missing")
    with pytest.raises(openai.NotFoundError):
        await oa.responses.retrieve("resp_" + "a" * 20)
    with pytest.raises(openai.NotFoundError):
        await oa.conversations.items.list("conv_unknown")
    with pytest.raises(openai.BadRequestError):
        await oa.responses.create(model=MODEL, input=[])
    # Another tenant does not see this tenant's responses.
    with pytest.raises(openai.NotFoundError):
        await oa.responses.retrieve(stored.id, extra_headers={"X-Tenant-Id": "other-tenant"})
    async with openai.AsyncOpenAI(
        base_url=proxy_server.base_url + "/v1", api_key="not-a-key", max_retries=0
    ) as wrong:
        with pytest.raises(openai.AuthenticationError):
            await wrong.responses.retrieve(stored.id)
        with pytest.raises(openai.AuthenticationError):
            await wrong.responses.create(model=MODEL, input="x")
