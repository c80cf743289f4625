"""Hybrid retrieval against the real PostgreSQL and the real model: by meaning, by
keyword, within tenant, session, before_version and user scope; history search with
filters. A benchmark (opt-in: CONTEXTGATE_SEARCH_BENCH=1, run with -s) loads sessions of
100, 1,000 and 10,000 turns and prints p50/p95 of session_candidates."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from typing import Any

import asyncpg
import pytest

from adapters.embedder import AsyncEmbedder, SentenceTransformerEmbedder
from adapters.postgres import search
from adapters.postgres.context_inputs import PostgresContextReader
from adapters.postgres.database import Database
from adapters.postgres.search import HistoryFilter, search_history, session_candidates
from adapters.postgres.session_repository import PostgresSessions
from app.workers.embeddings import EmbeddingsWorker
from tests.integration.test_embeddings import drain, open_session, say

TRIP = [
    ("user", "I want to book a hotel in Lisbon for three nights starting May 4."),
    ("assistant", "Booked: Hotel Avenida, three nights, breakfast included."),
    ("user", "My cat Zephyrine needs someone to feed her while I am away."),
    ("assistant", "I can suggest a pet sitter service near your home."),
    ("user", "Please remind me to renew my passport before the trip."),
    ("assistant", "Reminder set for April 20."),
    ("user", "The total budget for the whole trip is 2000 euros."),
    ("assistant", "Noted: 2000 euros."),
    ("user", "Can you recommend a good seafood restaurant near the river?"),
    ("assistant", "Try the market hall at Cais do Sodre."),
    # The recent window, from stream version 12 on (seq 11).
    ("user", "What time is my flight on Monday?"),
    ("assistant", "Your flight leaves at 9:40 from terminal 1."),
]
WORK = [
    ("user", "The quarterly sales report is due on Friday."),
    ("assistant", "I'll draft the sales report outline."),
    ("user", "My hotel booking for the Berlin conference is confirmed."),
]
BOB = [("user", "I need a hotel room in Porto for the weekend.")]
RECENT = 12  # before_version: turns seq 11-12 (stream versions 12-13) are recent


@dataclass
class Corpus:
    db: Database
    embedder: AsyncEmbedder
    acme_positions: set[int]


@pytest.fixture(scope="module")
def embedder() -> Iterator[AsyncEmbedder]:
    model = AsyncEmbedder(SentenceTransformerEmbedder())
    yield model
    model.close()


@pytest.fixture
async def corpus(db: Database, embedder: AsyncEmbedder) -> AsyncIterator[Corpus]:
    repo = PostgresSessions(db)
    positions: set[int] = set()
    for session_id, user, turns in (
        ("trip", "ada", TRIP),
        ("work", "ada", WORK),
        ("bob", "bob", BOB),
    ):
        await open_session(repo, session_id, user_id=user)
        positions.update(await say(repo, session_id, *turns))
    # Another tenant, the same session id and user id, the same words.
    await open_session(repo, "trip", user_id="ada", tenant="globex")
    await say(repo, "trip", *TRIP[:4], tenant="globex")
    worker = EmbeddingsWorker(db, embedder)
    await drain(worker)
    await worker.stop()
    yield Corpus(db, embedder, positions)


async def candidates(
    c: Corpus, question: str, *, before: int = RECENT, user_scope: str | None = None, **kw: Any
) -> list[search.Candidate]:
    vector = await c.embedder.embed_query(question)
    async with c.db.connection() as conn:
        return await session_candidates(
            conn, "acme", "trip", vector, question, before, user_scope=user_scope, **kw
        )


def by_seq(found: list[search.Candidate], session_id: str = "trip") -> dict[int, search.Candidate]:
    return {c.seq: c for c in found if c.session_id == session_id}


async def test_finds_a_turn_by_meaning_without_shared_words(corpus: Corpus) -> None:
    found = await candidates(corpus, "Where will I be sleeping during my Portugal vacation?")
    hotel = by_seq(found)[1]
    assert hotel.vector_rank is not None and hotel.vector_rank <= 3
    assert hotel.text_rank is None  # no term in common: found by meaning alone
    assert hotel.content == TRIP[0][1]
    assert hotel.role == "user" and hotel.stream_version == 2
    assert hotel.tokens == (len(TRIP[0][1]) + 3) // 4  # from turn_rows
    assert len(hotel.embedding) == 384 and 0.0 <= hotel.distance < 1.0
    # Ranked by fusion, each turn once.
    assert len({(c.session_id, c.seq) for c in found}) == len(found)
    assert found[0].vector_rank == 1 or found[0].text_rank == 1


async def test_a_rare_keyword_outranks_common_words(corpus: Corpus) -> None:
    found = await candidates(corpus, "what did I say about Zephyrine and the trip")
    text_first = min((c for c in found if c.text_rank), key=lambda c: c.text_rank or 0)
    assert (text_first.seq, text_first.text_rank) == (3, 1)
    # The common word still brings its turns, behind the rare one.
    assert {c.seq for c in found if c.text_rank} >= {3, 5, 7}


async def test_common_terms_are_left_to_the_vector_half(
    corpus: Corpus, monkeypatch: pytest.MonkeyPatch
) -> None:
    found = await candidates(corpus, "the trip", common_terms=["trip"])
    assert {c.seq for c in found if c.text_rank} >= {5, 7}, "a small scope: still searched"
    monkeypatch.setattr(search, "COMMON_TERMS_MIN_SCOPE", 10)
    # "trip" is in 3 of the 10 older turns: listed as common, it brings no text hits.
    found = await candidates(corpus, "the trip", common_terms=["trip"])
    assert not [c for c in found if c.text_rank]
    assert found and all(c.vector_rank for c in found)
    # The other words of the query are still searched.
    found = await candidates(corpus, "Zephyrine and the trip", common_terms=["trip"])
    assert [c.seq for c in found if c.text_rank] == [3]


async def test_common_terms_come_from_postgresql_statistics(corpus: Corpus) -> None:
    async with corpus.db.connection() as conn:
        await conn.execute("ANALYZE turn_embeddings")
        common = search.CommonTerms(share=0.15)
        terms = await common.get(conn)
        # 20 turns in the table: "hotel" is in 4 (20%), "zephyrin" in 1 (5%).
        assert "hotel" in terms and "zephyrin" not in terms
        assert "hotel" not in await search.CommonTerms(share=0.5).get(conn)
        await conn.execute("TRUNCATE turn_embeddings")
        await conn.execute("VACUUM ANALYZE turn_embeddings")
        assert await common.get(conn) == terms  # cached until the TTL passes
        assert await search.CommonTerms(share=1.0).get(conn) == []


async def test_common_terms_are_read_again_soon_while_the_table_is_unanalyzed(
    corpus: Corpus, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A young table has no statistics yet: the empty answer is not kept for the whole
    TTL (a benchmark's growing sessions walked every common term's postings for ten
    minutes), but asked again after UNANALYZED_RETRY_S."""
    async with corpus.db.connection() as conn:
        common = search.CommonTerms(share=0.15)
        assert await common.get(conn) == []  # never analyzed
        await conn.execute("ANALYZE turn_embeddings")
        assert await common.get(conn) == []  # within the retry interval: as it was
        monkeypatch.setattr(common, "_read_at", common._read_at - search.UNANALYZED_RETRY_S)
        assert "hotel" in await common.get(conn)


