"""Which embedders a process runs, from the settings (used by `serve` and `mcp`)."""

from __future__ import annotations

from adapters.embedder import (
    AsyncEmbedder,
    FallbackEmbedder,
    SentenceTransformerEmbedder,
    SyncEmbedder,
)
from adapters.onnx_embedder import OnnxEmbedder
from app.settings import Settings


def query_embedder(settings: Settings) -> FallbackEmbedder:
    """The request path's model: ONNX Runtime (about twice torch's speed for one query),
    torch when ONNX is switched off or cannot load."""
    model = settings.embedding_model or None
    choices: list[SyncEmbedder] = [SentenceTransformerEmbedder(model, threads=1)]
    if settings.query_embedder == "onnx":
        cache = settings.model_cache_dir or settings.data_dir / "models"
        choices.insert(0, OnnxEmbedder(model, cache))
    return FallbackEmbedder(choices)


def build_embedder(settings: Settings, *, batches: bool = True) -> AsyncEmbedder:
    """With `batches` (the embeddings worker runs here), a second copy of the model
    (~90 MB) for queries: a query never queues behind a batch (p50 107 ms behind a busy
    worker). Without, one query model serves both."""
    queries = query_embedder(settings)
    if not batches:
        return AsyncEmbedder(queries)
    batch_model = SentenceTransformerEmbedder(settings.embedding_model or None)
    return AsyncEmbedder(batch_model, query_embedder=queries)
