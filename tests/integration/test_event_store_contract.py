"""The EventStore contract, run against the in-memory fake and PostgresEventStore alike.

Whatever a use case may rely on from domain.ports.EventStore is asserted here, so the
fake cannot drift from the real store: expected versions, stream reads, the hash chain
(for PostgreSQL this also proves that what jsonb gives back hashes like what went in),
idempotency keys, reads of the whole log, tenant isolation and input validation.
"""

from __future__ import annotations

import asyncio
import itertools
import time
import uuid
from typing import Any

import pytest

from adapters.postgres.pooled_event_store import PostgresEventStore
from domain.errors import IdempotencyKeyReused, ValidationError, WrongExpectedVersion
from domain.events import Checkpoint, NewEvent, RecordedEvent
from domain.hashing import GENESIS_HASH, chain_break, normalize_json
from domain.ports import EventStore
from tests.fakes.memory_event_store import InMemoryEventStore

TENANT = "tenant-a"
OTHER_TENANT = "tenant-b"

# What jsonb has to give back exactly for the chain to verify.
TRICKY_DATA: dict[str, Any] = {
    "text": 'héllo wörld — 你好 👋🏽 e\u0301 \u2028 "quoted" back\\slash tab\t nl\n \x01',
    "rtl": "مرحبا",
    "floats": [0.1, 1.5e-7, 1e20, 2.0, -0.0, 123.456, 1e-300, 1.7976931348623157e308, 5e-324],
    "ints": [0, -1, 2**53 + 1, 2**63 - 1, 2**63 + 12345, -(2**70), 10**30],
    "bools": [True, False],
    "none": None,
    "nested": {"z": {"y": [1, {"x": [[], {}, [None]]}]}, "a": {"ü": "ключ"}, "": "empty key"},
    "empty": {"list": [], "dict": {}, "str": ""},
    "1": "numeric-looking key",
    "long": "x" * 5000,
}


def new_event(type_: str = "Noted", data: dict[str, Any] | None = None, **meta: Any) -> NewEvent:
    return NewEvent(
        event_id=uuid.uuid4(),
        type=type_,
        schema_version=1,
        data={"n": 0} if data is None else data,
        metadata=dict(meta),
    )


def batch(n: int, start: int = 0, type_: str = "Noted") -> list[NewEvent]:
    return [new_event(type_, {"n": i}) for i in range(start, start + n)]


def stream_name() -> str:
    return f"test:{uuid.uuid4().hex[:10]}"


@pytest.fixture(params=["memory", "postgres"])
def store(request: pytest.FixtureRequest) -> EventStore:
    if request.param == "memory":
        return InMemoryEventStore()
    return PostgresEventStore(request.getfixturevalue("db"))


async def read_all_settled(store: EventStore, n: int) -> list[RecordedEvent]:
    """read_all from the start once `n` events are visible (or after a timeout).

    PostgreSQL holds back events while any older transaction in the cluster is still
    running (the xid8 rule; autovacuum's ANALYZE or another test run may be one), so a
    committed event can take a moment to show. Once visible it stays visible: any
    transaction that starts later has a larger xid.
    """
    deadline = time.monotonic() + 15
    while True:
        events = await store.read_all(Checkpoint(), limit=10_000)
        if len(events) >= n or time.monotonic() > deadline:
            return events
        await asyncio.sleep(0.05)


def assert_chain(events: list[RecordedEvent]) -> None:
    """The events are a whole stream from version 1: every link verifies."""
    prev = GENESIS_HASH
    for expected_version, event in enumerate(events, start=1):
        assert chain_break(prev, expected_version, event) is None, (
            f"event {event.stream_version}: {chain_break(prev, expected_version, event)}"
        )
        prev = event.hash


# --- append and read --------------------------------------------------------------------


