"""Which embedders a process runs, from the settings (used by `serve` and `mcp`)."""

from __future__ import annotations

from adapters.embedder import (
    AsyncEmbedder,
    FallbackEmbedder,
    SentenceTransformerEmbedder,
    SyncEmbedder,
    default_threads,
)
from adapters.onnx_embedder import OnnxEmbedder
from app.settings import Settings


def model(settings: Settings, *, threads: int = 1) -> FallbackEmbedder:
    """One copy of the embedding model: on ONNX Runtime (one query ~6 ms against torch's
    ~12; batches of short texts ~25% less CPU, and no Python-level layers holding the
    GIL), torch when ONNX is switched off or cannot load. Both give the same vectors to
    float rounding, so the stored ones and the query's always match."""
    name = settings.embedding_model or None
    choices: list[SyncEmbedder] = [SentenceTransformerEmbedder(name, threads=threads)]
    if settings.embedder_runtime == "onnx":
        cache = settings.model_cache_dir or settings.data_dir / "models"
        choices.insert(0, OnnxEmbedder(name, cache, threads=threads))
    return FallbackEmbedder(choices)


def query_embedder(settings: Settings) -> FallbackEmbedder:
    """The request path's model: one thread (a query is one short text)."""
    return model(settings, threads=1)


def build_embedder(settings: Settings, *, batches: bool = True) -> AsyncEmbedder:
    """With `batches` (the embeddings worker runs here), a second copy of the model
    (~90 MB) for queries: a query never queues behind a batch (p50 107 ms behind a busy
    worker). Without, one query model serves both."""
    queries = query_embedder(settings)
    if not batches:
        return AsyncEmbedder(queries)
    return AsyncEmbedder(model(settings, threads=default_threads()), query_embedder=queries)
