"""Context strategies: pure functions from what the adapters loaded to the sections of a
window. `assemble` runs one by name and makes the document.

Every strategy puts in the system prompt, the state and the current turn first; if those
alone exceed `budget.available` it raises ContextBudgetTooSmall. What is left, R, is
spent by the strategy, and `used_tokens` never exceeds `budget.available`.

- `full`: the adapter passes every turn in `recent`; all are shown, the oldest dropped
  first only when R is exceeded. `sliding_window`: the same selection over the bounded
  `recent` the adapter loaded: the newest turns while R lasts. (The two differ in what
  the adapter loads and in the name recorded.)
- `summary`: the newest summary (it has priority on R) and the recent turns after it,
  when the summary fits the window by the rule below; otherwise like `sliding_window`.
- `retrieval`: retrieved candidates (older than the current turn) in R, and the current turn.
- `hybrid` (default): recent window, summary and retrieved turns within their shares.

The recent window is always contiguous: the newest turns before the current one, taken
newest first until the next does not fit (an older turn is never taken past a gap).

Summary rule (no gap, no overlap). A summary stands for everything up to its
`to_version` (rolling summaries start at the session's start; `from_version` is recorded
in the section's `covers`, not checked). It is shown only if the recent window starts
right after it: the window holds every turn with a version above `to_version` and none
at or below it, and the turn just before the window has a version at or below
`to_version`. So:
- if the window could reach the session's first turn, no summary is shown (the
  verbatim history is better);
- a summary that reaches into the window cuts the window to the turns after it (those
  it covers are not repeated);
- a summary that ends before the turn preceding the window (the window's budget cannot
  hold every turn since the summary) would leave a gap: it is dropped;
- a summary that covers the current turn is dropped, and so is one for which the turn
  before the window was not loaded (in `recent` or the candidates) unless no version lies
  between the two. Adapters should load `recent` back past the summary's `to_version`.

Hybrid budget flow, over R (shares are fractions of R, rounded down; shares adding up to
less than 1 leave the rest of R unused):
1. the summary takes what it needs up to its share; what it leaves goes to the window;
2. the recent window takes its share, plus the summary's unused share, plus the
   retrieved share when there is no candidate to retrieve;
3. retrieval takes its share plus everything the window and summary left;
4. when no summary is shown, what retrieval leaves extends the window further back (a
   retrieved turn the window reaches moves into it). With a summary, the window must
   start right after it, so that rest stays unused.

Retrieval: candidates older than the recent window (they may be covered by the summary:
the summary is lossy, retrieval brings back the verbatim turns that match the current
question), fused by RRF of their vector and text ranks. When at least two have
embeddings, the best MMR_HEAD of them are reordered by MMR, with the fused score divided
by the best one as relevance (so RRF's ratios are kept: a turn both searches found counts
about twice one that only one found). Candidates are taken in that order while they fit;
a user turn brings the assistant turn after it, and an assistant turn the user turn
before it, when that partner is known (a candidate, a candidate's `partner`, or a loaded
recent turn) and not already shown. A pair that does not fit is skipped whole; smaller
ones after it may still fit. The retrieved turns are shown in log order (global_position),
which is time order. Candidates may come from the user's other sessions (Turn.session_id
names them): those are never in the window and pair only within their own session.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime
from itertools import chain

from domain.context.errors import ContextBudgetTooSmall, UnknownStrategy
from domain.context.fusion import Diversifier, rrf
from domain.context.inputs import (
    OTHER_SESSION_TOKENS,
    SECTION_LABEL_TOKENS,
    Budget,
    BudgetShares,
    ContextInputs,
    Summary,
    Turn,
    state_text,
)
from domain.context.window import (
    ContextMessage,
    ContextWindow,
    Section,
    SectionKind,
    build_window,
    make_section,
)

MMR_LAMBDA = 0.7  # relevance weight; 1 - MMR_LAMBDA penalizes similarity to what is taken
# MMR reorders only the best MMR_HEAD fused candidates (the rest follow in fused order):
# diversity matters where the budget runs out first, and MMR over all n costs up to
# n^2/2 similarities (384 dimensions: ~2 us each in pure Python). 20, not 30: a 2,048-token
# budget shows ~20 retrieved turns, and the 10 more cost ~3 ms a window at 1,000-10,000
# turns (context_latency p95 15.6 -> 11.2 ms at 1,000) while LoCoMo at 2048 tokens went
# from 81.3% to 81.6% (1024: 69.4% -> 69.8%).
MMR_HEAD = 20
DEFAULT_STRATEGY = "hybrid"
DEFAULT_SHARES = BudgetShares()


@dataclass(frozen=True)
class Selection:
    """What a strategy chose: the sections (any order; empty ones are dropped) and notes
    on what it left out and why."""

    sections: tuple[Section, ...]
    notes: tuple[str, ...] = ()


Strategy = Callable[[ContextInputs, Budget, BudgetShares], Selection]


def message_for(
    turn: Turn, kind: SectionKind, budget: Budget, marked: bool = False
) -> ContextMessage:
    """`marked`: the turn is from another session and pays for the renderers' marker."""
    cost = budget.message_cost(turn.tokens) + (OTHER_SESSION_TOKENS if marked else 0)
    return _message(turn, kind, cost)


