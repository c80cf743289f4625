"""Response cache keys: stable for requests the provider cannot tell apart, different for
any change that reaches it; the semantic scope and its eligibility rules."""

from __future__ import annotations

from dataclasses import replace

import pytest

from domain.proxy.cache_keys import (
    MAX_SEMANTIC_PIECES,
    exact_key,
    numbers_in,
    semantic_query,
    semantic_refusal,
    storable,
    word_pieces_estimate,
)
from domain.proxy.chat import ChatRequest, ChatResponse, Message, Tool, ToolCall

SCHEMA = {
    "type": "object",
    "properties": {"city": {"type": "string"}, "days": {"type": "integer"}},
    "required": ["city"],
}
TOOL = Tool("weather", "Today's weather", SCHEMA)
BASE = ChatRequest(
    model="fast",
    system="You are terse.",
    messages=(
        Message("user", "Hi"),
        Message("assistant", "Hello.", tool_calls=(ToolCall("c1", "weather", '{"city":"X"}'),)),
        Message("tool", "sunny", tool_call_id="c1", name="weather"),
        Message("user", "How do I cancel my subscription?"),
    ),
    tools=(TOOL,),
    tool_choice="auto",
    parallel_tool_calls=True,
    max_tokens=100,
    temperature=0.2,
    top_p=0.9,
    stop=("END", "STOP"),
    response_format={"type": "json_schema", "json_schema": {"name": "a", "schema": SCHEMA}},
    seed=7,
)
PLAIN = ChatRequest(
    model="fast",
    system="You are terse.",
    messages=(
        Message("user", "Hi"),
        Message("assistant", "Hello."),
        Message("user", "How do I cancel my subscription?"),
    ),
    temperature=0.0,
)


def _reordered(d: dict) -> dict:
    return {k: _reordered(v) if isinstance(v, dict) else v for k, v in reversed(d.items())}


def test_the_key_is_32_bytes_and_stable() -> None:
    key = exact_key("acme", BASE)
    assert len(key) == 32
    assert exact_key("acme", BASE) == key
    assert exact_key("acme", replace(BASE)) == key


def test_dict_order_does_not_change_the_key() -> None:
    assert list(_reordered(SCHEMA)) != list(SCHEMA)
    shuffled = replace(
        BASE,
        tools=(Tool("weather", "Today's weather", _reordered(SCHEMA)),),
        response_format=_reordered(BASE.response_format or {}),
    )
    assert exact_key("acme", shuffled) == exact_key("acme", BASE)


def test_fields_that_cannot_change_the_answer_are_left_out() -> None:
    same = replace(
        BASE,
        stream=True,
        include_usage=True,
        user="end-user-9",
        metadata={"session_id": "s"},
        stop=("STOP", "END", "STOP"),  # a set of sequences
        temperature=0.2,
    )
    assert exact_key("acme", same) == exact_key("acme", BASE)
    assert exact_key("acme", replace(PLAIN, temperature=0)) == exact_key("acme", PLAIN)


def _with_last(request: ChatRequest, message: Message) -> ChatRequest:
    return replace(request, messages=(*request.messages[:-1], message))


def _with_first(request: ChatRequest, message: Message) -> ChatRequest:
    return replace(request, messages=(message, *request.messages[1:]))


