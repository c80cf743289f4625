"""Evidence recall of context windows on LoCoMo-format conversations.

    .venv/bin/python ops/bench/locomo.py PATH [--json OUT] [--budgets 1024,2048]
        [--strategies hybrid,sliding_window] [--database-url URL] [--limit-questions N]

Reads any file in LoCoMo's format (a JSON list of samples with `conversation` and `qa`;
`../shared/data/locomo/locomo-dev.json` has five). Each conversation becomes a session:
`speaker_a` speaks as the user, `speaker_b` as the assistant, each turn's text prefixed
with its speaker ("Caroline: ..."); a shared photo's caption is kept as
"[shares a photo: ...]". Each turn's time (`occurred_at`) comes from its session's date
("1:56 pm on 8 May, 2023", UTC), 30 seconds apart within a session. `--dates` also
prefixes each turn with that date ("[8 May, 2023] Caroline: ..."), which makes every
turn ~20% longer (fewer fit a budget). The turns go through the real
service (hash chain, projections) and the real embeddings worker (all-MiniLM-L6-v2).

Then, for every question of categories 1-4, a window is built with the question as the
current turn (the `query` of the context endpoint), per strategy and budget, and scored:
recall is the share of the question's evidence turns present verbatim in the window
(a summary does not count); tokens are the window's `used_tokens`; saving is
1 - tokens / the conversation's full history tokens.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import re
import sys
import time
from collections import defaultdict
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from adapters.embedder import AsyncEmbedder  # noqa: E402
from adapters.postgres.context_inputs import PostgresContextReader  # noqa: E402
from adapters.postgres.database import Database  # noqa: E402
from adapters.postgres.session_repository import PostgresSessions  # noqa: E402
from adapters.tokenizers import TiktokenCounter  # noqa: E402
from app.embedders import build_embedder  # noqa: E402
from app.services.context import ContextPorts, ContextRequest, build_context  # noqa: E402
from app.services.sessions import (  # noqa: E402
    RequestContext,
    TurnSpec,
    append_turns,
    create_session,
)
from app.settings import EMBEDDER_RUNTIMES, Settings  # noqa: E402
from app.workers.embeddings import EmbeddingsWorker  # noqa: E402
from domain.context.inputs import MESSAGE_OVERHEAD_TOKENS, BudgetShares  # noqa: E402
from domain.context.strategies import DEFAULT_SHARES  # noqa: E402
from ops.bench.benchdb import fresh_database  # noqa: E402

MODEL = "gpt-4o-mini"  # ratio 1.0: budgets are cl100k tokens
CATEGORIES = (1, 2, 3, 4)
CATEGORY_NAMES = {1: "multi-hop", 2: "temporal", 3: "open-domain", 4: "single-hop"}
TENANT = "locomo"
SESSION_KEY = re.compile(r"^session_(\d+)$")
APPEND_CHUNK = 50  # turns per append call
DATES = False  # --dates


class CachingEmbedder:
    """Embeds each question once, whatever the number of windows built for it."""

    def __init__(self, inner: AsyncEmbedder) -> None:
        self.inner = inner
        self.cache: dict[str, Sequence[float]] = {}

    async def embed_query(self, text: str) -> Sequence[float]:
        if text not in self.cache:
            self.cache[text] = await self.inner.embed_query(text)
        return self.cache[text]


def conversation_turns(sample: dict[str, Any]) -> list[tuple[str, str, TurnSpec]]:
    """(dia_id, speaker, turn) in order."""
    conv = sample["conversation"]
    speaker_a = conv["speaker_a"]
    sessions = sorted(
        (int(m.group(1)), key) for key in conv if (m := SESSION_KEY.match(key)) and conv[key]
    )
    out = []
    for n, key in sessions:
        date = conv.get(f"session_{n}_date_time", "")
        day = date.split(" on ", 1)[-1] if date else ""
        started = session_time(date)
        for i, turn in enumerate(conv[key]):
            text = turn.get("text", "")
            if turn.get("blip_caption"):
                text += f" [shares a photo: {turn['blip_caption']}]"
            speaker = turn["speaker"]
            role = "user" if speaker == speaker_a else "assistant"
            content = f"[{day}] {speaker}: {text}" if day and DATES else f"{speaker}: {text}"
            at = started + timedelta(seconds=30 * i) if started else None
            spec = TurnSpec(role=role, content=content, occurred_at=at)
            out.append((turn["dia_id"], speaker, spec))
    return out


def session_time(text: str) -> datetime | None:
    """LoCoMo's "1:56 pm on 8 May, 2023" as a UTC time; None when absent or unreadable."""
    try:
        return datetime.strptime(text.strip(), "%I:%M %p on %d %B, %Y").replace(tzinfo=UTC)
    except ValueError:
        return None