def _message(turn: Turn, kind: SectionKind, tokens: int) -> ContextMessage:
    return ContextMessage(
        turn.role,
        turn.content,
        tokens,
        kind,
        turn.global_position,
        turn.stream_version,
        turn.name,
        turn.tool_call_id,
        turn.tool_calls,
        turn.session_id,
    )


# Where recent_message keeps a turn's message on the Turn itself (see there).
_RECENT_MESSAGE = "_recent_message"


def recent_message(turn: Turn, cost: int) -> ContextMessage:
    """message_for(turn, "recent", ...) for a turn of this session that costs `cost`,
    kept on the turn (in its __dict__, like functools.cached_property: eq, hash and repr
    see only fields). The reader's tail cache hands the same Turn objects to call after
    call on a session, and each window's recent section shows up to RECENT_TURNS of
    them: built anew, they were ~1 us each. A message is immutable and a pure function
    of the turn and its cost, so sharing one between windows changes nothing."""
    kept = turn.__dict__.get(_RECENT_MESSAGE)
    if kept is not None and kept.tokens == cost:
        return kept  # type: ignore[no-any-return]
    message = _message(turn, "recent", cost)
    turn.__dict__[_RECENT_MESSAGE] = message
    return message


_TurnKey = tuple[str | None, int]  # (session id, or None for this session; seq)