async def test_append_to_new_stream_and_read_back_in_order(store: EventStore) -> None:
    stream = stream_name()
    events = [
        new_event("A", {"n": 1}, actor="alice"),
        new_event("B", {"n": 2}),
        new_event("C", {"n": 3}),
    ]
    result = await store.append(TENANT, stream, events)

    assert (result.tenant_id, result.stream_id) == (TENANT, stream)
    assert (result.first_version, result.last_version) == (1, 3)
    assert result.replayed is False
    assert [e.stream_version for e in result.events] == [1, 2, 3]

    read = await store.read_stream(TENANT, stream)
    assert [e.stream_version for e in read] == [1, 2, 3]
    assert [e.event_id for e in read] == [e.event_id for e in events]
    assert [e.type for e in read] == ["A", "B", "C"]
    assert [e.data for e in read] == [{"n": 1}, {"n": 2}, {"n": 3}]
    assert read[0].metadata == {"actor": "alice"}
    assert all(e.tenant_id == TENANT and e.stream_id == stream for e in read)
    assert all(e.schema_version == 1 for e in read)
    # What append returned is what the log holds.
    for returned, stored in zip(result.events, read, strict=True):
        assert returned.global_position == stored.global_position
        assert returned.transaction_id == stored.transaction_id
        assert returned.hash == stored.hash
        assert returned.prev_hash == stored.prev_hash
        assert returned.recorded_at == stored.recorded_at
    positions = [e.global_position for e in read]
    assert positions == sorted(positions) and len(set(positions)) == 3
    # One append is one transaction.
    assert len({e.transaction_id for e in read}) == 1


async def test_expected_version_zero_creates_a_new_stream(store: EventStore) -> None:
    stream = stream_name()
    result = await store.append(TENANT, stream, batch(2), expected_version=0)
    assert (result.first_version, result.last_version) == (1, 2)
    assert await store.stream_version(TENANT, stream) == 2


async def test_expected_version_zero_on_existing_stream_conflicts(store: EventStore) -> None:
    stream = stream_name()
    await store.append(TENANT, stream, batch(2))
    with pytest.raises(WrongExpectedVersion) as info:
        await store.append(TENANT, stream, batch(1, start=10), expected_version=0)
    assert info.value.expected == 0
    assert info.value.actual == 2
    assert info.value.stream_id == stream
    assert await store.stream_version(TENANT, stream) == 2
    assert [e.data["n"] for e in await store.read_stream(TENANT, stream)] == [0, 1]


async def test_expected_version_matching_appends_after_it(store: EventStore) -> None:
    stream = stream_name()
    await store.append(TENANT, stream, batch(2))
    result = await store.append(TENANT, stream, batch(2, start=2), expected_version=2)
    assert (result.first_version, result.last_version) == (3, 4)
    read = await store.read_stream(TENANT, stream)
    assert [e.stream_version for e in read] == [1, 2, 3, 4]
    assert [e.data["n"] for e in read] == [0, 1, 2, 3]


@pytest.mark.parametrize("wrong", [1, 3, 7])
async def test_expected_version_wrong_raises_and_writes_nothing(
    store: EventStore, wrong: int
) -> None:
    stream = stream_name()
    await store.append(TENANT, stream, batch(2))
    with pytest.raises(WrongExpectedVersion) as info:
        await store.append(TENANT, stream, batch(3, start=10), expected_version=wrong)
    assert (info.value.expected, info.value.actual) == (wrong, 2)
    assert str(wrong) in str(info.value) and "2" in str(info.value)
    assert await store.stream_version(TENANT, stream) == 2
    assert len(await store.read_stream(TENANT, stream)) == 2
    # The failed append left the stream head alone: the next append still chains on.
    await store.append(TENANT, stream, batch(1, start=20), expected_version=2)
    assert_chain(await store.read_stream(TENANT, stream))


async def test_expected_version_on_missing_stream_raises(store: EventStore) -> None:
    stream = stream_name()
    with pytest.raises(WrongExpectedVersion) as info:
        await store.append(TENANT, stream, batch(1), expected_version=3)
    assert (info.value.expected, info.value.actual) == (3, 0)
    assert await store.read_stream(TENANT, stream) == []
    assert await store.stream_version(TENANT, stream) == 0


async def test_expected_version_none_appends_at_the_end(store: EventStore) -> None:
    stream = stream_name()
    first = await store.append(TENANT, stream, batch(2), expected_version=None)
    second = await store.append(TENANT, stream, batch(3, start=2), expected_version=None)
    assert (first.first_version, first.last_version) == (1, 2)
    assert (second.first_version, second.last_version) == (3, 5)
    read = await store.read_stream(TENANT, stream)
    assert [e.stream_version for e in read] == [1, 2, 3, 4, 5]
    assert [e.data["n"] for e in read] == [0, 1, 2, 3, 4]


