"""The event store on PostgreSQL: append with expected version and idempotency keys,
per-stream hash chain, stream reads and gap-free reads of the whole log.

`PgEventStore` works on one connection inside the caller's transaction (a use case
that also writes projections); `PostgresEventStore` takes a pooled connection and a
transaction of its own per call. Both implement domain.ports.EventStore.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from adapters.postgres.database import Connection, Database
from domain.errors import IdempotencyKeyReused, ValidationError, WrongExpectedVersion
from domain.events import AppendResult, Checkpoint, NewEvent, RecordedEvent
from domain.hashing import GENESIS_HASH, canonical_json, event_hash, fingerprint, normalize_json

EVENT_COLUMNS = """global_position, transaction_id::text::bigint AS transaction_id, event_id,
    tenant_id, stream_id, stream_version, type, schema_version, data, metadata, recorded_at,
    prev_hash, hash"""

LOCK_STREAM = """SELECT version, head_hash FROM streams
    WHERE tenant_id = $1 AND stream_id = $2 FOR UPDATE"""
CREATE_STREAM = """INSERT INTO streams (tenant_id, stream_id, version, head_hash)
    VALUES ($1, $2, 0, $3) ON CONFLICT DO NOTHING"""
STREAM_VERSION = "SELECT version FROM streams WHERE tenant_id = $1 AND stream_id = $2"
FIND_KEY = """SELECT stream_id, fingerprint, first_version, last_version
    FROM idempotency_keys WHERE tenant_id = $1 AND idem_key = $2"""

_INSERT_ROWS = """INSERT INTO events (event_id, tenant_id, stream_id, stream_version, type,
        schema_version, data, metadata, recorded_at, prev_hash, hash)
    SELECT e.event_id, $1, $2, e.v, e.type, e.sv, e.data::jsonb, e.meta::jsonb, $3, e.prev, e.h
    FROM unnest($4::uuid[], $5::int[], $6::text[], $7::int2[], $8::text[], $9::text[],
                $10::bytea[], $11::bytea[]) AS e(event_id, v, type, sv, data, meta, prev, h)
    {guard}
    ORDER BY e.v
    RETURNING global_position, transaction_id, stream_version"""

# One round trip writes the events and moves the stream head.
APPEND = f"""WITH ins AS ({_INSERT_ROWS.format(guard="")}),
    head AS (UPDATE streams SET version = $12, head_hash = $13
             WHERE tenant_id = $1 AND stream_id = $2)
SELECT global_position, transaction_id::text::bigint FROM ins ORDER BY stream_version"""

# The same, claiming an idempotency key first: if the key exists (another stream used it
# concurrently) nothing is written and no row comes back.
APPEND_WITH_KEY = f"""WITH idem AS (
        INSERT INTO idempotency_keys (tenant_id, idem_key, stream_id, fingerprint,
                                      first_version, last_version)
        VALUES ($1, $14, $2, $15, $16, $12) ON CONFLICT DO NOTHING RETURNING 1),
    ins AS ({_INSERT_ROWS.format(guard="WHERE EXISTS (SELECT 1 FROM idem)")}),
    head AS (UPDATE streams SET version = $12, head_hash = $13
             WHERE tenant_id = $1 AND stream_id = $2 AND EXISTS (SELECT 1 FROM idem))
