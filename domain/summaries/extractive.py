"""The default, offline summarizer: it picks the most informative sentences.

Deterministic (same input, same output), no network, no model: the gateway can always
compact a session, and an auditor can recompute a summary from the events it covers.

Level 0 (turns): every turn is split into sentences; each sentence is scored by how
central its words are to the input (a TF-IDF-like weight) plus bonuses for what a later
question is likely to need: names, dates, times, numbers, money, decisions and the
question a user asked. Small talk ("Thanks, Mel!", "How are you?") scores zero and is
never taken. Sentences are taken greedily by score per sqrt(length) while they fit, and
written back in their original order, one line per turn:
"[2023-05-08] Caroline: sentence sentence".

Level >= 1 (summaries of summaries): the input lines are kept with their "[date]
speaker:" prefixes and their sentences are selected the same way.

The output never exceeds `max_tokens` as measured by the token counter given.
"""

from __future__ import annotations

import math
import re
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass

from domain.summaries.ports import SummaryItem, TokenCount

EXTRACTIVE_SUMMARIZER = "extractive-v1"
ELLIPSIS = "…"
# A sentence this long (in words) is cut into chunks, so one run-on turn cannot take the
# whole budget or be impossible to fit.
MAX_SENTENCE_WORDS = 60


@dataclass(frozen=True, slots=True)
class Weights:
    """Score = centrality in [0, 1] + bonuses; the bonuses are what a summary must not
    lose. Starting values: tune them against a benchmark here, not in the code below."""

    name: float = 0.3  # first distinct name; each further name adds name_extra
    name_extra: float = 0.1
    date: float = 0.4
    time: float = 0.25
    number: float = 0.25
    number_word: float = 0.1
    money: float = 0.35
    decision: float = 0.2
    user_first: float = 0.15  # first sentence of a user turn: what the user came for
    user_question: float = 0.3  # first question of a user turn
    entity_cap: float = 1.2  # stacked entity bonuses stop here
    filler_factor: float = 0.5  # < 3 content words, no date or number: "So sweet!"


DEFAULT_WEIGHTS = Weights()

# --- text features ------------------------------------------------------------------------

_WORD = re.compile(r"[^\W_]+(?:['\u2019][^\W_]+)*")
_BOUNDARY = re.compile(r"[.!?…]+[\"'\u201d\u2019)\]]*(?=\s)|\n")
_LAST_TOKEN = re.compile(r"(\S+?)[\"'\u201d\u2019)\]]*$")


def _wordset(text: str) -> frozenset[str]:
    return frozenset(text.split())


_ABBREVIATIONS = _wordset(
    "mr mrs ms dr prof sr jr st vs e.g i.e approx dept fig mt inc ltd co cf al"
)
_LINE_PREFIX = re.compile(r"^(?:\[[^\]\n]{1,40}\]\s+)?(?:[\w.'\u2019\- ]{1,40}?:\s+)?")

