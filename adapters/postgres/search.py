"""Hybrid retrieval over the embeddings projection (`turn_embeddings`): pgvector cosine
distance and PostgreSQL full text, for the context engine (`session_candidates`) and
for the data team's history search (`search_history`, fused by reciprocal rank).

Every query is bounded: top-k by vector, top-k by text, then the chosen rows' text
(from `events`) and tokens (from `turn_rows`) by primary key. The vector top-k takes one
of three plans, chosen per call from the size of the scope (a session, or a user's
sessions) and its share of the table:

- "exact", up to EXACT_LIMIT turns: exact distances over the scope's rows, read through
  the primary key or the user index (~0.9 us a turn: ~4 ms at the limit), unless the
  scope holds so large a share of the table that the index is cheaper (`hnsw_cheaper`);
- "hnsw", a larger scope holding at least HNSW_MIN_SHARE of the table: the HNSW index
  with pgvector 0.8's iterative scan (relaxed order), so the scope filter does not
  starve the scan; `hnsw.max_scan_tuples` caps its work. The index spans every tenant
  and session: what it costs depends on the scope's share of the table, not on its
  length, and a small share makes it slow and inexact (see HNSW_MIN_SHARE);
- "window", a large session holding a small share of a large table: exact distances
  over its newest EXACT_WINDOW older turns (older ones are found by words only).
  A user scope with a small share still takes the HNSW plan.

Full text: `session_candidates` treats the query as the user's message, not a search
expression: any of its terms may match, each term reads at most TEXT_TERM_LIMIT turns
(all of a rare term's), and a turn scores the sum of its terms' inverse document
frequencies in the scope. `search_history` takes web-search syntax (`"a phrase"`, `or`,
`-word`) and ranks by ts_rank_cd, at most TEXT_SCAN_LIMIT matches a query. Either way a
query of common words costs a bounded amount.
"""

from __future__ import annotations

import math
import time
from collections.abc import Awaitable, Callable, Sequence
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from adapters.postgres.database import Connection, SessionSettings, decode_vector_array
from domain.quick_init import quick_init

EXACT_LIMIT = 4_000
# The HNSW plan pays off while the scope holds a fair share of the table (measured:
# a session with 9% of the rows, 3 ms and recall 0.99; with 0.9%, 24-44 ms and 0.87;
# with 0.09%, 54-128 ms and 0.71). Below this share a session is searched exactly over
# its newest EXACT_WINDOW older turns instead (~0.9 us a turn: ~18 ms at most).
HNSW_MIN_SHARE = 0.05
# What each plan's vector half costs, in ms (measured on 2 cores, 384 dimensions): exact,
# per turn of the scope; HNSW, a base plus a part that grows as the scope's share of the
# table shrinks (the iterative scan skips other scopes' rows). One session alone in a
# 2,000-turn table: exact 3.6 ms, HNSW 2.0 (the same rows bar 1 in 1,000). The HNSW
# statement is planned once (a generic plan, see _GENERIC_PLAN) where the exact one is
# planned at every call: ~0.45 ms less of its base than first measured (1.0). Alone in
# its table, exact 1.42 ms at 200 turns and 2.3 at 1,000, HNSW 1.8-1.9 at any length.
EXACT_MS_PER_TURN = 0.0009
HNSW_BASE_MS = 0.55
HNSW_MS_PER_INVERSE_SHARE = 0.2
EXACT_WINDOW = 20_000
EF_SEARCH = 100
MAX_SCAN_TUPLES = 20_000
TEXT_SCAN_LIMIT = 1_000
TEXT_TERM_LIMIT = 100
TEXT_MAX_TERMS = 16
RRF_K = 60
# Common terms are left out of the full-text half only in scopes this large: below, their
# posting lists are short, and in a young, small table most repeated words are "common".
# From 500 turns (2,000 before): a term in every other turn of a 1,000-turn session
# still read TEXT_TERM_LIMIT rows for next to no weight (~3 ms for a dozen); LoCoMo
# (sessions of 300-700 turns) holds 81.3% at 2048 tokens with 500, 81.0% with 2,000.
COMMON_TERMS_MIN_SCOPE = 500
MAX_HISTORY_LIMIT = 200