SELECT global_position, transaction_id::text::bigint FROM ins ORDER BY stream_version"""

READ_STREAM = f"""SELECT {EVENT_COLUMNS} FROM events
    WHERE tenant_id = $1 AND stream_id = $2 AND stream_version > $3
    ORDER BY stream_version LIMIT $4"""
READ_STREAM_RANGE = f"""SELECT {EVENT_COLUMNS} FROM events
    WHERE tenant_id = $1 AND stream_id = $2 AND stream_version BETWEEN $3 AND $4
    ORDER BY stream_version"""

# Events of transactions that may still commit are held back (xid8 technique): anything
# at or above the oldest running transaction's id waits for the next read.
_READ_ALL = f"""SELECT {EVENT_COLUMNS} FROM events
    WHERE (transaction_id, global_position) > ($1::text::xid8, $2)
      AND transaction_id < pg_snapshot_xmin(pg_current_snapshot()) {{tenant}}
    ORDER BY transaction_id, global_position LIMIT $3"""
READ_ALL = _READ_ALL.format(tenant="")
READ_ALL_TENANT = _READ_ALL.format(tenant="AND tenant_id = $4")

MAX_KEY_LENGTH = 200


def record_from_row(row: Any) -> RecordedEvent:
    data = row["data"]
    metadata = row["metadata"]
    return RecordedEvent(
        global_position=row["global_position"],
        transaction_id=row["transaction_id"],
        event_id=row["event_id"],
        tenant_id=row["tenant_id"],
        stream_id=row["stream_id"],
        stream_version=row["stream_version"],
        type=row["type"],
        schema_version=row["schema_version"],
        data=json.loads(data) if isinstance(data, str) else data,
        metadata=json.loads(metadata) if isinstance(metadata, str) else metadata,
        recorded_at=row["recorded_at"],
        prev_hash=bytes(row["prev_hash"]),
        hash=bytes(row["hash"]),
    )


def _fingerprint(stream_id: str, events: Sequence[NewEvent]) -> bytes:
    return fingerprint(stream_id, [(e.type, e.schema_version, e.data) for e in events])


class PgEventStore:
    """The event store on one connection, inside the caller's transaction."""

    def __init__(self, conn: Connection) -> None:
        self.conn = conn

    async def append(
        self,
        tenant_id: str,
        stream_id: str,
        events: Sequence[NewEvent],
        *,
        expected_version: int | None = None,
        idempotency_key: str | None = None,
        recorded_at: datetime | None = None,
    ) -> AppendResult:
        if not events:
            raise ValidationError("an append needs at least one event", "events")
        if idempotency_key is not None and not 0 < len(idempotency_key) <= MAX_KEY_LENGTH:
            raise ValidationError(
                f"Idempotency-Key must be 1-{MAX_KEY_LENGTH} characters", "Idempotency-Key"
            )
        conn = self.conn
        head = await conn.fetchrow(LOCK_STREAM, tenant_id, stream_id)
        if head is None:
            await conn.execute(CREATE_STREAM, tenant_id, stream_id, GENESIS_HASH)
            head = await conn.fetchrow(LOCK_STREAM, tenant_id, stream_id)
        version: int = head["version"]
        prev_hash = bytes(head["head_hash"])

        fp = _fingerprint(stream_id, events) if idempotency_key is not None else b""
        if idempotency_key is not None:
            # Under the stream lock: a retry of this stream's append sees the first result.
            replay = await self._replay(tenant_id, idempotency_key, stream_id, fp)
            if replay is not None:
                return replay
        if expected_version is not None and expected_version != version:
            raise WrongExpectedVersion(stream_id, expected_version, version)

        now = recorded_at or datetime.now(UTC)
        ids, versions, types, schema_versions, datas, metas, prevs, hashes = (
            [],
            [],
            [],
            [],
            [],
            [],
            [],
            [],
        )
        pending = []
        for offset, event in enumerate(events, start=1):
            data = normalize_json(event.data, "$.data")
            metadata = normalize_json(event.metadata, "$.metadata")
            v = version + offset
            h = event_hash(
                prev_hash,
                event_id=event.event_id,
                tenant_id=tenant_id,
                stream_id=stream_id,
                stream_version=v,
                type=event.type,
                schema_version=event.schema_version,
                data=data,
                metadata=metadata,
                recorded_at=now,
            )
            ids.append(event.event_id)
            versions.append(v)
            types.append(event.type)
            schema_versions.append(event.schema_version)
            datas.append(canonical_json(data).decode())
            metas.append(canonical_json(metadata).decode())
            prevs.append(prev_hash)
            hashes.append(h)
            pending.append((event, v, data, metadata, prev_hash, h))
            prev_hash = h
        last = version + len(events)
        args: list[Any] = [
            tenant_id, stream_id, now, ids, versions, types, schema_versions, datas, metas,
            prevs, hashes, last, prev_hash,
        ]  # fmt: skip
        if idempotency_key is None:
            rows = await conn.fetch(APPEND, *args)
        else:
            rows = await conn.fetch(APPEND_WITH_KEY, *args, idempotency_key, fp, version + 1)
            if not rows:
                # The key was claimed by an append to another stream that committed first.
                replay = await self._replay(tenant_id, idempotency_key, stream_id, fp)
                if replay is None:  # pragma: no cover - the conflict row must exist
                    raise RuntimeError("idempotency key conflict without a stored key")
                return replay
        recorded = tuple(
            RecordedEvent(
                global_position=row[0],
                transaction_id=row[1],
                event_id=event.event_id,
                tenant_id=tenant_id,
                stream_id=stream_id,
                stream_version=v,
                type=event.type,
                schema_version=event.schema_version,
                data=data,
                metadata=metadata,
                recorded_at=now,
                prev_hash=prev,
                hash=h,
            )
            for row, (event, v, data, metadata, prev, h) in zip(rows, pending, strict=True)
        )
        return AppendResult(tenant_id, stream_id, version + 1, last, recorded)

    async def _replay(
        self, tenant_id: str, key: str, stream_id: str, fp: bytes
    ) -> AppendResult | None:
        row = await self.conn.fetchrow(FIND_KEY, tenant_id, key)
        if row is None:
            return None
        if row["stream_id"] != stream_id or bytes(row["fingerprint"]) != fp:
            raise IdempotencyKeyReused(
                f"Idempotency-Key {key!r} was already used for a different request; "
                "use a new key for a new request"
            )
        first, last = row["first_version"], row["last_version"]
        rows = await self.conn.fetch(READ_STREAM_RANGE, tenant_id, stream_id, first, last)
        events = tuple(record_from_row(r) for r in rows)
        return AppendResult(tenant_id, stream_id, first, last, events, replayed=True)

    async def find_idempotent(
        self, tenant_id: str, key: str, stream_id: str, events: Sequence[NewEvent]
    ) -> AppendResult | None:
        """The stored result of `key` if it was used (raising if for another request)."""
        return await self._replay(tenant_id, key, stream_id, _fingerprint(stream_id, events))

    async def read_stream(
        self, tenant_id: str, stream_id: str, *, after_version: int = 0, limit: int = 1000
    ) -> list[RecordedEvent]:
        rows = await self.conn.fetch(READ_STREAM, tenant_id, stream_id, after_version, limit)
        return [record_from_row(r) for r in rows]

    async def read_all(
        self, after: Checkpoint, *, limit: int = 1000, tenant_id: str | None = None
    ) -> list[RecordedEvent]:
        args: list[Any] = [str(after.transaction_id), after.global_position, limit]
        if tenant_id is None:
            rows = await self.conn.fetch(READ_ALL, *args)
        else:
            rows = await self.conn.fetch(READ_ALL_TENANT, *args, tenant_id)
        return [record_from_row(r) for r in rows]

    async def stream_version(self, tenant_id: str, stream_id: str) -> int:
        version = await self.conn.fetchval(STREAM_VERSION, tenant_id, stream_id)
        return int(version or 0)


