"""Context strategies over hand-made sessions: the budget, the current turn, time order,
the summary rule, question/answer pairs, retrieval order and each strategy's behaviour."""

from __future__ import annotations

import dataclasses
import random
from collections.abc import Iterable
from datetime import UTC, datetime

import pytest

from domain.context import (
    MESSAGE_OVERHEAD_TOKENS,
    OTHER_SESSION_TOKENS,
    SECTION_LABEL_TOKENS,
    STRATEGIES,
    Budget,
    BudgetShares,
    Candidate,
    ContextBudgetTooSmall,
    ContextInputs,
    ContextWindow,
    Turn,
    UnknownStrategy,
    assemble,
)
from domain.context.window import SECTION_ORDER
from domain.errors import ValidationError
from tests.unit.test_context_sessions import (
    candidate,
    inputs_for,
    make_turn,
    make_turns,
    random_session,
    summary_to,
    version_of,
)

NOW = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
COST = 10 + MESSAGE_OVERHEAD_TOKENS  # a 10-token turn in the window


def build(
    inputs: ContextInputs,
    available: int,
    strategy: str = "hybrid",
    shares: BudgetShares | None = None,
    ratio: float = 1.0,
) -> ContextWindow:
    budget = Budget(
        limit_tokens=available + 100, reserve_output_tokens=100, model_token_ratio=ratio
    )
    # Worked examples below use these shares (they predate the retrieval-first default).
    return assemble(
        inputs,
        budget,
        shares or BudgetShares(recent=0.5, summary=0.15, retrieved=0.35),
        strategy,
        built_at=NOW,
    )


def seq_of(version: int | None) -> int:
    assert version is not None
    return (version - 1) // 2


def seqs(window: ContextWindow, kind: str) -> list[int]:
    """Seqs of this session's turns in the section."""
    section = next((s for s in window.sections if s.kind == kind), None)
    if section is None:
        return []
    return [seq_of(m.stream_version) for m in section.messages if m.session_id is None]


def foreign(window: ContextWindow) -> list[tuple[str | None, int]]:
    """(session, seq) of the retrieved turns from other sessions."""
    section = window.section("retrieved")
    if section is None:
        return []
    return [(m.session_id, seq_of(m.stream_version)) for m in section.messages if m.session_id]


def tokens_of(window: ContextWindow, kind: str) -> int:
    section = next((s for s in window.sections if s.kind == kind), None)
    return 0 if section is None else section.tokens


def loaded_turns(inputs: ContextInputs) -> dict[tuple[str | None, int], Turn]:
    known = {(t.session_id, t.seq): t for t in inputs.recent}
    for c in inputs.candidates:
        known.setdefault((c.turn.session_id, c.turn.seq), c.turn)
        if c.partner is not None:
            known.setdefault((c.partner.session_id, c.partner.seq), c.partner)
    return known


def partner_seq(turn: Turn) -> int | None:
    return {"user": turn.seq + 1, "assistant": turn.seq - 1}.get(turn.role)


