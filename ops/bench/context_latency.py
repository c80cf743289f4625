"""Time to build a hybrid context window against the length of the session.

    .venv/bin/python ops/bench/context_latency.py [--json OUT] [--sizes 100,1000,10000]
        [--queries 200] [--budget 2048] [--database-url URL]

Sessions of 100, 1,000 and 10,000 turns in one database (the larger ones are the bulk
of the tables' rows, so the smaller sessions are searched among them too). Turns are
appended through the real service; their embeddings come from the real model
(all-MiniLM-L6-v2) for a pool of distinct sentences, each turn taking its sentence's
vector with a little noise, bulk-loaded before the HNSW index is built (embedding
11,100 turns one by one would take minutes and measure the model, not the window).
Each query is a new sentence, embedded on the request path as the context endpoint
does: the timings include that query embedding. Prints p50/p95 per size and checks
the targets: p95 at the largest size at most 1.5x p95 at the smallest, and under 25 ms.
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from adapters.embedder import (  # noqa: E402
    AsyncEmbedder,
    FallbackEmbedder,
)
from adapters.postgres.context_inputs import PostgresContextReader  # noqa: E402
from adapters.postgres.database import Database  # noqa: E402
from adapters.postgres.session_repository import PostgresSessions  # noqa: E402
from adapters.tokenizers import TiktokenCounter  # noqa: E402
from app.embedders import build_embedder  # noqa: E402
from app.heap import freeze_startup_heap  # noqa: E402
from app.services.context import (  # noqa: E402
    WHOLE_SESSION_NOTE,
    ContextPorts,
    ContextRequest,
    build_context,
)
from app.services.sessions import (  # noqa: E402
    RequestContext,
    TurnSpec,
    append_turns,
    create_session,
)
from app.settings import Settings  # noqa: E402
from ops.bench.benchdb import fresh_database, percentile  # noqa: E402

TENANT = "latency"
MODEL = "gpt-4o-mini"
POOL = 600  # distinct sentences embedded with the real model
NAMES = ["Ada", "Bruno", "Chen", "Dana", "Elif", "Femi", "Goran", "Hana", "Ivo", "Juno"]
PLACES = ["Lisbon", "Osaka", "Nairobi", "Lima", "Oslo", "Hanoi", "Quito", "Porto", "Accra"]
THINGS = [
    "flight", "invoice", "garden", "violin lesson", "dentist visit", "tax form", "bike",
    "conference talk", "birthday dinner", "apartment lease", "marathon", "server upgrade",
]  # fmt: skip
VERBS = ["booked", "cancelled", "moved", "paid for", "forgot", "planned", "asked about"]


def sentence(rng: random.Random) -> str:
    return (
        f"{rng.choice(NAMES)} {rng.choice(VERBS)} the {rng.choice(THINGS)} in "
        f"{rng.choice(PLACES)} for {rng.randint(2, 900)} euros on day {rng.randint(1, 28)}."
    )


def noisy(vector: Sequence[float], rng: random.Random, scale: float = 0.02) -> list[float]:
    out = [v + rng.gauss(0.0, scale) for v in vector]
    norm = sum(v * v for v in out) ** 0.5
    return [v / norm for v in out]


async def load(db: Database, model: AsyncEmbedder, sizes: list[int], seed: int) -> None:
    rng = random.Random(seed)
    texts = [sentence(rng) for _ in range(POOL)]
    vectors = await model.embed(texts)
    repo = PostgresSessions(db)
    counter = TiktokenCounter()
    ctx = RequestContext(TENANT, "latency-bench")
    rows: list[tuple[Any, ...]] = []
    for size in sizes:
        sid = f"s{size}"
        await create_session(repo, ctx, session_id=sid)
        for start in range(0, size, 100):
            chunk = []
            picks = []
            for i in range(start, min(size, start + 100)):
                k = rng.randrange(POOL)
                picks.append(k)
                role = "user" if i % 2 == 0 else "assistant"
                chunk.append(TurnSpec(role=role, content=texts[k]))
            out = await append_turns(repo, counter, ctx, sid, chunk)
            for event, k in zip(out.events, picks, strict=True):
                vec = "[" + ",".join(f"{v:.6f}" for v in noisy(vectors[k], rng)) + "]"
                rows.append((event.global_position, vec))
        print(f"appended {size} turns", file=sys.stderr, flush=True)
    async with db.connection() as conn:
        await conn.execute("DROP INDEX turn_embeddings_hnsw")
        await conn.execute("CREATE TEMP TABLE staged (global_position bigint, embedding text)")
        await conn.copy_records_to_table("staged", records=rows)
        await conn.execute(
            """INSERT INTO turn_embeddings (tenant_id, session_id, seq, stream_version,
                   global_position, created_at, user_id, role, embedding, tsv)
               SELECT t.tenant_id, t.session_id, t.seq, t.stream_version, t.global_position,
                      t.created_at, NULL, t.role, s.embedding::vector,
                      to_tsvector('english', t.content)
               FROM staged s JOIN turns t ON t.tenant_id = $1
                                         AND t.global_position = s.global_position""",
            TENANT,
        )
        started = time.perf_counter()
        await conn.execute(
            "CREATE INDEX turn_embeddings_hnsw ON turn_embeddings "
            "USING hnsw (embedding vector_cosine_ops)"
        )
        await conn.execute("ANALYZE")
        print(f"HNSW index over {len(rows)} rows in {time.perf_counter() - started:.1f} s",
              file=sys.stderr, flush=True)  # fmt: skip


async def measure(args: argparse.Namespace, url: str) -> dict[str, Any]:
    # As `serve` composes it: batches on one copy of the model, queries on another
    # (ONNX Runtime unless --query-embedder torch).
    settings = Settings(embedder_runtime=args.query_embedder, data_dir=ROOT / ".contextgate")
    model = build_embedder(settings)
    await model.warm_up()
    freeze_startup_heap()  # as `serve` does once its models are loaded
    db = Database(url, pool_size=4)
    try:
        await load(db, model, args.sizes, args.seed)
        ports = ContextPorts(
            PostgresContextReader(db), TiktokenCounter(), PostgresSessions(db).events, model
        )
        rng = random.Random(args.seed + 1)
        results = []
        for size in args.sizes:
            sid = f"s{size}"
            for _ in range(10):  # warm-up: plans, caches
                await build_context(
                    ports,
                    ContextRequest(TENANT, sid, MODEL, budget=args.budget, query=sentence(rng)),
                )
            timings = []
            tokens = []
            whole = 0
            for _ in range(args.queries):
                query = sentence(rng) + f" #{rng.random():.6f}"  # never seen: embedded anew
                t0 = time.perf_counter()
                window = await build_context(
                    ports, ContextRequest(TENANT, sid, MODEL, budget=args.budget, query=query)
                )
                timings.append((time.perf_counter() - t0) * 1000)
                tokens.append(window.used_tokens)
                whole += WHOLE_SESSION_NOTE in window.notes
            timings.sort()
            results.append(
                {
                    "turns": size,
                    "queries": args.queries,
                    "p50_ms": round(percentile(timings, 0.5), 2),
                    "p95_ms": round(percentile(timings, 0.95), 2),
                    "mean_tokens": round(sum(tokens) / len(tokens), 1),
                    "retrieval_skipped": whole,  # windows that held the whole session
                }
            )
            print(f"{size} turns done", file=sys.stderr, flush=True)
    finally:
        await db.dispose()
        model.close()
    chosen = (
        model.query_embedder.chosen if isinstance(model.query_embedder, FallbackEmbedder) else None
    )
    smallest, largest = results[0], results[-1]
    ratio = largest["p95_ms"] / smallest["p95_ms"]
    return {
        "benchmark": "context_latency",
        "budget": args.budget,
        "query_embedder": type(chosen).__name__,
        "results": results,
        "targets": {
            "p95_ratio": {"value": round(ratio, 2), "threshold": 1.5, "met": ratio <= 1.5},
            "p95_largest_ms": {
                "value": largest["p95_ms"], "threshold": 25.0, "met": largest["p95_ms"] < 25.0,
            },
        },
    }  # fmt: skip


def render(report: dict[str, Any]) -> str:
    lines = [
        f"hybrid window, budget {report['budget']} tokens, query embedding included "
        f"({report['query_embedder']})",
        "",
    ]
    lines.append(f"{'turns':>7}{'queries':>9}{'p50 ms':>9}{'p95 ms':>9}{'tokens':>9}{'whole':>7}")
    for r in report["results"]:
        lines.append(
            f"{r['turns']:>7}{r['queries']:>9}{r['p50_ms']:>9.2f}{r['p95_ms']:>9.2f}"
            f"{r['mean_tokens']:>9.0f}{r['retrieval_skipped']:>7}"
        )
    t = report["targets"]
    lines.append("")
    lines.append(
        f"target: p95 at the largest size <= 1.5x p95 at the smallest: "
        f"{t['p95_ratio']['value']:.2f}x -> {'MET' if t['p95_ratio']['met'] else 'NOT MET'}"
    )
    lines.append(
        f"target: p95 at the largest size < 25 ms: {t['p95_largest_ms']['value']:.2f} ms -> "
        f"{'MET' if t['p95_largest_ms']['met'] else 'NOT MET'}"
    )
    return "\n".join(lines)


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    p.add_argument("--json", type=Path, default=None)
    p.add_argument("--sizes", default="100,1000,10000")
    p.add_argument("--queries", type=int, default=200)
    # Below the 100-turn session's ~2,400 tokens: every size takes the retrieval path (a
    # session that fits the budget whole skips it, and would measure nothing of it).
    p.add_argument("--budget", type=int, default=2048)
    p.add_argument("--seed", type=int, default=7)
    p.add_argument("--database-url", default=None)
    p.add_argument("--query-embedder", choices=("onnx", "torch"), default="onnx")
    args = p.parse_args(argv)
    args.sizes = sorted(int(s) for s in args.sizes.split(",") if s)
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    with fresh_database(args.database_url, prefix="latency") as url:
        import uvloop

        report = uvloop.run(measure(args, url))
    print(render(report))
    if args.json is not None:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(report, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
