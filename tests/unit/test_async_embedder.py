"""AsyncEmbedder: the batch and query threads, and how query vectors are shared."""

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


async def test_batches_run_on_a_niced_idle_policy_thread_and_queries_do_not() -> None:
    """The batch thread yields the CPU to requests (nice 19 and, on Linux, SCHED_IDLE);
    the query thread (on the request path) keeps the process's priority and policy."""

    class Probe:
        dimensions = 1

        def load(self) -> None:
            pass

        def embed(self, texts: Sequence[str]) -> list[list[float]]:
            tid = threading.get_native_id()
            nice = os.getpriority(os.PRIO_PROCESS, tid)
            return [[float(nice), float(os.sched_getscheduler(tid))] for _ in texts]

    base = os.getpriority(os.PRIO_PROCESS, 0)
    policy = os.sched_getscheduler(0)
    model = AsyncEmbedder(Probe(), query_embedder=Probe())
    assert await model.embed(["a batch"]) == [[float(BATCH_NICENESS), float(os.SCHED_IDLE)]]
    assert await model.embed_query("a query") == [float(base), float(policy)]
    # Without a thread of its own a query shares the batch thread, so nothing is niced.
    shared = AsyncEmbedder(Probe())
    assert await shared.embed(["a batch"]) == [[float(base), float(policy)]]


async def test_callers_of_one_text_share_its_vector_and_a_failure_is_not_remembered() -> None:
    """Two callers asking for one text at once get one computation; a vector that
    failed is reported to every caller that waited for it and computed again when
    asked again (nothing is left pending)."""
    query = Slow(0.05)
    model = AsyncEmbedder(Slow(0), query_embedder=query)
    first, second = await asyncio.gather(model.embed_query("hello"), model.embed_query("hello"))
    assert first == second == [5.0]
    assert query.texts == ["hello"]
    assert await model.embed_query("hello") == [5.0]  # remembered: not computed again
    assert query.texts == ["hello"]

    class Broken(Slow):
        def embed(self, texts: Sequence[str]) -> list[list[float]]:
            self.texts.extend(texts)
            raise RuntimeError("model gone")

    broken = Broken(0)
    failing = AsyncEmbedder(Slow(0), query_embedder=broken)
    results = await asyncio.gather(
        failing.embed_query("hi"), failing.embed_query("hi"), return_exceptions=True
    )
    assert [str(r) for r in results] == ["model gone", "model gone"]
    with pytest.raises(RuntimeError, match="model gone"):
        await failing.embed_query("hi")
    assert broken.texts == ["hi", "hi"]  # once for the two callers, once when asked again
    assert failing._pending == {}


async def test_queries_run_on_as_many_threads_as_asked() -> None:
    """Distinct queries at once use every query thread (the model allows it); texts
    asked twice still share one computation."""

    class Counting(Slow):
        def __init__(self) -> None:
            super().__init__(0.2)
            self.now = self.most = 0
            self.guard = threading.Lock()

        def embed(self, texts: Sequence[str]) -> list[list[float]]:
            with self.guard:
                self.now += 1
                self.most = max(self.most, self.now)
            try:
                return super().embed(texts)
            finally:
                with self.guard:
                    self.now -= 1

    for threads in (1, 3):
        query = Counting()
        model = AsyncEmbedder(Slow(0), query_embedder=query, query_threads=threads)
        try:
            texts = ["a", "bb", "ccc", "a"]
            vectors = await asyncio.gather(*(model.embed_query(t) for t in texts))
            assert vectors == [[1.0], [2.0], [3.0], [1.0]]
            assert query.most == threads and sorted(query.texts) == ["a", "bb", "ccc"]
        finally:
            model.close()