def check_window(window: ContextWindow, inputs: ContextInputs, budget: Budget) -> None:
    """The invariants every strategy keeps."""
    assert window.used_tokens <= budget.available
    assert window.budget_tokens == budget.available
    assert window.used_tokens == sum(s.tokens for s in window.sections)
    for section in window.sections:
        assert section.messages
        assert section.tokens >= sum(m.tokens for m in section.messages)
        assert all(m.kind == section.kind for m in section.messages)
    kinds = [s.kind for s in window.sections]
    assert kinds == [k for k in SECTION_ORDER if k in kinds]

    # The current turn is always in, and last.
    messages = list(window.messages)
    assert messages[-1].source == inputs.current.global_position
    assert seqs(window, "current") == [inputs.current.seq]

    # Time (log) order in every section; nothing shown twice.
    recent, retrieved = seqs(window, "recent"), seqs(window, "retrieved")
    assert retrieved == sorted(set(retrieved))
    for ordered in (window.section("retrieved"), window.section("recent")):
        if ordered is not None:
            assert list(ordered.sources) == sorted(ordered.sources)
    turn_sources = [m.source for m in messages if m.stream_version is not None]
    assert len(turn_sources) == len(set(turn_sources))

    # The recent window is contiguous and ends right before the current turn; retrieved
    # turns are all older than it.
    start = recent[0] if recent else inputs.current.seq
    assert recent == list(range(start, inputs.current.seq))
    assert all(s < start for s in retrieved)
    assert [
        seq_of(m.stream_version) for m in messages if m.stream_version and not m.session_id
    ] == [
        *retrieved,
        *recent,
        inputs.current.seq,
    ]

    # A summary covers exactly what precedes the window: no overlap, no gap.
    summary = window.section("summary")
    if summary is not None:
        assert summary.covers is not None
        to_version = summary.covers[1]
        assert version_of(start) > to_version
        assert start > 1 and version_of(start - 1) <= to_version

    # Question/answer pairs are kept together when the partner was loaded.
    known = loaded_turns(inputs)
    shown = {(None, s) for s in retrieved} | set(foreign(window))
    for session, seq in shown:
        turn = known[(session, seq)]
        other = partner_seq(turn)
        if other is None or (session, other) not in known:
            continue
        if session is None and other >= start:
            continue  # in the window
        if {turn.role, known[(session, other)].role} == {"user", "assistant"}:
            assert (session, other) in shown, f"turn {seq} retrieved without its pair {other}"


def random_shares(rng: random.Random) -> BudgetShares:
    a, b = sorted([rng.random(), rng.random()])
    if rng.random() < 0.5:
        return BudgetShares()
    return BudgetShares(recent=a, summary=b - a, retrieved=rng.uniform(0, 1 - b))


def fixed_cost(inputs: ContextInputs, budget: Budget) -> int:
    cost = budget.message_cost(inputs.current.tokens)
    if inputs.system_prompt:
        cost += budget.message_cost(inputs.system_tokens)
    if inputs.state:
        cost += budget.message_cost(inputs.state_tokens) + SECTION_LABEL_TOKENS
    return cost