@quick_init
@dataclass(frozen=True)
class Candidate:
    """A turn found for the context engine. Ranks are 1-based; None: not in that top-k.
    `distance` is the cosine distance to the query (0 = same direction)."""

    session_id: str
    seq: int
    stream_version: int
    global_position: int
    role: str
    content: str
    tokens: int
    created_at: datetime
    vector_rank: int | None
    text_rank: int | None
    distance: float
    embedding: Sequence[float]  # float32 (decode_vector_array)
    # The other half of its question/answer pair (the neighbouring seq: a user turn's
    # answer, an answer's question), as turn columns (see PARTNER_COLUMNS), if any.
    partner: dict[str, Any] | None = None


@dataclass(frozen=True)
class HistoryFilter:
    session_id: str | None = None
    user_id: str | None = None
    role: str | None = None
    created_after: datetime | None = None  # inclusive
    created_before: datetime | None = None  # exclusive


@dataclass(frozen=True)
class HistoryHit:
    """A turn found by history search; (tenant, global_position) and event_id link it
    back to its event."""

    session_id: str
    seq: int
    stream_version: int
    global_position: int
    event_id: Any  # uuid.UUID
    user_id: str | None
    role: str
    content: str
    tokens: int
    created_at: datetime
    score: float
    vector_rank: int | None
    text_rank: int | None


def vector_literal(embedding: Sequence[float]) -> str:
    """pgvector's text form, for connections without the binary codec that Database
    registers on its pooled connections (adapters/postgres/database.py)."""
    return "[" + ",".join(map(repr, map(float, embedding))) + "]"


# For the HNSW plan: iterate past rows the filter rejects (relaxed order: the caller
# ranks by distance itself), and never sort the scope's rows instead of using the
# index's order (enable_sort also covers the small sorts of a few rows elsewhere in the
# statement: they stay, being the only way).
HNSW_SETTINGS: SessionSettings = (
    ("hnsw.iterative_scan", "relaxed_order"),
    ("hnsw.ef_search", str(EF_SEARCH)),
    ("hnsw.max_scan_tuples", str(MAX_SCAN_TUPLES)),
    ("enable_sort", "off"),
)
# The context engine's candidates statement under those settings has one shape whatever
# its parameters: the HNSW scan (nothing else avoids a sort), then each hit's rows by
# their keys. PostgreSQL still planned it afresh at every call (a custom plan: its
# estimate for the generic one is worse), ~0.4 ms of 1.9; the generic plan returns the
# same rows (checked over 200 query vectors). Not for the history search, whose filters
# make estimates matter.
# These are also the session settings of a pool that runs the candidates statement's
# HNSW plan and nothing else (Database.connection(settings)): one round trip instead of
# four (BEGIN, SET LOCAL, the statement, COMMIT). Measured alone on a 40,000-turn
# session, one query vector: 0.78 ms against 1.13-1.23 under SET LOCAL (a SQL function
# with SET clauses: 0.86).
HNSW_CANDIDATES_SETTINGS: SessionSettings = (
    *HNSW_SETTINGS,
    ("plan_cache_mode", "force_generic_plan"),
)


def _set_local(settings: SessionSettings) -> str:
    return "; ".join(f"SET LOCAL {name} = {value}" for name, value in settings)


_HNSW_SETTINGS = _set_local(HNSW_SETTINGS)
_HNSW_SETTINGS_GENERIC = _set_local(HNSW_CANDIDATES_SETTINGS)
_RESET_SETTINGS = "; ".join(f"SET LOCAL {name} TO DEFAULT" for name, _ in HNSW_CANDIDATES_SETTINGS)


