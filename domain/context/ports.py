"""What the context use case needs from the outside: a reader of the session's rows and
an embedder for the query."""

from __future__ import annotations

from collections.abc import Awaitable, Sequence
from dataclasses import dataclass
from typing import Protocol

from domain.context.inputs import Candidate, Summary, Turn


@dataclass(frozen=True)
class SessionFacts:
    user_id: str | None
    version: int
    turn_count: int
    # The session's own context defaults (its metadata `context_strategy` and
    # `context_budget`), used by the proxy when a request names none.
    context_strategy: str | None = None
    context_budget: int | None = None
    # The newest summary, when the reader read it with the session (`has_summary`): a
    # window built from these facts need not ask for it again.
    summary: Summary | None = None
    has_summary: bool = False


class ContextReader(Protocol):
    async def session(self, tenant_id: str, session_id: str) -> SessionFacts | None: ...

    async def newest_turns(
        self, tenant_id: str, session_id: str, limit: int, known_count: int | None = None
    ) -> list[Turn]:
        """The newest `limit` turns, newest first. `known_count`: the session's turn
        count as the caller read it a moment ago, and turns stored since do not matter
        to it; a reader holding turns up to that one may answer without reading."""
        ...

    async def newest_summary(self, tenant_id: str, session_id: str) -> Summary | None: ...

    def known_turn_count(self, tenant_id: str, session_id: str) -> int | None:
        """The session's turn count as this reader last saw it, without reading (None:
        it holds nothing of the session). A hint for starting work early, never a fact:
        the session may have grown since."""
        ...

    async def candidates(
        self,
        tenant_id: str,
        session_id: str,
        *,
        query_embedding: Sequence[float] | Awaitable[Sequence[float]] | None,
        query_text: str,
        before_version: int,
        user_id: str | None,
        session_turns: int | None = None,
    ) -> list[Candidate]:
        """Older turns (stream version < before_version) found by meaning and words. The
        query vector may still be computing (an awaitable): the reader can do what needs
        no vector (the full-text half) first. `session_turns`: the session's turn count
        when the caller has it (the reader need not count)."""
        ...


class QueryEmbedder(Protocol):
    async def embed_query(self, text: str) -> Sequence[float]: ...