@pytest.mark.parametrize("seed", range(20))
def test_invariants_hold_for_random_sessions_budgets_and_strategies(seed: int) -> None:
    rng = random.Random(seed)
    for _ in range(40):
        inputs = random_session(rng)
        for _ in range(3):
            limit = rng.choice([rng.randint(1, 300), rng.randint(300, 3000), 50_000])
            budget = Budget(
                limit_tokens=limit,
                reserve_output_tokens=rng.randint(0, limit // 3),
                model_token_ratio=rng.choice([1.0, 1.0, 1.15, 0.5, 2.0]),
            )
            shares = random_shares(rng)
            for name in STRATEGIES:
                try:
                    window = assemble(inputs, budget, shares, name, built_at=NOW)
                except ContextBudgetTooSmall as error:
                    assert fixed_cost(inputs, budget) > budget.available
                    assert error.needed_tokens == fixed_cost(inputs, budget)
                    continue
                assert fixed_cost(inputs, budget) <= budget.available
                check_window(window, inputs, budget)
                assert window.strategy == name
                if name == "hybrid":  # the shares bound what is spent beyond the fixed part
                    room = budget.available - fixed_cost(inputs, budget)
                    caps = sum(
                        int(room * x) for x in (shares.recent, shares.summary, shares.retrieved)
                    )
                    assert window.used_tokens - fixed_cost(inputs, budget) <= caps


# --- the budget -------------------------------------------------------------------------------


def test_current_turn_that_does_not_fit_raises_with_the_tokens_needed() -> None:
    turns = [*make_turns(3), make_turn(4, tokens=500)]
    with pytest.raises(ContextBudgetTooSmall) as info:
        build(inputs_for(turns), available=400)
    assert isinstance(info.value, ValidationError)
    assert info.value.needed_tokens == 504
    assert info.value.available_tokens == 400
    assert "504 tokens" in str(info.value) and "400" in str(info.value)


def test_system_prompt_and_state_count_towards_what_must_fit() -> None:
    inputs = inputs_for(make_turns(2), system_prompt="rules", system_tokens=30)
    with pytest.raises(ContextBudgetTooSmall) as info:
        build(inputs, available=40)  # 34 + 14 needed
    assert info.value.needed_tokens == 48
    assert "system prompt 34" in str(info.value)
    window = build(inputs, available=48)
    assert window.used_tokens == 48
    assert [s.kind for s in window.sections] == ["system", "current"]


def test_exactly_the_current_turn_fits() -> None:
    window = build(inputs_for(make_turns(5)), available=COST)
    assert window.used_tokens == COST
    assert [s.kind for s in window.sections] == ["current"]


def test_unknown_strategy_is_refused_naming_the_known_ones() -> None:
    with pytest.raises(UnknownStrategy, match="hybrid"):
        build(inputs_for(make_turns(2)), available=100, strategy="magic")


def test_token_ratio_scales_stored_counts() -> None:
    turns = make_turns(10)
    window = build(inputs_for(turns), available=10_000, strategy="full", ratio=1.5)
    assert {m.tokens for m in window.messages} == {15 + MESSAGE_OVERHEAD_TOKENS}
    # Twice the tokens per turn: half as many turns fit.
    small = build(inputs_for(turns), available=5 * COST, strategy="sliding_window")
    doubled = build(inputs_for(turns), available=5 * COST, strategy="sliding_window", ratio=2.0)
    assert len(seqs(small, "recent")) == 4
    assert len(seqs(doubled, "recent")) == 1


# --- full and sliding_window ----------------------------------------------------------------


def test_full_shows_every_turn_when_they_fit() -> None:
    turns = make_turns(10)
    window = build(inputs_for(turns), available=10 * COST, strategy="full")
    assert seqs(window, "recent") == list(range(1, 10))
    assert window.used_tokens == 10 * COST
    assert window.notes == ()


def test_full_drops_the_oldest_first_when_over_budget() -> None:
    window = build(inputs_for(make_turns(10)), available=7 * COST + 3, strategy="full")
    assert seqs(window, "recent") == list(range(4, 10))
    assert window.notes == ("3 oldest turns left out: over budget",)


def test_sliding_window_stops_at_a_turn_that_does_not_fit() -> None:
    turns = make_turns(10, lambda seq: 1000 if seq == 6 else 10)
    window = build(inputs_for(turns), available=50 * COST, strategy="sliding_window")
    assert seqs(window, "recent") == [7, 8, 9]  # never skips turn 6 to reach older ones


def test_sliding_window_uses_only_the_turns_loaded() -> None:
    window = build(inputs_for(make_turns(30), recent_count=5), 1000, "sliding_window")
    assert seqs(window, "recent") == [25, 26, 27, 28, 29]


# --- the summary rule -------------------------------------------------------------------------

SUMMARY_COST = 30 + MESSAGE_OVERHEAD_TOKENS + SECTION_LABEL_TOKENS


def test_summary_strategy_shows_the_summary_and_the_turns_after_it() -> None:
    inputs = inputs_for(make_turns(100), summary=summary_to(60))
    window = build(inputs, available=1000, strategy="summary")
    assert seqs(window, "recent") == list(range(61, 100))
    section = window.section("summary")
    assert section is not None and section.covers == (1, version_of(60))
    assert section.tokens == SUMMARY_COST
    assert inputs.summary is not None
    assert section.sources == (inputs.summary.global_position,)
    assert [m.kind for m in window.messages][:2] == ["summary", "recent"]


def test_a_summary_reaching_into_the_window_cuts_the_window() -> None:
    inputs = inputs_for(make_turns(100), summary=summary_to(95))
    window = build(inputs, available=1000, strategy="summary")
    assert seqs(window, "recent") == [96, 97, 98, 99]
    assert window.section("summary") is not None


def test_a_summary_that_would_leave_a_gap_is_dropped() -> None:
    inputs = inputs_for(make_turns(100), summary=summary_to(20))
    window = build(inputs, available=30 * COST, strategy="summary")
    assert window.section("summary") is None
    assert seqs(window, "recent") == list(range(71, 100))
    assert len(window.notes) == 1 and "left out" in window.notes[0]


def test_no_summary_when_the_whole_history_fits() -> None:
    inputs = inputs_for(make_turns(10), summary=summary_to(5))
    for strategy in ("summary", "hybrid"):
        window = build(inputs, available=1000, strategy=strategy)
        assert window.section("summary") is None
        assert seqs(window, "recent") == list(range(1, 10))


def test_a_summary_covering_the_current_turn_is_dropped() -> None:
    inputs = inputs_for(make_turns(50), summary=summary_to(50))
    window = build(inputs, available=20 * COST, strategy="summary")
    assert window.section("summary") is None
    assert "current turn" in window.notes[0]


def test_summary_needs_the_turn_before_the_window_loaded() -> None:
    # Turns 90..99 loaded: the window takes them all; turn 89 is unknown, so a summary
    # ending at 80 might leave a gap (it does) and one ending at 89 cannot be checked.
    for covered in (80, 89):
        inputs = inputs_for(make_turns(100), recent_count=10, summary=summary_to(covered))
        window = build(inputs, available=1000, strategy="summary")
        assert window.section("summary") is None
        assert "not loaded" in window.notes[0]
    # Loaded (here as a candidate's partner), turn 89 shows that a summary to 89 fits.
    partner = make_turn(89)
    inputs = inputs_for(
        make_turns(100),
        recent_count=10,
        summary=summary_to(89),
        candidates=[candidate(make_turn(88), text_rank=1, partner=partner)],
    )
    window = build(inputs, available=1000, strategy="summary")
    assert window.section("summary") is not None
    assert seqs(window, "recent") == list(range(90, 100))


def test_summary_ending_just_before_the_window_needs_no_lookup() -> None:
    turns = make_turns(100)
    summary = dataclasses.replace(summary_to(89), to_version=version_of(90) - 1)
    window = build(inputs_for(turns, recent_count=10, summary=summary), 1000, "summary")
    assert window.section("summary") is not None


def test_a_summary_too_big_for_its_share_is_left_out() -> None:
    inputs = inputs_for(make_turns(200), summary=summary_to(150, tokens=400))
    window = build(inputs, available=1000 + COST)
    assert window.section("summary") is None
    assert "its share is 150" in window.notes[0]


# --- hybrid -----------------------------------------------------------------------------------


def test_hybrid_without_summary_or_candidates_gives_the_window_the_whole_budget() -> None:
    window = build(inputs_for(make_turns(200)), available=1000 + COST)
    assert len(seqs(window, "recent")) == 1000 // COST


def test_hybrid_respects_the_shares() -> None:
    turns = make_turns(200)
    old = [candidate(turns[s - 1], vector_rank=i + 1) for i, s in enumerate(range(1, 120, 2))]
    # Room after the current turn: 1000. Recent 500 + summary 150 (none given) = 650.
    window = build(inputs_for(turns, candidates=old, recent_count=60), available=1000 + COST)
    assert tokens_of(window, "recent") <= 650
    assert len(seqs(window, "recent")) == 650 // COST
    assert tokens_of(window, "retrieved") <= 1000 - tokens_of(window, "recent")
    assert window.used_tokens <= 1000 + COST

    with_summary = inputs_for(
        turns, candidates=old, recent_count=80, summary=summary_to(160, tokens=30)
    )
    window = build(with_summary, available=1000 + COST)
    assert tokens_of(window, "summary") == SUMMARY_COST <= 150
    assert seqs(window, "recent") == list(range(161, 200))  # 39 turns, 546 <= 650 - 54
    assert tokens_of(window, "retrieved") > 350  # its share, plus what the window left
    assert window.used_tokens <= 1000 + COST


def test_hybrid_shares_below_one_leave_the_rest_unused() -> None:
    turns = make_turns(200)
    shares = BudgetShares(recent=0.2, summary=0.0, retrieved=0.1)
    old = [candidate(turns[s - 1], text_rank=i + 1) for i, s in enumerate(range(1, 100, 2))]
    window = build(inputs_for(turns, candidates=old), 1000 + COST, shares=shares)
    assert window.used_tokens - COST <= 300


def test_hybrid_summary_covers_older_turns_and_retrieval_may_still_quote_them() -> None:
    turns = make_turns(200)
    inputs = inputs_for(
        turns,
        summary=summary_to(160),
        candidates=[candidate(turns[40], vector_rank=1)],  # turn 41, covered by the summary
    )
    window = build(inputs, available=1000 + COST)
    assert window.section("summary") is not None
    assert seqs(window, "retrieved") == [41, 42]
    assert [m.kind for m in window.messages] == [
        "summary",
        "retrieved",
        "retrieved",
        *["recent"] * 39,
        "current",
    ]


def test_hybrid_extends_the_window_with_what_retrieval_left() -> None:
    turns = make_turns(200)
    # Turn 150 sits just before the first window (turns 154..199); its pair is 149.
    inputs = inputs_for(turns, candidates=[candidate(turns[149], vector_rank=1)])
    window = build(inputs, available=1000 + COST)
    assert window.section("retrieved") is None  # both moved into the window
    assert seqs(window, "recent") == list(range(200 - 1000 // COST, 200))
    assert window.used_tokens <= 1000 + COST


def test_hybrid_extension_stops_before_a_turn_that_does_not_fit() -> None:
    turns = make_turns(200, lambda seq: 5000 if seq == 140 else 10)
    inputs = inputs_for(turns, candidates=[candidate(turns[9], vector_rank=1)])
    window = build(inputs, available=1000 + COST)
    assert seqs(window, "recent") == list(range(141, 200))
    assert seqs(window, "retrieved") == [9, 10]


# --- retrieval --------------------------------------------------------------------------------


def retrieval_inputs(candidates: Iterable[Candidate], count: int = 40) -> ContextInputs:
    # Only the last two turns loaded, so partners are known only where given.
    return inputs_for(make_turns(count), recent_count=2, candidates=list(candidates))


def test_retrieval_shows_only_retrieved_turns_and_the_current_one() -> None:
    turns = make_turns(40)
    inputs = inputs_for(
        turns, candidates=[candidate(turns[4], vector_rank=1), candidate(turns[20], text_rank=1)]
    )
    window = build(inputs, available=1000, strategy="retrieval")
    assert [s.kind for s in window.sections] == ["retrieved", "current"]
    assert seqs(window, "retrieved") == [5, 6, 21, 22]  # with their pairs, in time order


def test_retrieval_prefers_turns_both_searches_found() -> None:
    tool = [make_turn(s, role="tool") for s in (3, 9, 15)]  # tool turns have no pair
    inputs = retrieval_inputs(
        [
            candidate(tool[0], vector_rank=1),
            candidate(tool[1], text_rank=1),
            candidate(tool[2], vector_rank=2, text_rank=2),
        ]
    )
    window = build(inputs, available=COST + SECTION_LABEL_TOKENS + COST, strategy="retrieval")
    assert seqs(window, "retrieved") == [15]


def test_question_brings_its_answer_and_answer_its_question() -> None:
    turns = make_turns(40)
    inputs = retrieval_inputs(
        [
            candidate(turns[10], vector_rank=1, partner=turns[11]),  # user 11 -> 12
            candidate(turns[19], vector_rank=2),  # assistant 20 <- user 19, a candidate too
            candidate(turns[18], vector_rank=30),
            candidate(turns[29], text_rank=1),  # user 30: its answer was not loaded
        ]
    )
    window = build(inputs, available=1000, strategy="retrieval")
    assert seqs(window, "retrieved") == [11, 12, 19, 20, 30]


def test_a_pair_that_does_not_fit_is_skipped_whole() -> None:
    turns = make_turns(40)
    big_answer = make_turn(12, tokens=1000)
    inputs = retrieval_inputs(
        [
            candidate(turns[10], vector_rank=1, partner=big_answer),
            candidate(turns[30], vector_rank=2, partner=turns[31]),
        ]
    )
    window = build(inputs, available=500, strategy="retrieval")
    assert seqs(window, "retrieved") == [31, 32]


def test_mmr_prefers_a_diverse_turn_over_a_near_duplicate() -> None:
    tool = [make_turn(s, role="tool") for s in (3, 9, 15)]
    query = [1.0, 0.0, 0.0]
    ranked = [
        candidate(tool[0], vector_rank=1, embedding=[1.0, 0.05, 0.0]),
        candidate(tool[1], vector_rank=2, embedding=[1.0, 0.06, 0.0]),  # near duplicate
        candidate(tool[2], vector_rank=3, embedding=[0.3, 1.0, 0.0]),
    ]
    room = SECTION_LABEL_TOKENS + 2 * COST
    inputs = retrieval_inputs(ranked)
    inputs = dataclasses.replace(inputs, query_embedding=tuple(query))
    window = build(inputs, available=room + COST, strategy="retrieval")
    assert seqs(window, "retrieved") == [3, 15]
    # Without embeddings the fused order alone decides.
    plain = retrieval_inputs([candidate(c.turn, vector_rank=c.vector_rank) for c in ranked])
    window = build(plain, available=room + COST, strategy="retrieval")
    assert seqs(window, "retrieved") == [3, 9]


def test_candidates_without_a_rank_only_come_in_as_partners() -> None:
    turns = make_turns(40)
    inputs = retrieval_inputs(
        [candidate(turns[10]), candidate(turns[20], text_rank=1), candidate(turns[21])]
    )
    window = build(inputs, available=1000, strategy="retrieval")
    assert seqs(window, "retrieved") == [21, 22]


def test_the_same_turn_found_twice_is_shown_once() -> None:
    turns = make_turns(40)
    inputs = retrieval_inputs(
        [candidate(turns[10], vector_rank=1), candidate(turns[10], text_rank=1)]
    )
    window = build(inputs, available=1000, strategy="retrieval")
    assert seqs(window, "retrieved") == [11]


def test_turns_of_other_sessions_are_retrieved_whatever_their_seq() -> None:
    turns = make_turns(40)
    theirs = [make_turn(seq, session_id="older-trip") for seq in (21, 22, 23)]
    inputs = inputs_for(
        turns,
        candidates=[
            candidate(theirs[0], vector_rank=1, partner=theirs[1]),  # user 21 -> assistant 22
            candidate(theirs[2], text_rank=1),  # user 23: its answer not loaded
            candidate(turns[30], text_rank=2),  # ours, but in the window
        ],
    )
    window = build(inputs, available=2000)
    assert seqs(window, "recent") == list(range(1, 40))  # the whole session fits
    assert foreign(window) == [("older-trip", 21), ("older-trip", 22), ("older-trip", 23)]
    retrieved = window.section("retrieved")
    assert retrieved is not None
    assert {m.tokens for m in retrieved.messages} == {COST + OTHER_SESSION_TOKENS}
    assert list(retrieved.sources) == [21, 22, 23]


def test_the_label_stays_paid_while_turns_of_another_session_remain() -> None:
    turns = make_turns(200)
    theirs = make_turn(7, role="tool", session_id="older-trip")
    for extra in range(0, 3 * COST):
        inputs = inputs_for(
            turns,
            candidates=[
                candidate(turns[150], vector_rank=1),  # moves into the extended window
                candidate(theirs, vector_rank=2),
            ],
        )
        window = build(inputs, available=1000 + COST + extra)
        assert foreign(window) == [("older-trip", 7)]
        assert window.used_tokens <= 1000 + COST + extra
        assert tokens_of(window, "retrieved") == SECTION_LABEL_TOKENS + COST + OTHER_SESSION_TOKENS


def test_hybrid_does_not_retrieve_what_the_window_shows() -> None:
    turns = make_turns(20)
    inputs = inputs_for(turns, candidates=[candidate(t, vector_rank=t.seq) for t in turns[:-1]])
    window = build(inputs, available=1000)
    assert window.section("retrieved") is None
    assert seqs(window, "recent") == list(range(1, 20))


def test_recent_turns_out_of_order_or_with_holes_are_handled() -> None:
    turns = make_turns(12)
    shuffled = [turns[3], turns[10], turns[9], turns[7], turns[8]]  # 4, 11, 10, 8, 9; 7 missing
    inputs = ContextInputs(session_id="s", model="m", current=turns[11], recent=tuple(shuffled))
    window = build(inputs, available=1000, strategy="full")
    assert seqs(window, "recent") == [8, 9, 10, 11]  # stops at the hole before 8


def test_state_and_system_prompt_come_first() -> None:
    turns = make_turns(100)
    inputs = inputs_for(
        turns,
        system_prompt="be brief",
        system_tokens=3,
        state={"city": "Lisbon", "nights": 3},
        state_tokens=12,
        summary=summary_to(90),
        candidates=[candidate(turns[10], vector_rank=1)],
    )
    window = build(inputs, available=2000)
    assert [s.kind for s in window.sections] == [
        "system",
        "state",
        "summary",
        "retrieved",
        "recent",
        "current",
    ]
    state = window.section("state")
    assert state is not None
    assert state.messages[0].content == '{"city": "Lisbon", "nights": 3}'
    assert state.tokens == 12 + MESSAGE_OVERHEAD_TOKENS + SECTION_LABEL_TOKENS


def test_hybrid_is_fast_enough_for_every_call() -> None:
    import time

    rng = random.Random(7)
    turns = make_turns(500, lambda _s: rng.randint(5, 200))
    dims = 384
    candidates = [
        candidate(
            turns[s],
            vector_rank=i + 1,
            text_rank=(i % 7) + 1 if i % 2 else None,
            embedding=[rng.uniform(-1, 1) for _ in range(dims)],
        )
        for i, s in enumerate(rng.sample(range(400), 100))
    ]
    inputs = inputs_for(
        turns,
        recent_count=200,
        summary=summary_to(450),
        candidates=candidates,
        query_embedding=[rng.uniform(-1, 1) for _ in range(dims)],
    )
    budget = Budget(limit_tokens=16_000, reserve_output_tokens=1000)
    assemble(inputs, budget, built_at=NOW)  # warm up
    started = time.perf_counter()
    for _ in range(5):
        window = assemble(inputs, budget, built_at=NOW)
    elapsed = (time.perf_counter() - started) / 5
    check_window(window, inputs, budget)
    assert window.section("retrieved") is not None
    assert elapsed < 0.025, f"{elapsed * 1000:.1f} ms per window"  # ~2 ms here


# --- messages kept on turns -------------------------------------------------------------------


def test_a_recent_turn_shows_the_same_message_in_the_next_window() -> None:
    """The recent section's message is kept on its Turn (the reader's tail cache hands
    the same turns to the next call): equal to a fresh one, built again only when the
    turn's cost differs (another model's token ratio), and invisible to eq and hash."""
    turns = make_turns(6)
    first = build(inputs_for(turns), available=10_000, strategy="sliding_window")
    again = build(inputs_for(turns), available=10_000, strategy="sliding_window")
    fresh = build(
        inputs_for([dataclasses.replace(t) for t in turns]),
        available=10_000,
        strategy="sliding_window",
    )
    recent = first.section("recent")
    assert recent is not None and len(recent.messages) == 5
    kept = again.section("recent")
    assert kept is not None
    assert all(a is b for a, b in zip(recent.messages, kept.messages, strict=True))
    assert first == again == fresh
    assert not any(a is b for a, b in zip(first.messages, fresh.messages, strict=True))
    scaled = build(inputs_for(turns), available=10_000, strategy="sliding_window", ratio=2.0)
    assert {m.tokens for m in scaled.messages} == {20 + MESSAGE_OVERHEAD_TOKENS}
    assert turns[0] == dataclasses.replace(turns[0]) and hash(turns[0]) == hash(
        dataclasses.replace(turns[0])
    )
    assert "_recent_message" not in repr(turns[0])
