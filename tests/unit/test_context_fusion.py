"""Reciprocal rank fusion, cosine similarity and maximal marginal relevance."""

from __future__ import annotations

import math
import random

import pytest

from domain.context.fusion import Diversifier, cosine, mmr, rrf

# --- rrf --------------------------------------------------------------------------------------


def test_rrf_scores_are_sums_of_reciprocal_ranks() -> None:
    fused = dict(rrf([["a", "b"], ["b", "c"]], k=60))
    assert fused["a"] == pytest.approx(1 / 61)
    assert fused["b"] == pytest.approx(1 / 62 + 1 / 61)
    assert fused["c"] == pytest.approx(1 / 62)


def test_rrf_puts_what_both_rankings_found_first() -> None:
    order = [key for key, _ in rrf([["a", "b", "c"], ["c", "d", "b"]])]
    assert order[:2] == ["b", "c"] or order[:2] == ["c", "b"]
    assert order[0] == "c"  # ranks 3 + 1 beat ranks 2 + 3
    assert set(order) == {"a", "b", "c", "d"}


def test_rrf_breaks_ties_by_first_appearance() -> None:
    assert [key for key, _ in rrf([["x", "y"], ["y", "x"]])] == ["x", "y"]
    assert [key for key, _ in rrf([["p"], ["q"], ["r"]])] == ["p", "q", "r"]


def test_rrf_k_sets_how_much_the_top_ranks_weigh() -> None:
    # a: first in one list; b: second in both. A small k favours the single top hit.
    rankings = [["a", "b"], ["c", "b"]]
    assert rrf(rankings, k=0)[0][0] == "a"
    assert rrf(rankings, k=60)[0][0] == "b"


def test_rrf_of_nothing_is_empty() -> None:
    assert rrf([]) == []
    assert rrf([[], []]) == []


# --- cosine -----------------------------------------------------------------------------------


def test_cosine_of_known_vectors() -> None:
    assert cosine([1.0, 0.0], [2.0, 0.0]) == pytest.approx(1.0)
    assert cosine([1.0, 0.0], [0.0, 3.0]) == pytest.approx(0.0)
    assert cosine([1.0, 1.0], [-1.0, -1.0]) == pytest.approx(-1.0)
    assert cosine([1.0, 2.0, 3.0], [4.0, 5.0, 6.0]) == pytest.approx(32 / math.sqrt(14 * 77))


def test_cosine_of_a_zero_vector_is_zero() -> None:
    assert cosine([0.0, 0.0], [1.0, 2.0]) == 0.0


def test_cosine_refuses_different_dimensions() -> None:
    with pytest.raises(ValueError, match="dimensions"):
        cosine([1.0], [1.0, 2.0])


# --- mmr --------------------------------------------------------------------------------------

# A question about two topics; "a" and "a-copy" say the same about the first, "b" is
# about the second and slightly less relevant than both.
QUERY = [1.0, 1.0, 0.0]
NEAR_DUPLICATES = [
    ("a", [1.0, 0.0, 0.1]),
    ("a-copy", [1.0, -0.02, 0.1]),
    ("b", [0.0, 1.0, 0.3]),
]


def test_mmr_prefers_a_diverse_candidate_over_a_near_duplicate() -> None:
    assert mmr(NEAR_DUPLICATES, QUERY, limit=2) == ["a", "b"]


def test_mmr_with_lambda_one_is_relevance_order() -> None:
    assert mmr(NEAR_DUPLICATES, QUERY, lambda_=1.0) == ["a", "a-copy", "b"]


def test_mmr_with_lambda_zero_picks_for_novelty_after_the_first() -> None:
    candidates = [("x", [1.0, 0.0]), ("x2", [0.99, 0.01]), ("y", [0.0, 1.0])]
    assert mmr(candidates, [1.0, 0.0], lambda_=0.0)[1] == "y"


def test_mmr_returns_each_candidate_once_up_to_the_limit() -> None:
    rng = random.Random(3)
    candidates = [(i, [rng.uniform(-1, 1) for _ in range(16)]) for i in range(40)]
    query = [rng.uniform(-1, 1) for _ in range(16)]
    everything = mmr(candidates, query)
    assert sorted(everything) == list(range(40))
    assert mmr(candidates, query, limit=7) == everything[:7]
    assert mmr(candidates, query, limit=0) == []


def textbook_mmr(
    candidates: list[tuple[int, list[float]]], query: list[float], lam: float
) -> list[int]:
    """The eager loop: every step scores every item left against everything chosen."""
    relevance = {i: cosine(query, e) for i, e in candidates}
    vectors = dict(candidates)
    chosen: list[int] = []
    left = [i for i, _ in candidates]

    def score(i: int) -> float:
        sims = [cosine(vectors[i], vectors[s]) for s in chosen]
        return lam * relevance[i] - (1 - lam) * max([0.0, *sims])

    while left:
        best = max(left, key=lambda i: (round(score(i), 9), -i))
        chosen.append(best)
        left.remove(best)
    return chosen


def test_mmr_matches_the_textbook_definition() -> None:
    """The lazy implementation picks what the eager O(k * n) loop picks."""
    rng = random.Random(11)
    for _ in range(30):
        n = rng.randint(1, 25)
        candidates = [(i, [rng.uniform(-1, 1) for _ in range(6)]) for i in range(n)]
        query = [rng.uniform(-1, 1) for _ in range(6)]
        lam = rng.choice([0.0, 0.3, 0.7, 1.0])
        assert mmr(candidates, query, lambda_=lam) == textbook_mmr(candidates, query, lam)


def test_mmr_takes_a_relevance_mapping_instead_of_a_query() -> None:
    relevance = {"a": 0.1, "a-copy": 0.2, "b": 1.0}
    assert mmr(NEAR_DUPLICATES, None, relevance=relevance)[0] == "b"
    with pytest.raises(ValueError, match="query_embedding"):
        mmr(NEAR_DUPLICATES, None)


def test_mmr_candidates_without_embeddings_get_no_similarity_penalty() -> None:
    candidates: list[tuple[str, list[float] | None]] = [
        ("a", [1.0, 0.0]),
        ("a2", [1.0, 0.0]),
        ("text-only", None),
    ]
    relevance = {"a": 1.0, "a2": 0.9, "text-only": 0.5}
    assert mmr(candidates, None, relevance=relevance) == ["a", "text-only", "a2"]


def test_mmr_refuses_bad_lambda_and_mixed_dimensions() -> None:
    with pytest.raises(ValueError, match="lambda_"):
        mmr(NEAR_DUPLICATES, QUERY, lambda_=1.5)
    with pytest.raises(ValueError, match="dimensions"):
        Diversifier([("a", [1.0]), ("b", [1.0, 0.0])], {"a": 1.0, "b": 1.0})


def test_a_popped_item_that_was_not_selected_does_not_penalize_others() -> None:
    picker = Diversifier(NEAR_DUPLICATES, {"a": 1.0, "a-copy": 0.95, "b": 0.5})
    assert picker.pop() == "a"  # did not fit: not selected
    assert picker.pop() == "a-copy"  # so its near duplicate is not penalized
    picker.select("a-copy")
    assert picker.pop() == "b"
    assert picker.pop() is None
    assert len(picker) == 0


def test_selecting_a_waiting_item_removes_it_and_penalizes_its_duplicates() -> None:
    picker = Diversifier(NEAR_DUPLICATES, {"a": 1.0, "a-copy": 0.95, "b": 0.6})
    picker.select("a")  # e.g. brought in as a pair partner
    assert len(picker) == 2
    assert picker.pop() == "b"