async def ingest(
    db: Database, embedder: AsyncEmbedder, counter: TiktokenCounter, samples: list[dict[str, Any]]
) -> tuple[dict[str, dict[str, int]], dict[str, int], float, int]:
    """Append every conversation and embed it; returns dia_id -> stream_version per
    session, full-history tokens per session, seconds, and the number of turns."""
    repo = PostgresSessions(db)
    ctx = RequestContext(TENANT, "locomo-bench")
    versions: dict[str, dict[str, int]] = {}
    history_tokens: dict[str, int] = {}
    started = time.perf_counter()
    turns_total = 0
    for sample in samples:
        sid = str(sample["sample_id"])
        await create_session(repo, ctx, session_id=sid, title=f"LoCoMo {sid}")
        turns = conversation_turns(sample)
        versions[sid] = {}
        tokens = 0
        for start in range(0, len(turns), APPEND_CHUNK):
            chunk = turns[start : start + APPEND_CHUNK]
            out = await append_turns(repo, counter, ctx, sid, [t for _, _, t in chunk])
            for (dia_id, _, _), event in zip(chunk, out.events, strict=True):
                versions[sid][dia_id] = event.stream_version
                tokens += int(event.data["tokens"]) + MESSAGE_OVERHEAD_TOKENS
        history_tokens[sid] = tokens
        turns_total += len(turns)
    worker = EmbeddingsWorker(db, embedder)
    while await worker.catch_up():
        pass
    return versions, history_tokens, time.perf_counter() - started, turns_total