def _order(exact: bool, vector_param: str) -> str:
    # `+ 0` hides the ordering from the HNSW index: the exact plans read the scope's
    # rows through a B-tree and sort their distances.
    distance = f"te.embedding <=> {vector_param}::vector"
    return f"({distance}) + 0" if exact else distance


async def _fetch(
    conn: Connection, sql: str, args: Sequence[Any], plan: str, *, generic: bool = False
) -> list[Any]:
    if plan != "hnsw":
        rows: list[Any] = await conn.fetch(sql, *args)
        return rows
    nested = conn.is_in_transaction()
    async with conn.transaction():
        await conn.execute(_HNSW_SETTINGS_GENERIC if generic else _HNSW_SETTINGS)
        rows = await conn.fetch(sql, *args)
        if nested:  # SET LOCAL would outlive the savepoint, into the caller's transaction
            await conn.execute(_RESET_SETTINGS)
    return rows


# --- the context engine's candidates --------------------------------------------------

# What the plan depends on: the session's turn count, the user's turns (counted through
# the user index, up to a bound) and the table's size as of its last ANALYZE.
_SCOPE_SIZES = """SELECT s.turn_count AS session_turns, s.user_id,
    CASE WHEN $3::text IS NULL THEN 0 ELSE (
        SELECT count(*) FROM (
            SELECT 1 FROM turn_embeddings WHERE tenant_id = $1 AND user_id = $3 LIMIT $4) c)
    END AS user_turns,
    (SELECT reltuples FROM pg_class WHERE oid = 'turn_embeddings'::regclass) AS table_rows
    FROM (SELECT 1) one
    LEFT JOIN sessions s ON s.tenant_id = $1 AND s.session_id = $2"""

# Both statements: $1 tenant, $2 session, $3 before_version, the user last ($8 in the text
# statement, $9 in the other). Text: $4 query text, $5 k_text, $6 turns read per term,
# $7 the terms to leave out.
# Candidates: $4 query vector, $5/$7/$8 the text hits' session ids, seqs and scores,
# $6 k_vector.
_SESSION_SCOPE = "te.tenant_id = $1 AND te.session_id = $2 AND te.stream_version < $3"
# The same scope for the full-text half, with the tenant checked on the heap rows only
# (`|| ''` keeps it out of the index condition): the text index's tenant key lists every
# row of the tenant, and intersecting that list once per query term cost more than the
# session key and the term together leave to check (one 1,000-turn session of a
# 16,000-row tenant: 4.0 -> 2.9 ms, the same rows).
_SESSION_TEXT_SCOPE = "(te.tenant_id || '') = $1 AND te.session_id = $2 AND te.stream_version < $3"


def _user_scope(param: str) -> str:
    return f"""te.tenant_id = $1 AND ((te.session_id = $2 AND te.stream_version < $3)
    OR (te.user_id = {param} AND te.session_id <> $2))"""


_QUOTE = "chr(39)"  # a single quote, spelled so that the SQL needs no escaping


def _nearest_sql(scope: str, plan: str) -> str:
    if plan == "window":  # the newest older turns: a backward scan of the primary key
        return f"""SELECT w.session_id, w.seq, w.distance FROM (
        SELECT te.session_id, te.seq, te.embedding <=> $4::vector AS distance
        FROM turn_embeddings te WHERE {scope}
        ORDER BY te.seq DESC LIMIT {EXACT_WINDOW}) w
    ORDER BY w.distance LIMIT $6"""
    return f"""SELECT te.session_id, te.seq, te.embedding <=> $4::vector AS distance
    FROM turn_embeddings te
    WHERE {scope}
    ORDER BY {_order(plan == "exact", "$4")}
    LIMIT $6"""


