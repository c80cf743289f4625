"""Hand-made sessions for the context engine's tests, and checks of the helpers themselves.

A session's turns alternate user (odd seq) / assistant (even seq). Each turn is followed
in the stream by one non-turn event (a ContextAssembled, say), so turn `seq` sits at
stream version 2 * seq + 1 (SessionOpened is version 1) and versions of turns have gaps,
as they do in the real log.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta

from domain.context import Candidate, ContextInputs, Summary, Turn

T0 = datetime(2026, 1, 1, tzinfo=UTC)


def version_of(seq: int) -> int:
    return 2 * seq + 1


def position_of(seq: int) -> int:
    return 1000 + 10 * seq


def make_turn(
    seq: int,
    tokens: int = 10,
    role: str | None = None,
    content: str = "",
    session_id: str | None = None,
) -> Turn:
    """Turn `seq` of this session, or of another one (`session_id`), which came earlier:
    its turns sit at global positions 1..999, below this session's."""
    position = position_of(seq) if session_id is None else seq
    return Turn(
        seq=seq,
        stream_version=version_of(seq),
        global_position=position,
        role=role or ("user" if seq % 2 else "assistant"),
        content=content or (f"turn {seq}" if session_id is None else f"{session_id} {seq}"),
        tokens=tokens,
        created_at=T0 + timedelta(minutes=seq),
        session_id=session_id,
    )


def make_turns(count: int, tokens: int | Callable[[int], int] = 10) -> list[Turn]:
    """Turns 1..count, oldest first."""
    size = tokens if callable(tokens) else (lambda _seq: tokens)
    return [make_turn(seq, size(seq)) for seq in range(1, count + 1)]


def summary_to(seq: int, tokens: int = 30, level: int = 0) -> Summary:
    """A summary of turns 1..seq (its to_version is that turn's version)."""
    return Summary(
        text=f"summary of turns 1-{seq}",
        tokens=tokens,
        level=level,
        from_version=1,
        to_version=version_of(seq),
        global_position=position_of(seq) + 5,
    )


def candidate(
    turn: Turn,
    vector_rank: int | None = None,
    text_rank: int | None = None,
    embedding: Sequence[float] | None = None,
    partner: Turn | None = None,
) -> Candidate:
    return Candidate(
        turn=turn,
        vector_rank=vector_rank,
        text_rank=text_rank,
        embedding=tuple(embedding) if embedding is not None else None,
        partner=partner,
    )


def inputs_for(
    turns: Sequence[Turn],
    *,
    recent_count: int | None = None,
    summary: Summary | None = None,
    candidates: Sequence[Candidate] = (),
    system_prompt: str | None = None,
    system_tokens: int = 0,
    state: dict[str, object] | None = None,
    state_tokens: int = 0,
    query_embedding: Sequence[float] | None = None,
) -> ContextInputs:
    """Inputs with the last turn as the current one and the `recent_count` before it
    (all of them by default) as the recent turns, newest first."""
    *older, current = turns
    recent = list(reversed(older))
    if recent_count is not None:
        recent = recent[:recent_count]
    return ContextInputs(
        session_id="s-1",
        model="gpt-test",
        current=current,
        recent=tuple(recent),
        system_prompt=system_prompt,
        system_tokens=system_tokens,
        state=state,
        state_tokens=state_tokens,
        summary=summary,
        candidates=tuple(candidates),
        query_embedding=tuple(query_embedding) if query_embedding is not None else None,
    )


def random_session(rng: random.Random, dims: int = 8) -> ContextInputs:
    """A random session: token sizes, a summary (or none), search candidates with ranks,
    embeddings and some partners, a system prompt and state (or none)."""
    count = rng.randint(1, 60)
    turns = make_turns(count, lambda _seq: rng.choice([0, 1, 5, 20, 50, 120, 400]))
    older = turns[:-1]
    summary = None
    if older and rng.random() < 0.6:
        summary = summary_to(rng.randint(1, len(older)), tokens=rng.choice([5, 40, 300]))
    candidates = []
    if older and rng.random() < 0.8:
        near = older[-12:] if rng.random() < 0.5 else older  # sometimes just before the window
        picked = rng.sample(near, rng.randint(1, min(len(near), 25)))
        vector_order = list(picked)
        rng.shuffle(vector_order)
        for turn in picked:
            rank_v = vector_order.index(turn) + 1 if rng.random() < 0.8 else None
            rank_t = rng.randint(1, 30) if rng.random() < 0.5 else None
            embedding = [rng.uniform(-1, 1) for _ in range(dims)] if rng.random() < 0.8 else None
            partner = None
            if rng.random() < 0.5:
                other = turn.seq + 1 if turn.role == "user" else turn.seq - 1
                if 1 <= other <= len(older):
                    partner = turns[other - 1]
            candidates.append(candidate(turn, rank_v, rank_t, embedding, partner))
    if rng.random() < 0.5:  # turns of the user's other session, seqs overlapping ours
        for seq in rng.sample(range(1, 80), rng.randint(1, 6)):
            turn = make_turn(seq, rng.choice([1, 20, 100]), session_id="other")
            partner = None
            if rng.random() < 0.5:
                partner = make_turn(seq + 1 if seq % 2 else seq - 1, 10, session_id="other")
            rank_v = rng.randint(1, 30) if rng.random() < 0.7 else None
            candidates.append(candidate(turn, rank_v, rng.randint(1, 30), None, partner))
    return inputs_for(
        turns,
        recent_count=rng.choice([None, 0, 3, 10, 30]),
        summary=summary,
        candidates=candidates,
        system_prompt="be helpful" if rng.random() < 0.5 else None,
        system_tokens=rng.choice([3, 30]),
        state={"step": rng.randint(0, 9)} if rng.random() < 0.3 else None,
        state_tokens=7,
        query_embedding=[rng.uniform(-1, 1) for _ in range(dims)],
    )


def test_turns_alternate_with_gaps_in_versions() -> None:
    turns = make_turns(4)
    assert [t.role for t in turns] == ["user", "assistant", "user", "assistant"]
    assert [t.seq for t in turns] == [1, 2, 3, 4]
    assert [t.stream_version for t in turns] == [3, 5, 7, 9]


def test_inputs_take_the_last_turn_as_current_and_the_rest_newest_first() -> None:
    turns = make_turns(5)
    inputs = inputs_for(turns, recent_count=2)
    assert inputs.current == turns[-1]
    assert [t.seq for t in inputs.recent] == [4, 3]


def test_summary_to_covers_up_to_the_turns_version() -> None:
    assert summary_to(3).to_version == make_turn(3).stream_version
