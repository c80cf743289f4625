"""Gateway overhead: Contextgate's proxy against a direct call and LiteLLM's proxy.

Run from the repository root:

    .venv/bin/python ops/bench/proxy_overhead.py [--json PATH] [--concurrency 1,16]
        [--requests N] [--warmup N] [--workers N] [--stream] [--upstream-latency-ms MS]
        [--modes direct,stateless,stateful,litellm] [--skip-litellm] [--litellm-venv PATH]
        [--no-memory-phase] [--memory-requests N] [--database-url URL] [--session-turns N]

One fake OpenAI-compatible provider (tests/fakes/fake_upstream.py, its own process on
loopback) answers every mode; a load generator in this process (asyncio, raw keep-alive
HTTP/1.1, requests encoded up front but for the user text) drives N concurrent clients,
each sending its next request when the answer to the last one is in. The modes run one
after the other, each server alone on the machine, each measurement warmed up first:

    direct     straight to the fake upstream: the baseline; its latency is the load
               generator's and the fake's own cost, which every other mode also pays.
    stateless  Contextgate (`contextgate serve` on an embedded PostgreSQL of its own in a
               temporary folder), `POST /v1/chat/completions` without a session: the
               client sends the whole conversation, the gateway passes it on (and records
               it).
    stateful   a fresh Contextgate server, `X-Session-Id: bench-stateful-<client>`: each
               request is one new user turn; the gateway appends it, builds the context
               from the session's history (which grows over the run), calls the provider
               and appends the answer. The embeddings worker is on, as in production.
               With --session-turns N a client opens a new session every N requests
               instead (conversations of 2N turns; the targets are read without it).
    litellm    LiteLLM's proxy (`litellm[proxy]` in its own venv, ops/bench/.litellm-venv,
               created on first use) with ops/bench/litellm_config.yaml, routing the same
               model to the same fake upstream, with the same number of worker processes.

Added latency is a mode's p50/p99 minus direct's at the same concurrency. The latency
targets are read at the fewest clients (by default 1: the gateway's own cost; with more
clients than cores the queue for the CPU dominates), the throughput target at the most
(16: the cores are saturated). Then, unless --no-memory-phase, the memory phase on the
stateful server: its RSS (summed over its process tree) after warm-up and after
--memory-requests more stateful requests. See ops/bench/README.md for the output.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import math
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from ops.bench.benchdb import percentile  # noqa: E402

MODES = ("direct", "stateless", "stateful", "litellm")
GATEWAY_MODES = ("stateless", "stateful")
HOST = "127.0.0.1"
MODEL = "gpt-4o-mini"  # one of the fake's models; LiteLLM's config routes the same name
UPSTREAM_KEY = "sk-bench-upstream-key"
ADMIN_KEY = "cg_bench_admin_key_" + "0" * 24  # CONTEXTGATE_ADMIN_KEY, the bench's Bearer key
LITELLM_MASTER_KEY = "sk-bench-litellm-master-key"
LITELLM_SPEC = "litellm[proxy]"
DEFAULT_LITELLM_VENV = ROOT / "ops" / "bench" / ".litellm-venv"
DEFAULT_LITELLM_CONFIG = ROOT / "ops" / "bench" / "litellm_config.yaml"

DEFAULT_CONCURRENCY = "1,16"
DEFAULT_REQUESTS = 5000  # measured requests per mode and concurrency
DEFAULT_WARMUP = 300  # untimed requests per mode and concurrency
DEFAULT_MEMORY_REQUESTS = 100_000
DEFAULT_MODE_TIMEOUT = 600.0  # s; a measured phase stops early (and says so) past this
DEFAULT_MEMORY_TIMEOUT = 3600.0
DEFAULT_SETTLE_TIMEOUT = 120.0  # s to wait for the embeddings worker between phases
REQUEST_TIMEOUT = 60.0
START_TIMEOUT = 180.0  # s for a server to answer its readiness check

TARGET_STATELESS_P50_MS = 2.0
TARGET_STATEFUL_P50_MS = 10.0
TARGET_MEMORY_GROWTH = 0.20

SYSTEM = "You are a concise assistant for a software team. Answer in a few sentences."
HISTORY = (
    (
        "user",
        "Our nightly invoice job moved from MySQL to PostgreSQL and now takes forty "
        "minutes instead of five. Where do I start?",
    ),
    (
        "assistant",
        "Start with pg_stat_statements sorted by total_exec_time, then EXPLAIN (ANALYZE, "
        "BUFFERS) the top queries; a sequential scan on invoices is the usual suspect.",
    ),
    ("user", "It is a nested loop over line items. Which index would help?"),
    (
        "assistant",
        "An index on line_items (invoice_id) and fresh statistics (ANALYZE line_items) "
        "usually turn it into a hash join or an index scan.",
    ),
)
TOPICS = (
    "can you suggest how to keep sessions when a pod restarts behind the load balancer?",
    "please rewrite the renewal reminder so it sounds friendly but firm about refunds.",
    "what are the main risks of letting an agent run shell commands on a laptop?",
    "how should we size the connection pool for three replicas and one PostgreSQL?",
)


# -- processes ----------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind((HOST, 0))
        return int(s.getsockname()[1])


def _proc_stat(pid: int) -> list[str] | None:
    """The fields of /proc/PID/stat after the command name (field 3 onwards)."""
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return raw[raw.rfind(")") + 2 :].split()


def process_tree(root: int) -> list[int]:
    """`root` and all its descendants that are alive now."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            stat = _proc_stat(int(entry))
            if stat is not None:
                children.setdefault(int(stat[1]), []).append(int(entry))
    if _proc_stat(root) is None:
        return []
    tree, todo = [], [root]
    while todo:
        pid = todo.pop()
        tree.append(pid)
        todo += children.get(pid, [])
    return tree


def tree_rss_mb(root: int) -> float:
    """VmRSS summed over the process tree, MiB (pages shared between processes count in
    each of them)."""
    total_kb = 0
    for pid in process_tree(root):
        try:
            for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total_kb += int(line.split()[1])
                    break
        except OSError:
            continue
    return total_kb / 1024


def tree_cpu_s(root: int) -> float:
    """User + system CPU seconds of the live processes of the tree."""
    ticks = 0
    for pid in process_tree(root):
        stat = _proc_stat(pid)
        if stat is not None:
            ticks += int(stat[11]) + int(stat[12])  # utime, stime
    return ticks / os.sysconf("SC_CLK_TCK")