class _Frame:
    """The parts every strategy shares: the fixed sections, what is left of the budget
    (`room`), and the recent turns as one contiguous run, newest first, with their costs."""

    def __init__(self, inputs: ContextInputs, budget: Budget) -> None:
        self.inputs = inputs
        self.budget = budget
        self.current = inputs.current
        fixed: list[Section] = []
        parts: list[str] = []
        if inputs.system_prompt:
            message = ContextMessage(
                "system",
                inputs.system_prompt,
                budget.message_cost(inputs.system_tokens),
                "system",
                source=inputs.system_source,
            )
            fixed.append(make_section("system", [message]))
            parts.append(f"system prompt {message.tokens}")
        if inputs.state:
            message = ContextMessage(
                "system",
                state_text(inputs.state),
                budget.message_cost(inputs.state_tokens),
                "state",
                source=inputs.state_source,
            )
            fixed.append(make_section("state", [message], SECTION_LABEL_TOKENS))
            parts.append(f"state {fixed[-1].tokens}")
        current = make_section("current", [message_for(inputs.current, "current", budget)])
        fixed.insert(0, current)
        needed = sum(s.tokens for s in fixed)
        if needed > budget.available:
            detail = " (current turn " + ", ".join([str(current.tokens), *parts]) + ")"
            raise ContextBudgetTooSmall(needed, budget.available, detail)
        self.fixed = fixed
        self.room = budget.available - needed
        self.chain = _contiguous_before(inputs.recent, inputs.current.seq)
        self.costs = [budget.message_cost(t.tokens) for t in self.chain]
        self._known: dict[_TurnKey, Turn] | None = None

    def is_own(self, turn: Turn) -> bool:
        """Whether `turn` belongs to this session (not another one of the user's)."""
        return turn.session_id is None or turn.session_id == self.inputs.session_id

    def cost(self, turn: Turn) -> int:
        extra = 0 if self.is_own(turn) else OTHER_SESSION_TOKENS
        return self.budget.message_cost(turn.tokens) + extra

    def key(self, turn: Turn, seq_offset: int = 0) -> _TurnKey:
        return (None if self.is_own(turn) else turn.session_id, turn.seq + seq_offset)

    @property
    def known(self) -> dict[_TurnKey, Turn]:
        """Every turn loaded, by (session, seq): recent, current, candidates, partners."""
        if self._known is None:
            known = {self.key(t): t for t in self.inputs.recent}
            for c in self.inputs.candidates:
                known.setdefault(self.key(c.turn), c.turn)
                if c.partner is not None:
                    known.setdefault(self.key(c.partner), c.partner)
            known[self.key(self.current)] = self.current
            self._known = known
        return self._known

    def take_newest(self, cap: int, after_version: int | None = None) -> tuple[int, int]:
        """How many of the newest turns fit in `cap` (stopping at the first that does not,
        or at a version <= `after_version`), and what they cost."""
        used = 0
        n = 0
        for turn, cost in zip(self.chain, self.costs, strict=True):
            if after_version is not None and turn.stream_version <= after_version:
                break
            if used + cost > cap:
                break
            used += cost
            n += 1
        return n, used

    def reaches_start(self, n: int) -> bool:
        """Whether a window of the `n` newest turns starts at the session's first turn."""
        first = self.chain[n - 1] if n else self.current
        return n == len(self.chain) and first.seq <= 1

    def window_start(self, n: int) -> Turn:
        return self.chain[n - 1] if n else self.current

    def recent_section(self, n: int) -> Section:
        messages = list(map(recent_message, self.chain[:n], self.costs[:n]))
        messages.reverse()
        return make_section("recent", messages)

    def summary_section(self, summary: Summary) -> Section:
        message = ContextMessage(
            "system",
            summary.text,
            self.budget.message_cost(summary.tokens),
            "summary",
            source=summary.global_position,
        )
        covers = (summary.from_version, summary.to_version)
        return make_section("summary", [message], SECTION_LABEL_TOKENS, covers)

    def summary_gap(self, summary: Summary, n: int) -> str | None:
        """Why `summary` does not cover exactly what precedes a window of the `n` newest
        turns (taken with after_version=summary.to_version), or None when it does."""
        last = summary.to_version
        if self.current.stream_version <= last:
            return "it covers the current turn"
        start = self.window_start(n)
        if start.seq <= 1:
            return "no turn precedes the window"
        before = self.chain[n] if n < len(self.chain) else self.known.get((None, start.seq - 1))
        if before is None:
            if last == start.stream_version - 1:
                return None
            return f"turn {start.seq - 1}, just before the window, was not loaded"
        if before.stream_version > last:
            return (
                f"it ends at version {last} and the window starts at version "
                f"{start.stream_version}: the turns between would be left out"
            )
        return None


def _contiguous_before(recent: Sequence[Turn], current_seq: int) -> list[Turn]:
    """The run of turns current_seq - 1, current_seq - 2, ... found in `recent`."""
    by_seq = sorted((t for t in recent if t.seq < current_seq), key=lambda t: -t.seq)
    run: list[Turn] = []
    for turn in by_seq:
        expected = run[-1].seq - 1 if run else current_seq - 1
        if turn.seq == expected:
            run.append(turn)
        elif turn.seq < expected:
            break  # a hole: a window never reaches past it
    return run


def _with_summary(
    frame: _Frame, window_cap: int, summary_cap: int, notes: list[str]
) -> tuple[int, int, Section | None]:
    """The recent window and, when it fits by the summary rule, the summary.
    `window_cap` is the window's budget when no summary is shown; a shown summary's cost
    comes out of it. Returns (turns in the window, their cost, summary section)."""
    n, used = frame.take_newest(window_cap)
    newest = frame.inputs.summary
    if newest is None or frame.reaches_start(n):
        return n, used, None
    section = frame.summary_section(newest)
    if section.tokens > min(summary_cap, window_cap):
        notes.append(
            f"summary left out: it needs {section.tokens} tokens, its share is {summary_cap}"
        )
        return n, used, None
    aligned, aligned_used = frame.take_newest(
        window_cap - section.tokens, after_version=newest.to_version
    )
    gap = frame.summary_gap(newest, aligned)
    if gap is not None:
        notes.append(f"summary left out: {gap}")
        return n, used, None
    return aligned, aligned_used, section


def _partner(turn: Turn, frame: _Frame) -> Turn | None:
    """The other half of `turn`'s question/answer pair (same session), if loaded."""
    if turn.role == "user":
        other = frame.known.get(frame.key(turn, +1))
        return other if other is not None and other.role == "assistant" else None
    if turn.role == "assistant":
        other = frame.known.get(frame.key(turn, -1))
        return other if other is not None and other.role == "user" else None
    return None


