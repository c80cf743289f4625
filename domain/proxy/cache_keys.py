"""What the proxy's response caches key on, and when a request or an answer may use them.

Exact cache: the key is a sha256 over a canonical encoding of the tenant, the model the
caller asked for (its alias) and every field of the request as the provider will see it
(system, messages with their tool calls, tools, tool_choice, parallel_tool_calls,
response_format, temperature, top_p, max_tokens, stop, seed). Fields that cannot change
the answer are left out: `stream` and `include_usage` (a streamed request is answered
from a stored complete answer), `user` and `metadata` (labels for the caller's books).

The encoding is length-prefixed and typed (None is not "", a list carries its length),
so two different requests never encode the same; JSON objects (tool parameters,
response_format) are written with sorted keys, so key order in the caller's body does
not matter. CACHE_VERSION starts every encoding: change it when the encoding changes,
and old entries simply stop matching.

Semantic cache: a hit must be as safe as an exact one except for the wording of the
caller's newest question. So its scope hash covers everything the exact key covers
except the text of the last message (the last user turn), plus the numbers written in
that text (questions that differ in a number are different questions, and the embedding
barely tells "5 miles" from "6 miles": cosine 0.875). Within one scope only the last
user turn's wording may differ, and its embedding must be similar enough.

It is off for requests with tools (a tool call answers the exact arguments the caller
will act on), for requests sampled hotter than the configured limit (no temperature
means the providers' default, 1.0), when the last message is not the user's, and when
the last user turn is too long for the embedding model to see whole (all-MiniLM-L6-v2
reads 256 word pieces; two long texts that differ after that would look identical).

What no scope can fix: an embedding does not understand negation or antonyms well
("Is coffee good for your health?" / "... bad ..." measured 0.954 with the shipped
model). The threshold is the operator's trade between hit rate and such mistakes.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass
from typing import Any

from domain.proxy.chat import ChatRequest, ChatResponse, Message, Tool

CACHE_VERSION = b"contextgate-response-cache/1"
EXACT = "hit-exact"
SEMANTIC = "hit-semantic"
# Answers that ended as the model meant them to (or at max_tokens, which is in the key).
COMPLETE_FINISH: frozenset[str] = frozenset(("stop", "length", "tool_calls"))
# OpenAI's and Anthropic's default when a request sets no temperature.
DEFAULT_TEMPERATURE = 1.0
# The query embedding model reads 256 word pieces, [CLS] and [SEP] included.
MAX_SEMANTIC_PIECES = 254

_NUMBER = re.compile(r"\d+(?:[.,:/]\d+)*")
_WORD_PIECES = re.compile(r"[A-Za-z]+|\d|\S")


@dataclass(frozen=True, slots=True)
class SemanticQuery:
    """An eligible request's semantic scope and the text to embed (the last user turn,
    whitespace collapsed)."""

    scope: bytes
    text: str


@dataclass(frozen=True, slots=True)
class CachedAnswer:
    """An entry found in the cache: its key (to count the hit), the stored answer, and
    for a semantic hit the cosine similarity of the two questions."""

    key: bytes
    response: ChatResponse
    similarity: float | None = None


class _Canon:
    """A sha256 fed a typed, length-prefixed encoding: unambiguous, and no intermediate
    document is built (a stateful window can be tens of kB)."""

    __slots__ = ("_h",)

    def __init__(self, purpose: bytes) -> None:
        self._h = hashlib.sha256(CACHE_VERSION)
        self.text(purpose.decode())

    def text(self, value: str | None) -> None:
        if value is None:
            self._h.update(b"\x00")
            return
        data = value.encode("utf-8", "surrogatepass")
        self._h.update(b"\x01" + len(data).to_bytes(8, "big"))
        self._h.update(data)

    def count(self, n: int) -> None:
        self._h.update(b"\x02" + n.to_bytes(8, "big"))

    def number(self, value: float | None) -> None:
        # 1 and 1.0 are the same temperature; -0.0 is not worth a separate entry.
        self.text(None if value is None else repr(float(value) + 0.0))

    def integer(self, value: int | bool | None) -> None:
        self.text(None if value is None else repr(value))

    def document(self, value: Any) -> None:
        if value is None:
            self.text(None)
            return
        self.text(
            json.dumps(
                value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False
            )
        )

    def message(self, m: Message) -> None:
        self.text(m.role)
        self.text(m.content)
        self.text(m.name)
        self.text(m.tool_call_id)
        self.count(len(m.tool_calls))
        for call in m.tool_calls:
            self.text(call.id)
            self.text(call.name)
            self.text(call.arguments)

    def tool(self, t: Tool) -> None:
        self.text(t.name)
        self.text(t.description)
        self.document(t.parameters)

    def parameters(self, request: ChatRequest) -> None:
        """Everything but the messages, in a fixed order."""
        self.text(request.system)
        self.count(len(request.tools))
        for t in request.tools:
            self.tool(t)
        self.text(request.tool_choice)
        self.integer(request.parallel_tool_calls)
        self.document(request.response_format)
        self.number(request.temperature)
        self.number(request.top_p)
        self.integer(request.max_tokens)
        stops = sorted(set(request.stop))  # a set of sequences: order and repeats do not matter
        self.count(len(stops))
        for s in stops:
            self.text(s)
        self.integer(request.seed)

    def digest(self) -> bytes:
        return self._h.digest()


def exact_key(tenant_id: str, request: ChatRequest) -> bytes:
    """The exact cache's key (32 bytes): equal for requests the provider cannot tell
    apart, different when any field that reaches it differs."""
    canon = _Canon(b"exact")
    canon.text(tenant_id)
    canon.text(request.model)
    canon.parameters(request)
    canon.count(len(request.messages))
    for m in request.messages:
        canon.message(m)
    return canon.digest()


def storable(response: ChatResponse) -> bool:
    """Only complete answers are kept: not one cut short by an error, a disconnected
    caller or a content filter, and not an empty one (more likely a glitch than an
    answer worth repeating)."""
    if response.finish_reason not in COMPLETE_FINISH:
        return False
    return bool(response.content) or bool(response.tool_calls)


def word_pieces_estimate(text: str) -> int:
    """A generous estimate of the word pieces a BERT tokenizer makes of `text`: a run
    of ASCII letters a piece per 3 letters (English words average ~1.3 pieces), every
    digit and every other character a piece of its own (CJK is split per character)."""
    total = 0
    for match in _WORD_PIECES.finditer(text):
        token = match.group()
        total += -(-len(token) // 3) if token[0].isascii() and token[0].isalpha() else 1
    return total


def numbers_in(text: str) -> list[str]:
    """The numbers written in `text`, in order ("2,000" and "2000" count as different:
    a miss, never a wrong hit)."""
    return _NUMBER.findall(text)


def semantic_refusal(request: ChatRequest, max_temperature: float) -> str | None:
    """Why the semantic cache must not answer this request, or None when it may."""
    if request.tools:
        return "tools"
    temperature = DEFAULT_TEMPERATURE if request.temperature is None else request.temperature
    if temperature > max_temperature:
        return "temperature"
    if not request.messages or request.messages[-1].role != "user":
        return "last message is not the user's"
    last = request.messages[-1]
    if last.tool_calls or not last.content.strip():
        return "empty user turn"
    if word_pieces_estimate(last.content) > MAX_SEMANTIC_PIECES:
        return "user turn too long to embed whole"
    return None


def semantic_query(
    tenant_id: str, request: ChatRequest, max_temperature: float
) -> SemanticQuery | None:
    """The scope and query text of an eligible request (see the module's docstring),
    else None."""
    if semantic_refusal(request, max_temperature) is not None:
        return None
    *prior, last = request.messages
    canon = _Canon(b"semantic")
    canon.text(tenant_id)
    canon.text(request.model)
    canon.parameters(request)
    canon.count(len(prior))
    for m in prior:
        canon.message(m)
    canon.text(last.role)
    canon.text(last.name)
    numbers = numbers_in(last.content)
    canon.count(len(numbers))
    for n in numbers:
        canon.text(n)
    return SemanticQuery(scope=canon.digest(), text=" ".join(last.content.split()))