async def test_read_stream_after_version_and_limit(store: EventStore) -> None:
    stream = stream_name()
    await store.append(TENANT, stream, batch(5))

    def versions(events: list[RecordedEvent]) -> list[int]:
        return [e.stream_version for e in events]

    assert versions(await store.read_stream(TENANT, stream, after_version=2)) == [3, 4, 5]
    assert versions(await store.read_stream(TENANT, stream, limit=2)) == [1, 2]
    assert versions(await store.read_stream(TENANT, stream, after_version=2, limit=2)) == [3, 4]
    assert versions(await store.read_stream(TENANT, stream, after_version=4, limit=10)) == [5]
    assert await store.read_stream(TENANT, stream, after_version=5) == []
    assert await store.read_stream(TENANT, stream_name()) == []


async def test_stream_version(store: EventStore) -> None:
    stream = stream_name()
    assert await store.stream_version(TENANT, stream) == 0
    await store.append(TENANT, stream, batch(3))
    assert await store.stream_version(TENANT, stream) == 3
    await store.append(TENANT, stream, batch(1, start=3))
    assert await store.stream_version(TENANT, stream) == 4
    assert await store.stream_version(OTHER_TENANT, stream) == 0
    assert await store.stream_version(TENANT, stream_name()) == 0


# --- the hash chain ---------------------------------------------------------------------


async def test_hash_chain_links_every_event(store: EventStore) -> None:
    stream = stream_name()
    await store.append(TENANT, stream, batch(3))
    await store.append(TENANT, stream, batch(2, start=3))
    await store.append(TENANT, stream, [new_event("Other", {"n": 5}, actor="bob")])
    read = await store.read_stream(TENANT, stream)

    assert len(read) == 6
    assert read[0].prev_hash == GENESIS_HASH
    for before, after in itertools.pairwise(read):
        assert after.prev_hash == before.hash
    assert all(len(e.hash) == 32 and e.hash != GENESIS_HASH for e in read)
    assert len({e.hash for e in read}) == 6
    assert_chain(read)


async def test_hash_chain_survives_a_round_trip_of_tricky_json(store: EventStore) -> None:
    stream = stream_name()
    events = [
        new_event("Tricky", TRICKY_DATA, actor="ünïcode", nested={"k": [1.0, 0.5, None]}),
        new_event("Tricky", {"only": 1e20, "x": [2.0, 1.5e-7]}),
        new_event("Tricky", {}),
    ]
    result = await store.append(TENANT, stream, events)
    read = await store.read_stream(TENANT, stream)

    assert_chain(read)
    # The store gives back the data as jsonb normalizes it (integral floats as ints)...
    assert [e.data for e in read] == [normalize_json(e.data) for e in events]
    assert read[0].metadata == normalize_json(events[0].metadata)
    assert read[1].data["only"] == 10**20 and isinstance(read[1].data["only"], int)
    assert read[0].data["floats"][0] == 0.1 and read[0].data["floats"][1] == 1.5e-7
    assert read[0].data["ints"][3] == 2**63 - 1 and read[0].data["ints"][6] == 10**30
    assert read[0].data["text"] == TRICKY_DATA["text"]
    # ... and the hashes computed at append are the ones recomputed from what came back.
    assert [e.hash for e in read] == [e.hash for e in result.events]


# --- idempotency ------------------------------------------------------------------------


async def test_same_idempotency_key_returns_first_result_and_writes_nothing(
    store: EventStore,
) -> None:
    stream = stream_name()
    await store.append(TENANT, stream, batch(1))
    payload = [{"n": 100}, {"n": 101}]
    first = await store.append(
        TENANT, stream, [new_event("T", d) for d in payload], idempotency_key="key-1"
    )
    # A retry carries the same request (fresh event ids, as a client retry would have).
    again = await store.append(
        TENANT, stream, [new_event("T", d) for d in payload], idempotency_key="key-1"
    )

    assert first.replayed is False
    assert again.replayed is True
    assert (again.first_version, again.last_version) == (first.first_version, first.last_version)
    assert (again.first_version, again.last_version) == (2, 3)
    assert [e.event_id for e in again.events] == [e.event_id for e in first.events]
    assert [e.stream_version for e in again.events] == [2, 3]
    assert [e.hash for e in again.events] == [e.hash for e in first.events]
    assert [e.global_position for e in again.events] == [e.global_position for e in first.events]
    assert await store.stream_version(TENANT, stream) == 3
    assert len(await store.read_stream(TENANT, stream)) == 3


