"""Ranking helpers for retrieval: reciprocal rank fusion, cosine similarity and maximal
marginal relevance. Pure Python over small candidate sets (<= ~100 items); MMR is lazy
(see Diversifier), so it compares far fewer pairs than k picks * n items.
"""

from __future__ import annotations

import heapq
import math
import operator
from collections.abc import Hashable, Iterable, Mapping, Sequence
from typing import Generic, TypeVar

K = TypeVar("K", bound=Hashable)

RRF_K = 60  # the constant of Cormack et al. (2009); damps the weight of the top ranks


def rrf(rankings: Iterable[Sequence[K]], k: int = RRF_K) -> list[tuple[K, float]]:
    """Reciprocal rank fusion: score(id) = sum over rankings of 1 / (k + rank), rank
    1-based. Best first; ties keep the order in which ids were first seen."""
    scores: dict[K, float] = {}
    for ranking in rankings:
        for rank, key in enumerate(ranking, start=1):
            scores[key] = scores.get(key, 0.0) + 1.0 / (k + rank)
    order = {key: i for i, key in enumerate(scores)}
    return sorted(scores.items(), key=lambda item: (-item[1], order[item[0]]))


def _dot(a: Sequence[float], b: Sequence[float]) -> float:
    total: float = sum(map(operator.mul, a, b))
    return total


def _fast_cosine(a: tuple[Sequence[float], float], b: tuple[Sequence[float], float]) -> float:
    """Cosine of two (vector, norm) pairs by |a - b|^2 = |a|^2 + |b|^2 - 2 a.b: math.dist
    runs in C, about 4x faster than a dot product in Python."""
    (u, nu), (v, nv) = a, b
    return (nu * nu + nv * nv - math.dist(u, v) ** 2) / (2.0 * nu * nv)


def cosine(a: Sequence[float], b: Sequence[float]) -> float:
    """Cosine similarity in [-1, 1]; 0.0 when either vector is zero."""
    if len(a) != len(b):
        raise ValueError(f"vectors of different dimensions: {len(a)} and {len(b)}")
    norms = math.hypot(*a) * math.hypot(*b)
    return 0.0 if norms == 0.0 else _dot(a, b) / norms


class Diversifier(Generic[K]):
    """Maximal marginal relevance, one pick at a time (Carbonell & Goldstein, 1998):

        next = argmax  lambda * relevance(d) - (1 - lambda) * max sim(d, s), s selected

    Items without an embedding have no similarity to anything (no penalty), and a
    similarity below 0 gives no bonus. `pop()` takes the best remaining item without
    counting it as selected, because the caller may find it does not fit; `select(key)`
    counts an item (popped or still waiting) as shown.

    Lazy greedy: an item's score only falls as the selection grows, so a heap holds upper
    bounds and only the item on top is compared with the items selected since its bound
    was computed. Most items are never compared with most of the selection.
    """

    def __init__(
        self,
        items: Sequence[tuple[K, Sequence[float] | None]],
        relevance: Mapping[K, float],
        lambda_: float = 0.7,
    ) -> None:
        if not 0.0 <= lambda_ <= 1.0:
            raise ValueError(f"lambda_ must be between 0 and 1, not {lambda_}")
        self._lambda = lambda_
        self._relevance = relevance
        # key -> (vector, its norm); zero vectors are like missing ones.
        self._vectors: dict[K, tuple[Sequence[float], float]] = {}
        for key, vector in items:
            if vector is not None and (norm := math.hypot(*vector)) > 0.0:
                # A tuple: math.dist would copy any other sequence into one per compare.
                self._vectors[key] = (tuple(vector), norm)
        if len({len(v) for v, _ in self._vectors.values()}) > 1:
            raise ValueError("embeddings of different dimensions")
        self._selected: list[tuple[Sequence[float], float]] = []
        # key -> (max similarity so far, how many of _selected it was compared with)
        self._waiting: dict[K, tuple[float, int]] = {}
        self._heap: list[tuple[float, int, K]] = []
        for order, (key, _) in enumerate(items):
            if key not in self._waiting:
                self._waiting[key] = (0.0, 0)
                self._heap.append((-lambda_ * relevance.get(key, 0.0), order, key))
        heapq.heapify(self._heap)

    def __len__(self) -> int:
        return len(self._waiting)

    def pop(self) -> K | None:
        heap, selected = self._heap, self._selected
        while heap:
            _, order, key = heap[0]
            state = self._waiting.get(key)
            if state is None:  # selected while waiting
                heapq.heappop(heap)
                continue
            most_similar, compared = state
            if compared < len(selected):
                own = self._vectors.get(key)
                if own is not None:
                    for other in selected[compared:]:
                        most_similar = max(most_similar, _fast_cosine(own, other))
                self._waiting[key] = (most_similar, len(selected))
                relevance = self._relevance.get(key, 0.0)
                score = self._lambda * relevance - (1 - self._lambda) * most_similar
                heapq.heapreplace(heap, (-score, order, key))
                continue
            heapq.heappop(heap)
            del self._waiting[key]
            return key
        return None

    def select(self, key: K) -> None:
        self._waiting.pop(key, None)
        own = self._vectors.get(key)
        if own is not None:
            self._selected.append(own)


def mmr(
    candidates: Sequence[tuple[K, Sequence[float] | None]],
    query_embedding: Sequence[float] | None,
    lambda_: float = 0.7,
    limit: int | None = None,
    relevance: Mapping[K, float] | None = None,
) -> list[K]:
    """Up to `limit` keys of `candidates` ((key, embedding) pairs) in MMR order.
    Relevance is cosine similarity to `query_embedding` unless `relevance` is given."""
    if relevance is None:
        if query_embedding is None:
            raise ValueError("mmr needs a query_embedding or a relevance mapping")
        relevance = {
            key: (cosine(query_embedding, e) if e is not None else 0.0) for key, e in candidates
        }
    picker = Diversifier(candidates, relevance, lambda_)
    out: list[K] = []
    while limit is None or len(out) < limit:
        key = picker.pop()
        if key is None:
            break
        picker.select(key)
        out.append(key)
    return out