def _text_sql(scope: str) -> str:
    return f"""
WITH terms AS MATERIALIZED (
    -- The message's distinct terms, longest (likely rarest) first when there are many,
    -- each as a one-lexeme tsquery: quoted, not parsed again (a compound such as
    -- 'state-of-the-art' would come back as a phrase of its stemmed parts).
    SELECT w, ({_QUOTE} || replace(replace(w, '\\', '\\\\'), {_QUOTE}, {_QUOTE} || {_QUOTE})
               || {_QUOTE})::tsquery AS q
    FROM unnest(tsvector_to_array(to_tsvector('english', left($4, 20000)))) w
    WHERE w <> ALL($7::text[])  -- near-stopwords of this table (CommonTerms)
    ORDER BY length(w) DESC LIMIT {TEXT_MAX_TERMS}
), matches AS MATERIALIZED (
    -- Up to $6 turns per term, and how many that term matched (its document frequency
    -- in the scope, capped): a rare term's turns are all here, a common one's are not.
    SELECT m.session_id, m.seq, count(*) OVER (PARTITION BY t.w) AS df
    FROM terms t
    CROSS JOIN LATERAL (
        SELECT te.session_id, te.seq FROM turn_embeddings te
        WHERE {scope} AND te.tsv @@ t.q
        LIMIT $6) m
)
-- Each matched term weighs its inverse document frequency (BM25's idea; PostgreSQL's
-- ts_rank_cd has none, so a common word repeated would outrank a rare one).
SELECT session_id, seq, sum(ln(1 + $6::float8 / df)) AS score
FROM matches GROUP BY session_id, seq
ORDER BY score DESC, seq DESC
LIMIT $5"""


# A hit's rows, each by its keys in a LATERAL ... LIMIT 1: a nested loop over the few
# hits whatever the statistics say, and the event matched on every column of its three
# unique keys, so that whichever index the planner picks finds it in one probe (see
# context_inputs._EVENT_OF_TURN: without statistics it picked the wrong one).
_ROWS_OF_HIT = """CROSS JOIN LATERAL (
    SELECT te.stream_version, te.global_position, te.user_id, te.role, te.created_at,
           te.embedding
    FROM turn_embeddings te
    WHERE te.tenant_id = $1 AND te.session_id = {hit}.session_id AND te.seq = {hit}.seq
    LIMIT 1) te
CROSS JOIN LATERAL (
    SELECT tr.tokens, tr.event_id FROM turn_rows tr
    WHERE tr.tenant_id = $1 AND tr.session_id = {hit}.session_id AND tr.seq = {hit}.seq
    LIMIT 1) tr
CROSS JOIN LATERAL (
    SELECT ev.data FROM events ev
    WHERE ev.tenant_id = $1 AND ev.global_position = te.global_position
      AND ev.stream_id = 'session:' || {hit}.session_id
      AND ev.stream_version = te.stream_version AND ev.event_id = tr.event_id
    LIMIT 1) ev"""


# The hit's partner, in the same statement (it was a second round trip): the turn at
# the neighbouring seq and its event, each by its keys as above.
_PARTNER_OF_HIT = """LEFT JOIN LATERAL (
    SELECT pt.seq, pt.stream_version, pt.global_position, pt.role, pt.tokens, pt.created_at,
           pt.name, coalesce(pe.data->>'content', '') AS content,
           pe.data->>'tool_call_id' AS tool_call_id, pe.data->'tool_calls' AS tool_calls
    FROM turn_rows pt
    CROSS JOIN LATERAL (
        SELECT ev.data FROM events ev
        WHERE ev.tenant_id = $1 AND ev.global_position = pt.global_position
          AND ev.stream_id = 'session:' || pt.session_id
          AND ev.stream_version = pt.stream_version AND ev.event_id = pt.event_id
        LIMIT 1) pe
    WHERE pt.tenant_id = $1 AND pt.session_id = {hit}.session_id
      AND pt.seq = {hit}.seq + CASE WHEN te.role = 'user' THEN 1 ELSE -1 END
    LIMIT 1) p ON true"""
PARTNER_COLUMNS = (
    "seq", "stream_version", "global_position", "role", "tokens", "created_at", "name",
    "content", "tool_call_id", "tool_calls",
)  # fmt: skip
_PARTNER_SELECT = ", ".join(f"p.{c} AS p_{c}" for c in PARTNER_COLUMNS)