async def evaluate(args: argparse.Namespace, url: str) -> dict[str, Any]:
    samples = json.loads(await asyncio.to_thread(Path(args.path).read_text))[: args.samples]
    counter = TiktokenCounter()
    # As `serve` composes it (ONNX Runtime for batches and queries, unless --embedder-runtime
    # torch): the vectors users get.
    model = build_embedder(
        Settings(embedder_runtime=args.embedder_runtime, data_dir=ROOT / ".contextgate")
    )
    await model.warm_up()
    db = Database(url, pool_size=8)
    try:
        versions, history, seconds, turns = await ingest(db, model, counter, samples)
        print(f"ingested {turns} turns in {seconds:.1f} s ({turns / seconds:.1f} turns/s "
              "with embeddings)", file=sys.stderr, flush=True)  # fmt: skip
        repo = PostgresSessions(db)
        ports = ContextPorts(
            PostgresContextReader(db, k_vector=args.k, k_text=args.k),
            counter,
            repo.events,
            CachingEmbedder(model),
        )
        shares = (
            BudgetShares(*(float(x) for x in args.shares.split(",")))
            if args.shares
            else DEFAULT_SHARES
        )
        # (strategy, budget, category) -> [recall], [tokens], [saving]
        acc: dict[tuple[str, int, int], list[tuple[float, int, float]]] = defaultdict(list)
        build_ms: list[float] = []
        questions = [
            (str(s["sample_id"]), q)
            for s in samples
            for q in s["qa"]
            if q.get("category") in CATEGORIES and q.get("evidence")
        ][: args.limit_questions]
        for i, (sid, qa) in enumerate(questions):
            wanted = {versions[sid][d] for d in qa["evidence"] if d in versions[sid]}
            if not wanted:
                continue
            for strategy in args.strategies:
                for budget in args.budgets:
                    t0 = time.perf_counter()
                    window = await build_context(
                        ports,
                        ContextRequest(
                            TENANT, sid, MODEL, strategy=strategy, budget=budget,
                            query=qa["question"], shares=shares,
                        ),
                    )  # fmt: skip
                    build_ms.append((time.perf_counter() - t0) * 1000)
                    shown = {
                        m.stream_version
                        for s in window.sections
                        if s.kind in ("recent", "retrieved")
                        for m in s.messages
                    }
                    recall = len(wanted & shown) / len(wanted)
                    saving = 1 - window.used_tokens / history[sid]
                    acc[(strategy, budget, qa["category"])].append(
                        (recall, window.used_tokens, saving)
                    )
            if (i + 1) % 100 == 0:
                print(f"{i + 1}/{len(questions)} questions", file=sys.stderr, flush=True)
    finally:
        await db.dispose()
        model.close()
    rows = []
    for strategy in args.strategies:
        for budget in args.budgets:
            everything: list[tuple[float, int, float]] = []
            for category in CATEGORIES:
                values = acc.get((strategy, budget, category), [])
                everything += values
                rows.append(_row(strategy, budget, str(category), values))
            rows.append(_row(strategy, budget, "all", everything))
    build_ms.sort()
    return {
        "benchmark": "locomo",
        "path": str(args.path),
        "ingest_turns_per_s": round(turns / seconds, 1),
        "turns": turns,
        "questions": len(questions),
        "mean_history_tokens": round(sum(history.values()) / len(history), 1),
        "window_build_p50_ms": round(build_ms[len(build_ms) // 2], 2) if build_ms else None,
        "results": rows,
    }


def _row(
    strategy: str, budget: int, category: str, values: list[tuple[float, int, float]]
) -> dict[str, Any]:
    n = len(values)
    return {
        "strategy": strategy,
        "budget": budget,
        "category": category,
        "questions": n,
        "recall": round(sum(v[0] for v in values) / n, 4) if n else None,
        "mean_tokens": round(sum(v[1] for v in values) / n, 1) if n else None,
        "saving": round(sum(v[2] for v in values) / n, 4) if n else None,
    }


def render(report: dict[str, Any]) -> str:
    lines = [
        f"{report['turns']} turns, {report['questions']} questions (categories 1-4); "
        f"full histories average {report['mean_history_tokens']:.0f} tokens; "
        f"ingest {report['ingest_turns_per_s']} turns/s with embeddings; "
        f"window build p50 {report['window_build_p50_ms']} ms",
        "",
        f"{'strategy':<15}{'budget':>7}  {'category':<14}{'n':>5}{'recall':>9}"
        f"{'tokens':>9}{'saving':>9}",
    ]
    for r in report["results"]:
        name = CATEGORY_NAMES.get(int(r["category"]), "") if r["category"] != "all" else "all"
        recall = f"{r['recall'] * 100:7.1f}%" if r["recall"] is not None else "      -"
        tokens = f"{r['mean_tokens']:9.0f}" if r["mean_tokens"] is not None else "        -"
        saving = f"{r['saving'] * 100:8.1f}%" if r["saving"] is not None else "       -"
        lines.append(
            f"{r['strategy']:<15}{r['budget']:>7}  {r['category'] + ' ' + name:<14}"
            f"{r['questions']:>5} {recall}{tokens}{saving}"
        )
    target = next(
        (r for r in report["results"]
         if r["strategy"] == "hybrid" and r["budget"] == 2048 and r["category"] == "all"),
        None,
    )  # fmt: skip
    if target is not None and target["recall"] is not None:
        met = "MET" if target["recall"] >= 0.8 else "NOT MET"
        lines.append(f"\ntarget: hybrid at 2048 tokens holds >= 80% of evidence turns: "
                     f"{target['recall'] * 100:.1f}% -> {met}")  # fmt: skip
    return "\n".join(lines)


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    p.add_argument("path", type=Path, help="a LoCoMo-format JSON file")
    p.add_argument("--json", type=Path, default=None, help="also write the figures here")
    p.add_argument("--budgets", default="1024,2048", help="comma-separated token budgets")
    p.add_argument(
        "--strategies", default="hybrid,sliding_window", help="comma-separated strategies"
    )
    p.add_argument("--database-url", default=None, help="default: the embedded server")
    p.add_argument("--limit-questions", type=int, default=None, help="for a quick run")
    p.add_argument("--samples", type=int, default=None, help="only the first N conversations")
    p.add_argument("--dates", action="store_true", help="prefix each turn with its session's date")
    p.add_argument("--k", type=int, default=30, help="candidates per search (vector, text)")
    p.add_argument(
        "--embedder-runtime", choices=EMBEDDER_RUNTIMES, default="onnx", help="as serve's"
    )
    p.add_argument("--shares", default=None, help="recent,summary,retrieved (e.g. 0.3,0.1,0.6)")
    args = p.parse_args(argv)
    args.budgets = [int(b) for b in args.budgets.split(",") if b]
    args.strategies = [s for s in args.strategies.split(",") if s]
    if not args.path.exists():
        p.error(f"{args.path} does not exist")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    global DATES
    DATES = args.dates
    with fresh_database(args.database_url, prefix="locomo") as url:
        report = asyncio.run(evaluate(args, url))
    print(render(report))
    if args.json is not None:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(report, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