@dataclass
class _Pooled:
    turn: Turn
    vector_rank: int | None
    text_rank: int | None
    embedding: Sequence[float] | None


def _best(a: int | None, b: int | None) -> int | None:
    return b if a is None else a if b is None else min(a, b)


def _retrieve(frame: _Frame, cap: int, before_seq: int, shown: set[int]) -> tuple[list[Turn], int]:
    """Retrieved turns (in log order, which is time order) and their cost with the section
    label, within `cap`. Turns of this session are taken only if older than `before_seq`
    and not in `shown` (seqs); turns of the user's other sessions always may be."""

    def eligible(turn: Turn) -> bool:
        return not frame.is_own(turn) or (turn.seq < before_seq and turn.seq not in shown)

    if cap <= SECTION_LABEL_TOKENS:
        return [], 0
    pool: dict[int, _Pooled] = {}  # by global_position: unique across sessions
    for c in frame.inputs.candidates:
        if (c.vector_rank is None and c.text_rank is None) or not eligible(c.turn):
            continue
        seen = pool.get(c.turn.global_position)
        if seen is None:
            pool[c.turn.global_position] = _Pooled(c.turn, c.vector_rank, c.text_rank, c.embedding)
        else:  # the same turn twice: keep the best of each
            seen.vector_rank = _best(seen.vector_rank, c.vector_rank)
            seen.text_rank = _best(seen.text_rank, c.text_rank)
            seen.embedding = seen.embedding or c.embedding
    if not pool:
        return [], 0
    rankings = [
        sorted(
            (k for k, p in pool.items() if p.vector_rank is not None),
            key=lambda k: (pool[k].vector_rank or 0, k),
        ),
        sorted(
            (k for k, p in pool.items() if p.text_rank is not None),
            key=lambda k: (pool[k].text_rank or 0, k),
        ),
    ]
    fused = rrf(rankings)
    pairs: dict[int, Turn] = {}  # position -> its partner, when that can be shown with it
    for key, item in pool.items():
        partner = _partner(item.turn, frame)
        if partner is not None and eligible(partner):
            pairs[key] = partner
    reachable = {k: item.turn for k, item in pool.items()} | {
        p.global_position: p for p in pairs.values()
    }
    picker: Diversifier[int] | None = None
    everything = SECTION_LABEL_TOKENS + sum(frame.cost(t) for t in reachable.values())
    # When everything fits, the order does not matter: skip MMR.
    if everything > cap and sum(1 for p in pool.values() if p.embedding is not None) >= 2:
        top = fused[0][1]
        relevance = {k: score / top for k, score in fused}
        head = [(k, pool[k].embedding) for k, _ in fused[:MMR_HEAD]]
        picker = Diversifier(head, relevance, MMR_LAMBDA)
    ranked = [k for k, _ in fused]
    order: Iterator[int] = (
        iter(ranked) if picker is None else chain(_drain(picker), ranked[MMR_HEAD:])
    )

    taken: dict[int, Turn] = {}
    used = SECTION_LABEL_TOKENS
    smallest = frame.budget.message_cost(0)
    for key in order:
        if cap - used < smallest:
            break
        if key in taken:
            continue
        unit = [pool[key].turn]
        partner = pairs.get(key)
        if partner is not None and partner.global_position not in taken:
            unit.append(partner)
        cost = sum(frame.cost(t) for t in unit)
        if used + cost > cap:
            continue
        used += cost
        for t in unit:
            taken[t.global_position] = t
            if picker is not None:
                picker.select(t.global_position)
    if not taken:
        return [], 0
    return [taken[k] for k in sorted(taken)], used


def _drain(picker: Diversifier[int]) -> Iterator[int]:
    while (key := picker.pop()) is not None:
        yield key


def _retrieved_section(frame: _Frame, turns: Sequence[Turn]) -> Section:
    messages = [
        message_for(t, "retrieved", frame.budget, marked=not frame.is_own(t)) for t in turns
    ]
    return make_section("retrieved", messages, SECTION_LABEL_TOKENS)


# --- the strategies -------------------------------------------------------------------------