def _candidates_sql(scope: str, plan: str) -> str:
    return f"""
WITH vec AS MATERIALIZED (
    {_nearest_sql(scope, plan)}
), txt AS (
    SELECT * FROM unnest($5::text[], $7::int[], $8::float8[]) AS t(session_id, seq, score)
), hits AS (
    SELECT session_id, seq, v.distance AS vector_distance, t.score AS text_score
    FROM vec v FULL JOIN txt t USING (session_id, seq)
)
SELECT h.session_id, h.seq, te.stream_version, te.global_position, te.role, te.created_at,
       tr.tokens, coalesce(ev.data->>'content', '') AS content,
       te.embedding <=> $4::vector AS distance, vector_send(te.embedding) AS embedding,
       h.vector_distance, h.text_score, {_PARTNER_SELECT}
FROM hits h
{_ROWS_OF_HIT.format(hit="h")}
{_PARTNER_OF_HIT.format(hit="h")}"""


_CANDIDATES = {
    (user, plan): _candidates_sql(_user_scope("$9") if user else _SESSION_SCOPE, plan)
    for user in (False, True)
    for plan in ("exact", "hnsw", "window")
}
_TEXT = {False: _text_sql(_SESSION_TEXT_SCOPE), True: _text_sql(_user_scope("$8"))}


_COMMON_TERMS = """SELECT most_common_elems::text::text[] AS terms, most_common_elem_freqs AS freqs
    FROM pg_stats WHERE schemaname = current_schema() AND tablename = 'turn_embeddings'
    AND attname = 'tsv'"""


UNANALYZED_RETRY_S = 5.0  # cheap to ask; the embeddings worker analyzes a young table

# turn_embeddings' rows as of its last ANALYZE (-1 before the first)
TABLE_ROWS = "SELECT reltuples FROM pg_class WHERE oid = 'turn_embeddings'::regclass"


class TableRows:
    """turn_embeddings' row count as of its last ANALYZE (pg_class.reltuples, -1
    before the first), read again every `ttl_s`: the candidates' plan needs its order of
    magnitude only, and it changes when the table is analyzed, not per call. Before the
    first ANALYZE, again after UNANALYZED_RETRY_S: a young table's first half minute
    planned every search as exact (4.6 ms at 3,000 turns, against 2.5 by the index)."""

    def __init__(self, ttl_s: float = 30.0) -> None:
        self.ttl_s = ttl_s
        self.rows = -1.0
        self._read_at = -math.inf

    async def get(self, conn: Connection) -> float:
        now = time.monotonic()
        if now - self._read_at >= self.ttl_s:
            self._read_at = now
            self.rows = float(await conn.fetchval(TABLE_ROWS) or -1)
            if self.rows <= 0:  # not analyzed yet: look again soon
                self._read_at = now - self.ttl_s + UNANALYZED_RETRY_S
        return self.rows


class CommonTerms:
    """The terms found in more than COMMON_TERM_SHARE of all turns, read from
    PostgreSQL's own statistics (ANALYZE keeps the most common elements of `tsv` and
    the share of rows holding each) and refreshed every COMMON_TERMS_TTL_S.

    Such a term weighs little (its inverse document frequency is near zero), yet each
    costs a posting-list walk that grows with the session: in a 10,000-turn session of
    a narrow vocabulary, nine common terms took ~4 ms of the candidates query. So the
    full-text half searches the query's other words; the vector half still sees them.
    The statistics are table-wide (every tenant), which is what "common" means here.
    One instance per database (the reader holds it)."""

    def __init__(self, share: float = 0.05, ttl_s: float = 600.0) -> None:
        self.share = share
        self.ttl_s = ttl_s
        self.terms: list[str] = []
        self._read_at = -math.inf

    async def get(self, conn: Connection) -> list[str]:
        now = time.monotonic()
        if now - self._read_at >= self.ttl_s:
            self._read_at = now  # also after a failure: retried at the next expiry
            row = await conn.fetchrow(_COMMON_TERMS)
            self.terms = common_terms(row["terms"], row["freqs"], self.share) if row else []
            if not self.terms:  # a young table (not analyzed, or too few rows for
                # PostgreSQL to list common elements yet): look again soon, not in ten
                # minutes. An empty list is cheap to ask for again.
                self._read_at = now - self.ttl_s + UNANALYZED_RETRY_S
        return self.terms