async def test_the_table_size_is_read_again_soon_while_the_table_is_unanalyzed(
    corpus: Corpus, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Likewise the size the plan depends on: unknown (-1), a young session's search
    would stay exact for the whole TTL."""
    async with corpus.db.connection() as conn:
        rows = search.TableRows(ttl_s=3600)
        assert await rows.get(conn) == -1  # never analyzed
        await conn.execute("ANALYZE turn_embeddings")
        assert await rows.get(conn) == -1  # within the retry interval: as it was
        monkeypatch.setattr(rows, "_read_at", rows._read_at - search.UNANALYZED_RETRY_S)
        analyzed = await rows.get(conn)
        assert analyzed == await conn.fetchval("SELECT count(*) FROM turn_embeddings") > 0
        monkeypatch.setattr(rows, "_read_at", rows._read_at - search.UNANALYZED_RETRY_S)
        await conn.execute("TRUNCATE turn_embeddings")
        await conn.execute("VACUUM ANALYZE turn_embeddings")
        assert await rows.get(conn) == analyzed  # known: kept for the TTL


def test_common_terms_skip_the_three_trailing_statistics() -> None:
    terms = ["a", "b"]
    freqs = [0.5, 0.01, 0.01, 0.5, 0.0]  # per term, then minimum, maximum, null share
    assert search.common_terms(terms, freqs, 0.05) == ["a"]
    assert search.common_terms(None, None, 0.05) == []


async def test_only_turns_older_than_the_recent_window(corpus: Corpus) -> None:
    question = "When does my plane depart?"
    found = await candidates(corpus, question)
    assert found and all(c.stream_version < RECENT for c in found)
    assert all(c.seq <= 10 for c in found)
    widened = by_seq(await candidates(corpus, question, before=100))
    flight = widened[11]
    assert flight.vector_rank == 1


async def test_scoped_to_the_tenant_and_the_session(corpus: Corpus) -> None:
    found = await candidates(corpus, "hotel booking", k_vector=50, k_text=50)
    assert {c.session_id for c in found} == {"trip"}
    # globex holds a session "trip" with the same words; none of its turns comes back.
    assert {c.global_position for c in found} <= corpus.acme_positions
    assert {c.seq for c in found} == set(range(1, 11))


async def test_user_scope_reaches_the_same_users_other_sessions_only(corpus: Corpus) -> None:
    found = await candidates(corpus, "hotel booking", user_scope="ada", k_vector=50, k_text=50)
    sessions = {c.session_id for c in found}
    assert sessions == {"trip", "work"}  # never bob's, never globex's
    assert {c.global_position for c in found} <= corpus.acme_positions
    assert all(c.stream_version < RECENT for c in found if c.session_id == "trip")
    berlin = by_seq(found, "work")[3]
    assert berlin.text_rank is not None and berlin.vector_rank is not None
    assert {c.seq for c in found if c.session_id == "work"} == {1, 2, 3}


async def test_the_hnsw_plan_agrees_with_the_exact_plan(
    corpus: Corpus, monkeypatch: pytest.MonkeyPatch
) -> None:
    question = "Who is looking after my pet?"
    exact = await candidates(corpus, question)
    monkeypatch.setattr(search, "EXACT_LIMIT", 0)
    approximate = await candidates(corpus, question)
    assert [(c.seq, c.vector_rank, c.text_rank) for c in approximate] == [
        (c.seq, c.vector_rank, c.text_rank) for c in exact
    ]
    # The cat's turn and the pet sitter's lead.
    assert {c.seq for c in approximate if c.vector_rank in (1, 2)} == {3, 4}
    user = await candidates(corpus, question, user_scope="ada")
    assert {c.session_id for c in user} <= {"trip", "work"}

    # Inside the caller's transaction the settings do not outlive the call.
    vector = await corpus.embedder.embed_query(question)
    async with corpus.db.connection() as conn, conn.transaction():
        for _ in range(2):
            await session_candidates(conn, "acme", "trip", vector, question, RECENT)
        assert await conn.fetchval("SHOW enable_sort") == "on"
        assert await conn.fetchval("SHOW hnsw.iterative_scan") == "off"
        assert await conn.fetchval("SHOW plan_cache_mode") == "auto"
        # The candidates statement is planned once, not at every call.
        plans = await conn.fetchrow(
            "SELECT generic_plans, custom_plans FROM pg_prepared_statements WHERE statement = $1",
            search._CANDIDATES[(False, "hnsw")],
        )
        assert plans["generic_plans"] >= 2 and plans["custom_plans"] == 0
    # Outside one, the call's own transaction ends with it, and its settings too, also
    # when the statement fails.
    async with corpus.db.connection() as conn:
        await session_candidates(conn, "acme", "trip", vector, question, RECENT)
        assert not conn.is_in_transaction()
        assert await conn.fetchval("SHOW enable_sort") == "on"
        with pytest.raises(asyncpg.DivisionByZeroError):
            await search._fetch(conn, "SELECT 1 / $1::int", [0], "hnsw")
        assert not conn.is_in_transaction()
        assert await conn.fetchval("SHOW hnsw.ef_search") == "40"  # pgvector's default


async def test_the_hnsw_plan_runs_in_one_round_trip_on_a_pool_of_its_own(
    corpus: Corpus, raw_conn: asyncpg.Connection, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The reader runs the HNSW plan on connections that carry its settings from their
    start (no transaction, no SET): the same rows as under SET LOCAL, a generic plan,
    and the main pool's connections keep PostgreSQL's defaults."""
    monkeypatch.setattr(search, "EXACT_LIMIT", 0)
    question = "Who is looking after my pet?"
    vector = await corpus.embedder.embed_query(question)
    settings = search.HNSW_CANDIDATES_SETTINGS

    def own_pool() -> Any:
        return corpus.db.connection(settings)

    def key(found: list[search.Candidate]) -> list[tuple[Any, ...]]:
        return [(c.session_id, c.seq, c.vector_rank, c.text_rank, c.partner) for c in found]

    for user in (None, "ada"):
        under_set_local = await candidates(corpus, question, user_scope=user)
        async with corpus.db.connection() as conn:
            pooled = await session_candidates(
                conn, "acme", "trip", vector, question, RECENT, user_scope=user,
                hnsw_connection=own_pool,
            )  # fmt: skip
        assert key(pooled) == key(under_set_local) and pooled
    # Through the context engine's reader, as the proxy calls it.
    reader = PostgresContextReader(corpus.db)
    read = await reader.candidates(
        "acme", "trip", query_embedding=vector, query_text=question,
        before_version=RECENT, user_id=None, session_turns=len(TRIP),
    )  # fmt: skip
    assert [(c.turn.seq, c.vector_rank) for c in read][:2] == [
        (c.seq, c.vector_rank) for c in under_set_local
    ][:2]
    async with own_pool() as conn:
        assert not conn.is_in_transaction()
        for name, value in settings:
            assert await conn.fetchval(f"SHOW {name}") == value
        plans = await conn.fetchrow(
            "SELECT generic_plans, custom_plans FROM pg_prepared_statements WHERE statement = $1",
            search._CANDIDATES[(False, "hnsw")],
        )
        assert plans["generic_plans"] >= 2 and plans["custom_plans"] == 0
    async with corpus.db.connection() as conn:
        assert await conn.fetchval("SHOW enable_sort") == "on"
        assert await conn.fetchval("SHOW plan_cache_mode") == "auto"
        assert await conn.fetchval("SHOW hnsw.ef_search") == "40"
    # dispose() closes that pool as well as the main one.
    count = """SELECT count(*) FROM pg_stat_activity
        WHERE application_name = 'contextgate' AND datname = current_database()"""
    assert await raw_conn.fetchval(count) >= 2
    await corpus.db.dispose()
    for _ in range(100):  # a backend exits just after its socket closes
        if await raw_conn.fetchval(count) == 0:
            break
        await asyncio.sleep(0.02)
    assert await raw_conn.fetchval(count) == 0


@pytest.mark.parametrize("plan", ["exact", "hnsw"])
async def test_each_candidate_comes_with_the_other_half_of_its_pair(
    corpus: Corpus, monkeypatch: pytest.MonkeyPatch, plan: str
) -> None:
    """In the same statement: a question's answer (the next seq), an answer's question
    (the one before), each with its text from the log."""
    if plan == "hnsw":
        monkeypatch.setattr(search, "EXACT_LIMIT", 0)
    found = by_seq(await candidates(corpus, "Who is looking after my pet?"))
    cat, sitter = found[3], found[4]  # seq 3 asks, seq 4 answers
    assert cat.partner is not None and sitter.partner is not None
    assert (cat.partner["seq"], cat.partner["role"], cat.partner["content"]) == (
        4, "assistant", TRIP[3][1],
    )  # fmt: skip
    assert (sitter.partner["seq"], sitter.partner["content"]) == (3, TRIP[2][1])
    assert sitter.partner["stream_version"] == cat.stream_version
    assert sitter.partner["global_position"] == cat.global_position
    assert sitter.partner["tokens"] == cat.tokens
    # The newest turn of a session whose answer is not there yet has no partner.
    work = await corpus.embedder.embed_query("conference hotel")
    async with corpus.db.connection() as conn:
        hits = await session_candidates(conn, "acme", "work", work, "conference hotel", 99)
    last = {c.seq: c for c in hits}[3]
    assert last.partner is None and last.content == WORK[2][1]


async def test_scope_sizes_given_by_the_caller_plan_as_counted_ones(
    corpus: Corpus, monkeypatch: pytest.MonkeyPatch
) -> None:
    question = "Who is looking after my pet?"
    counted = await candidates(corpus, question)
    async with corpus.db.connection() as conn:
        rows = await search.TableRows().get(conn)
        await conn.execute("ANALYZE turn_embeddings")
        cached = search.TableRows(ttl_s=3600)
        analyzed = await cached.get(conn)
        given = await candidates(corpus, question, sizes=(len(TRIP), analyzed))
        assert await cached.get(conn) == analyzed  # not read again within its ttl
    assert rows in (-1.0, 0.0) and analyzed > 0
    assert [(c.seq, c.vector_rank, c.text_rank) for c in given] == [
        (c.seq, c.vector_rank, c.text_rank) for c in counted
    ]
    # The sizes choose the plan: a large session holding a small share of the table.
    plans: list[str] = []
    real = search.candidate_plan

    def recording_plan(*args: Any, **kwargs: Any) -> str:
        plans.append(real(*args, **kwargs))
        return plans[-1]

    monkeypatch.setattr(search, "candidate_plan", recording_plan)
    await candidates(corpus, question, sizes=(search.EXACT_LIMIT + 1, 10**9))
    await candidates(corpus, question, sizes=(len(TRIP), analyzed))
    assert plans == ["window", "exact"]


async def test_a_session_with_a_small_share_of_the_table_is_searched_in_a_window(
    corpus: Corpus, raw_conn: asyncpg.Connection, monkeypatch: pytest.MonkeyPatch
) -> None:
    question = "Who is looking after my pet?"
    exact = await candidates(corpus, question)
    await raw_conn.execute("ANALYZE turn_embeddings")  # the plan reads the table's size
    monkeypatch.setattr(search, "EXACT_LIMIT", 0)
    monkeypatch.setattr(search, "HNSW_MIN_SHARE", 2.0)
    windowed = await candidates(corpus, question)
    assert [(c.seq, c.vector_rank, c.text_rank) for c in windowed] == [
        (c.seq, c.vector_rank, c.text_rank) for c in exact
    ]
    # Only the newest older turns are compared; words still reach the older ones.
    monkeypatch.setattr(search, "EXACT_WINDOW", 3)  # built into the statement:
    window_sql = search._candidates_sql(search._SESSION_SCOPE, "window")
    monkeypatch.setitem(search._CANDIDATES, (False, "window"), window_sql)
    narrow = await candidates(corpus, "Zephyrine")
    assert {c.seq for c in narrow if c.vector_rank} == {8, 9, 10}
    assert [c.seq for c in narrow if c.text_rank] == [3]


def test_candidate_plan() -> None:
    limit, share = search.EXACT_LIMIT, search.HNSW_MIN_SHARE
    assert search.candidate_plan(limit, 10**9, user_scope=False) == "exact"
    big = limit + 1
    assert search.candidate_plan(big, big / share, user_scope=False) == "hnsw"
    assert search.candidate_plan(big, 10 * big / share, user_scope=False) == "window"
    assert search.candidate_plan(big, 10 * big / share, user_scope=True) == "hnsw"
    assert search.candidate_plan(big, -1, user_scope=False) == "hnsw"  # never analyzed


def test_a_scope_holding_most_of_the_table_takes_the_index_before_the_exact_limit() -> None:
    plan = search.candidate_plan
    assert plan(700, 700, user_scope=False) == "exact"  # too small to gain
    assert plan(1_000, 1_000, user_scope=False) == "hnsw"
    assert plan(2_000, 2_000, user_scope=False) == "hnsw"  # alone in its table
    assert plan(2_000, 4_000, user_scope=False) == "hnsw"
    assert plan(2_000, 40_000, user_scope=False) == "exact"  # a 5% share
    assert plan(3_500, 35_000, user_scope=False) == "hnsw"  # a 10% share, long enough
    assert plan(2_000, -1, user_scope=False) == "exact"  # never analyzed: the bound holds
    # The crossover follows the costs: just below it exact, just above it the index.
    share = 0.5
    crossover = (search.HNSW_BASE_MS + search.HNSW_MS_PER_INVERSE_SHARE / share) / (
        search.EXACT_MS_PER_TURN
    )
    assert not search.hnsw_cheaper(int(crossover) - 1, share)
    assert search.hnsw_cheaper(int(crossover) + 2, share)


async def test_history_search_fuses_meaning_and_words_within_the_tenant(
    corpus: Corpus, raw_conn: asyncpg.Connection
) -> None:
    question = "hotel booking"  # web-search syntax: both words (stems) must match
    vector = await corpus.embedder.embed_query(question)
    async with corpus.db.connection() as conn:
        hits = await search_history(conn, "acme", vector, question, limit=5)
    assert len(hits) == 5
    assert [h.score for h in hits] == sorted((h.score for h in hits), reverse=True)
    assert {h.global_position for h in hits} <= corpus.acme_positions
    hotel_turns = {("trip", 1), ("trip", 2), ("work", 3), ("bob", 1)}
    assert hotel_turns <= {(h.session_id, h.seq) for h in hits}
    both = [h for h in hits if h.vector_rank and h.text_rank]
    assert {(h.session_id, h.seq) for h in both} == {("trip", 1), ("trip", 2), ("work", 3)}
    assert hits[0] in both  # found both ways ranks first
    # Stable identifiers link each hit back to its event.
    for h in hits:
        event = await raw_conn.fetchrow(
            "SELECT event_id, data->>'content' AS content FROM events "
            "WHERE tenant_id = 'acme' AND global_position = $1",
            h.global_position,
        )
        assert (event["event_id"], event["content"]) == (h.event_id, h.content)


async def test_history_search_filters(corpus: Corpus, monkeypatch: pytest.MonkeyPatch) -> None:
    question = "hotel"
    vector = await corpus.embedder.embed_query(question)

    async def run(filters: HistoryFilter, text: str | None = question) -> list[search.HistoryHit]:
        async with corpus.db.connection() as conn:
            return await search_history(conn, "acme", vector, text, filters, limit=50)

    assert {h.session_id for h in await run(HistoryFilter(user_id="bob"))} == {"bob"}
    assert {h.session_id for h in await run(HistoryFilter(session_id="work"))} == {"work"}
    assert {h.user_id for h in await run(HistoryFilter(user_id="ada"))} == {"ada"}
    assistant = await run(HistoryFilter(role="assistant"))
    assert assistant and {h.role for h in assistant} == {"assistant"}

    everything = await run(HistoryFilter())
    times = sorted({h.created_at for h in everything})
    cut = times[len(times) // 2]
    after = await run(HistoryFilter(created_after=cut))
    before = await run(HistoryFilter(created_before=cut))
    assert after and all(h.created_at >= cut for h in after)
    assert before and all(h.created_at < cut for h in before)
    assert len(after) + len(before) == len(everything)

    # The approximate plan, with the same filters.
    monkeypatch.setattr(search, "EXACT_LIMIT", 0)
    assert {h.session_id for h in await run(HistoryFilter(user_id="bob"))} == {"bob"}
    assert len(await run(HistoryFilter())) == len(everything)


async def test_history_search_by_words_alone_or_meaning_alone(corpus: Corpus) -> None:
    async with corpus.db.connection() as conn:
        # Web-search syntax: a phrase, and a word left out.
        words = await search_history(conn, "acme", None, '"sales report" -draft')
        assert [(h.session_id, h.seq) for h in words] == [("work", 1)]
        assert words[0].vector_rank is None and words[0].text_rank == 1

        vector = await corpus.embedder.embed_query("seafood dinner by the water")
        meaning = await search_history(conn, "acme", vector, None, limit=3)
        assert (meaning[0].session_id, meaning[0].seq) == ("trip", 9)
        assert all(h.text_rank is None for h in meaning)

        assert await search_history(conn, "acme", None, "  ") == []


async def test_odd_terms_neither_fail_nor_miss(corpus: Corpus) -> None:
    repo = PostgresSessions(corpus.db)
    await open_session(repo, "odd")
    text = "Our state-of-the-art parser reads O'Reilly's C:\\Temp\\a.txt and example.com/a?b=c"
    await say(repo, "odd", ("user", text), ("user", "filler"))
    worker = EmbeddingsWorker(corpus.db, corpus.embedder)
    await drain(worker)
    await worker.stop()
    vector = await corpus.embedder.embed_query("anything")
    for query in ("state-of-the-art", "O'Reilly", "example.com/a?b=c", "C:\\Temp", "' & | ! <->"):
        async with corpus.db.connection() as conn:
            found = await session_candidates(conn, "acme", "odd", vector, query, 100)
        text_hits = [c.seq for c in found if c.text_rank]
        assert text_hits == ([] if query.startswith("'") else [1]), query
