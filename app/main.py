"""The composition root: the one place that wires real adapters into the use cases."""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from alembic.script import ScriptDirectory
from litestar import Litestar
from litestar.openapi import OpenAPIConfig
from litestar.openapi.plugins import SwaggerRenderPlugin

from adapters.postgres.api_keys import PostgresApiKeys
from adapters.postgres.context_inputs import PostgresContextReader
from adapters.postgres.database import Database
from adapters.postgres.migrate import alembic_config
from adapters.postgres.notifier import Notifier
from adapters.postgres.response_cache import PostgresResponseCache
from adapters.postgres.session_repository import PostgresSessions
from adapters.providers.http import HttpClient
from adapters.tokenizers import TiktokenCounter
from app import settings as settings_module
from app.api.auth import KeyCache
from app.api.context import ContextController
from app.api.errors import EXCEPTION_HANDLERS
from app.api.health import healthz, readyz
from app.api.projections import ProjectionsController
from app.api.proxy import ProxyController
from app.api.proxy import drain as drain_proxy_tasks
from app.api.responses import ResponsesController
from app.api.sessions import SessionController
from app.api.usage import UsageController
from app.embedders import build_embedder
from app.heap import freeze_startup_heap
from app.mcp_server import McpPorts, build_server, http_mount
from app.providers import build_providers
from app.proxy_config import load_proxy_config
from app.services.cache import CachePorts, purge_expired
from app.services.context import ContextPorts
from app.services.load import CallLoad, default_busy_at
from app.services.proxy import ProxyPorts
from app.settings import Settings
from app.workers.embeddings import EmbeddingsWorker
from app.workers.jobs import build_scheduler, compaction_ports
from app.workers.scheduler import ScheduledJob
from app.workers.usage import UsageWorker
from domain.proxy.breaker import Transition

DATABASE_URL_ENV = "CONTEXTGATE_DATABASE_URL"


def schema_head(url: str) -> str | None:
    return ScriptDirectory.from_config(alembic_config(url)).get_current_head()


def log_transition(transition: Transition) -> None:
    """Circuit breakers opening and closing are worth a line in the log."""
    logging.getLogger("contextgate.router").warning("circuit %s", transition.to_dict())


def _models_state(app: Litestar, warm: asyncio.Task[None]) -> None:
    """Shown by /readyz: `loading` until the embedding model is in, then `ok`, or
    `failed` (the first context request tries again and reports why)."""
    failed = warm.cancelled() or warm.exception() is not None
    app.state.models = "failed" if failed else "ok"


def create_app(settings: Settings, database_url: str) -> Litestar:
    db = Database(database_url, pool_size=settings.db_pool_size, role=settings.effective_db_role)
    keys = PostgresApiKeys(db)
    notifier = Notifier(db)
    sessions = PostgresSessions(db, on_append=notifier.notify)
    counter = TiktokenCounter(settings.tokenizer)
    embedder = build_embedder(settings)
    busy_at = settings.embed_yield_calls
    load = CallLoad(default_busy_at() if busy_at is None else busy_at)
    embeddings = EmbeddingsWorker(
        db,
        embedder,
        embed_stateless=settings.embed_stateless,
        linger=settings.embed_linger_ms / 1000,
        yield_to=load.busy,
        max_defer=settings.embed_max_defer_s,
    )
    usage = UsageWorker(db)
    context_ports = ContextPorts(PostgresContextReader(db), counter, sessions.events, embedder)
    mcp = build_server(McpPorts(sessions, counter, context_ports, db, embedder))
    mcp_route = http_mount(mcp, settings)
    background: set[asyncio.Task[None]] = set()
    proxy_config = load_proxy_config(None, os.environ)  # checked by `serve` before start
    cache_config = proxy_config.cache
    response_cache: CachePorts | None = None
    cache_jobs: list[ScheduledJob] = []
    if cache_config.exact or cache_config.semantic:
        cache_store = PostgresResponseCache(db)
        response_cache = CachePorts(
            cache_store, cache_config, embedder if cache_config.semantic else None
        )

        async def purge_response_cache() -> int:
            return await purge_expired(cache_store)

        cache_jobs.append(ScheduledJob("purge-response-cache", 300.0, purge_response_cache))
    scheduler = build_scheduler(
        settings,
        database_url,
        compaction_ports(settings, db, sessions.events, counter),
        extra_jobs=cache_jobs,
    )
    http = HttpClient()  # the one pooled HTTP client of every provider
    proxy_ports = ProxyPorts(
        config=proxy_config,
        router=proxy_config.router(on_transition=log_transition),
        providers=build_providers(proxy_config, http, os.environ),
        events=sessions.events,
        context=context_ports,
        counter=counter,
        load=load,
    )

    @asynccontextmanager
    async def lifespan(app: Litestar) -> AsyncIterator[None]:
        await db.pool()  # connect before the first request, not during it
        # The model loads in the background (a few seconds): /readyz answers at once, and
        # the first context request waits for it.
        warm = asyncio.create_task(embedder.warm_up())
        warm.add_done_callback(lambda _: freeze_startup_heap())  # once the models are in
        warm.add_done_callback(lambda task: _models_state(app, task))
        background.add(warm)
        warm.add_done_callback(background.discard)
        notifier.start()
        if settings.jobs:
            await scheduler.start()
            embeddings.start()
            usage.start()
        try:
            async with mcp.session_manager.run():
                yield
        finally:
            await drain_proxy_tasks()  # answers still streaming, records after answers
            await embeddings.stop()
            await usage.stop()
            await scheduler.stop()
            await notifier.stop()
            embedder.close()
            await http.aclose()
            await db.dispose()

    app = Litestar(
        route_handlers=[
            ProxyController,
            ResponsesController,
            UsageController,
            SessionController,
            ContextController,
            ProjectionsController,
            mcp_route,
            healthz,
            readyz,
        ],
        exception_handlers=EXCEPTION_HANDLERS,
        lifespan=[lifespan],
        request_max_body_size=settings.max_body_bytes,
        openapi_config=OpenAPIConfig(
            title="Contextgate",
            version="0.1.0",
            description="The LLM gateway that remembers.",
            path="/schema",
            render_plugins=[SwaggerRenderPlugin()],
        ),
        logging_config=None,
    )
    app.state.settings = settings
    app.state.max_body_bytes = settings.max_body_bytes
    app.state.db = db
    app.state.sessions = sessions
    app.state.token_counter = counter
    app.state.scheduler = scheduler
    app.state.context_ports = context_ports
    app.state.embeddings = embeddings
    app.state.key_cache = KeyCache(keys)
    app.state.proxy = proxy_ports
    app.state.response_cache = response_cache
    app.state.schema_head = schema_head(database_url)
    app.state.models = "loading"  # the embedding model, loaded once the server is up
    return app


def create_app_from_env() -> Litestar:
    """Factory for uvicorn workers: settings from the environment, the database URL the
    `serve` command resolved (the embedded server's, or DATABASE_URL)."""
    settings = settings_module.load()
    url = os.environ.get(DATABASE_URL_ENV) or settings.database_url
    if not url:
        raise RuntimeError(
            f"{DATABASE_URL_ENV} is not set; start the server with `contextgate serve`"
        )
    return create_app(settings, url)
