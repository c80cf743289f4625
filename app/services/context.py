"""The context use case: build the window for one session and one target model.

It loads a bounded set of rows (the newest turns, the newest summary, search candidates
for the current turn), embeds one query vector, and hands them to the pure strategies in
domain/context. Its cost does not grow with the length of the history.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any

from app.model_catalog import lookup as lookup_model
from domain.context.inputs import (
    MESSAGE_OVERHEAD_TOKENS,
    Budget,
    BudgetShares,
    ContextInputs,
    Turn,
)
from domain.context.ports import ContextReader, QueryEmbedder, SessionFacts
from domain.context.strategies import DEFAULT_SHARES, DEFAULT_STRATEGY, STRATEGIES, assemble
from domain.context.window import ContextWindow, assembled_event
from domain.errors import NotFound, ValidationError
from domain.events import NewEvent
from domain.ids import uuid7
from domain.ports import EventStore, TokenCounter
from domain.session import stream_id_for

RECENT_TURNS = 200  # newest turns loaded for the recent window: enough for any budget share
FULL_TURNS_CAP = 5_000  # the `full` strategy reads the whole history, up to this many turns
RETRIEVING = frozenset(("retrieval", "hybrid"))  # the strategies that search older turns


@dataclass(frozen=True)
class ContextPorts:
    reader: ContextReader
    counter: TokenCounter
    events: EventStore
    embedder: QueryEmbedder | None = None


@dataclass(frozen=True)
class ContextRequest:
    tenant_id: str
    session_id: str
    model: str
    strategy: str = DEFAULT_STRATEGY
    budget: int | None = None  # tokens for the window; default: the model's limit - output
    query: str | None = None  # the current turn; default: the session's newest turn
    shares: BudgetShares = DEFAULT_SHARES
    across_sessions: bool = False  # also retrieve from the same user's other sessions
    system_prompt: str | None = None
    # The model's limits when the caller has them (the proxy's routing config); else
    # they come from app/model_catalog.py and an unknown model is refused.
    context_limit: int | None = None
    max_output: int | None = None
    # The session as the caller just read it (the proxy has): not read again.
    facts: SessionFacts | None = None
    # The stream version `query` takes in the log: the caller builds the window while it
    # stores the turn, so a turn read at or after this version is that one, not history.
    current_version: int | None = None


def budget_for(request: ContextRequest, counter: TokenCounter) -> Budget:
    if request.context_limit is not None:  # the caller knows the model (the proxy's config)
        limit, max_output = request.context_limit, request.max_output or 0
    else:
        info = lookup_model(request.model)
        limit, max_output = info.context_limit, info.max_output
    ratio = counter.ratio(request.model)
    if request.budget is None:
        return Budget(limit, max_output, ratio)
    if not 1 <= request.budget <= limit:
        raise ValidationError(
            f"budget must be between 1 and {request.model}'s context limit "
            f"({limit} tokens), not {request.budget}",
            "budget",
        )
    return Budget(request.budget, 0, ratio)


async def build_context(ports: ContextPorts, request: ContextRequest) -> ContextWindow:
    if request.strategy not in STRATEGIES:
        raise ValidationError(
            f"unknown context strategy {request.strategy!r}; use one of {', '.join(STRATEGIES)}",
            "strategy",
        )
    budget = budget_for(request, ports.counter)
    # The query vector (the one model call, ~3-5 ms of a core) is computed on the
    # embedder's thread while the rows are read: from the start when the query is given,
    # else once the newest turn is known. Not from the start when the caller's facts say
    # every turn is loaded anyway: that window most likely needs no vector (see
    # _may_fit_whole), and nobody else should compute one for it either (the proxy used
    # to, ahead of its reads). A vector computed for nothing still runs once its task is
    # cancelled: under load (16 clients on short sessions) such vectors queued up to
    # ~3 s ahead of the ones windows needed, and at 1 client, sharing 2 cores with the
    # call's reads and append, it doubled a short session's call (~8.6 -> ~3.7 ms in the
    # server without it).
    embedding: asyncio.Task[Sequence[float]] | None = None
    facts = request.facts
    if facts is None:
        may_need = request.strategy in RETRIEVING
    else:
        may_need = may_retrieve(request.strategy, facts.turn_count)
    if request.query and ports.embedder is not None and may_need:
        embedding = asyncio.create_task(ports.embedder.embed_query(request.query))
    try:
        return await _build(ports, request, budget, embedding)
    finally:
        if embedding is not None and not embedding.done():
            embedding.cancel()


def turns_loaded(strategy: str) -> int:
    """How many of the newest turns a window of `strategy` reads."""
    return FULL_TURNS_CAP if strategy == "full" else RECENT_TURNS


def may_retrieve(strategy: str, turn_count: int) -> bool:
    """Whether a window of `strategy` over a session of `turn_count` turns (before the
    new one) may search older turns, and so need the query's vector: the strategy
    retrieves and the window does not load every turn."""
    return strategy in RETRIEVING and turn_count > turns_loaded(strategy)


async def _build(
    ports: ContextPorts,
    request: ContextRequest,
    budget: Budget,
    embedding: asyncio.Task[Sequence[float]] | None,
) -> ContextWindow:
    reader = ports.reader
    limit = turns_loaded(request.strategy)
    with_summary = request.strategy in ("summary", "hybrid")
    given = request.facts
    # Built while its turn is stored, from facts just read: turns stored since are that
    # turn's (filtered by current_version), so the reader may answer from what it holds.
    known = given.turn_count if given is not None and request.current_version else None
    facts, newest = await asyncio.gather(
        reader.session(request.tenant_id, request.session_id) if given is None else _value(given),
        reader.newest_turns(request.tenant_id, request.session_id, limit, known),
    )
    if facts is None:
        raise NotFound(f"session {request.session_id!r} does not exist")
    summary = None
    if with_summary:  # read with the session's facts, by a reader that can
        summary = (
            facts.summary
            if facts.has_summary
            else await reader.newest_summary(request.tenant_id, request.session_id)
        )
    current, recent = _current_turn(request, newest, ports.counter)
    system_tokens = ports.counter.count(request.system_prompt) if request.system_prompt else 0
    inputs = ContextInputs(
        session_id=request.session_id,
        model=request.model,
        current=current,
        recent=tuple(recent),
        system_prompt=request.system_prompt,
        system_tokens=system_tokens,
        summary=summary,
    )
    built_at = datetime.now(UTC)
    retrieves = request.strategy in RETRIEVING and bool(current.content)
    if retrieves and _may_fit_whole(request, facts.turn_count, recent, current, budget):
        # The whole session fits in the budget: retrieval could only find turns the
        # window shows already. Skipping it saves the query vector (~6 ms) and the search.
        window = assemble(inputs, budget, request.shares, request.strategy, built_at=built_at)
        recent_section = window.section("recent")
        if len(recent_section.messages if recent_section else ()) == len(recent):
            return replace(window, notes=(*window.notes, WHOLE_SESSION_NOTE))
    if retrieves and ports.embedder is not None:
        if embedding is None:
            embedding = asyncio.create_task(ports.embedder.embed_query(current.content))
        candidates = await ports.reader.candidates(
            request.tenant_id,
            request.session_id,
            query_embedding=embedding,
            query_text=current.content,
            # Every older turn may be retrieved: the strategy skips those the recent
            # window shows, and the window's length depends on the budget.
            before_version=current.stream_version,
            user_id=facts.user_id if request.across_sessions else None,
            session_turns=facts.turn_count,
        )
        inputs = replace(
            inputs, candidates=tuple(candidates), query_embedding=tuple(await embedding)
        )
    return assemble(inputs, budget, request.shares, request.strategy, built_at=built_at)


WHOLE_SESSION_NOTE = "the whole session fits the budget: nothing to retrieve"


def _may_fit_whole(
    request: ContextRequest, turn_count: int, recent: list[Turn], current: Turn, budget: Budget
) -> bool:
    """Every turn of the session is loaded and their tokens (a cheap estimate; the
    window's own accounting decides) are within the budget. `turn_count` counts the
    current turn when it was read from the log (no `query`)."""
    loaded = len(recent) + (1 if request.query is None else 0)
    if request.across_sessions or turn_count > loaded:
        return False
    tokens = sum(t.tokens + MESSAGE_OVERHEAD_TOKENS for t in recent) + current.tokens
    return budget.scaled(tokens) <= budget.available


async def _value(facts: SessionFacts) -> SessionFacts:
    return facts


def _current_turn(
    request: ContextRequest, newest: list[Turn], counter: TokenCounter
) -> tuple[Turn, list[Turn]]:
    """The current turn (the query, or the newest turn) and the turns before it."""
    if request.query is not None:
        if request.current_version is not None:  # stored meanwhile: it is not history
            newest = [t for t in newest if t.stream_version < request.current_version]
        after = newest[0] if newest else None
        version = (after.stream_version + 1) if after else 1
        current = Turn(
            seq=(after.seq + 1) if after else 1,
            stream_version=request.current_version or version,
            global_position=0,  # not in the log (yet)
            role="user",
            content=request.query,
            tokens=counter.count(request.query, request.model),
            created_at=datetime.now(UTC),
        )
        return current, newest
    if not newest:
        raise ValidationError(
            "the session has no turns yet; append one or pass `query` as the current turn",
            "query",
        )
    return newest[0], newest[1:]


async def record_window(
    ports: ContextPorts, tenant_id: str, window: ContextWindow, metadata: dict[str, Any]
) -> None:
    """Record what a model call was shown (ContextAssembled) in the session's stream."""
    event = assembled_event(window)
    await ports.events.append(
        tenant_id,
        stream_id_for(window.session_id),
        [NewEvent.from_domain(event, uuid7(), metadata)],
        must_exist=True,
    )
