"""The event store on PostgreSQL: append with expected version and idempotency keys,
per-stream hash chain, stream reads and gap-free reads of the whole log.

An append is one call of the SQL function `cg_append` (migrations/versions/0001): it
locks the stream head, checks the idempotency key, existence, expected version and
closure, finishes the hash chain and inserts, and the `sessions`/`turns` projections run
in the same statement (trigger). One round trip, one transaction, however many events.

`PgEventStore` works on a given connection (inside the caller's transaction, if any);
`PostgresEventStore` (pooled_event_store.py) lends pooled connections and batches
concurrent appends. Both implement domain.ports.EventStore.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import asyncpg

from adapters.postgres.database import Connection
from domain.errors import (
    IdempotencyKeyReused,
    StreamClosed,
    StreamNotFound,
    ValidationError,
    WrongExpectedVersion,
)
from domain.events import AppendResult, Checkpoint, NewEvent, RecordedEvent
from domain.hashing import (
    canonical_json,
    envelope_encoded,
    fingerprint,
    format_time,
    json_text,
    normalize_json,
)

EVENT_COLUMNS = """global_position, transaction_id::text::bigint AS transaction_id, event_id,
    tenant_id, stream_id, stream_version, type, schema_version, data, metadata, recorded_at,
    prev_hash, hash"""

APPEND = "SELECT * FROM cg_append($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15)"
STREAM_VERSION = "SELECT version FROM streams WHERE tenant_id = $1 AND stream_id = $2"
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


def _domain_error(
    code: str | None, detail: str | None, stream_id: str, expected: int | None
) -> Exception:
    if code == "CG001":
        return WrongExpectedVersion(stream_id, expected or 0, int(detail or 0))
    if code == "CG002":
        return IdempotencyKeyReused(
            "Idempotency-Key was already used for a different request; "
            "use a new key for a new request"
        )
    if code == "CG003":
        return StreamClosed(f"stream {stream_id!r} is closed")
    if code == "CG004":
        return StreamNotFound(f"stream {stream_id!r} does not exist")
    return AppendFailed(f"append to {stream_id!r} failed: SQLSTATE {code}: {detail or ''}")


class AppendFailed(RuntimeError):
    """An append the database refused for a reason that is not a domain rule."""


@dataclass
class PreparedAppend:
    """An append encoded for `cg_append`: everything but what only the database knows
    (the stream's version and head hash)."""

    tenant_id: str
    stream_id: str
    events: Sequence[NewEvent]
    normalized: list[tuple[Any, Any]]
    expected_version: int | None
    must_exist: bool
    close: bool
    idempotency_key: str | None
    fingerprint: bytes | None
    recorded_at: datetime
    ids: list[Any]
    types: list[str]
    schema_versions: list[int]
    datas: list[str]
    metas: list[str]
    befores: list[bytes]
    afters: list[bytes]

    def args(self) -> tuple[Any, ...]:
        return (
            self.tenant_id, self.stream_id, self.expected_version, self.must_exist, self.close,
            self.ids, self.types, self.schema_versions, self.datas, self.metas, self.befores,
            self.afters, self.recorded_at, self.idempotency_key, self.fingerprint,
        )  # fmt: skip

    def error(self, code: str | None, detail: str | None) -> Exception:
        """The domain error for a SQLSTATE raised by cg_append."""
        return _domain_error(code, detail, self.stream_id, self.expected_version)

    def recorded(self, rows: Sequence[Any]) -> tuple[RecordedEvent, ...]:
        return tuple(
            RecordedEvent(
                global_position=row["global_position"],
                transaction_id=row["transaction_id"],
                event_id=event.event_id,
                tenant_id=self.tenant_id,
                stream_id=self.stream_id,
                stream_version=row["stream_version"],
                type=event.type,
                schema_version=event.schema_version,
                data=data,
                metadata=metadata,
                recorded_at=self.recorded_at,
                prev_hash=bytes(row["prev_hash"]),
                hash=bytes(row["hash"]),
            )
            for row, event, (data, metadata) in zip(rows, self.events, self.normalized, strict=True)
        )


def prepare_append(
    tenant_id: str,
    stream_id: str,
    events: Sequence[NewEvent],
    *,
    expected_version: int | None = None,
    idempotency_key: str | None = None,
    must_exist: bool = False,
    close: bool = False,
) -> PreparedAppend:
    """Validate and encode an append (raises ValidationError before any I/O)."""
    if not events:
        raise ValidationError("an append needs at least one event", "events")
    if idempotency_key is not None and not 0 < len(idempotency_key) <= MAX_KEY_LENGTH:
        raise ValidationError(
            f"Idempotency-Key must be 1-{MAX_KEY_LENGTH} characters", "Idempotency-Key"
        )
    now = datetime.now(UTC)
    n = len(events)
    p = PreparedAppend(
        tenant_id, stream_id, events, [], expected_version, must_exist, close,
        idempotency_key, None, now,
        [None] * n, [""] * n, [0] * n, [""] * n, [""] * n, [b""] * n, [b""] * n,
    )  # fmt: skip
    tenant_json, stream_json = json_text(tenant_id), json_text(stream_id)
    time_json = json_text(format_time(now))
    for i, event in enumerate(events):
        data = normalize_json(event.data, "$.data")
        metadata = normalize_json(event.metadata, "$.metadata")
        p.normalized.append((data, metadata))
        p.ids[i] = event.event_id
        p.types[i] = event.type
        p.schema_versions[i] = event.schema_version
        p.datas[i] = canonical_json(data).decode()
        p.metas[i] = canonical_json(metadata).decode()
        p.befores[i], p.afters[i] = envelope_encoded(
            event_id=event.event_id,
            tenant_json=tenant_json,
            stream_json=stream_json,
            type_json=json_text(event.type),
            schema_version=event.schema_version,
            data_json=p.datas[i],
            metadata_json=p.metas[i],
            time_json=time_json,
        )
    if idempotency_key is not None:
        p.fingerprint = fingerprint(
            stream_id, [(p.types[i], p.schema_versions[i], p.normalized[i][0]) for i in range(n)]
        )
    return p


async def finish_append(conn: Connection, p: PreparedAppend, rows: Sequence[Any]) -> AppendResult:
    """The AppendResult of cg_append's rows (reading the stored events on a replay)."""
    if rows and rows[0]["replayed"]:
        first, last = rows[0]["stream_version"], rows[-1]["stream_version"]
        stored = await conn.fetch(READ_STREAM_RANGE, p.tenant_id, p.stream_id, first, last)
        return AppendResult(
            p.tenant_id, p.stream_id, first, last,
            tuple(record_from_row(r) for r in stored), replayed=True,
        )  # fmt: skip
    recorded = p.recorded(rows)
    return AppendResult(
        p.tenant_id, p.stream_id, recorded[0].stream_version, recorded[-1].stream_version, recorded
    )


class PgEventStore:
    """The event store on one connection (inside the caller's transaction, if any)."""

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
        must_exist: bool = False,
        close: bool = False,
    ) -> AppendResult:
        p = prepare_append(
            tenant_id,
            stream_id,
            events,
            expected_version=expected_version,
            idempotency_key=idempotency_key,
            must_exist=must_exist,
            close=close,
        )
        try:
            rows = await self.conn.fetch(APPEND, *p.args())
        except asyncpg.PostgresError as exc:
            raise p.error(exc.sqlstate, getattr(exc, "detail", None)) from None
        return await finish_append(self.conn, p, rows)

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