@dataclass
class Spawned:
    """A server this script started, in its own process group, logging to a file."""

    name: str
    popen: subprocess.Popen[bytes]
    log: Path

    @property
    def pid(self) -> int:
        return self.popen.pid

    def tail(self, lines: int = 40) -> str:
        try:
            text = self.log.read_text(errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])

    def check_alive(self) -> None:
        if self.popen.poll() is not None:
            raise RuntimeError(
                f"{self.name} exited with status {self.popen.returncode}; "
                f"the end of its log:\n{self.tail()}"
            )

    def stop(self, timeout: float = 20.0) -> None:
        """SIGTERM to the server, SIGKILL to it and its group if it lingers; then any
        process of its group still alive (a worker it left behind)."""
        pgid = self.popen.pid  # start_new_session: the group is the server's own
        if self.popen.poll() is None:
            self.popen.send_signal(signal.SIGTERM)
            try:
                self.popen.wait(timeout)
            except subprocess.TimeoutExpired:
                print(f"{self.name} did not stop in {timeout:g}s; killing it", file=sys.stderr)
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(pgid, signal.SIGKILL)
                self.popen.wait()
        for entry in os.listdir("/proc"):
            stat = _proc_stat(int(entry)) if entry.isdigit() else None
            if stat is not None and int(stat[2]) == pgid:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(int(entry), signal.SIGKILL)


def spawn(name: str, argv: Sequence[str], env: dict[str, str], log: Path) -> Spawned:
    print(f"starting {name}: {' '.join(argv)}", file=sys.stderr, flush=True)
    with log.open("wb") as out:
        popen = subprocess.Popen(
            list(argv),
            cwd=ROOT,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its own group: Ctrl-C reaches only us; we stop it
        )
    return Spawned(name, popen, log)


def child_env(drop_prefixes: Sequence[str] = (), **extra: str) -> dict[str, str]:
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(tuple(drop_prefixes)) and k not in ("DATABASE_URL",)
    }
    no_proxy = ",".join(filter(None, [env.get("NO_PROXY"), "127.0.0.1", "localhost"]))
    env.update(NO_PROXY=no_proxy, no_proxy=no_proxy, **extra)
    return env


# -- HTTP/1.1 client ----------------------------------------------------------------------


class ProtocolError(Exception):
    pass


@dataclass(frozen=True, slots=True)
class Reply:
    status: int
    body: bytes
    keep_alive: bool
    first_byte_at: float  # perf_counter when the first byte of the body arrived


async def read_response(reader: asyncio.StreamReader) -> Reply:
    """One HTTP/1.1 response: Content-Length, chunked, or up to the end of the stream."""
    head = await reader.readuntil(b"\r\n\r\n")
    lines = head.split(b"\r\n")
    version, _, rest = lines[0].partition(b" ")
    if not version.startswith(b"HTTP/1.") or len(rest) < 3 or not rest[:3].isdigit():
        raise ProtocolError(f"bad status line {lines[0][:80]!r}")
    status = int(rest[:3])
    keep_alive = version == b"HTTP/1.1"
    length: int | None = None
    chunked = False
    for line in lines[1:]:
        name, _, value = line.partition(b":")
        name = name.strip().lower()
        if name == b"content-length":
            length = int(value)
        elif name == b"transfer-encoding":
            chunked = b"chunked" in value.lower()
        elif name == b"connection":
            token = value.strip().lower()
            keep_alive = token != b"close" and (keep_alive or token == b"keep-alive")
    first = time.perf_counter()
    if chunked:
        parts: list[bytes] = []
        while True:
            size_line = await reader.readuntil(b"\r\n")
            size = int(size_line.split(b";", 1)[0].strip(), 16)
            if size == 0:
                while await reader.readuntil(b"\r\n") != b"\r\n":  # trailers
                    pass
                break
            chunk = await reader.readexactly(size + 2)
            if not parts:
                first = time.perf_counter()
            parts.append(chunk[:-2])
        body = b"".join(parts)
    elif length is not None:
        body = await reader.readexactly(length)
    elif status in (204, 304) or 100 <= status < 200:
        body = b""
    else:
        body = await reader.read()
        keep_alive = False
    return Reply(status, body, keep_alive, first)


def encode_request(
    method: str, port: int, path: str, headers: dict[str, str], body: bytes = b""
) -> bytes:
    head = f"{method} {path} HTTP/1.1\r\nHost: {HOST}:{port}\r\n"
    head += "".join(f"{k}: {v}\r\n" for k, v in headers.items())
    if body or method == "POST":
        head += f"Content-Length: {len(body)}\r\n"
    return head.encode() + b"\r\n" + body


async def http_once(port: int, raw: bytes, limit_s: float = 10.0) -> Reply:
    """One request on a new connection (probes and readiness checks)."""
    async with asyncio.timeout(limit_s):
        reader, writer = await asyncio.open_connection(HOST, port)
        try:
            writer.write(raw)
            return await read_response(reader)
        finally:
            writer.close()
            with contextlib.suppress(OSError):
                await writer.wait_closed()


async def wait_ready(server: Spawned, port: int, path: str, within_s: float) -> None:
    raw = encode_request("GET", port, path, {})
    deadline = time.monotonic() + within_s
    while time.monotonic() < deadline:
        server.check_alive()
        with contextlib.suppress(OSError, asyncio.IncompleteReadError, ProtocolError, TimeoutError):
            if (await http_once(port, raw, limit_s=5)).status == 200:
                return
        await asyncio.sleep(0.25)
    raise RuntimeError(f"{server.name} was not ready after {within_s:g}s:\n{server.tail()}")


async def wait_models(server: Spawned, port: int, within_s: float) -> None:
    """Until /readyz says the embedding model is loaded: it loads (and on a first start
    is exported to ONNX, importing torch) in the background after start, which would
    otherwise share the CPU with the first measured phase."""
    raw = encode_request("GET", port, "/readyz", {})
    deadline = time.monotonic() + within_s
    while time.monotonic() < deadline:
        server.check_alive()
        reply = await http_once(port, raw)
        state = json.loads(reply.body).get("checks", {}).get("models", "ok")
        if state == "ok":
            return
        if state == "failed":
            raise RuntimeError(f"{server.name} could not load its embedding model")
        await asyncio.sleep(0.25)
    raise RuntimeError(f"{server.name} had not loaded its model after {within_s:g}s")


# -- workloads ----------------------------------------------------------------------------


