"""The floor under a stateful proxy call that retrieves: what its parts that are not the
gateway's Python cost when each runs alone, on the session the proxy benchmark builds.

A stateful call on a long session waits, one after the other, for the new turn's query
vector (the embedding model's forward pass), the statement that finds the candidates by
that vector (PostgreSQL), the provider's answer to the assembled window (here the fake
upstream, on loopback), and the durable append of that answer (PostgreSQL). The reads,
the full-text half and the append of the user turn run while the vector is computed, so
they are left out. Each part is timed here alone, nothing else running, through the code
the server runs (OnnxEmbedder, PostgresContextReader, PostgresEventStore) on the session
that `proxy_overhead.py --modes stateful` would build: the sum of their medians is what a
call could not go below on this machine even if the gateway's own Python cost nothing.

    .venv/bin/python ops/bench/stateful_floor.py [--turns 1500] [--queries 200] [--json PATH]

Steps: a fresh database (as the other benchmarks: the embedded server under
.contextgate/bench, or --database-url); `contextgate serve` and the fake upstream; one
client sends `--turns` stateful requests on one session (proxy_overhead's texts), the
embeddings worker catches up, the server stops; then, in this process, `--queries`
rounds of: the query vector (int8, 1 and 2 threads), the user turn's append, the
candidates with the vector ready (both halves; and the vector half alone), the answer's
append, and the provider's round trip with the last window the server sent (and with the
stateless benchmark's small request).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import statistics
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from adapters.onnx_embedder import OnnxEmbedder  # noqa: E402
from adapters.postgres.context_inputs import PostgresContextReader  # noqa: E402
from adapters.postgres.database import Database  # noqa: E402
from adapters.postgres.pooled_event_store import PostgresEventStore  # noqa: E402
from domain.events import AssistantMessage, NewEvent, UserMessage  # noqa: E402
from domain.ids import uuid7  # noqa: E402
from domain.session import stream_id_for  # noqa: E402
from ops.bench import proxy_overhead as po  # noqa: E402
from ops.bench.benchdb import fresh_database  # noqa: E402

TENANT = "default"  # the admin key's tenant
SESSION_PREFIX = "bench-floor"
RECENT_TURNS = 200  # the recent window the candidates are older than (its size at most)
TARGET_MS = po.TARGET_STATEFUL_P50_MS
FAKE = argparse.Namespace(upstream_workers=1, upstream_latency_ms=0)  # as proxy_overhead's


async def build_session(tmp: Path, url: str, turns: int) -> tuple[str, bytes, bytes]:
    """Run the server and send `turns` stateful requests on one session; returns the
    session id, the last request the provider received (the window) and the stateless
    benchmark's request, both as the fake's bodies."""
    # It keeps the last request it received: the window the server sent last.
    fake, upstream = await po.start_fake(tmp, FAKE, capture=1)
    try:
        args = argparse.Namespace(workers=1)
        server, port = await po.start_contextgate(
            tmp, "stateful", tmp / "data", upstream, args, url
        )
        try:
            await po.wait_ready(server, port, "/readyz", po.START_TIMEOUT)
            await po.wait_models(server, port, po.START_TIMEOUT)
            headers = {"Authorization": f"Bearer {po.ADMIN_KEY}"}
            workload = po.Workload(
                port, headers, stream=False, history=False, session_prefix=SESSION_PREFIX
            )
            print(f"sending {turns} stateful requests on one session", file=sys.stderr)
            result = await po.run_load(
                port, workload, 1, turns, stream=False, timeout_s=po.DEFAULT_MODE_TIMEOUT
            )
            if result.errors:
                raise RuntimeError(f"{result.errors} errors: {result.first_error}")
            await po.settle(port, po.DEFAULT_SETTLE_TIMEOUT)
        finally:
            server.stop()
        reply = await po.http_once(
            upstream, po.encode_request("GET", upstream, "/_fake/requests", {})
        )
        window = json.dumps(json.loads(reply.body)[-1]["body"]).encode()
        small = po.Workload(upstream, {}, stream=False, history=True)
        body = small.request(0).split(b"\r\n\r\n", 1)[1]
        return workload.session_id(0) or "", window, body
    finally:
        fake.stop()


class Timer:
    """Milliseconds per named part; `keep` False for the warm-up rounds."""

    def __init__(self) -> None:
        self.samples: dict[str, list[float]] = {}
        self.keep = False

    @contextlib.contextmanager
    def __call__(self, name: str) -> Iterator[None]:
        started = time.perf_counter()
        yield
        if self.keep:
            self.samples.setdefault(name, []).append((time.perf_counter() - started) * 1000)

    def p50(self, name: str) -> float:
        return statistics.median(self.samples[name])


async def measure(
    tmp: Path, url: str, session_id: str, window: bytes, small: bytes, queries: int, warmup: int
) -> Timer:
    models = tmp / "data" / "models"  # the server's export, reused
    one, two = (OnnxEmbedder(None, models, threads=n, int8=True) for n in (1, 2))
    one.load()
    two.load()
    db = Database(url, pool_size=4)
    events = PostgresEventStore(db)
    reader = PostgresContextReader(db)
    alone = PostgresContextReader(db, k_text=0)  # the vector half only
    fake, upstream = await po.start_fake(tmp, FAKE, log="fake_upstream_2.log")
    timer = Timer()
    try:
        hop = _Hop(upstream)
        await hop.open()
        stream = stream_id_for(session_id)
        version = await events.stream_version(TENANT, stream)
        facts = await reader.session(TENANT, session_id)
        assert facts is not None
        turns = facts.turn_count
        print(f"session {session_id}: {turns} turns; timing {queries} rounds", file=sys.stderr)
        for i in range(warmup + queries):
            timer.keep = i >= warmup
            text = f"message {turns + i} from client 0: {po.TOPICS[i % len(po.TOPICS)]}"
            with timer("query vector, 1 thread"):
                vector = one.embed([text])[0]
            with timer("query vector, 2 threads"):
                two.embed([text])
            user = NewEvent.from_domain(UserMessage(content=text, tokens=len(text) // 4), uuid7())
            with timer("append the user turn"):
                done = await events.append(TENANT, stream, [user], expected_version=version)
            version = done.last_version
            before = max(1, version - RECENT_TURNS)
            for name, r in (
                ("candidates, both halves", reader),
                ("candidates, vector half", alone),
            ):
                with timer(name):
                    await r.candidates(
                        TENANT, session_id, query_embedding=vector, query_text=text,
                        before_version=before, user_id=None, session_turns=turns,
                    )  # fmt: skip
            with timer("provider, the window"):
                await hop.post(window)
            with timer("provider, a small request"):
                await hop.post(small)
            answer = NewEvent.from_domain(
                AssistantMessage(content="An answer of a few words.", tokens=7), uuid7()
            )
            with timer("append the answer"):
                done = await events.append(TENANT, stream, [answer], expected_version=version)
            version = done.last_version
            turns += 2
        await hop.close()
    finally:
        fake.stop()
        await db.dispose()
    return timer


class _Hop:
    """POSTs to the fake on one keep-alive connection, as the gateway's client does."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.conn: tuple[asyncio.StreamReader, asyncio.StreamWriter] | None = None

    async def open(self) -> None:
        self.conn = await asyncio.open_connection(po.HOST, self.port)

    async def post(self, body: bytes) -> None:
        assert self.conn is not None
        reader, writer = self.conn
        headers = {"Authorization": f"Bearer {po.UPSTREAM_KEY}", "Content-Type": "application/json"}
        writer.write(po.encode_request("POST", self.port, "/v1/chat/completions", headers, body))
        reply = await po.read_response(reader)
        if reply.status != 200:
            raise RuntimeError(f"the fake answered {reply.status}: {reply.body[:200]!r}")

    async def close(self) -> None:
        if self.conn is not None:
            self.conn[1].close()


