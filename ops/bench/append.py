"""Append throughput and latency: the event store (service layer) against plain INSERTs.

Run from the repository root:

    .venv/bin/python ops/bench/append.py [--json PATH] [--turns N] [--database-url URL]

Each "append" is one call of `app.services.sessions.append_turns` carrying a user turn and
an assistant turn (two events, hash chain and projections included). The baseline does
the same number of transactions of two plain INSERTs into a copy of the `events` table
without triggers, hashes or projections. See ops/bench/README.md for the output format.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import math
import os
import secrets
import sys
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))


from adapters.postgres.database import Database  # noqa: E402
from adapters.postgres.session_repository import PostgresSessions  # noqa: E402
from adapters.tokenizers import TiktokenCounter  # noqa: E402
from app.services.sessions import (  # noqa: E402
    RequestContext,
    TurnSpec,
    append_turns,
    create_session,
)
from domain.ids import uuid7  # noqa: E402
from ops.bench.benchdb import fresh_database, percentile  # noqa: E402

TENANT = "bench"
DEFAULT_TURNS = 12000  # appends per case; see README for the time it takes
DEFAULT_WARMUP = 3  # untimed appends per writer before each case
DEFAULT_CASE_TIMEOUT = 60.0  # seconds; writers stop early (and say so) past this
# (writers, same_session)
CASES: tuple[tuple[int, bool], ...] = ((1, False), (8, False), (32, False), (8, True))

TARGET_RATIO = 0.5  # store events/s >= 0.5 x raw at 32 writers
TARGET_RATIO_WRITERS = 32
TARGET_P99_MS = 10.0  # store p99 < 10 ms at 8 writers, distinct sessions
TARGET_P99_WRITERS = 8

# The same columns, keys, defaults and indexes as `events` (the table the store writes),
# without its triggers (immutability, projections), hashes or locks.
RAW_TABLE = "CREATE TABLE bench_raw_events (LIKE events INCLUDING ALL)"
RAW_INDEX = (
    "CREATE INDEX bench_raw_events_by_transaction "
    "ON bench_raw_events (transaction_id, global_position)"
)
RAW_INSERT = """INSERT INTO bench_raw_events (event_id, tenant_id, stream_id, stream_version,
        type, schema_version, data, metadata, recorded_at, prev_hash, hash)
    VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)"""
ZERO_HASH = bytes(32)

QUESTIONS = (
    "I'm migrating a billing service from MySQL to PostgreSQL and the nightly invoice "
    "job now takes forty minutes instead of five. What should I look at first, and how "
    "do I find the slow query?",
    "Can you rewrite this paragraph for a customer email so it sounds friendly but firm: "
    "your subscription renews on the first of the month and refunds are not available "
    "after that date.",
    "We have three replicas behind a load balancer and sessions keep getting lost when a "
    "pod restarts. Where should session state live, and what are the trade-offs of each "
    "option for us?",
    "Summarize the main risks of letting an LLM agent run shell commands on a developer "
    "laptop, and suggest two or three guardrails that would not get in the way of daily "
    "work too much.",
)
ANSWERS = (
    "Start with pg_stat_statements: sort by total_exec_time and look at the top three. "
    "Then run EXPLAIN (ANALYZE, BUFFERS) on each; a sequential scan on invoices or a "
    "nested loop over line items is the usual suspect.",
    "Sure. 'Just a friendly reminder that your subscription renews on the first of each "
    "month. Once it has renewed we are unable to offer refunds, so please make any "
    "changes before that date. Thanks for being with us!'",
    "Keep it out of the pods: a shared store such as PostgreSQL or Redis. PostgreSQL is "
    "durable and you already run it; Redis is faster but needs persistence configured. "
    "Sticky sessions only hide the problem until a restart.",
    "The risks: destructive commands, leaked secrets from env files, and network calls to "
    "places you did not expect. Guardrails: run it in a container, allow-list commands, "
    "and require a confirmation for anything that writes outside the repo.",
)


@dataclass(frozen=True)
class Turn:
    """One benchmark append: a question and its answer, with their token counts."""

    user: TurnSpec
    assistant: TurnSpec
    user_data: str  # the raw baseline's jsonb payloads, serialized with json.dumps
    assistant_data: str


@dataclass
class Result:
    mode: str
    writers: int
    same_session: bool
    events_per_s: float
    p50_ms: float
    p99_ms: float
    appends: int
    wall_s: float
    truncated: bool


def build_turns(counter: TiktokenCounter) -> list[Turn]:
    turns = []
    for i, (question, answer) in enumerate(itertools.product(QUESTIONS, ANSWERS)):
        q_tokens = counter.count(question)
        a_tokens = counter.count(answer)
        usage = {"prompt_tokens": 180 + q_tokens, "completion_tokens": a_tokens}
        user = TurnSpec(role="user", content=question)
        assistant = TurnSpec(
            role="assistant",
            content=answer,
            model="gpt-4o-mini",
            provider="openai",
            usage=usage,
            cost=0.00012,
            latency_ms=640.0 + i,
            finish_reason="stop",
        )
        user_data = {"content": question, "tokens": q_tokens, "name": None}
        assistant_data = {
            "content": answer,
            "tokens": a_tokens,
            "provider": "openai",
            "model": "gpt-4o-mini",
            "usage": usage,
            "cost": 0.00012,
            "latency_ms": 640.0 + i,
            "finish_reason": "stop",
            "cached": False,
            "tool_calls": None,
        }
        turns.append(Turn(user, assistant, json.dumps(user_data), json.dumps(assistant_data)))
    return turns


AppendFn = Callable[[int, int], Awaitable[None]]  # (writer index, iteration)


async def run_case(
    mode: str,
    writers: int,
    same_session: bool,
    per_writer: int,
    warmup: int,
    case_timeout: float,
    append: AppendFn,
) -> Result:
    """Warm up, then time `per_writer` appends on each of `writers` concurrent writers."""
    await asyncio.gather(*(_writer(w, warmup, None, None, append) for w in range(writers)))
    latencies: list[float] = []
    start = time.perf_counter()
    deadline = start + case_timeout
    # A hard stop well past the soft deadline, in case a call hangs.
    async with asyncio.timeout(case_timeout + 60):
        counts = await asyncio.gather(
            *(_writer(w, per_writer, latencies, deadline, append) for w in range(writers))
        )
    wall = time.perf_counter() - start
    done = sum(counts)
    latencies.sort()
    return Result(
        mode=mode,
        writers=writers,
        same_session=same_session,
        events_per_s=2 * done / wall if wall > 0 else math.nan,
        p50_ms=percentile(latencies, 0.50) * 1000,
        p99_ms=percentile(latencies, 0.99) * 1000,
        appends=done,
        wall_s=wall,
        truncated=done < per_writer * writers,
    )


async def _writer(
    w: int,
    n: int,
    latencies: list[float] | None,
    deadline: float | None,
    append: AppendFn,
) -> int:
    done = 0
    for i in range(n):
        if deadline is not None and time.perf_counter() > deadline:
            break
        t0 = time.perf_counter()
        await append(w, i)
        if latencies is not None:
            latencies.append(time.perf_counter() - t0)
        done += 1
    return done


async def store_case(
    db: Database,
    counter: TiktokenCounter,
    turns: Sequence[Turn],
    writers: int,
    same_session: bool,
    per_writer: int,
    warmup: int,
    case_timeout: float,
) -> Result:
    repo = PostgresSessions(db)
    ctx = RequestContext(tenant_id=TENANT, actor="bench")
    n_sessions = 1 if same_session else writers
    session_ids = []
    for _ in range(n_sessions):  # not timed
        view, _replayed = await create_session(repo, ctx, title="append benchmark")
        session_ids.append(view.session_id)

    async def append(w: int, i: int) -> None:
        sid = session_ids[0 if same_session else w]
        turn = turns[(w + i) % len(turns)]
        await append_turns(repo, counter, ctx, sid, [turn.user, turn.assistant])

    return await run_case("store", writers, same_session, per_writer, warmup, case_timeout, append)


async def raw_case(
    db: Database,
    turns: Sequence[Turn],
    writers: int,
    same_session: bool,
    per_writer: int,
    warmup: int,
    case_timeout: float,
) -> Result:
    tag = secrets.token_hex(4)
    streams = [f"session:raw_{tag}_{w}" for w in range(1 if same_session else writers)]
    # The next free version of each stream; writers of one stream share its counter.
    versions = [1] * len(streams)
    metadata = json.dumps({"actor": "bench"})

    async def append(w: int, i: int) -> None:
        s = 0 if same_session else w
        v = versions[s]
        versions[s] = v + 2  # no await in between: atomic within the event loop
        turn = turns[(w + i) % len(turns)]
        now = datetime.now(UTC)
        async with db.transaction() as conn:
            await conn.execute(
                RAW_INSERT, uuid7(), TENANT, streams[s], v, "UserMessage", 1,
                turn.user_data, metadata, now, ZERO_HASH, ZERO_HASH,
            )  # fmt: skip
            await conn.execute(
                RAW_INSERT, uuid7(), TENANT, streams[s], v + 1, "AssistantMessage", 1,
                turn.assistant_data, metadata, now, ZERO_HASH, ZERO_HASH,
            )  # fmt: skip

    return await run_case("raw", writers, same_session, per_writer, warmup, case_timeout, append)


async def run_all(url: str, total_appends: int, warmup: int, case_timeout: float) -> list[Result]:
    counter = TiktokenCounter()  # loaded once
    turns = build_turns(counter)
    db = Database(url, pool_size=40, max_overflow=10)
    results: list[Result] = []
    try:
        async with db.connection() as conn:
            await conn.execute(RAW_TABLE)
            await conn.execute(RAW_INDEX)
        for writers, same_session in CASES:
            per_writer = max(1, total_appends // writers)
            store = await store_case(
                db, counter, turns, writers, same_session, per_writer, warmup, case_timeout
            )
            _progress(store)
            raw = await raw_case(db, turns, writers, same_session, per_writer, warmup, case_timeout)
            _progress(raw)
            results += [store, raw]
    finally:
        await db.dispose()
    return results


def _progress(r: Result) -> None:
    note = " (stopped at the time limit)" if r.truncated else ""
    print(
        f"  {r.mode:5} writers={r.writers:<2} same_session={r.same_session!s:5} "
        f"{r.appends} appends in {r.wall_s:.1f}s{note}",
        file=sys.stderr,
        flush=True,
    )


def summarize(results: Sequence[Result]) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    by_case = {(r.mode, r.writers, r.same_session): r for r in results}
    ratios = []
    for writers, same_session in CASES:
        store = by_case.get(("store", writers, same_session))
        raw = by_case.get(("raw", writers, same_session))
        if store is None or raw is None:
            continue
        ratios.append(
            {
                "writers": writers,
                "same_session": same_session,
                "store_events_per_s": store.events_per_s,
                "raw_events_per_s": raw.events_per_s,
                "ratio": store.events_per_s / raw.events_per_s if raw.events_per_s else math.nan,
            }
        )
    ratio_32 = next(
        (
            r["ratio"]
            for r in ratios
            if r["writers"] == TARGET_RATIO_WRITERS and not r["same_session"]
        ),
        math.nan,
    )
    store_8 = by_case.get(("store", TARGET_P99_WRITERS, False))
    p99_8 = store_8.p99_ms if store_8 is not None else math.nan
    targets = {
        "store_vs_raw_32_writers": {
            "description": f"store events/s >= {TARGET_RATIO} x raw at "
            f"{TARGET_RATIO_WRITERS} writers (distinct sessions)",
            "threshold": TARGET_RATIO,
            "value": ratio_32,
            "met": bool(ratio_32 >= TARGET_RATIO),
        },
        "store_p99_8_writers": {
            "description": f"store p99 < {TARGET_P99_MS:g} ms at "
            f"{TARGET_P99_WRITERS} writers (distinct sessions)",
            "threshold": TARGET_P99_MS,
            "value": p99_8,
            "met": bool(p99_8 < TARGET_P99_MS),
        },
    }
    return ratios, targets


def render(
    results: Sequence[Result], ratios: Sequence[dict[str, Any]], targets: dict[str, Any]
) -> str:
    lines = [
        f"{'mode':<6}{'writers':>8}  {'same_session':<13}{'events/s':>10}{'p50 ms':>9}"
        f"{'p99 ms':>9}{'appends':>9}",
    ]
    for r in results:
        lines.append(
            f"{r.mode:<6}{r.writers:>8}  {r.same_session!s:<13}{r.events_per_s:>10.0f}"
            f"{r.p50_ms:>9.2f}{r.p99_ms:>9.2f}{r.appends:>9}" + ("  (time limit)" * r.truncated)
        )
    lines += ["", f"{'writers':>7}  {'same_session':<13}{'store/raw events/s':>19}"]
    for x in ratios:
        lines.append(f"{x['writers']:>7}  {x['same_session']!s:<13}{x['ratio']:>19.2f}")
    lines.append("")
    ratio = targets["store_vs_raw_32_writers"]
    p99 = targets["store_p99_8_writers"]
    lines.append(
        f"target: {ratio['description']}: {ratio['value']:.2f} x -> "
        + ("MET" if ratio["met"] else "NOT MET")
    )
    lines.append(
        f"target: {p99['description']}: {p99['value']:.2f} ms -> "
        + ("MET" if p99["met"] else "NOT MET")
    )
    return "\n".join(lines)


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    p.add_argument("--json", metavar="PATH", type=Path, help="also write the results as JSON")
    p.add_argument(
        "--turns",
        type=int,
        default=DEFAULT_TURNS,
        help=f"appends per case, split among its writers (default {DEFAULT_TURNS})",
    )
    p.add_argument(
        "--warmup",
        type=int,
        default=DEFAULT_WARMUP,
        help=f"untimed appends per writer before each case (default {DEFAULT_WARMUP})",
    )
    p.add_argument(
        "--case-timeout",
        type=float,
        default=DEFAULT_CASE_TIMEOUT,
        help=f"seconds after which a case's writers stop (default {DEFAULT_CASE_TIMEOUT:g})",
    )
    p.add_argument(
        "--database-url",
        default=os.environ.get("DATABASE_URL"),
        help="a PostgreSQL server (with pgvector) whose role may create databases; "
        "default $DATABASE_URL, else the embedded server under .contextgate/bench",
    )
    p.add_argument(
        "--loop",
        choices=["uvloop", "asyncio"],
        default="uvloop",
        help="event loop for both modes (default uvloop, as the server uses)",
    )
    args = p.parse_args(argv)
    if args.turns < 1:
        p.error("--turns must be at least 1")
    if args.warmup < 0:
        p.error("--warmup must not be negative")
    return args


def run_loop(coro: Any, loop: str) -> Any:
    if loop == "uvloop":
        import uvloop

        return uvloop.run(coro)
    return asyncio.run(coro)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    with fresh_database(args.database_url) as url:
        started = time.perf_counter()
        # The server runs on uvloop (uvicorn[standard]); so do both modes here.
        results = run_loop(run_all(url, args.turns, args.warmup, args.case_timeout), args.loop)
        elapsed = time.perf_counter() - started
    ratios, targets = summarize(results)
    print()
    print(render(results, ratios, targets))
    print(f"\n{args.turns} appends per case (2 events each), {elapsed:.0f}s in all")
    if args.json is not None:
        report = {
            "benchmark": "append",
            "config": {
                "turns": args.turns,
                "warmup": args.warmup,
                "case_timeout_s": args.case_timeout,
                "loop": args.loop,
                "cpu_count": os.cpu_count(),
                "recorded_at": datetime.now(UTC).isoformat(),
            },
            "results": [asdict(r) for r in results],
            "ratios": ratios,
            "targets": targets,
        }
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(report, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