def full(inputs: ContextInputs, budget: Budget, shares: BudgetShares) -> Selection:
    frame = _Frame(inputs, budget)
    n, _ = frame.take_newest(frame.room)
    notes = []
    if n < len(frame.chain):
        notes.append(f"{len(frame.chain) - n} oldest turns left out: over budget")
    return Selection((*frame.fixed, frame.recent_section(n)), tuple(notes))


def sliding_window(inputs: ContextInputs, budget: Budget, shares: BudgetShares) -> Selection:
    frame = _Frame(inputs, budget)
    n, _ = frame.take_newest(frame.room)
    return Selection((*frame.fixed, frame.recent_section(n)))


def summary(inputs: ContextInputs, budget: Budget, shares: BudgetShares) -> Selection:
    frame = _Frame(inputs, budget)
    notes: list[str] = []
    n, _, summary_section = _with_summary(frame, frame.room, frame.room, notes)
    sections = [*frame.fixed, frame.recent_section(n)]
    if summary_section is not None:
        sections.append(summary_section)
    return Selection(tuple(sections), tuple(notes))


def retrieval(inputs: ContextInputs, budget: Budget, shares: BudgetShares) -> Selection:
    frame = _Frame(inputs, budget)
    turns, _ = _retrieve(frame, frame.room, inputs.current.seq, {inputs.current.seq})
    return Selection((*frame.fixed, _retrieved_section(frame, turns)))


def hybrid(inputs: ContextInputs, budget: Budget, shares: BudgetShares) -> Selection:
    frame = _Frame(inputs, budget)
    room = frame.room
    recent_cap = int(room * shares.recent)
    summary_cap = int(room * shares.summary)
    retrieved_cap = int(room * shares.retrieved)
    current_seq = inputs.current.seq
    searchable = any(
        (c.vector_rank is not None or c.text_rank is not None)
        and (c.turn.seq < current_seq or not frame.is_own(c.turn))
        for c in inputs.candidates
    )
    window_cap = recent_cap + summary_cap + (0 if searchable else retrieved_cap)
    notes: list[str] = []
    n, used, summary_section = _with_summary(frame, window_cap, summary_cap, notes)
    summary_used = summary_section.tokens if summary_section is not None else 0

    start = frame.window_start(n).seq
    shown = {t.seq for t in frame.chain[:n]} | {current_seq}
    # Shares adding up to less than 1 leave the rest unused: a deliberately cheaper prompt.
    left = recent_cap + summary_cap + retrieved_cap - used - summary_used
    retrieved, retrieved_used = _retrieve(frame, left, start, shown)

    if summary_section is None and n < len(frame.chain):
        # Step 4: what retrieval left extends the window back; retrieved turns it reaches
        # move into it at no extra cost.
        spare = left - retrieved_used
        waiting = {t.seq for t in retrieved if frame.is_own(t)}
        label_freed = len(waiting) == len(retrieved)  # once these moved, nothing is left
        while n < len(frame.chain):
            seq, cost = frame.chain[n].seq, frame.costs[n]
            if seq in waiting:
                waiting.discard(seq)
                if not waiting and label_freed:  # the section, and its label, are gone
                    spare += SECTION_LABEL_TOKENS
            elif cost <= spare:
                spare -= cost
            else:
                break
            n += 1
        start = frame.window_start(n).seq
        retrieved = [t for t in retrieved if not frame.is_own(t) or t.seq < start]

    sections = [*frame.fixed, frame.recent_section(n), _retrieved_section(frame, retrieved)]
    if summary_section is not None:
        sections.append(summary_section)
    return Selection(tuple(sections), tuple(notes))


STRATEGIES: dict[str, Strategy] = {
    "full": full,
    "sliding_window": sliding_window,
    "summary": summary,
    "retrieval": retrieval,
    "hybrid": hybrid,
}


def assemble(
    inputs: ContextInputs,
    budget: Budget,
    shares: BudgetShares = DEFAULT_SHARES,
    strategy: str = DEFAULT_STRATEGY,
    *,
    built_at: datetime,
) -> ContextWindow:
    """The context window for `inputs` by the named strategy."""
    run = STRATEGIES.get(strategy)
    if run is None:
        raise UnknownStrategy(strategy, list(STRATEGIES))
    selection = run(inputs, budget, shares)
    return build_window(
        session_id=inputs.session_id,
        model=inputs.model,
        budget_tokens=budget.available,
        strategy=strategy,
        sections=selection.sections,
        built_at=built_at,
        notes=selection.notes,
    )
