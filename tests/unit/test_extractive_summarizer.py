"""The offline extractive summarizer: deterministic, within budget, keeps the facts."""

from __future__ import annotations

import random
import time
from datetime import UTC, datetime, timedelta

import pytest

from adapters.summarizers import ExtractiveSummarizer
from adapters.tokenizers import CharEstimateCounter, TiktokenCounter
from domain.summaries import (
    EXTRACTIVE_SUMMARIZER,
    SummaryItem,
    split_sentences,
    summarize_extractive,
    truncate_to_tokens,
)
from domain.summaries.ports import TokenCount


def words(text: str) -> int:
    return len(text.split())


TIKTOKEN = TiktokenCounter().count
CHARS = CharEstimateCounter().count
COUNTERS: dict[str, TokenCount] = {"words": words, "chars": CHARS, "tiktoken": TIKTOKEN}

DAY = datetime(2023, 5, 8, 13, 56, tzinfo=UTC)


def turn(
    content: str,
    version: int,
    *,
    speaker: str | None = None,
    role: str = "user",
    at: datetime | None = DAY,
) -> SummaryItem:
    return SummaryItem(
        role=role, content=content, stream_version=version, created_at=at, speaker=speaker
    )


CONVERSATION = [
    turn("Hey Mel! Good to see you. How have you been?", 1, speaker="Caroline"),
    turn(
        "Oh that is nice to hear. I have been busy with the kids. We went camping at "
        "Lake Tahoe last weekend and it rained twice.",
        2,
        speaker="Melanie",
        role="assistant",
    ),
    turn(
        "Wow, cool! Guess what. Caroline adopted a dog on 7 May 2023. His name is Oscar "
        "and he cost $250 at the shelter.",
        3,
        speaker="Caroline",
    ),
    turn("Haha, that is so sweet. I love it.", 4, speaker="Melanie", role="assistant"),
    turn(
        "When is the pottery class? I want to sign up with Oscar's vet, Dr. Lee, at 5 pm on "
        "Friday.",
        5,
        speaker="Caroline",
    ),
    turn("Okay. Sounds good. Yeah.", 6, speaker="Melanie", role="assistant"),
]


def summarize(items: list[SummaryItem], max_tokens: int, level: int = 0, count=words) -> str:
    return summarize_extractive(items, max_tokens=max_tokens, level=level, count_tokens=count)


def chat(n: int, seed: int = 7) -> list[SummaryItem]:
    """A long, varied synthetic chat: facts mixed with filler."""
    rng = random.Random(seed)
    people = ["Caroline", "Melanie", "Jon", "Gina", "Dr. Patel"]
    places = ["Paris", "the gym", "Lake Tahoe", "Boston", "the office", "a bakery"]
    fillers = [
        "Oh that is nice to hear.",
        "Haha, yeah!",
        "Wow, cool.",
        "Thanks so much.",
        "I know, right?",
        "That sounds great, really.",
    ]
    out = []
    for i in range(n):
        person, place = rng.choice(people), rng.choice(places)
        fact = rng.choice(
            [
                f"{person} went to {place} on {rng.randint(1, 28)} June {rng.randint(2019, 2024)}.",
                f"I paid ${rng.randint(5, 900)} for the tickets to {place}.",
                f"We decided to meet {person} at {rng.randint(1, 12)} pm next week.",
                f"My sister started painting {rng.choice(['landscapes', 'portraits'])} "
                f"because of {person}.",
                "The weather was grey and we stayed inside watching films all afternoon.",
            ]
        )
        parts = [rng.choice(fillers), fact] if i % 2 else [fact, rng.choice(fillers)]
        if rng.random() < 0.3:
            parts.append(f"Have you ever been to {place}?")
        out.append(
            turn(
                " ".join(parts),
                i + 1,
                speaker=people[i % 2],
                role="user" if i % 2 == 0 else "assistant",
                at=DAY + timedelta(hours=3 * i),
            )
        )
    return out


# --- the basics ---------------------------------------------------------------------------


def test_empty_input_or_budget_gives_an_empty_summary() -> None:
    assert summarize([], 100) == ""
    assert summarize([turn("   ", 1)], 100) == ""
    assert summarize(CONVERSATION, 0) == ""
    assert summarize(CONVERSATION, -5) == ""