ASSISTANT = BASE.messages[1]
CHANGES = {
    "model": replace(BASE, model="smart"),
    "system": replace(BASE, system="You are verbose."),
    "no system": replace(BASE, system=None),
    "empty system": replace(BASE, system=""),
    "last message": _with_last(BASE, Message("user", "How do I cancel my subscription")),
    "first message": _with_first(BASE, Message("user", "Hi!")),
    "role": _with_first(BASE, Message("system", "Hi")),
    "message name": _with_first(BASE, Message("user", "Hi", name="ada")),
    "tool call id": replace(
        BASE,
        messages=(
            BASE.messages[0],
            replace(ASSISTANT, tool_calls=(ToolCall("c2", "weather", '{"city":"X"}'),)),
            *BASE.messages[2:],
        ),
    ),
    "tool call arguments": replace(
        BASE,
        messages=(
            BASE.messages[0],
            replace(ASSISTANT, tool_calls=(ToolCall("c1", "weather", '{"city": "X"}'),)),
            *BASE.messages[2:],
        ),
    ),
    "tool result id": replace(
        BASE,
        messages=(
            *BASE.messages[:2],
            Message("tool", "sunny", tool_call_id="c9", name="weather"),
            BASE.messages[3],
        ),
    ),
    "one message fewer": replace(BASE, messages=BASE.messages[1:]),
    "message split": replace(
        BASE, messages=(Message("user", "H"), Message("user", "i"), *BASE.messages[1:])
    ),
    "tools": replace(BASE, tools=()),
    "tool description": replace(BASE, tools=(Tool("weather", "Weather", SCHEMA),)),
    "tool schema": replace(BASE, tools=(Tool("weather", "Today's weather", {"type": "object"}),)),
    "tool_choice": replace(BASE, tool_choice="required"),
    "parallel_tool_calls": replace(BASE, parallel_tool_calls=False),
    "no parallel_tool_calls": replace(BASE, parallel_tool_calls=None),
    "response_format": replace(BASE, response_format={"type": "json_object"}),
    "temperature": replace(BASE, temperature=0.3),
    "no temperature": replace(BASE, temperature=None),
    "top_p": replace(BASE, top_p=1.0),
    "max_tokens": replace(BASE, max_tokens=101),
    "stop": replace(BASE, stop=("END",)),
    "seed": replace(BASE, seed=8),
    "no seed": replace(BASE, seed=None),
}


@pytest.mark.parametrize("change", list(CHANGES))
def test_any_parameter_change_changes_the_key(change: str) -> None:
    assert exact_key("acme", CHANGES[change]) != exact_key("acme", BASE)


def test_every_change_gives_a_key_of_its_own() -> None:
    keys = {exact_key("acme", r) for r in CHANGES.values()} | {exact_key("acme", BASE)}
    assert len(keys) == len(CHANGES) + 1


def test_the_tenant_is_in_the_key() -> None:
    assert exact_key("acme", BASE) != exact_key("globex", BASE)


def test_field_boundaries_are_unambiguous() -> None:
    a = replace(PLAIN, system="ab", messages=(Message("user", "c"),))
    b = replace(PLAIN, system="a", messages=(Message("user", "bc"),))
    assert exact_key("acme", a) != exact_key("acme", b)
    assert exact_key("ac", replace(PLAIN, model="me")) != exact_key(
        "a", replace(PLAIN, model="cme")
    )


@pytest.mark.parametrize(
    ("finish", "content", "calls", "ok"),
    [
        ("stop", "Paris.", (), True),
        ("length", "Par", (), True),
        ("tool_calls", "", (ToolCall("c", "f", "{}"),), True),
        ("stop", "", (), False),
        ("content_filter", "", (), False),
        ("error", "Par", (), False),
        ("client_disconnected", "Paris.", (), False),
    ],
)
def test_only_complete_answers_are_stored(finish, content, calls, ok) -> None:
    response = ChatResponse("r", "m", content, calls, finish_reason=finish)
    assert storable(response) is ok


# --- the semantic cache ------------------------------------------------------------------


def test_a_cool_plain_question_is_eligible() -> None:
    query = semantic_query("acme", PLAIN, 0.3)
    assert query is not None
    assert query.text == "How do I cancel my subscription?"
    assert len(query.scope) == 32


def test_the_query_text_has_its_whitespace_collapsed() -> None:
    query = semantic_query("acme", _with_last(PLAIN, Message("user", "  How \n do   I?  ")), 0.3)
    assert query is not None
    assert query.text == "How do I?"


