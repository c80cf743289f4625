"""AsyncEmbedder: the batch and query threads, and vectors started ahead of need."""

from __future__ import annotations

import asyncio
import os
import threading
import time
from collections.abc import Sequence

import pytest

from adapters.embedder import BATCH_NICENESS, AsyncEmbedder


class Slow:
    """A model that takes `seconds` a call and counts the texts it embedded."""

    dimensions = 1

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self.texts: list[str] = []

    def load(self) -> None:
        pass

    def embed(self, texts: Sequence[str]) -> list[list[float]]:
        time.sleep(self.seconds)
        self.texts.extend(texts)
        return [[float(len(t))] for t in texts]


async def test_batches_run_on_a_niced_thread_and_queries_do_not() -> None:
    """The batch thread yields the CPU to requests; the query thread (on the request
    path) keeps the process's priority."""

    class Probe:
        dimensions = 1

        def load(self) -> None:
            pass

        def embed(self, texts: Sequence[str]) -> list[list[float]]:
            nice = os.getpriority(os.PRIO_PROCESS, threading.get_native_id())
            return [[float(nice)] for _ in texts]

    base = os.getpriority(os.PRIO_PROCESS, 0)
    model = AsyncEmbedder(Probe(), query_embedder=Probe())
    assert await model.embed(["a batch"]) == [[float(BATCH_NICENESS)]]
    assert await model.embed_query("a query") == [float(base)]
    # Without a thread of its own a query shares the batch thread, so nothing is niced.
    shared = AsyncEmbedder(Probe())
    assert await shared.embed(["a batch"]) == [[float(base)]]


async def test_vectors_started_ahead_are_bounded_so_a_needed_one_never_waits_long() -> None:
    """Twenty turns arrive at once, none of whose windows needs its vector yet: only
    `max_ahead` are queued on the query thread. A vector then needed waits behind at
    most those, not behind twenty (unbounded, this wait was ~3 s under load)."""
    query = Slow(0.05)
    model = AsyncEmbedder(Slow(0), query_embedder=query, max_ahead=2)
    started = [model.embed_query_ahead(f"turn {i}") for i in range(20)]
    assert started == [True, True] + [False] * 18
    assert model.skipped_ahead == 18
    assert model.embed_query_ahead("turn 0")  # already on its way: nothing more queued
    t0 = time.perf_counter()
    assert await model.embed_query("the one a window needs") == [22.0]
    assert time.perf_counter() - t0 < 0.5  # behind two vectors (0.1 s), not twenty (1 s)
    # The two started ahead are remembered: asking for them computes nothing again.
    assert await model.embed_query("turn 1") == [6.0]
    assert query.texts == ["turn 0", "turn 1", "the one a window needs"]
    # Room again once the thread is idle.
    assert model.embed_query_ahead("turn 2")
    await asyncio.sleep(0.2)
    assert query.texts[-1] == "turn 2"


async def test_a_failed_vector_started_ahead_is_reported_to_who_needs_it() -> None:
    class Broken(Slow):
        def embed(self, texts: Sequence[str]) -> list[list[float]]:
            raise RuntimeError("model gone")

    model = AsyncEmbedder(Slow(0), query_embedder=Broken(0))
    assert model.embed_query_ahead("hello")
    await asyncio.sleep(0.05)  # failed meanwhile, and not remembered: asked again, it fails
    with pytest.raises(RuntimeError, match="model gone"):
        await model.embed_query("hello")
    assert model._queued == 0