class PostgresEventStore:
    """The event store with a pooled connection and a transaction of its own per call."""

    def __init__(self, db: Database) -> None:
        self.db = db

    async def append(
        self,
        tenant_id: str,
        stream_id: str,
        events: Sequence[NewEvent],
        *,
        expected_version: int | None = None,
        idempotency_key: str | None = None,
    ) -> AppendResult:
        async with self.db.transaction() as conn:
            return await PgEventStore(conn).append(
                tenant_id,
                stream_id,
                events,
                expected_version=expected_version,
                idempotency_key=idempotency_key,
            )

    async def read_stream(
        self, tenant_id: str, stream_id: str, *, after_version: int = 0, limit: int = 1000
    ) -> list[RecordedEvent]:
        async with self.db.connection() as conn:
            return await PgEventStore(conn).read_stream(
                tenant_id, stream_id, after_version=after_version, limit=limit
            )

    async def read_all(
        self, after: Checkpoint, *, limit: int = 1000, tenant_id: str | None = None
    ) -> list[RecordedEvent]:
        async with self.db.connection() as conn:
            return await PgEventStore(conn).read_all(after, limit=limit, tenant_id=tenant_id)

    async def stream_version(self, tenant_id: str, stream_id: str) -> int:
        async with self.db.connection() as conn:
            return await PgEventStore(conn).stream_version(tenant_id, stream_id)