def common_terms(
    terms: Sequence[str] | None, freqs: Sequence[float] | None, share: float
) -> list[str]:
    """The elements of pg_stats' most_common_elems whose share of rows passes `share`
    (its freqs list ends with three extra numbers: minimum, maximum and null share)."""
    if not terms or not freqs:
        return []
    return [t for t, f in zip(terms, freqs, strict=False) if f > share]


def candidate_plan(scope_turns: int, table_rows: float, *, user_scope: bool) -> str:
    """exact, hnsw or window (see the module's docstring)."""
    if scope_turns <= EXACT_LIMIT:
        cheaper = table_rows > 0 and hnsw_cheaper(scope_turns, scope_turns / table_rows)
        return "hnsw" if cheaper else "exact"
    if user_scope or table_rows <= 0 or scope_turns / table_rows >= HNSW_MIN_SHARE:
        return "hnsw"  # (table_rows is -1 before the first ANALYZE)
    return "window"


async def session_candidates(
    conn: Connection,
    tenant_id: str,
    session_id: str,
    query_embedding: Sequence[float] | Awaitable[Sequence[float]],
    query_text: str,
    before_version: int,
    k_vector: int = 20,
    k_text: int = 20,
    user_scope: str | None = None,
    common_terms: Sequence[str] = (),
    sizes: tuple[int, float] | None = None,
    hnsw_connection: Callable[[], AbstractAsyncContextManager[Connection]] | None = None,
) -> list[Candidate]:
    """The session's turns older than `before_version` (the recent window starts there)
    nearest to the query by meaning (top `k_vector`) and by words (top `k_text`), and,
    with `user_scope` (a user id), the turns of that user's other sessions in this
    tenant too. Sorted by reciprocal-rank fusion of the two ranks; each row once.

    `query_embedding` may still be on its way (an awaitable): the full-text half, whose
    cost grows with how often the query's words occur, runs while the model computes
    the vector, and only the vector half waits for it. In a scope of at least
    COMMON_TERMS_MIN_SCOPE turns the query's words listed in `common_terms` (see
    CommonTerms) are not searched by words. `sizes`, the session's turns and the table's
    rows (TableRows), when the caller has them without a user scope: not read again.
    `hnsw_connection` lends a connection that carries HNSW_CANDIDATES_SETTINGS: the
    HNSW plan runs there, without a transaction around it."""
    user = user_scope is not None
    if sizes is not None and not user:
        scope_size, table_rows = sizes
    else:
        row = await conn.fetchrow(_SCOPE_SIZES, tenant_id, session_id, user_scope, EXACT_LIMIT + 1)
        scope_size, table_rows = row["user_turns"], row["table_rows"] or 0
        if not user or row["user_id"] != user_scope:  # else counted with the user's
            scope_size += row["session_turns"] or 0
    plan = candidate_plan(scope_size, table_rows, user_scope=user)
    scope_args: list[Any] = [tenant_id, session_id, before_version]
    text_hits: list[Any] = []
    if k_text > 0 and query_text.strip():
        skipped = list(common_terms) if scope_size >= COMMON_TERMS_MIN_SCOPE else []
        text_args = [*scope_args, query_text, k_text, TEXT_TERM_LIMIT, skipped]
        if user:
            text_args.append(user_scope)
        text_hits = await conn.fetch(_TEXT[user], *text_args)
    if not isinstance(query_embedding, Sequence):
        query_embedding = await query_embedding
    args: list[Any] = [
        *scope_args, list(query_embedding), [h["session_id"] for h in text_hits],
        k_vector, [h["seq"] for h in text_hits], [h["score"] for h in text_hits],
    ]  # fmt: skip
    if user:
        args.append(user_scope)
    if plan == "hnsw" and hnsw_connection is not None:
        async with hnsw_connection() as hnsw_conn:
            rows = await hnsw_conn.fetch(_CANDIDATES[(user, plan)], *args)
    else:
        rows = await _fetch(conn, _CANDIDATES[(user, plan)], args, plan, generic=True)
    vector_ranks = _ranks(rows, "vector_distance", descending=False)
    text_ranks = _ranks(rows, "text_score", descending=True)
    out = [
        Candidate(
            session_id=r["session_id"],
            seq=r["seq"],
            stream_version=r["stream_version"],
            global_position=r["global_position"],
            role=r["role"],
            content=r["content"],
            tokens=r["tokens"],
            created_at=r["created_at"],
            vector_rank=vector_ranks.get((r["session_id"], r["seq"])),
            text_rank=text_ranks.get((r["session_id"], r["seq"])),
            distance=float(r["distance"]),
            embedding=decode_vector_array(r["embedding"]),
            partner=({c: r["p_" + c] for c in PARTNER_COLUMNS} if r["p_seq"] is not None else None),
        )
        for r in rows
    ]
    out.sort(key=lambda c: (-rrf(c.vector_rank, c.text_rank), c.distance))
    return out