class Workload:
    """Encodes the requests of one mode: everything but the user text is encoded once.
    Each client has its own message counter, which goes on across the mode's phases."""

    def __init__(
        self,
        port: int,
        headers: dict[str, str],
        *,
        stream: bool,
        history: bool,
        session_prefix: str | None = None,
        session_turns: int = 0,
    ) -> None:
        messages: list[dict[str, str]] = []
        if history:  # a stateless client sends the whole conversation each time
            messages.append({"role": "system", "content": SYSTEM})
            messages += [{"role": role, "content": text} for role, text in HISTORY]
        messages.append({"role": "user", "content": "\0"})
        body = json.dumps(
            {"model": MODEL, "messages": messages, "stream": stream}, separators=(",", ":")
        )
        self.body_prefix, self.body_suffix = (x.encode() for x in body.split('"\\u0000"'))
        self.head = (
            f"POST /v1/chat/completions HTTP/1.1\r\nHost: {HOST}:{port}\r\n"
            "Content-Type: application/json\r\n"
            + "".join(f"{k}: {v}\r\n" for k, v in headers.items())
        ).encode()
        self.session_prefix = session_prefix
        # 0: one session a client for the whole run (it grows to thousands of turns);
        # N: a client opens a new session every N requests (conversations of 2N turns).
        self.session_turns = session_turns
        self.counters: dict[int, int] = {}
        self._session_headers: dict[tuple[int, int], bytes] = {}

    def session_id(self, client: int, conversation: int = 0) -> str | None:
        if self.session_prefix is None:
            return None
        if not self.session_turns:
            return f"{self.session_prefix}-{client}"
        return f"{self.session_prefix}-{client}-{conversation}"

    def request(self, client: int) -> bytes:
        k = self.counters.get(client, 0) + 1
        self.counters[client] = k
        text = f"message {k} from client {client}: {TOPICS[(client + k) % len(TOPICS)]}"
        body = self.body_prefix + json.dumps(text).encode() + self.body_suffix
        key = (client, (k - 1) // self.session_turns if self.session_turns else 0)
        session = self._session_headers.get(key)
        if session is None:
            sid = self.session_id(*key)
            session = f"X-Session-Id: {sid}\r\n".encode() if sid is not None else b""
            self._session_headers.pop((client, key[1] - 1), None)  # that one is over
            self._session_headers[key] = session
        return self.head + session + b"Content-Length: %d\r\n\r\n" % len(body) + body


def answer_ok(reply: Reply, stream: bool) -> bool:
    if not 200 <= reply.status < 300:
        return False
    if stream:
        return reply.body.rstrip().endswith(b"data: [DONE]")
    return b'"choices"' in reply.body


def describe(reply: Reply) -> str:
    body = reply.body[:300].decode(errors="replace").replace("\n", " ")
    return f"HTTP {reply.status}: {body}"


@dataclass
class LoadResult:
    latencies: list[float]  # s, successful requests only, ascending
    first_bytes: list[float]  # s to the first body byte, ascending
    errors: int
    first_error: str | None
    done: int
    wall_s: float
    truncated: bool


@dataclass
class Progress:
    done: int = 0


async def run_load(
    port: int,
    workload: Workload,
    concurrency: int,
    total: int,
    *,
    stream: bool,
    timeout_s: float,
    progress: Progress | None = None,
) -> LoadResult:
    """`concurrency` clients, each on its own keep-alive connection, send `total`
    requests between them, one at a time each, until done or `timeout_s` has passed."""
    latencies: list[float] = []
    first_bytes: list[float] = []
    errors = 0
    first_error: str | None = None
    remaining = total
    progress = progress or Progress()
    start = time.perf_counter()
    deadline = start + timeout_s

    async def client(c: int) -> None:
        nonlocal remaining, errors, first_error
        conn: tuple[asyncio.StreamReader, asyncio.StreamWriter] | None = None
        try:
            while remaining > 0 and time.perf_counter() < deadline:
                remaining -= 1
                raw = workload.request(c)
                try:
                    if conn is None:
                        conn = await asyncio.open_connection(HOST, port)
                    reader, writer = conn
                    t0 = time.perf_counter()
                    async with asyncio.timeout(REQUEST_TIMEOUT):
                        writer.write(raw)
                        reply = await read_response(reader)
                    t1 = time.perf_counter()
                except (
                    OSError,
                    EOFError,
                    ValueError,
                    asyncio.LimitOverrunError,
                    ProtocolError,
                ) as exc:
                    errors += 1
                    first_error = first_error or f"{type(exc).__name__}: {exc}"
                    if conn is not None:
                        conn[1].close()
                    conn = None
                    continue
                progress.done += 1
                if answer_ok(reply, stream):
                    latencies.append(t1 - t0)
                    first_bytes.append(reply.first_byte_at - t0)
                else:
                    errors += 1
                    first_error = first_error or describe(reply)
                if not reply.keep_alive:
                    conn[1].close()
                    conn = None
        finally:
            if conn is not None:
                conn[1].close()

    await asyncio.gather(*(client(c) for c in range(concurrency)))
    wall = time.perf_counter() - start
    latencies.sort()
    first_bytes.sort()
    return LoadResult(
        latencies, first_bytes, errors, first_error, progress.done, wall, remaining > 0
    )


# -- measuring ----------------------------------------------------------------------------


@dataclass
class Row:
    mode: str
    concurrency: int
    p50_ms: float
    p99_ms: float
    overhead_p50_ms: float | None
    overhead_p99_ms: float | None
    rps: float
    requests: int
    errors: int
    wall_s: float
    truncated: bool
    ttfb_p50_ms: float | None  # --stream: time to the first body byte (the first event)
    gateway_cpu_ms: float | None  # CPU per request: the gateway's process tree
    upstream_cpu_ms: float  # the fake upstream's
    db_cpu_ms: float | None  # the benchmark's embedded PostgreSQL (Contextgate modes)
    loadgen_cpu_ms: float  # this process
    server_rss_mb: float | None  # the gateway's RSS after the phase
    # Contextgate: events its embeddings worker had not embedded yet when the phase
    # ended (work the phase left for later, not counted in its rps)
    embeddings_behind: int | None


@dataclass
class Servers:
    """What a phase measures the CPU of."""

    upstream: int
    gateway: int | None = None
    db: int | None = None

    def cpu(self) -> tuple[float, float | None, float | None, float]:
        return (
            tree_cpu_s(self.upstream),
            tree_cpu_s(self.gateway) if self.gateway else None,
            tree_cpu_s(self.db) if self.db else None,
            time.process_time(),
        )


def cpu_ms_a_request(before: float | None, after: float | None, done: int) -> float | None:
    """CPU ms a request between two Servers.cpu() readings of one process tree."""
    if after is None or before is None or not done:
        return None
    return round((after - before) * 1000 / done, 3)


def ms(seconds: float) -> float:
    return round(seconds * 1000, 3)


async def measure(
    mode: str,
    port: int,
    workload: Workload,
    concurrency: int,
    args: argparse.Namespace,
    servers: Servers,
) -> Row:
    """Warm up, then time `--requests` requests at `concurrency`."""
    warm = await run_load(
        port, workload, concurrency, args.warmup, stream=args.stream, timeout_s=args.mode_timeout
    )
    if warm.errors:
        print(
            f"  {mode}: {warm.errors} errors in the warm-up ({warm.first_error})", file=sys.stderr
        )
    before = servers.cpu()
    res = await run_load(
        port, workload, concurrency, args.requests, stream=args.stream, timeout_s=args.mode_timeout
    )
    after = servers.cpu()

    def per_request(i: int) -> float | None:
        return cpu_ms_a_request(before[i], after[i], res.done)

    note = " (stopped at the time limit)" if res.truncated else ""
    errs = f", {res.errors} errors: {res.first_error}" if res.errors else ""
    print(
        f"  {mode:9} clients={concurrency:<3} {res.done} requests in {res.wall_s:.1f}s{note}{errs}",
        file=sys.stderr,
        flush=True,
    )
    return Row(
        mode=mode,
        concurrency=concurrency,
        p50_ms=ms(percentile(res.latencies, 0.50)),
        p99_ms=ms(percentile(res.latencies, 0.99)),
        overhead_p50_ms=None,
        overhead_p99_ms=None,
        rps=round(len(res.latencies) / res.wall_s, 1) if res.wall_s > 0 else math.nan,
        requests=res.done,
        errors=res.errors,
        wall_s=round(res.wall_s, 2),
        truncated=res.truncated,
        ttfb_p50_ms=ms(percentile(res.first_bytes, 0.50)) if args.stream else None,
        gateway_cpu_ms=per_request(1),
        upstream_cpu_ms=per_request(0) or 0.0,
        db_cpu_ms=per_request(2),
        loadgen_cpu_ms=per_request(3) or 0.0,
        server_rss_mb=round(tree_rss_mb(servers.gateway), 1) if servers.gateway else None,
        embeddings_behind=await embeddings_behind(port) if mode in GATEWAY_MODES else None,
    )


async def probe(port: int, workload: Workload, stream: bool) -> str | None:
    """None if one request of the mode is answered well, else why not."""
    try:
        reply = await http_once(port, workload.request(0), limit_s=REQUEST_TIMEOUT)
    except (OSError, EOFError, ProtocolError) as exc:
        return f"{type(exc).__name__}: {exc}"
    return None if answer_ok(reply, stream) else describe(reply)


LAG_CAP = 100_000  # /v1/projections counts events behind up to this many


def _behind(events: int | None) -> str:
    """An events-behind count as said: the projection API stops counting at LAG_CAP."""
    if events is None:
        return "-"
    return f"{events:,} or more" if events >= LAG_CAP else f"{events:,}"


async def embeddings_behind(port: int) -> int | None:
    """Events Contextgate's embeddings worker has yet to embed (None: no such endpoint)."""
    raw = encode_request("GET", port, "/v1/projections", {"Authorization": f"Bearer {ADMIN_KEY}"})
    try:
        reply = await http_once(port, raw)
        return sum(int(p["events_behind"]) for p in json.loads(reply.body))
    except (OSError, EOFError, ProtocolError, ValueError, TypeError, KeyError):
        return None


async def settle(port: int, within_s: float) -> None:
    """Wait until Contextgate's embeddings worker has caught up with the log, so one
    phase's backlog does not run in the next phase's window."""
    deadline = time.monotonic() + within_s
    said = False
    while (behind := await embeddings_behind(port)) is not None and behind > 0:
        if time.monotonic() > deadline:
            print(f"  embeddings still {behind} events behind; going on", file=sys.stderr)
            return
        if not said:
            print(f"  waiting for the embeddings worker ({behind} events behind)", file=sys.stderr)
            said = True
        await asyncio.sleep(0.5)


# -- the servers --------------------------------------------------------------------------


async def start_fake(
    tmp: Path, args: argparse.Namespace, *, capture: int = 0, log: str = "fake_upstream.log"
) -> tuple[Spawned, int]:
    """The fake provider and its port; `capture`: the last N requests it keeps (0: none)."""
    argv = [sys.executable, "-m", "tests.fakes.fake_upstream", "--host", HOST, "--port", "0"]
    argv += ["--capture-max", str(capture)] if capture else ["--no-capture"]
    argv += ["--api-key", UPSTREAM_KEY, "--workers", str(args.upstream_workers)]
    if args.upstream_latency_ms:
        argv += ["--latency-ms", str(args.upstream_latency_ms)]
    fake = spawn("fake upstream", argv, child_env(), tmp / log)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        fake.check_alive()
        for line in fake.log.read_text(errors="replace").splitlines():
            if line.startswith("listening on http://"):
                return fake, int(line.rsplit(":", 1)[1])
        await asyncio.sleep(0.1)
    raise RuntimeError(f"the fake upstream did not start:\n{fake.tail()}")


def contextgate_cli() -> str:
    cli = Path(sys.executable).parent / "contextgate"
    if not cli.exists():
        raise RuntimeError(f"{cli} not found: run with the project's venv (.venv/bin/python)")
    return str(cli)


async def start_contextgate(
    tmp: Path,
    mode: str,
    data_dir: Path,
    upstream_port: int,
    args: argparse.Namespace,
    database_url: str | None,
) -> tuple[Spawned, int]:
    port = free_port()
    extra = {
        "CONTEXTGATE_HOST": HOST,
        "CONTEXTGATE_PORT": str(port),
        "CONTEXTGATE_WORKERS": str(args.workers),
        "CONTEXTGATE_ADMIN_KEY": ADMIN_KEY,
        "CONTEXTGATE_LOG_LEVEL": "warning",
        "CONTEXTGATE_DATA_DIR": str(data_dir),
        "OPENAI_BASE_URL": f"http://{HOST}:{upstream_port}/v1",
        "OPENAI_API_KEY": UPSTREAM_KEY,
    }
    if database_url:
        extra["CONTEXTGATE_DATABASE_URL"] = database_url
    env = child_env(("CONTEXTGATE_", "OPENAI_", "ANTHROPIC_"), **extra)
    log = tmp / f"contextgate-{mode}.log"
    server = spawn(f"contextgate ({mode})", [contextgate_cli(), "serve"], env, log)
    return server, port


def postmaster_pid(data_dir: Path) -> int | None:
    with contextlib.suppress(OSError, ValueError, IndexError):
        return int((data_dir / "pg" / "postmaster.pid").read_text().split()[0])
    return None


def stop_embedded_pg(data_dir: Path) -> None:
    """`contextgate serve` stops the PostgreSQL it started when it exits, but not always
    (not when it is killed): stop it here if it still runs."""
    if not (data_dir / "pg" / "postmaster.pid").exists():
        return
    from adapters import embedded_pg

    saved = os.environ.get("XDG_RUNTIME_DIR")
    try:
        if embedded_pg.stop(data_dir):
            print(f"stopped the embedded PostgreSQL in {data_dir}", file=sys.stderr)
    finally:
        if saved is None:
            os.environ.pop("XDG_RUNTIME_DIR", None)
        else:
            os.environ["XDG_RUNTIME_DIR"] = saved


def ensure_litellm(venv: Path) -> tuple[Path, str]:
    """The `litellm` command of `venv`, created with `python3 -m venv` and
    `pip install 'litellm[proxy]'` if it is not there; and LiteLLM's version."""
    cli = venv / "bin" / "litellm"
    python = venv / "bin" / "python"
    if not cli.exists():
        base = shutil.which("python3") or sys.executable
        steps = [
            [base, "-m", "venv", str(venv)],
            [str(python), "-m", "pip", "install", "--disable-pip-version-check", LITELLM_SPEC],
        ]
        print(f"LiteLLM is not in {venv}; installing it (a few minutes):", file=sys.stderr)
        for step in steps:
            print("  $ " + " ".join(step), file=sys.stderr, flush=True)
            subprocess.run(step, check=True, stdout=sys.stderr, stdin=subprocess.DEVNULL)
    version = subprocess.run(
        [str(python), "-c", "import importlib.metadata as m; print(m.version('litellm'))"],
        check=True,
        capture_output=True,
        text=True,
    ).stdout.strip()
    print(f"LiteLLM {version} from {venv}", file=sys.stderr)
    return cli, version


async def start_litellm(
    tmp: Path, cli: Path, upstream_port: int, args: argparse.Namespace
) -> tuple[Spawned, int]:
    port = free_port()
    env = child_env(
        ("LITELLM_", "OPENAI_", "REDIS_", "DIRECT_URL", "STORE_MODEL_IN_DB"),
        BENCH_UPSTREAM_BASE_URL=f"http://{HOST}:{upstream_port}/v1",
        BENCH_UPSTREAM_API_KEY=UPSTREAM_KEY,
        BENCH_LITELLM_MASTER_KEY=LITELLM_MASTER_KEY,
        LITELLM_LOG="ERROR",
        LITELLM_LOCAL_MODEL_COST_MAP="True",
        LITELLM_TELEMETRY_DISABLED="true",
    )
    argv = [str(cli), "--config", str(args.litellm_config), "--host", HOST, "--port", str(port)]
    argv += ["--num_workers", str(args.workers)]
    server = spawn("litellm", argv, env, tmp / "litellm.log")
    await wait_ready(server, port, "/health/liveliness", START_TIMEOUT)
    return server, port


# -- the run ------------------------------------------------------------------------------


@dataclass
class Report:
    rows: list[Row] = field(default_factory=list)
    unavailable: dict[str, str] = field(default_factory=dict)
    memory: dict[str, Any] = field(default_factory=dict)
    litellm_version: str | None = None


async def gateway_mode(
    mode: str,
    report: Report,
    tmp: Path,
    fake: Spawned,
    upstream_port: int,
    args: argparse.Namespace,
    database_url: str | None,
) -> None:
    """One Contextgate mode on a server (and database) of its own, so that no mode pays
    for another's background work (the embeddings of the turns it recorded); after the
    stateful mode, the memory phase on the same server."""
    with contextlib.ExitStack() as stack:
        data_dir = tmp / f"data-{mode}"
        if not database_url:
            stack.callback(stop_embedded_pg, data_dir)  # runs after the server's stop
        server, port = await start_contextgate(
            tmp, mode, data_dir, upstream_port, args, database_url
        )
        stack.callback(server.stop)
        await wait_ready(server, port, "/readyz", START_TIMEOUT)
        ready_mb = round(tree_rss_mb(server.pid), 1)
        await wait_models(server, port, START_TIMEOUT)  # measure after start-up's work
        servers = Servers(fake.pid, server.pid, postmaster_pid(data_dir))
        headers = {"Authorization": f"Bearer {ADMIN_KEY}"}
        workload = Workload(
            port,
            headers,
            stream=args.stream,
            history=mode == "stateless",
            session_prefix="bench-stateful" if mode == "stateful" else None,
            session_turns=args.session_turns,
        )
        why = await probe(port, workload, args.stream)
        if why is not None:
            report.unavailable[mode] = why
            print(f"  {mode}: not available ({why}); skipped", file=sys.stderr)
            return
        for c in args.concurrency:
            await settle(port, args.settle_timeout)
            report.rows.append(await measure(mode, port, workload, c, args, servers))
        if mode == "stateful" and args.memory_phase:
            await settle(port, args.settle_timeout)
            report.memory["memory_ready_mb"] = ready_mb
            report.memory.update(await memory_phase(port, server, workload, args, servers))


async def memory_phase(
    port: int, server: Spawned, workload: Workload, args: argparse.Namespace, servers: Servers
) -> dict[str, Any]:
    """`--memory-requests` stateful requests at the highest concurrency, the server's RSS
    sampled before, every 10 s, and after, and the CPU each process spent a request."""
    concurrency = max(args.concurrency)
    start_mb = tree_rss_mb(server.pid)
    print(
        f"memory phase: {args.memory_requests} stateful requests, {concurrency} clients; "
        f"Contextgate RSS {start_mb:.1f} MB",
        file=sys.stderr,
        flush=True,
    )
    progress = Progress()
    samples: list[tuple[int, float]] = [(0, round(start_mb, 1))]

    async def sample() -> None:
        step = max(1, args.memory_requests // 10)
        next_report = step
        while True:
            await asyncio.sleep(10)
            mb = tree_rss_mb(server.pid)
            samples.append((progress.done, round(mb, 1)))
            if progress.done >= next_report:
                print(f"  {progress.done} requests, RSS {mb:.1f} MB", file=sys.stderr, flush=True)
                next_report = (progress.done // step + 1) * step

    sampler = asyncio.create_task(sample())
    before = servers.cpu()
    try:
        res = await run_load(
            port,
            workload,
            concurrency,
            args.memory_requests,
            stream=args.stream,
            timeout_s=args.memory_timeout,
            progress=progress,
        )
    finally:
        sampler.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await sampler
    after = servers.cpu()
    end_mb = tree_rss_mb(server.pid)
    samples.append((res.done, round(end_mb, 1)))

    def per_request(i: int) -> float | None:
        return cpu_ms_a_request(before[i], after[i], res.done)

    behind = await embeddings_behind(port)
    return {
        "memory_start_mb": round(start_mb, 1),
        "memory_end_mb": round(end_mb, 1),
        "memory_requests": res.done,
        "memory_mode": "stateful",
        "memory_concurrency": concurrency,
        "memory_rps": round(len(res.latencies) / res.wall_s, 1) if res.wall_s else None,
        "memory_p50_ms": ms(percentile(res.latencies, 0.50)),
        "memory_p99_ms": ms(percentile(res.latencies, 0.99)),
        "memory_errors": res.errors,
        "memory_first_error": res.first_error,
        "memory_truncated": res.truncated,
        "memory_embeddings_behind": behind,
        "memory_gateway_cpu_ms": per_request(1),  # CPU ms a request, as in the rows
        "memory_db_cpu_ms": per_request(2),
        "memory_samples": samples,
    }


async def run_all(args: argparse.Namespace, tmp: Path, databases: dict[str, str | None]) -> Report:
    report = Report()
    litellm_cli: Path | None = None
    if "litellm" in args.modes:  # before any server starts: the install may take minutes
        litellm_cli, report.litellm_version = ensure_litellm(args.litellm_venv)
    with contextlib.ExitStack() as stack:
        fake, upstream_port = await start_fake(tmp, args)
        stack.callback(fake.stop)
        print(f"fake upstream on port {upstream_port}", file=sys.stderr)
        fake_only = Servers(fake.pid)
        if "direct" in args.modes:
            direct = Workload(
                upstream_port,
                {"Authorization": f"Bearer {UPSTREAM_KEY}"},
                stream=args.stream,
                history=True,
            )
            for c in args.concurrency:
                report.rows.append(
                    await measure("direct", upstream_port, direct, c, args, fake_only)
                )
        for mode in (m for m in GATEWAY_MODES if m in args.modes):
            await gateway_mode(mode, report, tmp, fake, upstream_port, args, databases[mode])
        if args.memory_phase and "memory_end_mb" not in report.memory:
            report.memory["memory_note"] = "not run: the stateful mode was not measured"
        if litellm_cli is not None:
            with contextlib.ExitStack() as lite_stack:
                server, port = await start_litellm(tmp, litellm_cli, upstream_port, args)
                lite_stack.callback(server.stop)
                workload = Workload(
                    port,
                    {"Authorization": f"Bearer {LITELLM_MASTER_KEY}"},
                    stream=args.stream,
                    history=True,
                )
                why = await probe(port, workload, args.stream)
                if why is not None:
                    report.unavailable["litellm"] = why
                    print(f"  litellm: not available ({why}); skipped", file=sys.stderr)
                else:
                    servers = Servers(fake.pid, server.pid)
                    for c in args.concurrency:
                        report.rows.append(
                            await measure("litellm", port, workload, c, args, servers)
                        )
    add_overheads(report.rows)
    return report


def add_overheads(rows: list[Row]) -> None:
    direct = {r.concurrency: r for r in rows if r.mode == "direct"}
    for r in rows:
        base = direct.get(r.concurrency)
        if base is not None:
            r.overhead_p50_ms = round(r.p50_ms - base.p50_ms, 3)
            r.overhead_p99_ms = round(r.p99_ms - base.p99_ms, 3)


# -- summary ------------------------------------------------------------------------------


def ratios(rows: Sequence[Row]) -> list[dict[str, Any]]:
    """Contextgate's overhead and throughput against LiteLLM's, per mode and concurrency."""
    lite = {r.concurrency: r for r in rows if r.mode == "litellm"}
    out = []
    for r in rows:
        other = lite.get(r.concurrency)
        if r.mode not in GATEWAY_MODES or other is None:
            continue
        over = (
            r.overhead_p50_ms / other.overhead_p50_ms
            if r.overhead_p50_ms is not None and other.overhead_p50_ms
            else None
        )
        out.append(
            {
                "mode": r.mode,
                "concurrency": r.concurrency,
                "overhead_p50_vs_litellm": round(over, 3) if over is not None else None,
                "rps_vs_litellm": round(r.rps / other.rps, 3) if other.rps else None,
            }
        )
    return out


def _target(description: str, threshold: float, value: float | None, met: bool | None) -> dict:
    return {"description": description, "threshold": threshold, "value": value, "met": met}


def targets(report: Report, low: int, high: int) -> dict[str, dict[str, Any]]:
    """The issue's targets: added latency at `low` clients (the fewest measured: the
    gateway's own cost, not the queue in front of two busy cores), throughput at `high`
    (the most: the cores are saturated), memory over the memory phase."""
    by_mode = {r.mode: r for r in report.rows if r.concurrency == high}
    out: dict[str, dict[str, Any]] = {}
    for mode, limit in (
        ("stateless", TARGET_STATELESS_P50_MS),
        ("stateful", TARGET_STATEFUL_P50_MS),
    ):
        row = next((r for r in report.rows if r.mode == mode and r.concurrency == low), None)
        value = row.overhead_p50_ms if row is not None else None
        out[f"{mode}_overhead_p50"] = _target(
            f"{mode} p50 overhead <= {limit:g} ms ({low} client{'s' * (low > 1)})",
            limit,
            value,
            None if value is None else value <= limit,
        )
    # Throughput: the memory phase's if it ran (at `high` clients too, long enough for
    # the embeddings worker's share to count), else the stateful row's.
    stateful, lite = by_mode.get("stateful"), by_mode.get("litellm")
    sustained = report.memory.get("memory_rps")
    rps = sustained if sustained else stateful.rps if stateful else None
    ratio = rps / lite.rps if rps is not None and lite and lite.rps else None
    basis = (
        f"memory phase, {report.memory.get('memory_requests', 0):,} requests"
        if sustained
        else "measured phase"
    )
    out["stateful_rps_vs_litellm"] = _target(
        f"stateful throughput ({basis}) >= LiteLLM's ({high} client{'s' * (high > 1)})",
        1.0,
        round(ratio, 3) if ratio is not None else None,
        None if ratio is None else ratio >= 1.0,
    )
    start, end = report.memory.get("memory_start_mb"), report.memory.get("memory_end_mb")
    growth = (end - start) / start if start and end is not None else None
    out["memory_growth"] = _target(
        f"Contextgate RSS growth < {TARGET_MEMORY_GROWTH:.0%} over "
        f"{report.memory.get('memory_requests', 0):,} stateful requests",
        TARGET_MEMORY_GROWTH,
        round(growth, 4) if growth is not None else None,
        None if growth is None else growth < TARGET_MEMORY_GROWTH,
    )
    return out


def _num(value: float | None, fmt: str) -> str:
    return (
        "-"
        if value is None or (isinstance(value, float) and math.isnan(value))
        else format(value, fmt)
    )


def render(report: Report, ratio_rows: Sequence[dict[str, Any]], goals: dict[str, Any]) -> str:
    lines = [
        f"{'mode':<10}{'clients':>8}{'rps':>9}{'p50 ms':>9}{'p99 ms':>9}{'+p50 ms':>9}"
        f"{'+p99 ms':>9}{'gw cpu':>8}{'db cpu':>8}{'up cpu':>8}{'gen cpu':>8}{'rss MB':>8}"
        f"{'errors':>7}",
    ]
    for r in report.rows:
        lines.append(
            f"{r.mode:<10}{r.concurrency:>8}{r.rps:>9.1f}{r.p50_ms:>9.2f}{r.p99_ms:>9.2f}"
            f"{_num(r.overhead_p50_ms, '.2f'):>9}{_num(r.overhead_p99_ms, '.2f'):>9}"
            f"{_num(r.gateway_cpu_ms, '.2f'):>8}{_num(r.db_cpu_ms, '.2f'):>8}"
            f"{r.upstream_cpu_ms:>8.2f}{r.loadgen_cpu_ms:>8.2f}{_num(r.server_rss_mb, '.0f'):>8}"
            f"{r.errors:>7}" + ("  (time limit)" if r.truncated else "")
        )
    lines.append("(+p50/+p99: added to direct's; cpu: CPU ms per request of the gateway, its")
    lines.append(" PostgreSQL, the fake upstream and this load generator; rss: the gateway's)")
    if any(r.ttfb_p50_ms is not None for r in report.rows):
        lines.append("")
        lines += [
            f"{r.mode:<10}{r.concurrency:>8}  time to first event p50 {r.ttfb_p50_ms:.2f} ms"
            for r in report.rows
            if r.ttfb_p50_ms is not None
        ]
    behind = [
        f"{r.mode} {r.concurrency}: {_behind(r.embeddings_behind)}"
        for r in report.rows
        if r.embeddings_behind is not None
    ]
    if behind:
        lines.append("events the embeddings worker had yet to embed at the end (work the rps")
        lines.append("leaves out): " + ", ".join(behind))
    for mode, why in report.unavailable.items():
        lines.append(f"{mode}: not measured: {why}")
    if ratio_rows:
        lines.append("")
        lines.append(f"{'vs LiteLLM':<10}{'clients':>8}{'overhead p50':>14}{'throughput':>12}")
        for x in ratio_rows:
            over = _num(x["overhead_p50_vs_litellm"], ".2f")
            rps = _num(x["rps_vs_litellm"], ".2f")
            lines.append(f"{x['mode']:<10}{x['concurrency']:>8}{over + ' x':>14}{rps + ' x':>12}")
    mem = report.memory
    if "memory_end_mb" in mem:
        lines.append("")
        lines.append(
            f"memory (Contextgate, stateful, {mem['memory_concurrency']} clients): "
            f"{mem['memory_ready_mb']:.1f} MB when ready, {mem['memory_start_mb']:.1f} MB "
            f"after warm-up, {mem['memory_end_mb']:.1f} MB after {mem['memory_requests']:,} "
            f"requests ({mem['memory_rps']} rps, p50 {mem['memory_p50_ms']:.2f} ms, "
            f"p99 {mem['memory_p99_ms']:.2f} ms, {mem['memory_errors']} errors; "
            f"CPU a request: gateway {_num(mem.get('memory_gateway_cpu_ms'), '.2f')} ms, "
            f"PostgreSQL {_num(mem.get('memory_db_cpu_ms'), '.2f')} ms; embeddings "
            f"{_behind(mem['memory_embeddings_behind'])} events behind at the end)"
        )
    elif "memory_note" in mem:
        lines.append("")
        lines.append(f"memory phase {mem['memory_note']}")
    lines.append("")
    for name, goal in goals.items():
        value = goal["value"]
        if value is None:
            shown, verdict = "-", "NOT MEASURED"
        else:
            unit = {"memory_growth": "", "stateful_rps_vs_litellm": " x"}.get(name, " ms")
            shown = f"{value:+.1%}" if name == "memory_growth" else f"{value:.2f}{unit}"
            verdict = "MET" if goal["met"] else "NOT MET"
        lines.append(f"target: {goal['description']}: {shown} -> {verdict}")
    return "\n".join(lines)


# -- command line -------------------------------------------------------------------------


def _int_list(text: str) -> list[int]:
    try:
        values = [int(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected integers separated by commas: {text!r}"
        ) from None
    if not values or min(values) < 1:
        raise argparse.ArgumentTypeError("each value must be at least 1")
    return values


def _modes(text: str) -> list[str]:
    modes = [m.strip() for m in text.split(",") if m.strip()]
    unknown = sorted(set(modes) - set(MODES))
    if unknown or not modes:
        raise argparse.ArgumentTypeError(f"modes are some of {', '.join(MODES)}; got {text!r}")
    return [m for m in MODES if m in modes]


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    p.add_argument("--json", metavar="PATH", type=Path, help="also write the results as JSON")
    p.add_argument(
        "--concurrency",
        type=_int_list,
        default=_int_list(DEFAULT_CONCURRENCY),
        metavar="N[,N...]",
        help="concurrent clients; each value is a measurement; latency targets are read at "
        f"the fewest, throughput at the most (default {DEFAULT_CONCURRENCY})",
    )
    p.add_argument(
        "--requests",
        type=int,
        default=DEFAULT_REQUESTS,
        help=f"measured requests per mode and concurrency (default {DEFAULT_REQUESTS})",
    )
    p.add_argument(
        "--warmup",
        type=int,
        default=DEFAULT_WARMUP,
        help=f"untimed requests before each measurement (default {DEFAULT_WARMUP})",
    )
    p.add_argument(
        "--workers",
        type=int,
        default=1,
        help="worker processes of both gateways (CONTEXTGATE_WORKERS, litellm --num_workers)",
    )
    p.add_argument("--stream", action="store_true", help="streaming requests (SSE)")
    p.add_argument(
        "--session-turns",
        type=int,
        default=0,
        metavar="N",
        help="stateful: each client opens a new session every N requests (default 0: one "
        "session a client for the whole run, which grows to thousands of turns and retrieves "
        "on every call; the targets are read on that)",
    )
    p.add_argument(
        "--modes",
        type=_modes,
        default=list(MODES),
        help=f"which modes to run (default {','.join(MODES)})",
    )
    p.add_argument("--skip-litellm", action="store_true", help="leave out the litellm mode")
    p.add_argument(
        "--litellm-venv",
        type=Path,
        default=DEFAULT_LITELLM_VENV,
        help="LiteLLM's virtualenv, created with pip install 'litellm[proxy]' if missing "
        "(default ops/bench/.litellm-venv)",
    )
    p.add_argument(
        "--litellm-config",
        type=Path,
        default=DEFAULT_LITELLM_CONFIG,
        help="LiteLLM's proxy config (default ops/bench/litellm_config.yaml)",
    )
    p.add_argument(
        "--memory-phase",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="after the stateful mode, measure Contextgate's RSS before and after "
        "--memory-requests more stateful requests (default on)",
    )
    p.add_argument(
        "--memory-requests",
        type=int,
        default=DEFAULT_MEMORY_REQUESTS,
        help=f"requests of the memory phase (default {DEFAULT_MEMORY_REQUESTS:,})",
    )
    p.add_argument(
        "--upstream-latency-ms",
        type=float,
        default=0.0,
        help="the fake upstream waits this long before each answer (default 0)",
    )
    p.add_argument(
        "--upstream-workers", type=int, default=1, help="the fake upstream's processes (default 1)"
    )
    p.add_argument(
        "--mode-timeout",
        type=float,
        default=DEFAULT_MODE_TIMEOUT,
        help=f"seconds after which a measured phase stops (default {DEFAULT_MODE_TIMEOUT:g})",
    )
    p.add_argument(
        "--memory-timeout",
        type=float,
        default=DEFAULT_MEMORY_TIMEOUT,
        help=f"seconds after which the memory phase stops (default {DEFAULT_MEMORY_TIMEOUT:g})",
    )
    p.add_argument(
        "--settle-timeout",
        type=float,
        default=DEFAULT_SETTLE_TIMEOUT,
        help="seconds to wait for Contextgate's embeddings worker to catch up before each "
        f"Contextgate phase (default {DEFAULT_SETTLE_TIMEOUT:g})",
    )
    p.add_argument(
        "--database-url",
        default=None,
        help="a PostgreSQL server (with pgvector) whose role may create databases: the "
        "server gets a fresh database there; default: its own embedded PostgreSQL in a "
        "temporary folder",
    )
    p.add_argument(
        "--loop",
        choices=["uvloop", "asyncio"],
        default="uvloop",
        help="the load generator's event loop (default uvloop)",
    )
    args = p.parse_args(argv)
    if args.skip_litellm:
        args.modes = [m for m in args.modes if m != "litellm"]
    for name in ("requests", "workers", "memory_requests", "upstream_workers"):
        if getattr(args, name) < 1:
            p.error(f"--{name.replace('_', '-')} must be at least 1")
    if args.warmup < 0 or args.upstream_latency_ms < 0 or args.session_turns < 0:
        p.error("--warmup, --upstream-latency-ms and --session-turns must not be negative")
    if "litellm" in args.modes and not args.litellm_config.exists():
        p.error(f"--litellm-config {args.litellm_config} does not exist")
    args.litellm_venv = args.litellm_venv.resolve()
    args.litellm_config = args.litellm_config.resolve()
    return args


@contextlib.contextmanager
def databases(url: str | None, modes: Sequence[str]) -> Iterator[dict[str, str | None]]:
    """A fresh migrated database on --database-url for each Contextgate mode, dropped
    afterwards; without the option, None (each server starts an embedded PostgreSQL)."""
    with contextlib.ExitStack() as stack:
        found: dict[str, str | None] = {}
        for mode in GATEWAY_MODES:
            if url and mode in modes:
                from ops.bench.benchdb import fresh_database

                found[mode] = stack.enter_context(fresh_database(url, prefix="bench_proxy"))
            else:
                found[mode] = None
        yield found


def run_loop(coro: Any, loop: str) -> Any:
    if loop == "uvloop":
        import uvloop

        return uvloop.run(coro)
    return asyncio.run(coro)


async def _main_task(args: argparse.Namespace, tmp: Path, dbs: dict[str, str | None]) -> Report:
    task = asyncio.current_task()
    if task is not None:  # SIGTERM stops the run as Ctrl-C does: every server is stopped
        asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, task.cancel)
    return await run_all(args, tmp, dbs)


def machine() -> dict[str, Any]:
    """What the figures were measured on, for comparing runs across machines (these
    sandboxes vary: the same code gave 2x apart figures on an AVX-512 Xeon and an AVX2
    EPYC). `python_loop_ms`: the best of 5 pure-Python loops of a million additions,
    taken before any server starts; `vector_isa`: what the int8 query model can use."""
    model, flags = "unknown", set[str]()
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            name, _, value = line.partition(":")
            if name.strip() == "model name" and model == "unknown":
                model = value.strip()
            elif name.strip() == "flags" and not flags:
                flags = set(value.split())
    isa = next((f for f in ("avx512_vnni", "avx_vnni", "avx512f", "avx2") if f in flags), "other")

    def loop() -> float:
        started, total = time.perf_counter(), 0
        for i in range(1_000_000):
            total += i
        return (time.perf_counter() - started) * 1000

    return {
        "cpu_model": model,
        "cpu_count": os.cpu_count(),
        "vector_isa": isa,
        "python_loop_ms": round(min(loop() for _ in range(5)), 1),
    }


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    host = machine()  # before any server starts, so that nothing else runs
    started = time.perf_counter()
    tmp = Path(tempfile.mkdtemp(prefix="contextgate-bench-proxy-"))
    try:
        with databases(args.database_url, args.modes) as dbs:
            report = run_loop(_main_task(args, tmp, dbs), args.loop)
    except (KeyboardInterrupt, asyncio.CancelledError):
        print("interrupted; every server this run started is stopped", file=sys.stderr)
        return 130
    except (RuntimeError, subprocess.CalledProcessError) as exc:
        print(f"proxy_overhead: {exc}", file=sys.stderr)
        return 1
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    elapsed = time.perf_counter() - started
    ratio_rows = ratios(report.rows)
    goals = targets(report, min(args.concurrency), max(args.concurrency))
    print()
    print(render(report, ratio_rows, goals))
    print(
        f"\n{args.requests} requests per mode and concurrency after {args.warmup} of warm-up, "
        f"{args.workers} worker(s) per gateway, upstream latency {args.upstream_latency_ms:g} ms"
        + (
            f", a new stateful session every {args.session_turns} requests"
            if args.session_turns
            else ""
        )
        + (f", LiteLLM {report.litellm_version}" if report.litellm_version else "")
        + f"; {elapsed:.0f}s in all"
    )
    print(
        f"machine: {host['cpu_model']}, {host['cpu_count']} CPUs, {host['vector_isa']}; a "
        f"pure-Python loop of 10^6 additions: {host['python_loop_ms']:g} ms"
    )
    if args.json is not None:
        out = {
            "benchmark": "proxy_overhead",
            "config": {
                "concurrency": args.concurrency,
                "requests": args.requests,
                "warmup": args.warmup,
                "workers": args.workers,
                "stream": args.stream,
                "session_turns": args.session_turns,
                "modes": args.modes,
                "upstream_latency_ms": args.upstream_latency_ms,
                "upstream_workers": args.upstream_workers,
                "memory_phase": args.memory_phase,
                "loop": args.loop,
                "litellm_version": report.litellm_version,
                "cpu_count": os.cpu_count(),
                "machine": host,
                "recorded_at": datetime.now(UTC).isoformat(),
            },
            "results": [asdict(r) for r in report.rows],
            "ratios": ratio_rows,
            "memory_start_mb": report.memory.get("memory_start_mb"),
            "memory_end_mb": report.memory.get("memory_end_mb"),
            **{
                k: v
                for k, v in report.memory.items()
                if k not in ("memory_start_mb", "memory_end_mb")
            },
            "unavailable": report.unavailable,
            "targets": goals,
        }
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(out, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
