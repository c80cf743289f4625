"""Summaries of the old part of a conversation: the port and the offline summarizer."""

from domain.summaries.extractive import (
    EXTRACTIVE_SUMMARIZER,
    Weights,
    split_sentences,
    summarize_extractive,
    truncate_to_tokens,
)
from domain.summaries.ports import (
    Summarizer,
    SummarizerError,
    SummaryItem,
    SummaryText,
    TokenCount,
)

__all__ = [
    "EXTRACTIVE_SUMMARIZER",
    "Summarizer",
    "SummarizerError",
    "SummaryItem",
    "SummaryText",
    "TokenCount",
    "Weights",
    "split_sentences",
    "summarize_extractive",
    "truncate_to_tokens",
]