def test_same_input_same_output() -> None:
    items = chat(300)
    first = summarize(items, 400, count=TIKTOKEN)
    assert first
    assert all(summarize(items, 400, count=TIKTOKEN) == first for _ in range(3))
    assert summarize(list(items), 400, count=TIKTOKEN) == first


def test_a_generous_budget_keeps_the_content_with_speaker_and_date_but_no_small_talk() -> None:
    text = summarize(CONVERSATION, 1000)
    assert text.split("\n") == [
        "[2023-05-08] Melanie: I have been busy with the kids. We went camping at Lake Tahoe "
        "last weekend and it rained twice.",
        "[2023-05-08] Caroline: Caroline adopted a dog on 7 May 2023. His name is Oscar and he "
        "cost $250 at the shelter.",
        "[2023-05-08] Melanie: Haha, that is so sweet. I love it.",
        "[2023-05-08] Caroline: When is the pottery class? I want to sign up with Oscar's vet, "
        "Dr. Lee, at 5 pm on Friday.",
    ]


def test_only_small_talk_gives_an_empty_summary() -> None:
    items = [
        turn("Hi Jon! How are you?", 1, speaker="Gina"),
        turn("Thanks, Gina! Okay. Good to see you.", 2, speaker="Jon", role="assistant"),
    ]
    assert summarize(items, 100) == ""
    assert summarize(items, 2) == ""


def test_prefix_falls_back_to_the_role_and_leaves_out_an_unknown_date() -> None:
    text = summarize([turn("We shipped version 2.1 on Monday.", 1, at=None)], 100)
    assert text == "user: We shipped version 2.1 on Monday."


def test_whitespace_is_compressed() -> None:
    text = summarize([turn("  The  invoice\n\n was   $120.\t Paid   on Tuesday. ", 1)], 100)
    assert text == "[2023-05-08] user: The invoice was $120. Paid on Tuesday."


# --- what it keeps ------------------------------------------------------------------------


def test_a_fact_with_a_name_and_a_date_beats_filler() -> None:
    items = [
        turn("Oh that is nice to hear.", 1, speaker="Melanie", role="assistant"),
        turn("Caroline adopted a dog on 7 May 2023.", 2, speaker="Melanie", role="assistant"),
        turn("That is so sweet, I love it so much.", 3, speaker="Melanie", role="assistant"),
    ]
    # Room for one line only (each costs its prefix + sentence).
    text = summarize(items, 12)
    assert text == "[2023-05-08] Melanie: Caroline adopted a dog on 7 May 2023."


@pytest.mark.parametrize("budget", [25, 40, 60])
def test_facts_are_kept_before_filler(budget: int) -> None:
    text = summarize(CONVERSATION, budget)
    assert words(text) <= budget
    assert "Caroline adopted a dog on 7 May 2023." in text
    for filler in ("Okay.", "Sounds good.", "Haha, that is so sweet.", "Oh that is nice to hear."):
        assert filler not in text


def test_numbers_money_times_and_the_users_question_are_preferred() -> None:
    text = summarize(CONVERSATION, 65)
    assert "$250" in text
    assert "5 pm on Friday" in text
    assert "When is the pottery class?" in text


def test_selected_sentences_stay_in_their_original_order() -> None:
    items = chat(200)
    text = summarize(items, 300, count=TIKTOKEN)
    sentences = [
        (item.stream_version, n, s)
        for item in items
        for n, s in enumerate(split_sentences(item.content))
    ]
    where = {s: (v, n) for v, n, s in reversed(sentences)}  # first occurrence
    picked: list[str] = []
    for line in text.split("\n"):
        body = line.split(": ", 1)[1]
        picked.extend(s for s in split_sentences(body))
    positions = [where[s] for s in picked]
    assert positions == sorted(positions)
    assert len(picked) > 5


def test_repeated_sentences_are_taken_once() -> None:
    items = [turn("We moved to Boston in 2021.", v) for v in range(1, 6)]
    text = summarize(items, 200)
    assert text.count("We moved to Boston in 2021.") == 1


