"""The context engine's pure core: the versioned window document, the inputs and budget a
strategy works from, rank fusion, the strategies, and the renderers to provider formats.
Adapters load the inputs; nothing here does I/O."""

from domain.context.errors import ContextBudgetTooSmall, UnknownStrategy
from domain.context.inputs import (
    MESSAGE_OVERHEAD_TOKENS,
    OTHER_SESSION_TOKENS,
    SECTION_LABEL_TOKENS,
    Budget,
    BudgetShares,
    Candidate,
    ContextInputs,
    Summary,
    Turn,
    state_text,
)
from domain.context.render import anthropic_messages, openai_messages
from domain.context.strategies import DEFAULT_STRATEGY, STRATEGIES, Selection, assemble
from domain.context.window import (
    CONTEXT_PROTOCOL_VERSION,
    ContextMessage,
    ContextWindow,
    Section,
    SectionKind,
    ToolCallRef,
    assembled_event,
)

__all__ = [
    "CONTEXT_PROTOCOL_VERSION",
    "DEFAULT_STRATEGY",
    "MESSAGE_OVERHEAD_TOKENS",
    "OTHER_SESSION_TOKENS",
    "SECTION_LABEL_TOKENS",
    "STRATEGIES",
    "Budget",
    "BudgetShares",
    "Candidate",
    "ContextBudgetTooSmall",
    "ContextInputs",
    "ContextMessage",
    "ContextWindow",
    "Section",
    "SectionKind",
    "Selection",
    "Summary",
    "ToolCallRef",
    "Turn",
    "UnknownStrategy",
    "anthropic_messages",
    "assemble",
    "assembled_event",
    "openai_messages",
    "state_text",
]
