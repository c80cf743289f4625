"""The proxy's stateful preparation against the real PostgreSQL: a call computes its new
turn's query vector only when its window may need retrieval."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import pytest

from adapters.embedder import AsyncEmbedder
from adapters.postgres.context_inputs import PostgresContextReader
from adapters.postgres.database import Database
from adapters.postgres.session_repository import PostgresSessions
from adapters.providers.http import HttpClient
from adapters.tokenizers import TiktokenCounter
from app.providers import build_providers
from app.proxy_config import load_proxy_config
from app.services import proxy
from app.services import sessions as svc
from app.services.context import RECENT_TURNS, WHOLE_SESSION_NOTE, ContextPorts
from app.settings import Settings
from domain.context.ports import SessionFacts
from domain.proxy.chat import ChatRequest, ChatResponse, Message

CTX = svc.RequestContext("acme", "test")


class Model:
    """A synchronous model that records the texts it embeds; the vectors are constant."""

    dimensions = 384

    def __init__(self) -> None:
        self.texts: list[str] = []

    def load(self) -> None:
        pass

    def embed(self, texts: Sequence[str]) -> list[list[float]]:
        self.texts.extend(texts)
        return [[1.0] + [0.0] * 383 for _ in texts]


class LoggedEmbedder:
    """The real AsyncEmbedder (callers of one text share its computation), logging when
    a vector is asked for."""

    def __init__(self, model: Model, log: list[str]) -> None:
        self.inner = AsyncEmbedder(model, query_embedder=model)
        self.log = log

    async def embed_query(self, text: str) -> list[float]:
        self.log.append("vector")
        return await self.inner.embed_query(text)


class LoggedReader(PostgresContextReader):
    def __init__(self, db: Database, log: list[str]) -> None:
        super().__init__(db)
        self.log = log

    async def session(self, tenant_id: str, session_id: str) -> SessionFacts | None:
        self.log.append("read")
        return await super().session(tenant_id, session_id)


async def prepare(ports: proxy.ProxyPorts, session_id: str, text: str) -> proxy.Call:
    meta = proxy.CallMeta("acme", "key", "openai", session_id=session_id)
    return await proxy.prepare(ports, meta, ChatRequest("echo", (Message("user", text),)))


async def test_a_call_computes_its_query_vector_only_when_its_window_needs_one(
    db: Database,
) -> None:
    """On two cores a vector computed for nothing (~3-4 ms of one core) doubled a short
    session's call: it slowed the call's reads and append, which it overlapped. So a
    session whose every turn the window loads gets none; a longer one gets exactly one,
    of the new turn's text: started once the reads show it is needed, or before them
    when this process last saw the session that long."""
    repo = PostgresSessions(db)
    counter = TiktokenCounter()
    log: list[str] = []
    model = Model()
    config = load_proxy_config(None, {})  # no keys: the echo model
    reader = LoggedReader(db, log)
    ports = proxy.ProxyPorts(
        config=config,
        router=config.router(),
        providers=build_providers(config, HttpClient(), {}),
        events=repo.events,
        context=ContextPorts(reader, counter, repo.events, LoggedEmbedder(model, log)),
        counter=counter,
    )

    async def seed(session_id: str, turns: int) -> None:  # ends with an answer
        await svc.create_session(repo, CTX, session_id=session_id)
        for start in range(0, turns, 100):  # at most 100 turns an append
            specs = [
                svc.TurnSpec("user" if i % 2 == 0 else "assistant", f"turn {i}")
                for i in range(start, min(turns, start + 100))
            ]
            await svc.append_turns(repo, counter, CTX, session_id, specs)

    opened = await prepare(ports, "new", "hello")  # an unknown id opens the session
    assert opened.created_session and model.texts == []
    await seed("short", 20)
    for question in ("what did I say in turn 4?", "and in turn 6?"):
        short = await prepare(ports, "short", question)
        assert short.window is not None and short.window.notes[-1] == WHOLE_SESSION_NOTE
        await proxy.record(ports, short, _echo(), None)
    assert model.texts == [] and "vector" not in log
    await seed("long", RECENT_TURNS + 50)
    log.clear()
    first = await prepare(ports, "long", "what did I say in turn 4?")
    assert first.window is not None and WHOLE_SESSION_NOTE not in first.window.notes
    assert model.texts == ["what did I say in turn 4?"]
    assert log[0] == "read" and "vector" in log  # not known yet: after the reads
    await proxy.record(ports, first, _echo(), None)
    log.clear()
    second = await prepare(ports, "long", "and in turn 6?")
    assert second.window is not None and WHOLE_SESSION_NOTE not in second.window.notes
    assert log[:2] == ["vector", "read"]  # known long: ahead of the reads
    assert model.texts == ["what did I say in turn 4?", "and in turn 6?"]  # once each


# Importing and building the app in-process registers its routes, which warns of Litestar 3's coming
# parameter and dependency markers (pyproject.toml keeps litestar below 3).
@pytest.mark.filterwarnings("ignore::DeprecationWarning:litestar")
@pytest.mark.filterwarnings("ignore:Deprecated 'header' parameter:DeprecationWarning")
async def test_the_served_app_starts_no_vector_for_a_session_that_fits(
    database_url: str, tmp_path: Path
) -> None:
    """The same with the ports the server runs with (the real embedder, whose model is
    not even loaded for this): nothing is sent to the query thread."""
    from app.main import create_app  # here: importing the routes warns (see above)

    app = create_app(Settings(database_url=database_url, data_dir=tmp_path), database_url)
    ports: proxy.ProxyPorts = app.state.proxy
    embedder = ports.context.embedder
    assert isinstance(embedder, AsyncEmbedder)
    try:
        for _ in range(3):
            call = await prepare(ports, "fits", "hello again")
            assert call.window is not None
            await proxy.record(ports, call, _echo(), None)
        assert embedder._pending == {} and len(embedder._recent) == 0
    finally:
        embedder.close()
        await app.state.db.dispose()


def _echo() -> ChatResponse:  # an answer, so the session's next call may follow
    return ChatResponse(id="r", model="echo", content="echo", finish_reason="stop")