def test_abbreviations_and_initials_do_not_end_a_sentence() -> None:
    assert split_sentences("Dr. Lee met J. R. Smith in St. Louis. It was 3.5 hours! OK?") == [
        "Dr. Lee met J. R. Smith in St. Louis.",
        "It was 3.5 hours!",
        "OK?",
    ]


# --- the budget ---------------------------------------------------------------------------


@pytest.mark.parametrize("counter", COUNTERS)
def test_the_budget_is_never_exceeded(counter: str) -> None:
    count = COUNTERS[counter]
    items = chat(150, seed=3)
    for budget in [*range(1, 60), 64, 99, 128, 200, 333, 512, 1000, 4000]:
        text = summarize(items, budget, count=count)
        assert count(text) <= budget, (budget, text)
        assert text or budget < 4, budget


def test_a_non_additive_counter_is_still_respected() -> None:
    # Charges for every line break on top of the words: per-sentence costs underestimate.
    def lines_cost(text: str) -> int:
        return len(text.split()) + 3 * text.count("\n")

    items = chat(80)
    for budget in (10, 30, 77, 150, 400):
        assert lines_cost(summarize(items, budget, count=lines_cost)) <= budget


def test_one_long_sentence_is_cut_to_fit() -> None:
    item = turn(" ".join(f"word{i}" for i in range(40)) + ".", 1, speaker="Jon")
    text = summarize([item], 10)
    assert text.startswith("[2023-05-08] Jon: word0 word1")
    assert text.endswith("…")
    assert words(text) <= 10


def test_truncate_to_tokens() -> None:
    assert truncate_to_tokens("short", 5, words) == "short"
    assert truncate_to_tokens("one two three four", 2, words) == "one two…"
    assert truncate_to_tokens("anything", 0, words) == ""
    assert CHARS(truncate_to_tokens("x" * 100, 3, CHARS)) <= 3


# --- summaries of summaries ---------------------------------------------------------------


def test_level_one_keeps_the_given_lines_and_selects_within_the_budget() -> None:
    items = chat(120)
    first = summarize(items[:60], 150, count=TIKTOKEN)
    second = summarize(items[60:], 150, count=TIKTOKEN)
    summaries = [
        SummaryItem(role="summary", content=first, stream_version=60),
        SummaryItem(role="summary", content=second, stream_version=120),
    ]
    merged = summarize(summaries, 120, level=1, count=TIKTOKEN)
    assert 0 < TIKTOKEN(merged) <= 120
    given = (first + "\n" + second).split("\n")
    order = []
    for line in merged.split("\n"):
        prefix, body = line.split(": ", 1)
        assert prefix.startswith("[2023-") and "[" not in body  # not prefixed twice
        sources = [
            n
            for n, g in enumerate(given)
            if g.startswith(prefix + ": ") and all(s in g for s in split_sentences(body))
        ]
        assert sources, line
        order.append(sources[0])
    assert order == sorted(order)


def test_level_one_with_room_returns_the_lines_unchanged() -> None:
    summary = "[2023-05-08] Caroline: Adopted Oscar on 7 May 2023.\n[2023-05-09] Jon: Paid $40."
    item = SummaryItem(role="summary", content=summary, stream_version=9)
    assert summarize([item], 100, level=1) == summary


# --- the adapter and speed ----------------------------------------------------------------


async def test_the_adapter_names_itself_and_offloads_big_inputs() -> None:
    summarizer = ExtractiveSummarizer(TIKTOKEN, offload_items=10)
    small = await summarizer.summarize(CONVERSATION, max_tokens=50, level=0)
    big = await summarizer.summarize(chat(50), max_tokens=50, level=0)
    assert small.summarizer == big.summarizer == EXTRACTIVE_SUMMARIZER
    assert small.text == summarize(CONVERSATION, 50, count=TIKTOKEN)
    assert TIKTOKEN(big.text) <= 50


def test_it_is_fast() -> None:
    items = chat(3000)
    started = time.perf_counter()
    summarize(items, 2000, count=TIKTOKEN)
    elapsed = time.perf_counter() - started
    assert elapsed < 3.0, f"3000 turns took {elapsed:.2f}s"
