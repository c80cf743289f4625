"""The query path's ONNX embedder gives sentence-transformers' vectors; a failure to
load falls back to torch instead of failing the request."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from adapters.embedder import AsyncEmbedder, FallbackEmbedder, SentenceTransformerEmbedder
from adapters.onnx_embedder import OnnxEmbedder

TEXTS = [
    "Ada booked the flight to Lisbon for 300 euros on day 12.",
    "Hi",
    "",
    "Café naïve — 東京, état-of-the-art; (x+y)^2 = 42?",
    "a long message " * 300,  # past the model's 256 word pieces: truncated alike
]


def dot(a: Sequence[float], b: Sequence[float]) -> float:
    return sum(x * y for x, y in zip(a, b, strict=True))


@pytest.fixture(scope="module")
def torch_model() -> SentenceTransformerEmbedder:
    model = SentenceTransformerEmbedder(threads=1)
    model.load()
    return model


def test_onnx_vectors_equal_sentence_transformers(
    tmp_path_factory: pytest.TempPathFactory, torch_model: SentenceTransformerEmbedder
) -> None:
    cache = tmp_path_factory.mktemp("models")
    onnx = OnnxEmbedder(None, cache)
    got = onnx.embed(TEXTS)  # batched: padded to the longest text
    want = torch_model.embed(TEXTS)
    assert len(got) == len(TEXTS)
    for text, a, b in zip(TEXTS, got, want, strict=True):
        assert len(a) == 384
        assert abs(dot(a, a) - 1.0) < 1e-4, "unit length"
        assert dot(a, b) > 0.9999, f"differs from sentence-transformers for {text[:30]!r}"
    one = onnx.embed([TEXTS[0]])[0]  # alone, unpadded: the same vector
    assert dot(one, got[0]) > 0.99999
    exported = list(cache.glob("*.onnx"))
    assert len(exported) == 1 and not list(cache.glob("*.part"))
    # A second embedder reuses the cached export (no torch export on the way).
    again = OnnxEmbedder(None, cache)
    again.load()
    assert list(cache.glob("*.onnx")) == exported
    assert dot(again.embed([TEXTS[0]])[0], one) > 0.99999


def test_fallback_takes_the_next_embedder_that_loads(
    tmp_path: Path, torch_model: SentenceTransformerEmbedder
) -> None:
    broken = OnnxEmbedder(tmp_path / "no-such-model", tmp_path / "cache")
    fallback = FallbackEmbedder([broken, torch_model])
    vector = fallback.embed(["hello there"])[0]
    assert fallback.chosen is torch_model
    assert dot(vector, torch_model.embed(["hello there"])[0]) > 0.99999
    with pytest.raises(ValueError, match=r"tokenizer\.json"):
        FallbackEmbedder([broken]).load()  # nothing left to fall back to: the cause surfaces


class Counting:
    """Wraps a real model; counts the texts it is asked to embed."""

    def __init__(self, model: SentenceTransformerEmbedder) -> None:
        self.model = model
        self.dimensions = model.dimensions
        self.texts: list[str] = []

    def load(self) -> None:
        self.model.load()

    def embed(self, texts: Sequence[str]) -> list[list[float]]:
        self.texts += texts
        return self.model.embed(texts)


async def test_batches_reuse_the_newest_query_vectors(
    torch_model: SentenceTransformerEmbedder,
) -> None:
    batches, queries = Counting(torch_model), Counting(torch_model)
    model = AsyncEmbedder(batches, query_embedder=queries, remember=2)
    try:
        first = await model.embed_query("the user's turn, embedded as the query")
        await model.embed_query("an older query")
        await model.embed_query("the newest query")  # past `remember`: the oldest goes
        got = await model.embed(["the user's turn, embedded as the query", "the newest query"])
        # The oldest query was dropped: the batch model embeds it; the newest is reused.
        assert batches.texts == ["the user's turn, embedded as the query"]
        assert model.reused == 1
        assert dot(got[0], first) > 0.99999
        assert dot(got[1], torch_model.embed(["the newest query"])[0]) > 0.99999
        # Reused once: a second batch with the same text runs the model.
        await model.embed(["the newest query"])
        assert batches.texts[-1] == "the newest query" and model.reused == 1
        # A batch that meets a query vector still being computed waits for it; callers
        # asking for the same text at once share one computation.
        queries.texts.clear()
        early = asyncio.ensure_future(model.embed_query("a turn being stored"))
        await asyncio.sleep(0)  # started, not finished
        again = asyncio.ensure_future(model.embed_query("a turn being stored"))
        batch = await model.embed(["a turn being stored"])
        assert queries.texts == ["a turn being stored"]
        assert batches.texts[-1] == "the newest query" and model.reused == 2
        assert dot(batch[0], await early) > 0.99999 and await again == await early
        # A caller that gives up does not cancel the computation the others wait for.
        first_caller = asyncio.ensure_future(model.embed_query("wanted by two"))
        await asyncio.sleep(0)
        second_caller = asyncio.ensure_future(model.embed_query("wanted by two"))
        await asyncio.sleep(0)
        first_caller.cancel()
        assert len(await second_caller) == 384
    finally:
        model.close()


def test_two_embedders_loading_at_once_export_once(tmp_path: Path) -> None:
    """`serve` loads its batch and query copies on two threads: with nothing cached yet,
    both must end up on ONNX (a clash over the export fell back to torch)."""
    first, second = OnnxEmbedder(None, tmp_path), OnnxEmbedder(None, tmp_path)
    with ThreadPoolExecutor(2) as pool:
        list(pool.map(lambda e: e.load(), [first, second]))
    assert len(list(tmp_path.glob("*.onnx"))) == 1 and not list(tmp_path.glob("*.part"))
    assert dot(first.embed(["same text"])[0], second.embed(["same text"])[0]) > 0.99999


def test_int8_queries_stay_close_to_the_fp32_vectors(
    tmp_path: Path, torch_model: SentenceTransformerEmbedder
) -> None:
    """`serve`'s two copies, fp32 for batches and int8 for queries, loading at once on an
    empty cache: the export once, its int8 copy once, and int8 vectors that rank as the
    stored fp32 ones do."""
    batches, queries = OnnxEmbedder(None, tmp_path), OnnxEmbedder(None, tmp_path, int8=True)
    with ThreadPoolExecutor(2) as pool:
        list(pool.map(lambda e: e.load(), [queries, batches]))
    files = sorted(p.name for p in tmp_path.iterdir())
    assert len(files) == 2 and files[0].endswith(".int8.onnx"), files
    int8 = queries.embed(TEXTS)
    for text, a, b in zip(TEXTS, int8, torch_model.embed(TEXTS), strict=True):
        assert abs(dot(a, a) - 1.0) < 1e-3, "unit length"
        # The bound holds on both kinds of CPU these tests meet: with AVX-512 VNNI the
        # worst of these texts is at ~0.98; with AVX2 alone ONNX Runtime's int8 kernels
        # are less exact, and the empty text comes to 0.968 (the mean still 0.983).
        assert 0.96 < dot(a, b) < 0.99999, f"int8 is not near (or is exactly) fp32 for {text!r}"
    # Each query finds the stored turn it is about, whichever copy computed the query.
    stored = batches.embed(
        [
            "The flight to Lisbon cost 300 euros.",
            "My sister adopted a kitten last week.",
            "We moved the database to PostgreSQL.",
        ]
    )
    asked = ["What did the plane ticket cost?", "Tell me about the new cat.", "Which DB?"]
    for want, (q8, q32) in enumerate(zip(queries.embed(asked), batches.embed(asked), strict=True)):
        for query in (q8, q32):
            scores = [dot(query, turn) for turn in stored]
            assert scores.index(max(scores)) == want, (asked[want], scores)
    # The cached int8 copy is reused. (Compared one text at a time: activations are
    # quantized per batch, so a text's int8 vector depends on its batch's other texts.)
    again = OnnxEmbedder(None, tmp_path, int8=True)
    assert dot(again.embed([TEXTS[0]])[0], queries.embed([TEXTS[0]])[0]) > 0.99999
    assert sorted(p.name for p in tmp_path.iterdir()) == files


def test_one_model_serves_several_query_threads_at_once(
    tmp_path: Path, torch_model: SentenceTransformerEmbedder
) -> None:
    """`serve` computes query vectors on several threads: one ONNX session runs them at
    once (its tokenizer takes turns) and torch, the fallback, takes its calls one at a
    time; either way each text gets its own vector, the same as alone."""
    onnx = OnnxEmbedder(None, tmp_path)
    onnx.load()
    texts = [f"{text} ({i})" for i in range(6) for text in TEXTS]
    for model in (onnx, torch_model):
        alone = [model.embed([t])[0] for t in texts]
        with ThreadPoolExecutor(4) as pool:
            together = list(pool.map(lambda t, m=model: m.embed([t])[0], texts))
        for text, a, b in zip(texts, alone, together, strict=True):  # none mixed up
            assert dot(a, b) > 0.99999, text[:40]