# Facts are found by word lookups first; the regexes below run only on sentences that
# have a digit or a trigger word, which keeps scoring at a few microseconds a sentence.
_MONTHS = _wordset(
    "January February March April June July August September October November December "
    "Jan Feb Mar Apr Jun Jul Aug Sep Sept Oct Nov Dec"
)  # case-sensitive; "May" only next to a number (it is also a verb)
_DATE_WORDS = _wordset(
    "monday tuesday wednesday thursday friday saturday sunday mondays tuesdays wednesdays "
    "thursdays fridays saturdays sundays yesterday today tomorrow tonight weekend"
)
_RELATIVE_TRIGGERS = _wordset(
    "day days week weeks month months year years night summer winter spring fall autumn"
)
_RELATIVE_DATE = re.compile(
    r"\b(?:last|next|this|past)\s+(?:week|month|year|night|weekend|summer|winter|spring"
    r"|fall|autumn)\b|\b(?:\d+|a|an|one|two|three|four|five|six|several|few|couple\s+of)"
    r"\s+(?:days?|weeks?|months?|years?)\s+(?:ago|later|earlier)\b",
    re.IGNORECASE,
)
_NUMERIC_DATE = re.compile(
    r"\b\d{4}-\d{1,2}-\d{1,2}\b|\b\d{1,2}[/.]\d{1,2}[/.]\d{2,4}\b|\bMay\s+\d|\d\s+May\b"
    r"|\b(?:19|20)\d{2}s?\b"
)
_TIME_WORDS = _wordset("noon midnight o'clock")
_TIME = re.compile(r"\b\d{1,2}:\d{2}\b|\b\d{1,2}\s?[ap]\.?m\b", re.IGNORECASE)
_MONEY = re.compile(
    r"[$€£¥]\s?\d|\b\d[\d,.]*\s?(?:dollars?|euros?|pounds?|usd|eur|gbp|bucks|cents?"
    r"|k|bn|million|billion)\b",
    re.IGNORECASE,
)
_DIGIT = re.compile(r"\d")
_NUMBER_WORDS = _wordset(
    "two three four five six seven eight nine ten eleven twelve twenty thirty forty fifty "
    "hundred thousand dozen half twice"
)
_DECISION_WORDS = _wordset(
    "decision agree agreed agrees plan plans planned planning chose choose chosen deadline "
    "commit commits committed"
)
_DECISION_STEMS = ("decid", "prefer", "schedul", "promis")
_NOT_NAMES = _wordset(
    "i monday tuesday wednesday thursday friday saturday sunday january february march "
    "april may june july august september october november december"
)
# Function words and chat filler: they say nothing about what happened.
_STOPWORDS = _wordset(
    """a about above after again against all also am an and any are as at be because been
    before being below between both but by can could did do does doing don't down during
    each few for from further had has have having he he's her here hers herself him himself
    his how i i'm i've i'd i'll if in into is isn't it it's its itself just let's me more
    most my myself no nor not of off on once only or other our ours ourselves out over own
    same she she's should so some such than that that's the their theirs them themselves
    then there there's these they they're this those through to too under until up very
    was wasn't we we're we've were what what's when where which while who whom why with
    would you you're you've you'll your yours yourself yourselves get got really thing
    things lot much many even still yeah yes yep ok okay oh ah wow haha lol hi hello hey
    thanks thank sure great cool nice awesome glad hear sounds sound good well like know
    think feel one ones way well right totally definitely absolutely guess gonna wanna
    kinda pretty stuff see"""
)


def split_sentences(text: str) -> list[str]:
    """Sentences of `text`, whitespace compressed; abbreviations ("Dr.", "e.g.") and
    initials do not end a sentence, line breaks always do."""
    sentences: list[str] = []
    start = 0
    for match in _BOUNDARY.finditer(text):
        end = match.end()
        if match.group() != "\n" and _ends_with_abbreviation(text[start:end]):
            continue
        _add_sentence(sentences, text[start:end])
        start = end
    _add_sentence(sentences, text[start:])
    return sentences


def _ends_with_abbreviation(piece: str) -> bool:
    found = _LAST_TOKEN.search(piece.rstrip())
    if found is None:
        return False
    token = found.group(1).rstrip(".").lstrip("([\"'\u201c\u2018").lower()
    return token in _ABBREVIATIONS or (len(token) == 1 and token.isalpha())


def _add_sentence(sentences: list[str], piece: str) -> None:
    words = piece.split()
    for at in range(0, len(words), MAX_SENTENCE_WORDS):
        sentences.append(" ".join(words[at : at + MAX_SENTENCE_WORDS]))


# --- selection ----------------------------------------------------------------------------


@dataclass(slots=True)
class _Unit:
    """A sentence that may be selected; `line` is the output line it belongs to."""

    position: int
    line: int
    text: str
    words: list[str]
    lower: frozenset[str]  # every word, lower case
    terms: frozenset[str]  # the content words
    user_first: bool = False
    user_question: bool = False
    score: float = 0.0