def hnsw_cheaper(scope_turns: int, share: float) -> bool:
    """Whether the HNSW plan's vector half costs less than exact distances over the
    scope, by the measured costs above: for a session alone in its table from ~830
    turns, for one holding a tenth of it from ~2,800. A scope that small and that large
    a share loses nothing to the index (recall 0.99 or more from a 9% share)."""
    hnsw_ms = HNSW_BASE_MS + HNSW_MS_PER_INVERSE_SHARE / max(share, 1e-9)
    return hnsw_ms < EXACT_MS_PER_TURN * scope_turns


def rrf(*ranks: int | None, k: int = RRF_K) -> float:
    """Reciprocal-rank fusion: sum of 1/(k + rank) over the lists a row appears in."""
    return sum(1.0 / (k + r) for r in ranks if r is not None)


def _ranks(rows: Sequence[Any], column: str, *, descending: bool) -> dict[tuple[str, int], int]:
    """1-based ranks by `column`; ties go to the newer turn, as in the SQL's top-k."""
    hits = [r for r in rows if r[column] is not None]
    sign = -1 if descending else 1
    hits.sort(key=lambda r: (sign * r[column], -r["seq"]))
    return {(r["session_id"], r["seq"]): i for i, r in enumerate(hits, start=1)}


# --- history search (data team) -------------------------------------------------------


def _history_sql(scope: str, exact: bool) -> str:
    # $1 tenant, $2 query vector, $3 query text, $4 vector candidates, $5 text
    # candidates, $6 text scan limit, $7 limit, then the filters' values. A list left
    # out gets a limit of 0, and its scan never starts.
    return f"""
WITH vec AS MATERIALIZED (
    SELECT session_id, seq, row_number() OVER (ORDER BY distance) AS r
    FROM (SELECT te.session_id, te.seq, te.embedding <=> $2::vector AS distance
          FROM turn_embeddings te WHERE {scope}
          ORDER BY {_order(exact, "$2")} LIMIT $4) d
), q AS MATERIALIZED (
    SELECT websearch_to_tsquery('english', $3) AS q
), txt AS MATERIALIZED (
    SELECT session_id, seq, row_number() OVER (ORDER BY score DESC) AS r
    FROM (SELECT m.session_id, m.seq, ts_rank_cd(m.tsv, (SELECT q FROM q)) AS score
          FROM (SELECT te.session_id, te.seq, te.tsv FROM turn_embeddings te
                WHERE {scope} AND te.tsv @@ (SELECT q FROM q) LIMIT $6) m
          ORDER BY score DESC LIMIT $5) t
), fused AS MATERIALIZED (
    SELECT session_id, seq, v.r AS vector_rank, t.r AS text_rank,
           coalesce(1.0 / ({RRF_K} + v.r), 0) + coalesce(1.0 / ({RRF_K} + t.r), 0) AS score
    FROM vec v FULL JOIN txt t USING (session_id, seq)
    ORDER BY score DESC, session_id, seq
    LIMIT $7
)
SELECT f.session_id, f.seq, te.stream_version, te.global_position, tr.event_id, te.user_id,
       te.role, coalesce(ev.data->>'content', '') AS content, tr.tokens, te.created_at,
       f.score::float8 AS score, f.vector_rank, f.text_rank
FROM fused f
{_ROWS_OF_HIT.format(hit="f")}
ORDER BY f.score DESC, f.session_id, f.seq"""


