"""Rolling summaries and idle compaction against the real PostgreSQL."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime, timedelta

import asyncpg

from adapters.postgres.context_inputs import PostgresContextReader
from adapters.postgres.database import Database
from adapters.postgres.session_repository import PostgresSessions
from adapters.tokenizers import CharEstimateCounter
from app.services import sessions as svc
from app.services.compaction import (
    CompactionPolicy,
    CompactionPorts,
    compact_session,
    run_idle_compaction,
    run_summaries,
    summarize_session,
)
from domain.summaries.ports import SummaryItem, SummaryText

CTX = svc.RequestContext("acme", "test")
POLICY = CompactionPolicy(keep_recent_turns=4, summarize_after=6, max_turns_per_summary=10)


class RecordingSummarizer:
    """Summarizer port double: records its inputs, returns their versions as text."""

    def __init__(self) -> None:
        self.calls: list[tuple[list[SummaryItem], int]] = []

    async def summarize(
        self, items: Sequence[SummaryItem], *, max_tokens: int, level: int
    ) -> SummaryText:
        self.calls.append((list(items), level))
        return SummaryText(" ".join(str(i.stream_version) for i in items), "recording")


async def seed(db: Database, session_id: str, turns: int) -> PostgresSessions:
    repo = PostgresSessions(db)
    await svc.create_session(repo, CTX, session_id=session_id)
    for i in range(turns):
        role = "user" if i % 2 == 0 else "assistant"
        await svc.append_turns(
            repo, CharEstimateCounter(), CTX, session_id, [svc.TurnSpec(role, f"turn {i}")]
        )
    return repo


async def test_rolling_summaries_cover_everything_before_the_recent_turns(
    db: Database, raw_conn: asyncpg.Connection
) -> None:
    repo = await seed(db, "long", 30)  # versions 2..31
    summarizer = RecordingSummarizer()
    ports = CompactionPorts(db, repo.events, summarizer, CharEstimateCounter())

    first = await summarize_session(ports, "acme", "long", POLICY)
    assert first is not None
    assert (first.level, first.from_version, first.to_version) == (0, 2, 11)  # 10 turns max
    second = await summarize_session(ports, "acme", "long", POLICY)
    assert second is not None
    assert (second.level, second.from_version, second.to_version) == (1, 2, 21)
    # The second folds the first in (as one item) instead of re-reading its turns.
    items, level = summarizer.calls[1]
    assert level == 1 and items[0].role == "summary" and items[0].stream_version == 11
    assert [i.stream_version for i in items[1:]] == list(range(12, 22))
    third = await summarize_session(ports, "acme", "long", POLICY)
    assert third is not None and third.to_version == 27  # the newest 4 turns stay verbatim
    assert await summarize_session(ports, "acme", "long", POLICY) is None

    row = await raw_conn.fetchrow(
        "SELECT summarized_to_version, version FROM sessions WHERE session_id = 'long'"
    )
    assert row["summarized_to_version"] == 27
    texts = await raw_conn.fetch(
        "SELECT level, to_version, text FROM summaries WHERE session_id = 'long'"
        " ORDER BY to_version"
    )
    assert [(r["level"], r["to_version"]) for r in texts] == [(0, 11), (1, 21), (2, 27)]

    # The context reader brings the newest summary with the session's facts (one read).
    reader = PostgresContextReader(db)
    facts = await reader.session("acme", "long")
    assert facts is not None and facts.has_summary and facts.summary is not None
    assert facts.summary == await reader.newest_summary("acme", "long")
    assert (facts.summary.level, facts.summary.to_version) == (2, 27)
    assert facts.summary.text == texts[-1]["text"]
    await seed(db, "short", 3)
    short = await reader.session("acme", "short")
    assert short is not None and short.has_summary and short.summary is None


async def test_the_job_picks_only_sessions_past_the_threshold(db: Database) -> None:
    repo = await seed(db, "short", 5)
    await seed(db, "long", 20)
    ports = CompactionPorts(db, repo.events, RecordingSummarizer(), CharEstimateCounter())
    assert await run_summaries(ports, POLICY) == 1  # "long": turns 2..11 (10 at most a run)
    assert await run_summaries(ports, POLICY) == 1  # "long": 12..17, the newest 4 stay
    assert await run_summaries(ports, POLICY) == 0  # the rest is under the threshold now


async def test_idle_sessions_are_compacted_once(db: Database, raw_conn: asyncpg.Connection) -> None:
    repo = await seed(db, "idle", 12)
    ports = CompactionPorts(db, repo.events, RecordingSummarizer(), CharEstimateCounter())
    later = datetime.now(UTC) + timedelta(hours=1)
    assert await run_idle_compaction(ports, POLICY, now=datetime.now(UTC)) == 0  # not idle yet
    assert await run_idle_compaction(ports, POLICY, now=later) == 1
    assert await run_idle_compaction(ports, POLICY, now=later) == 0  # compacted already
    row = await raw_conn.fetchrow(
        "SELECT compacted_to_version, compacted_at, summarized_to_version, last_activity_at"
        " FROM sessions WHERE session_id = 'idle'"
    )
    assert row["compacted_to_version"] == row["summarized_to_version"] == 9  # 13 - 4 kept
    assert row["compacted_at"] > row["last_activity_at"]
    events = await raw_conn.fetch(
        "SELECT type FROM events WHERE stream_id = 'session:idle' ORDER BY stream_version"
    )
    assert [e["type"] for e in events][-2:] == ["SummaryRecorded", "SessionCompacted"]
    assert len(events) == 1 + 12 + 2  # nothing deleted

    # New activity makes it eligible again.
    await svc.append_turns(repo, CharEstimateCounter(), CTX, "idle", [svc.TurnSpec("user", "hi")])
    assert await run_idle_compaction(ports, POLICY, now=later) == 1


async def test_closed_sessions_are_left_alone(db: Database) -> None:
    repo = await seed(db, "closed", 12)
    await svc.close_session(repo, CTX, "closed")
    ports = CompactionPorts(db, repo.events, RecordingSummarizer(), CharEstimateCounter())
    assert await compact_session(ports, "acme", "closed", POLICY) is False


async def test_with_the_offline_extractive_summarizer(
    db: Database, raw_conn: asyncpg.Connection
) -> None:
    from adapters.summarizers import ExtractiveSummarizer
    from adapters.tokenizers import TiktokenCounter

    counter = TiktokenCounter()
    repo = PostgresSessions(db)
    await svc.create_session(repo, CTX, session_id="trip")
    lines = [
        ("user", "Caroline here. I adopted a dog named Biscuit on 7 May 2023."),
        ("assistant", "Congratulations! How old is Biscuit?"),
        ("user", "He is 3 years old and cost $250 at the Riverside shelter."),
        ("assistant", "That sounds lovely."),
    ] * 5
    for role, text in lines:
        await svc.append_turns(repo, counter, CTX, "trip", [svc.TurnSpec(role, text)])
    ports = CompactionPorts(db, repo.events, ExtractiveSummarizer(counter.count), counter)
    policy = CompactionPolicy(keep_recent_turns=4, summary_max_tokens=60)
    event = await summarize_session(ports, "acme", "trip", policy)
    assert event is not None and event.summarizer == "extractive-v1"
    assert 0 < event.tokens <= 60
    assert "Biscuit" in event.text and "2023" in event.text
    stored = await raw_conn.fetchval("SELECT text FROM summaries WHERE session_id = 'trip'")
    assert stored == event.text