def summarize_extractive(
    items: Sequence[SummaryItem],
    *,
    max_tokens: int,
    level: int,
    count_tokens: TokenCount,
    weights: Weights = DEFAULT_WEIGHTS,
) -> str:
    """The summary text of `items` (in stream order), at most `max_tokens` tokens."""
    if max_tokens <= 0:
        return ""
    prefixes, units = _units(items, level)
    if not units:
        return ""
    df: Counter[str] = Counter()
    for unit in units:
        df.update(unit.terms)
    _score(units, prefixes, df, weights)
    costs: dict[int, int] = {}
    chosen = _select(units, prefixes, df, max_tokens, count_tokens, costs)
    while chosen:
        text = _render(chosen, prefixes)
        over = count_tokens(text) - max_tokens
        if over <= 0:
            return text
        # The counter is not exactly additive over lines: drop the weakest sentences
        # until the estimated saving covers the overshoot, then measure again.
        for unit in sorted(chosen, key=lambda u: (u.score, -u.position)):
            chosen.remove(unit)
            over -= costs[unit.position]
            if over <= 0:
                break
    best = min(units, key=lambda u: (-u.score, u.position))
    if best.score <= 0.0:
        return ""  # only small talk
    # Not even one whole sentence fits: cut the best one.
    prefix = prefixes[best.line]
    cut = truncate_to_tokens(prefix + best.text, max_tokens, count_tokens)
    if len(cut.removesuffix(ELLIPSIS)) > len(prefix.rstrip()):
        return cut
    return truncate_to_tokens(best.text, max_tokens, count_tokens)  # no room for a prefix


def _units(items: Sequence[SummaryItem], level: int) -> tuple[list[str], list[_Unit]]:
    prefixes: list[str] = []
    units: list[_Unit] = []
    for item in items:
        if level <= 0:
            lines = [(_turn_prefix(item), item.content)]
        else:
            lines = []
            for raw in item.content.splitlines():
                line = " ".join(raw.split())
                if line:
                    found = _LINE_PREFIX.match(line)
                    cut = found.end() if found else 0
                    lines.append((line[:cut], line[cut:]))
        for prefix, body in lines:
            line_no = len(prefixes)
            prefixes.append(prefix)
            asked = False
            for index, sentence in enumerate(split_sentences(body)):
                words = _WORD.findall(sentence)
                lower = frozenset(x.lower().replace("\u2019", "'") for x in words)
                unit = _Unit(
                    position=len(units),
                    line=line_no,
                    text=sentence,
                    words=words,
                    lower=lower,
                    terms=frozenset(w for w in lower if w not in _STOPWORDS and len(w) > 1),
                )
                if level <= 0 and item.role == "user":
                    unit.user_first = index == 0
                    if not asked and sentence.endswith("?"):
                        unit.user_question = asked = True
                units.append(unit)
    return prefixes, units


def _turn_prefix(item: SummaryItem) -> str:
    speaker = " ".join((item.speaker or item.role).split())
    date = f"[{item.created_at.date().isoformat()}] " if item.created_at else ""
    return f"{date}{speaker}: " if speaker else date


def _score(units: list[_Unit], prefixes: list[str], df: Counter[str], w: Weights) -> None:
    # Centrality: a term weighs log(1 + df) * idf, highest for terms that recur across
    # the input without being everywhere; a sentence sums its distinct terms and is
    # normalized by sqrt(len) so long sentences do not win on length alone.
    n = len(units)
    weight = {t: math.log1p(d) * math.log((n + 1) / d) for t, d in df.items()}
    central = [
        sum(weight[t] for t in u.terms) / math.sqrt(len(u.terms)) if u.terms else 0.0 for u in units
    ]
    top = max(central) or 1.0
    names = _names(units, prefixes)
    for unit, centrality in zip(units, central, strict=True):
        entity = _fact_bonus(unit, w)
        facts = entity  # a name alone does not save a greeting ("Hi Mel!") from filler
        found_names = unit.lower & names
        if found_names:
            entity += w.name + w.name_extra * min(len(found_names) - 1, 2)
        score = centrality / top + min(entity, w.entity_cap)
        if unit.lower & _DECISION_WORDS or any(x.startswith(_DECISION_STEMS) for x in unit.lower):
            score += w.decision
        if unit.user_first:
            score += w.user_first
        if unit.user_question:
            score += w.user_question
        if facts == 0.0 and not unit.terms - names:
            score = 0.0  # "Thanks, Caroline!", "How have you been?": never worth a token
        elif facts == 0.0 and len(unit.terms) < 3 and not unit.user_question:
            score *= w.filler_factor
        unit.score = score


def _fact_bonus(unit: _Unit, w: Weights) -> float:
    """Dates, times, numbers and money: what a summary must not lose."""
    text, lower = unit.text, unit.lower
    digits = _DIGIT.search(text) is not None
    bonus = 0.0
    if (
        lower & _DATE_WORDS
        or any(x in _MONTHS for x in unit.words)
        or (digits and _NUMERIC_DATE.search(text))
        or (lower & _RELATIVE_TRIGGERS and _RELATIVE_DATE.search(text))
    ):
        bonus += w.date
    if lower & _TIME_WORDS or (digits and _TIME.search(text)):
        bonus += w.time
    if digits:
        bonus += w.number
        if _MONEY.search(text):
            bonus += w.money
    elif lower & _NUMBER_WORDS:
        bonus += w.number_word
    return bonus