def report(timer: Timer, window: bytes) -> dict[str, Any]:
    p = timer.p50
    floors = {
        f"{threads} thread{'s' if threads > 1 else ''}": round(
            p(f"query vector, {threads} thread{'s' if threads > 1 else ''}")
            + p("candidates, vector half")
            + p("provider, the window")
            + p("append the answer"),
            2,
        )
        for threads in (1, 2)
    }
    return {
        "results": [
            {
                "part": name,
                "p50_ms": round(p(name), 3),
                "p90_ms": round(sorted(xs)[int(0.9 * (len(xs) - 1))], 3),
                "n": len(xs),
            }
            for name, xs in timer.samples.items()
        ],
        "window_bytes": len(window),
        "window_messages": len(json.loads(window).get("messages", [])),
        "floor_p50_ms": floors,
        "target_ms": TARGET_MS,
    }


def render(out: dict[str, Any]) -> str:
    lines = [f"{'part (alone, p50 / p90 ms)':<34}{'p50':>8}{'p90':>8}"]
    for row in out["results"]:
        lines.append(f"{row['part']:<34}{row['p50_ms']:>8.2f}{row['p90_ms']:>8.2f}")
    lines.append(f"(the window: {out['window_messages']} messages, {out['window_bytes']:,} bytes)")
    for threads, floor in out["floor_p50_ms"].items():
        lines.append(
            f"floor of a retrieving stateful call, query vector on {threads}: {floor:.2f} ms "
            "(vector + candidates' vector half + provider with the window + the answer's "
            f"append; target for the whole call {out['target_ms']:.0f} ms)"
        )
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--turns", type=int, default=1500, help="requests that build the session")
    parser.add_argument("--queries", type=int, default=200, help="timed rounds")
    parser.add_argument("--warmup", type=int, default=20, help="untimed rounds first")
    parser.add_argument("--database-url", default=None)
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args(argv)
    machine = po.machine()
    with (
        tempfile.TemporaryDirectory(prefix="cg-floor-") as name,
        fresh_database(args.database_url, "floor") as url,
    ):
        tmp = Path(name)
        session_id, window, small = po.run_loop(build_session(tmp, url, args.turns), "uvloop")
        timer = po.run_loop(
            measure(tmp, url, session_id, window, small, args.queries, args.warmup), "uvloop"
        )
    out = report(timer, window)
    out["config"] = {"turns": args.turns, "queries": args.queries, "machine": machine}
    print(render(out))
    print(
        f"machine: {machine['cpu_model']}, {machine['cpu_count']} CPUs, {machine['vector_isa']}; "
        f"a pure-Python loop of 10^6 additions: {machine['python_loop_ms']} ms"
    )
    if args.json:
        args.json.write_text(json.dumps(out, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
