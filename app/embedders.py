"""Which embedders a process runs, from the settings (used by `serve` and `mcp`)."""

from __future__ import annotations

import os

from adapters.embedder import (
    AsyncEmbedder,
    FallbackEmbedder,
    SentenceTransformerEmbedder,
    SyncEmbedder,
    default_threads,
)
from adapters.onnx_embedder import OnnxEmbedder
from app.settings import Settings


def model(settings: Settings, *, threads: int = 1, int8: bool = False) -> FallbackEmbedder:
    """One copy of the embedding model: on ONNX Runtime (one query ~6 ms against torch's
    ~12; batches of short texts ~25% less CPU, and no Python-level layers holding the
    GIL), torch when ONNX is switched off or cannot load. Both give the same vectors to
    float rounding, so the stored ones and the query's always match. `int8` (or the
    runtime "onnx-int8"): ONNX Runtime on the export quantized to int8."""
    name = settings.embedding_model or None
    choices: list[SyncEmbedder] = [SentenceTransformerEmbedder(name, threads=threads)]
    if settings.embedder_runtime in ("onnx", "onnx-int8"):
        cache = settings.model_cache_dir or settings.data_dir / "models"
        int8 = int8 or settings.embedder_runtime == "onnx-int8"
        choices.insert(0, OnnxEmbedder(name, cache, threads=threads, int8=int8))
    return FallbackEmbedder(choices)


def query_embedder(settings: Settings) -> FallbackEmbedder:
    """The request path's model: one thread (a query is one short text; a second thread
    saves little), int8 unless `query_int8` is off.

    Measured on the 2-core box, one 27-token query: fp32 7.4 ms, int8 2.9 ms (AVX-512
    VNNI). int8 vectors are at cosine ~0.993 to fp32's (worst 0.983 over 300 LoCoMo
    turns): LoCoMo's hybrid recall at 2048 tokens is 81.0% with int8 queries over fp32
    turns (81.3% all fp32; 81.1% with the user turns stored as their int8 query vectors,
    which AsyncEmbedder hands the worker; 80.3% all int8). So the index stays fp32 and
    only the request path's vector is quantized."""
    return model(settings, threads=1, int8=settings.query_int8)


def query_threads(settings: Settings) -> int:
    """How many query vectors are computed at once: the setting, else one a CPU, at most
    4 (see AsyncEmbedder)."""
    return settings.query_threads or min(4, os.cpu_count() or 1)


def build_embedder(settings: Settings, *, batches: bool = True) -> AsyncEmbedder:
    """With `batches` (the embeddings worker runs here), a second copy of the model
    (~90 MB) for queries: a query never queues behind a batch (p50 107 ms behind a busy
    worker). Without, one query model serves both, on one thread."""
    queries = query_embedder(settings)
    if not batches:
        return AsyncEmbedder(queries)
    return AsyncEmbedder(
        model(settings, threads=default_threads()),
        query_embedder=queries,
        query_threads=query_threads(settings),
    )