@pytest.mark.parametrize(
    ("request_", "reason"),
    [
        (BASE, "tools"),
        (replace(PLAIN, temperature=0.31), "temperature"),
        (replace(PLAIN, temperature=None), "temperature"),  # the providers' default, 1.0
        (_with_last(PLAIN, Message("assistant", "Sure.")), "last message is not the user's"),
        (_with_last(PLAIN, Message("tool", "42", tool_call_id="c")), "last message is not"),
        (replace(PLAIN, messages=()), "last message is not the user's"),
        (_with_last(PLAIN, Message("user", "   ")), "empty user turn"),
        (_with_last(PLAIN, Message("user", "word " * 200)), "user turn too long"),
    ],
)
def test_ineligible_requests(request_: ChatRequest, reason: str) -> None:
    refusal = semantic_refusal(request_, 0.3)
    assert refusal is not None
    assert refusal.startswith(reason)
    assert semantic_query("acme", request_, 0.3) is None


def test_the_temperature_limit_is_inclusive_and_configurable() -> None:
    assert semantic_refusal(replace(PLAIN, temperature=0.3), 0.3) is None
    assert semantic_refusal(replace(PLAIN, temperature=None), 1.0) is None
    assert semantic_refusal(replace(PLAIN, temperature=0.0), 0.0) is None


def _scope(request: ChatRequest, tenant: str = "acme") -> bytes:
    query = semantic_query(tenant, request, 0.3)
    assert query is not None
    return query.scope


def test_only_the_last_user_turns_wording_may_differ_within_a_scope() -> None:
    paraphrase = _with_last(PLAIN, Message("user", "How can I cancel my subscription?"))
    assert _scope(paraphrase) == _scope(PLAIN)
    assert exact_key("acme", paraphrase) != exact_key("acme", PLAIN)


@pytest.mark.parametrize(
    "other",
    [
        replace(PLAIN, model="smart"),
        replace(PLAIN, system="You are verbose."),
        replace(PLAIN, system=None),
        _with_first(PLAIN, Message("user", "Hello")),
        replace(PLAIN, messages=PLAIN.messages[2:]),
        _with_last(PLAIN, Message("user", "How do I cancel my subscription?", name="bob")),
        replace(PLAIN, temperature=0.1),
        replace(PLAIN, max_tokens=10),
        replace(PLAIN, top_p=0.5),
        replace(PLAIN, stop=("x",)),
        replace(PLAIN, seed=1),
        replace(PLAIN, response_format={"type": "json_object"}),
    ],
)
def test_anything_else_changes_the_scope(other: ChatRequest) -> None:
    assert _scope(other) != _scope(PLAIN)


def test_the_tenant_is_in_the_scope() -> None:
    assert _scope(PLAIN, "globex") != _scope(PLAIN, "acme")


def test_numbers_in_the_question_are_part_of_the_scope() -> None:
    five = _with_last(PLAIN, Message("user", "Convert 5 miles to km"))
    six = _with_last(PLAIN, Message("user", "Convert 6 miles to km"))
    five_again = _with_last(PLAIN, Message("user", "How many km are 5 miles?"))
    assert _scope(five) != _scope(six)
    assert _scope(five) == _scope(five_again)
    assert numbers_in("pay 2,000.50 on 12/05 at 9:40, not 3") == ["2,000.50", "12/05", "9:40", "3"]


def test_the_word_piece_estimate_is_generous() -> None:
    assert word_pieces_estimate("How do I cancel my subscription?") == 1 + 1 + 1 + 2 + 1 + 4 + 1
    assert word_pieces_estimate("12345") == 5
    assert word_pieces_estimate("東京タワー") == 5
    assert word_pieces_estimate("word " * 200) > MAX_SEMANTIC_PIECES
    assert word_pieces_estimate("word " * 100) <= MAX_SEMANTIC_PIECES