def _names(units: list[_Unit], prefixes: list[str]) -> set[str]:
    """Words the input capitalizes where a sentence does not force it (not first), plus
    the speakers; a name is then recognized anywhere, first word included."""
    names: set[str] = set()
    for unit in units:
        for word in unit.words[1:]:
            if word[0].isupper():
                lower = word.lower().replace("\u2019", "'")
                if lower not in _STOPWORDS and lower not in _NOT_NAMES:
                    names.add(lower)
    for prefix in prefixes:
        speaker = prefix.rsplit("]", 1)[-1].strip().rstrip(":").lower()
        if speaker and speaker not in _STOPWORDS and " " not in speaker:
            names.add(speaker)
    names -= {"user", "assistant", "system", "tool"}
    return names


def _select(
    units: list[_Unit],
    prefixes: list[str],
    df: Counter[str],
    max_tokens: int,
    count_tokens: TokenCount,
    costs: dict[int, int],
) -> list[_Unit]:
    """Greedy: take each sentence that still fits, skipping repeats (a sentence
    whose terms are all in one already taken sentence). Costs are counted lazily."""
    prefix_cost: dict[int, int] = {}
    taken_by_term: dict[str, list[frozenset[str]]] = {}
    seen_texts: set[str] = set()
    chosen: list[_Unit] = []
    left = max_tokens
    # Ranked by score per sqrt(length): a short sentence with the same facts wins, but
    # not so strongly that fragments crowd out whole statements.
    ranked = sorted(units, key=lambda u: (-u.score / math.sqrt(max(len(u.words), 3)), u.position))
    for unit in ranked:
        if left < 2 or unit.score <= 0.0:
            break
        if unit.terms:
            rarest = min(unit.terms, key=lambda t: (df[t], t))
            if any(unit.terms <= s for s in taken_by_term.get(rarest, ())):
                continue
        elif unit.text.lower() in seen_texts:
            continue
        cost = count_tokens(unit.text) + 1  # + the space or newline before it
        extra = 0
        if unit.line not in prefix_cost:
            extra = count_tokens(prefixes[unit.line]) if prefixes[unit.line] else 0
        if cost + extra > left:
            continue
        if unit.line not in prefix_cost:
            prefix_cost[unit.line] = extra
            cost += extra  # dropping the line's first sentence frees at least this much
        costs[unit.position] = cost
        left -= cost
        chosen.append(unit)
        seen_texts.add(unit.text.lower())
        for term in unit.terms:
            taken_by_term.setdefault(term, []).append(unit.terms)
    return chosen


def _render(chosen: list[_Unit], prefixes: list[str]) -> str:
    lines: dict[int, list[str]] = {}
    for unit in sorted(chosen, key=lambda u: u.position):
        lines.setdefault(unit.line, []).append(unit.text)
    return "\n".join(prefixes[line] + " ".join(texts) for line, texts in lines.items())


def truncate_to_tokens(text: str, max_tokens: int, count_tokens: TokenCount) -> str:
    """`text` cut (at a word boundary when it can, with "…") to at most `max_tokens`
    tokens; "" if not even a few characters fit."""
    if max_tokens <= 0:
        return ""
    if count_tokens(text) <= max_tokens:
        return text

    def fits(n: int) -> bool:
        return count_tokens(text[:n].rstrip() + ELLIPSIS) <= max_tokens

    # Token counts grow (almost) monotonically with the prefix length: binary search,
    # then back off to a word boundary and check again, since "almost" is not "always".
    low, high = 0, len(text)
    while low < high:
        mid = (low + high + 1) // 2
        if fits(mid):
            low = mid
        else:
            high = mid - 1
    space = text.rfind(" ", 0, low + 1)
    for n in (space, low) if space > 0 else (low,):
        cut = text[:n].rstrip()
        while cut and count_tokens(cut + ELLIPSIS) > max_tokens:
            cut = cut[:-1].rstrip()
        if cut:
            return cut + ELLIPSIS
    return ""
