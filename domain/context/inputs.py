"""What a context strategy is given: turns, the newest summary, search candidates, and
the token budget. Adapters load these through indexes, in a bounded number of rows.

Token accounting: a message costs its stored token count (made once, at append, with one
tokenizer), scaled by `Budget.model_token_ratio` for the target model's family and
rounded up, plus MESSAGE_OVERHEAD_TOKENS for the message's framing. State, summary and
retrieved sections also pay SECTION_LABEL_TOKENS once, for the label the renderers put
before them; a retrieved turn from another session pays OTHER_SESSION_TOKENS for its
marker.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from domain.context.window import ToolCallRef
from domain.errors import ValidationError
from domain.quick_init import quick_init

# OpenAI's chat format spends about 3-4 tokens per message on role and delimiters
# (<|start|>role<|message|>...<|end|>); 4 is the safe side of that, and Anthropic's
# format spends less.
MESSAGE_OVERHEAD_TOKENS = 4
# The longest section label in render.py is under 20 tokens in cl100k_base (a unit test
# checks it), so a label never costs more than it was charged.
SECTION_LABEL_TOKENS = 20
# The marker a retrieved turn from another session gets in the transcript (render.py).
OTHER_SESSION_TOKENS = 8


@quick_init
@dataclass(frozen=True)
class Turn:
    """A conversation turn as the `turns` read model holds it. `seq` numbers a session's
    turns 1, 2, 3, ... without gaps, so the turn before another is `seq - 1`.
    `session_id` is None (or the window's session) for this session's turns, and names
    the other session for a turn retrieved from the user's other sessions."""

    seq: int
    stream_version: int
    global_position: int
    role: str  # system | user | assistant | tool
    content: str
    tokens: int
    created_at: datetime
    name: str | None = None
    tool_call_id: str | None = None
    tool_calls: tuple[ToolCallRef, ...] = ()
    session_id: str | None = None


@dataclass(frozen=True)
class Summary:
    """A rolling summary (SummaryRecorded): it stands for every turn from the session's
    start up to `to_version`; higher levels fold lower ones."""

    text: str
    tokens: int
    level: int
    from_version: int
    to_version: int
    global_position: int | None = None  # of the SummaryRecorded event


@quick_init
@dataclass(frozen=True)
class Candidate:
    """An older turn found by search. Ranks are 1-based positions in the vector (cosine)
    and full-text result lists; None where that search did not return it. A candidate
    with neither rank is never retrieved for itself, only as a pair partner.

    `partner` is the turn that completes its question/answer pair (the assistant turn
    after a user turn, or the user turn before an assistant turn), when the adapter loaded
    it; partners are also found among the other candidates and the recent turns.
    """

    turn: Turn
    vector_rank: int | None = None
    text_rank: int | None = None
    # Left out of eq and hash: derived from the turn, and it may be a (mutable) array.
    embedding: Sequence[float] | None = field(default=None, compare=False)
    partner: Turn | None = None


@dataclass(frozen=True)
class ContextInputs:
    session_id: str
    model: str
    current: Turn  # the newest turn: always in the window
    recent: tuple[Turn, ...] = ()  # the turns before `current`, newest first, contiguous
    system_prompt: str | None = None
    system_tokens: int = 0
    state: Mapping[str, Any] | None = None
    state_tokens: int = 0  # tokens of state_text(state)
    summary: Summary | None = None  # the newest summary
    candidates: tuple[Candidate, ...] = ()
    query_embedding: tuple[float, ...] | None = None
    system_source: int | None = None  # global_position of the event the prompt came from
    state_source: int | None = None  # global_position of the StateUpdated event


def state_text(state: Mapping[str, Any]) -> str:
    """The text the state section shows; adapters count `state_tokens` on it."""
    return json.dumps(state, sort_keys=True, ensure_ascii=False, default=str)


@dataclass(frozen=True)
class BudgetShares:
    """How the budget left after the fixed parts (system, state, current) is split."""

    # Retrieval first: when the budget is tight, the older turns that match the current
    # one help more than a longer tail of recent ones (LoCoMo, 2,048 tokens: evidence
    # recall 81% at 0.15/0.05/0.8 against 69% at 0.5/0.15/0.35, ops/bench/locomo.py).
    # What retrieval leaves unused extends the recent window, so with a roomy budget
    # the window still shows the recent turns.
    recent: float = 0.15
    summary: float = 0.05
    retrieved: float = 0.8

    def __post_init__(self) -> None:
        for name in ("recent", "summary", "retrieved"):
            value = getattr(self, name)
            if not (isinstance(value, int | float) and 0.0 <= value <= 1.0):
                raise ValidationError(
                    f"shares.{name} must be a number between 0 and 1, not {value!r}",
                    f"shares.{name}",
                )
        total = self.recent + self.summary + self.retrieved
        if total > 1.0 + 1e-9:
            raise ValidationError(
                f"shares must add up to at most 1 (recent + summary + retrieved = {total:g})",
                "shares",
            )


@dataclass(frozen=True)
class Budget:
    limit_tokens: int  # the model's context limit
    reserve_output_tokens: int = 0
    # Stored counts are made with one tokenizer; this scales them to the model's family.
    model_token_ratio: float = 1.0

    def __post_init__(self) -> None:
        if self.limit_tokens <= 0:
            raise ValidationError("limit_tokens must be positive", "limit_tokens")
        if not 0 <= self.reserve_output_tokens < self.limit_tokens:
            raise ValidationError(
                f"reserve_output_tokens ({self.reserve_output_tokens}) must be at least 0 and "
                f"less than the context limit ({self.limit_tokens})",
                "reserve_output_tokens",
            )
        ratio = self.model_token_ratio
        if not (isinstance(ratio, int | float) and math.isfinite(ratio) and ratio > 0):
            raise ValidationError(
                f"model_token_ratio must be a positive number, not {ratio!r}", "model_token_ratio"
            )

    @property
    def available(self) -> int:
        return self.limit_tokens - self.reserve_output_tokens

    def scaled(self, tokens: int) -> int:
        if self.model_token_ratio == 1.0:
            return tokens
        # round() first so 10 * 1.1 = 11.000000000000002 stays 11.
        return math.ceil(round(tokens * self.model_token_ratio, 6))

    def message_cost(self, tokens: int) -> int:
        if self.model_token_ratio == 1.0:  # the usual case, ~600 calls a window: inline
            return (tokens if tokens > 0 else 0) + MESSAGE_OVERHEAD_TOKENS
        return self.scaled(max(tokens, 0)) + MESSAGE_OVERHEAD_TOKENS
