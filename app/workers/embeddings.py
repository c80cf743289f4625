"""The embeddings projection: a catch-up worker that follows the log and writes one
`turn_embeddings` row (vector and full-text terms) per message turn.

- It reads the log after its checkpoint (`projection_checkpoints`, name 'embeddings') in
  (transaction_id, global_position) order, below the oldest running transaction (the
  xid8 rule of PgEventStore.read_all), so an event that commits late is never skipped.
- The model runs outside any transaction; then the rows and the new checkpoint are
  written in one short transaction. The checkpoint moves by compare-and-set from the
  position the rows were read at: a second worker, or a rebuild, that moved it meanwhile
  makes this batch roll back and start again from the stored checkpoint. Rows are
  inserted with ON CONFLICT DO NOTHING, so nothing is written twice either way.
- One replica works at a time (a session advisory lock on the worker's own connection);
  the others wait to take over. It is woken by LISTEN on `contextgate_events` (see
  adapters/postgres/notifier.py) and polls every `poll_interval` seconds regardless.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import asyncpg
from pgvector import Vector
from pgvector.asyncpg import register_vector

from adapters.postgres.database import Database
from adapters.postgres.notifier import CHANNEL
from app.workers.young_tables import LOG_GROWTH, YoungTable
from domain.events import MESSAGE_ROLES, Checkpoint

log = logging.getLogger("contextgate.embeddings")

NAME = "embeddings"
LOCK_ID = 0x43475F454D42  # "CG_EMB": one embeddings worker among the replicas
# to_tsvector fails past 1 MB of tsvector; a message's first 200k characters are indexed.
MAX_TEXT_CHARS = 200_000
# The model reads 256 word pieces at most; do not tokenize megabytes to throw them away.
MAX_EMBED_CHARS = 8_192
# lag() counts at most this many events behind (an index-only scan, bounded).
LAG_COUNT_CAP = 100_000

_MESSAGE_TYPES = list(MESSAGE_ROLES)

# The xid8 rule: events of transactions that may still commit wait for a later read.
READ = r"""SELECT transaction_id::text::bigint AS transaction_id, global_position, tenant_id,
        stream_id, stream_version,
        CASE WHEN type = ANY($4::text[]) AND stream_id LIKE 'session:%'
                  AND ($6 OR stream_id NOT LIKE 'session:call\_%')
             THEN left(data->>'content', $5) END AS content
    FROM events
    WHERE (transaction_id, global_position) > ($1::text::xid8, $2)
      AND transaction_id < pg_snapshot_xmin(pg_current_snapshot())
    ORDER BY transaction_id, global_position
    LIMIT $3"""

ENSURE_CHECKPOINT = """INSERT INTO projection_checkpoints (name, transaction_id, global_position)
    VALUES ($1, '0', 0) ON CONFLICT DO NOTHING"""
READ_CHECKPOINT = """SELECT transaction_id::text::bigint AS transaction_id, global_position
    FROM projection_checkpoints WHERE name = $1"""
MOVE_CHECKPOINT = """UPDATE projection_checkpoints
    SET transaction_id = $4::text::xid8, global_position = $5, updated_at = now()
    WHERE name = $1 AND transaction_id = $2::text::xid8 AND global_position = $3"""
# The checkpoint row first: its lock orders a rebuild against a worker's batch (which
# locks the row before inserting), so the two cannot deadlock.
RESET_CHECKPOINT = """INSERT INTO projection_checkpoints (name, transaction_id, global_position)
    VALUES ($1, '0', 0)
    ON CONFLICT (name) DO UPDATE SET transaction_id = '0', global_position = 0,
                                     updated_at = now()"""

# seq comes from the turn_rows row of the event. turn_rows has no index on the event's
# position (one would cost every append an index insert), but seq and stream_version
# rise together within a session: start from the last embedded turn before this one
# (a backward scan of the primary key) and walk forward to the event's stream_version.
# The walk covers the turns since then: the worker's lag, not the session's length.
INSERT = """INSERT INTO turn_embeddings (tenant_id, session_id, seq, stream_version,
        global_position, created_at, user_id, role, embedding, tsv)
    SELECT b.tenant_id, b.session_id, t.seq, t.stream_version, t.global_position,
           t.created_at, s.user_id, t.role, b.embedding, to_tsvector('english', b.content)
    FROM unnest($1::text[], $2::text[], $3::integer[], $4::text[], $5::vector[])
             AS b(tenant_id, session_id, stream_version, content, embedding)
    LEFT JOIN LATERAL (
        SELECT e.seq FROM turn_embeddings e
        WHERE e.tenant_id = b.tenant_id AND e.session_id = b.session_id
          AND e.stream_version < b.stream_version
        ORDER BY e.seq DESC LIMIT 1
    ) lo ON true
    JOIN LATERAL (
        SELECT t.seq, t.stream_version, t.global_position, t.created_at, t.role
        FROM turn_rows t
        WHERE t.tenant_id = b.tenant_id AND t.session_id = b.session_id
          AND t.seq > coalesce(lo.seq, 0) AND t.stream_version = b.stream_version
        ORDER BY t.seq LIMIT 1
    ) t ON true
    LEFT JOIN sessions s ON s.tenant_id = b.tenant_id AND s.session_id = b.session_id
    ON CONFLICT DO NOTHING"""

LAG = f"""SELECT
    (SELECT count(*) FROM (
        SELECT 1 FROM events
        WHERE (transaction_id, global_position) > ($1::text::xid8, $2)
        LIMIT {LAG_COUNT_CAP}) behind) AS events,
    (SELECT extract(epoch FROM now() - recorded_at) FROM events
        WHERE (transaction_id, global_position) > ($1::text::xid8, $2)
        ORDER BY transaction_id, global_position LIMIT 1) AS seconds"""

TRY_LOCK = "SELECT pg_try_advisory_lock($1)"
DEFER_CHECK_S = 0.05  # how often a worker that gives way looks at the load again

# The tables whose statistics the worker keeps while they are young (see
# app/workers/young_tables.py): the one it writes, which retrieval plans from, and the
# log's, which every append's projection plans from. It sees both grow: the rows it
# writes, and the events it reads.
EMBEDDINGS_TABLE = ("turn_embeddings",)
LOG_TABLES = ("events", "sessions", "turn_rows")


class Embedder(Protocol):
    """What the worker needs of adapters.embedder.AsyncEmbedder."""

    async def embed(self, texts: Sequence[str]) -> list[list[float]]: ...


@dataclass(frozen=True)
class ProjectionLag:
    """How far the projection trails the log: `events` committed after its checkpoint
    (counted up to LAG_COUNT_CAP) and the age in seconds of the oldest of them."""

    events: int
    seconds: float
    checkpoint: Checkpoint


class _Moved(Exception):
    """The checkpoint moved under this batch (another worker, or a rebuild)."""


class EmbeddingsWorker:
    def __init__(
        self,
        db: Database,
        embedder: Embedder,
        *,
        batch_size: int = 64,
        poll_interval: float = 1.0,
        lag_log_interval: float = 60.0,
        channel: str = CHANNEL,
        embed_stateless: bool = False,
        linger: float = 0.0,
        yield_to: Callable[[], bool] | None = None,
        max_defer: float = 10.0,
    ) -> None:
        self.db = db
        self.embedder = embedder
        # A stateless proxy call is recorded as a one-call session (`call_...`) holding
        # the whole conversation the client sent, again at every call: embedding those
        # would embed each conversation once per turn (quadratic, and the model is the
        # scarcest CPU here). They stay in the log; search reaches sessions.
        self.embed_stateless = embed_stateless
        self.batch_size = batch_size
        # Woken by new turns, wait this long before reading them, so the turns of the
        # calls that follow join the same batch: the model embeds a batch of 8 short
        # texts for ~25% less CPU a text than one at a time, the batch is one
        # transaction, and a busy proxy's calls are not each chased by a model run. Not
        # when behind (the last read filled a batch): then it reads on at once. Turns
        # this new are in every window's recent turns anyway, not yet retrieval's.
        self.linger = linger
        # While `yield_to()` says the process is busy (app/services/load.CallLoad), the
        # worker waits between batches, but embeds one at least every `max_defer`
        # seconds. Turns that wait are in every window's recent turns for a while, and
        # under such a load the worker fell behind regardless.
        self.yield_to = yield_to
        self.max_defer = max_defer
        self.deferrals = 0  # batches that waited for the load to drop (for metrics)
        self._last_batch = time.monotonic()
        self._behind = False
        self.poll_interval = poll_interval
        self.lag_log_interval = lag_log_interval
        self.channel = channel
        self.embedded = 0  # message events embedded by this worker (for metrics)
        self.embeddings_table = YoungTable(EMBEDDINGS_TABLE)
        self.log_tables = YoungTable(LOG_TABLES, LOG_GROWTH)
        self._conn: Any = None
        self._conn_lock = asyncio.Lock()
        self._leader = False
        self._wake = asyncio.Event()  # a notification, a rebuild, or stop()
        self._stopped = asyncio.Event()
        self._stopping = False
        self._task: asyncio.Task[None] | None = None
        self._last_lag_log = 0.0

    # --- lifecycle --------------------------------------------------------------------

    def start(self) -> None:
        if self._task is None:
            self._stopping = False
            self._stopped.clear()
            self._task = asyncio.create_task(self._run(), name="contextgate-embeddings")

    async def stop(self, grace: float = 10.0) -> None:
        """Stop after the batch in flight (cancelled after `grace` s: it rolls back, and
        the next start does it again)."""
        self._stopping = True
        self._stopped.set()
        self._wake.set()
        task, self._task = self._task, None
        if task is not None:
            try:
                await asyncio.wait_for(task, grace)
            except TimeoutError:
                log.warning("embeddings worker did not stop in %.0f s; cancelled", grace)
        async with self._conn_lock:
            await self._drop()
        self._stopping = False  # catch_up() may still be called directly

    def wake(self) -> None:
        self._wake.set()

    async def _run(self) -> None:
        backoff = 1.0
        while not self._stopping:
            try:
                async with self._conn_lock:
                    conn = await self._connection()
                    if not self._leader:
                        self._leader = bool(await conn.fetchval(TRY_LOCK, LOCK_ID))
                        if self._leader:
                            log.info("this replica now runs the embeddings projection")
                    if self._leader:
                        self._wake.clear()  # a notification from now on means run again
                        self._behind = await self._catch_up(conn, yielding=True) >= self.batch_size
                        await self._maybe_analyze(conn)
                        await self._log_lag(conn)
                backoff = 1.0
                if self._leader:
                    await self._sleep(self.poll_interval)
                    if self.linger > 0 and self._wake.is_set() and not self._behind:
                        await self._pause(self.linger)
                else:  # a standby retries the lock now and then, deaf to notifications
                    await self._pause(5 * self.poll_interval)
            except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
                log.warning("embeddings worker: %s; retrying in %.0f s", exc, backoff)
                async with self._conn_lock:
                    await self._drop()
                await self._pause(backoff)
                backoff = min(backoff * 2, 30.0)
            except Exception:
                # The model failed (never expected): keep the checkpoint, try again later.
                log.exception("embeddings worker failed; retrying in %.0f s", backoff)
                await self._pause(backoff)
                backoff = min(backoff * 2, 30.0)

    async def _sleep(self, seconds: float) -> None:
        """Until woken (or stopped), at most `seconds`."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._wake.wait(), seconds)

    async def _pause(self, seconds: float) -> None:
        """`seconds`, unless stopped."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._stopped.wait(), seconds)

    async def _connection(self) -> Any:
        """The worker's own connection: LISTEN, the session advisory lock and the vector
        codec are session state, which pooled connections must not carry (database.py)."""
        if self._conn is not None and not self._conn.is_closed():
            return self._conn
        self._conn = None
        self._leader = False
        settings = {"application_name": "contextgate-embeddings", "jit": "off"}
        if self.db.role:
            settings["role"] = self.db.role
        conn = await asyncpg.connect(self.db.url, server_settings=settings)
        try:
            await register_vector(conn)
            await conn.add_listener(self.channel, self._on_notify)
        except BaseException:
            conn.terminate()
            raise
        self._conn = conn
        return conn

    def _on_notify(self, conn: Any, pid: int, channel: str, payload: str) -> None:
        self._wake.set()

    async def _drop(self) -> None:
        conn, self._conn = self._conn, None
        self._leader = False  # the lock goes with the connection
        if conn is not None and not conn.is_closed():
            try:
                await asyncio.wait_for(conn.close(), 2.0)
            except (TimeoutError, OSError, asyncpg.PostgresError, asyncpg.InterfaceError):
                conn.terminate()

    # --- the projection ---------------------------------------------------------------

    async def catch_up(self) -> int:
        """Project everything readable now; returns the message events embedded. Safe
        alongside another worker (compare-and-set), though only one should run."""
        async with self._conn_lock:
            return await self._catch_up(await self._connection())

    async def _catch_up(self, conn: Any, *, yielding: bool = False) -> int:
        embedded = 0
        checkpoint = await _read_checkpoint(conn)
        while not self._stopping:
            rows = await conn.fetch(
                READ,
                str(checkpoint.transaction_id),
                checkpoint.global_position,
                self.batch_size * 4,
                _MESSAGE_TYPES,
                MAX_TEXT_CHARS,
                self.embed_stateless,
            )
            if not rows:
                break
            self.log_tables.grew(len(rows))
            try:
                for last, messages in _batches(rows, self.batch_size):
                    if yielding and messages:
                        await self._give_way()
                        if self._stopping:
                            break
                    target = Checkpoint(last["transaction_id"], last["global_position"])
                    await self._apply(conn, checkpoint, target, messages)
                    self._last_batch = time.monotonic()
                    embedded += len(messages)
                    checkpoint = target
            except _Moved:
                checkpoint = await _read_checkpoint(conn)
                log.info("embeddings checkpoint moved (rebuild or another worker); resuming")
                continue
            if len(rows) < self.batch_size * 4:
                break
        self.embedded += embedded
        self.embeddings_table.grew(embedded)
        return embedded

    async def _give_way(self) -> None:
        """Wait while the process is busy, up to `max_defer` since the last batch."""
        if self.yield_to is None:
            return
        waiting = False
        while not self._stopping and self.yield_to():
            if time.monotonic() - self._last_batch >= self.max_defer:
                return
            if not waiting:  # counted once a batch does wait
                waiting = True
                self.deferrals += 1
            await self._pause(DEFER_CHECK_S)

    @property
    def analyzed(self) -> int:
        """ANALYZEs of turn_embeddings this worker ran."""
        return self.embeddings_table.runs

    async def _maybe_analyze(self, conn: Any) -> None:
        """ANALYZE young tables that grew enough since their last statistics. The log's
        first: every append plans from them. turn_embeddings not while behind: the next
        batches come first."""
        await self.log_tables.maybe_analyze(conn)
        if not self._behind:
            await self.embeddings_table.maybe_analyze(conn)

    async def _apply(
        self, conn: Any, start: Checkpoint, target: Checkpoint, messages: list[Any]
    ) -> None:
        vectors: list[list[float]] = []
        if messages:
            vectors = await self.embedder.embed([m["content"][:MAX_EMBED_CHARS] for m in messages])
        async with conn.transaction():
            status = await conn.execute(
                MOVE_CHECKPOINT,
                NAME,
                str(start.transaction_id),
                start.global_position,
                str(target.transaction_id),
                target.global_position,
            )
            if status != "UPDATE 1":
                raise _Moved
            if messages:
                await conn.execute(
                    INSERT,
                    [m["tenant_id"] for m in messages],
                    [m["stream_id"][len("session:") :] for m in messages],
                    [m["stream_version"] for m in messages],
                    [m["content"] for m in messages],
                    [Vector(v) for v in vectors],  # not nested lists: that is a 2-D array
                )
        log.debug("embedded %d turns up to %s", len(messages), target)

    async def rebuild(self) -> None:
        """Empty the projection and start again from the beginning of the log."""
        async with self.db.transaction() as conn:
            await conn.execute(RESET_CHECKPOINT, NAME)
            await conn.execute("TRUNCATE turn_embeddings")
        log.info("embeddings projection reset; rebuilding from the start of the log")
        self._wake.set()

    async def lag(self) -> ProjectionLag:
        """How far behind the log the projection is (on a pooled connection: for an API)."""
        async with self.db.connection() as conn:
            return await _lag(conn)

    async def _log_lag(self, conn: Any) -> None:
        now = time.monotonic()
        if now - self._last_lag_log < self.lag_log_interval:
            return
        self._last_lag_log = now
        lag = await _lag(conn)
        log.info(
            "embeddings projection lag: %d events, %.1f s (%d embedded since start)",
            lag.events, lag.seconds, self.embedded,
        )  # fmt: skip


def _batches(rows: Sequence[Any], size: int) -> list[tuple[Any, list[Any]]]:
    """Split read rows into runs of at most `size` messages; each run ends just before the
    next message, so its last row (message or not) is where the checkpoint moves to."""
    out: list[tuple[Any, list[Any]]] = []
    messages: list[Any] = []
    for i, row in enumerate(rows):
        if _is_message(row):
            messages.append(row)
        following = rows[i + 1] if i + 1 < len(rows) else None
        if following is None or (len(messages) >= size and _is_message(following)):
            out.append((row, messages))
            messages = []
    return out


def _is_message(row: Any) -> bool:
    content = row["content"]
    return content is not None and not content.isspace() and content != ""


async def _read_checkpoint(conn: Any, *, create: bool = True) -> Checkpoint:
    row = await conn.fetchrow(READ_CHECKPOINT, NAME)
    if row is None:
        if create:  # the compare-and-set needs a row to compare with
            await conn.execute(ENSURE_CHECKPOINT, NAME)
        return Checkpoint()
    return Checkpoint(row["transaction_id"], row["global_position"])


async def _lag(conn: Any) -> ProjectionLag:
    checkpoint = await _read_checkpoint(conn, create=False)
    row = await conn.fetchrow(LAG, str(checkpoint.transaction_id), checkpoint.global_position)
    seconds = float(row["seconds"]) if row["seconds"] is not None else 0.0
    return ProjectionLag(int(row["events"]), max(0.0, seconds), checkpoint)
