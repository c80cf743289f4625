"""Hybrid search (`session_candidates`) against session length and table size.

    .venv/bin/python ops/bench/search_scaling.py [--noise 100000] [--queries 100]

Sessions of 100, 1,000 and 10,000 turns among `noise` other turns (200 sessions of
other users and tenants), bulk-loaded with COPY; vectors are clustered random unit
vectors (300 topics), texts Zipf-distributed words: it measures timing and the vector
recall of each plan (auto, exact, HNSW, window) against exact search, not quality.
Prints p50/p95 ms and recall@20 per session size and plan.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import asyncpg  # noqa: E402

from adapters.postgres import search  # noqa: E402
from adapters.postgres.database import Database  # noqa: E402
from adapters.postgres.search import session_candidates  # noqa: E402
from ops.bench.benchdb import fresh_database, libpq_url  # noqa: E402

DIMS = 384


def _percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(p / 100 * (len(ordered) - 1)))]


async def benchmark(
    db: Database, raw_conn: asyncpg.Connection, noise: int, queries: int
) -> list[dict[str, Any]]:
    results: list[dict[str, Any]] = []
    """Sessions of 100, 1,000 and 10,000 turns among `noise` other turns (200 sessions
    of other users and tenants), bulk-loaded with COPY. Vectors are clustered random
    unit vectors (300 topics), texts Zipf-distributed words: timing, not quality."""
    import numpy as np

    rng = np.random.default_rng(7)
    vocab = [f"w{i}" for i in range(5000)]
    zipf = 1 / np.arange(1, 5001)
    zipf /= zipf.sum()
    topics = rng.normal(size=(300, DIMS)).astype(np.float32)
    topics /= np.linalg.norm(topics, axis=1, keepdims=True)

    def vectors(n: int) -> np.ndarray:
        v = topics[rng.integers(0, len(topics), n)] + rng.normal(scale=0.06, size=(n, DIMS))
        return (v / np.linalg.norm(v, axis=1, keepdims=True)).astype(np.float32)

    sessions = [("t1", "s100", "u1", 100), ("t1", "s1k", "u1", 1000), ("t1", "s10k", "u1", 10000)]
    sessions += [(f"t{1 + i % 10}", f"noise{i}", f"n{i % 50}", noise // 200) for i in range(200)]
    await raw_conn.execute(
        "CREATE TEMP TABLE stage (tenant_id text, session_id text, seq int, content text, "
        "embedding real[])"
    )
    for idx in ("turn_embeddings_hnsw", "turn_embeddings_text", "turn_embeddings_by_user"):
        await raw_conn.execute(f"DROP INDEX {idx}")
    started = time.perf_counter()
    zero, base = bytes(32), datetime(2026, 1, 1, tzinfo=UTC)
    for tenant, sid, user, n in sessions:
        words = rng.choice(5000, size=(n, 24), p=zipf)
        lengths = rng.integers(8, 24, n)
        texts = [" ".join(vocab[w] for w in row[:k]) for row, k in zip(words, lengths, strict=True)]
        opened = f'{{"session_id": "{sid}", "user_id": "{user}"}}'
        events = [(uuid.uuid4(), tenant, f"session:{sid}", 1, "SessionOpened", 1, opened, "{}",
                   base, zero, zero)]  # fmt: skip
        events += [
            (uuid.uuid4(), tenant, f"session:{sid}", seq + 1,
             "UserMessage" if seq % 2 else "AssistantMessage", 1,
             f'{{"content": "{texts[seq - 1]}", "tokens": 20}}', "{}",
             base + timedelta(seconds=seq), zero, zero)
            for seq in range(1, n + 1)
        ]  # fmt: skip
        # One COPY per session: the projection trigger fills sessions and turn_rows.
        await raw_conn.copy_records_to_table(
            "events",
            records=events,
            columns=["event_id", "tenant_id", "stream_id", "stream_version", "type",
                     "schema_version", "data", "metadata", "recorded_at", "prev_hash", "hash"],
        )  # fmt: skip
        vs = vectors(n)
        await raw_conn.copy_records_to_table(
            "stage",
            records=[(tenant, sid, i + 1, texts[i], vs[i].tolist()) for i in range(n)],
        )
    await raw_conn.execute(
        """INSERT INTO turn_embeddings
           SELECT s.tenant_id, s.session_id, s.seq, t.stream_version, t.global_position,
                  t.created_at, se.user_id, t.role, s.embedding::vector,
                  to_tsvector('english', s.content)
           FROM stage s JOIN turn_rows t USING (tenant_id, session_id, seq)
           JOIN sessions se USING (tenant_id, session_id)"""
    )
    loaded = time.perf_counter()
    await raw_conn.execute("SET maintenance_work_mem = '1GB'")
    await raw_conn.execute(
        "CREATE INDEX turn_embeddings_hnsw ON turn_embeddings "
        "USING hnsw (embedding vector_cosine_ops)"
    )
    hnsw_built = time.perf_counter()
    await raw_conn.execute(
        "CREATE INDEX turn_embeddings_text ON turn_embeddings "
        "USING gin (tenant_id, session_id, user_id, tsv)"
    )
    await raw_conn.execute(
        "CREATE INDEX turn_embeddings_by_user ON turn_embeddings "
        "(tenant_id, user_id, session_id, seq) WHERE user_id IS NOT NULL"
    )
    for table in ("turn_embeddings", "turn_rows", "events", "sessions"):
        await raw_conn.execute(f"VACUUM ANALYZE {table}")
    total = await raw_conn.fetchval("SELECT count(*) FROM turn_embeddings")
    print(
        f"\nloaded {total} turns in {loaded - started:.1f} s; HNSW built in "
        f"{hnsw_built - loaded:.1f} s; shared_buffers "
        f"{await raw_conn.fetchval('SHOW shared_buffers')}; table "
        f"{await raw_conn.fetchval(SIZE)}"
    )

    common = [r[0] for r in await raw_conn.fetch(COMMON_WORDS)]
    auto_plan = search.candidate_plan
    print(f"{'scope':<14}{'plan':<7}{'p50 ms':>8}{'p95 ms':>8}{'recall@20':>11}")
    for sid, n in (("s100", 100), ("s1k", 1000), ("s10k", 10000)):
        picks = await raw_conn.fetch(
            "SELECT embedding::real[] AS e FROM turn_embeddings WHERE tenant_id = 't1' "
            "AND session_id = $1 ORDER BY random() LIMIT $2",
            sid,
            queries,
        )
        qs = []
        for row in picks:  # near a turn of the session; three common words and a rarer one
            v = np.asarray(row["e"], dtype=np.float32) + rng.normal(scale=0.05, size=DIMS)
            text = " ".join([*rng.choice(common[:300], 3), str(rng.choice(common[1000:]))])
            qs.append(((v / np.linalg.norm(v)).tolist(), text))
        before = n + 1 - 20  # the newest 20 turns are the recent window
        truth = []
        for vector, _ in qs:
            rows = await raw_conn.fetch(EXACT, sid, search.vector_literal(vector), before)
            truth.append({r["seq"] for r in rows})
        scopes: list[tuple[str, str | None]] = [(sid, None), (f"{sid}+user", "u1")]
        for scope_name, scope_user in scopes:
            plans = ["auto"] + (["exact", "hnsw", "window"] if scope_user is None else [])
            for plan in plans:
                # A named plan is forced; "auto" is the one candidate_plan picks.
                search.candidate_plan = auto_plan if plan == "auto" else _forced(plan)
                timings, recall = [], []
                async with db.connection() as conn:
                    for vector, text in qs[:5]:  # warm the statement cache
                        await session_candidates(
                            conn, "t1", sid, vector, text, before, user_scope=scope_user
                        )
                    for (vector, text), expected in zip(qs, truth, strict=True):
                        t0 = time.perf_counter()
                        found = await session_candidates(
                            conn, "t1", sid, vector, text, before, user_scope=scope_user
                        )
                        timings.append((time.perf_counter() - t0) * 1000)
                        got = {c.seq for c in found if c.vector_rank and c.session_id == sid}
                        recall.append(len(got & expected) / len(expected))
                rec = f"{statistics.mean(recall):.3f}" if scope_user is None else "-"
                results.append(
                    {
                        "scope": scope_name,
                        "turns": n,
                        "plan": plan,
                        "p50_ms": round(statistics.median(timings), 2),
                        "p95_ms": round(_percentile(timings, 95), 2),
                        "recall_at_20": None if scope_user else round(statistics.mean(recall), 4),
                    }
                )
                print(
                    f"{scope_name:<14}{plan:<7}{statistics.median(timings):>8.2f}"
                    f"{_percentile(timings, 95):>8.2f}{rec:>11}"
                )

    search.candidate_plan = auto_plan
    return results


def _forced(plan: str) -> Any:
    return lambda *args, **kwargs: plan


SIZE = "SELECT pg_size_pretty(pg_total_relation_size('turn_embeddings'))"
COMMON_WORDS = """SELECT word FROM ts_stat('SELECT tsv FROM turn_embeddings
    WHERE tenant_id = ''t1'' AND session_id = ''s1k''') ORDER BY ndoc DESC LIMIT 3000"""
EXACT = """SELECT seq FROM turn_embeddings
    WHERE tenant_id = 't1' AND session_id = $1 AND stream_version < $3
    ORDER BY (embedding <=> $2::vector) + 0 LIMIT 20"""


async def run(url: str, noise: int, queries: int) -> list[dict[str, Any]]:
    db = Database(url, pool_size=4)
    raw_conn = await asyncpg.connect(libpq_url(url))
    try:
        return await benchmark(db, raw_conn, noise, queries)
    finally:
        await raw_conn.close()
        await db.dispose()


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    p.add_argument("--noise", type=int, default=100_000, help="turns of other sessions")
    p.add_argument("--queries", type=int, default=100)
    p.add_argument("--database-url", default=None)
    p.add_argument("--json", type=Path, default=None)
    args = p.parse_args()
    with fresh_database(args.database_url, prefix="search") as url:
        rows = asyncio.run(run(url, args.noise, args.queries))
    if args.json is not None:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        report = {"benchmark": "search_scaling", "noise": args.noise, "results": rows}
        args.json.write_text(json.dumps(report, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