async def test_idempotent_retry_wins_over_a_stale_expected_version(store: EventStore) -> None:
    stream = stream_name()
    first = await store.append(TENANT, stream, batch(2), expected_version=0, idempotency_key="k")
    await store.append(TENANT, stream, batch(1, start=50))
    again = await store.append(TENANT, stream, batch(2), expected_version=0, idempotency_key="k")
    assert again.replayed is True
    assert [e.event_id for e in again.events] == [e.event_id for e in first.events]
    assert await store.stream_version(TENANT, stream) == 3


async def test_same_key_with_different_payload_raises(store: EventStore) -> None:
    stream = stream_name()
    await store.append(TENANT, stream, [new_event("T", {"n": 1})], idempotency_key="key-2")
    with pytest.raises(IdempotencyKeyReused):
        await store.append(TENANT, stream, [new_event("T", {"n": 2})], idempotency_key="key-2")
    with pytest.raises(IdempotencyKeyReused):
        await store.append(TENANT, stream, [new_event("U", {"n": 1})], idempotency_key="key-2")
    with pytest.raises(IdempotencyKeyReused):
        await store.append(
            TENANT,
            stream,
            [new_event("T", {"n": 1}), new_event("T", {"n": 1})],
            idempotency_key="key-2",
        )
    other_stream = stream_name()
    with pytest.raises(IdempotencyKeyReused):
        await store.append(
            TENANT, other_stream, [new_event("T", {"n": 1})], idempotency_key="key-2"
        )
    assert await store.stream_version(TENANT, stream) == 1
    assert await store.stream_version(TENANT, other_stream) == 0
    assert await store.read_stream(TENANT, other_stream) == []


async def test_idempotency_keys_are_scoped_per_tenant(store: EventStore) -> None:
    stream = stream_name()
    a = await store.append(TENANT, stream, batch(1), idempotency_key="shared")
    b = await store.append(OTHER_TENANT, stream, batch(1), idempotency_key="shared")
    assert a.replayed is False and b.replayed is False
    assert a.events[0].event_id != b.events[0].event_id
    assert await store.stream_version(TENANT, stream) == 1
    assert await store.stream_version(OTHER_TENANT, stream) == 1
    # A different payload under the same key in another tenant is no reuse either.
    c = await store.append(
        OTHER_TENANT, stream_name(), [new_event("Z", {"z": 1})], idempotency_key="shared2"
    )
    d = await store.append(TENANT, stream, [new_event("Y", {"y": 2})], idempotency_key="shared2")
    assert not c.replayed and not d.replayed
    assert await store.stream_version(TENANT, stream) == 2


async def test_bad_idempotency_key_is_a_validation_error(store: EventStore) -> None:
    stream = stream_name()
    with pytest.raises(ValidationError):
        await store.append(TENANT, stream, batch(1), idempotency_key="")
    with pytest.raises(ValidationError):
        await store.append(TENANT, stream, batch(1), idempotency_key="k" * 201)
    assert await store.stream_version(TENANT, stream) == 0


# --- reading the whole log --------------------------------------------------------------


async def test_read_all_in_order_and_continues_from_a_checkpoint(store: EventStore) -> None:
    s1, s2, s3 = stream_name(), stream_name(), stream_name()
    await store.append(TENANT, s1, batch(2))
    await store.append(TENANT, s2, batch(3, start=10))
    await store.append(OTHER_TENANT, s3, batch(1, start=20))
    await store.append(TENANT, s1, batch(2, start=30))

    everything = await read_all_settled(store, 8)
    assert [(e.stream_id, e.data["n"]) for e in everything] == [
        (s1, 0), (s1, 1), (s2, 10), (s2, 11), (s2, 12), (s3, 20), (s1, 30), (s1, 31),
    ]  # fmt: skip
    keys = [(e.transaction_id, e.global_position) for e in everything]
    assert keys == sorted(keys) and len(set(keys)) == len(keys)
    # Each append was one transaction, later appends have later transaction ids.
    assert len({e.transaction_id for e in everything}) == 4

    # Page through with a limit, continuing from the last event's checkpoint.
    seen: list[RecordedEvent] = []
    checkpoint = Checkpoint()
    pages = 0
    while True:
        page = await store.read_all(checkpoint, limit=3)
        assert len(page) <= 3
        if not page:
            break
        pages += 1
        seen.extend(page)
        last = page[-1]
        checkpoint = Checkpoint(last.transaction_id, last.global_position)
    assert pages == 3
    assert [e.event_id for e in seen] == [e.event_id for e in everything]

    # From the middle of a transaction: the rest of it, then what came after.
    mid = everything[3]
    rest = await store.read_all(Checkpoint(mid.transaction_id, mid.global_position), limit=3)
    assert [e.event_id for e in rest] == [e.event_id for e in everything[4:7]]

    # From the end: nothing.
    end = everything[-1]
    assert await store.read_all(Checkpoint(end.transaction_id, end.global_position)) == []

    only_other = await store.read_all(Checkpoint(), tenant_id=OTHER_TENANT)
    assert [(e.tenant_id, e.stream_id) for e in only_other] == [(OTHER_TENANT, s3)]
    only_a = await store.read_all(Checkpoint(), tenant_id=TENANT, limit=4)
    assert [e.data["n"] for e in only_a] == [0, 1, 10, 11]