def _filter_clauses(
    filters: HistoryFilter, first_param: int
) -> tuple[list[str], list[str], list[Any]]:
    """(clauses an index narrows: session, user; residual clauses: role, time; values)."""
    narrowing: list[str] = []
    residual: list[str] = []
    values: list[Any] = []
    for column, value, op, target in (
        ("session_id", filters.session_id, "=", narrowing),
        ("user_id", filters.user_id, "=", narrowing),
        ("role", filters.role, "=", residual),
        ("created_at", filters.created_after, ">=", residual),
        ("created_at", filters.created_before, "<", residual),
    ):
        if value is not None:
            values.append(value)
            target.append(f"te.{column} {op} ${first_param + len(values) - 1}")
    return narrowing, residual, values


async def search_history(
    conn: Connection,
    tenant_id: str,
    query_embedding: Sequence[float] | None,
    query_text: str | None,
    filters: HistoryFilter | None = None,
    limit: int = 20,
) -> list[HistoryHit]:
    """The tenant's turns that best match by meaning and by words, fused by reciprocal
    rank (each list contributes its top 2 x `limit`). Either query may be left out."""
    filters = filters or HistoryFilter()
    limit = max(1, min(limit, MAX_HISTORY_LIMIT))
    with_text = bool(query_text and query_text.strip())
    if query_embedding is None and not with_text:
        return []
    exact = True
    if query_embedding is not None:
        narrowing, _, values = _filter_clauses(
            HistoryFilter(session_id=filters.session_id, user_id=filters.user_id), 2
        )
        where = " AND ".join(["te.tenant_id = $1", *narrowing])
        size = await conn.fetchval(
            f"SELECT count(*) FROM (SELECT 1 FROM turn_embeddings te WHERE {where} "
            f"LIMIT {EXACT_LIMIT + 1}) c",
            tenant_id,
            *values,
        )
        exact = size <= EXACT_LIMIT
    narrowing, residual, values = _filter_clauses(filters, 8)
    scope = " AND ".join(["te.tenant_id = $1", *narrowing, *residual])
    args: list[Any] = [
        tenant_id,
        list(query_embedding if query_embedding is not None else _ZERO),
        query_text or "",
        2 * limit if query_embedding is not None else 0,
        2 * limit if with_text else 0,
        TEXT_SCAN_LIMIT,
        limit,
        *values,
    ]
    rows = await _fetch(conn, _history_sql(scope, exact), args, "exact" if exact else "hnsw")
    return [
        HistoryHit(
            session_id=r["session_id"],
            seq=r["seq"],
            stream_version=r["stream_version"],
            global_position=r["global_position"],
            event_id=r["event_id"],
            user_id=r["user_id"],
            role=r["role"],
            content=r["content"],
            tokens=r["tokens"],
            created_at=r["created_at"],
            score=r["score"],
            vector_rank=r["vector_rank"],
            text_rank=r["text_rank"],
        )
        for r in rows
    ]


_ZERO = [0.0] * 384  # stands in for a missing query vector; its list gets a limit of 0