async def test_read_all_sees_events_appended_after_the_checkpoint(store: EventStore) -> None:
    await store.append(TENANT, stream_name(), batch(2))
    first = await read_all_settled(store, 2)
    assert len(first) == 2
    checkpoint = Checkpoint(first[-1].transaction_id, first[-1].global_position)
    assert await store.read_all(checkpoint) == []
    later = await store.append(TENANT, stream_name(), batch(1, start=5))
    await read_all_settled(store, 3)
    assert [e.event_id for e in await store.read_all(checkpoint)] == [later.events[0].event_id]


# --- isolation and validation -----------------------------------------------------------


async def test_tenants_are_isolated(store: EventStore) -> None:
    stream = stream_name()
    await store.append(TENANT, stream, [new_event("A", {"who": "a"})])
    await store.append(OTHER_TENANT, stream, [new_event("B", {"who": "b"}) for _ in range(3)])

    a = await store.read_stream(TENANT, stream)
    b = await store.read_stream(OTHER_TENANT, stream)
    assert [e.data["who"] for e in a] == ["a"]
    assert [e.data["who"] for e in b] == ["b", "b", "b"]
    assert all(e.tenant_id == TENANT for e in a)
    assert all(e.tenant_id == OTHER_TENANT for e in b)
    # Each tenant's stream has a chain of its own starting from genesis.
    assert_chain(a)
    assert_chain(b)
    # Expected versions are per tenant too.
    await store.append(TENANT, stream, batch(1), expected_version=1)
    with pytest.raises(WrongExpectedVersion):
        await store.append(OTHER_TENANT, stream, batch(1), expected_version=1)


async def test_empty_append_is_a_validation_error(store: EventStore) -> None:
    stream = stream_name()
    with pytest.raises(ValidationError):
        await store.append(TENANT, stream, [])
    with pytest.raises(ValidationError):
        await store.append(TENANT, stream, [], expected_version=0, idempotency_key="empty")
    assert await store.stream_version(TENANT, stream) == 0
    assert await store.read_stream(TENANT, stream) == []


@pytest.mark.parametrize(
    "bad",
    [
        {"text": "nul \x00 here"},
        {"nested": {"deep": ["ok", "bad\x00"]}},
        {"key\x00": "nul in a key"},
    ],
)
async def test_nul_character_is_a_validation_error_and_writes_nothing(
    store: EventStore, bad: dict[str, Any]
) -> None:
    stream = stream_name()
    await store.append(TENANT, stream, batch(1))
    with pytest.raises(ValidationError) as info:
        await store.append(TENANT, stream, [new_event("Ok", {"fine": 1}), new_event("Bad", bad)])
    assert "NUL" in str(info.value)
    with pytest.raises(ValidationError):
        await store.append(TENANT, stream, [new_event("Ok", {"ok": 1}, note="a\x00b")])
    assert await store.stream_version(TENANT, stream) == 1
    assert len(await store.read_stream(TENANT, stream)) == 1
    assert len(await read_all_settled(store, 1)) == 1


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), float("-inf")])
async def test_non_finite_numbers_are_a_validation_error(store: EventStore, bad: float) -> None:
    stream = stream_name()
    with pytest.raises(ValidationError):
        await store.append(TENANT, stream, [new_event("Bad", {"x": bad})])
    assert await store.stream_version(TENANT, stream) == 0


@pytest.mark.parametrize("bad", [float("nan"), float("inf")])
async def test_non_finite_numbers_with_an_idempotency_key_are_a_validation_error(
    store: EventStore, bad: float
) -> None:
    stream = stream_name()
    with pytest.raises(ValidationError):
        await store.append(TENANT, stream, [new_event("Bad", {"x": bad})], idempotency_key="nan")
    assert await store.stream_version(TENANT, stream) == 0
